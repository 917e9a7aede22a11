//! SMTP replies: a code, an enhanced status code (RFC 3463) and text.
//!
//! Every reply Portcullis sends or receives is one of these values; the
//! session, the policies and the delivery client pass them around instead of
//! strings so that "4xx or 5xx" is a question a type can answer.

use std::fmt;

/// One SMTP reply, possibly multi-line (`lines` has one entry per line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code such as "5.7.1"; empty when the peer sent none.
    pub enhanced: String,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        debug_assert!((200..600).contains(&code), "reply code {code}");
        Reply { code, enhanced: enhanced.to_string(), lines: vec![text.into()] }
    }

    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// 4xx: try again later.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The reply as it goes on the wire, CRLF after every line
    /// (RFC 5321 §4.2.1: "250-" for continued lines, "250 " for the last).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(sep as u8);
            if !self.enhanced.is_empty() {
                out.extend_from_slice(self.enhanced.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{} ", self.code).as_bytes());
            out.extend_from_slice(self.enhanced.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    /// One line for logs: "550 5.7.1 Relaying denied".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.enhanced.is_empty() {
            write!(f, " {}", self.enhanced)?;
        }
        write!(f, " {}", self.lines.join(" / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_reply_uses_dash_then_space() {
        let mut r = Reply::new(250, "", "mx.test");
        r.lines.push("PIPELINING".into());
        assert_eq!(r.to_bytes(), b"250-mx.test\r\n250 PIPELINING\r\n");
    }

    #[test]
    fn enhanced_code_follows_the_basic_code() {
        let r = Reply::new(550, "5.7.1", "Relaying denied");
        assert_eq!(r.to_bytes(), b"550 5.7.1 Relaying denied\r\n");
        assert!(r.is_permanent() && !r.is_temporary());
    }
}
