//! cairn: The command line of the Cairn computing-power network.
//!
//! A thin shell over the library crates: `cairn run` loads a job file
//! (`cairn-job`) and runs its tasks (`cairn-exec`); `cairn bench` measures the
//! runtimes against native code and the ledger state machine (`cairn-ledger`);
//! `cairn node` runs a ledger validator (`cairn-node`), `cairn devnet` several,
//! and `cairn wallet` talks to one.

mod bench;
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
    #[command(subcommand)]
    command: Command,
}

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
    /// Run a node: a validator of the ledger chain with its HTTP API.
    Node(node::NodeArgs),
    /// Start a local network of validators, each a `cairn node` process.
    Devnet(node::DevnetArgs),
    /// Balances, transfers and stake on the ledger.
    Wallet(wallet::WalletArgs),
}

/// Exit status for a run whose tasks did not all succeed.
const EXIT_TASKS_FAILED: u8 = 1;
/// Exit status for bad input (a job file, an argument) where nothing ran.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
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

/// The default output folder for a job: `out/<job name>`.
fn default_out_dir(job_name: &str) -> PathBuf {
    PathBuf::from("out").join(job_name)
}
