//! The ledger as a consensus application: what to propose, what to vote
//! for, and what to do with finalized blocks.

use std::collections::BTreeSet;

use commonware_actor::Feedback;
use commonware_consensus::marshal::Update;
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_consensus::simplex::types::Context;
use commonware_consensus::types::Height;
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
use crate::ledger::Ledger;

/// How often an idle leader looks at the mempool.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Proposes blocks from the mempool and checks others' proposals.
#[derive(Clone)]
pub(crate) struct App {
    pub ledger: Ledger,
    pub idle: std::time::Duration,
    /// Rewrites this validator's own proposals (tests of misbehaving
    /// validators only).
    #[cfg(feature = "adversary")]
    pub tamper: Option<crate::adversary::Tamper>,
}

impl App {
    /// An honest application.
    pub fn new(ledger: Ledger, idle: std::time::Duration) -> Self {
        Self {
            ledger,
            idle,
            #[cfg(feature = "adversary")]
            tamper: None,
        }
    }
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
        // The parent was verified (or certified by a quorum), so neither can
        // be at the top of its range; decline rather than wrap if one is.
        let (Some(height), Some(after_parent_ms)) = (
            parent.height().get().checked_add(1),
            parent.inner().timestamp_ms.checked_add(1),
        ) else {
            tracing::error!(
                height = parent.height().get(),
                timestamp_ms = parent.inner().timestamp_ms,
                "cannot build on a parent at the end of its range"
            );
            return None;
        };
        let txs = self.ledger.select(TXS_PER_BLOCK_MAX, &pending);
        let timestamp_ms = runtime.current().epoch_millis().max(after_parent_ms);
        let block = Block {
            parent: parent.digest(),
            height: Height::new(height),
            timestamp_ms,
            txs,
        };
        #[cfg(feature = "adversary")]
        let block = match &self.tamper {
            Some(tamper) => {
                let mut block = block;
                tamper(parent.inner(), &mut block);
                block
            }
            None => block,
        };
        Some(Digested::compute(block, &Sequential).await)
    }

    async fn verify(
        &mut self,
        (runtime, context): (E, Self::Context),
        mut ancestry: impl Ancestry<Block>,
    ) -> bool {
        // The first item is the block under verification, then its parent.
        // The wrapper has already checked that they link up; the checks are
        // repeated here so that every field of a block from a peer is
        // checked against its bound in one place.
        let (Some(block), Some(parent)) = (ancestry.next().await, ancestry.next().await) else {
            // Abstain rather than call the block invalid.
            return std::future::pending().await;
        };
        let now_ms = runtime.current().epoch_millis();
        let verdict = block
            .inner()
            .check_bounds(parent.inner(), &parent.digest(), now_ms)
            .and_then(|()| block.inner().check_txs(&self.ledger.chain()));
        match verdict {
            Ok(()) => true,
            Err(reason) => {
                tracing::warn!(
                    leader = %context.leader,
                    height = block.height().get(),
                    %reason,
                    "refusing a proposal"
                );
                false
            }
        }
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
