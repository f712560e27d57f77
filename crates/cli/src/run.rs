//! `cairn run`: run a job's tasks and gather their outputs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_exec::local::{self, Finished, LocalJob};
use cairn_exec::{Runtime, ToolConfig, ToolRuntime, WasmConfig, WasmRuntime};
use cairn_job::{Job, ModuleRef};
use cairn_wire::ContentId;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::{EXIT_TASKS_FAILED, default_out_dir};

/// Jobs with more tasks than this get a summary of failures only.
const TASK_LINES_MAX: usize = 64;

/// Arguments of `cairn run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The job file (TOML).
    job: PathBuf,
    /// Run every task on this machine.
    #[arg(long)]
    local: bool,
    /// How many tasks run at once [default: the number of CPUs].
    #[arg(long, short = 'j', value_name = "N")]
    workers: Option<NonZeroUsize>,
    /// Where the outputs go [default: out/<job name>].
    #[arg(long, short = 'o', value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the summary as one JSON object on stdout (no progress bar).
    #[arg(long)]
    json: bool,
    /// Also read the module and inputs from this folder (by default only
    /// files in the job file's own folder are read).
    #[arg(long, value_name = "DIR")]
    allow_inputs_from: Vec<PathBuf>,
}

/// What `cairn run` reports, on the terminal, as JSON and in
/// `<out>/cairn-summary.json`.
#[derive(Serialize)]
struct Summary {
    job: String,
    job_file: String,
    module: String,
    tasks: usize,
    succeeded: usize,
    failed: usize,
    workers: usize,
    fuel_total: u64,
    wall_time_s: f64,
    fuel_per_s: f64,
    out_dir: String,
    /// A video job's playlists and what each rendition holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    hls: Option<serde_json::Value>,
    /// A tiled job's frames, joined from their tiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    tiles: Option<serde_json::Value>,
    results: Vec<TaskSummary>,
}

#[derive(Serialize)]
struct TaskSummary {
    index: u32,
    value: u64,
    ok: bool,
    /// How the task ended, or why it produced no result.
    outcome: String,
    fuel_used: Option<u64>,
    digest: Option<String>,
    wall_time_ms: f64,
    outputs: Vec<OutputSummary>,
    /// Where its stdout was saved (`cairn-logs/…`); none when it was empty.
    stdout: Option<OutputSummary>,
    /// Where its stderr was saved; none when it was empty.
    stderr: Option<OutputSummary>,
    stderr_tail: String,
}

