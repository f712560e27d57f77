//! Transactions waiting for a block: admitted by lookups before any
//! signature is checked, bounded per sender and in total, and drained into
//! blocks round-robin across senders.
//!
//! Transactions carry no fee, so block space and mempool memory must be
//! rationed some other way or one key takes them all (it did: a single
//! unfunded key once queued 3,000 future nonces, and blocks, filled in key
//! order, carried nothing else). The rules:
//!
//! - The sender must hold something: a balance, bonded stake, or the escrow
//!   the transaction acts on. An account with nothing costs the node one
//!   lookup, not a signature check.
//! - What the sender's queued transactions take from its balance, together,
//!   must not exceed that balance.
//! - A sender's nonces must lie within [`SENDER_PENDING_MAX`] of its next
//!   nonce, so it holds at most that many transactions.
//! - The whole pool holds at most [`MEMPOOL_TXS_MAX`] transactions and
//!   [`MEMPOOL_BYTES_MAX`] bytes. When full, a newcomer takes the place of
//!   the last transactions of the sender holding the most, as long as that
//!   sender is left holding at least as many as the newcomer's sender then
//!   would; otherwise (or if that does not make room) it is refused and
//!   nothing is displaced.
//! - A block takes one transaction from each sender in turn (each sender's
//!   in nonce order, and only those that can apply: a run without gaps from
//!   its next nonce), starting after the sender the previous block ended on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use cairn_ledger::{Amount, State, TxBody, TxError, TxKind};
use cairn_wire::PublicKey;

use crate::block::TX_BYTES_MAX;
use crate::ledger::{SubmitError, TxKey};

/// Transactions a mempool holds, at most.
pub const MEMPOOL_TXS_MAX: usize = 100_000;

/// Bytes of transactions a mempool holds, at most (a transfer is 178 bytes,
/// so 100,000 of them take 17 MiB; this leaves room for larger
/// settlements).
pub const MEMPOOL_BYTES_MAX: usize = 64 << 20;

/// How far past its next nonce a sender may queue transactions: it holds at
/// most this many at once.
pub const SENDER_PENDING_MAX: u64 = 64;

struct Pending {
    bytes: Vec<u8>,
    /// What it takes from the sender's balance, at most.
    debit: Amount,
}

#[derive(Default)]
struct Sender {
    count: usize,
    /// What its transactions take from its balance, together, at most.
    debit: u128,
}

/// Where a transaction goes, decided by [`Mempool::check`]: the
/// transactions it displaces.
pub(crate) struct Admission {
    evict: Vec<TxKey>,
    /// What the transaction may take from its signer's balance.
    debit: Amount,
}

/// The mempool of one validator.
pub(crate) struct Mempool {
    /// Transactions held, at most.
    txs_max: usize,
    /// Bytes of transactions held, at most.
    bytes_max: usize,
    txs: BTreeMap<TxKey, Pending>,
    senders: BTreeMap<PublicKey, Sender>,
    /// Senders by how many transactions they hold: the largest is the one
    /// to evict from.
    by_count: BTreeSet<(usize, PublicKey)>,
    bytes: usize,
    /// The sender the last block ended on: the next starts after it.
    cursor: Option<PublicKey>,
}

impl Default for Mempool {
    fn default() -> Self {
        Self::with_limits(MEMPOOL_TXS_MAX, MEMPOOL_BYTES_MAX)
    }
}

