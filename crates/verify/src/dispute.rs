//! The bisection game that settles two different results for one task.
//!
//! Each side's execution is a trace of hashes at positions `0..=n`:
//! position 0 is the task itself (agreed by definition), position 1 the
//! state after the guest's start-up, each later position the state after one
//! more checkpoint step (stack empty, so the state is memory, globals and
//! what was written), and position `n` the result digest. Positions past a
//! side's `n` repeat its digest, so both traces have the same length.
//!
//! The sides disagree at the end. Each round asks both for their hashes at
//! up to `arity - 1` points strictly inside the interval `(lo, hi)` where
//! they agree at `lo` and disagree at `hi`; the first point where they
//! disagree becomes `hi` and the point before it `lo`. When `hi = lo + 1`,
//! a referee runs that one transition from the agreed state and whichever
//! side claimed something else is wrong. A side that does not answer a
//! round in time, or answers malformed, loses.
//!
//! The referee's cost is one segment: the task's start-up or one step, set
//! by how the guest splits its work, not by the task's length.

use std::collections::BTreeMap;

use cairn_wire::ContentId;

/// One side of a dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// The side with the more credible result at the start.
    A,
    /// The other side.
    B,
}

impl Side {
    /// Both sides, in order.
    pub const BOTH: [Side; 2] = [Side::A, Side::B];

    fn index(self) -> usize {
        self as usize
    }
}

/// A state hash at one position of a trace.
pub type StateHash = [u8; 32];

/// What the game needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Both sides must say how many positions their traces have.
    Lengths,
    /// Both sides must give their hashes at these positions (a side is only
    /// asked for positions below its length: the rest are its digest).
    Hashes {
        /// Ascending positions.
        positions: Vec<u64>,
    },
    /// The referee must run the transition out of `position` from the
    /// agreed state and report the hash it reaches.
    Referee(Segment),
    /// Decided.
    Done(Verdict),
}

/// The one transition a referee re-executes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The agreed position; the referee computes position + 1.
    pub position: u64,
    /// The agreed hash at `position`; `None` at position 0 (the task itself).
    pub agreed: Option<StateHash>,
    /// What side A and side B claim at `position + 1`.
    pub claims: [StateHash; 2],
}

/// How a dispute ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The sides proven wrong (one or both).
    pub losers: Vec<Side>,
    /// Why, for the transcript.
    pub reason: String,
}

/// An answer that breaks the rules; the side giving it loses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Foul {
    /// A length of zero, or one past the limit.
    #[error("a trace length of {0} positions is out of range")]
    BadLength(u64),
    /// The wrong number of hashes.
    #[error("expected {expected} hashes, got {got}")]
    WrongCount {
        /// Asked for.
        expected: usize,
        /// Given.
        got: usize,
    },
    /// An answer nobody asked for (refused; not held against the side).
    #[error("no answer is expected from this side now")]
    Unexpected,
}

/// Longest trace a side may claim: bounds the rounds (log base arity).
pub const TRACE_POSITIONS_MAX: u64 = 1 << 40;

/// The state of one dispute: pure, with time passed in.
#[derive(Clone, Debug)]
pub struct Game {
    arity: u64,
    round_timeout_ms: u64,
    digests: [StateHash; 2],
    lengths: [Option<u64>; 2],
    claims: [BTreeMap<u64, StateHash>; 2],
    lo: u64,
    hi: u64,
    asked: Vec<u64>,
    answered: [bool; 2],
    deadline_ms: u64,
    need: Need,
    rounds: u32,
}

impl Game {
    /// A dispute between result `a` and result `b`, starting at `now_ms`.
    pub fn new(a: ContentId, b: ContentId, arity: u64, round_timeout_ms: u64, now_ms: u64) -> Self {
        assert!(arity >= 2);
        assert_ne!(a, b, "a dispute needs two different results");
        Self {
            arity,
            round_timeout_ms,
            digests: [*a.as_bytes(), *b.as_bytes()],
            lengths: [None, None],
            claims: [BTreeMap::new(), BTreeMap::new()],
            lo: 0,
            hi: 0,
            asked: Vec::new(),
            answered: [false; 2],
            deadline_ms: now_ms.saturating_add(round_timeout_ms),
            need: Need::Lengths,
            rounds: 0,
        }
    }

