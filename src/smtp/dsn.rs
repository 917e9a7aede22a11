//! Delivery Status Notifications, the SMTP extension (RFC 3461): the
//! parameters a client gives on MAIL (RET, ENVID) and RCPT (NOTIFY, ORCPT),
//! parsed, kept in the envelope, and rendered again for a downstream.
//!
//! Where it sits: `command::parse_mail_params` / `parse_rcpt_params` call
//! the parsers here while the session reads MAIL and RCPT; the values ride
//! in `message::Envelope` (spooled by `spool::record`), bounces read them
//! (`Notify::wants_*`, `Ret`), and `smtp::client` renders them on the MAIL
//! and RCPT lines when the downstream offers DSN. Pure: no I/O.
//!
//! Values are kept DECODED (xtext, RFC 3461 §4; utf-8-addr-xtext, RFC 6533
//! §3) and encoded again on the way out, so that a bounce can quote them and
//! a relay never forwards a client's odd encoding verbatim.

use crate::limits;
use crate::smtp::reply::Reply;

/// RET= of MAIL (RFC 3461 §4.3): what a failure bounce carries of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// RET=FULL: the whole message.
    Full,
    /// RET=HDRS: the headers only.
    Headers,
}

/// The per-message DSN parameters of MAIL (RFC 3461 §4.3, §4.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dsn {
    /// None: not given (the reporting MTA chooses; we return headers only).
    pub ret: Option<Ret>,
    /// ENVID, xtext-decoded: printable US-ASCII (RFC 3461 §4.4).
    pub envid: Option<String>,
}

/// When a recipient wants a DSN (RFC 3461 §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Notify {
    /// No NOTIFY given: RFC 3461 §4.1 leaves it to us as if FAILURE or
    /// FAILURE,DELAY; we act as FAILURE,DELAY (what Postfix and Sendmail do).
    #[default]
    Unspecified,
    /// NOTIFY=NEVER: no DSN at all.
    Never,
    /// NOTIFY= a non-empty set of SUCCESS, FAILURE, DELAY.
    On { success: bool, failure: bool, delay: bool },
}

impl Notify {
    /// Send a DSN on successful delivery (only if asked, §4.1).
    pub fn wants_success(&self) -> bool {
        matches!(self, Notify::On { success: true, .. })
    }

    /// Send a failure bounce (the default when nothing was said).
    pub fn wants_failure(&self) -> bool {
        matches!(self, Notify::Unspecified | Notify::On { failure: true, .. })
    }

    /// Send a delay warning (the default when nothing was said).
    pub fn wants_delay(&self) -> bool {
        matches!(self, Notify::Unspecified | Notify::On { delay: true, .. })
    }
}

/// The per-recipient DSN parameters of RCPT (RFC 3461 §4.1, §4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientDsn {
    pub notify: Notify,
    /// ORCPT: (addr-type as given, e.g. "rfc822" or "utf-8"; the address,
    /// decoded). The original recipient for the bounce's Original-Recipient.
    pub orcpt: Option<(String, String)>,
}

impl Dsn {
    pub fn is_default(&self) -> bool {
        *self == Dsn::default()
    }

    /// The MAIL parameters for a downstream that offers DSN, each with its
    /// leading space: ` RET=HDRS ENVID=...` (empty when nothing was given).
    pub fn mail_params(&self) -> String {
        let mut out = String::new();
        match self.ret {
            Some(Ret::Full) => out.push_str(" RET=FULL"),
            Some(Ret::Headers) => out.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = &self.envid {
            out.push_str(" ENVID=");
            out.push_str(&xtext_encode(envid));
        }
        out
    }
}

impl RecipientDsn {
    pub fn is_default(&self) -> bool {
        *self == RecipientDsn::default()
    }

    /// The parameters to relay for a recipient we received as `received_as`
    /// and send on as `sent_as` (an LDAP routing rewrite, say). RFC 3461
    /// §5.2.1: without an ORCPT from the client, the relaying MTA may
    /// add one with the address it received, so the sender's DSN still
    /// names the address they used.
    pub fn relayed(&self, received_as: &str, sent_as: &str) -> RecipientDsn {
        let mut relayed = self.clone();
        if relayed.orcpt.is_none() && received_as != sent_as {
            let addr_type = if received_as.is_ascii() { "rfc822" } else { "utf-8" }; // RFC 6533 §3
            relayed.orcpt = Some((addr_type.to_string(), received_as.to_string()));
        }
        relayed
    }

