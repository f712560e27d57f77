use std::fmt;
use std::path::{Path, PathBuf};

/// Why a job file was refused. Its `Display` reads like a compiler
/// diagnostic: `path:line:column: key: message`, then the offending line.
#[derive(Debug, thiserror::Error)]
pub struct JobError {
    /// The job file.
    pub path: PathBuf,
    /// Line and column (1-based) where the problem is, when known.
    pub location: Option<(usize, usize)>,
    /// The dotted key at fault (`limits.fuel`), empty when not about one key.
    pub key: String,
    /// What was wrong and what was expected.
    pub message: String,
    /// The text of the offending line, shown under the message.
    pub line_text: Option<String>,
}

impl JobError {
    /// An error about `key`, located at byte `span` of `source` when known.
    pub(crate) fn at(
        path: &Path,
        source: &str,
        span: Option<std::ops::Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> Self {
        let (location, line_text) = match span {
            Some(span) => {
                let (line, column, text) = locate(source, span.start);
                (Some((line, column)), Some(text.to_string()))
            }
            None => (None, None),
        };
        Self {
            path: path.to_path_buf(),
            location,
            key: key.to_string(),
            message: message.into(),
            line_text,
        }
    }

    /// An error about the file as a whole (cannot read it, for example).
    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            location: None,
            key: String::new(),
            message: message.into(),
            line_text: None,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let (Some((line, _)), Some(text)) = (self.location, &self.line_text) {
            write!(f, "\n {line:>4} | {text}")?;
        }
        Ok(())
    }
}

/// The 1-based line and column of byte `offset`, and the line's text.
fn locate(source: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    let line = source[..offset].matches('\n').count() + 1;
    let column = source[line_start..offset].chars().count() + 1;
    (
        line,
        column,
        source[line_start..line_end].trim_end_matches('\r'),
    )
}
