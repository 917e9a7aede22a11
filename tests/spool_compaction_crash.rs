//! `kill -9` of a spool while it stores, finishes and compacts: nothing
//! acknowledged is lost, and no recipient whose done marker was synced
//! comes back.
//!
//! The test runs itself as a child process (`CHILD_ENV` names its spool
//! directory). The child opens one shard's spool with small segments and, round
//! after round, stores messages of three recipients while a compaction pass
//! runs, finishes most messages and part of the rest (one in four keeps
//! recipient 2 owed for good, so old segments stay pinned and get
//! compacted), then `sync_pending`. It prints a ledger line after each
//! store returned Ok, before each `mark_done`, and after each sync. The
//! parent SIGKILLs it at some sync count, then recovers the directory and
//! checks it against the ledger: every acknowledged message not finished
//! is owed, at exactly the place its bytes are (byte for byte), with every
//! recipient not marked still owed and no recipient marked before the last
//! sync owed again. Then a restart finishes everything and the spool
//! shrinks to its one current segment.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;

use portcullis::message::{BodyType, Envelope, QueueId};
use portcullis::spool::recovery::{recover, RecoveredShard};
use portcullis::spool::{CompactionPolicy, Spool, SpoolBytes, SpoolSettings};

const CHILD_ENV: &str = "PORTCULLIS_COMPACTION_CHILD_DIR";
const CHILD_TEST: &str = "child_stores_finishes_and_compacts_until_killed";
/// Small segments: a few rounds fill one, so compaction has work every round.
const SEGMENT_BYTES: u64 = 16 * 1024;
const MESSAGES_PER_ROUND: usize = 8;

fn envelope() -> Envelope {
    Envelope {
        connection_id: "C0-1".into(),
        peer: "127.0.0.1:4000".parse().unwrap(),
        helo: "client.test".into(),
        esmtp: true,
        mail_from: "s@sender.test".into(),
        body_type: BodyType::SevenBit,
        smtputf8: false,
        recipients: (0..3).map(|i| format!("r{i}@example.test")).collect(),
        ..Default::default()
    }
}

/// Message `n`'s bytes: numbered, 200 to 2 000 bytes long.
fn data(n: usize) -> Vec<u8> {
    let mut out = format!("Subject: message {n}\r\n\r\n").into_bytes();
    out.extend((0..200 + (n * 37) % 1800).map(|k| b'a' + ((k + n) % 26) as u8));
    out
}

/// The recipients message `n` finishes `age` rounds after it was stored:
/// most finish whole after a round; one in four finishes 0, then 1, never 2.
fn finishes(n: usize, age: usize) -> &'static [u32] {
    match (n % 4, age) {
        (0, 1) => &[0],
        (0, 4) => &[1],
        (_, 1) => &[0, 1, 2],
        _ => &[],
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn open(dir: &Path) -> (Rc<Spool>, RecoveredShard) {
    let rec = recover(dir, 1).unwrap().pop().unwrap();
    let settings = SpoolSettings { segment_bytes_max: SEGMENT_BYTES, ..SpoolSettings::default() };
    let spool = Spool::open(dir, 0, &rec, settings, SpoolBytes::new(rec.pending_bytes())).await.unwrap();
    (spool, rec)
}

fn on_executor<T: Send + 'static>(f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(f).unwrap().join().unwrap()
}

/// The child: runs until killed (or 10 000 rounds, far past any kill point).
#[test]
fn child_stores_finishes_and_compacts_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    on_executor(move || {
        Box::pin(async move {
            let (spool, _) = open(&dir).await;
            // Anything under half owed is compacted: more moves, more crash points.
            let policy = CompactionPolicy { live_percent: 50, ..CompactionPolicy::default() };
            let mut stored: Vec<(QueueId, usize, usize)> = Vec::new();
            for round in 0..10_000 {
                let pass = {
                    let spool = spool.clone();
                    glommio::spawn_local(async move { spool.compact(&policy, now_secs()).await })
                };
                let stores: Vec<_> = (0..MESSAGES_PER_ROUND)
                    .map(|i| {
                        let spool = spool.clone();
                        let n = round * MESSAGES_PER_ROUND + i;
                        glommio::spawn_local(async move {
                            let id = spool.next_queue_id();
                            spool.store(&id, &envelope(), 1, &data(n)).await.unwrap();
                            (id, n)
                        })
                    })
                    .collect();
                // Markers go in between the stores and the pass's moves.
                let due: Vec<(QueueId, &'static [u32])> =
                    stored.iter().map(|(id, n, r)| (id.clone(), finishes(*n, round - r))).filter(|(_, done)| !done.is_empty()).collect();
                let mut due = due.into_iter();
                for store in stores {
                    let (id, n) = store.await;
                    println!("LEDGER stored {} {n}", id.0);
                    stored.push((id, n, round));
                    due.by_ref().take(4).for_each(|(id, done)| mark(&spool, &id, done));
                }
                due.for_each(|(id, done)| mark(&spool, &id, done));
                let report = pass.await;
                println!("LEDGER moved {}", report.moved);
                spool.sync_pending().await.unwrap();
                println!("LEDGER synced");
            }
        })
    });
}

