//! STARTTLS (RFC 3207) for the pure clients: the two decisions the
//! delivery client (`Client`) and the probe client (`Prober`) share, after
//! EHLO and after the reply to STARTTLS. Pure: the mode, what the server
//! offered and what it answered in, what to do out.
//!
//! The rules (issue 9 items 4 and 5):
//! - `Off`: never STARTTLS, whatever is offered.
//! - `Preferred`: STARTTLS when offered; not offered, or refused with a
//!   reply other than 220, goes on in clear on the same connection (its
//!   state is known: RFC 3207 §4 lets the client decide to continue).
//! - `Required`: not offered or refused is a failure of that server,
//!   temporary (4xx semantics): delivery defers, a probe says nothing about
//!   the recipient. Never clear text.
//! After the handshake the client forgets what it knew and says EHLO again
//! (RFC 3207 §4.2), and never asks for STARTTLS a second time.

use crate::smtp::Reply;

use super::Extensions;

/// How much TLS an outbound connection wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StartTls {
    #[default]
    Off,
    Preferred,
    Required,
}

/// What to do once the EHLO (or HELO) reply is in.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AfterHello {
    /// Use the connection as it is.
    Ready,
    /// Send STARTTLS now.
    StartTls,
    /// TLS is required and the server does not offer it.
    Refuse(String),
}

/// The decision after EHLO/HELO: `encrypted` once the handshake is done.
pub(super) fn after_hello(mode: StartTls, encrypted: bool, offered: &Extensions) -> AfterHello {
    match mode {
        _ if encrypted => AfterHello::Ready,
        StartTls::Off => AfterHello::Ready,
        _ if offered.starttls => AfterHello::StartTls,
        StartTls::Preferred => AfterHello::Ready,
        StartTls::Required => {
            AfterHello::Refuse("TLS required, but the downstream does not offer STARTTLS".into())
        }
    }
}

/// What the reply to STARTTLS means.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AfterStartTls {
    /// 220: the driver runs the handshake now.
    Handshake,
    /// Refused under `Preferred`: go on in clear on this connection.
    Clear,
    /// Refused under `Required`: this server fails (temporarily).
    Refuse(String),
}

pub(super) fn after_starttls(mode: StartTls, reply: &Reply) -> AfterStartTls {
    debug_assert!(mode != StartTls::Off, "STARTTLS is never sent when off");
    match (reply.code, mode) {
        (220, _) => AfterStartTls::Handshake,
        (_, StartTls::Required) => AfterStartTls::Refuse(format!(
            "TLS required, but the downstream refused STARTTLS: {reply}"
        )),
        _ => AfterStartTls::Clear,
    }
}

pub(super) const STARTTLS_COMMAND: &[u8] = b"STARTTLS\r\n";
