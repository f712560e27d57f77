//! The one way a node's transactions reach the ledger: each is written to
//! the store before anything is sent, numbered by the one nonce allocator of
//! the node's key, and sent again until a block has carried it.
//!
//! "Sent" used to mean "in one validator's mempool", which a restart on
//! either side or a full pool could undo, and a refused transaction left a
//! gap in the nonces that stopped every later one. The rules now:
//!
//! - A transaction is persisted (`Table::Outbox`) before it is sent, and
//!   leaves the outbox only when its fate is known; after a crash the node
//!   sends what the outbox still holds.
//! - The open transactions take consecutive nonces from the account's next
//!   one, in the order they were queued. When one leaves without taking its
//!   nonce (refused at admission), or another transaction took its nonce
//!   (an older copy of a re-signed one, or one `cairn wallet` signed with
//!   the same key), those after it are signed again with the nonces that
//!   are now right.
//! - An open transaction that no block has carried within [`RESEND_AFTER`]
//!   is sent again: mempools forget (a validator restarts, a full pool
//!   displaces the tail of its largest sender).
//! - It is done when a block carried it, applied or refused (a refusal in
//!   a block still takes the nonce), or when the ledger refuses to admit it
//!   while its nonce is still free.
//!
//! Signing again can let an older copy and the new one both reach blocks.
//! Every kind a node sends applies at most once by the ledger's own rules
//! (an escrow opens once, a lease is recorded once, a result is paid once
//! for its fuel, a challenge, reveal or slash acts once), so the second copy is
//! refused and only takes a nonce; every copy's digest is remembered, so
//! whichever copy a block applied is the one reported.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_ledger::{Tx, TxBody, TxKind};
use cairn_store::{Db, Op, Table};
use cairn_wire::{ContentId, Keypair};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use super::ledger_link::{LedgerLink, Refusal};

/// How long an open transaction waits for a block before it is sent again.
pub const RESEND_AFTER: Duration = Duration::from_secs(10);

/// How often the outbox asks the ledger about open transactions: often
/// for this node's own replica (a lookup), less over HTTP.
const POLL_LOCAL: Duration = Duration::from_millis(10);
const POLL_REMOTE: Duration = Duration::from_millis(100);

/// How long an empty outbox sleeps unless something is queued.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// How long the outbox waits after the ledger could not be reached.
const UNREACHABLE_WAIT: Duration = Duration::from_secs(1);

/// How far past the account's next nonce transactions are sent: the
/// ledger's window of pending nonces per sender.
const WINDOW: u64 = cairn_chain::SENDER_PENDING_MAX;

/// What became of a transaction: applied, or refused with the reason.
pub type Fate = Result<(), String>;

/// A transaction's fate, once it is known.
pub struct Ticket(oneshot::Receiver<Fate>);

impl Ticket {
    /// Waits until a block has carried the transaction (or the ledger
    /// refused it).
    pub async fn fate(self) -> Fate {
        self.0
            .await
            .unwrap_or_else(|_| Err("the node is stopping; the transaction stays queued".into()))
    }
}

/// The node's outbox of ledger transactions.
pub struct Outbox {
    link: LedgerLink,
    key: Keypair,
    chain: ContentId,
    db: Db,
    book: Mutex<Book>,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Book {
    /// The next transaction's place in line.
    next_seq: u64,
    /// The account's next nonce, as last read.
    next_nonce: u64,
    /// Open transactions by their place in line.
    open: BTreeMap<u64, Entry>,
    /// Who waits for which transaction's fate.
    waiting: BTreeMap<u64, oneshot::Sender<Fate>>,
}

struct Entry {
    kind: TxKind,
    /// Its current signed copy.
    nonce: u64,
    bytes: Vec<u8>,
    /// Every copy it was signed as: (nonce, digest).
    copies: Vec<(u64, ContentId)>,
    /// When its current copy was last sent.
    sent: Option<Instant>,
}

impl Outbox {
    /// Opens the outbox of `key` kept in `db`, and starts sending what it
    /// holds.
    pub async fn start(link: LedgerLink, key: Keypair, db: Db) -> Result<Arc<Self>, String> {
        let chain = link.chain().await?;
        let next_nonce = link.account(&key.public()).await?.nonce;
        let mut book = Book {
            next_nonce,
            ..Book::default()
        };
        for (seq, bytes) in db.scan(Table::Outbox, &[]).map_err(|e| e.to_string())? {
            let seq = <[u8; 8]>::try_from(seq.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| "the outbox holds a malformed key")?;
            let tx = cairn_ledger::decode(&bytes)
                .map_err(|e| format!("the outbox holds a malformed transaction: {e}"))?;
            let body = tx.payload_unchecked();
            book.next_seq = book.next_seq.max(seq + 1);
            book.open.insert(
                seq,
                Entry {
                    kind: body.kind.clone(),
                    nonce: body.nonce,
                    copies: vec![(body.nonce, ContentId::of(&bytes))],
                    bytes,
                    sent: None,
                },
            );
        }
        if !book.open.is_empty() {
            tracing::info!(
                "the outbox holds {} transactions from before; sending them",
                book.open.len()
            );
        }
        let outbox = Arc::new(Self {
            link,
            key,
            chain,
            db,
            book: Mutex::new(book),
            wake: Arc::new(Notify::new()),
        });
        tokio::spawn(Self::run(Arc::downgrade(&outbox), outbox.wake.clone()));
        Ok(outbox)
    }

