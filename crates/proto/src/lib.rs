//! proto: Encode and decode the market protocol's requests and answers between nodes.
//!
//! These are the messages one node sends another over the network, in the
//! canonical encoding, and the job a node's API takes ([`Submission`]).
//! They live apart from the node so that the decoders that outside bytes
//! reach first can be fuzzed without building the runtime and the network
//! stack.
//!
//! Every decode takes limits, so a malformed or oversized message is an
//! error the shell drops and counts, never a crash or an allocation bomb.
//! Signed parts (bids, receipts) keep their signatures for the ledger; the
//! rest rides on the network's authenticated connections, where the sender
//! is known.

#![deny(missing_docs)]

mod adjudication;
mod submission;

pub use adjudication::{
    CASE_CLAIMS_MAX, CLAIM_NAMESPACE, Case, Party, TraceClaim, run_digest, run_digest_of,
};
use bytes::BufMut;
use cairn_ledger::{Acceptance, COMMIT_NAMESPACE, Commit, Lease, RECEIPT_NAMESPACE, Receipt};
use cairn_market::Bid;
use cairn_wire::codec::{Buf, Encode, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use cairn_wire::{Batch, ContentId, Signature, Signed, text};
pub use submission::{
    STREAM_TASKS_AT_ONCE_MAX, Submission, SubmittedFile, SubmittedLimits, SubmittedStream,
    SubmittedTask, SubmittedVerify,
};

/// The most tasks in one pull, results or assignments.
pub const BATCH_MAX: usize = 1_024;
/// The most tasks a pull says its provider still holds.
pub const HELD_MAX: usize = 16_384;
/// The most results a pull says wait for the requester's acceptance: a
/// provider's credit to one lease (see `Request::Pull::awaiting`).
pub const AWAITING_MAX: usize = 1_024;
/// The most files a task's terms or outputs list.
pub const FILES_MAX: usize = 1_024;
/// The most arguments a task has.
pub const ARGS_MAX: usize = 256;
/// The longest string in a message.
pub const TEXT_BYTES_MAX: usize = 4_096;
/// The most bytes of one blob range.
pub const BLOB_RANGE_BYTES_MAX: u32 = 8 << 20;

/// Tasks a provider may hold per slot it offers: one running, the rest
/// queued on the provider, so tiny tasks do not wait a round trip each.
/// Concurrency stays at the slots offered; the provider asks for only as
/// many as cover a short stretch of work (see the provider's pull loop).
pub const PREFETCH_PER_SLOT_MAX: u32 = 64;

/// The gossip topic orders are announced on.
pub const ORDERS_TOPIC: &str = "cairn/orders/3";

/// What a task may use, as the provider enforces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskLimits {
    /// Fuel: the most any task may have.
    pub fuel: u64,
    /// The least fuel any task of the job has (at most `fuel`). A tool task
    /// is paid exactly its figure, so a provider sees the range before it
    /// signs the lease, and refuses a task below it.
    pub fuel_min: u64,
    /// Linear memory.
    pub memory_bytes: u64,
    /// Wall-clock watchdog.
    pub wall_time_ms: u64,
    /// Bytes under `/output`.
    pub output_bytes: u64,
    /// Bytes of stdout and of stderr.
    pub stdout_bytes: u64,
    /// GPUs a task is lent (a tool task only).
    pub gpus: u32,
    /// Memory each of them must have, MiB (0: any).
    pub gpu_memory_mib: u32,
}

/// The least wall-clock time a dispute's re-execution gets.
const DISPUTE_WALL_TIME_MIN: std::time::Duration = std::time::Duration::from_secs(600);

// `cairn_job::Limits` is the type the runtime takes (`cairn_exec::Limits`
// re-exports it), so the conversion lives here without depending on the
// runtime.
impl TaskLimits {
    /// The limits as the runtime takes them.
    pub fn to_exec(&self) -> cairn_job::Limits {
        cairn_job::Limits {
            fuel: self.fuel,
            memory_bytes: self.memory_bytes,
            wall_time: std::time::Duration::from_millis(self.wall_time_ms),
            output_bytes: self.output_bytes,
            stdout_bytes: self.stdout_bytes,
            gpus: self.gpus,
            gpu_memory_mib: self.gpu_memory_mib,
        }
    }

    /// The limits for re-running a task in a dispute (tracing, a snapshot,
    /// the referee's step). Wall time is only a watchdog, never part of a
    /// result, and a loaded machine must not lose a dispute to it: the
    /// watchdog gets ten times the task's allowance, at least ten minutes.
    pub fn for_dispute(&self) -> cairn_job::Limits {
        let limits = self.to_exec();
        cairn_job::Limits {
            wall_time: (limits.wall_time * 10).max(DISPUTE_WALL_TIME_MIN),
            ..limits
        }
    }
}

/// A named, content-addressed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    /// Name (an input under `/input`, or an output path under `/output`).
    pub name: String,
    /// Content id.
    pub id: ContentId,
    /// Size in bytes.
    pub size: u64,
}

/// A task's standard output or standard error, fetchable as a blob. Its id
/// is part of the result digest replicas compare (the requester does not
/// yet recompute the digest from the attached blobs, as for outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRef {
    /// Content id.
    pub id: ContentId,
    /// Size in bytes.
    pub size: u64,
}

