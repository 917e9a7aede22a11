//! Policy decisions returned as values: the session asks, policy answers.
//!
//! The connect question is answered by `connect::admit` (HAT → mail flow
//! policy → behaviour and the concurrent-connection limit), which also makes
//! the `Client` every later decision of the connection uses. MAIL is
//! answered by `sender` (exception table, envelope sender DNS verification),
//! RCPT by `recipient` (DHAP, the RAT, routes, the rate limits of `limits`
//! over the appliance-wide counters of `rate`). Slow answers (DNS, a counter
//! on another shard, call-ahead later) are futures the driver awaits.
//!
//! Compiled tables: `access` (listeners, HATs, RATs, policies by name),
//! `hat`, `rat`, `flow` (one mail flow policy).
//!
//! A new question reaches the session in three steps: a `Question` variant
//! (and its `Pending` twin) in `smtp/session/questions.rs`; the command asks
//! it (`Outcome::Ask` in `smtp/session/commands.rs`) and its answer is turned
//! into the reply in `Session::answer`; `decide` here answers it. The driver
//! (`connection.rs`) needs no change: every question is a decision future.

use crate::config::Policy;
use crate::shard::Shard;
use crate::smtp::{Decision, Question};

pub mod access;
pub mod bounce;
pub mod client;
pub mod connect;
pub mod dhap;
pub mod flow;
pub mod hat;
pub mod limits;
pub mod patterns;
pub mod rat;
pub mod rate;
pub mod recipient;
pub mod sender;

pub use client::Client;

/// AUTH (RFC 4954): the backend decides; a client past `auth_failures_max`
/// failures this hour is cut off before its password is looked at.
async fn authenticate(shard: &Shard, policy: &Policy, client: &Client, user: &str, password: &crate::auth::Secret) -> Decision {
    use crate::auth::{AuthOutcome, Credentials};
    use crate::smtp::Reply;
    let credentials = Credentials { user: user.to_string(), password: password.clone() };
    match crate::auth::authenticate(shard, policy, &client.peer.connection_id, client.ip, credentials).await {
        AuthOutcome::Success { .. } => Decision::Accept,
        AuthOutcome::Failure => Decision::Refuse(Reply::new(535, "5.7.8", "Error: authentication credentials invalid")),
        AuthOutcome::TemporaryFailure(_) => Decision::Refuse(Reply::new(454, "4.7.0", "Temporary authentication failure")),
        AuthOutcome::Blocked => Decision::Close(Reply::new(421, "4.7.0", format!("{} Error: too many failed authentications, try again later", client.listener.hostname))),
    }
}

/// The answer to a MAIL or RCPT question of `client`'s session (connect is
/// `connect::admit`).
pub async fn decide(question: &Question, shard: &Shard, policy: &Policy, client: &Client) -> Decision {
    match question {
        Question::Connect => {
            debug_assert!(false, "connect is decided by connect::admit");
            Decision::Close(crate::smtp::Reply::new(421, "4.3.0", "Error: internal policy error"))
        }
        Question::Mail { mail_from, .. } => {
            match sender::verify(mail_from, &client.policy, &policy.access.sender_exceptions, &shard.resolver).await {
                Ok(()) => Decision::Accept,
                Err(refusal) => {
                    shard.log.event("sender", format_args!(
                        "conn={} {} from=<{mail_from}> rule={} detail=\"{}\" reply=\"{}\"",
                        client.peer.connection_id, client.label(), refusal.rule, refusal.detail.escape_debug(), refusal.reply
                    ));
                    Decision::Refuse(refusal.reply)
                }
            }
        }
        Question::Rcpt { mailbox, mail_from, authenticated } => {
            recipient::decide(shard, client, mailbox, mail_from, *authenticated, policy.bounce_verification.as_deref()).await
        }
        Question::Auth { user, password } => authenticate(shard, policy, client, user, password).await,
    }
}
