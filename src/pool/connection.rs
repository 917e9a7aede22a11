//! One downstream connection: a `tls::Stream` carrying out what the pure
//! `smtp::client::Client` asks, with the RFC 5321 §4.5.3.2 client
//! timeouts from `PoolConfig` applied to every read and write.
//!
//! TLS (issue 9 item 5): the connection's `TlsPlan` says how much STARTTLS
//! it wants; the handshake runs under the command timeout with the plan's
//! config and the host's name. A handshake that fails under `preferred`
//! leaves the socket in an unknown state, so `open` tries once more on a
//! new connection in clear (as Postfix does at its `may` level); under
//! `required` it fails the connection (the mail is deferred).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::policy::rate::Slot;
use crate::smtp::client::StartTls;
use crate::tls::outbound::TlsPlan;
use crate::tls::{Stream, TlsInfo};

use super::{OutboundEnvelope, PoolConfig, RecipientOutcome};
use crate::limits::{CLIENT_BODY_COPY_BYTES_MAX, CLIENT_READ_BUFFER_BYTES};
use crate::smtp::client::{Action, Client, Stuffed, Wait};

/// How a drive of the client ended.
pub(super) enum Step {
    Ready,
    Done(Vec<RecipientOutcome>),
    /// Unusable, nothing answered; the reason names the side at fault.
    Failed(String),
}

pub(super) struct Connection {
    stream: Stream,
    client: Client,
    read_buf: Box<[u8]>,
    /// Small body pieces gathered into one write.
    write_buf: Vec<u8>,
    /// Transactions started on this connection.
    pub messages: u32,
    pub idle_since: Instant,
    /// The last failure was a timeout (a slow server, not a dead socket).
    timed_out: bool,
    plan: TlsPlan,
    /// What the STARTTLS handshake negotiated; None in clear.
    pub tls: Option<TlsInfo>,
    /// The destination's appliance-wide connection slot this connection
    /// holds (`Quota`): released when the connection is dropped, however
    /// it ends. None when the destination has no connection limit.
    pub lease: Option<Slot>,
    /// Transactions before QUIT: the pool's bound or the destination's
    /// `max_messages_per_connection`, the smaller.
    pub max_messages: u32,
    /// Counts this connection in `portcullis_destination_connections`
    /// until it is dropped, however it ends.
    pub gauge: Option<OpenGauge>,
}

/// One open connection of a destination in the metrics: +1 when made, −1
/// when dropped.
pub(crate) struct OpenGauge {
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    label: std::rc::Rc<str>,
}

impl OpenGauge {
    pub(crate) fn new(metrics: std::sync::Arc<crate::metrics::Metrics>, label: std::rc::Rc<str>) -> OpenGauge {
        metrics.destination_connections(&label, 1);
        OpenGauge { metrics, label }
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.metrics.destination_connections(&self.label, -1);
    }
}

/// Why a connection could not be opened.
pub(super) struct OpenFailed {
    pub reason: String,
    /// The TLS the plan requires was not to be had (the alert case).
    pub tls_refused: bool,
}

