//! `cairn bench ml`: sentence embeddings (all-MiniLM-L6-v2) by the built-in
//! guest `cairn:embed` under Cairn's runtime, against the same library
//! compiled natively, on one core each; then training (`super::train`).
//!
//! A task loads the model and then embeds its lines, so its time is a fixed
//! part and a part per line. Running one task of one line and one of N lines
//! separates the two: (t(N) − t(1)) / (N − 1) is the time per sentence at
//! steady state, what a long task pays, and t(1) is the load.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_embed::{Embedder, Record};
use cairn_exec::{Limits, Runtime, Task, TaskResult, WasmConfig, WasmRuntime};

use super::{Figure, percentile};

/// The example corpus: 120 lines on ten subjects.
const CORPUS: &str = include_str!("../../../../examples/embed/corpus.txt");

/// Arguments of `cairn bench ml`.
#[derive(clap::Args)]
pub struct MlArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub(super) json: bool,
    /// Sentences embedded per measured run (from the example corpus).
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u32).range(2..=120))]
    sentences: u32,
    /// Runs per variant; the median is reported (at least 2, so that the
    /// guest's runs can be compared with each other).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=100))]
    pub(super) runs: u32,
    /// The model's folder (`model.safetensors`, `config.json`, `vocab.txt`;
    /// `bash examples/embed/setup.sh` installs it).
    #[arg(long, default_value = "examples/embed/model")]
    model: std::path::PathBuf,
    /// Optimiser steps per measured training run.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub(super) train_steps: u32,
    /// Measure only inference (`embed`) or only training (`train`).
    #[arg(long, value_parser = ["embed", "train"])]
    only: Option<String>,
}

pub(super) fn ml(args: &MlArgs) -> anyhow::Result<Vec<Figure>> {
    // One core for native candle, as the guest has: candle sizes its
    // thread pool from RAYON_NUM_THREADS at every matrix product, and only
    // the environment sets it. A process started without it runs itself
    // again with it set (the child prints the figures), rather than change
    // its own environment while other threads may read it.
    if std::env::var_os("RAYON_NUM_THREADS").is_none_or(|n| n != "1") {
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env("RAYON_NUM_THREADS", "1")
            .status()
            .context("running the benchmark again on one thread")?;
        // A child killed by a signal exits as a shell reports it.
        let signal = std::os::unix::process::ExitStatusExt::signal(&status);
        std::process::exit(status.code().or(signal.map(|s| 128 + s)).unwrap_or(1));
    }
    let mut figures = Vec::new();
    if args.only.as_deref() != Some("train") {
        figures.extend(embed(args)?);
    }
    if args.only.as_deref() != Some("embed") {
        figures.extend(super::train::train(args)?);
    }
    Ok(figures)
}

