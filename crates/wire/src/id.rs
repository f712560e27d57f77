use std::fmt;
use std::str::FromStr;

use bytes::BufMut;
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, Write};

use crate::WireError;

/// A content id: the BLAKE3 digest of a blob's bytes.
///
/// Content ids are how Cairn names modules, inputs and outputs, so a receiver
/// checks what it got by hashing it, whoever sent it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// The content id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps a digest computed elsewhere (for example by a streaming hasher).
    pub const fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The raw 32-byte digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short prefix for humans; never use it to compare ids.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl From<blake3::Hash> for ContentId {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.short())
    }
}

impl FromStr for ContentId {
    type Err = WireError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse_hex32(input, "content id").map(Self)
    }
}

impl Write for ContentId {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf);
    }
}

impl FixedSize for ContentId {
    const SIZE: usize = 32;
}

impl Read for ContentId {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        <[u8; 32]>::read_cfg(buf, &()).map(Self)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

/// Parses hex digits (an even number of them) into bytes; `what` names
/// the value in the error.
pub fn parse_hex(input: &str, what: &'static str) -> Result<Vec<u8>, WireError> {
    let err = |reason| WireError::Parse {
        what,
        input: input.to_string(),
        reason,
    };
    if !input.len().is_multiple_of(2) {
        return Err(err("an odd number of hex digits"));
    }
    input
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(err("not a hex digit"));
            Ok((digit(pair[0])? << 4 | digit(pair[1])?) as u8)
        })
        .collect()
}

/// Parses exactly 64 hex digits into 32 bytes.
pub fn parse_hex32(input: &str, what: &'static str) -> Result<[u8; 32], WireError> {
    if input.len() != 64 {
        return Err(WireError::Parse {
            what,
            input: input.to_string(),
            reason: "expected 64 hex digits",
        });
    }
    Ok(parse_hex(input, what)?
        .try_into()
        .expect("64 digits are 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn display_parse_round_trip() {
        let id = ContentId::of(b"frame 7");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ContentId>().unwrap(), id);
    }

    #[test]
    fn known_vector() {
        // BLAKE3 of the empty input, from the BLAKE3 specification.
        assert_eq!(
            ContentId::of(b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn rejects_bad_text() {
        assert!("abc".parse::<ContentId>().is_err());
        let not_hex = "g".repeat(64);
        let err = not_hex.parse::<ContentId>().unwrap_err().to_string();
        assert!(err.contains("not a hex digit"), "{err}");
    }

    #[test]
    fn codec_round_trip_and_truncation() {
        let id = ContentId::of(b"x");
        let bytes = id.encode();
        assert_eq!(bytes.len(), 32);
        assert_eq!(ContentId::decode(bytes.clone()).unwrap(), id);
        assert!(ContentId::decode(bytes.slice(..31)).is_err());
    }
}
