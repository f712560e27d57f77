//! A validator's view of the ledger: the state after the last finalized
//! block, the mempool of transactions waiting for a block, and the
//! executor that applies finalized blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cairn_ledger::{Amount, State, Tx, TxError, admit, admit_batch};
use cairn_wire::{ContentId, PublicKey};

use crate::StateStore;
use crate::block::{BLOCK_TX_BYTES_MAX, Block, TX_BYTES_MAX};
use crate::mempool::{MEMPOOL_BYTES_MAX, MEMPOOL_TXS_MAX, Mempool, SENDER_PENDING_MAX};

/// Outcomes of applied transactions remembered for queries, at most (the
/// oldest are forgotten first).
pub const OUTCOMES_MAX: usize = 100_000;

/// Blocks remembered for queries, at most (the oldest are forgotten first).
pub const BLOCKS_KEPT_MAX: usize = 10_000;

/// A finalized block as this node applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    /// Its height.
    pub height: u64,
    /// Its digest.
    pub digest: crate::Digest,
    /// Its proposer's clock, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Transactions applied.
    pub applied: usize,
    /// Transactions included but refused by the ledger.
    pub refused: usize,
    /// The state root after it.
    pub root: ContentId,
}

/// What became of a transaction this node saw in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// Applied at this height.
    Applied(u64),
    /// Included at this height but refused by the ledger, for this reason
    /// (it still took its nonce).
    Refused(u64, String),
}

/// The transaction a block carried for one signer and nonce, and what
/// became of it: a sender learns whether it was its own transaction, or
/// another it signed with the same nonce, that took the nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// The digest of its bytes.
    pub tx: ContentId,
    /// What became of it.
    pub outcome: TxOutcome,
}

/// Why a submitted transaction was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Too big to fit a block.
    #[error("transaction is {0} bytes; a block takes at most {TX_BYTES_MAX}")]
    TooLarge(usize),
    /// Not a transaction.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// Refused by the ledger's rules as of the last finalized block.
    #[error("{0}")]
    Refused(#[from] TxError),
    /// The signer holds nothing the transaction could draw on: no balance,
    /// no bonded stake, not the escrow it acts on.
    #[error("account {0} holds no funds; only funded accounts may submit transactions")]
    Unfunded(PublicKey),
    /// The nonce is too far ahead of the signer's next one.
    #[error(
        "nonce {found} is {SENDER_PENDING_MAX} or more past the account's next nonce {next}; \
         submit the ones before it first"
    )]
    NonceTooFar {
        /// The signer's next nonce.
        next: u64,
        /// The transaction's nonce.
        found: u64,
    },
    /// With this one, the signer's queued transactions would take more than
    /// its balance.
    #[error(
        "the account's queued transactions would take {needed} µCAIRN; its balance is {available}"
    )]
    CannotPay {
        /// What the queued transactions and this one take, together.
        needed: u128,
        /// The signer's balance.
        available: Amount,
    },
    /// The mempool is full, and no sender in it holds enough more than this
    /// one to make room.
    #[error(
        "mempool is full ({MEMPOOL_TXS_MAX} transactions or {MEMPOOL_BYTES_MAX} bytes); \
         try again shortly"
    )]
    Full,
}

/// A transaction's place in line: transactions of one signer go in nonce
/// order.
pub(crate) type TxKey = (PublicKey, u64);

/// The shared ledger of one validator.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Mutex<Inner>>,
}

/// A [`Ledger`] handle that does not keep it alive.
pub struct WeakLedger(std::sync::Weak<Mutex<Inner>>);

impl WeakLedger {
    /// The ledger, if something still holds it.
    pub fn upgrade(&self) -> Option<Ledger> {
        self.0.upgrade().map(|inner| Ledger { inner })
    }
}

struct Inner {
    state: State,
    /// State roots by height, of the last [`BLOCKS_KEPT_MAX`] blocks (for
    /// checks and queries).
    roots: BTreeMap<u64, ContentId>,
    blocks: BTreeMap<u64, BlockSummary>,
    mempool: Mempool,
    outcomes: BTreeMap<TxKey, TxRecord>,
    outcome_order: std::collections::VecDeque<TxKey>,
    store: Option<StateStore>,
    /// Set when a block was applied but could not be saved: the state in
    /// memory is then ahead of the disk, so no later block is applied (or
    /// acknowledged) until a restart loads what the disk holds.
    unsaved: Option<String>,
}

