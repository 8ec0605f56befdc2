//! An incremental Server-Sent Events parser: bytes in, events out.
//!
//! Network reads split events anywhere (inside a field name, between `\r` and `\n`, inside a
//! multi-byte character), so bytes are buffered until a whole line is there and events are only
//! emitted at a blank line, following the WHATWG event-stream rules.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty when the event had none (the spec's "message").
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte seen was `\r`: a following `\n` belongs to the same line break.
    after_cr: bool,
    started: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes and returns the events completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut bytes = bytes;
        if !self.started && !bytes.is_empty() {
            // The BOM can itself be split across reads; wait until three bytes are known.
            self.line.extend_from_slice(bytes);
            if self.line.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.line) {
                return out;
            }
            self.started = true;
            let pending = std::mem::take(&mut self.line);
            let rest = pending.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&pending);
            self.feed_lines(rest, &mut out);
            return out;
        }
        if bytes.is_empty() {
            return out;
        }
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        self.feed_lines(bytes, &mut out);
        out
    }

    fn feed_lines(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => {
                    self.end_line(out);
                    i += 1;
                }
                b'\r' => {
                    self.end_line(out);
                    if i + 1 < bytes.len() {
                        if bytes[i + 1] == b'\n' {
                            i += 1;
                        }
                    } else {
                        self.after_cr = true;
                    }
                    i += 1;
                }
                _ => {
                    let end = bytes[i..]
                        .iter()
                        .position(|b| *b == b'\n' || *b == b'\r')
                        .map_or(bytes.len(), |p| i + p);
                    self.line.extend_from_slice(&bytes[i..end]);
                    i = end;
                }
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.find(':') {
            Some(p) => {
                let value = &line[p + 1..];
                (&line[..p], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id` and `retry` steer browser reconnection, which we do not do.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
        });
    }

    /// At the end of the body: emits an event whose lines were complete but which lacked the
    /// final blank line (some servers close right after `data: [DONE]\n`). A half-received line is
    /// dropped, so a cut-off JSON payload reads as truncation rather than as bad JSON.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.line.is_empty() {
            self.dispatch(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"\xEF\xBB\xBF: keep-alive comment\r\n\
event: message_start\r\n\
data: {\"a\":1}\r\n\
\r\n\
data: first line\n\
data:second line\n\
data: caf\xC3\xA9 \xE2\x9C\x93\n\
\n\
event: ping\r\
data: {}\r\
\r\
id: 7\n\
retry: 100\n\
event: empty\n\
\n\
data\n\
\n\
data: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        let ev = |e: &str, d: &str| SseEvent {
            event: e.into(),
            data: d.into(),
        };
        vec![
            ev("message_start", "{\"a\":1}"),
            ev("", "first line\nsecond line\ncafé ✓"),
            ev("ping", "{}"),
            ev("", ""),
            ev("", "[DONE]"),
        ]
    }

    fn parse_parts(parts: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for part in parts {
            out.extend(p.feed(part));
        }
        out.extend(p.finish());
        out
    }

    #[test]
    fn whole_sample() {
        assert_eq!(parse_parts(&[SAMPLE]), expected());
    }

    #[test]
    fn every_single_split_point() {
        for i in 0..=SAMPLE.len() {
            let (a, b) = SAMPLE.split_at(i);
            assert_eq!(parse_parts(&[a, b]), expected(), "split at {i}");
        }
    }

    #[test]
    fn every_pair_of_split_points() {
        for i in 0..=SAMPLE.len() {
            for j in i..=SAMPLE.len() {
                let parts = [&SAMPLE[..i], &SAMPLE[i..j], &SAMPLE[j..]];
                assert_eq!(parse_parts(&parts), expected(), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let parts: Vec<&[u8]> = SAMPLE.chunks(1).collect();
        assert_eq!(parse_parts(&parts), expected());
    }

    #[test]
    fn finish_flushes_complete_lines_only() {
        assert_eq!(
            parse_parts(&[b"data: [DONE]\n"]),
            vec![SseEvent {
                event: String::new(),
                data: "[DONE]".into()
            }]
        );
        assert!(parse_parts(&[b"data: {\"partial"]).is_empty());
    }

    #[test]
    fn no_panic_on_garbage() {
        let garbage: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let _ = parse_parts(&[&garbage]);
    }
}
