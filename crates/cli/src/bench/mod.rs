//! `cairn bench`: performance figures, each measured against a baseline in
//! the same run so the ratios hold on a noisy, shared machine. One file per
//! suite.

mod chain;
mod console;
mod ledger;
mod media;
mod ml;
mod net;
mod sim;
mod tools;
mod train;
mod verify;
mod wasm;

use std::time::{Duration, Instant};

use anyhow::Context as _;

use cairn_exec::{Limits, Runtime as _, Task, WasmConfig, WasmRuntime};
use serde::Serialize;

/// A benchmark suite.
#[derive(clap::Subcommand)]
pub enum Suite {
    /// The path tracer as Wasm under Cairn versus native, the cost of fuel
    /// metering, and the runner's per-task overhead.
    Wasm(wasm::WasmArgs),
    /// The ledger state machine: transfers applied per second on one core,
    /// transactions admitted per second with and without batch verification,
    /// and the cost of the state root.
    Ledger(ledger::LedgerArgs),
    /// The replicated ledger: transactions finalized per second and time to
    /// finality, for one embedded validator and for four on loopback.
    Chain(chain::ChainArgs),
    /// The provider network on a loopback devnet: submit to first task,
    /// one-task jobs end to end, tiny-task throughput with four providers,
    /// verified blob transfer, and the API's latency under a steady load.
    Net(net::NetArgs),
    /// Verification: steady-state overhead against BOINC's quorum of two,
    /// each named adversary, `sometimes` across jobs, and a dispute over a
    /// 10^9-fuel task settled by re-executing one step.
    Verify(verify::VerifyArgs),
    /// The whole market in one seeded simulation (the real role cores and
    /// ledger, simulated network and time): events per second, wall time,
    /// peak memory, makespan against the ideal, work wasted, wrong results
    /// accepted and tokens conserved.
    Sim(sim::SimArgs),
    /// Installed tools: ffmpeg (and Blender, where installed) run directly
    /// and in the tool runtime's sandbox, and the ratio.
    Tools(tools::ToolsArgs),
    /// The web console in Debian's chromium while a devnet runs a job of
    /// 10,000 tasks: the job page's first render, status updates applied
    /// per second, and the longest the page goes without drawing.
    Console(console::ConsoleArgs),
    /// The media workloads with the real tools: a generated clip into
    /// Livepeer's ladder (by one ffmpeg process, by the video job's segment
    /// tasks run locally, through devnets of 2 and 4 providers) and the
    /// Blender example's frames (directly, as a local job, through the same
    /// devnets, and split into tiles); the speed-up and what the market adds
    /// per task.
    Media(media::MediaArgs),
    /// AI inference: sentence embeddings (all-MiniLM-L6-v2) by the built-in
    /// guest `cairn:embed` in Wasm against native candle, one core each:
    /// sentences per second, the cost of fuel metering, and how far native
    /// rounding strays from the guest's bits; then training (`cairn:train`):
    /// steps per second both ways, what commitments cost, and a disputed
    /// run's referee share.
    Ml(ml::MlArgs),
}

/// One measured figure.
#[derive(Serialize)]
pub(crate) struct Figure {
    pub suite: &'static str,
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
}

pub fn run(suite: Suite) -> anyhow::Result<()> {
    match suite {
        Suite::Wasm(args) => {
            if cfg!(debug_assertions) {
                eprintln!(
                    "cairn: warning: this is a debug build; benchmark with `cargo run --release -- bench …`"
                );
            }
            let figures = wasm::wasm(&args)?;
            print(&figures, args.json)
        }
        Suite::Ledger(args) => print(&ledger::ledger(&args)?, args.json),
        Suite::Chain(args) => {
            let mut figures = chain::chain(1, args.rate_single, args.seconds, "single")?;
            // Four validators in one process would share its cache of
            // valid signatures, where real ones each check every signature
            // themselves: the cache is off for them. (The lone validator
            // keeps it: what its mempool checked, its block check finds.)
            cairn_wire::remember_signatures(false);
            figures.extend(chain::chain(4, args.rate_four, args.seconds, "four")?);
            print(&figures, args.json)
        }
        Suite::Net(args) => print(&net::net(&args)?, args.json),
        Suite::Verify(args) => print(&verify::verify(&args)?, args.json),
        Suite::Sim(args) => print(&sim::sim(&args)?, args.json),
        Suite::Tools(args) => print(&tools::tools(&args)?, args.json),
        Suite::Console(args) => print(&console::console(&args)?, args.json),
        Suite::Media(args) => print(&media::media(&args)?, args.json),
        Suite::Ml(args) => print(&ml::ml(&args)?, args.json),
    }
}

fn print(figures: &[Figure], json: bool) -> anyhow::Result<()> {
    for figure in figures {
        if json {
            println!("{}", serde_json::to_string(figure)?);
        } else {
            println!(
                "{:<8} {:<32} {:>14.3} {}",
                figure.suite, figure.metric, figure.value, figure.unit
            );
        }
    }
    Ok(())
}

/// Blender's command line for frame `frame` of the example scene built by
/// the script at `scene`, written to `out`: what the Blender example's
/// tasks run.
fn blender_frame_args(scene: &str, frame: u32, out: &str) -> Vec<String> {
    [
        "-b",
        "--factory-startup",
        "-noaudio",
        "--python-exit-code",
        "1",
        "-P",
        scene,
        "--",
        &frame.to_string(),
        out,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `a` over `b`.
fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The sample at `fraction` (0.5: the median) of `samples`, by nearest
/// rank; sorts them.
pub(crate) fn percentile(samples: &mut [Duration], fraction: f64) -> Duration {
    samples.sort();
    let last = samples.len().saturating_sub(1);
    samples
        .get((last as f64 * fraction).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Milliseconds of `d`.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A provider's benchmark score: millions of fuel per second on one core,
/// measured with a short counting loop (about 10 ms), the best of five
/// runs. Advertised in bids so requesters can compare machines, and the
/// rate a tool task's declared work is weighed against. A run the
/// scheduler preempted measures the machine's load, not its speed, and a
/// score too low lets a requester's sliver of declared work pass for fair
/// pay (the likeliest cause of one failure, on a loaded CI machine, of the
/// devnet test of such a requester).
pub fn score_mfuel_per_s() -> u32 {
    const FUEL: u64 = 100_000_000;
    const RUNS: usize = 5;
    let measure = || -> anyhow::Result<u32> {
        let runtime = WasmRuntime::new(WasmConfig::default())?;
        let spin = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                 (func (export "_start") (local i64)
                   (loop (local.set 0 (i64.add (local.get 0) (i64.const 1))) (br 0))))"#,
        )?;
        let module = runtime.load(&spin)?;
        let mut best = 0;
        for _ in 0..RUNS {
            let scratch = tempfile::tempdir()?;
            let started = Instant::now();
            let result = runtime.run(&Task {
                module,
                args: &[],
                seed: [0; 32],
                input_dir: None,
                output_dir: scratch.path(),
                expected_outputs: &[],
                limits: Limits {
                    fuel: FUEL,
                    ..Limits::default()
                },
            })?;
            let seconds = started.elapsed().as_secs_f64().max(1e-6);
            best = best.max((result.fuel_used as f64 / seconds / 1e6) as u32);
        }
        Ok(best)
    };
    measure().unwrap_or(0)
}

/// A process's resident memory, MiB: `VmRSS` now or `VmHWM` at its peak.
pub(crate) fn resident_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} for process {pid}"))?;
    Ok(kib / 1024.0)
}
