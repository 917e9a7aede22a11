//! Per-shard pool of downstream SMTP connections (the delivery client driver).
//!
//! CONTRACT (implemented by the delivery client work; delivery relies on it).

use std::net::SocketAddr;
use std::time::Duration;

use crate::message::BodyType;
use crate::smtp::Reply;

#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Name we give in EHLO/HELO.
    pub helo_name: String,
    pub connect_timeout: Duration,
    pub greeting_timeout: Duration,
    pub command_timeout: Duration,
    pub data_block_timeout: Duration,
    pub data_termination_timeout: Duration,
    pub connections_per_host_max: usize,
    pub idle_timeout: Duration,
    pub messages_per_connection_max: u32,
}

/// What goes to MAIL FROM / RCPT TO of one downstream transaction.
#[derive(Clone, Debug)]
pub struct OutboundEnvelope {
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub body_type: BodyType,
    pub smtputf8: bool,
}

/// The fate of one recipient of a transaction, in the order of `recipients`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// The downstream answered 250 to the final dot for this recipient.
    Delivered(Reply),
    /// 4xx at some step: try again later.
    Deferred(Reply),
    /// 5xx at some step: do not try again.
    Failed(Reply),
}

/// The connection to this host failed before any recipient got an answer
/// (refused, timeout, bad greeting, broken pipe): try the next host.
#[derive(Clone, Debug)]
pub struct TransportError {
    pub host: SocketAddr,
    pub reason: String,
}

pub struct Pool {}

impl Pool {
    pub fn new(config: PoolConfig) -> Pool {
        let _ = config;
        Pool {}
    }

    /// One transaction to `host`: reuses an idle connection (RSET-free: a
    /// finished transaction leaves the connection ready for the next MAIL)
    /// or opens one, never more than `connections_per_host_max` at once
    /// (callers wait for a free one). `body` is the stored message: CRLF
    /// lines, not dot-stuffed; the client stuffs dots and ends with CRLF.CRLF.
    pub async fn send(
        &self,
        host: SocketAddr,
        envelope: &OutboundEnvelope,
        body: &[u8],
    ) -> Result<Vec<RecipientOutcome>, TransportError> {
        let _ = (host, envelope, body);
        unimplemented!()
    }
}
