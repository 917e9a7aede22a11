//! Bounces: the RFC 3464 delivery status notification delivery sends to
//! the envelope sender when a recipient is refused (5xx) or its bounce
//! profile gives up (Action: failed), or as a delay warning while it is
//! still retried (Action: delayed). Pure: delivery gathers a `Report`
//! (the envelope, the recipients' outcomes, the stored message) and
//! `build` returns the whole RFC 5322 message, which delivery spools and
//! sends like any other mail, from the null sender (RFC 5321 §4.5.5).
//!
//! The message (RFC 6522 multipart/report, report-type=delivery-status):
//! 1. text/plain: what happened, for a person;
//! 2. message/delivery-status (RFC 3464 §2): Reporting-MTA, Arrival-Date
//!    and per recipient Final-Recipient, Action, Status, Remote-MTA,
//!    Diagnostic-Code;
//! 3. the original (RFC 3461 §4.3 RET): message/rfc822 whole, or
//!    text/rfc822-headers when RET=HDRS was asked for or the message is
//!    larger than `limits::BOUNCE_ORIGINAL_BYTES_MAX`.
//!
//! The same report, with Action: delivered or relayed, answers a
//! NOTIFY=SUCCESS (RFC 3461 §4.1, §6.2); a report that tells of no failure
//! returns the original's headers only (RFC 3461 §4.3).
//!
//! `should_send` says when no bounce may go at all: to the null sender, or
//! for a message that is itself a bounce or an automatic reply.

mod fields;
mod original;

use std::collections::HashSet;

use crate::clock;
use crate::limits;

/// RFC 3464 §2.3.3, the actions a report tells of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Not delivered and no longer tried.
    Failed,
    /// Not delivered yet, still tried (a delay warning).
    Delayed,
    /// Delivered (NOTIFY=SUCCESS; the downstream was the final mailbox).
    Delivered,
    /// Handed to a downstream that does not offer DSN (NOTIFY=SUCCESS,
    /// RFC 3461 §6.2.2): no further report will come.
    Relayed,
}

impl Action {
    /// As the Action field writes it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }

    /// The status written when the given one is not an RFC 3463 code.
    fn default_status(self) -> &'static str {
        match self {
            Action::Failed => "5.0.0",
            Action::Delayed => "4.0.0",
            Action::Delivered | Action::Relayed => "2.0.0",
        }
    }

    /// What the human part says of a recipient.
    fn described(self) -> &'static str {
        match self {
            Action::Failed => "delivery failed",
            Action::Delayed => "delivery delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed (no further notices will come from its server)",
        }
    }
}

/// What of the original a bounce returns (RFC 3461 §4.3 RET).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ret {
    /// The whole message in a failure report, up to
    /// `limits::BOUNCE_ORIGINAL_BYTES_MAX` (the headers only past it, and
    /// in reports of no failure). The default when the sender gave no RET.
    #[default]
    Full,
    /// The headers only (RET=HDRS).
    Headers,
}

/// One recipient's block of the delivery-status part (RFC 3464 §2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientReport {
    /// The address delivery tried (the envelope's RCPT TO).
    pub final_recipient: String,
    /// ORCPT as the client gave it, "rfc822;x@y" (RFC 3461 §4.2).
    pub original_recipient: Option<String>,
    pub action: Action,
    /// RFC 3463 enhanced status, "5.1.1" (`status_of` makes one from a reply).
    pub status: String,
    /// The downstream host that answered, as routed or found by MX.
    pub remote_mta: Option<String>,
    /// The downstream's reply, "550 5.1.1 User unknown".
    pub diagnostic: Option<String>,
    /// When delivery last tried, Unix seconds.
    pub last_attempt_secs: Option<u64>,
    /// Delayed only: when retries end (`retry::retry_until_secs`).
    pub will_retry_until_secs: Option<u64>,
}

