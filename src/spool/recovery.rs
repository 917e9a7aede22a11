//! Spool recovery at start: read every segment of every shard directory,
//! apply the done markers, and hand each shard the messages still owed.
//!
//! Runs on the main thread before the shards start (plain blocking I/O is
//! right here: nothing else is running yet). Directories are adopted by
//! shard `index % shards`, so a restart with another `--cores` loses nothing.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::record::{self, Record};
use crate::message::{Envelope, QueueId};

/// A message that still has recipients to deliver.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub queue_id: QueueId,
    pub envelope: Envelope,
    /// Unix time of our 250: the queue lifetime counts from it, across restarts.
    pub accepted_secs: u64,
    pub data: Vec<u8>,
    /// Indices into `envelope.recipients` not yet finished.
    pub remaining: Vec<u32>,
    /// Index into `RecoveredShard::segments` of the segment holding it.
    pub segment: usize,
}

/// A segment file found on disk, with what keeps it alive.
#[derive(Debug, Clone)]
pub struct RecoveredSegment {
    pub path: PathBuf,
    /// Other segments (indices) whose messages this one holds done markers for.
    pub marker_targets: Vec<usize>,
}

/// What one shard takes over.
#[derive(Debug, Default)]
pub struct RecoveredShard {
    pub segments: Vec<RecoveredSegment>,
    pub messages: Vec<PendingMessage>,
    /// Torn tails found (a crash mid-write; those records were never acknowledged).
    pub torn_tails: usize,
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
/// Two passes over everything: first every message record of every
/// directory, then every done marker. A marker may sit in another directory
/// than its message (a shard that adopted a directory writes its markers in
/// its own), so markers are applied globally, never per directory.
pub fn recover(spool: &Path, shards: usize) -> io::Result<Vec<RecoveredShard>> {
    let mut out: Vec<RecoveredShard> = (0..shards).map(|_| RecoveredShard::default()).collect();
    std::fs::create_dir_all(spool)?;
    let mut dirs: Vec<(usize, PathBuf)> = std::fs::read_dir(spool)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            Some((name.strip_prefix("shard-")?.parse::<usize>().ok()?, e.path()))
        })
        .collect();
    dirs.sort();
    // Where each message landed: (shard, index into its messages).
    let mut by_id: HashMap<QueueId, (usize, usize)> = HashMap::new();
    let mut markers: Vec<Marker> = Vec::new();
    for (index, dir) in dirs {
        let shard = index % shards;
        read_dir_segments(&dir, shard, &mut out[shard], &mut by_id, &mut markers)?;
    }
    for marker in markers {
        // A marker for a message we never saw (its segment is gone) is harmless.
        let Some(&(shard, m)) = by_id.get(&marker.queue_id) else { continue };
        let msg = &mut out[shard].messages[m];
        msg.remaining.retain(|r| !marker.recipients.contains(r));
        let msg_segment = msg.segment;
        // Only same-shard dependencies are tracked: a shard cannot see when
        // another deletes a segment. The cost of the gap is a duplicate
        // after a later crash, never a loss.
        if shard == marker.shard && msg_segment != marker.segment {
            let targets = &mut out[shard].segments[marker.segment].marker_targets;
            if !targets.contains(&msg_segment) {
                targets.push(msg_segment);
            }
        }
    }
    for shard in &mut out {
        shard.messages.retain(|m| !m.remaining.is_empty());
    }
    Ok(out)
}

/// A done marker found in segment `segment` of shard `shard`.
struct Marker {
    shard: usize,
    segment: usize,
    queue_id: QueueId,
    recipients: Vec<u32>,
}

fn read_dir_segments(
    dir: &Path,
    shard_index: usize,
    shard: &mut RecoveredShard,
    by_id: &mut HashMap<QueueId, (usize, usize)>,
    markers: &mut Vec<Marker>,
) -> io::Result<()> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((segment_seq(&e.file_name().to_string_lossy())?, e.path())))
        .collect();
    files.sort();
    for (_, path) in files {
        let bytes = std::fs::read(&path)?;
        let (records, intact) = record::decode_all(&bytes);
        if intact < bytes.len() {
            shard.torn_tails += 1;
        }
        let segment = shard.segments.len();
        for rec in records {
            match rec {
                Record::Message { queue_id, envelope, accepted_secs, data } => {
                    let remaining = (0..envelope.recipients.len() as u32).collect();
                    by_id.insert(queue_id.clone(), (shard_index, shard.messages.len()));
                    shard.messages.push(PendingMessage { queue_id, envelope, accepted_secs, data, remaining, segment });
                }
                Record::Done { queue_id, recipients } => {
                    markers.push(Marker { shard: shard_index, segment, queue_id, recipients })
                }
            }
        }
        shard.segments.push(RecoveredSegment { path, marker_targets: Vec::new() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::BodyType;

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
        }
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
        // Segment 1 holds markers for segment 0 (A, B) and, adopted, segment 2 (D).
        assert_eq!(s0.segments[1].marker_targets, vec![0, 2]);
        assert!(shards[1].messages.is_empty());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
