//! The state root: a Merkle tree over every row of the state (see
//! `snapshot.rs`), kept up to date as rows change, so that a block costs
//! hashes for what it changed and not for everything the ledger holds.
//!
//! A row's place is fixed by its key alone: the BLAKE3 hash of the key (its
//! path) picks one of 2^16 buckets, a bucket's hash covers the leaves of its
//! rows in path order, and a binary tree 16 levels high covers the buckets
//! (an empty subtree has a fixed hash, so only the non-empty ones are
//! stored). A changed row rehashes its bucket (a handful of leaves at a
//! million rows) and the 16 nodes above it. A client holding only the root
//! checks one row with its bucket's leaves and 16 sibling hashes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use cairn_wire::{ContentId, PublicKey};

use crate::{Account, Change};

/// The tree's height above the buckets.
const LEVELS: usize = 16;

const LEAF: u8 = 0;
const NODE: u8 = 1;
const BUCKET: u8 = 2;

/// A proof that a row is in the state under a root: the leaves of the
/// row's bucket and the sibling hashes from the bucket up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The leaves of the row's bucket, in path order.
    pub bucket: Vec<ContentId>,
    /// One sibling hash per level, from the bucket up.
    pub siblings: Vec<ContentId>,
}

fn leaf(key: &[u8], value: &[u8]) -> ContentId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[LEAF]);
    hasher.update(&(key.len() as u32).to_be_bytes());
    hasher.update(key);
    hasher.update(value);
    hasher.finalize().into()
}

fn node(left: &ContentId, right: &ContentId) -> ContentId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE]);
    hasher.update(left.as_bytes());
    hasher.update(right.as_bytes());
    hasher.finalize().into()
}

fn bucket_hash<'a>(leaves: impl IntoIterator<Item = &'a ContentId>) -> ContentId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[BUCKET]);
    for leaf in leaves {
        hasher.update(leaf.as_bytes());
    }
    hasher.finalize().into()
}

fn path(key: &[u8]) -> [u8; 32] {
    *blake3::hash(key).as_bytes()
}

fn bucket_of(path: &[u8; 32]) -> u32 {
    u32::from(u16::from_be_bytes([path[0], path[1]]))
}

/// The hash of an empty subtree at each level (0: an empty bucket).
fn empty(level: usize) -> ContentId {
    static EMPTY: OnceLock<[ContentId; LEVELS + 1]> = OnceLock::new();
    EMPTY.get_or_init(|| {
        let mut out = [bucket_hash([]); LEVELS + 1];
        for level in 1..=LEVELS {
            out[level] = node(&out[level - 1], &out[level - 1]);
        }
        out
    })[level]
}

/// The tree, kept beside the state's tables.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tree {
    /// Every row's leaf, by path.
    leaves: BTreeMap<[u8; 32], ContentId>,
    /// The hash of every non-empty subtree, by (level, index); level 0 holds
    /// the buckets.
    nodes: HashMap<(u8, u32), ContentId>,
    /// Buckets whose leaves changed since the hashes were last brought up
    /// to date.
    stale: BTreeSet<u32>,
    /// Whether something stores the state's rows (it took changes once):
    /// then rows folded in by a look at the root wait here to be taken.
    stored: bool,
    unsaved: Vec<Change>,
}

/// The tree is derived from the tables it sits beside: two states with
/// equal tables are equal whatever their trees have folded in so far.
impl PartialEq for Tree {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Tree {}

impl Tree {
    /// Keeps `changes`, folded in by a look at the root, for the store (if
    /// there is one).
    pub(crate) fn keep(&mut self, changes: Vec<Change>) {
        if self.stored {
            self.unsaved.extend(changes);
        }
    }

    /// The rows kept for the store; from now on, rows are kept.
    pub(crate) fn take_unsaved(&mut self) -> Vec<Change> {
        self.stored = true;
        std::mem::take(&mut self.unsaved)
    }

    /// Sets the row at `key` to `value`, or removes it.
    pub(crate) fn set(&mut self, key: &[u8], value: Option<&[u8]>) {
        let path = path(key);
        match value {
            Some(value) => self.leaves.insert(path, leaf(key, value)),
            None => self.leaves.remove(&path),
        };
        self.stale.insert(bucket_of(&path));
    }

    fn bucket_leaves(&self, bucket: u32) -> impl Iterator<Item = &ContentId> {
        let [_, _, hi, lo] = bucket.to_be_bytes();
        let mut from = [0; 32];
        let mut to = [0xff; 32];
        (from[0], from[1], to[0], to[1]) = (hi, lo, hi, lo);
        self.leaves.range(from..=to).map(|(_, leaf)| leaf)
    }

    fn hash_at(&self, level: usize, index: u32) -> ContentId {
        self.nodes
            .get(&(level as u8, index))
            .copied()
            .unwrap_or_else(|| empty(level))
    }

    fn store(&mut self, level: usize, index: u32, hash: ContentId) {
        if hash == empty(level) {
            self.nodes.remove(&(level as u8, index));
        } else {
            self.nodes.insert((level as u8, index), hash);
        }
    }