impl StreamRef {
    /// The reference to `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            id: ContentId::of(bytes),
            size: bytes.len() as u64,
        }
    }
}

/// What a leased provider needs to run any task of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    /// The program.
    pub module: FileRef,
    /// Files every task sees under `/input`.
    pub inputs: Vec<FileRef>,
    /// Per-task limits.
    pub limits: TaskLimits,
}

/// One task handed to a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Index in the job.
    pub task: u32,
    /// Arguments.
    pub args: Vec<String>,
    /// Outputs it must write.
    pub outputs: Vec<String>,
    /// Seed of its randomness.
    pub seed: [u8; 32],
    /// Its fuel, within the terms' `limits.fuel_min` and `limits.fuel`
    /// (a provider refuses a task outside them). The most a Wasm task may
    /// use, and the work a tool task declares and is paid for.
    pub fuel: u64,
    /// Files of its own under `/input`, beside the terms' (a video's
    /// segment): fetched for this task only, and seen by no other.
    pub inputs: Vec<FileRef>,
}

impl Assignment {
    /// The limits the task runs under: the terms', with its own fuel.
    pub fn limits(&self, terms: &TaskLimits) -> TaskLimits {
        TaskLimits {
            fuel: self.fuel.min(terms.fuel),
            ..*terms
        }
    }
}

/// A provider's account of one task. A result travels in two steps: a
/// commitment when the task has run, and the result itself once the
/// requester asks for it (after every replica of the task has committed),
/// so no provider can copy another's answer.
// Most reports are results; boxing them would add an allocation to each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// It ran; here is the signed commitment to its result.
    Committed(Signed<Commit>),
    /// The result, as asked: the signed receipt, which opens the
    /// commitment, and the files it wrote.
    Revealed {
        /// Signed by the provider: opens the commitment, and is what
        /// settlement pays on.
        receipt: Signed<Receipt>,
        /// How it ended, as its manifest encodes it: the kind of ending
        /// (`cairn_exec::Outcome::code`, 0 for an exit)…
        code: u8,
        /// …the exit status (0 for any other ending)…
        exit: i32,
        /// …and the text, for humans. The requester rebuilds the result's
        /// manifest from these, the receipt's fuel, the streams and the
        /// outputs, and refuses the report unless it has the signed digest.
        outcome: String,
        /// Its output files, fetchable from the provider as blobs.
        outputs: Vec<FileRef>,
        /// Its standard output, fetchable as a blob.
        stdout: StreamRef,
        /// Its standard error, fetchable as a blob.
        stderr: StreamRef,
    },
    /// It could not run (an input could not be fetched, say): the task
    /// should go to someone else.
    Failed {
        /// The task.
        task: u32,
        /// Why.
        reason: String,
    },
}

impl Report {
    /// Whether a result's ending is a success: an exit with status 0 (a
    /// program that exits so without its outputs ends `MissingOutput`).
    pub fn succeeded(code: u8, exit: i32) -> bool {
        code == 0 && exit == 0
    }

    /// The task reported on.
    pub fn task(&self) -> u64 {
        match self {
            Report::Committed(commit) => commit.payload_unchecked().task,
            Report::Revealed { receipt, .. } => receipt.payload_unchecked().task,
            Report::Failed { task, .. } => u64::from(*task),
        }
    }

    /// Adds the signature this report carries (a commit's or a receipt's,
    /// under its signer's key) to `batch`.
    pub fn batch_signature(&self, batch: &mut Batch) {
        match self {
            Report::Committed(commit) => batch.add(
                &commit.signer(),
                &commit.signing_bytes(COMMIT_NAMESPACE),
                commit.signature(),
            ),
            Report::Revealed { receipt, .. } => batch.add(
                &receipt.signer(),
                &receipt.signing_bytes(RECEIPT_NAMESPACE),
                receipt.signature(),
            ),
            Report::Failed { .. } => {}
        }
    }
}

/// What a requester refereeing a dispute asks one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisputeAsk {
    /// How many positions its trace of the task has.
    Length,
    /// Its state hashes at these positions.
    Hashes(Vec<u64>),
    /// Its full state at this position, as a blob.
    Snapshot(u64),
}

/// Positions asked in one dispute round, at most.
pub const DISPUTE_POSITIONS_MAX: usize = 256;