impl RecipientReport {
    /// A recipient the downstream refused (5xx at RCPT or after the dot):
    /// failed, with the reply's own status.
    pub fn refused(final_recipient: &str, remote_mta: Option<&str>, reply: &str, attempt_secs: u64) -> Self {
        Self::from_attempt(final_recipient, Action::Failed, status_of(reply), remote_mta, Some(reply), attempt_secs)
    }

    /// A recipient whose bounce profile gave up (`retry::NextAttempt::
    /// GiveUp`): failed, with the last reply if there was one and
    /// `expired_status` (4.4.7 when the reply had no better code).
    pub fn expired(final_recipient: &str, remote_mta: Option<&str>, last_reply: Option<&str>, attempt_secs: u64) -> Self {
        let status = expired_status(last_reply);
        Self::from_attempt(final_recipient, Action::Failed, status, remote_mta, last_reply, attempt_secs)
    }

    /// A recipient still retried (a delay warning) until `retry_until_secs`.
    pub fn delayed(final_recipient: &str, remote_mta: Option<&str>, last_reply: Option<&str>, attempt_secs: u64, retry_until_secs: u64) -> Self {
        let status = last_reply.map_or_else(|| "4.0.0".to_string(), status_of);
        let mut report = Self::from_attempt(final_recipient, Action::Delayed, status, remote_mta, last_reply, attempt_secs);
        report.will_retry_until_secs = Some(retry_until_secs);
        report
    }

    /// The same report with the client's ORCPT ("rfc822;x@y").
    pub fn with_original_recipient(mut self, orcpt: Option<String>) -> Self {
        self.original_recipient = orcpt;
        self
    }

    fn from_attempt(final_recipient: &str, action: Action, status: String, remote_mta: Option<&str>, reply: Option<&str>, attempt_secs: u64) -> Self {
        RecipientReport {
            final_recipient: final_recipient.to_string(),
            original_recipient: None,
            action,
            status,
            remote_mta: remote_mta.map(str::to_string),
            diagnostic: reply.map(str::to_string),
            last_attempt_secs: Some(attempt_secs),
            will_retry_until_secs: None,
        }
    }
}

/// Everything one bounce says, about one message.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// Our host name: Reporting-MTA and the From's domain.
    pub reporting_mta: &'a str,
    pub queue_id: &'a str,
    /// The envelope's MAIL FROM: who the bounce goes to.
    pub sender: &'a str,
    /// ENVID (RFC 3461 §4.4), xtext-decoded.
    pub envid: Option<&'a str>,
    /// When we accepted the message, Unix seconds.
    pub arrival_secs: u64,
    pub ret: Ret,
    pub recipients: Vec<RecipientReport>,
    /// The stored message: header block, empty line, body; CRLF lines.
    pub original: &'a [u8],
}

