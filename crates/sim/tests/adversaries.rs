//! Named adversaries against the verifier in the seeded simulation
//! (`cairn_sim::verifier`): jobs of a thousand tasks run by honest providers
//! and one kind of cheater.
//!
//! Each test prints its seeds; rerun one with
//! `CAIRN_SIM_SEED=n cargo test -p cairn-sim --test adversaries`.

use cairn_job::VerifyPolicy;
use cairn_sim::verifier::{Behaviour, PRICE, Sim, truth};
use cairn_verify::{Offence, Params};
use cairn_wire::ContentId;

fn seeds() -> Vec<u64> {
    match std::env::var("CAIRN_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("CAIRN_SIM_SEED is a number")],
        Err(_) => (1..=6).collect(),
    }
}

/// One job of a thousand tasks, four honest providers (two established,
/// two new) and the adversaries (new).
fn one_job(seed: u64, adversaries: &[Behaviour]) -> Sim {
    let mut providers = vec![
        (Behaviour::Honest, true),
        (Behaviour::Honest, true),
        (Behaviour::Honest, false),
        (Behaviour::Honest, false),
    ];
    providers.extend(adversaries.iter().map(|&b| (b, false)));
    let mut sim = Sim::new(seed, &providers, 1_000, VerifyPolicy::default());
    sim.run(1, 1, |_| true);
    sim
}

fn assert_caught(sim: &Sim, behaviour: Behaviour, offence: fn(&Offence) -> bool) {
    let seed = sim.seed;
    assert!(
        sim.failed.is_empty(),
        "seed {seed}: tasks failed: {:?}",
        sim.failed.first()
    );
    assert_eq!(
        sim.wrong_final_results(),
        0,
        "seed {seed}: a wrong result stands"
    );
    assert!(
        sim.wrong_accepted.is_empty(),
        "seed {seed}: wrong results accepted: {:?}",
        sim.wrong_accepted
    );
    for adversary in sim.providers.iter().filter(|p| p.behaviour == behaviour) {
        assert!(
            adversary.convicted,
            "seed {seed}: {behaviour:?} never convicted"
        );
        assert!(
            adversary.slashed > 0,
            "seed {seed}: {behaviour:?} not slashed"
        );
        assert!(
            adversary.offences.iter().any(offence),
            "seed {seed}: {behaviour:?} convicted of {:?}",
            adversary.offences
        );
    }
    assert_eq!(
        sim.honest_unpaid(),
        0,
        "seed {seed}: honest work went unpaid"
    );
}

#[test]
fn liar_is_convicted_by_dispute_and_nothing_wrong_is_accepted() {
    for seed in seeds() {
        println!("liar seed {seed}");
        let sim = one_job(seed, &[Behaviour::Liar]);
        assert_caught(&sim, Behaviour::Liar, |o| {
            matches!(o, Offence::WrongResult { .. })
        });
        assert!(
            sim.disputes >= 1 && sim.referee_segments >= 1,
            "seed {seed}"
        );
    }
}

#[test]
fn lazy_is_convicted_and_nothing_wrong_is_accepted() {
    for seed in seeds() {
        println!("lazy seed {seed}");
        let sim = one_job(seed, &[Behaviour::Lazy]);
        assert_caught(&sim, Behaviour::Lazy, |o| {
            matches!(o, Offence::WrongResult { .. })
        });
    }
}

#[test]
fn copier_cannot_open_a_copied_commitment() {
    for seed in seeds() {
        println!("copier seed {seed}");
        let sim = one_job(seed, &[Behaviour::Copier]);
        assert_caught(&sim, Behaviour::Copier, |o| matches!(o, Offence::BadReveal));
        assert!(
            !sim.wrong_accepted
                .contains_key(&sim.provider(Behaviour::Copier).key)
        );
        assert!(
            sim.provider(Behaviour::Copier).paid_tasks.is_empty(),
            "seed {seed}: the copier was paid"
        );
    }
}

#[test]
fn colluders_agreeing_on_a_wrong_result_are_both_convicted() {
    for seed in seeds() {
        println!("colluders seed {seed}");
        let sim = one_job(seed, &[Behaviour::Colluder, Behaviour::Colluder]);
        assert_caught(&sim, Behaviour::Colluder, |o| {
            matches!(o, Offence::WrongResult { .. })
        });
    }
}

