//! A seeded simulation of one requester's verifier against providers that
//! behave in named ways: jobs of many tasks, commit–reveal, replication,
//! spot checks and disputes played out in full, and a referee that
//! re-executes one segment of a modelled trace. Same seed, same transcript.
//!
//! Used by `tests/adversaries.rs` and by `cairn bench verify`. Beside the
//! market's simulation, out of the verifier's crate: a node has no use for it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cairn_job::VerifyPolicy;
use cairn_market::Rng;
use cairn_wire::{ContentId, Keypair, PublicKey};

use cairn_verify::{
    Action, Commitment, Need, Offence, Params, Record, Reveal, Side, StateHash, TaskKey, Verifier,
};

/// µCAIRN paid per accepted task (1 Gfuel at the default ~40 µCAIRN/Gfuel).
pub const PRICE: u64 = 40;
/// The ledger's minimum provider stake (`ledger::Params`).
pub const STAKE: u64 = 1_000_000_000;
/// Share of the stake a conviction slashes, in basis points.
pub const SLASH_BPS: u64 = 5_000;
/// Fuel per modelled checkpoint step.
pub const FUEL_PER_STEP: u64 = 5_000_000;

/// How a simulated provider behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs every task and tells the truth.
    Honest,
    /// Returns a random digest and a trace that departs from the honest
    /// one at a random step.
    Liar,
    /// Returns zeros without running.
    Lazy,
    /// Replays another provider's commitment, then its reveal.
    Copier,
    /// Two fresh identities that return the same wrong result.
    Colluder,
    /// Commits and never reveals.
    Staller,
    /// Honest and trusted, but wrong on `per_mille` of its tasks.
    Sometimes {
        /// Wrong results per thousand tasks.
        per_mille: u64,
    },
}

/// A simulated provider and what happened to it.
pub struct Provider {
    /// Its key.
    pub key: PublicKey,
    /// How it behaves.
    pub behaviour: Behaviour,
    slots: u32,
    busy: u32,
    /// Tasks it ran (or pretended to).
    pub executions: u64,
    /// Accepted tasks it is paid for (clawed-back ones removed).
    pub paid_tasks: BTreeSet<TaskKey>,
    /// µCAIRN taken back from its stake for results of open jobs.
    pub clawed_back: u64,
    /// µCAIRN slashed.
    pub slashed: u64,
    /// Whether it was convicted.
    pub convicted: bool,
    /// What it was convicted of.
    pub offences: Vec<Offence>,
    /// Tasks it returned a wrong result for.
    pub wrong: BTreeSet<TaskKey>,
    /// Its executions when first convicted.
    pub caught_after: Option<u64>,
    /// What it committed to, per task.
    reveals: BTreeMap<TaskKey, Reveal>,
}

fn h(parts: &[&[u8]]) -> StateHash {
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    *ContentId::of(&bytes).as_bytes()
}

/// The most fuel a simulated task uses: its most steps.
const TASK_FUEL_MAX: u64 = (3 + 199) * FUEL_PER_STEP;

/// The honest execution of a task: `steps` checkpoints then the digest.
fn steps(task: &TaskKey) -> u64 {
    3 + u64::from_le_bytes(
        h(&[b"steps", task.0.as_bytes(), &task.1.to_le_bytes()])[..8]
            .try_into()
            .unwrap(),
    ) % 200
}

/// The right digest of a task in the model.
pub fn truth(task: &TaskKey) -> ContentId {
    ContentId::from_digest(h(&[b"digest", task.0.as_bytes(), &task.1.to_le_bytes()]))
}

fn honest_hash(task: &TaskKey, position: u64) -> StateHash {
    let n = steps(task);
    if position >= n {
        return *truth(task).as_bytes();
    }
    h(&[
        b"state",
        task.0.as_bytes(),
        &task.1.to_le_bytes(),
        &position.to_le_bytes(),
    ])
}

