//! The requester role: escrow, auctions, leases, the task queue, results
//! and settlement for the jobs this node submits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use cairn_ledger::{
    COMMIT_NAMESPACE, Commit, Lease, OPENING_NAMESPACE, Opening, RECEIPT_NAMESPACE, Receipt, TxKind,
};
use cairn_market::{Auction, Bid, ORDER_NAMESPACE, Order, Outcome, Rng, SelectionParams};
use cairn_net::PeerId;
use cairn_sched::{Completion, SchedParams, Scheduler};
use cairn_store::{Op, Table};
use cairn_verify::{Params as VerifyParams, Reveal, Verifier};
use cairn_wire::{ContentId, PublicKey, Signed};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::proto::{
    self, Assignment, FileRef, Report, Request, Response, StreamRef, Submission, SubmittedFile,
    TaskLimits, Terms,
};
use super::{Counters, MarketConfig, Shared, fetch_blob, now_ms};

/// Receipts per settlement transaction: a transaction fits in 8 KiB.
const RECEIPTS_PER_SETTLE: usize = 40;
/// How long a job that found no provider waits before another auction.
const REAUCTION_MS: u64 = 2_000;
/// How long pending work may sit with no provider pulling before another
/// auction is held.
const IDLE_REAUCTION_MS: u64 = 3_000;
/// The longest preparation (fetching and compiling a module) a requester
/// waits out before idle leases count as gone: this, plus
/// [`READY_WAIT_MS_PER_KB`] for each KB of the module, up to
/// [`READY_WAIT_MS_MAX`].
const READY_WAIT_MS_BASE: u64 = 10_000;
/// Time per KB of module a provider may take to prepare: a machine that
/// fetches and compiles at 200 KB/s still makes it.
const READY_WAIT_MS_PER_KB: u64 = 5;
/// The longest preparation waited out for any module.
const READY_WAIT_MS_MAX: u64 = 120_000;
/// Blocks a lease stays live on the ledger.
const LEASE_BLOCKS: u64 = 100_000;
/// How long submitting a job waits for a block to lock its escrow before
/// the job goes ahead with the escrow still queued.
const ESCROW_WAIT: Duration = Duration::from_secs(60);
/// The longest a job's driver sleeps without a deadline or a notice.
const DRIVER_SLEEP_MAX: Duration = Duration::from_secs(1);

/// A finished task as the requester keeps it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskRecord {
    /// Index in the job.
    pub task: u32,
    /// Who ran it.
    pub provider: String,
    /// Result digest (hex).
    pub digest: String,
    /// Fuel used.
    pub fuel_used: u64,
    /// Whether the program succeeded.
    pub success: bool,
    /// How it ended.
    pub outcome: String,
    /// Output files, in this node's blob store.
    pub outputs: Vec<SubmittedFile>,
    /// Its standard output, in this node's blob store; `None` when empty.
    #[serde(default)]
    pub stdout: Option<SubmittedFile>,
    /// Its standard error, in this node's blob store; `None` when empty.
    #[serde(default)]
    pub stderr: Option<SubmittedFile>,
    /// The signed receipt (hex of its canonical bytes), for settlement.
    pub receipt: String,
}

/// A job's status for the API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobStatus {
    /// Job id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `bidding`, `queued`, `running`, `settling`, `done` or `failed`.
    pub state: String,
    /// Why it is queued or failed.
    pub reason: Option<String>,
    /// Tasks in all.
    pub total: u32,
    /// Finished.
    pub done: u32,
    /// Running.
    pub running: u32,
    /// Waiting.
    pub pending: u32,
    /// Given up.
    pub failed: u32,
    /// Providers working on it.
    pub providers: u32,
    /// Auctions held.
    pub auctions: u32,
    /// Submitted (ms since the epoch).
    pub submitted_ms: u64,
    /// First task handed out.
    pub first_task_ms: Option<u64>,
    /// Finished.
    pub finished_ms: Option<u64>,
    /// Receipts in settlements the ledger applied.
    pub settled: u64,
    /// Executions, replicas included: what verification cost.
    pub executions: u64,
    /// Disputes started.
    pub disputes: u32,
    /// Providers convicted of cheating on this job.
    pub convicted: Vec<String>,
}

/// What is persisted of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub(super) submission: Submission,
    submitted_ms: u64,
    settled: bool,
}

/// The receipts whose signatures pass the ledger's strict check, and how
/// many did not.
fn strictly_signed(receipts: Vec<Signed<Receipt>>) -> (Vec<Signed<Receipt>>, usize) {
    let before = receipts.len();
    let good: Vec<_> = receipts
        .into_iter()
        .filter(|receipt| receipt.verify(RECEIPT_NAMESPACE).is_ok())
        .collect();
    let unpaid = before - good.len();
    (good, unpaid)
}

/// A persisted lease.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LeaseRecord {
    job: String,
    provider: String,
    slots: u32,
}

#[derive(Debug)]
enum Phase {
    Bidding(Box<Auction>),
    Leasing,
    Queued { retry_ms: u64 },
    Running,
    Settling,
    Done,
}

pub(super) struct Job {
    pub(super) id: ContentId,
    pub(super) record: JobRecord,
    pub(super) terms: Terms,
    pub(super) sched: Scheduler,
    phase: Phase,
    pub(super) reason: Option<String>,
    auctions: u32,
    pub(super) leases: BTreeMap<ContentId, PublicKey>,
    first_task_ms: Option<u64>,
    finished_ms: Option<u64>,
    last_pull_ms: u64,
    /// Until when the latest leases' providers said they would be
    /// preparing (fetching and compiling the module): no pull before then
    /// is expected, so none is a reason to look for others.
    ready_by_ms: u64,
    pub(super) unsettled: Vec<Signed<Receipt>>,
    /// Receipts refused because their report stated another result, kept
    /// until their task is decided (see [`MISSTATED_MAX`]).
    pub(super) misstated: Vec<(Signed<Receipt>, cairn_wire::ResultManifest)>,
    settled: u64,
    /// Verification's view of the job's replicas.
    pub(super) replicas: Replicas,
    /// Wakes the job's driver: whatever changes the job from outside it
    /// (a pull, a bid, a decline, a lost peer, a verification action)
    /// notifies, and between those the driver sleeps until the job's next
    /// deadline.
    pub(super) wake: Arc<Notify>,
}

/// What the requester keeps of each replica while verification decides.
#[derive(Default)]
pub(super) struct Replicas {
    /// Reveals asked of each provider and not yet received.
    pub asks: BTreeMap<PublicKey, BTreeSet<u32>>,
    /// Each provider's signed commitment, per task: evidence if it never
    /// reveals or reveals something else.
    pub commits: BTreeMap<(u32, PublicKey), Signed<Commit>>,
    /// Revealed results waiting for a decision.
    pub revealed: BTreeMap<(u32, PublicKey), Revealed>,
    /// Tasks whose results failed verification.
    pub failed: u32,
    pub executions: u64,
    pub disputes: u32,
    pub convicted: BTreeSet<PublicKey>,
}

/// Misstated receipts a job keeps for evidence, at most.
const MISSTATED_MAX: usize = 1_024;

/// A pull's reports that passed their checks.
struct Checked {
    commits: Vec<Signed<Commit>>,
    reveals: Vec<Revealed>,
    /// Signed receipts whose report states another result than their
    /// digest, with the result stated.
    misstated: Vec<(Signed<Receipt>, cairn_wire::ResultManifest)>,
    /// Tasks the provider could not run, and why.
    failed: Vec<(u32, String)>,
}