/// A request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Provider → requester: a bid on an order.
    Bid(Signed<Bid>),
    /// Provider → requester: why it does not bid.
    Decline {
        /// The order.
        order: ContentId,
        /// Why.
        reason: String,
    },
    /// Requester → provider: a lease to sign, with the job's terms.
    Lease {
        /// The lease (the requester signs it on the ledger when recording it).
        lease: Lease,
        /// Concurrent tasks.
        slots: u32,
        /// What every task needs.
        terms: Terms,
    },
    /// Provider → requester: results so far, and a request for more work.
    Pull {
        /// The lease worked under.
        lease: ContentId,
        /// Free slots.
        want: u32,
        /// Finished tasks not yet acknowledged.
        reports: Vec<Report>,
        /// Every task handed out under the lease that the provider still
        /// has: queued, running, or reported and not yet acknowledged. The
        /// requester takes back the others at once, so the tasks of an
        /// answer that was lost, or of a run a crash ended, are not stranded
        /// until their deadline.
        held: Vec<u32>,
        /// Tasks whose results the requester stored and has not yet said
        /// it accepted: the answer carries its signed acceptance of those
        /// it has, so an answer that was lost is made good by the next.
        awaiting: Vec<u32>,
    },
    /// Requester → provider: a question of a dispute over one task.
    Dispute {
        /// The lease the task ran under.
        lease: ContentId,
        /// The task.
        task: u32,
        /// The question.
        ask: DisputeAsk,
    },
    /// Requester → validator: judge a dispute's last step.
    Adjudicate(Box<Case>),
    /// Either way: a verified range of a blob.
    Blob {
        /// The blob.
        id: ContentId,
        /// Where the range starts.
        offset: u64,
        /// How many bytes.
        len: u32,
    },
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Taken.
    Ack,
    /// Not taken, and why.
    Refused(String),
    /// The provider's signature on the lease.
    LeaseSigned(Signature),
    /// Reports stored; more work (possibly none).
    Tasks {
        /// How many of the pull's reports were stored: the provider forgets
        /// those.
        stored: u32,
        /// New work.
        tasks: Vec<Assignment>,
        /// The job needs nothing more from this lease.
        finished: bool,
        /// Tasks whose committed results the provider must now reveal.
        reveal: Vec<u32>,
        /// The requester's signed acceptance of the pull's `awaiting`
        /// results it has accepted: what the provider is paid on, by the
        /// requester's settlement or by its own claim on the ledger.
        accepted: Option<Signed<Acceptance>>,
    },
    /// A dispute answer: the trace's length and, when asked, its state
    /// hashes, signed, so validators can hold the side to them.
    Claim(Signed<TraceClaim>),
    /// A dispute answer: the state, stored as this blob on the provider.
    Snapshot(FileRef),
    /// The answer takes a while to build (a dispute's trace or snapshot
    /// re-runs the task): being built now, ask again shortly.
    Preparing,
    /// A validator's signature over the verdict on a case.
    Attestation(Signature),
    /// A blob range: the blob's size and the bao-encoded range.
    Blob {
        /// Whole blob size.
        size: u64,
        /// Encoded range with its proof (shared, so megabytes of it are
        /// never copied on the way in).
        encoded: bytes::Bytes,
    },
}

// ---- canonical encoding ----

fn write_text(s: &str, buf: &mut impl BufMut) {
    text::write(s, buf);
}

fn read_text(buf: &mut impl Buf) -> Result<String, CodecError> {
    text::read(buf, TEXT_BYTES_MAX)
}

fn write_list<T: Write>(items: &[T], buf: &mut impl BufMut) {
    (items.len() as u32).write(buf);
    for item in items {
        item.write(buf);
    }
}

fn read_len(buf: &mut impl Buf, max: usize) -> Result<usize, CodecError> {
    let len = u32::read(buf)? as usize;
    if len > max {
        return Err(CodecError::InvalidLength(len));
    }
    Ok(len)
}

fn encoded<T: Encode>(value: &T) -> Vec<u8> {
    value.encode().to_vec()
}

impl Write for FileRef {
    fn write(&self, buf: &mut impl BufMut) {
        write_text(&self.name, buf);
        self.id.write(buf);
        self.size.write(buf);
    }
}

impl EncodeSize for FileRef {
    fn encode_size(&self) -> usize {
        text::encode_size(&self.name) + 32 + 8
    }
}

impl Read for FileRef {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            name: read_text(buf)?,
            id: ContentId::read(buf)?,
            size: u64::read(buf)?,
        })
    }
}

impl Write for StreamRef {
    fn write(&self, buf: &mut impl BufMut) {
        self.id.write(buf);
        self.size.write(buf);
    }
}

impl EncodeSize for StreamRef {
    fn encode_size(&self) -> usize {
        self.id.encode_size() + self.size.encode_size()
    }
}

impl Read for StreamRef {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            id: ContentId::read(buf)?,
            size: u64::read(buf)?,
        })
    }
}

fn write_files(files: &[FileRef], buf: &mut impl BufMut) {
    write_list(files, buf);
}

fn read_files(buf: &mut impl Buf) -> Result<Vec<FileRef>, CodecError> {
    let len = read_len(buf, FILES_MAX)?;
    (0..len).map(|_| FileRef::read(buf)).collect()
}

/// A peer's list of files that become paths on this machine: the one path
/// rule is applied to each name as it is decoded, and no name twice.
fn read_paths<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    rule: fn(&str) -> Result<(), String>,
) -> Result<Vec<T>, CodecError> {
    let mut seen = std::collections::BTreeSet::new();
    for item in &items {
        if rule(name(item)).is_err() {
            return Err(CodecError::Invalid("path", "breaks the path rule"));
        }
        if !seen.insert(name(item)) {
            return Err(CodecError::Invalid("path", "named twice"));
        }
    }
    Ok(items)
}

fn files_size(files: &[FileRef]) -> usize {
    4 + files.iter().map(EncodeSize::encode_size).sum::<usize>()
}

fn write_strings(items: &[String], buf: &mut impl BufMut) {
    (items.len() as u32).write(buf);
    for s in items {
        write_text(s, buf);
    }
}

fn read_strings(buf: &mut impl Buf, max: usize) -> Result<Vec<String>, CodecError> {
    let len = read_len(buf, max)?;
    (0..len).map(|_| read_text(buf)).collect()
}

