//! The SMTP delivery client as a pure state machine (sans-IO), the mirror of
//! `session`: `pool` feeds it the downstream's reply bytes and asks
//! `next_action` what to do; commands accumulate in `output`. No socket, no
//! clock: the driver owns the timeouts and tells us when the connection died.
//!
//! One connection: greeting → EHLO (HELO after a 5xx, RFC 5321 §3.2) → Ready,
//! then any number of transactions, each leaving the connection Ready again.
//! With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write and
//! the replies are read in order; without it, one command per reply.
//!
//! STARTTLS (RFC 3207, `starttls`): with a mode that wants TLS and a
//! server that offers it, the client sends STARTTLS after EHLO, asks the
//! driver for the handshake (`Action::StartTls`), and says EHLO again once
//! it is told `tls_started`; what the server offered before is forgotten.

mod parse;
mod starttls;
mod stuff;
pub mod probe;
#[cfg(test)]
mod tests;

pub use parse::{Extensions, ReplyError, ReplyParser};
pub use starttls::StartTls;
pub use stuff::Stuffed;

use starttls::{after_hello, after_starttls, AfterHello, AfterStartTls, STARTTLS_COMMAND};

use crate::message::BodyType;
use crate::smtp::dsn::{Dsn, RecipientDsn};
use crate::smtp::Reply;

/// What goes to MAIL FROM / RCPT TO of one downstream transaction.
#[derive(Clone, Debug, Default)]
pub struct OutboundEnvelope {
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub body_type: BodyType,
    pub smtputf8: bool,
    /// RET and ENVID for MAIL (RFC 3461 §4.3, §4.4).
    pub dsn: Dsn,
    /// NOTIFY and ORCPT for each RCPT, parallel to `recipients`; empty =
    /// every recipient at its defaults (as `message::Envelope`).
    pub recipient_dsn: Vec<RecipientDsn>,
}

/// The fate of one recipient of a transaction, in the order of `recipients`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// The downstream answered 250 to the final dot for this recipient.
    Delivered(Reply),
    /// 4xx at some step: try again later.
    Deferred(Reply),
    /// 5xx at some step: do not try again.
    Failed(Reply),
}

/// Which client timeout applies to the read the driver is about to do
/// (RFC 5321 §4.5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// §4.5.3.2.1: the 220 greeting.
    Greeting,
    /// §4.5.3.2.2-4 and §4.5.3.2.7: EHLO, MAIL, RCPT, DATA, RSET.
    Command,
    /// §4.5.3.2.6: the reply to the final dot.
    DataTermination,
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write `output()`, then read bytes and `feed` them (or report `lost`).
    Read(Wait),
    /// Write `output()`, then the pieces of `Stuffed::new(body)`
    /// (§4.5.3.2.5 data block timeout), then call `body_sent`.
    SendBody,
    /// Write `output()`, then run the TLS handshake on the socket and call
    /// `tls_started` (or `tls_failed`). Nothing read before it counts.
    StartTls,
    /// Idle and usable: `start` a transaction or `quit`.
    Ready,
    /// The transaction is over: one outcome per recipient, in order. The
    /// connection is `Ready` again if `is_reusable()`.
    Done(Vec<RecipientOutcome>),
    /// The connection is unusable and no recipient got an answer; the reason
    /// names the side at fault. Write `output()` if any, then close.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    /// STARTTLS sent, its reply awaited.
    StartTls,
    /// 220 to STARTTLS: the driver runs the handshake.
    Handshake,
    Ready,
    Mail,
    Rcpt(usize),
    Data,
    Body,
    Dot,
    /// A pipelined DATA got 354 although no recipient was accepted: we sent a
    /// lone "." and wait for its reply.
    LoneDot,
    Rset,
    Dead(String),
}

/// What we know about one recipient of the current transaction.
#[derive(Clone, Debug)]
enum Slot {
    Pending,
    /// 2xx to RCPT; its fate is the reply to the final dot.
    Accepted,
    Decided(RecipientOutcome),
}

