//! One requester's verifier across its jobs: which tasks need another
//! provider, when to ask for reveals, when a result is accepted, when two
//! results go to a dispute, and what a conviction undoes.
//!
//! Pure: time is passed in as milliseconds, randomness comes from a seeded
//! generator, and every decision is returned as an [`Action`] for the shell
//! (the node, or a simulation) to carry out.

use std::collections::{BTreeMap, BTreeSet};

use cairn_job::VerifyPolicy;
use cairn_market::Rng;
use cairn_wire::{ContentId, PublicKey};

use crate::commit::{Commitment, Reveal};
use crate::credibility::{Params, TrustBook, group_credibility};
use crate::dispute::{Foul, Game, Need, Side, StateHash, Verdict};

/// A task of a job.
pub type TaskKey = (ContentId, u32);

/// What a provider was convicted of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// Its digest lost a dispute (or agreed with one that did).
    WrongResult {
        /// The dispute that decided it.
        dispute: u64,
    },
    /// Its reveal does not open its commitment (a copier).
    BadReveal,
    /// It committed and never revealed (a staller).
    NoReveal,
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Ask `provider` to reveal its committed result for `task`.
    AskReveal {
        /// The task.
        task: TaskKey,
        /// Who.
        provider: PublicKey,
    },
    /// `digest` is the task's result; `providers` returned it and are paid.
    Accept {
        /// The task.
        task: TaskKey,
        /// The accepted result.
        digest: ContentId,
        /// Who returned it.
        providers: Vec<PublicKey>,
    },
    /// Two providers returned different digests: a dispute starts.
    Dispute {
        /// Its id.
        id: u64,
        /// The task.
        task: TaskKey,
        /// Side A (the more credible result) and side B.
        sides: [PublicKey; 2],
    },
    /// A dispute needs something new; read [`Verifier::game`].
    DisputeNext {
        /// Its id.
        id: u64,
    },
    /// A dispute ended.
    DisputeDone {
        /// Its id.
        id: u64,
        /// Its sides: side A's provider, then side B's.
        sides: [PublicKey; 2],
        /// The verdict.
        verdict: Verdict,
    },
    /// `provider` is proven to have cheated on `task`: slash it.
    Convicted {
        /// Who.
        provider: PublicKey,
        /// The task it cheated on.
        task: TaskKey,
        /// How.
        offence: Offence,
    },
    /// `provider` was outvoted in `job`, which is decided by vote (an
    /// installed tool's), for the first time: it is wrong where its equals
    /// agree, so it gets none of the job's work again, and `reopened` are
    /// the job's tasks whose results were accepted on its word alone, open
    /// until another provider's agrees (a [`Action::Reopen`] follows for
    /// each). Not an offence: nothing proves it to the ledger.
    Expelled {
        /// Who.
        provider: PublicKey,
        /// The job.
        job: ContentId,
        /// Its tasks open again.
        reopened: Vec<u32>,
    },
    /// A result accepted earlier leaned on a convicted provider: the task is
    /// open again and will be run elsewhere.
    Reopen {
        /// The task.
        task: TaskKey,
    },
    /// Take back what `provider` was paid for these accepted results of
    /// still-open jobs.
    Clawback {
        /// Who.
        provider: PublicKey,
        /// Its results that were accepted.
        tasks: Vec<TaskKey>,
    },
    /// The task cannot reach its required confidence.
    Failed {
        /// The task.
        task: TaskKey,
        /// Why, for the requester.
        reason: String,
    },
}

/// A call that does not fit the state; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No such job or task.
    #[error("unknown task {0}")]
    UnknownTask(String),
    /// The provider holds no replica of the task in the needed state.
    #[error("{provider} {expected} for this task")]
    WrongState {
        /// Who.
        provider: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The task needs no other provider (or not this one).
    #[error("task needs no replica from {0}")]
    NotWanted(String),
    /// No such dispute, or this provider is not a side of it.
    #[error("no dispute {0} with this side")]
    UnknownDispute(u64),
    /// The side broke the dispute's rules (it loses).
    #[error("foul: {0}")]
    Foul(#[from] Foul),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplicaState {
    Assigned,
    Committed(Commitment),
    AskedReveal(Commitment),
    /// Its reveal arrived in time; the requester fetches its outputs. When
    /// it was asked to reveal, for a fetch that fails.
    Fetching(Commitment, u64),
    Revealed(ContentId),
    /// Timed out before committing: not an offence, just gone.
    Dropped,
    Convicted,
    /// Its result was accepted and then rejected by the requester (see
    /// [`Verifier::reject`]): not an offence, but it does not run the
    /// task again.
    Rejected,
}

#[derive(Clone, Debug)]
struct Replica {
    provider: PublicKey,
    state: ReplicaState,
    since_ms: u64,
}

impl Replica {
    fn live(&self) -> bool {
        !matches!(
            self.state,
            ReplicaState::Dropped | ReplicaState::Convicted | ReplicaState::Rejected
        )
    }

    /// Asked to reveal, and not yet judged on it.
    fn waits_for_reveal(&self) -> bool {
        matches!(
            self.state,
            ReplicaState::AskedReveal(_) | ReplicaState::Fetching(..)
        )
    }
}

#[derive(Clone, Debug, Default)]
struct TaskState {
    replicas: Vec<Replica>,
    wanted: u32,
    spot: Option<bool>,
    accepted: Option<(ContentId, Vec<PublicKey>)>,
    dispute: Option<u64>,
    failed: bool,
}

/// A task of a job under `policy` that nothing was done for yet.
fn fresh_task(policy: VerifyPolicy) -> TaskState {
    let wanted = match policy {
        VerifyPolicy::Replicate { replicas } => replicas,
        _ => 1,
    };
    TaskState {
        wanted,
        ..TaskState::default()
    }
}

#[derive(Clone, Debug)]
struct JobState {
    policy: VerifyPolicy,
    tasks: Vec<TaskState>,
    /// The most fuel one task may use, which bounds how long tracing one
    /// takes.
    fuel_per_task: u64,
    /// Whether results that disagree are disputed (re-executed step by
    /// step), or decided by a vote (see [`Verifier::decide_by_vote`]).
    disputable: bool,
    /// Settled: its results are paid and kept, whatever is learnt later
    /// (see [`Verifier::seal`]).
    sealed: bool,
    /// Providers that lost a vote in it (see [`Action::Expelled`]).
    expelled: BTreeSet<PublicKey>,
}

#[derive(Clone, Debug)]
struct DisputeState {
    task: TaskKey,
    sides: [PublicKey; 2],
    game: Game,
}

/// Counters for reports and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyStats {
    /// Replicas assigned (each is one execution).
    pub replicas: u64,
    /// Tasks accepted.
    pub accepted: u64,
    /// Spot checks drawn.
    pub spot_checks: u64,
    /// Disputes started.
    pub disputes: u64,
    /// Convictions.
    pub convictions: u64,
    /// Accepted results reopened after a conviction.
    pub reopened: u64,
}

