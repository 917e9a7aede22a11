//! What a downstream's answer to a call-ahead probe says about the
//! recipient (DESIGN.md, "Durability and safety rules"; issue 7 item 4).
//!
//! Only a RCPT answer can speak for the recipient: 2xx accepts it, and a
//! 5xx whose enhanced code is X.1.x (RFC 3463 §3.2: addressing status; or,
//! without an enhanced code, 550/551/553) says the mailbox does not exist.
//! Those two are the only verdicts that may be cached. A refusal of our
//! connection, greeting, EHLO/HELO or MAIL FROM, a policy refusal (X.7.x),
//! a mail-system status (X.3.x: full, not accepting, "command failed"), a
//! protocol complaint (X.5.x, 500–504), a timeout or garbage says nothing
//! about the recipient: a downstream failure (the profile's failure action,
//! never cached, fed to the breaker). A 4xx at RCPT is a temporary failure
//! (the profile's tempfail action, by default the downstream's own 4xx).
//! Any other 5xx at RCPT (mailbox full or disabled: X.2.x; X.4.x, which
//! some servers use for directory-based blocking, …) refuses this recipient with the downstream's reply, but is not
//! "mailbox unknown": not cached, not counted by DHAP.

use crate::smtp::Reply;

/// Where in the probe a reply (or a failure) came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Greeting,
    Hello,
    MailFrom,
    Rcpt,
}

/// What the probe learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx at RCPT: the mailbox exists. Cached (positive TTL).
    Accepted(Reply),
    /// 5.1.x (or 550/551/553 bare) at RCPT: no such mailbox. Cached
    /// (negative TTL), counted by DHAP, the downstream's reply passed on.
    MailboxUnknown(Reply),
    /// Another 5xx at RCPT: this recipient is refused, for another reason
    /// than its existence. Passed on, not cached, not counted by DHAP.
    RecipientRefused(Reply),
    /// 4xx at RCPT: the profile's tempfail action. Never cached.
    TempFail(Reply),
    /// Nothing about the recipient: the profile's failure action, never
    /// cached, counted by the server's breaker. `reply` is the refusal when
    /// the downstream gave one; `why` names the fault for the log.
    DownstreamFailure { stage: Stage, reply: Option<Reply>, why: String },
}

impl Verdict {
    /// May this verdict be cached (and answered again without a probe)?
    pub fn is_cacheable(&self) -> bool {
        matches!(self, Verdict::Accepted(_) | Verdict::MailboxUnknown(_))
    }

    /// Does it count as a failure of the server (its circuit breaker)?
    pub fn is_server_failure(&self) -> bool {
        matches!(self, Verdict::DownstreamFailure { .. })
    }

    /// Is it an invalid recipient for DHAP?
    pub fn is_invalid_recipient(&self) -> bool {
        matches!(self, Verdict::MailboxUnknown(_))
    }
}

/// The verdict of the downstream's answer to our RCPT.
pub fn of_rcpt(reply: Reply) -> Verdict {
    match reply.code / 100 {
        2 => Verdict::Accepted(reply),
        4 => Verdict::TempFail(reply),
        5 => match subject(&reply) {
            Some(1) => Verdict::MailboxUnknown(reply),
            // X.3 (mail system), X.5 (protocol), X.7 (policy): nothing about the mailbox.
            Some(3) | Some(5) | Some(7) => failure(Stage::Rcpt, reply),
            Some(_) => Verdict::RecipientRefused(reply),
            // RFC 5321 §4.2.3 without RFC 3463: 550 mailbox unavailable,
            // 551 user not local, 553 mailbox name not allowed.
            None if matches!(reply.code, 550 | 551 | 553) => Verdict::MailboxUnknown(reply),
            None if (500..=504).contains(&reply.code) => failure(Stage::Rcpt, reply),
            None => Verdict::RecipientRefused(reply),
        },
        // 1xx/3xx (or anything else) to RCPT is a broken server.
        _ => failure(Stage::Rcpt, reply),
    }
}

