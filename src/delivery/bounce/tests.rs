//! Bounces read by a MIME parser that is not ours: Python's `email`
//! package (tests/mime/parse_report.py) parses what `build` wrote, and the
//! tests check the RFC 6522 structure and every RFC 3464 field it found.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::*;

const NOW: u64 = 1_795_330_800; // Sun, 22 Nov 2026 07:00:00 +0000
const ARRIVAL: u64 = NOW - 7_200;

const ORIGINAL: &[u8] = b"Received: from client.test by mx.test; Sun, 22 Nov 2026 05:00:00 +0000\r\n\
From: Alice <alice@sender.test>\r\n\
To: bob@example.test\r\n\
Subject: quarterly numbers\r\n\
Message-ID: <orig-1@sender.test>\r\n\
\r\n\
Hello Bob,\r\n\
the numbers are attached.\r\n";

/// The bounce through tests/mime/parse_report.py, as JSON.
fn parse(message: &[u8]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mime/parse_report.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (tests/run.sh installs it with the test dependencies)");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "parse_report.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every value of field `name` in a [[name, value], …] list.
fn values(fields: &Value, name: &str) -> Vec<String> {
    let pairs = fields.as_array().expect("a field list");
    pairs.iter().filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name)).map(|p| p[1].as_str().unwrap().to_string()).collect()
}

/// The one value of field `name`; panics when absent or repeated.
fn field(fields: &Value, name: &str) -> String {
    let found = values(fields, name);
    assert_eq!(found.len(), 1, "{name} in {fields}");
    found[0].clone()
}

fn no_defects(parsed: &Value) {
    no_defects_but(parsed, &[]);
}

/// No parser defects anywhere, but the ones named at the top level.
fn no_defects_but(parsed: &Value, allowed: &[&str]) {
    let top: Vec<&str> = parsed["defects"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).filter(|d| !allowed.contains(d)).collect();
    assert!(top.is_empty(), "top level: {top:?}");
    for part in parsed["parts"].as_array().unwrap() {
        assert_eq!(part["defects"], serde_json::json!([]), "{}", part["content_type"]);
    }
}

fn unknown_user() -> RecipientReport {
    RecipientReport {
        final_recipient: "bob@example.test".into(),
        original_recipient: Some("rfc822;bob@example.test".into()),
        action: Action::Failed,
        status: status_of("550 5.1.1 <bob@example.test>: User unknown"),
        remote_mta: Some("mail.example.test".into()),
        diagnostic: Some("550 5.1.1 <bob@example.test>: User unknown".into()),
        last_attempt_secs: Some(NOW - 60),
        will_retry_until_secs: None,
    }
}

fn report(recipients: Vec<RecipientReport>) -> Report<'static> {
    Report {
        reporting_mta: "mx.test",
        queue_id: "0A1B2C3D4E",
        sender: "alice@sender.test",
        envid: Some("env-42"),
        arrival_secs: ARRIVAL,
        ret: Ret::Full,
        recipients,
        original: ORIGINAL,
    }
}

