//! Connect decision: under which mail flow policy a new connection goes on.
//!
//! The HAT (Host Access Table) will match the client against sender groups
//! and pick a policy (accept, refuse with 554, close with 421, throttle).
//! Today every connection is admitted under the one policy the snapshot
//! compiled (`Policy::admission`): the standard banner and the `[session]`
//! limits.

use crate::config::Policy;
use crate::smtp::{Decision, Peer};

pub fn decide(policy: &Policy, _peer: &Peer) -> Decision {
    Decision::Admit(policy.admission.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_limits_and_banner() {
        let mut c = crate::config::Config { hostname: "mx.example.test".into(), ..Default::default() };
        c.session.message_bytes_max = 2000;
        c.session.recipients_max = 7;
        c.session.messages_per_connection_max = 3;
        let peer = Peer { connection_id: "C1".into(), addr: "192.0.2.10:40000".parse().unwrap(), local: "192.0.2.1:25".parse().unwrap() };
        let Decision::Admit(policy) = decide(&Policy::compile(&c, 0), &peer) else { panic!("not admitted") };
        assert_eq!(policy.banner.reply().to_bytes(), b"220 mx.example.test ESMTP Portcullis\r\n");
        assert_eq!((policy.message_bytes_max, policy.recipients_max, policy.messages_per_connection_max), (2000, 7, 3));
    }
}
