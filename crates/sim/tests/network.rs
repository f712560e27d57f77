//! The whole market under one seed: requesters, providers that crash and
//! lie, a lossy network and the ledger, with the real role cores.

use cairn_sim::{Config, Outcome, run, seed};

fn checked(config: &Config) -> Outcome {
    let outcome = run(config);
    println!("{outcome:?}");
    assert_eq!(
        outcome.jobs_done, config.jobs,
        "every job settles and closes"
    );
    assert_eq!(outcome.wrong_accepted, 0, "no wrong result is kept");
    assert_eq!(outcome.paid_to_liars, 0, "no liar is paid");
    assert!(outcome.tokens_conserved, "the ledger's tokens add up");
    assert_eq!(outcome.escrow_left, 0, "every escrow is returned");
    assert!(
        outcome.receipts_paid >= outcome.tasks,
        "every task is paid for"
    );
    assert_eq!(
        outcome.unpaid_accepted, 0,
        "every result accepted from an honest provider is paid"
    );
    assert_eq!(outcome.honest_slashed, 0, "no honest provider is slashed");
    outcome
}

#[test]
fn every_job_finishes_right_despite_loss_crashes_and_liars() {
    let config = Config::hazards(seed(7));
    let outcome = checked(&config);
    assert!(outcome.crashes > 0, "the run had crashes");
    assert!(outcome.liars > 0 && outcome.disputes > 0, "liars were met");
    assert!(
        outcome.liars_convicted > 0,
        "liars that ran tasks were convicted"
    );
}

#[test]
fn the_same_seed_gives_the_same_transcript() {
    let config = Config::hazards(seed(11));
    let first = run(&config);
    let second = run(&config);
    assert_eq!(first, second);
    let other = run(&Config::hazards(config.seed + 1));
    assert_ne!(first.transcript, other.transcript, "the seed matters");
}

/// Jobs submitted while every provider is busy with the first ones: each
/// used to keep the one or two providers free at its auction to its end
/// (tens of times the ideal makespan), because nothing told it others had
/// come free. Providers now bid again when idle, and a job short of them
/// reopens its auction.
#[test]
fn jobs_submitted_to_a_busy_network_get_the_providers_that_come_free() {
    let config = Config {
        seed: seed(3),
        requesters: 2,
        providers: 40,
        slots: 2,
        liars_per_mille: 0,
        jobs: 8,
        tasks_per_job: 200,
        task_ms: (200, 600),
        submit_every_ms: 300,
        policy: cairn_job::VerifyPolicy::None,
        latency_ms: (1, 20),
        loss_per_mille: 0,
        crashes_per_hour: 0.0,
        down_ms: 0,
        horizon_ms: 3_600_000,
        withholders: 0,
    };
    let outcome = checked(&config);
    let ratio = outcome.makespan_ms as f64 / outcome.ideal_ms as f64;
    println!(
        "makespan {} ms, ideal {} ms",
        outcome.makespan_ms, outcome.ideal_ms
    );
    assert!(ratio < 2.0, "makespan {ratio:.1}× the ideal");
}

/// A thousand jobs, half of them from `withholding` requesters that take
/// every result and close their escrow instead of settling, on a network
/// with loss, crashes and liars: every result accepted from an honest
/// provider is paid all the same, by its provider's claim of the
/// acceptance its pull was answered with, and the withholders' escrows
/// return only what was not accepted.
#[test]
fn requesters_that_withhold_payment_pay_for_every_accepted_result_through_the_providers_claims() {
    let config = Config {
        requesters: 4,
        jobs: 1_000,
        tasks_per_job: 4,
        task_ms: (20, 200),
        submit_every_ms: 40,
        withholders: 2,
        ..Config::hazards(seed(5))
    };
    let outcome = checked(&config);
    assert!(outcome.claims_paid > 0, "the providers claimed");
    assert!(
        outcome.crashes > 0 && outcome.disputes > 0,
        "hazards were met"
    );
}