fn strings_size(items: &[String]) -> usize {
    4 + items.iter().map(|s| text::encode_size(s)).sum::<usize>()
}

impl Write for Terms {
    fn write(&self, buf: &mut impl BufMut) {
        self.module.write(buf);
        write_files(&self.inputs, buf);
        let l = &self.limits;
        for v in [
            l.fuel,
            l.fuel_min,
            l.memory_bytes,
            l.wall_time_ms,
            l.output_bytes,
            l.stdout_bytes,
        ] {
            v.write(buf);
        }
        l.gpus.write(buf);
        l.gpu_memory_mib.write(buf);
    }
}

impl EncodeSize for Terms {
    fn encode_size(&self) -> usize {
        self.module.encode_size() + files_size(&self.inputs) + 6 * 8 + 2 * 4
    }
}

impl Read for Terms {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let terms = Self {
            module: FileRef::read(buf)?,
            inputs: read_paths(
                read_files(buf)?,
                |f| f.name.as_str(),
                cairn_job::check_input_name,
            )?,
            limits: TaskLimits {
                fuel: u64::read(buf)?,
                fuel_min: u64::read(buf)?,
                memory_bytes: u64::read(buf)?,
                wall_time_ms: u64::read(buf)?,
                output_bytes: u64::read(buf)?,
                stdout_bytes: u64::read(buf)?,
                gpus: u32::read(buf)?,
                gpu_memory_mib: u32::read(buf)?,
            },
        };
        if !(1..=terms.limits.fuel).contains(&terms.limits.fuel_min) {
            return Err(CodecError::Invalid(
                "limits.fuel_min",
                "is not from 1 to limits.fuel",
            ));
        }
        if !cairn_job::rules::GPUS_RANGE.contains(&u64::from(terms.limits.gpus)) {
            return Err(CodecError::Invalid(
                "limits.gpus",
                "more than a job may ask",
            ));
        }
        Ok(terms)
    }
}

impl Write for Assignment {
    fn write(&self, buf: &mut impl BufMut) {
        self.task.write(buf);
        write_strings(&self.args, buf);
        write_strings(&self.outputs, buf);
        buf.put_slice(&self.seed);
        self.fuel.write(buf);
        write_files(&self.inputs, buf);
    }
}

impl EncodeSize for Assignment {
    fn encode_size(&self) -> usize {
        4 + strings_size(&self.args)
            + strings_size(&self.outputs)
            + 32
            + 8
            + files_size(&self.inputs)
    }
}

impl Read for Assignment {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            task: u32::read(buf)?,
            args: read_strings(buf, ARGS_MAX)?,
            outputs: read_paths(
                read_strings(buf, FILES_MAX)?,
                String::as_str,
                cairn_job::check_output_path,
            )?,
            seed: <[u8; 32]>::read(buf)?,
            fuel: u64::read(buf)?,
            inputs: {
                let len = read_len(buf, cairn_job::rules::TASK_INPUTS_MAX)?;
                let files = (0..len)
                    .map(|_| FileRef::read(buf))
                    .collect::<Result<Vec<_>, _>>()?;
                read_paths(files, |f| f.name.as_str(), cairn_job::check_input_name)?
            },
        })
    }
}

impl Write for Report {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Report::Committed(commit) => {
                0u8.write(buf);
                commit.write(buf);
            }
            Report::Revealed {
                receipt,
                code,
                exit,
                outcome,
                outputs,
                stdout,
                stderr,
            } => {
                2u8.write(buf);
                receipt.write(buf);
                code.write(buf);
                exit.write(buf);
                write_text(outcome, buf);
                write_files(outputs, buf);
                stdout.write(buf);
                stderr.write(buf);
            }
            Report::Failed { task, reason } => {
                1u8.write(buf);
                task.write(buf);
                write_text(reason, buf);
            }
        }
    }
}

impl EncodeSize for Report {
    fn encode_size(&self) -> usize {
        1 + match self {
            Report::Committed(commit) => commit.encode_size(),
            Report::Revealed {
                receipt,
                outcome,
                outputs,
                stdout,
                stderr,
                ..
            } => {
                receipt.encode_size()
                    + 1
                    + 4
                    + text::encode_size(outcome)
                    + files_size(outputs)
                    + stdout.encode_size()
                    + stderr.encode_size()
            }
            Report::Failed { reason, .. } => 4 + text::encode_size(reason),
        }
    }
}

impl Read for Report {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Report::Committed(Signed::<Commit>::read(buf)?)),
            1 => Ok(Report::Failed {
                task: u32::read(buf)?,
                reason: read_text(buf)?,
            }),
            2 => Ok(Report::Revealed {
                receipt: Signed::<Receipt>::read(buf)?,
                code: u8::read(buf)?,
                exit: i32::read(buf)?,
                outcome: read_text(buf)?,
                outputs: read_paths(
                    read_files(buf)?,
                    |f| f.name.as_str(),
                    cairn_job::check_output_path,
                )?,
                stdout: StreamRef::read(buf)?,
                stderr: StreamRef::read(buf)?,
            }),
            _ => Err(CodecError::Invalid("Report", "unknown kind")),
        }
    }
}

