//! Four validators on commonware's deterministic runtime and simulated
//! network: one crashes, one is partitioned and healed, one restarts again
//! and again. Every honest validator must finalize the same blocks with the
//! same state roots, and the same seed must give the same run. In another
//! run one validator is an extreme proposer, whose every proposal carries a
//! field at the edge of its range: the others must refuse each one and keep
//! finalizing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_chain::adversary::{Tamper, run_tampering_validator};
use cairn_chain::{
    Block, Channels, Digest, Ledger, StateStore, TIMESTAMP_AHEAD_MS_MAX, TXS_PER_BLOCK_MAX,
    Timeouts, max_message_size, run_validator,
};
use cairn_ledger::{Genesis, State, TxBody, TxKind};
use cairn_wire::{ContentId, Keypair};
use commonware_consensus::types::Height;
use commonware_cryptography::{Digestible as _, Signer as _, ed25519};
use commonware_p2p::simulated::{self, Link, Oracle};
use commonware_runtime::{
    Clock as _, Handle, Quota, Runner as _, Spawner as _, Supervisor as _, deterministic,
};
use commonware_utils::SystemTimeExt as _;
use commonware_utils::ordered::Set;
use commonware_utils::{NZU32, NZUsize, TryCollect as _};

const VALIDATORS: usize = 4;
const USERS: usize = 8;

type PublicKey = ed25519::PublicKey;

struct Cluster {
    context: deterministic::Context,
    oracle: Oracle<PublicKey, deterministic::Context>,
    signers: Vec<ed25519::PrivateKey>,
    participants: Set<PublicKey>,
    genesis: State,
    stores: Vec<PathBuf>,
    ledgers: Vec<Option<Ledger>>,
    handles: Vec<Option<Handle<()>>>,
    /// How each validator rewrites its own proposals (`None`: honest).
    tampers: Vec<Option<Tamper>>,
    users: Vec<Keypair>,
    nonces: Vec<u64>,
    link: Link,
}

impl Cluster {
    async fn start(&mut self, i: usize) {
        assert!(self.handles[i].is_none());
        let store = StateStore::open(&self.stores[i]).expect("opening the store");
        let ledger = Ledger::open(self.genesis.clone(), Some(store)).expect("opening the ledger");
        let key = self.signers[i].public_key();
        let control = self.oracle.control(key.clone());
        let quota = Quota::per_second(NZU32!(10_000));
        let channels = Channels {
            vote: control.register(0, quota).await.unwrap(),
            certificate: control.register(1, quota).await.unwrap(),
            resolver: control.register(2, quota).await.unwrap(),
            backfill: control.register(3, quota).await.unwrap(),
            broadcast: control.register(4, quota).await.unwrap(),
        };
        let (peers, blocker) = (self.oracle.manager(), self.oracle.control(key));
        let (signer, participants) = (self.signers[i].clone(), self.participants.clone());
        let node_ledger = ledger.clone();
        let tamper = self.tampers[i].clone();
        let handle = self
            .context
            .child("validator")
            .with_attribute("index", i)
            .spawn(move |context| async move {
                let (prefix, timeouts) = (format!("v{i}"), Timeouts::default());
                match tamper {
                    None => {
                        run_validator(
                            context,
                            signer,
                            participants,
                            prefix,
                            peers,
                            blocker,
                            channels,
                            node_ledger,
                            timeouts,
                        )
                        .await
                    }
                    Some(tamper) => {
                        run_tampering_validator(
                            context,
                            signer,
                            participants,
                            prefix,
                            peers,
                            blocker,
                            channels,
                            node_ledger,
                            timeouts,
                            tamper,
                        )
                        .await
                    }
                }
            });
        self.ledgers[i] = Some(ledger);
        self.handles[i] = Some(handle);
    }

    async fn crash(&mut self, i: usize) {
        let handle = self.handles[i].take().expect("running");
        handle.abort();
        let _ = handle.await;
        // Forget everything in memory: a restart starts from the store.
        self.ledgers[i] = None;
    }

    async fn cut(&self, i: usize, connected: bool) {
        let me = self.signers[i].public_key();
        for other in &self.signers {
            let other = other.public_key();
            if other == me {
                continue;
            }
            for (a, b) in [(me.clone(), other.clone()), (other.clone(), me.clone())] {
                if connected {
                    self.oracle.add_link(a, b, self.link.clone()).await.unwrap();
                } else {
                    self.oracle.remove_link(a, b).await.unwrap();
                }
            }
        }
    }

