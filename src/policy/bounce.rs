//! Bounce verification at RCPT (BATV, draft-levine-smtp-batv-01; ESA's
//! "Bounce Verification"): the first recipient check after DHAP and the
//! REJECT policies, so the RAT, the rate limits, the LDAP accept query,
//! call-ahead and delivery all see the mailbox a tag stands for.
//!
//! Only while `[bounce_verification] keys` are configured, and only for
//! recipients that come in (a RELAY policy or an authenticated session
//! sends out: its bounces are not ours to judge and pass as they are):
//! - a bounce (null sender, RFC 5321 §4.5.5) to a `prvs=` tag we made and
//!   that has not expired goes on as the stripped mailbox;
//! - a bounce to a tag that is bad (not ours, its key rotated out) or
//!   expired gets 550 5.7.1: it answers mail we never sent;
//! - a bounce to an untagged mailbox gets 550 5.7.1 unless
//!   `accept_untagged_bounces`, or unless it is the postmaster (RFC 5321
//!   §4.5.1: mail to postmaster is always accepted);
//! - mail with a real sender to a tagged address is not judged: the tag is
//!   stripped whatever its age or key (a reply to an address a mailing
//!   list or an autoresponder took from our envelope is legitimate, and
//!   what the mailbox accepts is for the RAT and call-ahead to say).
//!
//! `check` is the pure decision; `judge` logs it and counts it.

use crate::config::bounce_verification::BounceVerification;
use crate::policy::client::Client;
use crate::prvs::{self, Verdict};
use crate::shard::Shard;
use crate::smtp::{Decision, Reply};

/// What bounce verification makes of one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Not judged (off, an outbound recipient, a non-bounce without a tag).
    AsIs,
    /// An untagged bounce let through (`accept_untagged_bounces`, postmaster).
    Accepted {
        result: &'static str,
    },
    /// Go on with `mailbox`, the tag stripped.
    Stripped {
        mailbox: String,
        result: &'static str,
    },
    Refused {
        reply: Reply,
        result: &'static str,
    },
}

impl Check {
    /// The word for the log line and the metric, when it was judged.
    pub fn result(&self) -> Option<&'static str> {
        match self {
            Check::AsIs => None,
            Check::Accepted { result }
            | Check::Stripped { result, .. }
            | Check::Refused { result, .. } => Some(result),
        }
    }
}

/// The decision for `mailbox` in a transaction from `mail_from` ("" is
/// the null sender) on `today_days` (days since the Unix epoch, UTC).
/// `relay`: the session relays (RELAY policy or authenticated).
pub fn check(
    mailbox: &str,
    mail_from: &str,
    relay: bool,
    verification: Option<&BounceVerification>,
    today_days: u64,
) -> Check {
    let Some(v) = verification.filter(|_| !relay) else {
        return Check::AsIs;
    };
    if !mail_from.is_empty() {
        return match prvs::parse(mailbox) {
            Some(tagged) => Check::Stripped {
                mailbox: tagged.mailbox.to_string(),
                result: "stripped",
            },
            None => Check::AsIs,
        };
    }
    match prvs::verify(mailbox, &v.keys, today_days) {
        Verdict::Valid { stripped } => Check::Stripped {
            mailbox: stripped,
            result: "valid",
        },
        Verdict::Expired => Check::Refused {
            reply: Reply::new(
                550,
                "5.7.1",
                "Error: the bounce address tag is not valid (expired)",
            ),
            result: "expired",
        },
        Verdict::BadTag => Check::Refused {
            reply: Reply::new(550, "5.7.1", "Error: the bounce address tag is not valid"),
            result: "bad",
        },
        Verdict::Untagged if v.accept_untagged_bounces || is_postmaster(mailbox) => {
            Check::Accepted {
                result: "untagged_accepted",
            }
        }
        Verdict::Untagged => Check::Refused {
            reply: Reply::new(
                550,
                "5.7.1",
                "Error: bounce to an untagged address: we did not send that message",
            ),
            result: "untagged_refused",
        },
    }
}

/// `check` for the session of `client`, logged (one `batv` line per
/// judged recipient) and counted (bounces only). Ok: the mailbox to go
/// on with when the tag was stripped; Err: the refusal.
pub fn judge(
    shard: &Shard,
    client: &Client,
    mailbox: &str,
    mail_from: &str,
    relay: bool,
    verification: Option<&BounceVerification>,
) -> Result<Option<String>, Decision> {
    let today = prvs::day_of(crate::clock::now().0);
    let checked = check(mailbox, mail_from, relay, verification, today);
    let Some(result) = checked.result() else {
        return Ok(None);
    };
    if mail_from.is_empty() {
        shard.metrics.bounce_verification(result);
    }
    let conn = &client.peer.connection_id;
    match checked {
        Check::AsIs | Check::Accepted { .. } => {
            shard.log.event(
                "batv",
                format_args!(
                    "conn={conn} {} from=<{mail_from}> rcpt=<{mailbox}> result={result}",
                    client.label()
                ),
            );
            Ok(None)
        }
        Check::Stripped {
            mailbox: stripped, ..
        } => {
            shard.log.event("batv", format_args!("conn={conn} {} from=<{mail_from}> rcpt=<{mailbox}> result={result} stripped=<{stripped}>", client.label()));
            Ok(Some(stripped))
        }
        Check::Refused { reply, .. } => {
            shard.log.event("batv", format_args!("conn={conn} {} from=<{mail_from}> rcpt=<{mailbox}> result={result} reply=\"{reply}\"", client.label()));
            Err(Decision::Refuse(reply))
        }
    }
}

