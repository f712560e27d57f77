//! `cairn bench net`: the provider network on a loopback devnet of real
//! `cairn node` processes, and verified blob transfer over libp2p.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_api as api;
use cairn_job::VerifyPolicy;
use cairn_node::market::{Submission, SubmittedFile, SubmittedLimits, SubmittedTask};
use cairn_wire::ContentId;

use super::{Figure, ms, percentile, resident_mib};
use cairn_client::Client;

/// Arguments of `cairn bench net`.
#[derive(clap::Args)]
pub struct NetArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub json: bool,
    /// One-task jobs timed for latency.
    #[arg(long, default_value_t = 20)]
    pub jobs: u32,
    /// Tiny tasks in the throughput job.
    #[arg(long, default_value_t = 5_000)]
    pub tasks: u32,
    /// Size of the blob transferred, MiB.
    #[arg(long, default_value_t = 256)]
    pub blob_mib: u64,
    /// Requests per second of the API load (`GET /v1/jobs/{id}`).
    #[arg(long, default_value_t = 1_000)]
    pub api_rate: u32,
}

/// The fuel a tiny task may use.
const TINY_FUEL: u64 = 1_000_000;
/// How long the API is loaded.
const API_LOAD: Duration = Duration::from_secs(5);
/// Threads sending the load; each keeps its own connection.
const API_LOAD_THREADS: u32 = 16;

/// `GET /v1/jobs/{id}` of a job of `--tasks` tasks at `rate` requests per
/// second for [`API_LOAD`], open loop: each request has its planned time,
/// and its latency counts from then, so a slow answer delays the requests
/// behind it and is not hidden by them ("coordinated omission"). Returns
/// the median and 99th percentile and the rate achieved.
fn api_load(node: &Client, job: &ContentId, rate: u32) -> anyhow::Result<Vec<Figure>> {
    let path = format!("/v1/jobs/{job}");
    let interval = Duration::from_secs_f64(f64::from(API_LOAD_THREADS) / f64::from(rate.max(1)));
    let started = Instant::now();
    let threads: Vec<_> = (0..API_LOAD_THREADS)
        .map(|t| {
            let node = node.clone();
            let path = path.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut latencies = Vec::new();
                // Threads are staggered across one interval.
                let mut planned = started + interval * t / API_LOAD_THREADS;
                while planned < started + API_LOAD {
                    if let Some(wait) = planned.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    node.get::<api::JobStatus>(&path)?;
                    latencies.push(planned.elapsed());
                    planned += interval;
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??,
        );
    }
    let achieved = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Ok(vec![
        figure(
            "api_job_status_p50",
            ms(percentile(&mut latencies, 0.5)),
            "ms",
        ),
        figure(
            "api_job_status_p99",
            ms(percentile(&mut latencies, 0.99)),
            "ms",
        ),
        figure("api_job_status_rate", achieved, "requests/s"),
    ])
}

/// Functions in the generated module of [`module_start`], and what each
/// holds: about 4 MB of code, like a real program of that size.
const BIG_MODULE_FUNCTIONS: u32 = 2_400;
const BIG_MODULE_BLOCKS_PER_FUNCTION: u32 = 24;

fn figure(metric: &str, value: f64, unit: &'static str) -> Figure {
    Figure {
        suite: "net",
        metric: metric.into(),
        value,
        unit,
    }
}

pub fn net(args: &NetArgs) -> anyhow::Result<Vec<Figure>> {
    let mut figures = blob_transfer(args.blob_mib)?;
    figures.extend(module_start()?);
    let scratch = tempfile::tempdir()?;
    with_devnet(&scratch.path().join("devnet"), 4, |node, requester| {
        // What a node costs a machine that offers it: before any job, and
        // at its peak through the jobs below.
        figures.push(figure(
            "requester_resident_idle",
            resident_mib(requester, "VmRSS")?,
            "MiB",
        ));
        let empty =
            wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)?;
        let module = upload(node, "empty.wasm", &empty)?;
        let mut first = Vec::new();
        let mut whole = Vec::new();
        for _ in 0..args.jobs {
            let started = Instant::now();
            // Unverified: this is the network's latency, not verification's.
            let job = submit(node, &module, 1, TINY_FUEL, VerifyPolicy::None)?;
            let status = wait_done(node, &job, Duration::from_millis(1))?;
            whole.push(started.elapsed());
            let submitted = status.submitted_ms;
            let first_task = status.first_task_ms.unwrap_or(submitted);
            first.push(Duration::from_millis(first_task.saturating_sub(submitted)));
        }
        figures.push(figure(
            "submit_to_first_task_p50",
            ms(percentile(&mut first, 0.5)),
            "ms",
        ));
        figures.push(figure(
            "one_task_job_end_to_end_p50",
            ms(percentile(&mut whole, 0.5)),
            "ms",
        ));
        figures.push(figure(
            "one_task_job_end_to_end_p99",
            ms(percentile(&mut whole, 0.99)),
            "ms",
        ));
        // Unverified, then under the default policy with providers this
        // requester has never seen (so every early task is replicated).
        let mut big_job = None;
        for (name, verify) in [
            ("tiny_tasks_four_providers", VerifyPolicy::None),
            (
                "tiny_tasks_four_providers_adaptive",
                VerifyPolicy::default(),
            ),
        ] {
            let job = submit(node, &module, args.tasks, TINY_FUEL, verify)?;
            let status = wait_done(node, &job, Duration::from_millis(50))?;
            let first = status.first_task_ms.unwrap_or(0);
            let finished = status.finished_ms.unwrap_or(0);
            let seconds = (finished.saturating_sub(first)).max(1) as f64 / 1000.0;
            figures.push(figure(name, f64::from(args.tasks) / seconds, "tasks/s"));
            // Its settlement (claims of its acceptances, each signature
            // checked as it is queued and as it is applied) must not run
            // during the next figure.
            wait_settled(node, &job)?;
            big_job = Some(job);
            if verify != VerifyPolicy::None {
                let executions = status.executions as f64;
                figures.push(figure(
                    &format!("{name}_executions_per_task"),
                    executions / f64::from(args.tasks),
                    "x",
                ));
            }
        }
        if let Some(job) = big_job {
            figures.extend(api_load(node, &job, args.api_rate)?);
        }
        figures.push(figure(
            "requester_resident_peak",
            resident_mib(requester, "VmHWM")?,
            "MiB",
        ));
        Ok(())
    })?;
    Ok(figures)
}

