//! cairn-sim: the market as one seeded, deterministic simulation — the real
//! role cores (`RequesterCore`, `LeaseWork`) and the real ledger state
//! machine, driven by a discrete-event shell instead of tokio, libp2p and
//! redb.
//!
//! Every message between a requester and a provider crosses a simulated
//! network with latency and loss; providers and requesters crash and
//! restart (what they persisted survives); some providers lie, some name
//! tasks past a job's end. Validators crash and are cut off from each
//! other, so blocks come late or stop for a while ([`validators`]). Time is simulated, randomness
//! comes from one seed, and every event goes into a transcript digest: the
//! same seed gives the same transcript, and a failing seed reproduces with
//! `CAIRN_SIM_SEED`. What it reports is what the market promises: every job
//! finishes, no wrong result is accepted, no honest provider is convicted
//! or left unpaid, no token is created or lost, and how close the makespan
//! comes to the ideal.
//!
//! What the shell simplifies (see `docs/architecture.md`): executions are
//! modelled (a duration and a digest per task, a trace of state hashes for
//! disputes), outputs are not transferred, and a wrong result convicted by
//! a dispute is not brought to validators (no case, so no slash: the liar
//! goes unpaid and banned).
//! Providers bid with the node's core ([`Bidder`]): the default pricing
//! policy, busy meaning tasks running now, and orders seen while busy bid
//! on again once idle. Some requesters may withhold payment: they take
//! every result and close their escrow instead of settling; providers are
//! paid anyway, by claiming on the ledger the acceptances their pulls were
//! answered with.
//!
//! [`verifier`] is the smaller simulation of one requester's verifier
//! against named provider behaviours (`cairn bench verify`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use cairn_job::VerifyPolicy;
use cairn_ledger::{
    ACCEPTANCE_NAMESPACE, ACCEPTANCES_PER_CLAIM_MAX, Acceptance, Capabilities, Evidence, Genesis,
    Lease, RECEIPT_NAMESPACE, REVEAL_WINDOW_BLOCKS, REVEALS_PER_TX_MAX, Receipt, SettleOutcome,
    State, TxBody, TxKind, admit_batch,
};
use cairn_market::{BID_NAMESPACE, Bid, ORDER_NAMESPACE, Offer, Order, Rng, ScalePricing, drawn};
use cairn_proto::{
    Assignment, FileRef, Report, Response, StreamRef, Submission, SubmittedFile, SubmittedLimits,
    SubmittedTask, Terms, run_digest,
};
use cairn_roles::bidder::{Answer, Bidder};
use cairn_roles::lease_work::{self, Awaiting, Finished, LeaseWork, Next, Others, Stored};
use cairn_roles::requester::{
    Arrival, Asked, Effects, Finding, JobRecord, RequesterCore, Streams, TaskRecord, Write,
    check_reports,
};
use cairn_sched::SchedParams;
use cairn_verify::{Need, Side, StateHash};
use cairn_wire::{Batch, ContentId, Keypair, PublicKey, ResultManifest, Signed};

mod stage;
mod validators;
pub mod verifier;
use stage::{Ahead, Stage};
use validators::{VIEW_TIMEOUT_MS, Validators};

/// How long a request waits for an answer that was lost.
const REQUEST_TIMEOUT_MS: u64 = 2_000;
/// Simulated time between ledger blocks.
const BLOCK_MS: u64 = 100;
/// How long a challenged provider has to reveal: as long as the ledger's
/// floor of blocks, so the simulated hours stay short.
const REVEAL_WINDOW_MS: u64 = 10_000;
/// Fuel a provider burns per simulated millisecond of a task.
const FUEL_PER_MS: u64 = 1_000_000;
/// The most a job pays, µCAIRN per Gfuel: over what the default pricing
/// asks at full load.
const PRICE: u64 = 100;
/// Each account's balance at genesis: 10 million CAIRN, far more than any
/// budget or stake here, and few enough that a million accounts' add up
/// to less than the ledger's limit (2^64 µCAIRN).
const BALANCE: u64 = 10_000_000_000_000;

/// How a simulated provider behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs every task and tells the truth.
    Honest,
    /// Returns a consistent wrong result (another output) for every task,
    /// with a trace that departs from the honest one part way.
    Liar,
    /// Runs every task right, and adds to every pull a well-signed result
    /// and a failure of a task past the job's end.
    IndexOverflower,
}

impl Behaviour {
    /// Whether its results are right: it must never be convicted,
    /// slashed or left unpaid.
    fn truthful(self) -> bool {
        self != Behaviour::Liar
    }
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Config {
    /// Drives every choice.
    pub seed: u64,
    /// Requesters, each submitting its share of the jobs.
    pub requesters: u32,
    /// Providers.
    pub providers: u32,
    /// Concurrent tasks per provider.
    pub slots: u32,
    /// Providers that lie, per thousand.
    pub liars_per_mille: u32,
    /// Providers that name tasks past a job's end, per thousand.
    pub overflowers_per_mille: u32,
    /// Jobs, submitted `submit_every_ms` apart.
    pub jobs: u32,
    /// Tasks per job.
    pub tasks_per_job: u32,
    /// Shortest and longest task, simulated ms.
    pub task_ms: (u64, u64),
    /// Time between job submissions.
    pub submit_every_ms: u64,
    /// How jobs are verified.
    pub policy: VerifyPolicy,
    /// One-way message latency range, ms.
    pub latency_ms: (u64, u64),
    /// Messages lost, per thousand.
    pub loss_per_mille: u32,
    /// Provider crashes per provider per simulated hour.
    pub crashes_per_hour: f64,
    /// How long a crashed provider stays down, ms.
    pub down_ms: u64,
    /// Simulated time after which the run gives up.
    pub horizon_ms: u64,
    /// Requesters (the first ones) that withhold payment: they never
    /// settle, and close their escrow to take back its budget instead.
    pub withholders: u32,
    /// Requesters (after the withholders) that try to frame honest
    /// providers: they challenge on the ledger every commitment they are
    /// sent, and once the reveal window is over claim it was never opened
    /// (`NoReveal`). Otherwise they act and pay as honest ones.
    pub framers: u32,
    /// Requesters (after the framers) that try to shortchange their
    /// providers: for each acceptance they sign, they sign a second one of
    /// the same results at half the fuel and claim it on the ledger
    /// themselves, and they never settle.
    pub underpayers: u32,
    /// Requester crashes per requester per simulated hour. A requester
    /// down for `down_ms` keeps what a node keeps: its jobs, results,
    /// trust and leases on disk, and its queued transactions (the
    /// outbox); it loses its auctions, offers and disputes in progress.
    pub requester_crashes_per_hour: f64,
    /// Requester crashes at set times (requester, ms): regression seeds
    /// for a crash at one moment.
    pub requester_crashes_at: Vec<(u32, u64)>,
    /// Validators making the ledger's blocks: `3f + 1` of them make blocks
    /// with `f` down or cut off.
    pub validators: u32,
    /// Validator crashes per validator per simulated hour; a crashed one
    /// is down for `down_ms`.
    pub validator_crashes_per_hour: f64,
    /// Validators cut off from the others from the moment a block could
    /// first take a settlement, and for how long (ms): the regression seed
    /// for a partition during settlement.
    pub partition_at_settlement: Option<(Vec<u32>, u64)>,
}

impl Config {
    /// A small network with every hazard on: loss, latency, crashes and
    /// liars. Finishes in a second or two.
    pub fn hazards(seed: u64) -> Self {
        Self {
            seed,
            requesters: 2,
            providers: 40,
            slots: 2,
            liars_per_mille: 100,
            overflowers_per_mille: 50,
            jobs: 6,
            tasks_per_job: 60,
            task_ms: (20, 400),
            submit_every_ms: 500,
            policy: VerifyPolicy::Adaptive { confidence: 0.999 },
            latency_ms: (1, 30),
            loss_per_mille: 20,
            crashes_per_hour: 60.0,
            down_ms: 3_000,
            horizon_ms: 3_600_000,
            withholders: 0,
            framers: 0,
            underpayers: 0,
            requester_crashes_per_hour: 120.0,
            // And one for sure, mid-run.
            requester_crashes_at: vec![(0, 4_000)],
            validators: 4,
            // Each about every half minute, for `down_ms`: sometimes two
            // are down at once, and blocks stop.
            validator_crashes_per_hour: 120.0,
            partition_at_settlement: None,
        }
    }

    /// When job `job` is submitted: once each validator has led a view
    /// (the providers' stakes are in), `submit_every_ms` apart.
    pub fn submit_ms(&self, job: u32) -> u64 {
        BLOCK_MS * u64::from(self.validators.max(1)) + 1 + u64::from(job) * self.submit_every_ms
    }
}

/// What a run found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Events processed.
    pub events: u64,
    /// Digest of every event in order: equal for equal seeds.
    pub transcript: ContentId,
    /// Jobs whose settlement finished and whose escrow closed.
    pub jobs_done: u32,
    /// Tasks in all.
    pub tasks: u64,
    /// Task executions handed out, replicas and re-runs included.
    pub executions: u64,
    /// Tasks whose kept result is not the honest one: must be 0.
    pub wrong_accepted: u64,
    /// Disputes started.
    pub disputes: u64,
    /// Liars convicted (by any requester), and liars in all.
    pub liars_convicted: u32,
    /// Liars in the network.
    pub liars: u32,
    /// Provider crashes.
    pub crashes: u32,
    /// Requester crashes.
    pub requester_crashes: u32,
    /// Validator crashes.
    pub validator_crashes: u32,
    /// Views that made no block: their leader was down or cut off, or no
    /// side had a quorum.
    pub views_timed_out: u64,
    /// Reports requesters refused (a bad signature, a task out of range,
    /// someone else's): each is dropped and counted, and changes nothing.
    pub reports_refused: u64,
    /// Bids that reached a requester: with orders drawing their share of
    /// the network, in proportion to the work, not to the network.
    pub bids: u64,
    /// Commitments the framers challenged without cause.
    pub challenges: u64,
    /// Their `NoReveal` claims refused (the provider had opened the
    /// commitment on the ledger, or the challenge itself was refused).
    pub frames_refused: u64,
    /// Receipts the providers posted in `Reveal` transactions the ledger
    /// took (each answers a challenge, or one already answered).
    pub reveals: u64,
    /// Their `NoReveal` claims the ledger upheld: must be 0.
    pub frames_upheld: u64,
    /// From the first submission until the last job had every result
    /// accepted (its settlement began), ms.
    pub makespan_ms: u64,
    /// From the first submission until the last job's escrow closed (after
    /// the ledger's notice to its leases), ms.
    pub closed_ms: u64,
    /// Total honest work ÷ total slots, ms: the makespan with perfect
    /// packing and no verification.
    pub ideal_ms: u64,
    /// Results the ledger paid, by a requester's settlement or a
    /// provider's claim.
    pub receipts_paid: u64,
    /// Results paid by their providers' claims.
    pub claims_paid: u64,
    /// Results the underpayers' smaller acceptances got paid first.
    pub shortchanged: u64,
    /// Results a requester accepted from an honest provider (any that
    /// returns right results, an index overflower too) that the ledger
    /// never paid, or paid for less fuel than they used: must be 0.
    pub unpaid_accepted: u64,
    /// Honest providers (as above) slashed: must be 0.
    pub honest_slashed: u32,
    /// Honest providers (as above) some requester convicted (and banned,
    /// and stopped paying for its open jobs' results): must be 0.
    pub honest_convicted: u32,
    /// µCAIRN paid to liars: must be 0.
    pub paid_to_liars: u64,
    /// Whether the ledger's tokens add up to its supply at the end, with
    /// every escrow closed.
    pub tokens_conserved: bool,
    /// Escrowed µCAIRN still locked at the end: 0 once every job closed.
    pub escrow_left: u64,
}

