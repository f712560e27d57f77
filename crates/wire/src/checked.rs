//! Signatures this process found valid, remembered so that checking one
//! again costs a hash instead of a curve operation.
//!
//! The same signature is often checked more than once in one process: a
//! validator checks a transaction when its mempool admits it and again in
//! each block that carries it, and a check made ahead, off a core's thread
//! (the simulation's signature stage, see `cairn-sim`), leaves the core's
//! own check a lookup. As Bitcoin Core's signature cache does, only valid
//! signatures are remembered, each as a keyed digest of the whole (key,
//! signature, message): a hit means that exact triple passed the one rule
//! ([`PublicKey::verify`](crate::PublicKey::verify)), so the cache changes
//! how fast an answer comes, never what it is. The digest's key is drawn
//! per process, so no one can choose messages whose entries push out
//! another's.
//!
//! A fixed table: 65,536 entries of 32 bytes (2 MiB, allocated at the first
//! check) in 16 shards, each behind its own lock; a new entry replaces
//! whatever held its slot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

const SHARDS: usize = 16;
const SLOTS_PER_SHARD: usize = 4_096;

/// The digest of one checked (key, signature, message).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry([u8; 32]);

struct Cache {
    key: [u8; 32],
    shards: Vec<Mutex<Vec<Option<Entry>>>>,
}

/// Whether checks use the cache ([`remember_signatures`]).
static ON: AtomicBool = AtomicBool::new(true);

/// Turns the cache on or off for the whole process (it is on). Off, every
/// check does the curve's work: for a benchmark that runs several nodes in
/// one process, where each real node would check for itself.
pub fn remember_signatures(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

static CACHE: LazyLock<Cache> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system has no randomness source");
    Cache {
        key,
        shards: (0..SHARDS)
            .map(|_| Mutex::new(vec![None; SLOTS_PER_SHARD]))
            .collect(),
    }
});

impl Entry {
    /// The entry of `signature` by `key` over `message`.
    pub(crate) fn of(key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_keyed(&CACHE.key);
        hasher.update(key);
        hasher.update(signature);
        hasher.update(message);
        Self(*hasher.finalize().as_bytes())
    }

    fn place(&self) -> (usize, usize) {
        let mut low = [0u8; 8];
        low.copy_from_slice(&self.0[..8]);
        let index = u64::from_le_bytes(low) as usize;
        (index % SHARDS, (index / SHARDS) % SLOTS_PER_SHARD)
    }

    /// Whether this signature was found valid before.
    pub(crate) fn is_known(&self) -> bool {
        #[cfg(test)]
        if tests::BYPASS.get() {
            return false;
        }
        if !ON.load(Ordering::Relaxed) {
            return false;
        }
        let (shard, slot) = self.place();
        let slots = CACHE.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slots[slot] == Some(*self)
    }

    /// Remembers this signature as valid: call only after it passed.
    pub(crate) fn remember(self) {
        if !ON.load(Ordering::Relaxed) {
            return;
        }
        let (shard, slot) = self.place();
        CACHE.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[slot] = Some(self);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::Entry;

    thread_local! {
        /// Set by a test that compares single checks with batches: once
        /// either remembered a signature, the other would only look it up.
        pub(crate) static BYPASS: Cell<bool> = const { Cell::new(false) };
    }

    /// Every check on this thread does the curve's work.
    pub(crate) fn bypass() {
        BYPASS.set(true);
    }

    #[test]
    fn an_entry_is_known_once_remembered_and_names_its_whole_triple() {
        let (key, signature) = ([1; 32], [2; 64]);
        let entry = Entry::of(&key, &signature, b"message");
        let others = [
            Entry::of(&[3; 32], &signature, b"message"),
            Entry::of(&key, &[4; 64], b"message"),
            Entry::of(&key, &signature, b"messagf"),
            // The fields' bounds are fixed: moving a byte across them is
            // another triple.
            Entry::of(&key, &signature, b"essage"),
        ];
        assert!(!entry.is_known());
        entry.remember();
        assert!(entry.is_known());
        for other in others {
            assert!(other != entry && !other.is_known());
        }
    }
}
