use thiserror::Error;

/// What can go wrong when decoding or verifying wire data.
#[derive(Debug, Error)]
pub enum WireError {
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// The type that was being decoded.
        what: &'static str,
        /// The codec's reason.
        #[source]
        source: commonware_codec::Error,
    },
    /// The envelope names a wire version this build does not speak.
    #[error("unsupported wire version {found} (this build speaks version {expected})")]
    UnsupportedVersion {
        /// Version found in the bytes.
        found: u8,
        /// Version this build speaks.
        expected: u8,
    },
    /// A signature did not verify against its claimed signer.
    #[error("bad signature from {signer}")]
    BadSignature {
        /// The signer the envelope claimed.
        signer: String,
    },
    /// A textual id or key was not what it should be.
    #[error("invalid {what} '{input}': {reason}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The rejected input.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A key file other users may read or change: refused, as ssh does.
    #[error(
        "key file {path} is open to other users (mode {mode:03o}); make it private with `chmod 600 {path}`"
    )]
    KeyFileExposed {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file that does not hold a key.
    #[error("key file {path} does not hold a key (64 hex digits expected)")]
    KeyFileInvalid {
        /// The key file.
        path: String,
    },
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The key file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
