//! Spool compaction: copy messages still owed out of old, mostly finished
//! segments into the current one, so those segments can be deleted.
//!
//! Where it sits: a chore of each shard's `Spool` (`start_compaction`),
//! beside the group committer. Without it one message deferred for days
//! pins its whole segment (64 MiB by default), and a backlog pins every
//! segment it is spread over.
//!
//! A move copies the message's record as it is on disk (same queue id,
//! envelope, accepted time, bytes; the CRC is checked on the way), followed
//! in the same write by a done marker for the recipients already finished,
//! through the normal group commit. Recipient indices never change, so the
//! markers delivery writes later apply to either copy. Only once that write
//! is durable does the message point at its new place and stop pinning the
//! old segment (`segments.message_finished`). So, whenever a crash comes:
//! - before the copy is durable: the copy is absent, torn, or whole with
//!   its marker torn off; the old record and its markers are all still on
//!   disk, and recovery keeps what they finished (`Recovery::message`);
//! - after, before the old segment is unlinked: recovery reads both copies,
//!   the newer one's place wins, and markers count for the queue id
//!   wherever they are: the same remaining recipients;
//! - after the unlink: only the copy is left, and its marker says what the
//!   old markers said (they may be deleted with the old segment now).
//!
//! Nothing is delivered twice that today's rules would not repeat: a
//! recipient finished while its marker was not yet durable (as without
//! compaction), and a resurrected segment (an unlink the crash undid, see
//! `unlink.rs`) whose later copy and markers are all gone.
//!
//! Why a timer chore and not the committer at rotation: the committer is on
//! the path of every 250, and reading bodies there would delay them; and
//! mail becomes "deferred for long" with time, not with new traffic.
//!
//! The moved message is counted once in `SpoolBytes`: a move reserves
//! nothing, as the bound is on undelivered bytes, not on copies; the disk
//! holds both copies for a moment, at most `in_flight_bytes_max` more.

use std::cell::Cell;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::oneshot;
use glommio::io::BufferedFile;
use hashbrown::HashMap;

use super::batch::{MoveTarget, QueuedMove};
use super::body::{read_exact_at, BodyLocation};
use super::record::{self, Record, RecordReader};
use super::segments::{SealedSegment, SegmentId};
use super::{Spool, State};
use crate::limits;
use crate::message::QueueId;
use crate::smtp::StoreError;

#[cfg(test)]
mod tests;

/// When a sealed segment is worth compacting, and how much one pass moves.
#[derive(Clone, Copy, Debug)]
pub struct CompactionPolicy {
    /// Time between passes of the chore.
    pub every: Duration,
    /// Compact a segment whose owed records fill less than this percentage of it.
    pub live_percent: u64,
    /// Or whose owed records were all written there at least this long ago…
    pub old_secs: u64,
    /// …and fill less than this percentage of it, or keep other segments
    /// alive with the done markers those hold for them.
    pub old_live_percent: u64,
    /// Record bytes one pass copies at most (at least one message).
    pub pass_bytes_max: u64,
    /// Copies queued before the pass awaits their commit.
    pub in_flight_bytes_max: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            every: Duration::from_secs(limits::SPOOL_COMPACT_INTERVAL_SECS),
            live_percent: limits::SPOOL_COMPACT_LIVE_PERCENT,
            old_secs: limits::SPOOL_COMPACT_OLD_SECS,
            old_live_percent: limits::SPOOL_COMPACT_OLD_LIVE_PERCENT,
            pass_bytes_max: limits::SPOOL_COMPACT_PASS_BYTES_MAX,
            in_flight_bytes_max: limits::SPOOL_COMPACT_IN_FLIGHT_BYTES_MAX,
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments chosen (some may stay if the pass ran out of bytes).
    pub segments: usize,
    /// Messages now at their new place, and the record bytes copied.
    pub moved: usize,
    pub moved_bytes: u64,
    /// Messages finished (or moved) while the pass was busy with them.
    pub skipped: usize,
    /// Reads or writes that failed; those messages stay where they were.
    pub failed: usize,
    /// What went wrong last, for the log.
    pub last_error: Option<String>,
}

/// Compaction's run state in the spool.
#[derive(Default)]
pub struct Chore {
    running: Cell<bool>,
    stopped: Cell<bool>,
}

