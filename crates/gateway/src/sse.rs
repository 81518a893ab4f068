//! Server-sent events read from a byte stream as they arrive: each event kept as its raw bytes,
//! to pass on unchanged, with its `event:` name and `data:` text to read.

/// One event: its bytes as received (with the blank line that ends it),
/// its name and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The bytes, to pass on as they came.
    pub raw: Vec<u8>,
    /// The `event:` field; empty when absent.
    pub name: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// The most bytes one event may hold before it is passed on unread.
pub const EVENT_LEN_MAX: usize = 4 * 1024 * 1024;

/// Splits a stream of byte chunks into events.
#[derive(Default)]
pub struct Splitter {
    buffer: Vec<u8>,
}

impl Splitter {
    /// Takes a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end).collect();
            events.push(parse(raw));
        }
        if self.buffer.len() > EVENT_LEN_MAX {
            // Not an event stream a client could use either: passed on as is.
            events.push(Event {
                raw: std::mem::take(&mut self.buffer),
                name: String::new(),
                data: String::new(),
            });
        }
        events
    }

    /// What is left when the stream ends: an event not ended by a blank line.
    pub fn finish(&mut self) -> Option<Event> {
        if self.buffer.is_empty() {
            None
        } else {
            Some(parse(std::mem::take(&mut self.buffer)))
        }
    }
}

/// Where the first complete event ends (after its blank line).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buffer.len() {
        if buffer[i] == b'\n' {
            match buffer.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if buffer.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn parse(raw: Vec<u8>) -> Event {
    let text = String::from_utf8_lossy(&raw);
    let mut name = String::new();
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value.to_owned(),
            "data" => data.push(value),
            _ => {}
        }
    }
    let data = data.join("\n");
    Event { raw, name, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole_and_unchanged() {
        let stream = b"event: message_start\ndata: {\"a\":1}\n\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut splitter = Splitter::default();
            let mut events = splitter.push(&stream[..cut]);
            events.extend(splitter.push(&stream[cut..]));
            assert_eq!(events.len(), 2, "cut at {cut}");
            assert_eq!(events[0].name, "message_start");
            assert_eq!(events[0].data, "{\"a\":1}");
            assert_eq!(events[1].data, "[DONE]");
            let joined: Vec<u8> = events.iter().flat_map(|e| e.raw.clone()).collect();
            assert_eq!(joined, stream);
            assert!(splitter.finish().is_none());
        }
    }

    #[test]
    fn crlf_line_ends_and_multi_line_data_are_read() {
        let mut splitter = Splitter::default();
        let events = splitter.push(b"data: one\r\ndata: two\r\n\r\n: comment\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "one\ntwo");
        assert_eq!(events[1].data, "");
    }

    #[test]
    fn an_unterminated_event_is_returned_at_the_end() {
        let mut splitter = Splitter::default();
        assert!(splitter.push(b"data: partial").is_empty());
        assert_eq!(splitter.finish().unwrap().data, "partial");
    }

    /// Fuzzing of the stream parser: any bytes, cut into chunks anywhere,
    /// give the events the whole stream gives at once, and their bytes are
    /// the stream's, none lost, none repeated. `PROPTEST_CASES=100000 cargo
    /// test -p gateway fuzz_` runs it longer.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn stream() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"data: ".to_vec()),
                Just(b"event: ".to_vec()),
                Just(b":".to_vec()),
                Just(b"{\"x\":1}".to_vec()),
                prop::collection::vec(any::<u8>(), 0..8),
            ];
            prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
        }

        fn run(chunks: &[&[u8]]) -> Vec<Event> {
            let mut splitter = Splitter::default();
            let mut events: Vec<Event> = chunks.iter().flat_map(|c| splitter.push(c)).collect();
            events.extend(splitter.finish());
            events
        }

        proptest! {
            #[test]
            fn fuzz_chunks_cut_anywhere_give_the_same_events_and_every_byte_once(
                bytes in stream(),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let whole = run(&[&bytes]);
                let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
                at.sort_unstable();
                let mut chunks = Vec::new();
                let mut start = 0;
                for cut in at {
                    chunks.push(&bytes[start..cut]);
                    start = cut;
                }
                chunks.push(&bytes[start..]);
                let cut = run(&chunks);
                prop_assert_eq!(&cut, &whole);
                let passed: Vec<u8> = cut.iter().flat_map(|e| e.raw.clone()).collect();
                prop_assert_eq!(passed, bytes);
            }
        }
    }
}
