//! End-to-end: the mail log tells one message's story by grep.
//!
//! `grep qid=QID` and `grep conn=CONN` together give, in order:
//! connect → EHLO → MAIL → RCPT → DATA → queued → delivered → removed, and
//! the session's disconnect after its QUIT. Delivered lines carry `dlv=`.
//!
//! With one shard the file order is the event order. With several shards
//! each shard buffers its own lines, so the file interleaves shards by
//! flush, not by time: there the story is ordered by the timestamps.

mod common;

use common::*;

/// A parsed mail-log line: timestamp, shard, event, and the rest.
#[derive(Debug, Clone)]
struct LogLine {
    ts: String,
    event: String,
    raw: String,
}

fn parse(line: &str) -> Option<LogLine> {
    let mut words = line.split_whitespace();
    let ts = words.next()?.to_owned();
    let shard = words.next()?;
    if !shard.starts_with("shard=") {
        return None;
    }
    let event = words.next()?.to_owned();
    Some(LogLine {
        ts,
        event,
        raw: line.to_owned(),
    })
}

/// Whether `line` has the field `key=value` exactly (not a prefix of a
/// longer value: conn=C0-1 is not conn=C0-10).
fn has_field(line: &str, key: &str, value: &str) -> bool {
    let field = format!("{key}={value}");
    line.split_whitespace().any(|w| w == field)
}

/// A short name for each step of the story: the event, or the SMTP command
/// for `command` lines.
fn step(line: &LogLine) -> String {
    if line.event == "command" {
        let cmd = line
            .raw
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cmd="))
            .unwrap_or("?");
        cmd.to_owned()
    } else {
        line.event.clone()
    }
}

/// Sends one message, waits for its whole story, returns (qid, conn, the
/// lines with its qid or conn in file order).
fn trace_one(cores: usize, domains: &[&str]) -> (String, String, Vec<LogLine>, Portcullis) {
    let sink = Sink::start();
    let mut builder = Portcullis::builder().cores(cores);
    for d in domains {
        builder = builder.relay_domain(d).route(d, &sink);
    }
    let server = builder.start();
    let mut swaks = Swaks::new(server.addr());
    for d in domains {
        swaks = swaks.to(&format!("traced@{d}"));
    }
    let result = swaks
        .from("trace@client.test")
        .header("Subject: traced")
        .run();
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    let qid = result.queue_id().unwrap();
    sink.wait_for_recipients(domains.len(), WAIT);
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);
    // Each shard flushes its own lines on a timer: the other shard's
    // delivered lines may land in the file after the spool shard's removed.
    server.wait_for_log(&format!("delivered qid={qid}"), domains.len(), WAIT);
    let queued = server.wait_for_log(&format!("queued conn="), 1, WAIT);
    let queued = queued
        .iter()
        .find(|l| has_field(l, "qid", &qid))
        .unwrap_or_else(|| panic!("no queued line for {qid}: {queued:?}"));
    let conn = queued
        .split_whitespace()
        .find_map(|w| w.strip_prefix("conn="))
        .unwrap()
        .to_owned();
    server.wait_for_log(&format!("disconnect conn={conn} "), 1, WAIT);
    let lines: Vec<LogLine> = server
        .log()
        .lines()
        .filter(|l| has_field(l, "qid", &qid) || has_field(l, "conn", &conn))
        .filter_map(parse)
        .collect();
    (qid, conn, lines, server)
}

