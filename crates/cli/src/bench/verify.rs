//! `cairn bench verify`: what verification costs and what it catches.
//!
//! - Steady-state overhead: fuel executed per fuel accepted with established
//!   providers under the default adaptive policy, next to BOINC's fixed
//!   quorum of two, both measured in the seeded simulator in one run.
//! - Each named adversary against a thousand-task job: wrong results
//!   accepted and whether it was convicted.
//! - `sometimes` (wrong on 1% after earning trust): wrong results accepted
//!   per thousand of its tasks, and tasks until caught, over many seeds.
//! - A dispute over a real 10^9-fuel Wasm task of three programs (one with
//!   steps of its own, the path tracer and an unmodified third-party solver
//!   paused by the runtime): the share of the task the referee re-executes,
//!   the rounds, and what tracing costs a provider.

use std::time::Instant;

use anyhow::{Context, bail};
use cairn_exec::{Limits, Runtime, Task, Trace, WasmConfig, WasmRuntime};
use cairn_job::VerifyPolicy;
use cairn_sim::verifier::{Behaviour, Sim};
use cairn_verify::{Game, Need, Params, Side, StateHash};
use cairn_wire::ContentId;

use super::Figure;

/// Arguments of `cairn bench verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub json: bool,
    /// Tasks in the steady-state job.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    tasks: u32,
    /// Seeds of the `sometimes` runs.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    seeds: u64,
    /// Fuel of the disputed task.
    #[arg(long, default_value_t = 1_000_000_000, value_parser = clap::value_parser!(u64).range(10_000_000..=100_000_000_000))]
    dispute_fuel: u64,
}

fn figure(metric: &str, value: f64, unit: &'static str) -> Figure {
    Figure {
        suite: "verify",
        metric: metric.to_string(),
        value,
        unit,
    }
}

pub fn verify(args: &VerifyArgs) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    steady_state(args, &mut figures);
    adversaries(&mut figures);
    sometimes(args, &mut figures);
    dispute(args, &mut figures)?;
    Ok(figures)
}

fn steady_state(args: &VerifyArgs, figures: &mut Vec<Figure>) {
    let established = vec![(Behaviour::Honest, true); 8];
    for (name, policy) in [
        ("adaptive", VerifyPolicy::default()),
        ("boinc_quorum_2", VerifyPolicy::Replicate { replicas: 2 }),
    ] {
        let mut sim = Sim::new(1, &established, args.tasks, policy);
        sim.run(1, 1, |_| true);
        figures.push(figure(
            &format!("steady_state_overhead_{name}"),
            sim.fuel_executed as f64 / sim.fuel_accepted as f64,
            "x single execution",
        ));
    }
}

fn adversaries(figures: &mut Vec<Figure>) {
    let cases: [(&str, &[Behaviour]); 5] = [
        ("liar", &[Behaviour::Liar]),
        ("lazy", &[Behaviour::Lazy]),
        ("copier", &[Behaviour::Copier]),
        ("colluders", &[Behaviour::Colluder, Behaviour::Colluder]),
        ("staller", &[Behaviour::Staller]),
    ];
    for (name, adversaries) in cases {
        let mut providers = vec![
            (Behaviour::Honest, true),
            (Behaviour::Honest, true),
            (Behaviour::Honest, false),
            (Behaviour::Honest, false),
        ];
        providers.extend(adversaries.iter().map(|&b| (b, false)));
        let mut sim = Sim::new(1, &providers, 1_000, VerifyPolicy::default());
        sim.run(1, 1, |_| true);
        let wrong: u64 = sim.wrong_accepted.values().sum();
        let convicted = sim
            .providers
            .iter()
            .filter(|p| adversaries.contains(&p.behaviour))
            .all(|p| p.convicted);
        figures.push(figure(
            &format!("{name}_wrong_results_accepted"),
            wrong as f64,
            "results",
        ));
        figures.push(figure(
            &format!("{name}_convicted"),
            f64::from(u8::from(convicted)),
            "bool",
        ));
        figures.push(figure(
            &format!("{name}_job_overhead"),
            sim.fuel_executed as f64 / sim.fuel_accepted as f64,
            "x single execution",
        ));
    }
}

