//! The original message as a bounce sees it: its header block (returned
//! as text/rfc822-headers, RFC 6522 §4) and the few header fields that
//! tell whether it is itself a bounce or an automatic reply (RFC 3834 §5,
//! RFC 6522 §3). Bytes in, never parsed further than the header block.

use crate::limits;

/// The header block: every header line with its CRLF, without the empty
/// line that ends it (the whole message when it has no body).
pub(super) fn header_block(original: &[u8]) -> &[u8] {
    if original.starts_with(b"\r\n") {
        return &original[..0];
    }
    match find(original, b"\r\n\r\n") {
        Some(end) => &original[..end + 2],
        None => original,
    }
}

/// The header block cut to `limits::BOUNCE_HEADERS_BYTES_MAX`, before the
/// first field that does not fit whole (a folded field is never cut in
/// two), and ending with CRLF.
pub(super) fn bounded_header_block(original: &[u8]) -> Vec<u8> {
    let block = header_block(original);
    let mut kept = if block.len() <= limits::BOUNCE_HEADERS_BYTES_MAX {
        block
    } else {
        let field_starts = line_starts(block).filter(|&i| i > 0 && !matches!(block[i], b' ' | b'\t'));
        let cut = field_starts.take_while(|&i| i <= limits::BOUNCE_HEADERS_BYTES_MAX).last().unwrap_or(0);
        &block[..cut]
    }
    .to_vec();
    if !kept.is_empty() && !kept.ends_with(b"\r\n") {
        kept.extend_from_slice(b"\r\n");
    }
    kept
}

/// Offsets where a line begins (after each LF), within `block`.
fn line_starts(block: &[u8]) -> impl Iterator<Item = usize> + '_ {
    block.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i + 1).filter(move |&i| i < block.len())
}

/// The unfolded values of every field named `name` (case-insensitive), in
/// the first `limits::BOUNCE_SCAN_HEADER_BYTES_MAX` bytes of the header
/// block; non-UTF-8 bytes replaced.
pub(super) fn header_values(original: &[u8], name: &str) -> Vec<String> {
    let block = header_block(original);
    let block = &block[..block.len().min(limits::BOUNCE_SCAN_HEADER_BYTES_MAX)];
    let text = String::from_utf8_lossy(block);
    let mut values = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.starts_with([' ', '\t']) {
            // RFC 5322 §2.2.3: a folded continuation of the field above.
            if let Some(value) = current.as_mut() {
                value.push_str(line);
            }
            continue;
        }
        values.extend(current.take());
        if let Some((field, value)) = line.split_once(':') {
            if field.trim_end().eq_ignore_ascii_case(name) {
                current = Some(value.to_string());
            }
        }
    }
    values.extend(current);
    values.into_iter().map(|v| v.trim().to_string()).collect()
}

/// The message says it is an automatic reply (RFC 3834 §5:
/// `Auto-Submitted: auto-replied`) or a report (RFC 6522 §3:
/// multipart/report, which DSNs and MDNs are).
pub(super) fn is_bounce_or_auto_reply(original: &[u8]) -> bool {
    let auto_replied = header_values(original, "Auto-Submitted").iter().any(|v| keyword(v) == "auto-replied");
    let report = header_values(original, "Content-Type").iter().any(|v| keyword(v) == "multipart/report");
    auto_replied || report
}

/// The value's first token, lowercased: parameters (";…") and comments
/// ("(…)") dropped.
fn keyword(value: &str) -> String {
    value.split([';', '(']).next().unwrap_or("").trim().to_ascii_lowercase()
}

/// First offset of `needle` in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_block_ends_before_the_empty_line() {
        assert_eq!(header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_block(b"A: 1\r\n"), b"A: 1\r\n");
        assert_eq!(header_block(b"\r\nbody\r\n"), b"");
    }

    #[test]
    fn a_huge_header_block_is_cut_between_fields() {
        let mut message = Vec::new();
        let field = format!("X-Filler: {}\r\n\tcontinued\r\n", "x".repeat(1000));
        while message.len() < limits::BOUNCE_HEADERS_BYTES_MAX * 2 {
            message.extend_from_slice(field.as_bytes());
        }
        message.extend_from_slice(b"\r\nbody\r\n");
        let kept = bounded_header_block(&message);
        assert!(kept.len() <= limits::BOUNCE_HEADERS_BYTES_MAX);
        assert_eq!(kept.len() % field.len(), 0, "cut inside a field");
        assert!(kept.ends_with(b"continued\r\n"));
    }

    #[test]
    fn header_values_unfold_and_ignore_the_body() {
        let m = b"Subject: a\r\nauto-submitted : auto-replied\r\n (vacation)\r\n\r\nAuto-Submitted: no\r\n";
        assert_eq!(header_values(m, "Auto-Submitted"), ["auto-replied (vacation)"]);
    }

    #[test]
    fn reports_and_auto_replies_are_recognised() {
        assert!(is_bounce_or_auto_reply(b"Auto-Submitted: Auto-Replied; owner=x\r\n\r\nhi\r\n"));
        assert!(is_bounce_or_auto_reply(b"Content-Type: Multipart/Report;\r\n report-type=delivery-status; boundary=x\r\n\r\n"));
        assert!(!is_bounce_or_auto_reply(b"Auto-Submitted: no\r\nContent-Type: multipart/mixed\r\n\r\n"));
        assert!(!is_bounce_or_auto_reply(b"Subject: hi\r\n\r\nContent-Type: multipart/report\r\n"));
    }
}