    /// Signs `count` transfers and gives them to every running validator.
    fn submit_transfers(&mut self, count: usize) {
        for n in 0..count {
            let from = n % USERS;
            let to = (n * 3 + 1) % USERS;
            let body = TxBody {
                chain: self.genesis.chain(),
                nonce: self.nonces[from],
                kind: TxKind::Transfer {
                    to: self.users[to].public(),
                    amount: 1 + n as u64,
                },
            };
            self.nonces[from] += 1;
            let bytes = body.sign(&self.users[from]).to_bytes();
            for ledger in self.ledgers.iter().flatten() {
                ledger
                    .submit(bytes.clone())
                    .expect("a valid transaction is accepted");
            }
        }
    }

    async fn wait_for(&self, height: u64, who: &[usize]) {
        while who
            .iter()
            .any(|&i| self.ledgers[i].as_ref().is_none_or(|l| l.height() < height))
        {
            self.context.sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Four validators on a simulated network with 20 ms links (2% loss);
/// validator `i` rewrites its proposals with `tampers[i]`.
async fn cluster(
    context: &deterministic::Context,
    dir: &Path,
    tampers: Vec<Option<Tamper>>,
) -> Cluster {
    let signers: Vec<_> = (0..VALIDATORS as u64)
        .map(ed25519::PrivateKey::from_seed)
        .collect();
    let participants: Set<PublicKey> = signers
        .iter()
        .map(|s| s.public_key())
        .try_collect()
        .unwrap();
    let (network, oracle) = simulated::Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: max_message_size(VALIDATORS as u32),
            max_peers_per_set: NZUsize!(VALIDATORS),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        participants.clone(),
    )
    .await;
    network.start();
    let users: Vec<Keypair> = (0..USERS as u8)
        .map(|i| Keypair::from_seed([i + 1; 32]))
        .collect();
    let publics: Vec<_> = users.iter().map(Keypair::public).collect();
    let genesis = Genesis::with_balances("sim", &publics, 1_000_000)
        .state()
        .unwrap();
    let mut cluster = Cluster {
        context: context.child("cluster"),
        oracle,
        signers,
        participants,
        genesis,
        stores: (0..VALIDATORS)
            .map(|i| dir.join(format!("v{i}.redb")))
            .collect(),
        ledgers: (0..VALIDATORS).map(|_| None).collect(),
        handles: (0..VALIDATORS).map(|_| None).collect(),
        tampers,
        users,
        nonces: vec![0; USERS],
        link: Link {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            success_rate: commonware_utils::probability!(0.98),
        },
    };
    for a in &cluster.signers {
        for b in &cluster.signers {
            if a.public_key() != b.public_key() {
                let link = cluster.link.clone();
                cluster
                    .oracle
                    .add_link(a.public_key(), b.public_key(), link)
                    .await
                    .unwrap();
            }
        }
    }
    for i in 0..VALIDATORS {
        cluster.start(i).await;
    }
    cluster
}

/// Runs the scenario; returns the run's audit digest and each validator's
/// roots by height.
fn scenario(seed: u64, dir: &Path) -> (String, Vec<BTreeMap<u64, ContentId>>, u64) {
    println!("simulation seed: {seed}");
    let config = deterministic::Config::new()
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(3_600)));
    let dir = dir.to_path_buf();
    deterministic::Runner::new(config).start(|context| async move {
        let mut cluster = cluster(&context, &dir, vec![None; VALIDATORS]).await;
        let publics: Vec<_> = cluster.users.iter().map(Keypair::public).collect();
        cluster.submit_transfers(40);
        cluster.wait_for(5, &[0, 1, 2, 3]).await;

        // One validator crashes: the other three carry on.
        cluster.crash(3).await;
        cluster.submit_transfers(40);
        cluster.wait_for(15, &[0, 1, 2]).await;

        // It comes back from its store; another is partitioned away.
        cluster.start(3).await;
        cluster.cut(2, false).await;
        cluster.submit_transfers(40);
        cluster.wait_for(25, &[0, 1, 3]).await;

        // The partition heals; one validator restarts again and again.
        cluster.cut(2, true).await;
        for _ in 0..3 {
            cluster.crash(1).await;
            cluster.submit_transfers(10);
            context.sleep(Duration::from_secs(2)).await;
            cluster.start(1).await;
            cluster.context.sleep(Duration::from_secs(2)).await;
        }
        cluster.submit_transfers(20);
        let target = cluster.ledgers[0].as_ref().unwrap().height() + 5;
        cluster.wait_for(target, &[0, 1, 2, 3]).await;

        let roots: Vec<_> = cluster
            .ledgers
            .iter()
            .map(|l| l.as_ref().unwrap().roots())
            .collect();
        let applied: u64 = cluster.ledgers[0]
            .as_ref()
            .unwrap()
            .state()
            .account(&publics[0])
            .nonce;
        for ledger in cluster.ledgers.iter().flatten() {
            let state = ledger.state();
            assert_eq!(state.total_accounted(), u128::from(state.supply()));
        }
        (context.auditor().state(), roots, applied)
    })
}

