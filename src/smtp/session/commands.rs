//! What each SMTP command does to the session (RFC 5321 §4.1.1 and the
//! extensions we advertise). The machine in `session.rs` hands over one
//! checked command line; the reply, state change or question comes back.

use super::{Admission, AuthStep, Pending, Session, State, Step, Transaction};
use crate::smtp::address::{self, ForwardPath, PathError};
use crate::smtp::body::{ChunkedBody, DataReceiver};
use crate::smtp::command::{self, Command};
use crate::smtp::reply::Reply;
use crate::message::BodyType;

/// What a command asks the machine to do after it was executed.
pub(super) enum Outcome {
    Reply(Reply),
    /// Ask the policy (MAIL, RCPT); the reply comes with the answer.
    Ask(Pending),
    /// 354 sent: message content follows.
    Data,
    /// A BDAT chunk follows; `refusal` is its reply if it is refused.
    Chunk { size: u64, last: bool, refusal: Option<Reply> },
    /// Reply, then close (221 after QUIT, 421).
    Close(Reply),
    /// 220, then the TLS handshake (RFC 3207).
    StartTls,
    /// A 334 challenge; the next line is the client's SASL response.
    Challenge(Reply, AuthStep),
}

impl Session {
    /// Run one command line (CRLF removed) and queue its reply.
    pub(super) fn dispatch(&mut self, line: &[u8]) -> Step {
        let verb = command::verb(line);
        let argument = command::argument(line);
        let outcome = match command::parse(line) {
            Ok(cmd) if matches!(self.admission, Admission::Refused) => refused_connection(cmd),
            Ok(cmd) => self.execute(cmd),
            Err(reply) if verb == "BDAT" => {
                self.refuse_line(&verb, argument, reply); // closes: the chunk size is unknown
                return Step::Continue;
            }
            Err(reply) => Outcome::Reply(reply),
        };
        match outcome {
            Outcome::Reply(reply) => self.send(&verb, argument, reply),
            Outcome::Ask(pending) => return Step::Act(self.ask(&verb, argument, pending)),
            Outcome::Data => {
                let reply = Reply::new(354, "", "End data with <CR><LF>.<CR><LF>");
                self.send(&verb, argument, reply);
                self.state = State::Data(DataReceiver::new(self.policy().message_bytes_max));
            }
            Outcome::Chunk { size, last, refusal } => {
                // The reply comes when the last octet of the chunk is in.
                self.state = State::Chunk { size, remaining: size, last, refusal, argument };
            }
            Outcome::Close(reply) => {
                self.send(&verb, argument, reply);
                self.consumed = self.input.len(); // RFC 5321 §4.1.1.10: nothing after QUIT
                self.tx = None;
                self.state = State::Closing;
            }
            Outcome::StartTls => return self.start_tls(&verb, argument),
            Outcome::Challenge(reply, step) => {
                self.send(&verb, argument, reply);
                self.state = State::Auth(step);
            }
        }
        Step::Continue
    }