/// The positions of the story's steps in `steps` are increasing.
fn assert_story(steps: &[String], story: &[&str], lines: &[LogLine]) {
    let mut at = 0;
    for want in story {
        match steps[at..].iter().position(|s| s == want) {
            Some(i) => at += i + 1,
            None => panic!(
                "step {want:?} missing or out of order; story so far {steps:?}\n{}",
                lines
                    .iter()
                    .map(|l| l.raw.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}

const STORY: [&str; 8] = [
    "connect",
    "EHLO",
    "MAIL",
    "RCPT",
    "DATA",
    "queued",
    "delivered",
    "removed",
];

fn assert_details(qid: &str, conn: &str, lines: &[LogLine], domains: &[&str]) {
    let text = lines
        .iter()
        .map(|l| l.raw.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let find = |event: &str| {
        lines
            .iter()
            .find(|l| l.event == event)
            .unwrap_or_else(|| panic!("no {event} line:\n{text}"))
    };
    assert!(find("connect").raw.contains("peer=127.0.0.1:"), "{text}");
    let queued = find("queued");
    assert!(
        has_field(&queued.raw, "conn", conn) && has_field(&queued.raw, "qid", qid),
        "{text}"
    );
    assert!(queued.raw.contains("from=<trace@client.test>"), "{text}");
    assert!(
        queued.raw.contains(&format!("rcpts={}", domains.len())),
        "{text}"
    );
    // One delivered line per recipient, each with a delivery id.
    for d in domains {
        let delivered = lines
            .iter()
            .find(|l| l.event == "delivered" && l.raw.contains(&format!("to=<traced@{d}>")))
            .unwrap_or_else(|| panic!("no delivered line for traced@{d}:\n{text}"));
        let dlv = delivered
            .raw
            .split_whitespace()
            .find_map(|w| w.strip_prefix("dlv="))
            .unwrap_or_else(|| panic!("delivered without dlv=: {}", delivered.raw));
        assert!(dlv.starts_with('D'), "{}", delivered.raw);
        assert!(delivered.raw.contains("reply=\"250"), "{}", delivered.raw);
    }
    // Every command line of the session carries its reply.
    for l in lines.iter().filter(|l| l.event == "command") {
        assert!(l.raw.contains("reply=\""), "{}", l.raw);
    }
    let rcpts: Vec<&LogLine> = lines.iter().filter(|l| step(l) == "RCPT").collect();
    assert_eq!(rcpts.len(), domains.len(), "{text}");
    assert!(
        rcpts.iter().all(|r| r.raw.contains("reply=\"250")),
        "{text}"
    );
    // The end of DATA names the queue id in its reply, linking conn to qid.
    assert!(
        lines
            .iter()
            .any(|l| l.event == "command" && l.raw.contains(&format!("queued as {qid}"))),
        "no command line with the 250 queued as {qid}:\n{text}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.event == "removed").count(),
        1,
        "{text}"
    );
    eprintln!("the story of {qid} / {conn}:\n{text}");
}

#[test]
fn one_shard_log_tells_the_story_in_file_order() {
    let (qid, conn, lines, _server) = trace_one(1, &["example.test"]);
    let steps: Vec<String> = lines.iter().map(step).collect();
    assert_story(&steps, &STORY, &lines);
    // The session ends with its QUIT and disconnect.
    assert_story(&steps, &["connect", "QUIT", "disconnect"], &lines);
    assert_details(&qid, &conn, &lines, &["example.test"]);
}

/// One message to six domains on two shards, each its own route: every
/// delivery runs on the shard that took the message (issue 10: delivery
/// where the message is), as do `queued` and `removed`.
const SPREAD: [&str; 6] = [
    "d0.test", "d1.test", "d2.test", "d3.test", "d4.test", "d5.test",
];

#[test]
fn two_shards_log_tells_the_story_by_timestamp() {
    let (qid, conn, lines, _server) = trace_one(2, &SPREAD);
    // Each step is there, and its time is not before the step before it
    // (same-millisecond steps on two shards cannot be ordered by the log).
    let time_of = |want: &str| {
        lines
            .iter()
            .find(|l| step(l) == want)
            .map(|l| l.ts.clone())
            .unwrap_or_else(|| panic!("no {want} step for {qid}/{conn}: {lines:#?}"))
    };
    for story in [&STORY[..], &["connect", "QUIT", "disconnect"][..]] {
        let times: Vec<String> = story.iter().map(|s| time_of(s)).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "story out of time order: {:?}",
            story.iter().zip(&times).collect::<Vec<_>>()
        );
    }
    assert_details(&qid, &conn, &lines, &SPREAD);
    let shard_of = |l: &LogLine| l.raw.split_whitespace().nth(1).unwrap().to_owned();
    // Delivered (all six), and removed once, on the spool's shard, after
    // the last delivery.
    let queued = lines.iter().find(|l| l.event == "queued").unwrap();
    let delivering: std::collections::BTreeSet<String> = lines
        .iter()
        .filter(|l| l.event == "delivered")
        .map(shard_of)
        .collect();
    assert_eq!(
        delivering,
        [shard_of(queued)].into(),
        "every delivery on the shard that took the message: {lines:#?}"
    );
    let removed = lines.iter().find(|l| l.event == "removed").unwrap();
    assert_eq!(shard_of(removed), shard_of(queued));
    let last_delivery = lines
        .iter()
        .filter(|l| l.event == "delivered")
        .map(|l| &l.ts)
        .max()
        .unwrap();
    assert!(
        &removed.ts >= last_delivery,
        "removed before the last delivery: {lines:#?}"
    );
}

/// A crash must not erase the log of what was already acknowledged: after
/// `kill -9` right after the client's 250, the log still says `queued` for
/// that qid (an appliance's mail log is its audit trail; Postfix hands each
/// line to syslog at once).
#[test]
fn queued_line_survives_kill9_right_after_the_250() {
    let mut sink = Sink::start();
    sink.stop();
    let mut server = Portcullis::builder()
        .cores(1)
        .route("example.test", &sink)
        .start();
    let (mut smtp, _) = RawSmtp::connect(server.addr()).unwrap();
    let reply = smtp
        .send_mail(
            "crash@client.test",
            &["logged@example.test"],
            b"Subject: crash\r\n\r\nx\r\n",
        )
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    let qid = reply.queue_id().expect("queue id in the 250");
    server.kill9();
    let queued = server.log_lines(&format!("qid={qid}"));
    // Recovery delivers it (no loss) — but the log has no trace of its arrival.
    server.restart();
    sink.start_again();
    sink.wait_for_messages(1, WAIT);
    assert!(
        queued.iter().any(|l| l.contains(" queued ")),
        "client got 250 for {qid}, but after kill -9 the log has no queued line:\n{}",
        server.log()
    );
}
