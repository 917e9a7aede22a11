//! End to end: call-ahead protecting the downstream (issue 7 item 7): the
//! per-server circuit breaker, the probe budget per client IP, and
//! catch-all detection. Each is counted at the downstream: a probe that was
//! spared is a connection or a RCPT the server never saw.
//!
//! Scenario config: `common::callahead`. Nothing sleeps.

mod common;

use common::callahead::*;
use common::*;

/// After `breaker_failures` consecutive failures the server is skipped:
/// the failure action answers at once (source=breaker) and the server sees
/// no new connection.
#[test]
fn breaker_opens_after_consecutive_failures() {
    let fake = FakeSmtp::start(Fault::Garbage(Step::Banner));
    let ca = CallaheadSetup::new()
        .route("example.test", &fake.host_port())
        .profile("breaker_failures", "2")
        .profile("breaker_open_secs", "3600")
        .profile("validation_timeout_secs", "2")
        .start();
    for n in 0..2 {
        let rcpt = format!("fail{n}@example.test");
        assert_eq!(ca.rcpt(&rcpt).code, FAILURE_CODE);
        assert_eq!(ca.wait_decision(&rcpt, 1)[0].field("source"), "probe");
    }
    let tried = fake.connections_total();
    assert!(tried >= 1, "the failures were probes");
    let reply = ca.rcpt("skipped@example.test");
    assert_eq!(reply.code, FAILURE_CODE, "{reply:?}");
    assert!(reply.text().contains(FAILURE_TEXT), "{reply:?}");
    let line = &ca.wait_decision("skipped@example.test", 1)[0];
    assert_eq!(line.field("source"), "breaker", "{line:?}");
    assert_eq!(line.field("verdict"), "failure", "{line:?}");
    assert_eq!(
        fake.connections_total(),
        tried,
        "an open breaker spares the server"
    );
}

/// Past `probes_per_client_per_minute`, a client's uncached recipients get
/// the failure action without a probe (source=budget); cached ones are
/// still answered, and another client still probes.
#[test]
fn probe_budget_per_client_ip() {
    let pf = PostfixSmtpd::start(&["example.test"], &["known@example.test"]);
    let ca = CallaheadSetup::new()
        .route("example.test", &pf.host_port())
        .profile("probes_per_client_per_minute", "2")
        .start();
    let mut raw = ca.session();
    for n in 0..2 {
        let reply = raw.cmd(&format!("RCPT TO:<dict{n}@example.test>")).unwrap();
        assert_eq!(reply.code, 550, "{reply:?}");
    }
    let over = raw.cmd("RCPT TO:<dict2@example.test>").unwrap();
    assert_eq!(over.code, FAILURE_CODE, "{over:?}");
    assert_eq!(
        ca.wait_decision("dict2@example.test", 1)[0].field("source"),
        "budget"
    );
    assert_eq!(
        pf.rcpt_lookups_of("dict2@example.test"),
        0,
        "no probe past the budget"
    );
    let cached = raw.cmd("RCPT TO:<dict0@example.test>").unwrap();
    assert_eq!(
        cached.code, 550,
        "a cached verdict costs no probe: {cached:?}"
    );
    let _ = raw.cmd("QUIT");

    let mut other = ca.session_from(std::net::Ipv4Addr::new(127, 0, 0, 81));
    let reply = other.cmd("RCPT TO:<known@example.test>").unwrap();
    assert_eq!(
        reply.code, 250,
        "another client has its own budget: {reply:?}"
    );
    assert_eq!(pf.rcpt_commands_total(), 3);
}

/// A downstream that accepts a random local part accepts everything: with
/// `catch_all_detection`, its domain's recipients are accepted without a
/// probe each (source=catch-all).
#[test]
fn catch_all_downstream_is_detected() {
    let fake = FakeSmtp::start(Fault::None);
    let ca = CallaheadSetup::new()
        .route("example.test", &fake.host_port())
        .profile("catch_all_detection", "true")
        .start();
    for n in 0..5 {
        assert_eq!(ca.rcpt(&format!("any{n}@example.test")).code, 250);
    }
    let sources: Vec<String> = (0..5)
        .map(|n| ca.wait_decision(&format!("any{n}@example.test"), 1)[0].field("source"))
        .collect();
    assert!(sources.iter().any(|s| s == "catch-all"), "{sources:?}");
    let asked: Vec<String> = fake
        .commands()
        .into_iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("RCPT"))
        .collect();
    assert!(
        asked.len() < 5 + 1,
        "fewer RCPTs at the server than recipients plus the random probe: {asked:?}"
    );
}

/// After `breaker_open_secs` one trial probe goes through; a server that
/// answers closes the breaker again. The per-server gauge follows.
#[test]
fn a_successful_trial_closes_the_breaker() {
    let mut sink = Sink::start();
    let server = sink.host_port();
    sink.stop();
    let ca = CallaheadSetup::new()
        .route("example.test", &server)
        .profile("breaker_failures", "2")
        .profile("breaker_open_secs", "1")
        .start();
    for n in 0..2 {
        assert_eq!(ca.rcpt(&format!("down{n}@example.test")).code, FAILURE_CODE);
    }
    assert_eq!(ca.rcpt("skipped@example.test").code, FAILURE_CODE);
    assert_eq!(ca.wait_decision("skipped@example.test", 1)[0].field("source"), "breaker");
    let breaker_is = |open: f64| metric(&ca.metrics(), "portcullis_callahead_server_breaker_open", &[("server", &server)]) == Some(open);
    assert!(wait_until(WAIT, || breaker_is(1.0)), "{}", ca.metrics());

    sink.start_again();
    // Once the open period is over, the next RCPT is the trial.
    assert!(wait_until(WAIT, || ca.rcpt("back@example.test").code == 250));
    let trial_accepted = || ca.decisions("back@example.test").iter().any(|d| d.field("source") == "probe" && d.field("verdict") == "accepted");
    assert!(wait_until(WAIT, trial_accepted), "{:#?}", ca.decisions("back@example.test"));
    assert_eq!(ca.rcpt("after@example.test").code, 250);
    assert_eq!(ca.wait_decision("after@example.test", 1)[0].field("source"), "probe");
    assert!(wait_until(WAIT, || breaker_is(0.0)), "{}", ca.metrics());
}
