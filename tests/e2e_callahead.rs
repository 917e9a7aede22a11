//! End to end: SMTP call-ahead recipient validation (issue 7), each reply
//! class and action, against real downstreams on 127.0.0.1: a real
//! Postfix smtpd with a recipient table (`common::postfix`), whose
//! "550 5.1.1 … User unknown in relay recipient table" is the real one,
//! and smtp-sink for refusals at chosen commands.
//!
//! Counting "at the server": Postfix's recipient table counts every RCPT
//! that reached it (`rcpt_lookups_of`), its log counts sessions; a probe
//! that did not happen is a zero there, not in our own log.
//!
//! Scenario config: `common::callahead` (one public listener, HAT, RAT with
//! a `bypass_callahead` row, `[callahead.probe]` with each test's keys).
//! Nothing sleeps: replies are awaited, log lines polled with deadlines.

mod common;

use common::callahead::*;
use common::*;
use std::time::{Duration, Instant};

const KNOWN: &str = "known@example.test";
const KNOWN2: &str = "known2@example.test";

fn postfix() -> PostfixSmtpd {
    PostfixSmtpd::start(&["example.test"], &[KNOWN, KNOWN2])
}

fn via(pf: &PostfixSmtpd) -> CallaheadSetup {
    CallaheadSetup::new().route("example.test", &pf.host_port())
}

fn user_unknown(rcpt: &str) -> String {
    format!("5.1.1 <{rcpt}>: Recipient address rejected: User unknown in relay recipient table")
}

#[test]
fn known_mailbox_is_accepted_by_probe_then_from_cache() {
    let pf = postfix();
    let ca = via(&pf).start();
    assert_eq!(ca.rcpt(KNOWN).code, 250);
    let first = &ca.wait_decision(KNOWN, 1)[0];
    assert_eq!(first.field("source"), "probe", "{first:?}");
    assert_eq!(first.field("verdict"), "accepted", "{first:?}");
    assert_eq!(first.field("action"), "accept", "{first:?}");
    assert_eq!(first.field("server"), pf.host_port(), "{first:?}");
    assert!(first.reply().starts_with("250"), "{first:?}");
    assert_eq!(pf.rcpt_lookups_of(KNOWN), 1);

    assert_eq!(ca.rcpt(KNOWN).code, 250);
    let second = &ca.wait_decision(KNOWN, 2)[1];
    assert_eq!(second.field("source"), "cache", "{second:?}");
    assert_eq!(pf.rcpt_lookups_of(KNOWN), 1, "a positive verdict is cached");
}

#[test]
fn unknown_mailbox_gets_postfix_reply_and_is_cached() {
    let pf = postfix();
    let ca = via(&pf).start();
    let rcpt = "nobody@example.test";
    let reply = ca.rcpt(rcpt);
    assert_eq!((reply.code, reply.text()), (550, user_unknown(rcpt)));
    let first = &ca.wait_decision(rcpt, 1)[0];
    assert_eq!(
        (first.field("source"), first.field("verdict")),
        ("probe".into(), "mailbox-unknown".into()),
        "{first:?}"
    );
    assert_eq!(first.field("action"), "reject", "{first:?}");
    assert!(
        first
            .reply()
            .contains("User unknown in relay recipient table"),
        "{first:?}"
    );

    // The cached verdict keeps the downstream's words; no new RCPT there.
    let again = ca.rcpt(rcpt);
    assert_eq!((again.code, again.text()), (550, user_unknown(rcpt)));
    assert_eq!(ca.wait_decision(rcpt, 2)[1].field("source"), "cache");
    assert_eq!(
        pf.rcpt_lookups_of(rcpt),
        1,
        "a mailbox-unknown verdict is cached"
    );
}

