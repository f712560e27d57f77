//! The bisection game against liars of every strategy: an honest side never
//! loses, the liar always does, and the referee runs one segment.
//!
//! Rerun one seed with `CAIRN_SIM_SEED=n cargo test -p cairn-verify --test dispute`.

use cairn_market::Rng;
use cairn_verify::{Game, Need, Side, StateHash};
use cairn_wire::ContentId;

fn h(tag: &[u8], n: u64) -> StateHash {
    let mut bytes = tag.to_vec();
    bytes.extend_from_slice(&n.to_le_bytes());
    *ContentId::of(&bytes).as_bytes()
}

/// The honest trace: `len` positions, the last the digest.
fn honest(len: u64, p: u64) -> StateHash {
    if p + 1 >= len {
        h(b"digest", 0)
    } else {
        h(b"state", p)
    }
}

/// How a liar answers.
#[derive(Clone, Copy, Debug)]
enum Liar {
    /// Honest until `departs`, then its own states, then a wrong digest.
    Departs(u64),
    /// Honest everywhere it is asked except the final digest.
    OnlyTheDigest,
    /// Random hashes everywhere.
    Garbage,
    /// Claims a shorter trace, honest until it ends.
    Shorter(u64),
    /// Claims a longer trace (keeps computing past the honest end).
    Longer(u64),
}

fn liar_len(liar: Liar, len: u64) -> u64 {
    match liar {
        Liar::Shorter(k) => (len - k).max(2),
        Liar::Longer(k) => len + k,
        _ => len,
    }
}

fn liar_hash(liar: Liar, len: u64, p: u64, rng: &mut Rng) -> StateHash {
    let mine = liar_len(liar, len);
    if p + 1 >= mine {
        return h(b"wrong digest", 0);
    }
    match liar {
        Liar::Departs(d) if p >= d => h(b"lie", p),
        Liar::Garbage => h(b"noise", rng.next_u64()),
        Liar::Longer(_) if p + 1 >= len => h(b"extra", p),
        _ => honest(len, p),
    }
}

/// The referee knows only honest execution.
fn referee(len: u64, position: u64, agreed: Option<StateHash>) -> StateHash {
    match agreed {
        None => honest(len, 1),
        Some(a) if a == honest(len, position) => honest(len, position + 1),
        Some(_) => h(b"no honest successor", position),
    }
}

fn play(seed: u64) {
    let mut rng = Rng::new(seed);
    let span = if rng.below(4) == 0 { 3 } else { 100_000 };
    let len = 2 + rng.below(span);
    let liar = match rng.below(5) {
        0 => Liar::Departs(1 + rng.below(len)),
        1 => Liar::OnlyTheDigest,
        2 => Liar::Garbage,
        3 => Liar::Shorter(1 + rng.below(len)),
        _ => Liar::Longer(1 + rng.below(1_000)),
    };
    let liar_side = if rng.below(2) == 0 { Side::A } else { Side::B };
    let honest_digest = ContentId::from_digest(honest(len, len - 1));
    let liar_digest = ContentId::from_digest(h(b"wrong digest", 0));
    let (a, b) = match liar_side {
        Side::A => (liar_digest, honest_digest),
        Side::B => (honest_digest, liar_digest),
    };
    let mut game = Game::new(a, b, 16, 1_000, 0);
    for side in Side::BOTH {
        let n = if side == liar_side {
            liar_len(liar, len)
        } else {
            len
        };
        game.length(side, n, 1).unwrap();
    }
    let mut referee_runs = 0;
    let verdict = loop {
        match game.need().clone() {
            Need::Hashes { .. } => {
                for side in Side::BOTH {
                    let asked = game.asked_of(side);
                    if asked.is_empty() {
                        continue;
                    }
                    let hashes: Vec<StateHash> = asked
                        .iter()
                        .map(|&p| {
                            if side == liar_side {
                                liar_hash(liar, len, p, &mut rng)
                            } else {
                                honest(len, p)
                            }
                        })
                        .collect();
                    game.hashes(side, &hashes, 2).unwrap();
                }
            }
            Need::Referee(segment) => {
                referee_runs += 1;
                let next = referee(len, segment.position, segment.agreed);
                break game.referee(next).unwrap().clone();
            }
            Need::Done(verdict) => break verdict,
            Need::Lengths => unreachable!("lengths were given"),
        }
    };
    assert_eq!(
        verdict.losers,
        vec![liar_side],
        "seed {seed}: {liar:?} over {len} positions: {}",
        verdict.reason
    );
    assert!(referee_runs <= 1);
    // Rounds are logarithmic in the trace: 16-ary search.
    let longest = len.max(liar_len(liar, len)) as f64;
    let rounds_max = longest.log(16.0).ceil() as u32 + 1;
    assert!(
        game.rounds() <= rounds_max,
        "seed {seed}: {} rounds",
        game.rounds()
    );
}

