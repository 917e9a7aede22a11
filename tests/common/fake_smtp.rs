//! A scripted fake downstream SMTP server, ONLY for faults that real
//! programs cannot make on demand. Everything else a call-ahead test needs
//! comes from real peers: `smtp-sink` (4xx/5xx at any command, `-W`
//! delays, hang-ups, 421) and a real Postfix `smtpd` (User unknown).
//!
//! Why each fault exists (issue 7, "Bad input"):
//! - [`Fault::Garbage`]: bytes that are not an SMTP reply where a reply is
//!   due (say an HTTP server or a confused proxy on the port). No real MTA
//!   answers like that.
//! - [`Fault::EndlessLines`]: `250-x` continuation lines forever; a reader
//!   without a line bound never gets a reply and never stops reading.
//! - [`Fault::StallMidReply`]: the first line of a multi-line reply, then
//!   silence with the connection open. smtp-sink's `-w`/`-W` delay a whole
//!   reply; only a fake can stop in the middle of one.
//! - [`Fault::CloseAfterBanner`]: a 220 greeting, then close before EHLO
//!   (smtp-sink can only hang up after a command it has read).
//!
//! Otherwise it is a plain, PIPELINING-capable server that accepts every
//! recipient: 220, EHLO 250 (PIPELINING, ENHANCEDSTATUSCODES), MAIL/RCPT/
//! RSET/NOOP 250, QUIT 221, anything else 502. One std thread per
//! connection on 127.0.0.1; it counts connections (total, open, peak) and
//! keeps every command line it read, in order, for the test.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// The SMTP step at which a fault strikes: the reply to this command (or
/// the greeting, for `Banner`) is the bad one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Banner,
    Ehlo,
    Mail,
    Rcpt,
}

/// What the fake does wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Behaves (a well-formed server that accepts every recipient).
    None,
    /// Answers with bytes that are not an SMTP reply at `Step`.
    Garbage(Step),
    /// Answers `250-x` continuation lines without end at `Step`.
    EndlessLines(Step),
    /// Sends the first line of a multi-line reply at `Step`, then nothing
    /// more, keeping the connection open until the peer or the test ends it.
    StallMidReply(Step),
    /// Sends the 220 greeting and closes at once.
    CloseAfterBanner,
}

/// What `Garbage` sends: no digit-digit-digit code, no CRLF discipline.
pub const GARBAGE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\x00\xff\xfe garbage \n\r\n";

/// A running fake on 127.0.0.1; stopped on drop (its connections are
/// shut down, so stalled peers see EOF).
pub struct FakeSmtp {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    total: AtomicUsize,
    open: AtomicUsize,
    peak: AtomicUsize,
    commands: Mutex<Vec<String>>,
    streams: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

impl FakeSmtp {
    pub fn start(fault: Fault) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake SMTP server");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        thread::spawn(move || accept_loop(listener, fault, accept_shared));
        FakeSmtp { addr, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    /// "127.0.0.1:PORT", the form routes and `static_servers` take.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }
    /// Connections accepted so far.
    pub fn connections_total(&self) -> usize {
        self.shared.total.load(Ordering::SeqCst)
    }
    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
    /// The most connections open at once.
    pub fn max_concurrent_connections(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }
    /// Every command line read, over all connections, in arrival order.
    pub fn commands(&self) -> Vec<String> {
        self.shared.commands.lock().unwrap().clone()
    }
    /// Command lines that start with `verb` (case-insensitive), e.g. "RCPT".
    pub fn count_commands(&self, verb: &str) -> usize {
        self.commands()
            .iter()
            .filter(|c| {
                c.get(..verb.len())
                    .is_some_and(|v| v.eq_ignore_ascii_case(verb))
            })
            .count()
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for stream in self.shared.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, fault: Fault, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if let Ok(clone) = stream.try_clone() {
            shared.streams.lock().unwrap().push(clone);
        }
        let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
        shared.total.fetch_add(1, Ordering::SeqCst);
        shared.peak.fetch_max(open, Ordering::SeqCst);
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            let _ = serve(stream, fault, &shared);
            shared.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// One session: the greeting, then one reply per command line, in order
/// (so pipelined commands get pipelined replies).
fn serve(stream: TcpStream, fault: Fault, shared: &Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    if fault == Fault::CloseAfterBanner {
        out.write_all(b"220 fake.test ESMTP\r\n")?;
        return stream.shutdown(Shutdown::Both);
    }
    if !reply(
        &mut out,
        Step::Banner,
        fault,
        "220 fake.test ESMTP fake downstream\r\n",
        shared,
    )? {
        return Ok(());
    }
    for line in BufReader::new(stream).split(b'\n') {
        let line = String::from_utf8_lossy(&line?).trim_end().to_owned();
        shared.commands.lock().unwrap().push(line.clone());
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let (step, normal) = match verb.as_str() {
            "EHLO" | "HELO" => (
                Some(Step::Ehlo),
                "250-fake.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n",
            ),
            "MAIL" => (Some(Step::Mail), "250 2.1.0 Ok\r\n"),
            "RCPT" => (Some(Step::Rcpt), "250 2.1.5 Ok\r\n"),
            "RSET" | "NOOP" => (None, "250 2.0.0 Ok\r\n"),
            "QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            _ => (None, "502 5.5.2 Error: command not recognized\r\n"),
        };
        let go_on = match step {
            Some(step) => reply(&mut out, step, fault, normal, shared)?,
            None => out.write_all(normal.as_bytes()).map(|_| true)?,
        };
        if !go_on {
            return Ok(());
        }
    }
    Ok(())
}

/// Writes the reply due at `step`: the normal one, or the fault's. Returns
/// false when the session is over (the fault ended it).
fn reply(
    out: &mut TcpStream,
    step: Step,
    fault: Fault,
    normal: &str,
    shared: &Shared,
) -> std::io::Result<bool> {
    match fault {
        Fault::Garbage(at) if at == step => {
            out.write_all(GARBAGE)?;
            Ok(true)
        }
        Fault::EndlessLines(at) if at == step => {
            endless_lines(out, shared)?;
            Ok(false)
        }
        Fault::StallMidReply(at) if at == step => {
            out.write_all(b"250-fake.test first line of a reply that never ends\r\n")?;
            stall(out, shared);
            Ok(false)
        }
        _ => out.write_all(normal.as_bytes()).map(|_| true),
    }
}

/// `250-x` lines until the peer stops reading and closes (the write then
/// fails) or the fake is dropped. TCP back-pressure paces it: a peer that
/// stops reading blocks the write.
fn endless_lines(out: &mut TcpStream, shared: &Shared) -> std::io::Result<()> {
    let chunk = b"250-x\r\n".repeat(512);
    while !shared.stop.load(Ordering::SeqCst) {
        out.write_all(&chunk)?;
    }
    Ok(())
}

/// Holds the connection open, reading (and discarding) whatever comes,
/// until the peer closes or the fake is dropped (which shuts it down).
fn stall(out: &TcpStream, shared: &Shared) {
    let Ok(mut reader) = out.try_clone() else {
        return;
    };
    let mut buf = [0u8; 1024];
    while !shared.stop.load(Ordering::SeqCst) {
        match std::io::Read::read(&mut reader, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}