fn sometimes(args: &VerifyArgs, figures: &mut Vec<Figure>) {
    let per_mille = 10;
    let mut caught_after = Vec::new();
    let mut wrong_accepted = 0u64;
    let mut tasks = 0u64;
    let mut profit = 0i128;
    for seed in 1..=args.seeds {
        let providers = [
            (Behaviour::Honest, true),
            (Behaviour::Honest, true),
            (Behaviour::Honest, true),
            (Behaviour::Sometimes { per_mille }, true),
        ];
        let mut sim = Sim::new(seed, &providers, 1_000, VerifyPolicy::default());
        sim.run(u32::MAX, 2, |sim| sim.providers[3].convicted);
        let cheat = &sim.providers[3];
        let caught = cheat.caught_after.unwrap_or(cheat.executions);
        caught_after.push(caught);
        tasks += caught;
        wrong_accepted += sim.wrong_accepted.get(&cheat.key).copied().unwrap_or(0);
        let saved = cheat.wrong.len() as u64 * cairn_sim::verifier::PRICE;
        profit += i128::from(saved) - i128::from(cheat.slashed + cheat.clawed_back);
    }
    let q = per_mille as f64 / 1_000.0 * Params::default().spot_min;
    let mean = caught_after.iter().sum::<u64>() as f64 / caught_after.len() as f64;
    figures.push(figure(
        "sometimes_wrong_accepted_per_1000_tasks",
        wrong_accepted as f64 * 1_000.0 / tasks as f64,
        "results",
    ));
    figures.push(figure("sometimes_tasks_until_caught_mean", mean, "tasks"));
    figures.push(figure(
        "sometimes_tasks_until_caught_max",
        *caught_after.iter().max().unwrap() as f64,
        "tasks",
    ));
    figures.push(figure(
        "sometimes_tasks_until_caught_bound_99_99",
        ((1e-4f64).ln() / (1.0 - q).ln()).ceil(),
        "tasks",
    ));
    figures.push(figure(
        "sometimes_profit_per_run",
        profit as f64 / args.seeds as f64,
        "ucairn",
    ));
}

/// A program disputed in the benchmark, and how to size a task of it.
struct Disputed {
    name: &'static str,
    module: Vec<u8>,
    /// The folder a task reads as `/input`.
    input: Option<std::path::PathBuf>,
    /// A task's arguments for a size (nonces, samples per pixel); `None`:
    /// one fixed task.
    args: Box<dyn Fn(u64) -> Vec<String>>,
    /// The size to measure fuel per unit at, for sized programs.
    probe: Option<u64>,
    /// The fuel limit of a fixed task (a sized one's is 4x its fuel).
    limit: Option<u64>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The programs disputed: one with steps of its own (hashsearch), and two
/// without, paused by the runtime: the path tracer and an unmodified
/// third-party program (Boolector, fetched by `examples/solve/setup.sh`).
fn disputed() -> anyhow::Result<Vec<Disputed>> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let solver = examples.join("solve/boolector.wasm");
    if !solver.is_file() {
        let status = std::process::Command::new("bash")
            .arg(examples.join("solve/setup.sh"))
            .status()
            .context("running examples/solve/setup.sh")?;
        if !status.success() {
            bail!("examples/solve/setup.sh failed ({status})");
        }
    }
    Ok(vec![
        Disputed {
            name: "hashsearch",
            module: cairn_workloads::HASHSEARCH.wasm.to_vec(),
            input: None,
            args: Box::new(|count| {
                let count = count.to_string();
                strings(&[
                    "--prefix",
                    "cairn",
                    "--start",
                    "0",
                    "--count",
                    &count,
                    "--bits",
                    "12",
                    "--out",
                    "/output/hits.txt",
                ])
            }),
            probe: Some(16_384),
            limit: None,
        },
        Disputed {
            name: "render",
            module: cairn_workloads::RENDER.wasm.to_vec(),
            input: Some(examples.join("render")),
            args: Box::new(|spp| {
                let spp = spp.to_string();
                strings(&[
                    "--scene",
                    "/input/scene.json",
                    "--frame",
                    "5",
                    "--width",
                    "96",
                    "--height",
                    "64",
                    "--spp",
                    &spp,
                    "--out",
                    "/output/frame.png",
                ])
            }),
            probe: Some(4),
            limit: None,
        },
        Disputed {
            name: "boolector",
            module: std::fs::read(&solver)
                .with_context(|| format!("reading {}", solver.display()))?,
            input: Some(examples.join("solve")),
            args: Box::new(|_| strings(&["-m", "/input/factor.smt2"])),
            probe: None,
            limit: Some(100_000_000_000),
        },
    ])
}

