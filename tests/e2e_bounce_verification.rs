//! End to end: bounce verification (BATV prvs, issue 10 item 4).
//!
//! Portcullis runs with `[bounce_verification] keys = [current, previous]`
//! and relays example.test to an smtp-sink. The test makes its tags with
//! the library's own `prvs::tag`, the way delivery tags outbound senders:
//! - a bounce (`MAIL FROM:<>`) to a tag made with the current key is
//!   accepted and the downstream sees the stripped mailbox;
//! - a tag made while the previous key was the current one still works;
//! - a tag with a wrong hash, and a bounce to an untagged mailbox, get
//!   550 5.7.1 at RCPT and never reach the sink;
//! - a reply (a real sender) to a tagged address goes on stripped;
//! - after a reload (SIGHUP) that rotates the previous key out, its tag is
//!   refused while the current key's still passes.
//!
//! With `accept_untagged_bounces = true` an untagged bounce is delivered,
//! and a bad tag is still refused. With a public listener whose RAT holds
//! one exact mailbox, the tagged form of it passes (the RAT sees the
//! stripped mailbox), and a bounce relayed through a private listener is
//! not judged at all. The mail log's `batv` lines and
//! /metrics count each verdict.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use portcullis::prvs::{self, Keys};

const SHARDS: usize = 2;
const CURRENT: &str = "current-secret";
const PREVIOUS: &str = "previous-secret";

fn config(sink: &Sink, keys: &[&str], accept_untagged: bool) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    format!(
        "relay_domains = [\"example.test\"]\n\n[routes]\n\"example.test\" = [{:?}]\n\n\
         [bounce_verification]\nkeys = [{}]\naccept_untagged_bounces = {accept_untagged}\n",
        sink.host_port(),
        keys.join(", ")
    )
}

fn start(file: &ConfigFile, admin: Option<&str>) -> Portcullis {
    let mut builder = Portcullis::builder()
        .cores(SHARDS)
        .config(file.path())
        .routes_from_config();
    if let Some(addr) = admin {
        builder = builder.admin_listen(addr);
    }
    let server = builder.start();
    server.wait_every_shard_serving(SHARDS, WAIT);
    server
}

