//! One SMTP command line → a `Command` (RFC 5321 §4.1.1) or the reply that
//! refuses it.
//!
//! Works on the line without its CRLF; the session has already checked the
//! length and that there is no bare CR or LF. Verbs are case-insensitive
//! (§2.4). MAIL and RCPT keep their path as bytes so that `address` can tell
//! "non-ASCII without SMTPUTF8" (553 5.6.7) from bad syntax; every other
//! command must be ASCII.

use crate::message::BodyType;
use crate::smtp::dsn::{self, Dsn, RecipientDsn};
use crate::smtp::reply::Reply;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo(&'a str),
    Helo(&'a str),
    /// `path` includes the angle brackets; `params` may be empty.
    Mail { path: &'a [u8], params: &'a str },
    Rcpt { path: &'a [u8], params: &'a str },
    Data,
    /// RFC 3030 §2: `BDAT chunk-size [LAST]`.
    Bdat { size: u64, last: bool },
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy(&'a str),
    Expn(&'a str),
    /// RFC 3207 §4: no parameters.
    StartTls,
    /// RFC 4954 §4: `AUTH mechanism [initial-response]`.
    Auth { mechanism: &'a str, initial: Option<&'a str> },
}

/// Why a BDAT line could not be parsed: the octet count is unknown, so the
/// session can no longer tell data from commands.
pub const BDAT_SYNTAX: &str = "Syntax: BDAT chunk-size [LAST]";

/// Verbs the mail log names: the commands we parse, and words an operator
/// wants to see although we do not implement them (other SMTP extensions,
/// HTTP requests sent to port 25). Every other first word is logged as
/// [`UNKNOWN_VERB`]: a line we do not understand may be a SASL response
/// (RFC 4954 §4: a bare base64 line, e.g. a LOGIN password) that a client
/// pipelined after an AUTH we refused, and credentials never reach the log.
const LOGGED_VERBS: &[&str] = &[
    "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "HELP", "QUIT", "VRFY", "EXPN", "STARTTLS", "AUTH",
    "ETRN", "ATRN", "TURN", "XCLIENT", "XFORWARD", "SEND", "SOML", "SAML", "VERB", "ONEX", "GET", "POST", "HEAD", "PUT",
    "OPTIONS", "CONNECT",
];

/// What the log says for a first word not in [`LOGGED_VERBS`].
pub const UNKNOWN_VERB: &str = "UNKNOWN";

/// The verb of a line, upper case, for the mail log: one of
/// [`LOGGED_VERBS`] or [`UNKNOWN_VERB`].
pub fn verb(line: &[u8]) -> String {
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let word = &line[..end];
    match LOGGED_VERBS.iter().find(|v| v.as_bytes().eq_ignore_ascii_case(word)) {
        Some(known) => known.to_string(),
        None => UNKNOWN_VERB.to_string(),
    }
}

/// SASL mechanism names (IANA registry, RFC 4422 §3.1) the log shows
/// after AUTH; any other word in that place may be a client's credentials
/// (an initial response without its mechanism, or glued to it by a tab).
const LOGGED_MECHANISMS: &[&str] = &[
    "PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "GSSAPI", "GS2-KRB5", "NTLM",
    "XOAUTH2", "OAUTHBEARER", "EXTERNAL", "ANONYMOUS",
];

/// The argument of a line as given, trimmed, for the mail log. AUTH keeps
/// only its mechanism, and only a known one: an initial response carries
/// credentials. A line whose verb is not known shows no argument (see
/// [`LOGGED_VERBS`]).
pub fn argument(line: &[u8]) -> String {
    let argument = match line.iter().position(|&b| b == b' ') {
        Some(sp) => String::from_utf8_lossy(&line[sp + 1..]).trim().to_string(),
        None => String::new(),
    };
    match verb(line).as_str() {
        "AUTH" => {
            let mechanism = argument.split(' ').next().unwrap_or_default();
            match LOGGED_MECHANISMS.iter().find(|m| m.eq_ignore_ascii_case(mechanism)) {
                Some(known) => known.to_string(),
                None if mechanism.is_empty() => String::new(),
                None => UNKNOWN_VERB.to_string(),
            }
        }
        UNKNOWN_VERB => String::new(),
        _ => argument,
    }
}

/// Parse one command line (CRLF removed).
pub fn parse(line: &[u8]) -> Result<Command<'_>, Reply> {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (&line[..sp], &line[sp + 1..]),
        None => (line, &line[line.len()..]),
    };
    let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
    if is("MAIL") {
        let (path, params) = path_and_params(rest, "FROM:", "MAIL FROM:<address>")?;
        return Ok(Command::Mail { path, params });
    }
    if is("RCPT") {
        let (path, params) = path_and_params(rest, "TO:", "RCPT TO:<address>")?;
        return Ok(Command::Rcpt { path, params });
    }
    // Everything but MAIL/RCPT is ASCII (RFC 6531 allows UTF-8 only in paths).
    let Ok(arg) = std::str::from_utf8(rest) else { return Err(not_ascii()) };
    if !arg.is_ascii() {
        return Err(not_ascii());
    }
    let arg = arg.trim_matches(' ');
    let no_arg = |command: Command<'static>| {
        if arg.is_empty() {
            Ok(command)
        } else {
            Err(Reply::new(501, "5.5.4", "Syntax error: no arguments allowed"))
        }
    };
    match () {
        _ if is("EHLO") => need_arg(arg, "EHLO hostname").map(Command::Ehlo),
        _ if is("HELO") => need_arg(arg, "HELO hostname").map(Command::Helo),
        _ if is("DATA") => no_arg(Command::Data),
        _ if is("BDAT") => parse_bdat(arg),
        _ if is("RSET") => no_arg(Command::Rset),
        // §4.1.1.9 and §4.1.1.8: NOOP and HELP may carry an argument; it is ignored.
        _ if is("NOOP") => Ok(Command::Noop),
        _ if is("HELP") => Ok(Command::Help),
        _ if is("QUIT") => no_arg(Command::Quit),
        _ if is("VRFY") => need_arg(arg, "VRFY address").map(Command::Vrfy),
        _ if is("EXPN") => need_arg(arg, "EXPN list").map(Command::Expn),
        _ if is("STARTTLS") => no_arg(Command::StartTls),
        _ if is("AUTH") => parse_auth(arg),
        _ => Err(Reply::new(500, "5.5.2", "Error: command not recognized")),
    }
}

