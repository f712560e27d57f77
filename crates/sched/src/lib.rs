//! sched: Hand a job's tasks to leased providers as they pull, within bounds, as a pure state machine.
//!
//! Providers *pull*: a provider asks for work when it has a free slot, so no
//! task waits behind a long one on a busy machine. Every wait is bounded: a
//! task not finished by its deadline goes back to the queue and its
//! provider earns a strike; a provider that falls silent or collects too
//! many strikes is dropped and its tasks go back; a task that keeps failing
//! stops after a fixed number of attempts. When the queue is empty but
//! tasks are still running, idle providers get speculative copies of the
//! oldest stragglers (tasks out for half as long again as nine in ten of
//! the job's results took), and the first result wins.
//!
//! Time comes in as milliseconds on every call; nothing here reads a clock.
//!
//! ```
//! use cairn_sched::{Completion, Scheduler, SchedParams};
//! use cairn_wire::{ContentId, Keypair};
//!
//! let provider = Keypair::from_seed([1; 32]).public();
//! let mut sched = Scheduler::new(2, SchedParams::default());
//! sched.add_provider(provider, 4, 0);
//! assert_eq!(sched.pull(&provider, 8, 0).unwrap(), vec![0, 1]);
//! assert_eq!(sched.complete(&provider, 0, ContentId::of(b"r0"), 5), Completion::Accepted);
//! assert_eq!(sched.complete(&provider, 1, ContentId::of(b"r1"), 6), Completion::Accepted);
//! assert!(sched.is_finished());
//! ```
#![deny(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};

use cairn_wire::{ContentId, PublicKey};

/// The scheduler's bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedParams {
    /// How long a provider has to return a task it pulled.
    pub task_deadline_ms: u64,
    /// A provider holding tasks that neither pulls nor returns anything for
    /// this long is dropped.
    pub silence_ms_max: u64,
    /// Missed deadlines after which a provider is dropped.
    pub strikes_max: u32,
    /// Times one task is handed out (speculative copies included) before it
    /// is given up as failed.
    pub attempts_max: u32,
    /// Copies of one task running at once when stragglers are re-issued.
    pub copies_max: u32,
    /// The most tasks handed out in one pull.
    pub batch_max: u32,
}

impl Default for SchedParams {
    fn default() -> Self {
        Self {
            task_deadline_ms: 600_000,
            silence_ms_max: 30_000,
            strikes_max: 3,
            attempts_max: 6,
            copies_max: 2,
            batch_max: 256,
        }
    }
}

/// A task's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a provider.
    Pending,
    /// Handed out; one entry per copy.
    Running(Vec<Copy>),
    /// Finished: the first result accepted.
    Done {
        /// Who produced it.
        provider: PublicKey,
        /// Its result digest.
        digest: ContentId,
        /// Providers whose copies were still running when it finished:
        /// their late results are compared, not accepted.
        superseded: Vec<PublicKey>,
    },
    /// Given up.
    Failed(String),
}

/// One provider's copy of a running task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// Who runs it.
    pub provider: PublicKey,
    /// When it was handed out.
    pub started_ms: u64,
    /// When it is taken back.
    pub deadline_ms: u64,
}

/// What a returned result did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// It finished the task.
    Accepted,
    /// The task was already done with the same digest (a speculative copy
    /// or a retransmission); nothing changes.
    Duplicate,
    /// The task was already done with a *different* digest. Execution is
    /// deterministic, so one of the two providers is lying; verification
    /// takes it from here.
    Mismatch {
        /// The digest accepted first.
        accepted: ContentId,
        /// Who gave it.
        accepted_from: PublicKey,
    },
    /// The provider was not running that task (never assigned, expired and
    /// reassigned, or dropped): the result is ignored.
    NotAssigned,
}

/// Something the scheduler decided on a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A copy ran past its deadline and was taken back.
    Expired {
        /// The task.
        task: u32,
        /// Its provider.
        provider: PublicKey,
    },
    /// A provider was dropped from the job.
    Dropped {
        /// Who.
        provider: PublicKey,
        /// Why.
        reason: String,
    },
    /// A task was given up.
    Failed {
        /// The task.
        task: u32,
    },
}

