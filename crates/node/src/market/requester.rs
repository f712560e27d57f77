//! The requester role's shell: escrow, the network side of auctions and
//! leases, fetching results, settlement, and one driver task per job. The
//! decisions are `cairn-roles`' [`RequesterCore`], held under one lock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use cairn_ledger::{Acceptance, Lease, TxKind};
use cairn_market::{Bid, Order};
use cairn_net::PeerId;
use cairn_roles::requester::{
    ApprovalRefused, Arrival, Asked, BidRefused, CancelRefused, Effects, JobRecord, PullRefused,
    RequesterCore, Step, StreamRefused, Write, check_reports,
};
use cairn_store::{Op, Table};
use cairn_wire::codec::{DecodeExt as _, DecodeFixed as _, Encode as _};
use cairn_wire::{ContentId, PublicKey, Signed};
use tokio::sync::Notify;

use super::proto::{self, Report, Request, Response, Submission};
use super::{Counters, FetchError, MarketConfig, Shared, fetch_blob, now_ms};

use cairn_api::{JobStatus, TaskRecord};

/// How long submitting a job waits for a block to lock its escrow before
/// the job goes ahead with the escrow still queued.
const ESCROW_WAIT: Duration = Duration::from_secs(60);
/// The longest a job's driver sleeps without a deadline or a notice.
const DRIVER_SLEEP_MAX: Duration = Duration::from_secs(1);

/// Why the node did not cancel a job.
#[derive(Debug)]
pub enum CancelError {
    /// The requester's core refused it.
    Refused(CancelRefused),
    /// Its escrow is not on the ledger yet, so nothing can return yet.
    EscrowPending,
    /// The ledger could not be read.
    Ledger(String),
}

impl From<CancelRefused> for CancelError {
    fn from(refused: CancelRefused) -> Self {
        Self::Refused(refused)
    }
}

impl std::fmt::Display for CancelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(refused) => refused.fmt(f),
            Self::EscrowPending => {
                f.write_str("its escrow is not on the ledger yet; try again after the next block")
            }
            Self::Ledger(e) => write!(f, "reading its escrow: {e}"),
        }
    }
}

/// A persisted lease given: its terms (each acceptance names them) and the
/// slots its provider offered.
struct LeaseRecord {
    lease: Lease,
    slots: u32,
}

impl LeaseRecord {
    /// The slots, then the lease's canonical encoding.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.slots.to_be_bytes().to_vec();
        out.extend_from_slice(&self.lease.encode());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let slots = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
        let lease = Lease::decode(cairn_wire::codec::Copying(bytes.get(4..)?)).ok()?;
        Some(Self { lease, slots })
    }
}

/// Each dispute side's signed trace claims, by (dispute, side).
pub(super) type DisputeClaims = BTreeMap<(u64, PublicKey), Vec<Signed<cairn_proto::TraceClaim>>>;

/// The requester role.
pub(crate) struct Requester {
    pub(super) shared: Arc<Shared>,
    /// Every decision about this node's jobs. Held only for the decision,
    /// never across an await.
    pub(super) core: Mutex<RequesterCore>,
    /// Wakes each job's driver: whatever changes a job from outside it (a
    /// pull, a bid, a lost peer, a verification action) notifies, and
    /// between those the driver sleeps until the job's next deadline.
    wakes: Mutex<BTreeMap<ContentId, Arc<JobSignals>>>,
    /// Leases whose pull is held for a stream's next tasks (one each).
    held: Mutex<BTreeSet<ContentId>>,
    /// Where the requester re-executes disputed segments.
    pub(super) referee_dir: std::path::PathBuf,
    pub(super) runtime: std::sync::OnceLock<Arc<cairn_exec::WasmRuntime>>,
    /// Each dispute side's signed trace claims, by (dispute, side): what
    /// validators hold it to.
    pub(super) claims: Mutex<DisputeClaims>,
    /// This node's judge of cases, asked directly when this node is a
    /// validator itself.
    pub(super) adjudicator: Arc<super::adjudicator::Adjudicator>,
    /// Since when (ms) the referee of each dispute waits for a side to
    /// build the agreed state.
    pub(super) snapshot_waits: Mutex<BTreeMap<u64, u64>>,
    pub(super) misbehave: Option<super::RequesterMisbehave>,
    /// Commits a framer has challenged so far.
    framed: std::sync::atomic::AtomicU32,
    /// The ledger height at which the core was last told how many
    /// providers may bid.
    bidders_at: std::sync::atomic::AtomicU64,
    /// Fetches of revealed outputs, by provider, job, task and files:
    /// they run beside the pulls that asked for them, so a slow transfer
    /// never holds a pull's answer past the provider's request timeout.
    fetches: Mutex<BTreeMap<FetchKey, tokio::sync::watch::Receiver<Fetch>>>,
    /// The latest decision ([`Effects::seq`]) written for each stored key,
    /// held across the write: one batch is written at a time, and none
    /// over a newer decision.
    pub(super) written: tokio::sync::Mutex<BTreeMap<WriteKey, u64>>,
}

/// What a core write stores under: its table and key.
pub(super) type WriteKey = (u8, Vec<u8>);

/// A reveal whose outputs are fetched: provider, job, task, and the
/// files it names ([`files_of`]).
type FetchKey = (PublicKey, ContentId, u32, ContentId);

/// The id of the list of files `record` names, with their sizes: the
/// result's digest does not bind every one of them (a tool's logs), so a
/// fetch done for one list says nothing of another.
fn files_of(record: &TaskRecord) -> ContentId {
    let mut listed = Vec::new();
    for (id, size) in files(record) {
        listed.extend_from_slice(id.as_bytes());
        listed.extend_from_slice(&size.to_be_bytes());
    }
    ContentId::of(&listed)
}

/// The blobs `record` names, outputs then streams, with their sizes.
fn files(record: &TaskRecord) -> Vec<(ContentId, u64)> {
    let streams = [&record.stdout, &record.stderr].into_iter().flatten();
    record
        .outputs
        .iter()
        .chain(streams)
        .map(|f| (f.id, f.size))
        .collect()
}

/// How far a fetch of a reveal's outputs got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetch {
    /// Still transferring (or waiting on another fetch of the same blob).
    Running,
    /// Every output is in the store, verified.
    Done,
    /// The provider failed the transfer, or sent wrong bytes.
    Failed,
    /// Another fetch of the same blob held it too long: nothing the
    /// provider did; the next pull tries again.
    Again,
}

