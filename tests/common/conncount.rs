//! Server-side connection counts for a downstream that does not log them
//! (`smtp-sink`): a background thread samples the kernel's socket table
//! (`/proc/net/tcp`) for ESTABLISHED connections whose local end is
//! 127.0.0.1:PORT, i.e. the server's side of each accepted connection.
//!
//! ```ignore
//! let sink = Sink::start();
//! let count = ConnCounter::start(sink.port());
//! // ... traffic ...
//! assert!(count.max_concurrent() <= 2);
//! ```
//!
//! Limits (say them in a test that relies on this): it is a sampler, not a
//! log. A connection that opens and closes between two samples (every
//! [`SAMPLE_EVERY`]) is missed, so `max_concurrent` and `distinct_total`
//! are lower bounds of the truth; they can prove a cap exceeded, never
//! prove it held for connections shorter than the interval. Call-ahead
//! probe connections are pooled and live long, which is what makes it
//! useful here. For exact counts use Postfix's own log
//! ([`super::postfix::PostfixSmtpd`]) or the fake ([`super::fake_smtp`]).
//! It counts whoever connects to the port, so it assumes the port is the
//! test's own (ports come from `free_port`). IPv4 only (127.0.0.1).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Sampling interval: short enough for pooled connections, cheap enough
/// (one read of /proc/net/tcp) to run beside a busy test on two cores.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Samples connections to one local port until dropped.
pub struct ConnCounter {
    state: Arc<Counts>,
    thread: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    now: AtomicUsize,
    max: AtomicUsize,
    /// Remote ends (ip:port in /proc hex) ever seen.
    seen: Mutex<HashSet<String>>,
    stop: AtomicBool,
}

impl ConnCounter {
    pub fn start(port: u16) -> ConnCounter {
        let state = Arc::new(Counts::default());
        let sampler = Arc::clone(&state);
        let thread = thread::spawn(move || {
            while !sampler.stop.load(Ordering::SeqCst) {
                sampler.record(established_to(port));
                thread::sleep(SAMPLE_EVERY);
            }
        });
        ConnCounter {
            state,
            thread: Some(thread),
        }
    }
    /// Connections open at the last sample.
    pub fn current(&self) -> usize {
        self.state.now.load(Ordering::SeqCst)
    }
    /// The most connections seen open at once (a lower bound, see header).
    pub fn max_concurrent(&self) -> usize {
        self.state.max.load(Ordering::SeqCst)
    }
    /// Distinct connections seen so far (a lower bound, see header).
    pub fn distinct_total(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }
}

impl Counts {
    fn record(&self, remotes: Vec<String>) {
        self.now.store(remotes.len(), Ordering::SeqCst);
        self.max.fetch_max(remotes.len(), Ordering::SeqCst);
        self.seen.lock().unwrap().extend(remotes);
    }
}

impl Drop for ConnCounter {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Remote ends of the ESTABLISHED sockets whose local end is
/// 127.0.0.1:`port` (state 01 in /proc/net/tcp).
pub fn established_to(port: u16) -> Vec<String> {
    sockets_in_state(port, "01")
}

/// Remote ends of the sockets whose local end is 127.0.0.1:`port` in
/// `state` (the hex state of /proc/net/tcp: "01" ESTABLISHED, "06"
/// TIME_WAIT), each once: the kernel writes the table over several reads,
/// and a socket table that changes between two reads can list an entry
/// twice.
pub fn sockets_in_state(port: u16, state: &str) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (here, there, now) = (cols.get(1)?, cols.get(2)?, cols.get(3)?);
            (*here == local && *now == state).then(|| there.to_string())
        })
        .collect::<HashSet<String>>()
        .into_iter()
        .collect()
}
