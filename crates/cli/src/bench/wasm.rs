//! `cairn bench wasm`: the path tracer as Wasm under Cairn against native
//! code, the cost of fuel metering (against an unmetered runtime, whose
//! watchdog needs the epoch check metered code does without), of NaN
//! canonicalisation after every operation and of the pause rewrite (each
//! against Cairn's default in the same run), and the runner's per-task
//! overhead.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_exec::{Limits, NanCanonicalization, Runtime, Task, TaskResult, WasmConfig, WasmRuntime};

use super::{Figure, percentile, ratio};

/// The example scene, rendered by the Wasm benchmark.
const SCENE: &str = include_str!("../../../../examples/render/scene.json");
/// The frame rendered (any frame of the orbit will do; not the first, so the
/// camera animation is exercised).
const FRAME: u32 = 3;

/// Arguments of `cairn bench wasm`.
#[derive(clap::Args)]
pub struct WasmArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub(super) json: bool,
    /// Renders per variant; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Empty tasks run to measure the per-task overhead.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    tasks: u32,
}

pub(super) fn wasm(args: &WasmArgs) -> anyhow::Result<Vec<Figure>> {
    let scene = cairn_render::parse_scene(SCENE).map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input");
    std::fs::create_dir(&input)?;
    std::fs::write(input.join("scene.json"), SCENE)?;
    let guest_args: Vec<String> = [
        "--scene",
        "/input/scene.json",
        "--frame",
        &FRAME.to_string(),
        "--out",
        "/output/frame.png",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let limits = Limits {
        fuel: 1_000_000_000_000,
        ..Limits::default()
    };

    let metered = WasmRuntime::new(WasmConfig::default())?;
    let unmetered = WasmRuntime::new(WasmConfig {
        metered: false,
        ..WasmConfig::default()
    })?;
    let every_op = WasmRuntime::new(WasmConfig {
        nan_canonicalization: NanCanonicalization::EveryOperation,
        ..WasmConfig::default()
    })?;
    let unpaused = WasmRuntime::new(WasmConfig {
        pause: false,
        ..WasmConfig::default()
    })?;
    let module = metered.load(cairn_workloads::RENDER.wasm)?;
    unmetered.load(cairn_workloads::RENDER.wasm)?;
    every_op.load(cairn_workloads::RENDER.wasm)?;
    unpaused.load(cairn_workloads::RENDER.wasm)?;

    let mut native_png = Vec::new();
    let mut native = Vec::new();
    let mut wasm_metered = Vec::new();
    let mut wasm_unmetered = Vec::new();
    let mut wasm_every_op = Vec::new();
    let mut wasm_unpaused = Vec::new();
    let mut fuel = 0;
    let mut fuel_unpaused = 0;
    let mut wasm_png = Vec::new();
    // Interleave the variants so a change in machine load hits all alike.
    for run in 0..args.runs {
        let started = Instant::now();
        let image =
            cairn_render::render(&scene, FRAME, &Default::default()).map_err(anyhow::Error::msg)?;
        native_png = cairn_render::encode_png(&image);
        std::fs::write(dir.path().join("native.png"), &native_png)?;
        native.push(started.elapsed());

        let output = dir.path().join(format!("metered-{run}"));
        let result = render_task(&metered, module, &guest_args, &input, &output, limits)?;
        wasm_metered.push(result.wall_time);
        fuel = result.fuel_used;
        wasm_png = std::fs::read(output.join("frame.png"))?;

        let output = dir.path().join(format!("unmetered-{run}"));
        let result = render_task(&unmetered, module, &guest_args, &input, &output, limits)?;
        wasm_unmetered.push(result.wall_time);

        let output = dir.path().join(format!("every-op-{run}"));
        let result = render_task(&every_op, module, &guest_args, &input, &output, limits)?;
        wasm_every_op.push(result.wall_time);

        let output = dir.path().join(format!("unpaused-{run}"));
        let result = render_task(&unpaused, module, &guest_args, &input, &output, limits)?;
        wasm_unpaused.push(result.wall_time);
        fuel_unpaused = result.fuel_used;
    }
    let native = percentile(&mut native, 0.5);
    let wasm_metered = percentile(&mut wasm_metered, 0.5);
    let wasm_unmetered = percentile(&mut wasm_unmetered, 0.5);
    let wasm_every_op = percentile(&mut wasm_every_op, 0.5);
    let wasm_unpaused = percentile(&mut wasm_unpaused, 0.5);
    let overhead = task_overhead(&metered, args.tasks, dir.path())?;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(vec![
        figure("render_native", ms(native), "ms"),
        figure("render_wasm_metered", ms(wasm_metered), "ms"),
        figure("render_wasm_unmetered", ms(wasm_unmetered), "ms"),
        figure(
            "ratio_wasm_metered_to_native",
            ratio(wasm_metered, native),
            "x",
        ),
        figure(
            "ratio_wasm_unmetered_to_native",
            ratio(wasm_unmetered, native),
            "x",
        ),
        figure(
            "fuel_metering_cost",
            ratio(wasm_metered, wasm_unmetered),
            "x",
        ),
        figure("render_wasm_nan_canon_every_op", ms(wasm_every_op), "ms"),
        figure(
            "ratio_nan_canon_every_op_to_at_observation",
            ratio(wasm_every_op, wasm_metered),
            "x",
        ),
        figure("render_wasm_unpaused", ms(wasm_unpaused), "ms"),
        figure("pause_cost", ratio(wasm_metered, wasm_unpaused), "x"),
        figure(
            "pause_fuel_cost",
            fuel as f64 / fuel_unpaused.max(1) as f64,
            "x",
        ),
        figure("render_fuel", fuel as f64, "fuel"),
        figure(
            "fuel_rate",
            fuel as f64 / wasm_metered.as_secs_f64() / 1e9,
            "Gfuel/s",
        ),
        figure(
            "wasm_png_equals_native",
            f64::from(u8::from(wasm_png == native_png)),
            "bool",
        ),
        figure("task_overhead", overhead.as_secs_f64() * 1e6, "us"),
    ])
}

fn render_task(
    runtime: &WasmRuntime,
    module: cairn_wire::ContentId,
    args: &[String],
    input: &Path,
    output: &Path,
    limits: Limits,
) -> anyhow::Result<TaskResult> {
    std::fs::create_dir(output)?;
    let result = runtime.run(&Task {
        module,
        args,
        seed: [0; 32],
        input_dir: Some(input),
        output_dir: output,
        expected_outputs: &["frame.png".to_string()],
        limits,
    })?;
    if !result.outcome.is_success() {
        bail!(
            "the render task failed: {}\n{}",
            result.outcome,
            String::from_utf8_lossy(&result.stderr)
        );
    }
    Ok(result)
}

/// Mean time per task of the runner's fixed work: a fresh output folder,
/// a WASI context, instantiating a cached module, running an empty
/// `_start`, and listing and hashing the outputs.
fn task_overhead(runtime: &WasmRuntime, tasks: u32, scratch: &Path) -> anyhow::Result<Duration> {
    let empty =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)?;
    let module = runtime.load(&empty)?;
    let root = scratch.join("overhead");
    std::fs::create_dir(&root)?;
    // Warm up the caches first, as a long-running provider would be.
    let run = |i: u32| -> anyhow::Result<()> {
        let output = root.join(i.to_string());
        std::fs::create_dir(&output)?;
        let result = runtime.run(&Task {
            module,
            args: &[],
            seed: [0; 32],
            input_dir: None,
            output_dir: &output,
            expected_outputs: &[],
            limits: Limits::default(),
        })?;
        if !result.outcome.is_success() {
            bail!("the empty task failed: {}", result.outcome);
        }
        Ok(())
    };
    for i in 0..tasks.min(100) {
        run(u32::MAX - i).context("warming up")?;
    }
    let started = Instant::now();
    for i in 0..tasks {
        run(i)?;
    }
    Ok(started.elapsed() / tasks)
}

fn figure(metric: &str, value: f64, unit: &'static str) -> Figure {
    Figure {
        suite: "wasm",
        metric: metric.to_string(),
        value,
        unit,
    }
}