#[test]
fn staller_is_convicted_for_not_revealing_and_its_tasks_run_elsewhere() {
    for seed in seeds() {
        println!("staller seed {seed}");
        let sim = one_job(seed, &[Behaviour::Staller]);
        assert_caught(&sim, Behaviour::Staller, |o| matches!(o, Offence::NoReveal));
        assert!(
            sim.provider(Behaviour::Staller).paid_tasks.is_empty(),
            "seed {seed}"
        );
    }
}

#[test]
fn same_seed_same_transcript() {
    let a = one_job(3, &[Behaviour::Liar, Behaviour::Staller]);
    let b = one_job(3, &[Behaviour::Liar, Behaviour::Staller]);
    assert_eq!(ContentId::of(&a.transcript), ContentId::of(&b.transcript));
}

/// Detection chance per task of `sometimes`: it is wrong on `per_mille`
/// of its tasks, and a wrong one is caught when spot-checked, which for a
/// provider this established happens with the floor probability.
fn detection_per_task(per_mille: u64) -> f64 {
    per_mille as f64 / 1_000.0 * Params::default().spot_min
}

#[test]
fn sometimes_is_caught_within_the_spot_check_bound_and_repaid() {
    let per_mille = 10;
    let q = detection_per_task(per_mille);
    // P(not caught within n tasks) = (1 - q)^n; allow 1 in 10,000 per seed.
    let bound = ((1e-4f64).ln() / (1.0 - q).ln()).ceil() as u64;
    let mut caught_after = Vec::new();
    for seed in seeds_many() {
        println!("sometimes seed {seed}");
        let providers = [
            (Behaviour::Honest, true),
            (Behaviour::Honest, true),
            (Behaviour::Honest, true),
            (Behaviour::Sometimes { per_mille }, true),
        ];
        let mut sim = Sim::new(seed, &providers, 1_000, VerifyPolicy::default());
        // Jobs one after another, the last two still open, until caught.
        sim.run(u32::MAX, 2, |sim| sim.providers[3].convicted);
        let cheat = &sim.providers[3];
        let tasks = cheat
            .caught_after
            .expect("the run stops only once it is caught");
        assert!(
            tasks <= bound,
            "seed {seed}: caught after {tasks} tasks; the bound is {bound}"
        );
        caught_after.push(tasks);
        assert!(
            cheat
                .offences
                .iter()
                .all(|o| matches!(o, Offence::WrongResult { .. }))
        );
        // (b) Nothing it returned still stands in an open job: every such
        // result ran again elsewhere, and what it was paid is taken back.
        for job in &sim.jobs {
            assert!(
                !cheat.paid_tasks.iter().any(|(j, _)| j == job),
                "seed {seed}: it keeps pay for a result of an open job"
            );
        }
        assert!(cheat.clawed_back > 0, "seed {seed}: nothing was taken back");
        let open_wrong: u32 = sim
            .jobs
            .iter()
            .flat_map(|job| (0..1_000).map(move |t| (*job, t)))
            .filter(|task| sim.verifier.accepted(task) != Some(truth(task)))
            .count() as u32;
        assert_eq!(
            open_wrong, 0,
            "seed {seed}: a wrong result stands in an open job"
        );
        // (c) It lost money: what cheating saved (the work it skipped, worth
        // at most its price) is far below what it lost.
        let saved = cheat.wrong.len() as u64 * PRICE;
        let lost = cheat.slashed + cheat.clawed_back;
        assert!(saved < lost, "seed {seed}: saved {saved} >= lost {lost}");
        assert_eq!(sim.honest_unpaid(), 0, "seed {seed}");
    }
    let mean = caught_after.iter().sum::<u64>() as f64 / caught_after.len() as f64;
    println!(
        "sometimes: caught after {caught_after:?} tasks (mean {mean:.0}, expected {:.0}, bound {bound})",
        1.0 / q
    );
}

fn seeds_many() -> Vec<u64> {
    match std::env::var("CAIRN_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("CAIRN_SIM_SEED is a number")],
        Err(_) => (1..=12).collect(),
    }
}
