//! One lease's work as a synchronous state machine: when to pull, what a
//! pull carries, which handed-out tasks to run, what to persist and when the
//! lease is over. It reads no clock and does no I/O: the shell passes the
//! time in, carries out the returned [`Next`] step, and reports back what
//! happened, so every decision is testable without a network.

use std::collections::{BTreeMap, BTreeSet};

use cairn_ledger::{ACCEPTANCE_NAMESPACE, Acceptance, COMMIT_NAMESPACE, Commit, Lease, Receipt};
use cairn_proto::{self as proto, Assignment, Report, Response};
use cairn_verify::{Commitment, Reveal};
use cairn_wire::{ContentId, Keypair, PublicKey, Signed};

/// Longest wait between pulls when the requester has nothing to hand out.
const IDLE_PULL_MS_MAX: u64 = 500;
/// The first wait between pulls when the requester has nothing to hand out.
const IDLE_PULL_MS_MIN: u64 = 5;
/// How much work, in milliseconds, a provider keeps queued per slot.
const PREFETCH_WORK_MS: f64 = 50.0;
/// How long finished reports may wait to share a pull with others.
const REPORT_DELAY_MS: u64 = 10;
/// Longest time between pulls while every slot is busy: the requester may
/// be waiting for a reveal.
const HEARTBEAT_MS: u64 = 1_000;
/// How long after an unanswered pull to try again.
const RETRY_MS: u64 = 200;
/// How long to keep retrying a requester that does not answer.
const REQUESTER_SILENCE_MS_MAX: u64 = 120_000;
/// A tool task is paid the work its requester declares, so a requester
/// could declare tasks far below what they take (a full encode at one
/// fuel) and have them done for nothing. A provider knows its own rate:
/// the fuel a second its benchmark does on one core (the score its bids
/// carry: 12.6 Gfuel a second on this project's machine). A lease gets
/// no more work once a tool task, or its tool tasks together, declared
/// less than this share of that rate for the CPU time they took. The
/// share is loose on purpose: jobs declare their own unit (the Blender
/// example 10,000 a pixel sample, about 2 Gfuel a CPU-second here; a 720p
/// encode 1,000 a pixel, about 40), and tiles and small renditions pay
/// start-up and decoding they do not declare (a small frame's 16 x 16
/// tile perhaps 40 Mfuel a CPU-second, a thumbnail rendition of a 4K
/// source perhaps 10). It catches declarations four orders of magnitude
/// below the work, not a requester that declares a tenth of it.
const UNDERPAID_SHARE: f64 = 1.0 / 10_000.0;
/// Below this much CPU time a task's rate is start-up, not work: such a
/// task is weighed only in the lease's totals.
const CPU_MS_WEIGHED: f64 = 100.0;
/// The lease's totals are weighed once its tasks took this much CPU time.
const CPU_MS_WEIGHED_TOTAL: f64 = 1_000.0;

/// What a provider's other leases hold, beside the one asked
/// ([`LeaseWork::next`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Others {
    /// How many there are.
    pub leases: u32,
    /// The tasks they hold ([`LeaseWork::held`]).
    pub held: u32,
}

/// What the shell does next for a lease.
#[derive(Debug)]
pub enum Next {
    /// Make the pull's writes durable, then send it and hand the answer to
    /// [`LeaseWork::answered`].
    Pull(Pull),
    /// Nothing to do until this time (ms), or until a task finishes if
    /// sooner; `None` waits for a task only.
    Wait(Option<u64>),
    /// The lease is over: nothing more will be pulled or run.
    Done,
}

/// One pull, as the core would send it.
#[derive(Debug)]
pub struct Pull {
    /// Store these before the pull goes out: a report the requester
    /// acknowledges must not be lost by a crash after it.
    pub writes: Vec<Write>,
    /// Tasks wanted: the prefetch left free. The shell may lower it (to 0
    /// when the escrow cannot pay), and says so to [`LeaseWork::answered`].
    pub want: u32,
    /// Reports, oldest first.
    pub reports: Vec<Report>,
    /// Blobs the reports name: the requester may fetch them from now on.
    pub grants: Vec<ContentId>,
    /// Tasks handed out that this lease still has (see
    /// [`proto::Request::Pull`]).
    pub held: Vec<u32>,
    /// Results delivered whose acceptance the requester has not yet sent.
    pub awaiting: Vec<u32>,
}