/// A wrong execution: honest before `departs`, then the cheater's own.
#[derive(Clone, Copy, Debug)]
struct Fake {
    departs: u64,
    tag: u64,
    digest: ContentId,
}

fn fake_hash(task: &TaskKey, fake: &Fake, position: u64) -> StateHash {
    let n = steps(task);
    if position >= n {
        return *fake.digest.as_bytes();
    }
    if position < fake.departs {
        return honest_hash(task, position);
    }
    h(&[
        b"fake",
        &fake.tag.to_le_bytes(),
        task.0.as_bytes(),
        &task.1.to_le_bytes(),
        &position.to_le_bytes(),
    ])
}

/// The simulation: one requester's verifier, its providers and its jobs.
pub struct Sim {
    /// The seed everything follows from.
    pub seed: u64,
    rng: Rng,
    now: u64,
    /// The verifier under test.
    pub verifier: Verifier,
    /// The providers.
    pub providers: Vec<Provider>,
    index: BTreeMap<PublicKey, usize>,
    /// Jobs still open, oldest first.
    pub jobs: VecDeque<ContentId>,
    /// Jobs started so far.
    pub started: u32,
    policy: VerifyPolicy,
    tasks_per_job: u32,
    finishing: BTreeMap<(u64, u64), (usize, TaskKey)>,
    seq: u64,
    /// The wrong executions, by provider and task.
    fakes: BTreeMap<(usize, TaskKey), Fake>,
    /// Tasks that failed, with the reason.
    pub failed: Vec<String>,
    /// Wrong digests accepted, counted per provider that returned them.
    pub wrong_accepted: BTreeMap<PublicKey, u64>,
    /// Segments the referee re-executed.
    pub referee_segments: u64,
    /// Fuel the referee spent on them.
    pub referee_fuel: u64,
    /// Disputes played.
    pub disputes: u64,
    /// Fuel executed by every provider.
    pub fuel_executed: u64,
    /// Fuel of the accepted tasks (each counted once).
    pub fuel_accepted: u64,
    /// Every task accepted in a closed job, with its final digest.
    pub closed_results: Vec<(TaskKey, ContentId)>,
    /// Every action, in order: two runs with one seed give equal bytes.
    pub transcript: Vec<u8>,
}

