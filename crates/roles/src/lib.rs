//! cairn-roles: the market roles' decisions as synchronous state machines.
//!
//! A role core reads no clock and does no I/O: the node's shell passes the
//! time and each input in, carries out the step the core returns (send,
//! persist, execute, wait), and reports back what happened. So a role's
//! every decision is tested without a network, and the same code can be
//! driven by a seeded simulation. Today: a provider's bidding ([`bidder`]),
//! its per-lease pull loop ([`lease_work`]), and the requester's decisions
//! for all of its jobs ([`requester`]). See `docs/architecture.md` for what is still to move.

pub mod bidder;
pub mod lease_work;
pub mod requester;