    /// The value of a bounce's Original-Recipient field (RFC 3464 §2.3.1,
    /// RFC 3461 §6.3: the ORCPT, decoded), e.g. "rfc822;a+b@c.test". Safe
    /// in a header: the parser refused control characters.
    pub fn original_recipient(&self) -> Option<String> {
        self.orcpt
            .as_ref()
            .map(|(addr_type, address)| format!("{addr_type};{address}"))
    }

    /// The RCPT parameters for a downstream that offers DSN, each with its
    /// leading space: ` NOTIFY=FAILURE,DELAY ORCPT=rfc822;a+2Bb@c` (empty
    /// when nothing was given).
    pub fn rcpt_params(&self) -> String {
        let mut out = String::new();
        match self.notify {
            Notify::Unspecified => {}
            Notify::Never => out.push_str(" NOTIFY=NEVER"),
            Notify::On {
                success,
                failure,
                delay,
            } => {
                let on = [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")];
                let names: Vec<&str> = on.iter().filter(|(set, _)| *set).map(|(_, name)| *name).collect();
                out.push_str(" NOTIFY=");
                out.push_str(&names.join(","));
            }
        }
        if let Some((addr_type, address)) = &self.orcpt {
            out.push_str(" ORCPT=");
            out.push_str(addr_type);
            out.push(';');
            out.push_str(&orcpt_encode(addr_type, address));
        }
        out
    }
}

/// 501 5.5.4 for a DSN parameter we understand but cannot accept (issue 10;
/// RFC 3461 §4 leaves the code to us, 501 is RFC 5321's "syntax error in
/// parameters or arguments").
fn bad(parameter: &str, why: &str) -> Reply {
    Reply::new(501, "5.5.4", format!("Bad {parameter} parameter syntax: {why}"))
}

/// The given value of a `KEYWORD=value` parameter, or 501 without one.
fn required<'a>(parameter: &str, value: Option<&'a str>) -> Result<&'a str, Reply> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad(parameter, "a value is required"))
}

/// RET=FULL|HDRS (RFC 3461 §4.3), case-insensitive.
pub fn parse_ret(value: Option<&str>) -> Result<Ret, Reply> {
    match required("RET", value)? {
        v if v.eq_ignore_ascii_case("FULL") => Ok(Ret::Full),
        v if v.eq_ignore_ascii_case("HDRS") => Ok(Ret::Headers),
        _ => Err(bad("RET", "FULL or HDRS expected")),
    }
}

/// ENVID=xtext (RFC 3461 §4.4): at most 100 characters, printable US-ASCII
/// once decoded. Returns the decoded value.
pub fn parse_envid(value: Option<&str>) -> Result<String, Reply> {
    let value = required("ENVID", value)?;
    if value.len() > limits::DSN_ENVID_CHARS_MAX {
        return Err(bad("ENVID", "longer than 100 characters"));
    }
    let decoded = xtext_decode(value).ok_or_else(|| bad("ENVID", "not xtext"))?;
    if !decoded.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(bad("ENVID", "not printable US-ASCII"));
    }
    Ok(decoded)
}

/// NOTIFY=NEVER or a comma-separated set of SUCCESS, FAILURE, DELAY
/// (RFC 3461 §4.1): NEVER stands alone, no keyword twice.
pub fn parse_notify(value: Option<&str>) -> Result<Notify, Reply> {
    let value = required("NOTIFY", value)?;
    let (mut never, mut success, mut failure, mut delay) = (false, false, false, false);
    for keyword in value.split(',') {
        let flag = match keyword.to_ascii_uppercase().as_str() {
            "NEVER" => &mut never,
            "SUCCESS" => &mut success,
            "FAILURE" => &mut failure,
            "DELAY" => &mut delay,
            _ => return Err(bad("NOTIFY", "NEVER or SUCCESS, FAILURE, DELAY expected")),
        };
        if std::mem::replace(flag, true) {
            return Err(bad("NOTIFY", "a keyword is repeated"));
        }
    }
    match never {
        true if success || failure || delay => Err(bad("NOTIFY", "NEVER must stand alone")),
        true => Ok(Notify::Never),
        false => Ok(Notify::On {
            success,
            failure,
            delay,
        }),
    }
}