impl Sim {
    /// Providers as `(behaviour, established)`: an established one starts
    /// with a long streak of confirmed results. Every job has
    /// `tasks_per_job` tasks under `policy`.
    pub fn new(
        seed: u64,
        providers: &[(Behaviour, bool)],
        tasks_per_job: u32,
        policy: VerifyPolicy,
    ) -> Self {
        let mut verifier = Verifier::new(Params::default(), seed ^ 0x5eed);
        let providers_in = providers;
        let providers: Vec<Provider> = providers_in
            .iter()
            .enumerate()
            .map(|(i, &(behaviour, _))| Provider {
                key: Keypair::from_seed([i as u8 + 1; 32]).public(),
                behaviour,
                slots: 2,
                busy: 0,
                executions: 0,
                paid_tasks: BTreeSet::new(),
                clawed_back: 0,
                slashed: 0,
                convicted: false,
                offences: Vec::new(),
                wrong: BTreeSet::new(),
                caught_after: None,
                reveals: BTreeMap::new(),
            })
            .collect();
        for (provider, &(_, trusted)) in providers.iter().zip(providers_in) {
            if trusted {
                // An established provider: many confirmed results already.
                let record = Record {
                    streak: 1_000,
                    confirmed: 1_000,
                    ..Record::default()
                };
                verifier.trust_mut().set(provider.key, record);
            }
        }
        let index = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.key, i))
            .collect();
        Self {
            seed,
            rng: Rng::new(seed),
            now: 0,
            verifier,
            providers,
            index,
            jobs: VecDeque::new(),
            started: 0,
            policy,
            tasks_per_job,
            finishing: BTreeMap::new(),
            seq: 0,
            fakes: BTreeMap::new(),
            failed: Vec::new(),
            wrong_accepted: BTreeMap::new(),
            referee_segments: 0,
            referee_fuel: 0,
            disputes: 0,
            fuel_executed: 0,
            fuel_accepted: 0,
            closed_results: Vec::new(),
            transcript: Vec::new(),
        }
    }

    fn start_job(&mut self) {
        let job = ContentId::from_digest(h(&[
            b"job",
            &self.seed.to_le_bytes(),
            &self.started.to_le_bytes(),
        ]));
        self.started += 1;
        self.verifier
            .open_job(job, self.policy, self.tasks_per_job, TASK_FUEL_MAX);
        self.jobs.push_back(job);
    }

    /// Runs jobs one after another until `jobs` have started and every
    /// open one is done, or `stop` says so once every open one is done.
    /// The last `open` jobs stay open (results can still be reopened).
    pub fn run(&mut self, jobs: u32, open: usize, stop: impl Fn(&Sim) -> bool) {
        self.start_job();
        let mut next_tick = 1_000;
        loop {
            self.dispatch();
            let next = self.finishing.keys().next().copied();
            // With nothing running, time moves on to the next deadline check.
            self.now = next.map_or(next_tick, |(at, _)| at.min(next_tick));
            if self.now >= next_tick {
                let actions = self.verifier.tick(self.now);
                self.apply(actions);
                next_tick = self.now + 1_000;
            }
            if let Some(key) = next.filter(|(at, _)| *at == self.now) {
                let (provider, task) = self.finishing.remove(&key).unwrap();
                self.finish(provider, task);
            }
            let all_done = self.jobs.iter().all(|j| self.verifier.job_done(j));
            if all_done {
                if stop(self) || self.started >= jobs {
                    break;
                }
                self.start_job();
                while self.jobs.len() > open {
                    let job = self.jobs.pop_front().unwrap();
                    for t in 0..self.tasks_per_job {
                        if let Some(d) = self.verifier.accepted(&(job, t)) {
                            self.closed_results.push(((job, t), d));
                        }
                    }
                    let _ = self.verifier.close_job(&job);
                }
            }
            assert!(
                self.now < 100_000_000,
                "seed {}: simulation does not end",
                self.seed
            );
        }
    }

    fn dispatch(&mut self) {
        let jobs: Vec<ContentId> = self.jobs.iter().copied().collect();
        for job in jobs {
            let wanting = self.verifier.wanting(&job);
            if wanting.is_empty() {
                continue;
            }
            let mut order: Vec<usize> = (0..self.providers.len()).collect();
            // Providers pull in a random order, as over a network.
            for i in (1..order.len()).rev() {
                order.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
            for t in wanting {
                let task = (job, t);
                for &p in &order {
                    let provider = &self.providers[p];
                    if provider.busy >= provider.slots
                        || !self.verifier.eligible(&task, &provider.key)
                    {
                        continue;
                    }
                    let key = provider.key;
                    self.verifier.assign(&task, key, self.now).unwrap();
                    let provider = &mut self.providers[p];
                    provider.busy += 1;
                    let ms = 20 + self.rng.below(60);
                    self.seq += 1;
                    self.finishing.insert((self.now + ms, self.seq), (p, task));
                    if !self.verifier.eligible(&task, &key)
                        && self.verifier.wanting(&job).is_empty()
                    {
                        break;
                    }
                }
            }
        }
    }

    /// Provider `p` finished running `task`: it commits.
    fn finish(&mut self, p: usize, task: TaskKey) {
        self.providers[p].busy -= 1;
        self.providers[p].executions += 1;
        self.fuel_executed += steps(&task) * FUEL_PER_STEP;
        let behaviour = self.providers[p].behaviour;
        let key = self.providers[p].key;
        let mut salt = [0u8; 32];
        salt[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        let fake = match behaviour {
            Behaviour::Honest | Behaviour::Staller | Behaviour::Copier => None,
            Behaviour::Liar => Some(Fake {
                departs: 1 + self.rng.below(steps(&task)),
                tag: self.rng.next_u64(),
                digest: ContentId::from_digest(h(&[b"random", &self.rng.next_u64().to_le_bytes()])),
            }),
            Behaviour::Lazy => Some(Fake {
                departs: 1,
                tag: 0,
                digest: ContentId::from_digest([0; 32]),
            }),
            // Both colluders fake the same way: agreeing is the point.
            Behaviour::Colluder => Some(Fake {
                departs: 1 + steps(&task) / 2,
                tag: 7,
                digest: ContentId::from_digest(h(&[
                    b"collude",
                    task.0.as_bytes(),
                    &task.1.to_le_bytes(),
                ])),
            }),
            Behaviour::Sometimes { per_mille } => {
                (self.rng.below(1_000) < per_mille).then(|| Fake {
                    departs: 1 + self.rng.below(steps(&task)),
                    tag: self.rng.next_u64(),
                    digest: ContentId::from_digest(h(&[
                        b"random",
                        &self.rng.next_u64().to_le_bytes(),
                    ])),
                })
            }
        };
        let digest = match &fake {
            Some(fake) => {
                self.providers[p].wrong.insert(task);
                fake.digest
            }
            None => truth(&task),
        };
        if let Some(fake) = fake {
            self.fakes.insert((p, task), fake);
        }
        let reveal = Reveal { digest, salt };
        let commitment = match behaviour {
            // The copier has nothing of its own: it replays another
            // replica's commitment if there is one.
            Behaviour::Copier => self
                .providers
                .iter()
                .filter(|o| o.key != key)
                .find_map(|o| o.reveals.get(&task).map(|r| Commitment::new(&o.key, r)))
                .unwrap_or(Commitment([9; 32])),
            _ => Commitment::new(&key, &reveal),
        };
        self.providers[p].reveals.insert(task, reveal);
        match self.verifier.commit(&task, &key, commitment, self.now) {
            Ok(actions) => self.apply(actions),
            // Convicted meanwhile: the verifier no longer waits for it.
            Err(_) if self.providers[p].convicted => {}
            Err(e) => panic!("seed {}: {e}", self.seed),
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            self.transcript
                .extend_from_slice(format!("{} {action:?}\n", self.now).as_bytes());
            let more = self.act(action);
            queue.extend(more);
        }
    }

    fn act(&mut self, action: Action) -> Vec<Action> {
        match action {
            Action::AskReveal { task, provider } => {
                let p = self.index[&provider];
                let reveal = match self.providers[p].behaviour {
                    Behaviour::Staller => return Vec::new(),
                    // The copier reveals what another replica revealed.
                    Behaviour::Copier => self
                        .providers
                        .iter()
                        .filter(|o| o.key != provider)
                        .find_map(|o| o.reveals.get(&task).copied())
                        .unwrap_or(Reveal {
                            digest: truth(&task),
                            salt: [1; 32],
                        }),
                    _ => self.providers[p].reveals[&task],
                };
                self.verifier
                    .reveal(&task, &provider, &reveal, self.now)
                    .unwrap()
            }
            Action::Accept {
                task,
                digest,
                providers,
            } => {
                self.fuel_accepted += steps(&task) * FUEL_PER_STEP;
                for provider in &providers {
                    let p = self.index[provider];
                    self.providers[p].paid_tasks.insert(task);
                    if digest != truth(&task) {
                        *self.wrong_accepted.entry(*provider).or_default() += 1;
                    }
                }
                Vec::new()
            }
            Action::Dispute { id, sides, .. } => {
                self.disputes += 1;
                let mut actions = Vec::new();
                for side in sides {
                    let len = steps(&self.verifier.game(id).unwrap().0.clone()) + 1;
                    actions.extend(
                        self.verifier
                            .dispute_length(id, &side, len, self.now)
                            .unwrap(),
                    );
                }
                actions
            }
            Action::DisputeNext { id } => self.play(id),
            Action::DisputeDone { .. } => Vec::new(),
            Action::Convicted {
                provider, offence, ..
            } => {
                let p = self.index[&provider];
                let provider = &mut self.providers[p];
                provider.offences.push(offence);
                if !provider.convicted {
                    provider.convicted = true;
                    provider.caught_after = Some(provider.executions);
                    provider.slashed = (STAKE - provider.slashed) * SLASH_BPS / 10_000;
                }
                Vec::new()
            }
            Action::Clawback { provider, tasks } => {
                let p = self.index[&provider];
                self.providers[p].clawed_back += PRICE * tasks.len() as u64;
                for task in &tasks {
                    self.providers[p].paid_tasks.remove(task);
                }
                Vec::new()
            }
            // The simulation's jobs are Wasm's, decided by disputes.
            Action::Reopen { .. } | Action::Expelled { .. } => Vec::new(),
            Action::Failed { task, reason } => {
                self.failed.push(format!("{task:?}: {reason}"));
                Vec::new()
            }
        }
    }

    /// Both sides answer what the dispute asks; the referee re-executes
    /// one segment when it comes to that.
    fn play(&mut self, id: u64) -> Vec<Action> {
        let Some((task, sides, game)) = self.verifier.game(id) else {
            return Vec::new();
        };
        let (task, sides) = (*task, *sides);
        match game.need().clone() {
            Need::Hashes { .. } => {
                let mut actions = Vec::new();
                for (side, key) in Side::BOTH.into_iter().zip(sides) {
                    let Some((_, _, game)) = self.verifier.game(id) else {
                        break;
                    };
                    let asked = game.asked_of(side);
                    if asked.is_empty() {
                        continue;
                    }
                    let p = self.index[&key];
                    let fake = self.fakes.get(&(p, task)).copied();
                    let hashes: Vec<StateHash> = asked
                        .iter()
                        .map(|&pos| match &fake {
                            Some(fake) => fake_hash(&task, fake, pos),
                            None => honest_hash(&task, pos),
                        })
                        .collect();
                    actions.extend(
                        self.verifier
                            .dispute_hashes(id, &key, &hashes, self.now)
                            .unwrap(),
                    );
                }
                actions
            }
            Need::Referee(segment) => {
                self.referee_segments += 1;
                self.referee_fuel += FUEL_PER_STEP;
                // The referee knows only honest execution: from the agreed
                // honest state it computes the next honest one.
                let next = match segment.agreed {
                    None => honest_hash(&task, 1),
                    Some(agreed) if agreed == honest_hash(&task, segment.position) => {
                        honest_hash(&task, segment.position + 1)
                    }
                    Some(_) => h(&[b"no honest successor"]),
                };
                self.verifier.dispute_referee(id, next, self.now).unwrap()
            }
            Need::Lengths | Need::Done(_) => Vec::new(),
        }
    }

    /// The first provider that behaves as `behaviour`.
    pub fn provider(&self, behaviour: Behaviour) -> &Provider {
        self.providers
            .iter()
            .find(|p| p.behaviour == behaviour)
            .unwrap()
    }

    /// Tasks whose final accepted digest is wrong, over every job run; an
    /// open job's task with no accepted result counts as wrong.
    pub fn wrong_final_results(&self) -> u32 {
        let mut wrong = 0;
        for (task, digest) in &self.closed_results {
            wrong += u32::from(*digest != truth(task));
        }
        for job in &self.jobs {
            for t in 0..self.tasks_per_job {
                let right = self.verifier.accepted(&(*job, t)) == Some(truth(&(*job, t)));
                wrong += u32::from(!right);
            }
        }
        wrong
    }

    /// Honest providers' executions that were not paid (or were convicted).
    pub fn honest_unpaid(&self) -> u64 {
        self.providers
            .iter()
            .filter(|p| p.behaviour == Behaviour::Honest)
            .map(|p| {
                if p.convicted {
                    p.executions.max(1)
                } else {
                    p.executions - p.paid_tasks.len() as u64
                }
            })
            .sum()
    }
}