/// Time from submit to the first task running for a module of about 4 MB,
/// on a devnet of 3 providers: one no provider has seen (cold), the same
/// again (warm: compiled in memory), and on a fresh devnet whose machine
/// cache holds it (warm from disk: every provider compiled it before a
/// restart). Against these, one compile of the module in this process.
fn module_start() -> anyhow::Result<Vec<Figure>> {
    let wasm = big_module()?;
    let compile_ms = {
        let runtime = cairn_exec::WasmRuntime::new(cairn_exec::WasmConfig::default())?;
        let started = Instant::now();
        cairn_exec::Runtime::load(&runtime, &wasm)?;
        ms(started.elapsed())
    };
    let scratch = tempfile::tempdir()?;
    let first = scratch.path().join("first");
    let second = scratch.path().join("second");
    let (cold, warm) = with_devnet(&first, 3, |node, _| {
        let module = upload(node, "big.wasm", &wasm)?;
        Ok((first_task_ms(node, &module)?, first_task_ms(node, &module)?))
    })?;
    // What the first devnet's machine compiled, as a restarted one finds it.
    std::fs::create_dir_all(second.join("modules"))?;
    for entry in std::fs::read_dir(first.join("modules"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), second.join("modules").join(entry.file_name()))?;
    }
    let disk = with_devnet(&second, 3, |node, _| {
        let module = upload(node, "big.wasm", &wasm)?;
        first_task_ms(node, &module)
    })?;
    Ok(vec![
        figure("module_4mb_bytes", wasm.len() as f64, "bytes"),
        figure("module_4mb_one_compile", compile_ms, "ms"),
        figure("module_4mb_submit_to_first_task_cold", cold, "ms"),
        figure("module_4mb_cold_over_one_compile", cold / compile_ms, "x"),
        figure("module_4mb_submit_to_first_task_warm", warm, "ms"),
        figure("module_4mb_submit_to_first_task_warm_from_disk", disk, "ms"),
    ])
}

