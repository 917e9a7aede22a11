//! One call-ahead probe connection: a `tls::Stream` carrying out what
//! the pure `smtp::client::probe::Prober` asks, and the downstream's
//! answers turned into `Verdict`s (issue 7 items 4 and 6). The probe pool
//! (to come) keeps these open per downstream server and reuses them:
//! MAIL FROM once, RCPT batches, RSET, more batches.
//!
//! Time: every connect, write and read is bounded by the caller's
//! `deadline`, the profile's `validation_timeout_secs` for the whole
//! validation request, so a downstream that stalls anywhere costs the
//! client session at most that. A timeout's `why` names what we waited for.
//!
//! TLS (issue 9 item 4): with a profile's `tls` not off, the prober asks
//! for STARTTLS (RFC 3207) and the handshake runs here under the same
//! deadline, encrypt-only (the certificate is not checked; ours is
//! presented when `[tls]` has one). The peer's name is its address: probe
//! servers come as addresses, and nothing is verified against a name. A
//! handshake that fails under `preferred` leaves the socket in an unknown
//! state, so the probe goes on over a new connection in clear; under
//! `required` it fails at Hello (nothing about the recipient).
//!
//! The socket is made here (socket2), not by `TcpStream::connect`, because
//! a profile's `source_address` must be bound before connecting and
//! glommio cannot bind a client socket: bind, non-blocking connect
//! (EINPROGRESS), hand the socket to glommio (`TcpStream::from`), and wait
//! for the connect to finish with a zero-byte send, which glommio parks on
//! writability (POLLOUT/POLLERR) under the write timeout; then `SO_ERROR`
//! says whether it worked. One path whether or not a source is set.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::verdict::{of_fault, of_rcpt, of_refusal, Stage, Verdict};
use crate::limits::{CALLAHEAD_QUIT_TIMEOUT_MS, CLIENT_READ_BUFFER_BYTES};
use crate::smtp::client::probe::{ProbeAction, Prober, RcptAnswer};
use crate::smtp::client::StartTls;
use crate::smtp::Reply;
use crate::tls::{Stream, TlsInfo};

/// How a probe connection asks for TLS: the mode, and the client config
/// (None: none could be built, so `Required` fails and `Preferred` stays
/// in clear).
#[derive(Clone, Debug, Default)]
pub struct ProbeTlsSetup {
    pub mode: StartTls,
    pub config: Option<Arc<ClientConfig>>,
}

/// Why a probe connection could not be opened.
#[derive(Debug)]
pub struct OpenFailed {
    /// What every recipient of the request gets (Connect, Greeting or Hello).
    pub verdict: Verdict,
    /// The TLS handshake failed (the socket is unusable).
    pub handshake: bool,
    /// The TLS the mode requires was not to be had: the alert case.
    pub tls_refused: bool,
}

/// A probe connection, Ready between uses.
pub struct ProbeConnection {
    stream: Stream,
    prober: Prober,
    server: SocketAddr,
    read_buf: Box<[u8]>,
    /// When the last batch (or RSET) ended: the pool closes idle ones.
    pub idle_since: Instant,
    /// The last failure was a timeout (a slow server, not a dead socket).
    timed_out: bool,
    /// RCPTs this connection got a refusal (4xx/5xx) for, and RSETs it
    /// sent: the pool retires it before the server's own error limits bite.
    pub refusals: usize,
    pub resets: usize,
    /// What the STARTTLS handshake negotiated; None in clear.
    pub tls: Option<TlsInfo>,
    tls_config: Option<Arc<ClientConfig>>,
}

impl ProbeConnection {
    /// Connect (from `source` if given), read the greeting, say EHLO (HELO
    /// after a 5xx): a connection ready for `probe`. A failure is the
    /// verdict every recipient of the request gets: a downstream failure at
    /// Connect, Greeting or Hello.
    pub async fn open(
        server: SocketAddr,
        helo: &str,
        source: Option<IpAddr>,
        deadline: Instant,
    ) -> Result<ProbeConnection, Verdict> {
        ProbeConnection::open_with(server, helo, source, deadline, &ProbeTlsSetup::default()).await.map_err(|failed| failed.verdict)
    }