/// ORCPT=addr-type;xtext (RFC 3461 §4.2): addr-type is an atom; the
/// address is xtext, or utf-8-addr-xtext for addr-type utf-8 (RFC 6533 §3).
/// At most 500 characters. Returns (addr-type, decoded address).
pub fn parse_orcpt(value: Option<&str>) -> Result<(String, String), Reply> {
    let value = required("ORCPT", value)?;
    if value.len() > limits::DSN_ORCPT_CHARS_MAX {
        return Err(bad("ORCPT", "longer than 500 characters"));
    }
    let (addr_type, encoded) = value
        .split_once(';')
        .ok_or_else(|| bad("ORCPT", "addr-type;address expected"))?;
    if addr_type.is_empty() || !addr_type.bytes().all(is_atext) {
        return Err(bad("ORCPT", "the addr-type is not an atom"));
    }
    if encoded.is_empty() {
        return Err(bad("ORCPT", "the address is empty"));
    }
    let decoded = orcpt_decode(addr_type, encoded).ok_or_else(|| bad("ORCPT", "the address is not xtext"))?;
    // The address is quoted in a bounce's Original-Recipient field: a
    // control character there (CR, LF) would forge header lines.
    if decoded.chars().any(char::is_control) {
        return Err(bad("ORCPT", "control characters in the address"));
    }
    Ok((addr_type.to_string(), decoded))
}

/// RFC 5322 §3.2.3 atext.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn is_utf8_addr_type(addr_type: &str) -> bool {
    addr_type.eq_ignore_ascii_case("utf-8")
}

fn orcpt_decode(addr_type: &str, encoded: &str) -> Option<String> {
    if is_utf8_addr_type(addr_type) {
        utf8_addr_xtext_decode(encoded)
    } else {
        xtext_decode(encoded)
    }
}

fn orcpt_encode(addr_type: &str, address: &str) -> String {
    if is_utf8_addr_type(addr_type) {
        utf8_addr_xtext_encode(address)
    } else {
        xtext_encode(address)
    }
}

/// RFC 3461 §4: xchar is "!" to "~" except "+" and "=".
fn is_xchar(b: u8) -> bool {
    (b'!'..=b'~').contains(&b) && b != b'+' && b != b'='
}

/// xtext → its value: `+HH` (upper-case hex) is the octet HH, an xchar is
/// itself. None for anything else, or octets that are not UTF-8.
pub fn xtext_decode(xtext: &str) -> Option<String> {
    let bytes = xtext.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(upper_hex(hex[0])? << 4 | upper_hex(hex[1])?);
                i += 3;
            }
            b if is_xchar(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// A value → xtext: every octet that is not an xchar becomes `+HH`.
pub fn xtext_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if is_xchar(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// RFC 3461 §4: hexchar digits are 0-9 and A-F only.
fn upper_hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 6533 §3 utf-8-addr-xtext: QCHAR (printable ASCII but "+", "=",
/// "\") or `\x{HEXPOINT}` for any other character.
fn utf8_addr_xtext_decode(encoded: &str) -> Option<String> {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(c) = rest.chars().next() {
        if let Some(tail) = rest.strip_prefix("\\x{") {
            let end = tail.find('}')?;
            let hex = &tail[..end];
            // HEXPOINT: 2 to 6 upper-case hex digits, no leading zeros beyond that.
            if !(2..=6).contains(&hex.len()) || !hex.bytes().all(|b| upper_hex(b).is_some()) {
                return None;
            }
            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
            rest = &tail[end + 1..];
        } else if c.is_ascii() && is_xchar(c as u8) && c != '\\' {
            out.push(c);
            rest = &rest[1..];
        } else {
            return None;
        }
    }
    Some(out)
}

fn utf8_addr_xtext_encode(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    for c in address.chars() {
        if c.is_ascii() && is_xchar(c as u8) && c != '\\' {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:02X}}}", c as u32));
        }
    }
    out
}

#[cfg(test)]
mod tests;
