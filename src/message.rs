//! The nouns every stage shares: a queue id, an envelope, a message.
//!
//! The session builds an `Envelope` while the client talks, the spool stores
//! it next to the body, delivery reads it back. Nothing here does I/O.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use crate::smtp::dsn::{Dsn, RecipientDsn};

/// A spool-wide unique id for one accepted message, e.g. "0A1B2C3D4E5F6071".
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub String);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// BODY= parameter of MAIL (RFC 6152, RFC 3030).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// Who sent a message and to whom, as agreed in the SMTP transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Connection id from the log ("C" + hex), so a message can be traced back.
    pub connection_id: String,
    pub peer: SocketAddr,
    /// The EHLO/HELO argument as given.
    pub helo: String,
    /// True after EHLO (ESMTP), false after HELO.
    pub esmtp: bool,
    /// Reverse-path mailbox; empty for the null sender `<>`.
    pub mail_from: String,
    pub body_type: BodyType,
    pub smtputf8: bool,
    /// Forward-path mailboxes, final form (source routes removed), in RCPT order.
    pub recipients: Vec<String>,
    /// The `[ldap.query]` that routes this message's recipients (the
    /// listener's `ldap_routing` when it was received); "" = none.
    pub ldap_routing: String,
    /// Received to be relayed outbound: under a RELAY mail flow policy
    /// (a private listener's) or from an authenticated session. Delivery
    /// tags the envelope sender of such mail with BATV prvs for
    /// destinations with `bounce_verification` (`prvs::outbound_sender`);
    /// mail received inbound is never tagged. Spooled (extension tag 2).
    pub relayed: bool,
    /// How the session was protected, for the Received header and the mail
    /// log. Not spooled: the header is written before the message is stored.
    pub secured: Secured,
    /// RET and ENVID of MAIL (RFC 3461 §4.3, §4.4); default when not given.
    pub dsn: Dsn,
    /// NOTIFY and ORCPT of each RCPT (RFC 3461 §4.1, §4.2), parallel to
    /// `recipients`. Invariant: either empty (every recipient at the
    /// defaults: the common case costs nothing) or exactly as long as
    /// `recipients`. Read it through `rcpt_dsn(i)`.
    pub recipient_dsn: Vec<RecipientDsn>,
}

/// An envelope with nothing in it (peer 0.0.0.0:0), so construction sites
/// name only the fields they care about (`..Default::default()`).
impl Default for Envelope {
    fn default() -> Envelope {
        Envelope {
            connection_id: String::new(),
            peer: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            helo: String::new(),
            esmtp: false,
            mail_from: String::new(),
            body_type: BodyType::default(),
            smtputf8: false,
            recipients: Vec::new(),
            ldap_routing: String::new(),
            relayed: false,
            secured: Secured::default(),
            dsn: Dsn::default(),
            recipient_dsn: Vec::new(),
        }
    }
}

/// TLS and SMTP AUTH of the session a message came in on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secured {
    pub tls: Option<crate::tls::TlsInfo>,
    /// The user name that authenticated (RFC 4954), if any.
    pub authenticated: Option<String>,
}

impl Envelope {
    /// The RFC 5321 §4.4 "with" protocol name for the Received header,
    /// with RFC 3848's S (TLS) and A (authenticated) and RFC 6531's UTF8.
    pub fn protocol(&self) -> String {
        if !self.esmtp {
            return "SMTP".into();
        }
        let base = if self.smtputf8 { "UTF8SMTP" } else { "ESMTP" };
        let s = if self.secured.tls.is_some() { "S" } else { "" };
        let a = if self.secured.authenticated.is_some() { "A" } else { "" };
        format!("{base}{s}{a}")
    }

    /// The DSN parameters of recipient `i` (defaults when none were given).
    pub fn rcpt_dsn(&self, i: usize) -> RecipientDsn {
        debug_assert!(self.recipient_dsn.is_empty() || self.recipient_dsn.len() == self.recipients.len());
        self.recipient_dsn.get(i).cloned().unwrap_or_default()
    }

    /// Set the per-recipient DSN parameters, parallel to `recipients`;
    /// stored empty when every one is at its defaults (the invariant above).
    pub fn set_recipient_dsn(&mut self, recipient_dsn: Vec<RecipientDsn>) {
        debug_assert_eq!(recipient_dsn.len(), self.recipients.len());
        self.recipient_dsn = if recipient_dsn.iter().all(RecipientDsn::is_default) { Vec::new() } else { recipient_dsn };
    }
}

/// The domain part of a mailbox, lower-cased; empty when there is none.
pub fn domain_of(mailbox: &str) -> String {
    match mailbox.rfind('@') {
        Some(at) => mailbox[at + 1..].to_ascii_lowercase(),
        None => String::new(),
    }
}

/// A message as the session hands it to the spool: envelope and the body as
/// received (dot-unstuffed, CRLF line ends, no terminating dot).
#[derive(Clone, Debug)]
pub struct Message {
    pub envelope: Envelope,
    pub body: Vec<u8>,
}
