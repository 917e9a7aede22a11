//! Message content: DATA (RFC 5321 §4.1.1.4, §4.5.2) and BDAT chunks (RFC 3030).
//!
//! Both receivers take whatever bytes are buffered, say how many they used,
//! and keep at most `message_bytes_max` of body: past that they only count.
//!
//! SMTP smuggling defence: only CRLF "." CRLF ends DATA, where the first CRLF
//! is a real one (or the start of the data). A bare CR or bare LF anywhere
//! makes the whole message refused (554 5.6.0), so `\n.\n`, `\r.\r` or
//! `\n.\r\n` can never end one message and start a second one that a
//! downstream server would parse differently.

/// How a body ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyOutcome {
    /// The body, dot-unstuffed, CRLF line ends.
    Complete(Vec<u8>),
    /// More than `message_bytes_max` octets arrived → 552 5.3.4.
    TooBig,
    /// A bare CR or LF was seen → 554 5.6.0.
    BareLineEnd,
}

/// Shared bookkeeping: size, bound, and whether the body is still kept.
#[derive(Debug)]
struct Collector {
    body: Vec<u8>,
    size: u64,
    max: u64,
    bare: bool,
}

impl Collector {
    fn new(max: usize) -> Collector {
        Collector { body: Vec::new(), size: 0, max: max as u64, bare: false }
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.size > self.max || self.bare {
            // Never buffer beyond the limit, nor a body we will refuse anyway.
            if self.body.capacity() > 0 {
                self.body = Vec::new();
            }
            return;
        }
        self.body.extend_from_slice(bytes);
    }

    fn finish(self) -> BodyOutcome {
        if self.size > self.max {
            BodyOutcome::TooBig
        } else if self.bare {
            BodyOutcome::BareLineEnd
        } else {
            BodyOutcome::Complete(self.body)
        }
    }
}

/// Receives DATA content until the terminating line.
#[derive(Debug)]
pub struct DataReceiver {
    collector: Collector,
    /// The previous octet consumed ended a CRLF (or nothing was consumed
    /// yet): only here can "." start the end marker or be a stuffed dot.
    line_start: bool,
}

impl DataReceiver {
    pub fn new(message_bytes_max: usize) -> DataReceiver {
        DataReceiver { collector: Collector::new(message_bytes_max), line_start: true }
    }

    /// Octets counted so far (unstuffed), kept or not.
    pub fn size(&self) -> u64 {
        self.collector.size
    }

    /// Consume what can be decided from `input`; returns the octets used and
    /// whether the end of data was reached (those octets included). Leaves
    /// at most two octets unconsumed: a CR that may start a CRLF, or "." /
    /// ".\r" at a line start that may become the end marker.
    pub fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            let mut start = 0;
            if self.line_start && rest[0] == b'.' {
                if rest.starts_with(b".\r\n") {
                    return (pos + 3, true);
                }
                if b".\r\n".starts_with(rest) {
                    return (pos, false); // "." or ".\r": wait for the next octet
                }
                start = 1; // RFC 5321 §4.5.2: drop the stuffed dot
            }
            let Some(i) = rest[start..].iter().position(|&b| b == b'\r' || b == b'\n') else {
                self.collector.keep(&rest[start..]);
                self.line_start = false;
                pos += rest.len();
                continue;
            };
            let at = start + i;
            let used = if rest[at] == b'\n' {
                self.collector.bare = true; // LF without CR
                self.line_start = false;
                at + 1
            } else if at + 1 == rest.len() {
                if at == 0 {
                    return (pos, false); // lone CR: is an LF next?
                }
                self.line_start = false;
                at // keep the CR for the next round
            } else if rest[at + 1] == b'\n' {
                self.line_start = true;
                at + 2
            } else {
                self.collector.bare = true; // CR without LF
                self.line_start = false;
                at + 1
            };
            self.collector.keep(&rest[start..used]);
            pos += used;
        }
        (pos, false)
    }

    pub fn finish(self) -> BodyOutcome {
        self.collector.finish()
    }
}

/// Collects the chunks of one BDAT transaction (RFC 3030 §2).
#[derive(Debug)]
pub struct ChunkedBody {
    collector: Collector,
    /// BODY=BINARYMIME: octets are opaque, no line-end rule applies.
    binary: bool,
    /// The last octet of the previous chunk was a CR (its LF may follow).
    pending_cr: bool,
}

impl ChunkedBody {
    pub fn new(message_bytes_max: usize, binary: bool) -> ChunkedBody {
        ChunkedBody { collector: Collector::new(message_bytes_max), binary, pending_cr: false }
    }

    /// Octets received so far.
    pub fn size(&self) -> u64 {
        self.collector.size
    }

    pub fn too_big(&self) -> bool {
        self.collector.size > self.collector.max
    }

    /// Append chunk octets exactly as received (no dot handling in BDAT).
    pub fn take(&mut self, bytes: &[u8]) {
        if !self.binary && !self.collector.bare {
            self.check_line_ends(bytes);
        }
        self.collector.keep(bytes);
    }

    /// Every CR must be followed by LF and every LF preceded by CR, also
    /// across chunk boundaries.
    fn check_line_ends(&mut self, bytes: &[u8]) {
        let mut prev_cr = self.pending_cr;
        for &b in bytes {
            // LF without CR before it, or CR without LF after it.
            if (b == b'\n') != prev_cr {
                self.collector.bare = true;
                return;
            }
            prev_cr = b == b'\r';
        }
        self.pending_cr = prev_cr;
    }