#[test]
fn honest_side_always_wins_against_every_kind_of_liar() {
    let seeds: Vec<u64> = match std::env::var("CAIRN_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("CAIRN_SIM_SEED is a number")],
        Err(_) => (1..=2_000).collect(),
    };
    println!("dispute seeds {}..={}", seeds[0], seeds[seeds.len() - 1]);
    for seed in seeds {
        play(seed);
    }
}

#[test]
fn a_side_that_stops_answering_loses_at_the_deadline() {
    let mut game = Game::new(ContentId::of(b"a"), ContentId::of(b"b"), 16, 1_000, 0);
    game.length(Side::A, 1_000, 10).unwrap();
    game.length(Side::B, 1_000, 10).unwrap();
    let asked = game.asked_of(Side::A);
    let hashes: Vec<StateHash> = asked.iter().map(|&p| h(b"state", p)).collect();
    game.hashes(Side::A, &hashes, 20).unwrap();
    assert_eq!(game.deadline_ms(), Some(1_010), "when to wake for it");
    assert!(game.tick(1_009).is_none(), "not yet due");
    let verdict = game.tick(1_010).expect("B is late").clone();
    assert_eq!(verdict.losers, vec![Side::B]);
    assert!(verdict.reason.contains("did not answer"));
    assert_eq!(game.deadline_ms(), None, "over: nothing left to time");
}

#[test]
fn a_malformed_answer_loses_and_a_late_one_changes_nothing() {
    let mut game = Game::new(ContentId::of(b"a"), ContentId::of(b"b"), 16, 1_000, 0);
    assert!(
        game.length(Side::A, 1, 0).is_err(),
        "a trace has at least start and digest"
    );
    assert!(matches!(game.need(), Need::Done(v) if v.losers == vec![Side::A]));
    assert!(game.length(Side::B, 100, 0).is_err(), "the game is over");
    assert!(matches!(game.need(), Need::Done(v) if v.losers == vec![Side::A]));

    // A side answering twice is refused, not convicted.
    let mut game = Game::new(ContentId::of(b"a"), ContentId::of(b"b"), 16, 1_000, 0);
    game.length(Side::A, 500, 0).unwrap();
    assert!(!game.awaits(Side::A) && game.awaits(Side::B));
    assert_eq!(
        game.length(Side::A, 500, 0),
        Err(cairn_verify::Foul::Unexpected)
    );
    assert_eq!(game.need(), &Need::Lengths);

    let mut game = Game::new(ContentId::of(b"a"), ContentId::of(b"b"), 16, 1_000, 0);
    game.length(Side::A, 500, 0).unwrap();
    game.length(Side::B, 500, 0).unwrap();
    assert!(
        game.hashes(Side::B, &[[0; 32]], 1).is_err(),
        "one hash for fifteen points"
    );
    assert!(matches!(game.need(), Need::Done(v) if v.losers == vec![Side::B]));
}

