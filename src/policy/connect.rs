//! Connect decision: under which mail flow policy a new connection goes on.
//!
//! The HAT (Host Access Table) will match the client against sender groups
//! and pick a policy (accept, refuse with 554, close with 421, throttle).
//! Today every connection is admitted under one policy built from the
//! configuration: the standard banner and the `[session]` limits.

use std::sync::Arc;

use crate::config::Policy;
use crate::smtp::{Banner, ConnectionPolicy, Decision, Peer};

pub fn decide(policy: &Policy, _peer: &Peer) -> Decision {
    Decision::Admit(Arc::new(connection_policy(policy)))
}

/// The one mail flow policy of today's configuration.
pub fn connection_policy(policy: &Policy) -> ConnectionPolicy {
    ConnectionPolicy {
        banner: Banner::standard(&policy.hostname),
        message_bytes_max: policy.session.message_bytes_max,
        recipients_max: policy.session.recipients_max,
        messages_per_connection_max: policy.session.messages_per_connection_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_limits_and_banner() {
        let (_, mut c) = crate::config::Config::default().split();
        c.hostname = "mx.example.test".into();
        c.session.message_bytes_max = 2000;
        c.session.recipients_max = 7;
        c.session.messages_per_connection_max = 3;
        let policy = connection_policy(&c);
        assert_eq!(policy.banner.reply().to_bytes(), b"220 mx.example.test ESMTP Portcullis\r\n");
        assert_eq!((policy.message_bytes_max, policy.recipients_max, policy.messages_per_connection_max), (2000, 7, 3));
    }
}