    /// Gives the sides `trace_ms` more for the first round: to answer it, a
    /// side re-runs the whole task with checkpoints, which takes time in
    /// proportion to the task, while a liar can answer at once. Later
    /// rounds are answered from that trace.
    pub fn allowing_trace(mut self, trace_ms: u64) -> Self {
        if self.rounds == 0 && self.need == Need::Lengths {
            self.deadline_ms = self.deadline_ms.saturating_add(trace_ms);
        }
        self
    }

    /// What the game waits for.
    pub fn need(&self) -> &Need {
        &self.need
    }

    /// The positions `side` must answer now (empty once it has).
    pub fn asked_of(&self, side: Side) -> Vec<u64> {
        match (&self.need, self.answered[side.index()]) {
            (Need::Hashes { .. }, false) => {
                let len = self.lengths[side.index()].unwrap_or(0);
                self.asked.iter().copied().filter(|&p| p < len).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Whether the game waits for an answer from `side` now.
    pub fn awaits(&self, side: Side) -> bool {
        match self.need {
            Need::Lengths => self.lengths[side.index()].is_none(),
            Need::Hashes { .. } => !self.answered[side.index()],
            _ => false,
        }
    }

    /// Rounds of hashes asked so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Every hash each side has claimed, by position: the transcript.
    pub fn claims(&self, side: Side) -> &BTreeMap<u64, StateHash> {
        &self.claims[side.index()]
    }

    /// `side` says its trace has `positions` positions (its digest is the
    /// last).
    pub fn length(&mut self, side: Side, positions: u64, now_ms: u64) -> Result<(), Foul> {
        // A repeated or late answer is not cheating: refuse it, nothing more.
        if self.need != Need::Lengths || self.lengths[side.index()].is_some() {
            return Err(Foul::Unexpected);
        }
        if !(2..=TRACE_POSITIONS_MAX).contains(&positions) {
            return Err(self.foul(side, Foul::BadLength(positions)));
        }
        self.lengths[side.index()] = Some(positions);
        if let [Some(a), Some(b)] = self.lengths {
            self.hi = a.max(b) - 1;
            self.narrow(now_ms);
        }
        Ok(())
    }

    /// `side`'s hashes at [`Game::asked_of`]'s positions, in order.
    pub fn hashes(&mut self, side: Side, hashes: &[StateHash], now_ms: u64) -> Result<(), Foul> {
        if !matches!(self.need, Need::Hashes { .. }) || self.answered[side.index()] {
            return Err(Foul::Unexpected);
        }
        let asked = self.asked_of(side);
        if asked.len() != hashes.len() {
            let foul = Foul::WrongCount {
                expected: asked.len(),
                got: hashes.len(),
            };
            return Err(self.foul(side, foul));
        }
        for (position, hash) in asked.into_iter().zip(hashes) {
            self.claims[side.index()].insert(position, *hash);
        }
        self.answered[side.index()] = true;
        if self.answered == [true, true] {
            self.close_round(now_ms);
        }
        Ok(())
    }

    /// Both sides answered: keep the first asked point (or `hi`) where they
    /// disagree, and the point before it.
    fn close_round(&mut self, now_ms: u64) {
        let mut lo = self.lo;
        let mut hi = self.hi;
        for &p in &self.asked {
            if self.claim(Side::A, p) != self.claim(Side::B, p) {
                hi = p;
                break;
            }
            lo = p;
        }
        self.lo = lo;
        self.hi = hi;
        self.narrow(now_ms);
    }

    /// The referee reached `hash` from the agreed state.
    pub fn referee(&mut self, hash: StateHash) -> Result<&Verdict, Foul> {
        let Need::Referee(segment) = &self.need else {
            return Err(Foul::Unexpected);
        };
        let losers: Vec<Side> = Side::BOTH
            .into_iter()
            .filter(|side| segment.claims[side.index()] != hash)
            .collect();
        let reason = format!(
            "re-executing from position {} reached {}; {} claimed otherwise",
            segment.position,
            short(&hash),
            names(&losers)
        );
        self.need = Need::Done(Verdict { losers, reason });
        let Need::Done(verdict) = &self.need else {
            unreachable!()
        };
        Ok(verdict)
    }

    /// When [`tick`](Self::tick) would end the game if the answers owed
    /// have not come: `None` while no side owes one (the referee has the
    /// last step, or the game is over).
    pub fn deadline_ms(&self) -> Option<u64> {
        match self.need {
            Need::Lengths | Need::Hashes { .. } => Some(self.deadline_ms),
            Need::Referee(_) | Need::Done(_) => None,
        }
    }

    /// Ends the game against every side that owes an answer past the
    /// deadline. Returns the verdict if this call decided it.
    pub fn tick(&mut self, now_ms: u64) -> Option<&Verdict> {
        if now_ms < self.deadline_ms {
            return None;
        }
        let late: Vec<Side> = match &self.need {
            Need::Lengths => Side::BOTH
                .into_iter()
                .filter(|s| self.lengths[s.index()].is_none())
                .collect(),
            Need::Hashes { .. } => Side::BOTH
                .into_iter()
                .filter(|s| !self.answered[s.index()])
                .collect(),
            Need::Referee(_) | Need::Done(_) => return None,
        };
        let reason = format!("{} did not answer in time", names(&late));
        self.need = Need::Done(Verdict {
            losers: late,
            reason,
        });
        match &self.need {
            Need::Done(verdict) => Some(verdict),
            _ => unreachable!(),
        }
    }

    /// The hash `side` claims at `position` (its digest from its length on).
    fn claim(&self, side: Side, position: u64) -> Option<StateHash> {
        let len = self.lengths[side.index()]?;
        if position + 1 >= len {
            return Some(self.digests[side.index()]);
        }
        self.claims[side.index()].get(&position).copied()
    }

    fn foul(&mut self, side: Side, foul: Foul) -> Foul {
        if !matches!(self.need, Need::Done(_)) {
            self.need = Need::Done(Verdict {
                losers: vec![side],
                reason: format!("side {side:?} broke the rules: {foul}"),
            });
        }
        foul
    }

    /// Asks the next round, or hands the last segment to the referee.
    fn narrow(&mut self, now_ms: u64) {
        self.answered = [false; 2];
        self.deadline_ms = now_ms + self.round_timeout_ms;
        if self.hi > self.lo + 1 {
            let span = self.hi - self.lo;
            let mut points: Vec<u64> = (1..self.arity)
                .map(|i| self.lo + span * i / self.arity)
                .filter(|&p| p > self.lo && p < self.hi)
                .collect();
            points.dedup();
            self.asked = points.clone();
            self.rounds += 1;
            self.need = Need::Hashes { positions: points };
            // A side whose length puts every asked point in its digest has
            // nothing to send.
            for side in Side::BOTH {
                if self.asked_of(side).is_empty() {
                    self.answered[side.index()] = true;
                }
            }
            if self.answered == [true, true] {
                // Every asked point is past both traces' ends.
                self.close_round(now_ms);
            }
            return;
        }
        let claims = [
            self.claim(Side::A, self.hi).expect("answered"),
            self.claim(Side::B, self.hi).expect("answered"),
        ];
        let agreed = (self.lo > 0).then(|| self.claim(Side::A, self.lo).expect("answered"));
        // An agreed digest has only one successor: itself. No execution.
        let digest_agreed = Side::BOTH
            .into_iter()
            .any(|side| self.lo > 0 && self.lo + 1 >= self.lengths[side.index()].expect("known"));
        if let (true, Some(agreed)) = (digest_agreed, agreed) {
            let losers: Vec<Side> = Side::BOTH
                .into_iter()
                .filter(|side| claims[side.index()] != agreed)
                .collect();
            let reason = format!(
                "both reached result {} at position {}; {} then claimed another",
                short(&agreed),
                self.lo,
                names(&losers)
            );
            self.need = Need::Done(Verdict { losers, reason });
            return;
        }
        self.need = Need::Referee(Segment {
            position: self.lo,
            agreed,
            claims,
        });
    }
}

fn short(hash: &StateHash) -> String {
    cairn_wire::hex(&hash[..4])
}

fn names(sides: &[Side]) -> String {
    match sides {
        [Side::A] => "side A".into(),
        [Side::B] => "side B".into(),
        _ => "both sides".into(),
    }
}