fn not_ascii() -> Reply {
    Reply::new(500, "5.5.2", "Error: 8-bit characters not allowed in this command")
}

fn need_arg<'a>(arg: &'a str, syntax: &str) -> Result<&'a str, Reply> {
    if arg.is_empty() {
        Err(Reply::new(501, "5.5.4", format!("Syntax: {syntax}")))
    } else {
        Ok(arg)
    }
}

/// `FROM:<path> [SP params]` / `TO:<path> [SP params]`. A space after the
/// colon is tolerated (common in the wild, harmless).
fn path_and_params<'a>(rest: &'a [u8], keyword: &str, usage: &str) -> Result<(&'a [u8], &'a str), Reply> {
    let syntax = || Reply::new(501, "5.5.4", format!("Syntax: {usage}"));
    let k = keyword.len();
    if rest.len() < k || !rest[..k].eq_ignore_ascii_case(keyword.as_bytes()) {
        return Err(syntax());
    }
    let mut rest = &rest[k..];
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    let end = path_end(rest).ok_or_else(syntax)?;
    let (path, after) = rest.split_at(end);
    let params = match after {
        [] => "",
        [b' ', params @ ..] => std::str::from_utf8(params)
            .ok()
            .filter(|p| p.is_ascii())
            .ok_or_else(|| Reply::new(501, "5.5.4", "Syntax error in parameters"))?
            .trim_matches(' '),
        _ => return Err(syntax()),
    };
    Ok((path, params))
}

/// Length of `<...>` at the start of `s`, honouring quoted strings and
/// quoted-pairs so that a `>` inside quotes does not end the path.
fn path_end(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'<') {
        return None;
    }
    let mut quoted = false;
    let mut i = 1;
    while i < s.len() {
        match (s[i], quoted) {
            (b'\\', true) => i += 1,
            (b'"', _) => quoted = !quoted,
            (b'>', false) => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `AUTH mechanism [initial-response]` (RFC 4954 §4); the mechanism is
/// case-insensitive and checked by the session.
fn parse_auth(arg: &str) -> Result<Command<'_>, Reply> {
    let syntax = || Reply::new(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or_else(syntax)?;
    let initial = words.next();
    if words.next().is_some() {
        return Err(syntax());
    }
    Ok(Command::Auth { mechanism, initial })
}

fn parse_bdat(arg: &str) -> Result<Command<'static>, Reply> {
    let syntax = || Reply::new(501, "5.5.4", BDAT_SYNTAX);
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or_else(syntax)?;
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let size: u64 = size.parse().map_err(|_| syntax())?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(syntax()),
    };
    if words.next().is_some() {
        return Err(syntax());
    }
    Ok(Command::Bdat { size, last })
}

