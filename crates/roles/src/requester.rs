//! The requester's decisions for every job it submitted, as one synchronous
//! state machine: auctions, leases joining the queue, pulls answered,
//! results judged by the verifier, conviction and the end of a job. It owns
//! the jobs and the verifier they share, so one lock (or one actor) holds
//! it all: there is no lock order to keep. The shell passes the time in and
//! carries out what comes back ([`Effects`], [`Step`]): signing and sending
//! leases, fetching outputs, writing results, sending transactions,
//! refereeing disputes.

mod directory;
mod job;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use cairn_ledger::{
    ACCEPTANCE_NAMESPACE, Acceptance, Accepted, COMMIT_NAMESPACE, Commit, Evidence, Lease,
    RECEIPT_NAMESPACE, Receipt, TxKind,
};
use cairn_market::{
    Auction, Bid, BidRejection, Candidate, ORDER_NAMESPACE, Order, Outcome, Rng, SelectionParams,
};
use cairn_proto::{
    self as proto, Assignment, FileRef, Report, Response, StreamRef, SubmittedFile, SubmittedTask,
    TaskLimits, Terms,
};
use cairn_sched::{Completion, SchedParams, Scheduler};
use cairn_verify::{
    Action, Offence, Params as VerifyParams, Reveal, Side, StateHash, TaskKey, Verifier,
};
use cairn_wire::{ContentId, Keypair, PublicKey, Signed};

pub use cairn_api::{JobStatus, TaskRecord};
pub use directory::{Directory, PRICES_KEPT, PROVIDERS_SEEN_MAX};
pub use job::{Job, JobRecord, Replicas, Revealed};
use job::{MISSTATED_MAX, Phase};

/// The fewest providers an order's draw asks: enough to compete on price
/// for a job of one task.
const BIDDERS_MIN: u64 = 32;
/// How long a job that found no provider waits before another auction.
const REAUCTION_MS: u64 = 2_000;
/// How long pending work may sit with no provider pulling before another
/// auction is held.
const IDLE_REAUCTION_MS: u64 = 3_000;
/// The longest wait between auctions of a stalled job: one whose pending
/// work every provider in it has run already. Each auction that brings no
/// new provider doubles the wait from [`IDLE_REAUCTION_MS`] up to this, so
/// a job waiting for a provider that may never come does not ask the
/// market every few seconds, and one that comes is found within a minute.
const STALLED_REAUCTION_MS_MAX: u64 = 60_000;
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
const LEASE_BLOCKS: u64 = cairn_ledger::LEASE_BLOCKS_MAX;

/// A store write the core asks for; the shell maps it to its tables.
#[derive(Debug)]
pub enum Write {
    /// Keep an accepted result.
    Result {
        /// Its job.
        job: ContentId,
        /// The result.
        record: Box<TaskRecord>,
    },
    /// Keep a job's record (it was cancelled).
    Job {
        /// Its id.
        id: ContentId,
        /// The record.
        record: Box<JobRecord>,
    },
    /// Forget a result that was reopened.
    ForgetResult {
        /// Its job.
        job: ContentId,
        /// Its task.
        task: u32,
    },
    /// Keep what this requester learned of a provider (restored through
    /// [`RequesterCore::restore_trust`]).
    Trust {
        /// The provider.
        provider: PublicKey,
        /// Its record now.
        record: cairn_verify::Record,
    },
}

/// What a referee found in a dispute, kept for the case brought to the
/// validators.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The position the step starts from.
    pub position: u64,
    /// The state the step reached.
    pub reached: StateHash,
    /// The state at `position` as a blob here (none at position 0).
    pub state: Option<FileRef>,
}

/// A wrong result to bring to the validators, with what the job may have
/// forgotten by then.
pub struct Pending {
    /// Its job.
    pub job: ContentId,
    /// The dispute that found it.
    pub dispute: u64,
    /// The job's terms.
    pub terms: proto::Terms,
    /// The task as handed out.
    pub assignment: Assignment,
    /// The convicted side's receipt.
    pub accused: Signed<Receipt>,
    /// The other side's, if it won by the step (or by the accused's
    /// silence, when `whole`).
    pub winner: Option<Signed<Receipt>>,
    /// No step was played to the end: the accused fell silent or broke the
    /// rules. The validators re-run the whole task, and must reach the
    /// winner's digest.
    pub whole: bool,
}

/// What the core's decisions leave the shell to do.
#[derive(Default)]
pub struct Effects {
    /// Store writes, durable before anything that depends on them is sent.
    pub writes: Vec<Write>,
    /// When the core decided them, counted up from 1: a store applies a
    /// write only over older decisions about the same key. Shells carry
    /// effects out concurrently, and a result forgotten after a
    /// conviction and accepted again soon after was once written in the
    /// wrong order: the job reported done with a result missing.
    pub seq: u64,
    /// Transactions for the ledger: evidence.
    pub txs: Vec<TxKind>,
    /// Commits to challenge on chain, then to slash if never opened.
    pub challenges: Vec<(ContentId, u64, Signed<Commit>)>,
    /// Disputes to referee: (job, dispute id).
    pub disputes: Vec<(ContentId, u64)>,
    /// Disputes that ended undecided (their job was cancelled): what the
    /// shell keeps for them goes.
    pub ended_disputes: Vec<u64>,
    /// Wrong results to bring to the validators.
    pub cases: Vec<Pending>,
    /// Orders to publish.
    pub orders: Vec<Signed<Order>>,
    /// Jobs whose drivers should look again: something changed them.
    pub wake: BTreeSet<ContentId>,
    /// Jobs with work to hand out that was not there before (a stream's
    /// new tasks, a task requeued): pulls held for it are answered.
    pub work: BTreeSet<ContentId>,
}

impl Effects {
    /// Whether there is nothing to carry out.
    pub fn is_empty(&self) -> bool {
        let Self {
            writes,
            seq: _,
            txs,
            challenges,
            disputes,
            ended_disputes,
            cases,
            orders,
            wake,
            work,
        } = self;
        writes.is_empty()
            && txs.is_empty()
            && challenges.is_empty()
            && disputes.is_empty()
            && ended_disputes.is_empty()
            && cases.is_empty()
            && orders.is_empty()
            && wake.is_empty()
            && work.is_empty()
    }
}

/// Why a job could not be cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelRefused {
    /// The requester has no such job.
    NotFound,
    /// It is settling or over already.
    Over,
    /// It was cancelled already.
    Cancelled,
}

impl std::fmt::Display for CancelRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotFound => "no such job",
            Self::Over => "the job is over already: every task is decided",
            Self::Cancelled => "the job is cancelled already",
        })
    }
}

/// How long a live stream may go without new tasks before it is ended.
pub const STREAM_IDLE_MS: u64 = 5 * 60_000;

/// Why [`RequesterCore::extend`] or [`RequesterCore::end_stream`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRefused {
    /// The requester has no such job.
    NotFound,
    /// The job is not a stream: its tasks were all given at submission.
    NotAStream,
    /// The stream was ended or cancelled, or the job is over.
    Ended,
    /// The tasks break the job's rules (the message names which).
    Invalid(String),
    /// Decided, but not stored: a restart would not know it.
    Unstored(String),
}

impl std::fmt::Display for StreamRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such job"),
            Self::NotAStream => f.write_str("the job is not a stream: its tasks were all given"),
            Self::Ended => f.write_str("the stream is ended or cancelled, or the job is over"),
            Self::Invalid(why) => f.write_str(why),
            Self::Unstored(why) => write!(f, "the requester could not store it: {why}"),
        }
    }
}

/// Why [`RequesterCore::judge`] refused a judgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalRefused {
    /// The requester has no such job.
    NotFound,
    /// The job did not ask for approval.
    NotAsked,
    /// It is settling or over already.
    Over,
    /// It was cancelled.
    Cancelled,
    /// More tasks than one judgement may name.
    TooMany,
    /// This task has no result to judge (none yet, or none that can be).
    NoResult(u32),
    /// This task's result is approved already, or in the same judgement.
    Approved(u32),
    /// The approval window is over: results may be approved, no longer
    /// rejected.
    WindowOver,
}

impl std::fmt::Display for ApprovalRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such job"),
            Self::NotAsked => f.write_str("the job did not ask for approval"),
            Self::Over => f.write_str("the job is over already: its results are paid"),
            Self::Cancelled => f.write_str("the job is cancelled"),
            Self::TooMany => write!(
                f,
                "at most {} tasks in one judgement",
                cairn_api::APPROVAL_TASKS_MAX
            ),
            Self::NoResult(task) => write!(f, "task {task} has no result to judge"),
            Self::Approved(task) => {
                write!(f, "task {task}'s result is approved: it cannot be rejected")
            }
            Self::WindowOver => f.write_str(
                "the approval window is over: results may be approved, no longer rejected",
            ),
        }
    }
}

/// What a job's driver does after [`RequesterCore::step`]: carry out the
/// effects, then the one thing the job needs, if any.
pub struct Step {
    /// What to carry out first.
    pub effects: Effects,
    /// An auction closed: offer these winners leases, then step again.
    pub winners: Option<(Order, Vec<Candidate>)>,
    /// The job is finished: settle by claiming these acceptances of every
    /// result it pays for, then end the job.
    pub settle: Option<Vec<Signed<Acceptance>>>,
    /// When the job next has something to do by the clock.
    pub next_deadline_ms: Option<u64>,
}

/// Leases about to be offered, already known to the job's queue (a provider
/// starts pulling the moment it has signed, possibly before its answer
/// arrives).
pub struct Offers {
    /// Each lease and the slots its provider offered.
    pub leases: Vec<(Lease, u32)>,
    /// Providers new to the job: dropped again if they refuse.
    pub newcomers: BTreeSet<PublicKey>,
    /// How long the job waits for the winners to prepare.
    pub ready_in_ms: u64,
}

/// A pull's reports, sorted by the checks at the boundary.
#[derive(Default)]
pub struct Checked {
    /// Well-signed commitments of this lease's tasks.
    pub commits: Vec<Signed<Commit>>,
    /// Well-signed reveals whose report has the digest it signed.
    pub reveals: Vec<Revealed>,
    /// Signed receipts whose report states another result than their
    /// digest, with the result stated.
    pub misstated: Vec<(Signed<Receipt>, cairn_wire::ResultManifest)>,
    /// Tasks the provider could not run, and why.
    pub failed: Vec<(u32, String)>,
    /// Tasks whose reveal arrived ([`RequesterCore::reveal_arrived`]) and
    /// whose outputs could not be fetched from the provider.
    pub unfetched: Vec<u32>,
    /// Reports with a bad signature.
    pub bad_signatures: u32,
    /// Reports refused for another reason (someone else's, another
    /// lease's, a task out of range, a bad output name, a broken digest).
    pub refused: u32,
}

