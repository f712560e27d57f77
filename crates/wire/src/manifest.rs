//! A task's result as every party hashes it: the manifest whose digest a
//! provider signs in its receipt, a requester rebuilds from a report, and
//! the ledger reads as proof when a receipt contradicts it.

use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};

use crate::{ContentId, text};

/// Version of the manifest encoding; part of every digest, so a change of
/// format can never be mistaken for a different result.
pub const MANIFEST_VERSION: u8 = 1;

/// The longest path or outcome text a manifest holds when read.
pub const MANIFEST_TEXT_BYTES_MAX: usize = 4_096;

/// One file a task wrote under `/output`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    /// Path relative to `/output`, with `/` separators.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// BLAKE3 of its contents.
    pub id: ContentId,
}

/// Everything deterministic about a task's result: how it ended (as the
/// outcome's code, exit status and text), the fuel it used, its streams'
/// digests and its output files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultManifest {
    /// The outcome's code.
    pub code: u8,
    /// The outcome's exit status.
    pub exit: i32,
    /// The outcome's text.
    pub text: String,
    /// Fuel consumed.
    pub fuel_used: u64,
    /// BLAKE3 of stdout.
    pub stdout: ContentId,
    /// BLAKE3 of stderr.
    pub stderr: ContentId,
    /// Output files, in any order (sorted by path when hashed).
    pub outputs: Vec<OutputFile>,
}

impl ResultManifest {
    /// The result's digest: BLAKE3 of the canonical bytes, outputs sorted
    /// by path.
    pub fn digest(&self) -> ContentId {
        let mut buf = Vec::with_capacity(self.encode_size());
        if self.outputs.is_sorted_by(|a, b| a.path <= b.path) {
            self.write(&mut buf);
        } else {
            let mut sorted = self.clone();
            sorted.outputs.sort_by(|a, b| a.path.cmp(&b.path));
            sorted.write(&mut buf);
        }
        ContentId::of(&buf)
    }
}

impl Write for ResultManifest {
    fn write(&self, buf: &mut impl BufMut) {
        MANIFEST_VERSION.write(buf);
        self.code.write(buf);
        self.exit.write(buf);
        text::write(&self.text, buf);
        self.fuel_used.write(buf);
        self.stdout.write(buf);
        self.stderr.write(buf);
        (self.outputs.len() as u32).write(buf);
        for file in &self.outputs {
            text::write(&file.path, buf);
            file.size_bytes.write(buf);
            file.id.write(buf);
        }
    }
}

impl EncodeSize for ResultManifest {
    fn encode_size(&self) -> usize {
        let files: usize = self
            .outputs
            .iter()
            .map(|f| text::encode_size(&f.path) + 8 + 32)
            .sum();
        1 + 1 + 4 + text::encode_size(&self.text) + 8 + 32 + 32 + 4 + files
    }
}

impl Read for ResultManifest {
    /// The most output files.
    type Cfg = usize;

    fn read_cfg(buf: &mut impl Buf, outputs_max: &usize) -> Result<Self, CodecError> {
        if u8::read(buf)? != MANIFEST_VERSION {
            return Err(CodecError::Invalid("ResultManifest", "unknown version"));
        }
        let code = u8::read(buf)?;
        let exit = i32::read(buf)?;
        let outcome = text::read(buf, MANIFEST_TEXT_BYTES_MAX)?;
        let fuel_used = u64::read(buf)?;
        let stdout = ContentId::read(buf)?;
        let stderr = ContentId::read(buf)?;
        let count = u32::read(buf)? as usize;
        if count > *outputs_max {
            return Err(CodecError::InvalidLength(count));
        }
        let mut outputs = Vec::with_capacity(count);
        for _ in 0..count {
            outputs.push(OutputFile {
                path: text::read(buf, MANIFEST_TEXT_BYTES_MAX)?,
                size_bytes: u64::read(buf)?,
                id: ContentId::read(buf)?,
            });
        }
        Ok(Self {
            code,
            exit,
            text: outcome,
            fuel_used,
            stdout,
            stderr,
            outputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use commonware_codec::{Copying, Decode, Encode};

    use super::*;

    fn manifest() -> ResultManifest {
        let file = |path: &str| OutputFile {
            path: path.into(),
            size_bytes: 3,
            id: ContentId::of(path.as_bytes()),
        };
        ResultManifest {
            code: 0,
            exit: 0,
            text: "exited with status 0".into(),
            fuel_used: 1_234,
            stdout: ContentId::of(b"out"),
            stderr: ContentId::of(b""),
            outputs: vec![file("b.png"), file("a.png")],
        }
    }

    /// The digest does not depend on the order outputs are listed in, and
    /// a manifest reads back as written, within its bounds.
    #[test]
    fn a_manifest_round_trips_and_hashes_in_path_order() {
        let m = manifest();
        let mut sorted = m.clone();
        sorted.outputs.reverse();
        assert_eq!(m.digest(), sorted.digest());
        assert_eq!(sorted.digest(), ContentId::of(&sorted.encode()));
        let bytes = m.encode().to_vec();
        assert_eq!(
            ResultManifest::decode_cfg(Copying(&bytes[..]), &2).unwrap(),
            m
        );
        assert!(ResultManifest::decode_cfg(Copying(&bytes[..]), &1).is_err());
        let mut other = m.clone();
        other.fuel_used += 1;
        assert_ne!(other.digest(), m.digest());
    }
}
