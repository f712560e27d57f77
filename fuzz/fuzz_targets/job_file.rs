//! Job files, which users get from others: any UTF-8 text as a job file in
//! an empty folder, so no module or input it names can exist and nothing
//! outside that folder is read.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// An empty folder that lives as long as the fuzzer; the job file itself
/// is never written, only named.
fn job_path() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("job.toml");
        (dir, path)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let path = job_path();
    if let Ok(job) = cairn_job::Job::parse(path, source, &["hashsearch", "render"]) {
        // A video job's tasks come from its clip's segments (or, for a
        // live stream, a `[video]` without an input, as it runs): none
        // before. Every other job has some.
        assert!(!job.tasks().is_empty() || job.video.is_some());
    }
});