/// Why a bid was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum BidRefused {
    /// Its bidder was convicted of cheating this requester.
    Banned,
    /// Its bidder lost a vote in this job (see `Action::Expelled`).
    Expelled,
    /// No auction of this requester is open for its order.
    NoAuction,
    /// The auction refused it.
    Rejected(BidRejection),
}

/// What to do with a reveal that came in a pull
/// ([`RequesterCore::reveal_arrived`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// It was asked for and opens the provider's commitment: its outputs
    /// are to be fetched, then it goes to [`RequesterCore::pulled`]; the
    /// verifier gives the provider a fetch's time from now (a transfer
    /// held up by another peer cannot make it late).
    Fetch,
    /// It was asked for and does not open the commitment: it goes to
    /// [`RequesterCore::pulled`] at once, with nothing fetched, and
    /// convicts the provider. A reveal's outputs are only fetched once its
    /// digest is the one committed to, so a liar cannot start a transfer
    /// per made-up result.
    Judge,
    /// Nobody asked for it: it is dropped.
    Ignore,
}

/// What a provider's pull asks for and says it holds, besides its reports.
#[derive(Clone, Debug, Default)]
pub struct Asked {
    /// Tasks wanted.
    pub want: u32,
    /// Tasks handed out under the lease that the provider still has (see
    /// [`proto::Request::Pull`]).
    pub held: Vec<u32>,
    /// When the pull arrived. Only a task handed out before then can be
    /// missing from `held`: a pull that waited (fetching outputs, say)
    /// while the provider's retry was answered must not take back what the
    /// retry handed out.
    pub received_ms: u64,
    /// Results the provider delivered and holds no acceptance for (see
    /// [`proto::Request::Pull`]).
    pub awaiting: Vec<u32>,
}

/// Why a pull was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PullRefused {
    /// No job has that lease.
    UnknownLease,
    /// The lease is someone else's.
    NotYours,
}

/// The requester's decisions for all of its jobs.
pub struct RequesterCore {
    key: Keypair,
    /// Its jobs.
    pub jobs: BTreeMap<ContentId, Job>,
    /// Decides which results to trust, across the jobs.
    pub verifier: Verifier,
    /// What the referee found in each dispute, and who won it.
    pub findings: BTreeMap<u64, (Finding, Option<PublicKey>)>,
    /// Lease id → job id (looked up at every pull, never walked).
    leases: HashMap<ContentId, ContentId>,
    /// Each provider's (job, lease) pairs: its leases, and those its
    /// restored receipts are under. What concerns one provider (a
    /// conviction, a lost connection) visits its jobs, not every job.
    provided: BTreeMap<PublicKey, BTreeSet<(ContentId, ContentId)>>,
    /// The providers that bid and the prices that cleared, for display.
    pub directory: Directory,
    rng: Rng,
    selection: SelectionParams,
    sched: SchedParams,
    bid_window_ms: u32,
    /// The last [`Effects::seq`] given out.
    decisions: u64,
    /// Providers able to bid, as the ledger last said (0: not known).
    bidders_known: u64,
}

impl RequesterCore {
    /// A requester signing with `key`, with no jobs, verifying under
    /// `verify`; `seed` drives its choices among equal bids and the
    /// verifier's spot checks.
    pub fn new(
        key: Keypair,
        sched: SchedParams,
        verify: VerifyParams,
        bid_window_ms: u32,
        seed: u64,
    ) -> Self {
        Self {
            key,
            jobs: BTreeMap::new(),
            verifier: Verifier::new(verify, seed ^ 0xc0ffee),
            findings: BTreeMap::new(),
            leases: HashMap::new(),
            provided: BTreeMap::new(),
            directory: Directory::default(),
            rng: Rng::new(seed ^ 0x5eed),
            decisions: 0,
            selection: SelectionParams::default(),
            sched,
            bid_window_ms,
            bidders_known: 0,
        }
    }

    /// How many providers the ledger says may bid: orders draw their
    /// share of them. Not known (0, the start), every provider is asked.
    pub fn set_bidders_known(&mut self, providers: u64) {
        self.bidders_known = providers;
    }

    /// Takes a job in, running (a restored one) or about to be auctioned
    /// ([`RequesterCore::open_auction`]). Its submission must have passed
    /// its checks.
    pub fn add_job(&mut self, id: ContentId, record: JobRecord, now: u64) -> Result<(), String> {
        let s = &record.submission;
        let terms = Terms {
            module: file_ref(&s.module),
            inputs: s.inputs.iter().map(file_ref).collect(),
            limits: TaskLimits {
                fuel: s.limits.fuel,
                // Checked at submission: each task's is from 1 to the
                // job's. A stream's tasks are not known yet: any.
                fuel_min: match s.stream {
                    Some(_) => 1,
                    None => s
                        .tasks
                        .iter()
                        .map(|t| t.fuel.unwrap_or(s.limits.fuel))
                        .min()
                        .unwrap_or(s.limits.fuel),
                },
                memory_bytes: s.limits.memory_bytes,
                wall_time_ms: s.limits.wall_time_ms,
                output_bytes: s.limits.output_bytes,
                stdout_bytes: s.limits.stdout_bytes,
                gpus: s.limits.gpus,
                gpu_memory_mib: s.limits.gpu_memory_mib,
            },
        };
        let policy = s.verify.policy()?;
        self.verifier
            .open_job(id, policy, s.tasks.len() as u32, s.limits.fuel);
        // An installed tool cannot be re-run step by step by a referee.
        if s.runtime != "wasm" {
            self.verifier.decide_by_vote(&id);
        }
        let mut sched = self.sched.clone();
        // A task may run for its whole wall-clock limit; its deadline must
        // leave room for that plus moving its outputs.
        sched.task_deadline_ms = sched.task_deadline_ms.max(s.limits.wall_time_ms + 5_000);
        sched.silence_ms_max = sched.silence_ms_max.max(sched.task_deadline_ms);
        let job = Job {
            id,
            sched: Scheduler::new(s.tasks.len() as u32, sched),
            record,
            terms_encoded: cairn_wire::codec::Encode::encode(&terms).to_vec(),
            terms,
            phase: Phase::Running,
            order: None,
            reopened_ms: None,
            held: Vec::new(),
            build: None,
            reason: None,
            auctions: 0,
            dry_auctions: 0,
            leases: BTreeMap::new(),
            unsigned: BTreeSet::new(),
            first_task_ms: None,
            extended_ms: now,
            finished_ms: None,
            last_pull_ms: now,
            ready_by_ms: 0,
            stalls: 0,
            reason_waits: false,
            stalled: None,
            unstored: 0,
            cancel_unstored: false,
            payable: BTreeMap::new(),
            held_receipts: BTreeMap::new(),
            settled: 0,
            rerun: false,
            misstated: Vec::new(),
            replicas: Replicas::default(),
        };
        self.jobs.insert(id, job);
        Ok(())
    }

    /// Restores what this requester had learned of `provider` (after a
    /// restart): a provider trusted before is not replicated as a stranger.
    pub fn restore_trust(&mut self, provider: PublicKey, record: cairn_verify::Record) {
        self.verifier.trust_mut().set(provider, record);
    }

    /// Restores an accepted result of a job (after a restart); it is
    /// settled again unless the job's settlement was over, and its
    /// provider still gets the acceptance it asks for either way (as
    /// before the restart) — unless it was convicted (its trust restored
    /// first says so): nothing it returned is paid.
    pub fn restore_result(&mut self, job: &ContentId, record: &TaskRecord) -> Result<(), String> {
        let (provider, digest) = (record.provider, record.digest);
        let banned = self.banned(&provider);
        let Some(j) = self.jobs.get_mut(job) else {
            return Err(format!("no job {}", job.short()));
        };
        if record.task >= j.sched.progress().total {
            return Err(format!(
                "task {} is not in job {}",
                record.task,
                job.short()
            ));
        }
        j.sched.restore(record.task, provider, digest);
        self.verifier
            .restore_accepted(&(*job, record.task), digest, vec![provider]);
        if !banned
            && let Ok(bytes) = cairn_wire::parse_hex(&record.receipt, "receipt")
            && let Ok(receipt) = Signed::<Receipt>::from_bytes(&bytes, &())
        {
            let r = receipt.payload_unchecked();
            // Its lease may not be restored (a record the node could not
            // read): a conviction still finds the receipt.
            self.provided
                .entry(receipt.signer())
                .or_default()
                .insert((*job, r.lease));
            j.payable.insert((r.lease, r.task), receipt);
        }
        Ok(())
    }

    /// The shell made `writes` durable: the results among them count as
    /// done. Returns the jobs to step again (the last result stored may
    /// finish one).
    pub fn stored(&mut self, writes: &[Write]) -> BTreeSet<ContentId> {
        let mut wake = BTreeSet::new();
        for write in writes {
            match write {
                Write::Result { job, .. } => {
                    if let Some(j) = self.jobs.get_mut(job) {
                        j.unstored = j.unstored.saturating_sub(1);
                        wake.insert(*job);
                    }
                }
                Write::Job { id, record } => {
                    if let Some(j) = self.jobs.get_mut(id) {
                        // Only the record that says it is cancelled lets a
                        // cancelled job settle (a judgement writes one too).
                        if record.cancelled_ms.is_some() {
                            j.cancel_unstored = false;
                        }
                        wake.insert(*id);
                    }
                }
                Write::ForgetResult { .. } | Write::Trust { .. } => {}
            }
        }
        wake
    }

    /// Puts a restored job in the phase its results say. A job cancelled
    /// before the restart is cancelled again: the returned effects carry
    /// that out.
    pub fn restored(&mut self, id: &ContentId, now: u64) -> Effects {
        if let Some(job) = self.jobs.get(id)
            && job.record.cancelled_ms.is_some()
            && !job.record.settled
        {
            return self.stop(id, now);
        }
        if let Some(job) = self.jobs.get_mut(id) {
            job.phase = if job.record.settled {
                if job.record.cancelled_ms.is_some() {
                    // Its queue, rebuilt from the stored results, shows
                    // the rest as given up, as before the restart.
                    job.sched.cancel("the job was cancelled", |_| true);
                }
                job.finished_ms = Some(now);
                Phase::Done
            } else if job.sched.is_finished()
                && !job.streaming()
                && job.approval_window_ms().is_none()
            {
                Phase::Settling
            } else {
                // Its driver's next step puts a job whose results all are
                // in back to waiting for approval, until the stored end
                // of its window.
                Phase::Running
            };
        }
        Effects::default()
    }

