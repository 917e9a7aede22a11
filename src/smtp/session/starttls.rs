//! STARTTLS (RFC 3207) in the session: when it is offered, what it refuses,
//! and the fresh start after the handshake. The handshake itself is the
//! driver's (`Action::StartTls`); implicit TLS (RFC 8314) listeners call
//! `tls_started` before the greeting.

use super::commands::Outcome;
use super::{Action, Session, State, Step};
use crate::smtp::reply::Reply;
use crate::tls::TlsInfo;

impl Session {
    /// STARTTLS: refused when not offered, already active or inside a
    /// transaction; closed when the client pipelined anything behind it.
    pub(super) fn starttls(&mut self) -> Outcome {
        let offered = self.policy().tls.offered();
        if self.tls.is_some() {
            return Outcome::Reply(Reply::new(503, "5.5.1", "Error: TLS already active"));
        }
        if !offered {
            return Outcome::Reply(Reply::new(502, "5.5.1", "Error: command not implemented"));
        }
        if self.tx.is_some() {
            return Outcome::Reply(Reply::new(503, "5.5.1", "Error: MAIL transaction in progress"));
        }
        if self.buffered_input() > 0 {
            // RFC 3207 §4.2 and CVE-2011-0411: octets sent in clear after
            // STARTTLS would be taken as commands of the encrypted session
            // (an attacker in the path injects them). Nothing pipelined
            // behind STARTTLS is honest: discard it and end the session.
            return Outcome::Close(self.closing_reply("4.7.0", "Error: data pipelined after STARTTLS, closing connection"));
        }
        Outcome::StartTls
    }

    /// Queue the 220 and hand the handshake to the driver.
    pub(super) fn start_tls(&mut self, verb: &str, argument: String) -> Step {
        self.send(verb, argument, Reply::new(220, "2.0.0", "Ready to start TLS"));
        self.state = State::Handshake;
        Step::Act(Action::StartTls)
    }

    /// The handshake succeeded: RFC 3207 §4.2, the server forgets what the
    /// client said before (EHLO, a transaction, an authentication) and the
    /// client starts with EHLO again. Also called by implicit TLS listeners
    /// before the greeting.
    pub fn tls_started(&mut self, info: TlsInfo) {
        debug_assert!(
            matches!(self.state, State::Handshake) || matches!(self.admission, super::Admission::Asking),
            "tls_started after StartTls, or before anything was said"
        );
        debug_assert_eq!(self.buffered_input(), 0, "nothing read before the handshake may survive it");
        self.consumed = self.input.len();
        self.tls = Some(info);
        self.helo = None;
        self.esmtp = false;
        self.tx = None;
        self.authenticated = None;
        if matches!(self.state, State::Handshake) {
            self.state = State::Command;
        }
    }

    /// The handshake failed: the stream is unusable, nothing more is said.
    pub fn tls_failed(&mut self) {
        self.tx = None;
        self.state = State::Closing;
    }

    /// The negotiated TLS parameters, once the handshake is done.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// What the policy requires before MAIL (RFC 3207 §4: 530 5.7.0).
    pub(super) fn tls_refusal(&self) -> Option<Reply> {
        let tier = self.policy().tls;
        match &self.tls {
            None if tier.required() => Some(Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")),
            Some(tls) if tier == super::TlsTier::RequiredVerify && tls.peer_subject.is_none() => {
                Some(Reply::new(530, "5.7.0", "Error: a trusted client certificate is required"))
            }
            _ => None,
        }
    }
}
