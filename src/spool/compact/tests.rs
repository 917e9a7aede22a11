//! Compaction tests on a real glommio executor and a real directory:
//! messages spread over small segments, most finished, then compacted; old
//! segments deleted, `location` in the current one, bytes read back exact;
//! recovery after a clean stop, with both copies on disk (a crash before the
//! unlink), with a torn copy (a crash before the copy was durable); markers
//! queued during a move; the byte bound counted once; the policy's choice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::super::recovery::{recover, shard_dir, RecoveredShard};
use super::super::tests::{envelope, on_executor, small_segments, temp_dir};
use super::super::{read_body, record, Spool, SpoolBytes, SpoolSettings};
use super::{plan, CompactionPolicy, OpenSegment};
use crate::message::QueueId;
use crate::smtp::StoreError;

const ACCEPTED_SECS: u64 = 1_795_330_800;
/// "Now" for a pass right after the mail came in (the age rule not yet due).
const SOON_SECS: u64 = ACCEPTED_SECS + 60;
/// Segments of about seven 1 KiB messages: one owed message is under 25 %.
const SPREAD_SEGMENT_BYTES: u64 = 8192;

async fn open_spool(dir: &Path, settings: SpoolSettings) -> (Rc<Spool>, RecoveredShard) {
    let rec = recover(dir, 1).unwrap().pop().unwrap();
    let spool = Spool::open(dir, 0, &rec, settings, SpoolBytes::new(rec.pending_bytes())).await.unwrap();
    (spool, rec)
}

/// Bytes that differ per message and per offset.
fn data(n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (k * 7 + n * 13) as u8).collect()
}

fn segment_files(dir: &Path) -> HashSet<PathBuf> {
    std::fs::read_dir(shard_dir(dir, 0)).unwrap().map(|e| e.unwrap().path()).collect()
}

/// What the test keeps of an owed message.
#[derive(Clone, Debug)]
struct Kept {
    id: QueueId,
    data: Vec<u8>,
    remaining: Vec<u32>,
}

/// 24 messages of 1 KiB (3 recipients) over 8 KiB segments; all but three
/// finished, one of those three partly (recipient 1). Returns those three
/// and the segments that held them.
async fn spread_and_finish(spool: &Rc<Spool>) -> (Vec<Kept>, HashSet<PathBuf>) {
    let mut stored = Vec::new();
    for n in 0..24 {
        let id = spool.next_queue_id();
        let body = data(n, 1024);
        spool.store(&id, &envelope(3), ACCEPTED_SECS, &body).await.unwrap();
        stored.push((n, id, body));
    }
    let mut kept = Vec::new();
    for (n, id, body) in stored {
        match n {
            2 => {
                assert!(!spool.mark_done(&id, &[1]));
                kept.push(Kept { id, data: body, remaining: vec![0, 2] });
            }
            9 | 17 => kept.push(Kept { id, data: body, remaining: vec![0, 1, 2] }),
            _ => assert!(spool.mark_done(&id, &[0, 1, 2])),
        }
    }
    spool.sync_pending().await.unwrap();
    let old = kept.iter().map(|k| spool.location(&k.id).unwrap().segment.to_path_buf()).collect();
    (kept, old)
}

/// After recovery: exactly `kept` is owed, with the same remaining recipients.
fn assert_recovered(rec: &RecoveredShard, kept: &[Kept]) {
    let mut owed: Vec<(QueueId, Vec<u32>)> = rec.messages.iter().map(|m| (m.queue_id.clone(), m.remaining.clone())).collect();
    let mut want: Vec<(QueueId, Vec<u32>)> = kept.iter().map(|k| (k.id.clone(), k.remaining.clone())).collect();
    owed.sort();
    want.sort();
    assert_eq!(owed, want);
}