#[test]
fn a_ten_billion_position_trace_takes_nine_rounds() {
    // A 10^9-fuel task split into 10^3-fuel steps would be a million
    // positions; even 10^10 positions need only ceil(log16) rounds.
    let len = 10_000_000_000u64;
    let mut game = Game::new(
        ContentId::of(b"honest"),
        ContentId::of(b"liar"),
        16,
        1_000,
        0,
    );
    game.length(Side::A, len, 0).unwrap();
    game.length(Side::B, len, 0).unwrap();
    let departs = 7_777_777_777u64;
    while let Need::Hashes { .. } = game.need() {
        for side in Side::BOTH {
            let asked = game.asked_of(side);
            let hashes: Vec<StateHash> = asked
                .iter()
                .map(|&p| {
                    if side == Side::B && p >= departs {
                        h(b"lie", p)
                    } else {
                        h(b"state", p)
                    }
                })
                .collect();
            game.hashes(side, &hashes, 1).unwrap();
        }
    }
    let Need::Referee(segment) = game.need().clone() else {
        panic!("expected the referee, got {:?}", game.need());
    };
    assert_eq!(
        segment.position,
        departs - 1,
        "the first wrong step is found exactly"
    );
    assert!(game.rounds() <= 9, "{} rounds", game.rounds());
}

const MINUTE_MS: u64 = 60_000;

/// A task of ten minutes (at 500 Mfuel/s) whose honest side needs 22
/// minutes to trace it before it can answer the first round, against a liar
/// that answers at once: the first round's deadline grows with the task's
/// declared fuel, the honest side answers in time, and the liar is
/// convicted. (With the round's 60 s alone, the honest side lost.) A
/// program with steps: a million positions.
#[test]
fn a_ten_minute_task_disputed_by_a_liar_is_won_by_the_honest_side() {
    let rounds = ten_minute_dispute(1_000_000, 777_777, 22 * MINUTE_MS);
    assert!(rounds >= 4, "the game bisected ({rounds} rounds)");
}

/// The same over a program the runtime pauses (no `cairn_step`): its
/// trace has at most 4,097 positions, the states at fuel boundaries, and
/// tracing it costs 1.37–1.43× a plain run (`cairn bench verify`), so 15
/// minutes here. The honest side wins, in fewer rounds; and it still wins
/// when its trace takes all but a minute of the first round's allowance
/// (the declared fuel at `dispute_trace_fuel_per_ms`: 100 minutes for
/// this task), which is what a slower machine than the liar's may need.
#[test]
fn a_ten_minute_paused_program_disputed_by_a_liar_is_won_by_the_honest_side() {
    let paused = 4_097;
    let rounds = ten_minute_dispute(paused, paused * 2 / 3, 15 * MINUTE_MS);
    assert!((2..=4).contains(&rounds), "{rounds} rounds");
    ten_minute_dispute(paused, paused * 2 / 3, 99 * MINUTE_MS);
}

