//! The state root: a binary Merkle tree over every entry of the state, in a
//! fixed order, so a client holding only the root can check one entry.

use cairn_wire::{ContentId, PublicKey};

use crate::{Account, State};

/// A proof that a leaf is at `index` of a tree with `count` leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The leaf's position.
    pub index: u64,
    /// How many leaves the tree has.
    pub count: u64,
    /// Sibling hashes from the leaf up (levels where the node has no
    /// sibling contribute none).
    pub siblings: Vec<ContentId>,
}

const LEAF: u8 = 0;
const NODE: u8 = 1;

fn leaf(parts: &[&[u8]]) -> ContentId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[LEAF]);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn node(left: &ContentId, right: &ContentId) -> ContentId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE]);
    hasher.update(left.as_bytes());
    hasher.update(right.as_bytes());
    hasher.finalize().into()
}

/// The leaf of an account.
pub(crate) fn account_leaf(key: &PublicKey, account: &Account) -> ContentId {
    leaf(&[
        b"account",
        key.as_bytes(),
        &account.balance.to_be_bytes(),
        &account.nonce.to_be_bytes(),
    ])
}

/// Every leaf of `state`, in order: the header, then each table in key
/// order. Tags keep entries of different tables from ever colliding.
pub(crate) fn leaves(state: &State) -> Vec<ContentId> {
    let p = &state.params;
    let mut out = vec![leaf(&[
        b"header",
        state.chain.as_bytes(),
        &state.height.to_be_bytes(),
        &state.supply.to_be_bytes(),
        &state.fee_pool.to_be_bytes(),
        &state.burned.to_be_bytes(),
        &p.stake_min.to_be_bytes(),
        &p.unbonding_blocks.to_be_bytes(),
        &p.fee_bps.to_be_bytes(),
        &p.slash_bps.to_be_bytes(),
        &p.slash_reward_bps.to_be_bytes(),
    ])];
    out.extend(
        state
            .validators
            .iter()
            .map(|k| leaf(&[b"validator", k.as_bytes()])),
    );
    out.extend(state.accounts.iter().map(|(k, a)| account_leaf(k, a)));
    out.extend(state.providers.iter().map(|(k, p)| {
        let c = &p.capabilities;
        let r = &p.reputation;
        leaf(&[
            b"provider",
            k.as_bytes(),
            &p.stake.to_be_bytes(),
            &c.cores.to_be_bytes(),
            &c.memory_mib.to_be_bytes(),
            &c.gpus.to_be_bytes(),
            &c.score.to_be_bytes(),
            &(p.endpoint.len() as u32).to_be_bytes(),
            p.endpoint.as_bytes(),
            &r.tasks_settled.to_be_bytes(),
            &r.fuel_settled.to_be_bytes(),
            &r.slashes.to_be_bytes(),
            &p.liable_until.to_be_bytes(),
        ])
    }));
    out.extend(state.unbonding.iter().map(|((height, k), amount)| {
        leaf(&[
            b"unbonding",
            &height.to_be_bytes(),
            k.as_bytes(),
            &amount.to_be_bytes(),
        ])
    }));
    out.extend(state.escrows.iter().map(|(job, e)| {
        leaf(&[
            b"escrow",
            job.as_bytes(),
            e.owner.as_bytes(),
            &e.balance.to_be_bytes(),
            &e.leases_until.to_be_bytes(),
            &[u8::from(e.closing)],
        ])
    }));
    out.extend(
        state
            .leases
            .keys()
            .map(|id| leaf(&[b"lease", id.as_bytes()])),
    );
    out.extend(state.settled.iter().map(|((lease, task), paid)| {
        leaf(&[
            b"settled",
            lease.as_bytes(),
            &task.to_be_bytes(),
            &paid.to_be_bytes(),
        ])
    }));
    out.extend(
        state
            .slashed
            .iter()
            .map(|(lease, task)| leaf(&[b"slashed", lease.as_bytes(), &task.to_be_bytes()])),
    );
    out.extend(
        state
            .clawed
            .iter()
            .map(|(lease, task)| leaf(&[b"clawed", lease.as_bytes(), &task.to_be_bytes()])),
    );
    out.extend(
        state
            .challenges
            .iter()
            .map(|((lease, task), (commitment, deadline))| {
                leaf(&[
                    b"challenge",
                    lease.as_bytes(),
                    &task.to_be_bytes(),
                    commitment,
                    &deadline.to_be_bytes(),
                ])
            }),
    );
    out
}

/// The level above `level`: pairs hashed together, an odd last node
/// promoted unchanged.
fn parent_level(level: &[ContentId]) -> Vec<ContentId> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node(left, right),
            [single] => *single,
            _ => unreachable!("chunks of two"),
        })
        .collect()
}

/// The root of the tree over `leaves`.
pub(crate) fn root(leaves: &[ContentId]) -> ContentId {
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = parent_level(&level);
    }
    level.first().copied().unwrap_or(ContentId::of(b""))
}

pub(crate) fn prove(leaves: &[ContentId], index: usize) -> Proof {
    let mut siblings = Vec::new();
    let mut level = leaves.to_vec();
    let mut position = index;
    while level.len() > 1 {
        let sibling = position ^ 1;
        if sibling < level.len() {
            siblings.push(level[sibling]);
        }
        level = parent_level(&level);
        position /= 2;
    }
    Proof {
        index: index as u64,
        count: leaves.len() as u64,
        siblings,
    }
}

/// Checks that `key` holds `account` in the state whose root is `root`.
pub fn verify_proof(root: &ContentId, key: &PublicKey, account: &Account, proof: &Proof) -> bool {
    if proof.index >= proof.count {
        return false;
    }
    let mut hash = account_leaf(key, account);
    let mut position = proof.index;
    let mut width = proof.count;
    let mut siblings = proof.siblings.iter();
    while width > 1 {
        let sibling = position ^ 1;
        if sibling < width {
            let Some(other) = siblings.next() else {
                return false;
            };
            hash = if position.is_multiple_of(2) {
                node(&hash, other)
            } else {
                node(other, &hash)
            };
        }
        position /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && hash == *root
}
