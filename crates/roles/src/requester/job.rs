//! One job as the requester keeps it: its phase (auction, leasing, running,
//! settling), its task queue, what verification holds of its replicas, and
//! the records the API shows and the store keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cairn_api::{JobState, JobStatus, TaskRecord};
use cairn_ledger::{Commit, Lease, Receipt};
use cairn_market::{Auction, Order};
use cairn_proto::{Assignment, Submission, Terms};
use cairn_sched::{Blocked, Scheduler};
use cairn_wire::{ContentId, PublicKey, Signed};
use serde::{Deserialize, Serialize};

use super::{BidRefused, IDLE_REAUCTION_MS, REAUCTION_MS, STALLED_REAUCTION_MS_MAX};

/// A late bid held for the job's next round, with the bidder's stake and
/// record as the ledger knew them.
pub(super) type HeldBid = (Signed<cairn_market::Bid>, Option<u128>, (u64, u64));

/// Late bids a job holds for its next round, at most: one per provider,
/// so this many providers may join it at once.
const HELD_BIDS_MAX: usize = 256;

/// What is persisted of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job as submitted: shared, not copied, by each copy of the
    /// record (one is written at every change of it).
    #[serde(with = "shared")]
    pub submission: Arc<Submission>,
    /// When it was submitted (ms since the epoch).
    pub submitted_ms: u64,
    /// Whether its settlement is over.
    pub settled: bool,
    /// When its requester cancelled it (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_ms: Option<u64>,
    /// Tasks whose results its requester approved (a job that asks for
    /// approval).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub approved: BTreeSet<u32>,
    /// Results its requester rejected.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected: u32,
    /// When its approval window ends (ms since the epoch): set when every
    /// task first has a result, and kept across restarts. Results may be
    /// rejected only before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_until_ms: Option<u64>,
    /// Providers convicted of cheating on it (kept, so its status still
    /// names them after a restart).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub convicted: BTreeSet<PublicKey>,
    /// Providers outvoted in it, which get none of its work again, even
    /// after a restart (see `cairn_verify::Action::Expelled`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub expelled: BTreeSet<PublicKey>,
    /// When its requester ended it, for a live stream (ms since the
    /// epoch): no task is added after, and it finishes once its tasks are
    /// done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
}