impl Write for DisputeAsk {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            DisputeAsk::Length => 0u8.write(buf),
            DisputeAsk::Hashes(positions) => {
                1u8.write(buf);
                write_list(positions, buf);
            }
            DisputeAsk::Snapshot(position) => {
                2u8.write(buf);
                position.write(buf);
            }
        }
    }
}

impl EncodeSize for DisputeAsk {
    fn encode_size(&self) -> usize {
        1 + match self {
            DisputeAsk::Length => 0,
            DisputeAsk::Hashes(positions) => 4 + 8 * positions.len(),
            DisputeAsk::Snapshot(_) => 8,
        }
    }
}

impl Read for DisputeAsk {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(DisputeAsk::Length),
            1 => {
                let len = read_len(buf, DISPUTE_POSITIONS_MAX)?;
                Ok(DisputeAsk::Hashes(
                    (0..len).map(|_| u64::read(buf)).collect::<Result<_, _>>()?,
                ))
            }
            2 => Ok(DisputeAsk::Snapshot(u64::read(buf)?)),
            _ => Err(CodecError::Invalid("DisputeAsk", "unknown kind")),
        }
    }
}

impl Write for Request {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Request::Bid(bid) => {
                0u8.write(buf);
                bid.write(buf);
            }
            Request::Decline { order, reason } => {
                1u8.write(buf);
                order.write(buf);
                write_text(reason, buf);
            }
            Request::Lease {
                lease,
                slots,
                terms,
            } => {
                2u8.write(buf);
                lease.write(buf);
                slots.write(buf);
                terms.write(buf);
            }
            Request::Pull {
                lease,
                want,
                reports,
                held,
                awaiting,
            } => {
                3u8.write(buf);
                lease.write(buf);
                want.write(buf);
                write_list(reports, buf);
                write_list(held, buf);
                write_list(awaiting, buf);
            }
            Request::Blob { id, offset, len } => {
                4u8.write(buf);
                id.write(buf);
                offset.write(buf);
                len.write(buf);
            }
            Request::Dispute { lease, task, ask } => {
                5u8.write(buf);
                lease.write(buf);
                task.write(buf);
                ask.write(buf);
            }
            Request::Adjudicate(case) => {
                6u8.write(buf);
                case.write(buf);
            }
        }
    }
}

impl EncodeSize for Request {
    fn encode_size(&self) -> usize {
        1 + match self {
            Request::Bid(bid) => bid.encode_size(),
            Request::Decline { reason, .. } => 32 + text::encode_size(reason),
            Request::Lease { lease, terms, .. } => lease.encode_size() + 4 + terms.encode_size(),
            Request::Pull {
                reports,
                held,
                awaiting,
                ..
            } => {
                32 + 4
                    + 4
                    + reports.iter().map(EncodeSize::encode_size).sum::<usize>()
                    + 4
                    + 4 * held.len()
                    + 4
                    + 4 * awaiting.len()
            }
            Request::Blob { .. } => 32 + 8 + 4,
            Request::Dispute { ask, .. } => 32 + 4 + ask.encode_size(),
            Request::Adjudicate(case) => case.encode_size(),
        }
    }
}

impl Read for Request {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Request::Bid(Signed::<Bid>::read(buf)?)),
            1 => Ok(Request::Decline {
                order: ContentId::read(buf)?,
                reason: read_text(buf)?,
            }),
            2 => Ok(Request::Lease {
                lease: Lease::read(buf)?,
                slots: u32::read(buf)?,
                terms: Terms::read(buf)?,
            }),
            3 => {
                let lease = ContentId::read(buf)?;
                let want = u32::read(buf)?;
                let len = read_len(buf, BATCH_MAX)?;
                let reports = (0..len)
                    .map(|_| Report::read(buf))
                    .collect::<Result<_, _>>()?;
                let len = read_len(buf, HELD_MAX)?;
                let held = (0..len).map(|_| u32::read(buf)).collect::<Result<_, _>>()?;
                let len = read_len(buf, AWAITING_MAX)?;
                let awaiting = (0..len).map(|_| u32::read(buf)).collect::<Result<_, _>>()?;
                Ok(Request::Pull {
                    lease,
                    want,
                    reports,
                    held,
                    awaiting,
                })
            }
            4 => Ok(Request::Blob {
                id: ContentId::read(buf)?,
                offset: u64::read(buf)?,
                len: u32::read(buf)?,
            }),
            5 => Ok(Request::Dispute {
                lease: ContentId::read(buf)?,
                task: u32::read(buf)?,
                ask: DisputeAsk::read(buf)?,
            }),
            6 => Ok(Request::Adjudicate(Box::new(Case::read(buf)?))),
            _ => Err(CodecError::Invalid("Request", "unknown kind")),
        }
    }
}

impl Write for Response {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Response::Ack => 0u8.write(buf),
            Response::Refused(reason) => {
                1u8.write(buf);
                write_text(reason, buf);
            }
            Response::LeaseSigned(signature) => {
                2u8.write(buf);
                signature.write(buf);
            }
            Response::Tasks {
                stored,
                tasks,
                finished,
                reveal,
                accepted,
            } => {
                3u8.write(buf);
                stored.write(buf);
                write_list(tasks, buf);
                finished.write(buf);
                write_list(reveal, buf);
                accepted.write(buf);
            }
            Response::Claim(claim) => {
                5u8.write(buf);
                claim.write(buf);
            }
            Response::Snapshot(file) => {
                7u8.write(buf);
                file.write(buf);
            }
            Response::Preparing => 8u8.write(buf),
            Response::Attestation(signature) => {
                9u8.write(buf);
                signature.write(buf);
            }
            Response::Blob { size, encoded } => {
                4u8.write(buf);
                size.write(buf);
                (encoded.len() as u32).write(buf);
                buf.put_slice(encoded);
            }
        }
    }
}