/// A WASI command of about 4 MB of code no provider has seen: many
/// functions of arithmetic, branches and memory traffic, with a constant
/// unique to this run. Running it calls one small function.
fn big_module() -> anyhow::Result<Vec<u8>> {
    use std::fmt::Write as _;
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let mut text = String::from("(module (memory (export \"memory\") 1)\n");
    for f in 0..BIG_MODULE_FUNCTIONS {
        write!(text, "(func $f{f} (param i64) (result i64) (local i64 f64)")?;
        for b in 0..BIG_MODULE_BLOCKS_PER_FUNCTION {
            let k = u64::from(f) * 1_000 + u64::from(b) + unique;
            write!(
                text,
                " (local.set 1 (i64.add (i64.mul (local.get 0) (i64.const {k})) (i64.rotl (local.get 1) (i64.const {r}))))\
                 (if (i64.gt_u (local.get 1) (i64.const {k})) (then (local.set 2 (f64.add (local.get 2) (f64.convert_i64_u (local.get 1))))) (else (local.set 0 (i64.xor (local.get 0) (local.get 1)))))\
                 (i64.store (i32.wrap_i64 (i64.and (local.get 1) (i64.const 4088))) (i64.add (local.get 0) (i64.load offset={o} (i32.const 0))))",
                r = b % 63 + 1,
                o = (b * 8) % 4096,
            )?;
        }
        text.push_str(" (i64.add (local.get 1) (i64.trunc_sat_f64_u (local.get 2))))\n");
    }
    text.push_str("(func (export \"_start\") (drop (call $f0 (i64.const 1)))))");
    Ok(wat::parse_str(&text)?)
}

/// Starts a devnet of `providers` in `dir` on free ports, waits until they
/// can bid, runs `work` against the requester (given its process id), and
/// stops the devnet.
pub(super) fn with_devnet<T>(
    dir: &std::path::Path,
    providers: u64,
    work: impl FnOnce(&Client, u32) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_devnet_flags(dir, providers, &[], work)
}

