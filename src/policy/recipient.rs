//! Recipient decision, in the order ESA applies it: DHAP (a harvesting host
//! gets the DHAP reply whatever it asks), REJECT-at-RCPT policies, bounce
//! verification (`bounce`: a BATV-tagged bounce address is judged and
//! stripped, and everything after it sees the stripped mailbox), the RAT
//! (Recipient Access Table; RELAY policies and authenticated sessions,
//! RFC 4954 "may relay", skip it), then the rate limits
//! (recipients per hour per client, recipients per interval per envelope
//! sender) unless the RAT row bypasses receiving control, the LDAP accept
//! query, then call-ahead (with the LDAP routing query's address and
//! hosts when the listener has one). Routing is not
//! asked here: every domain routes somewhere (its SMTP route, else DNS),
//! and delivery (and call-ahead) route it when they need the hosts.
//!
//! The session has already refused every address form that could smuggle an
//! outside recipient (source routes dropped, `%`, `!`, quoted `@` refused),
//! so the RAT judges the real final mailbox.

use crate::callahead;
use crate::ldap;
use crate::config::bounce_verification::BounceVerification;
use crate::config::flow::Behavior;
use crate::policy::client::Client;
use crate::policy::flow::MailFlowPolicy;
use crate::policy::{bounce, dhap, limits};
use crate::shard::Shard;
use crate::smtp::Decision;

/// Everything it consults comes with the client: the listener (RAT,
/// call-ahead profile) and the mail flow policy of the session's snapshot.
/// `authenticated`: the session passed SMTP AUTH, so it relays like a
/// RELAY policy (no RAT, no LDAP accept, no call-ahead) under the same limits.
/// `bounce_verification`: the snapshot's `[bounce_verification]`, None when off.
/// A recipient whose BATV tag was stripped is accepted as `AcceptAs` the
/// stripped mailbox, which the session stores in the envelope.
pub async fn decide(shard: &Shard, client: &Client, mailbox: &str, mail_from: &str, authenticated: bool, bounce_verification: Option<&BounceVerification>) -> Decision {
    if let Some(refusal) = dhap::refusal(shard, client).await {
        return refusal;
    }
    let flow = &client.policy;
    if flow.rejects_at_rcpt() {
        return Decision::Refuse(flow.reject_rcpt(&client.banner_vars()));
    }
    let relay = relays(flow, authenticated);
    let stripped = match bounce::judge(shard, client, mailbox, mail_from, relay, bounce_verification) {
        Ok(stripped) => stripped,
        Err(refusal) => return refusal,
    };
    let decision = decide_mailbox(shard, client, stripped.as_deref().unwrap_or(mailbox), mail_from, relay).await;
    match (decision, stripped) {
        (Decision::Accept, Some(stripped)) => Decision::AcceptAs(stripped),
        (decision, _) => decision,
    }
}

/// Does mail in this session go out (a RELAY policy, or SMTP AUTH: RFC
/// 4954 "may relay")? Such mail skips the RAT, LDAP accept and call-ahead,
/// is not judged by bounce verification, and is what delivery tags with
/// prvs (`Envelope::relayed`).
pub fn relays(flow: &MailFlowPolicy, authenticated: bool) -> bool {
    flow.behavior() == Behavior::Relay || authenticated
}

/// The RAT, the rate limits, LDAP accept and call-ahead for `mailbox` (the
/// final one: a BATV tag already stripped).
async fn decide_mailbox(shard: &Shard, client: &Client, mailbox: &str, mail_from: &str, relay: bool) -> Decision {
    let mut bypass_limits = false;
    let mut bypass_callahead = false;
    if !relay {
        let verdict = match &client.listener.rat {
            Some(rat) => rat.check(mailbox),
            // A private listener has no RAT: only RELAY policies send through it.
            None => crate::policy::rat::Rat::default().check(mailbox),
        };
        if let Some(reply) = verdict.refusal {
            shard.log.event("rat", format_args!(
                "conn={} {} rcpt=<{mailbox}> row=\"{}\" reply=\"{reply}\"",
                client.peer.connection_id, client.label(), verdict.row
            ));
            if client.listener.callahead.is_some() {
                shard.metrics.callahead_verdict("rat", "refused");
            }
            dhap::count_invalid(shard, client).await;
            return Decision::Refuse(reply);
        }
        bypass_limits = verdict.bypass_receiving_control;
        bypass_callahead = verdict.bypass_callahead;
    }
    if !bypass_limits {
        if let Some(refusal) = limits::recipient(shard, client, mail_from).await {
            return refusal;
        }
    }
    // The directory next (ESA's LDAP Accept): a recipient without an entry
    // is refused here and never called ahead. RELAY skips it, as the RAT.
    if let (Some(query), false) = (&client.listener.ldap_accept, relay) {
        if let Some(refusal) = ldap::accept::refusal(shard, client, query, mailbox).await {
            return refusal;
        }
    }
    // Call-ahead last: a recipient the RAT or the directory refused, or a
    // client over its rate limits, never costs the downstream a probe.
    // RELAY skips it.
    match &client.listener.callahead {
        Some(profile) if !relay => match bypass_callahead {
            true => {
                callahead::validate::bypass(shard, client, mailbox);
                Decision::Accept
            }
            false => callahead::validate::validate(shard, client, profile, client.listener.ldap_routing.as_ref(), mailbox).await,
        },
        _ => Decision::Accept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::flow::FlowParams;

    fn flow(behavior: Behavior) -> MailFlowPolicy {
        let params = FlowParams { behavior, ..FlowParams::default() };
        MailFlowPolicy::compile("TEST", params).unwrap()
    }

    /// What `Envelope::relayed` (prvs tagging on the way out) and the
    /// skipped inbound checks go by.
    #[test]
    fn a_relay_policy_or_an_authenticated_session_relays() {
        assert!(relays(&flow(Behavior::Relay), false));
        assert!(relays(&flow(Behavior::Accept), true));
        assert!(!relays(&flow(Behavior::Accept), false));
    }
}
