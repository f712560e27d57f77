//! The requester's side of verification: carrying out what the verifier
//! (`cairn-verify`, pure) decides — asking for reveals, storing accepted
//! results, running replicas elsewhere, refereeing disputes by re-executing
//! one segment, and sending the evidence that slashes a cheater to the
//! ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_exec::{Runtime as _, Snapshot, Task};
use cairn_ledger::{Commit, Evidence, REVEAL_WINDOW_BLOCKS, TxKind, VERDICT_NAMESPACE, Verdict};
use cairn_net::PeerId;
use cairn_store::{Op, Table};
use cairn_verify::{Action, Need, Offence, Segment, Side, StateHash, TaskKey, Verifier};
use cairn_wire::{ContentId, PublicKey, Signed};

use super::proto::{self, DisputeAsk, Request, Response};
use super::requester::{Job, Requester, result_key};
use super::{fetch_blob, now_ms};

/// How long a dispute waits before asking a silent side again.
const DISPUTE_RETRY_MS: u64 = 500;

/// What the verifier's decisions leave to do once the locks are released.
#[derive(Default)]
pub(super) struct Effects {
    /// Results to store (or forget).
    pub ops: Vec<Op>,
    /// Evidence and challenges for the ledger.
    pub txs: Vec<TxKind>,
    /// Commits to challenge on chain, then to slash if never opened.
    pub challenges: Vec<(ContentId, u64, Signed<Commit>)>,
    /// Disputes to referee: (job, dispute id).
    pub disputes: Vec<(ContentId, u64)>,
}

/// What a referee found, kept for the verdict it signs.
#[derive(Clone, Debug)]
pub(super) struct Finding {
    pub position: u64,
    pub agreed: StateHash,
    pub reached: StateHash,
    pub transcript: ContentId,
}

