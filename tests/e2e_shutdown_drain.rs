//! End-to-end: done markers of deliveries that finish during shutdown are
//! applied.
//!
//! A message is spooled on the shard that accepted its connection and
//! delivered by that same shard (issue 10: delivery where the message is),
//! which marks it done in its own spool when the downstream says 250.
//! Here, with `--cores 2` and eight routed domains, six domains go to an
//! smtp-sink that waits 2 s before answering the final dot, so their
//! deliveries are in flight when SIGTERM comes: the shards get their 250s
//! during the shutdown, when they have no session left, and must still
//! apply and sync the markers. Two domains go to a sink that is down until
//! the restart, so the restart has mail to deliver too.
//!
//! What must hold: exit 0; every shard's `stopped` line says
//! `unhandled_requests=0 abandoned_attempts=0`; every message delivered in
//! the first run is also `removed` from its spool in that run (its marker
//! was applied, not lost); the restart recovers exactly the messages not
//! delivered before; every message reaches a sink exactly once over both
//! runs (a lost or unsynced marker shows up as a second copy), and nothing
//! is owed at the end (`owed=0`).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const SHARDS: usize = 2;
const DOMAINS: usize = 8;
const MESSAGES: usize = 32;
const CLIENTS: usize = 8;
/// Domains from this one on go to the sink that is down in the first run.
const LATE_FROM: usize = 6;
/// The sink holds its reply to the final dot this long: less than the
/// shutdown's wait for attempts in progress (`SHUTDOWN_DRAIN_MS`, 5 s),
/// so no attempt is abandoned and duplicates cannot be excused.
const DOT_DELAY_SECS: u32 = 2;

fn domain(n: usize) -> String {
    format!("d{}.test", n % DOMAINS)
}