/// A message a pass means to move, as it was when the pass chose it.
struct Move {
    queue_id: QueueId,
    segment: SegmentId,
    path: Arc<PathBuf>,
    record_at: u64,
    record_len: u64,
    body_offset: u64,
    body_len: u64,
}

impl Spool {
    /// Run a compaction pass every `policy.every` until the spool is dropped
    /// or `stop_compaction` is called, and hand each pass's report to
    /// `after_pass` (the shard's log and metrics). Runs in the spool's task
    /// queue: call it after `commit_in`.
    pub fn start_compaction(self: &Rc<Self>, policy: CompactionPolicy, after_pass: impl Fn(&CompactionReport) + 'static) {
        let spool = Rc::downgrade(self);
        let chore = async move {
            loop {
                glommio::timer::sleep(policy.every).await;
                let Some(spool) = spool.upgrade() else { return };
                if spool.compaction.stopped.get() {
                    return;
                }
                let report = spool.compact(&policy, super::now_micros() / 1_000_000).await;
                after_pass(&report);
            }
        };
        match self.commit_queue.get() {
            Some(queue) => drop(glommio::spawn_local_into(chore, queue).expect("the spool queue exists").detach()),
            None => drop(glommio::spawn_local(chore).detach()),
        }
    }

    /// No move starts from now on (shutdown). A move already queued is in
    /// a batch: `sync_pending` makes it durable or fails it; either way the
    /// message is in exactly one place that recovery finds.
    pub fn stop_compaction(&self) {
        self.compaction.stopped.set(true);
    }

    /// One pass at `now_secs` (Unix time): choose segments, copy their owed
    /// messages to the current segment, return once the copies are durable
    /// (or failed). A second pass while one runs does nothing.
    pub async fn compact(self: &Rc<Self>, policy: &CompactionPolicy, now_secs: u64) -> CompactionReport {
        let mut report = CompactionReport::default();
        if self.compaction.stopped.get() || self.compaction.running.replace(true) {
            return report;
        }
        let moves = {
            let st = self.state.borrow();
            let (segments, moves) = plan(&st, policy, now_secs);
            report.segments = segments;
            moves
        };
        let mut waiting = Vec::new();
        let mut in_flight = 0;
        let mut segment = OpenSegment::default();
        for m in moves {
            if self.compaction.stopped.get() {
                break;
            }
            let read = segment.read_record(&m).await;
            // Checked again after the await: stopped means no new move.
            if self.compaction.stopped.get() {
                break;
            }
            match read.map(|(bytes, recipients)| self.queue_move(&m, bytes, recipients, now_secs)) {
                Ok(Some(rx)) => {
                    in_flight += m.record_len;
                    waiting.push((rx, m.record_len));
                }
                Ok(None) => report.skipped += 1,
                Err(e) if self.still_at(&m) => {
                    report.failed += 1;
                    report.last_error = Some(format!("reading {} in {}: {e}", m.queue_id, m.path.display()));
                }
                Err(_) => report.skipped += 1,
            }
            if in_flight >= policy.in_flight_bytes_max {
                self.kick();
                await_moves(std::mem::take(&mut waiting), &mut report).await;
                in_flight = 0;
            }
        }
        segment.close().await;
        if !waiting.is_empty() {
            self.kick();
            await_moves(waiting, &mut report).await;
        }
        self.compaction.running.set(false);
        report
    }

