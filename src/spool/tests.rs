//! Spool tests on a real glommio executor and a real directory: group
//! commit and its batch bound, done markers (partial ones too), segment
//! collection, body locations read back, the cross-shard byte bound, and
//! recovery after a "crash" (dropping the spool without any shutdown step,
//! after `sync_pending` where a test needs the markers on disk).

use std::rc::Rc;

use super::recovery::{recover, shard_dir};
use super::recovery::RecoveredShard;
use super::{read_body, BodyLocation, Spool, SpoolBytes, SpoolSettings};
use crate::message::{BodyType, Envelope, QueueId};

/// An envelope of `rcpts` recipients (the spool's tests and compaction's).
pub(super) fn envelope(rcpts: usize) -> Envelope {
    Envelope {
        connection_id: "C0-1".into(),
        peer: "127.0.0.1:4000".parse().unwrap(),
        helo: "client.test".into(),
        esmtp: true,
        mail_from: "s@sender.test".into(),
        body_type: BodyType::SevenBit,
        smtputf8: false,
        recipients: (0..rcpts).map(|i| format!("r{i}@example.test")).collect(),
        ..Default::default()
    }
}

pub(super) use crate::test_support::on_executor;

/// Shard 0's spool alone: the byte counter starts at what it recovered.
async fn open_spool(dir: &std::path::Path, rec: &RecoveredShard, settings: SpoolSettings) -> std::io::Result<Rc<Spool>> {
    Spool::open(dir, 0, rec, settings, SpoolBytes::new(rec.pending_bytes())).await
}

/// Read stored messages back through the spool's reader, on an executor as a shard would.
fn read_bodies(locations: Vec<BodyLocation>) -> Vec<Vec<u8>> {
    on_executor(move || {
        Box::pin(async move {
            let mut bodies = Vec::new();
            for l in &locations {
                bodies.push(read_body(l).await.unwrap());
            }
            bodies
        })
    })
}

fn bounds(messages_max: usize, bytes_max: u64) -> SpoolSettings {
    SpoolSettings { messages_max, bytes_max, ..SpoolSettings::default() }
}

/// Segments small enough that a few kilobytes rotate them.
pub(super) fn small_segments(segment_bytes_max: u64) -> SpoolSettings {
    SpoolSettings { segment_bytes_max, ..SpoolSettings::default() }
}

fn small_batches(batch_bytes_max: usize) -> SpoolSettings {
    SpoolSettings { batch_bytes_max, ..SpoolSettings::default() }
}

