//! Per-shard pool of downstream SMTP connections (the delivery client driver).
//!
//! Keyed by host address; idle connections are reused newest first (LIFO:
//! the warmest socket, and the oldest ones age out), at most
//! `connections_per_host_max` are open per host (callers wait in FIFO order
//! on a semaphore), idle ones get QUIT after `idle_timeout` and after
//! `messages_per_connection_max` transactions. A connection that saw any
//! error or timeout is dropped, never reused. Single-threaded: one pool per
//! shard, used through `&self` by many tasks of one executor.
//!
//! Destination controls (issue 10, seed 003): a caller names the
//! destination a transaction counts against (`Quota`: the recipient
//! domain or the host, its `max_connections` and
//! `max_messages_per_connection`). Connections are pooled per destination,
//! and a new connection first takes one of the destination's
//! appliance-wide slots from the owner shard of its key
//! (`policy::rate::Counters::open`, exact: overshoot 0 while the owner
//! answers). The slot lives in the connection and is released when it
//! closes, so the appliance never holds more than `max_connections`
//! connections to the destination. A caller refused a slot waits (asking
//! again after a capped backoff) unless an idle connection of this shard
//! comes free first; only the callers holding one of the shard's local
//! permits for the destination ask, so waiting costs a few asks per
//! second per destination, not one per queued message.
//!
//! Two steps, so that a caller can wait for its turn before it holds the
//! message bytes (`turn`, then `send_on`): mail waiting for a busy
//! destination holds no memory that other destinations need.
//!
//! TLS (RFC 3207, issue 9 item 5): the key is the host address with the
//! TLS level the connection was opened under (and, for `required-verify`,
//! the name it was verified as), so a connection never carries mail of a
//! destination that asks for more than it was opened with — nor, more
//! simply, for anything else; the per-host limit holds per key.

mod connection;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use glommio::sync::Semaphore;
use hashbrown::HashMap;

// The transaction types belong to the pure client; the pool re-exports them for its callers.
pub use crate::smtp::client::{OutboundEnvelope, RecipientOutcome};
use crate::config::destination::DestinationTls;
use crate::limits;
use crate::policy::rate::{Counters, Slot};
use crate::tls::outbound::TlsPlan;
use crate::tls::TlsInfo;
use connection::{Connection, Step};

#[derive(Clone, Debug, PartialEq)]
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

/// The connection to this host failed before any recipient got an answer
/// (refused, timeout, bad greeting, broken pipe): try the next host.
#[derive(Clone, Debug)]
pub struct TransportError {
    pub host: SocketAddr,
    pub reason: String,
    /// The TLS the destination requires was not to be had (not offered,
    /// refused, handshake failed): defer, never send in clear, alert.
    pub tls_refused: bool,
}

/// A transaction's outcomes, and how its connection was protected.
#[derive(Clone, Debug)]
pub struct Sent {
    /// One per recipient, in order.
    pub outcomes: Vec<RecipientOutcome>,
    /// What STARTTLS negotiated; None in clear.
    pub tls: Option<TlsInfo>,
}

/// What a transaction counts against: a destination of the destination
/// controls (issue 10) and its limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Quota {
    /// The destination: "domain:example.com" or "host:192.0.2.1:25";
    /// "" = none (tests, and callers without destination controls).
    pub key: Rc<str>,
    /// Connections the appliance may hold to it at once; 0 = unlimited.
    pub max_connections: u32,
    /// Transactions per connection (also bounded by the pool's own).
    pub max_messages_per_connection: u32,
    /// The metrics label (`[destination]` table name); "" = not counted.
    pub label: Rc<str>,
}

/// Connections are pooled per host and TLS level (and verified name),
/// DANE-checked ones apart (RFC 7672: their check is the host's TLSA),
/// and per destination (each counts against its own connection limit).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    host: SocketAddr,
    level: DestinationTls,
    verified_as: Option<String>,
    dane: bool,
    destination: Rc<str>,
}