    /// After `BDAT n LAST`. A body that does not end with CRLF gets one, so
    /// that it can be relayed with DATA later (RFC 3030 §2 leaves it to us).
    pub fn finish(mut self) -> BodyOutcome {
        if self.pending_cr {
            self.collector.bare = true;
        }
        let body = &mut self.collector.body;
        if !self.binary && !body.is_empty() && !body.ends_with(b"\r\n") {
            body.extend_from_slice(b"\r\n"); // not counted: the client did not send it
        }
        self.collector.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `step` octets, as a driver with a tiny
    /// buffer would; returns the outcome and the unconsumed rest.
    fn data(input: &[u8], step: usize, max: usize) -> (Option<BodyOutcome>, Vec<u8>) {
        let mut r = DataReceiver::new(max);
        let mut buffered = Vec::new();
        for (i, piece) in input.chunks(step).enumerate() {
            buffered.extend_from_slice(piece);
            let (used, done) = r.feed(&buffered);
            buffered.drain(..used);
            if done {
                buffered.extend_from_slice(&input[((i + 1) * step).min(input.len())..]);
                return (Some(r.finish()), buffered);
            }
        }
        (None, buffered)
    }

    fn every_split(input: &[u8]) -> Vec<(Option<BodyOutcome>, Vec<u8>)> {
        (1..=input.len().max(1)).map(|step| data(input, step, 1000)).collect()
    }

    #[test]
    fn plain_body_and_dot_unstuffing() {
        for (outcome, rest) in every_split(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n") {
            assert_eq!(outcome, Some(BodyOutcome::Complete(b"Subject: x\r\n\r\n.dot\r\n".to_vec())));
            assert_eq!(rest, b"QUIT\r\n");
        }
    }

    #[test]
    fn empty_body() {
        assert_eq!(data(b".\r\n", 1, 10).0, Some(BodyOutcome::Complete(Vec::new())));
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data() {
        for fake in [&b"a\n.\nb\r\n"[..], b"a\r.\rb\r\n", b"a\n.\r\nb\r\n", b"a\r\n.\nb\r\n", b"a\r\n.\rb\r\n", b"a\r.\r\nb\r\n"] {
            for (outcome, _) in every_split(fake) {
                assert_eq!(outcome, None, "{fake:?} must not end the data");
            }
            let mut whole = fake.to_vec();
            whole.extend_from_slice(b".\r\n");
            for (outcome, rest) in every_split(&whole) {
                assert_eq!(outcome, Some(BodyOutcome::BareLineEnd), "{fake:?}");
                assert!(rest.is_empty());
            }
        }
    }

    #[test]
    fn smuggled_message_stays_inside_the_refused_one() {
        let input = b"Hi\r\n\n.\r\nMAIL FROM:<x@evil.test>\r\nRCPT TO:<v@example.test>\r\nDATA\r\nfake\r\n.\r\nQUIT\r\n";
        for (outcome, rest) in every_split(input) {
            assert_eq!(outcome, Some(BodyOutcome::BareLineEnd));
            assert_eq!(rest, b"QUIT\r\n");
        }
    }

    #[test]
    fn too_big_is_counted_not_kept() {
        let mut r = DataReceiver::new(10);
        let (used, done) = r.feed(b"0123456789\r\nmore\r\n");
        assert!(!done);
        assert_eq!(used, 18);
        assert_eq!(r.collector.body.capacity(), 0);
        assert_eq!(r.feed(b".\r\n"), (3, true));
        assert_eq!(r.finish(), BodyOutcome::TooBig);
        // Exactly at the limit is fine.
        assert_eq!(data(b"12345678\r\n.\r\n", 3, 10).0, Some(BodyOutcome::Complete(b"12345678\r\n".to_vec())));
    }

    #[test]
    fn long_lines_are_consumed_without_a_line_end() {
        let mut r = DataReceiver::new(100_000);
        let line = vec![b'x'; 70_000];
        assert_eq!(r.feed(&line), (70_000, false));
        assert_eq!(r.feed(b"\r"), (0, false));
        assert_eq!(r.feed(b"\r\n.\r\n"), (5, true));
    }

    #[test]
    fn chunks_check_line_ends_across_boundaries() {
        let mut c = ChunkedBody::new(100, false);
        c.take(b"a\r");
        c.take(b"\nb\r\n");
        assert_eq!(c.finish(), BodyOutcome::Complete(b"a\r\nb\r\n".to_vec()));
        for bad in [&[&b"a\n"[..]][..], &[b"a\r", b"b\r\n"], &[b"a\r"], &[b"a\rb\r\n"]] {
            let mut c = ChunkedBody::new(100, false);
            for chunk in bad {
                c.take(chunk);
            }
            assert_eq!(c.finish(), BodyOutcome::BareLineEnd, "{bad:?}");
        }
    }

    #[test]
    fn binary_chunks_are_opaque_and_size_is_bounded() {
        let mut c = ChunkedBody::new(4, true);
        c.take(b"\n\r\x00");
        assert_eq!(c.finish(), BodyOutcome::Complete(b"\n\r\x00".to_vec()));
        let mut c = ChunkedBody::new(4, false);
        c.take(b"abc");
        c.take(b"de");
        assert!(c.too_big());
        assert_eq!(c.finish(), BodyOutcome::TooBig);
        let mut c = ChunkedBody::new(10, false);
        c.take(b"no newline");
        assert_eq!(c.finish(), BodyOutcome::Complete(b"no newline\r\n".to_vec()));
    }
}