/// MAIL FROM parameters we implement (RFC 1870, 6152, 3030, 6531, 3461).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    /// RET and ENVID (RFC 3461 §4.3, §4.4).
    pub dsn: Dsn,
}

/// Parse `KEYWORD[=value]` parameters; keywords and BODY values are
/// case-insensitive (RFC 5321 §4.1.2 esmtp-keyword).
pub fn parse_mail_params(params: &str) -> Result<MailParams, Reply> {
    let bad = |what: &str| Reply::new(501, "5.5.4", format!("Bad {what} parameter syntax"));
    let mut out = MailParams::default();
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        if key.eq_ignore_ascii_case("SIZE") {
            // RFC 1870 §6: size-value = 1*20DIGIT
            let v = value.filter(|v| !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()));
            let v = v.ok_or_else(|| bad("SIZE"))?;
            if out.size.is_some() {
                return Err(bad("SIZE"));
            }
            out.size = Some(v.parse().unwrap_or(u64::MAX));
        } else if key.eq_ignore_ascii_case("BODY") {
            let body = match value {
                Some(v) if v.eq_ignore_ascii_case("7BIT") => BodyType::SevenBit,
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => BodyType::EightBitMime,
                Some(v) if v.eq_ignore_ascii_case("BINARYMIME") => BodyType::BinaryMime,
                _ => return Err(bad("BODY")),
            };
            if out.body.replace(body).is_some() {
                return Err(bad("BODY"));
            }
        } else if key.eq_ignore_ascii_case("AUTH") {
            // RFC 4954 §5: the identity a relaying client vouches for. We
            // do not trust it from anyone and do not relay it (as if
            // AUTH=<>), but a client that saw AUTH advertised may send it.
            if value.is_none_or(|v| v.is_empty()) {
                return Err(bad("AUTH"));
            }
        } else if key.eq_ignore_ascii_case("SMTPUTF8") {
            // RFC 6531 §3.4: the parameter has no value.
            if value.is_some() || out.smtputf8 {
                return Err(bad("SMTPUTF8"));
            }
            out.smtputf8 = true;
        } else if key.eq_ignore_ascii_case("RET") {
            let ret = dsn::parse_ret(value)?;
            if out.dsn.ret.replace(ret).is_some() {
                return Err(given_twice("RET")); // RFC 3461 §4.3: at most once
            }
        } else if key.eq_ignore_ascii_case("ENVID") {
            let envid = dsn::parse_envid(value)?;
            if out.dsn.envid.replace(envid).is_some() {
                return Err(given_twice("ENVID")); // RFC 3461 §4.4: at most once
            }
        } else {
            return Err(unknown_param());
        }
    }
    Ok(out)
}

/// Parse the parameters of RCPT TO: NOTIFY and ORCPT (RFC 3461 §4.1,
/// §4.2), each at most once; keywords are case-insensitive.
pub fn parse_rcpt_params(params: &str) -> Result<RecipientDsn, Reply> {
    let mut out = RecipientDsn::default();
    let mut notified = false;
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        if key.eq_ignore_ascii_case("NOTIFY") {
            out.notify = dsn::parse_notify(value)?;
            if std::mem::replace(&mut notified, true) {
                return Err(given_twice("NOTIFY"));
            }
        } else if key.eq_ignore_ascii_case("ORCPT") {
            let orcpt = dsn::parse_orcpt(value)?;
            if out.orcpt.replace(orcpt).is_some() {
                return Err(given_twice("ORCPT"));
            }
        } else {
            return Err(unknown_param());
        }
    }
    Ok(out)
}

/// A DSN parameter repeated on one command (RFC 3461 §4: each at most once).
fn given_twice(parameter: &str) -> Reply {
    Reply::new(501, "5.5.4", format!("Bad {parameter} parameter syntax: given twice"))
}