    /// Restores a lease given before a restart: its provider, if still
    /// alive, resumes pulling. False when its job is gone.
    pub fn restore_lease(&mut self, lease: Lease, slots: u32, now: u64) -> bool {
        let Some(j) = self.jobs.get_mut(&lease.job) else {
            return false;
        };
        // An expelled provider's lease is kept (what it is owed is paid
        // through it), but it is handed no work.
        if !j.record.expelled.contains(&lease.provider) {
            j.sched
                .add_provider(lease.provider, slots * proto::PREFETCH_PER_SLOT_MAX, now);
        }
        j.leases.insert(lease.id(), lease.clone());
        self.given(&lease);
        true
    }

    /// Registers `lease`, given for its job.
    fn given(&mut self, lease: &Lease) {
        self.leases.insert(lease.id(), lease.job);
        self.provided
            .entry(lease.provider)
            .or_default()
            .insert((lease.job, lease.id()));
    }

    /// Forgets `lease`, given for its job.
    fn ungiven(&mut self, lease: &Lease) {
        self.leases.remove(&lease.id());
        if let Some(leases) = self.provided.get_mut(&lease.provider) {
            leases.remove(&(lease.job, lease.id()));
            if leases.is_empty() {
                self.provided.remove(&lease.provider);
            }
        }
    }

    /// The jobs `provider` holds a lease of, in the order of their ids.
    fn jobs_of(&self, provider: &PublicKey) -> BTreeSet<ContentId> {
        let pairs = self.provided.get(provider).into_iter().flatten();
        pairs.map(|(job, _)| *job).collect()
    }

