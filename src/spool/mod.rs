//! Durable per-shard spool: an append-only segment log with group commit.
//!
//! Where it sits: `connection` calls `store` when a client ends DATA; the
//! 250 goes out only after `store` returns Ok, i.e. after the record is
//! written and fdatasync'd (and, for a new segment file, the directory entry
//! synced). Concurrent `store`s on one shard share one write and one
//! fdatasync (group commit): the first caller becomes the committer and
//! drains everything queued while its sync was in flight.
//!
//! One commit writes at most `batch_bytes_max` bytes (or one larger
//! message); what does not fit waits for the next commit.
//!
//! `delivery` calls `mark_done` as recipients finish; that appends a done
//! marker (synced with the next batch, not awaited: losing it only means a
//! duplicate after a crash; `sync_pending` awaits it at shutdown). A segment
//! file is deleted when none of its messages is owed any more and every
//! segment it holds markers for is gone (`segments.rs`).
//!
//! A message owed for long would pin its whole segment: `compact.rs` copies
//! such messages to the current segment through this same group commit, so
//! the old segment can go. `location` says where a message's bytes are now.

mod batch;
pub mod body;
mod budget;
mod compact;
pub mod failed;
pub mod record;
pub mod recovery;
mod segments;
#[cfg(test)]
mod tests;
mod unlink;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures_channel::oneshot;
use glommio::io::{BufferedFile, Directory};
use hashbrown::HashMap;

use crate::limits;
use crate::message::{Envelope, QueueId};
use crate::smtp::StoreError;
use batch::{Batch, Batches, MoveTarget, QueuedMessage};
pub use body::{read_body, BodyLocation};
pub use budget::SpoolBytes;
pub use compact::{CompactionPolicy, CompactionReport};
use recovery::{segment_name, shard_dir, RecoveredShard};
use segments::{SegmentId, SegmentTable};
use unlink::Unlinks;

/// A message the spool still owes to some recipients.
struct Live {
    segment: SegmentId,
    remaining: Vec<u32>,
    /// Where its message bytes are now; `body.len` is also what it holds
    /// of `SpoolBytes`, released when finished.
    body: BodyLocation,
    /// Its whole record in `segment` (what compaction copies).
    record_at: u64,
    record_len: u64,
    /// Unix time its record was written there (accepted, moved, or this
    /// start for recovered mail): compaction's measure of "owed for long".
    written_secs: u64,
    /// Set while a compaction copy is queued and not yet durable.
    moving: Option<MoveTarget>,
}

/// How one shard's spool is bounded and laid out.
#[derive(Clone, Copy, Debug)]
pub struct SpoolSettings {
    /// Messages this shard's spool may owe before new mail gets 452 4.3.1.
    pub messages_max: usize,
    /// Undelivered message bytes on disk, all shards together, before new
    /// mail gets 452 4.3.1; 0 = no bound but the disk (`spool_bytes_max`).
    pub bytes_max: u64,
    /// A segment file is rotated before a write would take it past this.
    /// A setting, not only the constant, so tests can rotate with small messages.
    pub segment_bytes_max: u64,
    /// Bytes one group commit writes at most (a single larger message goes alone).
    pub batch_bytes_max: usize,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            messages_max: limits::DELIVERY_QUEUE_MESSAGES_MAX,
            bytes_max: limits::SPOOL_BYTES_MAX,
            segment_bytes_max: limits::SPOOL_SEGMENT_BYTES_MAX,
            batch_bytes_max: limits::SPOOL_BATCH_BYTES_MAX,
        }
    }
}

/// The segment file new records go to.
struct CurrentSegment {
    file: Rc<BufferedFile>,
    path: Arc<PathBuf>,
    len: u64,
}

struct State {
    segments: SegmentTable,
    current: CurrentSegment,
    next_seq: u64,
    batches: Batches,
    /// Messages in batches not yet durable (queued or being written).
    messages_queued: usize,
    committing: bool,
    live: HashMap<QueueId, Live>,
    /// The last write failed (disk full?): start a new segment, so the old
    /// one can be deleted, and its space freed, once its messages are delivered.
    rotate_next: bool,
}

