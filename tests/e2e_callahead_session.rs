//! End to end: the probe session itself, as the downstream sees it.
//! `max_recipients_per_session` ends a probe transaction with RSET and the
//! next one starts with MAIL FROM again on the same connection;
//! `mail_from` is the probes' envelope sender; `source_address` is where
//! the probe connections come from (Postfix logs the client address).
//! Counted at the server: the fake's command log, Postfix's own log.

mod common;

use common::callahead::*;
use common::*;

#[test]
fn a_full_probe_session_is_reset_and_goes_on_on_the_same_connection() {
    let fake = FakeSmtp::start(Fault::None);
    let ca = CallaheadSetup::new()
        .route("example.test", &fake.host_port())
        .profile("max_recipients_per_session", "3")
        .profile_str("mail_from", "verify@portcullis.test")
        .start();
    let mut session = ca.session();
    for i in 0..7 {
        let reply = session.cmd(&format!("RCPT TO:<user{i}@example.test>")).unwrap();
        assert_eq!(reply.code, 250, "user{i}: {reply:?}");
    }
    let commands = fake.commands();
    let verbs: Vec<String> = commands
        .iter()
        .filter(|c| !c.starts_with("EHLO"))
        .map(|c| c.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase())
        .collect();
    assert_eq!(
        verbs,
        ["MAIL", "RCPT", "RCPT", "RCPT", "RSET", "MAIL", "RCPT", "RCPT", "RCPT", "RSET", "MAIL", "RCPT"],
        "{commands:#?}"
    );
    assert!(
        commands.iter().filter(|c| c.starts_with("MAIL")).all(|c| c == "MAIL FROM:<verify@portcullis.test>"),
        "{commands:#?}"
    );
    assert_eq!(fake.connections_total(), 1, "one connection carried every probe: {commands:#?}");
    assert_eq!(fake.count_commands("DATA"), 0, "a probe never sends DATA");
}

#[test]
fn the_null_sender_is_the_default_mail_from() {
    let fake = FakeSmtp::start(Fault::None);
    let ca = CallaheadSetup::new().route("example.test", &fake.host_port()).start();
    assert_eq!(ca.rcpt("someone@example.test").code, 250);
    let mails: Vec<String> = fake.commands().into_iter().filter(|c| c.starts_with("MAIL")).collect();
    assert_eq!(mails, ["MAIL FROM:<>"]);
}

#[test]
fn probes_come_from_the_source_address() {
    let pf = PostfixSmtpd::start(&["example.test"], &["known@example.test"]);
    let ca = CallaheadSetup::new()
        .route("example.test", &pf.host_port())
        .profile_str("source_address", "127.0.0.3")
        .start();
    assert_eq!(ca.rcpt("known@example.test").code, 250);
    pf.wait_connections(1, WAIT);
    let log = pf.log();
    assert!(log.contains("connect from") && log.contains("[127.0.0.3]"), "{log}");
    assert!(!log.contains("connect from localhost[127.0.0.1]") && !log.contains("unknown[127.0.0.1]"), "{log}");
}

/// A mailbox created after its "unknown" was cached is accepted within
/// `negative_recheck_secs` (here the smallest, 10 s), not after the
/// negative TTL: the first hit past the interval still answers from the
/// cache and re-probes in the background; the next RCPT gets the new answer.
#[test]
fn a_new_mailbox_is_accepted_after_the_negative_recheck() {
    let rcpt = "newcomer@example.test";
    let pf = PostfixSmtpd::start(&["example.test"], &[]);
    let ca = CallaheadSetup::new()
        .route("example.test", &pf.host_port())
        .profile("negative_recheck_secs", "10")
        .profile("negative_cache_ttl_secs", "3600")
        .start();
    assert_eq!(ca.rcpt(rcpt).code, 550);
    pf.add_mailbox(rcpt);
    assert_eq!(ca.rcpt(rcpt).code, 550, "within the interval the cached answer stands");
    assert_eq!(pf.rcpt_lookups_of(rcpt), 1, "and nothing is asked");

    let interval_over = std::time::Instant::now() + std::time::Duration::from_secs(10);
    assert!(wait_until(WAIT, || std::time::Instant::now() >= interval_over));
    assert_eq!(ca.rcpt(rcpt).code, 550, "the hit that triggers the recheck is still answered from the cache");
    assert!(wait_until(WAIT, || pf.rcpt_lookups_of(rcpt) == 2), "re-probed in the background");
    assert!(wait_until(WAIT, || ca.rcpt(rcpt).code == 250), "the new mailbox is accepted");
    let decisions = ca.wait_decision(rcpt, 4);
    assert_eq!(decisions[0].field("source"), "probe");
    assert!(decisions[1..].iter().all(|d| d.field("source") == "cache"), "the client never waited for a probe: {decisions:#?}");
}

/// Postfix counts a session's errors, RSET or not: past 10 it slows every
/// reply, past 20 it answers 421 and hangs up. Probe connections are
/// retired before that (at most `CALLAHEAD_REFUSALS_PER_CONNECTION_MAX`
/// refusals each), so 40 unknown recipients all get Postfix's own 550
/// 5.1.1, none a failure, none waiting on the tarpit.
#[test]
fn many_unknown_recipients_never_meet_the_downstream_error_limits() {
    let pf = PostfixSmtpd::start(&["example.test"], &[]);
    let ca = CallaheadSetup::new().route("example.test", &pf.host_port()).start();
    let mut session = ca.session();
    let pipelined: String = (0..40).map(|i| format!("RCPT TO:<nobody{i}@example.test>\r\n")).collect();
    session.send(pipelined.as_bytes()).unwrap();
    let replies = session.read_replies(40).unwrap();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.code, 550, "nobody{i}: {reply:?}");
        assert!(reply.text().contains("User unknown"), "nobody{i}: {reply:?}");
    }
    let decisions = ca.wait_decision("nobody39@example.test", 1);
    assert!(decisions[0].ms() < 1000.0, "no tarpit delay: {decisions:?}");
    assert!(pf.connections_total() >= 40 / 9, "connections retired: {}", pf.log());
    assert!(!pf.log().contains("too many errors"), "{}", pf.log());
}