/// A honest trace against a liar's over one task of each [`disputed`]
/// program of about `dispute_fuel` fuel, refereed by re-executing one step
/// or one segment between pause points.
fn dispute(args: &VerifyArgs, figures: &mut Vec<Figure>) -> anyhow::Result<()> {
    for program in disputed()? {
        dispute_over(&program, args.dispute_fuel, figures)
            .with_context(|| format!("disputing {}", program.name))?;
    }
    Ok(())
}

fn dispute_over(
    program: &Disputed,
    dispute_fuel: u64,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let runtime = WasmRuntime::new(WasmConfig::default())?;
    let module = runtime.load(&program.module)?;
    let scratch = tempfile::tempdir()?;
    let mut dirs = 0u32;
    let limits = Limits {
        fuel: program.limit.unwrap_or(dispute_fuel * 4),
        memory_bytes: 256 << 20,
        wall_time: std::time::Duration::from_secs(600),
        output_bytes: 16 << 20,
        stdout_bytes: 1 << 20,
        gpus: 0,
        gpu_memory_mib: 0,
    };
    let mut with = |size: u64, f: &mut dyn FnMut(&WasmRuntime, &Task<'_>) -> anyhow::Result<()>| {
        dirs += 1;
        let output = scratch.path().join(dirs.to_string());
        std::fs::create_dir(&output)?;
        let args = (program.args)(size);
        let task = Task {
            module,
            args: &args,
            seed: [9; 32],
            input_dir: program.input.as_deref(),
            output_dir: &output,
            expected_outputs: &[],
            limits,
        };
        f(&runtime, &task)
    };
    // Size the task from the fuel of a small one.
    let count = match program.probe {
        Some(probe) => {
            let mut fuel = 0;
            with(probe, &mut |rt, task| {
                fuel = rt.run(task)?.fuel_used;
                Ok(())
            })?;
            (dispute_fuel * probe / fuel.max(1)).max(1)
        }
        None => 0,
    };

    let mut run_s = 0.0;
    let mut task_fuel = 0;
    with(count, &mut |rt, task| {
        let started = Instant::now();
        task_fuel = rt.run(task)?.fuel_used;
        run_s = started.elapsed().as_secs_f64();
        Ok(())
    })?;
    let mut trace: Option<Trace> = None;
    let mut trace_s = 0.0;
    with(count, &mut |rt, task| {
        let started = Instant::now();
        trace = Some(rt.trace(task)?);
        trace_s = started.elapsed().as_secs_f64();
        Ok(())
    })?;
    let honest = trace.context("traced")?;
    // The liar departs two thirds of the way through.
    let departs = honest.positions() * 2 / 3;
    let lie = |p: u64| -> StateHash {
        if p + 1 >= honest.positions() {
            *ContentId::of(b"a wrong digest").as_bytes()
        } else if p < departs {
            honest.hash_at(p).expect("in range")
        } else {
            *ContentId::of(&p.to_le_bytes()).as_bytes()
        }
    };
    let params = Params::default();
    let mut game = Game::new(
        honest.digest,
        ContentId::from_digest(lie(u64::MAX - 1)),
        params.dispute_arity,
        params.dispute_round_timeout_ms,
        0,
    );
    game.length(Side::A, honest.positions(), 0)
        .map_err(anyhow::Error::msg)?;
    game.length(Side::B, honest.positions(), 0)
        .map_err(anyhow::Error::msg)?;
    let mut referee_fuel = 0;
    let mut referee_s = 0.0;
    let verdict = loop {
        match game.need().clone() {
            Need::Hashes { .. } => {
                for side in Side::BOTH {
                    let hashes: Vec<StateHash> = game
                        .asked_of(side)
                        .iter()
                        .map(|&p| match side {
                            Side::A => honest.hash_at(p).expect("in range"),
                            Side::B => lie(p),
                        })
                        .collect();
                    game.hashes(side, &hashes, 0).map_err(anyhow::Error::msg)?;
                }
            }
            Need::Referee(segment) => {
                let mut snapshot = None;
                if let Some(agreed) = segment.agreed {
                    with(count, &mut |rt, task| {
                        snapshot = Some(rt.snapshot_at(task, segment.position)?);
                        Ok(())
                    })?;
                    if snapshot.as_ref().map(|s| s.hash()) != Some(agreed) {
                        bail!("the honest snapshot does not hash to the agreed state");
                    }
                }
                let mut reached = None;
                with(count, &mut |rt, task| {
                    let started = Instant::now();
                    let next = rt.referee(task, snapshot.as_ref())?;
                    referee_s = started.elapsed().as_secs_f64();
                    referee_fuel = next.fuel_executed;
                    reached = Some(next.hash);
                    Ok(())
                })?;
                break game
                    .referee(reached.context("refereed")?)
                    .map_err(anyhow::Error::msg)?
                    .clone();
            }
            Need::Done(verdict) => break verdict,
            Need::Lengths => unreachable!("lengths were given"),
        }
    };
    if verdict.losers != [Side::B] {
        bail!(
            "the dispute did not end against the liar: {}",
            verdict.reason
        );
    }
    let name = program.name;
    let metric = |what: &str| format!("dispute_{name}_{what}");
    figures.push(figure(&metric("task_fuel"), task_fuel as f64, "fuel"));
    figures.push(figure(
        &metric("referee_share"),
        100.0 * referee_fuel as f64 / task_fuel as f64,
        "% of the task",
    ));
    figures.push(figure(&metric("referee_time"), referee_s * 1e3, "ms"));
    figures.push(figure(&metric("run_time"), run_s * 1e3, "ms"));
    figures.push(figure(
        &metric("rounds"),
        f64::from(game.rounds()),
        "rounds",
    ));
    figures.push(figure(
        &metric("positions"),
        honest.positions() as f64,
        "positions",
    ));
    figures.push(figure(
        &metric("trace_cost"),
        trace_s / run_s,
        "x plain run",
    ));
    // What tracing took of the first round's deadline: the round's own
    // time, which covers what does not grow with the task (compiling the
    // variant that stops, the first time a module is traced), and the
    // task's fuel at `dispute_trace_fuel_per_ms`, which covers what does.
    // Under 1, the honest side answers in time; a 10-minute task of this
    // program adds as much time to the deadline as to the trace.
    let first_round_s = (params.dispute_round_timeout_ms as f64
        + task_fuel as f64 / params.dispute_trace_fuel_per_ms as f64)
        / 1e3;
    figures.push(figure(
        &metric("trace_first_round_share"),
        trace_s / first_round_s,
        "of the first round's deadline",
    ));
    Ok(())
}
