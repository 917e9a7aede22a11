//! End-to-end: a temporary failure downstream is retried, not lost.
//!
//! - The only host answers 450 (at RCPT, or at the final dot): the message
//!   is deferred, retried on the backoff, and delivered once the downstream
//!   says 250. The log tells `deferred → retry → delivered` for its qid.
//! - A route of two hosts whose first is dead or answers 4xx: the second
//!   host gets the message at once, without waiting for the backoff.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Backoff of the "no waiting" tests: any retry would blow the deadline.
const LONG_BACKOFF_SECS: u64 = 300;
/// Deadline for "at once": far below the backoff above.
const AT_ONCE: Duration = Duration::from_secs(15);

fn send_one(server: &Portcullis, subject: &str) -> String {
    let result = Swaks::new(server.addr())
        .to("rcpt@example.test")
        .header(&format!("Subject: {subject}"))
        .body("retry me")
        .run();
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    result.queue_id().expect("queue id in the 250")
}

/// Index of the first log line that holds every needle, after line `from`.
fn line_index(log: &[String], from: usize, needles: &[&str]) -> Option<usize> {
    log.iter()
        .enumerate()
        .skip(from)
        .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
        .map(|(i, _)| i)
}

/// The story of `qid` in the log: deferred (by `relay`), then retry, then
/// delivered, in this order (one shard, so file order is event order).
fn assert_deferred_retry_delivered(server: &Portcullis, qid: &str, relay: &str) {
    let q = format!("qid={qid}");
    let log: Vec<String> = server.log().lines().map(str::to_owned).collect();
    let text = log.join("\n");
    let deferred = line_index(&log, 0, &[" deferred ", &q, relay])
        .unwrap_or_else(|| panic!("no deferred line for {qid}\n{text}"));
    let retry = line_index(&log, deferred, &[" retry ", &q])
        .unwrap_or_else(|| panic!("no retry line after deferred for {qid}\n{text}"));
    let delivered = line_index(&log, retry, &[" delivered ", &q, relay, "reply=\"250"])
        .unwrap_or_else(|| panic!("no delivered line after retry for {qid}\n{text}"));
    assert!(deferred < retry && retry < delivered);
}

/// The downstream refuses with 450 at `command` until it is replaced by
/// one that accepts, on the same port.
fn soft_reject_then_accept(command: &str) {
    let mut refusing = Sink::builder().reject_soft(&[command]).start();
    let port = refusing.port();
    let server = Portcullis::builder()
        .cores(1)
        .route("example.test", &refusing)
        .retry_secs(1, 2)
        .start();
    let subject = format!("soft reject at {command}");
    let qid = send_one(&server, &subject);
    let deferred = server.wait_for_log(&format!("deferred qid={qid}"), 1, WAIT);
    assert!(deferred[0].contains("450"), "{deferred:?}");
    // At least one retry also hit the refusing downstream (the backoff is
    // short), so "deferred" is not a one-off.
    server.wait_for_log(&format!("deferred qid={qid}"), 2, WAIT);
    assert!(
        server.log_lines(&format!("delivered qid={qid}")).is_empty(),
        "delivered although the downstream said 450:\n{}",
        server.log()
    );

    refusing.stop();
    let accepting = Sink::builder().port(port).start();
    let got = accepting.wait_for_messages(1, WAIT);
    assert_eq!(got[0].header("Subject").as_deref(), Some(subject.as_str()));
    assert_eq!(got[0].recipients(), ["rcpt@example.test"]);
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);
    assert_deferred_retry_delivered(&server, &qid, &format!("relay=127.0.0.1:{port}"));
    // Exactly one copy reached the accepting downstream.
    assert!(!wait_until(Duration::from_secs(2), || accepting.count() > 1));
}

#[test]
fn soft_reject_at_rcpt_is_retried_until_delivered() {
    soft_reject_then_accept("RCPT");
}

#[test]
fn soft_reject_at_final_dot_is_retried_until_delivered() {
    soft_reject_then_accept(".");
}

