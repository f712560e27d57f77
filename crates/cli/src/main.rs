//! cairn: The command line of the Cairn computing-power network.
//!
//! A thin shell over the library crates: `cairn run` loads a job file
//! (`cairn-job`) and runs its tasks (`cairn-exec`); `cairn bench` measures the
//! runtimes against native code and the ledger state machine (`cairn-ledger`);
//! `cairn node` runs a ledger validator (`cairn-node`), `cairn devnet` several,
//! and `cairn wallet` talks to one.

mod bench;
mod checkpoint;
mod devnet;
mod init;
mod job;
mod market;
mod node;
mod poll;
mod run;
mod search;
mod stream;
mod tiles;
mod video;
mod wallet;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// Cairn: run compute jobs on a decentralized network of providers.
#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about,
    propagate_version = true,
    after_help = "Exit status: 0 when everything asked for succeeded; 1 when a run or a watched \
                  job ended with tasks that failed; 2 when nothing could be done (bad input, \
                  such as a job file or an argument, or a node that cannot be reached); clap's \
                  own 2 for a command line it cannot parse."
)]
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
    /// Semantic search over the embeddings a `cairn:embed` job wrote: the
    /// corpus lines closest in meaning to a query.
    Search(search::SearchArgs),
    /// Check a `cairn:train` run's outputs against each other (the weights
    /// against the last commitment, the loss curve against the
    /// commitments), and sample text from its model.
    Checkpoint(checkpoint::CheckpointArgs),
    /// Run a node: a ledger validator and a market peer (requester, and
    /// provider with --provide), with its HTTP API.
    Node(node::NodeArgs),
    /// Start a local network (validators and providers, each a `cairn node`
    /// process) and optionally run a job through it.
    Devnet(devnet::DevnetArgs),
    /// Set up a node's data folder: its key, API token and a commented
    /// config file, readable by their owner only.
    #[command(after_help = "Examples:\n  cairn init\n  cairn init --provide --data-dir ~/.cairn")]
    Init(init::InitArgs),
    /// Submit jobs to a node and follow them.
    Job(job::JobArgs),
    /// The providers that bid for a node's work, and the prices its
    /// auctions cleared at.
    Market(market::Args),
    /// Balances, transfers and stake on the ledger.
    Wallet(wallet::WalletArgs),
    /// Print a completion script for a shell.
    #[command(after_help = "Install one:\n  \
        cairn completions bash > ~/.local/share/bash-completion/completions/cairn\n  \
        cairn completions zsh > \"${fpath[1]}/_cairn\"\n  \
        cairn completions fish > ~/.config/fish/completions/cairn.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Exit status for a run whose tasks did not all succeed.
const EXIT_TASKS_FAILED: u8 = 1;
/// Exit status for bad input (a job file, an argument) where nothing ran.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = match config_file(&args).and_then(|config| with_config(Cli::command(), config)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("cairn: {error:#}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let matches = command.get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
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
        Command::Devnet(args) => devnet::devnet(args),
        Command::Search(args) => search::search(args),
        Command::Checkpoint(args) => checkpoint::checkpoint(args),
        Command::Init(args) => init::init(args),
        Command::Job(args) => job::job(args),
        Command::Market(args) => market::market(args),
        Command::Wallet(args) => wallet::wallet(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
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

/// The settings of `--config FILE` (or `CAIRN_CONFIG`), if either names a
/// file: a TOML table of settings named like the flags
/// (`listen = ["/ip4/0.0.0.0/tcp/8642"]`, `provide = true`).
fn config_file(args: &[std::ffi::OsString]) -> anyhow::Result<Option<(String, toml::Table)>> {
    use anyhow::Context as _;
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let from_flag = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1).map(|path| path.to_string()))
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        });
    let Some(path) = from_flag.or_else(|| std::env::var("CAIRN_CONFIG").ok()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading config {path}"))?;
    let table = text.parse().with_context(|| format!("config {path}"))?;
    Ok(Some((path, table)))
}

/// `command` with each setting of a config file as the default of the flag
/// it names, in every subcommand that has that flag: a flag given, then its
/// `CAIRN_*` variable, override it. A setting no flag has is an error, not
/// silently ignored.
fn with_config(
    mut command: clap::Command,
    config: Option<(String, toml::Table)>,
) -> anyhow::Result<clap::Command> {
    let Some((path, table)) = config else {
        return Ok(command);
    };
    for (key, value) in table {
        let long = key.replace('_', "-");
        let values: Vec<String> = match value {
            toml::Value::String(s) => vec![s],
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect(),
            other => vec![other.to_string()],
        };
        let names: Vec<String> = command
            .get_subcommands()
            .filter(|sub| sub.get_arguments().any(|a| a.get_long() == Some(&long)))
            .map(|sub| sub.get_name().to_string())
            .collect();
        if names.is_empty() {
            anyhow::bail!("config {path}: no flag --{long} for the setting '{key}'");
        }
        for name in names {
            command = command.mut_subcommand(name, |sub| {
                let id = sub
                    .get_arguments()
                    .find(|a| a.get_long() == Some(&long))
                    .map(|a| a.get_id().clone())
                    .expect("found above");
                sub.mut_arg(id, |arg| arg.default_values(values.clone()))
            });
        }
    }
    Ok(command)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node_matches(config: &str, args: &[&str]) -> anyhow::Result<clap::ArgMatches> {
        let table = config.parse()?;
        let command = with_config(Cli::command(), Some(("test.toml".into(), table)))?;
        let mut argv = vec!["cairn", "node"];
        argv.extend(args);
        let matches = command.try_get_matches_from(argv)?;
        Ok(matches.subcommand_matches("node").unwrap().clone())
    }

    /// A config file's settings are the flags' defaults: a flag given
    /// overrides one, a list and a switch are taken whole, and a setting
    /// no flag has is refused by name.
    #[test]
    fn config_settings_default_the_flags_they_name_and_unknown_ones_are_refused() {
        let config = "price = 55\nlisten = [\"/ip4/0.0.0.0/tcp/1\", \"/ip4/0.0.0.0/udp/2/quic-v1\"]\nprovide = true\n";
        let matches = node_matches(config, &[]).unwrap();
        assert_eq!(matches.get_one::<u64>("price"), Some(&55));
        let listen: Vec<&String> = matches.get_many("listen").unwrap().collect();
        assert_eq!(listen, ["/ip4/0.0.0.0/tcp/1", "/ip4/0.0.0.0/udp/2/quic-v1"]);
        assert_eq!(matches.get_one::<bool>("provide"), Some(&true));

        let matches = node_matches(config, &["--price", "60"]).unwrap();
        assert_eq!(matches.get_one::<u64>("price"), Some(&60), "a flag wins");

        let error = node_matches("pirce = 55\n", &[]).unwrap_err().to_string();
        assert!(error.contains("no flag --pirce"), "{error}");
        let error = node_matches("price = \"cheap\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("cheap"), "{error}");
    }
}