/// A result the requester stored and has not yet accepted: what the
/// provider would be paid for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Awaiting {
    /// The task.
    pub task: u64,
    /// The result's digest.
    pub digest: ContentId,
    /// The fuel its receipt states.
    pub fuel_used: u64,
}

/// What a lease keeps on disk, so a restarted provider reports (and
/// answers challenges on) what it ran before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Keep a task's report (restored through [`LeaseWork::new`]).
    Report(Box<Report>),
    /// Keep the signed receipt that opens the commitment to a result
    /// until the lease, which lives until `expires_height`, can no longer
    /// be challenged on the ledger: it is the answer to a challenge.
    Answer {
        /// The receipt (its task and result).
        receipt: Signed<Receipt>,
        /// The lease's last height.
        expires_height: u64,
    },
    /// Forget `task`'s report: the requester has stored it.
    Forget(u64),
    /// A delivered result waits for the requester's acceptance (restored
    /// through [`LeaseWork::new`], so a restart asks for it again).
    Awaiting(Awaiting),
    /// The requester's acceptance of results that were awaiting it: what
    /// pays the provider, by the requester's settlement or by the
    /// provider's own claim on the ledger. Those results no longer await.
    Accepted(Box<Signed<Acceptance>>),
}

/// What a lease kept on disk before a restart.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// Reports not yet acknowledged.
    pub reports: Vec<Report>,
    /// Results delivered and not yet accepted.
    pub awaiting: Vec<Awaiting>,
}

/// Why no pull is due before some event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pause {
    /// Until this time, or a task finishing.
    Until(u64),
    /// Until a task finishes (the requester refused the last pull).
    Finished,
}

/// The state of one lease's pulls.
pub struct LeaseWork {
    slots: u32,
    /// The lease's id.
    lease: ContentId,
    /// Who signs acceptances: the lease's requester.
    requester: PublicKey,
    /// The lease's last height: answers are kept while it can be challenged.
    expires_height: u64,
    /// The most fuel a task of the lease may have.
    fuel_max: u64,
    /// The least: the terms' `limits.fuel_min` (a tool task is paid its
    /// figure, and the provider signed for no less).
    fuel_min: u64,
    /// Tasks the pull in flight asked for: held already, so that leases
    /// pulling at once do not each take the same free slots.
    asking: u32,
    /// Signs commitments to sealed results.
    key: Keypair,
    /// Why the lease's program or inputs could not be prepared: every task
    /// handed out goes back as failed.
    failure: Option<String>,
    /// The least fuel a tool task may declare per CPU-millisecond it takes
    /// here ([`UNDERPAID_SHARE`] of the provider's rate); none: not weighed.
    rate_floor: Option<f64>,
    /// Fuel declared and CPU-milliseconds taken by the lease's tool tasks.
    worked: (f64, f64),
    /// Why no more work is taken: a task declared far less work than it
    /// took ([`LeaseWork::worked`]).
    underpaid: Option<String>,
    /// A staller never reveals (tests of the ledger's challenges).
    withhold_reveals: bool,
    /// Reports not yet acknowledged, oldest first.
    unsent: Vec<Report>,
    /// Results committed to and not yet revealed and acknowledged.
    sealed: BTreeMap<u64, Report>,
    /// Results delivered and not yet accepted, by task.
    awaiting: BTreeMap<u64, Awaiting>,
    /// How many delivered results may await acceptance before no more
    /// work is taken: the most this lease risks on a requester that stops
    /// accepting.
    credit: usize,
    /// Writes to make before the next pull.
    writes: Vec<Write>,
    /// Measured duration of a task, ms (a moving average).
    task_ms: f64,
    /// Tasks handed to the executor and not finished.
    running: BTreeSet<u32>,
    /// Reports the pull in flight carries from the front of `unsent`.
    in_flight: Option<usize>,
    idle_ms: u64,
    last_answer: u64,
    last_pull: u64,
    pause: Option<Pause>,
    /// The job ended with results awaiting acceptance: pulls ask for it
    /// until one brings none.
    last_ask: bool,
    done: bool,
}