/// What [`Verifier::cancel`] did to a job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CancelledTasks {
    /// Tasks it gave up: no final result, and not failed before.
    pub given_up: BTreeSet<u32>,
    /// Those among them whose accepted result was withdrawn (it was
    /// disputed): not paid, not kept.
    pub withdrawn: Vec<u32>,
    /// The disputes that ended undecided.
    pub disputes: Vec<u64>,
}

/// The verifier of one requester.
pub struct Verifier {
    params: Params,
    trust: TrustBook,
    rng: Rng,
    jobs: BTreeMap<ContentId, JobState>,
    disputes: BTreeMap<u64, DisputeState>,
    next_dispute: u64,
    stats: VerifyStats,
    /// When each replica waiting to commit or to reveal is due, so a tick
    /// looks only at those due rather than at every open task. Entries are
    /// checked when due and skipped if the replica has moved on.
    deadlines: BTreeSet<(u64, TaskKey, PublicKey)>,
    /// The tasks of open jobs each provider was given a replica of, so a
    /// conviction visits its tasks rather than every task of every open
    /// job (thousands of jobs, each conviction, at the simulation's scale).
    given: BTreeMap<PublicKey, BTreeSet<TaskKey>>,
}

impl Verifier {
    /// A verifier with `params`, drawing spot checks from `seed`.
    pub fn new(params: Params, seed: u64) -> Self {
        params.assert();
        Self {
            params,
            trust: TrustBook::default(),
            rng: Rng::new(seed),
            jobs: BTreeMap::new(),
            disputes: BTreeMap::new(),
            next_dispute: 1,
            stats: VerifyStats::default(),
            deadlines: BTreeSet::new(),
            given: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// What this requester knows of each provider.
    pub fn trust(&self) -> &TrustBook {
        &self.trust
    }

    /// For restoring records (from disk, or a simulation's history).
    pub fn trust_mut(&mut self) -> &mut TrustBook {
        &mut self.trust
    }

    /// Counters.
    pub fn stats(&self) -> VerifyStats {
        self.stats
    }

    /// Starts verifying `job`: `tasks` tasks under `policy`, each allowed
    /// at most `fuel_per_task` fuel.
    pub fn open_job(
        &mut self,
        job: ContentId,
        policy: VerifyPolicy,
        tasks: u32,
        fuel_per_task: u64,
    ) {
        // Opened again (a restarted requester): what it held goes.
        self.forget_replicas_of(&job);
        self.jobs.insert(
            job,
            JobState {
                tasks: vec![fresh_task(policy); tasks as usize],
                policy,
                fuel_per_task,
                disputable: true,
                sealed: false,
                expelled: BTreeSet::new(),
            },
        );
    }

    /// Adds `more` tasks to `job` after its last (a live stream's next
    /// segment), under the job's policy. Nothing for an unknown job.
    pub fn extend_job(&mut self, job: &ContentId, more: u32) {
        if let Some(state) = self.jobs.get_mut(job) {
            let total = state.tasks.len().saturating_add(more as usize);
            state.tasks.resize(total, fresh_task(state.policy));
        }
    }

    /// Decides `job`'s disagreements by a vote instead of a dispute: for
    /// programs no referee can re-run step by step (installed tools).
    /// When results differ, more replicas are run until one result is
    /// returned by at least two providers and by more than any other;
    /// that one is accepted and paid, the others are neither paid nor
    /// convicted (a different build of a tool may differ honestly).
    /// Past the replica bound the task fails.
    pub fn decide_by_vote(&mut self, job: &ContentId) {
        if let Some(state) = self.jobs.get_mut(job) {
            state.disputable = false;
        }
    }

    /// Forgets a finished job and its disputes: its results can no longer
    /// be reopened. Returns the ids of the disputes forgotten.
    pub fn close_job(&mut self, job: &ContentId) -> Vec<u64> {
        self.forget_replicas_of(job);
        self.jobs.remove(job);
        // Its disputes go with it, decided or not: nothing about the job
        // is acted on any more. Their ids let the caller drop what it kept
        // for them.
        self.forget_disputes_of(job)
    }

    /// Whether every task of `job` is accepted or failed.
    pub fn job_done(&self, job: &ContentId) -> bool {
        self.jobs.get(job).is_some_and(|j| {
            j.tasks
                .iter()
                .all(|t| (t.accepted.is_some() && t.dispute.is_none()) || t.failed)
        })
    }

    /// `job` is settling: its accepted results are final. A later
    /// conviction of one of its providers (on another job) no longer
    /// reopens them, since they are being paid and handed to the user;
    /// the conviction still bans and slashes the provider.
    pub fn seal(&mut self, job: &ContentId) {
        if let Some(state) = self.jobs.get_mut(job) {
            state.sealed = true;
        }
    }

    /// `job` was cancelled by its requester: every task without a final
    /// result (none accepted, or one accepted and still disputed) is given
    /// up, no deadline of the job is kept, and its disputes end undecided,
    /// so no one is paid or convicted on them. Its accepted results are
    /// final, as when a job settles (see [`Verifier::seal`]); so are the
    /// tasks it failed already.
    pub fn cancel(&mut self, job: &ContentId) -> CancelledTasks {
        let mut cancelled = CancelledTasks::default();
        let Some(state) = self.jobs.get_mut(job) else {
            return cancelled;
        };
        state.sealed = true;
        for (index, task) in state.tasks.iter_mut().enumerate() {
            if (task.accepted.is_some() && task.dispute.is_none()) || task.failed {
                continue;
            }
            cancelled.given_up.insert(index as u32);
            if task.accepted.take().is_some() {
                cancelled.withdrawn.push(index as u32);
            }
            task.dispute = None;
            task.failed = true;
            for replica in &mut task.replicas {
                if !matches!(
                    replica.state,
                    ReplicaState::Revealed(_) | ReplicaState::Convicted
                ) {
                    replica.state = ReplicaState::Dropped;
                }
            }
        }
        cancelled.disputes = self.forget_disputes_of(job);
        cancelled
    }

    /// Forgets which providers were given `job`'s tasks.
    fn forget_replicas_of(&mut self, job: &ContentId) {
        let Some(state) = self.jobs.get(job) else {
            return;
        };
        for (index, task) in state.tasks.iter().enumerate() {
            for replica in &task.replicas {
                if let Some(tasks) = self.given.get_mut(&replica.provider) {
                    tasks.remove(&(*job, index as u32));
                    if tasks.is_empty() {
                        self.given.remove(&replica.provider);
                    }
                }
            }
        }
    }

    /// Drops every deadline and dispute of `job`; returns the disputes.
    fn forget_disputes_of(&mut self, job: &ContentId) -> Vec<u64> {
        self.deadlines.retain(|(_, task, _)| task.0 != *job);
        let ids: Vec<u64> = self
            .disputes
            .iter()
            .filter(|(_, d)| d.task.0 == *job)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.disputes.remove(id);
        }
        ids
    }

    /// The requester rejected `task`'s accepted result on seeing it (an
    /// approval job, see `docs/verification.md`): the result is no longer
    /// accepted, the providers that returned it are not asked to run the
    /// task again and their streak starts again (as when outvoted: nothing
    /// proves they cheated), and the task wants the replicas its policy
    /// asks from other providers. Returns those providers. Refused for a
    /// task without an accepted result, still disputed, or of a job that
    /// settles.
    pub fn reject(&mut self, task: &TaskKey) -> Result<Vec<PublicKey>, VerifyError> {
        let refused = || {
            VerifyError::UnknownTask(format!(
                "{}#{} has no accepted result to reject",
                task.0.short(),
                task.1
            ))
        };
        if !self.rejectable(task) {
            return Err(refused());
        }
        let state = self.task_mut(task)?;
        let (digest, members) = state.accepted.take().ok_or_else(refused)?;
        state.spot = None;
        for replica in &mut state.replicas {
            if replica.state == ReplicaState::Revealed(digest) {
                replica.state = ReplicaState::Rejected;
            }
        }
        for provider in &members {
            self.trust.outvoted(provider);
        }
        Ok(members)
    }

    /// Whether [`Verifier::reject`] would take `task`'s result back: one
    /// is accepted, not disputed, and its job does not settle.
    pub fn rejectable(&self, task: &TaskKey) -> bool {
        let sealed = self.jobs.get(&task.0).is_some_and(|j| j.sealed);
        self.task(task)
            .is_ok_and(|t| t.accepted.is_some() && t.dispute.is_none() && !t.failed && !sealed)
    }

    /// How many tasks of `job` are accepted.
    pub fn accepted_count(&self, job: &ContentId) -> u32 {
        self.jobs.get(job).map_or(0, |j| {
            j.tasks.iter().filter(|t| t.accepted.is_some()).count() as u32
        })
    }

    /// The accepted digest of a task, if any.
    pub fn accepted(&self, task: &TaskKey) -> Option<ContentId> {
        self.task(task).ok()?.accepted.as_ref().map(|(d, _)| *d)
    }

    /// Tasks of `job` that need another provider now, in order.
    pub fn wanting(&self, job: &ContentId) -> Vec<u32> {
        let Some(state) = self.jobs.get(job) else {
            return Vec::new();
        };
        (0..state.tasks.len() as u32)
            .filter(|&i| needs(&state.tasks[i as usize]))
            .collect()
    }

    /// Whether `provider` may take a replica of `task` now: the task needs
    /// one, and the provider has none (or only one it dropped).
    pub fn eligible(&self, task: &TaskKey, provider: &PublicKey) -> bool {
        !self.trust.record(provider).banned()
            && self.task(task).is_ok_and(|t| {
                needs(t)
                    && t.replicas
                        .iter()
                        .all(|r| r.provider != *provider || r.state == ReplicaState::Dropped)
            })
    }

    /// Whether `task` needs another provider now.
    pub fn needs(&self, task: &TaskKey) -> bool {
        self.task(task).is_ok_and(needs)
    }

    /// The open jobs `provider` was given a replica in: those its
    /// conviction drops replicas in.
    pub fn jobs_given(&self, provider: &PublicKey) -> BTreeSet<ContentId> {
        let tasks = self.given.get(provider).into_iter().flatten();
        tasks.map(|(job, _)| *job).collect()
    }

    /// The providers another replica of `task` must not go to: every one
    /// holding a replica it did not drop.
    pub fn providers_of(&self, task: &TaskKey) -> Vec<PublicKey> {
        self.task(task)
            .map(|t| {
                t.replicas
                    .iter()
                    .filter(|r| r.state != ReplicaState::Dropped)
                    .map(|r| r.provider)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Marks `task` accepted before this run began (a restarted requester
    /// restoring its results).
    pub fn restore_accepted(
        &mut self,
        task: &TaskKey,
        digest: ContentId,
        providers: Vec<PublicKey>,
    ) {
        if let Ok(state) = self.task_mut(task) {
            state.accepted = Some((digest, providers));
        }
    }

    /// `provider`'s replica of `task` will not report (its copy expired, was
    /// superseded, or could not run): the task stops waiting for it.
    pub fn withdraw(&mut self, task: &TaskKey, provider: &PublicKey, now_ms: u64) -> Vec<Action> {
        let Ok(state) = self.task_mut(task) else {
            return Vec::new();
        };
        let mut hit = false;
        for replica in &mut state.replicas {
            if replica.provider == *provider && replica.state == ReplicaState::Assigned {
                replica.state = ReplicaState::Dropped;
                hit = true;
            }
        }
        if !hit {
            return Vec::new();
        }
        let mut actions = self.ask_reveals(task, now_ms);
        actions.extend(self.evaluate(task, now_ms));
        actions
    }

    /// `provider` no longer works for `job`, through nothing it can be
    /// blamed for (its lease was never confirmed, so nothing it returns
    /// there can be paid): each replica it holds there and has not revealed
    /// is dropped, not convicted, and its task looks for another provider.
    /// Returns the tasks touched and what follows.
    pub fn abandon(
        &mut self,
        job: &ContentId,
        provider: &PublicKey,
        now_ms: u64,
    ) -> (Vec<u32>, Vec<Action>) {
        let Some(state) = self.jobs.get_mut(job) else {
            return (Vec::new(), Vec::new());
        };
        let mut touched = Vec::new();
        for (index, task) in state.tasks.iter_mut().enumerate() {
            for replica in &mut task.replicas {
                if replica.provider == *provider
                    && matches!(
                        replica.state,
                        ReplicaState::Assigned
                            | ReplicaState::Committed(_)
                            | ReplicaState::AskedReveal(_)
                            | ReplicaState::Fetching(..)
                    )
                {
                    replica.state = ReplicaState::Dropped;
                    touched.push(index as u32);
                }
            }
        }
        let mut actions = Vec::new();
        for &index in &touched {
            let task = (*job, index);
            actions.extend(self.ask_reveals(&task, now_ms));
            actions.extend(self.evaluate(&task, now_ms));
        }
        (touched, actions)
    }

    /// `provider` runs a replica of `task` from `now_ms`.
    pub fn assign(
        &mut self,
        task: &TaskKey,
        provider: PublicKey,
        now_ms: u64,
    ) -> Result<(), VerifyError> {
        if !self.eligible(task, &provider) {
            self.task(task)?;
            return Err(VerifyError::NotWanted(provider.short()));
        }
        let policy = self.jobs[&task.0].policy;
        let stranger = self.params.credibility(0);
        let mut creds: Vec<f64> = Vec::new();
        let commit_by = now_ms.saturating_add(self.params.commit_timeout_ms);
        let state = self.task_mut(task)?;
        push_replica(state, provider, now_ms);
        let providers: Vec<PublicKey> = state
            .replicas
            .iter()
            .filter(|r| r.live())
            .map(|r| r.provider)
            .collect();
        self.stats.replicas += 1;
        self.deadlines.insert((commit_by, *task, provider));
        self.given.entry(provider).or_default().insert(*task);
        // Adaptive: ask at once for as many replicas as strangers would
        // need to reach the confidence beside the providers assigned so far,
        // rather than discovering it one reveal at a time.
        if let VerifyPolicy::Adaptive { confidence } = policy {
            for p in &providers {
                creds.push(self.params.credibility(self.trust.record(p).streak));
            }
            while group_credibility(&[creds.clone()])[0] < confidence
                && creds.len() < self.params.replicas_max as usize
            {
                creds.push(stranger);
            }
            let state = self.task_mut(task)?;
            state.wanted = creds.len().max(providers.len()) as u32;
        }
        Ok(())
    }

    /// Registers a copy the dispatcher handed out beyond what verification
    /// asked for (a speculative copy of a straggler): it is judged like any
    /// replica if it reports first. Does nothing for a banned provider or
    /// one already holding a live replica of the task.
    pub fn assign_copy(&mut self, task: &TaskKey, provider: PublicKey, now_ms: u64) {
        if self.eligible(task, &provider) {
            let _ = self.assign(task, provider, now_ms);
            return;
        }
        if self.trust.record(&provider).banned() {
            return;
        }
        let Ok(state) = self.task_mut(task) else {
            return;
        };
        if state.accepted.is_some()
            || state
                .replicas
                .iter()
                .any(|r| r.provider == provider && r.state != ReplicaState::Dropped)
        {
            return;
        }
        push_replica(state, provider, now_ms);
        self.stats.replicas += 1;
        self.deadlines.insert((
            now_ms.saturating_add(self.params.commit_timeout_ms),
            *task,
            provider,
        ));
        self.given.entry(provider).or_default().insert(*task);
    }

    /// `provider` commits to its result for `task`.
    pub fn commit(
        &mut self,
        task: &TaskKey,
        provider: &PublicKey,
        commitment: Commitment,
        now_ms: u64,
    ) -> Result<Vec<Action>, VerifyError> {
        let state = self.task_mut(task)?;
        let replica = state
            .replicas
            .iter_mut()
            .find(|r| r.provider == *provider && r.state == ReplicaState::Assigned)
            .ok_or_else(|| VerifyError::WrongState {
                provider: provider.short(),
                expected: "holds no assigned replica",
            })?;
        replica.state = ReplicaState::Committed(commitment);
        replica.since_ms = now_ms;
        Ok(self.ask_reveals(task, now_ms))
    }

    /// Whether `reveal` opens the commitment of `provider`'s replica of
    /// `task`, which waits for it. A reveal that does not is judged at
    /// once ([`reveal`](Self::reveal) convicts it), with nothing fetched.
    pub fn opens(&self, task: &TaskKey, provider: &PublicKey, reveal: &Reveal) -> bool {
        self.task(task).is_ok_and(|state| {
            state.replicas.iter().any(|r| {
                r.provider == *provider
                    && match r.state {
                        ReplicaState::AskedReveal(commitment)
                        | ReplicaState::Fetching(commitment, _) => {
                            commitment.opens(provider, reveal)
                        }
                        _ => false,
                    }
            })
        })
    }

    /// `provider`'s reveal of `task` arrived while it was asked for, and
    /// the requester fetches its outputs before [`reveal`](Self::reveal):
    /// the provider's time runs anew, for
    /// [`Params::reveal_fetch_timeout_ms`], so that a fetch held up by
    /// someone else cannot convict it. A reveal that comes again while its
    /// outputs are fetched gets no more time, and one whose fetch fails is
    /// held to its reveal deadline again
    /// ([`reveal_not_fetched`](Self::reveal_not_fetched)). Returns whether
    /// it was waiting for this reveal (it was asked and had not revealed).
    pub fn reveal_arrived(&mut self, task: &TaskKey, provider: &PublicKey, now_ms: u64) -> bool {
        let Ok(state) = self.task_mut(task) else {
            return false;
        };
        let Some(replica) = state.replicas.iter_mut().find(|r| r.provider == *provider) else {
            return false;
        };
        match replica.state {
            ReplicaState::AskedReveal(commitment) => {
                replica.state = ReplicaState::Fetching(commitment, replica.since_ms);
                replica.since_ms = now_ms;
                let by = now_ms.saturating_add(self.params.reveal_fetch_timeout_ms);
                self.deadlines.insert((by, *task, *provider));
                true
            }
            ReplicaState::Fetching(..) => true,
            _ => false,
        }
    }

    /// The outputs of `provider`'s arrived reveal of `task` could not be
    /// fetched (it stopped serving, or the transfer failed): the fetch's
    /// time ends, and the reveal deadline it was asked under holds again.
    /// Past it, the provider is convicted for not revealing; before it,
    /// it may send its reveal again.
    pub fn reveal_not_fetched(
        &mut self,
        task: &TaskKey,
        provider: &PublicKey,
        now_ms: u64,
    ) -> Vec<Action> {
        let reveal_ms = self.params.reveal_timeout_ms;
        let Ok(state) = self.task_mut(task) else {
            return Vec::new();
        };
        let Some(replica) = state.replicas.iter_mut().find(|r| r.provider == *provider) else {
            return Vec::new();
        };
        let ReplicaState::Fetching(commitment, asked_ms) = replica.state else {
            return Vec::new();
        };
        if now_ms >= asked_ms.saturating_add(reveal_ms) {
            return self.convict(*provider, *task, Offence::NoReveal, now_ms);
        }
        // Its reveal deadline is still in the queue.
        replica.state = ReplicaState::AskedReveal(commitment);
        replica.since_ms = asked_ms;
        Vec::new()
    }

    /// `provider` reveals its result for `task`.
    pub fn reveal(
        &mut self,
        task: &TaskKey,
        provider: &PublicKey,
        reveal: &Reveal,
        now_ms: u64,
    ) -> Result<Vec<Action>, VerifyError> {
        let state = self.task_mut(task)?;
        let replica = state
            .replicas
            .iter_mut()
            .find(|r| r.provider == *provider && r.waits_for_reveal())
            .ok_or_else(|| VerifyError::WrongState {
                provider: provider.short(),
                expected: "was not asked to reveal",
            })?;
        let (ReplicaState::AskedReveal(commitment) | ReplicaState::Fetching(commitment, _)) =
            replica.state
        else {
            unreachable!("a replica that waits for its reveal")
        };
        if !commitment.opens(provider, reveal) {
            return Ok(self.convict(*provider, *task, Offence::BadReveal, now_ms));
        }
        replica.state = ReplicaState::Revealed(reveal.digest);
        replica.since_ms = now_ms;
        Ok(self.evaluate(task, now_ms))
    }

    /// Acts on every deadline passed by `now_ms`: only replicas whose
    /// deadline is due are looked at (the queue of deadlines), not every
    /// open task.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut stalled = Vec::new();
        let mut dropped = Vec::new();
        let later = self.deadlines.split_off(&(
            now_ms.saturating_add(1),
            (ContentId::from_digest([0; 32]), 0),
            PublicKey::MIN,
        ));
        let due = std::mem::replace(&mut self.deadlines, later);
        let (commit_ms, reveal_ms, fetch_ms) = (
            self.params.commit_timeout_ms,
            self.params.reveal_timeout_ms,
            self.params.reveal_fetch_timeout_ms,
        );
        for (_, task, provider) in due {
            // The replica may have moved on (committed, revealed, dropped,
            // reassigned) since the deadline was set: then it is not due.
            let Ok(state) = self.task_mut(&task) else {
                continue;
            };
            let Some(replica) = state.replicas.iter_mut().find(|r| r.provider == provider) else {
                continue;
            };
            match replica.state {
                ReplicaState::Assigned if now_ms >= replica.since_ms.saturating_add(commit_ms) => {
                    replica.state = ReplicaState::Dropped;
                    dropped.push(task);
                }
                ReplicaState::AskedReveal(_)
                    if now_ms >= replica.since_ms.saturating_add(reveal_ms) =>
                {
                    stalled.push((task, provider));
                }
                ReplicaState::Fetching(..)
                    if now_ms >= replica.since_ms.saturating_add(fetch_ms) =>
                {
                    stalled.push((task, provider));
                }
                _ => {}
            }
        }
        for task in dropped {
            actions.extend(self.ask_reveals(&task, now_ms));
        }
        for (task, provider) in stalled {
            // An earlier conviction in this loop may have dropped it.
            let still = self.task(&task).is_ok_and(|t| {
                t.replicas
                    .iter()
                    .any(|r| r.provider == provider && r.waits_for_reveal())
            });
            if still {
                actions.extend(self.convict(provider, task, Offence::NoReveal, now_ms));
            }
        }
        let ids: Vec<u64> = self.disputes.keys().copied().collect();
        for id in ids {
            let dispute = self.disputes.get_mut(&id).expect("listed");
            if let Some(verdict) = dispute.game.tick(now_ms).cloned() {
                actions.extend(self.decide(id, verdict, now_ms));
            }
        }
        actions
    }

    /// The earliest moment [`tick`](Self::tick) may have something to do: a
    /// replica's commit or reveal deadline, or a dispute's answer deadline.
    /// Nothing is due before it, so a driver sleeps until then (or until
    /// an input arrives) instead of ticking on a period.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let replicas = self.deadlines.first().map(|(at, _, _)| *at);
        let disputes = self.disputes.values().filter_map(|d| d.game.deadline_ms());
        replicas.into_iter().chain(disputes).min()
    }

    /// The game of dispute `id`, to see what it needs.
    pub fn game(&self, id: u64) -> Option<(&TaskKey, &[PublicKey; 2], &Game)> {
        self.disputes.get(&id).map(|d| (&d.task, &d.sides, &d.game))
    }

    /// Open disputes.
    pub fn disputes(&self) -> Vec<u64> {
        self.disputes.keys().copied().collect()
    }

    /// A side of dispute `id` says how long its trace is.
    pub fn dispute_length(
        &mut self,
        id: u64,
        provider: &PublicKey,
        positions: u64,
        now_ms: u64,
    ) -> Result<Vec<Action>, VerifyError> {
        self.play(id, provider, now_ms, |game, side| {
            game.length(side, positions, now_ms)
        })
    }

    /// A side of dispute `id` answers the positions it was asked.
    pub fn dispute_hashes(
        &mut self,
        id: u64,
        provider: &PublicKey,
        hashes: &[StateHash],
        now_ms: u64,
    ) -> Result<Vec<Action>, VerifyError> {
        self.play(id, provider, now_ms, |game, side| {
            game.hashes(side, hashes, now_ms)
        })
    }

    /// The referee of dispute `id` reached `hash`.
    pub fn dispute_referee(
        &mut self,
        id: u64,
        hash: StateHash,
        now_ms: u64,
    ) -> Result<Vec<Action>, VerifyError> {
        let dispute = self
            .disputes
            .get_mut(&id)
            .ok_or(VerifyError::UnknownDispute(id))?;
        let verdict = dispute.game.referee(hash)?.clone();
        Ok(self.decide(id, verdict, now_ms))
    }

    fn play(
        &mut self,
        id: u64,
        provider: &PublicKey,
        now_ms: u64,
        mv: impl FnOnce(&mut Game, Side) -> Result<(), Foul>,
    ) -> Result<Vec<Action>, VerifyError> {
        let dispute = self
            .disputes
            .get_mut(&id)
            .ok_or(VerifyError::UnknownDispute(id))?;
        let side = match dispute.sides.iter().position(|s| s == provider) {
            Some(0) => Side::A,
            Some(_) => Side::B,
            None => return Err(VerifyError::UnknownDispute(id)),
        };
        let before = dispute.game.need().clone();
        // A foul ends the game against the side that made it, so it shows
        // up as the verdict below; the caller learns it from that.
        let _ = mv(&mut dispute.game, side);
        let after = dispute.game.need().clone();
        Ok(match after {
            Need::Done(verdict) => self.decide(id, verdict, now_ms),
            need if need != before => vec![Action::DisputeNext { id }],
            _ => Vec::new(),
        })
    }

    /// Applies a dispute's verdict: every provider that returned a losing
    /// digest is convicted, and the task is judged again without them.
    fn decide(&mut self, id: u64, verdict: Verdict, now_ms: u64) -> Vec<Action> {
        let Some(dispute) = self.disputes.remove(&id) else {
            return Vec::new();
        };
        let mut actions = vec![Action::DisputeDone {
            id,
            sides: dispute.sides,
            verdict: verdict.clone(),
        }];
        let task = dispute.task;
        let losing: Vec<ContentId> = {
            let Ok(state) = self.task(&task) else {
                return actions;
            };
            verdict
                .losers
                .iter()
                .filter_map(|side| revealed_by(state, &dispute.sides[*side as usize]))
                .collect()
        };
        let convicts: Vec<PublicKey> = match self.task(&task) {
            Ok(state) => state
                .replicas
                .iter()
                .filter(|r| matches!(r.state, ReplicaState::Revealed(d) if losing.contains(&d)))
                .map(|r| r.provider)
                .collect(),
            Err(_) => Vec::new(),
        };
        // A side that lost by silence is convicted even if its digest
        // is shared with nobody.
        let mut convicts = convicts;
        for side in &verdict.losers {
            let provider = dispute.sides[*side as usize];
            if !convicts.contains(&provider) {
                convicts.push(provider);
            }
        }
        if let Ok(state) = self.task_mut(&task) {
            state.dispute = None;
        }
        for provider in convicts {
            actions.extend(self.convict(
                provider,
                task,
                Offence::WrongResult { dispute: id },
                now_ms,
            ));
        }
        actions.extend(self.evaluate(&task, now_ms));
        actions
    }

    /// Asks every committed replica to reveal once no replica the task
    /// waits for is still running.
    fn ask_reveals(&mut self, task: &TaskKey, now_ms: u64) -> Vec<Action> {
        let Ok(state) = self.task_mut(task) else {
            return Vec::new();
        };
        let live = state.replicas.iter().filter(|r| r.live()).count() as u32;
        let running = state
            .replicas
            .iter()
            .any(|r| r.state == ReplicaState::Assigned);
        if running || live < state.wanted {
            return Vec::new();
        }
        let mut actions = Vec::new();
        for replica in &mut state.replicas {
            if let ReplicaState::Committed(c) = replica.state {
                replica.state = ReplicaState::AskedReveal(c);
                replica.since_ms = now_ms;
                actions.push(Action::AskReveal {
                    task: *task,
                    provider: replica.provider,
                });
            }
        }
        let reveal_by = now_ms.saturating_add(self.params.reveal_timeout_ms);
        for action in &actions {
            if let Action::AskReveal { provider, .. } = action {
                self.deadlines.insert((reveal_by, *task, *provider));
            }
        }
        actions
    }

    /// Decides what a task's reveals mean once none is outstanding.
    fn evaluate(&mut self, task: &TaskKey, now_ms: u64) -> Vec<Action> {
        let Some(policy) = self.jobs.get(&task.0).map(|j| j.policy) else {
            return Vec::new();
        };
        let Ok(state) = self.task(task) else {
            return Vec::new();
        };
        if state.accepted.is_some() || state.dispute.is_some() || state.failed {
            return Vec::new();
        }
        if state.replicas.iter().any(|r| {
            matches!(
                r.state,
                ReplicaState::Assigned
                    | ReplicaState::Committed(_)
                    | ReplicaState::AskedReveal(_)
                    | ReplicaState::Fetching(..)
            )
        }) {
            return Vec::new();
        }
        let mut groups: BTreeMap<ContentId, Vec<PublicKey>> = BTreeMap::new();
        for replica in &state.replicas {
            if let ReplicaState::Revealed(digest) = replica.state {
                groups.entry(digest).or_default().push(replica.provider);
            }
        }
        let assigned = state.replicas.len() as u32;
        let members_live = state.replicas.iter().filter(|r| r.live()).count() as u32;
        if groups.is_empty() {
            return self.want(task, members_live + 1, assigned);
        }
        let disputable = self.jobs.get(&task.0).is_some_and(|j| j.disputable);
        let mut outvoted = Vec::new();
        if !disputable && groups.len() > 1 {
            let mut sizes: Vec<usize> = groups.values().map(Vec::len).collect();
            sizes.sort_unstable_by(|a, b| b.cmp(a));
            if sizes[0] < 2 || sizes[0] == sizes[1] {
                return self.want(task, members_live + 1, assigned);
            }
            // The majority stands alone from here: accepted as if it were
            // the only result.
            groups.retain(|_, members| {
                let majority = members.len() == sizes[0];
                if !majority {
                    outvoted.extend(members.iter().copied());
                }
                majority
            });
        }
        let credibility: Vec<Vec<f64>> = groups
            .values()
            .map(|members| {
                members
                    .iter()
                    .map(|p| self.params.credibility(self.trust.record(p).streak))
                    .collect()
            })
            .collect();
        let belief = group_credibility(&credibility);
        if groups.len() > 1 {
            // The most believed result against the next one.
            let mut order: Vec<usize> = (0..groups.len()).collect();
            order.sort_by(|&x, &y| belief[y].total_cmp(&belief[x]));
            let digests: Vec<&ContentId> = groups.keys().collect();
            let strongest = |i: usize| -> PublicKey {
                let members = &groups[digests[i]];
                let creds = &credibility[i];
                let best = (0..members.len())
                    .max_by(|&x, &y| creds[x].total_cmp(&creds[y]))
                    .expect("a group has members");
                members[best]
            };
            let sides = [strongest(order[0]), strongest(order[1])];
            let digests = [*digests[order[0]], *digests[order[1]]];
            let id = self.next_dispute;
            self.next_dispute += 1;
            self.stats.disputes += 1;
            let fuel = self.jobs.get(&task.0).map_or(0, |j| j.fuel_per_task);
            let game = Game::new(
                digests[0],
                digests[1],
                self.params.dispute_arity,
                self.params.dispute_round_timeout_ms,
                now_ms,
            )
            .allowing_trace(fuel / self.params.dispute_trace_fuel_per_ms);
            self.disputes.insert(
                id,
                DisputeState {
                    task: *task,
                    sides,
                    game,
                },
            );
            self.task_mut(task).expect("exists").dispute = Some(id);
            return vec![Action::Dispute {
                id,
                task: *task,
                sides,
            }];
        }
        let (digest, members) = groups.into_iter().next().expect("one group");
        let belief = belief[0];
        let count = members.len() as u32;
        let spot_drawn = state.spot;
        let accept = match policy {
            VerifyPolicy::None => true,
            VerifyPolicy::Replicate { replicas } => count >= replicas,
            VerifyPolicy::Spot { probability } => {
                count >= 2 || !self.draw_spot(task, spot_drawn, probability)
            }
            VerifyPolicy::Adaptive { confidence } => {
                if belief < confidence {
                    false
                } else if count >= 2 {
                    true
                } else {
                    let streak = self.trust.record(&members[0]).streak;
                    let p = self.params.spot_probability(streak, confidence);
                    !self.draw_spot(task, spot_drawn, p)
                }
            }
        };
        if !accept {
            // One more than every live replica: after a vote, the outvoted
            // ones are live too and will not agree.
            return self.want(task, members_live + 1, assigned);
        }
        if count >= 2 {
            members.iter().for_each(|p| self.trust.confirmed(p));
        } else {
            self.trust.alone(&members[0]);
        }
        outvoted.iter().for_each(|p| self.trust.outvoted(p));
        self.stats.accepted += 1;
        self.task_mut(task).expect("exists").accepted = Some((digest, members.clone()));
        let mut actions = vec![Action::Accept {
            task: *task,
            digest,
            providers: members,
        }];
        for provider in outvoted {
            actions.extend(self.expel(provider, task.0, now_ms));
        }
        actions
    }

    /// `provider` lost a vote in `job`: the requester hands it none of the
    /// job's work again. Its votes still count (an honest provider outvoted
    /// by colluders keeps them, and a painter's are outvoted), and every
    /// result of the job accepted on its word alone is checked: open again
    /// until another provider's agrees with it, then accepted with both, or
    /// a vote goes against it. A sealed job's accepted results stand.
    fn expel(&mut self, provider: PublicKey, job: ContentId, now_ms: u64) -> Vec<Action> {
        let Some(state) = self.jobs.get_mut(&job) else {
            return Vec::new();
        };
        if !state.expelled.insert(provider) {
            return Vec::new();
        }
        let mut reopened = Vec::new();
        if !state.sealed {
            for (index, t) in state.tasks.iter_mut().enumerate() {
                if t.accepted
                    .as_ref()
                    .is_some_and(|(_, members)| members[..] == [provider])
                {
                    t.accepted = None;
                    t.spot = Some(true);
                    reopened.push(index as u32);
                }
            }
        }
        let mut actions = vec![Action::Expelled {
            provider,
            job,
            reopened: reopened.clone(),
        }];
        for index in reopened {
            let key = (job, index);
            self.stats.reopened += 1;
            actions.push(Action::Reopen { task: key });
            actions.extend(self.evaluate(&key, now_ms));
            actions.extend(self.ask_reveals(&key, now_ms));
        }
        actions
    }

    /// Draws (once per task) whether it is spot-checked.
    fn draw_spot(&mut self, task: &TaskKey, drawn: Option<bool>, probability: f64) -> bool {
        if let Some(drawn) = drawn {
            return drawn;
        }
        let drawn = self.rng.next_f64() < probability;
        self.stats.spot_checks += u64::from(drawn);
        self.task_mut(task).expect("exists").spot = Some(drawn);
        drawn
    }

    /// The task needs `wanted` live replicas; fails it past the bounds.
    fn want(&mut self, task: &TaskKey, wanted: u32, assigned: u32) -> Vec<Action> {
        let replicas_max = self.params.replicas_max;
        let state = self.task_mut(task).expect("exists");
        if wanted > replicas_max || assigned >= 4 * replicas_max {
            state.failed = true;
            return vec![Action::Failed {
                task: *task,
                reason: format!(
                    "no result reached the required confidence within {replicas_max} replicas \
                     ({assigned} assigned)"
                ),
            }];
        }
        state.wanted = state.wanted.max(wanted);
        Vec::new()
    }

    /// Convicts `provider` for `offence` on `task`: bans it, stops waiting
    /// for it anywhere, and reopens every accepted result of an open job
    /// that no longer stands without it.
    fn convict(
        &mut self,
        provider: PublicKey,
        task: TaskKey,
        offence: Offence,
        now_ms: u64,
    ) -> Vec<Action> {
        self.trust.convicted(&provider);
        self.stats.convictions += 1;
        let mut actions = vec![Action::Convicted {
            provider,
            task,
            offence,
        }];
        let mut touched = Vec::new();
        let mut earned = Vec::new();
        // In the order of the jobs and their tasks, as a walk of all would.
        let given: Vec<TaskKey> = self
            .given
            .get(&provider)
            .map(|tasks| tasks.iter().copied().collect())
            .unwrap_or_default();
        for key in given {
            let Some(state) = self.jobs.get_mut(&key.0) else {
                continue;
            };
            let sealed = state.sealed;
            let Some(t) = state.tasks.get_mut(key.1 as usize) else {
                continue;
            };
            let mut hit = false;
            for replica in t.replicas.iter_mut().filter(|r| r.provider == provider) {
                replica.state = match replica.state {
                    ReplicaState::Revealed(_) => ReplicaState::Convicted,
                    ReplicaState::Dropped => ReplicaState::Dropped,
                    _ if key == task => ReplicaState::Convicted,
                    _ => ReplicaState::Dropped,
                };
                hit = true;
            }
            // A sealed job's replicas stop waiting for the provider,
            // and its accepted results stand.
            if !hit || sealed {
                continue;
            }
            if let Some((_, members)) = &t.accepted
                && members.contains(&provider)
            {
                earned.push(key);
                t.accepted = None;
                t.spot = None;
            }
            touched.push(key);
        }
        if !earned.is_empty() {
            actions.push(Action::Clawback {
                provider,
                tasks: earned.clone(),
            });
        }
        for key in touched {
            let was_accepted = earned.contains(&key);
            let decided = self.evaluate(&key, now_ms);
            let reaccepted = decided.iter().any(|a| matches!(a, Action::Accept { .. }));
            if was_accepted && !reaccepted {
                self.stats.reopened += 1;
                actions.push(Action::Reopen { task: key });
            }
            actions.extend(decided);
            actions.extend(self.ask_reveals(&key, now_ms));
        }
        actions
    }

    fn task(&self, task: &TaskKey) -> Result<&TaskState, VerifyError> {
        self.jobs
            .get(&task.0)
            .and_then(|j| j.tasks.get(task.1 as usize))
            .ok_or_else(|| VerifyError::UnknownTask(format!("{}#{}", task.0.short(), task.1)))
    }

    fn task_mut(&mut self, task: &TaskKey) -> Result<&mut TaskState, VerifyError> {
        self.jobs
            .get_mut(&task.0)
            .and_then(|j| j.tasks.get_mut(task.1 as usize))
            .ok_or_else(|| VerifyError::UnknownTask(format!("{}#{}", task.0.short(), task.1)))
    }
}

/// A new replica of `task` on `provider`, replacing one it dropped.
fn push_replica(task: &mut TaskState, provider: PublicKey, now_ms: u64) {
    task.replicas.retain(|r| r.provider != provider);
    task.replicas.push(Replica {
        provider,
        state: ReplicaState::Assigned,
        since_ms: now_ms,
    });
}

/// Whether a task needs another provider now.
fn needs(task: &TaskState) -> bool {
    task.accepted.is_none()
        && task.dispute.is_none()
        && !task.failed
        && (task.replicas.iter().filter(|r| r.live()).count() as u32) < task.wanted
}

fn revealed_by(task: &TaskState, provider: &PublicKey) -> Option<ContentId> {
    task.replicas.iter().find_map(|r| match r.state {
        ReplicaState::Revealed(d) if r.provider == *provider => Some(d),
        _ => None,
    })
}