fn today() -> u64 {
    prvs::day_of(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

/// `mailbox` tagged as delivery tags with `secret` as the current key.
fn tagged_with(secret: &str, mailbox: &str) -> String {
    let tag = prvs::tag(mailbox, &Keys::new(&[secret.to_string()], 7), today(), 7);
    assert_ne!(tag, mailbox, "tagged");
    tag
}

fn bounce(server: &Portcullis, to: &str, subject: &str) -> SwaksResult {
    Swaks::new(server.addr())
        .from("<>")
        .to(to)
        .header(&format!("Subject: {subject}"))
        .run()
}

fn assert_delivered_stripped(sink: &Sink, n: usize, subject: &str, sender: &str, mailbox: &str) {
    let got = sink.wait_for_messages(n, WAIT);
    let m = got
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some(subject))
        .unwrap_or_else(|| panic!("{subject} not at the sink: {got:?}"));
    assert_eq!(
        (m.sender(), m.recipients()),
        (sender.to_string(), vec![mailbox.to_string()]),
        "{subject}"
    );
}

fn assert_refused_at_rcpt(sent: &SwaksResult, what: &str) {
    assert_eq!(
        sent.code_for("RCPT"),
        Some(550),
        "{what}: {}",
        sent.transcript()
    );
    let (_, _, line) = sent
        .replies
        .iter()
        .find(|(c, _, _)| c.eq_ignore_ascii_case("RCPT"))
        .unwrap();
    assert!(line.contains("5.7.1"), "{what}: {line}");
}

#[test]
fn bounces_are_judged_by_their_tag_and_a_reload_rotates_the_keys() {
    let sink = Sink::start();
    let file = ConfigFile::with_text(&config(&sink, &[CURRENT, PREVIOUS], false));
    let admin = format!("127.0.0.1:{}", free_port());
    let mut server = start(&file, Some(&admin));

    let current = tagged_with(CURRENT, "bob@example.test");
    let sent = bounce(&server, &current, "tag of the current key");
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    assert_delivered_stripped(&sink, 1, "tag of the current key", "", "bob@example.test");

    let previous = tagged_with(PREVIOUS, "carol@example.test");
    let sent = bounce(&server, &previous, "tag of the previous key");
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    assert_delivered_stripped(
        &sink,
        2,
        "tag of the previous key",
        "",
        "carol@example.test",
    );

    // One hex digit changed: not our tag.
    let last = current.chars().nth(14).unwrap();
    let forged = format!(
        "{}{}{}",
        &current[..14],
        if last == '0' { '1' } else { '0' },
        &current[15..]
    );
    assert_refused_at_rcpt(&bounce(&server, &forged, "forged"), "a forged tag");
    assert_refused_at_rcpt(
        &bounce(&server, "dave@example.test", "untagged"),
        "an untagged bounce",
    );

    // A reply to a tagged address is not a bounce: stripped, not judged.
    let reply = Swaks::new(server.addr())
        .from("alice@client.test")
        .to(&previous)
        .header("Subject: a reply")
        .run();
    assert_eq!(reply.final_code(), Some(250), "{}", reply.transcript());
    assert_delivered_stripped(
        &sink,
        3,
        "a reply",
        "alice@client.test",
        "carol@example.test",
    );

    // Rotate: a new key in front, the previous one out.
    file.write_text(&config(&sink, &["newest-secret", CURRENT], false));
    server.sighup();
    server.wait_for_reload(1, SHARDS, WAIT);
    assert_refused_at_rcpt(
        &bounce(&server, &previous, "rotated out"),
        "a tag of a key rotated out",
    );
    let sent = bounce(&server, &current, "current after the rotation");
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    assert_delivered_stripped(
        &sink,
        4,
        "current after the rotation",
        "",
        "bob@example.test",
    );

    // Nothing refused reached the sink, and every verdict was logged.
    assert_eq!(sink.wait_for_messages(4, WAIT).len(), 4);
    // Two shards write the log: lines of different shards may come in any order.
    let mut results: Vec<String> = server
        .wait_for_log(" batv conn=", 7, WAIT)
        .iter()
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("result="))
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    results.sort();
    assert_eq!(
        results,
        [
            "bad",
            "bad",
            "stripped",
            "untagged_refused",
            "valid",
            "valid",
            "valid"
        ],
        "{}",
        server.log()
    );
    let page = scrape(admin.parse().unwrap());
    for line in [
        r#"portcullis_bounce_verification_total{result="valid"} 3"#,
        r#"portcullis_bounce_verification_total{result="bad"} 2"#,
        r#"portcullis_bounce_verification_total{result="untagged_refused"} 1"#,
        r#"portcullis_bounce_verification_total{result="untagged_accepted"} 0"#,
    ] {
        assert!(
            page.lines().any(|l| l == line),
            "{line} missing in:\n{page}"
        );
    }
    assert!(server.is_running());
}

#[test]
fn untagged_bounces_pass_when_the_operator_says_so_and_bad_tags_do_not() {
    let sink = Sink::start();
    let file = ConfigFile::with_text(&config(&sink, &[CURRENT], true));
    let server = start(&file, None);

    let sent = bounce(&server, "dave@example.test", "untagged, accepted");
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    assert_delivered_stripped(&sink, 1, "untagged, accepted", "", "dave@example.test");

    let stranger = tagged_with("somebody-else", "dave@example.test");
    assert_refused_at_rcpt(
        &bounce(&server, &stranger, "someone else's tag"),
        "a tag of a key we never had",
    );
    assert_eq!(sink.count(), 1, "the refused bounce never reached the sink");
}