#[test]
fn compaction_frees_old_segments_and_location_follows_the_copy() {
    let dir = temp_dir("frees");
    let d = dir.clone();
    let kept = on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open_spool(&d, small_segments(SPREAD_SEGMENT_BYTES)).await;
            let (kept, old) = spread_and_finish(&spool).await;
            assert_eq!(old.len(), 3, "the three owed messages sit in three segments");
            let before = spool.segments_on_disk();
            assert!(before >= 4, "{before} segments pinned");
            let report = spool.compact(&CompactionPolicy::default(), SOON_SECS).await;
            assert_eq!((report.moved, report.failed, report.skipped), (3, 0, 0), "{report:?}");
            spool.sync_pending().await.unwrap();
            for path in &old {
                assert!(!path.exists(), "{} still on disk", path.display());
            }
            let now: HashSet<_> = kept.iter().map(|k| spool.location(&k.id).unwrap().segment.to_path_buf()).collect();
            assert_eq!(now.len(), 1, "the copies sit together in the newest segment");
            assert!(spool.segments_on_disk() <= 2, "{} segments left", spool.segments_on_disk());
            assert_eq!(segment_files(&d).len(), spool.segments_on_disk());
            for k in &kept {
                assert_eq!(spool.read_message(&k.id).await.unwrap(), k.data, "{} byte-exact", k.id);
            }
            // A second pass finds nothing to do: the copies are young, their segment current or full.
            assert_eq!(spool.compact(&CompactionPolicy::default(), SOON_SECS).await.moved, 0);
            kept
        })
    });
    // A restart (the spool dropped without a shutdown step) finds the copies.
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let (spool, rec) = open_spool(&d, small_segments(SPREAD_SEGMENT_BYTES)).await;
            assert_recovered(&rec, &kept);
            for k in &kept {
                let m = rec.messages.iter().find(|m| m.queue_id == k.id).unwrap();
                assert_eq!(read_body(&m.body).await.unwrap(), k.data);
                assert_eq!(spool.location(&k.id), Some(m.body.clone()));
            }
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Segment files and their bytes, to put back as a crash would leave them.
type Files = Vec<(PathBuf, Vec<u8>)>;

/// Copies of the old segment files.
fn snapshot(paths: &HashSet<PathBuf>) -> Files {
    paths.iter().map(|p| (p.clone(), std::fs::read(p).unwrap())).collect()
}

fn restore(files: &Files) {
    for (p, bytes) in files {
        std::fs::write(p, bytes).unwrap();
    }
}

/// Compact `dir`'s spool, keeping copies of the segments it deletes.
fn compact_keeping_old_segments(dir: &Path) -> (Vec<Kept>, Files, PathBuf) {
    let d = dir.to_path_buf();
    on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open_spool(&d, small_segments(SPREAD_SEGMENT_BYTES)).await;
            let (kept, _) = spread_and_finish(&spool).await;
            let sealed: HashSet<PathBuf> = segment_files(&d);
            let old = snapshot(&sealed);
            assert_eq!(spool.compact(&CompactionPolicy::default(), SOON_SECS).await.moved, 3);
            spool.sync_pending().await.unwrap();
            let copies = spool.location(&kept[0].id).unwrap().segment.to_path_buf();
            let gone: Vec<_> = old.into_iter().filter(|(p, _)| !p.exists()).collect();
            assert!(!gone.is_empty());
            (kept, gone, copies)
        })
    })
}

