//! exec: Run tasks in sandboxed runtimes and return results that compare bit-for-bit.
//!
//! A [`Runtime`] loads a program once ([`Runtime::load`]) and runs any number
//! of tasks of it ([`Runtime::run`]). Each run returns a [`TaskResult`]: how
//! the task ended ([`Outcome`]), the fuel it used, its stdout and stderr, its
//! output files, and a BLAKE3 digest over a canonical [`Manifest`] of all of
//! them. Two honest machines running the same task produce the same digest
//! and the same fuel, which is what lets Cairn verify untrusted work by
//! comparing digests and price it in fuel.
//!
//! The default runtime, [`WasmRuntime`], executes WebAssembly (WASI
//! preview 1) on wasmtime configured to be deterministic: fuel metering, NaN
//! canonicalisation, no threads, deterministic relaxed SIMD, a virtual clock,
//! seeded randomness, no environment and no sockets, with only the task's
//! input folder (read-only) and output folder (read-write) visible.
//!
//! A failure is either an [`Outcome`] or an [`ExecError`]. Outcomes are
//! deterministic (fuel exhausted, memory limit, a trap, a non-zero exit):
//! every honest machine reaches the same one, so they are results that can
//! be verified and paid for. Errors are not reproducible (the wall-clock
//! watchdog fired, the native stack ran out, the host failed) and never count
//! as a result.
//!
//! [`ToolRuntime`] runs installed tools (Blender, ffmpeg) in a bubblewrap
//! sandbox: their outputs compare by digest where the tool is
//! deterministic, and their work is what the job declares (see [`tool`]).
//!
//! [`local`] runs a whole job on this machine with a bounded pool of workers.
//! [`tiles`] joins a frame rendered in tiles into the frame.
#![deny(missing_docs)]

mod error;
pub mod local;
mod manifest;
mod snapshot;
pub mod tiles;
// Everything that needs wasmtime. Without the `runtime` feature the crate
// is its types and the snapshot codec, which is what the fuzz target of
// snapshots from peers builds.
#[cfg(feature = "runtime")]
mod wasm;
// Installed tools (Blender, ffmpeg) under bubblewrap.
#[cfg(feature = "runtime")]
pub mod tool;

use std::path::Path;
use std::time::Duration;

pub use cairn_job::Limits;
use cairn_wire::ContentId;
pub use error::ExecError;
pub use manifest::{Manifest, OutputFile, ResultManifest};
pub use snapshot::{Descriptor, Snapshot, StateHash};
#[cfg(feature = "runtime")]
pub use tool::{Tool, ToolConfig, ToolRuntime};
#[cfg(feature = "runtime")]
pub use wasm::{
    ModuleCache, NanCanonicalization, Tamper, Trace, Transition, WasmConfig, WasmRuntime,
};

/// A runtime executes tasks of programs it has loaded.
pub trait Runtime: Send + Sync {
    /// Checks and prepares `module`, returning its content id. Everything
    /// that can be rejected before running (not a program, imports the host
    /// does not provide) is rejected here.
    fn load(&self, module: &[u8]) -> Result<ContentId, ExecError>;

    /// Runs one task of a loaded module.
    fn run(&self, task: &Task<'_>) -> Result<TaskResult, ExecError>;
}

/// One task to run.
#[derive(Clone, Debug)]
pub struct Task<'a> {
    /// The module, as returned by [`Runtime::load`].
    pub module: ContentId,
    /// Arguments after the program name.
    pub args: &'a [String],
    /// Seeds the task's randomness.
    pub seed: [u8; 32],
    /// Mounted read-only at `/input`, if any.
    pub input_dir: Option<&'a Path>,
    /// Mounted read-write at `/output`; must exist and be empty.
    pub output_dir: &'a Path,
    /// Paths under `/output` the task must produce.
    pub expected_outputs: &'a [String],
    /// What the task may consume.
    pub limits: Limits,
}

/// How a task ended. Every variant is deterministic: the same task ends the
/// same way on every honest machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The program exited with this status (0 is success).
    Exited(i32),
    /// The program used all its fuel.
    FuelExhausted {
        /// The fuel limit that was reached.
        limit: u64,
    },
    /// The program tried to grow its memory or tables past the limit.
    MemoryLimit {
        /// The limit in bytes (or table elements).
        limit: u64,
        /// What it asked for.
        requested: u64,
    },
    /// The program tried to write more than its output limit.
    OutputLimit {
        /// Which stream: `output`, `stdout` or `stderr`.
        stream: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
    /// The program created more files and folders than allowed.
    EntriesLimit {
        /// The limit.
        limit: u64,
    },
    /// The program trapped (for example `unreachable`, as a Rust panic does).
    Trap(String),
    /// The program exited successfully but did not produce a required output.
    MissingOutput(String),
    /// The output folder holds something that is not a regular file or folder.
    InvalidOutput(String),
}

impl Outcome {
    /// Whether the task succeeded.
    pub fn is_success(&self) -> bool {
        *self == Outcome::Exited(0)
    }

    /// A stable numeric code for the manifest: which kind of ending.
    pub fn code(&self) -> u8 {
        match self {
            Outcome::Exited(_) => 0,
            Outcome::FuelExhausted { .. } => 1,
            Outcome::MemoryLimit { .. } => 2,
            Outcome::OutputLimit { .. } => 3,
            Outcome::EntriesLimit { .. } => 4,
            Outcome::Trap(_) => 5,
            Outcome::MissingOutput(_) => 6,
            Outcome::InvalidOutput(_) => 7,
        }
    }
}

impl Outcome {
    /// The exit status for an exit, 0 for any other ending.
    pub fn exit_status(&self) -> i32 {
        match self {
            Outcome::Exited(code) => *code,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Exited(0) => write!(f, "exited successfully"),
            Outcome::Exited(code) => write!(f, "exited with status {code}"),
            Outcome::FuelExhausted { limit } => {
                write!(f, "fuel exhausted: used all {limit} fuel (limits.fuel)")
            }
            Outcome::MemoryLimit { limit, requested } => write!(
                f,
                "memory limit exceeded: asked for {requested} bytes, the limit is {limit} (limits.memory_mib)"
            ),
            Outcome::OutputLimit { stream, limit } => {
                let key = if *stream == "output" {
                    "limits.output_mib"
                } else {
                    "limits.stdout_kib"
                };
                write!(
                    f,
                    "{stream} limit exceeded: tried to write more than {limit} bytes ({key})"
                )
            }
            Outcome::EntriesLimit { limit } => {
                write!(f, "created more than {limit} files and folders in /output")
            }
            Outcome::Trap(message) => write!(f, "trapped: {message}"),
            Outcome::MissingOutput(path) => {
                write!(f, "did not produce the required output '/output/{path}'")
            }
            Outcome::InvalidOutput(reason) => write!(f, "invalid output: {reason}"),
        }
    }
}

/// What a task produced.
#[derive(Clone, Debug)]
pub struct TaskResult {
    /// How it ended.
    pub outcome: Outcome,
    /// Fuel consumed (equal to the limit when fuel ran out).
    pub fuel_used: u64,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Files written under `/output`, sorted by path.
    pub outputs: Vec<OutputFile>,
    /// BLAKE3 of the canonical [`Manifest`]: equal digests mean equal results.
    pub digest: ContentId,
    /// How long it took here (informational; never part of the digest).
    pub wall_time: Duration,
    /// The CPU time an installed tool used here, all its processes
    /// together (never part of the digest): what a provider weighs the
    /// work a task declares against. `None` for Wasm, whose fuel is its
    /// measured work, and where the task had no control group to count it.
    pub cpu_time: Option<Duration>,
}