impl Mempool {
    /// An empty mempool holding at most `txs_max` transactions and
    /// `bytes_max` bytes of them.
    pub fn with_limits(txs_max: usize, bytes_max: usize) -> Self {
        assert!(txs_max > 0 && bytes_max >= TX_BYTES_MAX);
        Self {
            txs_max,
            bytes_max,
            txs: BTreeMap::new(),
            senders: BTreeMap::new(),
            by_count: BTreeSet::new(),
            bytes: 0,
            cursor: None,
        }
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether `body`, signed by `signer` and `len` bytes long, may enter
    /// the pool as of `state`, and what it would displace. Only lookups:
    /// this runs before any signature is checked.
    pub fn check(
        &self,
        state: &State,
        signer: PublicKey,
        body: &TxBody,
        len: usize,
    ) -> Result<Admission, SubmitError> {
        if body.chain != state.chain() {
            return Err(TxError::WrongChain {
                expected: state.chain(),
                found: body.chain,
            }
            .into());
        }
        let account = state.account(&signer);
        if body.nonce < account.nonce {
            return Err(TxError::BadNonce {
                expected: account.nonce,
                found: body.nonce,
            }
            .into());
        }
        // A provider whose whole stake is unbonding is still liable, and
        // must still be able to answer a challenge (a `Reveal` costs
        // nothing): with an empty balance it would otherwise be slashed
        // for a silence the mempool forced on it. Only that.
        let reveal = matches!(body.kind, TxKind::Reveal { .. });
        let funded = account.balance > 0
            || state.provider(&signer).is_some_and(|p| {
                p.stake > 0
                    || (reveal
                        && (p.liable_until > state.height() || p.liable_until_ms > state.time_ms()))
            })
            || escrow_named(&body.kind)
                .and_then(|job| state.escrow(&job))
                .is_some_and(|escrow| escrow.owner == signer);
        if !funded {
            return Err(SubmitError::Unfunded(signer));
        }
        if body.nonce - account.nonce >= SENDER_PENDING_MAX {
            return Err(SubmitError::NonceTooFar {
                next: account.nonce,
                found: body.nonce,
            });
        }

        let key = (signer, body.nonce);
        let replaced = self.txs.get(&key);
        let sender = self.senders.get(&signer);
        let own = body.kind.balance_debit(state.params());
        let debit = sender.map_or(0, |s| s.debit) - replaced.map_or(0, |p| u128::from(p.debit))
            + u128::from(own);
        if debit > u128::from(account.balance) {
            return Err(SubmitError::CannotPay {
                needed: debit,
                available: account.balance,
            });
        }

        let txs_after = self.txs.len() + usize::from(replaced.is_none());
        let mut bytes_after = self.bytes - replaced.map_or(0, |p| p.bytes.len()) + len;
        let fits = |txs: usize, bytes: usize| txs <= self.txs_max && bytes <= self.bytes_max;
        if fits(txs_after, bytes_after) {
            return Ok(Admission {
                evict: Vec::new(),
                debit: own,
            });
        }
        // Full: displace the tail of the largest holder, but never so far
        // that it would hold fewer than this sender then would.
        let holds_after = sender.map_or(0, |s| s.count) + usize::from(replaced.is_none());
        let Some(&(largest, holder)) = self.by_count.last() else {
            return Err(SubmitError::Full);
        };
        if holder == signer {
            return Err(SubmitError::Full);
        }
        let (mut txs_after, mut left) = (txs_after, largest);
        let mut evict = Vec::new();
        for (&victim, pending) in self.sender_txs(holder).rev() {
            if fits(txs_after, bytes_after) || left <= holds_after {
                break;
            }
            evict.push(victim);
            txs_after -= 1;
            bytes_after -= pending.bytes.len();
            left -= 1;
        }
        if fits(txs_after, bytes_after) {
            Ok(Admission { evict, debit: own })
        } else {
            Err(SubmitError::Full)
        }
    }

    /// Adds a transaction that [`Mempool::check`] admitted (replacing one
    /// with the same signer and nonce), displacing what the check said.
    pub fn insert(&mut self, key: TxKey, bytes: Vec<u8>, admission: Admission) {
        for victim in admission.evict {
            self.remove(&victim);
        }
        self.remove(&key);
        let debit = admission.debit;
        self.bytes += bytes.len();
        self.txs.insert(key, Pending { bytes, debit });
        let sender = self.senders.entry(key.0).or_default();
        self.by_count.remove(&(sender.count, key.0));
        sender.count += 1;
        sender.debit += u128::from(debit);
        self.by_count.insert((sender.count, key.0));
        assert!(self.txs.len() <= self.txs_max && self.bytes <= self.bytes_max);
    }

    /// Drops a transaction, if held.
    pub fn remove(&mut self, key: &TxKey) {
        let Some(pending) = self.txs.remove(key) else {
            return;
        };
        self.bytes -= pending.bytes.len();
        let sender = self.senders.get_mut(&key.0).expect("a holder is a sender");
        self.by_count.remove(&(sender.count, key.0));
        sender.count -= 1;
        sender.debit -= u128::from(pending.debit);
        if sender.count == 0 {
            self.senders.remove(&key.0);
        } else {
            self.by_count.insert((sender.count, key.0));
        }
    }

    /// Drops every transaction whose nonce `state` has already used.
    pub fn prune(&mut self, state: &State) {
        let senders: Vec<PublicKey> = self.senders.keys().copied().collect();
        for signer in senders {
            let next = state.account(&signer).nonce;
            let stale: Vec<TxKey> = self
                .txs
                .range((signer, 0)..(signer, next))
                .map(|(key, _)| *key)
                .collect();
            for key in stale {
                self.remove(&key);
            }
        }
    }

    /// Up to `txs_max` transactions of at most `bytes_max` bytes together
    /// for a block on top of `state`, skipping those in `exclude` (already in
    /// blocks on their way to finality): one from each sender in turn, each
    /// sender's in nonce order with no gaps, starting after the sender the
    /// previous block ended on.
    pub fn select(
        &mut self,
        state: &State,
        txs_max: usize,
        bytes_max: usize,
        exclude: &BTreeSet<TxKey>,
    ) -> Vec<Vec<u8>> {
        let after = match self.cursor {
            Some(cursor) => self
                .senders
                .range((Bound::Excluded(cursor), Bound::Unbounded)),
            None => self.senders.range(..),
        };
        let before = match self.cursor {
            Some(cursor) => self.senders.range(..=cursor),
            // Everyone is already in `after`.
            None => self.senders.range(..PublicKey::MIN),
        };
        // A sender beyond the first `txs_max` gets nothing this block
        // anyway: the first round alone fills it.
        let mut turns: VecDeque<(PublicKey, u64)> = after
            .chain(before)
            .take(txs_max)
            .map(|(signer, _)| (*signer, state.account(signer).nonce))
            .collect();
        let (mut block, mut bytes) = (Vec::new(), 0usize);
        while block.len() < txs_max
            && let Some((signer, mut nonce)) = turns.pop_front()
        {
            // Nonces already in blocks on their way are used.
            while exclude.contains(&(signer, nonce)) {
                let Some(next) = nonce.checked_add(1) else {
                    break;
                };
                nonce = next;
            }
            let Some(pending) = self.txs.get(&(signer, nonce)) else {
                // A gap: what follows it cannot apply yet.
                continue;
            };
            if bytes + pending.bytes.len() > bytes_max {
                continue;
            }
            bytes += pending.bytes.len();
            block.push(pending.bytes.clone());
            self.cursor = Some(signer);
            if let Some(next) = nonce.checked_add(1) {
                turns.push_back((signer, next));
            }
        }
        block
    }

    fn sender_txs(&self, signer: PublicKey) -> impl DoubleEndedIterator<Item = (&TxKey, &Pending)> {
        self.txs.range((signer, 0)..=(signer, u64::MAX))
    }
}

/// The escrow a transaction acts on, if it names one its signer must own.
fn escrow_named(kind: &TxKind) -> Option<cairn_wire::ContentId> {
    match kind {
        TxKind::TopUpEscrow { job, .. } | TxKind::CloseEscrow { job } => Some(*job),
        TxKind::RecordLease { lease, .. } => Some(lease.job),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
