//! End to end: TLS on our outbound SMTP connections (issue 9 items 4 and
//! 5), against real peers on 127.0.0.1.
//!
//! - A real Postfix `smtpd` with STARTTLS (`common::postfix`, a server
//!   certificate of the test PKI for `mx.partner.test`, `localhost` and
//!   127.0.0.1): at `smtpd_tls_security_level = encrypt` it answers MAIL
//!   in clear with 530, so mail or a verdict that got through came over
//!   TLS; its log says "TLS connection established" per encrypted session.
//! - smtp-sink, which offers no STARTTLS.
//! - unbound (`common::dns`) serves the host names routes use, so the
//!   peer's TLS identity is a name (`required-verify` checks it).
//!
//! Delivery: `[destination."partner.test"] tls = …` with the route
//! `partner.test → NAME:PORT`. Call-ahead: `[callahead.probe] tls = …`.
//! Nothing sleeps: log lines are awaited with deadlines.

mod common;

use common::callahead::CallaheadSetup;
use common::certs::TestPki;
use common::dns::{TestDns, Zone};
use common::postfix::PostfixTls;
use common::*;

const DOMAIN: &str = "partner.test";
const RCPT: &str = "bob@partner.test";

/// The test PKI (server certificate also for mx.partner.test) and a
/// Postfix at `level` with it.
fn postfix(level: &'static str, domains: &[&str], mailboxes: &[&str]) -> (TempDir, TestPki, PostfixSmtpd) {
    let dir = TempDir::new("pki");
    let pki = TestPki::new(dir.path(), &["mx.partner.test"]);
    let tls = PostfixTls { level, cert: pki.server_cert(), key: pki.server_key() };
    let pf = PostfixSmtpd::start_tls(domains, mailboxes, &tls);
    (dir, pki, pf)
}

/// mx.partner.test and other.partner.test (not in the certificate) at 127.0.0.1.
fn dns() -> TestDns {
    TestDns::start(&Zone::new().a("mx.partner.test", "127.0.0.1").a("other.partner.test", "127.0.0.1"))
}

/// Portcullis relaying partner.test to `host`, with `destination` lines
/// under `[destination."partner.test"]` (none: the default, preferred).
fn relay(host: &str, destination: &str, dns: &TestDns) -> (ConfigFile, Portcullis) {
    relay_with_admin(host, destination, dns).0
}

/// `relay`, with an admin listener (for /metrics) at the address returned.
fn relay_with_admin(host: &str, destination: &str, dns: &TestDns) -> ((ConfigFile, Portcullis), std::net::SocketAddr) {
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut text = format!("relay_domains = [{DOMAIN:?}]\n\n[routes]\n{DOMAIN:?} = [{host:?}]\n");
    if !destination.is_empty() {
        text.push_str(&format!("\n[destination.{DOMAIN:?}]\n{destination}\n"));
    }
    let file = ConfigFile::with_text(&text);
    let server = Portcullis::builder()
        .config(file.path())
        .routes_from_config()
        .dns(dns.addr())
        .retry_secs(1, 1)
        .admin_listen(&admin.to_string())
        .start();
    assert!(wait_until(WAIT, || is_listening(admin.port())), "admin port\n{}", server.log());
    ((file, server), admin)
}

fn send(server: &Portcullis) {
    let sent = Swaks::new(server.addr()).to(RCPT).header("Subject: outbound tls").run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
}

fn wait_event(server: &Portcullis, event: &str) -> String {
    assert!(wait_until(WAIT, || !server.event_lines(event).is_empty()), "no {event} line\n{}", server.log());
    server.event_lines(event).remove(0)
}

fn field(line: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    line.split_whitespace().find_map(|w| w.strip_prefix(prefix.as_str())).unwrap_or("").to_owned()
}

#[test]
fn required_tls_delivers_to_postfix_encrypt_over_tls() {
    let (_dir, _pki, pf) = postfix("encrypt", &[DOMAIN], &[RCPT]);
    let dns = dns();
    let (_file, server) = relay(&format!("mx.partner.test:{}", pf.port()), "tls = \"required\"", &dns);
    send(&server);
    let delivered = wait_event(&server, "delivered");
    let tls = field(&delivered, "tls");
    assert!(tls.starts_with("TLSv1.3/") || tls.starts_with("TLSv1.2/"), "{delivered}");
    assert!(pf.tls_sessions() >= 1, "postfix saw no TLS session\n{}", pf.log());
    assert!(server.event_lines("tls-alert").is_empty(), "{}", server.log());
}

