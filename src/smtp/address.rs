//! Paths of MAIL FROM and RCPT TO (RFC 5321 §4.1.2, RFC 6531 §3.3).
//!
//! The session hands the bracketed path here and gets back the *final*
//! mailbox: source routes (A-d-l) are parsed and dropped (RFC 5321 §4.1.1.3,
//! Appendix C), quoted local parts are understood. Relay safety is decided on
//! this final form: `Mailbox::hides_a_route` tells whether the local part
//! could still route the mail elsewhere (`%`, `!`, `@`) on a downstream that
//! honours the old conventions, so the session refuses it before the policy
//! ever sees a domain that is not the real destination.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::limits;

/// One mailbox in its final form: `local@domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part as written (quotes and quoted-pairs kept, so it can be
    /// relayed exactly as received).
    pub local: String,
    /// The local part with quotes removed and quoted-pairs resolved: what a
    /// downstream MTA would act on.
    pub local_unquoted: String,
    /// A domain name or an address literal such as `[192.0.2.1]`, as written.
    pub domain: String,
}

impl Mailbox {
    /// True when the local part still carries a route to another host:
    /// `user%other@us` (percent hack), `other!user@us` (UUCP bang path) or a
    /// quoted/escaped `@`. Such a mailbox must not reach the recipient policy
    /// under our domain (DESIGN.md, "Relay is decided on the final mailbox").
    pub fn hides_a_route(&self) -> bool {
        self.local_unquoted.bytes().any(|b| matches!(b, b'@' | b'%' | b'!'))
    }

    /// `local@domain`, the form passed to the policy and stored in the envelope.
    pub fn to_address(&self) -> String {
        let mut s = String::with_capacity(self.local.len() + 1 + self.domain.len());
        s.push_str(&self.local);
        s.push('@');
        s.push_str(&self.domain);
        s
    }
}

/// A forward-path (RCPT TO).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain (RFC 5321 §4.1.1.3): always accepted.
    Postmaster,
    Mailbox(Mailbox),
}

/// Why a path was refused; the session turns it into a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not RFC 5321 §4.1.2 syntax → 501 5.1.3 (RCPT) / 501 5.1.7 (MAIL).
    Syntax,
    /// Path, local part or domain over the §4.5.3.1 limits → 501.
    TooLong,
    /// Non-ASCII without the SMTPUTF8 parameter → 553 5.6.7 (RFC 6531 §3.6.1).
    NonAscii,
}

/// Parse a reverse-path; `Ok(None)` is the null sender `<>`.
pub fn parse_reverse_path(path: &[u8], smtputf8: bool) -> Result<Option<Mailbox>, PathError> {
    let inner = bracketed(path, smtputf8)?;
    if inner.is_empty() {
        return Ok(None);
    }
    parse_route_and_mailbox(inner, smtputf8).map(Some)
}

/// Parse a forward-path; the null path is not allowed here.
pub fn parse_forward_path(path: &[u8], smtputf8: bool) -> Result<ForwardPath, PathError> {
    let inner = bracketed(path, smtputf8)?;
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok(ForwardPath::Postmaster);
    }
    parse_route_and_mailbox(inner, smtputf8).map(ForwardPath::Mailbox)
}

/// Check length, charset and angle brackets; return what is inside them.
fn bracketed(path: &[u8], smtputf8: bool) -> Result<&str, PathError> {
    // RFC 5321 §4.5.3.1.3: 256 octets including the brackets.
    if path.len() > limits::PATH_BYTES_MAX {
        return Err(PathError::TooLong);
    }
    if !smtputf8 && !path.is_ascii() {
        return Err(PathError::NonAscii);
    }
    let text = std::str::from_utf8(path).map_err(|_| PathError::Syntax)?;
    text.strip_prefix('<').and_then(|t| t.strip_suffix('>')).ok_or(PathError::Syntax)
}

