//! Spool recovery at start: read every segment of every shard directory,
//! apply the done markers, and hand each shard the messages still owed.
//!
//! Runs on the main thread before the shards start (plain blocking I/O is
//! right here: nothing else is running yet). Directories are adopted by
//! shard `index % shards`, so a restart with another `--cores` loses nothing.
//!
//! Memory follows what is owed, not what is on disk: records stream through
//! a buffered reader one at a time, a message's bytes are checked as they
//! pass and never kept (a pending message carries its `BodyLocation`), a
//! message is forgotten as soon as its markers finish it, and a marker is
//! applied when it is read, never held.
//!
//! Compaction (`compact.rs`) copies a long-owed message to the current
//! segment: the same record again, followed in the same write by a done
//! marker for the recipients already finished. Until the old segment is
//! unlinked both copies are on disk; the place written last wins (it is
//! read last, see `recover`) and markers apply to the queue id wherever
//! they are, so both copies give the same remaining recipients, indices
//! unchanged (`Recovery::message`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::body::BodyLocation;
use super::record::{Record, RecordReader};
use crate::limits;
use crate::message::{Envelope, QueueId};

/// A message that still has recipients to deliver.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub queue_id: QueueId,
    pub envelope: Envelope,
    /// Unix time of our 250: the queue lifetime counts from it, across restarts.
    pub accepted_secs: u64,
    /// Where the message bytes (Received header + body) are; read them with `read_body`.
    pub body: BodyLocation,
    /// Indices into `envelope.recipients` not yet finished.
    pub remaining: Vec<u32>,
    /// Index into `RecoveredShard::segments` of the segment holding it.
    pub segment: usize,
    /// The whole record (frame included) in that segment: `record_len`
    /// bytes at `record_offset`, which compaction copies as they are.
    pub record_offset: u64,
    pub record_len: u64,
}

/// A segment file found on disk, with what keeps it alive.
#[derive(Debug, Clone)]
pub struct RecoveredSegment {
    pub path: Arc<PathBuf>,
    /// Other segments (indices) whose messages this one holds done markers for.
    pub marker_targets: Vec<usize>,
    /// The file's length (torn tail included): the disk it takes.
    pub bytes: u64,
}

/// What one shard takes over.
#[derive(Debug, Default)]
pub struct RecoveredShard {
    pub segments: Vec<RecoveredSegment>,
    pub messages: Vec<PendingMessage>,
    /// Torn tails found (a crash mid-write; those records were never acknowledged).
    pub torn_tails: usize,
}

impl RecoveredShard {
    /// Bytes of the messages still owed (they count against `spool_bytes_max`).
    pub fn pending_bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.body.len).sum()
    }
}

/// Segment file name for a sequence number; sorts in write order.
pub fn segment_name(seq: u64) -> String {
    format!("seg-{seq:016x}.log")
}

/// The sequence number in a segment file name (inverse of `segment_name`).
pub fn segment_seq(name: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix("seg-")?.strip_suffix(".log")?, 16).ok()
}

/// The per-shard directory name.
pub fn shard_dir(spool: &Path, index: usize) -> PathBuf {
    spool.join(format!("shard-{index}"))
}

/// Recover the spool for `shards` shards: result[i] is what shard i owns.
///
/// One pass, directory by directory, segment by segment in write order.
/// Within a directory a message comes before its markers. A marker may sit
/// in another directory than its message: shard j writes its markers in
/// `shard-j` and adopts only `shard-k` with k % shards == j, so k > j. The
/// directories are read from the highest index down, so every message is
/// seen before any marker for it, and a marker for a message not owed can be
/// dropped at once (finished already, or its segment is gone). Were that
/// order ever broken, the cost is a duplicate delivery, never a loss.
pub fn recover(spool: &Path, shards: usize) -> io::Result<Vec<RecoveredShard>> {
    std::fs::create_dir_all(spool)?;
    let mut dirs: Vec<(usize, PathBuf)> = std::fs::read_dir(spool)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            Some((name.strip_prefix("shard-")?.parse::<usize>().ok()?, e.path()))
        })
        .collect();
    dirs.sort_by(|a, b| b.cmp(a));
    let mut recovery = Recovery { shards: (0..shards).map(|_| RecoveredShard::default()).collect(), ..Recovery::default() };
    for (index, dir) in dirs {
        recovery.read_dir(&dir, index, index % shards)?;
    }
    Ok(recovery.finish())
}

/// A done marker found in segment `segment` of shard `shard`.
struct Marker {
    shard: usize,
    segment: usize,
    recipients: Vec<u32>,
}

/// A message still owed so far, and which shard took it.
struct Owed {
    shard: usize,
    /// Directory index, then the order read: the order the messages were written.
    order: (usize, u64),
    message: PendingMessage,
}

#[derive(Default)]
struct Recovery {
    shards: Vec<RecoveredShard>,
    owed: HashMap<QueueId, Owed>,
    /// The directory being read, and records read so far.
    dir_index: usize,
    seen: u64,
}

