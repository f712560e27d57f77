//! `cairn bench`: performance figures, each measured against a baseline in
//! the same run so the ratios hold on a noisy, shared machine.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_exec::{Limits, NanCanonicalization, Runtime, Task, TaskResult, WasmConfig, WasmRuntime};
use serde::Serialize;

/// The example scene, rendered by the Wasm benchmark.
const SCENE: &str = include_str!("../../../examples/render/scene.json");
/// The frame rendered (any frame of the orbit will do; not the first, so the
/// camera animation is exercised).
const FRAME: u32 = 3;

/// A benchmark suite.
#[derive(clap::Subcommand)]
pub enum Suite {
    /// The path tracer as Wasm under Cairn versus native, the cost of fuel
    /// metering, and the runner's per-task overhead.
    Wasm(WasmArgs),
    /// The ledger state machine: transfers applied per second on one core,
    /// transactions admitted per second with and without batch verification,
    /// and the cost of the state root.
    Ledger(LedgerArgs),
    /// The replicated ledger: transactions finalized per second and time to
    /// finality, for one embedded validator and for four on loopback.
    Chain(ChainArgs),
    /// The provider network on a loopback devnet: submit to first task,
    /// one-task jobs end to end, tiny-task throughput with four providers,
    /// and verified blob transfer.
    Net(crate::bench_net::NetArgs),
    /// Verification: steady-state overhead against BOINC's quorum of two,
    /// each named adversary, `sometimes` across jobs, and a dispute over a
    /// 10^9-fuel task settled by re-executing one step.
    Verify(crate::bench_verify::VerifyArgs),
}

/// Arguments of `cairn bench chain`.
#[derive(clap::Args)]
pub struct ChainArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    json: bool,
    /// Seconds of load per configuration.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// Offered load for one validator, transactions per second.
    #[arg(long, default_value_t = 12_000)]
    rate_single: u32,
    /// Offered load for four validators, transactions per second.
    #[arg(long, default_value_t = 4_000)]
    rate_four: u32,
}

/// Arguments of `cairn bench ledger`.
#[derive(clap::Args)]
pub struct LedgerArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    json: bool,
    /// Transfers to apply.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1000..=10_000_000))]
    transfers: u32,
    /// Accounts they move between.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    accounts: u32,
}

/// Arguments of `cairn bench wasm`.
#[derive(clap::Args)]
pub struct WasmArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    json: bool,
    /// Renders per variant; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Empty tasks run to measure the per-task overhead.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    tasks: u32,
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
            let figures = wasm(&args)?;
            print(&figures, args.json)
        }
        Suite::Ledger(args) => print(&ledger(&args)?, args.json),
        Suite::Chain(args) => {
            let mut figures = chain(1, args.rate_single, args.seconds, "single")?;
            figures.extend(chain(4, args.rate_four, args.seconds, "four")?);
            print(&figures, args.json)
        }
        Suite::Net(args) => print(&crate::bench_net::net(&args)?, args.json),
        Suite::Verify(args) => print(&crate::bench_verify::verify(&args)?, args.json),
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

fn wasm(args: &WasmArgs) -> anyhow::Result<Vec<Figure>> {
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
    let module = metered.load(cairn_workloads::RENDER.wasm)?;
    unmetered.load(cairn_workloads::RENDER.wasm)?;
    every_op.load(cairn_workloads::RENDER.wasm)?;

    let mut native_png = Vec::new();
    let mut native = Vec::new();
    let mut wasm_metered = Vec::new();
    let mut wasm_unmetered = Vec::new();
    let mut wasm_every_op = Vec::new();
    let mut fuel = 0;
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
    }
    let native = median(native);
    let wasm_metered = median(wasm_metered);
    let wasm_unmetered = median(wasm_unmetered);
    let wasm_every_op = median(wasm_every_op);
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

