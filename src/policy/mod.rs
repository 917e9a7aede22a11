//! Policy decisions returned as values: the session asks, policy answers.
//!
//! Every `smtp::Question` (connect, MAIL, RCPT; AUTH later) is answered by
//! `decide` with a `smtp::Decision`. Today: every connection is admitted under
//! the configured limits, every sender is accepted, and recipients get the
//! relay decision. Later issues add here the HAT (Host Access Table: sender
//! groups → mail flow policies), the RAT (Recipient Access Table), rate
//! limits, DHAP (Directory Harvest Attack Prevention) and sender checks; the
//! slow ones (call-ahead) will answer through futures the driver awaits.
//!
//! A new question reaches the session in three steps: a `Question` variant
//! (and its `Pending` twin) in `smtp/session/questions.rs`; the command asks
//! it (`Outcome::Ask` in `smtp/session/commands.rs`) and its answer is turned
//! into the reply in `Session::answer`; `decide` here answers it. The driver
//! (`connection.rs`) needs no change: every question is a decision future.

use crate::config::Policy;
use crate::smtp::{Decision, Peer, Question};

pub mod connect;
pub mod rate;
pub mod recipient;

/// The answer to one question of the session on connection `peer`.
pub fn decide(question: &Question, policy: &Policy, peer: &Peer) -> Decision {
    match question {
        Question::Connect => connect::decide(policy, peer),
        // Sender checks (syntax beyond RFC 5321, DNS, exceptions, sender rate) come here.
        Question::Mail { .. } => Decision::Accept,
        Question::Rcpt { mailbox, .. } => recipient::decide(policy, mailbox),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer {
            connection_id: "C1".into(),
            addr: "192.0.2.10:40000".parse().unwrap(),
            local: "192.0.2.1:25".parse().unwrap(),
        }
    }

    #[test]
    fn each_question_gets_its_decision() {
        let (_, c) = crate::config::Config::default().split();
        assert!(matches!(decide(&Question::Connect, &c, &peer()), Decision::Admit(_)));
        let mail = Question::Mail { mail_from: String::new(), size: None, body: None, smtputf8: false };
        assert_eq!(decide(&mail, &c, &peer()), Decision::Accept);
        let rcpt = |mailbox: &str| Question::Rcpt { mailbox: mailbox.into(), mail_from: "a@b.test".into() };
        assert_eq!(decide(&rcpt("u@example.test"), &c, &peer()), Decision::Accept);
        assert!(matches!(decide(&rcpt("u@outside.test"), &c, &peer()), Decision::Refuse(r) if r.code == 550));
    }
}
