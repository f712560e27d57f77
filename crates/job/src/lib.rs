//! job: Parse, validate and expand Cairn job files into tasks.
//!
//! A job file (TOML) says what to run (`[job]`: runtime, module, arguments),
//! how the job splits into tasks (`[tasks]`: a range or a list of values,
//! substituted into the arguments, and a renderer's frames perhaps split
//! into tiles), which files every task reads
//! (`[inputs]`) and must write (`[outputs]`), the limits each task runs under
//! (`[limits]`), what the requester will pay (`[market]`) and how results are
//! checked (`[verify]`).
//!
//! Loading is all-or-nothing: [`Job::load`] either returns a job whose every
//! field is in range and whose every file exists, or an error that names the
//! file, the line, the key and what was expected. Nothing is run or spent on
//! a job that did not load.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("job.toml");
//! std::fs::write(&path, r#"
//! [job]
//! module = "cairn:hashsearch"
//! args = ["--nonce-start", "{task}"]
//! [tasks]
//! range = [0, 4]
//! "#).unwrap();
//! let job = cairn_job::Job::load(&path, &["hashsearch"]).unwrap();
//! assert_eq!(job.tasks().len(), 4);
//! assert_eq!(job.tasks()[3].args, ["--nonce-start", "3"]);
//! ```
#![deny(missing_docs)]

mod error;
mod path;
mod raw;
pub mod rules;
mod spec;
mod template;
pub mod tiles;
pub mod video;

pub use error::JobError;
pub use path::{
    JOB_NAME_BYTES_MAX, OUTPUT_PATH_BYTES_MAX, check_input_name, check_job_name, check_output_path,
    input_name_path, input_path, output_path,
};
pub use spec::{
    BUILTIN_PREFIX, InputFile, Job, Limits, Market, ModuleRef, Runtime, TOOL_POLICY_REASON,
    TaskSpec, VerifyPolicy, WASM_GPU_REASON, parse_frames,
};
pub use video::{Picture, Rendition, Segment, Video};