    /// Starts an auction for a job's remaining work; the signed order is
    /// in `effects.orders`.
    pub fn open_auction(&mut self, id: &ContentId, now: u64, effects: &mut Effects) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let p = job.sched.progress();
        let s = &job.record.submission;
        // A stream leases for the tasks it keeps running, however few wait
        // now: its next segment must find providers ready.
        let at_once = match (&s.stream, job.streaming()) {
            (Some(stream), true) => stream.tasks_at_once,
            _ => 0,
        };
        let remaining = u64::from((p.pending + p.running).max(at_once));
        let wanted = remaining * job.replicas_wanted();
        // About one provider per slot wanted (each offers several, and
        // some are busy), at least a few dozen to compete on price, twice
        // as many for each auction that leased no one, half as many again
        // for each that did. A job that needs GPUs or an installed tool
        // asks everyone: the ledger does not say who has them, and a draw
        // sized on every provider would ask too few of those who do.
        let bidders = if s.limits.gpus > 0 || s.runtime != "wasm" {
            u64::MAX
        } else {
            wanted
                .max(BIDDERS_MIN)
                .saturating_mul(1 << job.dry_auctions.min(32))
        };
        let order = Order {
            job: job.id,
            runtime: s.runtime.clone(),
            module: job.terms.module.id,
            module_bytes: job.terms.module.size,
            tasks: remaining,
            fuel_per_task_max: s.limits.fuel,
            memory_mib: (s.limits.memory_bytes.div_ceil(1 << 20)) as u32,
            gpus: s.limits.gpus,
            gpu_memory_mib: s.limits.gpu_memory_mib,
            price_max_ucairn_per_gfuel: s.price_max_ucairn_per_gfuel,
            created_ms: now,
            bid_window_ms: self.bid_window_ms,
            draw_ppm: cairn_market::draw_ppm(bidders, self.bidders_known),
        };
        effects
            .orders
            .push(Signed::sign(&self.key, ORDER_NAMESPACE, order.clone()));
        job.auctions += 1;
        job.order = Some((order.id(), order.clone()));
        // Bids held for a round of the last order are not bids on this one.
        job.held.clear();
        let auction = Auction::open(order, wanted).pin_build(job.build, job.replicas_wanted());
        job.phase = Phase::Bidding(Box::new(auction));
    }

    /// One look at a job by its driver at `now`: deadlines are enforced,
    /// the verifier's timers fire, an auction closes, a queued or idle job
    /// auctions again, a finished one settles. `None` once the job is
    /// gone or over: its driver stops.
    pub fn step(&mut self, id: &ContentId, now: u64) -> Option<Step> {
        let job = self.jobs.get_mut(id)?;
        if matches!(job.phase, Phase::Done) {
            return None;
        }
        // Deadlines hold and the end is noticed in every phase: a
        // re-auction may run while leased providers still work.
        let mut actions = Vec::new();
        let mut touched = Vec::new();
        let mut expired = false;
        for event in job.sched.tick(now) {
            tracing::info!(job = %id.short(), ?event, "scheduler");
            if let cairn_sched::Event::Expired { task, provider } = event {
                actions.extend(self.verifier.withdraw(&(*id, task), &provider, now));
                touched.push((*id, task));
                expired = true;
            }
        }
        // The verifier is shared by the jobs: whichever driver wakes first
        // at its deadline acts for all of them.
        if self.verifier.next_deadline_ms().is_some_and(|at| now >= at) {
            actions.extend(self.verifier.tick(now));
        }
        let mut effects = self.apply(touched, actions);
        if expired {
            effects.work.insert(*id);
        }
        let job = self.jobs.get_mut(id).expect("held above");
        if job.streaming() && now >= job.extended_ms.saturating_add(STREAM_IDLE_MS) {
            // Its feeder is gone (a client that crashed, or never came):
            // the stream holds no provider's slots for ever.
            job.record.ended_ms = Some(now);
            job.reason = Some(format!(
                "the stream was ended: no segment for {} s",
                STREAM_IDLE_MS / 1000
            ));
            effects.writes.push(Write::Job {
                id: *id,
                record: Box::new(job.record.clone()),
            });
        }
        let ready = job.sched.is_finished()
            && !job.streaming()
            && self.verifier.job_done(id)
            && job.unstored == 0
            && !job.cancel_unstored;
        if !ready && matches!(job.phase, Phase::Approving { .. }) {
            // A result reopened (its provider convicted on another job)
            // needs a provider again.
            job.phase = Phase::Running;
            job.last_pull_ms = now;
        }
        if ready && !matches!(job.phase, Phase::Settling | Phase::Done) {
            // A job that asks for approval waits for its requester's
            // judgement (a cancelled one is over: what it accepted is paid).
            let approval = job
                .approval_window_ms()
                .filter(|_| job.record.cancelled_ms.is_none());
            let judged = (0..job.sched.progress().total).all(|task| {
                job.record.approved.contains(&task)
                    || self.verifier.accepted(&(*id, task)).is_none()
            });
            let until = match (approval, &job.phase) {
                (Some(_), Phase::Approving { until_ms }) => Some(*until_ms),
                (Some(window), _) => {
                    let first = match job.record.approval_until_ms {
                        Some(first) => first,
                        None => {
                            // Kept: a restart, or a rejection, does not
                            // move it.
                            let first = now.saturating_add(window);
                            job.record.approval_until_ms = Some(first);
                            effects.writes.push(Write::Job {
                                id: *id,
                                record: Box::new(job.record.clone()),
                            });
                            first
                        }
                    };
                    // Results run again after a rejection (made before
                    // the window's end) get a window of their own: at
                    // most one more, since no rejection follows the end.
                    let until = if std::mem::take(&mut job.rerun) {
                        first.max(now.saturating_add(window))
                    } else {
                        first
                    };
                    job.phase = Phase::Approving { until_ms: until };
                    job.reason = None;
                    Some(until)
                }
                (None, _) => None,
            };
            if judged || until.is_none_or(|until| now >= until) {
                // Every result judged, or the window over: what is not
                // judged is approved.
                job.phase = Phase::Settling;
                self.verifier.seal(id);
            }
        }
        if matches!(job.phase, Phase::Running) {
            job.reopen_for_held(now);
        }
        let (mut winners, mut settle, mut auction_again) = (None, None, false);
        match &mut job.phase {
            Phase::Bidding(auction) if auction.ready(now) => {
                let Phase::Bidding(auction) = std::mem::replace(&mut job.phase, Phase::Leasing)
                else {
                    unreachable!()
                };
                let order = auction.order().clone();
                match (*auction).close(&self.selection, &mut self.rng) {
                    Outcome::Selected(chosen) => {
                        // The auction chose one build among enough
                        // bidders: the job keeps it.
                        let build = chosen.first().and_then(|c| c.build);
                        if job.build.is_none()
                            && chosen.len() as u64 >= job.replicas_wanted()
                            && chosen.iter().all(|c| c.build == build)
                        {
                            job.build = build;
                        }
                        self.directory.won(*id, &chosen, now);
                        winners = Some((order, chosen));
                    }
                    // Nobody new: a job its providers still work goes on
                    // with them. If they take none of its pending work
                    // either, the job says why the market gave it nobody
                    // (the providers' declines) and asks it less often each
                    // time: providers that stopped taking work (a lease
                    // they found underpaid) had it asking every few
                    // seconds for ever, and no one could see why.
                    Outcome::Unplaced(reason) if job.sched.progress().providers > 0 => {
                        job.dry_auctions += 1;
                        let p = job.sched.progress();
                        if p.pending > 0 && p.running == 0 {
                            // A stalled job counted this round already.
                            if job.sched.blocked(1).is_none() {
                                job.stalls += 1;
                            }
                            job.reason = Some(format!(
                                "no provider in the job takes its pending work, and none other \
                                 bid: {reason}"
                            ));
                            job.reason_waits = true;
                        }
                        job.phase = Phase::Running;
                    }
                    Outcome::Unplaced(reason) => {
                        job.dry_auctions += 1;
                        job.reason = Some(reason);
                        job.phase = Phase::Queued {
                            retry_ms: now + REAUCTION_MS,
                        };
                    }
                }
            }
            Phase::Queued { retry_ms } if now >= *retry_ms => auction_again = true,
            Phase::Running => {
                // Work is waiting and nobody is taking it: every provider
                // is gone, (after a restart) the restored ones never came
                // back, or every one left already ran the replicas still
                // wanted.
                let p = job.sched.progress();
                // Providers running tasks are not idle, however long a
                // task takes: a provider with every slot busy does not
                // pull, and asking the market again would only hear
                // "busy". Idleness counts from when the last task stopped
                // running.
                if p.running > 0 {
                    job.last_pull_ms = now;
                    job.stalls = 0;
                }
                // Nothing waits any more (results came in without another
                // pull): neither does the reason.
                if p.pending == 0 && std::mem::take(&mut job.reason_waits) {
                    job.reason = None;
                }
                let idle_ms = now.saturating_sub(job.last_pull_ms.max(job.ready_by_ms));
                if p.pending > 0 && (p.providers == 0 || idle_ms > job.idle_wait_ms()) {
                    let stalled = job.stalled().is_some();
                    // A stalled job's reason is worked out when it is
                    // shown (see `Job::status`): it names the tasks.
                    job.reason_waits = true;
                    job.reason = if p.providers == 0 {
                        Some("every leased provider is gone; finding others".into())
                    } else if stalled {
                        None
                    } else {
                        Some(format!(
                            "no provider took pending work for {idle_ms} ms; finding others"
                        ))
                    };
                    // Reset only by work running again: an auction that
                    // brings nobody counts too (above).
                    if stalled {
                        job.stalls += 1;
                    }
                    job.last_pull_ms = now;
                    auction_again = true;
                }
            }
            Phase::Settling => {
                settle = Some(settlement(&self.key, job));
                job.phase = Phase::Done;
                job.finished_ms = Some(now);
            }
            _ => {}
        }
        if auction_again {
            self.open_auction(id, now, &mut effects);
        }
        let job = self.jobs.get_mut(id).expect("held above");
        job.stalled = job.stalled();
        let job = &self.jobs[id];
        let next_deadline_ms = [
            job.sched.next_deadline_ms(),
            self.verifier.next_deadline_ms(),
            job.phase_deadline_ms(),
            job.streaming()
                .then(|| job.extended_ms.saturating_add(STREAM_IDLE_MS)),
        ]
        .into_iter()
        .flatten()
        .min();
        Some(Step {
            effects,
            winners,
            settle,
            next_deadline_ms,
        })
    }

    /// Registers the leases to offer an auction's winners, at ledger
    /// height `height`; `None` when the job is gone.
    pub fn offer_leases(
        &mut self,
        id: &ContentId,
        order: &Order,
        chosen: Vec<Candidate>,
        height: u64,
        now: u64,
    ) -> Option<Offers> {
        let me = self.key.public();
        let job = self.jobs.get_mut(id)?;
        // Cancelled (or otherwise moved on) since its auction closed: no
        // lease is offered.
        if !matches!(job.phase, Phase::Leasing) || job.record.cancelled_ms.is_some() {
            return None;
        }
        // Trusted only so far: a provider that claims a long preparation
        // delays the search for others by at most what a slow machine
        // needs for a module of this size.
        let ready_wait_ms_max = (READY_WAIT_MS_BASE
            + order.module_bytes / 1024 * READY_WAIT_MS_PER_KB)
            .min(READY_WAIT_MS_MAX);
        let ready_in_ms = chosen
            .iter()
            .map(|c| u64::from(c.ready_in_ms))
            .max()
            .unwrap_or(0)
            .min(ready_wait_ms_max);
        let mut offers = Offers {
            leases: Vec::new(),
            newcomers: BTreeSet::new(),
            ready_in_ms,
        };
        for winner in chosen {
            // Convicted since it bid (a bid held for a later round, say):
            // no lease.
            if self.verifier.trust().record(&winner.provider).banned() {
                continue;
            }
            // A provider leased already pulls what its slots allow; another
            // lease would only be another recording on the ledger. One
            // dropped for lateness that won again takes work again on the
            // lease it holds (its pulls never stopped), once.
            if job.leases.values().any(|l| l.provider == winner.provider) {
                // On the terms it signed (its slots, its price), and never
                // one convicted since.
                let convicted = self.verifier.trust().record(&winner.provider).banned();
                if !convicted && job.sched.readmit(&winner.provider, now) {
                    job.stalls = 0;
                }
                continue;
            }
            let lease = Lease {
                job: *id,
                requester: me,
                provider: winner.provider,
                price_ucairn_per_gfuel: winner.price_ucairn_per_gfuel,
                fuel_per_task_max: order.fuel_per_task_max,
                expires_height: height + LEASE_BLOCKS,
            };
            if !job.sched.is_active(&lease.provider) {
                offers.newcomers.insert(lease.provider);
                // Someone new may take what was stalled: the next wait
                // for pulls is the shortest again.
                job.stalls = 0;
            }
            job.sched.add_provider(
                lease.provider,
                winner.slots * proto::PREFETCH_PER_SLOT_MAX,
                now,
            );
            job.leases.insert(lease.id(), lease.clone());
            job.unsigned.insert(lease.id());
            offers.leases.push((lease, winner.slots));
        }
        for (lease, _) in &offers.leases {
            self.given(lease);
        }
        Some(offers)
    }

    /// The provider of `lease`, offered for job `id`, signed it: the
    /// shell records it on the ledger, and work may be handed out on it.
    /// Until then a pull on it gets none (it used to: a signature lost on
    /// the way left accepted results under a lease the ledger never
    /// recorded, which no settlement or claim can pay).
    pub fn lease_signed(&mut self, id: &ContentId, lease: &ContentId) {
        if let Some(job) = self.jobs.get_mut(id) {
            job.unsigned.remove(lease);
        }
    }

    /// Undoes the registration of a lease offer that came to nothing (the
    /// provider refused, or its answer never came). A newcomer leaves the
    /// job: it may have signed and pulled already, before its answer was
    /// lost, but without its signature the lease cannot be recorded and its
    /// work cannot be paid, so whatever it took goes to others and nothing
    /// it committed to is waited for.
    pub fn forget_offer(
        &mut self,
        id: &ContentId,
        lease: &Lease,
        newcomer: bool,
        now: u64,
    ) -> Effects {
        self.ungiven(lease);
        let Some(job) = self.jobs.get_mut(id) else {
            return Effects::default();
        };
        job.leases.remove(&lease.id());
        job.unsigned.remove(&lease.id());
        if !newcomer {
            return Effects::default();
        }
        let provider = lease.provider;
        job.sched.drop_provider(&provider, "did not sign its lease");
        job.replicas.asks.remove(&provider);
        job.replicas.commits.retain(|(_, p), _| *p != provider);
        let (tasks, actions) = self.verifier.abandon(id, &provider, now);
        let touched = tasks.into_iter().map(|task| (*id, task)).collect();
        self.apply(touched, actions)
    }

    /// Every offer of an auction has been answered; `refusals` says why
    /// those refused did.
    pub fn offers_answered(
        &mut self,
        id: &ContentId,
        ready_in_ms: u64,
        refusals: &[String],
        now: u64,
    ) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        // The job may have finished while the offers were out.
        if !matches!(job.phase, Phase::Leasing) {
            return;
        }
        if job.leases.is_empty() || job.sched.progress().providers == 0 {
            // Winners that all refused lease no one: the next draw asks more.
            job.dry_auctions += 1;
            job.reason = Some(format!("every lease was refused: {}", refusals.join("; ")));
            job.phase = Phase::Queued {
                retry_ms: now + REAUCTION_MS,
            };
        } else {
            job.dry_auctions = job.dry_auctions.saturating_sub(1);
            job.reason = None;
            job.reason_waits = false;
            job.phase = Phase::Running;
            job.ready_by_ms = now + ready_in_ms;
        }
    }

    /// Whether `provider` was convicted of cheating this requester.
    pub fn banned(&self, provider: &PublicKey) -> bool {
        self.verifier.trust().record(provider).banned()
    }

    /// A bid from `sender` (who signed it) for one of the open auctions,
    /// with the bidder's stake and record as the ledger knows them.
    /// Returns the job and its module, which the bidder may now fetch.
    pub fn bid(
        &mut self,
        sender: PublicKey,
        bid: &Signed<Bid>,
        stake: Option<u128>,
        record: (u64, u64),
        now: u64,
    ) -> Result<(ContentId, ContentId), BidRefused> {
        if self.banned(&sender) {
            return Err(BidRefused::Banned);
        }
        let order = bid.payload_unchecked().order;
        let job = self
            .jobs
            .values_mut()
            .find(|job| job.order.as_ref().is_some_and(|(id, _)| *id == order))
            .ok_or(BidRefused::NoAuction)?;
        if job.record.expelled.contains(&sender) {
            return Err(BidRefused::Expelled);
        }
        match &mut job.phase {
            Phase::Bidding(auction) if auction.order_id() == order => auction
                .bid(bid, stake, record, now)
                .map_err(BidRefused::Rejected)?,
            _ => job.late_bid(bid, stake, record, now)?,
        }
        let latency_ms = job
            .order
            .as_ref()
            .map_or(0, |(_, order)| now.saturating_sub(order.created_ms));
        self.directory.bid(
            bid.signer(),
            bid.payload_unchecked(),
            stake.unwrap_or(0),
            latency_ms,
            now,
        );
        Ok((job.id, job.terms.module.id))
    }

    /// A provider declined an order; false when no auction is open for it.
    pub fn decline(&mut self, sender: PublicKey, order: ContentId, reason: &str) -> bool {
        for job in self.jobs.values_mut() {
            if let Phase::Bidding(auction) = &mut job.phase
                && auction.order_id() == order
            {
                auction.decline(sender, reason);
                return true;
            }
        }
        false
    }

    /// The connection to `provider` closed: its tasks go to others at once
    /// instead of at their deadline. It keeps its leases: restarted, it
    /// pulls again. Returns the jobs that changed.
    pub fn peer_lost(&mut self, provider: &PublicKey, now: u64) -> Effects {
        let mut changed = BTreeSet::new();
        let (mut touched, mut actions) = (Vec::new(), Vec::new());
        for id in self.jobs_of(provider) {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let running = job.sched.running_of(provider);
            // A stream (ended or not: its last segments are awaited) cannot
            // wait out a reveal window (a minute) for a provider that is
            // gone: what it committed to and has not revealed is dropped,
            // not convicted, and runs elsewhere; the provider is out of the
            // stream until it wins it again, once, so committing and
            // leaving cannot be a habit. What it was still running goes
            // back as in any job.
            if job.record.submission.stream.is_some() && job.awaits_reveal(provider) {
                let (tasks, more) = self.verifier.abandon(&job.id, provider, now);
                for &task in &tasks {
                    job.replicas.commits.remove(&(task, *provider));
                }
                job.replicas.asks.remove(provider);
                for event in job
                    .sched
                    .drop_rejoinable(provider, "left the stream with results unrevealed")
                {
                    tracing::info!(job = %job.id.short(), ?event, "scheduler");
                }
                touched.extend(tasks.iter().map(|&t| (job.id, t)));
                actions.extend(more);
                changed.insert(job.id);
                continue;
            }
            for &task in &running {
                // Nothing to carry out: a withdrawn replica only lets the
                // task be handed to someone else.
                let _ = self.verifier.withdraw(&(job.id, task), provider, now);
            }
            for event in job.sched.release_all(provider) {
                tracing::info!(job = %job.id.short(), ?event, "scheduler");
            }
            if !running.is_empty() {
                changed.insert(job.id);
            }
        }
        let mut effects = self.apply(touched, actions);
        // Work freed: pulls held for a stream's next tasks take it now.
        effects.work.extend(changed.iter().copied());
        effects.wake.extend(changed);
        effects
    }

    /// The job a lease is for, and its task count.
    pub fn lease_job(&self, lease: &ContentId) -> Option<(ContentId, u32)> {
        let job = self.leases.get(lease)?;
        Some((*job, self.jobs.get(job)?.sched.progress().total))
    }

    /// Whether `job`'s streams are part of its results (see [`Streams`]).
    pub fn streams(&self, job: &ContentId) -> Streams {
        self.jobs.get(job).map_or(Streams::Result, |j| {
            Streams::of(&j.record.submission.runtime)
        })
    }

    /// A revealed result from `sender` arrived at `now`, before its
    /// outputs are fetched: what to do with it (see [`Arrival`]), or `Err`
    /// with the reason when it breaks the job's rules (refused; nothing of
    /// it is fetched).
    pub fn reveal_arrived(
        &mut self,
        now: u64,
        job_id: &ContentId,
        sender: &PublicKey,
        revealed: &Revealed,
    ) -> Result<Arrival, String> {
        let record = &revealed.record;
        let Some(job) = self.jobs.get(job_id) else {
            return Ok(Arrival::Ignore);
        };
        let asked = job
            .replicas
            .asks
            .get(sender)
            .is_some_and(|tasks| tasks.contains(&record.task));
        if !asked {
            return Ok(Arrival::Ignore);
        }
        job.broken_result(record)?;
        let key = (*job_id, record.task);
        let r = revealed.receipt.payload_unchecked();
        let reveal = Reveal {
            digest: r.digest,
            salt: r.salt,
        };
        if !self.verifier.opens(&key, sender, &reveal) {
            return Ok(Arrival::Judge);
        }
        Ok(if self.verifier.reveal_arrived(&key, sender, now) {
            Arrival::Fetch
        } else {
            Arrival::Ignore
        })
    }

    /// The outputs of `sender`'s arrived reveal of `task` could not be
    /// fetched, found by a fetch that outlived the pull that started it
    /// (the provider may never pull again): its time to be fetched ends
    /// ([`Verifier::reveal_not_fetched`]).
    pub fn unfetched(
        &mut self,
        now: u64,
        job_id: &ContentId,
        sender: &PublicKey,
        task: u32,
    ) -> Effects {
        let key = (*job_id, task);
        let actions = self.verifier.reveal_not_fetched(&key, sender, now);
        self.apply(vec![key], actions)
    }

    /// A provider's pull on `lease`, once its reports passed their checks
    /// and the outputs of its reveals were fetched: the commits and reveals
    /// go to the verifier, the failures back to the queue, and up to `want`
    /// tasks are handed out. What the provider says it still holds comes in
    /// `asked`: the tasks handed to it before the pull arrived and not held
    /// are taken back first (their answer was lost, or a crash ended their
    /// run). `stored` is how many reports the answer acknowledges.
    pub fn pulled(
        &mut self,
        now: u64,
        (job_id, lease, sender): (&ContentId, &ContentId, PublicKey),
        asked: &Asked,
        checked: Checked,
        stored: u32,
    ) -> Result<(Response, Effects), PullRefused> {
        let Asked {
            want,
            ref held,
            received_ms,
            ref awaiting,
        } = *asked;
        let Checked {
            commits,
            reveals,
            misstated,
            failed,
            unfetched,
            ..
        } = checked;
        let job_id = *job_id;
        let banned = self.banned(&sender);
        let job = self
            .jobs
            .get_mut(&job_id)
            .ok_or(PullRefused::UnknownLease)?;
        let Some(terms) = job
            .leases
            .get(lease)
            .filter(|l| l.provider == sender)
            .cloned()
        else {
            return Err(PullRefused::NotYours);
        };
        // Results this very pull delivers may be accepted by it, and a
        // provider restarted from its disk commits again to results that
        // were accepted before its crash: their acceptance goes with the
        // answer (the last answer of a job says it is finished, and no
        // pull follows it).
        let delivered: Vec<u32> = reveals
            .iter()
            .map(|r| r.record.task)
            .chain(commits.iter().map(|c| c.payload_unchecked().task as u32))
            .collect();
        let verifier = &mut self.verifier;
        let mut misreported = !misstated.is_empty();
        let mut misrun = false;
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
                // A copy that lost the race, a retransmission, or a task
                // taken back: verification no longer waits for it.
                continue;
            }
            if let Some(cairn_sched::TaskState::Done { superseded, .. }) = job.sched.task(task) {
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
        for revealed in reveals {
            let task = revealed.record.task;
            let key = (job_id, task);
            touched.push(key);
            if let Some(tasks) = job.replicas.asks.get_mut(&sender) {
                tasks.remove(&task);
            }
            let r = revealed.receipt.payload_unchecked();
            if r.run != job.run(task) {
                // A receipt must name the run it was handed: validators
                // judge a result by re-running that run, and one that
                // names another could not be held to its result. Nothing
                // of it is taken (below).
                tracing::info!(job = %job_id.short(), task, "a receipt names another run");
                misrun = true;
                continue;
            }
            let reveal = Reveal {
                digest: r.digest,
                salt: r.salt,
            };
            job.replicas
                .revealed
                .insert((task, sender), revealed.clone());
            match verifier.reveal(&key, &sender, &reveal, now) {
                Ok(more) => actions.extend(more),
                Err(e) => tracing::debug!(job = %job_id.short(), task, "reveal: {e}"),
            }
        }
        if misrun {
            // No replica of its in the job is waited for any more, whatever
            // its state (one asked to reveal, or fetched, is past `withdraw`),
            // and each of their tasks looks for another provider; it gets
            // no more of the job's work (below).
            let (tasks, more) = verifier.abandon(&job_id, &sender, now);
            touched.extend(tasks.into_iter().map(|task| (job_id, task)));
            actions.extend(more);
            misreported = true;
        }
        for task in unfetched {
            actions.extend(verifier.reveal_not_fetched(&(job_id, task), &sender, now));
            touched.push((job_id, task));
        }
        for (task, reason) in failed {
            tracing::info!(job = %job_id.short(), task, "provider could not run it: {reason}");
            if let Some(event) = job.sched.release(&sender, task, now) {
                tracing::warn!(job = %job_id.short(), ?event, "scheduler");
            }
            actions.extend(verifier.withdraw(&(job_id, task), &sender, now));
            touched.push((job_id, task));
        }
        // No honest provider reports other outputs, streams or fuel than
        // the digest it signed: it gets no more of this job's work (it
        // used to go on pulling the job's tasks and misreporting them).
        // Nor does one this requester convicted, under any lease: the
        // verifier counts none of its results, so each task handed to it
        // came back to be handed out again, to it first (it pulls at
        // once), and a job could go round so for minutes (the simulation
        // found one that did, 170 runs a task).
        if misreported || banned {
            for task in job.sched.running_of(&sender) {
                actions.extend(verifier.withdraw(&(job_id, task), &sender, now));
                touched.push((job_id, task));
            }
            let reason = if misreported {
                "its report does not have the digest it signed"
            } else {
                "it was convicted"
            };
            for event in job.sched.drop_provider(&sender, reason) {
                tracing::info!(job = %job_id.short(), ?event, "scheduler");
            }
        }
        // A full list may have been cut short: nothing is taken back on it.
        let complete = held.len() < proto::HELD_MAX;
        let held: BTreeSet<u32> = held.iter().copied().collect();
        let missing: Vec<u32> = job
            .sched
            .running_of(&sender)
            .into_iter()
            .filter(|task| complete && !held.contains(task))
            .filter(|&task| match job.sched.task(task) {
                Some(cairn_sched::TaskState::Running(copies)) => copies
                    .iter()
                    .any(|c| c.provider == sender && c.started_ms < received_ms),
                _ => false,
            })
            .collect();
        for task in missing {
            tracing::debug!(job = %job_id.short(), task, "not held by its provider: taken back");
            job.sched.release(&sender, task, now);
            actions.extend(verifier.withdraw(&(job_id, task), &sender, now));
            touched.push((job_id, task));
        }
        let mut effects = self.apply(touched, actions);
        let job = self.jobs.get_mut(&job_id).expect("held above");
        let want = if job.unsigned.contains(lease) {
            0
        } else {
            want
        };
        let tasks = match job.sched.pull(&sender, want, now) {
            Ok(tasks) => tasks,
            Err(refused) => {
                // Its reports above still count; it just gets no more work
                // (`finished` tells it so).
                tracing::info!(job = %job_id.short(), "pull refused: {refused}");
                Vec::new()
            }
        };
        for &task in &tasks {
            self.verifier.assign_copy(&(job_id, task), sender, now);
        }
        job.replicas.executions += tasks.len() as u64;
        // Work that waits while providers pull is work none of them may
        // take (each already ran it): that counts as idle, and brings
        // other providers in.
        if !tasks.is_empty() || job.sched.progress().pending == 0 {
            job.last_pull_ms = now;
        }
        // Work goes out again: whatever it waited for is over.
        if !tasks.is_empty() {
            job.stalls = 0;
            if std::mem::take(&mut job.reason_waits) {
                job.reason = None;
            }
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
        // What the provider delivered and this job accepted for good (in a
        // job that asks for approval: approved, or its window over), signed
        // so that the provider is paid for it even if this requester never
        // settles. A pull that still names a result gets it signed again:
        // an answer lost on the way costs nothing.
        let results: Vec<Accepted> = awaiting
            .iter()
            .chain(&delivered)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|&task| {
                let receipt = job.payable.get(&(*lease, u64::from(task)))?;
                let decided = job.approval_window_ms().is_none()
                    || job.record.approved.contains(&task)
                    || finished;
                decided.then(|| accepted(receipt))
            })
            // What one claim can carry; the rest go with the next answer.
            .take(cairn_ledger::ACCEPTANCE_RESULTS_MAX)
            .collect();
        let accepted = (!results.is_empty()).then(|| {
            Signed::sign(
                &self.key,
                ACCEPTANCE_NAMESPACE,
                Acceptance {
                    lease: terms,
                    results,
                },
            )
        });
        // What it reported may finish the job or free work to hand out.
        effects.wake.insert(job_id);
        let response = Response::Tasks {
            stored,
            tasks: assignments,
            finished,
            reveal,
            accepted,
        };
        Ok((response, effects))
    }

    /// Verifier actions from outside a pull or a step (a dispute's
    /// progress), applied like theirs.
    pub fn act(&mut self, touched: Vec<TaskKey>, actions: Vec<Action>) -> Effects {
        self.apply(touched, actions)
    }

    /// Applies the verifier's actions to the jobs, then sends back to the
    /// queue every touched task that needs another provider.
    fn apply(&mut self, touched: Vec<TaskKey>, actions: Vec<Action>) -> Effects {
        let mut effects = Effects::default();
        let mut touched: BTreeSet<TaskKey> = touched.into_iter().collect();
        let convicts: BTreeSet<PublicKey> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Convicted { provider, .. } => Some(*provider),
                _ => None,
            })
            .collect();
        let named: Vec<ContentId> = actions.iter().filter_map(action_job).collect();
        // The side that won each dispute decided here without a step:
        // what a re-run of the whole task must reach, against whoever
        // returned the other result.
        let mut unrefereed: BTreeMap<u64, PublicKey> = BTreeMap::new();
        for action in actions {
            match action {
                Action::AskReveal { task, provider } => {
                    if let Some(job) = self.jobs.get_mut(&task.0) {
                        job.replicas
                            .asks
                            .entry(provider)
                            .or_default()
                            .insert(task.1);
                    }
                }
                Action::Accept {
                    task, providers, ..
                } => {
                    let Some(job) = self.jobs.get_mut(&task.0) else {
                        continue;
                    };
                    let mut record = None;
                    let mut accepted = None;
                    // An expelled provider's reopened result: paid now if
                    // the check agreed with it, else never.
                    let (agreed, disagreed): (Vec<_>, Vec<_>) = job
                        .held_receipts
                        .extract_if(.., |(_, t), _| *t == u64::from(task.1))
                        .partition(|(_, receipt)| providers.contains(&receipt.signer()));
                    drop(disagreed);
                    job.payable.extend(agreed);
                    for provider in &providers {
                        if let Some(revealed) = job.replicas.revealed.remove(&(task.1, *provider)) {
                            let r = revealed.receipt.payload_unchecked();
                            accepted.get_or_insert((r.digest, r.fuel_used));
                            // Every provider that returned the accepted
                            // result is paid for it.
                            job.payable.insert((r.lease, r.task), revealed.receipt);
                            record.get_or_insert(revealed.record);
                        }
                    }
                    effects
                        .txs
                        .extend(misstated_fuel(&mut job.misstated, task.1, accepted));
                    // Decided: what was kept as evidence is no longer needed.
                    forget_task(&mut job.replicas.revealed, task.1);
                    forget_task(&mut job.replicas.commits, task.1);
                    match record {
                        Some(record) => {
                            // Done once the shell says it is stored (see
                            // `stored`), not before: a client told "done"
                            // reads every result.
                            job.unstored += 1;
                            effects.writes.push(Write::Result {
                                job: task.0,
                                record: Box::new(record),
                            });
                        }
                        None => tracing::warn!(task = task.1, "accepted without a revealed result"),
                    }
                }
                Action::Dispute { id, task, sides } => {
                    tracing::warn!(
                        job = %task.0.short(),
                        task = task.1,
                        "results disagree between {} and {}: dispute {id}",
                        sides[0].short(),
                        sides[1].short()
                    );
                    if let Some(job) = self.jobs.get_mut(&task.0) {
                        job.replicas.disputes += 1;
                    }
                    effects.disputes.push((task.0, id));
                }
                Action::DisputeNext { .. } => {}
                Action::DisputeDone { id, sides, verdict } => {
                    tracing::warn!("dispute {id} decided: {}", verdict.reason);
                    if !self.findings.contains_key(&id)
                        && let [loser] = verdict.losers[..]
                    {
                        let winner = match loser {
                            Side::A => sides[1],
                            Side::B => sides[0],
                        };
                        unrefereed.insert(id, winner);
                    }
                }
                Action::Convicted {
                    provider,
                    task,
                    offence,
                } => {
                    tracing::warn!(
                        job = %task.0.short(),
                        task = task.1,
                        "{} convicted: {offence:?}",
                        provider.short()
                    );
                    let reason = format!("convicted: {offence:?}");
                    // Its receipts are under its leases (a pull is taken
                    // only on the sender's own lease).
                    for (id, lease) in self.provided.get(&provider).into_iter().flatten() {
                        let Some(job) = self.jobs.get_mut(id) else {
                            continue;
                        };
                        job.sched.drop_provider(&provider, &reason);
                        // Nothing it returned in a job still open is paid.
                        job.payable
                            .extract_if((*lease, 0)..=(*lease, u64::MAX), |_, r| {
                                r.signer() == provider
                            })
                            .for_each(drop);
                    }
                    if let Some(job) = self.jobs.get_mut(&task.0) {
                        if job.record.convicted.insert(provider) {
                            effects.writes.push(Write::Job {
                                id: task.0,
                                record: Box::new(job.record.clone()),
                            });
                        }
                        let found = (&self.findings, &unrefereed);
                        evidence(job, found, provider, task.1, offence, &mut effects);
                    }
                    touched.insert(task);
                }
                Action::Expelled {
                    provider,
                    job: id,
                    reopened,
                } => {
                    tracing::warn!(
                        job = %id.short(),
                        "{} outvoted: it runs none of the job's tasks again; {} of its results \
                         accepted unchecked are open again",
                        provider.short(),
                        reopened.len()
                    );
                    if let Some(job) = self.jobs.get_mut(&id) {
                        // On one build, the outvoted is wrong; on two, it
                        // may be honest, and keeps working (its results
                        // accepted alone are checked all the same).
                        if job.build.is_some() && job.record.expelled.insert(provider) {
                            job.sched.drop_provider(
                                &provider,
                                "outvoted: its result of a checked task was not its equals'",
                            );
                            effects.writes.push(Write::Job {
                                id,
                                record: Box::new(job.record.clone()),
                            });
                        }
                        // What it returned and is reopened is paid only
                        // once another's agrees (or was acknowledged
                        // already, in an acceptance it holds).
                        let held: Vec<(ContentId, u64)> = job
                            .payable
                            .iter()
                            .filter(|(_, r)| {
                                r.signer() == provider
                                    && reopened.contains(&(r.payload_unchecked().task as u32))
                            })
                            .map(|(key, _)| *key)
                            .collect();
                        for key in held {
                            if let Some(receipt) = job.payable.remove(&key) {
                                job.held_receipts.insert(key, receipt);
                            }
                        }
                    }
                    touched.extend(reopened.iter().map(|&task| (id, task)));
                }
                Action::Reopen { task } => {
                    effects.writes.push(Write::ForgetResult {
                        job: task.0,
                        task: task.1,
                    });
                    // An approval was of the result reopened: the next one
                    // is judged afresh.
                    if let Some(job) = self.jobs.get_mut(&task.0)
                        && job.record.approved.remove(&task.1)
                    {
                        effects.writes.push(Write::Job {
                            id: task.0,
                            record: Box::new(job.record.clone()),
                        });
                    }
                    touched.insert(task);
                }
                Action::Clawback { provider, tasks } => {
                    for task in tasks {
                        if let Some(job) = self.jobs.get_mut(&task.0) {
                            job.payable.retain(|_, r| {
                                r.signer() != provider
                                    || r.payload_unchecked().task != u64::from(task.1)
                            });
                        }
                    }
                }
                Action::Failed { task, reason } => {
                    if let Some(job) = self.jobs.get_mut(&task.0) {
                        job.replicas.failed += 1;
                        job.reason = Some(format!("task {}: {reason}", task.1));
                        job.reason_waits = false;
                    }
                }
            }
        }
        // A conviction drops the cheat's replicas in every job it was
        // given one in (under a lease of it): any of their tasks may now
        // need another provider.
        let held: BTreeSet<ContentId> = convicts
            .iter()
            .flat_map(|p| {
                self.jobs_of(p)
                    .into_iter()
                    .chain(self.verifier.jobs_given(p))
            })
            .collect();
        for job in &held {
            touched.extend(self.verifier.wanting(job).into_iter().map(|t| (*job, t)));
        }
        // Their drivers look again: a job may be finished, or have work to
        // hand out or to auction.
        effects
            .wake
            .extend(touched.iter().map(|task| task.0).chain(named).chain(held));
        for task in touched {
            if !self.verifier.needs(&task) {
                continue;
            }
            if let Some(job) = self.jobs.get_mut(&task.0)
                && matches!(
                    job.sched.task(task.1),
                    Some(cairn_sched::TaskState::Done { .. })
                )
            {
                job.sched.requeue(task.1, self.verifier.providers_of(&task));
                effects.work.insert(task.0);
            }
        }
        for (provider, record) in self.verifier.trust_mut().take_changed() {
            effects.writes.push(Write::Trust { provider, record });
        }
        self.decisions += 1;
        effects.seq = self.decisions;
        effects
    }

    /// A job's settlement is over: its record says so, with the results in
    /// claims the ledger applied and what went wrong. Returns the record to
    /// persist.
    pub fn settled(
        &mut self,
        id: &ContentId,
        results: u64,
        problems: &[String],
    ) -> Option<JobRecord> {
        let job = self.jobs.get_mut(id)?;
        job.settled = results;
        job.record.settled = true;
        if !problems.is_empty() {
            job.reason = Some(problems.join("; "));
        }
        Some(job.record.clone())
    }

    /// The requester's judgement of results of a job that asks for
    /// approval, at `now`. An approved result is paid when the job
    /// settles. A rejected one is not paid: it is forgotten, the providers
    /// that returned it are not asked to run its task again and their
    /// trust streak starts again (nothing proves they cheated), and the
    /// task is run again by others. Each task named must have a result,
    /// and a result approved cannot be rejected. Refused as a whole, with
    /// nothing changed, if any of it is. The job's record, with the
    /// approvals, is the first write of the effects.
    pub fn judge(
        &mut self,
        id: &ContentId,
        approval: &cairn_api::Approval,
        now: u64,
    ) -> Result<Effects, ApprovalRefused> {
        let job = self.jobs.get(id).ok_or(ApprovalRefused::NotFound)?;
        if job.approval_window_ms().is_none() {
            return Err(ApprovalRefused::NotAsked);
        }
        if job.record.cancelled_ms.is_some() {
            return Err(ApprovalRefused::Cancelled);
        }
        if matches!(job.phase, Phase::Settling | Phase::Done) {
            return Err(ApprovalRefused::Over);
        }
        if approval.approve.len() + approval.reject.len() > cairn_api::APPROVAL_TASKS_MAX {
            return Err(ApprovalRefused::TooMany);
        }
        let approve: BTreeSet<u32> = approval.approve.iter().copied().collect();
        let reject: BTreeSet<u32> = approval.reject.iter().copied().collect();
        for &task in approve.iter().chain(&reject) {
            if self.verifier.accepted(&(*id, task)).is_none() {
                return Err(ApprovalRefused::NoResult(task));
            }
        }
        if !reject.is_empty() {
            // No rejection after the window's end: payment cannot be put
            // off by rejecting again and again.
            if job
                .record
                .approval_until_ms
                .is_some_and(|until| now >= until)
            {
                return Err(ApprovalRefused::WindowOver);
            }
            if let Some(&task) = reject
                .iter()
                .find(|t| job.record.approved.contains(t) || approve.contains(t))
            {
                return Err(ApprovalRefused::Approved(task));
            }
            if let Some(&task) = reject
                .iter()
                .find(|t| !self.verifier.rejectable(&(*id, **t)))
            {
                return Err(ApprovalRefused::NoResult(task));
            }
        }
        let mut effects = Effects::default();
        let job = self.jobs.get_mut(id).expect("found above");
        job.record.approved.extend(&approve);
        let mut unpaid = BTreeSet::new();
        for &task in &reject {
            let key = (*id, task);
            let providers = self
                .verifier
                .reject(&key)
                .expect("checked rejectable above, with the core held");
            unpaid.extend(providers.iter().map(|p| (u64::from(task), *p)));
            effects.writes.push(Write::ForgetResult { job: *id, task });
            // Not again to the providers that returned it (a restored
            // result has no replicas for the verifier to name).
            let mut exclude = self.verifier.providers_of(&key);
            exclude.extend(providers);
            job.sched.requeue(task, exclude);
            job.record.rejected += 1;
            tracing::info!(
                job = %id.short(),
                task,
                "result rejected by its requester; run again by others"
            );
        }
        job.payable
            .retain(|_, r| !unpaid.contains(&(r.payload_unchecked().task, r.signer())));
        if !reject.is_empty() {
            job.rerun = true;
            if matches!(job.phase, Phase::Approving { .. }) {
                // Work again: the driver hands it out, or finds providers.
                job.phase = Phase::Running;
                job.last_pull_ms = now;
            }
        }
        effects.writes.insert(
            0,
            Write::Job {
                id: *id,
                record: Box::new(job.record.clone()),
            },
        );
        for (provider, record) in self.verifier.trust_mut().take_changed() {
            effects.writes.push(Write::Trust { provider, record });
        }
        effects.wake.insert(*id);
        self.decisions += 1;
        effects.seq = self.decisions;
        Ok(effects)
    }

    /// Whether [`RequesterCore::cancel`] would cancel the job now, or why
    /// not: a shell asks before what it checks outside (the escrow).
    pub fn can_cancel(&self, id: &ContentId) -> Result<(), CancelRefused> {
        let job = self.jobs.get(id).ok_or(CancelRefused::NotFound)?;
        if job.record.cancelled_ms.is_some() {
            return Err(CancelRefused::Cancelled);
        }
        if matches!(job.phase, Phase::Settling | Phase::Done) {
            return Err(CancelRefused::Over);
        }
        Ok(())
    }

    /// Cancels a job for its requester at `now`: nothing more is auctioned
    /// or handed out, every task without a final result is given up (a
    /// copy running now is not paid, and what its provider sends later is
    /// not judged), its open disputes end undecided, and the job settles
    /// what was accepted, after which the rest of its escrow returns. Its
    /// providers learn at their next pull that it is over.
    /// The job's record, saying when, is the first write of the effects,
    /// in the same batch as the results the cancel withdraws: a requester
    /// restarted after it cancels the job again.
    pub fn cancel(&mut self, id: &ContentId, now: u64) -> Result<Effects, CancelRefused> {
        self.can_cancel(id)?;
        let job = self.jobs.get_mut(id).ok_or(CancelRefused::NotFound)?;
        job.record.cancelled_ms = Some(now);
        job.cancel_unstored = true;
        let record = Box::new(job.record.clone());
        let mut effects = self.stop(id, now);
        effects.writes.insert(0, Write::Job { id: *id, record });
        Ok(effects)
    }

    /// Adds `tasks` to the live stream `id`, after its last: they are
    /// checked as its first were, stored with its record, and handed out
    /// as its providers pull. Returns the first new task's index.
    pub fn extend(
        &mut self,
        id: &ContentId,
        tasks: Vec<SubmittedTask>,
        now: u64,
    ) -> Result<(u32, Effects), StreamRefused> {
        let job = self.jobs.get_mut(id).ok_or(StreamRefused::NotFound)?;
        if job.record.submission.stream.is_none() {
            return Err(StreamRefused::NotAStream);
        }
        if !job.streaming() || matches!(job.phase, Phase::Settling | Phase::Done) {
            return Err(StreamRefused::Ended);
        }
        job.record
            .submission
            .check_more(&tasks)
            .map_err(StreamRefused::Invalid)?;
        let more = tasks.len() as u32;
        Arc::make_mut(&mut job.record.submission)
            .tasks
            .extend(tasks);
        let first = job.sched.extend(more);
        self.verifier.extend_job(id, more);
        // Its providers get their idle wait to pull the new work before
        // the job looks for others.
        job.last_pull_ms = now;
        job.extended_ms = now;
        let mut effects = Effects::default();
        effects.writes.push(Write::Job {
            id: *id,
            record: Box::new(job.record.clone()),
        });
        effects.wake.insert(*id);
        effects.work.insert(*id);
        self.decisions += 1;
        effects.seq = self.decisions;
        Ok((first, effects))
    }

    /// Ends the live stream `id`: no task is added after, and it settles
    /// once those it has are decided.
    pub fn end_stream(&mut self, id: &ContentId, now: u64) -> Result<Effects, StreamRefused> {
        let job = self.jobs.get_mut(id).ok_or(StreamRefused::NotFound)?;
        if job.record.submission.stream.is_none() {
            return Err(StreamRefused::NotAStream);
        }
        if !job.streaming() {
            return Err(StreamRefused::Ended);
        }
        job.record.ended_ms = Some(now);
        let mut effects = Effects::default();
        effects.writes.push(Write::Job {
            id: *id,
            record: Box::new(job.record.clone()),
        });
        effects.wake.insert(*id);
        self.decisions += 1;
        effects.seq = self.decisions;
        Ok(effects)
    }

    /// What a cancel does to a job still open: also done again to a
    /// cancelled job restored after a restart, before it settled.
    fn stop(&mut self, id: &ContentId, now: u64) -> Effects {
        let mut effects = Effects::default();
        let Some(job) = self.jobs.get_mut(id) else {
            return effects;
        };
        let cancelled = self.verifier.cancel(id);
        // A task the verifier failed before stays as it was: it is counted
        // among the failed already.
        let given_up = job.sched.cancel("the job was cancelled", |task| {
            !cancelled.given_up.contains(&task)
        });
        // A result accepted and then disputed is not final: not paid, not
        // kept.
        for task in cancelled.withdrawn {
            job.payable.retain(|&(_, t), _| t != u64::from(task));
            effects.writes.push(Write::ForgetResult { job: *id, task });
        }
        let disputes = cancelled.disputes;
        self.findings
            .retain(|dispute, _| !disputes.contains(dispute));
        effects.ended_disputes = disputes;
        // Nothing more is asked of its providers, nor kept for a decision.
        job.replicas.asks.clear();
        job.replicas.revealed.clear();
        job.replicas.commits.clear();
        // An auction or a lease offer under way comes to nothing: the job
        // settles at its driver's next step.
        if !matches!(job.phase, Phase::Settling | Phase::Done) {
            job.phase = Phase::Running;
        }
        job.order = None;
        job.reason = Some(format!(
            "cancelled by its requester; {} task{} given up",
            given_up.len(),
            if given_up.len() == 1 { "" } else { "s" }
        ));
        job.last_pull_ms = now;
        effects.wake.insert(*id);
        self.decisions += 1;
        effects.seq = self.decisions;
        effects
    }

    /// Forgets what verification held of a finished job: its open disputes
    /// and their findings. Returns the disputes forgotten.
    pub fn close_job(&mut self, id: &ContentId) -> Vec<u64> {
        let disputes = self.verifier.close_job(id);
        self.findings
            .retain(|dispute, _| !disputes.contains(dispute));
        disputes
    }

    /// A job's status at `now`.
    pub fn status(&self, id: &ContentId, now: u64) -> Option<JobStatus> {
        let job = self.jobs.get(id)?;
        Some(job.status(self.verifier.accepted_count(id), now))
    }

    /// Every job's status at `now`, oldest first.
    pub fn statuses(&self, now: u64) -> Vec<JobStatus> {
        let mut all: Vec<JobStatus> = self
            .jobs
            .values()
            .map(|job| job.status(self.verifier.accepted_count(&job.id), now))
            .collect();
        all.sort_by_key(|s| s.submitted_ms);
        all
    }
}