    /// The bytes of `queue_id`'s message, from wherever it is now: a move
    /// that deletes the old segment between asking and reading is followed.
    pub async fn read_message(&self, queue_id: &QueueId) -> io::Result<Vec<u8>> {
        let mut location = self.location(queue_id).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "message not owed"))?;
        loop {
            match super::read_body(&location).await {
                Err(e) if e.kind() == io::ErrorKind::NotFound => match self.location(queue_id) {
                    Some(now) if now != location => location = now,
                    _ => return Err(e),
                },
                read => return read,
            }
        }
    }

    /// Queue the copy of `m` (its record `bytes`, for `recipients`
    /// recipients) unless it was finished or moved since the pass chose it.
    fn queue_move(&self, m: &Move, bytes: Vec<u8>, recipients: u32, now_secs: u64) -> Option<oneshot::Receiver<Result<bool, StoreError>>> {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let live = st.live.get_mut(&m.queue_id)?;
        if live.segment != m.segment || live.record_at != m.record_at || live.moving.is_some() {
            return None;
        }
        let finished: Vec<u32> = (0..recipients).filter(|r| !live.remaining.contains(r)).collect();
        let target = MoveTarget::default();
        live.moving = Some(target.clone());
        let (batch, record_at, ()) = st.batches.append(self.settings.batch_bytes_max, |out| {
            out.extend_from_slice(&bytes);
            // The copy's record lists every recipient: this marker, in the
            // same write, finishes the ones already done once the old
            // segment and the markers kept for it are gone.
            if !finished.is_empty() {
                record::encode_done(out, &m.queue_id, &finished);
            }
        });
        let (done, rx) = oneshot::channel();
        batch.moves.push(QueuedMove {
            queue_id: m.queue_id.clone(),
            record_at,
            record_len: m.record_len,
            body_in_record: m.body_offset - m.record_at,
            moved_secs: now_secs,
            target,
            done,
        });
        Some(rx)
    }

    /// The message is still owed, where the pass found it (a failed read
    /// of a message finished meanwhile is no failure).
    fn still_at(&self, m: &Move) -> bool {
        self.state.borrow().live.get(&m.queue_id).is_some_and(|l| l.segment == m.segment && l.record_at == m.record_at)
    }
}

/// Choose the segments worth compacting, least owed first, and their
/// messages in file order, up to `pass_bytes_max` record bytes. A segment
/// that also holds markers for an older segment still on disk goes only
/// after that one; its messages are moved all the same (each message is
/// copied once either way, and the older segment is usually being
/// compacted in the same pass).
fn plan(st: &State, policy: &CompactionPolicy, now_secs: u64) -> (usize, Vec<Move>) {
    struct Owed<'a> {
        bytes: u64,
        newest_secs: u64,
        busy: bool,
        messages: Vec<(&'a QueueId, &'a super::Live)>,
    }
    let mut owed: HashMap<SegmentId, Owed> = HashMap::new();
    for (id, live) in &st.live {
        let o = owed.entry(live.segment).or_insert_with(|| Owed { bytes: 0, newest_secs: 0, busy: false, messages: Vec::new() });
        o.bytes += live.record_len;
        o.newest_secs = o.newest_secs.max(live.written_secs);
        o.busy |= live.moving.is_some();
        o.messages.push((id, live));
    }
    let mut chosen: Vec<(u64, &mut Owed)> = Vec::new();
    let sealed: HashMap<SegmentId, SealedSegment> = st.segments.sealed().into_iter().map(|s| (s.id, s)).collect();
    let mut owed_by_segment: Vec<_> = owed.iter_mut().collect();
    owed_by_segment.sort_by_key(|(id, _)| **id);
    for (id, o) in owed_by_segment {
        let Some(segment) = sealed.get(id) else { continue };
        if o.busy || segment.bytes == 0 {
            continue;
        }
        let percent_x100 = o.bytes.saturating_mul(10_000) / segment.bytes;
        let sparse = percent_x100 < policy.live_percent * 100;
        // An old segment that keeps marker segments alive is moved whatever
        // its share: else each partial marker of its messages could pin a
        // segment of its own for as long as they are owed.
        let old = now_secs >= o.newest_secs.saturating_add(policy.old_secs) && (percent_x100 < policy.old_live_percent * 100 || segment.keeps_markers);
        if sparse || old {
            chosen.push((percent_x100, o));
        }
    }
    chosen.sort_by_key(|(percent, _)| *percent);
    let segments = chosen.len();
    let mut moves = Vec::new();
    let mut bytes = 0;
    'segments: for (_, o) in chosen {
        o.messages.sort_by_key(|(_, l)| l.record_at);
        for (id, l) in &o.messages {
            if !moves.is_empty() && bytes + l.record_len > policy.pass_bytes_max {
                break 'segments;
            }
            bytes += l.record_len;
            let (path, body_offset, body_len) = (l.body.segment.clone(), l.body.offset, l.body.len);
            moves.push(Move { queue_id: (*id).clone(), segment: l.segment, path, record_at: l.record_at, record_len: l.record_len, body_offset, body_len });
        }
    }
    (segments, moves)
}