impl Ledger {
    /// A ledger starting from `genesis`, or from what `store` saved.
    pub fn open(genesis: State, store: Option<StateStore>) -> Result<Self, crate::StoreError> {
        let mut state = match &store {
            Some(store) => match store.load()? {
                Some(saved) if saved.chain() == genesis.chain() => saved,
                Some(_) => {
                    return Err(crate::StoreError::new(
                        "the store holds another chain's ledger",
                    ));
                }
                None => genesis,
            },
            None => genesis,
        };
        // A new store gets the genesis rows at once; later blocks write
        // only what they change.
        if let Some(store) = &store {
            store.save(&state.take_changes())?;
        }
        let mut roots = BTreeMap::new();
        roots.insert(state.height(), state.root());
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                state,
                roots,
                blocks: BTreeMap::new(),
                mempool: Mempool::default(),
                outcomes: BTreeMap::new(),
                outcome_order: std::collections::VecDeque::new(),
                store,
                unsaved: None,
            })),
        })
    }

    /// A handle that does not keep the ledger alive.
    pub fn downgrade(&self) -> WeakLedger {
        WeakLedger(Arc::downgrade(&self.inner))
    }

    /// The chain's id (its genesis digest).
    pub fn chain(&self) -> ContentId {
        self.inner.lock().unwrap().state.chain()
    }

    /// Reads the finalized state without copying it.
    pub fn view<T>(&self, read: impl FnOnce(&State) -> T) -> T {
        read(&self.inner.lock().unwrap().state)
    }

    /// Height of the last applied block.
    pub fn height(&self) -> u64 {
        self.inner.lock().unwrap().state.height()
    }

    /// A copy of the state after the last applied block.
    pub fn state(&self) -> State {
        self.inner.lock().unwrap().state.clone()
    }

    /// State roots by height, as applied here (the last
    /// [`BLOCKS_KEPT_MAX`]).
    pub fn roots(&self) -> BTreeMap<u64, ContentId> {
        self.inner.lock().unwrap().roots.clone()
    }

    /// The height of the last applied block and the state root after it.
    pub fn head(&self) -> (u64, ContentId) {
        let inner = self.inner.lock().unwrap();
        let (height, root) = inner.roots.last_key_value().expect("the root at open");
        (*height, *root)
    }

    /// What became of the transaction of `signer` with `nonce`, if this node
    /// applied the block that carried it (recently).
    pub fn outcome(&self, signer: &PublicKey, nonce: u64) -> Option<TxRecord> {
        self.inner
            .lock()
            .unwrap()
            .outcomes
            .get(&(*signer, nonce))
            .cloned()
    }

    /// A recent finalized block, by height.
    pub fn block(&self, height: u64) -> Option<BlockSummary> {
        self.inner.lock().unwrap().blocks.get(&height).cloned()
    }

    /// Transactions waiting in the mempool.
    pub fn pending(&self) -> usize {
        self.inner.lock().unwrap().mempool.len()
    }

    /// Checks a transaction and queues it for a block. Everything that
    /// takes only lookups comes first (size, encoding, chain, nonce window,
    /// funds, room: the mempool's rules are in `docs/ledger.md`), so a
    /// transaction from an account with nothing costs no signature check;
    /// then its signatures.
    pub fn submit(&self, bytes: Vec<u8>) -> Result<(), SubmitError> {
        if bytes.len() > TX_BYTES_MAX {
            return Err(SubmitError::TooLarge(bytes.len()));
        }
        let tx = cairn_ledger::decode(&bytes).map_err(|e| SubmitError::Malformed(e.to_string()))?;
        let (signer, len) = (tx.signer(), bytes.len());
        {
            let inner = self.inner.lock().unwrap();
            inner
                .mempool
                .check(&inner.state, signer, tx.payload_unchecked(), len)?;
        }
        // Signatures are checked without the lock, so admissions proceed in
        // parallel; the state may move meanwhile, so the lookups run again.
        let verified = admit(tx)?;
        let key = tx_key(verified.tx());
        let body = verified.tx().payload_unchecked();
        let mut inner = self.inner.lock().unwrap();
        let admission = inner.mempool.check(&inner.state, signer, body, len)?;
        // A nonce that was refused may be used again: forget the old verdict
        // so it is not taken for this transaction's.
        inner.outcomes.remove(&key);
        inner.mempool.insert(key, bytes, admission);
        Ok(())
    }

    /// Makes a block of what the mempool holds and applies it at once, with
    /// no consensus: the chain of a ledger only this process uses (the
    /// market's benchmarks and tests). Returns the new height.
    pub fn seal_alone(&self, timestamp_ms: u64) -> Result<u64, crate::StoreError> {
        let txs = self.select(crate::TXS_PER_BLOCK_MAX, &BTreeSet::new());
        let (height, parent) = {
            let inner = self.inner.lock().unwrap();
            let parent = match inner.blocks.last_key_value() {
                Some((_, last)) => last.digest,
                None => commonware_cryptography::Digestible::digest(&Block::genesis(
                    &inner.state.chain(),
                )),
            };
            (inner.state.height() + 1, parent)
        };
        self.apply_finalized(&Block {
            parent,
            height: commonware_consensus::types::Height::new(height),
            timestamp_ms,
            txs,
        })?;
        Ok(height)
    }

    /// Up to `max` transactions for a new block (and at most
    /// [`BLOCK_TX_BYTES_MAX`] bytes of them), one from each sender in turn,
    /// skipping those already in blocks that are proposed but not yet
    /// finalized.
    pub(crate) fn select(&self, max: usize, exclude: &BTreeSet<TxKey>) -> Vec<Vec<u8>> {
        let mut inner = self.inner.lock().unwrap();
        let Inner { state, mempool, .. } = &mut *inner;
        mempool.select(state, max, BLOCK_TX_BYTES_MAX, exclude)
    }

    /// Applies a finalized block (once: blocks at or below the current
    /// height are ignored, as the consensus layer may deliver them again
    /// after a restart) and saves what it changed before returning.
    ///
    /// The block is applied to the state in place: it is finalized, so it
    /// is the next state whether or not it can be saved. If it cannot, the
    /// caller stops applying (the block is not acknowledged), and a restart
    /// loads the last saved state and is given the block again.
    pub(crate) fn apply_finalized(&self, block: &Block) -> Result<(), crate::StoreError> {
        // A block delivered again after a restart is not checked for
        // nothing. (One executor applies blocks, so the height cannot pass
        // this one meanwhile.)
        if block.height.get() <= self.inner.lock().unwrap().state.height() {
            return Ok(());
        }
        // Blocks carry only transactions that verified when proposed; they
        // are checked again, all in one batch and outside the lock.
        let (txs, bytes): (Vec<Tx>, Vec<&Vec<u8>>) = block
            .txs
            .iter()
            .filter_map(|bytes| Some((cairn_ledger::decode(bytes).ok()?, bytes)))
            .unzip();
        let verified = admit_batch(txs);
        let mut inner = self.inner.lock().unwrap();
        if let Some(e) = &inner.unsaved {
            return Err(crate::StoreError::new(&format!(
                "an earlier block could not be saved ({e}): restart"
            )));
        }
        let height = block.height.get();
        if height <= inner.state.height() {
            return Ok(());
        }
        let Inner { state, store, .. } = &mut *inner;
        state.begin_block(height, block.timestamp_ms);
        let mut outcomes = Vec::with_capacity(block.txs.len());
        for (verified, bytes) in verified.into_iter().zip(bytes) {
            // Whether each still applies depends on the transactions before
            // it: those that no longer apply are skipped, the same way on
            // every validator.
            if let Ok(verified) = verified {
                let outcome = match state.apply_in_block(&verified) {
                    Ok(_) => TxOutcome::Applied(height),
                    Err(e) => TxOutcome::Refused(height, e.to_string()),
                };
                let tx = ContentId::of(bytes);
                outcomes.push((tx_key(verified.tx()), TxRecord { tx, outcome }));
            }
        }
        if let Some(store) = store
            && let Err(e) = store.save(&state.take_changes())
        {
            inner.unsaved = Some(e.to_string());
            return Err(e);
        }
        let root = state.root();
        inner.roots.insert(height, root);
        let applied = outcomes
            .iter()
            .filter(|(_, r)| matches!(r.outcome, TxOutcome::Applied(_)))
            .count();
        inner.blocks.insert(
            height,
            BlockSummary {
                height,
                digest: commonware_cryptography::Digestible::digest(block),
                timestamp_ms: block.timestamp_ms,
                applied,
                refused: block.txs.len() - applied,
                root,
            },
        );
        while inner.blocks.len() > BLOCKS_KEPT_MAX {
            inner.blocks.pop_first();
        }
        while inner.roots.len() > BLOCKS_KEPT_MAX {
            inner.roots.pop_first();
        }
        // Drop what the block included (applied or refused: either took its
        // nonce) and anything it made stale.
        for (key, outcome) in outcomes {
            inner.mempool.remove(&key);
            if inner.outcomes.insert(key, outcome).is_none() {
                inner.outcome_order.push_back(key);
            }
        }
        while inner.outcome_order.len() > OUTCOMES_MAX {
            let oldest = inner.outcome_order.pop_front().expect("not empty");
            inner.outcomes.remove(&oldest);
        }
        let Inner { state, mempool, .. } = &mut *inner;
        mempool.prune(state);
        Ok(())
    }
}

pub(crate) fn tx_key(tx: &Tx) -> TxKey {
    (tx.signer(), tx.payload_unchecked().nonce)
}

#[cfg(test)]
mod tests;
