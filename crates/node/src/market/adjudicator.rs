//! The validators' side of a dispute: judging its last step.
//!
//! A requester that has bisected a dispute down to one step brings the
//! [`Case`] to every validator. A validator trusts the requester for
//! nothing: it holds the accused to its own signatures (its receipt, and
//! trace claims naming what it ran and its states at the step's two ends),
//! checks on its ledger that the lease is the accused's and the asker its
//! requester, fetches the program, the inputs and the state the accused
//! claimed (checked against the claimed hash), runs the one step, and signs
//! the verdict only if the step reaches another state than the accused
//! signed. An honest provider never signs an impossible step, so no quorum
//! of honest validators can be brought to convict it.
//!
//! A side that lost its dispute without a step to be held to (it fell
//! silent, or broke the rules) is judged on its whole task instead: its
//! receipt names the run (terms and assignment) it signed for, and a
//! validator re-runs that run from its start and signs only if the result
//! is another than the receipt's. An honest side that was merely offline
//! is never convicted so, since its result is the run's.
//!
//! A step can take long (a program without checkpoints is one step from
//! its start-up to its end), longer than a request may wait: a validator
//! judges in the background and answers `Preparing` until it has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cairn_exec::{Runtime as _, Snapshot, Task, WasmRuntime};
use cairn_ledger::{RECEIPT_NAMESPACE, State, VERDICT_NAMESPACE, Verdict};
use cairn_net::PeerId;
use cairn_verify::StateHash;
use cairn_wire::{Attested, ContentId, PublicKey, Signature, Signed};
use parking_lot::Mutex;

use super::proto::{self, Assignment, CLAIM_NAMESPACE, Case, Party, Response, Terms, TraceClaim};
use super::{LedgerLink, Shared, fetch_blob};

/// Judgments kept (done or running): a few disputes' worth. A requester
/// asks again until it has its answer, so a finished one stays until the
/// table is full.
const JUDGMENTS_MAX: usize = 64;

/// Steps a validator runs at once; more cases wait their turn.
const STEPS_AT_ONCE: usize = 2;

/// The most memory a case's task may ask a validator for.
const CASE_MEMORY_BYTES_MAX: u64 = 4 << 30;

/// What a case's checks found, before anything runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Examined {
    /// The job the accused's lease is for.
    pub job: ContentId,
    /// The state the accused claimed at the step's start (`None`: the task
    /// itself).
    pub from: Option<StateHash>,
    /// The state the accused claimed at the step's end (for the whole
    /// task, its result).
    pub to: StateHash,
}

/// The verdict on `case` of `job`, once the step reached `reached`: what
/// each validator signs and what the requester gathers signatures for, so
/// both build it here.
pub(super) fn verdict(
    job: ContentId,
    case: &Case,
    from: Option<StateHash>,
    reached: StateHash,
    winner: PublicKey,
) -> Verdict {
    let receipt = case.accused.receipt.payload_unchecked();
    let run = receipt.run;
    Verdict {
        job,
        task: receipt.task,
        wrong: receipt.digest,
        accused: case.accused.receipt.signer(),
        lease: receipt.lease,
        winner,
        position: case.position,
        agreed: from.unwrap_or_default(),
        reached,
        run,
    }
}

/// The hash `claims` state at `position`, if one of them states it.
pub(super) fn claimed(claims: &[Signed<TraceClaim>], position: u64) -> Option<StateHash> {
    claims
        .iter()
        .find_map(|c| c.payload_unchecked().hash_at(position))
}

/// The fewest of `claims` that state both `position` (unless 0) and
/// `position + 1`: what a case carries of one side.
pub(super) fn covering(claims: &[Signed<TraceClaim>], position: u64) -> Vec<Signed<TraceClaim>> {
    let mut out: Vec<Signed<TraceClaim>> = Vec::new();
    for p in [position, position + 1] {
        if p == 0 || claimed(&out, p).is_some() {
            continue;
        }
        if let Some(c) = claims
            .iter()
            .find(|c| c.payload_unchecked().hash_at(p).is_some())
        {
            out.push(c.clone());
        }
    }
    out
}