/// Runs a simulation to its end (or its horizon).
pub fn run(config: &Config) -> Outcome {
    let mut sim = Sim::new(config.clone());
    sim.run();
    sim.outcome()
}

/// The seed to run: `CAIRN_SIM_SEED` when set, else `default`. Printed, so
/// a failing run names the seed that reproduces it.
pub fn seed(default: u64) -> u64 {
    let seed = std::env::var("CAIRN_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    println!("cairn-sim seed {seed} (rerun with CAIRN_SIM_SEED={seed})");
    seed
}

enum Event {
    Submit {
        job: u32,
    },
    Drive {
        requester: usize,
        job: ContentId,
    },
    Order {
        provider: usize,
        requester: usize,
        order: Signed<Order>,
    },
    Bid {
        requester: usize,
        provider: usize,
        bid: Signed<Bid>,
    },
    Offer {
        provider: usize,
        requester: usize,
        lease: Lease,
        slots: u32,
        life: u32,
    },
    OfferAnswer {
        requester: usize,
        lease: Lease,
        slots: u32,
        signed: bool,
        /// The requester's life the offer came from.
        life: u32,
    },
    Work {
        provider: usize,
        lease: ContentId,
        epoch: u32,
    },
    Pull {
        requester: usize,
        provider: usize,
        lease: ContentId,
        want: u32,
        reports: Vec<Report>,
        held: Vec<u32>,
        awaiting: Vec<u32>,
        epoch: u32,
    },
    Answer {
        provider: usize,
        lease: ContentId,
        want: u32,
        /// Boxed, as is the task below: the largest payloads would make
        /// every event in the queue their size.
        answer: Box<Result<Response, String>>,
        epoch: u32,
    },
    Executed {
        provider: usize,
        lease: ContentId,
        /// Shared with the stage, which seals its report.
        task: Arc<Assignment>,
        took_ms: u64,
        epoch: u32,
        /// Its report, sealed on the signature stage while it ran.
        sealed: Ahead<Finished>,
    },
    Crash {
        provider: usize,
    },
    Restart {
        provider: usize,
    },
    RequesterCrash {
        requester: usize,
    },
    RequesterRestart {
        requester: usize,
    },
    ValidatorCrash {
        validator: usize,
    },
    ValidatorRestart {
        validator: usize,
    },
    Heal,
    PeerLost {
        requester: usize,
        provider: usize,
    },
    Block,
}

impl Event {
    /// What goes into the transcript.
    fn trace(&self) -> String {
        match self {
            Event::Submit { job } => format!("submit {job}"),
            Event::Drive { requester, job } => format!("drive {requester} {}", job.short()),
            Event::Order { provider, .. } => format!("order to {provider}"),
            Event::Bid { provider, .. } => format!("bid from {provider}"),
            Event::Offer { provider, .. } => format!("offer to {provider}"),
            Event::OfferAnswer { lease, signed, .. } => {
                format!("offer answer {} {signed}", lease.id().short())
            }
            Event::Work { provider, .. } => format!("work {provider}"),
            Event::Pull {
                provider,
                want,
                reports,
                ..
            } => format!("pull {provider} {want} {}", reports.len()),
            Event::Answer {
                provider, answer, ..
            } => match &**answer {
                Ok(Response::Tasks { tasks, stored, .. }) => {
                    format!("answer {provider} {} {stored}", tasks.len())
                }
                Ok(_) => format!("answer {provider} other"),
                Err(_) => format!("answer {provider} lost"),
            },
            Event::Executed { provider, task, .. } => format!("ran {provider} {}", task.task),
            Event::Crash { provider } => format!("crash {provider}"),
            Event::Restart { provider } => format!("restart {provider}"),
            Event::RequesterCrash { requester } => format!("requester crash {requester}"),
            Event::RequesterRestart { requester } => format!("requester restart {requester}"),
            Event::ValidatorCrash { validator } => format!("validator crash {validator}"),
            Event::ValidatorRestart { validator } => format!("validator restart {validator}"),
            Event::Heal => "heal".into(),
            Event::PeerLost { provider, .. } => format!("lost {provider}"),
            Event::Block => "block".into(),
        }
    }
}

/// A dispute's side as the simulation answers for it.
struct SideView {
    key: PublicKey,
    /// The liar it is, if it lies.
    lie: Option<PublicKey>,
    /// The digest it reported.
    digest: ContentId,
    /// Positions it is asked for.
    asked: Vec<u64>,
    /// Whether the game waits for its length.
    awaits: bool,
}

/// One lease as its provider works it.
struct Held {
    lease: Lease,
    work: LeaseWork,
    requester: usize,
    /// A pull is in flight: the core is not asked again until it returns.
    pulling: bool,
    /// When its timer is set for.
    timer_at: Option<u64>,
}

struct Provider {
    key: Keypair,
    behaviour: Behaviour,
    /// Its bids; lost in a crash, as a node's are.
    bidder: Bidder,
    up: bool,
    /// Bumped at each crash: events of an earlier life are ignored.
    epoch: u32,
    leases: BTreeMap<ContentId, Held>,
    /// What survives a crash: each lease's persisted state.
    disk: BTreeMap<ContentId, Disk>,
    /// Tasks waiting for a slot, and how many run.
    queue: VecDeque<(ContentId, Assignment)>,
    busy: u32,
    /// What opens each commitment it made, (lease, task) → (digest, fuel,
    /// run): kept on disk beyond the lease, to answer challenges with the
    /// same receipt (signed again: ed25519 signs deterministically), where
    /// the node keeps the signed receipt itself (a simulation of a million
    /// tasks keeps 72 bytes a result instead of 249).
    answers: BTreeMap<(ContentId, u64), Answered>,
    /// Challenges answered in this life: (lease, task, deadline).
    revealed: BTreeSet<(ContentId, u64, u64)>,
}

/// What a provider keeps on disk for one lease.
struct Disk {
    lease: Lease,
    requester: usize,
    /// Reports not yet acknowledged.
    reports: BTreeMap<u64, Report>,
    /// Results delivered and not yet accepted.
    awaiting: BTreeMap<u64, Awaiting>,
    /// The requester's acceptances, claimed when the lease is over.
    accepted: Vec<Signed<Acceptance>>,
}

struct Requester {
    key: Keypair,
    core: RequesterCore,
    /// When each job's driver is due.
    drive_at: BTreeMap<ContentId, u64>,
    /// Each job's auction whose offers are out.
    offering: BTreeMap<ContentId, Offering>,
    up: bool,
    /// Bumped at each crash: answers to an earlier life's offers, and its
    /// transactions' bookkeeping, are ignored.
    life: u32,
    /// When it is back, while down.
    back_at: u64,
    /// When its next random crash is due.
    crash_due: Option<u64>,
    /// What survives a crash.
    disk: RequesterDisk,
    /// Task executions handed out by its earlier lives.
    executions_before: u64,
}

/// What a requester keeps on disk: what a node's tables hold.
#[derive(Default)]
struct RequesterDisk {
    /// Each job's record, written when the job is submitted (with its
    /// escrow queued) and when the core asks.
    jobs: BTreeMap<ContentId, JobRecord>,
    /// Accepted results.
    results: BTreeMap<(ContentId, u32), TaskRecord>,
    /// What it learned of providers.
    trust: BTreeMap<PublicKey, cairn_verify::Record>,
    /// Leases given, once signed, and their slots.
    leases: BTreeMap<ContentId, (Lease, u32)>,
}

/// A transaction for the next block: its signer, and the job and
/// requester life whose escrow, settlement or close it is (followed up
/// after it lands).
type Pending = (Keypair, TxKind, Option<(ContentId, u32)>);

/// An auction's lease offers, until every one is answered.
struct Offering {
    /// Offers not yet answered.
    left: usize,
    /// How long the winners said they need.
    ready_in_ms: u64,
    /// Winners new to the job.
    newcomers: BTreeSet<PublicKey>,
    /// Why those that did not sign did not.
    refusals: Vec<String>,
}

/// A job's way to its end on the ledger.
#[derive(Default)]
struct Closing {
    /// Settlement transactions not yet applied.
    settles: usize,
    /// Results paid so far.
    paid: u64,
    /// The first `CloseEscrow` applied: the second may go once the height
    /// passes this.
    notice_until: Option<u64>,
    closed: bool,
}

struct Sim {
    config: Config,
    rng: Rng,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    processed: u64,
    transcript: blake3_like::Transcript,
    requesters: Vec<Requester>,
    providers: Vec<Provider>,
    index: HashMap<PublicKey, usize>,
    ledger: State,
    supply: u64,
    validators: Validators,
    /// Whether the partition at settlement has come.
    partitioned: bool,
    /// Transactions not yet in a block, each in its sender's validator's
    /// mempool.
    pending_txs: Vec<Pending>,
    jobs: BTreeMap<ContentId, (usize, Closing)>,
    /// Providers that may bid, as the ledger said at the last block.
    bidders: u64,
    /// Orders whose signature was checked, by the digest of their bytes.
    orders_checked: HashMap<ContentId, Option<Order>>,
    /// Each job's task durations.
    durations: BTreeMap<ContentId, Vec<u64>>,
    /// Each job's terms, as its providers are handed them with a lease:
    /// what a receipt's run digest covers, with the task.
    terms: HashMap<ContentId, Arc<Terms>>,
    /// The result each task last had written, and whether it is honest.
    kept: BTreeMap<(ContentId, u32), bool>,
    first_submit: Option<u64>,
    last_finish: u64,
    last_close: u64,
    crashes: u32,
    requester_crashes: u32,
    reports_refused: u64,
    bids: u64,
    challenges: u64,
    frames_refused: u64,
    frames_upheld: u64,
    reveals: u64,
    /// Framers' `NoReveal` claims to make once the height passes:
    /// (framer, lease, task, height).
    framing: Vec<(usize, ContentId, u64, u64)>,
    /// Their claims made and not yet in a block.
    frames_in_flight: u64,
    disputes: u64,
    /// Results paid by claims.
    claims_paid: u64,
    shortchanged: u64,
    /// Results paid by settlements, whichever life of their requester
    /// sent them.
    settles_paid: u64,
    /// Checks messages' signatures on another core while they are in
    /// flight.
    stage: Stage,
}

/// A running digest of the transcript, built on the content id hash.
mod blake3_like {
    use cairn_wire::ContentId;

    /// Folds each line into a chain of content ids.
    #[derive(Default)]
    pub struct Transcript(Option<ContentId>);

    impl Transcript {
        pub fn add(&mut self, time: u64, line: &str) {
            let mut bytes = Vec::with_capacity(40 + line.len());
            if let Some(prev) = self.0 {
                bytes.extend_from_slice(prev.as_bytes());
            }
            bytes.extend_from_slice(&time.to_be_bytes());
            bytes.extend_from_slice(line.as_bytes());
            self.0 = Some(ContentId::of(&bytes));
        }

        pub fn digest(&self) -> ContentId {
            self.0.unwrap_or_else(|| ContentId::of(b""))
        }
    }
}

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    *ContentId::of(&bytes).as_bytes()
}