/// Plays a dispute over a ten-minute task (at 500 Mfuel/s) of `len`
/// positions between an honest side that answers the first round after
/// `trace_ms` of tracing and a liar that departs at `departs` and answers
/// at once; asserts the liar, and only the liar, is convicted. Returns the
/// rounds of hashes played.
fn ten_minute_dispute(len: u64, departs: u64, trace_ms: u64) -> u32 {
    use cairn_job::VerifyPolicy;
    use cairn_verify::{Action, Commitment, Params, Reveal, Verifier};
    use cairn_wire::Keypair;

    let fuel = 10 * MINUTE_MS * 500_000;
    let liar_strategy = Liar::Departs(departs);
    let mut verifier = Verifier::new(Params::default(), 1);
    let job = ContentId::of(b"ten-minute task");
    verifier.open_job(job, VerifyPolicy::Replicate { replicas: 2 }, 1, fuel);
    let honest_key = Keypair::from_seed([1; 32]).public();
    let liar_key = Keypair::from_seed([2; 32]).public();
    let digests = [
        (honest_key, ContentId::from_digest(honest(len, len - 1))),
        (
            liar_key,
            ContentId::from_digest(liar_hash(liar_strategy, len, len, &mut Rng::new(0))),
        ),
    ];
    let task = (job, 0);
    for (provider, _) in &digests {
        verifier.assign(&task, *provider, 0).unwrap();
    }
    let mut actions = Vec::new();
    for (i, (provider, digest)) in digests.iter().enumerate() {
        let reveal = Reveal {
            digest: *digest,
            salt: [i as u8; 32],
        };
        let commit = Commitment::new(provider, &reveal);
        verifier.commit(&task, provider, commit, 1).unwrap();
        actions.push(reveal);
    }
    let mut started = Vec::new();
    for ((provider, _), reveal) in digests.iter().zip(&actions) {
        started = verifier.reveal(&task, provider, reveal, 2).unwrap();
    }
    let id = dispute_started(&started);

    let convicted = |actions: &[Action]| -> Vec<cairn_wire::PublicKey> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Convicted { provider, .. } => Some(*provider),
                _ => None,
            })
            .collect()
    };
    // The liar answers at once; the honest side is tracing.
    let liar_len_now = liar_len(liar_strategy, len);
    assert!(
        convicted(
            &verifier
                .dispute_length(id, &liar_key, liar_len_now, 2)
                .unwrap()
        )
        .is_empty()
    );
    for minute in 1..trace_ms / MINUTE_MS {
        let ticked = verifier.tick(2 + minute * MINUTE_MS);
        assert!(convicted(&ticked).is_empty(), "minute {minute}: {ticked:?}");
    }
    let mut now = 2 + trace_ms;
    verifier.dispute_length(id, &honest_key, len, now).unwrap();

    // From the trace, every later round is answered at once.
    let mut rng = Rng::new(7);
    let mut rounds = 0;
    let ended = loop {
        now += 1_000;
        let (sides, need) = {
            let (_, sides, game) = verifier.game(id).expect("the dispute is open");
            let asks: Vec<Vec<u64>> = Side::BOTH.iter().map(|&s| game.asked_of(s)).collect();
            (
                sides.iter().copied().zip(asks).collect::<Vec<_>>(),
                game.need().clone(),
            )
        };
        match need {
            Need::Hashes { .. } => {
                rounds += 1;
                let mut last = Vec::new();
                for (provider, asked) in sides {
                    let hashes: Vec<StateHash> = asked
                        .iter()
                        .map(|&p| {
                            if provider == honest_key {
                                honest(len, p)
                            } else {
                                liar_hash(liar_strategy, len, p, &mut rng)
                            }
                        })
                        .collect();
                    last = verifier
                        .dispute_hashes(id, &provider, &hashes, now)
                        .unwrap();
                }
                if !convicted(&last).is_empty() {
                    break last;
                }
            }
            Need::Referee(segment) => {
                let reached = referee(len, segment.position, segment.agreed);
                break verifier.dispute_referee(id, reached, now).unwrap();
            }
            other => panic!("unexpected need {other:?}"),
        }
    };
    assert_eq!(convicted(&ended), vec![liar_key]);
    assert!(
        verifier.game(id).is_none(),
        "a decided dispute is forgotten"
    );
    rounds
}

/// The dispute `actions` started.
fn dispute_started(actions: &[cairn_verify::Action]) -> u64 {
    actions
        .iter()
        .find_map(|a| match a {
            cairn_verify::Action::Dispute { id, .. } => Some(*id),
            _ => None,
        })
        .expect("different digests start a dispute")
}

/// A job closed while one of its disputes is still open (its sides never
/// answered, say) takes the dispute with it, so a long-lived requester does
/// not keep, and tick, every dispute it ever started.
#[test]
fn closing_a_job_forgets_its_open_disputes() {
    use cairn_job::VerifyPolicy;
    use cairn_verify::{Commitment, Params, Reveal, Verifier};
    use cairn_wire::Keypair;

    let mut verifier = Verifier::new(Params::default(), 1);
    let job = ContentId::of(b"closed with a dispute open");
    verifier.open_job(job, VerifyPolicy::Replicate { replicas: 2 }, 1, 1_000);
    let task = (job, 0);
    let sides = [1u8, 2].map(|i| Keypair::from_seed([i; 32]).public());
    let reveals = sides.map(|side| Reveal {
        digest: ContentId::of(side.as_bytes()),
        salt: [0; 32],
    });
    for (side, reveal) in sides.iter().zip(&reveals) {
        verifier.assign(&task, *side, 0).unwrap();
        verifier
            .commit(&task, side, Commitment::new(side, reveal), 1)
            .unwrap();
    }
    let mut started = Vec::new();
    for (side, reveal) in sides.iter().zip(&reveals) {
        started = verifier.reveal(&task, side, reveal, 2).unwrap();
    }
    let id = dispute_started(&started);
    assert!(
        verifier.next_deadline_ms().is_some(),
        "the dispute is timed"
    );

    assert_eq!(verifier.close_job(&job), [id]);
    assert!(verifier.game(id).is_none() && verifier.disputes().is_empty());
    assert_eq!(verifier.next_deadline_ms(), None, "nothing left to time");
}