impl EncodeSize for Response {
    fn encode_size(&self) -> usize {
        1 + match self {
            Response::Ack => 0,
            Response::Refused(reason) => text::encode_size(reason),
            Response::LeaseSigned(_) => 64,
            Response::Tasks {
                tasks,
                reveal,
                accepted,
                ..
            } => {
                4 + 4
                    + tasks.iter().map(EncodeSize::encode_size).sum::<usize>()
                    + 1
                    + 4
                    + 4 * reveal.len()
                    + accepted.encode_size()
            }
            Response::Claim(claim) => claim.encode_size(),
            Response::Snapshot(file) => file.encode_size(),
            Response::Preparing => 0,
            Response::Attestation(_) => 64,
            Response::Blob { encoded, .. } => 8 + 4 + encoded.len(),
        }
    }
}

impl Read for Response {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Response::Ack),
            1 => Ok(Response::Refused(read_text(buf)?)),
            2 => Ok(Response::LeaseSigned(Signature::read(buf)?)),
            3 => {
                let stored = u32::read(buf)?;
                let len = read_len(buf, BATCH_MAX)?;
                let tasks = (0..len)
                    .map(|_| Assignment::read(buf))
                    .collect::<Result<_, _>>()?;
                let finished = bool::read(buf)?;
                let len = read_len(buf, BATCH_MAX)?;
                let reveal = (0..len).map(|_| u32::read(buf)).collect::<Result<_, _>>()?;
                let accepted = Option::<Signed<Acceptance>>::read(buf)?;
                Ok(Response::Tasks {
                    stored,
                    tasks,
                    finished,
                    reveal,
                    accepted,
                })
            }
            5 => Ok(Response::Claim(Signed::<TraceClaim>::read(buf)?)),
            7 => Ok(Response::Snapshot(FileRef::read(buf)?)),
            8 => Ok(Response::Preparing),
            9 => Ok(Response::Attestation(Signature::read(buf)?)),
            4 => {
                let size = u64::read(buf)?;
                // Half again the range for the interleaved proof hashes.
                let max = BLOB_RANGE_BYTES_MAX as usize * 3 / 2;
                let len = read_len(buf, max)?;
                if buf.remaining() < len {
                    return Err(CodecError::EndOfBuffer);
                }
                Ok(Response::Blob {
                    size,
                    encoded: buf.copy_to_bytes(len),
                })
            }
            _ => Err(CodecError::Invalid("Response", "unknown kind")),
        }
    }
}

/// Encodes a message.
pub fn to_bytes<T: Encode>(message: &T) -> Vec<u8> {
    encoded(message)
}

/// Decodes an answer, taking ownership so a blob range is sliced out of the
/// received buffer instead of copied.
pub fn response(bytes: Vec<u8>) -> Result<Response, CodecError> {
    const BLOB_HEADER: usize = 1 + 8 + 4;
    if bytes.first() != Some(&4) || bytes.len() < BLOB_HEADER {
        return from_bytes(&bytes);
    }
    let size = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let len = u32::from_be_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
    if len > BLOB_RANGE_BYTES_MAX as usize * 3 / 2 {
        return Err(CodecError::InvalidLength(len));
    }
    if bytes.len() != BLOB_HEADER + len {
        return Err(CodecError::Invalid("Response", "blob length mismatch"));
    }
    Ok(Response::Blob {
        size,
        encoded: bytes::Bytes::from(bytes).slice(BLOB_HEADER..),
    })
}

/// Decodes a message, refusing trailing bytes.
pub fn from_bytes<T: Read<Cfg = ()>>(bytes: &[u8]) -> Result<T, CodecError> {
    use cairn_wire::codec::DecodeExt as _;
    T::decode(cairn_wire::codec::Copying(bytes))
}

#[cfg(test)]
mod tests {
    use cairn_ledger::RECEIPT_NAMESPACE;
    use cairn_wire::Keypair;

    use super::*;

    fn receipt() -> Signed<Receipt> {
        Signed::sign(
            &Keypair::from_seed([1; 32]),
            RECEIPT_NAMESPACE,
            Receipt {
                lease: ContentId::of(b"lease"),
                task: 7,
                digest: ContentId::of(b"result"),
                fuel_used: 1_234,
                salt: [0; 32],
                run: [0; 32],
            },
        )
    }

    fn terms() -> Terms {
        Terms {
            module: FileRef {
                name: "module.wasm".into(),
                id: ContentId::of(b"m"),
                size: 10,
            },
            inputs: Vec::new(),
            limits: TaskLimits {
                fuel: 1_000,
                fuel_min: 1_000,
                memory_bytes: 1 << 20,
                wall_time_ms: 1_000,
                output_bytes: 1 << 20,
                stdout_bytes: 1 << 10,
                gpus: 0,
                gpu_memory_mib: 0,
            },
        }
    }