impl Key {
    fn of(host: SocketAddr, plan: &TlsPlan, quota: &Quota) -> Key {
        let verified = plan.level == DestinationTls::RequiredVerify || plan.dane;
        let verified_as = verified.then(|| plan.name.to_str().into_owned());
        Key { host, level: plan.level, verified_as, dane: plan.dane, destination: quota.key.clone() }
    }
}

/// The right to one transaction to a host: one of the shard's local
/// permits, and either an idle connection or the destination slot a new
/// one will hold (`Pool::turn`).
pub struct Turn {
    entry: Rc<Host>,
    _permit: glommio::sync::StaticPermit,
    idle: Option<Connection>,
    lease: Option<Slot>,
}

/// The idle connections and the connection limit of one downstream host
/// (for one destination).
struct Host {
    /// One permit per transaction in progress: at most
    /// `connections_per_host_max` (and the destination's `max_connections`).
    permits: Rc<Semaphore>,
    /// The destination's `max_messages_per_connection` when the entry was made.
    max_messages: u32,
    /// Its metrics label (`Quota::label`).
    label: Rc<str>,
    /// Newest last.
    idle: RefCell<Vec<Connection>>,
}

struct Inner {
    config: PoolConfig,
    hosts: RefCell<HashMap<Key, Rc<Host>>>,
    reaper_started: Cell<bool>,
    /// The appliance-wide counters destination slots are taken from; None
    /// (tests) = destination connection limits are not applied.
    counters: Option<Rc<Counters>>,
    /// Where open connections per destination are counted (`Quota::label`).
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

pub struct Pool {
    inner: Rc<Inner>,
}

impl Pool {
    pub fn new(config: PoolConfig) -> Pool {
        debug_assert!(config.connections_per_host_max > 0);
        Pool {
            inner: Rc::new(Inner {
                config,
                hosts: RefCell::new(HashMap::new()),
                reaper_started: Cell::new(false),
                counters: None,
                metrics: None,
            }),
        }
    }

    /// A pool whose destination connection limits are held appliance-wide
    /// by `counters` (every shard's pool asks the same owners).
    pub fn with_counters(config: PoolConfig, counters: Rc<Counters>, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Pool {
        let pool = Pool::new(config);
        let mut inner = Rc::try_unwrap(pool.inner).ok().expect("a new pool is not shared");
        inner.counters = Some(counters);
        inner.metrics = Some(metrics);
        Pool { inner: Rc::new(inner) }
    }

    /// One transaction to `host`: reuses an idle connection (RSET-free: a
    /// finished transaction leaves the connection ready for the next MAIL)
    /// or opens one, never more than `connections_per_host_max` at once
    /// (callers wait for a free one). `body` is the stored message: CRLF
    /// lines, not dot-stuffed; the client stuffs dots and ends with CRLF.CRLF.
    ///
    /// `Err(TransportError)` when no recipient got an answer from the
    /// downstream because the connection failed (refused, timeout, 421/554
    /// greeting, EOF, reset, protocol error, 421 before any other answer):
    /// nothing was accepted, try the next host. Otherwise one outcome per
    /// recipient; recipients still open when the connection broke after
    /// other recipients were answered are `Deferred` (451 4.4.2 of ours, or
    /// the downstream's 421). A reused connection found dead before any
    /// reply of this transaction is replaced once by a fresh one, unseen.
    pub async fn send(
        &self,
        host: SocketAddr,
        envelope: &OutboundEnvelope,
        body: &[u8],
    ) -> Result<Vec<RecipientOutcome>, TransportError> {
        let sent = self.send_with(host, &TlsPlan::none(host.ip()), envelope, body).await?;
        Ok(sent.outcomes)
    }

    /// `send` with STARTTLS as `plan` says (RFC 3207); the outcomes come
    /// with what TLS the connection had. A `TransportError` with
    /// `tls_refused` is a required TLS that was not to be had.
    pub async fn send_with(
        &self,
        host: SocketAddr,
        plan: &TlsPlan,
        envelope: &OutboundEnvelope,
        body: &[u8],
    ) -> Result<Sent, TransportError> {
        if envelope.recipients.is_empty() {
            return Ok(Sent { outcomes: Vec::new(), tls: None });
        }
        let turn = self.turn(host, plan, &Quota::default()).await?;
        self.send_on(turn, host, plan, envelope, body).await
    }

    /// Wait for the right to one transaction to `host` for `quota`'s
    /// destination: a local permit (FIFO), then an idle connection, or a
    /// destination slot for a new one (asked of the key's owner shard;
    /// refused, asked again after a capped backoff, unless an idle
    /// connection comes free first). Err only when the pool is closed.
    pub async fn turn(&self, host: SocketAddr, plan: &TlsPlan, quota: &Quota) -> Result<Turn, TransportError> {
        self.start_reaper();
        let entry = self.host(Key::of(host, plan, quota), quota);
        let permit = entry.permits.clone().acquire_static_permit(1).await.map_err(|e| TransportError {
            host,
            reason: format!("connection pool closed: {e}"),
            tls_refused: false,
        })?;
        let mut backoff = Duration::from_millis(limits::DESTINATION_LEASE_RETRY_MIN_MS);
        loop {
            if let Some(conn) = self.take_idle(&entry).await {
                return Ok(Turn { entry, _permit: permit, idle: Some(conn), lease: None });
            }
            match self.lease(quota).await {
                Ok(lease) => return Ok(Turn { entry, _permit: permit, idle: None, lease }),
                Err(()) => {
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(limits::DESTINATION_LEASE_RETRY_MAX_MS));
                }
            }
        }
    }