/// How long one pull waits for the outputs of its reveals before it is
/// answered: well inside the provider's request timeout (30 s), so that
/// the answer, and the tasks and reveal requests in it, reach it. What is
/// not fetched by then is not acknowledged; the provider sends it again
/// and the fetch goes on meanwhile. Answers held up by a transfer were
/// once lost until an honest provider missed its reveal deadline.
const PULL_FETCH_WAIT: Duration = Duration::from_secs(2);

/// The longest an idle provider's empty pull of a live stream is held for
/// the stream's next tasks: answered when they come, it takes them at
/// once, where its next pull would have come up to half a second later.
/// Well within a request's timeout.
const PULL_HOLD: Duration = Duration::from_secs(2);

/// Whether a pull's answer gives its provider nothing to do: no task, no
/// reveal asked, no acceptance, and the job not finished.
fn nothing_to_take(answer: &Response) -> bool {
    matches!(
        answer,
        Response::Tasks { tasks, reveal, finished: false, accepted: None, .. }
            if tasks.is_empty() && reveal.is_empty()
    )
}

/// A lease whose pull is held, for as long as this lives.
struct Held<'a> {
    held: &'a Mutex<BTreeSet<ContentId>>,
    lease: ContentId,
}

impl<'a> Held<'a> {
    /// `None` if a pull of `lease` is held already.
    fn new(held: &'a Mutex<BTreeSet<ContentId>>, lease: ContentId) -> Option<Self> {
        // Not `then_some(Self { .. })`: that builds the guard whatever the
        // answer, and a refused one, dropped at once, took the lock the
        // insert still held (a second pull of a lease hung the node).
        if !held.lock().insert(lease) {
            return None;
        }
        Some(Self { held, lease })
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.held.lock().remove(&self.lease);
    }
}

/// What a job's driver, and pulls held for its next tasks, wait on.
#[derive(Default)]
struct JobSignals {
    /// Something changed the job: its driver looks again.
    changed: Notify,
    /// A live stream was given tasks: pulls held for them are answered.
    work: Notify,
}

/// The most reveal fetches a requester tracks at once; past it, reveals
/// wait for a later pull.
const FETCHES_MAX: usize = 4_096;

/// The most honest commits a framer requester (`--misbehave framer`)
/// challenges: enough to show that none sticks, few enough to keep a
/// test's ledger quiet.
pub const FRAMED_COMMITS_MAX: u32 = 4;

/// The blobs a result names: outputs and streams.
fn result_blobs(record: &TaskRecord) -> Vec<ContentId> {
    files(record).into_iter().map(|(id, _)| id).collect()
}

pub(super) fn result_key(job: &ContentId, task: u32) -> Vec<u8> {
    let mut key = job.as_bytes().to_vec();
    key.extend_from_slice(&task.to_be_bytes());
    key
}

/// The store operation a core write stands for.
pub(super) fn write_op(write: &Write) -> Op {
    match write {
        Write::Result { job, record } => Op::Put(
            Table::Results,
            result_key(job, record.task),
            serde_json::to_vec(record).expect("a task record serializes"),
        ),
        Write::ForgetResult { job, task } => Op::Delete(Table::Results, result_key(job, *task)),
        Write::Trust { provider, record } => Op::Put(
            Table::Trust,
            provider.as_bytes().to_vec(),
            record.to_bytes().to_vec(),
        ),
        Write::Job { id, record } => Op::Put(
            Table::Jobs,
            id.as_bytes().to_vec(),
            serde_json::to_vec(record).expect("a job record serializes"),
        ),
    }
}

/// The table and key `write` stores under.
fn write_key(write: &Write) -> WriteKey {
    match write {
        Write::Result { job, record } => (0, result_key(job, record.task)),
        Write::ForgetResult { job, task } => (0, result_key(job, *task)),
        Write::Trust { provider, .. } => (1, provider.as_bytes().to_vec()),
        Write::Job { id, .. } => (2, id.as_bytes().to_vec()),
    }
}

/// The writes of a batch decided at `seq` that no newer decision about the
/// same key was written over; `written` then holds `seq` for their keys.
pub(super) fn not_superseded<'a>(
    written: &mut BTreeMap<WriteKey, u64>,
    seq: u64,
    writes: &'a [Write],
) -> Vec<&'a Write> {
    writes
        .iter()
        .filter(|w| {
            let latest = written.entry(write_key(w)).or_insert(0);
            let newer = seq >= *latest;
            *latest = (*latest).max(seq);
            newer
        })
        .collect()
}

impl Requester {
    /// Restores persisted jobs and starts their drivers.
    pub fn start(
        shared: Arc<Shared>,
        config: &MarketConfig,
        adjudicator: Arc<super::adjudicator::Adjudicator>,
    ) -> Result<Arc<Self>, String> {
        let core = RequesterCore::new(
            shared.key.clone(),
            config.sched.clone(),
            config.verify.clone(),
            config.bid_window_ms,
            // Which results are checked must not be predictable by the
            // providers checked (a clock's milliseconds would be).
            cairn_wire::random_seed(),
        );
        let requester = Arc::new(Self {
            shared,
            core: Mutex::new(core),
            wakes: Mutex::new(BTreeMap::new()),
            held: Mutex::new(BTreeSet::new()),
            referee_dir: config.data_dir.join("referee"),
            runtime: std::sync::OnceLock::new(),
            claims: Mutex::new(BTreeMap::new()),
            snapshot_waits: Mutex::new(BTreeMap::new()),
            adjudicator,
            misbehave: config.requester_misbehave,
            framed: Default::default(),
            bidders_at: std::sync::atomic::AtomicU64::new(u64::MAX),
            fetches: Mutex::new(BTreeMap::new()),
            written: tokio::sync::Mutex::new(BTreeMap::new()),
        });
        requester.restore()?;
        Ok(requester)
    }

