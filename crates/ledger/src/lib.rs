//! ledger: Keep Cairn's balances, stakes, escrows, leases and reputations as a deterministic state machine.
//!
//! The ledger is where money lives: a requester's budget is locked in escrow
//! before work starts, providers are paid from it only for results the
//! requester accepted (its signed acceptances), cheaters lose stake, and no token is ever created,
//! lost or paid twice. This crate is the pure state machine that every
//! validator runs: no clock, no I/O, no randomness. Given the same genesis and
//! the same transactions in the same blocks, every validator reaches the same
//! [`State`] and the same [`State::root`].
//!
//! - [`Tx`] is a signed [`TxBody`]: the chain it is for, the signer's next
//!   nonce, and one [`TxKind`]. A transaction is checked in two steps:
//!   [`admit`] verifies every signature in it (on admission to the mempool, or
//!   when a block arrives; [`admit_batch`] verifies many at once), and
//!   [`State::apply`] checks it against the state and applies it completely or
//!   not at all.
//! - [`Genesis`] is the starting state, read from a TOML file.
//! - [`State::root`] is a Merkle commitment over the whole state, and
//!   [`State::prove`] yields a proof that a client checks with
//!   [`verify_proof`] to trust a balance it is told.
//!
//! Invariant (checked by property tests): the sum of all balances, stakes,
//! unbonding amounts, escrows and the fee pool, plus everything burned,
//! always equals the genesis supply.
#![deny(missing_docs)]

mod error;
mod fraud;
mod genesis;
mod root;
mod snapshot;
mod state;
mod table;
mod tx;

pub use error::TxError;
pub use fraud::{
    COMMIT_NAMESPACE, Commit, REVEAL_WINDOW_BLOCKS, VERDICT_NAMESPACE, Verdict, WHOLE_TASK,
};
pub use genesis::{Genesis, GenesisError, GenesisParams};
pub use root::{Proof, verify_proof};
pub use snapshot::Change;
pub use state::{
    Account, CLOSE_NOTICE_BLOCKS, Challenge, EVIDENCE_WINDOW_BLOCKS, Escrow, LEASE_BLOCKS_MAX,
    Params, Provider, Reputation, SettleOutcome, State,
};
pub use tx::{
    ACCEPTANCE_NAMESPACE, ACCEPTANCE_RESULTS_MAX, ACCEPTANCES_PER_CLAIM_MAX, Acceptance, Accepted,
    Amount, CLAWBACK_MAX, Capabilities, Evidence, LEASE_NAMESPACE, Lease, RECEIPT_NAMESPACE,
    RESULTS_PER_CLAIM_MAX, REVEALS_PER_TX_MAX, Receipt, TX_NAMESPACE, Tx, TxBody, TxKind,
    VerifiedTx, admit, admit_batch, decode,
};
