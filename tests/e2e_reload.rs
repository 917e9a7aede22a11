//! End-to-end: SIGHUP reloads the policy from the same config file.
//!
//! The file routes old.test and new.test to an smtp-sink and relays for
//! old.test; the reload relays for new.test instead. Every shard of
//! `--cores 2` logs `reload generation=1` when it has installed the new
//! snapshot; from then on a new connection accepts RCPT for new.test and
//! refuses old.test with 550 5.7.1, while a session opened before the
//! SIGHUP keeps the policy it started with (old.test accepted, new.test
//! refused) to its end. Mail accepted under either policy is delivered.
//!
//! A bad file (a wildcard relay domain, a TOML syntax error) is refused
//! with the reason on stderr; the process runs on with the old policy, and
//! the refused files do not use up a generation. A changed process setting
//! (`max_connections`) is reported as needing a restart and keeps its old
//! value, while the policy part of the same file applies.

mod common;

use common::*;

const SHARDS: usize = 2;

/// Relays for `domain`; routes both old.test and new.test to `sink`.
fn policy(domain: &str, sink: &Sink) -> PolicyToml {
    PolicyToml::new()
        .relay(domain)
        .route("old.test", sink)
        .route("new.test", sink)
}

fn start(file: &ConfigFile) -> Portcullis {
    let server = Portcullis::builder()
        .cores(SHARDS)
        .config(file.path())
        .routes_from_config()
        .start();
    server.wait_every_shard_serving(SHARDS, WAIT);
    server
}

/// Connect, EHLO, MAIL FROM: a session ready for RCPT.
fn session_at_rcpt(server: &Portcullis) -> RawSmtp {
    let (mut smtp, greeting) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert_eq!(smtp.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(smtp.cmd("MAIL FROM:<alice@client.test>").unwrap().code, 250);
    smtp
}

fn rcpt(smtp: &mut RawSmtp, mailbox: &str) -> Reply {
    smtp.cmd(&format!("RCPT TO:<{mailbox}>")).unwrap()
}

fn assert_accepted(reply: Reply, what: &str) {
    assert_eq!(reply.code, 250, "{what}: {reply:?}");
}

fn assert_relay_denied(reply: Reply, what: &str) {
    assert_eq!(reply.code, 550, "{what}: {reply:?}");
    assert!(reply.text().starts_with("5.7.1"), "{what}: {reply:?}");
}

#[test]
fn a_new_relay_domain_applies_to_new_sessions_and_not_to_open_ones() {
    let sink = Sink::start();
    let file = ConfigFile::new(&policy("old.test", &sink));
    let mut server = start(&file);

    let mut before = session_at_rcpt(&server);
    // The test can fail: new.test is not relayed yet.
    assert_relay_denied(
        rcpt(&mut before, "bob@new.test"),
        "new.test before the reload",
    );

    file.write(&policy("new.test", &sink));
    server.sighup();
    server.wait_for_reload(1, SHARDS, WAIT);

    let mut after = session_at_rcpt(&server);
    assert_accepted(rcpt(&mut after, "bob@new.test"), "new session, new.test");
    assert_relay_denied(rcpt(&mut after, "carol@old.test"), "new session, old.test");
    assert_eq!(after.cmd("QUIT").unwrap().code, 221);

    // The session opened before the SIGHUP keeps generation 0 to its end.
    assert_accepted(rcpt(&mut before, "dave@old.test"), "open session, old.test");
    assert_relay_denied(rcpt(&mut before, "erin@new.test"), "open session, new.test");
    assert_eq!(before.cmd("DATA").unwrap().code, 354);
    before
        .send(b"Subject: accepted under generation 0\r\n\r\nold policy\r\n.\r\n")
        .unwrap();
    let reply = before.read_reply().unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(before.cmd("QUIT").unwrap().code, 221);

    // And mail under the new policy goes all the way to the downstream.
    let sent = Swaks::new(server.addr())
        .to("frank@new.test")
        .header("Subject: accepted under generation 1")
        .run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    let got = sink.wait_for_messages(2, WAIT);
    let subject_to = |m: &SinkMessage| (m.header("Subject").unwrap_or_default(), m.recipients());
    let mut seen: Vec<_> = got.iter().map(subject_to).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "accepted under generation 0".to_owned(),
                vec!["dave@old.test".to_owned()]
            ),
            (
                "accepted under generation 1".to_owned(),
                vec!["frank@new.test".to_owned()]
            ),
        ]
    );
    assert!(server.is_running());
}

#[test]
fn a_refused_file_leaves_the_running_policy_in_place() {
    let sink = Sink::start();
    let file = ConfigFile::new(&policy("old.test", &sink));
    let mut server = start(&file);
    const REFUSED: &str = "portcullis: reload refused, the running policy stays:";

    // A wildcard relay domain would make an open relay.
    file.write(&policy("old.test", &sink).relay("*"));
    server.sighup();
    let refused = server.wait_for_log(REFUSED, 1, WAIT);
    assert!(refused[0].contains("relay_domains"), "{refused:?}");

    // Not TOML at all.
    file.write_text("relay_domains = [\"new.test\"\n[routes\n");
    server.sighup();
    let refused = server.wait_for_log(REFUSED, 2, WAIT);
    assert!(refused[1].contains("line "), "names the line: {refused:?}");

    assert!(server.is_running(), "{}", server.log());
    assert!(server.event_lines("reload").is_empty(), "{}", server.log());
    let mut smtp = session_at_rcpt(&server);
    assert_accepted(
        rcpt(&mut smtp, "bob@old.test"),
        "old.test after refused reloads",
    );
    assert_relay_denied(
        rcpt(&mut smtp, "bob@new.test"),
        "new.test after refused reloads",
    );
    assert_eq!(smtp.cmd("QUIT").unwrap().code, 221);

    // A good file afterwards is generation 1: refusals publish nothing.
    file.write(&policy("new.test", &sink));
    server.sighup();
    server.wait_for_reload(1, SHARDS, WAIT);
    let mut smtp = session_at_rcpt(&server);
    assert_accepted(
        rcpt(&mut smtp, "bob@new.test"),
        "new.test after the good reload",
    );
}

#[test]
fn a_changed_process_setting_waits_for_a_restart_while_the_policy_applies() {
    let sink = Sink::start();
    let file = ConfigFile::new(&policy("old.test", &sink).line("max_connections = 100"));
    let server = start(&file);

    file.write(&policy("new.test", &sink).line("max_connections = 1"));
    server.sighup();
    let kept = server.wait_for_log("changed but kept until a restart", 1, WAIT);
    assert!(kept[0].contains("max_connections"), "{kept:?}");
    server.wait_for_reload(1, SHARDS, WAIT);

    // Two sessions at once: the running limit (100) still holds, not 1.
    let mut first = session_at_rcpt(&server);
    let mut second = session_at_rcpt(&server);
    // The policy part of the same file did apply.
    assert_accepted(rcpt(&mut first, "bob@new.test"), "first session, new.test");
    assert_relay_denied(
        rcpt(&mut second, "bob@old.test"),
        "second session, old.test",
    );
    assert!(
        server.log_lines("too many connections").is_empty(),
        "{}",
        server.log()
    );
}