/// Why a pull was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullRefused {
    /// The provider holds no lease on this job.
    UnknownProvider,
    /// The provider was dropped.
    Dropped(String),
}

impl std::fmt::Display for PullRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownProvider => f.write_str("no lease on this job"),
            Self::Dropped(reason) => write!(f, "dropped from the job: {reason}"),
        }
    }
}

/// Pending work only a provider not yet in the job may take (see
/// [`Scheduler::blocked`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// How many tasks wait.
    pub count: u32,
    /// The first few of them, in order.
    pub first: Vec<u32>,
}

/// Counts for status displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Tasks in the job.
    pub total: u32,
    /// Finished.
    pub done: u32,
    /// Handed out.
    pub running: u32,
    /// Waiting.
    pub pending: u32,
    /// Given up.
    pub failed: u32,
    /// Providers still in the job.
    pub providers: u32,
}

#[derive(Clone, Debug)]
struct ProviderState {
    slots: u32,
    running: BTreeSet<u32>,
    strikes: u32,
    last_seen_ms: u64,
    /// Its entry in [`Scheduler::watched`], if it has one.
    watched: Option<u64>,
    dropped: Option<String>,
    /// Dropped for lateness or silence only, not for cheating or by its
    /// requester: it may take work again if it wins another auction.
    rejoinable: bool,
    /// Taken back once already: a second time it stays out.
    readmitted: bool,
}

/// The task queue of one job.
#[derive(Clone, Debug)]
pub struct Scheduler {
    params: SchedParams,
    tasks: Vec<TaskState>,
    attempts: Vec<u32>,
    pending: BTreeSet<u32>,
    running: BTreeSet<u32>,
    /// Every running copy's deadline: (deadline, task, provider). A tick
    /// and [`Scheduler::next_deadline_ms`] look only at the first entries
    /// instead of walking every running task; a copy's entry goes when the
    /// copy does.
    deadlines: BTreeSet<(u64, u32, PublicKey)>,
    /// When each provider holding work was last heard from: (last seen,
    /// provider), for every provider not dropped with a task running. A
    /// tick looks only at the entries old enough to be silent, so a crowd
    /// of providers costs nothing until one of them goes quiet.
    watched: BTreeSet<(u64, PublicKey)>,
    providers: BTreeMap<PublicKey, ProviderState>,
    /// How many of `providers` are not dropped, kept as they change:
    /// [`Scheduler::progress`] is asked on every step of a job with
    /// thousands of providers.
    active: u32,
    /// Providers a requeued task must not go to (they already ran it).
    excluded: BTreeMap<u32, BTreeSet<PublicKey>>,
    done: u32,
    failed: u32,
    /// How long the results accepted here took, from hand-out.
    took: Durations,
}

/// How long results took (ms), kept as a histogram with three significant
/// bits: a task's duration is told from a straggler's by the long end of
/// its job's results, read in one pass over a few hundred counters
/// whatever the job's size, and rounded up by at most an eighth.
#[derive(Clone)]
struct Durations {
    counts: Box<[u32; Durations::BUCKETS]>,
    total: u64,
    /// Nine in ten took no longer, as of the last result.
    long_ms: Option<u64>,
}

impl std::fmt::Debug for Durations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durations")
            .field("total", &self.total)
            .field("long_ms", &self.long_ms)
            .finish()
    }
}

impl Durations {
    /// Values below 16 have a bucket each; above, 8 buckets per doubling
    /// (60 doublings from 16 to 2^64).
    const BUCKETS: usize = 16 + 60 * 8;

    fn new() -> Self {
        Self {
            counts: Box::new([0; Self::BUCKETS]),
            total: 0,
            long_ms: None,
        }
    }

    fn bucket(ms: u64) -> usize {
        // The shift leaves 4 significant bits (8 to 15) above 15.
        let shift = (63 - ms.max(1).leading_zeros()).saturating_sub(3);
        (8 * shift + (ms >> shift) as u32) as usize
    }

