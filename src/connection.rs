//! The I/O driver of one client connection: socket ⇄ `smtp::Session`.
//!
//! The session decides everything; this file only carries out its actions
//! (read, ask the policy, store, close), enforces the RFC 5321 §4.5.3.2
//! timeouts and the minimum data rate, and writes the mail log. Output is
//! flushed before every read and every wait, which is exactly the RFC 2920
//! flush point (the session has consumed all complete commands).
//!
//! Questions (`Action::Ask`) are not awaited where they are asked: each
//! becomes a decision future in `decisions.rs` and the loop goes on, so the
//! RCPTs of one pipelined batch are decided in parallel. On
//! `Action::AwaitAnswers` the driver waits for whichever decision completes
//! first, reading ahead meanwhile only while `Session::wants_input` (the
//! back-pressure that bounds the session's input buffer).
//!
//! TLS (`tls.rs`): the socket is a `tls::Stream`. On `Action::StartTls`
//! the 220 is flushed and the handshake runs in place on the same socket
//! (`handshake.rs`); implicit TLS listeners run it right after the connect
//! decision, before the greeting. A handshake that fails or stalls past
//! the command timeout ends the connection; the shard never waits on it.

use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::tls::Stream;

use crate::intake;
use crate::policy::{self, connect::Admission, Client};
use crate::shard::Shard;
use crate::smtp::session::Event;
use crate::smtp::{Action, Decision, Peer, Phase, Question, Session, Ticket};

mod decisions;
mod handshake;
use decisions::Decisions;

const READ_BYTES: usize = 16 * 1024;

/// How a read ended.
enum ReadOutcome {
    Bytes(usize),
    Closed,
    TimedOut,
    ShuttingDown,
    Error(std::io::Error),
}

pub async fn serve(tcp: TcpStream, shard: &Shard, listener: &str) {
    let conn = shard.next_connection_id();
    let (peer, local) = match (tcp.peer_addr(), tcp.local_addr()) {
        (Ok(p), Ok(l)) => (p, l),
        _ => return,
    };
    let _ = tcp.set_nodelay(true);
    // The policy this connection lives under, to its end (a reload does not change it).
    let policy = shard.policy.current();
    shard.log.event("connect", format_args!("conn={conn} peer={peer} local={local} listener={listener} policy={}", policy.generation));
    let peer = Peer { connection_id: conn.clone(), addr: peer, local };
    let Some(listener) = policy.access.listener(listener).cloned() else {
        // Listeners are fixed at start and a reload cannot remove one; never guess.
        shard.log.event("disconnect", format_args!("conn={conn} reason=\"listener {listener} is not in the policy\""));
        return;
    };
    let mut session = Session::new(listener.session_config.clone(), peer.clone());
    // The first action asks Connect: the HAT decides before anything is sent.
    let Action::Ask { ticket, question: Question::Connect } = session.next_action() else {
        unreachable!("a new session asks Connect first")
    };
    let client = match policy::connect::admit(shard, &policy, &listener, &peer).await {
        Admission::TcpRefuse => return refuse_tcp(tcp, shard, &conn).await,
        Admission::Answer { decision, client } => (decision, client),
    };
    let (decision, client) = client;
    let mut stream = Stream::Plain(tcp);
    let t = &policy.timeouts;
    if listener.implicit_tls {
        // RFC 8314 §3.3: TLS first, then the greeting inside it.
        let wait = Duration::from_secs(t.command_secs);
        match handshake::run(&mut stream, shard, &policy, &client, wait).await {
            Ok(info) => session.tls_started(info),
            Err(why) => {
                shard.log.event("disconnect", format_args!("conn={conn} reason=\"{why}\""));
                return;
            }
        }
    }
    session.answer(ticket, decision);
    let mut decisions = Decisions::default();
    let mut buf = vec![0u8; READ_BYTES];
    let mut rate = DataRate::default();
    let why_closed = loop {
        let action = session.next_action();
        log_events(shard, &conn, &mut session, &client);
        match action {
            Action::Read => {
                if let Err(e) = flush(&mut stream, &mut session, Duration::from_secs(t.command_secs)).await {
                    break format!("write: {e}");
                }
                let phase = session.phase();
                let receiving = session.receiving_message();
                rate.track(receiving);
                let wait = match phase {
                    Phase::Data => Duration::from_secs(t.data_block_secs),
                    _ => Duration::from_secs(t.command_secs),
                };
                debug_assert!(session.wants_input(), "Read with the input bound reached");
                let n = match take_read(&mut session, read(&mut stream, &mut buf, wait, shard).await, &buf) {
                    Ok(n) => n,
                    Err(why) => break why,
                };
                // A client that keeps the socket full must not starve the others.
                glommio::yield_if_needed().await;
                if receiving && n > 0 && rate.too_slow(n, t.data_rate_min_bytes_per_sec, t.data_rate_window_secs) {
                    shard.log.event("slow", format_args!("conn={conn} reason=\"below {} bytes/s\"", t.data_rate_min_bytes_per_sec));
                    session.timed_out();
                }
            }
            Action::Ask { ticket, question } => {
                let (snapshot, client) = (&*policy, &client);
                decisions.push(ticket, async move { policy::decide(&question, shard, snapshot, client).await });
            }
            Action::AwaitAnswers => {
                let wait = Duration::from_secs(t.command_secs);
                if let Err(why) = await_answer(&mut stream, &mut session, &mut buf, &mut decisions, wait, shard).await {
                    break why;
                }
            }
            Action::Store(mut message) => {
                if let Some(query) = &listener.ldap_routing {
                    message.envelope.ldap_routing = query.name.clone();
                }
                message.envelope.relayed = policy::recipient::relays(&client.policy, message.envelope.secured.authenticated.is_some());
                // Replies to the commands before the final dot go out first.
                if let Err(e) = flush(&mut stream, &mut session, Duration::from_secs(t.command_secs)).await {
                    break format!("write: {e}");
                }
                let result = intake::accept_message(shard, message).await;
                if let Err(e) = &result {
                    shard.log.event("store-error", format_args!("conn={conn} error=\"{e:?}\""));
                }
                session.stored(result);
            }
            Action::StartTls => {
                let wait = Duration::from_secs(t.command_secs);
                if let Err(e) = flush(&mut stream, &mut session, wait).await {
                    break format!("write: {e}");
                }
                match handshake::run(&mut stream, shard, &policy, &client, wait).await {
                    Ok(info) => session.tls_started(info),
                    Err(why) => {
                        session.tls_failed();
                        break why;
                    }
                }
            }
            Action::Close => {
                let _ = flush(&mut stream, &mut session, Duration::from_secs(t.command_secs)).await;
                break "closed".to_string();
            }
        }
    };
    log_events(shard, &conn, &mut session, &client);
    let _ = stream.close().await;
    drop(decisions); // they borrow the client, whose drop releases its connection slot
    drop(client);
    shard.log.event("disconnect", format_args!("conn={conn} reason=\"{why_closed}\""));
}

