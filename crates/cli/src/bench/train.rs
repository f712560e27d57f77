//! The training half of `cairn bench ml`: the built-in guest `cairn:train`
//! under Cairn's runtime against the same library compiled natively, on one
//! core each; what its commitments cost; and what a referee re-executes
//! when a run is disputed.
//!
//! A task draws or loads its model and hashes its data, then steps, so its
//! time is a fixed part and a part per step. Tasks of one step and of N
//! steps separate the two, as the embedding half does for sentences.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use cairn_exec::{Limits, Runtime, Task, TaskResult, WasmConfig, WasmRuntime};
use cairn_train::{Settings, Trainer};

use super::ml::{MlArgs, figure, per_item};
use super::percentile;

/// The example job's data: Cairn's founding document.
const DATA: &str = include_str!("../../../../examples/train/seed.txt");

/// The example job's settings (`examples/train/job.toml`).
const SEED: u64 = 7;
const BATCH: usize = 32;
const LEARNING_RATE: f64 = 3e-3;
/// The example job's checkpoint interval.
const EVERY: u64 = 50;

pub(super) fn train(args: &MlArgs) -> anyhow::Result<Vec<super::Figure>> {
    let steps = u64::from(args.train_steps);
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input");
    std::fs::create_dir(&input)?;
    let data = input.join("seed.txt");
    std::fs::write(&data, DATA)?;
    let settings = Settings {
        batch: BATCH,
        learning_rate: LEARNING_RATE,
        seed: SEED,
        ..Settings::default()
    };

    let runtime = WasmRuntime::new(WasmConfig::default())?;
    let module = runtime.load(cairn_workloads::TRAIN.wasm)?;
    let task = |name: &str, steps: u64, every: u64| -> anyhow::Result<TaskResult> {
        let output = dir.path().join(name);
        train_task(&runtime, module, steps, every, &input, &output)
    };

    let mut native_each = Vec::new();
    let mut wasm_each = Vec::new();
    let mut committed_each = Vec::new();
    let mut native_losses = Vec::new();
    let mut digests = Vec::new();
    let mut fuel = (0, 0, 0);
    // Interleave the variants so a change in machine load hits all alike.
    for run in 0..args.runs {
        let mut trainer = Trainer::new(settings, &data, None).map_err(anyhow::Error::msg)?;
        let started = Instant::now();
        native_losses = (0..steps)
            .map(|_| trainer.step())
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        native_each.push(started.elapsed() / steps as u32);

        // Checkpoints after start-up and at the end only, against the
        // example's every 50 steps.
        let one = task(&format!("{run}-one"), 1, steps)?;
        let all = task(&format!("{run}-all"), steps, steps)?;
        let committed = task(&format!("{run}-committed"), steps, EVERY)?;
        wasm_each.push(per_item(&one, &all, args.train_steps));
        committed_each.push(per_item(&one, &committed, args.train_steps));
        fuel = (one.fuel_used, all.fuel_used, committed.fuel_used);
        digests.push(committed.digest);
    }
    let repeatable = digests.windows(2).all(|pair| pair[0] == pair[1]);
    let wasm_losses = read_losses(&dir.path().join("0-committed/loss.csv"))?;
    if wasm_losses.len() != native_losses.len() {
        bail!(
            "the guest wrote {} losses for {steps} steps",
            wasm_losses.len()
        );
    }
    let max_loss_diff = wasm_losses
        .iter()
        .zip(&native_losses)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);

    // A dispute's referee re-executes one transition: at worst the
    // costliest step of the run (a checkpointing one).
    let started = Instant::now();
    let trace = {
        let output = dir.path().join("trace");
        std::fs::create_dir_all(&output)?;
        let args = train_args(steps, EVERY);
        runtime.trace(&train_spec(module, &args, &input, &output))?
    };
    let trace_time = started.elapsed();
    let total = *trace.fuel.last().unwrap_or(&0);
    let costliest = trace
        .fuel
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .chain(trace.fuel.first().copied())
        .max()
        .unwrap_or(0);

    let native_each = percentile(&mut native_each, 0.5);
    let wasm_each = percentile(&mut wasm_each, 0.5);
    let committed_each = percentile(&mut committed_each, 0.5);
    let per_s = |d: Duration| 1.0 / d.as_secs_f64();
    Ok(vec![
        figure("train_native_steps_per_s", per_s(native_each), "1/s"),
        figure("train_wasm_steps_per_s", per_s(wasm_each), "1/s"),
        figure(
            "train_ratio_wasm_to_native",
            wasm_each.as_secs_f64() / native_each.as_secs_f64(),
            "x",
        ),
        figure(
            "train_fuel_per_step",
            (fuel.1 - fuel.0) as f64 / (steps - 1) as f64,
            "fuel",
        ),
        figure(
            "train_commitment_overhead_every_50",
            committed_each.as_secs_f64() / wasm_each.as_secs_f64(),
            "x",
        ),
        figure(
            "train_commitment_fuel_overhead_every_50",
            fuel.2 as f64 / fuel.1 as f64,
            "x",
        ),
        figure(
            "train_trace_vs_run",
            trace_time.as_secs_f64() / (wasm_each * steps as u32).as_secs_f64(),
            "x",
        ),
        figure(
            "train_referee_share_max",
            costliest as f64 / total.max(1) as f64,
            "1",
        ),
        figure(
            "train_wasm_repeats_bit_for_bit",
            f64::from(u8::from(repeatable)),
            "bool",
        ),
        figure(
            "train_wasm_vs_native_max_loss_diff",
            f64::from(max_loss_diff),
            "1",
        ),
    ])
}

fn train_args(steps: u64, every: u64) -> Vec<String> {
    [
        "--data",
        "/input/seed.txt",
        "--out",
        "/output",
        "--steps",
        &steps.to_string(),
        "--every",
        &every.to_string(),
        "--seed",
        &SEED.to_string(),
        "--batch",
        &BATCH.to_string(),
        "--lr",
        &LEARNING_RATE.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn train_spec<'a>(
    module: cairn_wire::ContentId,
    args: &'a [String],
    input: &'a Path,
    output: &'a Path,
) -> Task<'a> {
    Task {
        module,
        args,
        seed: [0; 32],
        input_dir: Some(input),
        output_dir: output,
        expected_outputs: &[],
        limits: Limits {
            fuel: 10_000_000_000_000,
            memory_bytes: 1 << 30,
            wall_time: Duration::from_secs(3_600),
            output_bytes: 1 << 30,
            ..Limits::default()
        },
    }
}

/// Runs `cairn:train` for `steps` steps, checkpointing every `every`.
fn train_task(
    runtime: &WasmRuntime,
    module: cairn_wire::ContentId,
    steps: u64,
    every: u64,
    input: &Path,
    output: &Path,
) -> anyhow::Result<TaskResult> {
    std::fs::create_dir_all(output)?;
    let args = train_args(steps, every);
    let result = runtime.run(&train_spec(module, &args, input, output))?;
    if !result.outcome.is_success() {
        bail!(
            "the train task failed: {}\n{}",
            result.outcome,
            String::from_utf8_lossy(&result.stderr)
        );
    }
    Ok(result)
}

/// The losses of a `loss.csv`, in step order.
fn read_losses(path: &Path) -> anyhow::Result<Vec<f32>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .skip(1)
        .map(|line| {
            let loss = line.split(',').nth(1).unwrap_or("");
            loss.parse()
                .map_err(|_| anyhow::anyhow!("a loss line '{line}' in {}", path.display()))
        })
        .collect()
}
