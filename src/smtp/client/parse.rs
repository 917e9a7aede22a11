//! Reply parsing for the delivery client: bytes from the downstream in,
//! `Reply` values out, and the EHLO extension list.
//!
//! Bounded on every axis (line, lines, bytes: `limits::CLIENT_REPLY_*`) so a
//! downstream that streams endless continuation lines costs us one small
//! buffer and then the connection, never memory.

use std::fmt;

use crate::limits::{CLIENT_REPLY_BYTES_MAX, CLIENT_REPLY_LINES_MAX, CLIENT_REPLY_LINE_BYTES_MAX};
use crate::smtp::Reply;

/// The downstream broke the reply syntax or a bound. Its fault; the
/// connection cannot be trusted any more, so it is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    LineTooLong,
    TooManyLines,
    TooLarge,
    /// Not "ddd", "ddd text" or "ddd-text"; the offending line, shortened.
    Malformed(String),
    /// A continuation line with another code than the first line (RFC 5321 §4.2.1).
    CodeChanged {
        first: u16,
        then: u16,
    },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::LineTooLong => {
                write!(
                    f,
                    "reply line longer than {CLIENT_REPLY_LINE_BYTES_MAX} bytes"
                )
            }
            ReplyError::TooManyLines => {
                write!(f, "reply of more than {CLIENT_REPLY_LINES_MAX} lines")
            }
            ReplyError::TooLarge => write!(f, "reply larger than {CLIENT_REPLY_BYTES_MAX} bytes"),
            ReplyError::Malformed(line) => write!(f, "malformed reply line {line:?}"),
            ReplyError::CodeChanged { first, then } => {
                write!(f, "multi-line reply changed code from {first} to {then}")
            }
        }
    }
}

/// Incremental reply parser: `push` bytes as they arrive, take complete
/// replies with `next_reply`. Keeps at most one partial reply.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Start of the first line not yet parsed.
    pos: usize,
    code: u16,
    lines: Vec<String>,
    bytes: usize,
}

impl ReplyParser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when no partial reply is buffered.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len() && self.lines.is_empty()
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() >= CLIENT_REPLY_LINE_BYTES_MAX {
                    return Err(ReplyError::LineTooLong);
                }
                self.compact();
                return Ok(None);
            };
            // Be liberal in what we accept: a bare LF ends a reply line too.
            let raw = &rest[..nl];
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if nl + 1 > CLIENT_REPLY_LINE_BYTES_MAX {
                return Err(ReplyError::LineTooLong);
            }
            let (code, last, text) = split_line(line)?;
            self.pos += nl + 1;
            if !self.lines.is_empty() && code != self.code {
                return Err(ReplyError::CodeChanged {
                    first: self.code,
                    then: code,
                });
            }
            self.bytes += nl + 1;
            if self.bytes > CLIENT_REPLY_BYTES_MAX {
                return Err(ReplyError::TooLarge);
            }
            if self.lines.len() == CLIENT_REPLY_LINES_MAX {
                return Err(ReplyError::TooManyLines);
            }
            self.code = code;
            self.lines.push(text);
            if last {
                let lines = std::mem::take(&mut self.lines);
                self.bytes = 0;
                return Ok(Some(with_enhanced_code(code, lines)));
            }
        }
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// "250-text" → (250, false, "text"); "250 text" and "250" end the reply.
fn split_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || {
        let shown = String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned();
        ReplyError::Malformed(shown)
    };
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    // RFC 5321 §4.2.1: the first digit is 2..5 in SMTP replies.
    if !(b'2'..=b'5').contains(&line[0]) {
        return Err(malformed());
    }
    let code =
        (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    let last = match line.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return Err(malformed()),
    };
    let text = line.get(4..).unwrap_or(&[]);
    // SMTPUTF8 servers may send UTF-8 text; anything else is shown lossily.
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// RFC 3463 / RFC 2034 §4: the text of each line starts with the enhanced
/// code when the server has ENHANCEDSTATUSCODES; its class must match the
/// first digit of the reply code (2, 4 or 5). It is moved into
/// `Reply::enhanced` and stripped from every line that repeats it, so that
/// `Reply::write_to` gives the same bytes back.
fn with_enhanced_code(code: u16, mut lines: Vec<String>) -> Reply {
    let class = b'0' + (code / 100) as u8;
    let enhanced = match lines.first().and_then(|l| enhanced_prefix(l, class)) {
        Some(len) => lines[0][..len].to_string(),
        None => String::new(),
    };
    if !enhanced.is_empty() {
        for line in &mut lines {
            if let Some(rest) = line.strip_prefix(enhanced.as_str()) {
                if rest.is_empty() || rest.starts_with(' ') {
                    *line = rest.strip_prefix(' ').unwrap_or(rest).to_string();
                }
            }
        }
    }
    Reply {
        code,
        enhanced,
        lines,
    }
}