/// Checks `party`'s receipt and claims (none needed for the whole task):
/// its signatures, one execution of the case's task, `run`, under its own
/// lease. Returns the party's key.
fn check_party(party: &Party, run: &[u8; 32], task: u64, whole: bool) -> Result<PublicKey, String> {
    let signer = party.receipt.signer();
    let receipt = party
        .receipt
        .verify(RECEIPT_NAMESPACE)
        .map_err(|e| format!("receipt: {e}"))?;
    if receipt.task != task {
        return Err("the receipt is for another task".into());
    }
    if receipt.run != *run {
        return Err("the receipt names another program, inputs or arguments".into());
    }
    let Some(first) = party.claims.first() else {
        return match whole {
            true => Ok(signer),
            false => Err("no signed claims".into()),
        };
    };
    for claim in &party.claims {
        if claim.signer() != signer {
            return Err("a claim signed by another key than the receipt".into());
        }
        let c = claim
            .verify(CLAIM_NAMESPACE)
            .map_err(|e| format!("claim: {e}"))?;
        if !c.same_execution(first.payload_unchecked()) {
            return Err("claims about different executions".into());
        }
        if (c.lease, c.task, c.digest) != (receipt.lease, receipt.task, receipt.digest) {
            return Err("a claim about another lease, task or result".into());
        }
        if c.run != *run {
            return Err("a claim about another program, inputs or arguments".into());
        }
    }
    Ok(signer)
}

/// Checks `case`, brought by `asker`, against this validator's ledger
/// `state`, before anything is fetched or run.
pub(super) fn examine(
    state: &State,
    me: &PublicKey,
    asker: &PublicKey,
    case: &Case,
) -> Result<Examined, String> {
    if !state.validators().contains(me) {
        return Err("this node is not a validator".into());
    }
    let task = u64::from(case.assignment.task);
    let run = proto::run_digest(&case.terms, &case.assignment);
    let whole = case.whole();
    let accused =
        check_party(&case.accused, &run, task, whole).map_err(|e| format!("accused: {e}"))?;
    let receipt = case.accused.receipt.payload_unchecked();
    let lease = state
        .lease(&receipt.lease)
        .ok_or("the accused's lease is not on the ledger")?;
    if lease.provider != accused {
        return Err("the accused is not the lease's provider".into());
    }
    if lease.requester != *asker {
        return Err("only the job's requester brings its disputes".into());
    }
    let limits = &case.terms.limits;
    if limits.fuel > lease.fuel_per_task_max || limits.memory_bytes > CASE_MEMORY_BYTES_MAX {
        return Err("the task asks for more than its lease or a validator allows".into());
    }
    if whole {
        if case.state.is_some() {
            return Err("the whole task is re-run from its start: no state comes with it".into());
        }
        return Ok(Examined {
            job: lease.job,
            from: None,
            to: *receipt.digest.as_bytes(),
        });
    }
    let positions = case.accused.claims[0].payload_unchecked().positions;
    if case.position.saturating_add(1) >= positions {
        // Past its last position a trace only repeats its result.
        return Err("the accused's trace has ended before that step".into());
    }
    let from = match case.position {
        0 => None,
        p => Some(claimed(&case.accused.claims, p).ok_or("no claim of the step's start")?),
    };
    if from.is_some() != case.state.is_some() {
        return Err("the state at the step's start must come with the case".into());
    }
    let to =
        claimed(&case.accused.claims, case.position + 1).ok_or("no claim of the step's end")?;
    Ok(Examined {
        job: lease.job,
        from,
        to,
    })
}

