//! What a dispute's sides sign, and the case validators judge.
//!
//! A provider answers every dispute question with a signed [`TraceClaim`]:
//! what it ran, how long its trace is, its result, and its state hashes at
//! the positions asked. Bisection ends at one position `p` where the sides
//! agree and the next where they do not. The one side whose own signed
//! claims say "state `p` is X, state `p + 1` is Y" while one step from X
//! reaches another state has signed an impossible execution: that alone
//! convicts it, whoever asks. So a validator judges a [`Case`] from the
//! accused's own signatures and one re-executed step, and trusts the party
//! that brings it for nothing: a requester cannot put words in an honest
//! provider's mouth, and an honest provider never signs an impossible step.

use bytes::BufMut;
use cairn_ledger::Receipt;
use cairn_wire::codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use cairn_wire::{ContentId, Signed};

use crate::{Assignment, DISPUTE_POSITIONS_MAX, FileRef, Terms, encoded, read_len, write_list};

/// A provider's signature over a [`TraceClaim`] uses this namespace.
pub const CLAIM_NAMESPACE: &[u8] = b"cairn/trace-claim";

/// Claims of one side a case carries: enough to cover two positions.
pub const CASE_CLAIMS_MAX: usize = 2;

/// A provider's signed account of its trace of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceClaim {
    /// The lease it ran the task under.
    pub lease: ContentId,
    /// The task's index in the job.
    pub task: u64,
    /// [`run_digest`] of the terms and assignment it ran.
    pub run: [u8; 32],
    /// How many positions its trace has (the task, the states, the digest).
    pub positions: u64,
    /// Its result: the trace's last position.
    pub digest: ContentId,
    /// Its state hashes at the positions asked, ascending.
    pub points: Vec<(u64, [u8; 32])>,
}

impl TraceClaim {
    /// The hash this claim states at `position`: the digest from the last
    /// position on, a listed point before it, nothing at 0 (the task
    /// itself, which the run digest names) or at a point not listed.
    pub fn hash_at(&self, position: u64) -> Option<[u8; 32]> {
        if position == 0 {
            return None;
        }
        if position.saturating_add(1) >= self.positions {
            return Some(*self.digest.as_bytes());
        }
        self.points
            .iter()
            .find(|(p, _)| *p == position)
            .map(|(_, hash)| *hash)
    }

    /// Whether `other` is about the same execution (lease, task, run,
    /// length and result), so the two can be read as one account.
    pub fn same_execution(&self, other: &TraceClaim) -> bool {
        (self.lease, self.task, self.run, self.positions, self.digest)
            == (
                other.lease,
                other.task,
                other.run,
                other.positions,
                other.digest,
            )
    }
}

/// The digest naming what a provider ran: the job's terms (program,
/// inputs, limits) and the task's assignment (arguments, outputs, seed).
pub fn run_digest(terms: &Terms, assignment: &Assignment) -> [u8; 32] {
    run_digest_of(&encoded(terms), assignment)
}

/// [`run_digest`] from the terms' encoding: what a requester checks every
/// receipt against keeps its job's, rather than encode them each time.
pub fn run_digest_of(terms: &[u8], assignment: &Assignment) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(terms.len() + assignment.encode_size());
    bytes.extend_from_slice(terms);
    assignment.write(&mut bytes);
    *ContentId::of(&bytes).as_bytes()
}

/// One side of a case: its receipt for the task and its signed claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    /// Its receipt for the task.
    pub receipt: Signed<Receipt>,
    /// Its claims covering the case's position and the next.
    pub claims: Vec<Signed<TraceClaim>>,
}

