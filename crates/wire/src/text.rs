//! Bounded UTF-8 strings in the canonical encoding.
//!
//! `commonware-codec` has no string type, so strings travel as
//! length-prefixed bytes that must be valid UTF-8 and within a limit the
//! reader chooses.

use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, Write};

/// Writes `text` as a length-prefixed byte string.
pub fn write(text: &str, buf: &mut impl BufMut) {
    text.as_bytes().to_vec().write(buf);
}

/// The encoded size of `text`.
pub fn encode_size(text: &str) -> usize {
    // A `Vec<u8>` of the same bytes has the same encoding; build the prefix
    // size without copying the payload.
    commonware_codec::varint::UInt(text.len() as u32).encode_size() + text.len()
}

/// Reads a string of at most `len_max` bytes.
pub fn read(buf: &mut impl Buf, len_max: usize) -> Result<String, CodecError> {
    let range: RangeCfg<usize> = (0..=len_max).into();
    let bytes = Vec::<u8>::read_cfg(buf, &(range, ()))?;
    String::from_utf8(bytes).map_err(|_| CodecError::Invalid("text", "not valid UTF-8"))
}

/// Reads a name (a runtime, an instruction-set level): at most `len_max`
/// printable ASCII characters without spaces, so it can be shown on a
/// terminal or a page as it is.
pub fn read_name(buf: &mut impl Buf, len_max: usize) -> Result<String, CodecError> {
    let name = read(buf, len_max)?;
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CodecError::Invalid("name", "not printable ASCII"));
    }
    Ok(name)
}

/// Reads a label (a GPU's model): like a name, but words may be
/// separated by single spaces.
pub fn read_label(buf: &mut impl Buf, len_max: usize) -> Result<String, CodecError> {
    let label = read(buf, len_max)?;
    let words_ok = label
        .split(' ')
        .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_graphic()));
    if !label.is_empty() && !words_ok {
        return Err(CodecError::Invalid("label", "not words of printable ASCII"));
    }
    Ok(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_printable_ascii() {
        for (name, ok) in [
            ("ffmpeg@5.1.9", true),
            ("x86-64-v3", true),
            ("", true),
            ("wasm\u{1b}[2J", false),
            ("two words", false),
            ("blénder", false),
        ] {
            let mut buf = Vec::new();
            write(name, &mut buf);
            let read = read_name(&mut commonware_codec::Copying(&buf), 64);
            assert_eq!(read.is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn a_label_is_printable_words() {
        for (label, ok) in [
            ("NVIDIA GeForce RTX 4090", true),
            ("", true),
            ("H200", true),
            (" leading", false),
            ("two  spaces", false),
            ("trailing ", false),
            ("tab\there", false),
            ("NVIDIA\u{1b}[2J", false),
        ] {
            let mut buf = Vec::new();
            write(label, &mut buf);
            let read = read_label(&mut commonware_codec::Copying(&buf), 64);
            assert_eq!(read.is_ok(), ok, "{label:?}");
        }
    }

    #[test]
    fn round_trip_and_limits() {
        let mut buf = Vec::new();
        write("frame-0007.png", &mut buf);
        assert_eq!(buf.len(), encode_size("frame-0007.png"));
        assert_eq!(
            read(&mut commonware_codec::Copying(&buf), 64).unwrap(),
            "frame-0007.png"
        );
        assert!(matches!(
            read(&mut commonware_codec::Copying(&buf), 4),
            Err(CodecError::InvalidLength(14))
        ));
    }

    #[test]
    fn rejects_invalid_utf8() {
        let mut buf = Vec::new();
        vec![0xffu8, 0xfe].write(&mut buf);
        assert!(read(&mut commonware_codec::Copying(&buf), 64).is_err());
    }
}