/// A 4xx reply defers, a 5xx reply fails (RFC 5321 §4.2.1).
fn outcome_of(reply: Reply) -> RecipientOutcome {
    if reply.is_permanent() {
        RecipientOutcome::Failed(reply)
    } else {
        RecipientOutcome::Deferred(reply)
    }
}

/// The pure client of one downstream connection.
#[derive(Debug)]
pub struct Client {
    helo_name: String,
    state: State,
    extensions: Extensions,
    parser: ReplyParser,
    output: Vec<u8>,
    tls: StartTls,
    /// The handshake is done: the session runs over TLS.
    encrypted: bool,
    /// The connection died because the TLS it required was not to be had.
    tls_refused: bool,
    /// Rendered commands of the transaction (MAIL, each RCPT, DATA) and where
    /// each ends, so lock-step mode can send them one by one without
    /// keeping the envelope.
    script: Vec<u8>,
    script_ends: Vec<usize>,
    slots: Vec<Slot>,
    pipelined: bool,
    mail_accepted: bool,
    /// Replies received in this transaction, and whether the first was 421.
    replies: u32,
    first_reply_421: bool,
    done: Option<Vec<RecipientOutcome>>,
}

impl Client {
    /// A client on a just-opened connection, waiting for the greeting;
    /// no TLS.
    pub fn new(helo_name: &str) -> Client {
        Client::with_tls(helo_name, StartTls::Off)
    }

    /// A client that asks for STARTTLS as `tls` says.
    pub fn with_tls(helo_name: &str, tls: StartTls) -> Client {
        Client {
            helo_name: helo_name.to_string(),
            state: State::Greeting,
            extensions: Extensions::default(),
            parser: ReplyParser::default(),
            output: Vec::with_capacity(256),
            tls,
            encrypted: false,
            tls_refused: false,
            script: Vec::with_capacity(256),
            script_ends: Vec::new(),
            slots: Vec::new(),
            pipelined: false,
            mail_accepted: false,
            replies: 0,
            first_reply_421: false,
            done: None,
        }
    }

    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The session runs over TLS (the handshake after STARTTLS is done).
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The connection failed because the TLS its mode requires could not be
    /// had (not offered, refused, handshake failed): the alert case.
    pub fn tls_refused(&self) -> bool {
        self.tls_refused
    }

