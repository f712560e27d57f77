//! The one path rule: every path or name that comes from outside the
//! process (a job file, a peer's report, a dispute snapshot, the API) is
//! checked here before it is joined to a host folder. Nothing else in the
//! tree joins an outside string to a host path.

use std::path::{Component, Path, PathBuf};

/// Output paths may not start with this: Cairn writes its own files
/// (summaries, each task's stdout and stderr) beside a job's outputs.
const RESERVED_OUTPUT_PREFIX: &str = "cairn-";
/// The longest output path.
pub const OUTPUT_PATH_BYTES_MAX: usize = 1024;
/// The longest job name (it names a folder).
pub const JOB_NAME_BYTES_MAX: usize = 128;

/// Accepts a path that stays inside the folder it is relative to.
/// The rule for a path under a task's `/output` (and so under the folder
/// its outputs are saved to), wherever it comes from: a job file, a
/// provider's report passed on by a node, or a dispute snapshot.
/// `/`-separated, relative, no empty, `.` or `..` part, no NUL, at most
/// [`OUTPUT_PATH_BYTES_MAX`] bytes, and not starting with `cairn-`, which
/// names Cairn's own files beside the outputs (`cairn-summary.json`,
/// `cairn-results.json`, `cairn-logs/`).
pub fn check_output_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("expected a relative path, found an empty string".into());
    }
    if path.len() > OUTPUT_PATH_BYTES_MAX {
        return Err(format!(
            "a path of {} bytes is longer than {OUTPUT_PATH_BYTES_MAX}",
            path.len()
        ));
    }
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(format!(
            "'{path}' is absolute; expected a path relative to /output"
        ));
    }
    for part in path.split('/') {
        match part {
            ".." => return Err(format!("'{path}' leaves the output folder ('..')")),
            "" | "." => {
                return Err(format!(
                    "'{path}' has an empty or '.' part; write it as a plain relative path"
                ));
            }
            _ => {}
        }
    }
    if path.starts_with(RESERVED_OUTPUT_PREFIX) {
        return Err(format!(
            "'{path}' starts with '{RESERVED_OUTPUT_PREFIX}', which is reserved for Cairn's own \
             files beside the outputs (cairn-summary.json, cairn-results.json, cairn-logs/)"
        ));
    }
    Ok(())
}

/// `base` joined with an output path from outside, after
/// [`check_output_path`]: the only way such a path reaches the disk.
pub fn output_path(base: &Path, path: &str) -> Result<PathBuf, String> {
    check_output_path(path)?;
    Ok(base.join(path))
}

/// Accepts an input's name, which a task sees as `/input/<name>` and a
/// provider writes under its input folder: one component (no `/`), and
/// otherwise [`check_output_path`]'s rule, except that `cairn-` is allowed.
pub fn check_input_name(name: &str) -> Result<(), String> {
    if name.contains('/') {
        return Err(format!(
            "input name '{name}' has a '/'; inputs are plain file names"
        ));
    }
    // Prefixed so the reserved-name part of the output rule never applies.
    check_output_path(&format!("x{name}")).and_then(|()| match name {
        "" | "." | ".." => Err(format!("{name:?} is not a file name")),
        _ => Ok(()),
    })
}

/// `base` joined with an input name from outside, after
/// [`check_input_name`].
pub fn input_name_path(base: &Path, name: &str) -> Result<PathBuf, String> {
    check_input_name(name)?;
    Ok(base.join(name))
}

