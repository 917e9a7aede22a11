//! End-to-end: mail whose domain cannot be routed right now is neither
//! lost nor stuck, and mail for a domain that takes none fails at once.
//!
//! Every domain routes somewhere: its SMTP route, else DNS (MX, then
//! A/AAAA). The test DNS (unbound on loopback, tests/common/dns.rs)
//! answers SERVFAIL for b.test and a null MX (RFC 7505) for nullmx.test;
//! the config routes a.test to an smtp-sink and everything else by DNS
//! (`"*" = ["USEDNS"]`).
//! - b.test: accepted (250), deferred round after round ("routing b.test"
//!   in the retry line); a reload that gives b.test a route delivers it,
//!   once; or, with `--queue-lifetime-secs 3`, it ends in the failed area
//!   (`SPOOL/failed/QID.eml`) with the DNS failure as the reason.
//! - nullmx.test: accepted, then failed for good in the first round with
//!   556 5.1.10 (RFC 7505 §3.2), kept in the failed area, never retried.

mod common;

use common::dns::{TestDns, Zone};
use common::*;
use std::time::Duration;

const SHARDS: usize = 2;

/// b.test: SERVFAIL; nullmx.test: "MX 0 ." (and an A record, which a
/// null MX overrides).
fn zone() -> Zone {
    Zone::new().servfail("b.test").mx("nullmx.test", 0, ".").a("nullmx.test", "127.0.0.1")
}

fn server(file: &ConfigFile, dns: &TestDns) -> PortcullisBuilder {
    Portcullis::builder()
        .cores(SHARDS)
        .config(file.path())
        .routes_from_config()
        .dns(dns.addr())
        .retry_secs(1, 1)
}

/// a.test to `sink`, every other domain by DNS.
fn by_dns(sink: &Sink) -> PolicyToml {
    PolicyToml::new()
        .relay("a.test")
        .relay("b.test")
        .relay("nullmx.test")
        .route("a.test", sink)
        .route_host("*", "USEDNS")
}

/// Sends one message to `rcpt`; returns its queue id.
fn send(server: &Portcullis, rcpt: &str, subject: &str) -> String {
    let sent = Swaks::new(server.addr())
        .to(rcpt)
        .header(&format!("Subject: {subject}"))
        .run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    sent.queue_id().expect("queue id in the 250")
}

/// The `X-Portcullis-Failed:` line of a failed copy, and the whole copy.
fn failed_copy(server: &Portcullis, qid: &str) -> (String, String) {
    let copy = server.spool_dir().join("failed").join(format!("{qid}.eml"));
    assert!(wait_until(WAIT, || copy.exists()), "no {}\n{}", copy.display(), server.log());
    let text = std::fs::read_to_string(&copy).unwrap();
    let reason = text
        .lines()
        .find(|l| l.starts_with("X-Portcullis-Failed:"))
        .unwrap_or_else(|| panic!("no reason header: {text}"))
        .to_owned();
    (reason, text)
}

#[test]
fn dns_failure_defers_until_a_reload_routes_the_domain() {
    let dns = TestDns::start(&zone());
    let sink = Sink::start();
    let file = ConfigFile::new(&by_dns(&sink));
    let mut server = server(&file, &dns).start();
    server.wait_every_shard_serving(SHARDS, WAIT);
    let qid = send(&server, "bob@b.test", "for b.test");

    // Deferred twice: the round after a failed routing routes again.
    let retries = server.wait_for_log(&format!("retry qid={qid}"), 2, WAIT);
    assert!(retries.iter().all(|l| l.contains("routing b.test")), "{retries:?}");
    assert_eq!(sink.count(), 0);

    file.write(&by_dns(&sink).route("b.test", &sink));
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

#[test]
fn dns_failure_expires_into_the_failed_area() {
    let dns = TestDns::start(&zone());
    let sink = Sink::start();
    let file = ConfigFile::new(&by_dns(&sink));
    let server = server(&file, &dns).arg("--queue-lifetime-secs").arg("3").start();
    let qid = send(&server, "bob@b.test", "for b.test");

    let (reason, text) = failed_copy(&server, &qid);
    assert!(reason.contains("<bob@b.test>") && reason.contains("queue lifetime expired"), "{reason}");
    assert!(reason.contains("routing b.test"), "{reason}");
    assert!(text.contains("Subject: for b.test"), "{text}");
    let failed = server.wait_for_log(&format!("failed qid={qid}"), 1, WAIT);
    assert!(failed[0].contains("to=<bob@b.test>"), "{failed:?}");
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);
    assert_eq!(sink.count(), 0, "nothing was sent anywhere");
}

#[test]
fn a_null_mx_domain_fails_at_once_and_other_mail_goes_on() {
    let dns = TestDns::start(&zone());
    let sink = Sink::start();
    let file = ConfigFile::new(&by_dns(&sink));
    let server = server(&file, &dns).start();
    let qid = send(&server, "carol@nullmx.test", "for nullmx.test");

    let (reason, _) = failed_copy(&server, &qid);
    assert!(reason.contains("<carol@nullmx.test>") && reason.contains("556 5.1.10"), "{reason}");
    let failed = server.wait_for_log(&format!("failed qid={qid}"), 1, WAIT);
    assert!(failed[0].contains("556 5.1.10"), "{failed:?}");
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);
    // Final in the first round: never deferred (the default queue lifetime is days).
    assert!(server.log_lines(&format!("retry qid={qid}")).is_empty(), "{}", server.log());

    // A routed domain on the same server is delivered as usual.
    send(&server, "alice@a.test", "for a.test");
    let got = sink.wait_for_messages(1, WAIT);
    assert_eq!(got[0].recipients(), ["alice@a.test"]);
}