/// The result `provider` (behaving as `behaviour`) reports for a task that
/// ran `took_ms`: an honest provider's is the same everywhere.
fn manifest(job: &ContentId, task: u32, took_ms: u64, lie: Option<&PublicKey>) -> ResultManifest {
    let output = match lie {
        None => ContentId::from_digest(h(&[b"output", job.as_bytes(), &task.to_le_bytes()])),
        Some(liar) => ContentId::from_digest(h(&[
            b"lie",
            liar.as_bytes(),
            job.as_bytes(),
            &task.to_le_bytes(),
        ])),
    };
    ResultManifest {
        code: 0,
        exit: 0,
        text: "exit 0".into(),
        fuel_used: took_ms * FUEL_PER_MS,
        stdout: StreamRef::of(b"").id,
        stderr: StreamRef::of(b"").id,
        outputs: vec![cairn_wire::OutputFile {
            path: "out".into(),
            size_bytes: 64,
            id: output,
        }],
    }
}

/// Steps in a task's modelled trace: its positions are `0..=n`, position
/// `n` being the result digest.
fn trace_len(job: &ContentId, task: u32) -> u64 {
    3 + u64::from(h(&[b"len", job.as_bytes(), &task.to_le_bytes()])[0] % 32)
}

/// The state a task's execution reaches at `position`: honest up to where a
/// liar departs, then the liar's own; past the end, the digest reported.
fn state_hash(
    job: &ContentId,
    task: u32,
    position: u64,
    digest: ContentId,
    liar: Option<&PublicKey>,
) -> StateHash {
    let n = trace_len(job, task);
    if position >= n {
        return *digest.as_bytes();
    }
    if let Some(liar) = liar {
        let departs = 1 + u64::from(h(&[b"departs", liar.as_bytes()])[0]) % (n - 1);
        if position >= departs {
            return h(&[
                b"liar",
                liar.as_bytes(),
                job.as_bytes(),
                &task.to_le_bytes(),
                &position.to_le_bytes(),
            ]);
        }
    }
    h(&[
        b"state",
        job.as_bytes(),
        &task.to_le_bytes(),
        &position.to_le_bytes(),
    ])
}