    /// The largest value bucket `index` holds.
    fn ceiling(index: usize) -> u64 {
        let index = index as u64;
        if index < 16 {
            return index;
        }
        let shift = index / 8 - 1;
        // The last bucket's top is u64::MAX, one short of 2^64.
        let top = (u128::from(index % 8 + 9) << shift) - 1;
        u64::try_from(top).unwrap_or(u64::MAX)
    }

    fn record(&mut self, ms: u64) {
        let count = &mut self.counts[Self::bucket(ms)];
        *count = count.saturating_add(1);
        self.total += 1;
        self.long_ms = self.quantile(9, 10);
    }

    /// The least duration at least `parts` in `whole` of the results took
    /// no longer than, rounded up to its bucket's top; none before a
    /// result.
    fn quantile(&self, parts: u64, whole: u64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let wanted = self
            .total
            .saturating_mul(parts)
            .div_ceil(whole.max(1))
            .max(1);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= wanted {
                return Some(Self::ceiling(index));
            }
        }
        Some(u64::MAX)
    }
}

impl Scheduler {
    /// A queue of `tasks` tasks, all pending.
    pub fn new(tasks: u32, params: SchedParams) -> Self {
        assert!(params.copies_max >= 1, "copies_max must be at least 1");
        assert!(params.batch_max >= 1, "batch_max must be at least 1");
        Self {
            params,
            tasks: vec![TaskState::Pending; tasks as usize],
            attempts: vec![0; tasks as usize],
            pending: (0..tasks).collect(),
            running: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            watched: BTreeSet::new(),
            providers: BTreeMap::new(),
            active: 0,
            excluded: BTreeMap::new(),
            done: 0,
            failed: 0,
            took: Durations::new(),
        }
    }

    /// Adds `more` tasks after the last, pending (a live stream's next
    /// segment). Returns the first new index.
    pub fn extend(&mut self, more: u32) -> u32 {
        let first = self.tasks.len() as u32;
        let total = first.saturating_add(more);
        self.tasks.resize(total as usize, TaskState::Pending);
        self.attempts.resize(total as usize, 0);
        self.pending.extend(first..total);
        first
    }

    /// Runs a finished task again, on a provider not in `exclude`:
    /// verification wants another replica, or the accepted result leaned on
    /// a provider since convicted. A task not finished is left alone except
    /// that its exclusions are updated.
    pub fn requeue(&mut self, task: u32, exclude: impl IntoIterator<Item = PublicKey>) {
        let Some(state) = self.tasks.get_mut(task as usize) else {
            return;
        };
        // The set is replaced: a provider whose copy was dropped may run
        // the task again.
        self.excluded.insert(task, exclude.into_iter().collect());
        if matches!(state, TaskState::Done { .. }) {
            *state = TaskState::Pending;
            self.done -= 1;
            self.attempts[task as usize] = 0;
            self.pending.insert(task);
        }
    }

    /// Brings `provider`'s entry in the silence queue up to date with its
    /// state: after anything that changes when it was last seen, whether it
    /// holds work, or whether it was dropped.
    fn watch(&mut self, provider: &PublicKey) {
        let Some(state) = self.providers.get_mut(provider) else {
            return;
        };
        if let Some(at) = state.watched.take() {
            self.watched.remove(&(at, *provider));
        }
        if state.dropped.is_none() && !state.running.is_empty() {
            self.watched.insert((state.last_seen_ms, *provider));
            state.watched = Some(state.last_seen_ms);
        }
    }

    fn excludes(&self, task: u32, provider: &PublicKey) -> bool {
        self.excluded
            .get(&task)
            .is_some_and(|set| set.contains(provider))
    }

    /// Marks a task finished before the run began (a restarted requester
    /// restoring its results).
    pub fn restore(&mut self, task: u32, provider: PublicKey, digest: ContentId) {
        let Some(state) = self.tasks.get_mut(task as usize) else {
            return;
        };
        if !matches!(state, TaskState::Done { .. }) {
            *state = TaskState::Done {
                provider,
                digest,
                superseded: Vec::new(),
            };
            self.pending.remove(&task);
            self.done += 1;
        }
    }