/// A revealed result.
#[derive(Clone)]
pub(super) struct Revealed {
    pub record: TaskRecord,
    pub receipt: Signed<Receipt>,
    pub opening: Signed<Opening>,
}

impl Job {
    /// When the job's phase next has something to do by the clock: an
    /// auction's window closes, a queued job auctions again, or pending work
    /// nobody pulls has waited long enough to look for other providers.
    fn phase_deadline_ms(&self) -> Option<u64> {
        match &self.phase {
            Phase::Bidding(auction) => Some(auction.order().bid_deadline_ms()),
            Phase::Queued { retry_ms } => Some(*retry_ms),
            Phase::Running => {
                let p = self.sched.progress();
                (p.pending > 0 && p.running == 0)
                    .then(|| self.last_pull_ms.max(self.ready_by_ms) + IDLE_REAUCTION_MS + 1)
            }
            Phase::Leasing | Phase::Settling | Phase::Done => None,
        }
    }

    /// Task `task` as a provider is handed it (its index must be in range).
    pub(super) fn assignment(&self, task: u32) -> Assignment {
        let spec = &self.record.submission.tasks[task as usize];
        let seed = cairn_wire::parse_hex32(&spec.seed, "task seed").expect("checked at submission");
        Assignment {
            task,
            args: spec.args.clone(),
            outputs: spec.outputs.clone(),
            seed,
        }
    }

    /// Why a provider's result cannot be this job's, if it cannot: it
    /// claims more fuel, output bytes or stream bytes than the task was
    /// allowed, names a file twice, or claims success without a file the
    /// task had to write. Checked before any of its files is fetched.
    pub(super) fn broken_result(&self, record: &TaskRecord) -> Result<(), String> {
        let limits = &self.terms.limits;
        if record.fuel_used > limits.fuel {
            return Err(format!(
                "claims {} fuel where the task had {}",
                record.fuel_used, limits.fuel
            ));
        }
        for stream in [&record.stdout, &record.stderr].into_iter().flatten() {
            if stream.size > limits.stdout_bytes {
                return Err(format!(
                    "{} of {} bytes is over the job's limit of {}",
                    stream.name, stream.size, limits.stdout_bytes
                ));
            }
        }
        let mut names = BTreeSet::new();
        let mut total: u64 = 0;
        for file in &record.outputs {
            if !names.insert(file.name.as_str()) {
                return Err(format!("names output '{}' twice", file.name));
            }
            total = total.saturating_add(file.size);
        }
        if total > limits.output_bytes {
            return Err(format!(
                "claims {total} output bytes where the task had {}",
                limits.output_bytes
            ));
        }
        let declared = self
            .record
            .submission
            .tasks
            .get(record.task as usize)
            .ok_or_else(|| format!("task {} is not in the job", record.task))?;
        if record.success
            && let Some(missing) = declared
                .outputs
                .iter()
                .find(|path| !names.contains(path.as_str()))
        {
            return Err(format!("claims success without its output '{missing}'"));
        }
        Ok(())
    }

    /// The job's status at `now`; `accepted` is how many tasks verification
    /// accepted.
    fn status(&self, accepted: u32, now: u64) -> JobStatus {
        let p = self.sched.progress();
        let preparing = matches!(self.phase, Phase::Running)
            && self.first_task_ms.is_none()
            && now < self.ready_by_ms;
        let reason = if preparing {
            Some(format!(
                "providers are fetching and compiling the module (ready in about {:.1} s, by their estimate)",
                (self.ready_by_ms - now) as f64 / 1e3
            ))
        } else {
            self.reason.clone()
        };
        let state = match self.phase {
            Phase::Bidding(_) | Phase::Leasing => "bidding",
            Phase::Queued { .. } => "queued",
            Phase::Running => "running",
            Phase::Settling => "settling",
            Phase::Done if p.failed > 0 || self.replicas.failed > 0 => "failed",
            Phase::Done => "done",
        };
        JobStatus {
            id: self.id.to_string(),
            name: self.record.submission.name.clone(),
            state: state.into(),
            reason,
            total: p.total,
            // A settled job's verification state is gone; its queue knows.
            done: match self.phase {
                Phase::Done => p.done.saturating_sub(self.replicas.failed),
                _ => accepted,
            },
            running: p.running,
            pending: p.pending,
            failed: p.failed + self.replicas.failed,
            providers: p.providers,
            auctions: self.auctions,
            submitted_ms: self.record.submitted_ms,
            first_task_ms: self.first_task_ms,
            finished_ms: self.finished_ms,
            settled: self.settled,
            executions: self.replicas.executions,
            disputes: self.replicas.disputes,
            convicted: self
                .replicas
                .convicted
                .iter()
                .map(|p| p.to_string())
                .collect(),
        }
    }
}

/// Each dispute side's signed trace claims, by (dispute, side).
pub(super) type DisputeClaims = BTreeMap<(u64, PublicKey), Vec<Signed<cairn_proto::TraceClaim>>>;

/// The requester role.
pub(crate) struct Requester {
    pub(super) shared: Arc<Shared>,
    pub(super) jobs: Mutex<BTreeMap<ContentId, Job>>,
    /// Decides which results to trust, across this node's jobs. Locked
    /// after `jobs`, never before.
    pub(super) verifier: Mutex<Verifier>,
    /// Where the requester re-executes disputed segments.
    pub(super) referee_dir: std::path::PathBuf,
    pub(super) runtime: std::sync::OnceLock<Arc<cairn_exec::WasmRuntime>>,
    /// What the referee found in each dispute, and who won it.
    pub(super) findings: Mutex<BTreeMap<u64, (super::verification::Finding, Option<PublicKey>)>>,
    /// Each dispute side's signed trace claims, by (dispute, side): what
    /// validators hold it to.
    pub(super) claims: Mutex<DisputeClaims>,
    /// This node's judge of cases, asked directly when this node is a
    /// validator itself.
    pub(super) adjudicator: Arc<super::adjudicator::Adjudicator>,
    /// Since when (ms) the referee of each dispute waits for a side to
    /// build the agreed state.
    pub(super) snapshot_waits: Mutex<BTreeMap<u64, u64>>,
    /// Lease id → job id.
    leases: Mutex<BTreeMap<ContentId, ContentId>>,
    rng: Mutex<Rng>,
    selection: SelectionParams,
    sched: SchedParams,
    bid_window_ms: u32,
    misbehave: Option<super::RequesterMisbehave>,
    /// Commits a framer has challenged so far.
    framed: std::sync::atomic::AtomicU32,
}

/// The most honest commits a [`super::RequesterMisbehave::Framer`]
/// challenges: enough to show that none sticks, few enough to keep a
/// test's ledger quiet.
pub const FRAMED_COMMITS_MAX: u32 = 4;

fn parse_id(hex: &str) -> Result<ContentId, String> {
    hex.parse()
        .map_err(|e: cairn_wire::WireError| e.to_string())
}

fn file_ref(file: &SubmittedFile) -> Result<FileRef, String> {
    Ok(FileRef {
        name: file.name.clone(),
        id: parse_id(&file.id)?,
        size: file.size,
    })
}

/// A reported stream as a record's file; an empty stream is none.
fn stream_file(name: &str, stream: StreamRef) -> Option<SubmittedFile> {
    (stream.size > 0).then(|| SubmittedFile {
        name: name.to_string(),
        id: stream.id.to_string(),
        size: stream.size,
    })
}