/// Sends one message over a two-host route and returns (qid, time to the
/// second host's copy).
fn via_second_host(first: &str, second: &Sink) -> (Portcullis, String, Duration) {
    let server = Portcullis::builder()
        .cores(1)
        .route_hosts("example.test", &[first, &second.host_port()])
        .retry_secs(LONG_BACKOFF_SECS, LONG_BACKOFF_SECS)
        .start();
    let started = Instant::now();
    let qid = send_one(&server, "second host");
    let got = second.wait_for_messages(1, AT_ONCE);
    let took = started.elapsed();
    assert_eq!(got[0].header("Subject").as_deref(), Some("second host"));
    let delivered = server.wait_for_log(&format!("delivered qid={qid}"), 1, WAIT);
    assert!(
        delivered[0].contains(&format!("relay={}", second.host_port())),
        "{delivered:?}"
    );
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);
    assert!(
        server.log_lines(&format!("retry qid={qid}")).is_empty(),
        "waited for the backoff instead of trying the next host:\n{}",
        server.log()
    );
    (server, qid, took)
}

#[test]
fn dead_first_host_falls_through_to_second_at_once() {
    let dead = format!("127.0.0.1:{}", free_port());
    let second = Sink::start();
    let (server, qid, took) = via_second_host(&dead, &second);
    let deferred = server.log_lines(&format!("deferred qid={qid}"));
    assert!(
        deferred
            .iter()
            .any(|l| l.contains(&format!("relay={dead}"))),
        "the dead host was not tried first: {deferred:?}\n{}",
        server.log()
    );
    eprintln!("dead first host: delivered via second host in {took:?}");
}

#[test]
fn soft_rejecting_first_host_falls_through_to_second_at_once() {
    let first = Sink::builder().reject_soft(&["RCPT"]).start();
    let second = Sink::start();
    let (server, qid, took) = via_second_host(&first.host_port(), &second);
    let deferred = server.log_lines(&format!("deferred qid={qid}"));
    assert!(
        deferred
            .iter()
            .any(|l| l.contains(&format!("relay={}", first.host_port())) && l.contains("450")),
        "the 450 of the first host is not logged: {deferred:?}"
    );
    assert_eq!(first.count(), 0);
    eprintln!("4xx first host: delivered via second host in {took:?}");
}

/// The downstream drops the connection after the final dot without a
/// reply: nothing was confirmed, so the message is deferred and retried
/// (a duplicate is the price; a loss is not allowed), and delivered once a
/// downstream answers.
#[test]
fn connection_dropped_before_the_dot_reply_is_retried() {
    let mut dropping = Sink::builder().disconnect_at(&["."]).start();
    let port = dropping.port();
    let server = Portcullis::builder()
        .cores(1)
        .route("example.test", &dropping)
        .retry_secs(1, 2)
        .start();
    let qid = send_one(&server, "dropped at dot");
    server.wait_for_log(&format!("deferred qid={qid}"), 1, WAIT);
    server.wait_for_log(&format!("retry qid={qid}"), 1, WAIT);
    assert!(
        server.log_lines(&format!("delivered qid={qid}")).is_empty(),
        "a dot without a reply counted as delivered:\n{}",
        server.log()
    );
    dropping.stop();
    let accepting = Sink::builder().port(port).start();
    let got = accepting.wait_for_messages(1, WAIT);
    assert_eq!(got[0].header("Subject").as_deref(), Some("dropped at dot"));
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);
    assert_deferred_retry_delivered(&server, &qid, &format!("relay=127.0.0.1:{port}"));
}

/// 421 at MAIL from the first host (it closes): the second host gets the
/// message at once.
#[test]
fn first_host_421_falls_through_to_second_at_once() {
    let first = Sink::builder().close_421_at(&["MAIL"]).start();
    let second = Sink::start();
    let (server, qid, took) = via_second_host(&first.host_port(), &second);
    let deferred = server.log_lines(&format!("deferred qid={qid}"));
    assert!(
        deferred
            .iter()
            .any(|l| l.contains(&format!("relay={}", first.host_port()))),
        "the 421 of the first host is not logged: {deferred:?}"
    );
    eprintln!("421 first host: delivered via second host in {took:?}");
}