    /// The link.
    pub fn link(&self) -> &LedgerLink {
        &self.link
    }

    /// Transactions not yet carried by a block.
    pub fn open(&self) -> usize {
        self.book.lock().open.len()
    }

    /// Signs `kind` with the next nonce, persists it, and queues it. The
    /// ticket tells its fate; dropping it leaves the transaction queued.
    pub fn send(&self, kind: TxKind) -> Result<Ticket, String> {
        self.send_with(kind, Vec::new())
    }

    /// [`Outbox::send`], writing `ops` in the same batch as the
    /// transaction: what the transaction pays for is recorded if and only
    /// if the transaction is queued.
    pub fn send_with(&self, kind: TxKind, mut ops: Vec<Op>) -> Result<Ticket, String> {
        let (sender, receiver) = oneshot::channel();
        {
            let mut book = self.book.lock();
            let nonce = book
                .open
                .values()
                .map(|e| e.nonce + 1)
                .max()
                .unwrap_or(0)
                .max(book.next_nonce);
            let seq = book.next_seq;
            let bytes = self.sign(&kind, nonce);
            ops.push(Op::Put(
                Table::Outbox,
                seq.to_be_bytes().to_vec(),
                bytes.clone(),
            ));
            self.db
                .write(&ops)
                .map_err(|e| format!("persisting a transaction: {e}"))?;
            book.next_seq += 1;
            book.open.insert(
                seq,
                Entry {
                    kind,
                    nonce,
                    copies: vec![(nonce, ContentId::of(&bytes))],
                    bytes,
                    sent: None,
                },
            );
            book.waiting.insert(seq, sender);
        }
        self.wake.notify_one();
        Ok(Ticket(receiver))
    }

    fn sign(&self, kind: &TxKind, nonce: u64) -> Vec<u8> {
        TxBody {
            chain: self.chain,
            nonce,
            kind: kind.clone(),
        }
        .sign(&self.key)
        .to_bytes()
    }

    /// Sends and follows open transactions while the outbox lives.
    async fn run(weak: std::sync::Weak<Self>, wake: Arc<Notify>) {
        loop {
            let Some(outbox) = weak.upgrade() else { return };
            let wait = match outbox.step().await {
                Ok(()) if outbox.open() > 0 => match outbox.link {
                    LedgerLink::Local(_) => POLL_LOCAL,
                    LedgerLink::Remote { .. } => POLL_REMOTE,
                },
                // Nothing open: sleep until something is queued (a while at
                // most, so a dropped outbox ends this task).
                Ok(()) => IDLE_WAIT,
                Err(e) => {
                    tracing::warn!("the outbox cannot reach the ledger: {e}");
                    UNREACHABLE_WAIT
                }
            };
            drop(outbox);
            let _ = tokio::time::timeout(wait, wake.notified()).await;
        }
    }