    /// `open`, asking for STARTTLS as `tls` says. A handshake that fails
    /// under `Preferred` is followed by one more connection, in clear.
    pub async fn open_with(
        server: SocketAddr,
        helo: &str,
        source: Option<IpAddr>,
        deadline: Instant,
        tls: &ProbeTlsSetup,
    ) -> Result<ProbeConnection, OpenFailed> {
        match ProbeConnection::open_once(server, helo, source, deadline, tls).await {
            // The handshake failed and left the socket unusable: without TLS, anew.
            Err(failed) if failed.handshake && tls.mode == StartTls::Preferred => {
                let clear = ProbeTlsSetup::default();
                ProbeConnection::open_once(server, helo, source, deadline, &clear).await
            }
            other => other,
        }
    }

    /// One connection, no second try.
    async fn open_once(
        server: SocketAddr,
        helo: &str,
        source: Option<IpAddr>,
        deadline: Instant,
        tls: &ProbeTlsSetup,
    ) -> Result<ProbeConnection, OpenFailed> {
        let stream = connect(server, source, deadline).await.map_err(|e| {
            let why = if e.kind() == io::ErrorKind::TimedOut {
                format!("downstream {server} timed out: no answer to our connect")
            } else {
                format!("cannot connect to {server}: {e}")
            };
            OpenFailed { verdict: of_fault(Stage::Connect, why), handshake: false, tls_refused: false }
        })?;
        // Without a config, `Required` must fail: it asks, and fails at the handshake.
        let mode = match (tls.mode, &tls.config) {
            (StartTls::Preferred, None) => StartTls::Off,
            (mode, _) => mode,
        };
        let mut conn = ProbeConnection {
            stream: Stream::Plain(stream),
            prober: Prober::with_tls(helo, mode),
            server,
            read_buf: vec![0; CLIENT_READ_BUFFER_BYTES].into_boxed_slice(),
            idle_since: Instant::now(),
            timed_out: false,
            refusals: 0,
            resets: 0,
            tls: None,
            tls_config: tls.config.clone(),
        };
        match conn.drive(deadline).await {
            ProbeAction::Ready => Ok(conn),
            ProbeAction::Failed { stage, reply, why } => {
                Err(OpenFailed {
                    verdict: verdict_of_failure(stage, reply, &conn.name(&why)),
                    handshake: matches!(conn.stream, Stream::Closed),
                    tls_refused: conn.prober.tls_refused(),
                })
            }
            other => unreachable!("no batch before EHLO: {other:?}"),
        }
    }

    /// Ask about `rcpts` on this Ready connection: exactly one verdict per
    /// recipient, in order. MAIL FROM:<`mail_from`> goes first if no
    /// transaction is open. An answered RCPT gets `of_rcpt`; all of them get
    /// `of_refusal(MailFrom, ..)` when MAIL was refused; the unanswered ones
    /// get the failure (`of_fault`, or the 421/3xx that ended it) when the
    /// connection broke or `deadline` passed. Check `is_reusable` after.
    pub async fn probe(
        &mut self,
        mail_from: &str,
        rcpts: &[String],
        deadline: Instant,
    ) -> Vec<Verdict> {
        if !self.prober.is_reusable() {
            let why = self.name("probe connection not usable");
            return vec![of_fault(Stage::Connect, why); rcpts.len()];
        }
        self.timed_out = false;
        self.prober.probe(mail_from, rcpts);
        let verdicts: Vec<Verdict> = match self.drive(deadline).await {
            ProbeAction::Answered(answers) => answers.into_iter().map(verdict_of_answer).collect(),
            ProbeAction::Failed { stage, reply, why } => {
                let failure = verdict_of_failure(stage, reply, &self.name(&why));
                let mut answered = self.prober.answered_so_far().to_vec();
                answered.resize(rcpts.len(), None);
                answered
                    .into_iter()
                    .map(|slot| slot.map_or_else(|| failure.clone(), verdict_of_answer))
                    .collect()
            }
            other => unreachable!("a batch ends answered or failed: {other:?}"),
        };
        debug_assert_eq!(verdicts.len(), rcpts.len());
        self.idle_since = Instant::now();
        verdicts
    }

