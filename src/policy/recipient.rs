//! Recipient decision: may this final mailbox be relayed?
//!
//! The session has already refused every address form that could smuggle an
//! outside recipient (source routes dropped, `%`, `!`, quoted `@` refused), so
//! here the domain of the final mailbox decides: one of our relay domains with
//! a route → accept; anything else → 550 5.7.1. The RAT and call-ahead will
//! sit here next.

use crate::config::Policy;
use crate::message::domain_of;
use crate::smtp::{Decision, Reply};

pub fn decide(policy: &Policy, mailbox: &str) -> Decision {
    let domain = domain_of(mailbox);
    if domain.is_empty() || !policy.is_relay_domain(&domain) {
        return Decision::Refuse(Reply::new(550, "5.7.1", format!("<{mailbox}>: Relay access denied")));
    }
    if policy.route_for(&domain).is_none() {
        // validate() makes every relay domain routable; keep a safe answer anyway.
        return Decision::Refuse(Reply::new(451, "4.4.0", format!("<{mailbox}>: No route to destination")));
    }
    Decision::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relay_domains_pass() {
        let (_, c) = crate::config::Config::default().split();
        assert_eq!(decide(&c, "user@EXAMPLE.test"), Decision::Accept);
        assert!(matches!(decide(&c, "user@outside.test"), Decision::Refuse(r) if r.code == 550 && r.enhanced == "5.7.1"));
        assert!(matches!(decide(&c, "user@[127.0.0.1]"), Decision::Refuse(r) if r.code == 550));
        assert!(matches!(decide(&c, "user@sub.example.test"), Decision::Refuse(_)));
    }
}