/// The whole bounce message, CRLF lines, ready to spool.
pub fn build(report: &Report, now_secs: u64) -> Vec<u8> {
    let parts = [human_part(report), status_part(report), returned_part(report)];
    let boundary = boundary_for(report.queue_id, now_secs, &parts);
    let eight_bit = parts.iter().any(|p| !p.body.is_ascii());
    let mut out = top_header(report, now_secs, &boundary, eight_bit).into_bytes();
    // RFC 2046 §5.1.1: a preamble for readers that do not know MIME.
    out.extend_from_slice(b"This is a MIME-encapsulated message.\r\n");
    for part in &parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(part.header.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&part.body);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Whether a bounce may be sent for a message from `mail_from` at all:
/// never to the null sender (RFC 5321 §4.5.5, RFC 3461 §6.2: that is how
/// bounce loops are avoided) nor to MAILER-DAEMON, and never for a message
/// that is itself a report (multipart/report, RFC 6522) or an automatic
/// reply (`Auto-Submitted: auto-replied`, RFC 3834 §5). Mail marked only
/// `auto-generated` still bounces: its sender is a real mailbox that wants
/// to know (RFC 3834's rule is for responders, not for DSNs).
pub fn should_send(mail_from: &str, original: &[u8]) -> bool {
    let sender = fields::strip_angles(mail_from);
    let local = sender.rsplit_once('@').map_or(sender, |(local, _)| local);
    !sender.is_empty() && !local.eq_ignore_ascii_case("mailer-daemon") && !original::is_bounce_or_auto_reply(original)
}

/// The RFC 3463 enhanced status of a downstream reply: its own when it has
/// one of the reply's class ("550 5.1.1 …" → "5.1.1"), else the class
/// alone ("550 no code" → "5.0.0", "451 …" → "4.0.0"). A reply without a
/// code (a connection error's text) is temporary: "4.0.0".
pub fn status_of(reply: &str) -> String {
    let first_line = reply.trim_start().lines().next().unwrap_or("");
    let class = match first_line.as_bytes() {
        [c @ (b'2' | b'4' | b'5'), b'0'..=b'9', b'0'..=b'9', rest @ ..] if matches!(rest.first(), None | Some(b' ' | b'-')) => *c as char,
        _ => return "4.0.0".into(),
    };
    let enhanced = first_line.get(4..).unwrap_or("").split_whitespace().next().unwrap_or("");
    match enhanced_status(enhanced) {
        Some(status) if status.starts_with(class) => status.to_string(),
        _ => format!("{class}.0.0"),
    }
}

/// The status of a recipient bounced because its profile gave up (time or
/// retries): the last reply's own when it had one, else RFC 3463 §3.5
/// 4.4.7 "delivery time expired". (A 4.x status with Action: failed is
/// how RFC 3464 reports a temporary failure that became final.)
pub fn expired_status(last_reply: Option<&str>) -> String {
    match last_reply.map(status_of) {
        Some(status) if status != "4.0.0" => status,
        _ => "4.4.7".into(),
    }
}

/// `class.subject.detail` (RFC 3463 §2: class 2, 4 or 5; subject and
/// detail 1 to 3 digits), or None.
fn enhanced_status(word: &str) -> Option<&str> {
    let mut numbers = word.split('.');
    let ok = matches!(numbers.next(), Some("2" | "4" | "5"))
        && numbers.by_ref().take(2).filter(|n| (1..=3).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit())).count() == 2
        && numbers.next().is_none();
    ok.then_some(word)
}

/// One body part: its header lines (each with CRLF) and its content
/// (ending with CRLF).
struct Part {
    header: String,
    body: Vec<u8>,
}

/// The top-level header (RFC 5322 §3.6, RFC 6522 §3, RFC 3834 §5).
fn top_header(report: &Report, now_secs: u64, boundary: &str, eight_bit: bool) -> String {
    let host = fields::host(report.reporting_mta);
    let subject = match kind(report) {
        Action::Failed => "Undelivered Mail Returned to Sender",
        Action::Delayed => "Delayed Mail (still being retried)",
        Action::Delivered | Action::Relayed => "Successful Mail Delivery Report",
    };
    let sender = fields::one_line(fields::strip_angles(report.sender));
    let mut h = String::new();
    h.push_str(&format!("From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n"));
    h.push_str(&fields::header("To", &format!("<{sender}>")));
    h.push_str(&format!("Subject: {subject}\r\n"));
    h.push_str(&format!("Date: {}\r\n", clock::rfc5322(now_secs)));
    h.push_str(&format!("Message-ID: <{}@{host}>\r\n", message_id_left(report, now_secs)));
    h.push_str("Auto-Submitted: auto-replied\r\n");
    h.push_str("MIME-Version: 1.0\r\n");
    h.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"));
    h.push_str(if eight_bit { "Content-Transfer-Encoding: 8bit\r\n" } else { "Content-Transfer-Encoding: 7bit\r\n" });
    h.push_str("\r\n");
    h
}

/// What the report is, for its subject and opening: failed if any
/// recipient failed, else delayed if any is delayed, else a success report.
fn kind(report: &Report) -> Action {
    let any = |action| report.recipients.iter().any(|r| r.action == action);
    [Action::Failed, Action::Delayed, Action::Relayed].into_iter().find(|&a| any(a)).unwrap_or(Action::Delivered)
}