    /// One round: learns what blocks carried, numbers what is open, and
    /// sends what needs sending.
    async fn step(&self) -> Result<(), String> {
        // An idle outbox asks nothing (a stale next nonce only means the
        // next transaction is signed again once).
        if self.open() == 0 {
            return Ok(());
        }
        let me = self.key.public();
        // The account first: what blocks carried below its next nonce is
        // then known when asked.
        let next_nonce = self.link.account(&me).await?.nonce;
        let asked: Vec<(u64, Vec<(u64, ContentId)>)> = {
            let mut book = self.book.lock();
            book.next_nonce = next_nonce;
            book.open
                .iter()
                .filter(|(_, e)| e.copies.iter().any(|(n, _)| *n < next_nonce))
                .map(|(seq, e)| (*seq, e.copies.clone()))
                .collect()
        };
        for (seq, copies) in asked {
            for (nonce, digest) in copies.into_iter().filter(|(n, _)| *n < next_nonce) {
                let Some(included) = self.link.included(&me, nonce).await? else {
                    continue;
                };
                // A forgotten digest is taken for this copy's: only this
                // outbox signs for the key, and blocks long past forget.
                if included.tx.is_none_or(|tx| tx == digest) {
                    self.close(seq, included.applied);
                    break;
                }
            }
        }
        self.renumber(next_nonce)?;
        self.send_due(next_nonce).await
    }

    /// Gives the open transactions consecutive nonces from `next_nonce`, in
    /// the order they were queued, signing again those whose nonce moved.
    fn renumber(&self, next_nonce: u64) -> Result<(), String> {
        let mut book = self.book.lock();
        let mut ops = Vec::new();
        for (i, (seq, entry)) in book.open.iter_mut().enumerate() {
            let nonce = next_nonce + i as u64;
            if entry.nonce == nonce {
                continue;
            }
            tracing::debug!(
                seq,
                from = entry.nonce,
                to = nonce,
                "signing a transaction again"
            );
            entry.nonce = nonce;
            entry.bytes = self.sign(&entry.kind, nonce);
            entry.copies.push((nonce, ContentId::of(&entry.bytes)));
            entry.sent = None;
            ops.push(Op::Put(
                Table::Outbox,
                seq.to_be_bytes().to_vec(),
                entry.bytes.clone(),
            ));
        }
        self.db.write(&ops).map_err(|e| e.to_string())
    }

    /// Sends, in nonce order, the open transactions not sent lately.
    async fn send_due(&self, next_nonce: u64) -> Result<(), String> {
        let due: Vec<(u64, Vec<u8>, u64)> = self
            .book
            .lock()
            .open
            .iter()
            .filter(|(_, e)| e.nonce < next_nonce + WINDOW)
            .filter(|(_, e)| e.sent.is_none_or(|at| at.elapsed() >= RESEND_AFTER))
            .map(|(seq, e)| (*seq, e.bytes.clone(), e.nonce))
            .collect();
        for (seq, bytes, nonce) in due {
            let tx: Tx = cairn_ledger::decode(&bytes).expect("the outbox signed it");
            match self.link.submit(&tx).await {
                Ok(()) => {
                    if let Some(entry) = self.book.lock().open.get_mut(&seq) {
                        entry.sent = Some(Instant::now());
                    }
                }
                Err(Refusal::Later(reason)) => {
                    tracing::debug!("the ledger takes nonce {nonce} later: {reason}");
                    return Ok(());
                }
                Err(Refusal::Refused(reason)) => {
                    // Refused because a block took the nonce meanwhile: the
                    // next round reads what it carried.
                    if self.link.account(&self.key.public()).await?.nonce > nonce {
                        return Ok(());
                    }
                    tracing::warn!("the ledger refused a transaction (nonce {nonce}): {reason}");
                    self.close(seq, Err(reason));
                    // Those after it move down a nonce in the next round.
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Ends transaction `seq` with `fate`: forgotten by the store, told to
    /// whoever waits.
    fn close(&self, seq: u64, fate: Fate) {
        let waiter = {
            let mut book = self.book.lock();
            if book.open.remove(&seq).is_none() {
                return;
            }
            book.waiting.remove(&seq)
        };
        if let Err(e) = self
            .db
            .write(&[Op::Delete(Table::Outbox, seq.to_be_bytes().to_vec())])
        {
            // Kept, it is sent again after a restart and refused as a
            // repeat: wasteful, not wrong.
            tracing::error!("forgetting a finished transaction: {e}");
        }
        if let Err(e) = &fate {
            tracing::debug!(seq, "transaction refused: {e}");
        }
        if let Some(waiter) = waiter {
            let _ = waiter.send(fate);
        }
    }
}

#[cfg(test)]
mod tests;
