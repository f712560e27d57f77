//! Statements that prove a provider cheated, and the on-chain challenge
//! that proves a provider withheld its reveal.
//!
//! - A provider signs a [`Commit`] to its result before revealing it. Its
//!   reveal is its signed [`Receipt`](crate::Receipt), which carries the
//!   commitment's salt: one signature both opens the commitment and states
//!   what settlement pays on. A signed receipt that does not open the
//!   signed commit is proof on its own (a copier's).
//! - A commit that is never opened cannot prove anything by itself, so the
//!   requester posts it as a `Challenge`, locking a bond; the provider
//!   has [`REVEAL_WINDOW_BLOCKS`] blocks and the chain's
//!   `reveal_window_ms` of block time, whichever ends later, to post its
//!   receipt (`Reveal`), after which the commit is proof of withholding (a
//!   staller's).
//! - A dispute ends in a [`Verdict`] attested by a quorum of the chain's
//!   validators, never by a party to the job: each validator re-ran the one
//!   disputed segment from the state the provider itself signed, and saw it
//!   reach another state than the provider signed next. The verdict names
//!   that provider and its lease; with its signed receipt for the digest
//!   its claims led to, it is proof of a wrong result. It names the
//!   segment too, so anyone can audit it by re-running that one segment.

use bytes::BufMut;
use cairn_wire::codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use cairn_wire::{ContentId, PublicKey};

/// A provider's signature over a [`Commit`] uses this namespace.
pub const COMMIT_NAMESPACE: &[u8] = b"cairn/commit";
/// A validator's signature over a [`Verdict`] uses this namespace.
pub const VERDICT_NAMESPACE: &[u8] = b"cairn/verdict";

/// Blocks a challenged provider has to post its receipt.
pub const REVEAL_WINDOW_BLOCKS: u64 = 100;

/// A provider's commitment to its result for one task, before revealing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The lease it works under.
    pub lease: ContentId,
    /// The task's index in the job.
    pub task: u64,
    /// `cairn_verify::Commitment` of (digest, provider, salt).
    pub commitment: [u8; 32],
}

/// Validators' finding that `wrong` is not the result of `task` of `job`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The job.
    pub job: ContentId,
    /// The task's index in the job.
    pub task: u64,
    /// The digest proven wrong.
    pub wrong: ContentId,
    /// Whose: the provider whose own claims the step contradicted. A
    /// verdict convicts only it, never another provider that returned the
    /// same digest.
    pub accused: PublicKey,
    /// The lease it ran the task under.
    pub lease: ContentId,
    /// The provider on the other side. It gets the reward when the
    /// evidence carries its receipt for the task; with none (no other side
    /// reached the validators' state, and the offender is named here) the
    /// whole slash is burned.
    pub winner: PublicKey,
    /// The position the referee re-executed from (0: the task itself), or
    /// [`WHOLE_TASK`].
    pub position: u64,
    /// The state both sides agreed on there.
    pub agreed: [u8; 32],
    /// The state the validators reached one step later, which the losing
    /// side contradicted.
    pub reached: [u8; 32],
    /// The digest of the task the losing side ran (its terms and
    /// assignment), as its receipt names it.
    pub run: [u8; 32],
}

/// A verdict's position when the validators re-ran the whole task from
/// its start to its result, and `reached` is the result's digest: the
/// accused lost its dispute without a step to be held to (it fell silent,
/// or broke the rules), so its receipt is held to the run it names.
pub const WHOLE_TASK: u64 = u64::MAX;

impl Write for Commit {
    fn write(&self, buf: &mut impl BufMut) {
        self.lease.write(buf);
        self.task.write(buf);
        self.commitment.write(buf);
    }
}

impl EncodeSize for Commit {
    fn encode_size(&self) -> usize {
        32 + 8 + 32
    }
}

impl Read for Commit {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            lease: ContentId::read(buf)?,
            task: u64::read(buf)?,
            commitment: <[u8; 32]>::read(buf)?,
        })
    }
}

impl Write for Verdict {
    fn write(&self, buf: &mut impl BufMut) {
        self.job.write(buf);
        self.task.write(buf);
        self.wrong.write(buf);
        self.accused.write(buf);
        self.lease.write(buf);
        self.winner.write(buf);
        self.position.write(buf);
        self.agreed.write(buf);
        self.reached.write(buf);
        self.run.write(buf);
    }
}

impl EncodeSize for Verdict {
    fn encode_size(&self) -> usize {
        32 + 8 + 32 + 32 + 32 + 32 + 8 + 32 + 32 + 32
    }
}

impl Read for Verdict {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            job: ContentId::read(buf)?,
            task: u64::read(buf)?,
            wrong: ContentId::read(buf)?,
            accused: PublicKey::read(buf)?,
            lease: ContentId::read(buf)?,
            winner: PublicKey::read(buf)?,
            position: u64::read(buf)?,
            agreed: <[u8; 32]>::read(buf)?,
            reached: <[u8; 32]>::read(buf)?,
            run: <[u8; 32]>::read(buf)?,
        })
    }
}