/// Unique per bounce: time, queue id, and a hash of what it reports (two
/// bounces of one message in the same second name other recipients).
fn message_id_left(report: &Report, now_secs: u64) -> String {
    let mut hash = crc32fast::Hasher::new();
    for r in &report.recipients {
        hash.update(r.action.name().as_bytes());
        hash.update(r.final_recipient.as_bytes());
        hash.update(b"\0");
    }
    format!("{now_secs}.{}.{:08x}", boundary_safe(report.queue_id), hash.finalize())
}

/// The queue id with only characters a boundary and a Message-ID may hold.
fn boundary_safe(queue_id: &str) -> String {
    queue_id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')).take(32).collect()
}

/// A boundary that occurs in none of the parts (RFC 2046 §5.1.1: it must
/// not appear in the encapsulated text, not even as the start of a longer
/// string, which lenient parsers would take for it): from the queue id and
/// time, and when a part contains that, with the smallest counter suffix
/// no part contains. One scan of the parts, whatever an original holds (a
/// candidate-by-candidate search would let a crafted original make us scan
/// it once per planted variant).
fn boundary_for(queue_id: &str, now_secs: u64, parts: &[Part; 3]) -> String {
    let base = format!("=_portcullis_{}_{now_secs:x}", boundary_safe(queue_id));
    let needle = format!("--{base}");
    let mut base_taken = false;
    let mut counters_taken = HashSet::new();
    for part in parts {
        let mut rest = &part.body[..];
        while let Some(at) = original::find(rest, needle.as_bytes()) {
            base_taken = true;
            // "--BASE_12…" rules out the counters 1 and 12 (and longer ones).
            if let Some(digits) = rest[at + needle.len()..].strip_prefix(b"_") {
                let mut n = 0u64;
                for &d in digits.iter().take(18).take_while(|d| d.is_ascii_digit()) {
                    n = n * 10 + u64::from(d - b'0');
                    counters_taken.insert(n);
                }
            }
            rest = &rest[at + 1..];
        }
    }
    if !base_taken {
        return base;
    }
    let counter = (1u64..).find(|n| !counters_taken.contains(n)).expect("a counter is free");
    let boundary = format!("{base}_{counter}");
    // RFC 2046 §5.1.1: at most 70 characters: 13 + 32 + 1 + 16, "_" and a
    // counter no larger than the number of variants a part can hold.
    debug_assert!(boundary.len() <= 70, "{boundary}");
    boundary
}

/// Part 1, for a person: what happened to whom, and what the downstream said.
fn human_part(report: &Report) -> Part {
    let host = fields::host(report.reporting_mta);
    let mut text = format!("This is the mail system at host {host}.\r\n\r\n");
    text.push_str(match kind(report) {
        Action::Failed => "Your message could not be delivered to one or more recipients.\r\n",
        Action::Delayed => "Your message has not been delivered yet to one or more recipients.\r\n\
            The mail system keeps trying; you do not need to send it again.\r\n",
        Action::Delivered | Action::Relayed => "Your message was delivered to the recipients below, as you asked.\r\n",
    });
    text.push_str(match returns_whole(report) {
        true => "It is attached below.\r\n",
        false => "Its headers are attached below.\r\n",
    });
    text.push_str(&format!("\r\nQueue ID: {}\r\n\r\n", fields::one_line(report.queue_id)));
    for r in &report.recipients {
        text.push_str(&human_recipient(r));
    }
    let header = match text.is_ascii() {
        true => "Content-Type: text/plain; charset=us-ascii\r\nContent-Description: Notification\r\n",
        false => "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nContent-Description: Notification\r\n",
    };
    Part { header: header.into(), body: text.into_bytes() }
}