/// RFC 5321 §4.5.1: "postmaster" (any case) at any of our domains.
fn is_postmaster(mailbox: &str) -> bool {
    mailbox
        .rsplit_once('@')
        .map_or(mailbox, |(local, _)| local)
        .eq_ignore_ascii_case("postmaster")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prvs::Keys;

    const TODAY: u64 = 20_116;

    fn verification(accept_untagged_bounces: bool) -> BounceVerification {
        let keys = Keys::new(
            &["current-secret".to_string(), "previous-secret".to_string()],
            7,
        );
        BounceVerification {
            keys,
            accept_untagged_bounces,
            tag_lifetime_days: 7,
        }
    }

    fn tagged(mailbox: &str) -> String {
        prvs::tag(mailbox, &verification(false).keys, TODAY, 7)
    }

    fn refused(code: &'static str, result: &'static str) -> impl Fn(&Check) -> bool {
        move |c| matches!(c, Check::Refused { reply, result: r } if reply.code == 550 && reply.enhanced == code && *r == result && (reply.lines.join(" ").contains("not valid") || reply.lines.join(" ").contains("untagged")))
    }

    #[test]
    fn a_bounce_to_a_valid_tag_goes_on_stripped() {
        let v = verification(false);
        let check = check(&tagged("bob@example.test"), "", false, Some(&v), TODAY + 3);
        assert_eq!(
            check,
            Check::Stripped {
                mailbox: "bob@example.test".into(),
                result: "valid"
            }
        );
    }

    #[test]
    fn a_bounce_to_a_bad_expired_or_missing_tag_is_refused() {
        let v = verification(false);
        let bad = tagged("bob@example.test").replace("bob@", "eve@");
        assert!(refused("5.7.1", "bad")(&check(
            &bad,
            "",
            false,
            Some(&v),
            TODAY
        )));
        assert!(refused("5.7.1", "expired")(&check(
            &tagged("bob@example.test"),
            "",
            false,
            Some(&v),
            TODAY + 8
        )));
        assert!(refused("5.7.1", "untagged_refused")(&check(
            "bob@example.test",
            "",
            false,
            Some(&v),
            TODAY
        )));
    }

    #[test]
    fn untagged_bounces_pass_when_configured_and_to_the_postmaster() {
        let accepting = verification(true);
        assert_eq!(
            check("bob@example.test", "", false, Some(&accepting), TODAY),
            Check::Accepted {
                result: "untagged_accepted"
            }
        );
        let strict = verification(false);
        assert_eq!(
            check("PostMaster@example.test", "", false, Some(&strict), TODAY),
            Check::Accepted {
                result: "untagged_accepted"
            }
        );
        // Accepting untagged bounces does not make a bad tag good.
        let bad = tagged("bob@example.test").replace("prvs=0", "prvs=5");
        assert!(refused("5.7.1", "bad")(&check(
            &bad,
            "",
            false,
            Some(&accepting),
            TODAY
        )));
    }

    #[test]
    fn mail_with_a_sender_is_stripped_unjudged_and_untagged_mail_is_untouched() {
        let v = verification(false);
        let old = tagged("bob@example.test");
        for today in [TODAY, TODAY + 100] {
            assert_eq!(
                check(&old, "alice@sender.test", false, Some(&v), today),
                Check::Stripped {
                    mailbox: "bob@example.test".into(),
                    result: "stripped"
                }
            );
        }
        assert_eq!(
            check(
                "bob@example.test",
                "alice@sender.test",
                false,
                Some(&v),
                TODAY
            ),
            Check::AsIs
        );
    }

    #[test]
    fn off_or_outbound_nothing_is_judged() {
        let v = verification(false);
        assert_eq!(
            check("bob@example.test", "", false, None, TODAY),
            Check::AsIs
        );
        assert_eq!(
            check(&tagged("bob@example.test"), "", false, None, TODAY),
            Check::AsIs
        );
        assert_eq!(
            check("someone@remote.test", "", true, Some(&v), TODAY),
            Check::AsIs
        );
    }
}