    /// Adds a leased provider with `slots` concurrent tasks (or updates its
    /// slots). A dropped provider stays dropped (see [`Scheduler::readmit`]).
    pub fn add_provider(&mut self, provider: PublicKey, slots: u32, now_ms: u64) {
        let entry = self.providers.entry(provider).or_insert_with(|| {
            self.active += 1;
            ProviderState {
                slots,
                running: BTreeSet::new(),
                strikes: 0,
                last_seen_ms: now_ms,
                watched: None,
                dropped: None,
                rejoinable: false,
                readmitted: false,
            }
        });
        entry.slots = slots;
        entry.last_seen_ms = now_ms;
        self.watch(&provider);
    }

    /// A provider asks for up to `want` tasks. It gets at most its free
    /// slots: pending tasks first, then, once none are pending, speculative
    /// copies of the oldest stragglers.
    pub fn pull(
        &mut self,
        provider: &PublicKey,
        want: u32,
        now_ms: u64,
    ) -> Result<Vec<u32>, PullRefused> {
        let state = self
            .providers
            .get_mut(provider)
            .ok_or(PullRefused::UnknownProvider)?;
        if let Some(reason) = &state.dropped {
            return Err(PullRefused::Dropped(reason.clone()));
        }
        state.last_seen_ms = now_ms;
        let free = state.slots.saturating_sub(state.running.len() as u32);
        let count = want.min(free).min(self.params.batch_max);
        let mut handed = Vec::with_capacity(count as usize);
        if self.excluded.is_empty() {
            while (handed.len() as u32) < count {
                let Some(task) = self.pending.pop_first() else {
                    break;
                };
                handed.push(task);
            }
        } else {
            handed.extend(
                self.pending
                    .iter()
                    .filter(|&&task| !self.excludes(task, provider))
                    .take(count as usize)
                    .copied(),
            );
            for task in &handed {
                self.pending.remove(task);
            }
        }
        if (handed.len() as u32) < count {
            let stragglers = self.stragglers(provider, count - handed.len() as u32, now_ms);
            handed.extend(stragglers);
        }
        let deadline_ms = now_ms.saturating_add(self.params.task_deadline_ms);
        for &task in &handed {
            self.attempts[task as usize] += 1;
            let copy = Copy {
                provider: *provider,
                started_ms: now_ms,
                deadline_ms,
            };
            self.deadlines.insert((deadline_ms, task, *provider));
            match &mut self.tasks[task as usize] {
                TaskState::Running(copies) => copies.push(copy),
                state => *state = TaskState::Running(vec![copy]),
            }
            self.running.insert(task);
        }
        self.providers
            .get_mut(provider)
            .expect("checked above")
            .running
            .extend(handed.iter().copied());
        self.watch(provider);
        Ok(handed)
    }

