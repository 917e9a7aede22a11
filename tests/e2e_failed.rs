//! End-to-end: a permanent refusal downstream (5xx) is final.
//!
//! We already said 250 to the client, so the message is not lost either:
//! it is kept whole at `SPOOL/failed/QID.eml`, headed by the reason, the log
//! says `failed`, and the message leaves the spool log (`removed`). With two
//! recipients on two routes, the one whose host accepts is still delivered.

mod common;

use common::*;
use std::time::Duration;

fn failed_copy(server: &Portcullis, qid: &str) -> String {
    let path = server.spool_dir().join("failed").join(format!("{qid}.eml"));
    let mut text = String::new();
    let found = wait_until(WAIT, || match std::fs::read(&path) {
        Ok(bytes) => {
            text = String::from_utf8_lossy(&bytes).into_owned();
            true
        }
        Err(_) => false,
    });
    assert!(
        found,
        "no failed copy at {}\n{}",
        path.display(),
        server.log()
    );
    text
}

#[test]
fn hard_reject_at_rcpt_keeps_the_message_in_failed() {
    let sink = Sink::builder().reject_hard(&["RCPT"]).start();
    let server = Portcullis::builder()
        .cores(1)
        .route("example.test", &sink)
        .retry_secs(1, 2)
        .start();
    let result = Swaks::new(server.addr())
        .from("alice@client.test")
        .to("bob@example.test")
        .header("Subject: refused downstream")
        .body("kept, not lost")
        .run();
    // Our side accepted it: the client is done with it.
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    assert_eq!(result.exit_code(), Some(0));
    let qid = result.queue_id().expect("queue id in the 250");

    let failed = server.wait_for_log(&format!("failed qid={qid}"), 1, WAIT);
    assert!(failed[0].contains("to=<bob@example.test>"), "{failed:?}");
    assert!(failed[0].contains(&sink.host_port()), "{failed:?}");
    assert!(
        failed[0].contains("500"),
        "reason names the reply: {failed:?}"
    );
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);

    let copy = failed_copy(&server, &qid);
    assert!(
        copy.contains(&format!("X-Portcullis-Queue-Id: {qid}")),
        "{copy}"
    );
    assert!(
        copy.contains("X-Portcullis-Mail-From: <alice@client.test>"),
        "{copy}"
    );
    let reason = copy
        .lines()
        .find(|l| l.starts_with("X-Portcullis-Failed:"))
        .unwrap_or_else(|| panic!("no reason header: {copy}"));
    assert!(
        reason.contains("<bob@example.test>") && reason.contains("500"),
        "{reason}"
    );
    assert!(copy.contains("Subject: refused downstream"), "{copy}");
    assert!(copy.contains("kept, not lost"), "{copy}");
    // Whole: our Received header first, then the message as accepted.
    assert!(copy.contains("Received: "), "{copy}");

    // Final: never delivered, never retried.
    assert_eq!(sink.count(), 0);
    assert!(!wait_until(Duration::from_secs(3), || {
        !server.log_lines(&format!("retry qid={qid}")).is_empty()
            || !server.log_lines(&format!("delivered qid={qid}")).is_empty()
    }));
    assert_eq!(server.log_lines(&format!("failed qid={qid}")).len(), 1);
}

#[test]
fn hard_reject_at_final_dot_keeps_the_message_in_failed() {
    let sink = Sink::builder().reject_hard(&["."]).start();
    let server = Portcullis::builder()
        .cores(1)
        .route("example.test", &sink)
        .start();
    let result = Swaks::new(server.addr())
        .header("Subject: dot refused")
        .run();
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    let qid = result.queue_id().unwrap();
    let failed = server.wait_for_log(&format!("failed qid={qid}"), 1, WAIT);
    assert!(failed[0].contains("500"), "{failed:?}");
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);
    assert!(failed_copy(&server, &qid).contains("Subject: dot refused"));
    assert!(server.log_lines(&format!("delivered qid={qid}")).is_empty());
}