/// What a task's stdout and stderr are to verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// Part of the result, bound by its digest: a Wasm task's streams are
    /// as deterministic as its files.
    Result,
    /// A log, kept but not compared (an installed tool prints timings):
    /// the digest binds the empty stream for both.
    Log,
}

impl Streams {
    /// What the streams of a job on `runtime` are.
    pub fn of(runtime: &str) -> Self {
        if runtime == "wasm" {
            Streams::Result
        } else {
            Streams::Log
        }
    }
}

/// Sorts a pull's reports, keeping only those that are well signed, by the
/// sender, for this lease. `tasks` is the job's task count: every index is
/// checked against it here, so nothing past this point sees one out of
/// range.
///
/// The signatures of the reports that pass the cheap checks are checked
/// in one batch (all are the sender's, so they share its key's term), and
/// one by one only if it fails. A commit or receipt kept here may become
/// evidence: a batch judges every signature as the ledger does (see
/// [`cairn_wire::Batch`]), so none kept is one the ledger refuses.
pub fn check_reports(
    sender: PublicKey,
    lease: ContentId,
    tasks: u32,
    streams: Streams,
    reports: Vec<Report>,
) -> Checked {
    // What costs a lookup first, the signatures after.
    let addressed: Vec<bool> = reports
        .iter()
        .map(|report| match report {
            Report::Committed(commit) => {
                let c = commit.payload_unchecked();
                commit.signer() == sender && c.lease == lease && c.task < u64::from(tasks)
            }
            Report::Revealed {
                receipt, outputs, ..
            } => {
                let r = receipt.payload_unchecked();
                receipt.signer() == sender
                && r.lease == lease
                && r.task < u64::from(tasks)
                // Names end up as paths on the requester's disk.
                && outputs
                    .iter()
                    .all(|f| cairn_job::check_output_path(&f.name).is_ok())
            }
            Report::Failed { .. } => true,
        })
        .collect();
    // An addressed report is signed by `sender`.
    let mut batch = cairn_wire::Batch::new();
    for (report, _) in reports.iter().zip(&addressed).filter(|(_, a)| **a) {
        report.batch_signature(&mut batch);
    }
    let all_signed = batch.verify();
    let mut checked = Checked::default();
    for (report, addressed) in reports.into_iter().zip(addressed) {
        match report {
            Report::Committed(commit) => {
                if !addressed {
                    checked.refused += 1;
                } else if !all_signed && commit.verify(COMMIT_NAMESPACE).is_err() {
                    checked.bad_signatures += 1;
                } else {
                    checked.commits.push(commit);
                }
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
                let r = receipt.payload_unchecked();
                // The digest signed is the manifest's: rebuilt from the
                // report, it binds the outputs delivered, the streams (where
                // they are a result) and the fuel paid to what every
                // agreeing replica committed to.
                let bound = |stream: &StreamRef| match streams {
                    Streams::Result => stream.id,
                    Streams::Log => ContentId::of(b""),
                };
                let stated = cairn_wire::ResultManifest {
                    code,
                    exit,
                    text: outcome.clone(),
                    fuel_used: r.fuel_used,
                    stdout: bound(&stdout),
                    stderr: bound(&stderr),
                    outputs: outputs
                        .iter()
                        .map(|f| cairn_wire::OutputFile {
                            path: f.name.clone(),
                            size_bytes: f.size,
                            id: f.id,
                        })
                        .collect(),
                };
                if !addressed {
                    checked.refused += 1;
                } else if !all_signed && receipt.verify(RECEIPT_NAMESPACE).is_err() {
                    checked.bad_signatures += 1;
                } else if stated.digest() != r.digest {
                    // Outputs, streams or fuel other than those it committed
                    // to: nothing of it is taken or paid, and the task goes
                    // to someone else.
                    checked.refused += 1;
                    checked.failed.push((
                        r.task as u32,
                        "its report does not have the digest it signed".into(),
                    ));
                    // If only its fuel was misstated, the result another
                    // replica reports with this digest convicts it.
                    checked.misstated.push((receipt.clone(), stated));
                } else {
                    let record = TaskRecord {
                        task: r.task as u32,
                        provider: sender,
                        digest: r.digest,
                        fuel_used: r.fuel_used,
                        success: Report::succeeded(code, exit),
                        outcome,
                        outputs: outputs
                            .iter()
                            .map(|f| SubmittedFile {
                                name: f.name.clone(),
                                id: f.id,
                                size: f.size,
                            })
                            .collect(),
                        stdout: stream_file("stdout", stdout),
                        stderr: stream_file("stderr", stderr),
                        receipt: cairn_wire::hex(&receipt.to_bytes()),
                    };
                    checked.reveals.push(Revealed { record, receipt });
                }
            }
            Report::Failed { task, .. } if task >= tasks => checked.refused += 1,
            Report::Failed { task, reason } => checked.failed.push((task, reason)),
        }
    }
    checked
}