    /// Running tasks worth a speculative copy on `provider`: out for half
    /// as long again as nine in ten accepted results took (at most half
    /// the task deadline, and that before the first result), fewer than
    /// `copies_max` copies, none on this provider, attempts left; oldest
    /// first. Copying every running task once the queue emptied ran a
    /// job's last tasks twice, a sixth of the work of a busy network (the
    /// simulation), on slots that other jobs could have used. Measuring
    /// against the mean copied every task merely longer than most: a job's
    /// tasks differ in size, a copy of a long task takes as long as the
    /// task, and a network with more slots than work (100,000 providers)
    /// ran each of a job's long tasks up to twice more for nothing. Beyond
    /// the long end of the job's own results, a task is likely held by a
    /// provider that crashed or stalled, which is what a copy is for.
    fn stragglers(&self, provider: &PublicKey, count: u32, now_ms: u64) -> Vec<u32> {
        // Before any result, and whatever slow providers did to the
        // average: half the deadline, so that a provider that holds tasks
        // and returns nothing (alive, so never dropped as silent) holds up
        // the job for half a deadline, not for each of its strikes.
        let at_most = self.params.task_deadline_ms / 2;
        let straggling_ms = self.took.long_ms.map_or(at_most, |long_ms| {
            (long_ms.saturating_mul(3) / 2).min(at_most)
        });
        // Every copy's deadline is its start plus the same task deadline,
        // so the deadline queue lists copies oldest first: a task's first
        // copy there is its oldest, and the walk stops at the first copy
        // too young to straggle instead of looking at every running task
        // on each pull (a job's last pulls, from a crowd of providers with
        // nothing pending, each walked them all).
        let mut seen = BTreeSet::new();
        let mut stragglers = Vec::new();
        for &(deadline_ms, task, holder) in &self.deadlines {
            let started_ms = deadline_ms.saturating_sub(self.params.task_deadline_ms);
            if now_ms.saturating_sub(started_ms) < straggling_ms || stragglers.len() as u32 >= count
            {
                break;
            }
            let TaskState::Running(copies) = &self.tasks[task as usize] else {
                continue;
            };
            // What no provider may copy first, and cheaply: near a job's
            // end most old copies are of tasks at their most copies, and
            // every idle provider's pull walks past them.
            if copies.len() as u32 >= self.params.copies_max
                || self.attempts[task as usize] >= self.params.attempts_max
            {
                continue;
            }
            // Only a running copy's own entry tells when the task started:
            // an entry its copy left behind (a task marked done by a
            // restore) would make it a straggler too early.
            let live = copies
                .iter()
                .any(|c| c.provider == holder && c.deadline_ms == deadline_ms);
            if !live || !seen.insert(task) {
                continue;
            }
            if copies.iter().all(|c| c.provider != *provider) && !self.excludes(task, provider) {
                stragglers.push(task);
            }
        }
        stragglers
    }

    /// A provider returns a result for `task`.
    pub fn complete(
        &mut self,
        provider: &PublicKey,
        task: u32,
        digest: ContentId,
        now_ms: u64,
    ) -> Completion {
        let completion = self.take_result(provider, task, digest, now_ms);
        self.watch(provider);
        if let Some(TaskState::Done { superseded, .. }) = self.tasks.get(task as usize)
            && completion == Completion::Accepted
        {
            for other in superseded.clone() {
                self.watch(&other);
            }
        }
        completion
    }

    fn take_result(
        &mut self,
        provider: &PublicKey,
        task: u32,
        digest: ContentId,
        now_ms: u64,
    ) -> Completion {
        let Some(state) = self.providers.get_mut(provider) else {
            return Completion::NotAssigned;
        };
        state.last_seen_ms = now_ms;
        let held = state.running.remove(&task);
        // The index comes from a provider: one past the job's end is a
        // result nobody asked for, not a reason to stop.
        let Some(slot) = self.tasks.get_mut(task as usize) else {
            return Completion::NotAssigned;
        };
        match slot {
            TaskState::Running(copies) if held => {
                // The first result wins. Other copies are released so their
                // providers' slots free up; their late results are compared.
                let superseded: Vec<PublicKey> = copies
                    .iter()
                    .map(|c| c.provider)
                    .filter(|p| p != provider)
                    .collect();
                for copy in copies.iter() {
                    self.deadlines
                        .remove(&(copy.deadline_ms, task, copy.provider));
                }
                for other in &superseded {
                    if let Some(state) = self.providers.get_mut(other) {
                        state.running.remove(&task);
                    }
                }
                let started = copies
                    .iter()
                    .find(|c| c.provider == *provider)
                    .map_or(now_ms, |c| c.started_ms);
                self.took.record(now_ms.saturating_sub(started));
                self.tasks[task as usize] = TaskState::Done {
                    provider: *provider,
                    digest,
                    superseded,
                };
                self.running.remove(&task);
                // Whoever runs it next is chosen by a requeue, which names
                // its own exclusions.
                self.excluded.remove(&task);
                self.done += 1;
                Completion::Accepted
            }
            TaskState::Done {
                provider: first,
                digest: accepted,
                superseded,
            } if first == provider || superseded.contains(provider) => {
                if *accepted == digest {
                    Completion::Duplicate
                } else {
                    Completion::Mismatch {
                        accepted: *accepted,
                        accepted_from: *first,
                    }
                }
            }
            _ => Completion::NotAssigned,
        }
    }