    fn execute(&mut self, cmd: Command<'_>) -> Outcome {
        match cmd {
            Command::Ehlo(name) => self.hello(name, true),
            Command::Helo(name) => self.hello(name, false),
            Command::Mail { path, params } => self.mail(path, params),
            Command::Rcpt { path, params } => self.rcpt(path, params),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.tx = None;
                ok("2.0.0", "Ok")
            }
            Command::Noop => ok("2.0.0", "Ok"),
            Command::Help => Outcome::Reply(Reply::new(214, "2.0.0", "See RFC 5321")),
            // §3.5.3: 252 when we will not verify but will try to deliver.
            Command::Vrfy(_) => Outcome::Reply(Reply::new(252, "2.5.0", "Cannot VRFY user; send RCPT to attempt delivery")),
            Command::Expn(_) => Outcome::Reply(Reply::new(502, "5.5.1", "Error: EXPN not available")),
            Command::Quit => Outcome::Close(Reply::new(221, "2.0.0", "Bye")),
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
        }
    }

    /// EHLO/HELO (§4.1.1.1): (re)start the session, drop any transaction.
    fn hello(&mut self, name: &str, esmtp: bool) -> Outcome {
        self.tx = None;
        self.helo = Some(name.to_string());
        self.esmtp = esmtp;
        let mut reply = Reply::new(250, "", self.config.hostname.clone());
        if esmtp {
            // Only what we implement. BINARYMIME is not offered: delivery
            // relays with DATA, which cannot carry bare CR/LF safely.
            reply.lines.extend([
                "PIPELINING".to_string(),
                format!("SIZE {}", self.policy().message_bytes_max),
                "8BITMIME".to_string(),
                "SMTPUTF8".to_string(),
                "ENHANCEDSTATUSCODES".to_string(),
                "CHUNKING".to_string(),
                "DSN".to_string(), // RFC 3461: RET/ENVID on MAIL, NOTIFY/ORCPT on RCPT
            ]);
            if self.policy().tls.offered() && self.tls.is_none() {
                reply.lines.push("STARTTLS".to_string());
            }
            if self.auth_offered() {
                reply.lines.push(format!("AUTH {}", crate::smtp::sasl::MECHANISMS));
            }
        }
        Outcome::Reply(reply)
    }

    /// MAIL FROM (§4.1.1.2) with SIZE, BODY and SMTPUTF8.
    fn mail(&mut self, path: &[u8], params: &str) -> Outcome {
        if self.helo.is_none() {
            return bad_sequence("Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return bad_sequence("Error: nested MAIL command");
        }
        if let Some(refusal) = self.tls_refusal().or_else(|| self.auth_refusal()) {
            return Outcome::Reply(refusal);
        }
        if self.messages >= self.policy().messages_per_connection_max {
            return Outcome::Close(self.closing_reply("4.7.0", "Error: too many messages in one connection"));
        }
        if !params.is_empty() && !self.esmtp {
            return Outcome::Reply(command::unknown_param()); // parameters need EHLO
        }
        let params = match command::parse_mail_params(params) {
            Ok(params) => params,
            Err(reply) => return Outcome::Reply(reply),
        };
        if params.body == Some(BodyType::BinaryMime) {
            // RFC 1869 §6: a parameter we do not offer gets 555. Taking it
            // would let bare CR/LF through to a downstream DATA stream
            // (outbound SMTP smuggling). The chunk receiver keeps binary
            // support for when delivery can send BDAT to a BINARYMIME peer.
            return Outcome::Reply(Reply::new(555, "5.5.4", "Error: BODY=BINARYMIME is not offered"));
        }
        if params.size.is_some_and(|size| size > self.policy().message_bytes_max as u64) {
            // RFC 1870 §6.1: declared size over our fixed limit.
            return Outcome::Reply(Reply::new(552, "5.3.4", "Error: message too big"));
        }
        let mail_from = match address::parse_reverse_path(path, params.smtputf8) {
            Ok(Some(mailbox)) => mailbox.to_address(),
            Ok(None) => String::new(),
            Err(PathError::NonAscii) => return non_ascii(),
            Err(PathError::TooLong) => return Outcome::Reply(Reply::new(501, "5.1.7", "Error: sender address too long")),
            Err(PathError::Syntax) => return Outcome::Reply(Reply::new(501, "5.1.7", "Error: bad sender address syntax")),
        };
        let tx = Transaction { mail_from, params, recipients: Vec::new(), recipient_dsn: Vec::new(), asked: 0, accepted: Vec::new(), chunks: None, chunk_failure: None };
        Outcome::Ask(Pending::Mail(Box::new(tx))) // the answer starts it (questions.rs)
    }

    /// RCPT TO (§4.1.1.3) with NOTIFY and ORCPT (RFC 3461): syntax, relay
    /// guard and limits here, the rest is policy.
    /// Recipients still being asked about count against the limit.
    fn rcpt(&mut self, path: &[u8], params: &str) -> Outcome {
        let Some(tx) = &self.tx else {
            return bad_sequence("Error: need MAIL command");
        };
        if tx.chunks.is_some() {
            return bad_sequence("Error: RCPT after BDAT");
        }
        if !params.is_empty() && !self.esmtp {
            return Outcome::Reply(command::unknown_param()); // parameters need EHLO
        }
        let dsn = match command::parse_rcpt_params(params) {
            Ok(dsn) => dsn,
            Err(reply) => return Outcome::Reply(reply),
        };
        let mailbox = match address::parse_forward_path(path, tx.params.smtputf8) {
            Ok(ForwardPath::Postmaster) => format!("postmaster@{}", self.config.postmaster_domain),
            Ok(ForwardPath::Mailbox(mailbox)) if mailbox.hides_a_route() => {
                // `%`, `!` or a quoted `@` could route elsewhere downstream
                // while the policy would see one of our domains.
                return Outcome::Reply(Reply::new(550, "5.7.1", "Error: relaying denied (route in local part)"));
            }
            Ok(ForwardPath::Mailbox(mailbox)) => mailbox.to_address(),
            Err(PathError::NonAscii) => return non_ascii(),
            Err(PathError::TooLong) => return Outcome::Reply(Reply::new(501, "5.1.3", "Error: recipient address too long")),
            Err(PathError::Syntax) => return Outcome::Reply(Reply::new(501, "5.1.3", "Error: bad recipient address syntax")),
        };
        if tx.recipients.iter().any(|r| same_mailbox(r, &mailbox)) {
            return ok("2.1.5", "Ok"); // already accepted; do not ask or count twice
        }
        if tx.recipients.len() + tx.asked >= self.policy().recipients_max {
            // RFC 5321 §4.5.3.1.10: 452 so the client retries the rest later.
            return Outcome::Reply(Reply::new(452, "4.5.3", "Error: too many recipients"));
        }
        let twin = self.in_flight(&mailbox);
        Outcome::Ask(Pending::Rcpt { mailbox, twin, dsn })
    }

    /// DATA (§4.1.1.4).
    fn data(&mut self) -> Outcome {
        let Some(tx) = &self.tx else {
            return bad_sequence("Error: need MAIL command");
        };
        if tx.recipients.is_empty() {
            return Outcome::Reply(Reply::new(554, "5.5.1", "Error: no valid recipients"));
        }
        if tx.chunks.is_some() {
            return bad_sequence("Error: DATA after BDAT"); // RFC 3030 §2
        }
        if tx.params.body == Some(BodyType::BinaryMime) {
            return bad_sequence("Error: BODY=BINARYMIME requires BDAT"); // RFC 3030 §3
        }
        Outcome::Data
    }

    /// BDAT (RFC 3030 §2): the chunk is read in full whatever the reply.
    fn bdat(&mut self, size: u64, last: bool) -> Outcome {
        let max = self.policy().message_bytes_max;
        let refusal = match &mut self.tx {
            None => Some(Reply::new(503, "5.5.1", "Error: need MAIL command")),
            Some(tx) if tx.recipients.is_empty() => Some(Reply::new(554, "5.5.1", "Error: no valid recipients")),
            Some(tx) if tx.chunk_failure.is_some() => tx.chunk_failure.clone(),
            Some(tx) => {
                let binary = tx.params.body == Some(BodyType::BinaryMime);
                tx.chunks.get_or_insert_with(|| ChunkedBody::new(max, binary));
                None
            }
        };
        Outcome::Chunk { size, last, refusal }
    }
}

/// RFC 5321 §3.1: after a 554 greeting, wait for QUIT and answer anything
/// else with 503. A BDAT chunk is still read whole, or its octets would be
/// taken for commands. These 503s count towards the error limit.
fn refused_connection(cmd: Command<'_>) -> Outcome {
    let refusal = Reply::new(503, "5.5.1", "Error: connection refused, send QUIT");
    match cmd {
        Command::Quit => Outcome::Close(Reply::new(221, "2.0.0", "Bye")),
        Command::Bdat { size, last } => Outcome::Chunk { size, last, refusal: Some(refusal) },
        _ => Outcome::Reply(refusal),
    }
}

fn ok(enhanced: &str, text: &str) -> Outcome {
    Outcome::Reply(Reply::new(250, enhanced, text))
}

/// §4.3.2: 503 for commands out of sequence.
fn bad_sequence(text: &str) -> Outcome {
    Outcome::Reply(Reply::new(503, "5.5.1", text))
}

/// RFC 6531 §3.4: non-ASCII address without the SMTPUTF8 parameter.
fn non_ascii() -> Outcome {
    Outcome::Reply(Reply::new(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8"))
}

/// Same local part, domain compared case-insensitively (RFC 5321 §2.4).
pub(super) fn same_mailbox(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}