    /// One of the destination's appliance-wide connection slots: Ok(None)
    /// when it has no limit (or the pool no counters), Err when all are
    /// taken. Fails open like every counter (`Slot::unchecked`).
    async fn lease(&self, quota: &Quota) -> Result<Option<Slot>, ()> {
        let Some(counters) = &self.inner.counters else { return Ok(None) };
        if quota.max_connections == 0 || quota.key.is_empty() {
            return Ok(None);
        }
        let key = format!("destination-connections {}", quota.key);
        counters.open(&key, quota.max_connections).await.map(Some).map_err(drop)
    }

    /// The transaction of `send_with` on a `turn`: its idle connection, or
    /// a new one holding its destination slot. A reused connection found
    /// dead before any reply is replaced once by a fresh one (which takes
    /// over its slot).
    pub async fn send_on(
        &self,
        turn: Turn,
        host: SocketAddr,
        plan: &TlsPlan,
        envelope: &OutboundEnvelope,
        body: &[u8],
    ) -> Result<Sent, TransportError> {
        let Turn { entry, _permit, idle, mut lease } = turn;
        let config = &self.inner.config;
        let mut idle = idle;
        let mut retried = false;
        loop {
            let (mut conn, reused) = match idle.take() {
                Some(conn) => (conn, true),
                None => {
                    let mut conn = Connection::open(host, plan, config)
                        .await
                        .map_err(|failed| TransportError { host, reason: failed.reason, tls_refused: failed.tls_refused })?;
                    conn.lease = lease.take();
                    conn.gauge = self.inner.metrics.as_ref().filter(|_| !entry.label.is_empty()).map(|m| connection::OpenGauge::new(m.clone(), entry.label.clone()));
                    conn.max_messages = entry.max_messages.min(config.messages_per_connection_max);
                    (conn, false)
                }
            };
            match conn.transact(config, envelope, body).await {
                Step::Done(outcomes) => {
                    let tls = conn.tls.clone();
                    self.put_back(&entry, conn).await;
                    return Ok(Sent { outcomes, tls });
                }
                Step::Failed(_) if reused && !retried && conn.was_dead_before_use() => {
                    retried = true;
                    lease = conn.lease.take();
                }
                Step::Failed(reason) => {
                    return Err(TransportError {
                        host,
                        reason: format!("{host}: {reason}"),
                        tls_refused: false,
                    })
                }
                Step::Ready => unreachable!("a transaction ends in Done or Failed"),
            }
        }
    }