    /// End the open transaction (RSET) so the next batch starts with MAIL
    /// FROM. True when the connection is Ready again (also when no
    /// transaction was open); false when it failed and must be dropped.
    pub async fn rset(&mut self, deadline: Instant) -> bool {
        if !self.prober.is_reusable() {
            return false;
        }
        self.timed_out = false;
        self.prober.rset();
        self.resets += 1;
        let ready = matches!(self.drive(deadline).await, ProbeAction::Ready);
        self.idle_since = Instant::now();
        ready
    }

    /// QUIT, then wait (at most `CALLAHEAD_QUIT_TIMEOUT_MS`) for the
    /// server to close its end (its 221, then EOF) before the connection
    /// slot is given back: a server still tearing a session down counts it
    /// as open, and `max_connections_per_server` is what the server sees.
    pub async fn quit(mut self) {
        self.prober.quit();
        let deadline = Instant::now() + Duration::from_millis(CALLAHEAD_QUIT_TIMEOUT_MS);
        if self.flush(deadline).await.is_err() {
            return;
        }
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                return;
            };
            set_timeouts(&self.stream, Some(left));
            match self.stream.read(&mut self.read_buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue, // the 221 (and anything before it): not needed
            }
        }
    }

    /// Ready for another batch.
    pub fn is_reusable(&self) -> bool {
        self.prober.is_reusable()
    }

    /// The last batch failed before the downstream answered any of it, and
    /// not by a timeout: the socket was dead (or closing with 421) before
    /// we used it, so repeating the batch on a fresh connection is safe.
    pub fn was_dead_before_use(&self) -> bool {
        self.prober.is_stale() && !self.timed_out
    }

    /// RCPTs answered inside the open transaction (RSET before the
    /// profile's `max_recipients_per_session`).
    pub fn rcpts_in_transaction(&self) -> usize {
        self.prober.rcpts_in_transaction()
    }

    /// The server offered PIPELINING (RFC 2920).
    pub fn pipelining(&self) -> bool {
        self.prober.pipelining()
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The prober failed because the TLS its mode requires was not to be had.
    pub fn tls_refused(&self) -> bool {
        self.prober.tls_refused()
    }

    /// "why (server)": log lines and verdicts say which server.
    fn name(&self, why: &str) -> String {
        format!("{why} ({})", self.server)
    }

    /// Write and read until the prober is Ready, answered or failed.
    async fn drive(&mut self, deadline: Instant) -> ProbeAction {
        loop {
            match self.prober.next_action() {
                ProbeAction::Read(_) => self.read_reply(deadline).await,
                ProbeAction::StartTls => self.start_tls(deadline).await,
                done => return done,
            }
        }
    }

    /// STARTTLS was answered 220: write what is pending, then the
    /// handshake under the deadline (the socket's timeouts bound each read
    /// and write of it).
    async fn start_tls(&mut self, deadline: Instant) {
        if let Err(e) = self.flush(deadline).await {
            return self.broken(e);
        }
        let Some(config) = self.tls_config.clone() else {
            return self.prober.tls_failed("no TLS client config (see the reload log)");
        };
        let Some(left) = remaining(deadline) else {
            return self.broken(io::ErrorKind::TimedOut.into());
        };
        set_timeouts(&self.stream, Some(left));
        match self.stream.connect(config, ServerName::IpAddress(self.server.ip().into())).await {
            Ok(info) => {
                self.tls = Some(info);
                self.prober.tls_started();
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.timed_out = true;
                self.prober.tls_failed("timed out");
            }
            Err(e) => self.prober.tls_failed(&e.to_string()),
        }
    }

    async fn read_reply(&mut self, deadline: Instant) {
        if let Err(e) = self.flush(deadline).await {
            return self.broken(e);
        }
        let read = match remaining(deadline) {
            Some(left) => {
                set_timeouts(&self.stream, Some(left));
                self.stream.read(&mut self.read_buf).await
            }
            None => Err(io::ErrorKind::TimedOut.into()),
        };
        match read {
            Ok(0) => {
                let awaiting = self.prober.awaiting();
                let why =
                    format!("downstream closed the connection while we waited for {awaiting}");
                self.prober.lost(&why);
            }
            Ok(n) => self.prober.feed(&self.read_buf[..n]),
            Err(e) => self.broken(e),
        }
    }

    async fn flush(&mut self, deadline: Instant) -> io::Result<()> {
        if self.prober.output().is_empty() {
            return Ok(());
        }
        let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
        set_timeouts(&self.stream, Some(left));
        self.stream.write_all(self.prober.output()).await?;
        // rustls holds written records until flushed.
        self.stream.flush().await?;
        self.prober.consume_output(self.prober.output().len());
        Ok(())
    }

    /// A read or write failed: tell the prober who is at fault.
    fn broken(&mut self, e: io::Error) {
        let awaiting = self.prober.awaiting();
        let why = if e.kind() == io::ErrorKind::TimedOut {
            self.timed_out = true;
            format!("downstream timed out waiting for {awaiting}")
        } else {
            format!("connection to downstream broken while we waited for {awaiting}: {e}")
        };
        self.prober.lost(&why);
    }
}

