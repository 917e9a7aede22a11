//! The SMTP server session as a pure state machine (sans-IO).
//!
//! Bytes in through `feed`, policy decisions in through `answer`, the spool's
//! result through `stored`, and the driver asks `next_action` what to do.
//! Replies accumulate in an output buffer that the driver flushes whenever it
//! is about to read or to wait (that is the RFC 2920 flush point: no more
//! complete commands in the input). The session never awaits, never reads a
//! clock.
//!
//! Flow: the first action asks `Question::Connect`; the greeting goes out with
//! the answer. Then `next_action` runs `step` until the input holds no
//! complete unit (command line, DATA octets, BDAT chunk), a question is to be
//! asked, or it must wait for answers. STARTTLS (`session/starttls.rs`)
//! hands the driver `Action::StartTls` and starts over when it calls
//! `tls_started`; AUTH (`session/auth.rs`) reads its SASL responses in
//! `State::Auth` and asks `Question::Auth`. Replies take a slot per command
//! (`session/replies.rs`), so they leave strictly in order however the
//! answers come. The commands live in `session/commands.rs`, the questions in
//! `session/questions.rs`, the end of a message in `session/message.rs`; this
//! file is the machine: buffers, states, actions.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::limits;
use crate::message::Message;
use crate::smtp::body::{ChunkedBody, DataReceiver};
use crate::smtp::command::{self, MailParams};
use crate::smtp::reply::Reply;

mod auth;
mod commands;
mod message;
mod policy;
mod questions;
mod replies;
mod starttls;
#[cfg(test)]
mod tests;

pub use policy::{AuthTier, Banner, ConnectionPolicy, TlsTier};
pub use crate::tls::TlsInfo;
use auth::AuthStep;
pub use questions::{Decision, Question, Ticket};
use questions::{Admission, Pending};
use replies::Replies;

/// Everything a session needs to know that does not change per connection
/// (what does is in the `ConnectionPolicy` of the connect answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our name in the EHLO reply, in 421 replies and the Received header.
    pub hostname: String,
    /// Domain given to a bare `postmaster` recipient (RFC 5321 §4.5.1).
    pub postmaster_domain: String,
}

/// Who is on the other end of this connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub connection_id: String,
    pub addr: SocketAddr,
    pub local: SocketAddr,
}

/// Why the spool could not take a message; every variant is 452 4.3.1 to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    DiskFull,
    Io(String),
    QueueFull,
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Action {
    /// Flush pending output, then read more bytes and `feed` them.
    Read,
    /// Decide this question, then call `answer` with the ticket. Do not wait
    /// for it: call `next_action` again (more RCPT questions may follow).
    Ask { ticket: Ticket, question: Question },
    /// Nothing can go on until at least one question is answered: flush
    /// output, wait for an answer (reading more only while `wants_input`),
    /// call `answer`, then `next_action`.
    AwaitAnswers,
    /// Store this message durably, then call `stored`.
    Store(Message),
    /// Flush pending output (the 220 to STARTTLS), run the TLS handshake
    /// (RFC 3207), then call `tls_started` or `tls_failed`.
    StartTls,
    /// Flush pending output and close the connection.
    Close,
}

/// Which server timeout applies now (RFC 5321 §4.5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a command line.
    Command,
    /// Receiving DATA or BDAT octets (minimum data rate applies).
    Data,
    /// Waiting for policy answers or the spool.
    Waiting,
}

/// Something that happened, for the mail log (one line each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The command verb or "CONNECT"/"DATA-END", upper case.
    pub command: String,
    /// The argument as given, trimmed (may be empty).
    pub argument: String,
    /// The reply sent for it.
    pub reply: Reply,
}