/// Log the intent first: a marker is in memory once `mark_done` returns.
fn mark(spool: &Rc<Spool>, id: &QueueId, done: &[u32]) {
    println!("LEDGER marked {} {}", id.0, done.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
    spool.mark_done(id, done);
}

/// What the child's ledger says up to the kill.
#[derive(Default)]
struct Ledger {
    stored: HashMap<QueueId, usize>,
    /// Recipients marked at all, and marked before a sync that returned.
    marked: HashSet<(QueueId, u32)>,
    synced: HashSet<(QueueId, u32)>,
    /// Messages compaction moved.
    moved: usize,
}

/// Run the child in `dir` and kill it once it has synced `syncs` times.
fn run_child_and_kill(dir: &Path, syncs: usize) -> Ledger {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ledger = Ledger::default();
    let mut unsynced = Vec::new();
    let mut seen = 0;
    let mut killed = false;
    // After the kill, the lines already in the pipe still count.
    while let Some(Ok(line)) = lines.next() {
        // The harness's "test … ..." may share the first line.
        let Some(at) = line.find("LEDGER ") else { continue };
        let words: Vec<&str> = line[at..].split_whitespace().collect();
        match words.as_slice() {
            ["LEDGER", "stored", id, n] => {
                ledger.stored.insert(QueueId(id.to_string()), n.parse().unwrap());
            }
            ["LEDGER", "marked", id, list] => {
                for r in list.split(',') {
                    let key = (QueueId(id.to_string()), r.parse().unwrap());
                    ledger.marked.insert(key.clone());
                    unsynced.push(key);
                }
            }
            ["LEDGER", "moved", n] => ledger.moved += n.parse::<usize>().unwrap(),
            ["LEDGER", "synced"] => {
                ledger.synced.extend(unsynced.drain(..));
                seen += 1;
                if seen == syncs && !killed {
                    child.kill().unwrap(); // SIGKILL
                    killed = true;
                }
            }
            _ => {}
        }
    }
    assert!(killed, "the child ended after {seen} syncs without being killed");
    child.wait().unwrap();
    ledger
}

fn check_recovered(dir: &Path, ledger: &Ledger) -> usize {
    let rec = recover(dir, 1).unwrap().pop().unwrap();
    let owed: HashMap<&QueueId, _> = rec.messages.iter().map(|m| (&m.queue_id, m)).collect();
    assert_eq!(owed.len(), rec.messages.len(), "a queue id recovered twice");
    for (id, &n) in &ledger.stored {
        let unmarked: Vec<u32> = (0..3).filter(|r| !ledger.marked.contains(&(id.clone(), *r))).collect();
        let Some(m) = owed.get(id) else {
            assert!(unmarked.is_empty(), "message {n} ({id}) lost; recipients {unmarked:?} never finished");
            continue;
        };
        for r in &unmarked {
            assert!(m.remaining.contains(r), "message {n}: recipient {r} lost");
        }
        for r in &m.remaining {
            assert!(!ledger.synced.contains(&(id.clone(), *r)), "message {n}: recipient {r} came back after its marker was synced");
        }
        let bytes = std::fs::read(m.body.segment.as_path()).unwrap();
        let at = m.body.offset as usize;
        assert_eq!(&bytes[at..at + m.body.len as usize], &data(n)[..], "message {n} byte for byte");
    }
    rec.messages.len()
}

/// A restart finishes everything owed; only the current segment is left.
fn finish_all(dir: &Path) {
    let d = dir.to_path_buf();
    let segments = on_executor(move || {
        Box::pin(async move {
            let (spool, rec) = open(&d).await;
            spool.compact(&CompactionPolicy::default(), now_secs()).await;
            for m in &rec.messages {
                assert_eq!(spool.read_message(&m.queue_id).await.unwrap().len() as u64, m.body.len);
                assert!(spool.mark_done(&m.queue_id, &m.remaining));
            }
            spool.sync_pending().await.unwrap();
            spool.segments_on_disk()
        })
    });
    assert_eq!(segments, 1);
    assert_eq!(std::fs::read_dir(dir.join("shard-0")).unwrap().count(), 1);
}

#[test]
fn kill_9_during_compaction_loses_nothing_and_repeats_no_synced_recipient() {
    for syncs in [7, 23, 61] {
        let dir = std::env::temp_dir().join(format!("pc-compaction-crash-{syncs}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ledger = run_child_and_kill(&dir, syncs);
        assert!(ledger.stored.len() >= syncs * MESSAGES_PER_ROUND);
        assert!(ledger.moved > 0, "compaction moved nothing before the kill");
        let owed = check_recovered(&dir, &ledger);
        assert!(owed >= syncs * MESSAGES_PER_ROUND / 4, "{owed} owed: the deferred quarter at least");
        finish_all(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