/// The case's winner: the other side, if it signed the state the step
/// reached as its own; otherwise the accused (the whole slash is burned).
pub(super) fn winner(
    state: &State,
    case: &Case,
    job: &ContentId,
    reached: &StateHash,
) -> Result<PublicKey, String> {
    let accused = case.accused.receipt.signer();
    let Some(party) = &case.winner else {
        return Ok(accused);
    };
    let run = proto::run_digest(&case.terms, &case.assignment);
    let task = u64::from(case.assignment.task);
    let whole = case.whole();
    let key = check_party(party, &run, task, whole).map_err(|e| format!("winner: {e}"))?;
    let lease = state
        .lease(&party.receipt.payload_unchecked().lease)
        .ok_or("the winner's lease is not on the ledger")?;
    if lease.provider != key || lease.job != *job || key == accused || key == lease.requester {
        return Err("the winner is not another provider of the job".into());
    }
    let claims = match whole {
        true => Some(*party.receipt.payload_unchecked().digest.as_bytes()),
        false => claimed(&party.claims, case.position + 1),
    };
    if claims != Some(*reached) {
        return Err("the winner did not claim the state the step reaches".into());
    }
    Ok(key)
}

/// Lays out a task's inputs and a scratch output folder under `work`, and
/// runs `f` on it: how a referee and a validator re-run part of a task.
/// Blocking.
#[allow(clippy::too_many_arguments)]
pub(super) fn with_task<T>(
    runtime: &WasmRuntime,
    module: &[u8],
    inputs: &[(String, PathBuf)],
    terms: &Terms,
    assignment: &Assignment,
    input_dir: &Path,
    output_dir: &Path,
    f: impl FnOnce(&WasmRuntime, &Task<'_>) -> Result<T, String>,
) -> Result<T, String> {
    runtime.load(module).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(input_dir).map_err(|e| e.to_string())?;
    for (name, source) in inputs {
        let target = cairn_job::input_name_path(input_dir, name)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        if !target.exists() {
            std::fs::copy(source, &target).map_err(|e| e.to_string())?;
        }
    }
    let _ = std::fs::remove_dir_all(output_dir);
    std::fs::create_dir_all(output_dir).map_err(|e| e.to_string())?;
    let done = f(
        runtime,
        &Task {
            module: terms.module.id,
            args: &assignment.args,
            seed: assignment.seed,
            input_dir: (!inputs.is_empty()).then_some(input_dir),
            output_dir,
            expected_outputs: &assignment.outputs,
            limits: assignment.limits(&terms.limits).for_dispute(),
        },
    );
    let _ = std::fs::remove_dir_all(output_dir);
    done
}

/// What re-running part of `assignment` with `terms` needs from this
/// node: a runtime (made once, in `cell`), the program, and where each
/// input is (the terms' and the task's own).
#[allow(clippy::type_complexity)]
pub(super) fn step_parts(
    shared: &Shared,
    cell: &OnceLock<Arc<WasmRuntime>>,
    terms: &Terms,
    assignment: &Assignment,
) -> Result<(Arc<WasmRuntime>, Vec<u8>, Vec<(String, PathBuf)>), String> {
    let runtime = match cell.get() {
        Some(runtime) => runtime.clone(),
        None => {
            let runtime = Arc::new(shared.wasm_runtime()?);
            cell.get_or_init(|| runtime).clone()
        }
    };
    let module = shared
        .blobs
        .read(&terms.module.id)
        .map_err(|e| e.to_string())?;
    let mut inputs = Vec::new();
    for input in terms.inputs.iter().chain(&assignment.inputs) {
        let path = shared
            .blobs
            .path(&input.id)
            .ok_or("an input blob is missing")?;
        inputs.push((input.name.clone(), path));
    }
    Ok((runtime, module, inputs))
}

/// The largest snapshot of a task with these terms (never past the
/// largest blob a node stores, whatever the terms say).
pub(super) fn snapshot_bytes_max(terms: &Terms) -> usize {
    let l = &terms.limits;
    let bytes = l
        .memory_bytes
        .saturating_add(l.output_bytes)
        .saturating_add(l.stdout_bytes.saturating_mul(2))
        .saturating_add(1 << 20)
        .min(super::BLOB_BYTES_MAX);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// A validator's judge of cases.
pub(super) struct Adjudicator {
    shared: Arc<Shared>,
    dir: PathBuf,
    runtime: OnceLock<Arc<WasmRuntime>>,
    /// Judgments by case: running (`None`) or done.
    judgments: Mutex<BTreeMap<ContentId, Option<Result<Signature, String>>>>,
    steps: tokio::sync::Semaphore,
}

impl Adjudicator {
    pub fn new(shared: Arc<Shared>, dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            shared,
            dir,
            runtime: OnceLock::new(),
            judgments: Mutex::new(BTreeMap::new()),
            steps: tokio::sync::Semaphore::new(STEPS_AT_ONCE),
        })
    }

    /// Answers `asker` (at `from`) about `case`: the signature once judged
    /// against the accused, `Preparing` while judging (or while too busy to
    /// start: ask again), or why not.
    pub async fn on_case(self: &Arc<Self>, from: PeerId, asker: PublicKey, case: Case) -> Response {
        let mut bytes = proto::to_bytes(&case);
        bytes.extend_from_slice(asker.as_bytes());
        let key = ContentId::of(&bytes);
        {
            let mut judgments = self.judgments.lock();
            match judgments.get(&key) {
                Some(Some(Ok(signature))) => return Response::Attestation(*signature),
                Some(Some(Err(e))) => return Response::Refused(e.clone()),
                Some(None) => return Response::Preparing,
                None => {}
            }
            if judgments.len() >= JUDGMENTS_MAX {
                let done: Option<ContentId> =
                    judgments.iter().find(|(_, j)| j.is_some()).map(|(k, _)| *k);
                match done {
                    Some(done) => {
                        judgments.remove(&done);
                    }
                    None => return Response::Preparing,
                }
            }
            judgments.insert(key, None);
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Its own task, so a panic in it is an error here, not a slot
            // left running for ever.
            let judging = this.clone();
            let judged = tokio::spawn(async move { judging.judge(from, asker, case).await })
                .await
                .unwrap_or_else(|e| Err(Refusal::Later(e.to_string())));
            let mut judgments = this.judgments.lock();
            match judged {
                Ok(signature) => {
                    judgments.insert(key, Some(Ok(signature)));
                }
                Err(Refusal::Final(e)) => {
                    tracing::info!("a case from {} is refused: {e}", asker.short());
                    judgments.insert(key, Some(Err(e)));
                }
                Err(Refusal::Later(e)) => {
                    // Fetching, reading or running failed: judged afresh
                    // when asked again.
                    tracing::info!("a case from {} is not judged yet: {e}", asker.short());
                    judgments.remove(&key);
                }
            }
        });
        Response::Preparing
    }

    /// Judges `case`: checks it, fetches what the step needs from the asker,
    /// runs the step, and signs the verdict if the accused's claim is wrong.
    async fn judge(
        self: &Arc<Self>,
        from: PeerId,
        asker: PublicKey,
        case: Case,
    ) -> Result<Signature, Refusal> {
        let LedgerLink::Local(ledger) = self.shared.ledger.link() else {
            return Err(Refusal::Final("this node is not a validator".into()));
        };
        let me = self.shared.key.public();
        let examined = ledger
            .view(|state| examine(state, &me, &asker, &case))
            .map_err(Refusal::Final)?;
        let whole = case.whole();
        if whole && let Some(party) = &case.winner {
            // A whole run is long: a winner that could not be named by
            // any result is refused before it, not after.
            let own = *party.receipt.payload_unchecked().digest.as_bytes();
            ledger
                .view(|state| winner(state, &case, &examined.job, &own))
                .map_err(Refusal::Final)?;
        }
        let state_max = snapshot_bytes_max(&case.terms);
        if case
            .state
            .as_ref()
            .is_some_and(|f| f.size > state_max as u64)
        {
            return Err(Refusal::Final("the state brought is over its limit".into()));
        }
        // Nothing is fetched or read before its turn: a queue of cases
        // holds no state in memory.
        let _turn = self
            .steps
            .acquire()
            .await
            .map_err(|e| Refusal::Later(e.to_string()))?;
        let files = std::iter::once(&case.terms.module)
            .chain(&case.terms.inputs)
            .chain(&case.assignment.inputs)
            .chain(&case.state);
        for file in files {
            // Held already (a validator that is also the requester holds
            // them all), or fetched from the asker and checked by id.
            if !self.shared.blobs.has(&file.id) {
                fetch_blob(&self.shared, from, file.id, file.size)
                    .await
                    .map_err(|e| Refusal::Later(e.into()))?;
            }
        }
        let snapshot = match (&case.state, examined.from) {
            (Some(file), Some(from)) => {
                let bytes = self
                    .shared
                    .blobs
                    .read(&file.id)
                    .map_err(|e| Refusal::Later(e.to_string()))?;
                let snapshot = Snapshot::from_bytes(&bytes, state_max).map_err(Refusal::Final)?;
                if snapshot.hash() != from {
                    return Err(Refusal::Final(
                        "the state brought is not the one the accused claimed".into(),
                    ));
                }
                Some(snapshot)
            }
            _ => None,
        };
        let judged = self.step(&case, snapshot).await;
        if let Some(file) = &case.state
            && !self.shared.pinned.lock().contains(&file.id)
        {
            // A state is of use for this case only.
            let _ = self.shared.blobs.remove(&file.id);
        }
        let reached = judged?;
        if reached == examined.to {
            return Err(Refusal::Final(match whole {
                true => "the accused's result holds: the whole task reaches it".into(),
                false => "the accused's step holds: it reaches what it claimed".into(),
            }));
        }
        let winner = ledger
            .view(|state| winner(state, &case, &examined.job, &reached))
            .map_err(Refusal::Final)?;
        let verdict = verdict(examined.job, &case, examined.from, reached, winner);
        match whole {
            true => tracing::info!(
                "attesting that {}'s result of task {} is wrong: the whole task reaches another",
                case.accused.receipt.signer().short(),
                verdict.task
            ),
            false => tracing::info!(
                "attesting that {} stepped wrongly from position {} of task {}",
                case.accused.receipt.signer().short(),
                case.position,
                verdict.task
            ),
        }
        Ok(Attested::signature(
            &self.shared.key,
            VERDICT_NAMESPACE,
            &verdict,
        ))
    }

    /// Runs the case's one step from `snapshot` (the task's start-up when
    /// `None`) and returns the state reached; for the whole task, runs it
    /// and returns its result's digest.
    async fn step(
        self: &Arc<Self>,
        case: &Case,
        snapshot: Option<Snapshot>,
    ) -> Result<StateHash, Refusal> {
        let (runtime, module, inputs) =
            step_parts(&self.shared, &self.runtime, &case.terms, &case.assignment)
                .map_err(Refusal::Later)?;
        // A folder of its own per case: cases run side by side.
        let work = self
            .dir
            .join(ContentId::of(&proto::to_bytes(case)).to_string());
        let input_dir = work.join("input");
        let output_dir = work.join("output");
        let (terms, assignment) = (case.terms.clone(), case.assignment.clone());
        let whole = case.whole();
        tokio::task::spawn_blocking(move || {
            let reached = with_task(
                &runtime,
                &module,
                &inputs,
                &terms,
                &assignment,
                &input_dir,
                &output_dir,
                |runtime, task| match whole {
                    true => runtime
                        .run(task)
                        .map(|r| *r.digest.as_bytes())
                        .map_err(|e| e.to_string()),
                    false => runtime
                        .referee(task, snapshot.as_ref())
                        .map(|t| t.hash)
                        .map_err(|e| e.to_string()),
                },
            );
            let _ = std::fs::remove_dir_all(&work);
            // A trap or running out of fuel is a state like any other;
            // what fails here is the step itself (a program that does not
            // load, a state that does not restore), and running it again
            // would fail the same way.
            reached.map_err(|e| Refusal::Final(format!("the step could not be run: {e}")))
        })
        .await
        .map_err(|e| Refusal::Later(e.to_string()))?
    }
}

/// Why a case was not attested.
#[derive(Debug)]
pub(super) enum Refusal {
    /// For good: the case does not hold.
    Final(String),
    /// Not now: fetching, reading or running failed; asked again, it is
    /// judged afresh.
    Later(String),
}

#[cfg(test)]
mod tests;
