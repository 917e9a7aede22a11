//! The mail log: one line per event, greppable by connection, queue and
//! delivery id (`conn=C… qid=… dlv=D…`).
//!
//! Each shard buffers its own lines and hands them in batches (on a short
//! timer, when the buffer is large, and at exit) to its own writer thread
//! over a bounded channel, so a slow file or a stalled pipe never blocks a
//! shard's executor. What happens when the writer cannot keep up:
//! - ordinary lines stay in the shard's buffer up to
//!   `limits::MAILLOG_BUFFER_BYTES_MAX`; past it new lines are dropped,
//!   counted, and a `maillog-dropped lines=N` line reports them as soon as
//!   the writer takes batches again (never silently);
//! - the audit trail (queued, delivered, failed) is written *before* we act
//!   on it (`event_now`, `sync`): the shard awaits the writer's word that
//!   the batch is written, at most `limits::MAILLOG_AUDIT_WAIT_MS`; past
//!   that it goes on (the line stays queued and is written when the writer
//!   recovers) and counts a `late` audit write, reported like drops.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender, TrySendError};
use futures_channel::oneshot;

use crate::clock;
use crate::limits;

const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Text for the writer thread, and who waits for it to be written.
struct Batch {
    text: String,
    written: Option<oneshot::Sender<()>>,
}

pub struct MailLog {
    shard: usize,
    writer: Sender<Batch>,
    buffer: RefCell<String>,
    /// Lines dropped because the buffer was full (reported, then reset).
    dropped: Cell<u64>,
    /// Audit writes that outwaited `MAILLOG_AUDIT_WAIT_MS` (reported, then reset).
    late: Cell<u64>,
}

impl MailLog {
    /// `target` is "-" for stderr or a file path (appended to). Starts the
    /// shard's writer thread; it ends when the `MailLog` is dropped.
    pub fn open(target: &str, shard: usize) -> std::io::Result<Rc<MailLog>> {
        let mut out: Box<dyn Write + Send> = if target == "-" {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(target)?)
        };
        let (writer, batches) = bounded::<Batch>(limits::MAILLOG_BATCHES_QUEUED_MAX);
        std::thread::Builder::new().name(format!("maillog-{shard}")).spawn(move || {
            for batch in batches {
                let _ = out.write_all(batch.text.as_bytes());
                let _ = out.flush();
                if let Some(done) = batch.written {
                    let _ = done.send(());
                }
            }
        })?;
        Ok(Rc::new(MailLog { shard, writer, buffer: RefCell::new(String::new()), dropped: Cell::new(0), late: Cell::new(0) }))
    }

    /// Log one event: `event` is a word (connect, rcpt, queued, delivered…),
    /// `fields` is "key=value …" text.
    pub fn event(&self, event: &str, fields: std::fmt::Arguments<'_>) {
        let (secs, millis) = clock::now();
        let full = {
            let mut b = self.buffer.borrow_mut();
            if b.len() >= limits::MAILLOG_BUFFER_BYTES_MAX {
                self.dropped.set(self.dropped.get() + 1);
                return;
            }
            let _ = writeln!(b, "{} shard={} {event} {fields}", clock::rfc3339(secs, millis), self.shard);
            b.len() > limits::MAILLOG_BATCH_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Log and write out before returning (with everything buffered before
    /// it): for the lines that must survive a crash of this process, i.e.
    /// what we acknowledged (queued) and what left us (delivered, failed).
    pub async fn event_now(&self, event: &str, fields: std::fmt::Arguments<'_>) {
        self.event(event, fields);
        self.sync().await;
    }

    /// Hand everything buffered to the writer and wait until it is written,
    /// at most `MAILLOG_AUDIT_WAIT_MS`.
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if !self.hand_over(Some(tx)) {
            self.late.set(self.late.get() + 1);
            return;
        }
        let wait = Duration::from_millis(limits::MAILLOG_AUDIT_WAIT_MS);
        let written = async { rx.await.is_ok() };
        let timer = async {
            glommio::timer::sleep(wait).await;
            false
        };
        if !futures_lite::future::or(written, timer).await {
            self.late.set(self.late.get() + 1);
        }
    }

    /// Hand what is buffered to the writer without waiting.
    pub fn flush(&self) {
        self.hand_over(None);
    }

    /// Try to queue the buffer (plus any report of trouble) for the writer.
    /// On a full queue the text stays buffered; returns whether it was queued.
    fn hand_over(&self, written: Option<oneshot::Sender<()>>) -> bool {
        let mut text = std::mem::take(&mut *self.buffer.borrow_mut());
        let (dropped, late) = (self.dropped.get(), self.late.get());
        if dropped > 0 || late > 0 {
            let (secs, millis) = clock::now();
            let _ = writeln!(text, "{} shard={} maillog-dropped lines={dropped} late_audit_writes={late}", clock::rfc3339(secs, millis), self.shard);
        }
        if text.is_empty() && written.is_none() {
            return true;
        }
        match self.writer.try_send(Batch { text, written }) {
            Ok(()) => {
                self.dropped.set(0);
                self.late.set(0);
                true
            }
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                // Keep the lines for the next try; the report line is rebuilt then.
                let mut text = batch.text;
                if dropped > 0 || late > 0 {
                    let report = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
                    text.truncate(report);
                }
                let mut buffer = self.buffer.borrow_mut();
                text.push_str(&buffer);
                *buffer = text;
                false
            }
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