#[test]
fn validators_agree_through_crash_partition_and_restarts_and_runs_repeat() {
    // CAIRN_SIM_SEED=<n> replays one seed; by default a few fixed ones run.
    let seeds: Vec<u64> = match std::env::var("CAIRN_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("CAIRN_SIM_SEED is a number")],
        Err(_) => vec![7, 11, 23],
    };
    for seed in seeds {
        check_seed(seed);
    }
}

fn check_seed(seed: u64) {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (audit, roots, applied) = scenario(seed, dir_a.path());
    // Every pair of validators agrees at every height both applied.
    for (i, mine) in roots.iter().enumerate() {
        for theirs in &roots[i + 1..] {
            for (height, root) in mine {
                if let Some(other) = theirs.get(height) {
                    assert_eq!(root, other, "validators disagree at height {height}");
                }
            }
        }
    }
    let common = roots
        .iter()
        .map(|r| *r.keys().max().unwrap())
        .min()
        .unwrap();
    println!(
        "common height {common}; user 0 nonce {applied}; roots held: {:?}",
        roots.iter().map(BTreeMap::len).collect::<Vec<_>>()
    );
    assert!(common >= 30, "the chain advanced to height {common}");
    assert!(applied > 10, "user 0's transfers were applied ({applied})");
    // The restarted validators recovered their state from the store: they
    // hold roots for heights they applied before crashing and after.
    assert!(roots[1].len() > 1 && roots[3].len() > 1);

    let (audit_again, roots_again, _) = scenario(seed, dir_b.path());
    assert_eq!(audit, audit_again, "the same seed gave a different run");
    assert_eq!(roots, roots_again);
}

/// A field at the edge of its range, one per proposal of the extreme
/// proposer, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extreme {
    /// The timestamp at `u64::MAX` (the next `+ 1` once wrapped in release
    /// builds and halted the chain).
    TimestampMax,
    /// A timestamp at zero, before its parent's.
    TimestampZero,
    /// A timestamp a day ahead of every clock.
    TimestampDayAhead,
    /// A height that skips one.
    HeightSkip,
    /// One transaction more than a block may hold.
    TooManyTxs,
}

const EXTREMES: [Extreme; 5] = [
    Extreme::TimestampMax,
    Extreme::TimestampZero,
    Extreme::TimestampDayAhead,
    Extreme::HeightSkip,
    Extreme::TooManyTxs,
];

/// The extreme proposer: a validator that is honest except that each of
/// its proposals carries the next of [`EXTREMES`]. Records what it proposed.
fn extreme_proposer(proposed: Arc<Mutex<Vec<(Extreme, Digest)>>>) -> Tamper {
    Arc::new(move |_parent: &Block, block: &mut Block| {
        let mut proposed = proposed.lock().unwrap();
        let extreme = EXTREMES[proposed.len() % EXTREMES.len()];
        match extreme {
            Extreme::TimestampMax => block.timestamp_ms = u64::MAX,
            Extreme::TimestampZero => block.timestamp_ms = 0,
            Extreme::TimestampDayAhead => block.timestamp_ms += 86_400_000,
            Extreme::HeightSkip => block.height = Height::new(block.height.get() + 1),
            Extreme::TooManyTxs => block.txs = vec![Vec::new(); TXS_PER_BLOCK_MAX + 1],
        }
        proposed.push((extreme, block.digest()));
    })
}

const EXTREME: usize = 3;
const HONEST: [usize; 3] = [0, 1, 2];