pub struct Spool {
    shard: usize,
    dir: PathBuf,
    settings: SpoolSettings,
    /// Shared with every other shard's spool (`settings.bytes_max` is global).
    bytes: SpoolBytes,
    id_seed: u64,
    id_counter: Cell<u64>,
    /// fdatasync calls made (group commit makes this far lower than messages).
    syncs: Cell<u64>,
    /// Most bytes one commit wrote (`batch_bytes_max` holds it down).
    largest_write_bytes: Cell<u64>,
    unlinks: Rc<Unlinks>,
    /// The task queue the committer runs in (`commit_in`); None = the caller's.
    commit_queue: Cell<Option<glommio::TaskQueueHandle>>,
    /// Compaction's run state (one pass at a time; stopped at shutdown).
    compaction: compact::Chore,
    state: RefCell<State>,
}

impl Spool {
    /// Open shard `shard`'s spool, taking over what recovery found for it.
    /// `bytes` is shared by all shards and already counts every shard's
    /// recovered messages (`SpoolBytes::new`); finishing them releases it.
    pub async fn open(
        spool_dir: &Path,
        shard: usize,
        recovered: &RecoveredShard,
        settings: SpoolSettings,
        bytes: SpoolBytes,
    ) -> std::io::Result<Rc<Spool>> {
        let dir = shard_dir(spool_dir, shard);
        std::fs::create_dir_all(&dir)?;
        // The shard directory itself must survive a crash once we ack into it.
        Directory::open(spool_dir).await?.sync().await?;
        let mut segments = adopt_segments(recovered);
        let mut live = HashMap::new();
        let opened_secs = now_micros() / 1_000_000;
        for m in &recovered.messages {
            let segment = m.segment as SegmentId;
            segments.message_stored(segment);
            live.insert(
                m.queue_id.clone(),
                Live {
                    segment,
                    remaining: m.remaining.clone(),
                    body: m.body.clone(),
                    record_at: m.record_offset,
                    record_len: m.record_len,
                    written_secs: opened_secs,
                    moving: None,
                },
            );
        }
        let next_seq = recovered
            .segments
            .iter()
            .filter(|s| s.path.parent() == Some(dir.as_path()))
            .filter_map(|s| recovery::segment_seq(s.path.file_name()?.to_str()?))
            .max()
            .map_or(1, |s| s + 1);
        let (file, path) = create_segment(&dir, next_seq).await?;
        let path = Arc::new(path);
        let current = segments.insert(path.clone());
        segments.make_current(current);
        let garbage = segments.collect_all();
        let state = State {
            segments,
            current: CurrentSegment { file: Rc::new(file), path, len: 0 },
            next_seq: next_seq + 1,
            batches: Batches::default(),
            messages_queued: 0,
            committing: false,
            live,
            rotate_next: false,
        };
        let spool = Rc::new(Spool {
            shard,
            dir,
            settings,
            bytes,
            id_seed: now_micros(),
            id_counter: Cell::new(0),
            syncs: Cell::new(0),
            largest_write_bytes: Cell::new(0),
            unlinks: Rc::default(),
            commit_queue: Cell::new(None),
            compaction: compact::Chore::default(),
            state: RefCell::new(state),
        });
        spool.unlinks.remove(garbage);
        Ok(spool)
    }

