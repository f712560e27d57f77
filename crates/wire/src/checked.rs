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
//! A fixed table: 65,536 entries of 33 bytes (2.1 MiB, allocated at the
//! first check) in 16 shards, each behind its own lock; a new entry
//! replaces whatever held its slot. Without randomness for its key (the
//! operating system gives none), there is no cache: every check does the
//! curve's work.

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

impl Cache {
    fn shard(&self, entry: &Entry) -> (std::sync::MutexGuard<'_, Vec<Option<Entry>>>, usize) {
        let mut low = [0u8; 8];
        low.copy_from_slice(&entry.0[..8]);
        let index = u64::from_le_bytes(low) as usize;
        let shard = self.shards[index % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (shard, (index / SHARDS) % SLOTS_PER_SHARD)
    }
}

/// Whether checks use the cache ([`remember_signatures`]).
static ON: AtomicBool = AtomicBool::new(true);

/// Turns the cache on or off for the whole process (it is on). Off, every
/// check does the curve's work: for a benchmark that runs several nodes in
/// one process, where each real node would check for itself.
pub fn remember_signatures(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

static CACHE: LazyLock<Option<Cache>> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).ok()?;
    Some(Cache {
        key,
        shards: (0..SHARDS)
            .map(|_| Mutex::new(vec![None; SLOTS_PER_SHARD]))
            .collect(),
    })
});

/// The cache, unless it is off (or has no key).
fn cache() -> Option<&'static Cache> {
    #[cfg(test)]
    if tests::BYPASS.get() {
        return None;
    }
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    CACHE.as_ref()
}

impl Entry {
    /// The entry of `signature` by `key` over `message`; none while the
    /// cache is off.
    pub(crate) fn of(key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> Option<Self> {
        let mut hasher = blake3::Hasher::new_keyed(&cache()?.key);
        hasher.update(key);
        hasher.update(signature);
        hasher.update(message);
        Some(Self(*hasher.finalize().as_bytes()))
    }

    /// Whether this signature was found valid before.
    pub(crate) fn is_known(&self) -> bool {
        cache().is_some_and(|cache| {
            let (slots, slot) = cache.shard(self);
            slots[slot] == Some(*self)
        })
    }

    /// Remembers this signature as valid: call only after it passed.
    pub(crate) fn remember(self) {
        if let Some(cache) = cache() {
            let (mut slots, slot) = cache.shard(&self);
            slots[slot] = Some(self);
        }
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
        let entry = Entry::of(&key, &signature, b"message").unwrap();
        let others = [
            Entry::of(&[3; 32], &signature, b"message"),
            Entry::of(&key, &[4; 64], b"message"),
            Entry::of(&key, &signature, b"messagf"),
            Entry::of(&key, &signature, b"messag"),
        ]
        .map(Option::unwrap);
        assert!(!entry.is_known());
        entry.remember();
        assert!(entry.is_known());
        for other in others {
            assert!(other != entry && !other.is_known());
        }
        bypass();
        assert!(
            Entry::of(&key, &signature, b"message").is_none(),
            "bypassed: no entry, so nothing is looked up or remembered"
        );
    }
}