    fn restore(self: &Arc<Self>) -> Result<(), String> {
        let db = &self.shared.db;
        let now = now_ms();
        // Challenges posted before the restart are followed again, so a
        // provider that withholds its reveal is still claimed against.
        for (key, value) in db.scan(Table::Challenges, b"").map_err(|e| e.to_string())? {
            let (lease, task) = key.split_at_checked(32).ok_or("bad challenge key")?;
            let lease = ContentId::from_digest(lease.try_into().map_err(|_| "bad challenge key")?);
            let task = u64::from_be_bytes(task.try_into().map_err(|_| "bad challenge key")?);
            let provider: [u8; 32] = value.try_into().map_err(|_| "bad challenge record")?;
            let provider = PublicKey::decode_fixed(provider)
                .map_err(|e| format!("a challenged provider: {e}"))?;
            tokio::spawn(self.clone().follow_challenge(lease, task, provider));
        }
        // Cases brought before the restart are brought again, so a cheat
        // caught just before a crash is still slashed.
        for (key, value) in db.scan(Table::Cases, b"").map_err(|e| e.to_string())? {
            match super::verification::StoredCase::decode(&key, &value) {
                Ok(stored) => {
                    tokio::spawn(self.clone().bring(stored));
                }
                Err(e) => tracing::warn!("{e}: not brought again"),
            }
        }
        for (key, value) in db.scan(Table::Trust, b"").map_err(|e| e.to_string())? {
            let key: [u8; 32] = key.try_into().map_err(|_| "bad trust key")?;
            let provider = PublicKey::decode_fixed(key).map_err(|e| format!("a trust key: {e}"))?;
            let record = cairn_verify::Record::from_bytes(&value).ok_or("bad trust record")?;
            self.core.lock().restore_trust(provider, record);
        }
        let mut ids = Vec::new();
        for (key, value) in db.scan(Table::Jobs, b"").map_err(|e| e.to_string())? {
            let id = ContentId::from_digest(key.try_into().map_err(|_| "bad job key")?);
            let record: JobRecord = serde_json::from_slice(&value).map_err(|e| e.to_string())?;
            self.add_job(id, record, now)?;
            for (_, value) in db
                .scan(Table::Results, id.as_bytes())
                .map_err(|e| e.to_string())?
            {
                let result: TaskRecord =
                    serde_json::from_slice(&value).map_err(|e| e.to_string())?;
                self.shared.pin(result_blobs(&result));
                // A result the job's stored record does not know (a stream's
                // task whose record was not stored) is skipped, not a reason
                // for the node not to start.
                if let Err(e) = self.core.lock().restore_result(&id, &result) {
                    tracing::warn!(job = %id.short(), task = result.task, "result not restored: {e}");
                }
            }
            // A job cancelled before the crash is cancelled again.
            let effects = self.core.lock().restored(&id, now);
            if !effects.is_empty() {
                let requester = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = requester.carry_out(effects).await {
                        tracing::error!("cancelling a restored job again: {e}");
                    }
                });
            }
            ids.push(id);
        }
        for (key, value) in db
            .scan(Table::LeasesGiven, b"")
            .map_err(|e| e.to_string())?
        {
            let Some(record) = LeaseRecord::from_bytes(&value)
                .filter(|r| r.lease.id().as_bytes().as_slice() == key.as_slice())
            else {
                // Written by an older node (or damaged): its provider claims
                // what it was accepted for by itself, and the job's work
                // goes to the leases the requester can read.
                tracing::warn!(
                    "an unreadable lease record ({} bytes) is skipped",
                    value.len()
                );
                continue;
            };
            let (job_id, provider) = (record.lease.job, record.lease.provider);
            if self
                .core
                .lock()
                .restore_lease(record.lease, record.slots, now)
            {
                self.grant_inputs(&job_id, provider);
            }
        }
        for id in ids {
            tokio::spawn(self.clone().drive(id));
        }
        Ok(())
    }

    /// Hands a job to the core and pins its module and inputs.
    fn add_job(&self, id: ContentId, record: JobRecord, now: u64) -> Result<(), String> {
        let mut core = self.core.lock();
        core.add_job(id, record, now)?;
        self.shared.pin(core.jobs[&id].blobs());
        self.wakes.lock().insert(id, Arc::default());
        Ok(())
    }

    /// Wakes the drivers of `jobs`.
    pub(super) fn wake(&self, jobs: impl IntoIterator<Item = ContentId>) {
        let wakes = self.wakes.lock();
        for job in jobs {
            if let Some(wake) = wakes.get(&job) {
                wake.changed.notify_one();
            }
        }
    }

    /// Checks and records a new job, queues its escrow, and starts bidding.
    pub async fn submit(self: &Arc<Self>, submission: Submission) -> Result<ContentId, String> {
        submission.check()?;
        let own = submission.tasks.iter().flat_map(|t| &t.inputs);
        for file in std::iter::once(&submission.module)
            .chain(&submission.inputs)
            .chain(own)
        {
            if self.shared.blobs.size(&file.id) != Some(file.size) {
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
        let record = JobRecord::new(submission, submitted_ms);
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
        self.add_job(id, record, now_ms())?;
        self.know_bidders();
        let mut effects = Effects::default();
        self.core.lock().open_auction(&id, now_ms(), &mut effects);
        if let Err(e) = self.carry_out(effects).await {
            tracing::error!("opening an auction: {e}");
        }
        tokio::spawn(self.clone().drive(id));
        Ok(id)
    }

    /// Tells the core how many providers may bid, once per block: each
    /// order draws its share of them. A node without a replica of the
    /// ledger does not know, and its orders ask every provider.
    fn know_bidders(&self) {
        let super::LedgerLink::Local(ledger) = self.shared.ledger.link() else {
            return;
        };
        let height = ledger.height();
        if self
            .bidders_at
            .swap(height, std::sync::atomic::Ordering::Relaxed)
            != height
        {
            let bidders = ledger.view(|state| state.bidders());
            self.core.lock().set_bidders_known(bidders);
        }
    }

    /// Runs one job: closes auctions, signs leases, ticks the queue,
    /// re-auctions when every provider is gone, settles at the end.
    async fn drive(self: Arc<Self>, id: ContentId) {
        let Some(wake) = self.wakes.lock().get(&id).cloned() else {
            return;
        };
        loop {
            self.know_bidders();
            let step = self.core.lock().step(&id, now_ms());
            let Some(Step {
                effects,
                winners,
                settle,
                next_deadline_ms,
            }) = step
            else {
                return;
            };
            if let Err(e) = self.carry_out(effects).await {
                tracing::error!("persisting verification results: {e}");
            }
            if let Some((order, chosen)) = winners {
                self.lease(id, order, chosen).await;
                // The lease changed the phase: look again at once.
                continue;
            }
            if let Some(acceptances) = settle {
                self.settle(id, acceptances).await;
                let disputes = self.core.lock().close_job(&id);
                self.forget_disputes(&disputes);
                // Nothing more is decided about its results.
                self.written
                    .lock()
                    .await
                    .retain(|(table, key), _| *table != 0 || !key.starts_with(id.as_bytes()));
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
            let wait = next_deadline_ms
                .map_or(DRIVER_SLEEP_MAX, |at| {
                    Duration::from_millis(at.saturating_sub(now_ms()))
                })
                .clamp(Duration::from_millis(1), DRIVER_SLEEP_MAX);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.changed.notified() => {}
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
        let height = match self.shared.ledger.link().height().await {
            Ok(height) => height,
            Err(e) => {
                tracing::warn!("reading the ledger's height: {e}");
                0
            }
        };
        let (offers, terms) = {
            let mut core = self.core.lock();
            let Some(offers) = core.offer_leases(&id, &order, chosen, height, now_ms()) else {
                return;
            };
            (offers, core.jobs[&id].terms.clone())
        };
        for (lease, _) in &offers.leases {
            self.grant_inputs(&id, lease.provider);
        }
        let requests = offers.leases.iter().map(|(lease, slots)| {
            let request = Request::Lease {
                lease: lease.clone(),
                slots: *slots,
                terms: terms.clone(),
            };
            let net = self.shared.net.clone();
            let peer = cairn_net::peer_id(&lease.provider);
            async move { net.request(peer, proto::to_bytes(&request)).await }
        });
        let answers = futures::future::join_all(requests).await;
        let mut refusals = Vec::new();
        for ((lease, slots), answer) in offers.leases.into_iter().zip(answers) {
            let newcomer = offers.newcomers.contains(&lease.provider);
            let refused = match answer.map(proto::response) {
                // A signature the ledger would refuse leaves the lease
                // unrecorded, and work under it unpaid: not taken.
                Ok(Ok(Response::LeaseSigned(signature)))
                    if !lease.signed_by_provider(&signature) =>
                {
                    Counters::bump(&self.shared.counters.bad_signature);
                    Err("a bad signature on the lease".into())
                }
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
                    self.forget_offer(&id, &lease, newcomer).await;
                    refusals.push(reason);
                    continue;
                }
            };
            let record = LeaseRecord {
                lease: lease.clone(),
                slots,
            };
            if let Err(e) = self.shared.db.write(&[Op::Put(
                Table::LeasesGiven,
                lease.id().as_bytes().to_vec(),
                record.to_bytes(),
            )]) {
                tracing::error!("persisting a lease: {e}");
                self.forget_offer(&id, &lease, newcomer).await;
                continue;
            }
            self.core.lock().lease_signed(&id, &lease.id());
            if let Err(e) = self.shared.ledger.send(TxKind::RecordLease {
                lease,
                provider_signature: signature,
            }) {
                tracing::warn!("recording a lease on the ledger: {e}");
            }
        }
        self.core
            .lock()
            .offers_answered(&id, offers.ready_in_ms, &refusals, now_ms());
    }

    /// Pays for accepted work and returns the rest of the escrow: claims
    /// its own acceptances of what it pays for (a result its provider
    /// claimed already is not paid twice), waits until blocks have carried
    /// every claim, then closes the escrow.
    async fn settle(&self, id: ContentId, acceptances: Vec<Signed<Acceptance>>) {
        // A withholder (tests of the providers' claims) pays nothing
        // itself and closes the escrow for its budget back.
        let acceptances = if self
            .misbehave
            .is_some_and(super::RequesterMisbehave::withholds)
        {
            Vec::new()
        } else {
            acceptances
        };
        let (claims, too_large) = super::claims::pack(acceptances.into_iter().map(|a| {
            let results = a.payload_unchecked().results.len() as u64;
            (a, results)
        }));
        let mut problems: Vec<String> = too_large
            .iter()
            .map(|results| format!("an acceptance of {results} results too large to claim"))
            .collect();
        let tickets: Vec<(u64, Result<super::Ticket, String>)> = claims
            .into_iter()
            .map(|(acceptances, results)| {
                let kind = TxKind::Claim { acceptances };
                (results.iter().sum(), self.shared.ledger.send(kind))
            })
            .collect();
        let mut settled = 0;
        for (results, ticket) in tickets {
            let fate = match ticket {
                Ok(ticket) => ticket.fate().await,
                Err(e) => Err(e),
            };
            match fate {
                Ok(()) => settled += results,
                Err(e) => problems.push(format!("a settlement of {results} results: {e}")),
            }
        }
        // Paid: shown at once, while the escrow's notice runs out.
        if let Some(job) = self.core.lock().jobs.get_mut(&id) {
            job.settled = settled;
        }
        match self.close_escrow(id).await {
            Ok(()) => {}
            Err(e) => problems.push(format!("closing the escrow: {e}")),
        }
        for problem in &problems {
            tracing::error!(job = %id.short(), "{problem}");
        }
        let Some(record) = self.core.lock().settled(&id, settled, &problems) else {
            return;
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

    /// Undoes a lease offer that came to nothing, and carries out what
    /// follows (its tasks go to others).
    async fn forget_offer(
        self: &Arc<Self>,
        id: &ContentId,
        lease: &cairn_ledger::Lease,
        newcomer: bool,
    ) {
        let effects = self.core.lock().forget_offer(id, lease, newcomer, now_ms());
        if let Err(e) = self.carry_out(effects).await {
            tracing::error!("forgetting a lease offer: {e}");
        }
    }

    /// Lets a leased provider fetch the job's module and inputs.
    fn grant_inputs(&self, job: &ContentId, provider: PublicKey) {
        // Under the core's lock: a stream's tasks added meanwhile are
        // granted to this provider by `extend` or here, never by neither.
        let core = self.core.lock();
        let Some(j) = core.jobs.get(job) else { return };
        if !self.shared.grants.grant(*job, j.blobs(), provider) {
            tracing::warn!(job = %job.short(), "too many grants: the provider cannot fetch inputs");
        }
    }

    /// A bid arrived for one of this node's auctions.
    pub fn on_bid(&self, sender: PublicKey, bid: Signed<Bid>) -> Response {
        if bid.signer() != sender {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused("bid signed by someone other than the sender".into());
        }
        if self.core.lock().banned(&sender) {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused("convicted of cheating this requester".into());
        }
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
        let taken = self.core.lock().bid(sender, &bid, stake, record, now_ms());
        match taken {
            Ok((job, module)) => {
                // Enough bids close the auction before its window ends.
                self.wake([job]);
                // A bidder fetches and compiles the module while the
                // auction runs; the inputs wait for a lease.
                let scope = super::grants::bidders_scope(&job);
                self.shared.grants.grant(scope, [module], sender);
                Response::Ack
            }
            Err(BidRefused::Banned) => {
                Counters::bump(&self.shared.counters.refused);
                Response::Refused("convicted of cheating this requester".into())
            }
            Err(BidRefused::Expelled) => {
                Counters::bump(&self.shared.counters.refused);
                Response::Refused("outvoted on a checked result of this job".into())
            }
            Err(BidRefused::NoAuction) => {
                Counters::bump(&self.shared.counters.replayed);
                Response::Refused("no open auction for that order".into())
            }
            Err(BidRefused::Rejected(rejection)) => {
                if rejection == cairn_market::BidRejection::BadSignature {
                    Counters::bump(&self.shared.counters.bad_signature);
                }
                Response::Refused(rejection.to_string())
            }
        }
    }

    /// A provider declined one of this node's orders.
    pub fn on_decline(&self, sender: PublicKey, order: ContentId, reason: &str) -> Response {
        if self.core.lock().decline(sender, order, reason) {
            Response::Ack
        } else {
            Response::Refused("no open auction for that order".into())
        }
    }

    /// A connection to `peer` closed: if it was a leased provider, its
    /// tasks go to others at once instead of at their deadline. It keeps
    /// its lease: restarted, it pulls again.
    pub fn peer_lost(self: &Arc<Self>, peer: &PeerId) {
        let Some(key) = cairn_net::public_key(peer) else {
            return;
        };
        let effects = self.core.lock().peer_lost(&key, now_ms());
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.carry_out(effects).await {
                tracing::error!("carrying out a lost provider's consequences: {e}");
            }
        });
    }

    /// A provider returns commitments and results and asks for more work.
    pub async fn on_pull(
        self: &Arc<Self>,
        peer: PeerId,
        sender: PublicKey,
        lease: ContentId,
        reports: Vec<Report>,
        asked: Asked,
    ) -> Response {
        let shape = {
            let core = self.core.lock();
            core.lease_job(&lease)
                .map(|(job, tasks)| (job, tasks, core.streams(&job)))
        };
        let Some((job_id, tasks, streams)) = shape else {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused("unknown lease".into());
        };
        // An idle provider of a live stream with nothing to report may be
        // held until the stream's next tasks (registered before the answer
        // is worked out, so tasks added meanwhile are not missed).
        let holdable = reports.is_empty()
            && asked.held.is_empty()
            && asked.awaiting.is_empty()
            && asked.want > 0;
        let signals = self.wakes.lock().get(&job_id).cloned();
        // Registered before the answer is worked out, so work added
        // meanwhile is not missed.
        let mut work = signals.as_ref().map(|s| Box::pin(s.work.notified()));
        if let Some(work) = work.as_mut() {
            work.as_mut().enable();
        }
        let mut stored = reports.len() as u32;
        let positions: Vec<u64> = reports.iter().map(Report::task).collect();
        let mut checked = check_reports(sender, lease, tasks, streams, reports);
        let counters = &self.shared.counters;
        counters.bad_signature.fetch_add(
            checked.bad_signatures.into(),
            std::sync::atomic::Ordering::Relaxed,
        );
        counters
            .refused
            .fetch_add(checked.refused.into(), std::sync::atomic::Ordering::Relaxed);
        if self
            .misbehave
            .is_some_and(super::RequesterMisbehave::frames)
        {
            for commit in &checked.commits {
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
        // Every reveal counts as arrived now, before any fetch is waited
        // on: a reveal behind one whose fetch was held up once reached the
        // verifier after its deadline, and an honest provider was
        // convicted for not revealing (CI).
        let mut to_fetch = Vec::new();
        for revealed in std::mem::take(&mut checked.reveals) {
            let task = revealed.record.task;
            let wanted = self
                .core
                .lock()
                .reveal_arrived(now_ms(), &job_id, &sender, &revealed);
            match wanted {
                Ok(Arrival::Fetch) => to_fetch.push(revealed),
                Ok(Arrival::Judge) => {
                    // Not the result it committed to: convicted in
                    // `pulled`, with nothing fetched.
                    fetched.push(revealed);
                }
                Ok(Arrival::Ignore) => {}
                Err(reason) => {
                    // More than the task could have written or used, or
                    // not what it was told to write: a lie, not a result,
                    // and nothing of it is fetched. Refused like any report
                    // that breaks the job's rules.
                    Counters::bump(&self.shared.counters.refused);
                    checked.failed.push((task, reason));
                }
            }
        }
        let fetch_until = tokio::time::Instant::now() + PULL_FETCH_WAIT;
        for revealed in to_fetch {
            let task = revealed.record.task;
            let key = (sender, job_id, task, files_of(&revealed.record));
            let outcome = self
                .fetch_outputs(peer, key, &revealed.record, fetch_until)
                .await;
            if outcome == Fetch::Done {
                fetched.push(revealed);
            } else {
                // Not acknowledged (nor anything after it in the pull): the
                // provider sends it again, and by then the fetch may be
                // done. Reports are processed idempotently. Only a
                // transfer the provider failed ends the time its reveal has
                // to be fetched: a blob held by another fetch of the same
                // outputs (an identical replica's, from a peer that
                // stalled) is not its doing, and an honest provider was
                // once convicted for it.
                tracing::info!("task {task}: outputs not fetched yet ({outcome:?})");
                if outcome == Fetch::Failed {
                    checked.unfetched.push(task);
                }
                let at = positions
                    .iter()
                    .position(|t| *t == u64::from(task))
                    .unwrap_or(0) as u32;
                stored = stored.min(at);
            }
        }
        checked.reveals = fetched;
        let pulled =
            self.core
                .lock()
                .pulled(now_ms(), (&job_id, &lease, sender), &asked, checked, stored);
        let (response, effects) = match pulled {
            Ok(answer) => answer,
            Err(PullRefused::UnknownLease) => return Response::Refused("unknown job".into()),
            Err(PullRefused::NotYours) => {
                Counters::bump(&self.shared.counters.refused);
                return Response::Refused("not your lease".into());
            }
        };
        // Durable before the provider is told to forget its reports; the
        // commit waits on the disk, so not on an async worker.
        if let Err(e) = self.carry_out(effects).await {
            tracing::error!("persisting results: {e}");
            return Response::Refused("the requester cannot store results now".into());
        }
        if let (
            Some(cheat),
            Response::Tasks {
                accepted: Some(a), ..
            },
        ) = (self.misbehave, &response)
            && let Some(smaller) = cheat.shortchange(&self.shared.key, a)
            && let Err(e) = self.shared.ledger.send(TxKind::Claim {
                acceptances: vec![smaller],
            })
        {
            tracing::warn!("claiming a smaller acceptance: {e}");
        }
        let empty = nothing_to_take(&response);
        let hold = holdable
            && empty
            && self
                .core
                .lock()
                .jobs
                .get(&job_id)
                .is_some_and(|j| j.may_hold(&lease, &sender));
        let (Some(signals), Some(mut work)) = (signals.as_ref().filter(|_| hold), work) else {
            return response;
        };
        // One held pull per lease: a provider cannot hold more of this
        // node's request slots by pulling again meanwhile.
        let Some(_held) = Held::new(&self.held, lease) else {
            return response;
        };
        let until = tokio::time::Instant::now() + PULL_HOLD;
        let mut response = response;
        loop {
            if tokio::time::timeout_at(until, work.as_mut()).await.is_err() {
                return response;
            }
            work = Box::pin(signals.work.notified());
            work.as_mut().enable();
            // Work came: the pull is answered again (as of when it arrived:
            // what the provider holds is what it said then).
            let checked = check_reports(sender, lease, tasks, streams, Vec::new());
            let pulled =
                self.core
                    .lock()
                    .pulled(now_ms(), (&job_id, &lease, sender), &asked, checked, 0);
            let Ok((again, effects)) = pulled else {
                return response;
            };
            if let Err(e) = self.carry_out(effects).await {
                tracing::error!("persisting a held pull's answer: {e}");
                return Response::Refused("the requester cannot store results now".into());
            }
            let taken = !nothing_to_take(&again);
            response = again;
            if taken {
                return response;
            }
        }
    }

    /// Fetches the outputs and streams `record` names from `peer`, in a
    /// task of its own that outlives this call, and waits for it until
    /// `until`: [`Fetch::Running`] if it is still going then. A later pull
    /// of the same reveal finds the same fetch, and does not wait.
    async fn fetch_outputs(
        self: &Arc<Self>,
        peer: PeerId,
        key: FetchKey,
        record: &TaskRecord,
        until: tokio::time::Instant,
    ) -> Fetch {
        let (mut progress, until) = {
            let mut fetches = self.fetches.lock();
            match fetches.get(&key) {
                // Started by an earlier pull: told how far it got, with no
                // wait, so that a stuck transfer does not hold back every
                // later pull's commits past their task deadlines.
                Some(progress) => (progress.clone(), tokio::time::Instant::now()),
                None => {
                    if fetches.len() >= FETCHES_MAX {
                        fetches.retain(|_, p| *p.borrow() == Fetch::Running);
                        if fetches.len() >= FETCHES_MAX {
                            return Fetch::Running;
                        }
                    }
                    let (report, progress) = tokio::sync::watch::channel(Fetch::Running);
                    fetches.insert(key, progress.clone());
                    let this = self.clone();
                    let files = files(record);
                    let task = record.task;
                    tokio::spawn(async move {
                        let shared = &this.shared;
                        let mut outcome = Fetch::Done;
                        for &(id, size) in &files {
                            match fetch_blob(shared, peer, id, size).await {
                                Ok(()) => {}
                                Err(e) => {
                                    tracing::warn!("output of task {task}: {e:?}");
                                    outcome = match e {
                                        FetchError::Busy(_) => Fetch::Again,
                                        FetchError::Failed(_) => Fetch::Failed,
                                    };
                                    break;
                                }
                            }
                        }
                        if outcome == Fetch::Done {
                            // Kept from here on, before anyone is told.
                            shared.pin(files.into_iter().map(|(id, _)| id));
                        }
                        report.send_replace(outcome);
                        if outcome == Fetch::Failed {
                            // Told now, not at its next pull: a provider
                            // frozen after revealing never pulls again.
                            let (provider, job, ..) = key;
                            let effects =
                                this.core.lock().unfetched(now_ms(), &job, &provider, task);
                            if let Err(e) = this.carry_out(effects).await {
                                tracing::error!("persisting verification results: {e}");
                            }
                        }
                    });
                    (progress, until)
                }
            }
        };
        let outcome = tokio::time::timeout_at(until, progress.wait_for(|p| *p != Fetch::Running))
            .await
            .map_or(Fetch::Running, |seen| seen.map_or(Fetch::Again, |p| *p));
        if outcome != Fetch::Running {
            // Told once: a later pull of the same reveal fetches again
            // (and finds the blobs already here if they are).
            self.fetches.lock().remove(&key);
        }
        outcome
    }

    /// The requester's judgement of a job's results (see
    /// [`RequesterCore::judge`]), stored before it answers the job's
    /// status: a restarted requester keeps the approvals, and has
    /// forgotten the rejected results.
    pub async fn judge(
        self: &Arc<Self>,
        id: &ContentId,
        approval: &cairn_api::Approval,
    ) -> Result<JobStatus, ApprovalRefused> {
        let effects = self.core.lock().judge(id, approval, now_ms())?;
        tracing::info!(
            job = %id.short(),
            approved = approval.approve.len(),
            rejected = approval.reject.len(),
            "results judged by the requester"
        );
        // On its own task, as a cancel's: a client hanging up does not
        // leave the writes half done.
        let requester = self.clone();
        let carried = tokio::spawn(async move { requester.carry_out(effects).await }).await;
        if let Err(e) = carried.map_err(|e| e.to_string()).and_then(|done| done) {
            tracing::error!("storing a judgement of results: {e}");
        }
        self.status(id).ok_or(ApprovalRefused::NotFound)
    }

    /// Adds tasks to a live stream (see [`RequesterCore::extend`]) once
    /// their own inputs are uploaded here; the providers leased to it may
    /// fetch them. Stored before the answer.
    pub async fn extend(
        self: &Arc<Self>,
        id: &ContentId,
        tasks: Vec<cairn_api::SubmittedTask>,
    ) -> Result<cairn_api::TasksAdded, StreamRefused> {
        for file in tasks.iter().flat_map(|t| &t.inputs) {
            if self.shared.blobs.size(&file.id) != Some(file.size) {
                return Err(StreamRefused::Invalid(format!(
                    "blob {} ('{}') is not uploaded to this node",
                    file.id, file.name
                )));
            }
        }
        let blobs: Vec<ContentId> = tasks
            .iter()
            .flat_map(|t| t.inputs.iter().map(|f| f.id))
            .collect();
        let (first, total, effects) = {
            let mut core = self.core.lock();
            let (first, effects) = core.extend(id, tasks, now_ms())?;
            let total = core.jobs[id].sched.progress().total;
            // Fetchable by its providers before any pull can hand the
            // tasks out (a grant of the job's blobs made meanwhile is
            // made under this lock too).
            self.shared.pin(blobs.iter().copied());
            // False also before any provider is leased (no scope yet):
            // each is granted every blob of the job when leased.
            if !self.shared.grants.extend(id, blobs) {
                tracing::debug!(job = %id.short(), "new inputs granted to no provider yet");
            }
            (first, total, effects)
        };
        // On its own task, as a cancel's: a client hanging up does not
        // leave the writes half done.
        let requester = self.clone();
        let carried = tokio::spawn(async move { requester.carry_out(effects).await }).await;
        if let Err(e) = carried.map_err(|e| e.to_string()).and_then(|done| done) {
            tracing::error!("storing a stream's new tasks: {e}");
            return Err(StreamRefused::Unstored(e));
        }
        Ok(cairn_api::TasksAdded { first, total })
    }

    /// Answers the pulls held for `job`'s next tasks: it has some, or
    /// none will come.
    pub(super) fn wake_held(&self, job: &ContentId) {
        if let Some(signals) = self.wakes.lock().get(job) {
            signals.work.notify_waiters();
        }
    }

    /// Ends a live stream (see [`RequesterCore::end_stream`]) and answers
    /// its status.
    pub async fn end_stream(self: &Arc<Self>, id: &ContentId) -> Result<JobStatus, StreamRefused> {
        let effects = self.core.lock().end_stream(id, now_ms())?;
        tracing::info!(job = %id.short(), "stream ended by its requester");
        let requester = self.clone();
        let carried = tokio::spawn(async move { requester.carry_out(effects).await }).await;
        if let Err(e) = carried.map_err(|e| e.to_string()).and_then(|done| done) {
            tracing::error!("ending a stream: {e}");
            return Err(StreamRefused::Unstored(e));
        }
        self.wake_held(id);
        self.status(id).ok_or(StreamRefused::NotFound)
    }

    /// Cancels a job (see [`RequesterCore::cancel`]) and answers its
    /// status. The record that says so is stored before the answer, with
    /// the rest of the cancel's writes: a restarted requester cancels it
    /// again.
    pub async fn cancel(self: &Arc<Self>, id: &ContentId) -> Result<JobStatus, CancelError> {
        self.core.lock().can_cancel(id)?;
        // Settling closes the escrow; one not on the ledger yet would be
        // applied after that, and its budget stay locked.
        match self.shared.ledger.link().escrow(id).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(CancelError::EscrowPending),
            Err(e) => return Err(CancelError::Ledger(e)),
        }
        let effects = self.core.lock().cancel(id, now_ms())?;
        tracing::info!(job = %id.short(), "cancelled by its requester");
        self.wake_held(id);
        // Carried out on its own task: a client that hangs up does not
        // drop the cancel's writes half done (the job would wait for them,
        // unsettled, for good).
        let requester = self.clone();
        let carried = tokio::spawn(async move { requester.carry_out(effects).await }).await;
        if let Err(e) = carried.map_err(|e| e.to_string()).and_then(|done| done) {
            tracing::error!("cancelling a job: {e}");
        }
        self.status(id)
            .ok_or(CancelError::Refused(CancelRefused::NotFound))
    }

    /// A job's status.
    pub fn status(&self, id: &ContentId) -> Option<JobStatus> {
        self.core.lock().status(id, now_ms())
    }

    /// Every job's status, oldest first.
    pub fn statuses(&self) -> Vec<JobStatus> {
        self.core.lock().statuses(now_ms())
    }

    /// Every provider that bid for this node's work, most recent first.
    pub fn providers(&self) -> Vec<cairn_api::ProviderSeen> {
        let core = self.core.lock();
        core.directory
            .providers(|key| core.verifier.trust().record(key))
    }

    /// The prices this node's auctions cleared at, oldest first.
    pub fn prices(&self) -> Vec<cairn_api::PricePoint> {
        self.core.lock().directory.prices()
    }

    /// A page of a job's results, by task: at most `limit` from task
    /// `from` on, and where the next page starts if there are more. None
    /// if the node has no such job.
    pub fn results(
        &self,
        id: &ContentId,
        from: u32,
        limit: u32,
    ) -> Result<Option<cairn_api::JobResults>, String> {
        if !self.core.lock().jobs.contains_key(id) {
            return Ok(None);
        }
        // One more than the page: whether there is a next one, and where.
        let rows = self
            .shared
            .db
            .scan_page(
                Table::Results,
                id.as_bytes(),
                &result_key(id, from),
                (limit as usize).saturating_add(1),
            )
            .map_err(|e| e.to_string())?;
        let mut results = rows
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| e.to_string()))
            .collect::<Result<Vec<TaskRecord>, _>>()?;
        let next = (results.len() > limit as usize).then(|| results.pop().map(|r| r.task));
        Ok(Some(cairn_api::JobResults {
            results,
            next: next.flatten(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use cairn_ledger::{RECEIPT_NAMESPACE, Receipt};
    use cairn_proto::StreamRef;
    use cairn_roles::requester::Streams;
    use cairn_wire::Keypair;

    use super::*;

    /// The result every test receipt states: an exit with nothing written.
    fn manifest() -> cairn_wire::ResultManifest {
        cairn_wire::ResultManifest {
            code: 0,
            exit: 0,
            text: "exited 0".into(),
            fuel_used: 1_000,
            stdout: ContentId::of(b""),
            stderr: ContentId::of(b""),
            outputs: Vec::new(),
        }
    }

    fn receipt(task: u64) -> Receipt {
        Receipt {
            lease: ContentId::of(b"lease"),
            task,
            digest: manifest().digest(),
            fuel_used: 1_000,
            salt: [0; 32],
            run: [0; 32],
        }
    }

    /// `receipt`'s report, with the result it states.
    fn revealed(receipt: Signed<Receipt>) -> Report {
        let m = manifest();
        Report::Revealed {
            receipt,
            code: m.code,
            exit: m.exit,
            outcome: m.text,
            outputs: Vec::new(),
            stdout: StreamRef::of(b""),
            stderr: StreamRef::of(b""),
        }
    }

    /// A change made to a signature's 64 bytes.
    type Spoil = fn(&mut [u8; 64]);

    /// A receipt of `task` signed with a key that has a small-order part
    /// (`a·B` plus a point of order 8): not a key honest software makes,
    /// but one whose holder can sign, and whose signatures a batch with
    /// weights that cancel that part would once take where the ledger's
    /// strict check did not. `spoil` changes the signature after.
    fn mixed_order_receipt(task: u64, spoil: Spoil) -> Signed<Receipt> {
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
        let r = Scalar::from_bytes_mod_order([task as u8 + 1; 32]);
        let big_r = EdwardsPoint::mul_base(&r).compress();
        let hash: [u8; 64] = Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(key.as_bytes())
            .chain_update(&message)
            .finalize()
            .into();
        let k = Scalar::from_bytes_mod_order_wide(&hash);
        let mut signature = [0; 64];
        signature[..32].copy_from_slice(big_r.as_bytes());
        signature[32..].copy_from_slice((r + k * secret).as_bytes());
        spoil(&mut signature);
        let mut bytes = template.to_bytes();
        bytes[1..33].copy_from_slice(key.as_bytes());
        bytes[33..97].copy_from_slice(&signature);
        Signed::<Receipt>::from_bytes(&bytes, &()).unwrap()
    }

    /// Whether the ledger takes `receipt` in a transaction (a reveal).
    fn ledger_takes(receipt: &Signed<Receipt>) -> bool {
        let body = cairn_ledger::TxBody {
            chain: ContentId::of(b"chain"),
            nonce: 0,
            kind: cairn_ledger::TxKind::Reveal {
                receipts: vec![receipt.clone()],
            },
        };
        cairn_ledger::admit(body.sign(&Keypair::from_seed([5; 32]))).is_ok()
    }

    /// A `signature_crafter` sends a pull of receipts signed with a key
    /// that has a small-order part, one of them spoiled in a way a careless
    /// check might pass. The requester keeps, out of its pull, exactly the
    /// receipts the ledger takes, so evidence made of one kept is never
    /// refused, whichever way either side checked it (in a batch or one by
    /// one). Before, the requester's batch and the ledger's strict check
    /// followed different rules, and such a receipt could pass one and not
    /// the other.
    #[test]
    fn a_signature_crafters_receipts_are_kept_exactly_when_the_ledger_takes_them() {
        // Both paths do the curve's work: with the process's cache of
        // valid signatures, what the ledger took the requester would only
        // look up (other tests lose only speed).
        cairn_wire::remember_signatures(false);
        let spoils: [(&str, Spoil); 4] = [
            ("none", |_| {}),
            ("a flipped bit of s", |s| s[40] ^= 1),
            ("another R", |s| s[0] ^= 2),
            ("s past the group's order", |s| {
                // Adds 2^253 (a multiple of the order's leading term):
                // no longer a canonical scalar.
                s[63] |= 0x20;
            }),
        ];
        for (spoil, how) in spoils {
            let mut pull: Vec<Signed<Receipt>> = (10..17)
                .map(|task| mixed_order_receipt(task, |_| {}))
                .collect();
            pull.insert(3, mixed_order_receipt(1, how));
            let crafter = pull[0].signer();
            let taken = pull.iter().filter(|r| ledger_takes(r)).count();
            let checked = check_reports(
                crafter,
                ContentId::of(b"lease"),
                100,
                Streams::Result,
                pull.into_iter().map(revealed).collect(),
            );
            assert_eq!(checked.reveals.len(), taken, "spoiled by {spoil}");
            assert_eq!(
                checked.bad_signatures as usize,
                8 - taken,
                "spoiled by {spoil}"
            );
            for kept in &checked.reveals {
                assert!(ledger_takes(&kept.receipt), "spoiled by {spoil}");
            }
            // Unspoiled, all are the crafter's own signatures and stand.
            assert_eq!(taken == 8, spoil == "none", "spoiled by {spoil}");
        }
    }

    #[test]
    fn a_write_decided_earlier_is_not_written_over_a_later_one() {
        let job = ContentId::of(b"job");
        let kept = || Write::Result {
            job,
            record: Box::new(TaskRecord {
                task: 3,
                provider: cairn_wire::Keypair::from_seed([1; 32]).public(),
                digest: ContentId::of(b"result"),
                fuel_used: 1,
                success: true,
                outcome: "exited 0".into(),
                outputs: Vec::new(),
                stdout: None,
                stderr: None,
                receipt: String::new(),
            }),
        };
        let forgot = |task| Write::ForgetResult { job, task };
        let mut written = BTreeMap::new();
        // Decided: keep (1), forget (2), keep again (3); carried out 3, 1, 2.
        assert_eq!(not_superseded(&mut written, 3, &[kept()]).len(), 1);
        assert!(
            not_superseded(&mut written, 1, &[kept()]).is_empty(),
            "the first keep is older than the last"
        );
        let late = [forgot(3), forgot(4)];
        let through = not_superseded(&mut written, 2, &late);
        assert!(
            matches!(through[..], [Write::ForgetResult { task: 4, .. }]),
            "the forget of task 3 is older than its last keep; task 4's is news: {through:?}"
        );
        // One batch may forget and keep the same key, in its order.
        assert_eq!(
            not_superseded(&mut written, 4, &[forgot(3), kept()]).len(),
            2
        );
    }

    /// A `pull_flooder` leased to a stream pulls again and again while
    /// one of its pulls is held: only one is held per lease (the rest are
    /// answered at once, holding none of the node's request slots), and
    /// the lease may be held again once that one is answered. Another
    /// lease is held beside it.
    #[test]
    fn a_pull_flooder_gets_one_held_pull_per_lease() {
        let held = Mutex::new(BTreeSet::new());
        let (lease, other) = (ContentId::of(b"lease"), ContentId::of(b"other"));
        let first = Held::new(&held, lease).expect("the first pull is held");
        for _ in 0..1_000 {
            assert!(Held::new(&held, lease).is_none());
        }
        let beside = Held::new(&held, other).expect("another lease's pull is held");
        drop(first);
        assert!(Held::new(&held, lease).is_some(), "answered, held again");
        drop(beside);
        assert!(held.lock().is_empty(), "nothing stays held");
    }
}