#[test]
fn soft_reject_is_passed_through_and_not_cached() {
    let sink = Sink::builder().reject_soft(&["RCPT"]).start();
    let ca = CallaheadSetup::new()
        .route("example.test", &sink.host_port())
        .start();
    let rcpt = "soft@example.test";
    let first = ca.rcpt(rcpt);
    assert_eq!(
        first.code, 450,
        "tempfail_code = 0 passes the 4xx through: {first:?}"
    );
    assert!(
        first.text().starts_with("4.3.0"),
        "smtp-sink's own text: {first:?}"
    );
    let second = ca.rcpt(rcpt);
    assert_eq!(second.code, 450, "{second:?}");
    let lines = ca.wait_decision(rcpt, 2);
    for line in &lines {
        assert_eq!(
            (line.field("source"), line.field("verdict")),
            ("probe".into(), "tempfail".into()),
            "never cached: {line:?}"
        );
    }
}

#[test]
fn custom_tempfail_reply() {
    let sink = Sink::builder().reject_soft(&["RCPT"]).start();
    let ca = CallaheadSetup::new()
        .route("example.test", &sink.host_port())
        .profile("tempfail_code", "452")
        .profile_str("tempfail_text", "Mailbox check deferred")
        .start();
    let reply = ca.rcpt("soft@example.test");
    assert_eq!(reply.code, 452, "{reply:?}");
    assert!(reply.text().contains("Mailbox check deferred"), "{reply:?}");
}

#[test]
fn tempfail_action_accept_answers_250() {
    let sink = Sink::builder().reject_soft(&["RCPT"]).start();
    let ca = CallaheadSetup::new()
        .route("example.test", &sink.host_port())
        .profile_str("tempfail_action", "accept")
        .start();
    assert_eq!(ca.rcpt("soft@example.test").code, 250);
    let line = &ca.wait_decision("soft@example.test", 1)[0];
    assert_eq!(
        (line.field("verdict"), line.field("action")),
        ("tempfail".into(), "accept".into()),
        "{line:?}"
    );
}

/// A refusal of our MAIL FROM says nothing about the recipient: failure
/// action, never cached (the second RCPT probes again).
#[test]
fn mail_from_refused_is_a_failure_and_not_cached() {
    let sink = Sink::builder().reject_hard(&["MAIL"]).start();
    let ca = CallaheadSetup::new()
        .route("example.test", &sink.host_port())
        .start();
    let rcpt = "someone@example.test";
    for n in 1..=2 {
        let reply = ca.rcpt(rcpt);
        assert_eq!(
            (reply.code, reply.text().contains(FAILURE_TEXT)),
            (FAILURE_CODE, true),
            "{reply:?}"
        );
        let line = &ca.wait_decision(rcpt, n)[n - 1];
        assert_eq!(
            (line.field("source"), line.field("verdict")),
            ("probe".into(), "failure".into()),
            "{line:?}"
        );
        assert_eq!(line.field("action"), "reject", "{line:?}");
    }
}

#[test]
fn ehlo_refused_is_a_failure() {
    let sink = Sink::builder().reject_hard(&["EHLO", "HELO"]).start();
    let ca = CallaheadSetup::new()
        .route("example.test", &sink.host_port())
        .start();
    let reply = ca.rcpt("someone@example.test");
    assert_eq!(reply.code, FAILURE_CODE, "{reply:?}");
    assert!(reply.text().contains(FAILURE_TEXT), "{reply:?}");
    assert_eq!(
        ca.wait_decision("someone@example.test", 1)[0].field("verdict"),
        "failure"
    );
}

/// Postfix's 554 5.7.1 relay denial is a policy reject, not "no such
/// user": failure action, never cached.
#[test]
fn policy_reject_at_rcpt_is_a_failure_not_unknown() {
    let pf = PostfixSmtpd::start(&["elsewhere.test"], &[]);
    let ca = CallaheadSetup::new()
        .route("example.test", &pf.host_port())
        .start();
    let reply = ca.rcpt("policy@example.test");
    assert_eq!(reply.code, FAILURE_CODE, "5.7.x is a failure: {reply:?}");
    ca.rcpt("policy@example.test");
    let lines = ca.wait_decision("policy@example.test", 2);
    assert!(
        lines
            .iter()
            .all(|l| l.field("verdict") == "failure" && l.field("source") == "probe"),
        "{lines:?}"
    );
    assert!(
        wait_until(WAIT, || pf.rejected_rcpt_lines().len() == 2),
        "{}",
        pf.log()
    );
}