/// What a requester brings validators when a dispute has narrowed to one
/// step: the task as the accused ran it, the accused's own claims, and
/// where to fetch the state it claimed at the step's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The job's terms, as the accused's claims name them.
    pub terms: Terms,
    /// The task, as the accused's claims name it.
    pub assignment: Assignment,
    /// The position the step starts from.
    pub position: u64,
    /// The accused.
    pub accused: Party,
    /// The state at `position` (absent at 0), a blob the asker serves.
    pub state: Option<FileRef>,
    /// The other side, if it signed the state the step reaches: it is then
    /// named the winner, and may take the reward.
    pub winner: Option<Party>,
}

impl Case {
    /// Whether it asks for the whole task to be re-run (its position is
    /// [`cairn_ledger::WHOLE_TASK`]): the accused lost without a step to be
    /// held to.
    pub fn whole(&self) -> bool {
        self.position == cairn_ledger::WHOLE_TASK
    }
}

impl Write for TraceClaim {
    fn write(&self, buf: &mut impl BufMut) {
        self.lease.write(buf);
        self.task.write(buf);
        self.run.write(buf);
        self.positions.write(buf);
        self.digest.write(buf);
        (self.points.len() as u32).write(buf);
        for (position, hash) in &self.points {
            position.write(buf);
            hash.write(buf);
        }
    }
}

impl EncodeSize for TraceClaim {
    fn encode_size(&self) -> usize {
        32 + 8 + 32 + 8 + 32 + 4 + 40 * self.points.len()
    }
}

impl Read for TraceClaim {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let lease = ContentId::read(buf)?;
        let task = u64::read(buf)?;
        let run = <[u8; 32]>::read(buf)?;
        let positions = u64::read(buf)?;
        let digest = ContentId::read(buf)?;
        let len = read_len(buf, DISPUTE_POSITIONS_MAX)?;
        let points = (0..len)
            .map(|_| Ok((u64::read(buf)?, <[u8; 32]>::read(buf)?)))
            .collect::<Result<_, CodecError>>()?;
        Ok(Self {
            lease,
            task,
            run,
            positions,
            digest,
            points,
        })
    }
}

impl Write for Party {
    fn write(&self, buf: &mut impl BufMut) {
        self.receipt.write(buf);
        write_list(&self.claims, buf);
    }
}

impl EncodeSize for Party {
    fn encode_size(&self) -> usize {
        self.receipt.encode_size()
            + 4
            + self
                .claims
                .iter()
                .map(EncodeSize::encode_size)
                .sum::<usize>()
    }
}

impl Read for Party {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let receipt = Signed::<Receipt>::read(buf)?;
        let len = read_len(buf, CASE_CLAIMS_MAX)?;
        let claims = (0..len)
            .map(|_| Signed::<TraceClaim>::read(buf))
            .collect::<Result<_, _>>()?;
        Ok(Self { receipt, claims })
    }
}

impl Write for Case {
    fn write(&self, buf: &mut impl BufMut) {
        self.terms.write(buf);
        self.assignment.write(buf);
        self.position.write(buf);
        self.accused.write(buf);
        self.state.is_some().write(buf);
        if let Some(state) = &self.state {
            state.write(buf);
        }
        self.winner.is_some().write(buf);
        if let Some(winner) = &self.winner {
            winner.write(buf);
        }
    }
}

impl EncodeSize for Case {
    fn encode_size(&self) -> usize {
        self.terms.encode_size()
            + self.assignment.encode_size()
            + 8
            + self.accused.encode_size()
            + 1
            + self.state.as_ref().map_or(0, EncodeSize::encode_size)
            + 1
            + self.winner.as_ref().map_or(0, EncodeSize::encode_size)
    }
}

impl Read for Case {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let terms = Terms::read(buf)?;
        let assignment = Assignment::read(buf)?;
        let position = u64::read(buf)?;
        let accused = Party::read(buf)?;
        let state = if bool::read(buf)? {
            Some(FileRef::read(buf)?)
        } else {
            None
        };
        let winner = if bool::read(buf)? {
            Some(Party::read(buf)?)
        } else {
            None
        };
        Ok(Self {
            terms,
            assignment,
            position,
            accused,
            state,
            winner,
        })
    }
}