impl JobRecord {
    /// A job just submitted at `submitted_ms`.
    pub fn new(submission: Submission, submitted_ms: u64) -> Self {
        Self {
            submission: Arc::new(submission),
            submitted_ms,
            settled: false,
            cancelled_ms: None,
            approved: BTreeSet::new(),
            rejected: 0,
            approval_until_ms: None,
            convicted: BTreeSet::new(),
            expelled: BTreeSet::new(),
            ended_ms: None,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A shared submission, written and read as the submission itself.
mod shared {
    use std::sync::Arc;

    use cairn_proto::Submission;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        submission: &Arc<Submission>,
        to: S,
    ) -> Result<S::Ok, S::Error> {
        submission.as_ref().serialize(to)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        from: D,
    ) -> Result<Arc<Submission>, D::Error> {
        Submission::deserialize(from).map(Arc::new)
    }
}

/// Where a job is in its life.
#[derive(Debug)]
pub(super) enum Phase {
    Bidding(Box<Auction>),
    Leasing,
    Queued {
        retry_ms: u64,
    },
    Running,
    /// Every task has a result; the requester judges them until the
    /// window ends (see [`crate::requester::RequesterCore::judge`]).
    Approving {
        until_ms: u64,
    },
    Settling,
    Done,
}

/// One of the requester's jobs.
pub struct Job {
    /// Its id.
    pub id: ContentId,
    /// What is persisted of it.
    pub record: JobRecord,
    /// The terms every provider is handed.
    pub terms: Terms,
    /// The terms' encoding, which each of its runs' digests starts with
    /// (a receipt's is checked at every reveal).
    pub(super) terms_encoded: Vec<u8>,
    /// Its task queue.
    pub sched: Scheduler,
    pub(super) phase: Phase,
    /// The order its last auction published, and its id: providers busy
    /// then bid on it again once free (see [`crate::bidder`]).
    pub(super) order: Option<(ContentId, Order)>,
    /// When a late bid last reopened its auction.
    pub(super) reopened_ms: Option<u64>,
    /// Late bids that came while the last reopening was recent, or while
    /// its winners' offers were out: the next round takes them.
    pub(super) held: Vec<HeldBid>,
    /// The build of the tool its first winners run: later auctions take
    /// only providers that run it too, so that replicas compare bit for
    /// bit. `None` for Wasm, and until a tool job's first lease.
    pub(super) build: Option<ContentId>,
    /// Why it is queued or failed.
    pub reason: Option<String>,
    pub(super) auctions: u32,
    /// Auctions that leased no one, less those that did since: each
    /// doubles the share of the network the next order's draw asks (not
    /// kept across a restart, which starts from the smallest draw).
    pub(super) dry_auctions: u32,
    /// Its leases by id: the terms go into each acceptance.
    pub(super) leases: BTreeMap<ContentId, Lease>,
    /// Leases offered whose provider's signature has not arrived: no work
    /// is handed out on them, since a lease the ledger never records pays
    /// for nothing.
    pub(super) unsigned: BTreeSet<ContentId>,
    pub(super) first_task_ms: Option<u64>,
    /// When a stream last had tasks added (or was taken in): one fed
    /// nothing for [`STREAM_IDLE_MS`](super::STREAM_IDLE_MS) is ended.
    pub(super) extended_ms: u64,
    pub(super) finished_ms: Option<u64>,
    pub(super) last_pull_ms: u64,
    /// Until when the latest leases' providers said they would be
    /// preparing (fetching and compiling the module): no pull before then
    /// is expected, so none is a reason to look for others.
    pub(super) ready_by_ms: u64,
    /// Auctions in a row that found its pending work stalled (see
    /// [`Job::stalled`]) or brought nobody while none of its providers
    /// took that work; each doubles the wait before the next. Work handed
    /// out again resets it.
    pub(super) stalls: u32,
    /// Whether `reason` says why pending work waits for providers: said
    /// until work is handed out again.
    pub(super) reason_waits: bool,
    /// Whether it was stalled at its driver's last look, and on what:
    /// worked out there, not for every status a client asks for, since
    /// the walk may cover every pending task.
    pub(super) stalled: Option<Blocked>,
    /// Results accepted and handed to the shell to store, not yet stored:
    /// they are not counted done, and the job does not settle, until they
    /// are.
    pub(super) unstored: u32,
    /// The cancelled record handed to the shell to store, not yet stored:
    /// the job does not settle until it is, so the settled record, written
    /// later, is the one kept.
    pub(super) cancel_unstored: bool,
    /// Receipts of accepted results, by (lease, task): what the job pays
    /// for, by its settlement or by its providers' claims on the
    /// acceptances signed from it (kept after the settlement, so a
    /// provider that asks again still gets its acceptance).
    pub payable: BTreeMap<(ContentId, u64), Signed<Receipt>>,
    /// Receipts of an expelled provider's lone results, reopened for a
    /// check: paid (moved back to `payable`) if the check agrees with it,
    /// dropped if it does not.
    pub(super) held_receipts: BTreeMap<(ContentId, u64), Signed<Receipt>>,
    /// Receipts refused because their report stated another result, kept
    /// until their task is decided (see [`MISSTATED_MAX`]).
    pub(super) misstated: Vec<(Signed<Receipt>, cairn_wire::ResultManifest)>,
    /// Results in the settlement claims the ledger applied.
    pub settled: u64,
    /// Results rejected since the job last waited for approval: their new
    /// results get a window of their own when they are in.
    pub(super) rerun: bool,
    /// Verification's view of the job's replicas.
    pub replicas: Replicas,
}

/// What the requester keeps of each replica while verification decides.
#[derive(Default)]
pub struct Replicas {
    /// Reveals asked of each provider and not yet received.
    pub asks: BTreeMap<PublicKey, BTreeSet<u32>>,
    /// Each provider's signed commitment, per task: evidence if it never
    /// reveals or reveals something else.
    pub commits: BTreeMap<(u32, PublicKey), Signed<Commit>>,
    /// Revealed results waiting for a decision.
    pub revealed: BTreeMap<(u32, PublicKey), Revealed>,
    /// Tasks whose results failed verification.
    pub failed: u32,
    /// Executions handed out, replicas included.
    pub executions: u64,
    /// Disputes started.
    pub disputes: u32,
}

/// Misstated receipts a job keeps for evidence, at most.
pub(super) const MISSTATED_MAX: usize = 1_024;

/// A revealed result.
#[derive(Clone)]
pub struct Revealed {
    /// The result as it is kept once accepted.
    pub record: TaskRecord,
    /// Its signed receipt: what pays for it, and the opening of its
    /// commitment.
    pub receipt: Signed<Receipt>,
}

impl Job {
    /// When the job's phase next has something to do by the clock: an
    /// auction's window closes, a queued job auctions again, or pending work
    /// nobody pulls has waited long enough to look for other providers.
    pub(super) fn phase_deadline_ms(&self) -> Option<u64> {
        match &self.phase {
            Phase::Bidding(auction) => Some(auction.deadline_ms()),
            Phase::Queued { retry_ms } => Some(*retry_ms),
            Phase::Running => {
                let p = self.sched.progress();
                let idle = (p.pending > 0 && p.running == 0)
                    .then(|| self.last_pull_ms.max(self.ready_by_ms) + self.idle_wait_ms() + 1);
                let held = (!self.held.is_empty()).then(|| self.reopen_due_ms());
                idle.into_iter().chain(held).min()
            }
            Phase::Approving { until_ms } => Some(*until_ms),
            Phase::Leasing | Phase::Settling | Phase::Done => None,
        }
    }

    /// How long pending work may wait with nobody pulling before the
    /// market is asked again.
    pub(super) fn idle_wait_ms(&self) -> u64 {
        (IDLE_REAUCTION_MS << self.stalls.min(8)).min(STALLED_REAUCTION_MS_MAX)
    }

    /// The pending tasks, when nothing runs and none of them may go to any
    /// provider in the job, because each has run them already (a replica
    /// must come from a provider of its own): the job cannot go on until
    /// another provider joins. Walks the pending tasks when nothing runs.
    pub(super) fn stalled(&self) -> Option<Blocked> {
        const SHOWN: usize = 8;
        if !matches!(self.phase, Phase::Running) || self.sched.progress().running > 0 {
            return None;
        }
        self.sched.blocked(SHOWN)
    }

    /// What a stalled job waits for, in words: which tasks, and why no
    /// provider in the job may run them. No countdown: a client streaming
    /// the status gets an event only when something changes.
    fn stalled_reason(&self, blocked: &Blocked) -> String {
        let mut list: Vec<String> = blocked.first.iter().map(u32::to_string).collect();
        if blocked.count as usize > blocked.first.len() {
            list.push(format!(
                "and {} more",
                blocked.count as usize - blocked.first.len()
            ));
        }
        let (count, them) = match blocked.count {
            1 => ("1 task".to_string(), "it"),
            n => (format!("{n} tasks"), "them"),
        };
        let providers = match self.sched.progress().providers {
            1 => "the one provider in the job has".to_string(),
            n => format!("all {n} providers in the job have"),
        };
        format!(
            "{count} ({}) still need a result from a provider that has not run {them} \
             (verification compares results from different providers), and {providers}; \
             waiting for another provider to bid (the market is asked again less often \
             each time, at least once a minute)",
            list.join(", "),
        )
    }

    /// How long its requester has to judge its results, if it asked to.
    pub(super) fn approval_window_ms(&self) -> Option<u64> {
        self.record
            .submission
            .approval_window_s
            .map(|s| s.saturating_mul(1_000))
    }

    /// Providers each task needs at once: a replica runs on a provider of
    /// its own, so a replicated job leased to fewer would wait for an idle
    /// re-auction to find the rest.
    pub(super) fn replicas_wanted(&self) -> u64 {
        use cairn_job::VerifyPolicy::{Replicate, Spot};
        match self.record.submission.verify.policy() {
            Ok(Replicate { replicas }) => u64::from(replicas.max(1)),
            // A tool's check is decided by a vote, which takes a second
            // provider running the job's build: leased with the first, not
            // found by an auction once a check is drawn.
            Ok(Spot { .. }) if self.record.submission.runtime != "wasm" => 2,
            _ => 1,
        }
    }

    /// A bid on the job's last order after its auction closed. It comes
    /// from a provider that was busy then and is free now: a job with work
    /// nobody has taken (or none placed yet) reopens the auction for it,
    /// with a window of its own, so the others freed at the same moment join
    /// the same round. Only a valid bid reopens (anyone may send one), at
    /// most once per [`REAUCTION_MS`], and not one from a provider leased to
    /// the job already: that one pulls what it can. A valid bid that comes
    /// sooner, or while the last round's offers are out, is held for the
    /// next round: a provider bids on a job once when it comes free, and
    /// a job that turned such bids away kept the few providers it had
    /// while others stood idle (the simulation's makespan, 2.2× the ideal
    /// in some seeds).
    pub(super) fn late_bid(
        &mut self,
        bid: &Signed<cairn_market::Bid>,
        stake: Option<u128>,
        record: (u64, u64),
        now: u64,
    ) -> Result<(), BidRefused> {
        let wanted = self.slots_wanted();
        // A provider in the job pulls rather than bids; one dropped from it
        // for lateness may bid to be taken back.
        let leased = self.leases.values().any(|l| l.provider == bid.signer())
            && !self.sched.may_rejoin(&bid.signer());
        // A queued job auctions its order anew when its retry comes, so a
        // bid is held only for a round of this order.
        let due = now >= self.reopen_due_ms();
        let (open, holding) = match self.phase {
            Phase::Queued { .. } => (due, false),
            Phase::Running => (due, !due),
            Phase::Leasing => (false, true),
            _ => (false, false),
        };
        let Some((_, order)) = self
            .order
            .as_ref()
            .filter(|_| wanted > 0 && !leased && (open || holding))
        else {
            return Err(BidRefused::NoAuction);
        };
        let mut round = Auction::reopen(order.clone(), wanted, now)
            .pin_build(self.build, self.replicas_wanted());
        round
            .bid(bid, stake, record, now)
            .map_err(BidRefused::Rejected)?;
        if holding {
            // Told it was taken only if it was: a provider bids once.
            if self.held.iter().any(|(b, ..)| b.signer() == bid.signer()) {
                return Ok(());
            }
            if self.held.len() >= HELD_BIDS_MAX {
                return Err(BidRefused::NoAuction);
            }
            self.held.push((bid.clone(), stake, record));
            return Ok(());
        }
        self.reopen(round, now);
        Ok(())
    }

    /// Provider slots the job could use now: its work nobody has taken
    /// (all of it, while queued), once per replica.
    fn slots_wanted(&self) -> u64 {
        let p = self.sched.progress();
        let tasks = match self.phase {
            Phase::Queued { .. } => p.pending + p.running,
            Phase::Running | Phase::Leasing => p.pending,
            _ => 0,
        };
        u64::from(tasks) * self.replicas_wanted()
    }

    /// When the next round may open: [`REAUCTION_MS`] after the last.
    fn reopen_due_ms(&self) -> u64 {
        self.reopened_ms
            .map_or(0, |at| at.saturating_add(REAUCTION_MS))
    }

    /// Opens `round`, with the bids held for it.
    fn reopen(&mut self, mut round: Auction, now: u64) {
        for (bid, stake, record) in std::mem::take(&mut self.held) {
            // Checked when it came; a second bid of one provider is refused.
            let _ = round.bid(&bid, stake, record, now);
        }
        self.auctions += 1;
        self.reason = None;
        self.reopened_ms = Some(now);
        self.phase = Phase::Bidding(Box::new(round));
    }

    /// Opens the round the held bids wait for, once it is due; drops them
    /// if the job no longer wants anyone.
    pub(super) fn reopen_for_held(&mut self, now: u64) {
        if self.held.is_empty() || now < self.reopen_due_ms() {
            return;
        }
        let wanted = self.slots_wanted();
        let Some((_, order)) = self.order.as_ref().filter(|_| wanted > 0) else {
            self.held.clear();
            return;
        };
        let round = Auction::reopen(order.clone(), wanted, now)
            .pin_build(self.build, self.replicas_wanted());
        self.reopen(round, now);
    }

    /// Task `task`'s fuel: its own where the submission gives one (checked
    /// to be within the job's), else the job's.
    pub fn task_fuel(&self, task: u32) -> u64 {
        self.record
            .submission
            .tasks
            .get(task as usize)
            .and_then(|spec| spec.fuel)
            .unwrap_or(self.terms.limits.fuel)
    }

    /// Whether it is a live stream still open: more tasks may come, so it
    /// does not finish when those it has are done.
    pub fn streaming(&self) -> bool {
        let r = &self.record;
        r.submission.stream.is_some() && r.ended_ms.is_none() && r.cancelled_ms.is_none()
    }

    /// Whether `provider` committed to a result of it not decided yet: it
    /// may be asked to reveal it at any moment.
    pub fn awaits_reveal(&self, provider: &PublicKey) -> bool {
        self.replicas.commits.keys().any(|(_, p)| p == provider)
    }

    /// Whether an empty pull by `provider` on `lease` may wait for this
    /// stream's next tasks: the stream is open, the lease signed, the
    /// provider in the job, and it owes no reveal (its next pull carries
    /// that ask at once).
    pub fn may_hold(&self, lease: &ContentId, provider: &PublicKey) -> bool {
        self.streaming()
            && !self.unsigned.contains(lease)
            && self.sched.is_active(provider)
            && !self.awaits_reveal(provider)
    }

    /// What a provider leased to it may fetch, and what this node keeps
    /// while it lives: its module, its inputs and its tasks' own (a blob
    /// may be named more than once).
    pub fn blobs(&self) -> impl Iterator<Item = ContentId> + '_ {
        let tasks = &self.record.submission.tasks;
        std::iter::once(self.terms.module.id)
            .chain(self.terms.inputs.iter().map(|f| f.id))
            .chain(tasks.iter().flat_map(|t| t.inputs.iter().map(|f| f.id)))
    }

    /// Task `task` as a provider is handed it (its index must be in range).
    pub fn assignment(&self, task: u32) -> Assignment {
        let spec = &self.record.submission.tasks[task as usize];
        let seed = cairn_wire::parse_hex32(&spec.seed, "task seed").expect("checked at submission");
        Assignment {
            task,
            args: spec.args.clone(),
            outputs: spec.outputs.clone(),
            seed,
            fuel: self.task_fuel(task),
            inputs: spec.inputs.iter().map(super::file_ref).collect(),
        }
    }

    /// What running `task` means: the digest of the terms and its
    /// assignment, which a provider signs into its receipt.
    pub fn run(&self, task: u32) -> [u8; 32] {
        cairn_proto::run_digest_of(&self.terms_encoded, &self.assignment(task))
    }

    /// Why a provider's result cannot be this job's, if it cannot: it
    /// claims more fuel, output bytes or stream bytes than the task was
    /// allowed, names a file twice, or claims success without a file the
    /// task had to write. Checked before any of its files is fetched.
    pub fn broken_result(&self, record: &TaskRecord) -> Result<(), String> {
        let limits = &self.terms.limits;
        let fuel = self.task_fuel(record.task);
        if record.fuel_used > fuel {
            return Err(format!(
                "claims {} fuel where the task had {fuel}",
                record.fuel_used
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
    pub(super) fn status(&self, accepted: u32, now: u64) -> JobStatus {
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
        // As the driver last saw it, unless work has moved since.
        let stalled = self
            .stalled
            .as_ref()
            .filter(|_| matches!(self.phase, Phase::Running) && p.running == 0);
        let reason = match stalled {
            Some(blocked) => Some(self.stalled_reason(blocked)),
            None => reason,
        };
        let state = match self.phase {
            // Cancelled, it settles at its driver's next look.
            Phase::Done if self.record.cancelled_ms.is_some() => JobState::Cancelled,
            _ if self.record.cancelled_ms.is_some() => JobState::Settling,
            Phase::Bidding(_) | Phase::Leasing => JobState::Bidding,
            Phase::Queued { .. } => JobState::Queued,
            Phase::Running if stalled.is_some() => JobState::Stalled,
            Phase::Running => JobState::Running,
            Phase::Approving { .. } => JobState::Approval,
            Phase::Settling => JobState::Settling,
            Phase::Done if p.failed > 0 || self.replicas.failed > 0 => JobState::Failed,
            Phase::Done => JobState::Done,
        };
        JobStatus {
            id: self.id,
            name: self.record.submission.name.clone(),
            state,
            reason,
            total: p.total,
            // A settled job's verification state is gone; its queue knows.
            done: match self.phase {
                Phase::Done => p.done.saturating_sub(self.replicas.failed),
                _ => accepted.saturating_sub(self.unstored),
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
            convicted: self.record.convicted.iter().copied().collect(),
            approved: self.approval_window_ms().map(|_| match self.phase {
                // Settled: everything paid was approved, by the requester
                // or by the window's end.
                Phase::Done => p.done.saturating_sub(self.replicas.failed),
                _ => self.record.approved.len() as u32,
            }),
            rejected: self.approval_window_ms().map(|_| self.record.rejected),
            approval_until_ms: match self.phase {
                Phase::Approving { until_ms } => Some(until_ms),
                _ => None,
            },
        }
    }
}
