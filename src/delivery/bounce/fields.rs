//! Header field values for a bounce, made safe: whatever a downstream
//! replied or a client put in an address becomes one line of printable
//! text (no CR/LF: no header injection), bounded, folded at spaces
//! (RFC 5322 §2.2.3), and 8-bit addresses are written in RFC 6533's
//! `utf-8` address type so message/delivery-status stays ASCII.

use crate::limits;

/// One line of text: every control character (CR, LF, NUL, tab …) and run
/// of whitespace becomes a single space, trimmed, cut to
/// `limits::BOUNCE_FIELD_BYTES_MAX` at a character boundary.
pub(super) fn one_line(value: &str) -> String {
    let mut line = String::with_capacity(value.len().min(limits::BOUNCE_FIELD_BYTES_MAX));
    for word in value.split(|c: char| c.is_control() || c.is_whitespace()).filter(|w| !w.is_empty()) {
        let room = limits::BOUNCE_FIELD_BYTES_MAX.saturating_sub(line.len() + usize::from(!line.is_empty()));
        if room == 0 {
            break;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(cut_at_char(word, room));
    }
    line
}

/// `s` cut to at most `bytes`, at a character boundary.
fn cut_at_char(s: &str, bytes: usize) -> &str {
    if s.len() <= bytes {
        return s;
    }
    let mut end = bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// "Name: value\r\n", the value made `one_line` and folded before a space
/// so lines stay near 78 characters where the words allow (RFC 5322
/// §2.1.1); unfolding gives the value back.
pub(super) fn header(name: &str, value: &str) -> String {
    const LINE: usize = 78;
    let value = one_line(value);
    let mut out = format!("{name}:");
    let mut line_len = out.len();
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if line_len + 1 + word.len() > LINE && line_len > name.len() + 1 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(word);
        line_len += 1 + word.len();
    }
    out.push_str("\r\n");
    out
}

/// An address as RFC 3464 writes it: `rfc822; local@domain`, or for an
/// address with non-ASCII characters (SMTPUTF8) `utf-8; ` and RFC 6533 §3's
/// utf-8-addr-xtext, so the field stays ASCII.
pub(super) fn typed_address(address: &str) -> String {
    let address = one_line(strip_angles(address));
    if address.is_ascii() {
        format!("rfc822; {address}")
    } else {
        format!("utf-8; {}", utf8_addr_xtext(&address))
    }
}

/// ORCPT as the client gave it ("rfc822;x@y", RFC 3461 §4.2), kept; a
/// non-ASCII address part is encoded as in `typed_address`.
pub(super) fn original_recipient(orcpt: &str) -> String {
    let orcpt = one_line(orcpt);
    match orcpt.split_once(';') {
        Some((_, address)) if !address.is_ascii() => format!("utf-8; {}", utf8_addr_xtext(address.trim())),
        _ => orcpt,
    }
}

/// RFC 6533 §3: printable ASCII but '+', '=' and '\' as itself, every
/// other character as `\x{HEX}` (uppercase hex, at least two digits).
fn utf8_addr_xtext(address: &str) -> String {
    let mut out = String::with_capacity(address.len() * 2);
    for c in address.chars() {
        match c {
            '!'..='~' if !matches!(c, '+' | '=' | '\\') => out.push(c),
            _ => out.push_str(&format!("\\x{{{:02X}}}", c as u32)),
        }
    }
    out
}

/// `<a@b>` → `a@b`; the envelope may hold either form.
pub(super) fn strip_angles(address: &str) -> &str {
    let a = address.trim();
    a.strip_prefix('<').and_then(|a| a.strip_suffix('>')).unwrap_or(a)
}

/// A host name as we write it after `dns;`: letters, digits, '-', '.',
/// and the brackets and colons of an address literal; anything else
/// dropped.
pub(super) fn host(name: &str) -> String {
    let clean: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '[' | ']' | ':' | '_')).collect();
    cut_at_char(&clean, limits::BOUNCE_FIELD_BYTES_MAX).to_string()
}

/// A downstream's reply as one line: a multi-line reply ("550-…\r\n550 …")
/// becomes its lines joined by spaces.
pub(super) fn diagnostic(reply: &str) -> String {
    one_line(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_new_line() {
        assert_eq!(one_line("550 no\r\nBcc: victim@x\r\n\r\nbody"), "550 no Bcc: victim@x body");
        assert_eq!(one_line("a\0b\tc\u{7f}d  \u{85}e"), "a b c d e");
    }

    #[test]
    fn values_are_bounded_at_a_character_boundary() {
        let long = "é".repeat(limits::BOUNCE_FIELD_BYTES_MAX);
        let line = one_line(&long);
        assert!(line.len() <= limits::BOUNCE_FIELD_BYTES_MAX && line.len() >= limits::BOUNCE_FIELD_BYTES_MAX - 1);
        assert!(line.chars().all(|c| c == 'é'));
    }

    #[test]
    fn headers_fold_before_spaces_and_unfold_to_the_value() {
        let words = "word ".repeat(40);
        let h = header("Diagnostic-Code", &format!("smtp; {words}"));
        assert!(h.lines().all(|l| l.len() <= 78), "{h}");
        assert!(h.lines().skip(1).all(|l| l.starts_with(' ')), "{h}");
        assert_eq!(h.replace("\r\n ", " "), format!("Diagnostic-Code: smtp; {}\r\n", words.trim_end()));
    }

    #[test]
    fn addresses_are_typed_and_8bit_ones_encoded() {
        assert_eq!(typed_address("<user@example.test>"), "rfc822; user@example.test");
        assert_eq!(typed_address("jörg+x@bücher.test"), "utf-8; j\\x{F6}rg\\x{2B}x@b\\x{FC}cher.test");
        assert_eq!(original_recipient("rfc822;user@example.test"), "rfc822;user@example.test");
        assert_eq!(original_recipient("utf-8;jörg@example.test"), "utf-8; j\\x{F6}rg@example.test");
    }

    #[test]
    fn hosts_keep_name_characters_only() {
        assert_eq!(host("mx1.example.test\r\nX-Evil: 1"), "mx1.example.testX-Evil:1");
        assert_eq!(host("[127.0.0.1]"), "[127.0.0.1]");
    }
}