fn ledger(args: &LedgerArgs) -> anyhow::Result<Vec<Figure>> {
    use cairn_ledger::{Genesis, TxBody, TxKind, admit, admit_batch};
    use cairn_wire::Keypair;

    let keys: Vec<Keypair> = (0..args.accounts)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    let publics: Vec<_> = keys.iter().map(Keypair::public).collect();
    let mut state = Genesis::with_balances("bench", &publics, 1_000_000_000_000).state()?;
    let mut nonces = vec![0u64; keys.len()];
    let txs: Vec<_> = (0..args.transfers as usize)
        .map(|i| {
            // A fixed pseudo-random walk over the accounts.
            let from = (i * 7919) % keys.len();
            let to = (i * 104_729 + 1) % keys.len();
            let body = TxBody {
                chain: state.chain(),
                nonce: nonces[from],
                kind: TxKind::Transfer {
                    to: publics[to],
                    amount: 1 + (i as u64 % 1000),
                },
            };
            nonces[from] += 1;
            body.sign(&keys[from])
        })
        .collect();

    let sample = &txs[..txs.len().min(20_000)];
    let started = Instant::now();
    for tx in sample {
        admit(tx.clone()).map_err(anyhow::Error::msg)?;
    }
    let admit_single = sample.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for chunk in sample.chunks(256) {
        for verdict in admit_batch(chunk.to_vec()) {
            verdict.map_err(anyhow::Error::msg)?;
        }
    }
    let admit_batched = sample.len() as f64 / started.elapsed().as_secs_f64();

    let verified: Vec<_> = admit_batch(txs)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    for tx in &verified {
        state.apply(tx).map_err(anyhow::Error::msg)?;
    }
    let apply = verified.len() as f64 / started.elapsed().as_secs_f64();
    if state.total_accounted() != u128::from(state.supply()) {
        bail!("supply was not conserved");
    }
    let started = Instant::now();
    let _ = state.root();
    let root_ms = started.elapsed().as_secs_f64() * 1e3;

    let figure = |metric: &str, value, unit| Figure {
        suite: "ledger",
        metric: metric.to_string(),
        value,
        unit,
    };
    Ok(vec![
        figure("apply_transfers", apply, "tx/s"),
        figure("admit_single", admit_single, "tx/s"),
        figure("admit_batched_256", admit_batched, "tx/s"),
        figure("admit_batch_speedup", admit_batched / admit_single, "x"),
        figure("state_root", root_ms, "ms"),
        figure("state_root_accounts", f64::from(args.accounts), "accounts"),
    ])
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Offers `rate` transfers per second for `seconds` to a cluster of
/// `validators` (each transaction to one validator, in turn) and measures
/// how many are finalized per second and how long each takes.
fn chain(
    validators: usize,
    rate: u32,
    seconds: u64,
    label: &'static str,
) -> anyhow::Result<Vec<Figure>> {
    use cairn_ledger::{Genesis, TxBody, TxKind};
    use cairn_wire::Keypair;
    use std::time::Duration;

    const ACCOUNTS: usize = 2_000;
    const WAVE: Duration = Duration::from_millis(10);
    let keys: Vec<Keypair> = (0..ACCOUNTS as u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    let publics: Vec<_> = keys.iter().map(Keypair::public).collect();
    let genesis = Genesis::with_balances("bench-chain", &publics, 1_000_000_000_000);
    let chain_id = genesis.state()?.chain();
    let total = rate as usize * seconds as usize;
    // Sign everything first: signing is the client's cost, not the chain's.
    let txs: Vec<(usize, u64, Vec<u8>)> = (0..total)
        .map(|i| {
            let from = i % ACCOUNTS;
            let nonce = (i / ACCOUNTS) as u64;
            let body = TxBody {
                chain: chain_id,
                nonce,
                kind: TxKind::Transfer {
                    to: publics[(i * 7 + 1) % ACCOUNTS],
                    amount: 1,
                },
            };
            (from, nonce, body.sign(&keys[from]).to_bytes())
        })
        .collect();
    let dir = tempfile::tempdir()?;
    let per_wave = (rate as usize * WAVE.as_millis() as usize / 1000).max(1);
    let (latencies, elapsed) =
        cairn_node::with_local_cluster(validators, dir.path(), genesis, move |ledgers| {
            while ledgers.iter().any(|l| l.height() < 2) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let started = Instant::now();
            let mut submitted: Vec<Option<Instant>> = vec![None; txs.len()];
            let mut latencies = Vec::with_capacity(txs.len());
            let mut next = 0;
            let mut oldest = 0;
            let deadline = started + Duration::from_secs(seconds * 4 + 30);
            while oldest < txs.len() && Instant::now() < deadline {
                let due =
                    ((started.elapsed().as_millis() / WAVE.as_millis()) as usize + 1) * per_wave;
                while next < due.min(txs.len()) {
                    let (_, _, bytes) = &txs[next];
                    if ledgers[next % ledgers.len()].submit(bytes.clone()).is_ok() {
                        submitted[next] = Some(Instant::now());
                        next += 1;
                    } else {
                        break;
                    }
                }
                // Finality as validator 0 sees it.
                while oldest < next {
                    let (from, nonce, _) = &txs[oldest];
                    if ledgers[0].outcome(&publics[*from], *nonce).is_some() {
                        latencies.push(submitted[oldest].unwrap().elapsed());
                        oldest += 1;
                    } else {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (latencies, started.elapsed())
        })?;
    if latencies.is_empty() {
        bail!("nothing was finalized");
    }
    let mut sorted = latencies.clone();
    sorted.sort();
    let percentile = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    let figure = |name: &str, value, unit| Figure {
        suite: "chain",
        metric: format!("{label}_{name}"),
        value,
        unit,
    };
    Ok(vec![
        figure("validators", validators as f64, "validators"),
        figure("offered", f64::from(rate), "tx/s"),
        figure(
            "finalized",
            latencies.len() as f64 / elapsed.as_secs_f64(),
            "tx/s",
        ),
        figure("finality_p50", percentile(0.5), "ms"),
        figure("finality_p99", percentile(0.99), "ms"),
    ])
}

/// A provider's benchmark score: millions of fuel per second on one core,
/// measured with a short counting loop (about 50 ms). Advertised in bids so
/// requesters can compare machines.
pub fn score_mfuel_per_s() -> u32 {
    const FUEL: u64 = 100_000_000;
    let measure = || -> anyhow::Result<u32> {
        let runtime = WasmRuntime::new(WasmConfig::default())?;
        let spin = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                 (func (export "_start") (local i64)
                   (loop (local.set 0 (i64.add (local.get 0) (i64.const 1))) (br 0))))"#,
        )?;
        let module = runtime.load(&spin)?;
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
        Ok((result.fuel_used as f64 / seconds / 1e6) as u32)
    };
    measure().unwrap_or(0)
}