/// RFC 5321 §4.1.1.11 / §4.3.2: a parameter we did not advertise.
pub fn unknown_param() -> Reply {
    Reply::new(555, "5.5.4", "Unsupported parameter")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse(b"ehlo client.test"), Ok(Command::Ehlo("client.test")));
        assert_eq!(parse(b"QuIt"), Ok(Command::Quit));
        assert_eq!(parse(b"noop whatever"), Ok(Command::Noop));
    }

    #[test]
    fn mail_and_rcpt_split_path_and_params() {
        assert_eq!(
            parse(b"MAIL FROM:<a@b.test> SIZE=10 BODY=8BITMIME"),
            Ok(Command::Mail { path: b"<a@b.test>", params: "SIZE=10 BODY=8BITMIME" })
        );
        assert_eq!(parse(b"mail from: <>"), Ok(Command::Mail { path: b"<>", params: "" }));
        assert_eq!(
            parse(b"RCPT TO:<\"a>b\"@c.test>"),
            Ok(Command::Rcpt { path: b"<\"a>b\"@c.test>", params: "" })
        );
        assert_eq!(
            parse("RCPT TO:<jörg@c.test>".as_bytes()),
            Ok(Command::Rcpt { path: "<jörg@c.test>".as_bytes(), params: "" })
        );
    }

    #[test]
    fn malformed_mail_and_rcpt() {
        for line in [
            &b"MAIL"[..],
            b"MAIL FROM",
            b"MAIL TO:<a@b.test>",
            b"MAIL FROM:a@b.test",
            b"MAIL FROM:<a@b.test",
            b"MAIL FROM:<a@b.test>x",
            b"RCPT TO <a@b.test>",
            b"RCPT FROM:<a@b.test>",
        ] {
            let err = parse(line).unwrap_err();
            assert_eq!((err.code, err.enhanced.as_str()), (501, "5.5.4"), "{line:?}");
        }
    }

    #[test]
    fn arguments_where_none_are_allowed() {
        assert_eq!(parse(b"DATA x").unwrap_err().code, 501);
        assert_eq!(parse(b"RSET now").unwrap_err().code, 501);
        assert_eq!(parse(b"EHLO").unwrap_err().code, 501);
        assert_eq!(parse(b"HELO ").unwrap_err().code, 501);
        assert_eq!(parse(b"VRFY").unwrap_err().code, 501);
    }

    #[test]
    fn unknown_and_non_ascii() {
        assert_eq!(parse(b"XYZZY").unwrap_err().code, 500);
        assert_eq!(parse(b"").unwrap_err().code, 500);
        assert_eq!(parse("EHLO bücher.test".as_bytes()).unwrap_err().code, 500);
        assert_eq!(parse(b"NOOP \xff").unwrap_err().code, 500);
    }

    #[test]
    fn starttls_and_auth() {
        assert_eq!(parse(b"starttls"), Ok(Command::StartTls));
        assert_eq!(parse(b"STARTTLS now").unwrap_err().code, 501);
        assert_eq!(parse(b"AUTH PLAIN"), Ok(Command::Auth { mechanism: "PLAIN", initial: None }));
        assert_eq!(parse(b"auth login dXNlcg=="), Ok(Command::Auth { mechanism: "login", initial: Some("dXNlcg==") }));
        assert_eq!(parse(b"AUTH").unwrap_err().code, 501);
        assert_eq!(parse(b"AUTH PLAIN a b").unwrap_err().code, 501);
    }

    #[test]
    fn bdat_syntax() {
        assert_eq!(parse(b"BDAT 0 LAST"), Ok(Command::Bdat { size: 0, last: true }));
        assert_eq!(parse(b"bdat 1234 last"), Ok(Command::Bdat { size: 1234, last: true }));
        assert_eq!(parse(b"BDAT 99"), Ok(Command::Bdat { size: 99, last: false }));
        for bad in [&b"BDAT"[..], b"BDAT x", b"BDAT -1", b"BDAT +1", b"BDAT 1 FIRST", b"BDAT 1 LAST x", b"BDAT 99999999999999999999999"] {
            assert_eq!(parse(bad).unwrap_err().to_string(), format!("501 5.5.4 {BDAT_SYNTAX}"), "{bad:?}");
        }
    }

    #[test]
    fn mail_params() {
        let p = parse_mail_params("size=1000 BODY=8bitmime SMTPUTF8").unwrap();
        assert_eq!(p, MailParams { size: Some(1000), body: Some(BodyType::EightBitMime), smtputf8: true, ..Default::default() });
        assert_eq!(parse_mail_params("").unwrap(), MailParams::default());
        assert_eq!(parse_mail_params("SIZE=99999999999999999999").unwrap().size, Some(u64::MAX));
        for bad in ["SIZE", "SIZE=", "SIZE=1k", "SIZE=1 SIZE=2", "BODY=9BIT", "BODY", "SMTPUTF8=yes"] {
            assert_eq!(parse_mail_params(bad).unwrap_err().code, 501, "{bad}");
        }
        assert_eq!(parse_mail_params("XRET=FULL").unwrap_err().code, 555);
        assert_eq!(parse_mail_params("AUTH=<>").unwrap(), MailParams::default());
        assert_eq!(parse_mail_params("AUTH").unwrap_err().code, 501);
    }

    #[test]
    fn mail_dsn_params() {
        use crate::smtp::dsn::Ret;
        let p = parse_mail_params("ret=hdrs ENVID=QQ+2B1 SIZE=5").unwrap();
        assert_eq!(p.dsn, Dsn { ret: Some(Ret::Headers), envid: Some("QQ+1".into()) });
        assert_eq!(p.size, Some(5));
        for bad in ["RET=FULL RET=FULL", "RET=FULL ret=HDRS", "ENVID=a ENVID=a", "RET=ALL", "RET", "ENVID=", "ENVID=a+2b"] {
            let reply = parse_mail_params(bad).unwrap_err();
            assert_eq!((reply.code, reply.enhanced.as_str()), (501, "5.5.4"), "{bad}");
        }
    }

    #[test]
    fn rcpt_dsn_params() {
        use crate::smtp::dsn::Notify;
        assert_eq!(parse_rcpt_params("").unwrap(), RecipientDsn::default());
        let p = parse_rcpt_params("notify=SUCCESS,DELAY ORCPT=rfc822;u+2B1@b.test").unwrap();
        assert_eq!(p.notify, Notify::On { success: true, failure: false, delay: true });
        assert_eq!(p.orcpt, Some(("rfc822".into(), "u+1@b.test".into())));
        for bad in ["NOTIFY=NEVER NOTIFY=NEVER", "ORCPT=rfc822;a ORCPT=rfc822;a", "NOTIFY=NEVER,DELAY", "NOTIFY", "ORCPT=a@b"] {
            let reply = parse_rcpt_params(bad).unwrap_err();
            assert_eq!((reply.code, reply.enhanced.as_str()), (501, "5.5.4"), "{bad}");
        }
        assert_eq!(parse_rcpt_params("XNOTIFY=NEVER").unwrap_err().code, 555);
        assert_eq!(parse_rcpt_params("RET=FULL").unwrap_err().code, 555, "RET belongs to MAIL");
    }

    #[test]
    fn verb_and_argument_for_the_log() {
        assert_eq!(verb(b"mail FROM:<a@b>"), "MAIL");
        assert_eq!(argument(b"mail FROM:<a@b>  "), "FROM:<a@b>");
        assert_eq!(verb(b"\x01bad"), "UNKNOWN");
        assert_eq!(argument(b"AUTH PLAIN AHVzZXIAc2VjcmV0"), "PLAIN", "credentials never reach the log");
        // A LOGIN password (base64) or a clear one sent as a command line
        // after a refused AUTH: neither the word nor the rest is shown.
        for line in [&b"VHIwdWI0ZG9yLWFuZC0z"[..], b"hunter2 and more", b"MAILFROM:<a@b>"] {
            assert_eq!((verb(line).as_str(), argument(line).as_str()), ("UNKNOWN", ""), "{line:?}");
        }
        assert_eq!((verb(b"get / HTTP/1.0"), argument(b"get / HTTP/1.0")), ("GET".into(), "/ HTTP/1.0".into()));
        assert_eq!(verb(b"xclient NAME=x"), "XCLIENT");
        // AUTH shows a known mechanism only: not credentials in its place.
        assert_eq!(argument(b"AUTH cram-md5"), "CRAM-MD5");
        for line in [&b"AUTH AHVzZXIAc2VjcmV0"[..], b"AUTH PLAIN\tAHVzZXIAc2VjcmV0", b"AUTH  c2VjcmV0 x"] {
            assert_eq!(argument(line), "UNKNOWN", "{line:?}");
        }
    }
}