/// TCPREFUSE: close with a reset, before a single byte (SO_LINGER 0 makes
/// close send RST instead of FIN).
async fn refuse_tcp(mut stream: TcpStream, shard: &Shard, conn: &str) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket fd owned by `stream`, a correctly sized option.
    unsafe {
        libc::setsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &linger as *const libc::linger as *const libc::c_void, std::mem::size_of::<libc::linger>() as libc::socklen_t);
    }
    let _ = stream.close().await;
    shard.log.event("disconnect", format_args!("conn={conn} reason=\"tcprefuse\""));
}

fn log_events(shard: &Shard, conn: &str, session: &mut Session, client: &Client) {
    for e in session.drain_events() {
        if e.command == "CONNECT" && e.reply.is_positive() {
            continue; // already logged as "connect" with both addresses; a refusal is logged
        }
        shard.log.event("command", format_args!("conn={conn} cmd={} arg=\"{}\" reply=\"{}\"", e.command, e.argument.escape_debug(), e.reply));
        if let Some((rule, max)) = session_limit(&e, client) {
            shard.log.event("limit", format_args!("conn={conn} {} rule={rule} max={max} reply=\"{}\"", client.label(), e.reply));
        }
    }
}

/// The mail flow policy limit the session enforced with this reply, if any
/// (the session applies them itself, from the connect answer; the log line
/// names the rule like every other limit decision).
fn session_limit(e: &Event, client: &Client) -> Option<(&'static str, u64)> {
    let p = &client.policy.params;
    match (e.reply.code, e.reply.enhanced.as_str(), e.command.as_str()) {
        (452, "4.5.3", "RCPT") => Some(("max_recipients_per_message", p.max_recipients_per_message.into())),
        (552, "5.3.4", _) => Some(("max_message_size", p.max_message_size)),
        (421, "4.7.0", "MAIL") => Some(("max_messages_per_connection", p.max_messages_per_connection.into())),
        _ => None,
    }
}