/// `[ A-d-l ":" ] Mailbox`: the source route is checked and thrown away.
fn parse_route_and_mailbox(inner: &str, smtputf8: bool) -> Result<Mailbox, PathError> {
    let mailbox = if inner.starts_with('@') {
        // A-d-l = At-domain *( "," At-domain ); the colon ends it. Domains
        // cannot contain ':' so the first one is the separator.
        let colon = inner.find(':').ok_or(PathError::Syntax)?;
        for at_domain in inner[..colon].split(',') {
            let domain = at_domain.strip_prefix('@').ok_or(PathError::Syntax)?;
            check_domain(domain, smtputf8)?;
        }
        &inner[colon + 1..]
    } else {
        inner
    };
    parse_mailbox(mailbox, smtputf8)
}

/// `Mailbox = Local-part "@" ( Domain / address-literal )`.
pub fn parse_mailbox(text: &str, smtputf8: bool) -> Result<Mailbox, PathError> {
    let (local, local_unquoted, rest) = if text.starts_with('"') {
        parse_quoted_local(text, smtputf8)?
    } else {
        let at = text.find('@').ok_or(PathError::Syntax)?;
        let local = &text[..at];
        check_dot_string(local, smtputf8)?;
        (local.to_string(), local.to_string(), &text[at..])
    };
    let domain = rest.strip_prefix('@').ok_or(PathError::Syntax)?;
    if local.len() > limits::LOCAL_PART_BYTES_MAX {
        return Err(PathError::TooLong);
    }
    if domain.starts_with('[') {
        check_address_literal(domain)?;
    } else {
        check_domain(domain, smtputf8)?;
    }
    Ok(Mailbox { local, local_unquoted, domain: domain.to_string() })
}

/// `Quoted-string = DQUOTE *QcontentSMTP DQUOTE`; returns (as written,
/// unquoted, rest after the closing quote).
fn parse_quoted_local(text: &str, smtputf8: bool) -> Result<(String, String, &str), PathError> {
    let mut unquoted = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((text[..=i].to_string(), unquoted, &text[i + 1..])),
            // quoted-pairSMTP = %d92 %d32-126
            '\\' => match chars.next() {
                Some((_, q)) if (' '..='~').contains(&q) => unquoted.push(q),
                _ => return Err(PathError::Syntax),
            },
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF-8 (RFC 6531 §3.3)
            ' '..='~' => unquoted.push(c),
            c if smtputf8 && !c.is_ascii() && !c.is_control() => unquoted.push(c),
            _ => return Err(PathError::Syntax),
        }
    }
    Err(PathError::Syntax)
}

/// `Dot-string = Atom *("." Atom)`.
fn check_dot_string(local: &str, smtputf8: bool) -> Result<(), PathError> {
    if local.is_empty() {
        return Err(PathError::Syntax);
    }
    for atom in local.split('.') {
        if atom.is_empty() || !atom.chars().all(|c| is_atext(c, smtputf8)) {
            return Err(PathError::Syntax);
        }
    }
    Ok(())
}

/// RFC 5322 §3.2.3 atext, extended with UTF-8 by RFC 6531 §3.3.
fn is_atext(c: char, smtputf8: bool) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (smtputf8 && !c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

/// `Domain = sub-domain *("." sub-domain)`; no empty label, so no trailing dot.
fn check_domain(domain: &str, smtputf8: bool) -> Result<(), PathError> {
    if domain.len() > limits::DOMAIN_BYTES_MAX {
        return Err(PathError::TooLong);
    }
    if domain.is_empty() {
        return Err(PathError::Syntax);
    }
    for label in domain.split('.') {
        // sub-domain = Let-dig [Ldh-str]; RFC 1035 §2.3.4: 63 octets a label.
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || c == '-'
                    || (smtputf8 && !c.is_ascii() && c.is_alphanumeric())
            });
        if !ok {
            return Err(PathError::Syntax);
        }
    }
    Ok(())
}

