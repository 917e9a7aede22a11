//! Policy questions and their answers (DESIGN.md, "The pure core").
//!
//! Every policy reaches the session the same way: the session returns
//! `Action::Ask` with a `Question` and a `Ticket`, the driver decides (HAT,
//! RAT, call-ahead, …) and hands back a `Decision` through `answer`. The
//! reply to the command waits in its slot (`replies.rs`), so answers may
//! come in any order and replies still leave in command order.
//!
//! Only RCPT questions may be in flight together: while consecutive RCPTs
//! are in the input, each is asked without waiting for the answers before
//! it (call-ahead probes them in parallel). Any other command waits until
//! every question is answered: a MAIL's answer decides whether its RCPTs
//! may run at all, DATA needs the final recipient list, and RSET, EHLO or
//! QUIT end what was asked about.

use std::sync::Arc;

use super::policy::ConnectionPolicy;
use super::{commands::same_mailbox, Action, Session, State, Transaction};
use crate::limits;
use crate::message::BodyType;
use crate::smtp::command;
use crate::smtp::dsn::RecipientDsn;
use crate::smtp::reply::Reply;
use crate::smtp::sasl::Secret;

/// Names one question in flight; `answer` takes it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub(super) u32);

/// What the session asks the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Question {
    /// A client connected: admit it under a mail flow policy, refuse or close.
    Connect,
    /// MAIL FROM passed syntax and the size limit: may this transaction start?
    /// `mail_from` is empty for the null reverse-path.
    Mail { mail_from: String, size: Option<u64>, body: Option<BodyType>, smtputf8: bool },
    /// RCPT TO passed syntax, the relay guard and the recipient limit: may
    /// mail go to this final mailbox (source route removed; a bare postmaster
    /// already has `postmaster_domain`)? `mail_from` is the transaction's.
    /// `authenticated`: the session authenticated (RFC 4954), so it may
    /// relay like a RELAY policy, under the same limits.
    Rcpt { mailbox: String, mail_from: String, authenticated: bool },
    /// AUTH PLAIN or LOGIN: are these credentials right? Accept is 235,
    /// a refusal is 535 5.7.8 (or 454 / 421 as the policy says).
    Auth { user: String, password: Secret },
}

/// The policy's answer to one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// MAIL or RCPT: go ahead (250).
    Accept,
    /// RCPT only: go ahead (250), with this mailbox in the envelope instead
    /// of the one asked about: a BATV-tagged bounce address
    /// (`prvs=…=local@domain`) stripped to the mailbox it tags, which is
    /// what the policy judged and what delivery must see.
    AcceptAs(String),
    /// Connect: go ahead under this policy (banner, limits, SIZE).
    Admit(Arc<ConnectionPolicy>),
    /// Send this 4xx/5xx and go on. Not counted as a client error: the
    /// policy (DHAP later) counts what it refuses.
    Refuse(Reply),
    /// Send this 421 and close (RFC 5321 §3.8: 421 ends the session).
    Close(Reply),
    /// Send this refusal, then close: DHAP's `dhap_drop_connection` (ESA
    /// answers the harvesting RCPT with its code and drops the connection).
    RefuseAndClose(Reply),
}

/// What an unanswered slot waits for, with what its answer needs.
#[derive(Debug)]
pub(super) enum Pending {
    Connect,
    /// The transaction that starts if the MAIL is accepted (boxed: it is
    /// large, and the questions in flight are moved around).
    Mail(Box<Transaction>),
    /// `twin`: the same mailbox was in flight when this was asked, so an
    /// accept must not add it twice (checked only then: the scan is the
    /// costliest part of an accept).
    /// `dsn`: the RCPT's NOTIFY and ORCPT (RFC 3461), kept if it is accepted.
    Rcpt { mailbox: String, twin: bool, dsn: RecipientDsn },
    Auth { user: String, password: Secret },
}