/// Assigns `task` to `provider` and takes its commitment to `digest` at
/// `at`; returns what it will reveal (asked once every replica committed).
fn committed(
    verifier: &mut cairn_verify::Verifier,
    task: &cairn_verify::TaskKey,
    provider: cairn_wire::PublicKey,
    digest: ContentId,
    at: u64,
) -> cairn_verify::Reveal {
    use cairn_verify::{Commitment, Reveal};
    let reveal = Reveal {
        digest,
        salt: [0; 32],
    };
    verifier.assign(task, provider, at).unwrap();
    verifier
        .commit(task, &provider, Commitment::new(&provider, &reveal), at + 1)
        .unwrap();
    reveal
}

/// A job decided by vote (an installed tool, which no referee can re-run
/// step by step): two replicas that disagree start no dispute and convict
/// no one; a third replica decides, and only the majority is accepted.
#[test]
fn a_vote_decides_a_disagreement_where_no_dispute_can() {
    use cairn_job::VerifyPolicy;
    use cairn_verify::{Action, Params, Verifier};
    use cairn_wire::Keypair;

    let mut verifier = Verifier::new(Params::default(), 1);
    let job = ContentId::of(b"a tool job");
    verifier.open_job(job, VerifyPolicy::Replicate { replicas: 2 }, 1, 1_000);
    verifier.decide_by_vote(&job);
    let task = (job, 0);
    let [a, b, c] = [1u8, 2, 3].map(|i| Keypair::from_seed([i; 32]).public());
    let right = ContentId::of(b"right");
    let other = ContentId::of(b"another build's bits");
    let reveal_a = committed(&mut verifier, &task, a, right, 0);
    let reveal_b = committed(&mut verifier, &task, b, other, 0);
    assert!(verifier.reveal(&task, &a, &reveal_a, 5).unwrap().is_empty());
    let split = verifier.reveal(&task, &b, &reveal_b, 6).unwrap();
    assert!(
        split.is_empty(),
        "a split vote starts nothing but another replica: {split:?}"
    );
    assert!(verifier.needs(&task), "a third replica is wanted");
    let reveal_c = committed(&mut verifier, &task, c, right, 10);
    let decided = verifier.reveal(&task, &c, &reveal_c, 15).unwrap();
    match decided.as_slice() {
        [
            Action::Accept {
                digest, providers, ..
            },
            Action::Expelled {
                provider, reopened, ..
            },
        ] => {
            assert_eq!(*digest, right);
            assert_eq!(providers.len(), 2);
            assert!(providers.contains(&a) && providers.contains(&c));
            assert_eq!((*provider, reopened.len()), (b, 0), "b leaves the job");
        }
        other => panic!("expected the majority accepted, got {other:?}"),
    }
    assert!(verifier.disputes().is_empty());
    assert_eq!(verifier.stats().disputes, 0);
    // The outvoted provider is not convicted, but its streak starts again.
    let outvoted = verifier.trust().record(&b);
    assert_eq!((outvoted.streak, outvoted.convictions), (0, 0));
    assert_eq!(verifier.trust().record(&a).streak, 1);
}