impl Recovery {
    fn read_dir(&mut self, dir: &Path, dir_index: usize, shard: usize) -> io::Result<()> {
        self.dir_index = dir_index;
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((segment_seq(&e.file_name().to_string_lossy())?, e.path())))
            .collect();
        files.sort();
        for (_, path) in files {
            self.read_segment(Arc::new(path), shard)?;
        }
        Ok(())
    }

    /// Stream one segment's records, up to the end or its torn tail.
    fn read_segment(&mut self, path: Arc<PathBuf>, shard: usize) -> io::Result<()> {
        let segment = self.shards[shard].segments.len();
        let file = File::open(path.as_path())?;
        let bytes = file.metadata()?.len();
        self.shards[shard].segments.push(RecoveredSegment { path: path.clone(), marker_targets: Vec::new(), bytes });
        let mut records = RecordReader::new(BufReader::with_capacity(limits::SPOOL_READ_CHUNK_BYTES, file));
        let mut record_offset = records.intact_bytes();
        while let Some(record) = records.next_record()? {
            let record_len = records.intact_bytes() - record_offset;
            match record {
                Record::Message { queue_id, envelope, accepted_secs, body_offset, body_len } => {
                    let remaining = (0..envelope.recipients.len() as u32).collect();
                    let body = BodyLocation { segment: path.clone(), offset: body_offset, len: body_len };
                    let message = PendingMessage { queue_id, envelope, accepted_secs, body, remaining, segment, record_offset, record_len };
                    self.message(shard, message);
                }
                Record::Done { queue_id, recipients } => self.marker(queue_id, Marker { shard, segment, recipients }),
            }
            record_offset = records.intact_bytes();
        }
        if records.torn() {
            self.shards[shard].torn_tails += 1;
        }
        Ok(())
    }

    /// A message record. A second record of a queue id already owed is
    /// compaction's copy, and the newer: records are read in the order they
    /// were written (a shard only moves a message from its own or an adopted
    /// directory, whose index is not lower than its own, into its own, and
    /// directories are read from the highest index down, segments by
    /// sequence, records by offset). The copy takes over the place; the
    /// recipients finished so far stay finished: a marker counts for the
    /// queue id wherever it is, so a copy whose own marker (written with
    /// it) was torn off by a crash does not bring them back. With no
    /// earlier copy left, that marker finishes them.
    fn message(&mut self, shard: usize, mut message: PendingMessage) {
        self.seen += 1;
        let order = (self.dir_index, self.seen);
        if let Some(earlier) = self.owed.get(&message.queue_id) {
            message.remaining.retain(|r| earlier.message.remaining.contains(r));
        }
        self.owed.insert(message.queue_id.clone(), Owed { shard, order, message });
    }

    fn marker(&mut self, queue_id: QueueId, marker: Marker) {
        let Some(mut owed) = self.owed.remove(&queue_id) else { return };
        self.apply(&marker, owed.shard, &mut owed.message);
        if !owed.message.remaining.is_empty() {
            self.owed.insert(queue_id, owed);
        }
    }

    /// Apply a marker to a message of shard `shard`, and tie the marker's
    /// segment to the message's so the shard keeps the marker while the
    /// message's segment exists. Only same-shard ties are tracked: a shard
    /// cannot see when another deletes a segment. The cost of the gap is a
    /// duplicate after a later crash, never a loss.
    fn apply(&mut self, marker: &Marker, shard: usize, message: &mut PendingMessage) {
        message.remaining.retain(|r| !marker.recipients.contains(r));
        if marker.shard == shard && marker.segment != message.segment {
            let targets = &mut self.shards[shard].segments[marker.segment].marker_targets;
            if !targets.contains(&message.segment) {
                targets.push(message.segment);
            }
        }
    }

    /// Hand each shard its owed messages in the order they were written.
    fn finish(mut self) -> Vec<RecoveredShard> {
        let mut owed: Vec<Owed> = self.owed.into_values().collect();
        owed.sort_by_key(|o| o.order);
        for o in owed {
            self.shards[o.shard].messages.push(o.message);
        }
        self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::BodyType;
    use crate::spool::record;

    fn envelope(rcpts: usize) -> Envelope {
        Envelope {
            connection_id: "C1".into(),
            peer: "127.0.0.1:5000".parse().unwrap(),
            helo: "h".into(),
            esmtp: true,
            mail_from: "s@x.test".into(),
            body_type: BodyType::SevenBit,
            smtputf8: false,
            recipients: (0..rcpts).map(|i| format!("r{i}@example.test")).collect(),
            ldap_routing: String::new(),
            relayed: false,
            secured: Default::default(),
            ..Default::default()
        }
    }

    #[test]
    fn a_compacted_copy_in_a_lower_directory_wins_and_keeps_the_finished_recipients() {
        let tmp = std::env::temp_dir().join(format!("pc-recovery-copy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for shard in [0, 2] {
            std::fs::create_dir_all(shard_dir(&tmp, shard)).unwrap();
        }
        // Stored by shard 2; with 2 shards, shard 0 adopted it, finished
        // recipient 1, moved it into shard-0 (copy + marker) and finished
        // recipient 0; the crash came before shard-2's segment was unlinked.
        let id = QueueId("M".into());
        let mut original = Vec::new();
        record::encode_message(&mut original, &id, &envelope(3), 7, b"body");
        std::fs::write(shard_dir(&tmp, 2).join(segment_name(1)), &original).unwrap();
        let mut marker = Vec::new();
        record::encode_done(&mut marker, &id, &[1]);
        std::fs::write(shard_dir(&tmp, 0).join(segment_name(1)), &marker).unwrap();
        let mut copy = original.clone();
        let copy_len = copy.len();
        record::encode_done(&mut copy, &id, &[1]);
        record::encode_done(&mut copy, &id, &[0]);
        std::fs::write(shard_dir(&tmp, 0).join(segment_name(2)), &copy).unwrap();
        for shards in [1, 2, 3] {
            let all = recover(&tmp, shards).unwrap();
            let owed: Vec<_> = all.iter().flat_map(|s| &s.messages).collect();
            assert_eq!(owed.len(), 1, "{shards} shards: one message, not two");
            let m = owed[0];
            assert_eq!(m.remaining, vec![2], "{shards} shards");
            assert_eq!(m.body.segment.as_path(), shard_dir(&tmp, 0).join(segment_name(2)), "{shards} shards: the copy's place");
            assert_eq!((m.record_offset, m.record_len), (0, copy_len as u64));
            assert!(all[0].messages.len() == 1, "shard-0's own shard owns it");
        }
        // The copy's own marker torn off: the marker before it still counts.
        std::fs::write(shard_dir(&tmp, 0).join(segment_name(2)), &copy[..copy_len + 3]).unwrap();
        let m = recover(&tmp, 2).unwrap().remove(0).messages.remove(0);
        assert_eq!(m.remaining, vec![0, 2]);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn done_markers_apply_across_directories_which_are_adopted() {
        let tmp = std::env::temp_dir().join(format!("pc-recovery-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for shard in 0..3 {
            std::fs::create_dir_all(shard_dir(&tmp, shard)).unwrap();
        }
        let mut seg1 = Vec::new();
        record::encode_message(&mut seg1, &QueueId("A".into()), &envelope(2), 7, b"a");
        record::encode_message(&mut seg1, &QueueId("B".into()), &envelope(1), 7, b"b");
        let mut seg2 = Vec::new();
        record::encode_done(&mut seg2, &QueueId("A".into()), &[0]);
        record::encode_done(&mut seg2, &QueueId("B".into()), &[0]);
        // shard 0 once adopted shard-2's message D and finished it.
        record::encode_done(&mut seg2, &QueueId("D".into()), &[0]);
        seg2.extend_from_slice(&[9, 0, 0]); // torn tail
        std::fs::write(shard_dir(&tmp, 0).join(segment_name(1)), &seg1).unwrap();
        std::fs::write(shard_dir(&tmp, 0).join(segment_name(2)), &seg2).unwrap();
        let mut seg3 = Vec::new();
        record::encode_message(&mut seg3, &QueueId("C".into()), &envelope(1), 7, b"c");
        record::encode_message(&mut seg3, &QueueId("D".into()), &envelope(1), 7, b"d");
        std::fs::write(shard_dir(&tmp, 2).join(segment_name(1)), &seg3).unwrap();

        // With 3 shards, shard-2 stays its own, yet D's marker in shard-0 counts.
        let three = recover(&tmp, 3).unwrap();
        let ids: Vec<_> = three[2].messages.iter().map(|m| m.queue_id.0.as_str()).collect();
        assert_eq!(ids, vec!["C"]);
        let shards = recover(&tmp, 2).unwrap();
        // shard-0 and shard-2 both go to shard 0 when there are 2 shards.
        let s0 = &shards[0];
        let ids: Vec<_> = s0.messages.iter().map(|m| (m.queue_id.0.as_str(), m.remaining.clone())).collect();
        assert_eq!(ids, vec![("A", vec![1]), ("C", vec![0])]);
        assert_eq!(s0.torn_tails, 1);
        // shard-2 is read first (segment 0), then shard-0 (segments 1, 2):
        // segment 2 holds markers for segment 1 (A, B) and, adopted, segment 0 (D).
        let name = |i: usize| s0.segments[i].path.strip_prefix(&tmp).unwrap().display().to_string();
        assert_eq!((name(0), name(1), name(2)), (format!("shard-2/{}", segment_name(1)), format!("shard-0/{}", segment_name(1)), format!("shard-0/{}", segment_name(2))));
        assert_eq!(s0.segments[2].marker_targets, vec![1, 0]);
        assert!(shards[1].messages.is_empty());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
