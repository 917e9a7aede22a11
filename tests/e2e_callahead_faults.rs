//! End to end: call-ahead against bad downstreams (issue 7, "Bad input"):
//! a downstream that is unreachable, answers 421, stalls, sends garbage,
//! sends endless continuation lines, stalls in the middle of a reply, or
//! closes after the banner. Each must end in the profile's failure action
//! (default 451 "Recipient validation failed, try again later") within the
//! validation timeout, with a `callahead` log line that says which fault,
//! and the client never waits much longer than that timeout.
//!
//! Real programs where they can make the fault (a dead port, smtp-sink's
//! `-Q CONNECT` and `-W RCPT:secs`); the scripted fake
//! (`common::fake_smtp`) for the rest. `validation_timeout_secs = 1`; the
//! time bound asserted is 3× that, so a loaded CI box does not fail it,
//! while a client left waiting for a stalled downstream (30 s and more)
//! does. Nothing sleeps; replies are awaited.

mod common;

use common::callahead::*;
use common::*;
use std::time::{Duration, Instant};

const TIMEOUT_SECS: u64 = 1;
/// The most a client may wait for its reply: the validation timeout with
/// room for a slow machine, far below any downstream stall used here.
const CLIENT_WAIT_MAX: Duration = Duration::from_secs(3 * TIMEOUT_SECS);

fn setup(downstream: &str) -> Callahead {
    CallaheadSetup::new()
        .route("example.test", downstream)
        .profile("validation_timeout_secs", &TIMEOUT_SECS.to_string())
        .profile("breaker_failures", "0")
        .start()
}

/// Asserts the failure reply comes within the bound, and returns the
/// decision line (the test checks it names the fault).
fn assert_failure_in_time(ca: &Callahead, rcpt: &str) -> Decision {
    let mut raw = ca.session();
    let started = Instant::now();
    let reply = raw
        .cmd(&format!("RCPT TO:<{rcpt}>"))
        .unwrap_or_else(|e| panic!("{e}\n{}", ca.server.log()));
    let waited = started.elapsed();
    assert_eq!(reply.code, FAILURE_CODE, "{reply:?}");
    assert!(reply.text().contains(FAILURE_TEXT), "{reply:?}");
    assert!(
        waited < CLIENT_WAIT_MAX,
        "client waited {waited:?} (timeout {TIMEOUT_SECS}s)"
    );
    // The session goes on after a failure reply.
    assert_eq!(raw.cmd("RSET").unwrap().code, 250);
    let _ = raw.cmd("QUIT");
    let line = ca.wait_decision(rcpt, 1).remove(0);
    assert_eq!(
        (line.field("source"), line.field("verdict")),
        ("probe".into(), "failure".into()),
        "{line:?}"
    );
    assert_eq!(line.field("action"), "reject", "{line:?}");
    line
}

/// Whether the line names the fault with one of `words` (the wording is the
/// implementation's; any of these says which fault it was).
fn names_fault(line: &Decision, words: &[&str]) -> bool {
    let text = format!("{} {}", line.why(), line.reply()).to_ascii_lowercase();
    eprintln!("fault named: why={:?} reply={:?}", line.why(), line.reply());
    words.iter().any(|w| text.contains(w))
}

#[test]
fn connection_refused() {
    let dead = format!("127.0.0.1:{}", free_port());
    let ca = setup(&dead);
    let line = assert_failure_in_time(&ca, "a@example.test");
    assert!(names_fault(&line, &["refused", "connect"]), "{line:?}");
}

#[test]
fn greeting_421() {
    let sink = Sink::builder().close_421_at(&["CONNECT"]).start();
    let ca = setup(&sink.host_port());
    let line = assert_failure_in_time(&ca, "a@example.test");
    assert!(
        line.reply().starts_with("421"),
        "the downstream's reply is logged: {line:?}"
    );
}

