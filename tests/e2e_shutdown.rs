//! End-to-end: SIGTERM winds down within the grace, loses nothing.
//!
//! With `--shutdown-grace-secs 3`: new connections are refused at once; a
//! client in the middle of a transaction (after RCPT, before DATA) can still
//! finish its message and gets 250; a session that sits idle until the end
//! of the grace gets `421 4.3.2` and is closed; the process exits 0 within
//! grace + a few seconds, even with a delivery waiting to retry. The
//! message acknowledged during the grace is in the spool and is delivered
//! after a restart on the same spool.

mod common;

use common::*;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const GRACE_SECS: u64 = 3;
/// Exit must come within the grace plus this (the hard stop after the
/// grace is 2 s in `server.rs`).
const EXIT_SLACK: Duration = Duration::from_secs(5);

fn connection_refused(server: &Portcullis) -> bool {
    match TcpStream::connect_timeout(&server.addr(), Duration::from_secs(1)) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

#[test]
fn sigterm_lets_a_transaction_finish_refuses_new_ones_and_421s_idle_sessions() {
    // Downstream down: what is acked during the grace stays in the spool.
    let mut sink = Sink::start();
    sink.stop();
    let mut server = Portcullis::builder()
        .cores(2)
        .route("example.test", &sink)
        .arg("--shutdown-grace-secs")
        .arg(&GRACE_SECS.to_string())
        .retry_secs(1, 2)
        .start();

    assert!(!connection_refused(&server), "not accepting before SIGTERM");
    // A client mid-transaction, and an idle one.
    let (mut busy, greeting) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(greeting.code, 220);
    assert_eq!(busy.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(busy.cmd("MAIL FROM:<busy@client.test>").unwrap().code, 250);
    assert_eq!(busy.cmd("RCPT TO:<late@example.test>").unwrap().code, 250);
    let (mut idle, _) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(idle.cmd("EHLO idle.test").unwrap().code, 250);
    // Both sessions (and the probe) reached the server before the signal.
    server.wait_for_log("connect conn=", 3, WAIT);

    server.sigterm();
    let signalled = Instant::now();

    // New connections: refused (listeners closed on every shard).
    assert!(
        wait_until(Duration::from_secs(2), || connection_refused(&server)),
        "still accepting connections after SIGTERM"
    );

    // The busy client finishes within the grace.
    assert_eq!(busy.cmd("DATA").unwrap().code, 354);
    busy.send(b"Subject: during the grace\r\n\r\nfinished after SIGTERM\r\n.\r\n")
        .unwrap();
    let reply = busy.read_reply().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(GRACE_SECS),
        "the test itself was too slow to be inside the grace"
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    let qid = reply.queue_id().expect("queue id in the 250");
    assert_eq!(busy.cmd("QUIT").unwrap().code, 221);

    // Still refusing during the rest of the grace.
    assert!(
        connection_refused(&server),
        "accepting again during the grace"
    );

    // The idle session gets 421 4.3.2 at the end of the grace, then EOF.
    let goodbye = idle.read_reply().expect("a 421 before close");
    let at = signalled.elapsed();
    assert_eq!(goodbye.code, 421, "{goodbye:?}");
    assert!(goodbye.text().starts_with("4.3.2"), "{goodbye:?}");
    assert!(idle.is_closed_within(Duration::from_secs(5)));
    eprintln!("idle session got 421 {at:?} after SIGTERM (grace {GRACE_SECS}s)");
    assert!(
        at >= Duration::from_secs(GRACE_SECS) - Duration::from_millis(200),
        "421 before the grace was over: {at:?}"
    );

    // Clean exit, in time, although a delivery is waiting to retry.
    let status = server
        .wait_exit(Duration::from_secs(GRACE_SECS) + EXIT_SLACK)
        .unwrap_or_else(|| {
            panic!(
                "still running {GRACE_SECS}s + {EXIT_SLACK:?} after SIGTERM\n{}",
                server.log()
            )
        });
    eprintln!(
        "exited {:?} after SIGTERM with {status}",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(!server.log_lines("stopped").is_empty(), "{}", server.log());
    assert!(!is_listening(server.port()));

    // Restart on the same spool with the downstream back: delivered.
    sink.start_again();
    server.restart();
    let got = sink.wait_for_messages(1, WAIT);
    assert_eq!(
        got[0].header("Subject").as_deref(),
        Some("during the grace")
    );
    assert_eq!(got[0].recipients(), ["late@example.test"]);
    server.wait_for_log(&format!("delivered qid={qid}"), 1, WAIT);
    assert!(
        !wait_until(Duration::from_secs(2), || sink.count() > 1),
        "delivered twice"
    );
}

#[test]
fn sigterm_without_sessions_exits_zero_promptly() {
    let sink = Sink::start();
    let mut server = Portcullis::builder()
        .cores(2)
        .route("example.test", &sink)
        .arg("--shutdown-grace-secs")
        .arg("30")
        .start();
    let result = Swaks::new(server.addr()).header("Subject: before").run();
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    sink.wait_for_messages(1, WAIT);
    let signalled = Instant::now();
    server.sigterm();
    // No session is open: no reason to wait out the 30 s grace.
    let status = server
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "no exit within 10s of SIGTERM with no sessions\n{}",
                server.log()
            )
        });
    assert_eq!(status.code(), Some(0), "{}", server.log());
    eprintln!("idle server exited {:?} after SIGTERM", signalled.elapsed());
}