impl LeaseWork {
    /// `lease`'s work starting at `now`, from what was persisted before a
    /// restart (each sealed result is committed to again; the results that
    /// awaited acceptance await it again).
    pub fn new(
        lease: &Lease,
        slots: u32,
        key: Keypair,
        failure: Option<String>,
        stored: Stored,
        now: u64,
    ) -> Self {
        let mut work = Self {
            slots: slots.max(1),
            lease: lease.id(),
            requester: lease.requester,
            expires_height: lease.expires_height,
            fuel_max: lease.fuel_per_task_max,
            fuel_min: 1,
            asking: 0,
            key,
            failure,
            rate_floor: None,
            worked: (0.0, 0.0),
            underpaid: None,
            withhold_reveals: false,
            unsent: Vec::new(),
            sealed: BTreeMap::new(),
            awaiting: stored.awaiting.iter().map(|a| (a.task, *a)).collect(),
            credit: proto::AWAITING_MAX,
            writes: Vec::new(),
            task_ms: PREFETCH_WORK_MS,
            running: BTreeSet::new(),
            in_flight: None,
            idle_ms: IDLE_PULL_MS_MIN,
            last_answer: now,
            last_pull: 0,
            pause: None,
            last_ask: false,
            done: false,
        };
        for report in stored.reports {
            // A result kept from before the restart may have reached the
            // requester, which then ignores the commitment sent again: it
            // awaits acceptance too, or a crash between delivering it and
            // persisting the answer would leave it unasked for.
            if let Report::Revealed { receipt, .. } = &report {
                let r = receipt.payload_unchecked();
                work.awaiting.entry(r.task).or_insert(Awaiting {
                    task: r.task,
                    digest: r.digest,
                    fuel_used: r.fuel_used,
                });
            }
            let finished = Finished::seal(&work.key, report);
            work.queue(finished);
        }
        work
    }

    /// Refuses tasks of less fuel than `fuel_min` (the lease's terms').
    pub fn with_fuel_min(mut self, fuel_min: u64) -> Self {
        self.fuel_min = fuel_min.max(1);
        self
    }

    /// Weighs each tool task's declared work against its CPU time here, for
    /// a provider whose benchmark does `score_mfuel_per_s` on one core.
    pub fn with_rate_floor(mut self, score_mfuel_per_s: u32) -> Self {
        // Mfuel a second is thousands of fuel a millisecond.
        self.rate_floor = Some(f64::from(score_mfuel_per_s) * 1e3 * UNDERPAID_SHARE);
        self
    }

    /// Takes no more work while `credit` delivered results await
    /// acceptance (at most [`proto::AWAITING_MAX`]).
    pub fn with_credit(mut self, credit: usize) -> Self {
        self.credit = credit.clamp(1, proto::AWAITING_MAX);
        self
    }

    /// Results delivered and not yet accepted.
    pub fn awaiting(&self) -> usize {
        self.awaiting.len()
    }