/// Runs validators 0 to 2 with the extreme proposer as validator 3 until it
/// has proposed each extreme twice and the chain has finalized five more
/// blocks; returns the audit digest, the honest validators' ledgers and
/// what the extreme proposer proposed.
fn extreme_scenario(seed: u64, dir: &Path) -> (String, Vec<Ledger>, Vec<(Extreme, Digest)>) {
    println!("simulation seed: {seed} (CAIRN_SIM_SEED={seed} replays it)");
    let config = deterministic::Config::new()
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(3_600)));
    let dir = dir.to_path_buf();
    deterministic::Runner::new(config).start(|context| async move {
        let proposed = Arc::new(Mutex::new(Vec::new()));
        let mut tampers = vec![None; VALIDATORS];
        tampers[EXTREME] = Some(extreme_proposer(proposed.clone()));
        let mut cluster = cluster(&context, &dir, tampers).await;
        // No validator restarts in this run: its ledger stays the same.
        let honest: Vec<Ledger> = HONEST
            .iter()
            .map(|&i| cluster.ledgers[i].clone().unwrap())
            .collect();
        let heights = || honest.iter().map(Ledger::height).collect::<Vec<_>>();
        // Simulated time: the whole run takes well under a minute of it
        // when the chain is live.
        let started = context.current();
        let live = |what: &str| {
            let elapsed = context.current().duration_since(started).unwrap();
            assert!(
                elapsed < Duration::from_secs(300),
                "the chain stopped at heights {:?} waiting for {what}, after {} extreme proposals",
                heights(),
                proposed.lock().unwrap().len()
            );
        };
        cluster.submit_transfers(40);
        while proposed.lock().unwrap().len() < 2 * EXTREMES.len() {
            live("the extreme proposer to lead");
            context.sleep(Duration::from_millis(100)).await;
        }
        cluster.submit_transfers(40);
        let target = heights().into_iter().max().unwrap() + 5;
        while heights().into_iter().min().unwrap() < target {
            live("five more blocks");
            context.sleep(Duration::from_millis(100)).await;
        }
        let now_ms = context.current().epoch_millis();

        for ledger in &honest {
            // Every height applied, each block after its parent and within
            // the bound of the clock.
            let height = ledger.height();
            assert!(height >= target);
            let heights: Vec<u64> = ledger.roots().into_keys().collect();
            assert_eq!(heights, (0..=height).collect::<Vec<_>>());
            let mut previous_ms = 0;
            for h in 1..=height {
                let block = ledger.block(h).unwrap();
                assert!(
                    block.timestamp_ms > previous_ms,
                    "block {h} is not after its parent"
                );
                assert!(block.timestamp_ms <= now_ms + TIMESTAMP_AHEAD_MS_MAX);
                previous_ms = block.timestamp_ms;
            }
            let state = ledger.state();
            assert_eq!(state.total_accounted(), u128::from(state.supply()));
        }
        let applied = honest[0].state().account(&cluster.users[0].public()).nonce;
        assert_eq!(applied, 10, "user 0's transfers were all applied");
        let proposed = proposed.lock().unwrap().clone();
        (context.auditor().state(), honest, proposed)
    })
}

#[test]
fn extreme_proposer_is_refused_and_the_chain_keeps_finalizing() {
    // CAIRN_SIM_SEED=<n> replays one seed; by default a few fixed ones run.
    let seeds: Vec<u64> = match std::env::var("CAIRN_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("CAIRN_SIM_SEED is a number")],
        Err(_) => vec![5, 13],
    };
    for seed in seeds {
        let dir = tempfile::tempdir().unwrap();
        let (audit, honest, proposed) = extreme_scenario(seed, dir.path());
        let heights: Vec<u64> = honest.iter().map(Ledger::height).collect();
        println!(
            "extreme proposals: {}; honest heights {heights:?}",
            proposed.len()
        );
        for extreme in EXTREMES {
            assert!(
                proposed.iter().filter(|(e, _)| *e == extreme).count() >= 2,
                "the extreme proposer led with {extreme:?} twice"
            );
        }
        // None of its proposals was finalized by anyone.
        for ledger in &honest {
            for h in 1..=ledger.height() {
                let digest = ledger.block(h).unwrap().digest;
                if let Some((extreme, _)) = proposed.iter().find(|(_, d)| *d == digest) {
                    panic!("a proposal with {extreme:?} was finalized at height {h}");
                }
            }
        }
        // The honest validators agree.
        let roots: Vec<_> = honest.iter().map(Ledger::roots).collect();
        for theirs in &roots[1..] {
            for (height, root) in theirs {
                if let Some(mine) = roots[0].get(height) {
                    assert_eq!(root, mine, "validators disagree at height {height}");
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (audit_again, _, _) = extreme_scenario(seed, dir.path());
        assert_eq!(audit, audit_again, "the same seed gave a different run");
    }
}