    /// Idle connections to `host` right now.
    pub fn idle_connections(&self, host: SocketAddr) -> usize {
        self.inner
            .hosts
            .borrow()
            .iter()
            .filter(|(key, _)| key.host == host)
            .map(|(_, h)| h.idle.borrow().len())
            .sum()
    }

    /// QUIT every idle connection (shutdown); connections in use finish
    /// their transaction and are put back as usual.
    pub async fn close_idle(&self) {
        let idle: Vec<Connection> = {
            let hosts = self.inner.hosts.borrow();
            hosts
                .values()
                .flat_map(|h| h.idle.borrow_mut().drain(..).collect::<Vec<_>>())
                .collect()
        };
        for conn in idle {
            conn.quit(&self.inner.config).await;
        }
    }

    /// The entry of `host`, made with `quota`'s limits when new (a reload
    /// that changes them applies once the entry is idle and reaped).
    fn host(&self, host: Key, quota: &Quota) -> Rc<Host> {
        let mut max = self.inner.config.connections_per_host_max.max(1) as u64;
        if quota.max_connections > 0 {
            max = max.min(quota.max_connections as u64);
        }
        let max_messages = match quota.max_messages_per_connection {
            0 => u32::MAX,
            n => n,
        };
        let mut hosts = self.inner.hosts.borrow_mut();
        hosts
            .entry(host)
            .or_insert_with(|| {
                Rc::new(Host {
                    permits: Rc::new(Semaphore::new(max)),
                    max_messages,
                    label: quota.label.clone(),
                    idle: RefCell::new(Vec::new()),
                })
            })
            .clone()
    }

    /// The newest idle connection that has not outlived `idle_timeout`;
    /// older ones found expired on the way are closed.
    async fn take_idle(&self, host: &Host) -> Option<Connection> {
        let config = &self.inner.config;
        loop {
            let conn = host.idle.borrow_mut().pop()?;
            if conn.idle_since.elapsed() < config.idle_timeout {
                return Some(conn);
            }
            conn.quit(config).await;
        }
    }

    async fn put_back(&self, host: &Host, mut conn: Connection) {
        let config = &self.inner.config;
        if !conn.is_reusable() {
            return; // dropped: closes the socket
        }
        if conn.messages >= conn.max_messages.min(config.messages_per_connection_max) {
            return conn.quit(config).await;
        }
        conn.idle_since = std::time::Instant::now();
        host.idle.borrow_mut().push(conn);
    }

    /// A task that QUITs connections idle past `idle_timeout` even when no
    /// message comes to take them; it ends soon after the pool is dropped.
    fn start_reaper(&self) {
        if self.inner.reaper_started.replace(true) {
            return;
        }
        let weak = Rc::downgrade(&self.inner);
        let period = (self.inner.config.idle_timeout / 2)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        glommio::spawn_local(reap(weak, period)).detach();
    }
}

async fn reap(pool: Weak<Inner>, period: Duration) {
    loop {
        glommio::timer::sleep(period).await;
        let Some(inner) = pool.upgrade() else { return };
        let expired = expired_connections(&inner);
        for conn in expired {
            conn.quit(&inner.config).await;
        }
    }
}

/// Take out every connection idle too long, and forget hosts nobody uses.
fn expired_connections(inner: &Inner) -> Vec<Connection> {
    let mut expired = Vec::new();
    let mut hosts = inner.hosts.borrow_mut();
    for host in hosts.values() {
        let mut idle = host.idle.borrow_mut();
        // Oldest first: the expired ones are a prefix.
        let n = idle
            .iter()
            .take_while(|c| c.idle_since.elapsed() >= inner.config.idle_timeout)
            .count();
        expired.extend(idle.drain(..n));
    }
    // Only when no task holds the entry: a waiter on its semaphore must not
    // see a second semaphore created for the same host.
    hosts.retain(|_, host| Rc::strong_count(host) > 1 || !host.idle.borrow().is_empty());
    expired
}