fn content_types(parsed: &Value) -> Vec<String> {
    parsed["parts"].as_array().unwrap().iter().map(|p| p["content_type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_failed_bounce_is_a_multipart_report_with_three_parts() {
    let parsed = parse(&build(&report(vec![unknown_user()]), NOW));
    no_defects(&parsed);
    assert_eq!(parsed["content_type"], "multipart/report");
    assert_eq!(parsed["params"]["report-type"], "delivery-status");
    assert_eq!(content_types(&parsed), ["text/plain", "message/delivery-status", "message/rfc822"]);
    let top = &parsed["fields"];
    assert_eq!(field(top, "From"), "Mail Delivery System <MAILER-DAEMON@mx.test>");
    assert_eq!(field(top, "To"), "alice@sender.test");
    assert_eq!(field(top, "Subject"), "Undelivered Mail Returned to Sender");
    assert_eq!(field(top, "Date"), "Sun, 22 Nov 2026 07:00:00 +0000");
    assert_eq!(field(top, "Auto-Submitted"), "auto-replied");
    assert_eq!(field(top, "MIME-Version"), "1.0");
    let id = field(top, "Message-ID");
    assert!(id.starts_with('<') && id.ends_with("@mx.test>") && id.contains("0A1B2C3D4E"), "{id}");
}

#[test]
fn the_delivery_status_part_has_every_rfc3464_field() {
    let mut other = unknown_user();
    other.final_recipient = "carol@example.test".into();
    other.original_recipient = None;
    other.status = status_of("552 5.2.2 Mailbox full");
    other.diagnostic = Some("552 5.2.2 Mailbox full".into());
    let parsed = parse(&build(&report(vec![unknown_user(), other]), NOW));
    let blocks = parsed["parts"][1]["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 3, "per-message block and two recipients: {blocks:?}");
    let message = &blocks[0];
    assert_eq!(field(message, "Reporting-MTA"), "dns; mx.test");
    assert_eq!(field(message, "Original-Envelope-Id"), "env-42");
    assert_eq!(field(message, "Arrival-Date"), "Sun, 22 Nov 2026 05:00:00 +0000");
    let bob = &blocks[1];
    assert_eq!(field(bob, "Original-Recipient"), "rfc822;bob@example.test");
    assert_eq!(field(bob, "Final-Recipient"), "rfc822; bob@example.test");
    assert_eq!(field(bob, "Action"), "failed");
    assert_eq!(field(bob, "Status"), "5.1.1");
    assert_eq!(field(bob, "Remote-MTA"), "dns; mail.example.test");
    assert_eq!(field(bob, "Diagnostic-Code"), "smtp; 550 5.1.1 <bob@example.test>: User unknown");
    assert_eq!(field(bob, "Last-Attempt-Date"), "Sun, 22 Nov 2026 06:59:00 +0000");
    assert!(values(bob, "Will-Retry-Until").is_empty());
    let carol = &blocks[2];
    assert!(values(carol, "Original-Recipient").is_empty());
    assert_eq!(field(carol, "Final-Recipient"), "rfc822; carol@example.test");
    assert_eq!(field(carol, "Status"), "5.2.2");
    assert_eq!(field(carol, "Diagnostic-Code"), "smtp; 552 5.2.2 Mailbox full");
}

#[test]
fn the_human_part_names_each_recipient_and_what_the_server_said() {
    let parsed = parse(&build(&report(vec![unknown_user()]), NOW));
    let text = parsed["parts"][0]["text"].as_str().unwrap();
    assert!(text.contains("mx.test"), "{text}");
    assert!(text.contains("<bob@example.test>: delivery failed (5.1.1)"), "{text}");
    assert!(text.contains("host mail.example.test said: 550 5.1.1 <bob@example.test>: User unknown"), "{text}");
    assert!(text.contains("It is attached below"), "{text}");
}

#[test]
fn the_original_is_returned_whole_by_default() {
    let parsed = parse(&build(&report(vec![unknown_user()]), NOW));
    let returned = &parsed["parts"][2]["message"];
    assert_eq!(field(&returned["fields"], "Subject"), "quarterly numbers");
    assert_eq!(field(&returned["fields"], "Message-ID"), "<orig-1@sender.test>");
    assert_eq!(field(&returned["fields"], "From"), "Alice <alice@sender.test>");
    assert_eq!(returned["body"], "Hello Bob,\r\nthe numbers are attached.\r\n");
}

#[test]
fn ret_hdrs_returns_the_headers_only() {
    let mut r = report(vec![unknown_user()]);
    r.ret = Ret::Headers;
    let parsed = parse(&build(&r, NOW));
    no_defects(&parsed);
    assert_eq!(content_types(&parsed), ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
    let headers = parsed["parts"][2]["text"].as_str().unwrap();
    assert!(headers.contains("Subject: quarterly numbers") && headers.contains("Message-ID: <orig-1@sender.test>"), "{headers}");
    assert!(!headers.contains("Hello Bob"), "{headers}");
    assert!(parsed["parts"][0]["text"].as_str().unwrap().contains("Its headers are attached below"));
}

#[test]
fn a_huge_original_falls_back_to_its_headers() {
    let mut huge = ORIGINAL.to_vec();
    while huge.len() <= limits::BOUNCE_ORIGINAL_BYTES_MAX {
        huge.extend_from_slice(b"more and more of the quarterly numbers, line after line\r\n");
    }
    let mut r = report(vec![unknown_user()]);
    r.original = &huge;
    let bounce = build(&r, NOW);
    assert!(bounce.len() < 64 * 1024, "the body was not left out: {} bytes", bounce.len());
    let parsed = parse(&bounce);
    no_defects(&parsed);
    assert_eq!(parsed["parts"][2]["content_type"], "text/rfc822-headers");
    assert!(parsed["parts"][2]["text"].as_str().unwrap().contains("Subject: quarterly numbers"));
}

#[test]
fn a_delay_warning_says_delayed_and_until_when() {
    let mut late = unknown_user();
    late.action = Action::Delayed;
    late.status = status_of("451 4.3.0 try later");
    late.diagnostic = Some("451 4.3.0 try later".into());
    late.will_retry_until_secs = Some(ARRIVAL + 259_200);
    let parsed = parse(&build(&report(vec![late]), NOW));
    no_defects(&parsed);
    assert_eq!(field(&parsed["fields"], "Subject"), "Delayed Mail (still being retried)");
    let block = &parsed["parts"][1]["blocks"][1];
    assert_eq!(field(block, "Action"), "delayed");
    assert_eq!(field(block, "Status"), "4.3.0");
    assert_eq!(field(block, "Will-Retry-Until"), "Wed, 25 Nov 2026 05:00:00 +0000");
    let text = parsed["parts"][0]["text"].as_str().unwrap();
    assert!(text.contains("delivery delayed") && text.contains("do not need to send it again"), "{text}");
    // RFC 3461 §4.3: no failure reported, so the headers only.
    assert_eq!(parsed["parts"][2]["content_type"], "text/rfc822-headers");
}

#[test]
fn a_success_report_says_relayed_or_delivered_with_the_headers_only() {
    let mut relayed = unknown_user();
    relayed.action = Action::Relayed;
    relayed.status = status_of("250 2.0.0 Ok: queued as 4F2B");
    relayed.diagnostic = Some("250 2.0.0 Ok: queued as 4F2B".into());
    let mut delivered = relayed.clone();
    delivered.final_recipient = "carol@example.test".into();
    delivered.action = Action::Delivered;
    delivered.status = "no code".into();
    let parsed = parse(&build(&report(vec![relayed, delivered]), NOW));
    no_defects(&parsed);
    assert_eq!(field(&parsed["fields"], "Subject"), "Successful Mail Delivery Report");
    let blocks = &parsed["parts"][1]["blocks"];
    assert_eq!((field(&blocks[1], "Action"), field(&blocks[1], "Status")), ("relayed".into(), "2.0.0".into()));
    assert_eq!((field(&blocks[2], "Action"), field(&blocks[2], "Status")), ("delivered".into(), "2.0.0".into()));
    assert_eq!(parsed["parts"][2]["content_type"], "text/rfc822-headers");
}

#[test]
fn a_report_with_one_failure_is_a_failure_report() {
    let mut late = unknown_user();
    late.final_recipient = "carol@example.test".into();
    late.action = Action::Delayed;
    let parsed = parse(&build(&report(vec![late, unknown_user()]), NOW));
    assert_eq!(field(&parsed["fields"], "Subject"), "Undelivered Mail Returned to Sender");
    assert_eq!(parsed["parts"][2]["content_type"], "message/rfc822");
}

#[test]
fn crlf_in_a_diagnostic_address_or_sender_cannot_inject_a_field() {
    let mut evil = unknown_user();
    evil.diagnostic = Some("550 5.1.1 no\r\nBcc: victim@evil.test\r\n\r\nInjected-Body".into());
    evil.final_recipient = "bob@example.test\r\nX-Injected: 1".into();
    evil.remote_mta = Some("mail.example.test\r\nX-Injected: 2".into());
    let mut r = report(vec![evil]);
    r.sender = "alice@sender.test\r\nBcc: victim@evil.test";
    r.envid = Some("env\r\nX-Injected: 3");
    let bounce = build(&r, NOW);
    let parsed = parse(&bounce);
    // The To is a broken address (the sender was), but a single field.
    no_defects_but(&parsed, &["InvalidHeaderDefect in To", "ObsoleteHeaderDefect in To"]);
    let raw = String::from_utf8(bounce).unwrap();
    assert!(raw.contains("\r\nTo: <alice@sender.test Bcc: victim@evil.test>\r\n"), "{raw}");
    assert!(!raw.contains("\nBcc:"));
    assert!(values(&parsed["fields"], "Bcc").is_empty());
    assert_eq!(content_types(&parsed).len(), 3);
    for block in parsed["parts"][1]["blocks"].as_array().unwrap() {
        assert!(values(block, "Bcc").is_empty() && values(block, "X-Injected").is_empty(), "{block}");
    }
    let block = &parsed["parts"][1]["blocks"][1];
    assert_eq!(field(block, "Diagnostic-Code"), "smtp; 550 5.1.1 no Bcc: victim@evil.test Injected-Body");
    assert_eq!(field(block, "Final-Recipient"), "rfc822; bob@example.test X-Injected: 1");
}

#[test]
fn a_long_diagnostic_is_folded_and_bounded() {
    let mut long = unknown_user();
    long.diagnostic = Some(format!("550 5.7.1 {}", "policy says no ".repeat(200)));
    let mut longer = long.clone();
    // Every outside value at its longest at once, 8-bit address expanded by RFC 6533's encoding.
    longer.final_recipient = format!("{}@example.test", "ü".repeat(400));
    longer.remote_mta = Some(format!("{}.example.test", "h".repeat(2000)));
    longer.status = "5".repeat(2000);
    let bounce = build(&report(vec![long, longer]), NOW);
    let text = String::from_utf8(bounce.clone()).unwrap();
    assert!(text.split("\r\n").all(|line| line.len() <= 998), "a line passes 998 octets");
    let parsed = parse(&bounce);
    let diagnostic = field(&parsed["parts"][1]["blocks"][1], "Diagnostic-Code");
    assert!(diagnostic.starts_with("smtp; 550 5.7.1 policy says no"));
    assert!(diagnostic.len() <= limits::BOUNCE_FIELD_BYTES_MAX + "smtp; ".len(), "{}", diagnostic.len());
}

#[test]
fn the_boundary_never_occurs_in_the_original() {
    // An original that already holds the boundary build would pick first.
    let first = build(&report(vec![unknown_user()]), NOW);
    let text = String::from_utf8(first).unwrap();
    let boundary = text.split("boundary=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let hostile = format!("Subject: trap\r\n\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nfake part\r\n--{boundary}--\r\n");
    let mut r = report(vec![unknown_user()]);
    r.original = hostile.as_bytes();
    let parsed = parse(&build(&r, NOW));
    no_defects(&parsed);
    assert_eq!(content_types(&parsed), ["text/plain", "message/delivery-status", "message/rfc822"]);
    assert!(parsed["parts"][2]["message"]["body"].as_str().unwrap().contains("fake part"));
}

#[test]
fn planted_boundary_variants_are_skipped_in_one_go() {
    let first = String::from_utf8(build(&report(vec![unknown_user()]), NOW)).unwrap();
    let base = first.split("boundary=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    // The base and counters 1, 2, 3 (and 31, by prefix) are taken; 4 is free.
    let hostile = format!("Subject: trap\r\n\r\n--{base}\r\n--{base}_1\r\nx--{base}_2--\r\n--{base}_31\r\n");
    let mut r = report(vec![unknown_user()]);
    r.original = hostile.as_bytes();
    let bounce = String::from_utf8(build(&r, NOW)).unwrap();
    assert!(bounce.contains(&format!("boundary=\"{base}_4\"")), "{bounce}");
    let parsed = parse(bounce.as_bytes());
    no_defects(&parsed);
    assert_eq!(content_types(&parsed).len(), 3);
}

#[test]
fn every_line_ends_with_crlf() {
    let bounce = build(&report(vec![unknown_user()]), NOW);
    assert!(bounce.ends_with(b"--\r\n"));
    for (i, &b) in bounce.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(bounce[i - 1], b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(bounce.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
}

#[test]
fn utf8_addresses_use_the_utf8_address_type() {
    let mut jorg = unknown_user();
    jorg.final_recipient = "jörg@bücher.test".into();
    jorg.original_recipient = Some("utf-8;jörg@bücher.test".into());
    let mut r = report(vec![jorg]);
    r.sender = "zoë@sender.test";
    let bounce = build(&r, NOW);
    let parsed = parse(&bounce);
    // RFC 6532 allows it; Python flags every non-ASCII local part.
    no_defects_but(&parsed, &["NonASCIILocalPartDefect in To"]);
    let block = &parsed["parts"][1]["blocks"][1];
    assert_eq!(field(block, "Final-Recipient"), "utf-8; j\\x{F6}rg@b\\x{FC}cher.test");
    assert_eq!(field(block, "Original-Recipient"), "utf-8; j\\x{F6}rg@b\\x{FC}cher.test");
    assert_eq!(field(&parsed["fields"], "To"), "zoë@sender.test");
    assert!(parsed["parts"][0]["text"].as_str().unwrap().contains("<jörg@bücher.test>"));
    assert!(String::from_utf8(bounce).unwrap().contains("charset=utf-8"));
}

#[test]
fn two_bounces_of_one_message_have_different_message_ids() {
    let mut other = unknown_user();
    other.final_recipient = "carol@example.test".into();
    let first = parse(&build(&report(vec![unknown_user()]), NOW));
    let second = parse(&build(&report(vec![other]), NOW));
    assert_ne!(field(&first["fields"], "Message-ID"), field(&second["fields"], "Message-ID"));
}

#[test]
fn no_bounce_to_the_null_sender_or_for_a_bounce() {
    assert!(should_send("alice@sender.test", ORIGINAL));
    assert!(should_send("<alice@sender.test>", ORIGINAL));
    assert!(!should_send("<>", ORIGINAL));
    assert!(!should_send("", ORIGINAL));
    assert!(!should_send("MAILER-DAEMON@sender.test", ORIGINAL));
    assert!(!should_send("alice@sender.test", b"Auto-Submitted: auto-replied\r\nSubject: away\r\n\r\nI am away\r\n"));
    let our_own = build(&report(vec![unknown_user()]), NOW);
    assert!(!should_send("alice@sender.test", &our_own));
    assert!(!should_send("alice@sender.test", b"Content-Type: multipart/report; report-type=disposition-notification;\r\n\tboundary=x\r\n\r\n"));
    // Machine-made but not a reply: its sender wants to hear of failures.
    assert!(should_send("cron@sender.test", b"Auto-Submitted: auto-generated\r\nSubject: backup\r\n\r\nok\r\n"));
}

#[test]
fn status_comes_from_the_reply() {
    assert_eq!(status_of("550 5.1.1 User unknown"), "5.1.1");
    assert_eq!(status_of("550-5.1.1 first line\r\n550 5.1.1 last line"), "5.1.1");
    assert_eq!(status_of("550 no code"), "5.0.0");
    assert_eq!(status_of("451 4.7.1 greylisted"), "4.7.1");
    assert_eq!(status_of("421 closing"), "4.0.0");
    assert_eq!(status_of("554 4.1.1 wrong class"), "5.0.0");
    assert_eq!(status_of("550 5.1234.1 too long"), "5.0.0");
    assert_eq!(status_of("550"), "5.0.0");
    assert_eq!(status_of("connection refused"), "4.0.0");
    assert_eq!(status_of(""), "4.0.0");
}

#[test]
fn an_expired_message_reports_delivery_time_expired() {
    assert_eq!(expired_status(None), "4.4.7");
    assert_eq!(expired_status(Some("421 too busy")), "4.4.7");
    assert_eq!(expired_status(Some("451 4.2.2 mailbox full")), "4.2.2");
}

#[test]
fn the_constructors_fill_status_and_action_from_the_reply() {
    let refused = RecipientReport::refused("bob@example.test", Some("mail.example.test"), "550 5.1.1 User unknown", NOW)
        .with_original_recipient(Some("rfc822;bob@example.test".into()));
    assert_eq!((refused.action, refused.status.as_str()), (Action::Failed, "5.1.1"));
    assert_eq!(refused.original_recipient.as_deref(), Some("rfc822;bob@example.test"));
    assert_eq!(refused.last_attempt_secs, Some(NOW));
    let expired = RecipientReport::expired("bob@example.test", None, Some("421 busy"), NOW);
    assert_eq!((expired.action, expired.status.as_str(), expired.diagnostic.as_deref()), (Action::Failed, "4.4.7", Some("421 busy")));
    let delayed = RecipientReport::delayed("bob@example.test", None, None, NOW, NOW + 60);
    assert_eq!((delayed.action, delayed.status.as_str(), delayed.will_retry_until_secs), (Action::Delayed, "4.0.0", Some(NOW + 60)));
    // Through the parser: an expired recipient without any reply has no Diagnostic-Code.
    let parsed = parse(&build(&report(vec![RecipientReport::expired("bob@example.test", None, None, NOW)]), NOW));
    let block = &parsed["parts"][1]["blocks"][1];
    assert_eq!(field(block, "Status"), "4.4.7");
    assert!(values(block, "Diagnostic-Code").is_empty() && values(block, "Remote-MTA").is_empty());
}
