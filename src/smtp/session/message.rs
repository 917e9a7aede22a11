//! The end of a message: the last octet of DATA or of a BDAT LAST chunk
//! hands the transaction to the spool (`Action::Store`), and `stored` turns
//! the spool's result into the reply (DESIGN.md: never 250 before the
//! message is on stable storage). A body refused on the way gets its reply
//! here too.

use super::{Action, Session, State, Step, StoreError};
use crate::message::{Message, QueueId};
use crate::smtp::body::{BodyOutcome, DataReceiver};
use crate::smtp::reply::Reply;

impl Session {
    /// The spool's answer to `Action::Store`: 250 with the queue id, or 452 4.3.1.
    pub fn stored(&mut self, result: Result<QueueId, StoreError>) {
        let (command, argument) = match std::mem::replace(&mut self.state, State::Command) {
            State::AwaitStore { command, argument } => (command, argument),
            other => {
                debug_assert!(matches!(other, State::Closing), "stored in {other:?}");
                self.state = other;
                return;
            }
        };
        debug_assert!(self.tx.is_none(), "the transaction went to the spool");
        let reply = match result {
            Ok(id) => {
                self.messages += 1;
                self.errors = 0;
                Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
            }
            Err(_) => Reply::new(452, "4.3.1", "Insufficient system storage"),
        };
        self.send(command, argument, reply);
    }
    /// The end of DATA: hand the message to the spool or refuse it.
    pub(super) fn finish_data(&mut self, receiver: DataReceiver) -> Step {
        let argument = receiver.size().to_string();
        match receiver.finish() {
            BodyOutcome::Complete(body) => Step::Act(self.store(body, "DATA-END", argument)),
            refused => {
                self.tx = None;
                self.send("DATA-END", argument, body_refusal(&refused));
                Step::Continue
            }
        }
    }

    /// The last octet of a BDAT chunk arrived (RFC 3030 §2: reply per chunk).
    pub(super) fn finish_chunk(&mut self, size: u64, last: bool, refusal: Option<Reply>, argument: String) -> Step {
        let reply = match refusal {
            Some(reply) => reply,
            None => {
                let tx = self.tx.as_mut().expect("an accepted chunk has a transaction");
                let chunks = tx.chunks.as_ref().expect("chunks started");
                if chunks.too_big() {
                    let reply = body_refusal(&BodyOutcome::TooBig);
                    tx.chunk_failure = Some(reply.clone());
                    reply
                } else if last {
                    let chunks = tx.chunks.take().expect("chunks started");
                    match chunks.finish() {
                        BodyOutcome::Complete(body) => return Step::Act(self.store(body, "BDAT", argument)),
                        refused => body_refusal(&refused),
                    }
                } else {
                    Reply::new(250, "2.0.0", format!("{size} octets received"))
                }
            }
        };
        if last {
            self.tx = None; // LAST ends the transaction, also a refused one
        }
        self.send("BDAT", argument, reply);
        Step::Continue
    }

    /// Move the transaction and body into a Store request.
    fn store(&mut self, body: Vec<u8>, command: &'static str, argument: String) -> Action {
        let tx = self.tx.take().expect("a body belongs to a transaction");
        debug_assert!(!tx.recipients.is_empty(), "no message without recipients");
        let mut envelope = crate::message::Envelope {
            connection_id: self.peer.connection_id.clone(),
            peer: self.peer.addr,
            helo: self.helo.clone().unwrap_or_default(),
            esmtp: self.esmtp,
            mail_from: tx.mail_from,
            body_type: tx.params.body.unwrap_or_default(),
            smtputf8: tx.params.smtputf8,
            recipients: tx.recipients,
            ldap_routing: String::new(), // the listener's, set by the connection
            relayed: false,              // the mail flow policy's, set by the connection
            secured: crate::message::Secured { tls: self.tls.clone(), authenticated: self.authenticated.clone() },
            dsn: tx.params.dsn,
            recipient_dsn: Vec::new(),
        };
        envelope.set_recipient_dsn(tx.recipient_dsn);
        self.state = State::AwaitStore { command, argument };
        Action::Store(Message { envelope, body })
    }
}

/// The reply for a body that is not stored.
fn body_refusal(outcome: &BodyOutcome) -> Reply {
    match outcome {
        BodyOutcome::TooBig => Reply::new(552, "5.3.4", "Error: message too big"),
        BodyOutcome::BareLineEnd => Reply::new(554, "5.6.0", "Message contains bare CR or LF"),
        BodyOutcome::Complete(_) => unreachable!("a complete body is stored"),
    }
}
