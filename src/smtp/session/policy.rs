//! The mail flow policy of one connection, as the session sees it: pure data
//! that arrives with the answer to `Question::Connect` (`Decision::Admit`).
//!
//! The HAT (Host Access Table) will pick one per sender group; today
//! `policy::connect` builds it from the configuration. What does not change
//! per connection (our hostname, the postmaster domain) stays in
//! `SessionConfig`.

pub use crate::config::flow::{AuthTier, TlsTier};
use crate::smtp::reply::Reply;

/// What one admitted connection may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionPolicy {
    /// The greeting sent once the connection is admitted.
    pub banner: Banner,
    /// SIZE advertised in the EHLO reply and enforced (RFC 1870); 552 5.3.4 above it.
    pub message_bytes_max: usize,
    /// Recipients per message; the next RCPT gets 452 4.5.3.
    pub recipients_max: usize,
    /// Messages per connection; past it 421 4.7.0 and close.
    pub messages_per_connection_max: u32,
    /// STARTTLS offered / required (RFC 3207), client certificate asked for.
    pub tls: TlsTier,
    /// SMTP AUTH offered / required (RFC 4954).
    pub auth: AuthTier,
    /// AUTH only under TLS: not advertised in clear, 538 5.7.11 if tried.
    pub auth_needs_tls: bool,
}

impl ConnectionPolicy {
    /// Limits only: no TLS, no AUTH (tests and the shorthand's defaults).
    pub fn plain(banner: Banner, message_bytes_max: usize, recipients_max: usize, messages_per_connection_max: u32) -> ConnectionPolicy {
        ConnectionPolicy {
            banner,
            message_bytes_max,
            recipients_max,
            messages_per_connection_max,
            tls: TlsTier::Off,
            auth: AuthTier::Off,
            auth_needs_tls: true,
        }
    }
}

/// The 220 greeting: a code and a text, no enhanced status code (RFC 5321
/// §4.2: nothing is negotiated yet, RFC 2034 codes start after EHLO).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Banner {
    pub code: u16,
    pub text: String,
}

impl Banner {
    /// The usual greeting, "220 {hostname} ESMTP Portcullis".
    pub fn standard(hostname: &str) -> Banner {
        Banner { code: 220, text: format!("{hostname} ESMTP Portcullis") }
    }

    pub fn reply(&self) -> Reply {
        Reply::new(self.code, "", self.text.clone())
    }
}
