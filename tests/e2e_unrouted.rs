//! End-to-end: a recipient whose domain lost its route is not stuck.
//!
//! First run: b.test is a relay domain routed to a dead port; a message for
//! bob@b.test is accepted, deferred, and still owed at SIGTERM. The restart
//! on the same spool reads a config in which b.test has no route at all
//! (only a.test is routed, no "*"), so the recovered recipient has nowhere
//! to go. It must not wait for ever: with `--queue-lifetime-secs 3` it ends
//! in the failed area (`SPOOL/failed/QID.eml`) with a reason that says
//! there was no route; or, when a reload brings a route for b.test back,
//! it is delivered there, once.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const SHARDS: usize = 2;

fn server(file: &ConfigFile, spool: &Path) -> PortcullisBuilder {
    Portcullis::builder()
        .cores(SHARDS)
        .config(file.path())
        .routes_from_config()
        .spool_dir(spool)
        .retry_secs(1, 1)
}

/// a.test routed to `sink`, and nothing for b.test.
fn only_a(sink: &Sink) -> PolicyToml {
    PolicyToml::new().relay("a.test").route("a.test", sink)
}

/// The first run: accept mail for bob@b.test while b.test is routed to a
/// dead port, stop with it owed. Returns its queue id.
fn leave_b_test_mail_owed(file: &ConfigFile, spool: &Path, sink: &Sink) -> String {
    let dead = format!("127.0.0.1:{}", free_port());
    file.write(&only_a(sink).relay("b.test").route_host("b.test", &dead));
    let mut first = server(file, spool).start();
    let sent = Swaks::new(first.addr())
        .to("bob@b.test")
        .header("Subject: for b.test")
        .run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    let qid = sent.queue_id().expect("queue id in the 250");
    first.wait_for_log(&format!("retry qid={qid}"), 1, WAIT);
    let status = first.stop(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", first.log());
    let stopped = first.event_lines("stopped");
    assert!(stopped.iter().any(|l| l.contains("owed=1")), "{stopped:?}");
    qid
}

#[test]
fn unrouted_mail_expires_into_the_failed_area() {
    let spool = TempDir::new("unrouted-spool");
    let sink = Sink::start();
    let file = ConfigFile::new(&only_a(&sink));
    let qid = leave_b_test_mail_owed(&file, spool.path(), &sink);

    file.write(&only_a(&sink));
    let restarted = Instant::now();
    let server = server(&file, spool.path())
        .arg("--queue-lifetime-secs")
        .arg("3")
        .start();
    let copy = spool.path().join("failed").join(format!("{qid}.eml"));
    let kept = wait_until(Duration::from_secs(10), || copy.exists());
    assert!(
        kept,
        "no {} {:?} after the restart\n{}",
        copy.display(),
        restarted.elapsed(),
        server.log()
    );
    eprintln!("failed copy {:?} after the restart", restarted.elapsed());
    let failed = server.wait_for_log(&format!("failed qid={qid}"), 1, WAIT);
    assert!(failed[0].contains("to=<bob@b.test>"), "{failed:?}");
    assert!(failed[0].contains("no route"), "{failed:?}");
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);

    let text = std::fs::read_to_string(&copy).unwrap();
    let reason = text
        .lines()
        .find(|l| l.starts_with("X-Portcullis-Failed:"))
        .unwrap_or_else(|| panic!("no reason header: {text}"));
    assert!(
        reason.contains("<bob@b.test>") && reason.contains("no route"),
        "{reason}"
    );
    assert!(text.contains("Subject: for b.test"), "{text}");
    assert_eq!(sink.count(), 0, "nothing was sent anywhere");
}

#[test]
fn unrouted_mail_is_delivered_once_a_reload_routes_its_domain() {
    let spool = TempDir::new("unrouted-spool");
    let sink = Sink::start();
    let file = ConfigFile::new(&only_a(&sink));
    let qid = leave_b_test_mail_owed(&file, spool.path(), &sink);

    file.write(&only_a(&sink));
    let mut server = server(&file, spool.path()).start();
    server.wait_every_shard_serving(SHARDS, WAIT);
    // Owed and waiting, for want of a route.
    let retry = server.wait_for_log(&format!("retry qid={qid}"), 1, WAIT);
    assert!(retry[0].contains("no route"), "{retry:?}");
    assert_eq!(sink.count(), 0);

    file.write(&only_a(&sink).route("b.test", &sink));
    server.sighup();
    server.wait_for_reload(1, SHARDS, WAIT);
    let got = sink.wait_for_messages(1, WAIT);
    assert_eq!(got[0].recipients(), ["bob@b.test"]);
    assert_eq!(got[0].header("Subject").as_deref(), Some("for b.test"));
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);

    let status = server.stop(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", server.log());
    assert_eq!(sink.count(), 1, "delivered more than once");
    let stopped = server.event_lines("stopped");
    assert!(stopped.iter().all(|l| l.contains("owed=0")), "{stopped:?}");
}