#[derive(Serialize)]
struct OutputSummary {
    path: String,
    size_bytes: u64,
    id: String,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !args.local {
        bail!(
            "this build runs jobs on this machine only: add --local (network runs arrive with `cairn node`)"
        );
    }
    let loaded = crate::video::load(&args.job, &args.allow_inputs_from)?;
    let job = &loaded.job;
    let program: Cow<'static, [u8]> = match &job.module {
        ModuleRef::Builtin(name) => Cow::Borrowed(
            cairn_workloads::find(name)
                .expect("the job loader accepts known built-ins only")
                .wasm,
        ),
        ModuleRef::File(path) => Cow::Owned(
            std::fs::read(path).with_context(|| format!("reading module {}", path.display()))?,
        ),
        ModuleRef::Tool(request) => Cow::Owned(request.to_string().into_bytes()),
    };
    // Tasks at once a GPU job's GPUs allow, if it asks for any.
    let mut gpu_workers = None;
    let runtime: Box<dyn Runtime> = match &job.module {
        ModuleRef::Tool(_) => {
            let wanted = job.limits.gpus;
            let tools = ToolRuntime::new(ToolConfig {
                gpus: wanted > 0,
                ..ToolConfig::default()
            })
            .context("a tool job runs its tool in a bubblewrap sandbox")?;
            if wanted > 0 {
                let gpus = tools.gpus();
                let here = gpus.all().len() as u32;
                if here < wanted {
                    bail!(
                        "{}: each task needs {wanted} GPU(s) (limits.gpus); this machine lends \
                         {here} NVIDIA GPU(s) its driver lists (/proc/driver/nvidia/gpus), of \
                         one model",
                        job.path.display()
                    );
                }
                let memory = job.limits.gpu_memory_mib;
                if gpus.memory_mib() < memory {
                    bail!(
                        "{}: each GPU needs {memory} MiB (limits.gpu_memory_mib); this machine's \
                         have {} MiB (0: nvidia-smi could not say)",
                        job.path.display(),
                        gpus.memory_mib()
                    );
                }
                gpu_workers = Some((here / wanted) as usize);
            }
            Box::new(tools)
        }
        ModuleRef::Builtin(_) | ModuleRef::File(_) => {
            Box::new(WasmRuntime::new(WasmConfig::default())?)
        }
    };
    let module = runtime
        .load(&program)
        .with_context(|| format!("{}: job.module", job.path.display()))?;

    let out_dir = args.out.unwrap_or_else(|| default_out_dir(&job.name));
    // Streams of an earlier run into the same folder must not pass for this
    // run's.
    let logs_dir = out_dir.join(crate::LOGS_DIR);
    if logs_dir.exists() {
        std::fs::remove_dir_all(&logs_dir)
            .with_context(|| format!("clearing {}", logs_dir.display()))?;
    }
    let work_dir = out_dir.join(".cairn-work");
    if work_dir.exists() {
        std::fs::remove_dir_all(&work_dir)
            .with_context(|| format!("clearing {}", work_dir.display()))?;
    }
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let input_dir = stage_inputs(job, &work_dir)?;
    let workers = args
        .workers
        .map(NonZeroUsize::get)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
        .min(gpu_workers.unwrap_or(usize::MAX));

    let bar = progress_bar(job.tasks().len(), args.json);
    let started = Instant::now();
    let mut fuel_total = 0u64;
    let mut claimed: BTreeMap<String, u64> = BTreeMap::new();
    let mut summaries: Vec<Option<TaskSummary>> = (0..job.tasks().len()).map(|_| None).collect();
    let tasks_dir = work_dir.join("tasks");
    let local_job = LocalJob {
        module,
        tasks: job.tasks(),
        input_dir: input_dir.as_deref(),
        work_dir: &tasks_dir,
        limits: job.limits,
    };
    local::run(
        &*runtime,
        &local_job,
        workers,
        &AtomicBool::new(false),
        |finished| {
            let summary = gather(finished, &out_dir, &mut claimed);
            fuel_total += summary.fuel_used.unwrap_or(0);
            if !summary.ok {
                bar.println(format!(
                    "task {} failed: {}{}",
                    summary.value,
                    summary.outcome,
                    indent(&summary.stderr_tail)
                ));
            }
            bar.inc(1);
            let elapsed = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{}fuel/s", si(fuel_total as f64 / elapsed)));
            let index = summary.index as usize;
            summaries[index] = Some(summary);
        },
    );
    bar.finish_and_clear();
    let wall_time = started.elapsed();
    std::fs::remove_dir_all(&work_dir).ok();

    let results: Vec<TaskSummary> = summaries.into_iter().flatten().collect();
    let succeeded = results.iter().filter(|r| r.ok).count();
    // A video job's renditions, once every segment is here.
    let hls = if succeeded == results.len() {
        let outputs = results
            .iter()
            .flat_map(|r| &r.outputs)
            .map(|o| o.path.as_str());
        crate::video::assemble(&out_dir, outputs)
    } else {
        None
    };
    // A tiled job's frames, each once all its tiles are here.
    let outputs = results
        .iter()
        .flat_map(|r| &r.outputs)
        .map(|o| o.path.as_str());
    let tiles = crate::tiles::join(&out_dir, outputs);
    let summary = Summary {
        job: job.name.clone(),
        job_file: job.path.display().to_string(),
        module: module.to_string(),
        tasks: results.len(),
        succeeded,
        failed: results.len() - succeeded,
        workers: workers.min(results.len()),
        fuel_total,
        wall_time_s: wall_time.as_secs_f64(),
        fuel_per_s: fuel_total as f64 / wall_time.as_secs_f64().max(1e-9),
        out_dir: out_dir.display().to_string(),
        hls,
        tiles,
        results,
    };
    let json = serde_json::to_string_pretty(&summary)?;
    write_atomically(&out_dir.join("cairn-summary.json"), json.as_bytes())?;
    if args.json {
        println!("{json}");
    } else {
        print_summary(&summary);
    }
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_TASKS_FAILED)
    })
}

/// Copies the job's inputs into one folder that every task sees read-only
/// at `/input`, checking each is still what the job loaded.
fn stage_inputs(job: &Job, work_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if job.inputs.is_empty() {
        return Ok(None);
    }
    let dir = work_dir.join("input");
    std::fs::create_dir_all(&dir)?;
    for input in &job.inputs {
        let bytes = std::fs::read(&input.host_path)
            .with_context(|| format!("reading input {}", input.host_path.display()))?;
        if ContentId::of(&bytes) != input.id {
            bail!(
                "input {} changed while the job was starting; run it again",
                input.host_path.display()
            );
        }
        std::fs::write(dir.join(&input.name), &bytes)?;
    }
    Ok(Some(dir))
}

