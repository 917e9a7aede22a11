//! The admin listener: `GET /metrics` (Prometheus text of every shard's
//! metrics, summed), the call-ahead cache commands (`callahead.rs`) and the
//! LDAP cache purge (`ldap.rs`), answered by the shards over `bridge.rs`,
//! over a minimal HTTP/1.1, off the shards.
//!
//! It sits beside the mail flow, not in it: one dedicated std thread with a
//! blocking `TcpListener`, so a scrape never runs on (or blocks) a shard; the
//! shards only bump their own atomics and the thread reads them
//! (`metrics::MetricsBoard`). It serves one connection at a time, each
//! bounded in size (`limits::ADMIN_REQUEST_HEAD_BYTES_MAX`, then 431) and in
//! time (`limits::ADMIN_IO_TIMEOUT_SECS` to read the head, then 408; as long
//! again to write the answer, then dropped), so a slow or hostile client
//! delays a scrape by at most twice that and cannot wedge it. Every answer closes the connection (RFC 9112 §9.6), which
//! keeps the server free of keep-alive state.
//!
//! The thread waits in poll(2) on the listener and on a wake-up socket; the
//! `AdminHandle` closes its end of that socket to stop the thread and joins
//! it (so a stopped admin has released its port).

pub mod bridge;
mod callahead;
mod http;
mod ldap;
mod queue;
#[cfg(test)]
mod tests;

use crate::limits::{ADMIN_IO_TIMEOUT_SECS, ADMIN_LINGER_BYTES_MAX, ADMIN_REQUEST_HEAD_BYTES_MAX};
use crate::metrics::MetricsBoard;
use bridge::Bridge;
use http::{HeadError, Response};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running admin listener; dropping it (or `stop`) stops the thread.
#[derive(Debug)]
pub struct AdminHandle {
    local_addr: SocketAddr,
    /// Closing this end wakes the thread's poll(2) with end-of-file.
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl AdminHandle {
    /// The address actually bound (the port, when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the thread and waits for it: at most the rest of the exchange
    /// in progress (bounded by the I/O timeout). The port is free after.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!("portcullis: admin listener thread panicked");
            }
        }
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds `addr` now (so a bad address or a port in use is an error at
/// start, not later in a thread) and serves `board` on its own thread.
pub fn start(addr: SocketAddr, board: Arc<MetricsBoard>) -> io::Result<AdminHandle> {
    start_with_timeout(addr, board, Duration::from_secs(ADMIN_IO_TIMEOUT_SECS))
}

/// `start` with the bridge to the shards, so the call-ahead commands work.
pub fn start_with_bridge(
    addr: SocketAddr,
    board: Arc<MetricsBoard>,
    bridge: Bridge,
) -> io::Result<AdminHandle> {
    start_serving(addr, board, Some(bridge), Duration::from_secs(ADMIN_IO_TIMEOUT_SECS))
}

/// `start` with another bound on one exchange (tests use a short one).
pub fn start_with_timeout(
    addr: SocketAddr,
    board: Arc<MetricsBoard>,
    io_timeout: Duration,
) -> io::Result<AdminHandle> {
    start_serving(addr, board, None, io_timeout)
}

fn start_serving(
    addr: SocketAddr,
    board: Arc<MetricsBoard>,
    bridge: Option<Bridge>,
    io_timeout: Duration,
) -> io::Result<AdminHandle> {
    let listener = TcpListener::bind(addr)?;
    // Nonblocking: poll(2) said a connection was there, but it may be gone
    // (reset) by the time we accept; accept must not then block the thread.
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let (wake, woken) = UnixStream::pair()?;
    let thread = std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let services = Services { board, bridge };
            serve_until_woken(listener, woken, &services, io_timeout)
        })?;
    Ok(AdminHandle {
        local_addr,
        wake: Some(wake),
        thread: Some(thread),
    })
}

/// What the admin thread answers from.
struct Services {
    board: Arc<MetricsBoard>,
    bridge: Option<Bridge>,
}