#[test]
fn a_crash_before_the_unlink_leaves_both_copies_and_the_same_recipients() {
    let dir = temp_dir("both");
    let (kept, gone, copies) = compact_keeping_old_segments(&dir);
    restore(&gone);
    let rec = recover(&dir, 1).unwrap().pop().unwrap();
    assert_recovered(&rec, &kept);
    for m in &rec.messages {
        assert_eq!(m.body.segment.as_path(), copies, "the newer copy wins");
    }
    assert_eq!(rec.pending_bytes(), 3 * 1024, "each message counted once");
    // Opening finishes the interrupted compaction: the old segments go.
    let d = dir.clone();
    let back = gone.clone();
    on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open_spool(&d, small_segments(SPREAD_SEGMENT_BYTES)).await;
            spool.sync_pending().await.unwrap();
            for (p, _) in &back {
                assert!(!p.exists(), "{} kept after recovery", p.display());
            }
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_crash_before_the_copy_is_durable_keeps_what_the_old_copy_had() {
    let dir = temp_dir("torn");
    let (kept, gone, copies) = compact_keeping_old_segments(&dir);
    restore(&gone);
    let written = std::fs::read(&copies).unwrap();
    // Where the copy of the partly finished message is (both copies on disk: the copy wins).
    let (copy_at, copy_len) = {
        let rec = recover(&dir, 1).unwrap().pop().unwrap();
        let m = rec.messages.iter().find(|m| m.queue_id == kept[0].id).unwrap();
        assert_eq!(m.body.segment.as_path(), copies);
        (m.record_offset as usize, m.record_len as usize)
    };
    // The copies' write cut in the middle of that copy, then just after it:
    // the copy whole, the marker written with it (recipient 1 done) torn.
    for (cut, whole) in [(copy_at + 100, false), (copy_at + copy_len + 4, true)] {
        std::fs::write(&copies, &written[..cut]).unwrap();
        let rec = recover(&dir, 1).unwrap().pop().unwrap();
        assert_recovered(&rec, &kept);
        assert_eq!(rec.torn_tails, 1);
        let m = rec.messages.iter().find(|m| m.queue_id == kept[0].id).unwrap();
        assert_eq!(m.body.segment.as_path() == copies, whole, "cut at {cut}: the whole copy's place wins, a torn one is ignored");
        let locations: Vec<_> = rec.messages.iter().map(|m| (m.queue_id.clone(), m.body.clone())).collect();
        let bodies = on_executor(move || {
            Box::pin(async move {
                let mut out = Vec::new();
                for (id, l) in locations {
                    out.push((id, read_body(&l).await.unwrap()));
                }
                out
            })
        });
        for (id, body) in bodies {
            assert_eq!(body, kept.iter().find(|k| k.id == id).unwrap().data);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Compact everything sealed, whatever its share (to test one move alone).
fn everything() -> CompactionPolicy {
    CompactionPolicy { live_percent: 101, ..CompactionPolicy::default() }
}

#[test]
fn a_marker_queued_during_a_move_outlives_the_copy_segment() {
    // The copy nearly fills a segment of its own and goes in a batch of its
    // own; the marker queued during the move lands in the next segment,
    // which must stay while the copy does.
    let dir = temp_dir("during");
    let d = dir.clone();
    let id = on_executor(move || {
        Box::pin(async move {
            let segment_bytes_max = 4096;
            let (spool, _) = open_spool(&d, SpoolSettings { batch_bytes_max: 512, ..small_segments(segment_bytes_max) }).await;
            let id = spool.next_queue_id();
            let mut probe = Vec::new();
            record::encode_message(&mut probe, &id, &envelope(3), ACCEPTED_SECS, b"");
            let body = data(1, segment_bytes_max as usize - 20 - probe.len());
            spool.store(&id, &envelope(3), ACCEPTED_SECS, &body).await.unwrap();
            let filler = spool.next_queue_id();
            spool.store(&filler, &envelope(1), ACCEPTED_SECS, b"rotates").await.unwrap();
            let moves = plan(&spool.state.borrow(), &everything(), SOON_SECS).1;
            let m = moves.into_iter().find(|m| m.queue_id == id).unwrap();
            let (bytes, recipients) = OpenSegment::default().read_record(&m).await.unwrap();
            let copied = spool.queue_move(&m, bytes, recipients, SOON_SECS).unwrap();
            assert!(!spool.mark_done(&id, &[1]), "recipient 1 finishes while the copy is queued");
            spool.kick();
            assert_eq!(copied.await.unwrap(), Ok(true));
            spool.sync_pending().await.unwrap();
            let copy = spool.location(&id).unwrap().segment;
            // Rotate past the marker's segment and finish what is in it.
            assert!(spool.mark_done(&filler, &[0]));
            let big = spool.next_queue_id();
            spool.store(&big, &envelope(1), ACCEPTED_SECS, &data(2, 5000)).await.unwrap();
            assert!(spool.mark_done(&big, &[0]));
            spool.sync_pending().await.unwrap();
            assert!(copy.exists());
            id
        })
    });
    let rec = recover(&dir, 1).unwrap().pop().unwrap();
    let m = rec.messages.iter().find(|m| m.queue_id == id).expect("still owed");
    assert_eq!(m.remaining, vec![0, 2], "the marker written after the copy is still on disk");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_message_finished_during_its_move_stays_finished() {
    let dir = temp_dir("finished");
    let d = dir.clone();
    let id = on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open_spool(&d, small_segments(4096)).await;
            let id = spool.next_queue_id();
            spool.store(&id, &envelope(2), ACCEPTED_SECS, &data(1, 3000)).await.unwrap();
            let rotate = spool.next_queue_id();
            spool.store(&rotate, &envelope(1), ACCEPTED_SECS, &data(2, 3000)).await.unwrap();
            let moves = plan(&spool.state.borrow(), &everything(), SOON_SECS).1;
            let m = moves.into_iter().find(|m| m.queue_id == id).unwrap();
            let (bytes, recipients) = OpenSegment::default().read_record(&m).await.unwrap();
            let copied = spool.queue_move(&m, bytes, recipients, SOON_SECS).unwrap();
            assert!(spool.mark_done(&id, &[0, 1]));
            spool.kick();
            assert_eq!(copied.await.unwrap(), Ok(false), "written, but nothing to move any more");
            assert_eq!(spool.location(&id), None);
            assert_eq!(spool.bytes.used(), 3000, "only the other message is counted");
            spool.sync_pending().await.unwrap();
            id
        })
    });
    let rec = recover(&dir, 1).unwrap().pop().unwrap();
    assert!(rec.messages.iter().all(|m| m.queue_id != id), "the copy does not bring it back");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_moved_message_is_counted_once_against_spool_bytes_max() {
    let dir = temp_dir("compact-bytes");
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open_spool(&d, small_segments(SPREAD_SEGMENT_BYTES)).await;
            let (kept, _) = spread_and_finish(&spool).await;
            let owed = 3 * 1024;
            assert_eq!(spool.bytes.used(), owed);
            drop(spool);
            // Reopen with the bound exactly full: compaction still moves.
            let rec = recover(&d, 1).unwrap().pop().unwrap();
            let bytes = SpoolBytes::new(rec.pending_bytes());
            let bounded = SpoolSettings { bytes_max: owed, ..small_segments(SPREAD_SEGMENT_BYTES) };
            let spool = Spool::open(&d, 0, &rec, bounded, bytes.clone()).await.unwrap();
            let id = spool.next_queue_id();
            assert_eq!(spool.store(&id, &envelope(1), ACCEPTED_SECS, b"x").await, Err(StoreError::QueueFull));
            assert_eq!(spool.compact(&CompactionPolicy::default(), SOON_SECS).await.moved, 3);
            assert_eq!(bytes.used(), owed, "the copies take no room of their own");
            assert_eq!(spool.store(&id, &envelope(1), ACCEPTED_SECS, b"x").await, Err(StoreError::QueueFull));
            for k in &kept {
                assert!(spool.mark_done(&k.id, &k.remaining));
            }
            assert_eq!(bytes.used(), 0, "finishing a moved message releases it once");
            spool.store(&id, &envelope(1), ACCEPTED_SECS, b"x").await.unwrap();
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_policy_moves_sparse_and_old_segments_only() {
    let dir = temp_dir("policy");
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open_spool(&d, small_segments(4096)).await;
            // Segment 1: two messages, both owed (fully live). Segment 2:
            // two, one owed (about half live). Then the current segment.
            let mut ids = Vec::new();
            for n in 0..5 {
                let id = spool.next_queue_id();
                spool.store(&id, &envelope(1), ACCEPTED_SECS, &data(n, 1800)).await.unwrap();
                ids.push(id);
            }
            assert!(spool.mark_done(&ids[3], &[0]));
            let policy = CompactionPolicy::default();
            assert_eq!(spool.compact(&policy, SOON_SECS).await.moved, 0, "half live and young: kept");
            let due = ACCEPTED_SECS + policy.old_secs;
            assert_eq!(spool.compact(&policy, due - 1).await.moved, 0, "not yet old");
            let report = spool.compact(&policy, due).await;
            assert_eq!((report.segments, report.moved), (1, 1), "old and half live: compacted; fully live: kept");
            assert_eq!(spool.compact(&policy, due + policy.old_secs - 1).await.moved, 0, "the copy is young again");
            // Stopped: nothing moves any more.
            spool.stop_compaction();
            assert!(spool.mark_done(&ids[0], &[0]));
            assert_eq!(spool.compact(&policy, due * 2).await, Default::default());
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_old_segment_that_keeps_marker_segments_is_moved_whatever_its_share() {
    let dir = temp_dir("markers");
    let d = dir.clone();
    let (a, b, d_id) = on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open_spool(&d, small_segments(4096)).await;
            let store = |n: usize, rcpts: usize, len: usize| {
                let spool = spool.clone();
                async move {
                    let id = spool.next_queue_id();
                    spool.store(&id, &envelope(rcpts), ACCEPTED_SECS, &data(n, len)).await.unwrap();
                    id
                }
            };
            // Segment 1: A and B, both owed (all of it live).
            let (a, b) = (store(1, 3, 1500).await, store(2, 3, 1500).await);
            let first = spool.location(&a).unwrap().segment;
            // Segment 2: C, and A's partial marker; C finished: kept only for that marker.
            let c = store(3, 1, 3000).await;
            let second = spool.location(&c).unwrap().segment;
            assert!(!spool.mark_done(&a, &[0]));
            let d_id = store(4, 1, 3000).await;
            assert!(spool.mark_done(&c, &[0]));
            spool.sync_pending().await.unwrap();
            assert!(second.exists(), "kept for the marker");
            let policy = CompactionPolicy::default();
            assert_eq!(spool.compact(&policy, SOON_SECS).await.moved, 0, "young");
            let report = spool.compact(&policy, ACCEPTED_SECS + policy.old_secs).await;
            assert_eq!(report.moved, 2, "{report:?}");
            spool.sync_pending().await.unwrap();
            assert!(!first.exists() && !second.exists(), "the old segment and the one kept for its marker are gone");
            (a, b, d_id)
        })
    });
    let rec = recover(&dir, 1).unwrap().pop().unwrap();
    let remaining = |id: &QueueId| rec.messages.iter().find(|m| &m.queue_id == id).map(|m| m.remaining.clone());
    assert_eq!((remaining(&a), remaining(&b), remaining(&d_id)), (Some(vec![1, 2]), Some(vec![0, 1, 2]), Some(vec![0])));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_record_is_the_message_and_envelope_plus_64_bytes_and_a_marker_33_plus_4_per_recipient() {
    // The numbers the README gives for the disk a backlog needs.
    let env = envelope(3);
    let id = QueueId("0012345678ABCDEF".into());
    let mut out = Vec::new();
    record::encode_message(&mut out, &id, &env, ACCEPTED_SECS, &data(0, 1000));
    let strings = env.connection_id.len() + env.peer.to_string().len() + env.helo.len() + env.mail_from.len();
    let recipients: usize = env.recipients.iter().map(|r| 4 + r.len()).sum();
    assert_eq!(out.len(), 64 + id.0.len() - 16 + strings + recipients + 1000);
    out.clear();
    record::encode_done(&mut out, &id, &[0, 2]);
    assert_eq!(out.len(), 33 + 4 * 2);
}

#[test]
fn after_compaction_the_disk_holds_about_what_is_owed() {
    let dir = temp_dir("disk");
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let segment_bytes = 64 * 1024;
            let (spool, _) = open_spool(&d, SpoolSettings { batch_bytes_max: segment_bytes as usize, ..small_segments(segment_bytes) }).await;
            // Groups of 16 concurrent 4 KB messages (about a segment each),
            // one owed per group: each pins its segment.
            let mut owed = 0;
            for group in 0..20 {
                let stores: Vec<_> = (0..16)
                    .map(|i| {
                        let spool = spool.clone();
                        glommio::spawn_local(async move {
                            let id = spool.next_queue_id();
                            spool.store(&id, &envelope(1), ACCEPTED_SECS, &data(group * 16 + i, 4000)).await.unwrap();
                            id
                        })
                    })
                    .collect();
                for (i, store) in stores.into_iter().enumerate() {
                    let id = store.await;
                    if i == 0 {
                        owed += spool.state.borrow().live[&id].record_len;
                    } else {
                        assert!(spool.mark_done(&id, &[0]));
                    }
                }
            }
            spool.sync_pending().await.unwrap();
            let before = spool.disk_bytes();
            assert!(before > 15 * segment_bytes, "{before} bytes pinned by {owed} owed");
            spool.compact(&CompactionPolicy::default(), SOON_SECS).await;
            spool.sync_pending().await.unwrap();
            let after = spool.disk_bytes();
            assert!(after <= owed + 2 * segment_bytes, "{after} bytes on disk for {owed} owed");
            let files: u64 = segment_files(&d).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
            assert_eq!(files, after, "disk_bytes is what the files take");
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_chore_compacts_on_its_own_and_reports_each_pass() {
    let dir = temp_dir("chore");
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open_spool(&d, small_segments(SPREAD_SEGMENT_BYTES)).await;
            let (kept, old) = spread_and_finish(&spool).await;
            let (tx, rx) = futures_channel::oneshot::channel();
            let tx = std::cell::RefCell::new(Some(tx));
            let policy = CompactionPolicy { every: std::time::Duration::from_millis(1), ..CompactionPolicy::default() };
            spool.start_compaction(policy, move |report| {
                if report.moved > 0 {
                    if let Some(tx) = tx.borrow_mut().take() {
                        let _ = tx.send(report.clone());
                    }
                }
            });
            let report = rx.await.unwrap();
            assert_eq!((report.moved, report.failed, report.last_error), (3, 0, None));
            spool.stop_compaction();
            spool.sync_pending().await.unwrap();
            assert!(old.iter().all(|p| !p.exists()));
            for k in &kept {
                assert_eq!(spool.read_message(&k.id).await.unwrap(), k.data);
            }
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reading_follows_a_move_that_deleted_the_old_place() {
    let dir = temp_dir("follow");
    let d = dir.clone();
    on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open_spool(&d, small_segments(SPREAD_SEGMENT_BYTES)).await;
            let (kept, _) = spread_and_finish(&spool).await;
            let before = spool.location(&kept[0].id).unwrap();
            spool.compact(&CompactionPolicy::default(), SOON_SECS).await;
            spool.sync_pending().await.unwrap();
            let err = read_body(&before).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "the old place is gone");
            assert_eq!(spool.read_message(&kept[0].id).await.unwrap(), kept[0].data);
            assert!(spool.mark_done(&kept[0].id, &kept[0].remaining));
            assert_eq!(spool.read_message(&kept[0].id).await.unwrap_err().kind(), std::io::ErrorKind::NotFound);
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