/// Sends messages `n` = client, client + CLIENTS, ... one connection each;
/// returns (n, queue id) for every 250.
fn send_all(server: &Portcullis) -> BTreeMap<usize, String> {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let addr = server.addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let acked = acked.clone();
            thread::spawn(move || {
                for n in (client..MESSAGES).step_by(CLIENTS) {
                    let (mut smtp, _) = RawSmtp::connect(addr).unwrap();
                    let to = format!("n{n}@{}", domain(n));
                    let data = format!("Subject: drain {n}\r\n\r\nmessage {n}\r\n");
                    let reply = smtp
                        .send_mail("s@client.test", &[&to], data.as_bytes())
                        .unwrap();
                    assert_eq!(reply.code, 250, "message {n}: {reply:?}");
                    acked.lock().unwrap().insert(n, reply.queue_id().unwrap());
                    let _ = smtp.cmd("QUIT");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    let acked = acked.lock().unwrap().clone();
    acked
}

/// Lines of mail-log `event` in one run's log.
fn events<'a>(run: &'a str, event: &'a str) -> impl Iterator<Item = &'a str> {
    run.lines()
        .filter(move |l| l.split_whitespace().nth(2) == Some(event))
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Copies of each message number at the sinks.
fn copies_at(sinks: &[&Sink]) -> BTreeMap<usize, usize> {
    let mut copies = BTreeMap::new();
    for m in sinks.iter().flat_map(|s| s.messages()) {
        let subject = m.header("Subject").unwrap_or_default();
        let n: usize = subject.trim_start_matches("drain ").parse().unwrap();
        *copies.entry(n).or_default() += 1;
    }
    copies
}

fn assert_stopped_clean(run: &str, which: &str) -> Vec<String> {
    let stopped: Vec<String> = events(run, "stopped").map(str::to_owned).collect();
    assert_eq!(stopped.len(), SHARDS, "{which}: {run}");
    for line in &stopped {
        assert_eq!(field(line, "unhandled_requests"), "0", "{which}: {line}");
        assert_eq!(field(line, "abandoned_attempts"), "0", "{which}: {line}");
    }
    stopped
}

/// SIGTERM, exit 0 in time; returns the log of the run that ended.
fn stop(server: &mut Portcullis) -> String {
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", server.log());
    server.run_logs().pop().unwrap()
}

/// "(K message(s) recovered" from a run's start-up line.
fn recovered(run: &str) -> usize {
    let start = run.lines().next().unwrap_or_default();
    let before = start.split(" message(s) recovered").next().unwrap();
    before
        .rsplit('(')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{start}"))
}

#[test]
fn done_markers_of_deliveries_finishing_during_shutdown_are_applied() {
    let slow = Sink::builder().delay(".", DOT_DELAY_SECS).start();
    // Down in the first run: its mail is owed at the stop, sent after the restart.
    let mut late = Sink::start();
    late.stop();
    let mut builder = Portcullis::builder()
        .cores(SHARDS)
        .retry_secs(1, 1)
        .arg("--connections-per-host")
        .arg("64");
    for d in 0..DOMAINS {
        let sink = if d < LATE_FROM { &slow } else { &late };
        builder = builder.relay_domain(&domain(d)).route(&domain(d), sink);
    }
    let mut server = builder.start();
    // A SIGTERM while a shard is still starting is another story.
    server.wait_every_shard_serving(SHARDS, WAIT);

    assert_eq!(send_all(&server).len(), MESSAGES);
    let to_slow = (0..MESSAGES).filter(|n| n % DOMAINS < LATE_FROM).count();
    // Every slow delivery under way: the sink has all their data and has
    // not answered yet (or, on a slow machine, answered a few already).
    assert!(
        wait_until(WAIT, || slow.count() == to_slow),
        "{}",
        slow.log()
    );
    // Delivered lines are written out before the marker is sent.
    let done_before: Vec<String> = server.event_lines("delivered");
    let first = stop(&mut server);

    assert_stopped_clean(&first, "first run");
    let queued: BTreeMap<&str, &str> = events(&first, "queued")
        .map(|l| (field(l, "qid"), field(l, "shard")))
        .collect();
    let removed: Vec<&str> = events(&first, "removed").map(|l| field(l, "qid")).collect();
    let mut during_shutdown = 0;
    for line in events(&first, "delivered") {
        let qid = field(line, "qid");
        assert!(
            removed.contains(&qid),
            "delivered, marker not applied: {line}\n{first}"
        );
        assert_eq!(queued.get(qid).copied(), Some(field(line, "shard")), "delivered by another shard than its spool's: {line}");
        during_shutdown += usize::from(!done_before.iter().any(|l| l == line));
    }
    let delivered_first = events(&first, "delivered").count();
    eprintln!(
        "first run: {delivered_first} delivered, {} of them before SIGTERM, {during_shutdown} \
         during the shutdown; {} removed",
        done_before.len(),
        removed.len()
    );
    assert!(
        during_shutdown > 0,
        "no delivery finished during the shutdown\n{first}"
    );
    assert_eq!(
        delivered_first, to_slow,
        "every slow delivery finishes\n{first}"
    );

    // The restart owes exactly what was not delivered: no marker was lost
    // on the way or left unsynced.
    late.start_again();
    server.restart();
    server.wait_every_shard_serving(SHARDS, WAIT);
    let all = || copies_at(&[&slow, &late]);
    assert!(
        wait_until(WAIT, || all().len() == MESSAGES),
        "{:?}\n{}",
        all(),
        server.log()
    );
    let second = stop(&mut server);
    eprintln!("second run: {} recovered", recovered(&second));
    assert_eq!(recovered(&second), MESSAGES - delivered_first, "{second}");
    for line in assert_stopped_clean(&second, "second run") {
        assert_eq!(field(&line, "owed"), "0", "the spool is not empty: {line}");
    }
    let twice: Vec<_> = all().into_iter().filter(|&(_, c)| c != 1).collect();
    assert!(
        twice.is_empty(),
        "(message, copies) not once: {twice:?}\n{}",
        server.log()
    );
}
