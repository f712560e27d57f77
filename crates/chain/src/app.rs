//! The ledger as a consensus application: what to propose, what to vote
//! for, and what to do with finalized blocks.

use std::collections::BTreeSet;

use commonware_actor::Feedback;
use commonware_consensus::marshal::Update;
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_consensus::simplex::types::Context;
use commonware_consensus::{Application, Heightable};
use commonware_cryptography::{Digested, Digestible as _, ed25519};
use commonware_parallel::Sequential;
use commonware_runtime::Clock;
use commonware_utils::SystemTimeExt as _;
use commonware_utils::acknowledgement::Exact;
use commonware_utils::channel::mpsc;
use futures::StreamExt as _;

use crate::Scheme;
use crate::block::{Block, Digest, TXS_PER_BLOCK_MAX};
use crate::ledger::{Ledger, tx_key, verify};

/// How often an idle leader looks at the mempool.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Proposes blocks from the mempool and checks others' proposals.
#[derive(Clone)]
pub(crate) struct App {
    pub ledger: Ledger,
    pub idle: std::time::Duration,
}

impl<E: Clock> Application<E> for App {
    type SigningScheme = Scheme;
    type Context = Context<Digest, ed25519::PublicKey>;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, _context): (E, Self::Context),
        mut ancestry: impl Ancestry<Block>,
        _: (),
    ) -> Option<Digested<Block>> {
        // The first item is the parent.
        let parent = ancestry.next().await?;
        // With nothing to order, wait a little for something to arrive.
        let started = runtime.current();
        while self.ledger.pending() == 0
            && runtime
                .current()
                .duration_since(started)
                .unwrap_or_default()
                < self.idle
        {
            runtime.sleep(IDLE_POLL).await;
        }
        // Transactions in ancestors that are not finalized yet are already
        // on their way: do not propose them twice.
        let finalized = self.ledger.height();
        let mut pending = BTreeSet::new();
        let mut cursor = Some(parent.clone());
        while let Some(block) = cursor {
            if block.height().get() <= finalized {
                break;
            }
            // Only the keys are needed: the block's signatures were
            // checked when it was verified.
            for bytes in &block.inner().txs {
                if let Ok(tx) = cairn_ledger::decode(bytes) {
                    pending.insert((tx.signer(), tx.payload_unchecked().nonce));
                }
            }
            cursor = ancestry.next().await;
        }
        let txs = self.ledger.select(TXS_PER_BLOCK_MAX, &pending);
        let timestamp_ms = runtime
            .current()
            .epoch_millis()
            .max(parent.inner().timestamp_ms + 1);
        let block = Block {
            parent: parent.digest(),
            height: parent.height().next(),
            timestamp_ms,
            txs,
        };
        Some(Digested::compute(block, &Sequential).await)
    }

    async fn verify(&mut self, _: (E, Self::Context), mut ancestry: impl Ancestry<Block>) -> bool {
        // The first item is the block under verification, then its parent
        // (the wrapper has already checked that they link up).
        let (Some(block), Some(parent)) = (ancestry.next().await, ancestry.next().await) else {
            // Abstain rather than call the block invalid.
            return std::future::pending().await;
        };
        let (block, parent) = (block.inner(), parent.inner());
        if block.timestamp_ms <= parent.timestamp_ms {
            return false;
        }
        // Every transaction must be well formed and correctly signed; a block
        // with a forged one is invalid forever.
        let mut seen = BTreeSet::new();
        block
            .txs
            .iter()
            .all(|bytes| verify(bytes).is_some_and(|tx| seen.insert(tx_key(&tx))))
    }
}

/// Hands finalized blocks from marshal to the executor task.
#[derive(Clone)]
pub(crate) struct Finalized(pub mpsc::UnboundedSender<(Digested<Block>, Exact)>);

impl commonware_consensus::Reporter for Finalized {
    type Activity = Update<Block>;

    fn report(&mut self, update: Update<Block>) -> Feedback {
        match update {
            Update::Block(block, ack) => {
                if self.0.send((block, ack)).is_ok() {
                    Feedback::Ok
                } else {
                    Feedback::Closed
                }
            }
            Update::Tip(..) => Feedback::Ok,
        }
    }
}

/// Applies finalized blocks in order, acknowledging each only once its
/// state is saved, so a crash never loses a block marshal thinks is done.
pub(crate) async fn execute(
    ledger: Ledger,
    mut finalized: mpsc::UnboundedReceiver<(Digested<Block>, Exact)>,
) {
    use commonware_utils::Acknowledgement as _;
    while let Some((block, ack)) = finalized.recv().await {
        if let Err(e) = ledger.apply_finalized(block.inner()) {
            // Without a durable state the node must not go on: stop here
            // (the block is not acknowledged and will be delivered again).
            tracing::error!("cannot save the ledger: {e}");
            return;
        }
        ack.acknowledge();
    }
}
