//! The SMTP server session as a pure state machine (sans-IO).
//!
//! CONTRACT (implemented by the session work; the connection driver relies on it):
//! bytes in through `feed`, decisions in through `recipient_verdict` and
//! `stored`, and the driver asks `next_action` what to do. Replies accumulate
//! in an output buffer that the driver flushes whenever it is about to read or
//! to wait for a decision (that is the RFC 2920 flush point: no more complete
//! commands in the input). The session never awaits, never reads a clock.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::message::{Message, QueueId};
use crate::smtp::reply::Reply;

/// Everything a session needs to know that does not change per connection.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Our name in the greeting, EHLO reply and Received header.
    pub hostname: String,
    /// SIZE limit (RFC 1870); 552 5.3.4 above it.
    pub message_bytes_max: usize,
    /// Recipients per message; the next RCPT gets 452 4.5.3.
    pub recipients_max: usize,
    /// Messages per connection; past it 421 4.7.0 and close.
    pub messages_per_connection_max: u32,
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

/// The answer of the recipient policy (RAT, call-ahead later) for one RCPT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// 4xx or 5xx reply to send for this RCPT.
    Refuse(Reply),
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
    /// Decide this recipient (final mailbox, source route removed; a bare
    /// postmaster already has `postmaster_domain`), then call `recipient_verdict`.
    /// `mail_from` is the reverse-path of the transaction.
    CheckRecipient { mailbox: String, mail_from: String },
    /// Store this message durably, then call `stored`.
    Store(Message),
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
    /// Waiting for a verdict or the spool: not reading.
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

pub struct Session {
    _config: Arc<SessionConfig>,
}

impl Session {
    /// A new session; the 220 greeting is already in the output.
    pub fn new(config: Arc<SessionConfig>, peer: Peer) -> Session {
        let _ = peer;
        Session { _config: config }
    }
    /// Append bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        let _ = bytes;
        unimplemented!()
    }
    /// The client closed its side.
    pub fn input_closed(&mut self) {
        unimplemented!()
    }
    pub fn next_action(&mut self) -> Action {
        unimplemented!()
    }
    pub fn recipient_verdict(&mut self, verdict: Verdict) {
        let _ = verdict;
        unimplemented!()
    }
    pub fn stored(&mut self, result: Result<QueueId, StoreError>) {
        let _ = result;
        unimplemented!()
    }
    /// A §4.5.3.2 timeout or the minimum data rate expired: 421 4.4.2, then Close.
    pub fn timed_out(&mut self) {
        unimplemented!()
    }
    /// The server is shutting down: 421 4.3.2, then Close.
    pub fn shutting_down(&mut self) {
        unimplemented!()
    }
    pub fn phase(&self) -> Phase {
        unimplemented!()
    }
    /// Bytes of the input buffer not yet consumed (the driver stops reading
    /// above `limits::SESSION_INPUT_BYTES_MAX`).
    pub fn buffered_input(&self) -> usize {
        unimplemented!()
    }
    /// Pending output to write to the client.
    pub fn output(&self) -> &[u8] {
        unimplemented!()
    }
    /// Drop the first `n` bytes of output (they were written).
    pub fn consume_output(&mut self, n: usize) {
        let _ = n;
        unimplemented!()
    }
    /// Log events since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        unimplemented!()
    }
}