impl Session {
    /// The answer to the question `ticket` names. Answers may come in any
    /// order; one for a question dropped by a timeout, a shutdown or a close
    /// is ignored.
    pub fn answer(&mut self, ticket: Ticket, decision: Decision) {
        debug_assert!(self.replies.issued(ticket), "{ticket:?} was never asked");
        let Some(i) = self.questions.iter().position(|(t, _)| *t == ticket) else {
            return;
        };
        let (_, pending) = self.questions.remove(i);
        let decision = self.fitting(&pending, decision);
        let reply = match (pending, decision) {
            (_, Decision::Close(reply) | Decision::RefuseAndClose(reply)) => return self.close_after(ticket, reply),
            (Pending::Connect, decision) => self.admit(decision),
            (Pending::Mail(tx), decision) => self.start_transaction(tx, decision),
            (Pending::Rcpt { mailbox: asked, dsn, .. }, Decision::AcceptAs(mailbox)) => {
                // RFC 3461 §5.2.1: a DSN still names the address the client
                // used (ORCPT, unless it gave one). The stripped mailbox may
                // be one already accepted: always check.
                let dsn = dsn.relayed(&asked, &mailbox);
                self.add_recipient(ticket, mailbox, dsn, true, Decision::Accept)
            }
            (Pending::Rcpt { mailbox, twin, dsn }, decision) => self.add_recipient(ticket, mailbox, dsn, twin, decision),
            (Pending::Auth { user, .. }, Decision::Accept) => self.authenticated_as(user),
            (Pending::Auth { .. }, Decision::Refuse(reply)) => reply,
            (Pending::Auth { .. }, Decision::Admit(_) | Decision::AcceptAs(_)) => unreachable!("fitting() maps Admit and AcceptAs"),
        };
        self.replies.fill(ticket, reply);
        self.release();
    }

    /// Ask `pending`'s question; its reply slot waits for the answer.
    pub(super) fn ask(&mut self, command: &str, argument: String, pending: Pending) -> Action {
        let question = match &pending {
            Pending::Connect => Question::Connect,
            Pending::Mail(tx) => Question::Mail {
                mail_from: tx.mail_from.clone(),
                size: tx.params.size,
                body: tx.params.body,
                smtputf8: tx.params.smtputf8,
            },
            Pending::Rcpt { mailbox, .. } => {
                let tx = self.tx.as_mut().expect("RCPT is asked inside a transaction");
                tx.asked += 1; // reserves a recipient: recipients_max holds with questions in flight
                Question::Rcpt { mailbox: mailbox.clone(), mail_from: tx.mail_from.clone(), authenticated: self.authenticated.is_some() }
            }
            Pending::Auth { user, password } => Question::Auth { user: user.clone(), password: password.clone() },
        };
        let ticket = self.replies.ask(command, argument);
        self.questions.push((ticket, pending));
        Action::Ask { ticket, question }
    }

    /// Is this mailbox already being asked about? (RFC 5321 §2.4: the
    /// domain compares case-insensitively.)
    pub(super) fn in_flight(&self, mailbox: &str) -> bool {
        self.questions.iter().any(|(_, p)| matches!(p, Pending::Rcpt { mailbox: m, .. } if same_mailbox(m, mailbox)))
    }

    /// With questions in flight, may this complete command line run now?
    /// Only a RCPT behind RCPTs, and only while the held replies stay bounded.
    pub(super) fn may_run_ahead(&self, line: &[u8]) -> bool {
        self.questions.iter().all(|(_, p)| matches!(p, Pending::Rcpt { .. }))
            && self.replies.held() < limits::SESSION_REPLIES_HELD_MAX
            && command::verb(line) == "RCPT"
    }

    /// A timeout or shutdown does not wait for the policy: unanswered
    /// questions are dropped with every reply held behind them.
    pub(super) fn abandon_questions(&mut self) {
        if self.questions.is_empty() {
            return;
        }
        self.questions.clear();
        self.replies.abandon();
        if matches!(self.state, State::Closing) {
            self.state = State::Command; // its final reply was held behind them, and is gone
        }
    }

    /// A decision that does not fit its question is a bug in the policy;
    /// the client gets a temporary error, never a 250 nobody decided.
    fn fitting(&self, pending: &Pending, decision: Decision) -> Decision {
        match &decision {
            Decision::Refuse(reply) => debug_assert!(!reply.is_positive(), "a refusal must be 4xx/5xx: {reply}"),
            Decision::Close(reply) => debug_assert_eq!(reply.code, 421, "only 421 closes (RFC 5321 §3.8): {reply}"),
            Decision::RefuseAndClose(reply) => debug_assert!(!reply.is_positive(), "a refusal must be 4xx/5xx: {reply}"),
            Decision::Accept | Decision::Admit(_) | Decision::AcceptAs(_) => {}
        }
        let connect = matches!(pending, Pending::Connect);
        match decision {
            Decision::AcceptAs(_) if !matches!(pending, Pending::Rcpt { .. }) => {
                debug_assert!(false, "AcceptAs answers RCPT only");
                match connect {
                    true => Decision::Close(self.closing_reply("4.3.0", "Error: internal policy error")),
                    false => Decision::Refuse(Reply::new(451, "4.3.0", "Error: internal policy error")),
                }
            }
            Decision::Accept if connect => {
                debug_assert!(false, "Accept answers MAIL/RCPT; a connection is admitted");
                Decision::Close(self.closing_reply("4.3.0", "Error: internal policy error"))
            }
            Decision::Admit(_) if !connect => {
                debug_assert!(false, "Admit answers Connect only");
                Decision::Refuse(Reply::new(451, "4.3.0", "Error: internal policy error"))
            }
            decision => decision,
        }
    }