#[test]
fn stall_beyond_the_validation_timeout() {
    let sink = Sink::builder().delay("RCPT", 30).start();
    let ca = setup(&sink.host_port());
    let line = assert_failure_in_time(&ca, "a@example.test");
    assert!(names_fault(&line, &["timeout", "timed out"]), "{line:?}");
}

#[test]
fn garbage_instead_of_a_reply() {
    let fake = FakeSmtp::start(Fault::Garbage(Step::Rcpt));
    let ca = setup(&fake.host_port());
    let line = assert_failure_in_time(&ca, "a@example.test");
    assert!(
        names_fault(
            &line,
            &["garbage", "malformed", "invalid", "syntax", "protocol"]
        ),
        "{line:?}"
    );
    assert_eq!(fake.count_commands("RCPT"), 1);
}

#[test]
fn garbage_banner() {
    let fake = FakeSmtp::start(Fault::Garbage(Step::Banner));
    let ca = setup(&fake.host_port());
    let line = assert_failure_in_time(&ca, "a@example.test");
    assert!(
        names_fault(
            &line,
            &["garbage", "malformed", "invalid", "syntax", "protocol"]
        ),
        "{line:?}"
    );
}

#[test]
fn endless_continuation_lines() {
    let fake = FakeSmtp::start(Fault::EndlessLines(Step::Ehlo));
    let ca = setup(&fake.host_port());
    let line = assert_failure_in_time(&ca, "a@example.test");
    assert!(
        names_fault(
            &line,
            &[
                "protocol",
                "line",
                "long",
                "too many",
                "timeout",
                "timed out"
            ]
        ),
        "{line:?}"
    );
    // The probe connection is given up, not read forever.
    assert!(
        wait_until(WAIT, || fake.open_connections() == 0),
        "still {} open",
        fake.open_connections()
    );
}

#[test]
fn stall_in_the_middle_of_a_reply() {
    let fake = FakeSmtp::start(Fault::StallMidReply(Step::Rcpt));
    let ca = setup(&fake.host_port());
    let line = assert_failure_in_time(&ca, "a@example.test");
    assert!(names_fault(&line, &["timeout", "timed out"]), "{line:?}");
}

#[test]
fn close_right_after_the_banner() {
    let fake = FakeSmtp::start(Fault::CloseAfterBanner);
    let ca = setup(&fake.host_port());
    let line = assert_failure_in_time(&ca, "a@example.test");
    assert!(
        names_fault(&line, &["closed", "eof", "reset", "lost", "disconnect"]),
        "{line:?}"
    );
}

/// The validation timeout covers the whole request, however many servers
/// are tried: two stalling static servers still answer within the bound.
#[test]
fn timeout_covers_every_server_tried() {
    let first = FakeSmtp::start(Fault::StallMidReply(Step::Banner));
    let second = FakeSmtp::start(Fault::StallMidReply(Step::Banner));
    let ca = CallaheadSetup::new()
        .static_servers(&[&first.host_port(), &second.host_port()])
        .profile("validation_timeout_secs", &TIMEOUT_SECS.to_string())
        .profile("breaker_failures", "0")
        .start();
    assert_failure_in_time(&ca, "a@example.test");
}

/// Failures are never cached: after the downstream recovers, the next
/// RCPT probes and is accepted.
#[test]
fn failure_is_not_cached_across_recovery() {
    let mut sink = Sink::builder().port(free_port()).start();
    let port = sink.port();
    sink.stop();
    let ca = setup(&format!("127.0.0.1:{port}"));
    assert_failure_in_time(&ca, "back@example.test");
    sink.start_again();
    assert_eq!(ca.rcpt("back@example.test").code, 250);
    let lines = ca.wait_decision("back@example.test", 2);
    assert_eq!(
        (lines[1].field("source"), lines[1].field("verdict")),
        ("probe".into(), "accepted".into()),
        "{lines:?}"
    );
}
