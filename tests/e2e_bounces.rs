//! End-to-end: bounces (issue 10 item 3). Portcullis relays dest.test to
//! one `smtp-sink` and the senders' domain (sender.test) to another, so
//! the bounce travels like any mail: spooled, delivered, read back from
//! the second sink and parsed by Python's `email` package
//! (tests/mime/parse_report.py) for every RFC 3464 field.
//!
//! - A 550 at RCPT: one bounce to the sender, Action failed, Status 5.1.1,
//!   Diagnostic-Code with the downstream's reply, the original's headers
//!   in part 3; the recipient is finished (not retried, no second bounce).
//! - The bounce profile's `max_retries` reached against a 450: a bounce
//!   with the 4xx status, after the retries.
//! - Never a bounce for a message from the null sender, nor with
//!   NOTIFY=NEVER.
//! - A delay warning (Action delayed, Will-Retry-Until, headers only) after
//!   `delay_warning_secs`, and not again within the interval.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const DOMAIN: &str = "dest.test";
const SENDERS: &str = "sender.test";

fn relay(dest: &Sink, senders: &Sink, extra: &str) -> (ConfigFile, Portcullis) {
    let text = format!(
        "relay_domains = [{DOMAIN:?}, {SENDERS:?}]\n\n[routes]\n{DOMAIN:?} = [{:?}]\n{SENDERS:?} = [{:?}]\n{extra}\n",
        dest.host_port(),
        senders.host_port()
    );
    let file = ConfigFile::with_text(&text);
    let server = Portcullis::builder().config(file.path()).routes_from_config().retry_secs(1, 1).start();
    (file, server)
}

/// A message through Python's email package, as parse_report.py's JSON.
fn parse(message: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mime/parse_report.py");
    let mut child = Command::new("python3").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("python3");
    child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of `name` in a list of [name, value] pairs.
fn field<'a>(fields: &'a Value, name: &str) -> Option<&'a str> {
    fields.as_array()?.iter().find(|f| f[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))?[1].as_str()
}