/// Turns a finished task into its summary, moving its outputs into
/// `out_dir`. Two tasks writing the same output path is a failure of the
/// second: outputs are never silently overwritten within a run.
fn gather(
    finished: &Finished<'_>,
    out_dir: &Path,
    claimed: &mut BTreeMap<String, u64>,
) -> TaskSummary {
    let task = finished.task;
    let mut summary = TaskSummary {
        index: task.index,
        value: task.value,
        ok: false,
        outcome: String::new(),
        fuel_used: None,
        digest: None,
        wall_time_ms: 0.0,
        outputs: Vec::new(),
        stdout: None,
        stderr: None,
        stderr_tail: String::new(),
    };
    let result = match &finished.result {
        Ok(result) => result,
        Err(error) => {
            summary.outcome = error.to_string();
            return summary;
        }
    };
    summary.outcome = result.outcome.to_string();
    summary.fuel_used = Some(result.fuel_used);
    summary.digest = Some(result.digest.to_string());
    summary.wall_time_ms = result.wall_time.as_secs_f64() * 1e3;
    summary.stderr_tail = tail(&result.stderr, 6);
    summary.outputs = result
        .outputs
        .iter()
        .map(|o| OutputSummary {
            path: o.path.clone(),
            size_bytes: o.size_bytes,
            id: o.id.to_string(),
        })
        .collect();
    // Saved whatever the outcome: a failing task's output is what explains it.
    let saved = save_stream(out_dir, task.index, "stdout", &result.stdout).and_then(|stdout| {
        Ok((
            stdout,
            save_stream(out_dir, task.index, "stderr", &result.stderr)?,
        ))
    });
    match saved {
        Ok((stdout, stderr)) => (summary.stdout, summary.stderr) = (stdout, stderr),
        Err(e) => {
            summary.outcome = format!("{e:#}");
            return summary;
        }
    }
    if !result.outcome.is_success() {
        return summary;
    }
    for output in &result.outputs {
        if let Some(other) = claimed.get(&output.path) {
            summary.outcome = format!(
                "output '{}' was also written by task {other}; give each task its own output names (use {{task}})",
                output.path
            );
            return summary;
        }
    }
    for output in &result.outputs {
        let from = finished.output_dir.join(&output.path);
        let to = out_dir.join(&output.path);
        let moved = to
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(&from, &to));
        if let Err(e) = moved {
            summary.outcome = format!("moving output to {}: {e}", to.display());
            return summary;
        }
        claimed.insert(output.path.clone(), task.value);
    }
    summary.ok = true;
    summary
}

/// Writes one of a task's streams under `out_dir` (see [`crate::stream_path`]);
/// an empty stream is not written.
fn save_stream(
    out_dir: &Path,
    task_index: u32,
    stream: &str,
    bytes: &[u8],
) -> anyhow::Result<Option<OutputSummary>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let path = crate::stream_path(task_index, stream);
    let to = out_dir.join(&path);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
    Ok(Some(OutputSummary {
        path,
        size_bytes: bytes.len() as u64,
        id: ContentId::of(bytes).to_string(),
    }))
}

fn progress_bar(tasks: usize, hidden: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(tasks as u64),
        if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks  {msg}  ETA {eta}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn print_summary(summary: &Summary) {
    let shown: Vec<&TaskSummary> = if summary.results.len() <= TASK_LINES_MAX {
        summary.results.iter().collect()
    } else {
        summary
            .results
            .iter()
            .filter(|r| !r.ok)
            .take(TASK_LINES_MAX)
            .collect()
    };
    if !shown.is_empty() {
        println!(
            "{:>8}  {:<6}  {:>8}  {:<12}  outputs",
            "task", "status", "fuel", "digest"
        );
    }
    for r in shown {
        let outputs: Vec<&str> = r.outputs.iter().map(|o| o.path.as_str()).collect();
        println!(
            "{:>8}  {:<6}  {:>8}  {:<12}  {}",
            r.value,
            if r.ok { "ok" } else { "FAILED" },
            r.fuel_used.map_or("-".into(), |f| si(f as f64)),
            r.digest.as_deref().map_or("-", |d| &d[..12]),
            if r.ok {
                outputs.join(" ")
            } else {
                r.outcome.clone()
            },
        );
        if let Some(stderr) = r.stderr.as_ref().filter(|_| !r.ok) {
            println!(
                "{}\n    (all of stderr: {}/{})",
                indent(&r.stderr_tail).trim_start_matches('\n'),
                summary.out_dir,
                stderr.path
            );
        }
    }
    println!(
        "{}: {}/{} tasks succeeded in {:.2} s on {} workers ({}fuel in total, {}fuel/s)",
        summary.job,
        summary.succeeded,
        summary.tasks,
        summary.wall_time_s,
        summary.workers,
        si(summary.fuel_total as f64),
        si(summary.fuel_per_s),
    );
    println!(
        "outputs in {} (details: {}/cairn-summary.json)",
        summary.out_dir, summary.out_dir
    );
}

/// `1.23 G` style numbers.
fn si(value: f64) -> String {
    const UNITS: [&str; 6] = ["", "k", "M", "G", "T", "P"];
    let mut value = value;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// The last `lines` lines of `bytes`, as text.
fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("\n    | {l}")).collect()
}

/// Writes `bytes` to `path` via a temporary file and a rename, so a crash
/// leaves either the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