/// "<rcpt>: delivery failed (5.1.1)", the downstream's words, the retry end.
fn human_recipient(r: &RecipientReport) -> String {
    let address = fields::one_line(fields::strip_angles(&r.final_recipient));
    // Each line bounded as a whole (`one_line`): a long address, host and
    // reply together must not pass RFC 5322 §2.1.1's 998 octets.
    let mut text = format!("{}\r\n", fields::one_line(&format!("<{address}>: {} ({})", r.action.described(), r.status)));
    if let Some(reply) = &r.diagnostic {
        let by = r.remote_mta.as_deref().map_or(String::from("the remote server"), |h| format!("host {}", fields::host(h)));
        text.push_str(&format!("    {}\r\n", fields::one_line(&format!("{by} said: {}", fields::diagnostic(reply)))));
    }
    if let (Action::Delayed, Some(until)) = (r.action, r.will_retry_until_secs) {
        text.push_str(&format!("    retried until {}\r\n", clock::rfc5322(until)));
    }
    text.push_str("\r\n");
    text
}

/// Part 2, for programs: RFC 3464 §2.2 per-message fields, then one block
/// per recipient (§2.3), each after an empty line.
fn status_part(report: &Report) -> Part {
    let mut s = fields::header("Reporting-MTA", &format!("dns; {}", fields::host(report.reporting_mta)));
    s.push_str(&fields::header("X-Portcullis-Queue-ID", report.queue_id));
    if let Some(envid) = report.envid {
        s.push_str(&fields::header("Original-Envelope-Id", envid));
    }
    s.push_str(&format!("Arrival-Date: {}\r\n", clock::rfc5322(report.arrival_secs)));
    for r in &report.recipients {
        s.push_str("\r\n");
        s.push_str(&recipient_block(r));
    }
    Part { header: "Content-Type: message/delivery-status\r\nContent-Description: Delivery report\r\n".into(), body: s.into_bytes() }
}

/// RFC 3464 §2.3: one recipient's fields.
fn recipient_block(r: &RecipientReport) -> String {
    let mut s = String::new();
    if let Some(orcpt) = &r.original_recipient {
        s.push_str(&fields::header("Original-Recipient", &fields::original_recipient(orcpt)));
    }
    s.push_str(&fields::header("Final-Recipient", &fields::typed_address(&r.final_recipient)));
    s.push_str(&format!("Action: {}\r\n", r.action.name()));
    let status = enhanced_status(r.status.trim()).unwrap_or(r.action.default_status());
    s.push_str(&format!("Status: {status}\r\n"));
    if let Some(host) = &r.remote_mta {
        s.push_str(&fields::header("Remote-MTA", &format!("dns; {}", fields::host(host))));
    }
    if let Some(reply) = &r.diagnostic {
        s.push_str(&fields::header("Diagnostic-Code", &format!("smtp; {}", fields::diagnostic(reply))));
    }
    if let Some(at) = r.last_attempt_secs {
        s.push_str(&format!("Last-Attempt-Date: {}\r\n", clock::rfc5322(at)));
    }
    if let (Action::Delayed, Some(until)) = (r.action, r.will_retry_until_secs) {
        s.push_str(&format!("Will-Retry-Until: {}\r\n", clock::rfc5322(until)));
    }
    s
}

/// RET=FULL, a failure to report (RFC 3461 §4.3: a report of no failure
/// returns the headers only), and small enough to return whole.
fn returns_whole(report: &Report) -> bool {
    report.ret == Ret::Full && kind(report) == Action::Failed && report.original.len() <= limits::BOUNCE_ORIGINAL_BYTES_MAX
}

/// Part 3: the original whole (message/rfc822) or its header block
/// (text/rfc822-headers, RFC 6522 §4). RFC 2046 §5.2.1: message/rfc822
/// takes no base64, so 8-bit content is labelled 8bit as it is.
fn returned_part(report: &Report) -> Part {
    let (content_type, description, mut body) = if returns_whole(report) {
        ("message/rfc822", "Undelivered Message", report.original.to_vec())
    } else {
        ("text/rfc822-headers", "Undelivered Message Headers", original::bounded_header_block(report.original))
    };
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    let encoding = if body.is_ascii() { "7bit" } else { "8bit" };
    let header = format!("Content-Type: {content_type}\r\nContent-Description: {description}\r\nContent-Transfer-Encoding: {encoding}\r\n");
    Part { header, body }
}

#[cfg(test)]
mod tests;
