//! The call-ahead probe client as a pure state machine (sans-IO): the SMTP
//! client of `smtp::client` in probe mode — MAIL, RCPT, RSET, never DATA
//! (issue 7 item 6). `callahead::connection` feeds it the downstream's
//! bytes and asks `next_action` what to do; commands accumulate in
//! `output`. No socket, no clock: the driver owns the deadline.
//!
//! One connection: greeting → EHLO (HELO after a 5xx, RFC 5321 §3.2) →
//! Ready. Then `probe` sends MAIL FROM once per transaction and the RCPTs
//! of the batch; the transaction stays open across batches (RCPT after
//! RCPT, from many client sessions) until `rset`. With PIPELINING (RFC 2920
//! §3.1) a batch is one write (up to `limits::CALLAHEAD_PIPELINED_COMMANDS_MAX`
//! commands; a larger batch goes in groups of that size) and the replies
//! are read in order; without it, one command per reply. The reply to each RCPT is handed back as it
//! is: what it means for the recipient is `callahead::verdict`'s business.
//!
//! STARTTLS (RFC 3207) as the delivery client does it (`starttls`): after
//! EHLO, with a mode that wants TLS and a server that offers it, STARTTLS,
//! `ProbeAction::StartTls` for the driver's handshake, EHLO again. A TLS
//! that `Required` cannot have fails the connection at `Stage::Hello`:
//! nothing about the recipient, never cached.
//!
//! Failures carry the `Stage` they hit (`callahead::verdict::Stage`,
//! imported, not moved): the stage of the command whose reply we awaited.
//! A batch cut short (421, a close, garbage, a timeout) ends in `Failed`;
//! the RCPTs that did get their answer are in `answered_so_far()`, one
//! slot per recipient of the batch.

use std::collections::VecDeque;

use super::starttls::{after_hello, after_starttls, AfterHello, AfterStartTls, STARTTLS_COMMAND};
use super::{Extensions, ReplyParser, StartTls, Wait};
use crate::callahead::verdict::Stage;
use crate::limits::CALLAHEAD_PIPELINED_COMMANDS_MAX;
use crate::smtp::Reply;

#[cfg(test)]
mod tests;

/// The downstream's answer for one recipient of a batch, in batch order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptAnswer {
    /// The reply to our RCPT (2xx, 4xx or 5xx).
    Rcpt(Reply),
    /// MAIL FROM was refused with this reply: no transaction, so this RCPT
    /// (if it was sent at all) says nothing about the recipient.
    MailRefused(Reply),
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// Write `output()`, then read bytes and `feed` them (or report `lost`).
    Read(Wait),
    /// Write `output()`, then run the TLS handshake and call `tls_started`
    /// (or `tls_failed`).
    StartTls,
    /// Idle and usable: `probe`, `rset` or `quit`.
    Ready,
    /// The batch is over: one answer per recipient, in order. The
    /// connection is Ready again.
    Answered(Vec<RcptAnswer>),
    /// The connection is unusable. `stage` is where it broke, `reply` the
    /// downstream's refusal if it gave one (a 421 included), `why` names the
    /// fault for the log. Mid-batch, see `answered_so_far()` for the RCPTs
    /// answered before it broke. Write `output()` if any, then close.
    Failed {
        stage: Stage,
        reply: Option<Reply>,
        why: String,
    },
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
    /// A batch (MAIL and/or RCPTs) is out; replies expected in `expected`.
    Probing,
    Rset,
    Dead {
        stage: Stage,
        reply: Option<Reply>,
        why: String,
    },
}

/// The command a reply (awaited, or queued to be sent) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Mail,
    /// The RCPT of recipient `i` of the batch.
    Rcpt(usize),
}

/// The pure client of one call-ahead probe connection.
#[derive(Debug)]
pub struct Prober {
    helo_name: String,
    state: State,
    extensions: Extensions,
    parser: ReplyParser,
    output: Vec<u8>,
    tls: StartTls,
    /// The handshake is done: the session runs over TLS.
    encrypted: bool,
    /// The connection failed because the TLS its mode requires could not be had.
    tls_refused: bool,
    /// Commands written, replies not yet read, in order.
    expected: VecDeque<Expect>,
    /// Commands waiting for the replies to the group before them (lock-step:
    /// one command per group).
    unsent: VecDeque<(Expect, Vec<u8>)>,
    /// One slot per recipient of the current batch.
    slots: Vec<Option<RcptAnswer>>,
    /// MAIL of this batch was refused: later RCPT replies are dropped.
    mail_refused: bool,
    in_transaction: bool,
    rcpts_in_transaction: usize,
    /// Replies received to the current batch, and whether the first was 421.
    replies: u32,
    first_reply_421: bool,
    answered: Option<Vec<RcptAnswer>>,
}