    #[test]
    fn terms_asking_for_more_gpus_than_a_job_may_are_refused() {
        let mut lent = terms();
        lent.limits.gpus = 16;
        lent.limits.gpu_memory_mib = 80_000;
        assert_eq!(from_bytes::<Terms>(&to_bytes(&lent)).unwrap(), lent);
        lent.limits.gpus = 17;
        assert!(from_bytes::<Terms>(&to_bytes(&lent)).is_err());
    }

    fn assignment() -> Assignment {
        Assignment {
            task: 7,
            args: vec!["--frame".into(), "7".into()],
            outputs: vec!["f.png".into()],
            seed: [5; 32],
            fuel: 1_000,
            inputs: Vec::new(),
        }
    }

    fn claim() -> Signed<TraceClaim> {
        Signed::sign(
            &Keypair::from_seed([1; 32]),
            CLAIM_NAMESPACE,
            TraceClaim {
                lease: ContentId::of(b"lease"),
                task: 7,
                run: run_digest(&terms(), &assignment()),
                positions: 100,
                digest: ContentId::of(b"result"),
                points: vec![(17, [1; 32]), (18, [2; 32])],
            },
        )
    }

    /// A claim states its digest from its last position on, its points
    /// where listed, and nothing else; another run is another digest.
    #[test]
    fn a_trace_claim_states_only_what_it_lists() {
        let claim = claim();
        let c = claim.payload_unchecked();
        assert_eq!(c.hash_at(0), None);
        assert_eq!(c.hash_at(17), Some([1; 32]));
        assert_eq!(c.hash_at(19), None);
        assert_eq!(c.hash_at(99), Some(*ContentId::of(b"result").as_bytes()));
        assert_eq!(c.hash_at(u64::MAX), c.hash_at(99));
        let mut other = assignment();
        other.seed = [6; 32];
        assert_ne!(run_digest(&terms(), &other), c.run);
    }

    #[test]
    fn requests_and_answers_round_trip() {
        let requests = vec![
            Request::Decline {
                order: ContentId::of(b"o"),
                reason: "busy".into(),
            },
            Request::Pull {
                lease: ContentId::of(b"l"),
                want: 4,
                reports: vec![
                    Report::Committed(Signed::sign(
                        &Keypair::from_seed([1; 32]),
                        cairn_ledger::COMMIT_NAMESPACE,
                        Commit {
                            lease: ContentId::of(b"lease"),
                            task: 7,
                            commitment: [3; 32],
                        },
                    )),
                    Report::Revealed {
                        receipt: receipt(),
                        code: 0,
                        exit: 0,
                        outcome: "exited successfully".into(),
                        outputs: vec![FileRef {
                            name: "a.png".into(),
                            id: ContentId::of(b"a"),
                            size: 1,
                        }],
                        stdout: StreamRef::of(b"the answer is 42\n"),
                        stderr: StreamRef::of(b""),
                    },
                    Report::Failed {
                        task: 3,
                        reason: "no input".into(),
                    },
                ],
                held: vec![3, 9, 12],
                awaiting: vec![2, 5],
            },
            Request::Blob {
                id: ContentId::of(b"b"),
                offset: 16_384,
                len: 4 << 20,
            },
            Request::Dispute {
                lease: ContentId::of(b"l"),
                task: 3,
                ask: DisputeAsk::Hashes(vec![1, 50, 99]),
            },
            Request::Dispute {
                lease: ContentId::of(b"l"),
                task: 3,
                ask: DisputeAsk::Snapshot(17),
            },
            Request::Adjudicate(Box::new(Case {
                terms: terms(),
                assignment: assignment(),
                position: 17,
                accused: Party {
                    receipt: receipt(),
                    claims: vec![claim(), claim()],
                },
                state: Some(FileRef {
                    name: "state".into(),
                    id: ContentId::of(b"s"),
                    size: 9,
                }),
                winner: Some(Party {
                    receipt: receipt(),
                    claims: vec![claim()],
                }),
            })),
        ];
        for request in requests {
            assert_eq!(from_bytes::<Request>(&to_bytes(&request)).unwrap(), request);
        }
        let answers = vec![
            Response::Ack,
            Response::Preparing,
            Response::Refused("no".into()),
            Response::Tasks {
                stored: 2,
                tasks: vec![Assignment {
                    task: 9,
                    args: vec!["--frame".into(), "9".into()],
                    outputs: vec!["f.png".into()],
                    seed: [5; 32],
                    fuel: 1_000,
                    inputs: Vec::new(),
                }],
                finished: false,
                reveal: vec![4, 8],
                accepted: Some(Signed::sign(
                    &Keypair::from_seed([2; 32]),
                    cairn_ledger::ACCEPTANCE_NAMESPACE,
                    cairn_ledger::Acceptance {
                        lease: cairn_ledger::Lease {
                            job: ContentId::of(b"job"),
                            requester: Keypair::from_seed([2; 32]).public(),
                            provider: Keypair::from_seed([3; 32]).public(),
                            price_ucairn_per_gfuel: 7,
                            fuel_per_task_max: 1_000_000,
                            expires_height: 40,
                        },
                        results: vec![cairn_ledger::Accepted {
                            task: 2,
                            digest: ContentId::of(b"result"),
                            fuel_used: 1_000,
                        }],
                    },
                )),
            },
            Response::Claim(claim()),
            Response::Attestation(cairn_wire::Keypair::from_seed([3; 32]).sign(b"verdict")),
            Response::Snapshot(FileRef {
                name: "snapshot".into(),
                id: ContentId::of(b"s"),
                size: 5,
            }),
            Response::Blob {
                size: 99,
                encoded: bytes::Bytes::from_static(b"encoded range"),
            },
        ];
        for answer in answers {
            let bytes = to_bytes(&answer);
            assert_eq!(from_bytes::<Response>(&bytes).unwrap(), answer);
            assert_eq!(
                response(bytes).unwrap(),
                answer,
                "the zero-copy path agrees"
            );
        }
    }