fn serve_until_woken(
    listener: TcpListener,
    woken: UnixStream,
    services: &Services,
    io_timeout: Duration,
) {
    loop {
        match wait_for_client(&listener, &woken) {
            Wait::Stop => return,
            Wait::Client => {}
        }
        match listener.accept() {
            Ok((stream, _)) => serve(stream, services, io_timeout),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
            Err(e) => {
                // Out of descriptors or memory: the listener stays readable,
                // so pause (still waking for stop) instead of spinning.
                eprintln!("portcullis: admin listener: accept: {e}");
                if pause_unless_woken(&woken, Duration::from_millis(100)) {
                    return;
                }
            }
        }
    }
}

enum Wait {
    Client,
    Stop,
}

/// Blocks until a client connects or the handle closes the wake-up socket.
fn wait_for_client(listener: &TcpListener, woken: &UnixStream) -> Wait {
    loop {
        let mut fds = [pollfd(listener.as_raw_fd()), pollfd(woken.as_raw_fd())];
        // SAFETY: `fds` is a valid array of two pollfd for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                continue;
            }
            // poll(2) on two valid descriptors does not fail otherwise; if it
            // does, stopping beats spinning.
            eprintln!(
                "portcullis: admin listener: poll: {}",
                io::Error::last_os_error()
            );
            return Wait::Stop;
        }
        if fds[1].revents != 0 {
            return Wait::Stop;
        }
        if fds[0].revents != 0 {
            return Wait::Client;
        }
    }
}

/// Waits `pause` or until woken; true when woken (stop).
fn pause_unless_woken(woken: &UnixStream, pause: Duration) -> bool {
    let mut fds = [pollfd(woken.as_raw_fd())];
    let millis = pause.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a valid array of one pollfd for the whole call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, millis) };
    ready > 0
}

fn pollfd(fd: libc::c_int) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// One exchange: read the head, answer, close. I/O errors mean the client
/// went away; there is nobody to tell.
fn serve(mut stream: TcpStream, services: &Services, io_timeout: Duration) {
    // Accepted sockets do not inherit O_NONBLOCK on Linux; say it anyway,
    // the timeouts below only apply to blocking sockets.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let response = match read_head(&mut stream, Instant::now() + io_timeout) {
        Ok((head, query)) => {
            http::route_with(&head, &query, &services.board, services.bridge.as_ref())
        }
        Err(HeadError::Closed) => return,
        Err(refused) => Response::refusal(refused),
    };
    // A fresh budget for the answer: a 408 is sent after the head's ran out.
    let deadline = Instant::now() + io_timeout;
    if write_before(&mut stream, &response.encode(), deadline).is_ok() {
        linger(stream, deadline);
    }
}

/// Reads until the head is complete, too big, malformed or out of time.
fn read_head(
    stream: &mut TcpStream,
    deadline: Instant,
) -> Result<(http::Head, String), HeadError> {
    let mut buffer = vec![0u8; ADMIN_REQUEST_HEAD_BYTES_MAX];
    let mut filled = 0;
    loop {
        let remaining = time_left(deadline).ok_or(HeadError::TimedOut)?;
        stream
            .set_read_timeout(Some(remaining))
            .map_err(|_| HeadError::Closed)?;
        let read = match stream.read(&mut buffer[filled..]) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(HeadError::TimedOut)
            }
            Err(_) => return Err(HeadError::Closed),
        };
        filled += read;
        if let Some(request) = http::parse_request(&buffer[..filled])? {
            return Ok(request);
        }
        if filled == buffer.len() {
            return Err(HeadError::TooLarge);
        }
    }
}

fn write_before(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let remaining = time_left(deadline).ok_or(ErrorKind::TimedOut)?;
    stream.set_write_timeout(Some(remaining))?;
    stream.write_all(bytes)?;
    stream.flush()
}

/// Half-closes, then reads and discards what the client still sends (the
/// rest of an oversized head, a body) until it closes, so our answer is not
/// destroyed by a reset for unread data; bounded in bytes and time.
fn linger(mut stream: TcpStream, deadline: Instant) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    while discarded < ADMIN_LINGER_BYTES_MAX {
        let Some(remaining) = time_left(deadline) else {
            return;
        };
        if stream.set_read_timeout(Some(remaining)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(read) => discarded += read,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Time until `deadline`, or None once it passed (a zero timeout is an
/// error for the std socket calls, so none is ever set).
fn time_left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}