/// `address-literal = "[" ( IPv4 / "IPv6:" IPv6 / General-address-literal ) "]"`.
fn check_address_literal(literal: &str) -> Result<(), PathError> {
    let inner = literal
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .ok_or(PathError::Syntax)?;
    if inner.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let (tag, content) = inner.split_once(':').ok_or(PathError::Syntax)?;
    if tag.eq_ignore_ascii_case("IPv6") {
        return content.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| PathError::Syntax);
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent (§4.1.3)
    let tag_ok = !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let content_ok = !content.is_empty()
        && content.bytes().all(|b| (33..=90).contains(&b) || (94..=126).contains(&b));
    if tag_ok && content_ok {
        Ok(())
    } else {
        Err(PathError::Syntax)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn rcpt(path: &str) -> Result<ForwardPath, PathError> {
        parse_forward_path(path.as_bytes(), false)
    }

    fn mailbox(path: &str) -> Mailbox {
        match rcpt(path) {
            Ok(ForwardPath::Mailbox(m)) => m,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn plain_and_quoted_mailboxes() {
        let m = mailbox("<user.name+tag@example.test>");
        assert_eq!(m.to_address(), "user.name+tag@example.test");
        let q = mailbox(r#"<"john \"j\" doe"@example.test>"#);
        assert_eq!(q.local, r#""john \"j\" doe""#);
        assert_eq!(q.local_unquoted, r#"john "j" doe"#);
        assert!(!q.hides_a_route());
    }

    #[test]
    fn source_route_is_dropped() {
        let m = mailbox("<@relay.test,@other.test:user@example.test>");
        assert_eq!(m.to_address(), "user@example.test");
        assert_eq!(rcpt("<@relay.test:>"), Err(PathError::Syntax));
        assert_eq!(rcpt("<@relay.test user@example.test>"), Err(PathError::Syntax));
        assert_eq!(rcpt("<@[1.2.3.4]:user@example.test>"), Err(PathError::Syntax));
    }

    #[test]
    fn null_path_only_for_the_sender() {
        assert_eq!(parse_reverse_path(b"<>", false), Ok(None));
        assert_eq!(rcpt("<>"), Err(PathError::Syntax));
    }

    #[test]
    fn postmaster_without_domain() {
        assert_eq!(rcpt("<PostMaster>"), Ok(ForwardPath::Postmaster));
        assert!(parse_reverse_path(b"<postmaster>", false).is_err());
    }

    #[test]
    fn address_literals() {
        assert_eq!(mailbox("<u@[192.0.2.1]>").domain, "[192.0.2.1]");
        assert_eq!(mailbox("<u@[IPv6:2001:db8::1]>").domain, "[IPv6:2001:db8::1]");
        assert_eq!(rcpt("<u@[192.0.2.256]>"), Err(PathError::Syntax));
        assert_eq!(rcpt("<u@[IPv6:nonsense]>"), Err(PathError::Syntax));
        assert_eq!(rcpt("<u@[1.2.3.4]x>"), Err(PathError::Syntax));
    }

    #[test]
    fn lengths_follow_rfc_5321_4_5_3_1() {
        let local64 = "a".repeat(64);
        assert!(rcpt(&format!("<{local64}@example.test>")).is_ok());
        assert_eq!(rcpt(&format!("<a{local64}@example.test>")), Err(PathError::TooLong));
        // 254 octets inside the brackets = 256 in total: allowed.
        let label = "b".repeat(60);
        let domain = format!("{label}.{label}.{label}.{}.test", "c".repeat(54));
        let path = format!("<{}@{domain}>", "a".repeat(254 - 1 - domain.len()));
        assert_eq!(path.len(), 256);
        assert!(rcpt(&path).is_ok(), "{path}");
        let longer = format!("<a{}", &path[1..]);
        assert_eq!(rcpt(&longer), Err(PathError::TooLong));
        assert_eq!(rcpt(&format!("<u@{}.test>", "d".repeat(64))), Err(PathError::Syntax));
    }

    #[test]
    fn utf8_only_with_smtputf8() {
        assert_eq!(rcpt("<jörg@example.test>"), Err(PathError::NonAscii));
        let ok = parse_forward_path("<jörg@bücher.example.test>".as_bytes(), true);
        assert!(matches!(ok, Ok(ForwardPath::Mailbox(_))));
        assert_eq!(parse_forward_path(b"<j\xffrg@example.test>", true), Err(PathError::Syntax));
    }

    #[test]
    fn bad_syntax() {
        for path in [
            "user@example.test",
            "<user@example.test",
            "<user>",
            "<@example.test>",
            "<user@>",
            "<user@example..test>",
            "<user@.example.test>",
            "<user@-example.test>",
            "<.user@example.test>",
            "<user.@example.test>",
            "<us..er@example.test>",
            "<us er@example.test>",
            "<\"unterminated@example.test>",
            "<\"a\"b@example.test>",
            "<user@exa_mple.test>",
        ] {
            assert_eq!(rcpt(path), Err(PathError::Syntax), "{path}");
        }
    }

    /// Address forms that try to relay to outside.test through example.test;
    /// shared with the session's end-to-end version of this test.
    pub(crate) const RELAY_SMUGGLING_FORMS: &[&str] = &[
        "<user%outside.test@example.test>",
        "<\"user@outside.test\"@example.test>",
        "<@example.test:user@outside.test>",
        "<outside.test!user@example.test>",
        "<user@outside.test@example.test>",
        "<\"user%outside.test\"@example.test>",
        "<user\\@outside.test@example.test>",
        "<\"user!outside\"@example.test>",
        "<@example.test,@other.test:user@outside.test>",
        "<user%outside.test%example.test@example.test>",
        "<user@outside.test.>",
        "<\"user\\@outside.test\"@example.test>",
        "<\"user\\%outside.test\"@example.test>",
        "<user@[192.0.2.1]>",
        "<\"user@outside.test\">",
        "<user@example.test:outside.test>",
        "<user@outside.test%example.test>",
        "<user@example.test,user@outside.test>",
        "<\"user\"@outside.test@example.test>",
        "<user(outside.test)@example.test>",
        "<user@@example.test>",
        "<@outside.test:\"user%x\"@example.test>",
        "<outside.test!user>",
        "<user%outside.test>",
        "<user!@example.test>",
    ];

    /// The relay-smuggling forms: each is either refused outright (syntax or
    /// hidden route) or reaches the policy only with the *real* destination
    /// domain, never with example.test while routing elsewhere.
    #[test]
    fn relay_smuggling_forms_never_pass_as_local() {
        for form in RELAY_SMUGGLING_FORMS {
            match rcpt(form) {
                Err(_) => {}
                Ok(ForwardPath::Postmaster) => panic!("{form}: postmaster"),
                Ok(ForwardPath::Mailbox(m)) => {
                    if m.hides_a_route() {
                        continue;
                    }
                    // What the policy will see must be where the mail goes.
                    assert!(
                        m.domain == "outside.test" || m.domain.starts_with('['),
                        "{form} would be checked as {}",
                        m.to_address()
                    );
                    assert_eq!(crate::message::domain_of(&m.to_address()), m.domain.to_lowercase());
                }
            }
        }
        // And the exact classification of the main ones.
        assert!(mailbox("<user%outside.test@example.test>").hides_a_route());
        assert!(mailbox("<\"user@outside.test\"@example.test>").hides_a_route());
        assert!(mailbox("<outside.test!user@example.test>").hides_a_route());
        assert!(mailbox("<\"user\\@outside.test\"@example.test>").hides_a_route());
        assert_eq!(rcpt("<user@outside.test@example.test>"), Err(PathError::Syntax));
        assert_eq!(rcpt("<user\\@outside.test@example.test>"), Err(PathError::Syntax));
        assert_eq!(rcpt("<user@outside.test.>"), Err(PathError::Syntax));
        assert_eq!(mailbox("<@example.test:user@outside.test>").domain, "outside.test");
    }
}
