//! End-to-end: a downstream that fails mid-transaction (issue 10, "Bad
//! input"): smtp-sink answering 421 and closing after the final dot,
//! closing without a reply after the final dot (a reset as we see it), or
//! 421 at RCPT. Each time the message stays queued, every round is counted
//! as an attempt (`queue show`), it is retried, and no bounce reaches the
//! sender (a 4xx or a broken connection is never a failure of the
//! recipient).

mod common;

use common::*;
use std::net::SocketAddr;

const DEST: &str = "dest.test";
const SENDERS: &str = "sender.test";

fn show(admin: SocketAddr, qid: &str) -> String {
    let admin = admin.to_string();
    let out = run_portcullis(&["queue", "show", qid, "--admin", &admin], WAIT);
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    out.stdout
}

fn attempts(line: &str) -> u32 {
    line.split_whitespace().find_map(|w| w.strip_prefix("attempts=")).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn stays_queued_without_a_bounce(fault: SinkBuilder, what: &str) {
    let dest = fault.start();
    let senders = Sink::start();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let text = format!("relay_domains = [{DEST:?}, {SENDERS:?}]\n\n[routes]\n{DEST:?} = [{:?}]\n{SENDERS:?} = [{:?}]\n", dest.host_port(), senders.host_port());
    let file = ConfigFile::with_text(&text);
    let server = Portcullis::builder().config(file.path()).routes_from_config().retry_secs(1, 1).admin_listen(&admin.to_string()).start();
    assert!(wait_until(WAIT, || is_listening(admin.port())), "{}", server.log());
    let sent = Swaks::new(server.addr()).from(&format!("alice@{SENDERS}")).to(&format!("bob@{DEST}")).run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    let qid = sent.queue_id().unwrap();
    server.wait_for_log(&format!("retry qid={qid}"), 3, WAIT);
    let queued = show(admin, &qid);
    assert!(queued.contains(&format!("qid={qid} ")) && attempts(&queued) >= 3, "{what}: {queued}");
    assert_eq!(senders.count(), 0, "{what}: a bounce for a temporary fault\n{}", server.log());
    assert!(server.event_lines("bounce").is_empty() && server.event_lines("failed").is_empty(), "{what}\n{}", server.log());
    assert!(server.event_lines("delivered").is_empty(), "{what}\n{}", server.log());
}

#[test]
fn a_421_after_the_final_dot_keeps_the_message_queued() {
    stays_queued_without_a_bounce(Sink::builder().close_421_at(&["."]), "421 after the dot");
}

#[test]
fn a_connection_closed_at_the_final_dot_keeps_the_message_queued() {
    stays_queued_without_a_bounce(Sink::builder().disconnect_at(&["."]), "closed at the dot");
}

#[test]
fn a_421_at_rcpt_keeps_the_message_queued() {
    stays_queued_without_a_bounce(Sink::builder().close_421_at(&["RCPT"]), "421 at RCPT");
}