/// Removes `task`'s entries from a map kept by (task, provider): a range,
/// where a walk of the map at every decided task cost the 100,000-provider
/// simulation a few percent of its time (thousands of a job's tasks are
/// undecided at once).
fn forget_task<V>(map: &mut BTreeMap<(u32, PublicKey), V>, task: u32) {
    let keys: Vec<(u32, PublicKey)> = map
        .range((task, PublicKey::MIN)..)
        .map(|(key, _)| *key)
        .take_while(|(t, _)| *t == task)
        .collect();
    for key in keys {
        map.remove(&key);
    }
}

/// The result `receipt` states, as an acceptance names it.
fn accepted(receipt: &Signed<Receipt>) -> Accepted {
    let r = receipt.payload_unchecked();
    Accepted {
        task: r.task,
        digest: r.digest,
        fuel_used: r.fuel_used,
    }
}

/// A finished job's settlement: `key`'s acceptances of every result it
/// pays for, one per lease and [`cairn_ledger::ACCEPTANCE_RESULTS_MAX`]
/// results, which the ledger pays as a provider's claim of them would
/// (each result once). The ledger checks one signature per acceptance,
/// where a settlement of the providers' receipts cost one per result.
fn settlement(key: &Keypair, job: &Job) -> Vec<Signed<Acceptance>> {
    let mut by_lease: BTreeMap<ContentId, Vec<Accepted>> = BTreeMap::new();
    for ((lease, _), receipt) in &job.payable {
        by_lease.entry(*lease).or_default().push(accepted(receipt));
    }
    let mut acceptances = Vec::new();
    for (id, results) in by_lease {
        let Some(lease) = job.leases.get(&id) else {
            // Results are taken only under a lease the job holds.
            tracing::error!(job = %job.id.short(), "results under a lease {} the job does not hold; its provider claims them", id.short());
            continue;
        };
        for chunk in results.chunks(cairn_ledger::ACCEPTANCE_RESULTS_MAX) {
            acceptances.push(Signed::sign(
                key,
                ACCEPTANCE_NAMESPACE,
                Acceptance {
                    lease: lease.clone(),
                    results: chunk.to_vec(),
                },
            ));
        }
    }
    acceptances
}