/// [`with_devnet`] with more of `cairn devnet`'s flags (`--tools`).
pub(super) fn with_devnet_flags<T>(
    dir: &std::path::Path,
    providers: u64,
    flags: &[&str],
    work: impl FnOnce(&Client, u32) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    // A validator's consensus port must be known before it starts, so it is
    // picked free and released first, and another process can take it
    // meanwhile: a devnet that stops before it is up is started again.
    let mut attempt = 1;
    let (_devnet, url, pid) = loop {
        let mut devnet = crate::devnet::Background::start(dir, providers, flags)?;
        match devnet.requester() {
            Ok((url, pid)) => break (devnet, url, pid),
            Err(error) if attempt < DEVNET_STARTS && devnet.exited() => {
                eprintln!("cairn: {error:#}\ncairn: starting the devnet again");
                drop(devnet);
                std::fs::remove_dir_all(dir)?;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    };
    let node = Client::new(&url);
    crate::poll::until("the providers connect", DEVNET_UP_WAIT, || {
        Ok((node.get::<api::MarketStats>("/v1/market")?.peers >= providers).then_some(()))
    })?;
    for j in 0..providers {
        let key =
            cairn_wire::Keypair::load_or_create(&dir.join(format!("p{j}/node.key")))?.public();
        crate::poll::until("each provider is staked", DEVNET_UP_WAIT, || {
            let account: api::Account = node.get(&format!("/v1/accounts/{key}"))?;
            Ok(account.can_bid.then_some(()))
        })?;
    }
    // Validator 0 wrote its token before its API answered.
    let node = node.with_token(cairn_client::ApiToken::load(&dir.join("v0"))?);
    work(&node, pid)
}

pub(super) fn upload(node: &Client, name: &str, wasm: &[u8]) -> anyhow::Result<SubmittedFile> {
    node.post_bytes::<api::BlobStored>("/v1/blobs", wasm.to_vec())?;
    Ok(SubmittedFile {
        name: name.into(),
        id: ContentId::of(wasm),
        size: wasm.len() as u64,
    })
}

/// Submits a 3-task unverified job of `module` and returns the time from
/// submit to its first task running, once it is done.
fn first_task_ms(node: &Client, module: &SubmittedFile) -> anyhow::Result<f64> {
    let job = submit(node, module, 3, TINY_FUEL, VerifyPolicy::None)?;
    let status = wait_done(node, &job, Duration::from_millis(5))?;
    let first = status
        .first_task_ms
        .context("a finished job without its first task's time")?;
    Ok(first.saturating_sub(status.submitted_ms) as f64)
}

/// How long a devnet may take to come up: generous, as a loaded machine
/// (a test run beside others) starts five nodes slowly. Not part of any
/// figure.
const DEVNET_UP_WAIT: Duration = Duration::from_secs(240);
/// Starts of a devnet before its failure to come up is an error.
const DEVNET_STARTS: u32 = 3;

/// How long a benchmark job may take to finish or settle.
const JOB_WAIT: Duration = Duration::from_secs(300);

/// Submits a job of `tasks` tasks of `module`, each allowed `fuel`.
pub(super) fn submit(
    node: &Client,
    module: &SubmittedFile,
    tasks: u32,
    fuel: u64,
    verify: VerifyPolicy,
) -> anyhow::Result<ContentId> {
    let submission = Submission {
        name: "tiny".into(),
        runtime: "wasm".into(),
        module: module.clone(),
        inputs: Vec::new(),
        tasks: (0..tasks)
            .map(|i| SubmittedTask {
                args: Vec::new(),
                outputs: Vec::new(),
                seed: format!("{:064x}", i),
                fuel: None,
                inputs: Vec::new(),
            })
            .collect(),
        limits: SubmittedLimits {
            fuel,
            memory_bytes: 1 << 20,
            wall_time_ms: 5_000,
            output_bytes: 1 << 20,
            stdout_bytes: 1 << 10,
            gpus: 0,
            gpu_memory_mib: 0,
        },
        budget_ucairn: 1_000_000_000,
        price_max_ucairn_per_gfuel: 1_000,
        verify: verify.into(),
        approval_window_s: None,
        stream: None,
    };
    let created: api::JobCreated = node.post_json("/v1/jobs", serde_json::to_vec(&submission)?)?;
    Ok(created.job)
}

/// Polls a job every `poll` until it is done: often for latency, rarely
/// for throughput so the polling does not take the requester's CPU.
pub(super) fn wait_done(
    node: &Client,
    job: &ContentId,
    poll: Duration,
) -> anyhow::Result<api::JobStatus> {
    crate::poll::every(poll, &format!("job {job} is done"), JOB_WAIT, || {
        let status: api::JobStatus = node.get(&format!("/v1/jobs/{job}"))?;
        Ok((status.state == api::JobState::Done).then_some(status))
    })
}

/// Waits until blocks have applied `job`'s settlements.
fn wait_settled(node: &Client, job: &ContentId) -> anyhow::Result<()> {
    crate::poll::until(&format!("job {job} is settled"), JOB_WAIT, || {
        let status: api::JobStatus = node.get(&format!("/v1/jobs/{job}"))?;
        Ok((status.settled > 0).then_some(()))
    })
}

/// Moves a blob between two market nodes on loopback through the nodes' own
/// code: ranges in flight over libp2p, each verified against the blob's
/// BLAKE3 id; once only verified (`audit`), once also written into the
/// store and made durable (`fetch`), which the disk's sync rate bounds.
fn blob_transfer(mib: u64) -> anyhow::Result<Vec<Figure>> {
    use cairn_node::market::{LedgerLink, Market, MarketConfig};
    let scratch = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let keys = [1u8, 2].map(|seed| cairn_wire::Keypair::from_seed([seed; 32]));
        let genesis = cairn_ledger::Genesis::with_balances(
            "bench",
            &keys.iter().map(|k| k.public()).collect::<Vec<_>>(),
            1 << 40,
        );
        let ledger = LedgerLink::in_memory(genesis.state()?, 200);
        let start = |key: &cairn_wire::Keypair, name: &str| {
            Market::start(
                key.clone(),
                MarketConfig::new(scratch.path().join(name)),
                ledger.clone(),
            )
        };
        let server = start(&keys[0], "server").await?;
        let mut data = vec![0u8; (mib << 20) as usize];
        let mut state = 0x1234_5678_u64;
        for chunk in data.chunks_mut(8) {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let id = server.blobs().put(&data)?;
        drop(data);
        // Blobs are private to the work they belong to: this one is shared
        // with the client alone.
        if !server.share(id, keys[1].public()) {
            bail!("the server could not share the blob");
        }
        let client = start(&keys[1], "client").await?;
        for address in server.addresses() {
            client.network().dial(address);
        }
        let size = mib << 20;
        let started = Instant::now();
        client
            .audit(server.peer_id(), id, size)
            .await
            .map_err(anyhow::Error::msg)?;
        let verified = size as f64 / started.elapsed().as_secs_f64() / 1e6;
        let started = Instant::now();
        client
            .fetch(server.peer_id(), id, mib << 20)
            .await
            .map_err(anyhow::Error::msg)?;
        let seconds = started.elapsed().as_secs_f64();
        if client.blobs().size(&id) != Some(mib << 20) {
            bail!("the blob did not arrive whole");
        }
        Ok(vec![
            figure("blob_transfer_verified", verified, "MB/s"),
            figure(
                "blob_fetch_into_store_durable",
                (mib << 20) as f64 / seconds / 1e6,
                "MB/s",
            ),
        ])
    })
}