/// Length of "class.subject.detail" at the start of `text`, if there is one
/// (subject and detail: 1 to 3 digits, RFC 3463 §2), followed by SP or end.
fn enhanced_prefix(text: &str, class: u8) -> Option<usize> {
    let b = text.as_bytes();
    if !matches!(class, b'2' | b'4' | b'5') || b.first() != Some(&class) || b.get(1) != Some(&b'.')
    {
        return None;
    }
    let mut i = 2;
    for part in 0..2 {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 3 {
            i += 1;
        }
        if i == start {
            return None;
        }
        if part == 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    match b.get(i) {
        None | Some(b' ') => Some(i),
        _ => None,
    }
}

/// What the downstream offered in its EHLO reply (RFC 5321 §4.1.1.1), as
/// far as the client uses it. HELO servers offer nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 6152.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
    /// RFC 1870: the fixed maximum; `Some(0)` means "no fixed maximum".
    pub size: Option<u64>,
    /// RFC 3030 (not used yet: we send DATA).
    pub chunking: bool,
    /// RFC 3207: STARTTLS (`starttls` decides what to do with it).
    pub starttls: bool,
    /// RFC 3461: DSN (RET/ENVID on MAIL, NOTIFY/ORCPT on RCPT).
    pub dsn: bool,
}

impl Extensions {
    /// The keywords of an EHLO reply; the first line is the server's name.
    pub fn from_ehlo(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "CHUNKING" => ext.chunking = true,
                "STARTTLS" => ext.starttls = true,
                "DSN" => ext.dsn = true,
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => {}
            }
        }
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut p = ReplyParser::default();
        p.push(bytes);
        let mut out = Vec::new();
        while let Some(r) = p.next_reply()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let r = parse_all(b"550 5.1.1 <x@y>: Recipient address rejected\r\n").unwrap();
        assert_eq!(
            r,
            vec![Reply::new(
                550,
                "5.1.1",
                "<x@y>: Recipient address rejected"
            )]
        );
    }

    #[test]
    fn enhanced_code_class_must_match_the_reply_class() {
        let r = parse_all(b"550 4.1.1 odd\r\n354 3.0.0 go\r\n").unwrap();
        assert_eq!(r[0].enhanced, "");
        assert_eq!(r[0].lines, vec!["4.1.1 odd"]);
        assert_eq!(r[1].enhanced, "");
    }

    #[test]
    fn bare_code_and_bare_lf_are_accepted() {
        let r = parse_all(b"250\n").unwrap();
        assert_eq!(
            r,
            vec![Reply {
                code: 250,
                enhanced: String::new(),
                lines: vec![String::new()]
            }]
        );
    }

    #[test]
    fn multi_line_ehlo_reply_and_its_extensions() {
        let bytes = b"250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8bitmime\r\n\
                      250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n";
        let r = parse_all(bytes).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].lines.len(), 6);
        let ext = Extensions::from_ehlo(&r[0]);
        assert!(ext.pipelining && ext.eight_bit_mime && ext.smtputf8 && ext.enhanced_status_codes);
        assert_eq!(ext.size, Some(10_240_000));
        assert!(!ext.chunking);
    }

    #[test]
    fn enhanced_code_is_stripped_from_every_line_that_repeats_it() {
        let r = parse_all(b"550-5.7.1 first\r\n550 5.7.1 second\r\n").unwrap();
        assert_eq!(r[0].enhanced, "5.7.1");
        assert_eq!(r[0].lines, vec!["first", "second"]);
        assert_eq!(r[0].to_bytes(), b"550-5.7.1 first\r\n550 5.7.1 second\r\n");
    }

    #[test]
    fn replies_split_across_reads() {
        let mut p = ReplyParser::default();
        p.push(b"250-a\r\n25");
        assert_eq!(p.next_reply().unwrap(), None);
        p.push(b"0 b\r\n354 go");
        assert_eq!(p.next_reply().unwrap().unwrap().lines, vec!["a", "b"]);
        assert_eq!(p.next_reply().unwrap(), None);
        p.push(b" ahead\r\n");
        assert_eq!(p.next_reply().unwrap().unwrap().code, 354);
        assert!(p.is_empty());
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(matches!(
            parse_all(b"hello\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_all(b"2500 x\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_all(b"150 x\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert_eq!(
            parse_all(b"250-a\r\n550 b\r\n"),
            Err(ReplyError::CodeChanged {
                first: 250,
                then: 550
            })
        );
    }

    #[test]
    fn an_endless_line_is_cut_off() {
        let mut p = ReplyParser::default();
        p.push(&vec![b'2'; CLIENT_REPLY_LINE_BYTES_MAX]);
        assert_eq!(p.next_reply(), Err(ReplyError::LineTooLong));
    }

    #[test]
    fn endless_continuation_lines_are_cut_off() {
        let mut p = ReplyParser::default();
        let mut result = Ok(None);
        for _ in 0..=CLIENT_REPLY_LINES_MAX {
            p.push(b"250-more\r\n");
            result = p.next_reply();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ReplyError::TooManyLines));
        let long = format!("250-{}\r\n", "x".repeat(1500));
        let mut p = ReplyParser::default();
        for _ in 0..20 {
            p.push(long.as_bytes());
        }
        assert_eq!(p.next_reply(), Err(ReplyError::TooLarge));
    }
}