#[test]
fn custom_failure_reply_and_failure_action_accept() {
    let dead = format!("127.0.0.1:{}", free_port());
    let custom = CallaheadSetup::new()
        .route("example.test", &dead)
        .profile("failure_code", "554")
        .profile_str("failure_text", "Cannot verify recipient here")
        .start();
    let reply = custom.rcpt("x@example.test");
    assert_eq!(reply.code, 554, "{reply:?}");
    assert!(
        reply.text().contains("Cannot verify recipient here"),
        "{reply:?}"
    );
    drop(custom);

    let accepting = CallaheadSetup::new()
        .route("example.test", &dead)
        .profile_str("failure_action", "accept")
        .start();
    assert_eq!(accepting.rcpt("x@example.test").code, 250);
    let line = &accepting.wait_decision("x@example.test", 1)[0];
    assert_eq!(
        (line.field("verdict"), line.field("action")),
        ("failure".into(), "accept".into()),
        "{line:?}"
    );
}

#[test]
fn second_static_server_answers_when_the_first_is_dead() {
    let pf = postfix();
    let dead = format!("127.0.0.1:{}", free_port());
    let timeout_secs = 5;
    let ca = CallaheadSetup::new()
        .static_servers(&[&dead, &pf.host_port()])
        .profile("validation_timeout_secs", &timeout_secs.to_string())
        .start();
    let started = Instant::now();
    let reply = ca.rcpt(KNOWN);
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(timeout_secs),
        "within one validation timeout"
    );
    assert_eq!(pf.rcpt_lookups_of(KNOWN), 1);
    assert_eq!(
        ca.wait_decision(KNOWN, 1)[0].field("server"),
        pf.host_port()
    );
}

/// Round robin from the first static server, counted at the two servers
/// (one shard, so one round-robin position).
#[test]
fn static_servers_are_asked_round_robin_from_the_first() {
    let first = FakeSmtp::start(Fault::None);
    let second = FakeSmtp::start(Fault::None);
    let ca = CallaheadSetup::new()
        .static_servers(&[&first.host_port(), &second.host_port()])
        .cores(1)
        .start();
    assert_eq!(ca.rcpt("rr1@example.test").code, 250);
    assert_eq!(
        (first.count_commands("RCPT"), second.count_commands("RCPT")),
        (1, 0),
        "the first server first"
    );
    for n in 2..=4 {
        assert_eq!(ca.rcpt(&format!("rr{n}@example.test")).code, 250);
    }
    assert_eq!(
        (first.count_commands("RCPT"), second.count_commands("RCPT")),
        (2, 2)
    );
}

#[test]
fn route_by_host_name_through_the_test_dns() {
    let pf = postfix();
    let dns = common::dns::TestDns::start(
        &common::dns::Zone::new().a("downstream.example.test", "127.0.0.1"),
    );
    let ca = CallaheadSetup::new()
        .route(
            "example.test",
            &format!("downstream.example.test:{}", pf.port()),
        )
        .dns(dns.addr())
        .start();
    assert_eq!(ca.rcpt(KNOWN).code, 250);
    assert_eq!(ca.rcpt("nobody@example.test").code, 550);
    assert_eq!(pf.rcpt_commands_total(), 2);
    assert_eq!(
        ca.wait_decision(KNOWN, 1)[0].field("server"),
        pf.host_port()
    );
}