    /// A `path_escaper` peer: file names that would leave the folder they
    /// are written to, or name a file twice, fail to decode, whichever
    /// message carries them (a lease's inputs, a task's outputs, a
    /// result's files).
    #[test]
    fn path_escaper_names_do_not_decode() {
        let file = |name: &str| FileRef {
            name: name.into(),
            id: ContentId::of(b"x"),
            size: 1,
        };
        for bad in ["../x", "/etc/passwd", "a/b", "", "..", "a\0"] {
            let terms = Terms {
                module: file("module.wasm"),
                inputs: vec![file(bad)],
                limits: TaskLimits {
                    fuel: 1,
                    fuel_min: 1,
                    memory_bytes: 1,
                    wall_time_ms: 1,
                    output_bytes: 1,
                    stdout_bytes: 1,
                    gpus: 0,
                    gpu_memory_mib: 0,
                },
            };
            let bytes = to_bytes(&terms);
            assert!(
                from_bytes::<Terms>(&bytes).is_err(),
                "input {bad:?} decoded"
            );
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "a//b",
            "",
            "cairn-results.json",
            "a\0",
        ] {
            let tasks = Response::Tasks {
                stored: 0,
                tasks: vec![Assignment {
                    task: 0,
                    args: Vec::new(),
                    outputs: vec![bad.into()],
                    seed: [0; 32],
                    fuel: 1_000,
                    inputs: Vec::new(),
                }],
                finished: false,
                reveal: Vec::new(),
                accepted: None,
            };
            assert!(
                response(to_bytes(&tasks)).is_err(),
                "output {bad:?} decoded"
            );
        }
        let twice = Assignment {
            task: 0,
            args: Vec::new(),
            outputs: vec!["a.png".into(), "a.png".into()],
            seed: [0; 32],
            fuel: 1_000,
            inputs: Vec::new(),
        };
        assert!(from_bytes::<Assignment>(&to_bytes(&twice)).is_err());
    }

    /// A task's own inputs travel with it, under the input rule: plain
    /// file names, none twice, at most `TASK_INPUTS_MAX`; they are part
    /// of what it ran, so of its run digest.
    #[test]
    fn a_tasks_own_inputs_travel_with_it_under_the_input_rule() {
        let file = |name: &str| FileRef {
            name: name.into(),
            id: ContentId::of(name.as_bytes()),
            size: 1,
        };
        let with = |names: &[&str]| Assignment {
            inputs: names.iter().map(|n| file(n)).collect(),
            ..assignment()
        };
        let segment = with(&["seg-0003.ts"]);
        assert_eq!(
            from_bytes::<Assignment>(&to_bytes(&segment)).unwrap(),
            segment
        );
        assert_ne!(
            run_digest(&terms(), &segment),
            run_digest(&terms(), &assignment())
        );
        for bad in [
            with(&["../x"]),
            with(&["a/b"]),
            with(&[""]),
            with(&[".."]),
            with(&["a.ts", "a.ts"]),
        ] {
            assert!(
                from_bytes::<Assignment>(&to_bytes(&bad)).is_err(),
                "{:?} decoded",
                bad.inputs
            );
        }
        let names: Vec<String> = (0..=cairn_job::rules::TASK_INPUTS_MAX)
            .map(|i| format!("seg-{i}.ts"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(from_bytes::<Assignment>(&to_bytes(&with(&names[1..]))).is_ok());
        assert!(from_bytes::<Assignment>(&to_bytes(&with(&names))).is_err());
    }

    #[test]
    fn truncated_padded_and_unknown_messages_are_refused() {
        let bytes = to_bytes(&Response::Blob {
            size: 5,
            encoded: bytes::Bytes::from_static(b"12345"),
        });
        assert!(response(bytes[..bytes.len() - 1].to_vec()).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(response(padded).is_err());
        assert!(from_bytes::<Request>(&[9]).is_err());
        assert!(from_bytes::<Request>(&[]).is_err());
        let pull = to_bytes(&Request::Pull {
            lease: ContentId::of(b"l"),
            want: 1,
            reports: Vec::new(),
            held: Vec::new(),
            awaiting: Vec::new(),
        });
        // Claim more reports, tasks held or results awaiting acceptance
        // than a pull may carry.
        for (from_end, max) in [(12, BATCH_MAX), (8, HELD_MAX), (4, AWAITING_MAX)] {
            let mut claim = pull.clone();
            let at = claim.len() - from_end;
            claim[at..at + 4].copy_from_slice(&(max as u32 + 1).to_be_bytes());
            assert!(from_bytes::<Request>(&claim).is_err(), "{max}");
        }
    }
}