    /// The answer to Connect: the greeting, or RFC 5321 §3.1's refusal.
    fn admit(&mut self, decision: Decision) -> Reply {
        match decision {
            Decision::Admit(policy) => {
                let greeting = policy.banner.reply();
                debug_assert!((200..300).contains(&greeting.code), "a banner is 2xx: {greeting}");
                self.admission = Admission::Admitted(policy);
                greeting
            }
            Decision::Refuse(reply) => {
                // §3.1: after a 554 greeting wait for QUIT, 503 to anything else.
                self.admission = Admission::Refused;
                reply
            }
            Decision::Accept | Decision::AcceptAs(_) | Decision::Close(_) | Decision::RefuseAndClose(_) => unreachable!("fitting() maps these"),
        }
    }

    fn start_transaction(&mut self, tx: Box<Transaction>, decision: Decision) -> Reply {
        match decision {
            Decision::Accept => {
                debug_assert!(self.tx.is_none(), "nothing runs while MAIL is asked");
                if !matches!(self.state, State::Closing) {
                    self.tx = Some(*tx);
                }
                Reply::new(250, "2.1.0", "Ok")
            }
            Decision::Refuse(reply) => reply,
            Decision::Admit(_) | Decision::AcceptAs(_) | Decision::Close(_) | Decision::RefuseAndClose(_) => unreachable!("answer() closes on these, fitting() maps AcceptAs"),
        }
    }

    fn add_recipient(&mut self, ticket: Ticket, mailbox: String, dsn: RecipientDsn, twin: bool, decision: Decision) -> Reply {
        let max = self.admission.policy().map_or(0, |p| p.recipients_max);
        // Only a close drops the transaction while RCPTs are in flight.
        let tx = self.tx.as_mut();
        debug_assert!(tx.is_some() || matches!(self.state, State::Closing));
        match decision {
            Decision::Accept => {
                if let Some(tx) = tx {
                    tx.asked -= 1;
                    // The same mailbox may have been asked twice in one batch
                    // (or a tag stripped to one already there).
                    if !(twin && already_accepted(tx, &mailbox, ticket)) {
                        debug_assert!(tx.recipients.len() < max, "the slot was reserved");
                        // In RCPT order whatever the answer order: tickets grow with the commands.
                        let at = tx.accepted.partition_point(|t| *t < ticket);
                        tx.accepted.insert(at, ticket);
                        tx.recipients.insert(at, mailbox);
                        tx.recipient_dsn.insert(at, dsn);
                    }
                }
                Reply::new(250, "2.1.5", "Ok")
            }
            Decision::Refuse(reply) => {
                if let Some(tx) = tx {
                    tx.asked -= 1;
                }
                reply
            }
            Decision::Admit(_) | Decision::AcceptAs(_) | Decision::Close(_) | Decision::RefuseAndClose(_) => unreachable!("answer() closes on these and maps AcceptAs"),
        }
    }

    /// A policy close: the 421 takes this command's slot, commands after it
    /// are dropped, and the session closes once the replies before it are out.
    fn close_after(&mut self, ticket: Ticket, reply: Reply) {
        self.replies.fill(ticket, reply);
        self.replies.truncate_after(ticket);
        self.questions.retain(|(t, _)| *t < ticket);
        self.consumed = self.input.len();
        self.tx = None;
        self.state = State::Closing;
        self.release();
    }
}

/// Is `mailbox` in `tx` already, from a RCPT before `ticket`? If it came
/// from a later one (whose answer arrived first), that entry is taken out
/// and this RCPT takes its place: a mailbox stays once, where its first
/// RCPT put it.
fn already_accepted(tx: &mut Transaction, mailbox: &str, ticket: Ticket) -> bool {
    let Some(i) = tx.recipients.iter().position(|r| same_mailbox(r, mailbox)) else {
        return false;
    };
    if tx.accepted[i] < ticket {
        return true;
    }
    tx.accepted.remove(i);
    tx.recipients.remove(i);
    tx.recipient_dsn.remove(i);
    false
}

/// Where the connection stands with the connect policy.
#[derive(Debug)]
pub(super) enum Admission {
    /// `Question::Connect` is out; commands wait (RFC 5321 §4.3.1: the greeting comes first).
    Asking,
    Admitted(Arc<ConnectionPolicy>),
    /// Refused with a 5xx greeting: 503 to everything but QUIT (RFC 5321 §3.1).
    Refused,
}

impl Admission {
    pub(super) fn policy(&self) -> Option<&ConnectionPolicy> {
        match self {
            Admission::Admitted(policy) => Some(policy),
            Admission::Asking | Admission::Refused => None,
        }
    }
}