/// A tool job spot-checked (a frame's tiles each re-rendered elsewhere
/// at random): a result drawn for a check that the check contradicts is
/// decided by a vote, as under `replicate`; one not drawn is accepted on
/// its own, at the cost of one run.
#[test]
fn a_spot_checked_vote_job_decides_a_caught_painter_by_a_vote_and_takes_the_rest_alone() {
    use cairn_job::VerifyPolicy;
    use cairn_verify::{Action, Params, Verifier};
    use cairn_wire::Keypair;

    let [painter, a, b] = [1u8, 2, 3].map(|i| Keypair::from_seed([i; 32]).public());
    let right = ContentId::of(b"the frame");
    let painted = ContentId::of(b"the frame, a corner painted over");

    // Always drawn: the painter's tile is checked, contradicted, and
    // outvoted two to one.
    let mut verifier = Verifier::new(Params::default(), 1);
    let job = ContentId::of(b"a tiled render, always checked");
    verifier.open_job(job, VerifyPolicy::Spot { probability: 1.0 }, 1, 1_000);
    verifier.decide_by_vote(&job);
    let task = (job, 0);
    let reveal = committed(&mut verifier, &task, painter, painted, 0);
    assert!(
        verifier
            .reveal(&task, &painter, &reveal, 1)
            .unwrap()
            .is_empty()
    );
    assert!(verifier.needs(&task), "drawn for a check: a second replica");
    let reveal = committed(&mut verifier, &task, a, right, 2);
    assert!(verifier.reveal(&task, &a, &reveal, 3).unwrap().is_empty());
    assert!(verifier.needs(&task), "one against one: a third replica");
    let reveal = committed(&mut verifier, &task, b, right, 4);
    match verifier.reveal(&task, &b, &reveal, 5).unwrap().as_slice() {
        [
            Action::Accept {
                digest, providers, ..
            },
            Action::Expelled { provider, .. },
        ] => {
            assert_eq!(*digest, right);
            assert!(!providers.contains(&painter), "{providers:?}");
            assert_eq!(*provider, painter);
        }
        other => panic!("expected the majority accepted, got {other:?}"),
    }
    assert_eq!(verifier.stats().disputes, 0);
    assert_eq!(verifier.trust().record(&painter).streak, 0);

    // Never drawn: one run, accepted alone.
    let mut verifier = Verifier::new(Params::default(), 1);
    let job = ContentId::of(b"a tiled render, never checked");
    verifier.open_job(job, VerifyPolicy::Spot { probability: 0.0 }, 1, 1_000);
    verifier.decide_by_vote(&job);
    let task = (job, 0);
    let reveal = committed(&mut verifier, &task, a, right, 0);
    match verifier.reveal(&task, &a, &reveal, 1).unwrap().as_slice() {
        [Action::Accept { providers, .. }] => assert_eq!(providers, &[a]),
        other => panic!("expected a lone acceptance, got {other:?}"),
    }
}

