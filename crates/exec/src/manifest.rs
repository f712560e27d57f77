use std::path::Path;

use cairn_wire::ContentId;
use cairn_wire::codec::Encode;
pub use cairn_wire::{OutputFile, ResultManifest};

use crate::{ExecError, Outcome};

/// Everything deterministic about a task's result, in canonical form. Its
/// digest is what verifiers compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// How the task ended.
    pub outcome: Outcome,
    /// Fuel consumed.
    pub fuel_used: u64,
    /// BLAKE3 of stdout.
    pub stdout: ContentId,
    /// BLAKE3 of stderr.
    pub stderr: ContentId,
    /// Output files sorted by path.
    pub outputs: Vec<OutputFile>,
}

impl Manifest {
    /// The manifest as every party states it, the outcome as its code,
    /// exit status and text.
    pub fn stated(&self) -> ResultManifest {
        ResultManifest {
            code: self.outcome.code(),
            exit: self.outcome.exit_status(),
            text: self.outcome.to_string(),
            fuel_used: self.fuel_used,
            stdout: self.stdout,
            stderr: self.stderr,
            outputs: self.outputs.clone(),
        }
    }

    /// The canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.stated().encode().to_vec()
    }

    /// BLAKE3 of the canonical bytes.
    pub fn digest(&self) -> ContentId {
        self.stated().digest()
    }
}

/// The files a finished task left in its output folder, and how it ended
/// once they are checked: a folder that breaks the rules, or a required
/// output missing, turns a success into that failure.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub(crate) fn outputs_of(
    task: &crate::Task<'_>,
    mut outcome: Outcome,
) -> Result<(Outcome, Vec<OutputFile>), ExecError> {
    let outputs = match collect_outputs(task.output_dir, task.limits.output_bytes)? {
        Ok(outputs) => outputs,
        Err(broken) => {
            if outcome.is_success() {
                outcome = broken;
            }
            Vec::new()
        }
    };
    if outcome.is_success()
        && let Some(missing) = task
            .expected_outputs
            .iter()
            .find(|path| !outputs.iter().any(|o| &o.path == *path))
    {
        outcome = Outcome::MissingOutput(missing.clone());
    }
    Ok((outcome, outputs))
}

/// The most files and folders one task may create. Fuel alone does not bound
/// this: creating a file costs one call, whatever the host pays for it. The
/// Wasm host counts each creation; a tool's folder is counted when it ends.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub(crate) const ENTRIES_MAX: u64 = 10_000;