/// The ledger transaction that proves `provider`'s offence, or the case or
/// challenge that will.
#[allow(clippy::type_complexity)]
fn evidence(
    job: &Job,
    (findings, unrefereed): (
        &BTreeMap<u64, (Finding, Option<PublicKey>)>,
        &BTreeMap<u64, PublicKey>,
    ),
    provider: PublicKey,
    task: u32,
    offence: Offence,
    effects: &mut Effects,
) {
    let commit = job.replicas.commits.get(&(task, provider));
    let revealed = job.replicas.revealed.get(&(task, provider));
    match offence {
        Offence::WrongResult { dispute } => {
            let receipt_of = |w: PublicKey| {
                job.replicas
                    .revealed
                    .get(&(task, w))
                    .map(|r| r.receipt.clone())
            };
            // Refereed: the validators judge the step. A side that lost
            // by silence or by breaking the rules has no step to be held
            // to: they re-run the whole task its receipt names, and must
            // reach the winner's result (else the one who fell silent may
            // have been right, and no one is slashed).
            let case = match (findings.get(&dispute), unrefereed.get(&dispute)) {
                (Some((_, winner)), _) => Some(((*winner).and_then(receipt_of), false)),
                (None, Some(&winner)) => receipt_of(winner).map(|r| (Some(r), true)),
                (None, None) => None,
            };
            match (case, revealed) {
                (Some((winner, whole)), Some(revealed)) => effects.cases.push(Pending {
                    job: job.id,
                    dispute,
                    terms: job.terms.clone(),
                    assignment: job.assignment(task),
                    accused: revealed.receipt.clone(),
                    winner,
                    whole,
                }),
                _ => tracing::info!(
                    "{} lost dispute {dispute} with no result to judge it by: not paid, not slashed",
                    provider.short()
                ),
            }
        }
        Offence::BadReveal => {
            if let (Some(commit), Some(revealed)) = (commit, revealed) {
                effects.txs.push(TxKind::Slash {
                    evidence: Box::new(Evidence::BadReveal {
                        commit: commit.clone(),
                        receipt: revealed.receipt.clone(),
                    }),
                });
            }
        }
        Offence::NoReveal => {
            if let Some(commit) = commit {
                let c = commit.payload_unchecked();
                effects.challenges.push((c.lease, c.task, commit.clone()));
            }
        }
    }
}

