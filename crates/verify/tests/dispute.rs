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
    assert!(game.tick(1_009).is_none(), "not yet due");
    let verdict = game.tick(1_010).expect("B is late").clone();
    assert_eq!(verdict.losers, vec![Side::B]);
    assert!(verdict.reason.contains("did not answer"));
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