    /// The root, after rehashing what changed.
    pub(crate) fn root(&mut self) -> ContentId {
        let mut stale = std::mem::take(&mut self.stale);
        for &bucket in &stale {
            let hash = bucket_hash(self.bucket_leaves(bucket));
            self.store(0, bucket, hash);
        }
        for level in 1..=LEVELS {
            stale = stale.into_iter().map(|i| i / 2).collect();
            for &index in &stale {
                let left = self.hash_at(level - 1, index * 2);
                let right = self.hash_at(level - 1, index * 2 + 1);
                self.store(level, index, node(&left, &right));
            }
        }
        self.hash_at(LEVELS, 0)
    }

    /// A proof of the row at `key` against [`Tree::root`] (which must have
    /// been brought up to date), or `None` if there is no such row.
    pub(crate) fn prove(&self, key: &[u8]) -> Option<Proof> {
        debug_assert!(self.stale.is_empty(), "the root is up to date");
        let path = path(key);
        self.leaves.get(&path)?;
        let mut index = bucket_of(&path);
        let bucket = self.bucket_leaves(index).copied().collect();
        let mut siblings = Vec::with_capacity(LEVELS);
        for level in 0..LEVELS {
            siblings.push(self.hash_at(level, index ^ 1));
            index /= 2;
        }
        Some(Proof { bucket, siblings })
    }
}

/// Checks that `key` holds `account` in the state whose root is `root`.
pub fn verify_proof(root: &ContentId, key: &PublicKey, account: &Account, proof: &Proof) -> bool {
    let (row_key, value) = crate::snapshot::account_row(key, account);
    if proof.siblings.len() != LEVELS || !proof.bucket.contains(&leaf(&row_key, &value)) {
        return false;
    }
    let mut hash = bucket_hash(&proof.bucket);
    let mut index = bucket_of(&path(&row_key));
    for sibling in &proof.siblings {
        hash = if index.is_multiple_of(2) {
            node(&hash, sibling)
        } else {
            node(sibling, &hash)
        };
        index /= 2;
    }
    hash == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::account_row;
    use cairn_wire::Keypair;

    /// A proof opens one balance under one root: another balance, another
    /// root, another account's proof, a bucket with a leaf planted in it or
    /// swapped for another bucket's, and sibling lists of the wrong length
    /// all fail.
    #[test]
    fn forged_proofs_are_refused() {
        let mut tree = Tree::default();
        let keys: Vec<PublicKey> = (0..300u16)
            .map(|i| {
                let mut seed = [7; 32];
                seed[..2].copy_from_slice(&i.to_le_bytes());
                Keypair::from_seed(seed).public()
            })
            .collect();
        let account = |i: usize| Account {
            balance: 1_000 + i as u64,
            nonce: 0,
        };
        for (i, key) in keys.iter().enumerate() {
            let (k, v) = account_row(key, &account(i));
            tree.set(&k, Some(&v));
        }
        let root = tree.root();
        let proof = |i: usize| tree.prove(&account_row(&keys[i], &account(i)).0).unwrap();
        let good = proof(0);
        assert!(verify_proof(&root, &keys[0], &account(0), &good));
        let mut richer = account(0);
        richer.balance += 1;
        assert!(!verify_proof(&root, &keys[0], &richer, &good));
        assert!(!verify_proof(
            &ContentId::of(b"other"),
            &keys[0],
            &account(0),
            &good
        ));
        assert!(
            !verify_proof(&root, &keys[1], &account(1), &good),
            "another's proof"
        );
        let mut forged = Vec::new();
        let mut added = good.clone();
        added.bucket.push(ContentId::of(b"planted"));
        forged.push(added);
        let mut short = good.clone();
        short.siblings.pop();
        forged.push(short);
        let mut long = good.clone();
        long.siblings.push(empty(0));
        forged.push(long);
        let other = proof(1);
        let mut swapped = good.clone();
        swapped.bucket = other.bucket.clone();
        swapped.bucket.push(leaf(
            &account_row(&keys[0], &account(0)).0,
            &account_row(&keys[0], &account(0)).1,
        ));
        forged.push(swapped);
        for proof in &forged {
            assert!(
                !verify_proof(&root, &keys[0], &account(0), proof),
                "{proof:?}"
            );
        }
    }

    /// The root kept up to date row by row equals the root built from the
    /// same rows at once, whatever the order and however many changes come
    /// between two looks.
    #[test]
    fn kept_up_to_date_equals_built_at_once() {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..2_000u32)
            .map(|i| (i.to_be_bytes().to_vec(), (i * 7).to_be_bytes().to_vec()))
            .collect();
        let mut kept = Tree::default();
        let empty_root = kept.root();
        for (i, (k, v)) in rows.iter().enumerate() {
            kept.set(k, Some(v));
            if i % 97 == 0 {
                kept.root();
            }
        }
        // Changed, then removed and put back, then one left removed.
        kept.set(&rows[5].0, Some(b"changed"));
        kept.set(&rows[5].0, Some(&rows[5].1));
        kept.set(&rows[9].0, None);
        let mut built = Tree::default();
        for (k, v) in rows.iter().rev().filter(|(k, _)| *k != rows[9].0) {
            built.set(k, Some(v));
        }
        let root = kept.root();
        assert_eq!(root, built.root());
        assert_ne!(root, empty_root);
        kept.set(&rows[9].0, Some(&rows[9].1));
        assert_ne!(kept.root(), root, "a row counts");
        for (k, _) in &rows {
            kept.set(k, None);
        }
        assert_eq!(kept.root(), empty_root);
        assert!(kept.nodes.is_empty(), "an empty tree stores no node");
    }
}