/// Where the machine is.
#[derive(Debug)]
enum State {
    /// Reading command lines.
    Command,
    /// A command line passed 512 octets: thrown away up to its LF, then 500.
    DiscardLine { verb: String },
    /// After 354: message content up to CRLF.CRLF.
    Data(DataReceiver),
    /// Inside a BDAT chunk: `remaining` octets still belong to it.
    Chunk { size: u64, remaining: u64, last: bool, refusal: Option<Reply>, argument: String },
    /// Store was returned; `stored` comes next.
    AwaitStore { command: &'static str, argument: String },
    /// StartTls was returned; `tls_started` or `tls_failed` comes next.
    Handshake,
    /// AUTH sent a 334 challenge; the next line is the client's response.
    Auth(AuthStep),
    /// A final reply (221/421) is queued, perhaps behind replies that wait
    /// for answers; everything else is ignored.
    Closing,
}

/// One mail transaction, from MAIL to the end of data or RSET.
#[derive(Debug)]
struct Transaction {
    mail_from: String,
    params: MailParams,
    recipients: Vec<String>,
    /// NOTIFY/ORCPT of each accepted recipient, always parallel to
    /// `recipients` here (the envelope drops it when all are defaults).
    recipient_dsn: Vec<crate::smtp::dsn::RecipientDsn>,
    /// RCPT questions in flight; each reserves a place under recipients_max.
    asked: usize,
    /// The ticket of each accepted recipient, to keep `recipients` in RCPT order.
    accepted: Vec<Ticket>,
    /// Present once a BDAT chunk was accepted (RFC 3030: then no DATA).
    chunks: Option<ChunkedBody>,
    /// A chunk was refused: later chunks get the same reply, LAST ends it.
    chunk_failure: Option<Reply>,
}

/// What one step of the machine did.
enum Step {
    Continue,
    NeedInput,
    Act(Action),
}

pub struct Session {
    config: Arc<SessionConfig>,
    peer: Peer,
    /// Client bytes; `input[consumed..]` is not yet processed.
    input: Vec<u8>,
    consumed: usize,
    input_closed: bool,
    /// Reused buffer for the command line being handled.
    line: Vec<u8>,
    output: Vec<u8>,
    events: Vec<Event>,
    /// One slot per command since the first unanswered question.
    replies: Replies,
    /// Questions asked and not answered yet, in the order asked.
    questions: Vec<(Ticket, Pending)>,
    /// The Connect question, until the first `next_action` returns it.
    unasked: Option<Action>,
    admission: Admission,
    state: State,
    /// The EHLO/HELO argument; MAIL needs it.
    helo: Option<String>,
    esmtp: bool,
    tx: Option<Transaction>,
    /// Set once the TLS handshake is done (STARTTLS or implicit TLS).
    tls: Option<TlsInfo>,
    /// The user who authenticated with AUTH, if any.
    authenticated: Option<String>,
    /// 4xx/5xx replies since the last stored message (Postfix's hard error
    /// limit); policy refusals are not counted here.
    errors: u32,
    messages: u32,
}

impl Session {
    /// A new session. Its first action asks `Question::Connect`; the
    /// greeting (or refusal) goes out with the answer.
    pub fn new(config: Arc<SessionConfig>, peer: Peer) -> Session {
        let mut session = Session {
            config,
            peer,
            input: Vec::new(),
            consumed: 0,
            input_closed: false,
            line: Vec::with_capacity(limits::COMMAND_LINE_BYTES_MAX),
            output: Vec::with_capacity(1024),
            events: Vec::new(),
            replies: Replies::default(),
            questions: Vec::new(),
            unasked: None,
            admission: Admission::Asking,
            state: State::Command,
            helo: None,
            esmtp: false,
            tx: None,
            tls: None,
            authenticated: None,
            errors: 0,
            messages: 0,
        };
        let addr = session.peer.addr.to_string();
        session.unasked = Some(session.ask("CONNECT", addr, Pending::Connect));
        session
    }

    /// Append bytes read from the client. Only while `wants_input`: so the
    /// session never holds more than `limits::SESSION_INPUT_BYTES_MAX` plus
    /// one read.
    pub fn feed(&mut self, bytes: &[u8]) {
        debug_assert!(!self.input_closed, "feed after input_closed");
        debug_assert!(self.buffered_input() <= limits::SESSION_INPUT_BYTES_MAX, "feed above the input bound");
        if matches!(self.state, State::Closing) {
            return; // after QUIT or 421 the client's bytes do not matter
        }
        self.compact_input();
        self.input.extend_from_slice(bytes);
    }

    /// May the driver read now? Not after EOF or a final reply, and not while
    /// `limits::SESSION_INPUT_BYTES_MAX` octets wait unprocessed (back-pressure:
    /// a client pipelining behind slow answers is simply not read).
    pub fn wants_input(&self) -> bool {
        !self.input_closed
            && !matches!(self.state, State::Closing)
            && self.buffered_input() <= limits::SESSION_INPUT_BYTES_MAX
    }

    /// The client closed its side.
    pub fn input_closed(&mut self) {
        self.input_closed = true;
    }

    pub fn next_action(&mut self) -> Action {
        if let Some(ask) = self.unasked.take() {
            return ask;
        }
        if matches!(self.state, State::AwaitStore { .. }) {
            debug_assert!(false, "next_action before the store was answered");
            let reply = self.closing_reply("4.3.0", "Error: internal protocol error");
            self.close_with("ERROR", reply);
        }
        self.run()
    }

    /// A §4.5.3.2 timeout or the minimum data rate expired: 421 4.4.2, then
    /// Close, without waiting for questions in flight.
    pub fn timed_out(&mut self) {
        self.abandon_questions();
        let reply = self.closing_reply("4.4.2", "Error: timeout exceeded");
        self.close_with("TIMEOUT", reply);
    }

