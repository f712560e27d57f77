//! A dispute over a real training run (`cairn:train`, 10^10 fuel): a
//! provider that stops half-way and claims it finished defends its claim
//! with the trace of its own run; the bisection finds the step where the
//! two runs part, and the referee re-executes that one step, under 1% of
//! the run, and convicts it.

use std::path::Path;
use std::time::Duration;

use cairn_exec::{Limits, Runtime, Snapshot, Tamper, Task, Trace, WasmConfig, WasmRuntime};
use cairn_verify::{Game, Need, Side, StateHash};
use cairn_wire::ContentId;

/// Steps of the run: about 12 Mfuel each, 10^10 fuel in all.
const STEPS: u64 = 880;

/// An `early_stopper`: ends the task after half its steps, as if done.
struct EarlyStopper;

impl Tamper for EarlyStopper {
    fn between_steps(&mut self, step: u64, _: &mut [u8], _: &Task<'_>) -> bool {
        step < STEPS / 2
    }
}

struct Run {
    rt: WasmRuntime,
    module: ContentId,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Self {
        let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
        let module = rt.load(cairn_workloads::TRAIN.wasm).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("input")).unwrap();
        let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/train/seed.txt");
        std::fs::copy(seed, dir.path().join("input/seed.txt")).unwrap();
        let steps = STEPS.to_string();
        let args = [
            "--data",
            "/input/seed.txt",
            "--out",
            "/output",
            "--steps",
            &steps,
            "--every",
            "40",
            "--seed",
            "5",
            "--batch",
            "16",
            "--context",
            "8",
            "--embed",
            "8",
            "--hidden",
            "64",
        ];
        Self {
            rt,
            module,
            args: args.map(str::to_string).to_vec(),
            dir,
        }
    }

    /// `f` on the task, with a fresh output folder.
    fn with<T>(&self, f: impl FnOnce(&WasmRuntime, &Task<'_>) -> T) -> T {
        let output = tempfile::tempdir_in(self.dir.path()).unwrap();
        let input = self.dir.path().join("input");
        f(
            &self.rt,
            &Task {
                module: self.module,
                args: &self.args,
                seed: [1; 32],
                input_dir: Some(&input),
                output_dir: output.path(),
                expected_outputs: &[],
                limits: Limits {
                    fuel: 20_000_000_000,
                    memory_bytes: 64 << 20,
                    wall_time: Duration::from_secs(600),
                    output_bytes: 256 << 20,
                    stdout_bytes: 16 << 10,
                    gpus: 0,
                    gpu_memory_mib: 0,
                },
            },
        )
    }
}

#[test]
fn a_dispute_over_a_ten_gigafuel_training_run_costs_the_referee_one_step() {
    let run = Run::new();
    let honest = run.with(|rt, task| rt.trace(task).unwrap());
    let total = *honest.fuel.last().unwrap();
    assert!(total >= 10_000_000_000, "the run used {total} fuel");
    let result = run.with(|rt, task| rt.run(task).unwrap());
    assert_eq!(result.digest, honest.digest, "tracing changes nothing");
    let cheat: Trace =
        run.with(|rt, task| rt.trace_tampered(task, Some(&mut EarlyStopper)).unwrap());
    assert_ne!(cheat.digest, honest.digest);

    let mut game = Game::new(honest.digest, cheat.digest, 4, 1_000, 0);
    game.length(Side::A, honest.positions(), 0).unwrap();
    game.length(Side::B, cheat.positions(), 0).unwrap();
    let answer = |trace: &Trace, p: u64| trace.hash_at(p).unwrap();
    let (verdict, referee_fuel, decided_at) = loop {
        match game.need().clone() {
            Need::Hashes { .. } => {
                for (side, trace) in [(Side::A, &honest), (Side::B, &cheat)] {
                    let hashes: Vec<StateHash> = game
                        .asked_of(side)
                        .iter()
                        .map(|&p| answer(trace, p))
                        .collect();
                    game.hashes(side, &hashes, 0).unwrap();
                }
            }
            Need::Referee(segment) => {
                let from: Option<Snapshot> = segment.agreed.map(|agreed| {
                    let snapshot =
                        run.with(|rt, task| rt.snapshot_at(task, segment.position).unwrap());
                    assert_eq!(snapshot.hash(), agreed, "the agreed state");
                    snapshot
                });
                let next = run.with(|rt, task| rt.referee(task, from.as_ref()).unwrap());
                let verdict = game.referee(next.hash).unwrap().clone();
                break (verdict, next.fuel_executed, segment.position);
            }
            Need::Done(verdict) => break (verdict, 0, 0),
            Need::Lengths => unreachable!(),
        }
    };
    assert_eq!(verdict.losers, vec![Side::B], "{}", verdict.reason);
    // The cheat's trace ends after step 440 (position 441): the referee
    // runs from the last state both agree on, one step before.
    assert_eq!(decided_at, STEPS / 2, "{}", verdict.reason);
    let share = referee_fuel as f64 / total as f64;
    println!(
        "run {total} fuel in {} steps; {} rounds; the referee executed {referee_fuel} fuel ({:.3}%)",
        STEPS,
        game.rounds(),
        share * 100.0
    );
    assert!(referee_fuel > 0, "the referee executed the disputed step");
    assert!(share < 0.01, "the referee ran {share:.4} of the run");
}
