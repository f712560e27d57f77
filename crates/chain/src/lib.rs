//! chain: Replicate the ledger among validators with BFT consensus (commonware simplex and marshal).
//!
//! Each validator runs [`run_validator`]: simplex orders block digests with
//! Byzantine fault tolerance (up to f faulty of 3f+1), marshal turns
//! finalizations into an ordered stream of whole blocks (fetching any it
//! missed), and the [`Ledger`] applies each finalized block to the
//! `cairn-ledger` state machine and saves the result in redb before
//! acknowledging it. Blocks and consensus data live in commonware-storage;
//! the ledger state lives in a [`StateStore`].
//!
//! The same code runs on the tokio runtime with authenticated p2p on real
//! sockets, and on commonware's deterministic runtime with a simulated
//! network, where tests crash, partition and restart validators from a seed.
#![deny(missing_docs)]

#[cfg(feature = "adversary")]
pub mod adversary;
mod app;
mod block;
mod ledger;
mod mempool;
mod node;
mod store;

use std::num::NonZeroU64;

pub use block::{
    BLOCK_TX_BYTES_MAX, Block, Digest, TIMESTAMP_AHEAD_MS_MAX, TX_BYTES_MAX, TXS_PER_BLOCK_MAX,
};
pub use ledger::{
    BLOCKS_KEPT_MAX, BlockSummary, Ledger, OUTCOMES_MAX, SubmitError, TxOutcome, TxRecord,
    WeakLedger,
};
pub use mempool::{MEMPOOL_BYTES_MAX, MEMPOOL_TXS_MAX, SENDER_PENDING_MAX};
pub use node::{Channels, Timeouts, run_validator};
pub use store::{StateStore, StoreError};

/// The signing scheme of validators: plain ed25519 signatures, gathered
/// into certificates.
pub type Scheme = commonware_consensus::simplex::scheme::ed25519::Scheme;

/// Separates this chain's signatures from every other use of the keys.
pub const NAMESPACE: &[u8] = b"cairn-ledger";

/// One epoch for the life of the chain: the validator set is fixed at
/// genesis.
const EPOCH_LENGTH: NonZeroU64 = NonZeroU64::MAX;

/// The largest message validators exchange among `validators` of them.
pub fn max_message_size(validators: u32) -> u32 {
    use commonware_consensus::marshal::standard::Standard;
    commonware_p2p::max_message_size(&[
        commonware_consensus::simplex::max_payload_size::<Scheme, Digest>(validators),
        commonware_consensus::marshal::max_payload_size::<Standard<Block>, Scheme>(validators, &()),
    ])
}