    /// The server is shutting down: 421 4.3.2, then Close, without waiting
    /// for questions in flight.
    pub fn shutting_down(&mut self) {
        self.abandon_questions();
        let reply = self.closing_reply("4.3.2", "Service shutting down, closing connection");
        self.close_with("SHUTDOWN", reply);
    }

    pub fn phase(&self) -> Phase {
        if !self.questions.is_empty() {
            return Phase::Waiting;
        }
        match self.state {
            State::Command | State::DiscardLine { .. } | State::Closing | State::Handshake | State::Auth(_) => Phase::Command,
            State::Data(_) | State::Chunk { .. } => Phase::Data,
            State::AwaitStore { .. } => Phase::Waiting,
        }
    }

    /// True while a message body is arriving: inside DATA, and from the first
    /// BDAT chunk until the message ends. The driver measures the minimum
    /// data rate over this whole span, so many tiny BDAT chunks (each one a
    /// short `Data` phase) cannot dodge it.
    pub fn receiving_message(&self) -> bool {
        matches!(self.state, State::Data(_) | State::Chunk { .. })
            || self.tx.as_ref().is_some_and(|tx| tx.chunks.is_some())
    }

    /// Bytes of the input buffer not yet consumed (`wants_input` is false
    /// above `limits::SESSION_INPUT_BYTES_MAX`).
    pub fn buffered_input(&self) -> usize {
        self.input.len() - self.consumed
    }

    /// Pending output to write to the client.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Drop the first `n` bytes of output (they were written).
    pub fn consume_output(&mut self, n: usize) {
        debug_assert!(n <= self.output.len());
        self.output.drain(..n.min(self.output.len()));
    }

    /// Log events since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Process buffered input until a request, a close, or lack of input.
    fn run(&mut self) -> Action {
        loop {
            if matches!(self.state, State::Closing) {
                // The final reply may wait behind answers still to come.
                return if self.questions.is_empty() { Action::Close } else { Action::AwaitAnswers };
            }
            if self.errors >= limits::SESSION_ERRORS_MAX {
                let reply = self.closing_reply("4.7.0", "Error: too many errors");
                self.close_with("ERRORS", reply);
                continue;
            }
            if self.output.len() > limits::SESSION_OUTPUT_BYTES_MAX {
                // Only a client pipelining far more than RFC 2920 intends gets here.
                let reply = self.closing_reply("4.7.0", "Error: too much pipelined input");
                self.close_with("OUTPUT", reply);
                continue;
            }
            match self.step() {
                Step::Continue => {}
                Step::Act(action) => return action,
                Step::NeedInput if self.input_closed => {
                    // EOF, also mid-line or mid-DATA: nothing to answer, the
                    // unfinished message is dropped with the transaction.
                    self.tx = None;
                    self.state = State::Closing;
                    return Action::Close;
                }
                Step::NeedInput => return Action::Read,
            }
        }
    }

    fn step(&mut self) -> Step {
        match &mut self.state {
            State::Command => self.step_command(),
            State::DiscardLine { .. } => self.step_discard(),
            State::Data(receiver) => {
                let (used, done) = receiver.feed(&self.input[self.consumed..]);
                self.consumed += used;
                if !done {
                    return Step::NeedInput;
                }
                let State::Data(receiver) = std::mem::replace(&mut self.state, State::Command) else {
                    unreachable!()
                };
                self.finish_data(receiver)
            }
            State::Chunk { remaining, refusal, .. } => {
                let available = (self.input.len() - self.consumed) as u64;
                let n = (*remaining).min(available) as usize;
                let octets = &self.input[self.consumed..self.consumed + n];
                if refusal.is_none() {
                    let tx = self.tx.as_mut().expect("an accepted chunk has a transaction");
                    tx.chunks.as_mut().expect("chunks started").take(octets);
                }
                self.consumed += n;
                *remaining -= n as u64;
                if *remaining > 0 {
                    return Step::NeedInput;
                }
                let State::Chunk { size, last, refusal, argument, .. } =
                    std::mem::replace(&mut self.state, State::Command)
                else {
                    unreachable!()
                };
                self.finish_chunk(size, last, refusal, argument)
            }
            State::Auth(_) => self.step_auth(),
            State::Handshake => {
                debug_assert!(false, "next_action before tls_started or tls_failed");
                Step::Act(Action::StartTls)
            }
            State::AwaitStore { .. } | State::Closing => {
                unreachable!("run() does not step while waiting or closing")
            }
        }
    }

    /// Take one command line off the input (RFC 5321 §2.3.8: CRLF only).
    /// With questions in flight only a RCPT may run ahead (`questions.rs`).
    fn step_command(&mut self) -> Step {
        let found = self.find_line();
        if !self.questions.is_empty() {
            let runs_ahead = match found {
                Some(lf) => self.may_run_ahead(&self.input[self.consumed..=self.consumed + lf]),
                None => false,
            };
            if !runs_ahead {
                return Step::Act(Action::AwaitAnswers);
            }
        }
        let Some(lf) = found else { return self.no_line() };
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        line.extend_from_slice(&self.input[self.consumed..=self.consumed + lf]);
        self.consumed += lf + 1;
        let step = self.handle_line(&line);
        self.line = line;
        step
    }

