//! verify: Decide which results to trust: commit–reveal, adaptive replication by credibility, and bisection disputes.
//!
//! Everything here is a pure state machine, like the market and the
//! scheduler: time and randomness are passed in, decisions come out as
//! [`Action`]s, and a seeded simulation (`cairn_sim::verifier`, with its
//! tests in `crates/sim/tests/adversaries.rs`) runs it with thousands of
//! tasks and named cheaters.
//!
//! - [`commit`]: providers commit to a salted hash of their digest before
//!   anyone reveals, so nobody can copy an answer.
//! - [`credibility`]: trust earned by consecutive confirmed results, and the
//!   credibility of a set of agreeing results (Sarmenta's model).
//! - [`Verifier`]: per task, how many providers run it, when it is
//!   accepted, when it is spot-checked, and what a conviction reopens.
//! - [`dispute`]: the bisection game that settles a disagreement by
//!   re-executing one short segment.
//!
//! ```
//! use cairn_verify::{Action, Commitment, Params, Reveal, Verifier};
//! use cairn_job::VerifyPolicy;
//! use cairn_wire::{ContentId, Keypair};
//!
//! let mut verifier = Verifier::new(Params::default(), 7);
//! let job = ContentId::of(b"job");
//! verifier.open_job(job, VerifyPolicy::Replicate { replicas: 2 }, 1, 1_000_000);
//! let digest = ContentId::of(b"result");
//! let mut accepted = Vec::new();
//! for seed in 1..=2u8 {
//!     let provider = Keypair::from_seed([seed; 32]).public();
//!     verifier.assign(&(job, 0), provider, 0).unwrap();
//!     let reveal = Reveal { digest, salt: [seed; 32] };
//!     let asked = verifier.commit(&(job, 0), &provider, Commitment::new(&provider, &reveal), 1).unwrap();
//!     accepted.push((provider, reveal, asked));
//! }
//! // Reveals are asked only once both have committed.
//! assert!(accepted[0].2.is_empty() && accepted[1].2.len() == 2);
//! let mut actions = Vec::new();
//! for (provider, reveal, _) in &accepted {
//!     actions = verifier.reveal(&(job, 0), provider, reveal, 2).unwrap();
//! }
//! assert!(matches!(&actions[0], Action::Accept { digest: d, .. } if *d == digest));
//! ```
#![deny(missing_docs)]

pub mod commit;
pub mod credibility;
pub mod dispute;
mod verifier;

pub use commit::{Commitment, Reveal, salt};
pub use credibility::{Params, Record, TrustBook, group_credibility};
pub use dispute::{Foul, Game, Need, Segment, Side, StateHash, Verdict};
pub use verifier::{Action, CancelledTasks, Offence, TaskKey, Verifier, VerifyError, VerifyStats};