impl Prober {
    /// A prober on a just-opened connection, waiting for the greeting; no TLS.
    pub fn new(helo_name: &str) -> Prober {
        Prober::with_tls(helo_name, StartTls::Off)
    }

    /// A prober that asks for STARTTLS as `tls` says.
    pub fn with_tls(helo_name: &str, tls: StartTls) -> Prober {
        Prober {
            helo_name: helo_name.to_string(),
            state: State::Greeting,
            extensions: Extensions::default(),
            parser: ReplyParser::default(),
            output: Vec::with_capacity(256),
            tls,
            encrypted: false,
            tls_refused: false,
            expected: VecDeque::new(),
            unsent: VecDeque::new(),
            slots: Vec::new(),
            mail_refused: false,
            in_transaction: false,
            rcpts_in_transaction: 0,
            replies: 0,
            first_reply_421: false,
            answered: None,
        }
    }

    /// Commands to write before the next read.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Drop the first `n` bytes of output (they were written).
    pub fn consume_output(&mut self, n: usize) {
        self.output.drain(..n);
    }

    /// The session runs over TLS.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The connection failed because the TLS its mode requires could not
    /// be had (not offered, refused, handshake failed).
    pub fn tls_refused(&self) -> bool {
        self.tls_refused
    }

    /// The driver finished the handshake: EHLO again over TLS, the clear
    /// text extensions forgotten (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        debug_assert_eq!(self.state, State::Handshake);
        self.encrypted = true;
        self.extensions = Extensions::default();
        self.parser = ReplyParser::default();
        let ehlo = format!("EHLO {}\r\n", self.helo_name);
        self.output.extend_from_slice(ehlo.as_bytes());
        self.state = State::Ehlo;
    }

    /// The handshake failed: the connection is unusable.
    pub fn tls_failed(&mut self, why: &str) {
        self.tls_refused = self.tls == StartTls::Required;
        self.die(Stage::Hello, None, format!("TLS handshake with the downstream failed: {why}"));
    }

    /// The server offered PIPELINING in its EHLO reply (RFC 2920).
    pub fn pipelining(&self) -> bool {
        self.extensions.pipelining
    }

    /// MAIL was accepted and no RSET (or refusal) since.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// RCPTs answered inside the open transaction (any reply), so the pool
    /// can RSET before `max_recipients_per_session` or the server's limit.
    pub fn rcpts_in_transaction(&self) -> usize {
        self.rcpts_in_transaction
    }

    /// Ready for another batch: the connection is alive and idle.
    pub fn is_reusable(&self) -> bool {
        self.state == State::Ready && self.answered.is_none()
    }

    /// The current batch got no reply, or only a leading 421: the
    /// connection was dead or being closed by the server before we used it
    /// (RFC 5321 §3.8: a server may send 421 at any time, e.g. on its idle
    /// timeout). Nothing of the batch was answered, so the driver may repeat
    /// it on a fresh connection.
    pub fn is_stale(&self) -> bool {
        self.replies == 0 || (self.replies == 1 && self.first_reply_421)
    }

    /// The answers of the current (or last) batch received so far, one slot
    /// per recipient in batch order; `None` for an RCPT not answered. After
    /// a mid-batch `Failed`, the driver gives the answered ones their
    /// verdict and the rest the failure.
    pub fn answered_so_far(&self) -> &[Option<RcptAnswer>] {
        &self.slots
    }

    /// What the prober is waiting for, for timeout messages in the log.
    pub fn awaiting(&self) -> &'static str {
        match self.state {
            State::Greeting => "the greeting",
            State::Ehlo => "the reply to EHLO",
            State::Helo => "the reply to HELO",
            State::StartTls => "the reply to STARTTLS",
            State::Handshake => "the TLS handshake",
            State::Probing => match self.expected.front() {
                Some(Expect::Mail) => "the reply to MAIL",
                _ => "the reply to RCPT",
            },
            State::Rset => "the reply to RSET",
            State::Ready | State::Dead { .. } => "nothing",
        }
    }

    pub fn next_action(&mut self) -> ProbeAction {
        if let Some(answers) = self.answered.take() {
            return ProbeAction::Answered(answers);
        }
        match &self.state {
            State::Greeting => ProbeAction::Read(Wait::Greeting),
            State::Ehlo | State::Helo | State::StartTls | State::Probing | State::Rset => {
                ProbeAction::Read(Wait::Command)
            }
            State::Handshake => ProbeAction::StartTls,
            State::Ready => ProbeAction::Ready,
            State::Dead { stage, reply, why } => ProbeAction::Failed {
                stage: *stage,
                reply: reply.clone(),
                why: why.clone(),
            },
        }
    }

    /// Bytes read from the downstream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Dead { .. }) {
            return;
        }
        self.parser.push(bytes);
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => self.on_reply(reply),
                Ok(None) => break,
                Err(e) => {
                    let why = format!("downstream protocol error: {e}");
                    if self.state == State::Ready {
                        self.unsolicited(why);
                    } else {
                        self.die(self.stage(), None, why);
                    }
                    break;
                }
            }
            if matches!(self.state, State::Dead { .. }) {
                return;
            }
            if self.state == State::Handshake {
                break; // what follows the 220 is not a reply (checked below)
            }
        }
        if self.state == State::Ready && !self.parser.is_empty() {
            // Bytes after the last reply we asked for would be taken for
            // the reply to our next command.
            self.unsolicited("downstream sent bytes nobody asked for".to_string());
        } else if self.state == State::Handshake && !self.parser.is_empty() {
            // Clear text after the 220 would be injected into the TLS
            // session (RFC 3207 §4.2).
            self.die(Stage::Hello, None, "downstream sent bytes after its 220 to STARTTLS".into());
        }
    }

    /// The connection broke (EOF, reset, timeout): `why` says how.
    pub fn lost(&mut self, why: &str) {
        if !matches!(self.state, State::Dead { .. }) {
            self.die(self.stage(), None, why.to_string());
        }
    }

    /// Close politely (RFC 5321 §4.1.1.10); the driver writes `output()`
    /// and closes without waiting for the 221.
    pub fn quit(&mut self) {
        if self.state == State::Ready {
            self.output.extend_from_slice(b"QUIT\r\n");
        }
        if !matches!(self.state, State::Dead { .. }) {
            self.die(Stage::Connect, None, "closed by us (QUIT)".to_string());
        }
    }

    /// End the open transaction (RFC 5321 §4.1.1.5). Without one there is
    /// nothing to reset: the prober stays Ready and sends nothing.
    pub fn rset(&mut self) {
        debug_assert!(self.is_reusable(), "rset on a busy connection");
        if !self.is_reusable() || !self.in_transaction {
            return;
        }
        self.begin_batch(0);
        self.output.extend_from_slice(b"RSET\r\n");
        self.state = State::Rset;
    }

    /// Ask about `recipients` (addresses without angle brackets): MAIL FROM
    /// first if no transaction is open, then one RCPT each. Only when Ready;
    /// the answers come as `Answered`, in order.
    pub fn probe(&mut self, mail_from: &str, recipients: &[String]) {
        debug_assert!(self.is_reusable(), "probe on a busy connection");
        if !self.is_reusable() {
            return;
        }
        self.begin_batch(recipients.len());
        if recipients.is_empty() {
            self.answered = Some(Vec::new());
            return;
        }
        let mut commands: Vec<(Expect, Vec<u8>)> = Vec::with_capacity(recipients.len() + 1);
        if !self.in_transaction {
            if smuggles(mail_from) {
                let reply = refused_locally();
                self.answered = Some(vec![RcptAnswer::MailRefused(reply); recipients.len()]);
                return;
            }
            commands.push((
                Expect::Mail,
                format!("MAIL FROM:<{mail_from}>\r\n").into_bytes(),
            ));
        }
        for (i, rcpt) in recipients.iter().enumerate() {
            if smuggles(rcpt) {
                self.slots[i] = Some(RcptAnswer::Rcpt(refused_locally()));
            } else {
                commands.push((
                    Expect::Rcpt(i),
                    format!("RCPT TO:<{rcpt}>\r\n").into_bytes(),
                ));
            }
        }
        self.send(commands);
    }

    /// Forget the last batch and count replies afresh.
    fn begin_batch(&mut self, recipients: usize) {
        self.slots.clear();
        self.slots.resize(recipients, None);
        self.expected.clear();
        self.unsent.clear();
        self.mail_refused = false;
        self.replies = 0;
        self.first_reply_421 = false;
    }

    /// Put the batch on the wire: with PIPELINING (RFC 2920 §3.1) in
    /// groups of up to `CALLAHEAD_PIPELINED_COMMANDS_MAX`, each one write,
    /// else one command at a time (lock-step).
    fn send(&mut self, commands: Vec<(Expect, Vec<u8>)>) {
        if commands.is_empty() {
            // Every recipient was refused locally.
            return self.finish_batch();
        }
        self.unsent.extend(commands);
        self.state = State::Probing;
        self.send_next();
    }

    /// The next group once every reply to the previous one is in. Bounded
    /// so that we never block writing a huge group while the server, its
    /// replies unread by us, has stopped reading (a TCP deadlock that only
    /// the deadline would end).
    fn send_next(&mut self) {
        if !self.expected.is_empty() {
            return;
        }
        let group = if self.extensions.pipelining {
            CALLAHEAD_PIPELINED_COMMANDS_MAX
        } else {
            1
        };
        for (expect, line) in self.unsent.drain(..group.min(self.unsent.len())) {
            self.output.extend_from_slice(&line);
            self.expected.push_back(expect);
        }
    }

    /// Where a failure now would be: the stage of the reply awaited.
    fn stage(&self) -> Stage {
        match self.state {
            State::Greeting => Stage::Greeting,
            State::Ehlo | State::Helo | State::StartTls | State::Handshake => Stage::Hello,
            State::Probing => match self.expected.front() {
                Some(Expect::Mail) => Stage::MailFrom,
                _ => Stage::Rcpt,
            },
            // RSET has no stage of its own: it frames the transaction.
            State::Rset => Stage::MailFrom,
            State::Ready | State::Dead { .. } => Stage::Connect,
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        if matches!(self.state, State::Probing | State::Rset) {
            self.replies += 1;
            if self.replies == 1 {
                self.first_reply_421 = reply.code == 421;
            }
        }
        if reply.code == 421 {
            // RFC 5321 §3.8: the server is closing the channel.
            let why = format!("downstream closing the connection: {reply}");
            return self.die(self.stage(), Some(reply), why);
        }
        match self.state {
            State::Greeting => self.on_greeting(reply),
            State::Ehlo => self.on_ehlo(reply),
            State::Helo if reply.code / 100 == 2 => self.hello_done(),
            State::Helo => {
                let why = format!("downstream refused EHLO and HELO: {reply}");
                self.die(Stage::Hello, Some(reply), why)
            }
            State::StartTls => self.on_starttls(reply),
            State::Probing => self.on_batch_reply(reply),
            State::Rset if reply.code / 100 == 2 => {
                self.in_transaction = false;
                self.rcpts_in_transaction = 0;
                self.state = State::Ready;
            }
            State::Rset => {
                // The transaction may still be open: the connection cannot
                // be trusted with another one.
                let why = format!("downstream refused RSET: {reply}");
                self.die(Stage::MailFrom, Some(reply), why)
            }
            State::Ready | State::Handshake | State::Dead { .. } => {
                self.unsolicited(format!("downstream sent a reply nobody asked for: {reply}"))
            }
        }
    }

    fn on_greeting(&mut self, reply: Reply) {
        if reply.code == 220 {
            let ehlo = format!("EHLO {}\r\n", self.helo_name);
            self.output.extend_from_slice(ehlo.as_bytes());
            self.state = State::Ehlo;
        } else {
            let why = format!("downstream refused the connection: {reply}");
            self.die(Stage::Greeting, Some(reply), why);
        }
    }

    fn on_ehlo(&mut self, reply: Reply) {
        if reply.code / 100 == 2 {
            self.extensions = Extensions::from_ehlo(&reply);
            self.hello_done();
        } else if reply.is_permanent() {
            // An old server that does not know EHLO (RFC 5321 §3.2).
            let helo = format!("HELO {}\r\n", self.helo_name);
            self.output.extend_from_slice(helo.as_bytes());
            self.state = State::Helo;
        } else {
            let why = format!("downstream refused EHLO: {reply}");
            self.die(Stage::Hello, Some(reply), why);
        }
    }

    /// EHLO or HELO accepted: ready, or STARTTLS first, or (TLS required
    /// and not offered) QUIT and fail at Hello.
    fn hello_done(&mut self) {
        match after_hello(self.tls, self.encrypted, &self.extensions) {
            AfterHello::Ready => self.state = State::Ready,
            AfterHello::StartTls => {
                self.output.extend_from_slice(STARTTLS_COMMAND);
                self.state = State::StartTls;
            }
            AfterHello::Refuse(why) => self.refuse_clear(why, None),
        }
    }

    /// A 421 never gets here (`on_reply` ends the connection first).
    fn on_starttls(&mut self, reply: Reply) {
        match after_starttls(self.tls, &reply) {
            AfterStartTls::Handshake => self.state = State::Handshake,
            AfterStartTls::Clear => self.state = State::Ready,
            AfterStartTls::Refuse(why) => self.refuse_clear(why, Some(reply)),
        }
    }

    /// TLS required and not to be had: QUIT and fail at Hello, nothing
    /// sent in clear. The reply (a refused STARTTLS) is kept for the log.
    fn refuse_clear(&mut self, why: String, reply: Option<Reply>) {
        self.output.extend_from_slice(b"QUIT\r\n");
        self.tls_refused = true;
        self.die(Stage::Hello, reply, why);
    }

    fn on_batch_reply(&mut self, reply: Reply) {
        let Some(expect) = self.expected.pop_front() else {
            return self.unsolicited(format!("downstream sent a reply nobody asked for: {reply}"));
        };
        if !matches!(reply.code / 100, 2 | 4 | 5) {
            // A 3xx to MAIL or RCPT (RFC 5321 §4.3.2 allows none): the
            // server may think it is in DATA; nothing more goes over it.
            let (stage, command) = match expect {
                Expect::Mail => (Stage::MailFrom, "MAIL"),
                Expect::Rcpt(_) => (Stage::Rcpt, "RCPT"),
            };
            let why = format!("downstream answered {command} with {reply}");
            return self.die(stage, Some(reply), why);
        }
        match expect {
            Expect::Mail => self.on_mail(reply),
            Expect::Rcpt(i) => self.on_rcpt(i, reply),
        }
        self.send_next();
        if self.expected.is_empty() {
            self.finish_batch();
        }
    }

    fn on_mail(&mut self, reply: Reply) {
        if reply.code / 100 == 2 {
            self.in_transaction = true;
            self.rcpts_in_transaction = 0;
            return;
        }
        // No transaction: every RCPT of the batch is moot. Pipelined ones
        // are already out and their (503-ish) replies will be dropped;
        // queued ones (lock-step, later groups) are never sent.
        self.mail_refused = true;
        self.unsent.clear();
        for slot in self.slots.iter_mut().filter(|s| s.is_none()) {
            *slot = Some(RcptAnswer::MailRefused(reply.clone()));
        }
    }

    fn on_rcpt(&mut self, i: usize, reply: Reply) {
        if self.mail_refused {
            return;
        }
        if self.in_transaction {
            self.rcpts_in_transaction += 1;
        }
        debug_assert!(self.slots[i].is_none(), "RCPT {i} answered twice");
        self.slots[i] = Some(RcptAnswer::Rcpt(reply));
    }

    /// Every recipient of the batch has its answer: hand them out.
    fn finish_batch(&mut self) {
        debug_assert!(self.unsent.is_empty());
        let answers: Vec<RcptAnswer> = self
            .slots
            .iter()
            .map(|slot| slot.clone().expect("every recipient answered"))
            .collect();
        self.answered = Some(answers);
        self.state = State::Ready;
    }

    /// More than we asked for (a reply or bytes after the last awaited
    /// reply, 421 aside): replies and commands are out of step, so the
    /// answers of the batch may belong to other RCPTs. None is kept; a
    /// wrong "mailbox unknown" would be cached.
    fn unsolicited(&mut self, why: String) {
        self.answered = None;
        self.slots.iter_mut().for_each(|slot| *slot = None);
        self.die(Stage::Rcpt, None, why);
    }

    fn die(&mut self, stage: Stage, reply: Option<Reply>, why: String) {
        self.expected.clear();
        self.unsent.clear();
        self.state = State::Dead { stage, reply, why };
    }
}

/// An address that would smuggle a second command into ours (CR, LF,
/// angle brackets): our bug upstream, never sent.
fn smuggles(address: &str) -> bool {
    address
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == b'<' || b == b'>')
}

/// The answer for an address refused before it was sent. A protocol-class
/// code (5.5.x), so `verdict::of_rcpt` calls it a failure, never "mailbox
/// unknown": nothing is cached about it.
fn refused_locally() -> Reply {
    Reply::new(
        501,
        "5.5.4",
        "Address with control characters (refused locally)",
    )
}
