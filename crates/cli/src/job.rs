//! `cairn job`: submit a job to a running node and follow it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use cairn_api as api;
use cairn_job::{Job, ModuleRef};
use cairn_node::market::{Submission, SubmittedFile, SubmittedLimits, SubmittedTask};
use cairn_wire::ContentId;
use serde_json::Value;

use crate::wallet::Node;

/// Arguments of `cairn job`.
#[derive(clap::Args)]
pub struct JobArgs {
    /// The node's HTTP API.
    #[arg(
        long,
        env = "CAIRN_NODE",
        default_value = "http://127.0.0.1:8640",
        global = true
    )]
    node: String,
    /// The node's data folder, where it keeps its API token (`api.token`;
    /// `CAIRN_API_TOKEN` overrides it).
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = ".cairn", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(clap::Subcommand)]
enum JobCommand {
    /// Upload a job's module and inputs, escrow its budget, and put it up
    /// for auction; prints the job id.
    Submit {
        /// The job file.
        job: PathBuf,
        /// Follow it until it ends and fetch its outputs into `out/<name>`.
        #[arg(long)]
        watch: bool,
        /// Also send the module and inputs found in this folder (by default
        /// only files in the job file's own folder are sent).
        #[arg(long, value_name = "DIR")]
        allow_inputs_from: Vec<PathBuf>,
    },
    /// A job's state, progress, and why it waits if it does.
    Status {
        /// Job id [default: every job].
        id: Option<ContentId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every job on the node, oldest first: state, progress, and why it
    /// waits (as `status` with no id).
    List {
        /// Print JSON, one job per line.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: its accepted results are kept and paid, its other
    /// tasks given up, its providers released at their next pull, and the
    /// rest of its escrow returns once their notice on the ledger ends.
    #[command(
        after_help = "Example:\n  cairn job cancel 53f7023425…  # the id `cairn job submit` printed"
    )]
    Cancel {
        /// Job id.
        id: ContentId,
        /// Print the job's status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow a job until it ends (exit status 1 if some tasks have no
    /// result: failed or cancelled).
    Watch {
        /// Job id.
        id: ContentId,
    },
    /// Fetch a job's outputs, verified against their content ids.
    Results {
        /// Job id.
        id: ContentId,
        /// Where outputs go [default: out/<job name>].
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

pub fn job(args: JobArgs) -> anyhow::Result<ExitCode> {
    let node = Node::new(&args.node).with_token(crate::wallet::api_token(&args.data_dir)?);
    match args.command {
        JobCommand::Submit {
            job,
            watch: follow,
            allow_inputs_from,
        } => {
            let id = submit(&node, &job, &allow_inputs_from)?;
            println!("{id}");
            if follow {
                let code = watch(&node, &id)?;
                results(&node, &id, None)?;
                return Ok(code);
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Cancel { id, json } => {
            let status: api::JobStatus =
                node.post_json(&format!("/v1/jobs/{id}/cancel"), Vec::new())?;
            if json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                println!(
                    "cancelled job {id}: {} of {} tasks done and kept, {} given up; the rest of \
                     its escrow returns after the ledger's notice to its providers",
                    status.done,
                    status.total,
                    status.total - status.done
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::List { json } => list(&node, None, json),
        JobCommand::Status { id, json } => list(&node, id, json),
        JobCommand::Watch { id } => watch(&node, &id),
        JobCommand::Results { id, out } => {
            results(&node, &id, out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints one job's status, or every job's.
fn list(node: &Node, id: Option<ContentId>, json: bool) -> anyhow::Result<ExitCode> {
    let statuses = match id {
        Some(id) => vec![node.get(&format!("/v1/jobs/{id}"))?],
        None => node.get::<api::JobList>("/v1/jobs")?.jobs,
    };
    for status in statuses {
        if json {
            println!("{}", serde_json::to_string(&status)?);
        } else {
            println!("{}", describe(&status));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Uploads what the job needs and submits it; returns the job id. The
/// module and inputs come from the job file's folder or from `allowed`,
/// and are listed on stderr before any is sent.
pub fn submit(node: &Node, path: &Path, allowed: &[PathBuf]) -> anyhow::Result<ContentId> {
    let job =
        Job::load_allowing(path, &cairn_workloads::names(), allowed).map_err(anyhow::Error::msg)?;
    announce_uploads(&job);
    let module = match &job.module {
        ModuleRef::Builtin(name) => cairn_workloads::find(name)
            .expect("the job loader accepts known built-ins only")
            .wasm
            .to_vec(),
        ModuleRef::File(path) => {
            std::fs::read(path).with_context(|| format!("reading module {}", path.display()))?
        }
        // The request is the module: a provider loads what it names.
        ModuleRef::Tool(request) => request.to_string().into_bytes(),
    };
    let upload = |name: &str, bytes: Vec<u8>| -> anyhow::Result<SubmittedFile> {
        let size = bytes.len() as u64;
        let id = ContentId::of(&bytes);
        let answer: api::BlobStored = node.post_bytes("/v1/blobs", bytes)?;
        if answer.id != id {
            bail!("the node stored {name} under another id");
        }
        Ok(SubmittedFile {
            name: name.to_string(),
            id,
            size,
        })
    };
    let module_name = match &job.module {
        ModuleRef::Tool(_) => "tool",
        ModuleRef::Builtin(_) | ModuleRef::File(_) => "module.wasm",
    };
    let module = upload(module_name, module)?;
    let mut inputs = Vec::new();
    for input in &job.inputs {
        let bytes = std::fs::read(&input.host_path)
            .with_context(|| format!("reading input {}", input.host_path.display()))?;
        inputs.push(upload(&input.name, bytes)?);
    }
    let market = &job.market;
    let submission = Submission {
        name: job.name.clone(),
        runtime: job.module.runtime_name(),
        module,
        inputs,
        tasks: job
            .tasks()
            .iter()
            .map(|t| SubmittedTask {
                args: t.args.clone(),
                outputs: t.outputs.clone(),
                seed: cairn_wire::hex(&t.seed),
            })
            .collect(),
        limits: SubmittedLimits {
            fuel: job.limits.fuel,
            memory_bytes: job.limits.memory_bytes,
            wall_time_ms: job.limits.wall_time.as_millis() as u64,
            output_bytes: job.limits.output_bytes,
            stdout_bytes: job.limits.stdout_bytes,
        },
        budget_ucairn: market.budget_ucairn.unwrap_or(1_000_000_000),
        price_max_ucairn_per_gfuel: market.price_max_ucairn_per_gfuel.unwrap_or(1_000),
        verify: job.verify.into(),
    };
    let body = serde_json::to_vec(&submission)?;
    if body.len() > cairn_node::api::SUBMISSION_BYTES_MAX {
        bail!(
            "the job's {} tasks take {} bytes to submit; a node takes at most {}: split it into \
             smaller jobs",
            submission.tasks.len(),
            body.len(),
            cairn_node::api::SUBMISSION_BYTES_MAX
        );
    }
    let created: api::JobCreated = node.post_json("/v1/jobs", body)?;
    Ok(created.job)
}

/// One line about a job.
fn describe(status: &api::JobStatus) -> String {
    let mut line = format!(
        "{}  {:<8} {:<8} {}/{} done, {} running, {} pending, {} failed, {} providers",
        status.id.short(),
        status.name,
        status.state,
        status.done,
        status.total,
        status.running,
        status.pending,
        status.failed,
        status.providers,
    );
    if status.executions > u64::from(status.done) || status.disputes > 0 {
        line.push_str(&format!(
            "\n    verified: {} runs for {} results, {} disputes",
            status.executions, status.done, status.disputes
        ));
    }
    if !status.convicted.is_empty() {
        let keys: Vec<String> = status.convicted.iter().map(ToString::to_string).collect();
        line.push_str(&format!("\n    convicted and slashed: {}", keys.join(", ")));
    }
    if let Some(reason) = &status.reason {
        let label = if status.state.is_over() {
            "why"
        } else {
            "waiting"
        };
        line.push_str(&format!("\n    {label}: {reason}"));
    }
    line
}

/// Follows a job until it is done or failed.
pub fn watch(node: &Node, id: &ContentId) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut last = String::new();
    // The node sends the job's status each time it changes; a stream that
    // ends before the job does (after an hour, or cut by a proxy) is opened
    // again, after a pause so that one ending at once is not a busy loop.
    let mut reopened = false;
    loop {
        if std::mem::replace(&mut reopened, true) {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        for status in node.events::<api::JobStatus>(&format!("/v1/jobs/{id}/events"))? {
            let status = status?;
            let line = describe(&status);
            if line != last {
                println!("{:>6.1}s  {line}", started.elapsed().as_secs_f64());
                last = line;
            }
            match status.state {
                api::JobState::Done => return Ok(ExitCode::SUCCESS),
                api::JobState::Failed | api::JobState::Cancelled => {
                    return Ok(ExitCode::from(crate::EXIT_TASKS_FAILED));
                }
                _ => {}
            }
        }
    }
}

/// Says on stderr which local files a job sends to the node (and from
/// there to the providers it leases), before anything is sent.
fn announce_uploads(job: &Job) {
    let mut files: Vec<(String, u64)> = job
        .inputs
        .iter()
        .map(|input| (input.host_path.display().to_string(), input.size_bytes))
        .collect();
    if let ModuleRef::File(path) = &job.module {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        files.insert(0, (path.display().to_string(), size));
    }
    if files.is_empty() {
        return;
    }
    eprintln!("sending {} local file(s) to the network:", files.len());
    for (path, size) in files {
        eprintln!("  {path} ({size} bytes)");
    }
}

/// Downloads a job's outputs into `out`, and each task's stdout and stderr
/// into `out/cairn-logs/`, checking each against its content id.
pub fn results(node: &Node, id: &ContentId, out: Option<PathBuf>) -> anyhow::Result<()> {
    let status: api::JobStatus = node.get(&format!("/v1/jobs/{id}"))?;
    let out = match out {
        Some(out) => out,
        None => {
            // The name comes from the node: the job-name rule before it
            // names a folder.
            let name = status.name.as_str();
            cairn_job::check_job_name(name)
                .map_err(|reason| anyhow::anyhow!("the node named the job badly: {reason}"))?;
            crate::default_out_dir(name)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let logs_dir = out.join(crate::LOGS_DIR);
    if logs_dir.exists() {
        // Another job's streams must not pass for this one's.
        std::fs::remove_dir_all(&logs_dir)
            .with_context(|| format!("clearing {}", logs_dir.display()))?;
    }
    let answer: api::JobResults = node.get(&format!("/v1/jobs/{id}/results"))?;
    let mut files = 0;
    let mut written = std::collections::BTreeSet::new();
    let mut results = Vec::with_capacity(answer.results.len());
    for result in &answer.results {
        for output in &result.outputs {
            let name = output.name.as_str();
            // The node passes on what a provider reported: the same rule as
            // a job file's outputs, before the name touches the disk.
            let path = cairn_job::output_path(&out, name).map_err(|reason| {
                anyhow::anyhow!("the node listed an output that cannot be saved: {reason}")
            })?;
            if !written.insert(name.to_string()) {
                bail!("the node listed output '{name}' twice; nothing is overwritten");
            }
            fetch_to(node, &output.id, &path)?;
            files += 1;
        }
        // The record as the node gave it, with where each stream was saved.
        let mut listed = serde_json::to_value(result)?;
        for (stream, file) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
            let Some(file) = file else {
                continue;
            };
            let path = crate::stream_path(result.task, stream);
            fetch_to(node, &file.id, &out.join(&path))?;
            listed[stream]["path"] = Value::from(path);
        }
        results.push(listed);
    }
    let summary = serde_json::json!({ "job": id, "status": status, "results": results });
    std::fs::write(
        out.join("cairn-results.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    println!(
        "{} results, {files} files in {} (digests in cairn-results.json, stdout and stderr in cairn-logs/)",
        results.len(),
        out.display()
    );
    Ok(())
}

/// Downloads blob `id` to `path`, checking it against its content id.
fn fetch_to(node: &Node, id: &ContentId, path: &Path) -> anyhow::Result<()> {
    let bytes = node.get_bytes(&format!("/v1/blobs/{id}"))?;
    if ContentId::of(&bytes) != *id {
        bail!("{} does not match its content id {id}", path.display());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