/// A fresh directory under the system's temp dir, unique per test name and process.
pub(super) fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pc-spool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn concurrent_stores_survive_a_crash_and_done_messages_do_not() {
    let dir = temp_dir("crash");
    let d = dir.clone();
    let ids: Vec<QueueId> = on_executor(move || {
        Box::pin(async move {
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let spool = open_spool(&d, &rec, bounds(1000, 1 << 30)).await.unwrap();
            let tasks: Vec<_> = (0..50)
                .map(|i| {
                    let spool: Rc<Spool> = spool.clone();
                    glommio::spawn_local(async move {
                        let id = spool.next_queue_id();
                        spool.store(&id, &envelope(2), 1_795_330_800, format!("message {i}\r\n").as_bytes()).await.unwrap();
                        id
                    })
                })
                .collect();
            let mut ids = Vec::new();
            for t in tasks {
                ids.push(t.await);
            }
            assert_eq!(spool.live_messages(), 50);
            // Group commit: 50 concurrent stores shared far fewer syncs.
            assert!(spool.syncs() < 25, "{} syncs for 50 concurrent stores", spool.syncs());
            // Finish all of message 0, half of message 1.
            assert!(!spool.mark_done(&ids[0], &[0]));
            assert!(spool.mark_done(&ids[0], &[1]));
            assert!(!spool.mark_done(&ids[1], &[1]));
            // Let the markers reach the disk, then "crash" (no shutdown step).
            spool.sync_pending().await.unwrap();
            ids
        })
    });
    let rec = recover(&dir, 1).unwrap().pop().unwrap();
    assert_eq!(rec.messages.len(), 49, "message 0 is finished, the other 49 are owed");
    let m1 = rec.messages.iter().find(|m| m.queue_id == ids[1]).unwrap();
    assert_eq!(m1.remaining, vec![0]);
    let mut locations = Vec::new();
    for id in ids.iter().skip(2) {
        let m = rec.messages.iter().find(|m| &m.queue_id == id).unwrap();
        assert_eq!(m.remaining, vec![0, 1]);
        locations.push(m.body.clone());
    }
    for (i, body) in read_bodies(locations).into_iter().enumerate() {
        assert_eq!(body, format!("message {}\r\n", i + 2).as_bytes());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finished_segments_are_deleted_and_recovered_ones_adopted() {
    let dir = temp_dir("gc");
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            // First run: two messages stored, none finished.
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let spool = open_spool(&d, &rec, bounds(1000, 1 << 30)).await.unwrap();
            for _ in 0..2 {
                let id = spool.next_queue_id();
                spool.store(&id, &envelope(1), 1_795_330_800, b"x\r\n").await.unwrap();
            }
            drop(spool);
            // Second run: the old segment is adopted; finishing both deletes it.
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            assert_eq!(rec.messages.len(), 2);
            let spool = open_spool(&d, &rec, bounds(1000, 1 << 30)).await.unwrap();
            assert_eq!(spool.segments_on_disk(), 2, "old segment + new current");
            for m in &rec.messages {
                assert!(spool.mark_done(&m.queue_id, &[0]));
            }
            spool.sync_pending().await.unwrap();
            assert_eq!(spool.segments_on_disk(), 1, "old segment removed once all its messages finished");
        })
    });
    let files = std::fs::read_dir(shard_dir(&dir, 0)).unwrap().count();
    assert_eq!(files, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn queue_bound_answers_queue_full() {
    let dir = temp_dir("full");
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let spool = open_spool(&d, &rec, bounds(2, 1 << 30)).await.unwrap();
            for _ in 0..2 {
                let id = spool.next_queue_id();
                spool.store(&id, &envelope(1), 1_795_330_800, b"x\r\n").await.unwrap();
            }
            let id = spool.next_queue_id();
            assert_eq!(spool.store(&id, &envelope(1), 1_795_330_800, b"x\r\n").await, Err(crate::smtp::StoreError::QueueFull));
        })
    });
    // The byte bound: recovered bytes count, 10 bytes fit, the next 10 do
    // not, and finishing frees room.
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let spool = open_spool(&d, &rec, bounds(1000, 6 + 10)).await.unwrap();
            assert_eq!(rec.messages.len(), 2, "two 3-byte messages from the first run");
            let first = spool.next_queue_id();
            spool.store(&first, &envelope(1), 1_795_330_800, b"0123456789").await.unwrap();
            let id = spool.next_queue_id();
            assert_eq!(spool.store(&id, &envelope(1), 1_795_330_800, b"0123456789").await, Err(crate::smtp::StoreError::QueueFull));
            assert!(spool.mark_done(&first, &[0]));
            spool.store(&id, &envelope(1), 1_795_330_800, b"0123456789").await.unwrap();
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn partial_done_marker_survives_when_its_segment_would_be_collected() {
    let dir = temp_dir("partial");
    let d = dir.clone();
    let a = on_executor(move || {
        Box::pin(async move {
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let spool = open_spool(&d, &rec, small_segments(4096)).await.unwrap();
            let big = vec![b'x'; 8192];
            let a = spool.next_queue_id();
            spool.store(&a, &envelope(2), 1_795_330_800, b"A\r\n").await.unwrap();
            // Larger than a segment: the spool rotates, A stays behind in the first one.
            let b = spool.next_queue_id();
            spool.store(&b, &envelope(1), 1_795_330_800, &big).await.unwrap();
            assert!(!spool.mark_done(&a, &[0]), "A still owes recipient 1");
            assert!(spool.mark_done(&b, &[0]));
            spool.sync_pending().await.unwrap();
            // Rotates again: the segment holding A's partial marker is no longer current.
            let c = spool.next_queue_id();
            spool.store(&c, &envelope(1), 1_795_330_800, &big).await.unwrap();
            spool.sync_pending().await.unwrap();
            a
        })
    });
    let rec = recover(&dir, 1).unwrap().pop().unwrap();
    let owed = rec.messages.iter().find(|m| m.queue_id == a).expect("A is still owed");
    assert_eq!(owed.remaining, vec![1], "recipient 0 was delivered before the restart");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn segment_table_forgets_collected_segments() {
    let dir = temp_dir("table");
    let d = dir.clone();
    let (on_disk, rotations) = on_executor(move || {
        Box::pin(async move {
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let spool = open_spool(&d, &rec, small_segments(1024)).await.unwrap();
            let big = vec![b'x'; 2048];
            let rotations = 100;
            for _ in 0..rotations {
                let id = spool.next_queue_id();
                spool.store(&id, &envelope(1), 1_795_330_800, &big).await.unwrap();
                assert!(spool.mark_done(&id, &[0]));
            }
            spool.sync_pending().await.unwrap();
            (spool.segments_on_disk(), rotations)
        })
    });
    let files = std::fs::read_dir(shard_dir(&dir, 0)).unwrap().count();
    assert!(files < rotations / 10, "{files} segment files after {rotations} rotations");
    assert_eq!(on_disk, files, "the spool tracks exactly the segments on disk");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_commit_writes_at_most_batch_bytes_max() {
    let dir = temp_dir("batch");
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let batch_bytes_max = 4096;
            let spool = open_spool(&d, &rec, small_batches(batch_bytes_max)).await.unwrap();
            // Twenty 1 KiB messages at once: one group commit would take them all.
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let spool = spool.clone();
                    glommio::spawn_local(async move {
                        let id = spool.next_queue_id();
                        spool.store(&id, &envelope(1), 1_795_330_800, &[b'x'; 1024]).await.unwrap();
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
            let largest = spool.largest_write_bytes();
            assert!(largest <= batch_bytes_max as u64, "one commit wrote {largest} bytes");
            assert!(spool.syncs() >= 20 * 1024 / batch_bytes_max as u64, "{} commits", spool.syncs());
            // A message larger than a batch is not refused: it goes alone.
            let id = spool.next_queue_id();
            let big = vec![b'y'; 3 * batch_bytes_max];
            let location = spool.store(&id, &envelope(1), 1_795_330_800, &big).await.unwrap();
            assert_eq!(location.len, big.len() as u64);
            assert!(spool.largest_write_bytes() > big.len() as u64, "written whole, with its envelope");
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sync_pending_returns_once_done_markers_are_durable() {
    let dir = temp_dir("sync");
    let d = dir.clone();
    let (finished, owed) = on_executor(move || {
        Box::pin(async move {
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let spool = open_spool(&d, &rec, SpoolSettings::default()).await.unwrap();
            let (finished, owed) = (spool.next_queue_id(), spool.next_queue_id());
            spool.store(&finished, &envelope(1), 1_795_330_800, b"done\r\n").await.unwrap();
            spool.store(&owed, &envelope(2), 1_795_330_800, b"owed\r\n").await.unwrap();
            assert!(spool.mark_done(&finished, &[0]));
            assert!(!spool.mark_done(&owed, &[1]));
            spool.sync_pending().await.unwrap();
            // "Crash" at once: no sleep, no other shutdown step.
            (finished, owed)
        })
    });
    let rec = recover(&dir, 1).unwrap().pop().unwrap();
    assert!(rec.messages.iter().all(|m| m.queue_id != finished), "the finished message's marker reached the disk");
    let m = rec.messages.iter().find(|m| m.queue_id == owed).unwrap();
    assert_eq!(m.remaining, vec![0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stored_bodies_read_back_by_location_byte_exact() {
    let dir = temp_dir("location");
    let d = dir.clone();
    let stored = on_executor(move || {
        Box::pin(async move {
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let spool = open_spool(&d, &rec, small_segments(4096)).await.unwrap();
            let mut stored = Vec::new();
            // Sizes across a rotation, with bytes that differ per message and offset.
            for (i, n) in [10usize, 3000, 5000, 1, 2500].into_iter().enumerate() {
                let data: Vec<u8> = (0..n).map(|k| (k * 7 + i * 13) as u8).collect();
                let id = spool.next_queue_id();
                let location = spool.store(&id, &envelope(1), 1_795_330_800, &data).await.unwrap();
                stored.push((id, location, data));
            }
            let segments: std::collections::HashSet<_> = stored.iter().map(|(_, l, _)| l.segment.clone()).collect();
            assert!(segments.len() > 1, "the messages span several segments");
            for (_, location, data) in &stored {
                assert_eq!(&read_body(location).await.unwrap(), data, "{location:?}");
            }
            stored
        })
    });
    // After a restart, recovery gives the same places, and they read back the same bytes.
    let rec = recover(&dir, 1).unwrap().pop().unwrap();
    let mut locations = Vec::new();
    for (id, location, _) in &stored {
        let m = rec.messages.iter().find(|m| &m.queue_id == id).expect("still owed");
        assert_eq!(&m.body, location);
        locations.push(m.body.clone());
    }
    let bodies = read_bodies(locations);
    for ((_, _, data), body) in stored.iter().zip(bodies) {
        assert_eq!(&body, data);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spool_bytes_max_is_exact_across_shards_and_counts_recovered_mail() {
    let dir = temp_dir("bytes");
    let d = dir.clone();
    let bytes_max = 100;
    on_executor(move || {
        Box::pin(async move {
            let mut rec = recover(&d, 2).unwrap().into_iter();
            let (rec0, rec1) = (rec.next().unwrap(), rec.next().unwrap());
            let settings = SpoolSettings { bytes_max, ..SpoolSettings::default() };
            let shared = SpoolBytes::new(rec0.pending_bytes() + rec1.pending_bytes());
            let s0 = Spool::open(&d, 0, &rec0, settings, shared.clone()).await.unwrap();
            let s1 = Spool::open(&d, 1, &rec1, settings, shared.clone()).await.unwrap();
            let store = |spool: &Rc<Spool>, n: usize| {
                let spool = spool.clone();
                async move {
                    let id = spool.next_queue_id();
                    spool.store(&id, &envelope(1), 1_795_330_800, &vec![b'x'; n]).await.map(|_| id)
                }
            };
            let first = store(&s0, 60).await.unwrap();
            assert_eq!(store(&s1, 60).await, Err(crate::smtp::StoreError::QueueFull), "shard 0's 60 bytes count on shard 1");
            store(&s1, 40).await.unwrap();
            assert_eq!(shared.used(), bytes_max, "exactly full");
            assert_eq!(store(&s0, 1).await, Err(crate::smtp::StoreError::QueueFull));
            // Finishing shard 0's message gives its room to either shard.
            assert!(s0.mark_done(&first, &[0]));
            store(&s1, 60).await.unwrap();
            s0.sync_pending().await.unwrap();
            s1.sync_pending().await.unwrap();
        })
    });
    // After a restart, what is owed (40 + 60 bytes) fills the bound before any new mail.
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let rec: Vec<_> = recover(&d, 2).unwrap();
            let recovered: u64 = rec.iter().map(|r| r.pending_bytes()).sum();
            assert_eq!(recovered, bytes_max);
            let settings = SpoolSettings { bytes_max, ..SpoolSettings::default() };
            let spool = Spool::open(&d, 0, &rec[0], settings, SpoolBytes::new(recovered)).await.unwrap();
            let id = spool.next_queue_id();
            assert_eq!(spool.store(&id, &envelope(1), 1_795_330_800, b"x").await, Err(crate::smtp::StoreError::QueueFull));
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