/// Lists and hashes the files under `dir`. Returns an [`Outcome`] instead
/// when the folder breaks the rules: more than `bytes_max` in total, more
/// than [`ENTRIES_MAX`] files and folders, or an entry that is neither a
/// regular file nor a folder.
// Only the runtime collects outputs; the crate without it still builds.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub(crate) fn collect_outputs(
    dir: &Path,
    bytes_max: u64,
) -> Result<Result<Vec<OutputFile>, Outcome>, ExecError> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    let mut total: u64 = 0;
    let mut count: u64 = 0;
    // Sizes are checked before anything is read, so a sparse file claiming
    // terabytes costs a stat, not a read.
    while let Some((folder, prefix)) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(ExecError::io(format!("listing {}", folder.display())))?;
        for entry in entries {
            let entry = entry.map_err(ExecError::io(format!("listing {}", folder.display())))?;
            count += 1;
            if count > ENTRIES_MAX {
                return Ok(Err(Outcome::EntriesLimit { limit: ENTRIES_MAX }));
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Ok(Err(Outcome::InvalidOutput(
                    "an output name is not valid UTF-8".into(),
                )));
            };
            let path = format!("{prefix}{name}");
            let kind = entry
                .file_type()
                .map_err(ExecError::io(format!("inspecting {path}")))?;
            if kind.is_dir() {
                pending.push((entry.path(), format!("{path}/")));
            } else if kind.is_file() {
                // A result names its files to the requester, which saves
                // them under these names: a name the one path rule refuses
                // (too long, or a `cairn-` name at the top) is a bad result
                // here, not a surprise there.
                if let Err(reason) = cairn_job::check_output_path(&path) {
                    return Ok(Err(Outcome::InvalidOutput(reason)));
                }
                let size = entry
                    .metadata()
                    .map_err(ExecError::io(format!("inspecting {path}")))?
                    .len();
                total = total.saturating_add(size);
                if total > bytes_max {
                    return Ok(Err(Outcome::OutputLimit {
                        stream: "output",
                        limit: bytes_max,
                    }));
                }
                files.push((path, entry.path(), size));
            } else {
                return Ok(Err(Outcome::InvalidOutput(format!(
                    "'{path}' is not a regular file (links and devices are not outputs)"
                ))));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut outputs = Vec::with_capacity(files.len());
    for (path, host_path, size_bytes) in files {
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_mmap(&host_path)
            .map_err(ExecError::io(format!("hashing {path}")))?;
        outputs.push(OutputFile {
            path,
            size_bytes,
            id: hasher.finalize().into(),
        });
    }
    Ok(Ok(outputs))
}

#[cfg(test)]
mod tests {
    use cairn_wire::codec::EncodeSize;

    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            outcome: Outcome::Exited(0),
            fuel_used: 10,
            stdout: ContentId::of(b"hi"),
            stderr: ContentId::of(b""),
            outputs: vec![OutputFile {
                path: "a.png".into(),
                size_bytes: 3,
                id: ContentId::of(b"abc"),
            }],
        }
    }

    #[test]
    fn the_stated_bytes_are_the_manifest_bytes() {
        let m = manifest();
        let stated = m.stated();
        assert_eq!(stated.encode_size(), m.to_bytes().len());
        assert_eq!(stated.digest(), ContentId::of(&m.to_bytes()));
    }

    /// What a requester rebuilds from a report is the provider's digest,
    /// whatever order the outputs are listed in; an `output_substituter`'s
    /// other file or a `fuel_inflater`'s extra fuel is another digest.
    #[test]
    fn a_stated_manifest_has_the_result_digest_and_binds_every_field() {
        let mut m = manifest();
        m.outputs.push(OutputFile {
            path: "b.png".into(),
            size_bytes: 1,
            id: ContentId::of(b"b"),
        });
        assert_eq!(m.stated().digest(), m.digest());
        let mut reversed = m.stated();
        reversed.outputs.reverse();
        assert_eq!(reversed.digest(), m.digest());
        let mut substituted = m.stated();
        substituted.outputs[0].id = ContentId::of(b"other");
        assert_ne!(substituted.digest(), m.digest());
        let mut inflated = m.stated();
        inflated.fuel_used += 1;
        assert_ne!(inflated.digest(), m.digest());
        let mut failed = m.stated();
        failed.exit = 1;
        assert_ne!(failed.digest(), m.digest());
    }

    #[test]
    fn every_field_changes_the_digest() {
        let base = manifest().digest();
        let mut m = manifest();
        m.fuel_used += 1;
        assert_ne!(m.digest(), base);
        let mut m = manifest();
        m.outcome = Outcome::Exited(1);
        assert_ne!(m.digest(), base);
        let mut m = manifest();
        m.outputs[0].path = "b.png".into();
        assert_ne!(m.digest(), base);
        let mut m = manifest();
        m.stdout = ContentId::of(b"ho");
        assert_ne!(m.digest(), base);
    }

    #[test]
    fn outputs_are_sorted_and_nested_paths_use_slashes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("z.txt"), "z").unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("b.txt"), "bb").unwrap();
        let files = collect_outputs(dir.path(), 100).unwrap().unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["b.txt", "sub/a.txt", "z.txt"]);
        assert_eq!(files[0].id, ContentId::of(b"bb"));
    }

    #[test]
    fn oversized_and_odd_outputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![0u8; 101]).unwrap();
        assert!(matches!(
            collect_outputs(dir.path(), 100).unwrap(),
            Err(Outcome::OutputLimit { limit: 100, .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert!(matches!(
            collect_outputs(dir.path(), 100).unwrap(),
            Err(Outcome::InvalidOutput(_))
        ));
    }

    /// A tool that floods its output folder with empty files: counted when
    /// it ends, as many as the Wasm host allows and not one more.
    #[test]
    fn an_output_folder_of_too_many_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("many");
        std::fs::create_dir(&sub).unwrap();
        // The folder itself is one entry.
        for i in 0..ENTRIES_MAX - 1 {
            std::fs::write(sub.join(i.to_string()), b"").unwrap();
        }
        assert!(collect_outputs(dir.path(), 100).unwrap().is_ok());
        std::fs::write(sub.join("one-more"), b"").unwrap();
        assert_eq!(
            collect_outputs(dir.path(), 100).unwrap(),
            Err(Outcome::EntriesLimit { limit: ENTRIES_MAX })
        );
    }

    /// A guest that writes a file the requester would save over its own
    /// `cairn-results.json`: a bad result, named as such.
    #[test]
    fn reserved_output_names_are_a_bad_result() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cairn-results.json"), "{}").unwrap();
        let Err(Outcome::InvalidOutput(reason)) = collect_outputs(dir.path(), 100).unwrap() else {
            panic!("a reserved name was accepted");
        };
        assert!(reason.contains("reserved"), "{reason}");
    }
}
