//! Tool requests: how a job names an installed tool it needs, and how a
//! provider's offer names one it has. Orders and offers carry them as
//! runtime names beside `wasm`, so the market matches them by [`serves`].

/// Bytes of a tool request (`name@version`) at most: it travels as a
/// runtime name.
pub const REQUEST_BYTES_MAX: usize = 32;

/// What a job asks for: a tool by name, and a version it must start with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolRequest {
    /// The tool's name.
    pub name: String,
    /// A version prefix, whole numbers (`5.1` matches `5.1.9`, not
    /// `5.10`); empty for any version.
    pub version: String,
}

impl ToolRequest {
    /// Parses `name` or `name@version`, as a job writes it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > REQUEST_BYTES_MAX {
            return Err(format!(
                "a tool request is at most {REQUEST_BYTES_MAX} bytes, this one is {}",
                text.len()
            ));
        }
        let (name, version) = text.split_once('@').unwrap_or((text, ""));
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        // `wasm` names the other runtime: a tool of that name would make
        // a tool job pass for a Wasm one in the market.
        if !name_ok || name == "wasm" {
            return Err(format!(
                "'{text}' is not a tool request: expected a name of lowercase letters, digits and '-', then optionally '@' and a version (ffmpeg@5.1)"
            ));
        }
        // `name@` says a version is wanted and names none.
        let version_ok = (version.is_empty() && !text.contains('@'))
            || version
                .split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if !version_ok {
            return Err(format!(
                "'{version}' is not a version: expected numbers separated by dots (5.1)"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }

    /// Whether a tool `name` at `version` serves this request.
    pub fn matches(&self, name: &str, version: &str) -> bool {
        name == self.name
            && (self.version.is_empty()
                || version == self.version
                || version
                    .strip_prefix(&self.version)
                    .is_some_and(|rest| rest.starts_with('.')))
    }
}

impl std::fmt::Display for ToolRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.version.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}@{}", self.name, self.version)
        }
    }
}

/// Whether an offered runtime (`wasm`, or a tool at its exact version such
/// as `ffmpeg@5.1.9`) serves the runtime an order asks for (`wasm`, or a
/// tool request such as `ffmpeg@5.1`).
pub fn serves(offered: &str, asked: &str) -> bool {
    if offered == asked {
        return true;
    }
    match (ToolRequest::parse(offered), ToolRequest::parse(asked)) {
        (Ok(have), Ok(want)) => want.matches(&have.name, &have.version),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_match_whole_version_numbers() {
        let request = ToolRequest::parse("ffmpeg@5.1").unwrap();
        assert!(request.matches("ffmpeg", "5.1"));
        assert!(request.matches("ffmpeg", "5.1.9"));
        assert!(!request.matches("ffmpeg", "5.10"));
        assert!(!request.matches("ffmpeg", "5"));
        assert!(!request.matches("blender", "5.1"));
        assert!(
            ToolRequest::parse("ffmpeg")
                .unwrap()
                .matches("ffmpeg", "6.0")
        );
        assert_eq!(request.to_string(), "ffmpeg@5.1");
        for bad in [
            "",
            "FFmpeg",
            "ffmpeg@",
            "ffmpeg@5.x",
            "ffmpeg@5..1",
            "../sh",
            "a b",
            "wasm",
        ] {
            assert!(ToolRequest::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(ToolRequest::parse(&"a".repeat(REQUEST_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn an_offer_serves_the_runtimes_it_names_and_tool_versions_it_has() {
        assert!(serves("wasm", "wasm"));
        assert!(serves("ffmpeg@5.1.9", "ffmpeg@5.1"));
        assert!(serves("ffmpeg@5.1.9", "ffmpeg"));
        assert!(!serves("ffmpeg@5.1.9", "ffmpeg@6"));
        assert!(!serves("ffmpeg@5.1.9", "wasm"));
        assert!(!serves("wasm", "wasm@1"));
        // An offer must name its version: "ffmpeg" promises none.
        assert!(!serves("ffmpeg", "ffmpeg@5.1"));
    }
}