#[test]
fn one_refusing_route_does_not_hold_back_the_other_recipient() {
    let good = Sink::start();
    let refusing = Sink::builder().reject_hard(&["RCPT"]).start();
    // Two shards: the routes may be owned by different shards, and the
    // done markers travel back to the shard whose spool holds the message.
    let server = Portcullis::builder()
        .cores(2)
        .relay_domain("example.test")
        .relay_domain("other.test")
        .route("example.test", &good)
        .route("other.test", &refusing)
        .start();
    let result = Swaks::new(server.addr())
        .to("ann@example.test")
        .to("bea@other.test")
        .header("Subject: mixed")
        .run();
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    let qid = result.queue_id().unwrap();

    let got = good.wait_for_messages(1, WAIT);
    assert_eq!(got[0].recipients(), ["ann@example.test"]);
    assert_eq!(got[0].header("Subject").as_deref(), Some("mixed"));

    let failed = server.wait_for_log(&format!("failed qid={qid}"), 1, WAIT);
    assert!(failed[0].contains("to=<bea@other.test>"), "{failed:?}");
    let delivered = server.wait_for_log(&format!("delivered qid={qid}"), 1, WAIT);
    assert!(
        delivered[0].contains("to=<ann@example.test>"),
        "{delivered:?}"
    );
    // Both recipients finished: the message leaves the spool once.
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);

    let copy = failed_copy(&server, &qid);
    let reasons: Vec<&str> = copy
        .lines()
        .filter(|l| l.starts_with("X-Portcullis-Failed:"))
        .collect();
    assert_eq!(reasons.len(), 1, "{copy}");
    assert!(reasons[0].contains("<bea@other.test>"), "{reasons:?}");
    assert_eq!(refusing.count(), 0);
    assert!(
        !wait_until(Duration::from_secs(2), || good.count() > 1),
        "delivered twice"
    );
    assert_eq!(server.log_lines(&format!("removed qid={qid}")).len(), 1);
}

/// A downstream that stays down past `--queue-lifetime-secs`: the message
/// ends in the failed area with the last error, and leaves the spool.
#[test]
fn queue_lifetime_expiry_keeps_the_message_in_failed() {
    let dead = format!("127.0.0.1:{}", free_port());
    let server = Portcullis::builder()
        .cores(1)
        .route_hosts("example.test", &[&dead])
        .retry_secs(1, 1)
        .arg("--queue-lifetime-secs")
        .arg("3")
        .start();
    let result = Swaks::new(server.addr()).header("Subject: expires").run();
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    let qid = result.queue_id().unwrap();
    server.wait_for_log(&format!("retry qid={qid}"), 1, WAIT);
    let failed = server.wait_for_log(&format!("failed qid={qid}"), 1, WAIT);
    assert!(failed[0].contains("queue lifetime expired"), "{failed:?}");
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);
    let copy = failed_copy(&server, &qid);
    assert!(
        copy.contains("queue lifetime expired") && copy.contains("Subject: expires"),
        "{copy}"
    );
}

/// The queue lifetime counts from when we accepted the message, across
/// restarts: a restart must not give a message a fresh lifetime (an
/// appliance restarted more often than the lifetime would keep undeliverable
/// mail for ever).
#[test]
fn queue_lifetime_counts_from_acceptance_across_a_restart() {
    const LIFETIME_SECS: u64 = 6;
    let dead = format!("127.0.0.1:{}", free_port());
    let mut server = Portcullis::builder()
        .cores(1)
        .route_hosts("example.test", &[&dead])
        .retry_secs(1, 1)
        .arg("--queue-lifetime-secs")
        .arg(&LIFETIME_SECS.to_string())
        .start();
    let result = Swaks::new(server.addr()).header("Subject: old mail").run();
    let accepted = std::time::Instant::now();
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    let qid = result.queue_id().unwrap();
    server.wait_for_log(&format!("retry qid={qid}"), 1, WAIT);
    // Setup, not an assertion: restart late in the lifetime.
    wait_until(WAIT, || {
        accepted.elapsed() >= Duration::from_secs(LIFETIME_SECS - 2)
    });
    assert!(
        server.log_lines(&format!("failed qid={qid}")).is_empty(),
        "expired before the restart"
    );
    server.restart();
    // Expired at most a couple of seconds after the lifetime, not a whole
    // fresh lifetime after the restart.
    let deadline = Duration::from_secs(LIFETIME_SECS + 2).saturating_sub(accepted.elapsed());
    let expired = wait_until(deadline, || {
        !server.log_lines(&format!("failed qid={qid}")).is_empty()
    });
    assert!(
        expired,
        "not expired {:?} after acceptance (lifetime {LIFETIME_SECS}s): the restart gave it a new lifetime\n{}",
        accepted.elapsed(),
        server.log()
    );
}