fn embed(args: &MlArgs) -> anyhow::Result<Vec<Figure>> {
    let model = &args.model;
    if !model.join(cairn_embed::WEIGHTS_FILE).is_file() {
        bail!(
            "no model in {} (run `bash examples/embed/setup.sh` to install it there, or pass --model)",
            model.display()
        );
    }
    let lines: Vec<&str> = CORPUS.lines().take(args.sentences as usize).collect();
    let n = lines.len();

    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input");
    std::fs::create_dir(&input)?;
    for file in [
        cairn_embed::WEIGHTS_FILE,
        cairn_embed::CONFIG_FILE,
        cairn_embed::VOCAB_FILE,
    ] {
        std::fs::copy(model.join(file), input.join(file))?;
    }
    std::fs::write(input.join("corpus.txt"), lines.join("\n"))?;

    let metered = WasmRuntime::new(WasmConfig::default())?;
    let unmetered = WasmRuntime::new(WasmConfig {
        metered: false,
        ..WasmConfig::default()
    })?;
    let module = metered.load(cairn_workloads::EMBED.wasm)?;
    unmetered.load(cairn_workloads::EMBED.wasm)?;

    let mut native_load = Vec::new();
    let mut native_each = Vec::new();
    let mut metered_load = Vec::new();
    let mut metered_each = Vec::new();
    let mut unmetered_each = Vec::new();
    let mut native_vectors = Vec::new();
    let mut wasm_outputs = Vec::new();
    let mut fuel = (0, 0);
    // Interleave the variants so a change in machine load hits all alike.
    for run in 0..args.runs {
        let started = Instant::now();
        let embedder = Embedder::from_dir(model).map_err(anyhow::Error::msg)?;
        native_load.push(started.elapsed());
        let started = Instant::now();
        native_vectors = lines
            .iter()
            .map(|line| embedder.embed(line).map(|e| e.vector))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        native_each.push(started.elapsed() / n as u32);
        drop(embedder);

        let scratch = dir.path().join(format!("run-{run}"));
        let one = embed_task(&metered, module, 1, &input, &scratch.join("metered-1"))?;
        let all = embed_task(&metered, module, n, &input, &scratch.join("metered-n"))?;
        metered_load.push(one.wall_time);
        metered_each.push(per_item(&one, &all, n as u32));
        fuel = (one.fuel_used, all.fuel_used);
        wasm_outputs.push(std::fs::read(scratch.join("metered-n/embeddings.jsonl"))?);

        let one = embed_task(&unmetered, module, 1, &input, &scratch.join("unmetered-1"))?;
        let all = embed_task(&unmetered, module, n, &input, &scratch.join("unmetered-n"))?;
        unmetered_each.push(per_item(&one, &all, n as u32));
    }

    // The guest's bits against native candle's, and against its own runs.
    let repeatable = wasm_outputs.windows(2).all(|pair| pair[0] == pair[1]);
    let records: Vec<Record> = std::str::from_utf8(&wasm_outputs[0])?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("reading the guest's embeddings")?;
    if records.len() != n {
        bail!("the guest embedded {} lines of {n}", records.len());
    }
    let (mut max_diff, mut min_cosine) = (0f32, 1f32);
    for (record, native) in records.iter().zip(&native_vectors) {
        for (a, b) in record.embedding.iter().zip(native) {
            max_diff = max_diff.max((a - b).abs());
        }
        min_cosine = min_cosine.min(cairn_embed::similarity(&record.embedding, native));
    }

    let native_each = percentile(&mut native_each, 0.5);
    let metered_each = percentile(&mut metered_each, 0.5);
    let unmetered_each = percentile(&mut unmetered_each, 0.5);
    let per_s = |d: Duration| 1.0 / d.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(vec![
        figure("embed_native_sentences_per_s", per_s(native_each), "1/s"),
        figure("embed_wasm_sentences_per_s", per_s(metered_each), "1/s"),
        figure(
            "embed_wasm_unmetered_sentences_per_s",
            per_s(unmetered_each),
            "1/s",
        ),
        figure(
            "ratio_wasm_to_native",
            metered_each.as_secs_f64() / native_each.as_secs_f64(),
            "x",
        ),
        figure(
            "fuel_metering_cost",
            metered_each.as_secs_f64() / unmetered_each.as_secs_f64(),
            "x",
        ),
        figure(
            "model_load_native",
            ms(percentile(&mut native_load, 0.5)),
            "ms",
        ),
        figure(
            "task_of_one_sentence_wasm",
            ms(percentile(&mut metered_load, 0.5)),
            "ms",
        ),
        figure(
            "fuel_per_sentence",
            (fuel.1 - fuel.0) as f64 / (n - 1) as f64,
            "fuel",
        ),
        figure("fuel_task_of_one_sentence", fuel.0 as f64, "fuel"),
        figure(
            "wasm_repeats_bit_for_bit",
            f64::from(u8::from(repeatable)),
            "bool",
        ),
        figure("wasm_vs_native_max_abs_diff", f64::from(max_diff), "1"),
        figure("wasm_vs_native_min_cosine", f64::from(min_cosine), "1"),
    ])
}

/// Runs `cairn:embed` over the first `lines` lines of the corpus in `input`.
fn embed_task(
    runtime: &WasmRuntime,
    module: cairn_wire::ContentId,
    lines: usize,
    input: &Path,
    output: &Path,
) -> anyhow::Result<TaskResult> {
    std::fs::create_dir_all(output)?;
    let args: Vec<String> = [
        "--model",
        "/input",
        "--corpus",
        "/input/corpus.txt",
        "--task",
        "0",
        "--per-task",
        &lines.to_string(),
        "--out",
        "/output/embeddings.jsonl",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let result = runtime.run(&Task {
        module,
        args: &args,
        seed: [0; 32],
        input_dir: Some(input),
        output_dir: output,
        expected_outputs: &["embeddings.jsonl".to_string()],
        limits: Limits {
            fuel: 1_000_000_000_000,
            memory_bytes: 1 << 30,
            wall_time: Duration::from_secs(600),
            ..Limits::default()
        },
    })?;
    if !result.outcome.is_success() {
        bail!(
            "the embed task failed: {}\n{}",
            result.outcome,
            String::from_utf8_lossy(&result.stderr)
        );
    }
    Ok(result)
}

/// The time per item (sentence, step) beyond the first, from a task of one
/// and a task of `n`: the fixed part cancels out. A noisy machine can make
/// the longer task no slower; a nanosecond stands in for nothing, so that
/// a rate is never infinite.
pub(super) fn per_item(one: &TaskResult, all: &TaskResult, n: u32) -> Duration {
    (all.wall_time.saturating_sub(one.wall_time) / (n - 1)).max(Duration::from_nanos(1))
}

pub(super) fn figure(metric: &str, value: f64, unit: &'static str) -> Figure {
    Figure {
        suite: "ml",
        metric: metric.to_string(),
        value,
        unit,
    }
}