    /// A provider could not run `task` (it could not fetch an input, say):
    /// the copy is released and the task, if no other copy runs, queued
    /// again.
    pub fn release(&mut self, provider: &PublicKey, task: u32, now_ms: u64) -> Option<Event> {
        let state = self.providers.get_mut(provider)?;
        state.last_seen_ms = now_ms;
        let held = state.running.remove(&task);
        self.watch(provider);
        if !held {
            return None;
        }
        self.take_back(task, provider)
    }

    /// Removes `provider`'s copy of `task`; queues or fails the task when
    /// no copy is left.
    fn take_back(&mut self, task: u32, provider: &PublicKey) -> Option<Event> {
        let Some(TaskState::Running(copies)) = self.tasks.get_mut(task as usize) else {
            return None;
        };
        for copy in copies.iter().filter(|c| c.provider == *provider) {
            self.deadlines
                .remove(&(copy.deadline_ms, task, copy.provider));
        }
        copies.retain(|c| c.provider != *provider);
        if !copies.is_empty() {
            return None;
        }
        self.running.remove(&task);
        if self.attempts[task as usize] >= self.params.attempts_max {
            let reason = format!("no result after {} attempts", self.attempts[task as usize]);
            self.tasks[task as usize] = TaskState::Failed(reason);
            self.failed += 1;
            Some(Event::Failed { task })
        } else {
            self.tasks[task as usize] = TaskState::Pending;
            self.pending.insert(task);
            None
        }
    }

    /// Drops a provider (connection lost, lease cancelled, caught lying):
    /// its tasks go back to the queue and its pulls are refused from now on.
    pub fn drop_provider(&mut self, provider: &PublicKey, reason: &str) -> Vec<Event> {
        self.drop_for(provider, reason, false)
    }

    /// Drops a provider through a fault that may be bad luck (it left
    /// with work unfinished): it may be readmitted once, when it wins the
    /// job again (see [`Scheduler::readmit`]).
    pub fn drop_rejoinable(&mut self, provider: &PublicKey, reason: &str) -> Vec<Event> {
        self.drop_for(provider, reason, true)
    }

    /// Drops a provider; one `rejoinable` may be readmitted (see
    /// [`Scheduler::readmit`]).
    fn drop_for(&mut self, provider: &PublicKey, reason: &str, rejoinable: bool) -> Vec<Event> {
        let Some(state) = self.providers.get_mut(provider) else {
            return Vec::new();
        };
        if state.dropped.is_some() {
            // Dropped already for lateness and now for cheating: it stays
            // out.
            state.rejoinable &= rejoinable;
            return Vec::new();
        }
        state.dropped = Some(reason.to_string());
        state.rejoinable = rejoinable;
        self.active -= 1;
        let tasks: Vec<u32> = std::mem::take(&mut state.running).into_iter().collect();
        let mut events = vec![Event::Dropped {
            provider: *provider,
            reason: reason.to_string(),
        }];
        self.watch(provider);
        events.extend(
            tasks
                .into_iter()
                .filter_map(|t| self.take_back(t, provider)),
        );
        events
    }

    /// A provider's connection dropped: its tasks go back to the queue at
    /// once (no strike), and it stays in the job, so a provider that
    /// restarts resumes its lease and pulls again.
    pub fn release_all(&mut self, provider: &PublicKey) -> Vec<Event> {
        let Some(state) = self.providers.get_mut(provider) else {
            return Vec::new();
        };
        let tasks: Vec<u32> = std::mem::take(&mut state.running).into_iter().collect();
        self.watch(provider);
        tasks
            .into_iter()
            .filter_map(|t| self.take_back(t, provider))
            .collect()
    }