/// The segment file a pass reads from, open while its messages are read
/// one after another (a pass takes them segment by segment).
#[derive(Default)]
struct OpenSegment {
    open: Option<(Arc<PathBuf>, BufferedFile)>,
}

impl OpenSegment {
    /// The record of `m` read back and checked (CRC, queue id, where the
    /// body is): the bytes to copy and the number of recipients.
    async fn read_record(&mut self, m: &Move) -> io::Result<(Vec<u8>, u32)> {
        if self.open.as_ref().is_none_or(|(path, _)| path != &m.path) {
            self.close().await;
            self.open = Some((m.path.clone(), BufferedFile::open(m.path.as_path()).await?));
        }
        let (_, file) = self.open.as_ref().expect("just opened");
        let bytes = read_exact_at(file, m.record_at, m.record_len).await?;
        check_record(m, bytes)
    }

    async fn close(&mut self) {
        if let Some((_, file)) = self.open.take() {
            let _ = file.close().await;
        }
    }
}

/// `bytes` are the intact message record of `m`, where the spool says.
fn check_record(m: &Move, bytes: Vec<u8>) -> io::Result<(Vec<u8>, u32)> {
    let mismatch = || io::Error::new(io::ErrorKind::InvalidData, format!("the record of {} is not where the spool says", m.queue_id));
    let mut reader = RecordReader::new(&bytes[..]);
    let Some(Record::Message { queue_id, envelope, body_offset, body_len, .. }) = reader.next_record()? else { return Err(mismatch()) };
    if queue_id != m.queue_id || body_offset != m.body_offset - m.record_at || body_len != m.body_len || reader.intact_bytes() != m.record_len {
        return Err(mismatch());
    }
    Ok((bytes, envelope.recipients.len() as u32))
}

async fn await_moves(waiting: Vec<(oneshot::Receiver<Result<bool, StoreError>>, u64)>, report: &mut CompactionReport) {
    for (rx, bytes) in waiting {
        match rx.await {
            Ok(Ok(true)) => {
                report.moved += 1;
                report.moved_bytes += bytes;
            }
            Ok(Ok(false)) => report.skipped += 1,
            Ok(Err(e)) => {
                report.failed += 1;
                report.last_error = Some(format!("writing the copy: {e:?}"));
            }
            Err(_) => {
                report.failed += 1;
                report.last_error = Some("the spool committer stopped".into());
            }
        }
    }
}

/// After the batch holding `moves` was written at `at` in segment
/// `current` (file `path`): each message still owed points at its copy and
/// no longer pins its old segment. Returns the files that frees.
pub(super) fn settle_moves(st: &mut State, moves: Vec<QueuedMove>, current: SegmentId, path: &Arc<PathBuf>, at: u64) -> Vec<Arc<PathBuf>> {
    let mut garbage = Vec::new();
    for m in moves {
        // Markers queued during the move are tied to the copy's segment.
        m.target.set(Some(current));
        let moved = match st.live.get_mut(&m.queue_id) {
            Some(live) if live.moving.as_ref().is_some_and(|t| Rc::ptr_eq(t, &m.target)) => {
                let old = live.segment;
                let record_at = at + m.record_at as u64;
                live.segment = current;
                live.record_at = record_at;
                live.record_len = m.record_len;
                live.body = BodyLocation { segment: path.clone(), offset: record_at + m.body_in_record, len: live.body.len };
                live.written_secs = m.moved_secs;
                live.moving = None;
                st.segments.message_stored(current);
                garbage.extend(st.segments.message_finished(old));
                true
            }
            // Finished during the move: `mark_done` already let the old
            // segment go; the copy owes nothing (its markers follow it).
            _ => false,
        };
        let _ = m.done.send(Ok(moved));
    }
    garbage
}

/// The batch holding `moves` failed: the messages stay where they were.
pub(super) fn abandon_moves(st: &mut State, moves: Vec<QueuedMove>, error: &StoreError) {
    for m in moves {
        if let Some(live) = st.live.get_mut(&m.queue_id) {
            if live.moving.as_ref().is_some_and(|t| Rc::ptr_eq(t, &m.target)) {
                live.moving = None;
            }
        }
        let _ = m.done.send(Err(error.clone()));
    }
}