/// Bound the next reads and writes of the socket under `stream` (clear or
/// TLS: rustls reads and writes through it).
fn set_timeouts(stream: &Stream, left: Option<Duration>) {
    if let Some(tcp) = stream.tcp() {
        let _ = tcp.set_read_timeout(left);
        let _ = tcp.set_write_timeout(left);
    }
}

/// The time left before `deadline`; `None` once it passed (glommio refuses
/// a zero timeout, and there is nothing left to wait for anyway).
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

/// A TCP connection to `server`, bound to `source` first if given, with
/// TCP_NODELAY (commands and replies are small and latency-bound; RFC 2920
/// batches them already).
async fn connect(
    server: SocketAddr,
    source: Option<IpAddr>,
    deadline: Instant,
) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&server.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let mut stream = TcpStream::from(socket);
    // A zero-byte send returns EAGAIN while the handshake runs (glommio
    // then waits for POLLOUT, which a failed connect raises as POLLERR),
    // 0 once connected, or the connect's error.
    let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
    let _ = stream.set_write_timeout(Some(left));
    stream.write(&[]).await?;
    match SockRef::from(&stream).take_error()? {
        Some(e) => Err(e),
        None => Ok(stream),
    }
}

/// The verdict of one recipient's answer.
fn verdict_of_answer(answer: RcptAnswer) -> Verdict {
    match answer {
        RcptAnswer::Rcpt(reply) => of_rcpt(reply),
        RcptAnswer::MailRefused(reply) => of_refusal(Stage::MailFrom, reply),
    }
}

/// The verdict of a recipient the failure left without an answer. A 421
/// or a 3xx at RCPT is not an answer about the recipient (`of_rcpt` would
/// take a 421 for a tempfail), so it is a downstream failure carrying the
/// reply; before RCPT a reply is a refusal of that stage.
fn verdict_of_failure(stage: Stage, reply: Option<Reply>, why: &str) -> Verdict {
    match reply {
        Some(reply) if stage != Stage::Rcpt => of_refusal(stage, reply),
        Some(reply) => Verdict::DownstreamFailure {
            stage,
            reply: Some(reply),
            why: why.to_string(),
        },
        None => of_fault(stage, why),
    }
}
