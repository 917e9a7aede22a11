//! The mail log: one line per event, greppable by connection, queue and
//! delivery id (`conn=C… qid=… dlv=D…`).
//!
//! Each shard buffers its own lines and writes them in batches (on a short
//! timer, when the buffer is large, and at exit), so logging never takes a
//! lock shared with other shards and costs one write(2) per batch. The
//! lines of the audit trail (queued, delivered, failed) are written out
//! before we act on them, so a `kill -9` cannot erase them.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use crate::clock;

/// Buffered lines above this are written at once rather than on the timer.
const BUFFER_BYTES_MAX: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

pub struct MailLog {
    shard: usize,
    out: RefCell<Box<dyn Write>>,
    buffer: RefCell<String>,
}

impl MailLog {
    /// `target` is "-" for stderr or a file path (appended to).
    pub fn open(target: &str, shard: usize) -> std::io::Result<Rc<MailLog>> {
        let out: Box<dyn Write> = if target == "-" {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(target)?)
        };
        Ok(Rc::new(MailLog { shard, out: RefCell::new(out), buffer: RefCell::new(String::new()) }))
    }

    /// Log one event: `event` is a word (connect, rcpt, queued, delivered…),
    /// `fields` is "key=value …" text.
    pub fn event(&self, event: &str, fields: std::fmt::Arguments<'_>) {
        let (secs, millis) = clock::now();
        let full = {
            let mut b = self.buffer.borrow_mut();
            let _ = writeln!(b, "{} shard={} {event} {fields}", clock::rfc3339(secs, millis), self.shard);
            b.len() > BUFFER_BYTES_MAX
        };
        if full {
            self.flush();
        }
    }

    /// Log and write out at once (with everything buffered before it): for
    /// the lines that must survive a crash of this process, i.e. what we
    /// acknowledged (queued) and what left us (delivered, failed).
    pub fn event_now(&self, event: &str, fields: std::fmt::Arguments<'_>) {
        self.event(event, fields);
        self.flush();
    }

    pub fn flush(&self) {
        let text = std::mem::take(&mut *self.buffer.borrow_mut());
        if !text.is_empty() {
            let mut out = self.out.borrow_mut();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }

    /// Flush on a timer for as long as the shard runs.
    pub async fn flush_periodically(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(FLUSH_EVERY).await;
            self.flush();
        }
    }
}