/// RAT first: a RAT reject is never probed, a bypass row is accepted
/// without a probe, a RELAY policy skips call-ahead.
#[test]
fn rat_reject_bypass_and_relay_are_never_probed() {
    let pf = postfix();
    let ca = via(&pf).start();
    let refused = ca.rcpt("x@elsewhere.test");
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(
        refused.text().contains("Relay access denied"),
        "{refused:?}"
    );

    assert_eq!(
        ca.rcpt(BYPASS_RCPT).code,
        250,
        "bypass_callahead: not a mailbox at Postfix, accepted anyway"
    );
    let bypass = &ca.wait_decision(BYPASS_RCPT, 1)[0];
    assert_eq!(bypass.field("source"), "bypass", "{bypass:?}");

    let mut relay = ca.session_from(RELAY_CLIENT);
    let reply = relay.cmd("RCPT TO:<nobody@example.test>").unwrap();
    assert_eq!(reply.code, 250, "RELAYED skips call-ahead: {reply:?}");
    relay.cmd("QUIT").unwrap();

    assert_eq!(pf.rcpt_commands_total(), 0, "nothing reached the server");
    assert_eq!(pf.connections_total(), 0, "{}", pf.log());
    assert!(
        ca.all_decisions()
            .iter()
            .all(|d| d.field("source") != "probe"),
        "{:?}",
        ca.all_decisions()
    );
}

/// ESA: call-ahead rejections count toward DHAP's invalid recipients.
#[test]
fn unknown_recipients_count_toward_dhap() {
    let pf = postfix();
    let max_invalid = 3;
    let ca = via(&pf).dhap_max_invalid(max_invalid).start();
    let mut raw = ca.session_from(HARVEST_CLIENT);
    for n in 0..max_invalid {
        let rcpt = format!("guess{n}@example.test");
        let reply = raw.cmd(&format!("RCPT TO:<{rcpt}>")).unwrap();
        assert_eq!((reply.code, reply.text()), (550, user_unknown(&rcpt)));
    }
    let over = raw.cmd(&format!("RCPT TO:<{KNOWN}>")).unwrap();
    assert_eq!(over.code, 550, "{over:?}");
    assert!(
        over.text().contains("Too many invalid recipients"),
        "the DHAP reply: {over:?}"
    );
}

#[test]
fn warn_mode_accepts_and_logs_what_enforce_would_do() {
    let pf = postfix();
    let ca = via(&pf).profile_str("mode", "warn").start();
    assert_eq!(ca.rcpt("nobody@example.test").code, 250);
    let line = &ca.wait_decision("nobody@example.test", 1)[0];
    assert_eq!(line.field("verdict"), "mailbox-unknown", "{line:?}");
    assert_eq!(line.field("action"), "warn-accept", "{line:?}");
    assert!(line.reply().contains("User unknown"), "{line:?}");
}

/// RFC 2920: 100 pipelined RCPTs, known and unknown mixed, get 100
/// replies in order.
#[test]
fn one_hundred_pipelined_rcpts_get_replies_in_order() {
    let pf = postfix();
    let ca = via(&pf).start();
    let rcpts: Vec<String> = (0..100)
        .map(|i| {
            if i % 3 == 0 {
                format!("ghost{i}@example.test")
            } else if i % 2 == 0 {
                KNOWN.to_owned()
            } else {
                KNOWN2.to_owned()
            }
        })
        .collect();
    let mut raw = ca.session();
    let batch: String = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();
    raw.send(batch.as_bytes()).unwrap();
    let replies = raw.read_replies(rcpts.len()).unwrap();
    for (rcpt, reply) in rcpts.iter().zip(&replies) {
        let want = if rcpt.starts_with("ghost") { 550 } else { 250 };
        assert_eq!(reply.code, want, "{rcpt}: {reply:?}");
        if want == 550 {
            assert_eq!(reply.text(), user_unknown(rcpt));
        }
    }
    assert_eq!(raw.cmd("QUIT").unwrap().code, 221);
}