#[test]
fn required_tls_without_starttls_defers_alerts_and_never_sends_in_clear() {
    let sink = Sink::start();
    let dns = dns();
    let ((_file, server), admin) = relay_with_admin(&sink.host_port(), "tls = \"required\"", &dns);
    send(&server);
    let alert = wait_event(&server, "tls-alert");
    assert_eq!(field(&alert, "domain"), DOMAIN, "{alert}");
    assert_eq!(field(&alert, "destination"), DOMAIN, "{alert}");
    assert_eq!(field(&alert, "relay"), sink.host_port(), "{alert}");
    assert!(alert.contains("does not offer STARTTLS"), "{alert}");
    // The next round (1 s later) alerts again: still deferred, never sent.
    assert!(wait_until(WAIT, || server.event_lines("tls-alert").len() >= 2), "{}", server.log());
    assert_eq!(sink.count(), 0, "mail that requires TLS went out in clear");
    assert!(server.event_lines("delivered").is_empty());
    let metrics = scrape(admin);
    assert!(metrics.contains(r#"portcullis_outbound_tls_total{side="delivery",destination="partner.test",result="failed"}"#), "{metrics}");
}

#[test]
fn preferred_tls_falls_back_to_clear_when_not_offered() {
    let sink = Sink::start();
    let dns = dns();
    let ((_file, server), admin) = relay_with_admin(&sink.host_port(), "", &dns);
    send(&server);
    let delivered = wait_event(&server, "delivered");
    assert_eq!(field(&delivered, "tls"), "none", "{delivered}");
    assert_eq!(sink.wait_for_messages(1, WAIT).len(), 1);
    let metrics = scrape(admin);
    assert!(metrics.contains(r#"portcullis_outbound_tls_total{side="delivery",destination="default",result="clear"}"#), "{metrics}");
}

#[test]
fn required_verify_delivers_with_the_right_ca_and_name() {
    let (_dir, pki, pf) = postfix("encrypt", &[DOMAIN], &[RCPT]);
    let dns = dns();
    let destination = format!("tls = \"required-verify\"\nca_file = {:?}", pki.ca().display().to_string());
    let (_file, server) = relay(&format!("mx.partner.test:{}", pf.port()), &destination, &dns);
    send(&server);
    let delivered = wait_event(&server, "delivered");
    assert!(field(&delivered, "tls").starts_with("TLSv1."), "{delivered}");
    assert!(pf.tls_sessions() >= 1, "{}", pf.log());
}

#[test]
fn required_verify_defers_when_the_name_is_not_in_the_certificate() {
    let (_dir, pki, pf) = postfix("may", &[DOMAIN], &[RCPT]);
    let dns = dns();
    let destination = format!("tls = \"required-verify\"\nca_file = {:?}", pki.ca().display().to_string());
    let (_file, server) = relay(&format!("other.partner.test:{}", pf.port()), &destination, &dns);
    send(&server);
    let alert = wait_event(&server, "tls-alert");
    assert_eq!(field(&alert, "host"), "other.partner.test", "{alert}");
    assert!(alert.contains("TLS handshake") && alert.to_lowercase().contains("certificate"), "{alert}");
    assert!(server.event_lines("delivered").is_empty(), "{}", server.log());
    // Postfix at "may" would have taken it in clear: it got no message.
    assert!(!pf.log().contains("status=sent"), "{}", pf.log());
}

#[test]
fn callahead_with_required_tls_gets_verdicts_from_postfix_encrypt() {
    let known = "known@example.test";
    let (_dir, _pki, pf) = postfix("encrypt", &["example.test"], &[known]);
    let ca = CallaheadSetup::new().route("example.test", &pf.host_port()).profile_str("tls", "required").start();
    assert_eq!(ca.rcpt(known).code, 250);
    let reply = ca.rcpt("nobody@example.test");
    assert_eq!(reply.code, 550, "{reply:?}");
    let decision = &ca.wait_decision(known, 1)[0];
    assert_eq!(decision.field("source"), "probe", "{decision:?}");
    assert!(decision.field("tls").starts_with("TLSv1."), "{decision:?}");
    assert!(pf.tls_sessions() >= 1, "{}", pf.log());
}

#[test]
fn callahead_with_required_tls_fails_without_starttls_and_caches_nothing() {
    let known = "known@example.test";
    let pf = PostfixSmtpd::start(&["example.test"], &[known]);
    let ca = CallaheadSetup::new().route("example.test", &pf.host_port()).profile_str("tls", "required").start();
    assert_eq!(ca.rcpt(known).code, 451, "the profile's failure reply");
    let decision = &ca.wait_decision(known, 1)[0];
    assert_eq!(decision.field("verdict"), "failure", "{decision:?}");
    assert!(decision.why().contains("STARTTLS"), "{decision:?}");
    assert_eq!(pf.rcpt_lookups_of(known), 0, "no RCPT went out in clear");
    assert_eq!(ca.rcpt(known).code, 451);
    assert_eq!(ca.wait_decision(known, 2)[1].field("source"), "probe", "a failure is never cached");
}
