//! The requester's side of verification: carrying out what the verifier
//! (`cairn-verify`, pure) decides — asking for reveals, storing accepted
//! results, running replicas elsewhere, refereeing disputes by re-executing
//! one segment, and sending the evidence that slashes a cheater to the
//! ledger.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_exec::{Snapshot, Task, WasmRuntime};
use cairn_ledger::{Commit, Evidence, TxKind, VERDICT_NAMESPACE, WHOLE_TASK};
use cairn_net::PeerId;
use cairn_store::{Op, Table};
use cairn_verify::{Action, Need, Segment, Side, StateHash, Verifier};
use cairn_wire::{Attested, ContentId, PublicKey, Signed};

use super::adjudicator::{claimed, covering, snapshot_bytes_max, step_parts, verdict, with_task};
use super::proto::{self, Case, DisputeAsk, FileRef, Party, Request, Response};
use cairn_roles::requester::{Effects, Finding, Pending};

use super::requester::{Requester, not_superseded, write_op};
use super::{Counters, fetch_blob, now_ms};

/// How long a dispute waits before asking a silent side again.
const DISPUTE_RETRY_MS: u64 = 500;
/// How long a case waits before asking the validators that have not
/// answered again.
const CASE_RETRY_MS: u64 = 1_000;
/// How long a case is brought before it is given up: long enough for a
/// validator to run a step of a day-long task that has no checkpoints.
const CASE_PATIENCE_MS: u64 = 25 * 3_600 * 1_000;
/// The shortest pause between looks at a challenge the requester made;
/// the longest is sixty of them (a window lasts hours on a real chain).
const CHALLENGE_POLL: Duration = Duration::from_millis(500);

/// How a `case-crasher` exits (tests of stored cases look for it).
pub(super) const CASE_CRASHER_EXIT: i32 = 75;

/// A case as the requester keeps it while it brings it: what the
/// validators are asked, and the state the step reached (the rest of the
/// verdict follows from the case).
pub(super) struct StoredCase {
    pub job: ContentId,
    pub dispute: u64,
    pub reached: StateHash,
    pub case: Case,
}

impl StoredCase {
    /// Its key: job, dispute (big-endian), accused.
    fn key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(72);
        key.extend_from_slice(self.job.as_bytes());
        key.extend_from_slice(&self.dispute.to_be_bytes());
        key.extend_from_slice(self.case.accused.receipt.signer().as_bytes());
        key
    }

    /// Its value: the state reached, then the case's encoding.
    fn value(&self) -> Vec<u8> {
        let mut value = self.reached.to_vec();
        value.extend_from_slice(&proto::to_bytes(&self.case));
        value
    }

    /// The case stored under `key` as `value`.
    pub(super) fn decode(key: &[u8], value: &[u8]) -> Result<Self, String> {
        let bad = |what: &str| format!("a stored case: {what}");
        let (job, rest) = key.split_at_checked(32).ok_or_else(|| bad("key"))?;
        let dispute = rest
            .get(..8)
            .and_then(|d| d.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| bad("key"))?;
        let (reached, case) = value.split_at_checked(32).ok_or_else(|| bad("value"))?;
        Ok(Self {
            job: ContentId::from_digest(job.try_into().map_err(|_| bad("key"))?),
            dispute,
            reached: reached.try_into().map_err(|_| bad("value"))?,
            case: proto::from_bytes(case).map_err(|e| bad(&e.to_string()))?,
        })
    }
}

/// The first pause before a failed store write is tried again; each
/// failure doubles it, up to [`STORE_RETRY_MAX`].
const STORE_RETRY_FIRST: Duration = Duration::from_millis(500);
const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