    /// The driver finished the handshake: say EHLO again over TLS, having
    /// forgotten the extensions offered in clear (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        debug_assert_eq!(self.state, State::Handshake);
        self.encrypted = true;
        self.extensions = Extensions::default();
        self.parser = ReplyParser::default();
        self.output.extend_from_slice(format!("EHLO {}\r\n", self.helo_name).as_bytes());
        self.state = State::Ehlo;
    }

    /// The handshake failed: the connection is unusable (its bytes are no
    /// longer SMTP), and the TLS was not to be had on it.
    pub fn tls_failed(&mut self, why: &str) {
        self.tls_refused = self.tls == StartTls::Required;
        self.lose(format!("TLS handshake with the downstream failed: {why}"), None);
    }

    /// Commands to write before the next read.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Drop the first `n` bytes of output (they were written).
    pub fn consume_output(&mut self, n: usize) {
        self.output.drain(..n);
    }

    /// The connection may carry another transaction.
    pub fn is_reusable(&self) -> bool {
        self.state == State::Ready
    }

    /// The current transaction got no reply, or only a leading 421: the
    /// connection was already dead or being closed by the server (a server
    /// may send 421 at any time, e.g. on its idle timeout, RFC 5321 §3.8).
    /// Nothing of it reached the downstream, so it is safe to repeat on a
    /// fresh connection.
    pub fn is_stale(&self) -> bool {
        self.replies == 0 || (self.replies == 1 && self.first_reply_421)
    }

    /// What the client is waiting for, for timeout messages in the log.
    pub fn awaiting(&self) -> &'static str {
        match self.state {
            State::Greeting => "the greeting",
            State::Ehlo => "the reply to EHLO",
            State::Helo => "the reply to HELO",
            State::StartTls => "the reply to STARTTLS",
            State::Handshake => "the TLS handshake",
            State::Mail => "the reply to MAIL",
            State::Rcpt(_) => "the reply to RCPT",
            State::Data => "the reply to DATA",
            State::Body => "the downstream to take the message body",
            State::Dot | State::LoneDot => "the reply to the end of data",
            State::Rset => "the reply to RSET",
            State::Ready | State::Dead(_) => "nothing",
        }
    }

    pub fn next_action(&mut self) -> Action {
        if let Some(outcomes) = self.done.take() {
            return Action::Done(outcomes);
        }
        match &self.state {
            State::Greeting => Action::Read(Wait::Greeting),
            State::Ehlo
            | State::Helo
            | State::StartTls
            | State::Mail
            | State::Rcpt(_)
            | State::Data
            | State::Rset => Action::Read(Wait::Command),
            State::Dot | State::LoneDot => Action::Read(Wait::DataTermination),
            State::Body => Action::SendBody,
            State::Handshake => Action::StartTls,
            State::Ready => Action::Ready,
            State::Dead(reason) => Action::Failed(reason.clone()),
        }
    }

    /// Bytes read from the downstream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Dead(_)) {
            return;
        }
        self.parser.push(bytes);
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => self.on_reply(reply),
                Ok(None) => break,
                Err(e) => {
                    self.lose(format!("downstream protocol error: {e}"), None);
                    break;
                }
            }
            if matches!(self.state, State::Dead(_)) {
                return;
            }
        }
        if matches!(self.state, State::Ready | State::Handshake) && !self.parser.is_empty() {
            // Bytes after the last reply we asked for would be taken for the
            // reply to our next command; after the 220 to STARTTLS they
            // would be clear text injected into the TLS session (RFC 3207
            // §4.2, CVE-2011-0411 in reverse).
            self.lose("downstream sent bytes nobody asked for".to_string(), None);
        }
    }

    /// The connection broke (EOF, reset, timeout): `reason` says how.
    pub fn lost(&mut self, reason: &str) {
        self.lose(reason.to_string(), None);
    }

    /// The driver wrote the whole stuffed body.
    pub fn body_sent(&mut self) {
        debug_assert_eq!(self.state, State::Body);
        self.state = State::Dot;
    }

    /// Close an idle connection politely (RFC 5321 §4.1.1.10); the driver
    /// writes `output()` and closes without waiting for the 221.
    pub fn quit(&mut self) {
        if self.state == State::Ready {
            self.output.extend_from_slice(b"QUIT\r\n");
        }
        self.state = State::Dead("closed by us (QUIT)".to_string());
    }

    /// Begin a transaction on a Ready connection. `body_bytes` is the size of
    /// the body for SIZE (RFC 1870). Refusals we can decide ourselves come
    /// back as `Done` without any I/O.
    pub fn start(&mut self, envelope: &OutboundEnvelope, body_bytes: usize) {
        debug_assert_eq!(self.state, State::Ready, "start on a busy connection");
        let n = envelope.recipients.len();
        if n == 0 {
            self.done = Some(Vec::new());
            return;
        }
        if let Some(reply) = self.refuse_locally(envelope, body_bytes) {
            self.done = Some(vec![outcome_of(reply); n]);
            return;
        }
        self.render(envelope, body_bytes);
        self.slots.clear();
        self.slots.resize(n, Slot::Pending);
        self.pipelined = self.extensions.pipelining;
        self.mail_accepted = false;
        self.replies = 0;
        self.first_reply_421 = false;
        let first = if self.pipelined {
            self.script.len()
        } else {
            self.script_ends[0]
        };
        self.output.extend_from_slice(&self.script[..first]);
        self.state = State::Mail;
    }

    /// A transaction that cannot succeed on this connection whatever the
    /// server says: fail it before sending anything.
    fn refuse_locally(&self, envelope: &OutboundEnvelope, body_bytes: usize) -> Option<Reply> {
        let bad = |a: &String| {
            a.bytes()
                .any(|b| b < 0x20 || b == 0x7f || b == b'<' || b == b'>')
        };
        if bad(&envelope.mail_from) || envelope.recipients.iter().any(bad) {
            // Would smuggle a second command into ours: our bug upstream.
            return Some(Reply::new(
                501,
                "5.1.3",
                "Address with control characters (refused locally)",
            ));
        }
        if envelope.smtputf8 && !self.extensions.smtputf8 {
            // RFC 6531 §3.4: without SMTPUTF8 downstream the message cannot be relayed.
            return Some(Reply::new(
                553,
                "5.6.7",
                "Downstream does not support SMTPUTF8",
            ));
        }
        match self.extensions.size {
            Some(max) if max > 0 && body_bytes as u64 > max => Some(Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds downstream maximum of {max} bytes"),
            )),
            _ => None,
        }
    }

    /// MAIL, RCPT per recipient, DATA, as they go on the wire.
    fn render(&mut self, envelope: &OutboundEnvelope, body_bytes: usize) {
        use std::io::Write;
        self.script.clear();
        self.script_ends.clear();
        let s = &mut self.script;
        let _ = write!(s, "MAIL FROM:<{}>", envelope.mail_from);
        if envelope.body_type != BodyType::SevenBit && self.extensions.eight_bit_mime {
            // BINARYMIME needs BDAT (RFC 3030), which we do not send; the
            // stored body is CRLF lines, so 8BITMIME describes it.
            s.extend_from_slice(b" BODY=8BITMIME");
        }
        if self.extensions.size.is_some() {
            let _ = write!(s, " SIZE={body_bytes}");
        }
        if envelope.smtputf8 {
            s.extend_from_slice(b" SMTPUTF8");
        }
        // RFC 3461 §5.2.2: to a downstream without DSN the parameters are
        // left out; we are then the last MTA that knows them, and it is our
        // bounce (honouring NOTIFY/RET) that reports a later failure.
        let dsn = self.extensions.dsn;
        if dsn {
            s.extend_from_slice(envelope.dsn.mail_params().as_bytes());
        }
        s.extend_from_slice(b"\r\n");
        self.script_ends.push(s.len());
        debug_assert!(envelope.recipient_dsn.is_empty() || envelope.recipient_dsn.len() == envelope.recipients.len());
        for (i, rcpt) in envelope.recipients.iter().enumerate() {
            let _ = write!(s, "RCPT TO:<{rcpt}>");
            if let Some(rcpt_dsn) = envelope.recipient_dsn.get(i).filter(|_| dsn) {
                s.extend_from_slice(rcpt_dsn.rcpt_params().as_bytes());
            }
            s.extend_from_slice(b"\r\n");
            self.script_ends.push(s.len());
        }
        s.extend_from_slice(b"DATA\r\n");
        self.script_ends.push(s.len());
    }

    /// In lock-step mode, put the `k`-th command of the script in the output.
    fn send_step(&mut self, k: usize) {
        if !self.pipelined {
            let start = if k == 0 { 0 } else { self.script_ends[k - 1] };
            let end = self.script_ends[k];
            self.output.extend_from_slice(&self.script[start..end]);
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        if matches!(
            self.state,
            State::Mail | State::Rcpt(_) | State::Data | State::Dot
        ) {
            self.replies += 1;
            if self.replies == 1 {
                self.first_reply_421 = reply.code == 421;
            }
            if reply.code == 421 {
                // RFC 5321 §3.8: the server is closing the channel.
                let reason = format!("downstream closing the connection: {reply}");
                return self.lose(reason, Some(reply));
            }
        }
        match self.state.clone() {
            State::Greeting => self.on_greeting(reply),
            State::Ehlo => self.on_ehlo(reply),
            State::Helo if reply.code / 100 == 2 => self.hello_done(),
            State::Helo => self.lose(format!("downstream refused EHLO and HELO: {reply}"), None),
            State::StartTls => self.on_starttls(reply),
            State::Mail => self.on_mail(reply),
            State::Rcpt(i) => self.on_rcpt(i, reply),
            State::Data => self.on_data(reply),
            State::Dot => self.on_dot(reply),
            // 2xx or 5xx ("no valid recipients") both end the empty message.
            State::LoneDot if reply.code / 100 == 2 || reply.is_permanent() => self.finish(None),
            State::LoneDot => {
                self.finish(Some(format!("downstream answered a lone dot with {reply}")))
            }
            State::Rset if reply.code / 100 == 2 => self.finish(None),
            State::Rset => self.finish(Some(format!("downstream refused RSET: {reply}"))),
            State::Ready | State::Body | State::Handshake | State::Dead(_) => self.lose(
                format!("downstream sent a reply nobody asked for: {reply}"),
                None,
            ),
        }
    }

    fn on_greeting(&mut self, reply: Reply) {
        if reply.code == 220 {
            self.output
                .extend_from_slice(format!("EHLO {}\r\n", self.helo_name).as_bytes());
            self.state = State::Ehlo;
        } else {
            self.lose(format!("downstream refused the connection: {reply}"), None);
        }
    }

    fn on_ehlo(&mut self, reply: Reply) {
        if reply.code / 100 == 2 {
            self.extensions = Extensions::from_ehlo(&reply);
            self.hello_done();
        } else if reply.is_permanent() {
            // An old server that does not know EHLO (RFC 5321 §3.2).
            self.output
                .extend_from_slice(format!("HELO {}\r\n", self.helo_name).as_bytes());
            self.state = State::Helo;
        } else {
            self.lose(format!("downstream refused EHLO: {reply}"), None);
        }
    }

    /// EHLO or HELO was accepted: ready, or STARTTLS first, or (TLS
    /// required and not offered) QUIT and fail.
    fn hello_done(&mut self) {
        match after_hello(self.tls, self.encrypted, &self.extensions) {
            AfterHello::Ready => self.state = State::Ready,
            AfterHello::StartTls => {
                self.output.extend_from_slice(STARTTLS_COMMAND);
                self.state = State::StartTls;
            }
            AfterHello::Refuse(why) => self.refuse_clear(why),
        }
    }

    fn on_starttls(&mut self, reply: Reply) {
        if reply.code == 421 {
            // RFC 5321 §3.8: the server is closing the channel.
            return self.lose(format!("downstream closing the connection: {reply}"), None);
        }
        match after_starttls(self.tls, &reply) {
            AfterStartTls::Handshake => self.state = State::Handshake,
            AfterStartTls::Clear => self.state = State::Ready,
            AfterStartTls::Refuse(why) => self.refuse_clear(why),
        }
    }

    /// TLS is required and not to be had here: QUIT politely and fail the
    /// connection, nothing sent in clear.
    fn refuse_clear(&mut self, why: String) {
        self.output.extend_from_slice(b"QUIT\r\n");
        self.tls_refused = true;
        self.lose(why, None);
    }

    fn on_mail(&mut self, reply: Reply) {
        match reply.code / 100 {
            2 => {
                self.mail_accepted = true;
                self.send_step(1);
            }
            4 | 5 => {
                let outcome = outcome_of(reply);
                self.slots.fill(Slot::Decided(outcome));
                if !self.pipelined {
                    // No transaction was opened: nothing to reset.
                    return self.finish(None);
                }
            }
            _ => return self.lose(format!("downstream answered MAIL with {reply}"), None),
        }
        self.state = if self.slots.is_empty() {
            State::Data
        } else {
            State::Rcpt(0)
        };
    }

    fn on_rcpt(&mut self, i: usize, reply: Reply) {
        if !matches!(reply.code / 100, 2 | 4 | 5) {
            return self.lose(format!("downstream answered RCPT with {reply}"), None);
        }
        if self.mail_accepted {
            self.slots[i] = if reply.code / 100 == 2 {
                Slot::Accepted
            } else {
                Slot::Decided(outcome_of(reply))
            };
        }
        if i + 1 < self.slots.len() {
            self.send_step(i + 2);
            self.state = State::Rcpt(i + 1);
        } else if self.pipelined || self.any_accepted() {
            self.send_step(i + 2);
            self.state = State::Data;
        } else {
            // Lock-step and every recipient refused: do not send DATA.
            self.rset();
        }
    }

    fn on_data(&mut self, reply: Reply) {
        match reply.code {
            354 if self.any_accepted() => self.state = State::Body,
            354 => {
                // RFC 2920 §3.1: a pipelined DATA may be accepted although no
                // RCPT was; an empty message ends it without delivering.
                self.output.extend_from_slice(b".\r\n");
                self.state = State::LoneDot;
            }
            400..=599 => {
                let outcome = outcome_of(reply);
                for slot in &mut self.slots {
                    if matches!(slot, Slot::Accepted) {
                        *slot = Slot::Decided(outcome.clone());
                    }
                }
                if self.mail_accepted {
                    self.rset();
                } else {
                    self.finish(None);
                }
            }
            _ => self.lose(format!("downstream answered DATA with {reply}"), None),
        }
    }

    fn on_dot(&mut self, reply: Reply) {
        let outcome = match reply.code / 100 {
            2 => RecipientOutcome::Delivered(reply),
            4 | 5 => outcome_of(reply),
            _ => {
                return self.lose(
                    format!("downstream answered the final dot with {reply}"),
                    None,
                )
            }
        };
        for slot in &mut self.slots {
            if matches!(slot, Slot::Accepted) {
                *slot = Slot::Decided(outcome.clone());
            }
        }
        self.finish(None);
    }

    fn any_accepted(&self) -> bool {
        self.slots.iter().any(|s| matches!(s, Slot::Accepted))
    }

    /// The transaction was aborted after MAIL was accepted (RFC 5321 §4.1.1.5).
    fn rset(&mut self) {
        self.output.extend_from_slice(b"RSET\r\n");
        self.state = State::Rset;
    }

    /// Every recipient is decided: hand the outcomes out. With `dead`, the
    /// connection cannot carry another transaction.
    fn finish(&mut self, dead: Option<String>) {
        let outcomes = self
            .slots
            .drain(..)
            .map(|slot| match slot {
                Slot::Decided(outcome) => outcome,
                other => unreachable!("undecided recipient at the end: {other:?}"),
            })
            .collect();
        self.done = Some(outcomes);
        self.state = match dead {
            None => State::Ready,
            Some(reason) => State::Dead(reason),
        };
    }

    /// The connection is gone. Inside a transaction where some recipient
    /// already has the server's answer, the others are deferred (with the
    /// 421 that closed it, or a 451 4.4.2 of ours) and the answers count;
    /// otherwise nothing happened and the driver reports a transport error.
    fn lose(&mut self, reason: String, reply: Option<Reply>) {
        let in_transaction = matches!(
            self.state,
            State::Mail
                | State::Rcpt(_)
                | State::Data
                | State::Body
                | State::Dot
                | State::LoneDot
                | State::Rset
        );
        let decided = self.slots.iter().any(|s| matches!(s, Slot::Decided(_)));
        if in_transaction && decided {
            let reply = reply.unwrap_or_else(|| {
                Reply::new(
                    451,
                    "4.4.2",
                    format!("Lost connection to downstream: {reason}"),
                )
            });
            for slot in &mut self.slots {
                if !matches!(slot, Slot::Decided(_)) {
                    *slot = Slot::Decided(RecipientOutcome::Deferred(reply.clone()));
                }
            }
            self.finish(None);
        }
        self.slots.clear();
        self.state = State::Dead(reason);
    }
}
