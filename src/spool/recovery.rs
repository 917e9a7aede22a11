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
    /// Bytes of intact records (a torn tail starts here).
    pub intact_bytes: u64,
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

fn segment_seq(name: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix("seg-")?.strip_suffix(".log")?, 16).ok()
}

/// The per-shard directory name.
pub fn shard_dir(spool: &Path, index: usize) -> PathBuf {
    spool.join(format!("shard-{index}"))
}

/// Recover the spool for `shards` shards: result[i] is what shard i owns.
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
    for (index, dir) in dirs {
        recover_dir(&dir, &mut out[index % shards])?;
    }
    Ok(out)
}

fn recover_dir(dir: &Path, shard: &mut RecoveredShard) -> io::Result<()> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((segment_seq(&e.file_name().to_string_lossy())?, e.path())))
        .collect();
    files.sort();
    // Messages of this directory by id: (index into shard.messages).
    let mut by_id: HashMap<QueueId, usize> = HashMap::new();
    let first_message = shard.messages.len();
    for (_, path) in files {
        let bytes = std::fs::read(&path)?;
        let (records, intact) = record::decode_all(&bytes);
        if intact < bytes.len() {
            shard.torn_tails += 1;
        }
        let segment = shard.segments.len();
        let mut targets = Vec::new();
        for rec in records {
            match rec {
                Record::Message { queue_id, envelope, data } => {
                    let remaining = (0..envelope.recipients.len() as u32).collect();
                    by_id.insert(queue_id.clone(), shard.messages.len());
                    shard.messages.push(PendingMessage { queue_id, envelope, data, remaining, segment });
                }
                Record::Done { queue_id, recipients } => {
                    // A marker for a message we never saw (its segment is gone) is harmless.
                    let Some(&m) = by_id.get(&queue_id) else { continue };
                    let msg = &mut shard.messages[m];
                    msg.remaining.retain(|r| !recipients.contains(r));
                    if msg.segment != segment && !targets.contains(&msg.segment) {
                        targets.push(msg.segment);
                    }
                }
            }
        }
        shard.segments.push(RecoveredSegment { path, intact_bytes: intact as u64, marker_targets: targets });
    }
    // Keep only what is still owed.
    let this_dir = shard.messages.split_off(first_message);
    shard.messages.extend(this_dir.into_iter().filter(|m| !m.remaining.is_empty()));
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
    fn done_markers_subtract_and_directories_are_adopted() {
        let tmp = std::env::temp_dir().join(format!("pc-recovery-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for shard in 0..3 {
            std::fs::create_dir_all(shard_dir(&tmp, shard)).unwrap();
        }
        let mut seg1 = Vec::new();
        record::encode_message(&mut seg1, &QueueId("A".into()), &envelope(2), b"a");
        record::encode_message(&mut seg1, &QueueId("B".into()), &envelope(1), b"b");
        let mut seg2 = Vec::new();
        record::encode_done(&mut seg2, &QueueId("A".into()), &[0]);
        record::encode_done(&mut seg2, &QueueId("B".into()), &[0]);
        seg2.extend_from_slice(&[9, 0, 0]); // torn tail
        std::fs::write(shard_dir(&tmp, 0).join(segment_name(1)), &seg1).unwrap();
        std::fs::write(shard_dir(&tmp, 0).join(segment_name(2)), &seg2).unwrap();
        let mut seg3 = Vec::new();
        record::encode_message(&mut seg3, &QueueId("C".into()), &envelope(1), b"c");
        std::fs::write(shard_dir(&tmp, 2).join(segment_name(1)), &seg3).unwrap();

        let shards = recover(&tmp, 2).unwrap();
        // shard-0 and shard-2 both go to shard 0 when there are 2 shards.
        let s0 = &shards[0];
        let ids: Vec<_> = s0.messages.iter().map(|m| (m.queue_id.0.as_str(), m.remaining.clone())).collect();
        assert_eq!(ids, vec![("A", vec![1]), ("C", vec![0])]);
        assert_eq!(s0.torn_tails, 1);
        assert_eq!(s0.segments[1].marker_targets, vec![0]);
        assert!(shards[1].messages.is_empty());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