/// The cache is operable: query shows the verdict, purge removes it, and a
/// mailbox created meanwhile is accepted on the next RCPT.
#[test]
fn cli_query_and_purge_then_new_mailbox_is_accepted() {
    let pf = postfix();
    let ca = via(&pf).start();
    let rcpt = "later@example.test";
    assert_eq!(ca.rcpt(rcpt).code, 550);
    let query = ca.cli(&["query", rcpt]);
    assert!(query.success(), "{query:?}");
    for word in [
        "verdict=mailbox-unknown",
        "source=",
        "reply=\"",
        "age_secs=",
        "ttl_secs=",
        "shard=",
    ] {
        assert!(query.stdout.contains(word), "{word} in {:?}", query.stdout);
    }
    assert!(query.stdout.contains("User unknown"), "{:?}", query.stdout);

    pf.add_mailbox(rcpt);
    let purge = ca.cli(&["purge", rcpt]);
    assert!(purge.stdout.contains("purged=1"), "{purge:?}");
    assert!(ca.cli(&["query", rcpt]).stdout.contains("verdict=none"));
    assert_eq!(ca.rcpt(rcpt).code, 250, "probed again after the purge");
    assert_eq!(pf.rcpt_lookups_of(rcpt), 2);

    assert_eq!(ca.rcpt("other@example.test").code, 550);
    let by_domain = ca.cli(&["purge", "@example.test"]);
    assert!(by_domain.stdout.contains("purged=2"), "{by_domain:?}");
    assert_eq!(ca.rcpt(KNOWN).code, 250);
    assert!(ca.cli(&["purge", "--all"]).stdout.contains("purged=1"));
}

#[test]
fn metrics_count_verdicts_by_source_and_result() {
    let pf = postfix();
    let ca = via(&pf).start();
    ca.rcpt(KNOWN);
    ca.rcpt(KNOWN);
    ca.rcpt("nobody@example.test");
    assert_eq!(ca.rcpt("someone@elsewhere.test").code, 550, "the RAT refuses it");
    ca.wait_decision("nobody@example.test", 1);
    let page = ca.metrics();
    let verdicts = |source, result| {
        metric(
            &page,
            "portcullis_callahead_verdicts_total",
            &[("source", source), ("result", result)],
        )
    };
    assert_eq!(verdicts("probe", "accepted"), Some(1.0), "{page}");
    assert_eq!(verdicts("cache", "accepted"), Some(1.0), "{page}");
    assert_eq!(verdicts("probe", "mailbox-unknown"), Some(1.0), "{page}");
    assert_eq!(verdicts("rat", "refused"), Some(1.0), "{page}");
    assert_eq!(metric(&page, "portcullis_callahead_probes_total", &[]), Some(2.0), "{page}");
    // The gauges are published once a second by each shard.
    let server = pf.host_port();
    let gauges_settled = || {
        let page = ca.metrics();
        metric(&page, "portcullis_callahead_cache_entries", &[]) == Some(2.0)
            && metric(&page, "portcullis_callahead_server_connections", &[("server", &server)]) == Some(1.0)
            && metric(&page, "portcullis_callahead_server_breaker_open", &[("server", &server)]) == Some(0.0)
    };
    assert!(wait_until(WAIT, gauges_settled), "{}", ca.metrics());
}

/// `max_connections_per_server` holds for the whole appliance (two
/// shards), counted at the server; and N concurrent RCPTs for one new
/// address share one probe (single flight), also counted at the server.
#[test]
fn per_server_connection_cap_and_single_flight_across_shards() {
    let pf = postfix();
    let ca = via(&pf)
        .cores(2)
        .profile("max_connections_per_server", "1")
        .start();
    let clients = 8;
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let addr = ca.server.addr();
            std::thread::spawn(move || {
                let (mut raw, _) = RawSmtp::connect(addr).unwrap();
                raw.cmd("EHLO client.test").unwrap();
                raw.cmd("MAIL FROM:<s@client.test>").unwrap();
                let batch: String = (0..10)
                    .map(|n| {
                        format!(
                            "RCPT TO:<c{i}n{n}@example.test>\r\nRCPT TO:<fresh@example.test>\r\n"
                        )
                    })
                    .collect();
                raw.send(batch.as_bytes()).unwrap();
                raw.read_replies(20)
                    .unwrap()
                    .iter()
                    .map(|r| r.code)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in handles {
        assert!(handle.join().unwrap().iter().all(|&c| c == 550));
    }
    assert_eq!(
        pf.rcpt_lookups_of("fresh@example.test"),
        1,
        "one probe for one address"
    );
    assert!(pf.connections_total() >= 1);
    assert_eq!(pf.max_concurrent_connections(), 1, "{}", pf.log());
}