/// The blobs a result names: outputs and streams.
fn result_blobs(record: &TaskRecord) -> Vec<ContentId> {
    let streams = [&record.stdout, &record.stderr].into_iter().flatten();
    record
        .outputs
        .iter()
        .chain(streams)
        .filter_map(|f| f.id.parse().ok())
        .collect()
}

pub(super) fn result_key(job: &ContentId, task: u32) -> Vec<u8> {
    let mut key = job.as_bytes().to_vec();
    key.extend_from_slice(&task.to_be_bytes());
    key
}

impl Requester {
    /// Restores persisted jobs and starts their drivers.
    pub fn start(
        shared: Arc<Shared>,
        config: &MarketConfig,
        adjudicator: Arc<super::adjudicator::Adjudicator>,
    ) -> Result<Arc<Self>, String> {
        let requester = Arc::new(Self {
            shared,
            jobs: Mutex::new(BTreeMap::new()),
            leases: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(Rng::new(now_ms() ^ 0x5eed)),
            verifier: Mutex::new(Verifier::new(VerifyParams::default(), now_ms() ^ 0xc0ffee)),
            referee_dir: config.data_dir.join("referee"),
            runtime: std::sync::OnceLock::new(),
            findings: Mutex::new(BTreeMap::new()),
            claims: Mutex::new(BTreeMap::new()),
            snapshot_waits: Mutex::new(BTreeMap::new()),
            adjudicator,
            selection: SelectionParams::default(),
            sched: config.sched.clone(),
            bid_window_ms: config.bid_window_ms,
            misbehave: config.requester_misbehave,
            framed: Default::default(),
        });
        requester.restore()?;
        Ok(requester)
    }

    fn restore(self: &Arc<Self>) -> Result<(), String> {
        let db = &self.shared.db;
        let now = now_ms();
        for (key, value) in db.scan(Table::Jobs, b"").map_err(|e| e.to_string())? {
            let id = ContentId::from_digest(key.try_into().map_err(|_| "bad job key")?);
            let record: JobRecord = serde_json::from_slice(&value).map_err(|e| e.to_string())?;
            let mut job = self.new_job(id, record)?;
            for (_, value) in db
                .scan(Table::Results, id.as_bytes())
                .map_err(|e| e.to_string())?
            {
                let result: TaskRecord =
                    serde_json::from_slice(&value).map_err(|e| e.to_string())?;
                let provider = result
                    .provider
                    .parse()
                    .map_err(|e: cairn_wire::WireError| e.to_string())?;
                let digest = parse_id(&result.digest)?;
                self.shared.pin(result_blobs(&result));
                job.sched.restore(result.task, provider, digest);
                self.verifier
                    .lock()
                    .restore_accepted(&(id, result.task), digest, vec![provider]);
                if !job.record.settled
                    && let Ok(bytes) = cairn_wire::parse_hex(&result.receipt, "receipt")
                    && let Ok(receipt) = Signed::<Receipt>::from_bytes(&bytes, &())
                {
                    job.unsettled.push(receipt);
                }
            }
            job.phase = if job.record.settled {
                job.finished_ms = Some(now);
                Phase::Done
            } else if job.sched.is_finished() {
                Phase::Settling
            } else {
                Phase::Running
            };
            self.jobs.lock().insert(id, job);
        }
        for (key, value) in db
            .scan(Table::LeasesGiven, b"")
            .map_err(|e| e.to_string())?
        {
            let record: LeaseRecord = serde_json::from_slice(&value).map_err(|e| e.to_string())?;
            let lease = ContentId::from_digest(key.try_into().map_err(|_| "bad lease key")?);
            let job_id = parse_id(&record.job)?;
            let provider: PublicKey = record
                .provider
                .parse()
                .map_err(|e: cairn_wire::WireError| e.to_string())?;
            let mut jobs = self.jobs.lock();
            if let Some(job) = jobs.get_mut(&job_id) {
                // A leased provider that is still alive resumes pulling.
                job.sched
                    .add_provider(provider, record.slots * proto::PREFETCH_PER_SLOT_MAX, now);
                job.leases.insert(lease, provider);
                self.leases.lock().insert(lease, job_id);
                self.grant_inputs(job, provider);
            }
        }
        let ids: Vec<ContentId> = self.jobs.lock().keys().copied().collect();
        for id in ids {
            tokio::spawn(self.clone().drive(id));
        }
        Ok(())
    }