/// A painter whose tiles mostly went unchecked (spot at one half) is
/// caught on one that was: it leaves the job, and every tile accepted on
/// its word alone is open again, to be run by someone else and checked
/// afresh.
#[test]
fn a_caught_painter_leaves_the_job_and_its_unchecked_tiles_are_open_again() {
    use cairn_job::VerifyPolicy;
    use cairn_verify::{Action, Params, Verifier};
    use cairn_wire::Keypair;

    const TILES: u32 = 12;
    let [painter, a, b] = [1u8, 2, 3].map(|i| Keypair::from_seed([i; 32]).public());
    let right = ContentId::of(b"the tile");
    let painted = ContentId::of(b"the tile, painted");
    let mut verifier = Verifier::new(Params::default(), 7);
    let job = ContentId::of(b"twelve tiles, half checked");
    verifier.open_job(job, VerifyPolicy::Spot { probability: 0.5 }, TILES, 1_000);
    verifier.decide_by_vote(&job);
    // The painter runs every tile; each is drawn for a check or not.
    let mut alone = Vec::new();
    let mut drawn = Vec::new();
    for i in 0..TILES {
        let task = (job, i);
        let reveal = committed(&mut verifier, &task, painter, painted, 0);
        match verifier
            .reveal(&task, &painter, &reveal, 1)
            .unwrap()
            .as_slice()
        {
            [Action::Accept { .. }] => alone.push(i),
            [] => drawn.push(i),
            other => panic!("tile {i}: {other:?}"),
        }
    }
    assert!(
        !alone.is_empty() && drawn.len() >= 2,
        "alone {alone:?}, drawn {drawn:?}"
    );
    // An honest provider checks the second drawn tile too: one against
    // one, it waits for a third.
    let split = (job, drawn[1]);
    let reveal = committed(&mut verifier, &split, a, right, 2);
    assert!(verifier.reveal(&split, &a, &reveal, 3).unwrap().is_empty());
    // And the first: one against one, a third provider decides.
    let caught = (job, drawn[0]);
    let reveal = committed(&mut verifier, &caught, a, right, 4);
    assert!(verifier.reveal(&caught, &a, &reveal, 5).unwrap().is_empty());
    let reveal = committed(&mut verifier, &caught, b, right, 6);
    let decided = verifier.reveal(&caught, &b, &reveal, 7).unwrap();
    let expelled = decided.iter().find_map(|action| match action {
        Action::Expelled {
            provider, reopened, ..
        } => Some((*provider, reopened.clone())),
        _ => None,
    });
    assert_eq!(expelled, Some((painter, alone.clone())), "{decided:?}");
    let reopened: Vec<u32> = decided
        .iter()
        .filter_map(|action| match action {
            Action::Reopen { task } => Some(task.1),
            _ => None,
        })
        .collect();
    assert_eq!(reopened, alone);
    // Each is checked by another provider (the painter's vote stands, to
    // be outvoted or agreed with); so is each drawn tile still waiting for
    // its check.
    for &i in alone.iter().chain(&drawn[2..]) {
        let task = (job, i);
        assert!(verifier.needs(&task), "tile {i} is run again");
        assert!(
            !verifier.eligible(&task, &painter),
            "tile {i}: not by the painter"
        );
        assert!(verifier.eligible(&task, &a), "tile {i}");
    }
    // The split tile's third voter decides it: the painter, outvoted again,
    // is not expelled twice.
    assert!(verifier.eligible(&split, &b));
    let reveal = committed(&mut verifier, &split, b, right, 8);
    match verifier.reveal(&split, &b, &reveal, 9).unwrap().as_slice() {
        [Action::Accept { providers, .. }] => assert_eq!(providers.len(), 2),
        other => panic!("expected the split tile accepted, got {other:?}"),
    }
    // A reopened tile: the painter's result stands until two others agree
    // against it, and then it is not the one accepted.
    let tile = (job, alone[0]);
    let reveal = committed(&mut verifier, &tile, a, right, 10);
    assert!(verifier.reveal(&tile, &a, &reveal, 11).unwrap().is_empty());
    let reveal = committed(&mut verifier, &tile, b, right, 12);
    match verifier.reveal(&tile, &b, &reveal, 13).unwrap().as_slice() {
        [
            Action::Accept {
                digest, providers, ..
            },
        ] => {
            assert_eq!(*digest, right);
            assert!(!providers.contains(&painter));
        }
        other => panic!("expected the reopened tile decided, got {other:?}"),
    }
}

/// With three replicas wanted, a 2–1 vote is not enough: a fourth replica
/// is wanted (the outvoted one is still live and will not change its
/// mind), and the task does not wait for ever.
#[test]
fn a_vote_short_of_the_replicas_wanted_asks_for_one_more() {
    use cairn_job::VerifyPolicy;
    use cairn_verify::{Params, Verifier};
    use cairn_wire::Keypair;

    let mut verifier = Verifier::new(Params::default(), 1);
    let job = ContentId::of(b"a tool job, three replicas");
    verifier.open_job(job, VerifyPolicy::Replicate { replicas: 3 }, 1, 1_000);
    verifier.decide_by_vote(&job);
    let task = (job, 0);
    let replicas: Vec<_> = [(1u8, b"right"), (2, b"wrong"), (3, b"right")]
        .into_iter()
        .map(|(i, digest)| {
            let provider = Keypair::from_seed([i; 32]).public();
            let reveal = committed(&mut verifier, &task, provider, ContentId::of(digest), 0);
            (provider, reveal)
        })
        .collect();
    for (provider, reveal) in &replicas {
        let decided = verifier.reveal(&task, provider, reveal, 5).unwrap();
        assert!(decided.is_empty(), "{decided:?}");
    }
    assert!(verifier.needs(&task), "a fourth replica is wanted");
}
