//! cairn: The command line of the Cairn computing-power network.
//!
//! A thin shell over the library crates: `cairn run` loads a job file
//! (`cairn-job`) and runs its tasks (`cairn-exec`); `cairn bench` measures the
//! runtimes against native code and the ledger state machine (`cairn-ledger`);
//! `cairn node` runs a ledger validator (`cairn-node`), `cairn devnet` several,
//! and `cairn wallet` talks to one.

mod bench;
mod bench_net;
mod bench_verify;
mod job;
mod node;
mod run;
mod wallet;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cairn: run compute jobs on a decentralized network of providers.
#[derive(Parser)]
#[command(name = "cairn", version, about, propagate_version = true)]
struct Cli {
    /// A TOML file of settings named like the flags; flags and CAIRN_*
    /// variables override it.
    #[arg(long, global = true, env = "CAIRN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run every task of a job and collect its outputs.
    Run(run::RunArgs),
    /// Measure performance; prints figures as a table or as JSON lines.
    Bench {
        /// What to measure.
        #[command(subcommand)]
        suite: bench::Suite,
    },
    /// List the workloads built into this binary (`module = "cairn:<name>"`).
    Workloads,
    /// Run a node: a ledger validator and a market peer (requester, and
    /// provider with --provide), with its HTTP API.
    Node(node::NodeArgs),
    /// Start a local network (validators and providers, each a `cairn node`
    /// process) and optionally run a job through it.
    Devnet(node::DevnetArgs),
    /// Submit jobs to a node and follow them.
    Job(job::JobArgs),
    /// Balances, transfers and stake on the ledger.
    Wallet(wallet::WalletArgs),
}

/// Exit status for a run whose tasks did not all succeed.
const EXIT_TASKS_FAILED: u8 = 1;
/// Exit status for bad input (a job file, an argument) where nothing ran.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    if let Err(error) = apply_config_file() {
        eprintln!("cairn: {error:#}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cairn: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Bench { suite } => bench::run(suite).map(|()| ExitCode::SUCCESS),
        Command::Node(args) => node::node(args),
        Command::Devnet(args) => node::devnet(args),
        Command::Job(args) => job::job(args),
        Command::Wallet(args) => wallet::wallet(args),
        Command::Workloads => {
            for workload in cairn_workloads::ALL {
                println!(
                    "cairn:{:<12} {:>7} KiB  {}",
                    workload.name,
                    workload.wasm.len() / 1024,
                    workload.about
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--config FILE` (or `CAIRN_CONFIG`): a TOML file of settings named like
/// the flags (`listen = ["/ip4/0.0.0.0/tcp/8642"]`, `provide = true`). Each
/// becomes the `CAIRN_*` environment variable of its flag unless that is
/// already set, so flags override the environment, which overrides the file.
fn apply_config_file() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let from_flag = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        });
    let Some(path) = from_flag.or_else(|| std::env::var("CAIRN_CONFIG").ok()) else {
        return Ok(());
    };
    use anyhow::Context as _;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading config {path}"))?;
    let table: toml::Table = text.parse().with_context(|| format!("config {path}"))?;
    for (key, value) in table {
        let name = format!("CAIRN_{}", key.replace('-', "_").to_uppercase());
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        if std::env::var_os(&name).is_none() {
            // SAFETY: single-threaded: called first thing in main.
            unsafe { std::env::set_var(&name, value) };
        }
    }
    Ok(())
}

/// The default output folder for a job: `out/<job name>`.
fn default_out_dir(job_name: &str) -> PathBuf {
    PathBuf::from("out").join(job_name)
}

/// The folder, under a job's output folder, that holds each task's stdout
/// and stderr. Job files may not name outputs `cairn-…`, so it never
/// collides with a task's own files.
const LOGS_DIR: &str = "cairn-logs";

/// Where a task's stdout or stderr (`stream`) is saved, relative to its job's
/// output folder.
fn stream_path(task_index: u32, stream: &str) -> String {
    format!("{LOGS_DIR}/task-{task_index}.{stream}")
}