    /// A new queue id: shard in the first two hex digits (so anyone can tell
    /// which spool holds it), then a per-start seed plus a counter.
    pub fn next_queue_id(&self) -> QueueId {
        let n = self.id_counter.get();
        self.id_counter.set(n + 1);
        QueueId(format!("{:02X}{:014X}", self.shard, self.id_seed.wrapping_add(n) & 0xFF_FFFF_FFFF_FFFF))
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Messages this spool still owes to someone.
    pub fn live_messages(&self) -> usize {
        self.state.borrow().live.len()
    }

    /// Where the message bytes of `queue_id` are now; None once it is
    /// finished (or was never here). Compaction moves messages, so ask
    /// again for every attempt rather than keeping the answer, and read it
    /// with `read_message` (which follows a move made during the read).
    pub fn location(&self, queue_id: &QueueId) -> Option<BodyLocation> {
        self.state.borrow().live.get(queue_id).map(|l| l.body.clone())
    }

    /// Write a message durably. Returns once it is on stable storage, with
    /// the place of the message bytes in the spool.
    pub async fn store(self: &Rc<Self>, queue_id: &QueueId, envelope: &Envelope, accepted_secs: u64, data: &[u8]) -> Result<BodyLocation, StoreError> {
        let rx = {
            let mut st = self.state.borrow_mut();
            let bytes = data.len() as u64;
            if st.live.len() + st.messages_queued >= self.settings.messages_max || !self.bytes.try_reserve(bytes, self.settings.bytes_max) {
                return Err(StoreError::QueueFull);
            }
            st.messages_queued += 1;
            let (batch, record_at, (body_at, record_len)) = st.batches.append(self.settings.batch_bytes_max, |out| {
                let start = out.len();
                let body_at = record::encode_message(out, queue_id, envelope, accepted_secs, data);
                (body_at, (out.len() - start) as u64)
            });
            let (done, rx) = oneshot::channel();
            let recipients = envelope.recipients.len() as u32;
            let queued = QueuedMessage { queue_id: queue_id.clone(), recipients, record_at, record_len, body_at: record_at + body_at, body_len: bytes, accepted_secs, done };
            batch.messages.push(queued);
            rx
        };
        self.kick();
        rx.await.unwrap_or(Err(StoreError::Io("spool committer stopped".into())))
    }

    /// Recipients `indices` of `queue_id` are finished (delivered, or kept in
    /// the failed area). Returns true when the whole message is finished.
    pub fn mark_done(self: &Rc<Self>, queue_id: &QueueId, indices: &[u32]) -> bool {
        let (finished, garbage) = {
            let mut st = self.state.borrow_mut();
            let Some(live) = st.live.get_mut(queue_id) else { return false };
            live.remaining.retain(|r| !indices.contains(r));
            let (segment, bytes, finished) = (live.segment, live.body.len, live.remaining.is_empty());
            let moving = live.moving.clone();
            let (batch, _, ()) = st.batches.append(self.settings.batch_bytes_max, |out| record::encode_done(out, queue_id, indices));
            // During a move the marker lands after the copy: it must also
            // outlive the copy's segment (known once the copy is durable).
            batch.marker_move_targets.extend(moving);
            // Every marker, partial ones too, ties its segment to the message's:
            // a partial marker lost with its segment re-delivers the recipients
            // it finished. Markers only ever point back in time (a message is
            // stored before it is marked), so these ties never form a cycle. The
            // cost: a marker segment stays until the message's segment is gone
            // (at most one extra segment per marker of a message still owed).
            // Re-appending the done state when collecting would free it sooner,
            // but every delete would then wait for a sync of the copy first.
            batch.marker_targets.push(segment);
            let mut garbage = Vec::new();
            if finished {
                st.live.remove(queue_id);
                self.bytes.release(bytes);
                // Deleting the message's segment before its marker is durable
                // is safe: nothing in it is owed any more.
                garbage = st.segments.message_finished(segment);
            }
            (finished, garbage)
        };
        self.unlinks.remove(garbage);
        self.kick();
        finished
    }

    /// Returns once everything queued before the call (messages and done
    /// markers) is written and fdatasync'd, and every collected segment is
    /// unlinked: for shutdown, so nothing is left in memory or half done.
    /// Err if that write failed.
    pub async fn sync_pending(self: &Rc<Self>) -> Result<(), StoreError> {
        let committed = self.commit_queued().await;
        self.unlinks.idle().await;
        committed
    }

    async fn commit_queued(self: &Rc<Self>) -> Result<(), StoreError> {
        let rx = {
            let mut st = self.state.borrow_mut();
            if st.batches.is_empty() && !st.committing {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            st.batches.newest().flushes.push(tx);
            rx
        };
        self.kick();
        rx.await.unwrap_or(Err(StoreError::Io("spool committer stopped".into())))
    }

    /// Start the committer unless one is running.
    fn kick(self: &Rc<Self>) {
        let mut st = self.state.borrow_mut();
        if !st.committing {
            st.committing = true;
            drop(st);
            let commit = self.clone().commit_loop();
            match self.commit_queue.get() {
                Some(queue) => drop(glommio::spawn_local_into(commit, queue).expect("the spool queue exists").detach()),
                None => drop(glommio::spawn_local(commit).detach()),
            }
        }
    }

    /// Run the group committer in `queue` from now on, so its share of the
    /// CPU does not depend on who stored last (a session or delivery).
    pub fn commit_in(&self, queue: glommio::TaskQueueHandle) {
        self.commit_queue.set(Some(queue));
    }

    /// Write and sync batches, oldest first, until none is waiting.
    async fn commit_loop(self: Rc<Self>) {
        loop {
            let Some(mut batch) = self.state.borrow_mut().batches.take_oldest() else {
                self.state.borrow_mut().committing = false;
                return;
            };
            let bytes = std::mem::take(&mut batch.bytes);
            // An empty batch only carries `sync_pending` waiters: everything
            // before it is durable once the batches before it are.
            let result = if bytes.is_empty() { Ok(None) } else { self.write_batch(bytes).await.map(Some) };
            self.settle(batch, result);
        }
    }

    /// After a batch's write: register its messages and markers and answer
    /// its waiters, or give the room back and pass the error on.
    fn settle(&self, batch: Batch, result: Result<Option<(Arc<PathBuf>, u64)>, StoreError>) {
        let mut st = self.state.borrow_mut();
        st.messages_queued -= batch.messages.len();
        let written = match result {
            Ok(written) => written,
            Err(e) => {
                st.rotate_next = true;
                // Never acknowledged: give their room back.
                self.bytes.release(batch.messages.iter().map(|m| m.body_len).sum::<u64>());
                // Moves that failed leave their messages where they were.
                compact::abandon_moves(&mut st, batch.moves, &e);
                drop(st);
                batch.messages.into_iter().for_each(|m| drop(m.done.send(Err(e.clone()))));
                batch.flushes.into_iter().for_each(|f| drop(f.send(Err(e.clone()))));
                return;
            }
        };
        let current = st.segments.current();
        debug_assert!(written.is_some() || (batch.messages.is_empty() && batch.moves.is_empty()), "records in a batch that wrote nothing");
        // Moves first: a marker in this batch for a moved message is tied
        // to the copy's segment, which the move settles.
        let mut garbage = Vec::new();
        if let Some((path, at)) = &written {
            garbage = compact::settle_moves(&mut st, batch.moves, current, path, *at);
        }
        for t in batch.marker_targets {
            st.segments.depend(current, t);
        }
        for t in batch.marker_move_targets.iter().filter_map(|t| t.get()) {
            st.segments.depend(current, t);
        }
        let mut answers = Vec::with_capacity(batch.messages.len());
        if let Some((segment, at)) = written {
            for m in batch.messages {
                st.segments.message_stored(current);
                let location = BodyLocation { segment: segment.clone(), offset: at + m.body_at as u64, len: m.body_len };
                let live = Live {
                    segment: current,
                    remaining: (0..m.recipients).collect(),
                    body: location.clone(),
                    record_at: at + m.record_at as u64,
                    record_len: m.record_len,
                    written_secs: m.accepted_secs,
                    moving: None,
                };
                st.live.insert(m.queue_id, live);
                answers.push((m.done, location));
            }
        }
        drop(st);
        self.unlinks.remove(garbage);
        answers.into_iter().for_each(|(done, location)| drop(done.send(Ok(location))));
        batch.flushes.into_iter().for_each(|f| drop(f.send(Ok(()))));
    }

    /// One write and one fdatasync; rotates the segment first when it is
    /// full. Returns the segment written and the offset the bytes start at.
    async fn write_batch(&self, bytes: Vec<u8>) -> Result<(Arc<PathBuf>, u64), StoreError> {
        let (len, rotate) = {
            let st = self.state.borrow();
            (st.current.len, st.rotate_next)
        };
        if len > 0 && (rotate || len + bytes.len() as u64 > self.settings.segment_bytes_max) {
            self.rotate().await?;
        }
        let (file, path, at) = {
            let st = self.state.borrow();
            (st.current.file.clone(), st.current.path.clone(), st.current.len)
        };
        let n = bytes.len();
        // A failed write leaves the length unchanged and rotates before the
        // next batch; recovery stops at the torn tail.
        let written = file.write_at(bytes, at).await.map_err(store_error)?;
        if written != n {
            return Err(StoreError::Io(format!("short write {written}/{n}")));
        }
        file.fdatasync().await.map_err(store_error)?;
        self.syncs.set(self.syncs.get() + 1);
        self.largest_write_bytes.set(self.largest_write_bytes.get().max(n as u64));
        self.state.borrow_mut().current.len = at + n as u64;
        Ok((path, at))
    }

    /// Start a new segment file; the old one is collected when nothing needs it.
    async fn rotate(&self) -> Result<(), StoreError> {
        let seq = self.state.borrow().next_seq;
        let (file, path) = create_segment(&self.dir, seq).await.map_err(store_error)?;
        let path = Arc::new(path);
        let (old, garbage) = {
            let mut st = self.state.borrow_mut();
            let (sealed, sealed_bytes) = (st.segments.current(), st.current.len);
            st.segments.seal(sealed, sealed_bytes);
            let id = st.segments.insert(path.clone());
            let garbage = st.segments.make_current(id);
            st.next_seq += 1;
            st.rotate_next = false;
            let old = std::mem::replace(&mut st.current, CurrentSegment { file: Rc::new(file), path, len: 0 });
            (old.file, garbage)
        };
        self.unlinks.remove(garbage);
        if let Ok(old) = Rc::try_unwrap(old) {
            let _ = old.close().await;
        }
        Ok(())
    }

    pub fn syncs(&self) -> u64 {
        self.syncs.get()
    }

    /// Most bytes a single commit has written.
    pub fn largest_write_bytes(&self) -> u64 {
        self.largest_write_bytes.get()
    }

    /// Bytes of the segment files on disk (sealed ones and the current one):
    /// what the spool takes of the disk, copies and finished mail included.
    pub fn disk_bytes(&self) -> u64 {
        let st = self.state.borrow();
        st.segments.sealed().iter().map(|s| s.bytes).sum::<u64>() + st.current.len
    }

    /// Segment files tracked in memory, i.e. on disk or being unlinked
    /// (deleted ones are forgotten; for tests and `status`).
    pub fn segments_on_disk(&self) -> usize {
        self.state.borrow().segments.len()
    }
}

/// The segment table as recovery left it: recovered segment i gets
/// SegmentId i, with the ties of the markers it holds.
fn adopt_segments(recovered: &RecoveredShard) -> SegmentTable {
    let mut segments = SegmentTable::new();
    for s in &recovered.segments {
        segments.insert(s.path.clone());
    }
    for (i, s) in recovered.segments.iter().enumerate() {
        segments.seal(i as SegmentId, s.bytes);
        for &t in &s.marker_targets {
            segments.depend(i as SegmentId, t as SegmentId);
        }
    }
    segments
}

async fn create_segment(dir: &Path, seq: u64) -> std::io::Result<(BufferedFile, PathBuf)> {
    let path = dir.join(segment_name(seq));
    let file = BufferedFile::create(&path).await?;
    // RFC-free but essential: the new file's directory entry must be durable
    // before any record in it is acknowledged.
    Directory::open(dir).await?.sync().await?;
    Ok((file, path))
}

fn store_error(e: impl std::fmt::Display) -> StoreError {
    let text = e.to_string();
    if text.contains("No space left") || text.contains("os error 28") {
        StoreError::DiskFull
    } else {
        StoreError::Io(text)
    }
}

pub fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