impl Sim {
    fn new(config: Config) -> Self {
        let mut rng = Rng::new(config.seed);
        let validators = Validators::new(config.validators);
        let requesters: Vec<Requester> = (0..config.requesters)
            .map(|r| {
                let key = Keypair::from_seed(h(&[b"requester", &r.to_le_bytes()]));
                let core = requester_core(&key, config.seed, r as usize, 0);
                Requester {
                    key,
                    core,
                    drive_at: BTreeMap::new(),
                    offering: BTreeMap::new(),
                    up: true,
                    life: 0,
                    back_at: 0,
                    crash_due: None,
                    disk: RequesterDisk::default(),
                    executions_before: 0,
                }
            })
            .collect();
        let liars =
            (u64::from(config.providers) * u64::from(config.liars_per_mille) / 1_000) as usize;
        let mut providers: Vec<Provider> = (0..config.providers)
            .map(|p| {
                let key = Keypair::from_seed(h(&[b"provider", &p.to_le_bytes()]));
                Provider {
                    bidder: bidder(key.public(), config.slots),
                    key,
                    behaviour: Behaviour::Honest,
                    up: true,
                    epoch: 0,
                    leases: BTreeMap::new(),
                    disk: BTreeMap::new(),
                    queue: VecDeque::new(),
                    busy: 0,
                    answers: BTreeMap::new(),
                    revealed: BTreeSet::new(),
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..providers.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let overflowers = (u64::from(config.providers) * u64::from(config.overflowers_per_mille)
            / 1_000) as usize;
        for &p in order.iter().take(liars) {
            providers[p].behaviour = Behaviour::Liar;
        }
        for &p in order.iter().skip(liars).take(overflowers) {
            providers[p].behaviour = Behaviour::IndexOverflower;
        }
        let keys: Vec<PublicKey> = requesters
            .iter()
            .map(|r| r.key.public())
            .chain(providers.iter().map(|p| p.key.public()))
            .collect();
        let ledger = Genesis::with_balances("cairn-sim", &keys, BALANCE)
            .with_reveal_window_ms(REVEAL_WINDOW_MS)
            .state()
            .expect("a valid genesis");
        let supply = ledger.supply();
        let index = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.key.public(), i))
            .collect();
        let mut sim = Self {
            config,
            rng,
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            processed: 0,
            transcript: Default::default(),
            requesters,
            providers,
            index,
            ledger,
            supply,
            validators,
            partitioned: false,
            pending_txs: Vec::new(),
            jobs: BTreeMap::new(),
            orders_checked: HashMap::new(),
            bidders: 0,
            durations: BTreeMap::new(),
            terms: HashMap::new(),
            kept: BTreeMap::new(),
            first_submit: None,
            last_finish: 0,
            last_close: 0,
            crashes: 0,
            requester_crashes: 0,
            reports_refused: 0,
            bids: 0,
            challenges: 0,
            frames_refused: 0,
            frames_upheld: 0,
            reveals: 0,
            framing: Vec::new(),
            frames_in_flight: 0,
            disputes: 0,
            claims_paid: 0,
            shortchanged: 0,
            settles_paid: 0,
            stage: Stage::start(),
        };
        let stake = sim.ledger.params().stake_min;
        for p in 0..sim.providers.len() {
            let key = sim.providers[p].key.clone();
            sim.pending_txs.push((
                key,
                TxKind::RegisterProvider {
                    capabilities: Capabilities {
                        cores: sim.config.slots,
                        memory_mib: 4_096,
                        gpus: 0,
                        score: 1_000,
                    },
                    endpoint: format!("sim/{p}"),
                    stake,
                },
                None,
            ));
        }
        sim.at(0, Event::Block);
        for job in 0..sim.config.jobs {
            let at = sim.config.submit_ms(job);
            sim.at(at, Event::Submit { job });
        }
        if sim.config.crashes_per_hour > 0.0 {
            for p in 0..sim.providers.len() {
                let at = sim.next_crash(sim.config.crashes_per_hour);
                sim.at(at, Event::Crash { provider: p });
            }
        }
        for requester in 0..sim.requesters.len() {
            sim.requester_crash_due(requester);
        }
        for &(requester, at) in &sim.config.requester_crashes_at.clone() {
            let requester = requester as usize;
            sim.at(at, Event::RequesterCrash { requester });
        }
        if sim.config.validator_crashes_per_hour > 0.0 {
            for validator in 0..sim.validators.len() {
                let at = sim.next_crash(sim.config.validator_crashes_per_hour);
                sim.at(at, Event::ValidatorCrash { validator });
            }
        }
        sim
    }

    /// When the next crash comes, at `per_hour` crashes an hour.
    fn next_crash(&mut self, per_hour: f64) -> u64 {
        // Exponential gaps with the configured rate.
        let mean_ms = 3_600_000.0 / per_hour;
        let u = self.rng.next_f64().max(1e-12);
        self.now + (-u.ln() * mean_ms) as u64 + 1
    }

    /// Sets `requester`'s next random crash, unless one is due.
    fn requester_crash_due(&mut self, requester: usize) {
        let rate = self.config.requester_crashes_per_hour;
        if rate <= 0.0 || self.requesters[requester].crash_due.is_some() {
            return;
        }
        let at = self.next_crash(rate);
        self.requesters[requester].crash_due = Some(at);
        self.at(at, Event::RequesterCrash { requester });
    }

    fn at(&mut self, time: u64, event: Event) {
        self.seq += 1;
        self.events.insert((time.max(self.now), self.seq), event);
    }

    /// Sends a message: it arrives after a latency, or is lost (false).
    fn send(&mut self, event: Event) -> bool {
        if self.rng.below(1_000) < u64::from(self.config.loss_per_mille) {
            return false;
        }
        self.check_ahead(&event);
        self.deliver(event);
        true
    }

    /// Starts checking on the signature stage what the receiver of `event`
    /// will check: a pull's commits and receipts (in one batch, as the
    /// requester checks them), an answer's acceptance, a bid.
    fn check_ahead(&mut self, event: &Event) {
        match event {
            Event::Pull { reports, .. } => {
                let reports = reports.clone();
                self.stage.ahead(move || {
                    let mut batch = Batch::new();
                    for report in &reports {
                        report.batch_signature(&mut batch);
                    }
                    batch.verify();
                });
            }
            Event::Answer { answer, .. } => {
                if let Ok(Response::Tasks {
                    accepted: Some(acceptance),
                    ..
                }) = &**answer
                {
                    let acceptance = acceptance.clone();
                    self.stage.ahead(move || {
                        let _ = acceptance.verify(ACCEPTANCE_NAMESPACE);
                    });
                }
            }
            Event::Bid { bid, .. } => {
                let bid = bid.clone();
                self.stage.ahead(move || {
                    let _ = bid.verify(BID_NAMESPACE);
                });
            }
            _ => {}
        }
    }

    /// Sends a request; if it is lost, `unanswered` (the requester's error)
    /// arrives after the request timeout instead.
    fn request(&mut self, message: Event, unanswered: Event) {
        if !self.send(message) {
            self.at(self.now + REQUEST_TIMEOUT_MS, unanswered);
        }
    }

    /// Delivers a notice that is not lost, after a latency: a closed
    /// connection is noticed, however late.
    fn deliver(&mut self, event: Event) {
        let (lo, hi) = self.config.latency_ms;
        let delay = lo + self.rng.below(hi.saturating_sub(lo) + 1);
        self.at(self.now + delay, event);
    }

    /// Every job closed, every framer's claim made, and every provider's
    /// claim made and in a block: a provider claims once its lease's work
    /// is over, which may be after the job's escrow closed (the requester's
    /// balance then pays), and a claim may wait in a mempool.
    fn done(&self) -> bool {
        self.jobs.len() as u32 == self.config.jobs
            && self.jobs.values().all(|(_, c)| c.closed)
            && self.framing.is_empty()
            && self.frames_in_flight == 0
            && !self
                .pending_txs
                .iter()
                .any(|(_, kind, _)| matches!(kind, TxKind::Claim { .. }))
            && self
                .providers
                .iter()
                .all(|p| p.disk.values().all(|d| d.accepted.is_empty()))
    }

    fn run(&mut self) {
        while let Some(((time, _), event)) = self.events.pop_first() {
            if time > self.config.horizon_ms || self.done() {
                break;
            }
            self.now = time;
            self.processed += 1;
            self.transcript.add(time, &event.trace());
            self.handle(event);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Submit { job } => self.submit(job),
            Event::Drive { requester, job } => {
                let r = &self.requesters[requester];
                if r.up && r.drive_at.get(&job) == Some(&self.now) {
                    self.requesters[requester].drive_at.remove(&job);
                    self.drive(requester, job);
                }
            }
            Event::Order {
                provider,
                requester,
                order,
            } => self.on_order(provider, requester, order),
            Event::Bid {
                requester,
                provider,
                bid,
            } => self.on_bid(requester, provider, bid),
            Event::Offer {
                provider,
                requester,
                lease,
                slots,
                life,
            } => self.on_offer(provider, requester, lease, slots, life),
            Event::OfferAnswer {
                requester,
                lease,
                slots,
                signed,
                life,
            } => {
                let r = &self.requesters[requester];
                if r.up && r.life == life {
                    self.on_offer_answer(requester, lease, slots, signed);
                }
            }
            Event::Work {
                provider,
                lease,
                epoch,
            } => {
                let p = &mut self.providers[provider];
                if p.epoch == epoch
                    && let Some(held) = p.leases.get_mut(&lease)
                    && held.timer_at == Some(self.now)
                {
                    held.timer_at = None;
                    self.pump(provider, lease);
                }
            }
            Event::Pull {
                requester,
                provider,
                lease,
                want,
                reports,
                held,
                awaiting,
                epoch,
            } => {
                if !self.requesters[requester].up {
                    // Nobody listens: the provider's request times out.
                    let answer = Event::Answer {
                        provider,
                        lease,
                        want,
                        answer: Box::new(Err("connection refused".into())),
                        epoch,
                    };
                    self.at(self.now + REQUEST_TIMEOUT_MS, answer);
                    return;
                }
                let asked = Asked {
                    want,
                    held,
                    received_ms: self.now,
                    awaiting,
                };
                self.on_pull(requester, provider, lease, asked, reports, epoch)
            }
            Event::Answer {
                provider,
                lease,
                want,
                answer,
                epoch,
            } => self.on_answer(provider, lease, want, *answer, epoch),
            Event::Executed {
                provider,
                lease,
                task,
                took_ms,
                epoch,
                sealed,
            } => self.on_executed(provider, lease, &task, took_ms, epoch, sealed),
            Event::Crash { provider } => self.crash(provider),
            Event::Restart { provider } => self.restart(provider),
            Event::RequesterCrash { requester } => self.crash_requester(requester),
            Event::RequesterRestart { requester } => self.restart_requester(requester),
            Event::ValidatorCrash { validator } => {
                self.validators.crash(validator);
                let back = self.now + self.config.down_ms.max(1);
                self.at(back, Event::ValidatorRestart { validator });
            }
            Event::ValidatorRestart { validator } => {
                self.validators.restart(validator);
                let at = self.next_crash(self.config.validator_crashes_per_hour);
                self.at(at, Event::ValidatorCrash { validator });
            }
            Event::Heal => self.validators.heal(),
            Event::PeerLost {
                requester,
                provider,
            } => {
                if !self.requesters[requester].up {
                    return;
                }
                let key = self.providers[provider].key.public();
                let effects = self.requesters[requester].core.peer_lost(&key, self.now);
                self.carry_out(requester, effects);
            }
            Event::Block => self.block(),
        }
    }

    fn wake(&mut self, requester: usize, job: ContentId, at: u64) {
        let r = &mut self.requesters[requester];
        let at = at.max(self.now);
        match r.drive_at.get(&job) {
            Some(&due) if due <= at => {}
            _ => {
                r.drive_at.insert(job, at);
                self.at(at, Event::Drive { requester, job });
            }
        }
    }

    fn submit(&mut self, index: u32) {
        let requester = (index % self.config.requesters) as usize;
        if !self.requesters[requester].up {
            // Its user submits again once the node is back.
            let back = self.requesters[requester].back_at;
            self.at(back, Event::Submit { job: index });
            return;
        }
        let (lo, hi) = self.config.task_ms;
        let durations: Vec<u64> = (0..self.config.tasks_per_job)
            .map(|_| lo + self.rng.below(hi.saturating_sub(lo) + 1))
            .collect();
        let fuel_max = hi * FUEL_PER_MS;
        let tasks = self.config.tasks_per_job;
        let submission = Submission {
            name: format!("job {index}"),
            runtime: "wasm".into(),
            module: SubmittedFile {
                name: "module.wasm".into(),
                id: ContentId::of(b"sim module"),
                size: 1 << 20,
            },
            inputs: Vec::new(),
            tasks: (0..tasks)
                .map(|t| SubmittedTask {
                    args: vec![t.to_string()],
                    outputs: vec!["out".into()],
                    seed: cairn_wire::hex(&h(&[b"seed", &index.to_le_bytes(), &t.to_le_bytes()])),
                    fuel: None,
                    inputs: Vec::new(),
                })
                .collect(),
            limits: SubmittedLimits {
                fuel: fuel_max,
                memory_bytes: 64 << 20,
                wall_time_ms: 600_000,
                output_bytes: 1 << 20,
                stdout_bytes: 1 << 10,
                gpus: 0,
                gpu_memory_mib: 0,
            },
            // Enough for every task run three times at the highest price.
            budget_ucairn: u64::from(tasks) * 3 * fuel_max * PRICE / 1_000_000_000 + 1,
            price_max_ucairn_per_gfuel: PRICE,
            verify: self.config.policy.into(),
            approval_window_s: None,
            stream: None,
        };
        submission.check().expect("the simulation's jobs are valid");
        let id = ContentId::from_digest(h(&[b"job", &index.to_le_bytes()]));
        let record = JobRecord::new(submission, self.now);
        let r = &mut self.requesters[requester];
        self.pending_txs.push((
            r.key.clone(),
            TxKind::OpenEscrow {
                job: id,
                amount: record.submission.budget_ucairn,
            },
            Some((id, r.life)),
        ));
        // Recorded in the same write that queues its escrow, as a node
        // does; auctioned once a block has locked the escrow.
        r.disk.jobs.insert(id, record);
        self.durations.insert(id, durations);
        self.jobs.insert(id, (requester, Closing::default()));
        self.first_submit.get_or_insert(self.now);
    }

    /// `job`'s escrow is locked: its requester takes it on and auctions it.
    fn escrowed(&mut self, job: ContentId) {
        let requester = self.jobs[&job].0;
        let r = &mut self.requesters[requester];
        let record = r.disk.jobs[&job].clone();
        r.core
            .add_job(job, record, self.now)
            .expect("a checked submission");
        note_terms(&mut self.terms, &r.core, &job);
        let mut effects = Effects::default();
        r.core.open_auction(&job, self.now, &mut effects);
        self.carry_out(requester, effects);
        self.wake(requester, job, self.now);
    }

    fn drive(&mut self, requester: usize, job: ContentId) {
        let Some(step) = self.requesters[requester].core.step(&job, self.now) else {
            return;
        };
        self.carry_out(requester, step.effects);
        if let Some((order, chosen)) = step.winners {
            let height = self.ledger.height();
            let now = self.now;
            let r = &mut self.requesters[requester];
            if let Some(offers) = r.core.offer_leases(&job, &order, chosen, height, now) {
                if offers.leases.is_empty() {
                    r.core.offers_answered(&job, 0, &[], now);
                    self.wake(requester, job, now);
                    return;
                }
                let offering = Offering {
                    left: offers.leases.len(),
                    ready_in_ms: offers.ready_in_ms,
                    newcomers: offers.newcomers,
                    refusals: Vec::new(),
                };
                r.offering.insert(job, offering);
                let life = r.life;
                for (lease, slots) in offers.leases {
                    let provider = self.index[&lease.provider];
                    let offer = Event::Offer {
                        provider,
                        requester,
                        lease: lease.clone(),
                        slots,
                        life,
                    };
                    self.request(
                        offer,
                        Event::OfferAnswer {
                            requester,
                            lease,
                            slots,
                            signed: false,
                            life,
                        },
                    );
                }
            }
            return;
        }
        if let Some(acceptances) = step.settle {
            self.last_finish = self.now;
            // A withholder pays nothing itself: it closes the escrow for
            // its budget back, and its providers claim what it accepted.
            // Nor does an underpayer, which claimed what it chose to pay.
            let acceptances =
                if requester < self.config.withholders as usize || self.underpays(requester) {
                    Vec::new()
                } else {
                    acceptances
                };
            let (key, life) = (
                self.requesters[requester].key.clone(),
                self.requesters[requester].life,
            );
            // Claims of its own acceptances, as the node settles (packed by
            // count alone: the simulation does not bound a transaction's
            // bytes, as its providers' claims do not).
            let chunks: Vec<Vec<Signed<Acceptance>>> = acceptances
                .chunks(ACCEPTANCES_PER_CLAIM_MAX)
                .map(<[_]>::to_vec)
                .collect();
            let closing = &mut self.jobs.get_mut(&job).expect("submitted").1;
            closing.settles = chunks.len();
            for acceptances in chunks {
                self.pending_txs.push((
                    key.clone(),
                    TxKind::Claim { acceptances },
                    Some((job, life)),
                ));
            }
            if closing.settles == 0 {
                self.settled(job);
            }
            return;
        }
        if let Some(at) = step.next_deadline_ms {
            self.wake(requester, job, at);
        }
    }

    /// Every settlement of `job` applied: its escrow closes.
    fn settled(&mut self, job: ContentId) {
        let (requester, closing) = &self.jobs[&job];
        let requester = *requester;
        let paid = closing.paid;
        let r = &mut self.requesters[requester];
        r.core.settled(&job, paid, &[]);
        self.pending_txs.push((
            r.key.clone(),
            TxKind::CloseEscrow { job },
            Some((job, r.life)),
        ));
    }

    fn carry_out(&mut self, requester: usize, effects: Effects) {
        for write in &effects.writes {
            let disk = &mut self.requesters[requester].disk;
            match write {
                Write::Result { job, record } => {
                    let took = self.durations[job][record.task as usize];
                    let honest = manifest(job, record.task, took, None).digest();
                    self.kept
                        .insert((*job, record.task), record.digest == honest);
                    disk.results.insert((*job, record.task), (**record).clone());
                }
                Write::ForgetResult { job, task } => {
                    self.kept.remove(&(*job, *task));
                    disk.results.remove(&(*job, *task));
                }
                Write::Trust { provider, record } => {
                    disk.trust.insert(*provider, *record);
                }
                Write::Job { id, record } => {
                    disk.jobs.insert(*id, (**record).clone());
                }
            }
        }
        // Stored at once: the simulated disk never fails.
        for job in self.requesters[requester].core.stored(&effects.writes) {
            self.wake(requester, job, self.now);
        }
        let key = self.requesters[requester].key.clone();
        for tx in effects.txs {
            self.pending_txs.push((key.clone(), tx, None));
        }
        for order in effects.orders {
            // Gossip takes an order to every provider, and one its draw
            // did not ask drops it unanswered: only those asked are sent
            // it here.
            let (id, draw) = (
                order.payload_unchecked().id(),
                order.payload_unchecked().draw_ppm,
            );
            for provider in 0..self.providers.len() {
                if drawn(&id, draw, &self.providers[provider].key.public()) {
                    self.send(Event::Order {
                        provider,
                        requester,
                        order: order.clone(),
                    });
                }
            }
        }
        for (_, id) in effects.disputes {
            self.disputes += 1;
            self.play(requester, id);
        }
        for job in effects.wake {
            self.wake(requester, job, self.now);
        }
    }

    /// Plays dispute `id` to its end at once: each side answers from its
    /// modelled trace, and the referee steps the honest execution.
    fn play(&mut self, requester: usize, id: u64) {
        loop {
            let core = &self.requesters[requester].core;
            let Some((task, sides, game)) = core.verifier.game(id) else {
                return;
            };
            let (task, sides, need) = (*task, *sides, game.need().clone());
            let side_answers: Vec<SideView> = Side::BOTH
                .iter()
                .zip(sides)
                .map(|(&side, key)| {
                    let p = self.index[&key];
                    let lie = (self.providers[p].behaviour == Behaviour::Liar).then_some(key);
                    let took = self.durations[&task.0][task.1 as usize];
                    let digest = manifest(&task.0, task.1, took, lie.as_ref()).digest();
                    SideView {
                        key,
                        lie,
                        digest,
                        asked: game.asked_of(side),
                        awaits: game.awaits(side),
                    }
                })
                .collect();
            let now = self.now;
            let core = &mut self.requesters[requester].core;
            let mut actions = Vec::new();
            let refereed = matches!(need, Need::Referee(_));
            match need {
                Need::Done(_) => return,
                Need::Lengths => {
                    // Positions 0..=n: the last is the digest.
                    let positions = trace_len(&task.0, task.1) + 1;
                    for side in side_answers.iter().filter(|s| s.awaits) {
                        actions.extend(
                            core.verifier
                                .dispute_length(id, &side.key, positions, now)
                                .unwrap_or_default(),
                        );
                    }
                }
                Need::Hashes { .. } => {
                    for side in side_answers.iter().filter(|s| !s.asked.is_empty()) {
                        let hashes: Vec<StateHash> = side
                            .asked
                            .iter()
                            .map(|&pos| {
                                state_hash(&task.0, task.1, pos, side.digest, side.lie.as_ref())
                            })
                            .collect();
                        actions.extend(
                            core.verifier
                                .dispute_hashes(id, &side.key, &hashes, now)
                                .unwrap_or_default(),
                        );
                    }
                }
                Need::Referee(segment) => {
                    let took = self.durations[&task.0][task.1 as usize];
                    let honest = manifest(&task.0, task.1, took, None).digest();
                    let honest_at = |pos| state_hash(&task.0, task.1, pos, honest, None);
                    let reached = match segment.agreed {
                        None => honest_at(1),
                        Some(agreed) if agreed == honest_at(segment.position) => {
                            honest_at(segment.position + 1)
                        }
                        Some(_) => h(&[b"no honest successor"]),
                    };
                    let winner = sides
                        .iter()
                        .zip(segment.claims)
                        .find(|(_, claim)| *claim == reached)
                        .map(|(p, _)| *p);
                    core.findings.insert(
                        id,
                        (
                            Finding {
                                position: segment.position,
                                reached,
                                state: None,
                            },
                            winner,
                        ),
                    );
                    actions.extend(
                        core.verifier
                            .dispute_referee(id, reached, now)
                            .unwrap_or_default(),
                    );
                }
            }
            if actions.is_empty() && !refereed {
                // Nothing moved: the game waits for what the model does not
                // give (it should not happen); its deadline decides.
                return;
            }
            let effects = core.act(Vec::new(), actions);
            self.carry_out(requester, effects);
        }
    }

    fn on_order(&mut self, provider: usize, requester: usize, order: Signed<Order>) {
        let p = &self.providers[provider];
        if !p.up {
            return;
        }
        // Every provider checks the order's signature; the answer is the
        // same for all of them, so it is worked out once per order.
        let id = ContentId::of(&order.to_bytes());
        let checked = match self.orders_checked.get(&id) {
            Some(checked) => checked.clone(),
            None => {
                let checked = order.verify(ORDER_NAMESPACE).ok().cloned();
                self.orders_checked.insert(id, checked.clone());
                checked
            }
        };
        let Some(order) = checked else {
            return;
        };
        let p = &mut self.providers[provider];
        let signer = self.requesters[requester].key.public();
        // Declines are not sent: the requester's auction only counts them
        // for its status.
        if let Answer::Bid(bid) = p.bidder.order(&order, signer, p.busy, self.now) {
            let bid = Signed::sign(&p.key, BID_NAMESPACE, bid);
            self.send(Event::Bid {
                requester,
                provider,
                bid,
            });
        }
    }

    /// A provider with nothing to run bids again on the orders it saw
    /// while busy.
    fn idle(&mut self, provider: usize) {
        let p = &mut self.providers[provider];
        if !p.up || p.busy > 0 || !p.queue.is_empty() {
            return;
        }
        let bids = p.bidder.idle(self.now);
        let key = p.key.clone();
        for rebid in bids {
            let signer = rebid.requester;
            let Some(requester) = self
                .requesters
                .iter()
                .position(|r| r.key.public() == signer)
            else {
                continue;
            };
            let bid = Signed::sign(&key, BID_NAMESPACE, rebid.bid);
            self.send(Event::Bid {
                requester,
                provider,
                bid,
            });
        }
    }

    fn on_bid(&mut self, requester: usize, provider: usize, bid: Signed<Bid>) {
        if !self.requesters[requester].up {
            return;
        }
        self.bids += 1;
        let key = self.providers[provider].key.public();
        let account = self
            .ledger
            .provider(&key)
            .filter(|_| self.ledger.can_bid(&key))
            .map(|p| {
                (
                    u128::from(p.stake),
                    (p.reputation.tasks_settled, p.reputation.slashes),
                )
            });
        let (stake, record) = match account {
            Some((stake, record)) => (Some(stake), record),
            None => (None, (0, 0)),
        };
        let now = self.now;
        if let Ok((job, _)) = self.requesters[requester]
            .core
            .bid(key, &bid, stake, record, now)
        {
            self.wake(requester, job, now);
        }
    }

    fn on_offer(&mut self, provider: usize, requester: usize, lease: Lease, slots: u32, life: u32) {
        let p = &mut self.providers[provider];
        let signed = p.up && p.bidder.check_lease(&lease, slots).is_ok();
        if signed {
            p.bidder.leased(&lease);
            let id = lease.id();
            let work = LeaseWork::new(
                &lease,
                slots,
                p.key.clone(),
                None,
                Stored::default(),
                self.now,
            );
            p.disk.insert(
                id,
                Disk {
                    lease: lease.clone(),
                    requester,
                    reports: BTreeMap::new(),
                    awaiting: BTreeMap::new(),
                    accepted: Vec::new(),
                },
            );
            p.leases.insert(
                id,
                Held {
                    lease: lease.clone(),
                    work,
                    requester,
                    pulling: false,
                    timer_at: None,
                },
            );
            self.pump(provider, id);
        }
        let answer = Event::OfferAnswer {
            requester,
            lease: lease.clone(),
            slots,
            signed,
            life,
        };
        self.request(
            answer,
            Event::OfferAnswer {
                requester,
                lease,
                slots,
                signed: false,
                life,
            },
        );
    }

    fn on_offer_answer(&mut self, requester: usize, lease: Lease, slots: u32, signed: bool) {
        let job = lease.job;
        let provider = self.index[&lease.provider];
        let now = self.now;
        let r = &mut self.requesters[requester];
        let Some(offering) = r.offering.get_mut(&job) else {
            return;
        };
        offering.left -= 1;
        let mut effects = Effects::default();
        if signed {
            // Kept before the core hands out work on it, as a node does.
            r.disk.leases.insert(lease.id(), (lease.clone(), slots));
            r.core.lease_signed(&job, &lease.id());
            let provider_signature = lease.sign(&self.providers[provider].key);
            self.pending_txs.push((
                r.key.clone(),
                TxKind::RecordLease {
                    lease,
                    provider_signature,
                },
                None,
            ));
        } else {
            offering.refusals.push("no answer".into());
            // A lost answer may hide a signature: the provider then pulls
            // on a lease this requester forgot, and is refused.
            let newcomer = offering.newcomers.contains(&lease.provider);
            effects = r.core.forget_offer(&job, &lease, newcomer, now);
        }
        if offering.left == 0 {
            let offering = r.offering.remove(&job).expect("present");
            r.core
                .offers_answered(&job, offering.ready_in_ms, &offering.refusals, now);
            effects.wake.insert(job);
        }
        self.carry_out(requester, effects);
    }

    /// Asks a lease's core what to do, and does it.
    fn pump(&mut self, provider: usize, lease: ContentId) {
        let now = self.now;
        let p = &mut self.providers[provider];
        let epoch = p.epoch;
        if p.leases.get(&lease).is_none_or(|held| held.pulling) {
            return;
        }
        let others = Others {
            leases: (p.leases.len() as u32).saturating_sub(1),
            held: p
                .leases
                .iter()
                .filter(|(id, _)| **id != lease)
                .map(|(_, other)| other.work.held())
                .sum(),
        };
        let Some(held) = p.leases.get_mut(&lease) else {
            return;
        };
        match held.work.next(now, others) {
            Next::Pull(pull) => {
                let disk = p.disk.get_mut(&lease).expect("on disk");
                for write in pull.writes {
                    if let Some((task, answer)) = disk.write(write) {
                        p.answers.insert((lease, task), answer);
                    }
                }
                held.pulling = true;
                let requester = held.requester;
                let mut reports = pull.reports;
                if p.behaviour == Behaviour::IndexOverflower {
                    let past = self.config.tasks_per_job;
                    let m = manifest(&held.lease.job, past, 1, None);
                    reports.push(sealed(&p.key, lease, past, [0; 32], &m));
                    reports.push(Report::Failed {
                        task: past,
                        reason: "past the end".into(),
                    });
                }
                let message = Event::Pull {
                    requester,
                    provider,
                    lease,
                    want: pull.want,
                    reports,
                    held: pull.held,
                    awaiting: pull.awaiting,
                    epoch,
                };
                self.request(
                    message,
                    Event::Answer {
                        provider,
                        lease,
                        want: pull.want,
                        answer: Box::new(Err("lost".into())),
                        epoch,
                    },
                );
            }
            Next::Wait(Some(at)) => {
                if held.timer_at.is_none_or(|t| at < t) {
                    held.timer_at = Some(at);
                    self.at(
                        at,
                        Event::Work {
                            provider,
                            lease,
                            epoch,
                        },
                    );
                }
            }
            Next::Wait(None) => {}
            Next::Done => {
                let mut held = p.leases.remove(&lease).expect("held above");
                let mut disk = p.disk.remove(&lease).expect("on disk");
                for write in held.work.take_writes() {
                    if let Some((task, answer)) = disk.write(write) {
                        p.answers.insert((lease, task), answer);
                    }
                }
                // Paid for what the requester accepted, whether or not it
                // settles.
                let key = p.key.clone();
                self.claim(&key, disk.accepted);
            }
        }
    }

    /// A pull on `lease`, as `asked`.
    fn on_pull(
        &mut self,
        requester: usize,
        provider: usize,
        lease: ContentId,
        asked: Asked,
        reports: Vec<Report>,
        epoch: u32,
    ) {
        let want = asked.want;
        let sender = self.providers[provider].key.public();
        let now = self.now;
        let core = &mut self.requesters[requester].core;
        let answer = match core.lease_job(&lease) {
            None => Response::Refused("unknown lease".into()),
            Some((job, tasks)) => {
                if self.frames(requester) {
                    self.challenge_commits(requester, &reports);
                }
                let core = &mut self.requesters[requester].core;
                let stored = reports.len() as u32;
                let mut checked = check_reports(sender, lease, tasks, Streams::Result, reports);
                self.reports_refused += u64::from(checked.refused + checked.bad_signatures);
                // Outputs are not moved in the simulation: a result asked
                // for is here at once.
                let reveals = std::mem::take(&mut checked.reveals);
                for revealed in reveals {
                    match core.reveal_arrived(now, &job, &sender, &revealed) {
                        Ok(Arrival::Fetch | Arrival::Judge) => checked.reveals.push(revealed),
                        Ok(Arrival::Ignore) => {}
                        Err(reason) => checked.failed.push((revealed.record.task, reason)),
                    }
                }
                match core.pulled(now, (&job, &lease, sender), &asked, checked, stored) {
                    Ok((response, effects)) => {
                        self.carry_out(requester, effects);
                        if self.underpays(requester) {
                            self.shortchange(requester, &response);
                        }
                        response
                    }
                    Err(e) => Response::Refused(format!("{e:?}")),
                }
            }
        };
        let message = Event::Answer {
            provider,
            lease,
            want,
            answer: Box::new(Ok(answer)),
            epoch,
        };
        self.request(
            message,
            Event::Answer {
                provider,
                lease,
                want,
                answer: Box::new(Err("lost".into())),
                epoch,
            },
        );
    }

    fn on_answer(
        &mut self,
        provider: usize,
        lease: ContentId,
        want: u32,
        answer: Result<Response, String>,
        epoch: u32,
    ) {
        let now = self.now;
        let p = &mut self.providers[provider];
        if p.epoch != epoch {
            return;
        }
        let Some(held) = p.leases.get_mut(&lease) else {
            return;
        };
        held.pulling = false;
        let tasks = held.work.answered(now, want, answer, |_| true);
        for task in tasks {
            p.queue.push_back((lease, task));
        }
        self.start_tasks(provider);
        self.pump(provider, lease);
        self.idle(provider);
    }

    fn start_tasks(&mut self, provider: usize) {
        while self.providers[provider].busy < self.config.slots {
            let Some((lease, task)) = self.providers[provider].queue.pop_front() else {
                return;
            };
            let Some(held) = self.providers[provider].leases.get(&lease) else {
                continue;
            };
            let job = held.lease.job;
            let took_ms = self
                .durations
                .get(&job)
                .and_then(|d| d.get(task.task as usize))
                .copied()
                .unwrap_or(1);
            let p = &mut self.providers[provider];
            let epoch = p.epoch;
            p.busy += 1;
            let (key, liar) = (p.key.clone(), p.behaviour == Behaviour::Liar);
            let task = Arc::new(task);
            let (terms, handed) = (self.terms[&job].clone(), task.clone());
            let sealed = self
                .stage
                .make(move || seal_result(&key, liar, (&job, lease), (&terms, &handed), took_ms));
            self.at(
                self.now + took_ms,
                Event::Executed {
                    provider,
                    lease,
                    task,
                    took_ms,
                    epoch,
                    sealed,
                },
            );
        }
    }

    fn on_executed(
        &mut self,
        provider: usize,
        lease: ContentId,
        task: &Assignment,
        took_ms: u64,
        epoch: u32,
        sealed: Ahead<Finished>,
    ) {
        let p = &mut self.providers[provider];
        if p.epoch != epoch {
            return;
        }
        p.busy -= 1;
        if let Some(held) = p.leases.get_mut(&lease) {
            let job = held.lease.job;
            let liar = p.behaviour == Behaviour::Liar;
            let terms = &self.terms[&job];
            let finished =
                sealed.take_or(|| seal_result(&p.key, liar, (&job, lease), (terms, task), took_ms));
            held.work.finished(finished, took_ms as f64);
        }
        // A slot came free: each lease may take work for it.
        let ids: Vec<ContentId> = self.providers[provider].leases.keys().copied().collect();
        for id in ids {
            self.pump(provider, id);
        }
        self.start_tasks(provider);
    }

    fn crash(&mut self, provider: usize) {
        let p = &mut self.providers[provider];
        if !p.up {
            return;
        }
        p.up = false;
        p.epoch += 1;
        p.leases.clear();
        p.queue.clear();
        p.busy = 0;
        p.revealed.clear();
        self.crashes += 1;
        for requester in 0..self.requesters.len() {
            self.deliver(Event::PeerLost {
                requester,
                provider,
            });
        }
        let at = self.now + self.config.down_ms;
        self.at(at, Event::Restart { provider });
    }

    fn restart(&mut self, provider: usize) {
        let now = self.now;
        let p = &mut self.providers[provider];
        p.up = true;
        p.bidder = bidder(p.key.public(), self.config.slots);
        // What it was accepted for is claimed at once, as a restarted node
        // does: the job may have ended while it was down, and its escrow
        // be closing.
        let key = p.key.clone();
        let accepted: Vec<Signed<Acceptance>> = p
            .disk
            .values_mut()
            .flat_map(|d| std::mem::take(&mut d.accepted))
            .collect();
        self.claim(&key, accepted);
        let p = &mut self.providers[provider];
        // Each lease resumes from what was persisted before the crash.
        let disk: Vec<(ContentId, Lease, usize, Stored)> = p
            .disk
            .iter()
            .map(|(id, disk)| {
                let stored = Stored {
                    reports: disk.reports.values().cloned().collect(),
                    awaiting: disk.awaiting.values().copied().collect(),
                };
                (*id, disk.lease.clone(), disk.requester, stored)
            })
            .collect();
        for (id, lease, requester, stored) in disk {
            let work = LeaseWork::new(&lease, self.config.slots, p.key.clone(), None, stored, now);
            p.leases.insert(
                id,
                Held {
                    lease,
                    work,
                    requester,
                    pulling: false,
                    timer_at: None,
                },
            );
        }
        let ids: Vec<ContentId> = self.providers[provider].leases.keys().copied().collect();
        for id in ids {
            self.pump(provider, id);
        }
        let at = self.next_crash(self.config.crashes_per_hour);
        self.at(at, Event::Crash { provider });
    }

    /// A requester's node stops: what it held in memory is gone; its disk
    /// and its queued transactions stay.
    fn crash_requester(&mut self, requester: usize) {
        let now = self.now;
        let r = &mut self.requesters[requester];
        if r.crash_due == Some(now) {
            r.crash_due = None;
        }
        if !r.up {
            return;
        }
        r.up = false;
        r.life += 1;
        r.executions_before += r
            .core
            .jobs
            .values()
            .map(|j| j.replicas.executions)
            .sum::<u64>();
        r.drive_at.clear();
        r.offering.clear();
        r.back_at = now + self.config.down_ms;
        self.requester_crashes += 1;
        for (owner, closing) in self.jobs.values_mut() {
            if *owner == requester {
                closing.settles = 0;
                closing.notice_until = None;
            }
        }
        let back = r.back_at;
        self.at(back, Event::RequesterRestart { requester });
    }

    /// A requester's node starts again from its disk, as a node restores
    /// its tables: trust, then each job with its results, then the leases
    /// it gave.
    fn restart_requester(&mut self, requester: usize) {
        let now = self.now;
        let r = &mut self.requesters[requester];
        r.up = true;
        r.core = requester_core(&r.key, self.config.seed, requester, r.life);
        r.core.set_bidders_known(self.bidders);
        for (&provider, &record) in &r.disk.trust {
            r.core.restore_trust(provider, record);
        }
        let mut restored = Vec::new();
        for (id, record) in &r.disk.jobs {
            r.core
                .add_job(*id, record.clone(), now)
                .expect("a stored job");
            note_terms(&mut self.terms, &r.core, id);
            for result in r.disk.results.range((*id, 0)..=(*id, u32::MAX)) {
                r.core
                    .restore_result(id, result.1)
                    .expect("a stored result");
            }
            restored.push((*id, r.core.restored(id, now)));
        }
        for (lease, slots) in r.disk.leases.values() {
            r.core.restore_lease(lease.clone(), *slots, now);
        }
        for (job, effects) in restored {
            self.carry_out(requester, effects);
            self.wake(requester, job, now);
        }
        self.requester_crash_due(requester);
    }

    /// Whether `requester` is a framer.
    fn frames(&self, requester: usize) -> bool {
        let first = self.config.withholders as usize;
        (first..first + self.config.framers as usize).contains(&requester)
    }

    /// Whether `requester` is an underpayer.
    fn underpays(&self, requester: usize) -> bool {
        let first = (self.config.withholders + self.config.framers) as usize;
        (first..first + self.config.underpayers as usize).contains(&requester)
    }

    /// An underpayer signs a second acceptance of the results `response`
    /// accepts, at half their fuel, and claims it before the provider can
    /// claim the first.
    fn shortchange(&mut self, requester: usize, response: &Response) {
        let Response::Tasks {
            accepted: Some(accepted),
            ..
        } = response
        else {
            return;
        };
        let mut smaller = accepted.payload_unchecked().clone();
        for result in &mut smaller.results {
            result.fuel_used /= 2;
        }
        let key = self.requesters[requester].key.clone();
        let smaller = Signed::sign(&key, ACCEPTANCE_NAMESPACE, smaller);
        let claim = TxKind::Claim {
            acceptances: vec![smaller],
        };
        self.pending_txs.push((key, claim, None));
    }

    /// A framer challenges every commitment in `reports`, and will claim
    /// it was never opened once the reveal window is over.
    fn challenge_commits(&mut self, requester: usize, reports: &[Report]) {
        let key = self.requesters[requester].key.clone();
        // Challenged in the next block at the earliest; the claim waits
        // for the window after that, in blocks and in time.
        let window = REVEAL_WINDOW_BLOCKS.max(REVEAL_WINDOW_MS.div_ceil(BLOCK_MS));
        let due = self.ledger.height() + 1 + window + 1;
        for report in reports {
            if let Report::Committed(commit) = report {
                let c = commit.payload_unchecked();
                self.framing.push((requester, c.lease, c.task, due));
                self.challenges += 1;
                let challenge = TxKind::Challenge {
                    commit: commit.clone(),
                };
                self.pending_txs.push((key.clone(), challenge, None));
            }
        }
    }

    /// Every provider that is up answers the challenges against it that
    /// it can open, as a node watching the ledger does: the earliest
    /// deadline first, many in one transaction.
    fn answer_challenges(&mut self) {
        for p in self.providers.iter_mut().filter(|p| p.up) {
            let open: Vec<_> = self
                .ledger
                .open_challenges(&p.key.public())
                .into_iter()
                .map(|(lease, task, c)| (lease, task, c.deadline))
                .collect();
            // As the node's watch does: a challenge answered leaves the
            // list, and the same commitment may be challenged again (with
            // another deadline).
            p.revealed.retain(|key| open.contains(key));
            let mut receipts = Vec::new();
            for (lease, task, deadline) in open {
                let Some(&answered) = p.answers.get(&(lease, task)) else {
                    continue;
                };
                if !p.revealed.insert((lease, task, deadline)) {
                    continue;
                }
                receipts.push(receipt(&p.key, lease, task, answered));
            }
            for chunk in receipts.chunks(REVEALS_PER_TX_MAX) {
                let reveal = TxKind::Reveal {
                    receipts: chunk.to_vec(),
                };
                self.pending_txs.push((p.key.clone(), reveal, None));
            }
        }
    }

    /// Queues `key`'s claims of `accepted`, as its outbox would.
    fn claim(&mut self, key: &Keypair, accepted: Vec<Signed<Acceptance>>) {
        for chunk in accepted.chunks(ACCEPTANCES_PER_CLAIM_MAX) {
            let claim = TxKind::Claim {
                acceptances: chunk.to_vec(),
            };
            self.pending_txs.push((key.clone(), claim, None));
        }
    }

    fn block(&mut self) {
        self.partition_at_settlement();
        let Some(leader) = self.validators.next_view() else {
            if !self.done() {
                self.at(self.now + VIEW_TIMEOUT_MS, Event::Block);
            }
            return;
        };
        let height = self.ledger.height() + 1;
        // The root of the last block, as every validator computes it.
        self.ledger.root();
        self.ledger.begin_block(height, self.now);
        let chain = self.ledger.chain();
        let mut settled_jobs = Vec::new();
        let mut closed = Vec::new();
        let mut escrowed = Vec::new();
        // The leader proposes from its own mempool only.
        let (proposed, waiting) = std::mem::take(&mut self.pending_txs)
            .into_iter()
            .partition(|(key, _, _)| self.validators.home(&key.public()) == leader);
        self.pending_txs = waiting;
        let proposed: Vec<Pending> = proposed;
        // Signed in order, each sender's nonces following on (one refused
        // in a block still takes its nonce), and checked as a validator
        // checks a block: all signatures in one batch.
        let mut nonces: BTreeMap<PublicKey, u64> = BTreeMap::new();
        let (senders, txs): (Vec<_>, Vec<_>) = proposed
            .into_iter()
            .map(|(key, kind, job)| {
                let nonce = nonces
                    .entry(key.public())
                    .or_insert_with(|| self.ledger.account(&key.public()).nonce);
                let tx = TxBody {
                    chain,
                    nonce: *nonce,
                    kind,
                }
                .sign(&key);
                *nonce += 1;
                ((key, job), tx)
            })
            .unzip();
        for ((key, job), verified) in senders.into_iter().zip(admit_batch(txs)) {
            let verified = verified.expect("the simulation signs with its actors' own keys");
            let kind = &verified.tx().payload_unchecked().kind;
            // A requester settles with claims of its own acceptances, the
            // only claims that name a job.
            let claim = matches!(kind, TxKind::Claim { .. });
            let settle = claim && job.is_some();
            let close = matches!(kind, TxKind::CloseEscrow { .. });
            let open = matches!(kind, TxKind::OpenEscrow { .. });
            let revealed = match kind {
                TxKind::Reveal { receipts } => receipts.len() as u64,
                _ => 0,
            };
            let no_reveal = matches!(kind, TxKind::Slash { evidence }
                if matches!(evidence.as_ref(), Evidence::NoReveal { .. }));
            if no_reveal {
                self.frames_in_flight -= 1;
            }
            let outcome = self.ledger.apply_in_block(&verified);
            if outcome.is_ok() {
                self.reveals += revealed;
            }
            if no_reveal {
                match outcome {
                    Ok(_) => self.frames_upheld += 1,
                    Err(_) => self.frames_refused += 1,
                }
            }
            if let (true, Ok(outcomes)) = (claim || settle, &outcome) {
                let paid = outcomes
                    .iter()
                    .filter(|o| matches!(o, SettleOutcome::Paid { .. }))
                    .count() as u64;
                if settle {
                    self.settles_paid += paid;
                } else if self
                    .requesters
                    .iter()
                    .any(|r| r.key.public() == key.public())
                {
                    self.shortchanged += paid;
                } else {
                    self.claims_paid += paid;
                }
            }
            // Followed up only by the life of the requester that sent it:
            // a restarted one settles and closes again from its disk.
            let job = job.filter(|&(job, life)| {
                let r = &self.requesters[self.jobs[&job].0];
                r.up && r.life == life
            });
            if let (Some((job, _)), true) = (job, settle) {
                let closing = &mut self.jobs.get_mut(&job).expect("submitted").1;
                if let Ok(outcomes) = &outcome {
                    closing.paid += outcomes
                        .iter()
                        .filter(|o| matches!(o, SettleOutcome::Paid { .. }))
                        .count() as u64;
                }
                closing.settles -= 1;
                if closing.settles == 0 {
                    settled_jobs.push(job);
                }
            }
            if close && let Some((job, _)) = job {
                closed.push(job);
            }
            if open && let Some((job, _)) = job {
                outcome
                    .as_ref()
                    .expect("the simulation's escrows are funded");
                escrowed.push(job);
            }
        }
        // Requesters read how many providers may bid from the ledger, as
        // a node does at each block: their orders draw a share of them.
        self.bidders = self.ledger.bidders();
        for r in &mut self.requesters {
            r.core.set_bidders_known(self.bidders);
        }
        for job in escrowed {
            self.escrowed(job);
        }
        for job in settled_jobs {
            self.settled(job);
        }
        for job in closed {
            let requester = self.jobs[&job].0;
            let r = &mut self.requesters[requester];
            let closing = &mut self.jobs.get_mut(&job).expect("submitted").1;
            match self.ledger.escrow(&job) {
                None => {
                    // Gone: closed by this transaction or an earlier one
                    // (an earlier life's). The job is over for good.
                    if !closing.closed {
                        closing.closed = true;
                        self.last_close = self.now;
                    }
                    if let Some(record) = r.disk.jobs.get_mut(&job) {
                        record.settled = true;
                    }
                }
                Some(escrow) if escrow.closing => {
                    closing.notice_until = Some(escrow.leases_until);
                }
                _ => {
                    // Refused for now: asked again next block.
                    self.pending_txs.push((
                        r.key.clone(),
                        TxKind::CloseEscrow { job },
                        Some((job, r.life)),
                    ));
                }
            }
        }
        // The framers' claims whose window is over.
        let (due, later) = std::mem::take(&mut self.framing)
            .into_iter()
            .partition(|&(_, _, _, at)| at <= height);
        self.framing = later;
        for (framer, lease, task, _) in due {
            let evidence = Box::new(Evidence::NoReveal { lease, task });
            let key = self.requesters[framer].key.clone();
            self.pending_txs
                .push((key, TxKind::Slash { evidence }, None));
            self.frames_in_flight += 1;
        }
        self.answer_challenges();
        // Second closes whose notice has passed.
        let due: Vec<ContentId> = self
            .jobs
            .iter_mut()
            .filter_map(|(job, (_, c))| match c.notice_until {
                Some(until) if height > until && !c.closed => {
                    c.notice_until = None;
                    Some(*job)
                }
                _ => None,
            })
            .collect();
        for job in due {
            let r = &self.requesters[self.jobs[&job].0];
            self.pending_txs.push((
                r.key.clone(),
                TxKind::CloseEscrow { job },
                Some((job, r.life)),
            ));
        }
        if !self.done() {
            self.at(self.now + BLOCK_MS, Event::Block);
        }
    }

    /// Cuts the configured validators off once a settlement waits for a
    /// block, and heals them after the configured time.
    fn partition_at_settlement(&mut self) {
        let Some((cut, for_ms)) = &self.config.partition_at_settlement else {
            return;
        };
        // A requester's settlement is the one claim that names its job.
        let settling = self
            .pending_txs
            .iter()
            .any(|(_, kind, job)| job.is_some() && matches!(kind, TxKind::Claim { .. }));
        if self.partitioned || !settling {
            return;
        }
        self.partitioned = true;
        self.validators.partition(cut);
        let heal = self.now + for_ms;
        self.at(heal, Event::Heal);
    }

    fn outcome(&self) -> Outcome {
        let liars: Vec<&Provider> = self
            .providers
            .iter()
            .filter(|p| p.behaviour == Behaviour::Liar)
            .collect();
        // Convicted by any requester (banned), or slashed on the ledger.
        let convicted = |p: &Provider| {
            self.requesters
                .iter()
                .any(|r| r.core.banned(&p.key.public()))
        };
        let slashed = |p: &Provider| {
            self.ledger
                .provider(&p.key.public())
                .is_some_and(|s| s.reputation.slashes > 0)
        };
        let truthful: Vec<&Provider> = self
            .providers
            .iter()
            .filter(|p| p.behaviour.truthful())
            .collect();
        let liars_convicted = liars.iter().filter(|p| convicted(p)).count() as u32;
        let paid_to_liars = liars
            .iter()
            .map(|p| {
                let a = self.ledger.account(&p.key.public());
                let staked = self.ledger.provider(&p.key.public()).map_or(0, |s| s.stake);
                (a.balance + staked).saturating_sub(BALANCE)
            })
            .sum();
        let total_work: u64 = self.durations.values().flatten().sum();
        let slots = u64::from(self.config.providers) * u64::from(self.config.slots);
        let executions = self
            .requesters
            .iter()
            .map(|r| {
                r.executions_before
                    + r.core
                        .jobs
                        .values()
                        .map(|j| j.replicas.executions)
                        .sum::<u64>()
            })
            .sum();
        let escrow_left = self
            .jobs
            .keys()
            .filter_map(|job| self.ledger.escrow(job))
            .map(|e| e.balance)
            .sum();
        // What each requester accepted (and would pay) from an honest
        // provider, in memory or on its disk, against what the ledger
        // paid.
        let honest = |key: &PublicKey| {
            self.index
                .get(key)
                .is_some_and(|&p| self.providers[p].behaviour.truthful())
        };
        let in_memory = self
            .requesters
            .iter()
            .flat_map(|r| r.core.jobs.values())
            .flat_map(|j| j.payable.values())
            .map(paid_for);
        let on_disk = self
            .requesters
            .iter()
            .flat_map(|r| r.disk.results.values())
            .map(|result| {
                let bytes =
                    cairn_wire::parse_hex(&result.receipt, "receipt").expect("a stored receipt");
                let receipt = Signed::<Receipt>::from_bytes(&bytes, &()).expect("a stored receipt");
                paid_for(&receipt)
            });
        let unpaid_accepted = in_memory
            .chain(on_disk)
            .filter(|(signer, _)| honest(signer))
            .map(|(_, result)| result)
            .collect::<BTreeSet<_>>()
            .iter()
            .filter(|(lease, task, fuel)| {
                self.ledger
                    .paid_fuel(lease, *task)
                    .is_none_or(|paid| paid < *fuel)
            })
            .count() as u64;
        let honest_slashed = truthful.iter().filter(|p| slashed(p)).count() as u32;
        let honest_convicted = truthful.iter().filter(|p| convicted(p)).count() as u32;
        Outcome {
            events: self.processed,
            transcript: self.transcript.digest(),
            jobs_done: self.jobs.values().filter(|(_, c)| c.closed).count() as u32,
            tasks: u64::from(self.config.jobs) * u64::from(self.config.tasks_per_job),
            executions,
            wrong_accepted: self.kept.values().filter(|honest| !**honest).count() as u64,
            disputes: self.disputes,
            liars_convicted,
            liars: liars.len() as u32,
            crashes: self.crashes,
            requester_crashes: self.requester_crashes,
            validator_crashes: self.validators.crashes,
            views_timed_out: self.validators.views_timed_out,
            reports_refused: self.reports_refused,
            bids: self.bids,
            challenges: self.challenges,
            frames_refused: self.frames_refused,
            frames_upheld: self.frames_upheld,
            reveals: self.reveals,
            makespan_ms: self
                .last_finish
                .saturating_sub(self.first_submit.unwrap_or(0)),
            closed_ms: self
                .last_close
                .saturating_sub(self.first_submit.unwrap_or(0)),
            ideal_ms: total_work / slots.max(1),
            receipts_paid: self.settles_paid + self.claims_paid,
            claims_paid: self.claims_paid,
            shortchanged: self.shortchanged,
            unpaid_accepted,
            honest_slashed,
            honest_convicted,
            paid_to_liars,
            tokens_conserved: self.ledger.total_accounted() == u128::from(self.supply)
                && self.ledger.supply() == self.supply,
            escrow_left,
        }
    }
}

/// Who a receipt pays, and for which result and fuel.
fn paid_for(receipt: &Signed<Receipt>) -> (PublicKey, (ContentId, u64, u64)) {
    let r = receipt.payload_unchecked();
    (receipt.signer(), (r.lease, r.task, r.fuel_used))
}

/// The core of requester `index` in its `life`-th life (each life draws
/// other random numbers).
fn requester_core(key: &Keypair, seed: u64, index: usize, life: u32) -> RequesterCore {
    RequesterCore::new(
        key.clone(),
        SchedParams::default(),
        cairn_verify::Params::default(),
        200,
        seed ^ index as u64 ^ (u64::from(life) << 32),
    )
}

/// A provider's bidding with `slots` slots, priced as the node's default.
fn bidder(me: PublicKey, slots: u32) -> Bidder {
    let offer = Offer {
        runtimes: vec!["wasm".into()],
        cores: slots,
        memory_mib: 4_096,
        gpus: 0,
        score_mfuel_per_s: 1_000,
        tools: Vec::new(),
        gpu_model: String::new(),
        gpu_memory_mib: 0,
        gpu_driver: String::new(),
    };
    Bidder::new(me, offer, Box::new(ScalePricing::default()), u64::MAX)
}

/// `key`'s signed receipt for `digest` as the result of `task` under
/// `lease`, the salt derived as the node derives it.
fn receipt(key: &Keypair, lease: ContentId, task: u64, answered: Answered) -> Signed<Receipt> {
    let Answered {
        digest,
        fuel_used,
        run,
    } = answered;
    let receipt = Receipt {
        lease,
        task,
        digest,
        fuel_used,
        salt: cairn_verify::salt(key, &lease, task),
        run,
    };
    Signed::sign(key, RECEIPT_NAMESPACE, receipt)
}

/// Provider `key`'s report of `task` of `job` under `lease` after `took_ms`
/// (a wrong result if it lies), sealed as its executor seals it.
fn seal_result(
    key: &Keypair,
    liar: bool,
    (job, lease): (&ContentId, ContentId),
    (terms, task): (&Terms, &Assignment),
    took_ms: u64,
) -> Finished {
    let me = key.public();
    let m = manifest(job, task.task, took_ms, liar.then_some(&me));
    let run = run_digest(terms, task);
    Finished::seal(key, sealed(key, lease, task.task, run, &m))
}

/// A provider's sealed result of `task` under `lease`, of the run `run`.
fn sealed(key: &Keypair, lease: ContentId, task: u32, run: [u8; 32], m: &ResultManifest) -> Report {
    let answered = Answered {
        digest: m.digest(),
        fuel_used: m.fuel_used,
        run,
    };
    Report::Revealed {
        receipt: receipt(key, lease, u64::from(task), answered),
        code: m.code,
        exit: m.exit,
        outcome: m.text.clone(),
        outputs: m
            .outputs
            .iter()
            .map(|f| FileRef {
                name: f.path.clone(),
                id: f.id,
                size: f.size_bytes,
            })
            .collect(),
        stdout: StreamRef::of(b""),
        stderr: StreamRef::of(b""),
    }
}

/// Keeps `job`'s terms, as `core` hands them to its providers, unless
/// kept already.
fn note_terms(terms: &mut HashMap<ContentId, Arc<Terms>>, core: &RequesterCore, job: &ContentId) {
    if let Some(held) = core.jobs.get(job) {
        terms
            .entry(*job)
            .or_insert_with(|| Arc::new(held.terms.clone()));
    }
}

/// What opens one of a provider's commitments: its receipt's result and
/// run (the salt is derived again).
#[derive(Clone, Copy)]
struct Answered {
    digest: ContentId,
    fuel_used: u64,
    run: [u8; 32],
}

impl Disk {
    /// Makes one of its lease core's writes; an answer to keep beyond the
    /// lease (what opens a commitment: task, digest and fuel) is returned.
    fn write(&mut self, write: lease_work::Write) -> Option<(u64, Answered)> {
        match write {
            lease_work::Write::Report(report) => {
                self.reports.insert(report.task(), *report);
            }
            lease_work::Write::Forget(task) => {
                self.reports.remove(&task);
            }
            lease_work::Write::Answer { receipt, .. } => {
                let r = receipt.payload_unchecked();
                let answered = Answered {
                    digest: r.digest,
                    fuel_used: r.fuel_used,
                    run: r.run,
                };
                return Some((r.task, answered));
            }
            lease_work::Write::Awaiting(awaiting) => {
                self.awaiting.insert(awaiting.task, awaiting);
            }
            lease_work::Write::Accepted(acceptance) => {
                for r in &acceptance.payload_unchecked().results {
                    self.awaiting.remove(&r.task);
                }
                self.accepted.push(*acceptance);
            }
        }
        None
    }
}