    /// Takes back copies past their deadline and drops providers that went
    /// silent or missed too many deadlines.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Event> {
        let mut events = Vec::new();
        // Copies due by `now_ms`, in task order; at the last moment every
        // copy is due.
        let later = match now_ms.checked_add(1) {
            Some(next) => self.deadlines.split_off(&(next, 0, PublicKey::MIN)),
            None => BTreeSet::new(),
        };
        let mut expired: Vec<(u32, PublicKey)> = std::mem::replace(&mut self.deadlines, later)
            .into_iter()
            .map(|(_, task, provider)| (task, provider))
            .filter(|(task, provider)| {
                matches!(self.tasks.get(*task as usize),
                    Some(TaskState::Running(copies)) if copies.iter().any(|c| c.provider == *provider))
            })
            .collect();
        expired.sort_unstable();
        let mut struck = BTreeSet::new();
        for (task, provider) in expired {
            if let Some(state) = self.providers.get_mut(&provider) {
                state.running.remove(&task);
                state.strikes += 1;
                struck.insert(provider);
            }
            events.push(Event::Expired { task, provider });
            events.extend(self.take_back(task, &provider));
        }
        for provider in &struck {
            self.watch(provider);
        }
        let mut to_drop: Vec<(PublicKey, String)> = struck
            .into_iter()
            .filter_map(|key| {
                let s = &self.providers[&key];
                (s.dropped.is_none() && s.strikes >= self.params.strikes_max)
                    .then(|| (key, format!("missed {} task deadlines", s.strikes)))
            })
            .collect();
        // Heard from too long ago: silent if it still holds work.
        let silent_before = now_ms.saturating_sub(self.params.silence_ms_max);
        let silent: Vec<(u64, PublicKey)> = self
            .watched
            .range(..(silent_before, PublicKey::MIN))
            .copied()
            .collect();
        for (last_seen, key) in silent {
            if !to_drop.iter().any(|(k, _)| *k == key) {
                to_drop.push((key, format!("silent for {} ms", now_ms - last_seen)));
            }
        }
        // Late or silent, not dishonest: a loaded machine, a stalled disk.
        for (provider, reason) in to_drop {
            events.extend(self.drop_for(&provider, &reason, true));
        }
        events
    }

    /// Takes back a provider dropped for lateness or silence, with the
    /// slots it had and a clean record, once its requester has chosen it
    /// again (it won another auction of the job): a provider slow for a
    /// while is not shut out of a job for good, which then waited for a
    /// second provider it had. Once per provider: one late again stays
    /// out, so a provider cannot take tasks, go quiet and come back until
    /// their attempts run out. Returns whether it was readmitted; one
    /// dropped for another reason, or not dropped, is left as it is.
    pub fn readmit(&mut self, provider: &PublicKey, now_ms: u64) -> bool {
        if !self.may_rejoin(provider) {
            return false;
        }
        let Some(state) = self.providers.get_mut(provider) else {
            return false;
        };
        state.dropped = None;
        self.active += 1;
        state.rejoinable = false;
        state.readmitted = true;
        state.strikes = 0;
        state.last_seen_ms = now_ms;
        self.watch(provider);
        true
    }

    /// The earliest moment [`Scheduler::tick`] has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let deadlines = self.deadlines.first().map(|(at, _, _)| *at);
        let silence = self
            .watched
            .first()
            .map(|(last_seen, _)| last_seen + self.params.silence_ms_max + 1);
        deadlines.into_iter().chain(silence).min()
    }

    /// A task's state.
    pub fn task(&self, task: u32) -> Option<&TaskState> {
        self.tasks.get(task as usize)
    }

    /// Tasks `provider` holds now.
    pub fn running_of(&self, provider: &PublicKey) -> Vec<u32> {
        self.providers
            .get(provider)
            .map(|s| s.running.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether the provider is in the job and not dropped.
    pub fn is_active(&self, provider: &PublicKey) -> bool {
        self.providers
            .get(provider)
            .is_some_and(|s| s.dropped.is_none())
    }

    /// Whether `provider` was dropped for lateness or silence and may be
    /// readmitted.
    pub fn may_rejoin(&self, provider: &PublicKey) -> bool {
        self.providers
            .get(provider)
            .is_some_and(|s| s.dropped.is_some() && s.rejoinable && !s.readmitted)
    }

    /// Providers still in the job.
    pub fn active_providers(&self) -> impl Iterator<Item = &PublicKey> {
        self.providers
            .iter()
            .filter(|(_, s)| s.dropped.is_none())
            .map(|(k, _)| k)
    }

    /// Whether every pending task is one no provider in the job may take,
    /// because each has run it already (a requeued task needs a provider
    /// that has not): the job waits for another provider. `None` when no
    /// task is pending, no provider is in the job (that wait has another
    /// reason), or some pending task can go to someone; the walk stops at
    /// the first such task. Otherwise how many are blocked, and the first
    /// `shown` of them.
    pub fn blocked(&self, shown: usize) -> Option<Blocked> {
        let active: Vec<&PublicKey> = self.active_providers().collect();
        if active.is_empty() || self.pending.is_empty() {
            return None;
        }
        let blocked = |task: &u32| {
            self.excluded
                .get(task)
                .is_some_and(|excluded| active.iter().all(|p| excluded.contains(p)))
        };
        if !self.pending.iter().all(blocked) {
            return None;
        }
        Some(Blocked {
            count: self.pending.len() as u32,
            first: self.pending.iter().take(shown).copied().collect(),
        })
    }

    /// Counts for a status display.
    pub fn progress(&self) -> Progress {
        Progress {
            total: self.tasks.len() as u32,
            done: self.done,
            running: self.running.len() as u32,
            pending: self.pending.len() as u32,
            failed: self.failed,
            providers: self.active,
        }
    }

    /// Gives up every task for `reason` (the job was cancelled) except
    /// those done whose result `keep` says is final (a result verification
    /// still had to confirm is not): nothing is handed out again, no
    /// deadline is kept, and a copy's late result is not assigned. Returns
    /// the tasks given up.
    pub fn cancel(&mut self, reason: &str, keep: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut given_up = Vec::new();
        for (task, state) in self.tasks.iter_mut().enumerate() {
            let task = task as u32;
            match state {
                TaskState::Failed(_) => continue,
                TaskState::Done { .. } if keep(task) => continue,
                TaskState::Done { .. } => self.done -= 1,
                TaskState::Pending | TaskState::Running(_) => {}
            }
            *state = TaskState::Failed(reason.to_string());
            self.failed += 1;
            given_up.push(task);
        }
        self.pending.clear();
        self.running.clear();
        self.deadlines.clear();
        self.watched.clear();
        for state in self.providers.values_mut() {
            state.running.clear();
            state.watched = None;
        }
        given_up
    }

    /// Every task is done or given up.
    pub fn is_finished(&self) -> bool {
        self.done + self.failed == self.tasks.len() as u32
    }
}

impl std::error::Error for PullRefused {}

#[cfg(test)]
mod tests {
    use super::Durations;

    #[test]
    fn every_duration_falls_in_one_bucket_whose_top_is_within_an_eighth_above_it() {
        let mut values: Vec<u64> = (0..5_000).collect();
        for bit in 0..64 {
            let power = 1u64 << bit;
            values.extend([power - 1, power, power + 1, power.saturating_mul(3) / 2]);
        }
        values.push(u64::MAX);
        for v in values {
            let index = Durations::bucket(v);
            assert!(index < Durations::BUCKETS, "{v}: bucket {index}");
            let top = Durations::ceiling(index);
            assert!(top >= v && top - v <= v / 8, "{v}: top {top}");
            if index > 0 {
                assert!(Durations::ceiling(index - 1) < v, "{v}: bucket below");
            }
        }
    }

    #[test]
    fn the_long_end_is_read_from_the_results_counted() {
        let mut took = Durations::new();
        assert_eq!(took.quantile(9, 10), None);
        assert_eq!(took.long_ms, None);
        for ms in 1..=100 {
            took.record(ms);
        }
        let long = took.quantile(9, 10).unwrap();
        assert!((90..=90 + 90 / 8).contains(&long), "{long}");
        assert_eq!(took.long_ms, Some(long), "kept as results come");
        assert_eq!(
            took.quantile(1, 1),
            Some(Durations::ceiling(Durations::bucket(100)))
        );
        assert_eq!(took.quantile(0, 1), Some(1));
    }
}
