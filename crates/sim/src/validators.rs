//! The validators that make the ledger's blocks, as the market sees them.
//!
//! Consensus itself is `cairn-chain`'s, tested there on commonware's
//! deterministic runtime; what the market must survive is its liveness:
//! blocks that come late or not at all. So a view is led by validator
//! `view % n` (simplex rotates its leaders), and makes a block only when
//! that leader is up and on a side of any partition that holds a quorum
//! (`2f + 1` of `3f + 1`) of up validators; otherwise the view times out
//! and the next is tried. A node sends its transactions to one validator
//! (its `--ledger`), whose mempool only it proposes from: a validator that
//! is down or cut off holds them until it is back (a node's outbox sends
//! again after a restart, so they are late, never lost). Every validator
//! that applies a block applies the same one, so the ledger stays one state.

use cairn_wire::PublicKey;

/// How long a view waits for its leader's block before the next view:
/// `cairn-chain`'s leader timeout.
pub const VIEW_TIMEOUT_MS: u64 = 1_000;

pub struct Validators {
    up: Vec<bool>,
    /// Which side of the current partition each is on (all 0: none).
    side: Vec<u8>,
    view: u64,
    /// Crashes so far.
    pub crashes: u32,
    /// Views that made no block.
    pub views_timed_out: u64,
}

impl Validators {
    pub fn new(n: u32) -> Self {
        let n = n.max(1) as usize;
        Self {
            up: vec![true; n],
            side: vec![0; n],
            view: 0,
            crashes: 0,
            views_timed_out: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.up.len()
    }

    /// The validator a node with `key` sends its transactions to.
    pub fn home(&self, key: &PublicKey) -> usize {
        usize::from(key.as_bytes()[0]) % self.len()
    }

    /// Starts the next view: its leader, if it can make a block (up, and
    /// with a quorum of up validators on its side); `None` if the view
    /// times out.
    pub fn next_view(&mut self) -> Option<usize> {
        let n = self.len();
        let leader = (self.view % n as u64) as usize;
        self.view += 1;
        let quorum = n - (n - 1) / 3;
        let with_leader = (0..n)
            .filter(|&v| self.up[v] && self.side[v] == self.side[leader])
            .count();
        if self.up[leader] && with_leader >= quorum {
            Some(leader)
        } else {
            self.views_timed_out += 1;
            None
        }
    }

    pub fn crash(&mut self, validator: usize) {
        self.up[validator] = false;
        self.crashes += 1;
    }

    pub fn restart(&mut self, validator: usize) {
        self.up[validator] = true;
    }

    /// Cuts `cut` off from the others, until healed.
    pub fn partition(&mut self, cut: &[u32]) {
        for &v in cut {
            if let Some(side) = self.side.get_mut(v as usize) {
                *side = 1;
            }
        }
    }

    pub fn heal(&mut self) {
        self.side.fill(0);
    }
}