impl Requester {
    /// Carries out what the core decided: stores results (before
    /// returning, so nothing acknowledged is lost), wakes the jobs it
    /// changed, publishes orders, and starts ledger submissions and
    /// disputes in the background.
    pub(super) async fn carry_out(self: &Arc<Self>, effects: Effects) -> Result<(), String> {
        for order in effects.orders {
            self.shared
                .net
                .publish(proto::ORDERS_TOPIC, order.to_bytes());
        }
        if !effects.writes.is_empty() {
            let mut written = self.written.lock().await;
            let newer = not_superseded(&mut written, effects.seq, &effects.writes);
            let ops: Arc<Vec<_>> = Arc::new(newer.into_iter().map(write_op).collect());
            // The core has decided on these: a write that fails (a full
            // disk) is tried again until it holds, rather than dropped, so
            // no accepted result is lost; until then nothing it carries
            // counts as done and its job does not settle.
            let mut pause = STORE_RETRY_FIRST;
            loop {
                let (db, batch) = (self.shared.db.clone(), ops.clone());
                // A write that panicked is tried again like one that
                // failed: the keys above already count it as written.
                let written = match tokio::task::spawn_blocking(move || db.write(&batch)).await {
                    Ok(written) => written.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match written {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(
                            "storing the requester's decisions: {e}; trying again in {pause:?}"
                        );
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(STORE_RETRY_MAX);
                    }
                }
            }
            drop(written);
            // Durable now (or superseded by a newer decision): the results
            // count as done, and a job they finish may settle.
            let wake = self.core.lock().stored(&effects.writes);
            self.wake(wake);
        }
        // Woken after the writes: a cancelled job's driver settles it, and
        // the record that says so must not be overwritten by the cancel's.
        self.wake(effects.wake);
        for job in &effects.work {
            self.wake_held(job);
        }
        for tx in effects.txs {
            if let Err(e) = self.shared.ledger.send(tx) {
                tracing::warn!("sending evidence to the ledger: {e}");
            }
        }
        for (lease, task, commit) in effects.challenges {
            tokio::spawn(self.clone().challenge(lease, task, commit));
        }
        self.forget_disputes(&effects.ended_disputes);
        for (job, id) in effects.disputes {
            self.clone().spawn_dispute(job, id);
        }
        for case in effects.cases {
            tokio::spawn(self.clone().bring_case(case));
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
    /// the window has passed without the receipt that opens it. The
    /// challenge is kept
    /// in the store until then, so a restart follows it again
    /// ([`Requester::follow_challenge`]).
    pub(super) async fn challenge(
        self: Arc<Self>,
        lease: ContentId,
        task: u64,
        commit: Signed<Commit>,
    ) {
        let provider = commit.signer();
        let key = challenge_key(&lease, task);
        let kept = Op::Put(Table::Challenges, key.clone(), provider.as_bytes().to_vec());
        if let Err(e) = self.shared.db.write(&[kept]) {
            tracing::warn!("keeping a challenge: {e}");
            return;
        }
        let challenged = match self.shared.ledger.send(TxKind::Challenge { commit }) {
            Ok(ticket) => ticket.fate().await,
            Err(e) => Err(e),
        };
        match challenged {
            Ok(()) => self.follow_challenge(lease, task, provider).await,
            Err(e) => {
                tracing::warn!("challenging a withheld reveal: {e}");
                self.forget_challenge(key);
            }
        }
    }

    /// Follows this requester's challenge of `provider`'s commitment to
    /// `task` of `lease` until the provider reveals (the challenge leaves
    /// the list) or its window closes, in blocks and in block time; then
    /// claims it as withheld.
    pub(super) async fn follow_challenge(
        self: Arc<Self>,
        lease: ContentId,
        task: u64,
        provider: PublicKey,
    ) {
        let ledger = &self.shared.ledger;
        loop {
            let listed = match ledger.link().open_challenges(&provider).await {
                Ok(listed) => listed,
                Err(e) => {
                    tracing::warn!("following a challenge: {e}");
                    tokio::time::sleep(CHALLENGE_POLL).await;
                    continue;
                }
            };
            let ours = listed
                .challenges
                .iter()
                .find(|c| (c.lease, c.task) == (lease, task));
            let wait_ms = match ours {
                Some(c) if listed.height > c.deadline && listed.time_ms > c.deadline_ms => break,
                Some(c) => c.deadline_ms.saturating_sub(listed.time_ms),
                // Revealed (or never posted, if this node stopped first).
                None if listed.open as usize <= listed.challenges.len() => {
                    self.forget_challenge(challenge_key(&lease, task));
                    return;
                }
                // Not among the first listed, which close before it does.
                None => listed
                    .challenges
                    .last()
                    .map_or(0, |c| c.deadline_ms.saturating_sub(listed.time_ms)),
            };
            let wait = Duration::from_millis(wait_ms).clamp(CHALLENGE_POLL, CHALLENGE_POLL * 60);
            tokio::time::sleep(wait).await;
        }
        let evidence = Box::new(cairn_ledger::Evidence::NoReveal { lease, task });
        // Queued in the outbox, which persists it and sends it until it
        // lands: the challenge is done with.
        match ledger.send(TxKind::Slash { evidence }) {
            Ok(_) => self.forget_challenge(challenge_key(&lease, task)),
            Err(e) => tracing::warn!("slashing a withheld reveal: {e}"),
        }
    }

    fn forget_challenge(&self, key: Vec<u8>) {
        if let Err(e) = self.shared.db.write(&[Op::Delete(Table::Challenges, key)]) {
            tracing::warn!("forgetting a challenge: {e}");
        }
    }

    /// Drops what the referee kept for `disputes` (of a closed job): its
    /// findings, the sides' claims and the waits for snapshots. A case
    /// already brought to the validators took its copy.
    pub(super) fn forget_disputes(&self, disputes: &[u64]) {
        // One lock at a time: no order among them to keep.
        self.snapshot_waits
            .lock()
            .retain(|id, _| !disputes.contains(id));
        self.claims
            .lock()
            .retain(|(id, _), _| !disputes.contains(id));
    }

    /// Brings a wrong result to the validators, and once a quorum of them
    /// attests the verdict, sends the slash to the ledger. A validator
    /// judging the step answers `Preparing` and is asked again; one that
    /// refuses is not.
    async fn bring_case(self: Arc<Self>, pending: Pending) {
        if pending.whole {
            return self.bring_whole_case(pending).await;
        }
        let Some((finding, winner)) = self.core.lock().findings.get(&pending.dispute).cloned()
        else {
            return;
        };
        let position = finding.position;
        let claims_of = |key: PublicKey| {
            let claims = self.claims.lock();
            covering(
                claims.get(&(pending.dispute, key)).map_or(&[][..], |c| c),
                position,
            )
        };
        let accused = pending.accused.signer();
        let accused_claims = claims_of(accused);
        // Each side is accused once per dispute: its claims go with its case.
        self.claims.lock().remove(&(pending.dispute, accused));
        let winner = match (winner, pending.winner) {
            (Some(key), Some(receipt)) => {
                let claims = claims_of(key);
                (claimed(&claims, position + 1) == Some(finding.reached))
                    .then_some(Party { receipt, claims })
            }
            _ => None,
        };
        let case = Case {
            terms: pending.terms,
            assignment: pending.assignment,
            position,
            accused: Party {
                receipt: pending.accused,
                claims: accused_claims,
            },
            state: finding.state,
            winner,
        };
        if position > 0 && claimed(&case.accused.claims, position).is_none() {
            tracing::warn!("no claim of {} to hold it to", accused.short());
            return;
        }
        let stored = StoredCase {
            job: pending.job,
            dispute: pending.dispute,
            reached: finding.reached,
            case,
        };
        self.store_and_bring(stored).await;
    }

    /// Brings a case against a side that lost without a step to be held
    /// to: the validators re-run the whole task its receipt names, and
    /// must reach the winner's result.
    async fn bring_whole_case(self: Arc<Self>, pending: Pending) {
        let Some(winner) = pending.winner else {
            return;
        };
        self.claims
            .lock()
            .remove(&(pending.dispute, pending.accused.signer()));
        let stored = StoredCase {
            job: pending.job,
            dispute: pending.dispute,
            reached: *winner.payload_unchecked().digest.as_bytes(),
            case: Case {
                terms: pending.terms,
                assignment: pending.assignment,
                position: WHOLE_TASK,
                accused: Party {
                    receipt: pending.accused,
                    claims: Vec::new(),
                },
                state: None,
                winner: Some(Party {
                    receipt: winner,
                    claims: Vec::new(),
                }),
            },
        };
        self.store_and_bring(stored).await;
    }

    /// Stores `stored`, then brings it: a requester that restarts while it
    /// brings a case brings it again (the cheat used to keep its stake).
    async fn store_and_bring(self: Arc<Self>, stored: StoredCase) {
        let put = Op::Put(Table::Cases, stored.key(), stored.value());
        if let Err(e) = self.shared.db.write(&[put]) {
            tracing::warn!("storing a case: {e}");
        }
        if self
            .misbehave
            .is_some_and(super::RequesterMisbehave::crashes_with_a_case)
        {
            tracing::warn!("a case-crasher exits with a case stored");
            std::process::exit(CASE_CRASHER_EXIT);
        }
        self.bring(stored).await;
    }

    /// Brings a stored case to the validators (see [`Self::bring_case`]),
    /// and forgets it once it is sent to the ledger, refused, or given up.
    pub(super) async fn bring(self: Arc<Self>, stored: StoredCase) {
        let key = stored.key();
        let StoredCase {
            job,
            dispute,
            reached,
            case,
        } = stored;
        let accused = case.accused.receipt.signer();
        let from = match case.position {
            0 | WHOLE_TASK => None,
            p => claimed(&case.accused.claims, p),
        };
        let named = case.winner.as_ref().map_or(accused, |w| w.receipt.signer());
        let verdict = verdict(job, &case, from, reached, named);
        let mut attested = Attested::new(verdict);
        let blobs: Vec<ContentId> = std::iter::once(&case.terms.module)
            .chain(&case.terms.inputs)
            .chain(&case.assignment.inputs)
            .chain(&case.state)
            .map(|f| f.id)
            .collect();
        // Kept while the case is brought, after a restart too: this node's
        // own validator deletes a state it judged unless it is pinned (the
        // restarted requester's did, and the other validators could not
        // fetch it).
        self.shared.pin(blobs.iter().copied());
        // The validators may fetch what the step needs while the case is
        // brought, whether or not the job has ended by then.
        let scope = ContentId::of(format!("case {job} {dispute} {accused}").as_bytes());
        let me = self.shared.key.public();
        let mut refused = BTreeSet::new();
        let started = now_ms();
        while now_ms() < started + CASE_PATIENCE_MS {
            let (validators, quorum) = match self.shared.ledger.link().validators().await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!("listing the validators: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let total = validators.len();
            let signed: BTreeSet<PublicKey> = attested.signers_unchecked().collect();
            let asked: Vec<PublicKey> = validators
                .into_iter()
                .filter(|v| !signed.contains(v) && !refused.contains(v))
                .collect();
            for validator in &asked {
                if !self
                    .shared
                    .grants
                    .grant(scope, blobs.iter().copied(), *validator)
                {
                    tracing::warn!("no room to let validator {} fetch", validator.short());
                }
            }
            let answers = futures::future::join_all(asked.iter().map(|validator| {
                let case = case.clone();
                let this = self.clone();
                async move {
                    if *validator == me {
                        // Judged in the background like anyone's case, so
                        // the other validators' answers do not wait for it.
                        let own = this.shared.net.local_peer_id();
                        return this.adjudicator.on_case(own, me, case).await;
                    }
                    let request = proto::to_bytes(&Request::Adjudicate(Box::new(case)));
                    let peer = cairn_net::peer_id(validator);
                    match this.shared.net.request(peer, request).await {
                        Ok(bytes) => proto::response(bytes)
                            .unwrap_or_else(|e| Response::Refused(e.to_string())),
                        // Unreachable for now: asked again.
                        Err(_) => Response::Preparing,
                    }
                }
            }))
            .await;
            for (validator, answer) in asked.into_iter().zip(answers) {
                match answer {
                    Response::Attestation(signature)
                        if !attested.add(VERDICT_NAMESPACE, validator, signature) =>
                    {
                        tracing::warn!(
                            "validator {} signed another verdict than the referee's",
                            validator.short()
                        );
                        refused.insert(validator);
                    }
                    Response::Refused(reason) => {
                        tracing::warn!(
                            "validator {} refused the case against {}: {reason}",
                            validator.short(),
                            accused.short()
                        );
                        refused.insert(validator);
                    }
                    _ => {}
                }
            }
            if attested.signers_unchecked().count() >= quorum {
                let evidence = Box::new(Evidence::WrongResult {
                    receipt: case.accused.receipt.clone(),
                    verdict: attested,
                    // Settlement waits for the end of a job, so nothing
                    // of a job still open has been paid yet.
                    clawback: Vec::new(),
                    winner_receipt: case.winner.map(|w| w.receipt),
                });
                if let Err(e) = self.shared.ledger.send(TxKind::Slash { evidence }) {
                    tracing::warn!("sending a conviction to the ledger: {e}");
                }
                break;
            }
            if total.saturating_sub(refused.len()) < quorum {
                // Honest validators refuse a case only when the accused's
                // step holds, or it cannot be judged.
                tracing::warn!(
                    "{} of {total} validators refused the case against {}: it needs {quorum}",
                    refused.len(),
                    accused.short()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(CASE_RETRY_MS)).await;
        }
        self.shared.grants.revoke(&scope);
        if let Err(e) = self.shared.db.write(&[Op::Delete(Table::Cases, key)]) {
            tracing::warn!("forgetting a case: {e}");
        }
    }

    /// Plays dispute `id` to its end: asks both sides what the game needs,
    /// and referees the last segment by re-executing it.
    async fn referee_dispute(self: Arc<Self>, job_id: ContentId, id: u64) {
        loop {
            let state = {
                let core = self.core.lock();
                let Some((task, sides, game)) = core.verifier.game(id) else {
                    return;
                };
                let Some(job) = core.jobs.get(&job_id) else {
                    return;
                };
                // Each side is asked under the lease its result names, and
                // must sign a claim about the task as it was handed out and
                // the result it revealed.
                let revealed: Vec<Option<(ContentId, ContentId)>> = sides
                    .iter()
                    .map(|p| {
                        job.replicas.revealed.get(&(task.1, *p)).map(|r| {
                            let receipt = r.receipt.payload_unchecked();
                            (receipt.lease, receipt.digest)
                        })
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
                let run = proto::run_digest(&job.terms, &job.assignment(task.1));
                (task.1, *sides, revealed, asks, game.need().clone(), run)
            };
            let (task, sides, revealed, asks, need, run) = state;
            match need {
                Need::Done(_) => return,
                Need::Referee(segment) => {
                    let (reached, state) =
                        match self.re_execute(job_id, id, task, &segment, &sides).await {
                            Ok(found) => found,
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
                    self.core.lock().findings.insert(
                        id,
                        (
                            Finding {
                                position: segment.position,
                                reached,
                                state,
                            },
                            winner,
                        ),
                    );
                    self.play(job_id, |v, now| v.dispute_referee(id, reached, now))
                        .await;
                }
                Need::Lengths | Need::Hashes { .. } => {
                    let mut progressed = false;
                    let questions = sides.iter().zip(&revealed).zip(asks).filter_map(
                        |((provider, revealed), ask)| Some((*provider, (*revealed)?, ask?)),
                    );
                    let answers = futures::future::join_all(questions.map(
                        |(provider, (lease, digest), ask)| {
                            let request = Request::Dispute {
                                lease,
                                task,
                                ask: ask.clone(),
                            };
                            let net = self.shared.net.clone();
                            async move {
                                let peer = cairn_net::peer_id(&provider);
                                let answer = net.request(peer, proto::to_bytes(&request)).await;
                                (provider, lease, digest, ask, answer.map(proto::response))
                            }
                        },
                    ))
                    .await;
                    for (provider, lease, digest, ask, answer) in answers {
                        let claim = match answer {
                            Ok(Ok(Response::Claim(claim))) => claim,
                            Ok(Ok(Response::Preparing)) => {
                                tracing::debug!(
                                    "dispute {id}: {} is tracing the task",
                                    provider.short()
                                );
                                continue;
                            }
                            other => {
                                tracing::info!(
                                    "dispute {id}: {} did not answer: {other:?}",
                                    provider.short()
                                );
                                continue;
                            }
                        };
                        let expected = (lease, u64::from(task), run, digest);
                        let earlier = self
                            .claims
                            .lock()
                            .get(&(id, provider))
                            .and_then(|c| c.first().map(|c| c.payload_unchecked().clone()));
                        let c = match claim.verify(proto::CLAIM_NAMESPACE) {
                            Ok(c) if claim.signer() == provider => c,
                            _ => {
                                Counters::bump(&self.shared.counters.bad_signature);
                                continue;
                            }
                        };
                        // A claim about another task or result, or another
                        // trace than its earlier claims, is no answer: the
                        // deadline decides against the side.
                        if (c.lease, c.task, c.run, c.digest) != expected
                            || earlier.is_some_and(|e| !e.same_execution(c))
                        {
                            tracing::info!(
                                "dispute {id}: {} signed a claim about something else",
                                provider.short()
                            );
                            continue;
                        }
                        // The claim must answer exactly what was asked: one
                        // with extra points is no answer (the case is built
                        // from played claims only, so a side cannot plant a
                        // claim the game never checked).
                        let points_asked = match &ask {
                            DisputeAsk::Hashes(asked) => {
                                c.points.iter().map(|(p, _)| *p).eq(asked.iter().copied())
                            }
                            _ => c.points.is_empty(),
                        };
                        if !points_asked {
                            continue;
                        }
                        // Kept before the move, which may end the dispute and
                        // bring the case; taken back if the move is refused.
                        self.claims
                            .lock()
                            .entry((id, provider))
                            .or_default()
                            .push(claim.clone());
                        let moved = match &ask {
                            DisputeAsk::Length => {
                                let n = c.positions;
                                self.play(job_id, |v, now| v.dispute_length(id, &provider, n, now))
                                    .await
                            }
                            _ => {
                                let hashes: Vec<StateHash> =
                                    c.points.iter().map(|(_, h)| *h).collect();
                                self.play(job_id, |v, now| {
                                    v.dispute_hashes(id, &provider, &hashes, now)
                                })
                                .await
                            }
                        };
                        if !moved && let Some(kept) = self.claims.lock().get_mut(&(id, provider)) {
                            kept.retain(|k| *k != claim);
                        }
                        progressed |= moved;
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
    ) -> bool {
        let now = now_ms();
        let effects = {
            let mut core = self.core.lock();
            let actions = match mv(&mut core.verifier, now) {
                Ok(actions) => actions,
                Err(e) => {
                    tracing::info!(job = %job_id.short(), "dispute move refused: {e}");
                    return false;
                }
            };
            core.act(Vec::new(), actions)
        };
        if let Err(e) = self.carry_out(effects).await {
            tracing::error!("carrying out a dispute's verdict: {e}");
        }
        true
    }

    /// The referee's move: from the agreed state, run one transition. The
    /// agreed state comes from either side (checked against its hash), or,
    /// if neither supplies it, from re-running the task up to it here.
    /// Returns the state reached, and the state stepped from as a blob here
    /// (for the validators, who step from it too).
    async fn re_execute(
        self: &Arc<Self>,
        job_id: ContentId,
        dispute: u64,
        task: u32,
        segment: &Segment,
        sides: &[PublicKey; 2],
    ) -> Result<(StateHash, Option<FileRef>), String> {
        let (assignment, terms) = {
            let core = self.core.lock();
            let job = core.jobs.get(&job_id).ok_or("the job is gone")?;
            if task as usize >= job.record.submission.tasks.len() {
                return Err("no such task".into());
            }
            (job.assignment(task), job.terms.clone())
        };
        let mut snapshot = None;
        if let Some(agreed) = segment.agreed {
            let mut preparing = false;
            for provider in sides {
                match self
                    .fetch_snapshot(job_id, task, *provider, segment.position)
                    .await
                {
                    Ok(Some((s, file))) if s.hash() == agreed => {
                        snapshot = Some((s, file));
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
                    let core = self.core.lock();
                    let params = core.verifier.params();
                    params.dispute_round_timeout_ms
                        + terms.limits.fuel / params.dispute_trace_fuel_per_ms
                };
                if now < since + allowance {
                    return Err("a side is building the agreed state".into());
                }
            }
        }
        self.snapshot_waits.lock().remove(&dispute);
        let (runtime, module, inputs) =
            step_parts(&self.shared, &self.runtime, &terms, &assignment)?;
        let dir = self
            .referee_dir
            .join(job_id.to_string())
            .join(format!("{task}-{}", segment.position));
        // A task's own inputs are its alone: no other task may see them.
        let job_dir = self.referee_dir.join(job_id.to_string());
        let input_dir = match assignment.inputs.is_empty() {
            true => job_dir.join("input"),
            false => job_dir.join(format!("input-{task}")),
        };
        let agreed = segment.agreed;
        let position = segment.position;
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let run = |name: &str, f: &mut dyn FnMut(&WasmRuntime, &Task<'_>) -> Result<(), String>| {
                with_task(
                    &runtime,
                    &module,
                    &inputs,
                    &terms,
                    &assignment,
                    &input_dir,
                    &dir.join(name),
                    |r, t| f(r, t),
                )
            };
            if let (Some(agreed), None) = (agreed, &snapshot) {
                // Neither side supplied the state both claimed: rebuild it.
                // If the task does not reach it, both sides claimed a state
                // that does not exist (colluders withholding it, so that no
                // referee could ever step from it); stepping from the real
                // one shows both wrong, and the dispute ends.
                run("rebuild", &mut |runtime, t| {
                    let own = runtime
                        .snapshot_at(t, position)
                        .map_err(|e| e.to_string())?;
                    if own.hash() != agreed {
                        tracing::warn!(
                            "both sides claimed a state at position {position} this task never reaches"
                        );
                    }
                    let bytes = own.to_bytes();
                    let id = shared.blobs.put(&bytes).map_err(|e| e.to_string())?;
                    let file = FileRef {
                        name: "state".into(),
                        id,
                        size: bytes.len() as u64,
                    };
                    snapshot = Some((own, file));
                    Ok(())
                })?;
            }
            let mut reached = None;
            run("step", &mut |runtime, t| {
                let from = snapshot.as_ref().map(|(s, _)| s);
                reached = Some(runtime.referee(t, from).map_err(|e| e.to_string())?.hash);
                Ok(())
            })?;
            let _ = std::fs::remove_dir_all(&dir);
            let state = snapshot.map(|(_, file)| file);
            if let Some(file) = &state {
                // Kept for the validators to fetch.
                shared.pin([file.id]);
            }
            Ok((reached.ok_or("the referee reached nothing")?, state))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// A side's state at `position`, fetched as a verified blob, or `None`
    /// while the side is building it.
    async fn fetch_snapshot(
        self: &Arc<Self>,
        job_id: ContentId,
        task: u32,
        provider: PublicKey,
        position: u64,
    ) -> Result<Option<(Snapshot, FileRef)>, String> {
        let lease = {
            let core = self.core.lock();
            let job = core.jobs.get(&job_id).ok_or("the job is gone")?;
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
            .core
            .lock()
            .jobs
            .get(&job_id)
            .map_or(0, |job| snapshot_bytes_max(&job.terms));
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
        Snapshot::from_bytes(&bytes, limit).map(|s| Some((s, file)))
    }
}

/// The key a followed challenge is kept under.
pub(super) fn challenge_key(lease: &ContentId, task: u64) -> Vec<u8> {
    let mut key = lease.as_bytes().to_vec();
    key.extend_from_slice(&task.to_be_bytes());
    key
}
