use thiserror::Error;

/// Why a task could not be run or did not produce a result. None of these is
/// reproducible on another machine, so none is ever a task's result.
#[derive(Debug, Error)]
pub enum ExecError {
    /// A video could not be split, read or assembled (see
    /// [`crate::tool::video`]).
    #[error("{0}")]
    Media(String),
    /// The bytes are not a WebAssembly module.
    #[error("not a WebAssembly module: {0}")]
    NotWasm(String),
    /// The module is WebAssembly but does not validate or compile.
    #[error("invalid WebAssembly module: {0}")]
    InvalidModule(String),
    /// The module needs something the sandbox does not provide.
    #[error(
        "module imports `{module}::{name}`, which the host does not provide (only WASI preview 1, `wasi_snapshot_preview1`, is available)"
    )]
    UnknownImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// The module does not export a `_start` function.
    #[error("module has no `_start` function to run (build it as a WASI command)")]
    NoEntryPoint,
    /// [`crate::Runtime::run`] was called with a module that was never loaded.
    #[error("module {0} is not loaded")]
    NotLoaded(String),
    /// The wall-clock watchdog stopped the task.
    #[error("wall time exceeded: still running after {seconds} s (limits.wall_time_s)")]
    WallTimeExceeded {
        /// The limit in seconds.
        seconds: u64,
    },
    /// The tool used all the CPU time it was allowed; how much CPU time a
    /// task needs differs between machines, so this cannot be a result.
    #[error("CPU time exceeded: used {seconds} s of CPU (limits.wall_time_s times the threads)")]
    CpuTimeExceeded {
        /// The limit in seconds.
        seconds: u64,
    },
    /// The job asks for a tool this machine does not have, or the request
    /// is not one.
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    /// A tool task's processes together used more memory than the task
    /// may; how much a tool uses differs between machines (allocators,
    /// threads), so this cannot be a result.
    #[error(
        "memory exceeded: the task's processes and its /tmp together used more than {bytes} bytes (twice limits.memory_mib)"
    )]
    MemoryExceeded {
        /// The limit in bytes.
        bytes: u64,
    },
    /// A tool task tried to run more processes (threads included) at once
    /// than a task may.
    #[error(
        "processes exceeded: the task tried to run more than {limit} processes and threads at once"
    )]
    ProcessesExceeded {
        /// The limit.
        limit: u64,
    },
    /// The task needs GPUs this machine cannot give it now (none, too
    /// few free, or a tool that cannot use them).
    #[error("GPU: {0}")]
    Gpu(String),
    /// The tool sandbox could not be made, or did not start the tool.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The task ran out of native stack; how deep a stack goes differs
    /// between machines, so this cannot be a result.
    #[error("stack exhausted (call depth too large); this is not a reproducible result")]
    StackExhausted,
    /// Preparing or reading the task's folders failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The engine failed for another reason.
    #[error("runtime failure: {0}")]
    Host(String),
}

impl ExecError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
