//! `cairn job`: submit a job to a running node and follow it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use cairn_api as api;
use cairn_client::Client;
use cairn_job::{Job, ModuleRef};
use cairn_wire::ContentId;
use serde_json::Value;

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
    /// Transcode a live stream as it is produced (Livepeer's broadcast):
    /// each segment's renditions are added to a running job and listed in
    /// live HLS playlists in `out/<name>` as they come back verified; the
    /// job ends, and is paid per segment delivered, when the stream does.
    #[command(
        after_help = "Example:\n  ffmpeg -re -f lavfi -i testsrc2=size=640x360:rate=30 -t 20 -c:v libx264 -g 60 \\\n    -f mpegts - | cairn job stream examples/transcode/live.toml"
    )]
    Stream(crate::stream::StreamArgs),
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
    /// Approve results of a job that asks for approval (`[approval]` in
    /// its job file): they are paid when it settles. Results not judged
    /// when the job's window ends are approved.
    #[command(
        after_help = "Examples:\n  cairn job approve 53f7023425…          # every result there is now\n  cairn job approve 53f7023425… \"0-9, 15\"  # tasks 0 to 9, and 15"
    )]
    Approve {
        /// Job id.
        id: ContentId,
        /// Tasks, as `cairn job results` numbers them, in Flamenco's
        /// syntax ("0-9, 15") [default: every task with a result].
        tasks: Option<String>,
    },
    /// Reject results of a job that asks for approval: they are not paid,
    /// their providers' standing with this node starts again, and their
    /// tasks run again on other providers.
    #[command(after_help = "Example:\n  cairn job reject 53f7023425… 3")]
    Reject {
        /// Job id.
        id: ContentId,
        /// Tasks, in Flamenco's syntax ("3, 7-8").
        tasks: String,
    },
    /// Follow a job until it ends, or waits for your approval (exit
    /// status 1 if some tasks have no result: failed or cancelled).
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
    let node = Client::new(&args.node).with_token(crate::wallet::api_token(&args.data_dir)?);
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
                println!("{}", results(&node, &id, None)?);
                return Ok(code);
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Cancel { id, json } => {
            let status = node.cancel(&id)?;
            if json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                println!(
                    "cancelled job {id}: {} of {} tasks done and kept, {} given up or failed; \
                     the rest of its escrow returns after the ledger's notice to its providers",
                    status.done, status.total, status.failed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Approve { id, tasks } => {
            let approve = match tasks {
                Some(tasks) => task_list(&tasks)?,
                None => node.results(&id)?.iter().map(|r| r.task).collect(),
            };
            // In judgements the node takes (a job may have a million).
            let mut status = None;
            for tasks in approve.chunks(api::APPROVAL_TASKS_MAX) {
                let approval = api::Approval {
                    approve: tasks.to_vec(),
                    reject: Vec::new(),
                };
                status = Some(node.judge(&id, &approval)?);
            }
            match status {
                Some(status) => println!("{}", describe(&status)),
                None => println!("job {id} has no result to approve yet"),
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Reject { id, tasks } => {
            let reject = task_list(&tasks)?;
            let status = node.judge(
                &id,
                &api::Approval {
                    approve: Vec::new(),
                    reject,
                },
            )?;
            println!("{}", describe(&status));
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Stream(stream) => crate::stream::stream(&node, stream),
        JobCommand::List { json } => list(&node, None, json),
        JobCommand::Status { id, json } => list(&node, id, json),
        JobCommand::Watch { id } => watch(&node, &id),
        JobCommand::Results { id, out } => {
            println!("{}", results(&node, &id, out)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints one job's status, or every job's.
fn list(node: &Client, id: Option<ContentId>, json: bool) -> anyhow::Result<ExitCode> {
    let statuses = match id {
        Some(id) => vec![node.job(&id)?],
        None => node.jobs()?,
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
pub fn submit(node: &Client, path: &Path, allowed: &[PathBuf]) -> anyhow::Result<ContentId> {
    let loaded = crate::video::load(path, allowed)?;
    announce_uploads(&loaded.job);
    Ok(node.submit_job(&loaded.job)?)
}

/// Task numbers in Flamenco's syntax ("0-9, 15").
fn task_list(text: &str) -> anyhow::Result<Vec<u32>> {
    cairn_job::parse_frames(text)
        .map_err(|reason| anyhow::anyhow!("tasks: {reason}"))?
        .into_iter()
        .map(|task| u32::try_from(task).map_err(|_| anyhow::anyhow!("tasks: {task} is not a task")))
        .collect()
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
    if let (Some(approved), Some(rejected)) = (status.approved, status.rejected) {
        line.push_str(&format!(
            "\n    approval: {approved} approved, {rejected} rejected"
        ));
        if let Some(until) = status.approval_until_ms {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let left = until.saturating_sub(now) / 1000;
            line.push_str(&format!(
                "; the rest are approved in {left} s (`cairn job approve|reject`)"
            ));
        }
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

/// Follows a job until it is over, a line each time it changes.
pub fn watch(node: &Client, id: &ContentId) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut last = String::new();
    // A job that waits for approval waits for the user, who needs its
    // results to judge them: following it to its window's end would not.
    let waits_for_user =
        |status: &api::JobStatus| status.state.is_over() || status.state == api::JobState::Approval;
    let status = node.follow_until(
        id,
        |status| {
            let line = describe(status);
            if line != last {
                println!("{:>6.1}s  {line}", started.elapsed().as_secs_f64());
                last = line;
            }
        },
        waits_for_user,
    )?;
    Ok(match status.state {
        api::JobState::Done | api::JobState::Approval => ExitCode::SUCCESS,
        _ => ExitCode::from(crate::EXIT_TASKS_FAILED),
    })
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
/// into `out/cairn-logs/`, checking each against its content id; a video
/// job's renditions are assembled into playlists, and a tiled job's frames
/// joined from their tiles. Returns a line that
/// says what was written.
pub fn results(node: &Client, id: &ContentId, out: Option<PathBuf>) -> anyhow::Result<String> {
    let status = node.job(id)?;
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
    let results_of = node.results(id)?;
    let mut files = 0;
    let mut written = std::collections::BTreeSet::new();
    let mut results = Vec::with_capacity(results_of.len());
    for result in &results_of {
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
    // A video job's playlists, once every segment is in; a tiled job's
    // frames, likewise.
    let (hls, tiles) = match status.state {
        api::JobState::Done => (
            crate::video::assemble(&out, written.iter().map(String::as_str)),
            crate::tiles::join(&out, written.iter().map(String::as_str)),
        ),
        _ => (None, None),
    };
    let mut summary = serde_json::json!({ "job": id, "status": status, "results": results });
    if let Some(hls) = hls {
        summary["hls"] = hls;
    }
    if let Some(tiles) = tiles {
        summary["tiles"] = tiles;
    }
    std::fs::write(
        out.join("cairn-results.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    Ok(format!(
        "{} results, {files} files in {} (digests in cairn-results.json, stdout and stderr in cairn-logs/)",
        results.len(),
        out.display()
    ))
}

/// Downloads blob `id` to `path`, checking it against its content id.
fn fetch_to(node: &Client, id: &ContentId, path: &Path) -> anyhow::Result<()> {
    let bytes = node.blob(id)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