    fn new_job(&self, id: ContentId, record: JobRecord) -> Result<Job, String> {
        let s = &record.submission;
        let terms = Terms {
            module: file_ref(&s.module)?,
            inputs: s.inputs.iter().map(file_ref).collect::<Result<_, _>>()?,
            limits: TaskLimits {
                fuel: s.limits.fuel,
                memory_bytes: s.limits.memory_bytes,
                wall_time_ms: s.limits.wall_time_ms,
                output_bytes: s.limits.output_bytes,
                stdout_bytes: s.limits.stdout_bytes,
            },
        };
        self.shared
            .pin(std::iter::once(terms.module.id).chain(terms.inputs.iter().map(|f| f.id)));
        let policy = s.verify.policy()?;
        self.verifier
            .lock()
            .open_job(id, policy, s.tasks.len() as u32, s.limits.fuel);
        let mut sched = self.sched.clone();
        // A task may run for its whole wall-clock limit; its deadline must
        // leave room for that plus moving its outputs.
        sched.task_deadline_ms = sched.task_deadline_ms.max(s.limits.wall_time_ms + 5_000);
        sched.silence_ms_max = sched.silence_ms_max.max(sched.task_deadline_ms);
        Ok(Job {
            id,
            sched: Scheduler::new(s.tasks.len() as u32, sched),
            record,
            terms,
            phase: Phase::Running,
            reason: None,
            auctions: 0,
            leases: BTreeMap::new(),
            first_task_ms: None,
            finished_ms: None,
            last_pull_ms: now_ms(),
            ready_by_ms: 0,
            unsettled: Vec::new(),
            settled: 0,
            misstated: Vec::new(),
            replicas: Replicas::default(),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Checks and records a new job, queues its escrow, and starts bidding.
    pub async fn submit(self: &Arc<Self>, submission: Submission) -> Result<ContentId, String> {
        submission.check()?;
        for file in std::iter::once(&submission.module).chain(&submission.inputs) {
            let id = parse_id(&file.id)?;
            if self.shared.blobs.size(&id) != Some(file.size) {
                return Err(format!(
                    "blob {} ('{}') is not uploaded to this node",
                    file.id, file.name
                ));
            }
        }
        let submitted_ms = now_ms();
        let mut identity = serde_json::to_vec(&submission).map_err(|e| e.to_string())?;
        identity.extend_from_slice(self.shared.key.public().as_bytes());
        identity.extend_from_slice(&submitted_ms.to_be_bytes());
        let id = ContentId::of(&identity);
        let record = JobRecord {
            submission,
            submitted_ms,
            settled: false,
        };
        let mut job = self.new_job(id, record.clone())?;
        // The job is recorded in the same batch as its escrow is queued, and
        // offered to providers only once a block has locked the escrow.
        let escrow = self
            .shared
            .ledger
            .send_with(
                TxKind::OpenEscrow {
                    job: id,
                    amount: record.submission.budget_ucairn,
                },
                vec![Op::Put(
                    Table::Jobs,
                    id.as_bytes().to_vec(),
                    serde_json::to_vec(&record).map_err(|e| e.to_string())?,
                )],
            )
            .map_err(|e| format!("opening the escrow: {e}"))?;
        match tokio::time::timeout(ESCROW_WAIT, escrow.fate()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if let Err(e) = self
                    .shared
                    .db
                    .write(&[Op::Delete(Table::Jobs, id.as_bytes().to_vec())])
                {
                    tracing::error!("forgetting a job whose escrow was refused: {e}");
                }
                return Err(format!("the ledger refused the job's escrow: {e}"));
            }
            // Still queued: the job goes ahead, and its leases wait in line
            // behind the escrow.
            Err(_) => tracing::warn!(
                "no block has carried job {}'s escrow after {ESCROW_WAIT:?}; going ahead",
                id.short()
            ),
        }
        self.open_auction(&mut job, now_ms());
        self.jobs.lock().insert(id, job);
        tokio::spawn(self.clone().drive(id));
        Ok(id)
    }

    fn open_auction(&self, job: &mut Job, now: u64) {
        let p = job.sched.progress();
        let remaining = u64::from(p.pending + p.running);
        let s = &job.record.submission;
        let order = Order {
            job: job.id,
            runtime: s.runtime.clone(),
            module: job.terms.module.id,
            module_bytes: job.terms.module.size,
            tasks: remaining,
            fuel_per_task_max: s.limits.fuel,
            memory_mib: (s.limits.memory_bytes.div_ceil(1 << 20)) as u32,
            gpus: 0,
            price_max_ucairn_per_gfuel: s.price_max_ucairn_per_gfuel,
            created_ms: now,
            bid_window_ms: self.bid_window_ms,
        };
        let signed = Signed::sign(&self.shared.key, ORDER_NAMESPACE, order.clone());
        self.shared
            .net
            .publish(proto::ORDERS_TOPIC, signed.to_bytes());
        job.auctions += 1;
        job.phase = Phase::Bidding(Box::new(Auction::open(order, remaining)));
    }

    /// Runs one job: closes auctions, signs leases, ticks the queue,
    /// re-auctions when every provider is gone, settles at the end.
    async fn drive(self: Arc<Self>, id: ContentId) {
        let Some(wake) = self.jobs.lock().get(&id).map(|job| job.wake.clone()) else {
            return;
        };
        loop {
            let now = now_ms();
            let mut winners = None;
            let mut settle = None;
            let effects;
            let next_deadline;
            {
                let mut jobs = self.jobs.lock();
                let mut verifier = self.verifier.lock();
                let Some(job) = jobs.get_mut(&id) else { return };
                // Deadlines hold and the end is noticed in every phase: a
                // re-auction may run while leased providers still work.
                let mut actions = Vec::new();
                let mut touched = Vec::new();
                for event in job.sched.tick(now) {
                    tracing::info!(job = %id.short(), ?event, "scheduler");
                    if let cairn_sched::Event::Expired { task, provider } = event {
                        actions.extend(verifier.withdraw(&(id, task), &provider, now));
                        touched.push((id, task));
                    }
                }
                // The verifier is shared by the node's jobs: whichever
                // driver wakes first at its deadline acts for all of them.
                if verifier.next_deadline_ms().is_some_and(|at| now >= at) {
                    actions.extend(verifier.tick(now));
                }
                effects = self.apply(&mut jobs, &mut verifier, touched, actions);
                let job = jobs.get_mut(&id).expect("held above");
                if job.sched.is_finished()
                    && verifier.job_done(&id)
                    && !matches!(job.phase, Phase::Settling | Phase::Done)
                {
                    job.phase = Phase::Settling;
                }
                match &mut job.phase {
                    Phase::Bidding(auction) if auction.ready(now) => {
                        let Phase::Bidding(auction) =
                            std::mem::replace(&mut job.phase, Phase::Leasing)
                        else {
                            unreachable!()
                        };
                        let order = auction.order().clone();
                        let outcome = (*auction).close(&self.selection, &mut self.rng.lock());
                        match outcome {
                            Outcome::Selected(chosen) => winners = Some((order, chosen)),
                            Outcome::Unplaced(reason) => {
                                job.reason = Some(reason);
                                job.phase = Phase::Queued {
                                    retry_ms: now + REAUCTION_MS,
                                };
                            }
                        }
                    }
                    Phase::Queued { retry_ms } if now >= *retry_ms => {
                        self.open_auction(job, now);
                    }
                    Phase::Running => {
                        // Work is waiting and nobody is taking it: every
                        // provider is gone, (after a restart) the restored
                        // ones never came back, or every one left already ran
                        // the replicas still wanted.
                        let p = job.sched.progress();
                        // Providers running tasks are not idle, however
                        // long a task takes: a provider with every slot busy
                        // does not pull, and asking the market again would
                        // only hear "busy" (the job read `queued` while its
                        // frames rendered). Idleness counts from when the
                        // last task stopped running.
                        if p.running > 0 {
                            job.last_pull_ms = now;
                        }
                        let idle_ms = now.saturating_sub(job.last_pull_ms.max(job.ready_by_ms));
                        if p.pending > 0 && (p.providers == 0 || idle_ms > IDLE_REAUCTION_MS) {
                            job.reason = Some(if p.providers == 0 {
                                "every leased provider is gone; finding others".into()
                            } else {
                                format!(
                                    "no provider took pending work for {idle_ms} ms (a replica \
                                     needs a provider that has not run the task); finding others"
                                )
                            });
                            job.last_pull_ms = now;
                            self.open_auction(job, now);
                        }
                    }
                    Phase::Settling => {
                        settle = Some(std::mem::take(&mut job.unsettled));
                        job.phase = Phase::Done;
                        job.finished_ms = Some(now);
                    }
                    Phase::Done => return,
                    _ => {}
                }
                next_deadline = [
                    job.sched.next_deadline_ms(),
                    verifier.next_deadline_ms(),
                    job.phase_deadline_ms(),
                ]
                .into_iter()
                .flatten()
                .min();
            }
            if let Err(e) = self.carry_out(effects).await {
                tracing::error!("persisting verification results: {e}");
            }
            if let Some((order, chosen)) = winners {
                self.lease(id, order, chosen).await;
                // The lease changed the phase: look again at once.
                continue;
            }
            if let Some(receipts) = settle {
                self.settle(id, receipts).await;
                let disputes = self.verifier.lock().close_job(&id);
                self.forget_disputes(&disputes);
                self.shared.grants.revoke(&id);
                self.shared
                    .grants
                    .revoke(&super::grants::bidders_scope(&id));
                return;
            }
            // Asleep until the next deadline or until something changes
            // the job; never longer than a safety bound, so a change that
            // forgot to notify costs latency, not progress, and never less
            // than a millisecond, so a deadline acting on nothing cannot
            // spin.
            let wait = next_deadline
                .map_or(DRIVER_SLEEP_MAX, |at| {
                    Duration::from_millis(at.saturating_sub(now_ms()))
                })
                .clamp(Duration::from_millis(1), DRIVER_SLEEP_MAX);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
            }
        }
    }

    /// Offers leases to the winners; each that signs joins the queue.
    async fn lease(
        self: &Arc<Self>,
        id: ContentId,
        order: Order,
        chosen: Vec<cairn_market::Candidate>,
    ) {
        let terms = match self.jobs.lock().get(&id) {
            Some(job) => job.terms.clone(),
            None => return,
        };
        let me = self.shared.key.public();
        // Trusted only so far: a provider that claims a long preparation
        // delays the search for others by at most what a slow machine needs
        // for a module of this size.
        let ready_wait_ms_max = (READY_WAIT_MS_BASE
            + order.module_bytes / 1024 * READY_WAIT_MS_PER_KB)
            .min(READY_WAIT_MS_MAX);
        let ready_in_ms = chosen
            .iter()
            .map(|c| u64::from(c.ready_in_ms))
            .max()
            .unwrap_or(0)
            .min(ready_wait_ms_max);
        let height = match self.shared.ledger.link().height().await {
            Ok(height) => height,
            Err(e) => {
                tracing::warn!("reading the ledger's height: {e}");
                0
            }
        };
        let leases: Vec<(Lease, u32)> = chosen
            .into_iter()
            .map(|winner| {
                let lease = Lease {
                    job: id,
                    requester: me,
                    provider: winner.provider,
                    price_ucairn_per_gfuel: winner.price_ucairn_per_gfuel,
                    fuel_per_task_max: order.fuel_per_task_max,
                    expires_height: height + LEASE_BLOCKS,
                };
                (lease, winner.slots)
            })
            .collect();
        // A provider starts pulling the moment it has signed, possibly before
        // its answer arrives here: know the lease before offering it.
        let mut newcomers = BTreeSet::new();
        {
            let mut jobs = self.jobs.lock();
            let Some(job) = jobs.get_mut(&id) else { return };
            for (lease, slots) in &leases {
                if !job.sched.is_active(&lease.provider) {
                    newcomers.insert(lease.provider);
                }
                job.sched.add_provider(
                    lease.provider,
                    slots * proto::PREFETCH_PER_SLOT_MAX,
                    now_ms(),
                );
                job.leases.insert(lease.id(), lease.provider);
                self.leases.lock().insert(lease.id(), id);
                self.grant_inputs(job, lease.provider);
            }
        }
        let offers = leases.into_iter().map(|(lease, slots)| {
            let winner = (lease.provider, slots);
            let request = Request::Lease {
                lease: lease.clone(),
                slots,
                terms: terms.clone(),
            };
            let net = self.shared.net.clone();
            async move {
                let peer = cairn_net::peer_id(&winner.0);
                let answer = net.request(peer, proto::to_bytes(&request)).await;
                (lease, winner.1, answer)
            }
        });
        let answers = futures::future::join_all(offers).await;
        let mut refusals = Vec::new();
        for (lease, slots, answer) in answers {
            let lease_id = lease.id();
            let refused = match answer.map(proto::response) {
                Ok(Ok(Response::LeaseSigned(signature))) => Ok(signature),
                Ok(Ok(Response::Refused(reason))) => Err(reason),
                Ok(_) => {
                    Counters::bump(&self.shared.counters.malformed);
                    Err("malformed answer".into())
                }
                Err(e) => Err(e.to_string()),
            };
            let signature = match refused {
                Ok(signature) => signature,
                Err(reason) => {
                    self.forget_offer(id, &lease, newcomers.contains(&lease.provider));
                    refusals.push(reason);
                    continue;
                }
            };
            let record = LeaseRecord {
                job: id.to_string(),
                provider: lease.provider.to_string(),
                slots,
            };
            if let Err(e) = self.shared.db.write(&[Op::Put(
                Table::LeasesGiven,
                lease_id.as_bytes().to_vec(),
                serde_json::to_vec(&record).expect("a lease record serializes"),
            )]) {
                tracing::error!("persisting a lease: {e}");
                self.forget_offer(id, &lease, newcomers.contains(&lease.provider));
                continue;
            }
            let provider_signature = signature;
            if let Err(e) = self.shared.ledger.send(TxKind::RecordLease {
                lease,
                provider_signature,
            }) {
                tracing::warn!("recording a lease on the ledger: {e}");
            }
        }
        let mut jobs = self.jobs.lock();
        if let Some(job) = jobs.get_mut(&id) {
            if job.leases.is_empty() || job.sched.progress().providers == 0 {
                job.reason = Some(format!("every lease was refused: {}", refusals.join("; ")));
                job.phase = Phase::Queued {
                    retry_ms: now_ms() + REAUCTION_MS,
                };
            } else {
                job.reason = None;
                job.phase = Phase::Running;
                job.ready_by_ms = now_ms() + ready_in_ms;
            }
        }
    }

    /// Undoes the registration of a lease offer that came to nothing.
    fn forget_offer(&self, id: ContentId, lease: &Lease, newcomer: bool) {
        self.leases.lock().remove(&lease.id());
        let mut jobs = self.jobs.lock();
        if let Some(job) = jobs.get_mut(&id) {
            job.leases.remove(&lease.id());
            if newcomer {
                job.sched
                    .drop_provider(&lease.provider, "did not sign its lease");
            }
        }
    }

    /// Pays for accepted work and returns the rest of the escrow: waits
    /// until blocks have carried every settlement, then closes the escrow.
    async fn settle(&self, id: ContentId, receipts: Vec<Signed<Receipt>>) {
        // Reports were checked in batches, which accept signatures the
        // ledger's strict check refuses; one such receipt would get its
        // whole settlement refused. Its provider made it: it goes unpaid.
        let receipts = match tokio::task::spawn_blocking(move || strictly_signed(receipts)).await {
            Ok((receipts, unpaid)) => {
                if unpaid > 0 {
                    Counters::bump(&self.shared.counters.bad_signature);
                    tracing::warn!(job = %id.short(), "{unpaid} receipts fail the ledger's strict signature check; not settling them");
                }
                receipts
            }
            Err(e) => {
                tracing::error!("checking receipts: {e}");
                return;
            }
        };
        let tickets: Vec<(u64, Result<super::Ticket, String>)> = receipts
            .chunks(RECEIPTS_PER_SETTLE)
            .map(|chunk| {
                let kind = TxKind::Settle {
                    job: id,
                    receipts: chunk.to_vec(),
                };
                (chunk.len() as u64, self.shared.ledger.send(kind))
            })
            .collect();
        let (mut settled, mut problems) = (0, Vec::new());
        for (receipts, ticket) in tickets {
            let fate = match ticket {
                Ok(ticket) => ticket.fate().await,
                Err(e) => Err(e),
            };
            match fate {
                Ok(()) => settled += receipts,
                Err(e) => problems.push(format!("a settlement of {receipts} receipts: {e}")),
            }
        }
        // Paid: shown at once, while the escrow's notice runs out.
        if let Some(job) = self.jobs.lock().get_mut(&id) {
            job.settled = settled;
        }
        match self.close_escrow(id).await {
            Ok(()) => {}
            Err(e) => problems.push(format!("closing the escrow: {e}")),
        }
        for problem in &problems {
            tracing::error!(job = %id.short(), "{problem}");
        }
        let record = {
            let mut jobs = self.jobs.lock();
            let Some(job) = jobs.get_mut(&id) else { return };
            job.settled = settled;
            job.record.settled = true;
            if !problems.is_empty() {
                job.reason = Some(problems.join("; "));
            }
            job.record.clone()
        };
        if let Err(e) = self.shared.db.write(&[Op::Put(
            Table::Jobs,
            id.as_bytes().to_vec(),
            serde_json::to_vec(&record).expect("a job record serializes"),
        )]) {
            tracing::error!("persisting a settled job: {e}");
        }
    }

    /// Closes a job's escrow, so its unspent budget returns: the first
    /// `CloseEscrow` ends the job's leases (after the ledger's notice), a
    /// second, once they have ended, returns the rest.
    /// A ledger that cannot be reached is asked again until it can: the
    /// budget must not stay locked.
    async fn close_escrow(&self, id: ContentId) -> Result<(), String> {
        let link = self.shared.ledger.link();
        loop {
            let escrow = match link.escrow(&id).await {
                Ok(Some(escrow)) => escrow,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::warn!("reading job {}'s escrow: {e}", id.short());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if escrow.closing {
                // Wait out the leases' notice.
                loop {
                    match link.height().await {
                        Ok(height) if height > escrow.leases_until => break,
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
            match self
                .shared
                .ledger
                .send(TxKind::CloseEscrow { job: id })?
                .fate()
                .await
            {
                Ok(()) => {}
                // Leases still live: the notice is not over yet.
                Err(e) if escrow.closing => tracing::debug!("closing the escrow again: {e}"),
                Err(e) => return Err(e),
            }
        }
    }

    /// Lets a leased provider fetch the job's module and inputs.
    fn grant_inputs(&self, job: &Job, provider: PublicKey) {
        let blobs =
            std::iter::once(job.terms.module.id).chain(job.terms.inputs.iter().map(|f| f.id));
        if !self.shared.grants.grant(job.id, blobs, provider) {
            tracing::warn!(job = %job.id.short(), "too many grants: the provider cannot fetch inputs");
        }
    }

    /// A bid arrived for one of this node's auctions.
    pub fn on_bid(&self, sender: PublicKey, bid: Signed<Bid>) -> Response {
        if bid.signer() != sender {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused("bid signed by someone other than the sender".into());
        }
        if self.verifier.lock().trust().record(&sender).banned() {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused("convicted of cheating this requester".into());
        }
        let order = bid.payload_unchecked().order;
        let account = match self.shared.ledger.link() {
            super::LedgerLink::Local(ledger) => Some(ledger.view(|s| {
                s.provider(&sender).filter(|_| s.can_bid(&sender)).map(|p| {
                    (
                        u128::from(p.stake),
                        (p.reputation.tasks_settled, p.reputation.slashes),
                    )
                })
            })),
            super::LedgerLink::Remote { .. } => None,
        };
        let (stake, record) = match account {
            Some(Some((stake, record))) => (Some(stake), record),
            Some(None) => (None, (0, 0)),
            // Without a local replica the lease's recording checks the
            // stake; count it as known-staked here.
            None => (Some(0), (0, 0)),
        };
        let now = now_ms();
        let mut jobs = self.jobs.lock();
        let auction = jobs.values_mut().find_map(|job| match &mut job.phase {
            Phase::Bidding(auction) if auction.order_id() == order => {
                Some((job.id, job.terms.module.id, &job.wake, auction))
            }
            _ => None,
        });
        let Some((job, module, wake, auction)) = auction else {
            Counters::bump(&self.shared.counters.replayed);
            return Response::Refused("no open auction for that order".into());
        };
        match auction.bid(&bid, stake, record, now) {
            Ok(()) => {
                // Enough bids close the auction before its window ends.
                wake.notify_one();
                // A bidder fetches and compiles the module while the
                // auction runs; the inputs wait for a lease.
                let scope = super::grants::bidders_scope(&job);
                self.shared.grants.grant(scope, [module], sender);
                Response::Ack
            }
            Err(rejection) => {
                if rejection == cairn_market::BidRejection::BadSignature {
                    Counters::bump(&self.shared.counters.bad_signature);
                }
                Response::Refused(rejection.to_string())
            }
        }
    }

    /// A provider declined one of this node's orders.
    pub fn on_decline(&self, sender: PublicKey, order: ContentId, reason: &str) -> Response {
        let mut jobs = self.jobs.lock();
        for job in jobs.values_mut() {
            if let Phase::Bidding(auction) = &mut job.phase
                && auction.order_id() == order
            {
                auction.decline(sender, reason);
                return Response::Ack;
            }
        }
        Response::Refused("no open auction for that order".into())
    }

    /// A connection to `peer` closed: if it was a leased provider, its
    /// tasks go to others at once instead of at their deadline. It keeps
    /// its lease: restarted, it pulls again.
    pub fn peer_lost(&self, peer: &PeerId) {
        let Some(key) = cairn_net::public_key(peer) else {
            return;
        };
        let now = now_ms();
        let mut jobs = self.jobs.lock();
        let mut verifier = self.verifier.lock();
        for job in jobs.values_mut() {
            for task in job.sched.running_of(&key) {
                // Nothing to carry out: a withdrawn replica only lets the
                // task be handed to someone else.
                let _ = verifier.withdraw(&(job.id, task), &key, now);
            }
            for event in job.sched.release_all(&key) {
                tracing::info!(job = %job.id.short(), ?event, "scheduler");
                job.wake.notify_one();
            }
        }
    }

    /// A provider returns commitments and results and asks for more work.
    pub async fn on_pull(
        self: &Arc<Self>,
        peer: PeerId,
        sender: PublicKey,
        lease: ContentId,
        want: u32,
        reports: Vec<Report>,
    ) -> Response {
        let Some(job_id) = self.leases.lock().get(&lease).copied() else {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused("unknown lease".into());
        };
        let Some(tasks) = self
            .jobs
            .lock()
            .get(&job_id)
            .map(|j| j.sched.progress().total)
        else {
            return Response::Refused("unknown job".into());
        };
        let mut stored = reports.len() as u32;
        let positions: Vec<u64> = reports.iter().map(Report::task).collect();
        let Checked {
            commits,
            reveals,
            misstated,
            mut failed,
        } = self.check_reports(sender, lease, tasks, reports);
        if self.misbehave == Some(super::RequesterMisbehave::Framer) {
            for commit in &commits {
                let framed = self
                    .framed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if framed < FRAMED_COMMITS_MAX {
                    let c = commit.payload_unchecked();
                    tokio::spawn(self.clone().challenge(c.lease, c.task, commit.clone()));
                }
            }
        }
        // Fetch the outputs of results that were asked for before taking
        // them: a result is only judged once its files are here and
        // verified.
        let mut fetched = Vec::new();
        for revealed in reveals {
            let task = revealed.record.task;
            let (asked, broken) = {
                let jobs = self.jobs.lock();
                jobs.get(&job_id).map_or((false, None), |job| {
                    let asked = job
                        .replicas
                        .asks
                        .get(&sender)
                        .is_some_and(|tasks| tasks.contains(&task));
                    (asked, job.broken_result(&revealed.record).err())
                })
            };
            if !asked {
                continue;
            }
            if let Some(reason) = broken {
                // More than the task could have written or used, or not what
                // it was told to write: a lie, not a result, and nothing of
                // it is fetched. Refused like any report that breaks the
                // job's rules.
                Counters::bump(&self.shared.counters.refused);
                failed.push((task, reason));
                continue;
            }
            let record = &revealed.record;
            let streams = [&record.stdout, &record.stderr];
            let mut ok = true;
            for file in record.outputs.iter().chain(streams.into_iter().flatten()) {
                let Ok(id) = file.id.parse() else {
                    ok = false;
                    break;
                };
                if let Err(e) = fetch_blob(&self.shared, peer, id, file.size).await {
                    tracing::warn!("output of task {task}: {e}");
                    ok = false;
                    break;
                }
            }
            if ok {
                self.shared.pin(result_blobs(&revealed.record));
                fetched.push(revealed);
            } else {
                // Not acknowledged (nor anything after it in the pull): the
                // provider sends it again. Reports are processed idempotently.
                tracing::info!("task {task}: outputs could not be fetched yet");
                let at = positions
                    .iter()
                    .position(|t| *t == u64::from(task))
                    .unwrap_or(0) as u32;
                stored = stored.min(at);
            }
        }
        let now = now_ms();
        let (response, effects) = {
            let mut jobs = self.jobs.lock();
            let mut verifier = self.verifier.lock();
            let Some(job) = jobs.get_mut(&job_id) else {
                return Response::Refused("unknown job".into());
            };
            if job.leases.get(&lease) != Some(&sender) {
                Counters::bump(&self.shared.counters.refused);
                return Response::Refused("not your lease".into());
            }
            let room = MISSTATED_MAX.saturating_sub(job.misstated.len());
            job.misstated.extend(misstated.into_iter().take(room));
            let mut actions = Vec::new();
            let mut touched = Vec::new();
            for commit in commits {
                let c = commit.payload_unchecked();
                let task = c.task as u32;
                let key = (job_id, task);
                touched.push(key);
                let completion =
                    job.sched
                        .complete(&sender, task, ContentId::from_digest(c.commitment), now);
                if completion != Completion::Accepted {
                    // A copy that lost the race, a retransmission, or a
                    // task taken back: verification no longer waits for it.
                    continue;
                }
                if let Some(cairn_sched::TaskState::Done { superseded, .. }) = job.sched.task(task)
                {
                    for other in superseded.clone() {
                        actions.extend(verifier.withdraw(&key, &other, now));
                    }
                }
                match verifier.commit(&key, &sender, cairn_verify::Commitment(c.commitment), now) {
                    Ok(more) => {
                        job.replicas.commits.insert((task, sender), commit);
                        actions.extend(more);
                    }
                    Err(e) => tracing::debug!(job = %job_id.short(), task, "commit: {e}"),
                }
            }
            for revealed in fetched {
                let task = revealed.record.task;
                let key = (job_id, task);
                touched.push(key);
                if let Some(tasks) = job.replicas.asks.get_mut(&sender) {
                    tasks.remove(&task);
                }
                let o = revealed.opening.payload_unchecked();
                let reveal = Reveal {
                    digest: o.digest,
                    salt: o.salt,
                };
                job.replicas
                    .revealed
                    .insert((task, sender), revealed.clone());
                match verifier.reveal(&key, &sender, &reveal, now) {
                    Ok(more) => actions.extend(more),
                    Err(e) => tracing::debug!(job = %job_id.short(), task, "reveal: {e}"),
                }
            }
            for (task, reason) in failed.drain(..) {
                tracing::info!(job = %job_id.short(), task, "provider could not run it: {reason}");
                if let Some(event) = job.sched.release(&sender, task, now) {
                    tracing::warn!(job = %job_id.short(), ?event, "scheduler");
                }
                actions.extend(verifier.withdraw(&(job_id, task), &sender, now));
                touched.push((job_id, task));
            }
            let effects = self.apply(&mut jobs, &mut verifier, touched, actions);
            let job = jobs.get_mut(&job_id).expect("held above");
            let tasks = match job.sched.pull(&sender, want, now) {
                Ok(tasks) => tasks,
                Err(refused) => {
                    // Its reports above still count; it just gets no more
                    // work (`finished` tells it so).
                    tracing::info!(job = %job_id.short(), "pull refused: {refused}");
                    Vec::new()
                }
            };
            for &task in &tasks {
                verifier.assign_copy(&(job_id, task), sender, now);
            }
            job.replicas.executions += tasks.len() as u64;
            // Work that waits while providers pull is work none of them may
            // take (each already ran it): that counts as idle, and brings
            // other providers in.
            if !tasks.is_empty() || job.sched.progress().pending == 0 {
                job.last_pull_ms = now;
            }
            if !tasks.is_empty() && job.first_task_ms.is_none() {
                job.first_task_ms = Some(now);
            }
            let assignments = tasks.into_iter().map(|task| job.assignment(task)).collect();
            let reveal: Vec<u32> = job
                .replicas
                .asks
                .get(&sender)
                .map(|tasks| tasks.iter().copied().take(proto::BATCH_MAX).collect())
                .unwrap_or_default();
            // Even a provider dropped from the queue stays until the job is
            // done: it may still have to reveal, or to answer a dispute.
            let finished = matches!(job.phase, Phase::Settling | Phase::Done);
            // What it reported may finish the job or free work to hand out.
            job.wake.notify_one();
            (
                Response::Tasks {
                    stored,
                    tasks: assignments,
                    finished,
                    reveal,
                },
                effects,
            )
        };
        // Durable before the provider is told to forget its reports; the
        // commit waits on the disk, so not on an async worker.
        if let Err(e) = self.carry_out(effects).await {
            tracing::error!("persisting results: {e}");
            return Response::Refused("the requester cannot store results now".into());
        }
        response
    }

    /// Sorts a pull's reports, keeping only those that are well signed, by
    /// the sender, for this lease (signatures checked as one batch).
    /// `tasks` is the job's task count: every index is checked against it
    /// here, so nothing past this point sees one out of range.
    fn check_reports(
        &self,
        sender: PublicKey,
        lease: ContentId,
        tasks: u32,
        reports: Vec<Report>,
    ) -> Checked {
        let mut signed: Vec<(Vec<u8>, PublicKey, cairn_wire::Signature)> = Vec::new();
        for report in &reports {
            match report {
                Report::Committed(commit) => signed.push((
                    commit.signing_bytes(COMMIT_NAMESPACE),
                    commit.signer(),
                    *commit.signature(),
                )),
                Report::Revealed {
                    opening, receipt, ..
                } => {
                    signed.push((
                        opening.signing_bytes(OPENING_NAMESPACE),
                        opening.signer(),
                        *opening.signature(),
                    ));
                    signed.push((
                        receipt.signing_bytes(RECEIPT_NAMESPACE),
                        receipt.signer(),
                        *receipt.signature(),
                    ));
                }
                Report::Failed { .. } => {}
            }
        }
        let batch: Vec<_> = signed
            .iter()
            .map(|(bytes, key, signature)| (bytes.as_slice(), key, signature))
            .collect();
        let all_valid = cairn_wire::verify_batch(&batch);
        let (mut commits, mut reveals, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        let mut misstated = Vec::new();
        let refuse = |counter: &std::sync::atomic::AtomicU64| Counters::bump(counter);
        let counters = &self.shared.counters;
        for report in reports {
            match report {
                Report::Committed(commit) => {
                    let c = commit.payload_unchecked();
                    if !all_valid && commit.verify(COMMIT_NAMESPACE).is_err() {
                        refuse(&counters.bad_signature);
                    } else if commit.signer() != sender
                        || c.lease != lease
                        || c.task >= u64::from(tasks)
                    {
                        refuse(&counters.refused);
                    } else {
                        commits.push(commit);
                    }
                }
                Report::Revealed {
                    opening,
                    receipt,
                    code,
                    exit,
                    outcome,
                    outputs,
                    stdout,
                    stderr,
                } => {
                    let (o, r) = (opening.payload_unchecked(), receipt.payload_unchecked());
                    // The digest signed is the manifest's: rebuilt from the
                    // report, it binds the outputs delivered, the streams
                    // and the fuel paid to what every agreeing replica
                    // committed to.
                    let stated = cairn_wire::ResultManifest {
                        code,
                        exit,
                        text: outcome.clone(),
                        fuel_used: r.fuel_used,
                        stdout: stdout.id,
                        stderr: stderr.id,
                        outputs: outputs
                            .iter()
                            .map(|f| cairn_wire::OutputFile {
                                path: f.name.clone(),
                                size_bytes: f.size,
                                id: f.id,
                            })
                            .collect(),
                    };
                    if !all_valid
                        && (opening.verify(OPENING_NAMESPACE).is_err()
                            || receipt.verify(RECEIPT_NAMESPACE).is_err())
                    {
                        refuse(&counters.bad_signature);
                    } else if opening.signer() != sender
                        || receipt.signer() != sender
                        || o.lease != lease
                        || r.lease != lease
                        || o.task != r.task
                        || o.digest != r.digest
                        || r.task >= u64::from(tasks)
                        // Names end up as paths on the requester's disk.
                        || outputs
                            .iter()
                            .any(|f| cairn_job::check_output_path(&f.name).is_err())
                    {
                        refuse(&counters.refused);
                    } else if stated.digest() != r.digest {
                        // Outputs, streams or fuel other than those it
                        // committed to: nothing of it is taken or paid,
                        // and the task goes to someone else.
                        refuse(&counters.refused);
                        failed.push((
                            r.task as u32,
                            "its report does not have the digest it signed".into(),
                        ));
                        // If only its fuel was misstated, the result another
                        // replica reports with this digest convicts it.
                        misstated.push((receipt.clone(), stated));
                    } else {
                        let record = TaskRecord {
                            task: r.task as u32,
                            provider: sender.to_string(),
                            digest: r.digest.to_string(),
                            fuel_used: r.fuel_used,
                            success: Report::succeeded(code, exit),
                            outcome,
                            outputs: outputs
                                .iter()
                                .map(|f| SubmittedFile {
                                    name: f.name.clone(),
                                    id: f.id.to_string(),
                                    size: f.size,
                                })
                                .collect(),
                            stdout: stream_file("stdout", stdout),
                            stderr: stream_file("stderr", stderr),
                            receipt: cairn_wire::hex(&receipt.to_bytes()),
                        };
                        reveals.push(Revealed {
                            record,
                            receipt,
                            opening,
                        });
                    }
                }
                Report::Failed { task, .. } if task >= tasks => refuse(&counters.refused),
                Report::Failed { task, reason } => failed.push((task, reason)),
            }
        }
        Checked {
            commits,
            reveals,
            misstated,
            failed,
        }
    }

    /// A job's status.
    pub fn status(&self, id: &ContentId) -> Option<JobStatus> {
        let jobs = self.jobs.lock();
        let verifier = self.verifier.lock();
        jobs.get(id)
            .map(|job| job.status(verifier.accepted_count(id), now_ms()))
    }

    /// Every job's status, oldest first.
    pub fn statuses(&self) -> Vec<JobStatus> {
        let mut all: Vec<JobStatus> = self
            .jobs
            .lock()
            .values()
            .map(|job| job.status(self.verifier.lock().accepted_count(&job.id), now_ms()))
            .collect();
        all.sort_by_key(|s| s.submitted_ms);
        all
    }

    /// A job's results so far, by task.
    pub fn results(&self, id: &ContentId) -> Option<Vec<TaskRecord>> {
        if !self.jobs.lock().contains_key(id) {
            return None;
        }
        let rows = self.shared.db.scan(Table::Results, id.as_bytes()).ok()?;
        Some(
            rows.into_iter()
                .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use cairn_wire::Keypair;

    use super::*;

    fn receipt(task: u64) -> Receipt {
        Receipt {
            lease: ContentId::of(b"lease"),
            task,
            digest: ContentId::of(b"result"),
            fuel_used: 1_000,
        }
    }

    /// A receipt signed with a key that has a small-order component, so
    /// the equation holds only up to a torsion point: the ledger's strict
    /// check refuses it, and batch verification (random weights derived
    /// from the batch) accepts it whenever the weight cancels that point,
    /// often enough for a provider to try nonces until it does, as here.
    fn mixed_order_receipt(task: u64) -> Signed<Receipt> {
        use curve25519_dalek::{EdwardsPoint, Scalar, constants::EIGHT_TORSION};
        use sha2::{Digest, Sha512};
        let secret = Scalar::from_bytes_mod_order([7; 32]);
        let key = (EdwardsPoint::mul_base(&secret) + EIGHT_TORSION[1]).compress();
        // A genuine envelope gives the layout: version, signer, signature,
        // payload.
        let template = Signed::sign(
            &Keypair::from_seed([3; 32]),
            RECEIPT_NAMESPACE,
            receipt(task),
        );
        let message = template.signing_bytes(RECEIPT_NAMESPACE);
        for nonce in 1..=u16::MAX {
            let mut seed = [0; 32];
            seed[..2].copy_from_slice(&nonce.to_le_bytes());
            let r = Scalar::from_bytes_mod_order(seed);
            let big_r = EdwardsPoint::mul_base(&r).compress();
            let hash: [u8; 64] = Sha512::new()
                .chain_update(big_r.as_bytes())
                .chain_update(key.as_bytes())
                .chain_update(&message)
                .finalize()
                .into();
            let k = Scalar::from_bytes_mod_order_wide(&hash);
            let s = r + k * secret;
            let mut bytes = template.to_bytes();
            bytes[1..33].copy_from_slice(key.as_bytes());
            bytes[33..65].copy_from_slice(big_r.as_bytes());
            bytes[65..97].copy_from_slice(s.as_bytes());
            let crafted = Signed::<Receipt>::from_bytes(&bytes, &()).unwrap();
            let signer = crafted.signer();
            if cairn_wire::verify_batch(&[(&message, &signer, crafted.signature())])
                && crafted.verify(RECEIPT_NAMESPACE).is_err()
            {
                return crafted;
            }
        }
        unreachable!("about one nonce in sixteen will do")
    }

    #[test]
    fn a_receipt_only_batch_verification_accepts_is_left_out_of_settlement() {
        let provider = Keypair::from_seed([3; 32]);
        let honest = |task| Signed::sign(&provider, RECEIPT_NAMESPACE, receipt(task));
        let crafted = mixed_order_receipt(1);
        let message = crafted.signing_bytes(RECEIPT_NAMESPACE);
        let signer = crafted.signer();
        assert!(cairn_wire::verify_batch(&[(
            &message,
            &signer,
            crafted.signature()
        )]));
        assert!(crafted.verify(RECEIPT_NAMESPACE).is_err());
        // Settled as it was, it gets every receipt beside it refused.
        let settle = |receipts| {
            cairn_ledger::admit(
                cairn_ledger::TxBody {
                    chain: ContentId::of(b"chain"),
                    nonce: 0,
                    kind: TxKind::Settle {
                        job: ContentId::of(b"job"),
                        receipts,
                    },
                }
                .sign(&Keypair::from_seed([9; 32])),
            )
        };
        assert!(settle(vec![honest(0), crafted.clone(), honest(2)]).is_err());

        let mut corrupted = honest(3).to_bytes();
        let last = corrupted.len() - 1;
        corrupted[last] ^= 1;
        let corrupted = Signed::<Receipt>::from_bytes(&corrupted, &()).unwrap();
        let (good, unpaid) = strictly_signed(vec![honest(0), crafted, honest(2), corrupted]);
        assert_eq!(unpaid, 2);
        let tasks: Vec<u64> = good.iter().map(|r| r.payload_unchecked().task).collect();
        assert_eq!(tasks, [0, 2]);
        assert!(settle(good).is_ok());
    }
}