    /// Where the next LF is, within `COMMAND_LINE_BYTES_MAX` octets of input.
    fn find_line(&self) -> Option<usize> {
        let rest = &self.input[self.consumed..];
        rest[..rest.len().min(limits::COMMAND_LINE_BYTES_MAX)].iter().position(|&b| b == b'\n')
    }

    /// No complete line: wait for more, or past the bound throw the line
    /// away up to its LF and refuse it.
    fn no_line(&mut self) -> Step {
        let rest = &self.input[self.consumed..];
        if rest.len() < limits::COMMAND_LINE_BYTES_MAX {
            return Step::NeedInput;
        }
        // RFC 5321 §4.5.3.1.4: 512 octets incl. CRLF. Never buffer more.
        let verb = match self.state {
            State::Auth(_) => "AUTH".to_string(),
            _ => command::verb(rest),
        };
        self.consumed += limits::COMMAND_LINE_BYTES_MAX;
        self.state = State::DiscardLine { verb };
        Step::Continue
    }

    fn step_discard(&mut self) -> Step {
        debug_assert!(self.questions.is_empty(), "no line is discarded while questions are in flight");
        let rest = &self.input[self.consumed..];
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            self.consumed = self.input.len();
            return Step::NeedInput;
        };
        self.consumed += lf + 1;
        let State::DiscardLine { verb } = std::mem::replace(&mut self.state, State::Command) else {
            unreachable!()
        };
        self.refuse_line(&verb, String::new(), Reply::new(500, "5.5.2", "Error: line too long"));
        Step::Continue
    }

    /// Refuse a line that could not be read as a command. If it was a BDAT,
    /// the chunk octets that follow would be read as commands: the stream
    /// cannot be resynchronised, so the session ends (RFC 3030 §2 has no
    /// way to skip a chunk of unknown size).
    pub(super) fn refuse_line(&mut self, verb: &str, argument: String, reply: Reply) {
        self.send(verb, argument, reply);
        if verb == "BDAT" {
            let reply = self.closing_reply("4.5.0", "Error: BDAT stream out of sync, closing connection");
            self.close_with("BDAT", reply);
        }
    }

    /// A line including its LF: refuse bare CR/LF, then run the command.
    fn handle_line(&mut self, line: &[u8]) -> Step {
        let text = match line {
            [text @ .., b'\r', b'\n'] if !text.contains(&b'\r') => text,
            _ => {
                // SMTP smuggling defence (DESIGN.md): a line ended by a bare LF
                // or holding a bare CR is refused as a whole.
                let text = line.strip_suffix(b"\n").unwrap_or(line);
                let reply = Reply::new(500, "5.5.2", "Error: bare CR or LF not allowed");
                self.refuse_line(&command::verb(text), String::new(), reply);
                return Step::Continue;
            }
        };
        self.dispatch(text)
    }

    /// Queue a reply in its slot (it leaves after every reply before it);
    /// 4xx/5xx count towards the error limit.
    fn send(&mut self, command: &str, argument: String, reply: Reply) {
        if !reply.is_positive() && reply.code != 421 {
            self.errors += 1;
        }
        self.replies.push(command, argument, reply);
        self.release();
    }

    /// Move every reply whose turn has come to the output and the log.
    fn release(&mut self) {
        self.replies.release(&mut self.output, &mut self.events);
    }

    /// The limits of this connection; commands run only once it is admitted.
    fn policy(&self) -> &ConnectionPolicy {
        self.admission.policy().expect("commands run only after the connect answer")
    }

    /// RFC 5321 §3.8: 421 names the server and closes the channel.
    fn closing_reply(&self, enhanced: &str, text: &str) -> Reply {
        Reply::new(421, enhanced, format!("{} {text}", self.config.hostname))
    }

    /// Queue a final reply; the next action is Close and input is ignored.
    fn close_with(&mut self, command: &str, reply: Reply) {
        if matches!(self.state, State::Closing) {
            return;
        }
        self.send(command, String::new(), reply);
        self.consumed = self.input.len();
        self.tx = None;
        self.state = State::Closing;
    }

    /// Drop processed input before more is appended. What is left is small
    /// (a partial line, two octets of DATA) unless the driver reads ahead
    /// while answers are awaited, and then it is bounded by `wants_input`.
    fn compact_input(&mut self) {
        if self.consumed == self.input.len() {
            self.input.clear();
        } else {
            self.input.drain(..self.consumed);
        }
        self.consumed = 0;
    }
}
