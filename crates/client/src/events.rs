//! Server-sent events read from a node, line by line, within bounds.

use std::io::{BufRead as _, Read as _};

/// The longest event line read from a node, and the most data one event
/// may gather: a job's status or a block is a few hundred bytes.
pub(crate) const EVENT_BYTES_MAX: u64 = 1 << 20;

/// A stream of server-sent events of one kind, read line by line within
/// [`EVENT_BYTES_MAX`].
pub(crate) struct Events<R> {
    reader: std::io::BufReader<R>,
    /// The event name read; others are skipped.
    kind: &'static str,
    data: String,
    /// Broken off: nothing more is read.
    over: bool,
    /// In an event of another kind.
    skipping: bool,
}

impl<R: std::io::Read> Events<R> {
    pub(crate) fn new(reader: R, kind: &'static str) -> Self {
        Self {
            reader: std::io::BufReader::new(reader),
            kind,
            data: String::new(),
            over: false,
            skipping: false,
        }
    }

    /// Ends the stream with `why`: nothing is read after it.
    fn broken(&mut self, why: String) -> Option<Result<String, String>> {
        self.over = true;
        Some(Err(why))
    }

    /// The next event's data; `None` at the end of the stream (or when it
    /// broke off).
    pub(crate) fn next_data(&mut self) -> Option<Result<String, String>> {
        loop {
            if self.over {
                return None;
            }
            let mut line = Vec::new();
            let read = (&mut self.reader)
                .take(EVENT_BYTES_MAX)
                .read_until(b'\n', &mut line);
            match read {
                Ok(_) if line.last() == Some(&b'\n') => {}
                Ok(n) if n as u64 == EVENT_BYTES_MAX => {
                    return self.broken(format!(
                        "the node sent an event line over {EVENT_BYTES_MAX} bytes"
                    ));
                }
                // The end, or a last line cut off.
                Ok(_) | Err(_) => return None,
            }
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                self.skipping = false;
                if !self.data.is_empty() {
                    return Some(Ok(std::mem::take(&mut self.data)));
                }
            } else if let Some(name) = line.strip_prefix("event:") {
                // Only events of the kind asked for are read (and unnamed
                // ones, which the spec calls `message`); others are
                // skipped whole.
                self.skipping = name.trim() != self.kind;
            } else if let Some(data) = line.strip_prefix("data:") {
                if self.skipping {
                    continue;
                }
                if self.data.len() as u64 + data.len() as u64 > EVENT_BYTES_MAX {
                    return self.broken(format!(
                        "the node sent an event over {EVENT_BYTES_MAX} bytes"
                    ));
                }
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(data.strip_prefix(' ').unwrap_or(data));
            }
            // Other fields (`id:`, `retry:`) and comments (`:`, the
            // keep-alives) carry nothing this client uses.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8], kind: &'static str) -> Vec<Result<String, String>> {
        let mut events = Events::new(bytes, kind);
        std::iter::from_fn(|| events.next_data()).collect()
    }

    #[test]
    fn event_streams_yield_each_events_data_and_skip_the_rest() {
        let stream = b": keep-alive\n\nevent: status\ndata: {\"a\":1}\n\n\
                       event: block\ndata: 9\n\n\
                       data:two\r\ndata: lines\r\n\r\nid: 7\n\ndata: cut off";
        assert_eq!(
            events(stream, "status"),
            [Ok("{\"a\":1}".to_string()), Ok("two\nlines".to_string())],
            "comments, other fields and other events carry nothing; an unfinished event is dropped"
        );
        assert_eq!(
            events(stream, "block"),
            [Ok("9".to_string()), Ok("two\nlines".to_string())]
        );
    }

    #[test]
    fn an_endless_event_line_is_refused_within_the_bound() {
        let mut stream = b"data: ".to_vec();
        stream.resize(EVENT_BYTES_MAX as usize + 10, b'x');
        let read = events(&stream, "status");
        assert_eq!(read.len(), 1);
        assert!(read[0].as_ref().unwrap_err().contains("over"), "{read:?}");
    }
}