/// Write all pending output, or fail after `wait`: a client that never
/// reads is disconnected, not buffered for.
async fn flush(stream: &mut Stream, session: &mut Session, wait: Duration) -> std::io::Result<()> {
    let out = session.output();
    if out.is_empty() {
        return Ok(());
    }
    let n = out.len();
    // TLS: flush pushes the records rustls holds to the socket.
    let write = async {
        stream.write_all(out).await?;
        stream.flush().await.map_err(glommio::GlommioError::from)
    };
    glommio::timer::timeout(wait, write).await.map_err(std::io::Error::from)?;
    session.consume_output(n);
    Ok(())
}

/// Hand what a read brought to the session; the octets fed, or why the
/// connection ends.
fn take_read(session: &mut Session, outcome: ReadOutcome, buf: &[u8]) -> Result<usize, String> {
    match outcome {
        ReadOutcome::Bytes(n) => {
            session.feed(&buf[..n]);
            return Ok(n);
        }
        ReadOutcome::Closed => session.input_closed(),
        ReadOutcome::TimedOut => session.timed_out(),
        ReadOutcome::ShuttingDown => session.shutting_down(),
        ReadOutcome::Error(e) => return Err(format!("read: {e}")),
    }
    Ok(0)
}

/// Read once, bounded by `wait` and by the end of the shutdown grace.
/// Cancel-safe: glommio reads on readiness, a dropped read loses no octet.
async fn read(stream: &mut Stream, buf: &mut [u8], wait: Duration, shard: &Shard) -> ReadOutcome {
    let reading = async {
        match glommio::timer::timeout(wait, async { Ok(stream.read(buf).await?) }).await {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => ReadOutcome::Bytes(n),
            Err(glommio::GlommioError::TimedOut(_)) => ReadOutcome::TimedOut,
            Err(e) => ReadOutcome::Error(e.into()),
        }
    };
    futures_lite::future::or(reading, shutdown(shard)).await
}

/// Not reading: only `wait` or the end of the shutdown grace.
async fn idle(wait: Duration, shard: &Shard) -> ReadOutcome {
    let timer = async {
        glommio::timer::sleep(wait).await;
        ReadOutcome::TimedOut
    };
    futures_lite::future::or(timer, shutdown(shard)).await
}

async fn shutdown(shard: &Shard) -> ReadOutcome {
    // acquire() on a semaphore with no permits fails only when it is closed.
    let _ = shard.shutdown.acquire(1).await;
    ReadOutcome::ShuttingDown
}

/// What ended a wait for answers.
enum Awaited {
    Answer(Ticket, Decision),
    Read(ReadOutcome),
}

/// Flush, then hand the session whichever decision completes first.
/// Meanwhile read ahead while the session wants input (more pipelined RCPTs
/// can be asked at once), all bounded by `wait`: a policy that never answers
/// ends in a 421 like a silent client. Err: why the connection ends.
async fn await_answer(
    stream: &mut Stream,
    session: &mut Session,
    buf: &mut [u8],
    decisions: &mut Decisions<'_>,
    wait: Duration,
    shard: &Shard,
) -> Result<(), String> {
    flush(stream, session, wait).await.map_err(|e| format!("write: {e}"))?;
    debug_assert!(!decisions.is_empty(), "AwaitAnswers with no question in flight");
    let read_ahead = session.wants_input();
    let answer = async {
        let (ticket, decision) = decisions.next().await;
        Awaited::Answer(ticket, decision)
    };
    let other = async {
        let outcome = if read_ahead { read(stream, buf, wait, shard).await } else { idle(wait, shard).await };
        Awaited::Read(outcome)
    };
    match futures_lite::future::or(answer, other).await {
        Awaited::Answer(ticket, decision) => {
            session.answer(ticket, decision);
            Ok(())
        }
        Awaited::Read(outcome) => take_read(session, outcome, buf).map(drop),
    }
}

/// Minimum data rate while a message arrives (DATA, or all BDAT chunks of
/// one message): bytes over the time since it began, checked once a window
/// has passed. Stops a client that trickles a byte at a time, which no
/// per-read timeout would catch.
#[derive(Default)]
struct DataRate {
    since: Option<Instant>,
    bytes: u64,
}

impl DataRate {
    fn track(&mut self, receiving: bool) {
        match (receiving, self.since) {
            (true, None) => {
                self.since = Some(Instant::now());
                self.bytes = 0;
            }
            (true, Some(_)) => {}
            (false, _) => self.since = None,
        }
    }

    fn too_slow(&mut self, n: usize, min_per_sec: u64, window_secs: u64) -> bool {
        self.bytes += n as u64;
        let Some(since) = self.since else { return false };
        let elapsed = since.elapsed().as_secs();
        elapsed >= window_secs && self.bytes < min_per_sec.saturating_mul(elapsed)
    }
}