/// A public listener whose RAT accepts one exact mailbox, and a private
/// (RELAYED) one, both with keys.
fn two_listeners(public: u16, private: u16) -> String {
    format!(
        "[[listener]]\nname = \"inbound\"\naddress = \"127.0.0.1:{public}\"\ntype = \"public\"\nhat = \"inbound\"\nrat = \"inbound\"\n\n\
         [[listener]]\nname = \"outbound\"\naddress = \"127.0.0.1:{private}\"\ntype = \"private\"\nhat = \"outbound\"\n\n\
         [[hat.inbound]]\ngroup = \"BLOCKLIST\"\nsenders = [\"127.0.0.60\"]\npolicy = \"BLOCKED\"\n\n\
         [[hat.outbound]]\ngroup = \"BLOCKLIST\"\nsenders = [\"127.0.0.60\"]\npolicy = \"BLOCKED\"\n\n\
         [[rat.inbound]]\nrecipient = \"bob@example.test\"\naction = \"accept\"\n\n\
         [[rat.inbound]]\nrecipient = \"ALL\"\naction = \"reject\"\n\n\
         [bounce_verification]\nkeys = [{CURRENT:?}]\n"
    )
}

#[test]
fn the_rat_judges_the_stripped_mailbox_and_outbound_bounces_are_not_judged() {
    let sink = Sink::start();
    let (public, private) = (free_port(), free_port());
    let file = ConfigFile::with_text(&two_listeners(public, private));
    let server = Portcullis::builder()
        .listeners_file(&file, public)
        .route("*", &sink)
        .start();
    assert!(
        wait_until(WAIT, || is_listening(private)),
        "the private listener binds\n{}",
        server.log()
    );

    // The RAT has bob@example.test only: the tagged form passes it because
    // the RAT sees the stripped mailbox.
    let sent = bounce(
        &server,
        &tagged_with(CURRENT, "bob@example.test"),
        "inbound bounce",
    );
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    assert_delivered_stripped(&sink, 1, "inbound bounce", "", "bob@example.test");

    // Through the private listener mail goes out: a bounce from an inside
    // server to an untagged outside address is not ours to judge.
    let private_addr = std::net::SocketAddr::from(([127, 0, 0, 1], private));
    let sent = Swaks::new(private_addr)
        .from("<>")
        .to("dave@outside.test")
        .header("Subject: outbound bounce")
        .run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    assert_delivered_stripped(&sink, 2, "outbound bounce", "", "dave@outside.test");
    assert_eq!(
        server.wait_for_log(" batv conn=", 1, WAIT).len(),
        1,
        "only the inbound bounce was judged\n{}",
        server.log()
    );
}

#[test]
fn relayed_mail_leaves_with_a_tagged_sender_where_the_destination_asks() {
    let sink = Sink::start();
    let (public, private) = (free_port(), free_port());
    let text = format!("{}\n[destination.default]\nbounce_verification = true\n", two_listeners(public, private));
    let file = ConfigFile::with_text(&text);
    let server = Portcullis::builder().listeners_file(&file, public).route("*", &sink).start();
    assert!(wait_until(WAIT, || is_listening(private)), "{}", server.log());
    // Out through the private listener (RELAY): tagged with the current key.
    let private_addr = std::net::SocketAddr::from(([127, 0, 0, 1], private));
    let sent = Swaks::new(private_addr).from("carol@inside.test").to("dave@outside.test").header("Subject: outbound").run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    let got = sink.wait_for_messages(1, WAIT);
    let sender = got[0].sender();
    assert!(sender.starts_with("prvs=") && sender.ends_with("=carol@inside.test"), "{sender}");
    let keys = Keys::new(&[CURRENT.to_string()], 7);
    assert_eq!(prvs::verify(&sender, &keys, today()), prvs::Verdict::Valid { stripped: "carol@inside.test".into() });
    // In through the public listener (not relayed): left as it came.
    let sent = Swaks::new(server.addr()).from("erin@outside.test").to("bob@example.test").header("Subject: inbound").run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    let got = sink.wait_for_messages(2, WAIT);
    assert!(got.iter().any(|m| m.sender() == "erin@outside.test"), "{:?}", got.iter().map(|m| m.sender()).collect::<Vec<_>>());
}