#[test]
fn a_5xx_bounces_once_to_the_sender_with_every_rfc3464_field() {
    let dest = Sink::builder().reject_hard(&["RCPT"]).start();
    let senders = Sink::start();
    let (_file, server) = relay(&dest, &senders, "");
    let sent = Swaks::new(server.addr()).from(&format!("alice@{SENDERS}")).to(&format!("bob@{DOMAIN}")).header("Subject: will bounce").run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    let qid = sent.queue_id().unwrap();
    let got = senders.wait_for_messages(1, WAIT);
    assert_eq!(got[0].sender(), "");
    assert_eq!(got[0].recipients(), [format!("alice@{SENDERS}")]);
    let report = parse(&got[0].text());
    assert_eq!(report["content_type"], "multipart/report");
    assert_eq!(report["params"]["report-type"], "delivery-status");
    assert_eq!(report["defects"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(field(&report["fields"], "To"), Some(format!("alice@{SENDERS}").as_str()));
    assert_eq!(field(&report["fields"], "Auto-Submitted"), Some("auto-replied"));
    let parts = report["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{report}");
    assert_eq!(parts[1]["content_type"], "message/delivery-status");
    let blocks = parts[1]["blocks"].as_array().unwrap();
    assert!(field(&blocks[0], "Reporting-MTA").unwrap().starts_with("dns;"), "{blocks:?}");
    assert!(field(&blocks[0], "Arrival-Date").is_some());
    let rcpt = &blocks[1];
    assert_eq!(field(rcpt, "Final-Recipient"), Some(format!("rfc822; bob@{DOMAIN}").as_str()));
    assert_eq!(field(rcpt, "Action"), Some("failed"));
    assert!(field(rcpt, "Status").unwrap().starts_with("5."), "{rcpt}");
    assert!(field(rcpt, "Diagnostic-Code").unwrap().starts_with("smtp; 5"), "{rcpt}");
    assert_eq!(parts[2]["content_type"], "message/rfc822");
    assert_eq!(field(&parts[2]["message"]["fields"], "Subject"), Some("will bounce"));
    // Finished: the failed line, one bounce line, nothing retried.
    server.wait_for_log(&format!("bounce qid={qid}"), 1, WAIT);
    assert_eq!(server.log_lines(&format!("failed qid={qid}")).len(), 1);
    std::thread::sleep(Duration::from_secs(3)); // three retry periods: a retry would show
    assert_eq!(senders.count(), 1, "a second bounce\n{}", server.log());
    assert!(server.log_lines(&format!("retry qid={qid}")).is_empty(), "{}", server.log());
}

#[test]
fn the_profiles_max_retries_reached_bounces_with_the_last_4xx() {
    let dest = Sink::builder().reject_soft(&["RCPT"]).start();
    let senders = Sink::start();
    let profile = "[bounce_profile.quick]\nmax_retries = 2\ninitial_retry_secs = 1\nmax_retry_secs = 1\n\n[destination.\"dest.test\"]\nbounce_profile = \"quick\"\n";
    let (_file, server) = relay(&dest, &senders, profile);
    let sent = Swaks::new(server.addr()).from(&format!("alice@{SENDERS}")).to(&format!("bob@{DOMAIN}")).run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    let qid = sent.queue_id().unwrap();
    let got = senders.wait_for_messages(1, WAIT);
    let report = parse(&got[0].text());
    let rcpt = &report["parts"][1]["blocks"][1];
    assert_eq!(field(rcpt, "Action"), Some("failed"), "{report}");
    assert!(field(rcpt, "Status").unwrap().starts_with("4."), "{rcpt}");
    // The first attempt and two retries, then the bounce.
    assert_eq!(server.log_lines(&format!("retry qid={qid}")).len(), 2, "{}", server.log());
    let failed = server.wait_for_log(&format!("failed qid={qid}"), 1, WAIT);
    assert!(failed[0].contains("retries exhausted"), "{failed:?}");
}

#[test]
fn no_bounce_for_a_bounce_or_for_notify_never() {
    let dest = Sink::builder().reject_hard(&["RCPT"]).start();
    let senders = Sink::start();
    let (_file, server) = relay(&dest, &senders, "");
    let null = Swaks::new(server.addr()).from("<>").to(&format!("bob@{DOMAIN}")).run();
    assert_eq!(null.final_code(), Some(250), "{}", null.transcript());
    let (mut raw, _) = RawSmtp::connect(server.addr()).unwrap();
    for (line, code) in [
        ("EHLO client.test".to_string(), 250),
        (format!("MAIL FROM:<alice@{SENDERS}>"), 250),
        (format!("RCPT TO:<bob@{DOMAIN}> NOTIFY=NEVER"), 250),
        ("DATA".to_string(), 354),
    ] {
        assert_eq!(raw.cmd(&line).unwrap().code, code, "{line}");
    }
    raw.send(b"Subject: quiet\r\n\r\nx\r\n.\r\n").unwrap();
    assert_eq!(raw.read_reply().unwrap().code, 250);
    server.wait_for_log("failed qid=", 2, WAIT);
    std::thread::sleep(Duration::from_secs(2)); // a bounce would be queued at once
    assert_eq!(senders.count(), 0, "{}", server.log());
    assert!(server.event_lines("bounce").is_empty(), "{}", server.log());
}

#[test]
fn a_delay_warning_once_per_interval_while_it_is_retried() {
    // The shortest interval the profile allows is 60 s: this test takes a minute.
    let dest = Sink::builder().reject_soft(&["RCPT"]).start();
    let senders = Sink::start();
    let profile = "[bounce_profile.warn]\ninitial_retry_secs = 1\nmax_retry_secs = 2\nsend_delay_warnings = true\ndelay_warning_secs = 60\n\n[destination.\"dest.test\"]\nbounce_profile = \"warn\"\n";
    let (_file, server) = relay(&dest, &senders, profile);
    let sent = Swaks::new(server.addr()).from(&format!("alice@{SENDERS}")).to(&format!("bob@{DOMAIN}")).header("Subject: slow").run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    let got = senders.wait_for_messages(1, Duration::from_secs(90));
    let report = parse(&got[0].text());
    assert_eq!(field(&report["fields"], "Subject"), Some("Delayed Mail (still being retried)"), "{report}");
    let rcpt = &report["parts"][1]["blocks"][1];
    assert_eq!(field(rcpt, "Action"), Some("delayed"), "{report}");
    assert!(field(rcpt, "Status").unwrap().starts_with("4."), "{rcpt}");
    assert!(field(rcpt, "Will-Retry-Until").is_some(), "{rcpt}");
    // Headers only for a warning (RFC 3461 §4.3), and still queued.
    assert_eq!(report["parts"][2]["content_type"], "text/rfc822-headers", "{report}");
    std::thread::sleep(Duration::from_secs(4)); // two more retries: no second warning within the interval
    assert_eq!(senders.count(), 1, "{}", server.log());
    assert!(server.event_lines("failed").is_empty());
}