/// Evidence against the receipts in `misstated` for `task` that name the
/// `accepted` (digest, fuel) result but state other fuel: the result stated
/// with the accepted fuel is the manifest their digest names. Forgets
/// `task`'s entries.
fn misstated_fuel(
    misstated: &mut Vec<(Signed<Receipt>, cairn_wire::ResultManifest)>,
    task: u32,
    accepted: Option<(ContentId, u64)>,
) -> Vec<TxKind> {
    let mut evidence = Vec::new();
    misstated.retain(|(receipt, stated)| {
        let r = receipt.payload_unchecked();
        if r.task != u64::from(task) {
            return true;
        }
        if let Some((digest, fuel)) = accepted
            && r.digest == digest
            && r.fuel_used != fuel
        {
            let manifest = cairn_wire::ResultManifest {
                fuel_used: fuel,
                ..stated.clone()
            };
            if manifest.digest() == digest {
                evidence.push(TxKind::Slash {
                    evidence: Box::new(Evidence::MisstatedFuel {
                        receipt: receipt.clone(),
                        manifest,
                    }),
                });
            }
        }
        false
    });
    evidence
}

/// The job an action is about, if it names one.
fn action_job(action: &Action) -> Option<ContentId> {
    match action {
        Action::AskReveal { task, .. }
        | Action::Accept { task, .. }
        | Action::Dispute { task, .. }
        | Action::Convicted { task, .. }
        | Action::Reopen { task }
        | Action::Failed { task, .. } => Some(task.0),
        Action::Expelled { job, .. } => Some(*job),
        // A clawback comes with a conviction, which wakes the convict's
        // jobs.
        Action::Clawback { .. } | Action::DisputeNext { .. } | Action::DisputeDone { .. } => None,
    }
}

fn file_ref(file: &SubmittedFile) -> FileRef {
    FileRef {
        name: file.name.clone(),
        id: file.id,
        size: file.size,
    }
}

/// A reported stream as a record's file; an empty stream is none.
fn stream_file(name: &str, stream: StreamRef) -> Option<SubmittedFile> {
    (stream.size > 0).then(|| SubmittedFile {
        name: name.to_string(),
        id: stream.id,
        size: stream.size,
    })
}

#[cfg(test)]
mod tests;