/// Accepts a job name, which names the folder its results are saved to
/// (`out/<name>`): one non-empty path component of at most
/// [`JOB_NAME_BYTES_MAX`] bytes, no `/`, `\`, NUL or control characters,
/// and not starting with `.` (so never `.`, `..` or a hidden folder).
pub fn check_job_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a job name may not be empty".into());
    }
    if name.len() > JOB_NAME_BYTES_MAX {
        return Err(format!(
            "a job name of {} bytes is longer than {JOB_NAME_BYTES_MAX}",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return Err(format!("job name {name:?} may not start with '.'"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\') || c.is_control())
    {
        return Err(format!(
            "job name {name:?} contains {bad:?}; a name is one folder name"
        ));
    }
    Ok(())
}

/// `path` (relative to `folder`, or absolute) resolved through every link,
/// if it lies inside `folder` or one of `allowed`; otherwise an error that
/// names the file and how to allow it. Symbolic links are followed before
/// the check, so a link inside the folder cannot point a job at a file
/// outside it.
pub fn input_path(folder: &Path, path: &str, allowed: &[PathBuf]) -> Result<PathBuf, String> {
    if path.is_empty() || path.contains('\0') {
        return Err(format!("{path:?} is not a file path"));
    }
    let joined = folder.join(path);
    let resolved = joined
        .canonicalize()
        .map_err(|e| format!("cannot read '{}': {e}", joined.display()))?;
    let inside = |root: &Path| {
        root.canonicalize()
            .is_ok_and(|root| resolved.starts_with(root))
    };
    if inside(folder) || allowed.iter().any(|root| inside(root)) {
        return Ok(resolved);
    }
    let outside = Path::new(path).is_absolute()
        || Path::new(path)
            .components()
            .any(|c| matches!(c, Component::ParentDir));
    let why = if outside {
        "is outside the job's folder"
    } else {
        "leads (through a link) outside the job's folder"
    };
    Err(format!(
        "'{path}' {why} ({}): a job file may only send files from its own folder; \
         to send it anyway, allow its folder with --allow-inputs-from {}",
        resolved.display(),
        resolved
            .parent()
            .map_or_else(|| "/".into(), |p| p.display().to_string())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape of escape a `path_escaper` tries, refused by the rule.
    #[test]
    fn path_escaper_is_refused_by_the_output_rule() {
        let long = "a/".repeat(OUTPUT_PATH_BYTES_MAX / 2) + "b";
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a/",
            "a\0b",
            long.as_str(),
            "cairn-results.json",
            "cairn-logs/task-0.stdout",
            "cairn-summary.json",
        ] {
            assert!(check_output_path(bad).is_err(), "{bad:?} was accepted");
            assert!(output_path(Path::new("/base"), bad).is_err());
        }
        for good in [
            "frame.png",
            "a/b/c.txt",
            "..a",
            "a..",
            ".hidden",
            "x/cairn-y",
        ] {
            assert_eq!(
                output_path(Path::new("/base"), good).unwrap(),
                Path::new("/base").join(good)
            );
        }
    }

    #[test]
    fn input_names_are_one_file_name() {
        for bad in ["", ".", "..", "a/b", "/etc", "../x", "a\0"] {
            assert!(check_input_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_input_name(&"n".repeat(OUTPUT_PATH_BYTES_MAX)).is_err());
        for good in ["scene.json", "cairn-weights.bin", "..a", ".hidden"] {
            check_input_name(good).unwrap();
        }
    }

    #[test]
    fn job_names_are_one_folder_name() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a\0", "a\nb",
        ] {
            assert!(check_job_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_job_name(&"n".repeat(JOB_NAME_BYTES_MAX + 1)).is_err());
        for good in ["render", "my job", "frames-1..24", "é"] {
            check_job_name(good).unwrap();
        }
    }

    #[test]
    fn inputs_stay_in_the_job_folder_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job");
        let other = dir.path().join("other");
        std::fs::create_dir_all(job.join("data")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(job.join("data/in.txt"), "in").unwrap();
        std::fs::write(other.join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(other.join("secret"), job.join("link")).unwrap();

        assert!(input_path(&job, "data/in.txt", &[]).is_ok());
        assert!(input_path(&job, "data/../data/in.txt", &[]).is_ok());
        let absolute = other.join("secret").display().to_string();
        for escape in ["../other/secret", absolute.as_str(), "link", "/etc/passwd"] {
            let err = input_path(&job, escape, &[]).unwrap_err();
            assert!(err.contains("--allow-inputs-from"), "{escape}: {err}");
        }
        let allowed = [other.clone()];
        assert!(input_path(&job, "../other/secret", &allowed).is_ok());
        assert!(input_path(&job, "link", &allowed).is_ok());
        assert!(input_path(&job, "/etc/passwd", &allowed).is_err());
    }
}
