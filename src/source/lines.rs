//! Splits a byte stream into lines without ever buffering more than
//! `limits.max_event_bytes` of one line: a longer line is skipped to its end and
//! reported once as too large. A half-received last line stays buffered until its
//! newline arrives (a tailed file) or the input ends ([`LineSplitter::finish`]).

/// One line as the splitter hands it on.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line without its terminator (`\n` or `\r\n`).
    Event(&'a [u8]),
    /// A line longer than the limit; its bytes were dropped.
    TooLarge,
}

#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    /// The current line already exceeded the limit: drop bytes until its newline.
    discarding: bool,
}

/// Empty and whitespace-only lines are not events: JSON-lines writers and editors leave
/// them, and every JSON-lines reader skips them.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl LineSplitter {
    pub fn new(max_event_bytes: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            max: max_event_bytes,
            discarding: false,
        }
    }

    /// Bytes of an incomplete line held back (a file position must not move past them).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether a line is in progress (partial bytes held or being discarded).
    pub fn in_line(&self) -> bool {
        !self.buf.is_empty() || self.discarding
    }

    /// Feeds a chunk; calls `emit` for every line it completes.
    pub fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(Line<'_>)) {
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(nl) => {
                    let (head, rest) = (&chunk[..nl], &chunk[nl + 1..]);
                    if self.discarding {
                        self.discarding = false;
                        emit(Line::TooLarge);
                    } else if self.buf.is_empty() {
                        self.emit_line(head, &mut emit);
                    } else if self.buf.len() + head.len() > self.max + 1 {
                        self.buf.clear();
                        emit(Line::TooLarge);
                    } else {
                        let mut line = std::mem::take(&mut self.buf);
                        line.extend_from_slice(head);
                        self.emit_line(&line, &mut emit);
                        line.clear();
                        self.buf = line; // keep the allocation
                    }
                    chunk = rest;
                }
                None => {
                    if !self.discarding {
                        // +1: a `\r` before the newline does not count against the limit.
                        if self.buf.len() + chunk.len() > self.max + 1 {
                            self.buf.clear();
                            self.discarding = true;
                        } else {
                            self.buf.extend_from_slice(chunk);
                        }
                    }
                    return;
                }
            }
        }
    }

    fn emit_line(&self, line: &[u8], emit: &mut impl FnMut(Line<'_>)) {
        let line = strip_cr(line);
        if line.len() > self.max {
            emit(Line::TooLarge);
        } else if !is_blank(line) {
            emit(Line::Event(line));
        }
    }

    /// The input ended: a last line without a newline is an event too.
    pub fn finish(&mut self, mut emit: impl FnMut(Line<'_>)) {
        if self.discarding {
            self.discarding = false;
            emit(Line::TooLarge);
        } else if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit_line(&line, &mut emit);
        }
    }

    /// Drops a partial line (the file it came from was truncated or replaced).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut push = |l: Line<'_>| {
            out.push(match l {
                Line::Event(b) => String::from_utf8_lossy(b).into_owned(),
                Line::TooLarge => "<too large>".into(),
            })
        };
        for c in chunks {
            s.feed(c, &mut push);
        }
        s.finish(&mut push);
        out
    }

    #[test]
    fn lines_across_chunk_boundaries() {
        assert_eq!(split(&[b"ab", b"c\nde\r\n\n  \nf"], 10), ["abc", "de", "f"]);
    }

    #[test]
    fn too_large_lines_are_skipped_whole_and_counted_once() {
        assert_eq!(
            split(&[b"0123456789\n", b"0123456789x\nok\n"], 10),
            ["0123456789", "<too large>", "ok"]
        );
        assert_eq!(
            split(&[b"0123", b"45678", b"9xyz", b"more", b"\nok"], 10),
            ["<too large>", "ok"]
        );
        assert_eq!(
            split(&[b"0123456789\r\n"], 10),
            ["0123456789"],
            "the terminator does not count"
        );
        assert_eq!(split(&[b"ok\n0123456789abc"], 10), ["ok", "<too large>"]);
    }

    #[test]
    fn partial_line_waits_for_its_newline() {
        let mut s = LineSplitter::new(100);
        let mut n = 0;
        s.feed(b"{\"a\":1}\n{\"b\"", |_| n += 1);
        assert_eq!((n, s.buffered()), (1, 4));
        s.feed(b":2}\n", |l| assert_eq!(l, Line::Event(b"{\"b\":2}")));
        assert_eq!(s.buffered(), 0);
    }
}