impl Requester {
    /// Applies the verifier's actions to the jobs, then sends back to the
    /// queue every touched task that needs another provider. Pure
    /// bookkeeping under the locks; the I/O it implies is returned.
    pub(super) fn apply(
        &self,
        jobs: &mut BTreeMap<ContentId, Job>,
        verifier: &mut Verifier,
        touched: impl IntoIterator<Item = TaskKey>,
        actions: Vec<Action>,
    ) -> Effects {
        let mut effects = Effects::default();
        let mut touched: BTreeSet<TaskKey> = touched.into_iter().collect();
        let convicted = actions
            .iter()
            .any(|a| matches!(a, Action::Convicted { .. }));
        for action in actions {
            match action {
                Action::AskReveal { task, provider } => {
                    if let Some(job) = jobs.get_mut(&task.0) {
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
                    let Some(job) = jobs.get_mut(&task.0) else {
                        continue;
                    };
                    let mut record = None;
                    for provider in &providers {
                        if let Some(revealed) = job.replicas.revealed.remove(&(task.1, *provider)) {
                            // Every provider that returned the accepted
                            // result is paid for it.
                            job.unsettled.push(revealed.receipt);
                            record.get_or_insert(revealed.record);
                        }
                    }
                    // Decided: what was kept as evidence is no longer needed.
                    job.replicas.revealed.retain(|(t, _), _| *t != task.1);
                    job.replicas.commits.retain(|(t, _), _| *t != task.1);
                    match record {
                        Some(record) => effects.ops.push(Op::Put(
                            Table::Results,
                            result_key(&task.0, task.1),
                            serde_json::to_vec(&record).expect("a task record serializes"),
                        )),
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
                    if let Some(job) = jobs.get_mut(&task.0) {
                        job.replicas.disputes += 1;
                    }
                    effects.disputes.push((task.0, id));
                }
                Action::DisputeNext { .. } => {}
                Action::DisputeDone { id, verdict } => {
                    tracing::warn!("dispute {id} decided: {}", verdict.reason);
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
                    for job in jobs.values_mut() {
                        job.sched
                            .drop_provider(&provider, &format!("convicted: {offence:?}"));
                        // Nothing it returned in a job still open is paid.
                        job.unsettled.retain(|r| r.signer() != provider);
                    }
                    if let Some(job) = jobs.get_mut(&task.0) {
                        job.replicas.convicted.insert(provider);
                        self.evidence(job, provider, task.1, offence, &mut effects);
                    }
                    touched.insert(task);
                }
                Action::Reopen { task } => {
                    effects
                        .ops
                        .push(Op::Delete(Table::Results, result_key(&task.0, task.1)));
                    touched.insert(task);
                }
                Action::Clawback { provider, tasks } => {
                    for task in tasks {
                        if let Some(job) = jobs.get_mut(&task.0) {
                            job.unsettled.retain(|r| {
                                r.signer() != provider
                                    || r.payload_unchecked().task != u64::from(task.1)
                            });
                        }
                    }
                }
                Action::Failed { task, reason } => {
                    if let Some(job) = jobs.get_mut(&task.0) {
                        job.replicas.failed += 1;
                        job.reason = Some(format!("task {}: {reason}", task.1));
                    }
                }
            }
        }
        if convicted {
            // A conviction drops the cheat's replicas everywhere: any task
            // of any job may now need another provider.
            for job in jobs.keys() {
                touched.extend(verifier.wanting(job).into_iter().map(|t| (*job, t)));
            }
        }
        for task in touched {
            if !verifier.needs(&task) {
                continue;
            }
            if let Some(job) = jobs.get_mut(&task.0)
                && matches!(
                    job.sched.task(task.1),
                    Some(cairn_sched::TaskState::Done { .. })
                )
            {
                job.sched.requeue(task.1, verifier.providers_of(&task));
            }
        }
        effects
    }

    /// The ledger transaction that proves `provider`'s offence.
    fn evidence(
        &self,
        job: &Job,
        provider: PublicKey,
        task: u32,
        offence: Offence,
        effects: &mut Effects,
    ) {
        let commit = job.replicas.commits.get(&(task, provider));
        let revealed = job.replicas.revealed.get(&(task, provider));
        match offence {
            Offence::WrongResult { dispute } => {
                let Some(revealed) = revealed else {
                    tracing::warn!("no receipt to prove a wrong result with");
                    return;
                };
                // A side that lost by silence was never refereed.
                let (finding, winner) = self.findings.lock().get(&dispute).cloned().unwrap_or((
                    Finding {
                        position: 0,
                        agreed: [0; 32],
                        reached: [0; 32],
                        transcript: ContentId::of(b"a side did not answer in time"),
                    },
                    None,
                ));
                // The honest side's own receipt entitles it to the reward;
                // without one (a side lost by silence) the slash is burned.
                let winner_receipt = winner.and_then(|w| {
                    job.replicas
                        .revealed
                        .get(&(task, w))
                        .map(|r| r.receipt.clone())
                });
                let verdict = Verdict {
                    job: job.id,
                    task: u64::from(task),
                    wrong: revealed.receipt.payload_unchecked().digest,
                    winner: winner.unwrap_or(provider),
                    position: finding.position,
                    agreed: finding.agreed,
                    reached: finding.reached,
                    transcript: finding.transcript,
                };
                effects.txs.push(TxKind::Slash {
                    evidence: Box::new(Evidence::WrongResult {
                        receipt: revealed.receipt.clone(),
                        verdict: Signed::sign(&self.shared.key, VERDICT_NAMESPACE, verdict),
                        // Settlement waits for the end of a job, so nothing
                        // of a job still open has been paid yet.
                        clawback: Vec::new(),
                        winner_receipt,
                    }),
                });
            }
            Offence::BadReveal => {
                if let (Some(commit), Some(revealed)) = (commit, revealed) {
                    effects.txs.push(TxKind::Slash {
                        evidence: Box::new(Evidence::BadReveal {
                            commit: commit.clone(),
                            opening: revealed.opening.clone(),
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

    /// Does what [`Requester::apply`] left to do: stores results (before
    /// returning, so nothing acknowledged is lost), and starts ledger
    /// submissions and disputes in the background.
    pub(super) async fn carry_out(self: &Arc<Self>, effects: Effects) -> Result<(), String> {
        if !effects.ops.is_empty() {
            let db = self.shared.db.clone();
            let ops = effects.ops;
            tokio::task::spawn_blocking(move || db.write(&ops))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        for tx in effects.txs {
            if let Err(e) = self.shared.ledger.send(tx) {
                tracing::warn!("sending evidence to the ledger: {e}");
            }
        }
        for (lease, task, commit) in effects.challenges {
            tokio::spawn(self.clone().challenge(lease, task, commit));
        }
        for (job, id) in effects.disputes {
            self.clone().spawn_dispute(job, id);
        }
        Ok(())
    }

    /// Referees a dispute in the background. A plain function, so the
    /// dispute's future (which carries out its own verdict) does not
    /// contain itself.
    fn spawn_dispute(self: Arc<Self>, job: ContentId, id: u64) {
        tokio::spawn(self.referee_dispute(job, id));
    }

    /// Challenges a withheld reveal on chain, and slashes the provider once
    /// the window has passed without its opening.
    pub(super) async fn challenge(
        self: Arc<Self>,
        lease: ContentId,
        task: u64,
        commit: Signed<Commit>,
    ) {
        let ledger = &self.shared.ledger;
        let start = ledger.link().height().await.unwrap_or(0);
        let challenged = match ledger.send(TxKind::Challenge { commit }) {
            Ok(ticket) => ticket.fate().await,
            Err(e) => Err(e),
        };
        if let Err(e) = challenged {
            tracing::warn!("challenging a withheld reveal: {e}");
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match ledger.link().height().await {
                Ok(height) if height > start + REVEAL_WINDOW_BLOCKS + 1 => break,
                _ => {}
            }
        }
        let evidence = Box::new(cairn_ledger::Evidence::NoReveal { lease, task });
        if let Err(e) = ledger.send(TxKind::Slash { evidence }) {
            tracing::warn!("slashing a withheld reveal: {e}");
        }
    }

    /// Plays dispute `id` to its end: asks both sides what the game needs,
    /// and referees the last segment by re-executing it.
    async fn referee_dispute(self: Arc<Self>, job_id: ContentId, id: u64) {
        loop {
            let state = {
                let jobs = self.jobs.lock();
                let verifier = self.verifier.lock();
                let Some((task, sides, game)) = verifier.game(id) else {
                    return;
                };
                let Some(job) = jobs.get(&job_id) else { return };
                // Each side is asked under the lease its result names.
                let leases: Vec<Option<ContentId>> = sides
                    .iter()
                    .map(|p| {
                        job.replicas
                            .revealed
                            .get(&(task.1, *p))
                            .map(|r| r.receipt.payload_unchecked().lease)
                    })
                    .collect();
                let asks: Vec<Option<DisputeAsk>> = Side::BOTH
                    .iter()
                    .map(|&side| match game.need() {
                        Need::Lengths if game.awaits(side) => Some(DisputeAsk::Length),
                        Need::Hashes { .. } if game.awaits(side) => {
                            Some(DisputeAsk::Hashes(game.asked_of(side)))
                        }
                        _ => None,
                    })
                    .collect();
                let claims = format!("{:?}{:?}", game.claims(Side::A), game.claims(Side::B));
                (
                    task.1,
                    *sides,
                    leases,
                    asks,
                    game.need().clone(),
                    ContentId::of(claims.as_bytes()),
                )
            };
            let (task, sides, leases, asks, need, transcript) = state;
            match need {
                Need::Done(_) => return,
                Need::Referee(segment) => {
                    let reached = match self.re_execute(job_id, id, task, &segment, &sides).await {
                        Ok(hash) => hash,
                        Err(e) => {
                            tracing::warn!("refereeing dispute {id}: {e}");
                            tokio::time::sleep(Duration::from_millis(DISPUTE_RETRY_MS)).await;
                            continue;
                        }
                    };
                    let winner = sides
                        .iter()
                        .zip(segment.claims)
                        .find(|(_, claim)| *claim == reached)
                        .map(|(p, _)| *p);
                    self.findings.lock().insert(
                        id,
                        (
                            Finding {
                                position: segment.position,
                                agreed: segment.agreed.unwrap_or_default(),
                                reached,
                                transcript,
                            },
                            winner,
                        ),
                    );
                    self.play(job_id, |v, now| v.dispute_referee(id, reached, now))
                        .await;
                }
                Need::Lengths | Need::Hashes { .. } => {
                    let mut progressed = false;
                    let questions =
                        sides.iter().zip(&leases).zip(asks).filter_map(
                            |((provider, lease), ask)| Some((*provider, (*lease)?, ask?)),
                        );
                    let answers =
                        futures::future::join_all(questions.map(|(provider, lease, ask)| {
                            let request = Request::Dispute { lease, task, ask };
                            let net = self.shared.net.clone();
                            async move {
                                let peer = cairn_net::peer_id(&provider);
                                let answer = net.request(peer, proto::to_bytes(&request)).await;
                                (provider, answer.map(proto::response))
                            }
                        }))
                        .await;
                    for (provider, answer) in answers {
                        match answer {
                            Ok(Ok(Response::TraceLength(n))) => {
                                progressed = true;
                                self.play(job_id, |v, now| v.dispute_length(id, &provider, n, now))
                                    .await;
                            }
                            Ok(Ok(Response::Hashes(hashes))) => {
                                progressed = true;
                                self.play(job_id, |v, now| {
                                    v.dispute_hashes(id, &provider, &hashes, now)
                                })
                                .await;
                            }
                            Ok(Ok(Response::Preparing)) => tracing::debug!(
                                "dispute {id}: {} is tracing the task",
                                provider.short()
                            ),
                            other => tracing::info!(
                                "dispute {id}: {} did not answer: {other:?}",
                                provider.short()
                            ),
                        }
                    }
                    if !progressed {
                        // The deadline decides against a side that stays
                        // silent (the verifier's tick).
                        tokio::time::sleep(Duration::from_millis(DISPUTE_RETRY_MS)).await;
                    }
                }
            }
        }
    }

    /// One move of a dispute, its consequences applied and carried out.
    async fn play(
        self: &Arc<Self>,
        job_id: ContentId,
        mv: impl FnOnce(&mut Verifier, u64) -> Result<Vec<Action>, cairn_verify::VerifyError>,
    ) {
        let now = now_ms();
        let effects = {
            let mut jobs = self.jobs.lock();
            let mut verifier = self.verifier.lock();
            let actions = match mv(&mut verifier, now) {
                Ok(actions) => actions,
                Err(e) => {
                    tracing::info!(job = %job_id.short(), "dispute move refused: {e}");
                    return;
                }
            };
            self.apply(&mut jobs, &mut verifier, [], actions)
        };
        if let Err(e) = self.carry_out(effects).await {
            tracing::error!("carrying out a dispute's verdict: {e}");
        }
    }

    /// The referee's move: from the agreed state, run one transition. The
    /// agreed state comes from either side (checked against its hash), or,
    /// if neither supplies it, from re-running the task up to it here.
    async fn re_execute(
        self: &Arc<Self>,
        job_id: ContentId,
        dispute: u64,
        task: u32,
        segment: &Segment,
        sides: &[PublicKey; 2],
    ) -> Result<StateHash, String> {
        let (submission, terms) = {
            let jobs = self.jobs.lock();
            let job = jobs.get(&job_id).ok_or("the job is gone")?;
            (job.record.submission.clone(), job.terms.clone())
        };
        let spec = submission
            .tasks
            .get(task as usize)
            .ok_or("no such task")?
            .clone();
        let mut snapshot = None;
        if let Some(agreed) = segment.agreed {
            let mut preparing = false;
            for provider in sides {
                match self
                    .fetch_snapshot(job_id, task, *provider, segment.position)
                    .await
                {
                    Ok(Some(s)) if s.hash() == agreed => {
                        snapshot = Some(s);
                        break;
                    }
                    Ok(Some(_)) => tracing::info!("a snapshot that is not the agreed state"),
                    Ok(None) => preparing = true,
                    Err(e) => tracing::info!("no snapshot from {}: {e}", provider.short()),
                }
            }
            // A side building the state (it re-runs the task up to it) is
            // waited for as long as tracing the task may take; only then
            // does the referee rebuild it, at the cost of the task.
            if snapshot.is_none() && preparing {
                let now = now_ms();
                let since = *self.snapshot_waits.lock().entry(dispute).or_insert(now);
                let allowance = {
                    let verifier = self.verifier.lock();
                    let params = verifier.params();
                    params.dispute_round_timeout_ms
                        + terms.limits.fuel / params.dispute_trace_fuel_per_ms
                };
                if now < since + allowance {
                    return Err("a side is building the agreed state".into());
                }
            }
        }
        self.snapshot_waits.lock().remove(&dispute);
        let runtime = match self.runtime.get() {
            Some(runtime) => runtime.clone(),
            None => {
                let runtime = Arc::new(self.shared.wasm_runtime()?);
                self.runtime.get_or_init(|| runtime).clone()
            }
        };
        let module = self
            .shared
            .blobs
            .read(&terms.module.id)
            .map_err(|e| e.to_string())?;
        let dir = self
            .referee_dir
            .join(job_id.to_string())
            .join(format!("{task}-{}", segment.position));
        let input_dir = self.referee_dir.join(job_id.to_string()).join("input");
        let mut inputs = Vec::new();
        for input in &terms.inputs {
            let source = self
                .shared
                .blobs
                .path(&input.id)
                .ok_or("an input blob is missing")?;
            inputs.push((input.name.clone(), source));
        }
        let agreed = segment.agreed;
        let position = segment.position;
        let hash = tokio::task::spawn_blocking(move || -> Result<StateHash, String> {
            runtime.load(&module).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&input_dir).map_err(|e| e.to_string())?;
            for (name, source) in &inputs {
                let target = cairn_job::input_name_path(&input_dir, name)?;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                if !target.exists() {
                    std::fs::copy(source, &target).map_err(|e| e.to_string())?;
                }
            }
            let seed =
                cairn_wire::parse_hex32(&spec.seed, "task seed").map_err(|e| e.to_string())?;
            let limits = terms.limits.for_dispute();
            let run = |n: &str, f: &mut dyn FnMut(&Task<'_>) -> Result<(), String>| {
                let output = dir.join(n);
                let _ = std::fs::remove_dir_all(&output);
                std::fs::create_dir_all(&output).map_err(|e| e.to_string())?;
                f(&Task {
                    module: terms.module.id,
                    args: &spec.args,
                    seed,
                    input_dir: (!terms.inputs.is_empty()).then_some(input_dir.as_path()),
                    output_dir: &output,
                    expected_outputs: &spec.outputs,
                    limits,
                })
            };
            if let (Some(agreed), None) = (agreed, &snapshot) {
                // Neither side supplied the state both claimed: rebuild it.
                // If the task does not reach it, both sides claimed a state
                // that does not exist (colluders withholding it, so that no
                // referee could ever step from it); stepping from the real
                // one shows both wrong, and the dispute ends.
                run("rebuild", &mut |t| {
                    let own = runtime
                        .snapshot_at(t, position)
                        .map_err(|e| e.to_string())?;
                    if own.hash() != agreed {
                        tracing::warn!(
                            "both sides claimed a state at position {position} this task never reaches"
                        );
                    }
                    snapshot = Some(own);
                    Ok(())
                })?;
            }
            let mut reached = None;
            run("step", &mut |t| {
                reached = Some(
                    runtime
                        .referee(t, snapshot.as_ref())
                        .map_err(|e| e.to_string())?
                        .hash,
                );
                Ok(())
            })?;
            let _ = std::fs::remove_dir_all(&dir);
            reached.ok_or_else(|| "the referee reached nothing".into())
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(hash)
    }

    /// A side's state at `position`, fetched as a verified blob, or `None`
    /// while the side is building it.
    async fn fetch_snapshot(
        self: &Arc<Self>,
        job_id: ContentId,
        task: u32,
        provider: PublicKey,
        position: u64,
    ) -> Result<Option<Snapshot>, String> {
        let lease = {
            let jobs = self.jobs.lock();
            let job = jobs.get(&job_id).ok_or("the job is gone")?;
            job.replicas
                .revealed
                .get(&(task, provider))
                .map(|r| r.receipt.payload_unchecked().lease)
                .ok_or("no result from that side")?
        };
        let peer: PeerId = cairn_net::peer_id(&provider);
        let request = Request::Dispute {
            lease,
            task,
            ask: DisputeAsk::Snapshot(position),
        };
        let answer = self
            .shared
            .net
            .request(peer, proto::to_bytes(&request))
            .await
            .map_err(|e| e.to_string())?;
        let file = match proto::response(answer) {
            Ok(Response::Snapshot(file)) => file,
            Ok(Response::Preparing) => return Ok(None),
            _ => return Err("no snapshot in the answer".into()),
        };
        let limit = self
            .jobs
            .lock()
            .get(&job_id)
            .map(|job| {
                let l = &job.terms.limits;
                (l.memory_bytes + l.output_bytes + 2 * l.stdout_bytes + (1 << 20)) as usize
            })
            .unwrap_or(0);
        if file.size as usize > limit {
            return Err(format!(
                "a snapshot of {} bytes is over the limit",
                file.size
            ));
        }
        fetch_blob(&self.shared, peer, file.id, file.size).await?;
        let bytes = self
            .shared
            .blobs
            .read(&file.id)
            .map_err(|e| e.to_string())?;
        Snapshot::from_bytes(&bytes, limit).map(Some)
    }
}