/// The verdict when the probe did not get as far as RCPT: the downstream
/// refused us at `stage` (any non-2xx there, 4xx or 5xx alike).
pub fn of_refusal(stage: Stage, reply: Reply) -> Verdict {
    debug_assert!(stage != Stage::Rcpt, "RCPT answers go through of_rcpt");
    failure(stage, reply)
}

/// The verdict when there was no usable answer at all: a timeout, a
/// connection error, garbage, a close.
pub fn of_fault(stage: Stage, why: impl Into<String>) -> Verdict {
    Verdict::DownstreamFailure { stage, reply: None, why: why.into() }
}

fn failure(stage: Stage, reply: Reply) -> Verdict {
    let why = format!("{stage:?} refused: {reply}");
    Verdict::DownstreamFailure { stage, reply: Some(reply), why }
}

/// The subject digit of the enhanced code (`5.1.1` → 1), if the reply has
/// a well-formed one of the reply's class.
fn subject(reply: &Reply) -> Option<u8> {
    let mut parts = reply.enhanced.split('.');
    let class = parts.next()?.parse::<u16>().ok()?;
    let subject = parts.next()?.parse::<u8>().ok()?;
    parts.next()?.parse::<u16>().ok()?;
    (class == reply.code / 100).then_some(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u16, enhanced: &str) -> Reply {
        Reply::new(code, enhanced, "text")
    }

    #[test]
    fn rcpt_answers_by_class_and_enhanced_code() {
        assert!(matches!(of_rcpt(r(250, "2.1.5")), Verdict::Accepted(_)));
        assert!(matches!(of_rcpt(r(550, "5.1.1")), Verdict::MailboxUnknown(_)));
        assert!(matches!(of_rcpt(r(553, "5.1.3")), Verdict::MailboxUnknown(_)));
        assert!(matches!(of_rcpt(r(550, "")), Verdict::MailboxUnknown(_)), "bare 550");
        assert!(matches!(of_rcpt(r(551, "")), Verdict::MailboxUnknown(_)), "bare 551");
        assert!(matches!(of_rcpt(r(450, "4.2.1")), Verdict::TempFail(_)));
        assert!(matches!(of_rcpt(r(452, "")), Verdict::TempFail(_)));
        // A policy refusal says nothing about the mailbox.
        assert!(matches!(of_rcpt(r(550, "5.7.1")), Verdict::DownstreamFailure { stage: Stage::Rcpt, .. }));
        assert!(matches!(of_rcpt(r(501, "5.5.4")), Verdict::DownstreamFailure { .. }));
        assert!(matches!(of_rcpt(r(503, "")), Verdict::DownstreamFailure { .. }));
        assert!(matches!(of_rcpt(r(500, "5.3.0")), Verdict::DownstreamFailure { .. }), "a mail-system status (smtp-sink -f)");
        // Exists but refused: passed on, not "unknown".
        assert!(matches!(of_rcpt(r(552, "5.2.2")), Verdict::RecipientRefused(_)));
        assert!(matches!(of_rcpt(r(554, "")), Verdict::RecipientRefused(_)));
        // An enhanced code of another class is not trusted: the basic code decides.
        assert!(matches!(of_rcpt(r(550, "4.1.1")), Verdict::MailboxUnknown(_)));
        assert!(matches!(of_rcpt(r(354, "")), Verdict::DownstreamFailure { .. }));
    }

    #[test]
    fn only_rcpt_existence_answers_are_cached_or_counted() {
        let cases = [
            (of_rcpt(r(250, "2.1.5")), true, false, false),
            (of_rcpt(r(550, "5.1.1")), true, false, true),
            (of_rcpt(r(550, "5.7.1")), false, true, false),
            (of_rcpt(r(451, "4.3.0")), false, false, false),
            (of_rcpt(r(552, "5.2.2")), false, false, false),
            (of_refusal(Stage::MailFrom, r(550, "5.1.0")), false, true, false),
            (of_refusal(Stage::Greeting, r(421, "")), false, true, false),
            (of_fault(Stage::Connect, "connection refused"), false, true, false),
        ];
        for (verdict, cacheable, failure, invalid) in cases {
            assert_eq!((verdict.is_cacheable(), verdict.is_server_failure(), verdict.is_invalid_recipient()), (cacheable, failure, invalid), "{verdict:?}");
        }
    }
}