/// glommio refuses a zero timeout; zero means "none" in our config.
fn limit(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

impl Connection {
    /// Connect, read the greeting, say EHLO (and STARTTLS, EHLO again, as
    /// `plan` wants): a connection ready for MAIL.
    pub async fn open(host: SocketAddr, plan: &TlsPlan, config: &PoolConfig) -> Result<Connection, OpenFailed> {
        match Connection::open_once(host, plan, config).await {
            // The handshake failed and left the socket unusable: anew, in clear.
            Err((_, true)) if plan.starttls == StartTls::Preferred => {
                let clear = TlsPlan { starttls: StartTls::Off, config: None, ..plan.clone() };
                Connection::open_once(host, &clear, config).await.map_err(|(failed, _)| failed)
            }
            other => other.map_err(|(failed, _)| failed),
        }
    }

    /// One connection; Err also says whether the handshake was what failed.
    async fn open_once(host: SocketAddr, plan: &TlsPlan, config: &PoolConfig) -> Result<Connection, (OpenFailed, bool)> {
        let connect = match limit(config.connect_timeout) {
            Some(t) => TcpStream::connect_timeout(host, t).await,
            None => TcpStream::connect(host).await,
        };
        let stream = connect.map_err(|e| (OpenFailed { reason: format!("cannot connect to {host}: {e}"), tls_refused: false }, false))?;
        // Commands and replies are small and latency-bound (RFC 2920 §3.2
        // batches them for us already): no Nagle delay.
        let _ = stream.set_nodelay(true);
        // Without a config `Preferred` stays in clear; `Required` asks and
        // fails at the handshake.
        let starttls = match (plan.starttls, &plan.config) {
            (StartTls::Preferred, None) => StartTls::Off,
            (mode, _) => mode,
        };
        let mut conn = Connection {
            stream: Stream::Plain(stream),
            client: Client::with_tls(&config.helo_name, starttls),
            read_buf: vec![0; CLIENT_READ_BUFFER_BYTES].into_boxed_slice(),
            write_buf: Vec::new(),
            messages: 0,
            idle_since: Instant::now(),
            timed_out: false,
            plan: plan.clone(),
            tls: None,
            lease: None,
            max_messages: config.messages_per_connection_max,
            gauge: None,
        };
        match conn.drive(config, &[]).await {
            Step::Ready => Ok(conn),
            Step::Failed(reason) => {
                let handshake = matches!(conn.stream, Stream::Closed);
                Err((OpenFailed { reason: format!("{host}: {reason}"), tls_refused: conn.client.tls_refused() }, handshake))
            }
            Step::Done(_) => unreachable!("no transaction before EHLO"),
        }
    }

    /// One transaction; on `Done` the connection may be reusable.
    pub async fn transact(
        &mut self,
        config: &PoolConfig,
        envelope: &OutboundEnvelope,
        body: &[u8],
    ) -> Step {
        self.messages += 1;
        self.client.start(envelope, body.len());
        self.drive(config, body).await
    }

    pub fn is_reusable(&self) -> bool {
        self.client.is_reusable()
    }

    /// The transaction failed before the downstream answered any of it, and
    /// not by a timeout: the socket was dead before we used it (see
    /// `Client::is_stale`), so repeating on a fresh connection is safe.
    pub fn was_dead_before_use(&self) -> bool {
        self.client.is_stale() && !self.timed_out
    }

    /// QUIT and close without waiting for the 221 (RFC 5321 §4.1.1.10 asks
    /// the server to reply, not the client to wait).
    pub async fn quit(mut self, config: &PoolConfig) {
        self.client.quit();
        let _ = self.flush(config.command_timeout).await;
    }

    async fn drive(&mut self, config: &PoolConfig, body: &[u8]) -> Step {
        loop {
            match self.client.next_action() {
                Action::Read(wait) => self.read_reply(config, wait).await,
                Action::SendBody => match self.send_body(config, body).await {
                    Ok(()) => self.client.body_sent(),
                    Err(e) => self.broken(e),
                },
                Action::StartTls => self.start_tls(config).await,
                Action::Ready => return Step::Ready,
                Action::Done(outcomes) => return Step::Done(outcomes),
                Action::Failed(reason) => return Step::Failed(reason),
            }
        }
    }

    /// 220 to STARTTLS: the handshake, each of its reads and writes under
    /// the command timeout, for the plan's name.
    async fn start_tls(&mut self, config: &PoolConfig) {
        if let Err(e) = self.flush(config.command_timeout).await {
            return self.broken(e);
        }
        let Some(tls) = self.plan.config.clone() else {
            return self.client.tls_failed("no TLS client config for this destination");
        };
        self.set_timeouts(config.command_timeout, config.command_timeout);
        match self.stream.connect(tls, self.plan.name.clone()).await {
            Ok(info) => {
                self.tls = Some(info);
                self.client.tls_started();
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.timed_out = true;
                self.client.tls_failed("timed out");
            }
            Err(e) => self.client.tls_failed(&e.to_string()),
        }
    }

    /// Bound the next reads and writes of the TCP socket (clear or under TLS).
    fn set_timeouts(&self, read: Duration, write: Duration) {
        if let Some(tcp) = self.stream.tcp() {
            let _ = tcp.set_read_timeout(limit(read));
            let _ = tcp.set_write_timeout(limit(write));
        }
    }

    async fn read_reply(&mut self, config: &PoolConfig, wait: Wait) {
        if let Err(e) = self.flush(config.command_timeout).await {
            return self.broken(e);
        }
        let timeout = match wait {
            Wait::Greeting => config.greeting_timeout,
            Wait::Command => config.command_timeout,
            Wait::DataTermination => config.data_termination_timeout,
        };
        if let Some(tcp) = self.stream.tcp() {
            let _ = tcp.set_read_timeout(limit(timeout));
        }
        match self.stream.read(&mut self.read_buf).await {
            Ok(0) => {
                let awaiting = self.client.awaiting();
                self.client.lost(&format!(
                    "downstream closed the connection while we waited for {awaiting}"
                ));
            }
            Ok(n) => self.client.feed(&self.read_buf[..n]),
            Err(e) => self.broken(e),
        }
    }

    /// A read or write failed: tell the client who is at fault.
    fn broken(&mut self, e: io::Error) {
        let awaiting = self.client.awaiting();
        let reason = if e.kind() == io::ErrorKind::TimedOut {
            self.timed_out = true;
            format!("downstream timed out: no progress while we waited for {awaiting}")
        } else {
            format!("connection to downstream broken while we waited for {awaiting}: {e}")
        };
        self.client.lost(&reason);
    }

    async fn flush(&mut self, timeout: Duration) -> io::Result<()> {
        if self.client.output().is_empty() {
            return Ok(());
        }
        if let Some(tcp) = self.stream.tcp() {
            let _ = tcp.set_write_timeout(limit(timeout));
        }
        self.stream.write_all(self.client.output()).await?;
        // rustls holds records until flushed.
        self.stream.flush().await?;
        let n = self.client.output().len();
        self.client.consume_output(n);
        Ok(())
    }

    /// The stuffed body: big pieces are written from the stored body in
    /// place, small ones (inserted dots, the end marker, short messages) are
    /// gathered so a typical message is one write (RFC 5321 §4.5.3.2.5: the
    /// timeout applies to each block written).
    async fn send_body(&mut self, config: &PoolConfig, body: &[u8]) -> io::Result<()> {
        self.flush(config.command_timeout).await?;
        if let Some(tcp) = self.stream.tcp() {
            let _ = tcp.set_write_timeout(limit(config.data_block_timeout));
        }
        self.write_buf.clear();
        for piece in Stuffed::new(body) {
            if piece.len() >= CLIENT_BODY_COPY_BYTES_MAX {
                if !self.write_buf.is_empty() {
                    self.stream.write_all(&self.write_buf).await?;
                    self.write_buf.clear();
                }
                self.stream.write_all(piece).await?;
            } else {
                self.write_buf.extend_from_slice(piece);
                if self.write_buf.len() >= 4 * CLIENT_BODY_COPY_BYTES_MAX {
                    self.stream.write_all(&self.write_buf).await?;
                    self.write_buf.clear();
                }
            }
        }
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.write_buf.clear();
        }
        self.stream.flush().await
    }
}