    /// The writes not yet handed out with a pull: what a lease that is
    /// over still has to keep (its last acceptance).
    pub fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }

    /// Never reveal a sealed result (a staller, for tests: only with the
    /// `adversary` feature).
    #[cfg(feature = "adversary")]
    pub fn withholding_reveals(mut self) -> Self {
        self.withhold_reveals = true;
        self
    }

    /// The most tasks this lease may have handed out and not reported: what
    /// may be running or waiting for a slot.
    pub fn tasks_max(slots: u32) -> usize {
        (slots.max(1) * proto::PREFETCH_PER_SLOT_MAX) as usize
    }

    /// A task finished after `took_ms`: its report is persisted with the
    /// next pull, and only a commitment to a result is sent until the
    /// requester asks for the result.
    pub fn finished(&mut self, finished: Finished, took_ms: f64) {
        debug_assert!(
            match &finished.commit {
                Some(Report::Committed(commit)) => commit.signer() == self.key.public(),
                other => other.is_none(),
            },
            "sealed with the lease's key"
        );
        let report = &finished.report;
        if let Ok(task) = u32::try_from(report.task()) {
            self.running.remove(&task);
        }
        self.task_ms = 0.7 * self.task_ms + 0.3 * took_ms;
        self.writes.push(Write::Report(Box::new(report.clone())));
        if let Report::Revealed { receipt, .. } = report {
            self.writes.push(Write::Answer {
                receipt: receipt.clone(),
                expires_height: self.expires_height,
            });
        }
        self.queue(finished);
        self.pause = None;
    }

    /// A tool task declaring `fuel` (what it is paid for) took `cpu_ms` of
    /// CPU time here. If it, or the lease's tool tasks together, declared
    /// less than [`UNDERPAID_SHARE`] of what this provider does in the time,
    /// the lease takes no more work: returns why, the first time.
    pub fn worked(&mut self, fuel: u64, cpu_ms: f64) -> Option<String> {
        let floor = self.rate_floor?;
        if self.underpaid.is_some() {
            return None;
        }
        self.worked.0 += fuel as f64;
        self.worked.1 += cpu_ms.max(0.0);
        let (what, fuel, cpu_ms) = if cpu_ms >= CPU_MS_WEIGHED && (fuel as f64) < floor * cpu_ms {
            ("a task", fuel as f64, cpu_ms)
        } else if self.worked.1 >= CPU_MS_WEIGHED_TOTAL && self.worked.0 < floor * self.worked.1 {
            ("the lease's tasks together", self.worked.0, self.worked.1)
        } else {
            return None;
        };
        let reason = format!(
            "{what} declared {fuel:.0} fuel for {:.1} CPU-seconds, under 1/{} of this \
             provider's rate: its requester underpays, no more of the lease's tasks are taken",
            cpu_ms / 1e3,
            (1.0 / UNDERPAID_SHARE).round(),
        );
        self.underpaid = Some(reason.clone());
        Some(reason)
    }

    /// Why the lease takes no more work, if a task underpaid
    /// ([`LeaseWork::worked`]).
    pub fn underpaid(&self) -> Option<&str> {
        self.underpaid.as_deref()
    }

    fn queue(&mut self, Finished { report, commit }: Finished) {
        match commit {
            Some(commit) => {
                self.unsent.push(commit);
                self.sealed.insert(report.task(), report);
            }
            None => self.unsent.push(report),
        }
    }

    /// Tasks held per slot: enough to cover [`PREFETCH_WORK_MS`] of work at
    /// the tasks' measured duration, so tiny tasks come in batches and long
    /// ones are not hoarded.
    fn capacity(&self) -> u32 {
        let depth = ((PREFETCH_WORK_MS / self.task_ms.max(0.01)).ceil() as u32)
            .clamp(1, proto::PREFETCH_PER_SLOT_MAX);
        self.slots * depth
    }

    /// Tasks handed to the executor and not finished (running, or waiting
    /// for one of the provider's slots), and those the pull in flight
    /// asked for.
    pub fn held(&self) -> u32 {
        (self.running.len() as u32).saturating_add(self.asking)
    }

    /// What to do at `now`, beside the provider's `others` leases. The
    /// slots are the provider's, shared by all its leases: a lease that
    /// took its full prefetch beside others' would leave its tasks waiting
    /// behind theirs, and their requesters copying them elsewhere. So the
    /// tasks held elsewhere count against this lease's prefetch, and it is
    /// not due to ask for work while they fill the slots (the shell looks
    /// again when one of them finishes). But each lease keeps its share of
    /// the slots whatever the others hold: a lease of tiny tasks, which
    /// keeps a deep prefetch full, would otherwise starve one of long
    /// tasks for as long as it has work.
    pub fn next(&mut self, now: u64, others: Others) -> Next {
        if self.done {
            return Next::Done;
        }
        match self.pause {
            Some(Pause::Finished) => return Next::Wait(None),
            Some(Pause::Until(at)) if now < at => return Next::Wait(Some(at)),
            _ => self.pause = None,
        }
        let capacity = self.capacity();
        let own = self.held();
        let held = own.saturating_add(others.held);
        let share = (self.slots / others.leases.saturating_add(1)).max(1);
        // A requester that stops accepting what it was given gets no more
        // until it does: the provider risks at most its credit.
        let want = if self.awaiting.len() >= self.credit {
            0
        } else {
            capacity
                .saturating_sub(held)
                .max(share.saturating_sub(own))
                .min(capacity.saturating_sub(own))
        };
        // Pull when a slot could go idle or half the prefetch is free;
        // otherwise let reports gather a little so one request and one
        // commit carry many of them. A busy provider still checks in now and
        // then: the requester may be waiting for it to reveal a result.
        let report_due = self.last_pull + REPORT_DELAY_MS;
        let heartbeat_due = self.last_pull + HEARTBEAT_MS;
        let due = held < self.slots
            || own < share
            || want * 2 >= capacity
            || (!self.unsent.is_empty() && now >= report_due)
            || now >= heartbeat_due;
        if !due {
            let at = if self.unsent.is_empty() {
                heartbeat_due
            } else {
                report_due
            };
            return Next::Wait(Some(at));
        }
        let reports: Vec<Report> = self.unsent.iter().take(proto::BATCH_MAX).cloned().collect();
        // The requester fetches what the results name: only it may.
        let grants = reports
            .iter()
            .flat_map(|report| match report {
                Report::Revealed {
                    outputs,
                    stdout,
                    stderr,
                    ..
                } => outputs
                    .iter()
                    .map(|f| f.id)
                    .chain([stdout.id, stderr.id])
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        // Every report not yet acknowledged counts as held, not only those
        // this pull carries: the others follow in later pulls.
        let mut held = self.running.clone();
        held.extend(
            self.unsent
                .iter()
                .filter_map(|r| u32::try_from(r.task()).ok()),
        );
        self.in_flight = Some(reports.len());
        self.last_pull = now;
        let want = if self.failure.is_some() || self.underpaid.is_some() {
            0
        } else {
            want
        };
        self.asking = want;
        Next::Pull(Pull {
            writes: std::mem::take(&mut self.writes),
            want,
            reports,
            grants,
            held: held.into_iter().take(proto::HELD_MAX).collect(),
            awaiting: self
                .awaiting
                .keys()
                .filter_map(|&task| u32::try_from(task).ok())
                .take(proto::AWAITING_MAX)
                .collect(),
        })
    }

    /// The answer to the pull [`next`](Self::next) returned, sent asking for
    /// `want` tasks: returns the tasks to run now. `admit` refuses a task
    /// this provider must not run (one handed out before and changed since).
    pub fn answered(
        &mut self,
        now: u64,
        want: u32,
        answer: Result<Response, String>,
        mut admit: impl FnMut(&Assignment) -> bool,
    ) -> Vec<Assignment> {
        let sent = self.in_flight.take().unwrap_or(0);
        self.asking = 0;
        let (stored, tasks, finished, reveal, accepted) = match answer {
            Ok(Response::Tasks {
                stored,
                tasks,
                finished,
                reveal,
                accepted,
            }) => (stored, tasks, finished, reveal, accepted),
            Ok(Response::Refused(_)) => {
                // Nothing more will be taken; what runs is still reported.
                if self.running.is_empty() {
                    self.done = true;
                } else {
                    self.pause = Some(Pause::Finished);
                }
                return Vec::new();
            }
            Ok(_) | Err(_) => {
                // Unreachable or nonsense: keep the results and retry,
                // within a bound.
                if now.saturating_sub(self.last_answer) > REQUESTER_SILENCE_MS_MAX {
                    self.done = true;
                } else {
                    self.pause = Some(Pause::Until(now + RETRY_MS));
                }
                return Vec::new();
            }
        };
        self.last_answer = now;
        // A stored commitment keeps the result sealed; a stored result or
        // failure is done with.
        let acked = (stored as usize).min(sent);
        for report in self.unsent.drain(..acked) {
            if !matches!(report, Report::Committed(_)) {
                self.sealed.remove(&report.task());
                self.writes.push(Write::Forget(report.task()));
            }
            if let Report::Revealed { receipt, .. } = &report {
                let r = receipt.payload_unchecked();
                let awaiting = Awaiting {
                    task: r.task,
                    digest: r.digest,
                    fuel_used: r.fuel_used,
                };
                self.awaiting.insert(r.task, awaiting);
                self.writes.push(Write::Awaiting(awaiting));
            }
        }
        let awaited = self.awaiting.len();
        if let Some(acceptance) = accepted {
            self.accepted(acceptance);
        }
        // An acceptance names at most `ACCEPTANCE_RESULTS_MAX` results: one
        // that took some means there may be more to ask for.
        let progress = self.awaiting.len() < awaited;
        if !self.withhold_reveals {
            for task in reveal {
                let task = u64::from(task);
                let queued = self
                    .unsent
                    .iter()
                    .any(|r| matches!(r, Report::Revealed { .. }) && r.task() == task);
                if let Some(report) = self.sealed.get(&task).filter(|_| !queued) {
                    self.unsent.push(report.clone());
                }
            }
        }
        if finished && !self.awaiting.is_empty() && self.unsent.is_empty() {
            if self.last_ask && !progress {
                // Asked again after the job ended, and nothing more was
                // accepted: nothing will pay for them (a requester that
                // stops accepting costs this lease at most its credit).
                tracing::warn!(
                    lease = %self.lease.short(),
                    results = self.awaiting.len(),
                    "the job ended with results delivered and never accepted"
                );
                self.awaiting.clear();
            } else {
                // Some may have been stored by this very answer, or not fit
                // in its acceptance: another pull names them.
                self.last_ask = true;
            }
        }
        if finished && self.running.is_empty() && self.unsent.is_empty() && self.awaiting.is_empty()
        {
            self.done = true;
            return Vec::new();
        }
        if let Some(reason) = &self.failure {
            // Could not prepare: hand every task back.
            for task in tasks {
                self.unsent.push(Report::Failed {
                    task: task.task,
                    reason: reason.clone(),
                });
            }
            self.done = self.unsent.is_empty();
            return Vec::new();
        }
        if tasks.is_empty() && self.unsent.is_empty() {
            self.pause = Some(Pause::Until(now + self.idle_ms));
            self.idle_ms = (self.idle_ms * 2).min(IDLE_PULL_MS_MAX);
            return Vec::new();
        }
        self.idle_ms = IDLE_PULL_MS_MIN;
        // More than was asked for is the requester's mistake or an attack:
        // the rest are not taken (their deadline hands them to others), so
        // what runs and what waits here stays within the slots' prefetch.
        // So is a task with less fuel than the terms said (a tool task is
        // paid its figure), or more than the lease allows.
        let fuel = self.fuel_min..=self.fuel_max;
        let taken: Vec<Assignment> = tasks
            .into_iter()
            .take(want as usize)
            .filter(|task| fuel.contains(&task.fuel) && admit(task))
            .collect();
        self.running.extend(taken.iter().map(|a| a.task));
        taken
    }
}

impl LeaseWork {
    /// Keeps an acceptance that is the lease's requester's, about this
    /// lease, and names only results awaiting it as delivered (digest and
    /// fuel): the ledger pays exactly what it names. Anything else is
    /// ignored, and what awaited still awaits.
    fn accepted(&mut self, acceptance: Signed<Acceptance>) {
        if acceptance.signer() != self.requester {
            tracing::warn!(lease = %self.lease.short(), "an acceptance not signed by the requester");
            return;
        }
        let Ok(a) = acceptance.verify(ACCEPTANCE_NAMESPACE) else {
            tracing::warn!(lease = %self.lease.short(), "an acceptance with a bad signature");
            return;
        };
        // What this lease returned for a task: delivered and awaiting, or
        // sealed (a restart committed to it again after it was accepted).
        let returned = |task: u64| -> Option<(ContentId, u64)> {
            if let Some(w) = self.awaiting.get(&task) {
                return Some((w.digest, w.fuel_used));
            }
            match self.sealed.get(&task) {
                Some(Report::Revealed { receipt, .. }) => {
                    let r = receipt.payload_unchecked();
                    Some((r.digest, r.fuel_used))
                }
                _ => None,
            }
        };
        let matches = a.lease.id() == self.lease
            && !a.results.is_empty()
            && a.results
                .iter()
                .all(|r| returned(r.task) == Some((r.digest, r.fuel_used)));
        if !matches {
            tracing::warn!(lease = %self.lease.short(), "an acceptance of results not returned as named");
            return;
        }
        for r in &a.results {
            self.awaiting.remove(&r.task);
            if self.sealed.remove(&r.task).is_some() {
                // Accepted: it will not be asked for again.
                self.writes.push(Write::Forget(r.task));
            }
        }
        self.writes.push(Write::Accepted(Box::new(acceptance)));
    }
}

/// A finished task's report and, for a result, the signed commitment sent
/// in its place until the requester asks for the result. Sealed where the
/// result is made (the node's executor thread, the simulation's signature
/// stage), so that the lease's core, on the thread that drives every
/// lease, signs nothing as tasks finish (only what a restart restores).
#[derive(Clone, Debug)]
pub struct Finished {
    report: Report,
    commit: Option<Report>,
}

impl Finished {
    /// `report`, by the provider whose key is `key`: a result is
    /// committed to.
    pub fn seal(key: &Keypair, report: Report) -> Self {
        let commit = match &report {
            Report::Revealed { receipt, .. } => Some(commitment_to(key, receipt)),
            _ => None,
        };
        Self { report, commit }
    }

    /// The report.
    pub fn report(&self) -> &Report {
        &self.report
    }
}

/// The signed commitment to the result `receipt` opens.
fn commitment_to(key: &Keypair, receipt: &Signed<Receipt>) -> Report {
    let r = receipt.payload_unchecked();
    let reveal = Reveal {
        digest: r.digest,
        salt: r.salt,
    };
    let commitment = Commitment::new(&key.public(), &reveal).0;
    Report::Committed(Signed::sign(
        key,
        COMMIT_NAMESPACE,
        Commit {
            lease: r.lease,
            task: r.task,
            commitment,
        },
    ))
}

#[cfg(test)]
mod tests;
