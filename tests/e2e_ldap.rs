//! LDAP routing and accept queries end to end (issue 8), against a real
//! slapd (tests/common/slapd.rs), unbound for the host names the entries
//! name, and smtp-sinks standing for the internal servers:
//!
//! - the seed's entry: call-ahead probes go to the `callAhead` hosts on the
//!   port written once for the list, delivery goes to the `mailHost`,
//!   neither to the recipient domain's own route;
//! - the seed's three port rules (one host without a port takes its SMTP
//!   route's port; a host with a port takes its route with the LDAP port;
//!   a host without a route goes by DNS with the LDAP port);
//! - the fall-through: no entry → the domain's SMTP route;
//! - recipient rewrite: the rewritten address is probed and delivered;
//! - the accept query: entry → 250, none → 550 5.1.1, never called ahead,
//!   counted by DHAP; filter injection finds nothing;
//! - slapd killed: accept and routing answer the failure action, delivery
//!   defers, the shards keep serving; slapd back: all works again.

mod common;

use common::callahead::{metric, Callahead, CallaheadSetup, HARVEST_CLIENT, RELAY_CLIENT};
use common::clients::RawSmtp;
use common::dns::{TestDns, Zone};
use common::process::free_port;
use common::sink::Sink;
use common::slapd::{route_entry, Slapd, PEOPLE};
use common::WAIT;

const DOMAIN: &str = "cisco.example.test";
const MAIL_HOST: &str = "mail.cisco.example.test";
const CA2: &str = "ca2.cisco.example.test";
const CA3: &str = "ca3.cisco.example.test";

fn dead() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Every test name of the entries resolves to loopback.
fn dns() -> TestDns {
    TestDns::start(&Zone::standard().a(MAIL_HOST, "127.0.0.1").a(CA2, "127.0.0.1").a(CA3, "127.0.0.1"))
}

/// `[ldap.query."R"]`, a routing query with the seed's attributes.
fn routing_query(filter: &str, ttl_secs: u64) -> String {
    format!(
        "[ldap.query.\"R\"]\nserver = \"LDAP1\"\nkind = \"routing\"\nfilter = {filter:?}\n\
         rewrite_attribute = \"mailRoutingAddress\"\nmailhost_attribute = \"mailHost\"\n\
         callahead_attribute = \"callAhead\"\ncache_ttl_secs = {ttl_secs}\n"
    )
}

/// `[ldap.query."A"]`, an accept query on `mail`.
fn accept_query() -> String {
    "[ldap.query.\"A\"]\nserver = \"LDAP1\"\nkind = \"accept\"\nfilter = \"(mail={a})\"\ncache_ttl_secs = 0\n".to_string()
}

fn person(mail: &str, extra: &str) -> String {
    format!("dn: mail={mail},{PEOPLE}\nobjectClass: portcullisMailRoute\nmail: {mail}\n{extra}")
}

/// Sends one message to `rcpt` from 127.0.0.1; the reply to the dot (or the refusal).
fn send(ca: &Callahead, rcpt: &str) -> common::clients::Reply {
    let (mut raw, _) = RawSmtp::connect(ca.server.addr()).unwrap();
    let reply = raw.send_mail("s@client.test", &[rcpt], b"Subject: ldap\r\n\r\nhello\r\n").unwrap();
    let _ = raw.cmd("QUIT");
    reply
}

fn event(ca: &Callahead, event: &str, needle: &str, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let found = common::process::wait_until(WAIT, || {
        got = ca.server.event_lines(event).into_iter().filter(|l| l.contains(needle)).collect();
        got.len() >= n
    });
    assert!(found, "{n} {event} lines with {needle:?}\n{}", ca.server.log());
    got
}

#[test]
fn the_seed_entry_probes_its_callahead_hosts_on_their_port_and_delivers_to_its_mailhost() {
    let dns = dns();
    let (delivery_sink, probe_sink) = (Sink::start(), Sink::start());
    let ldap = Slapd::start();
    // The seed: `callAhead: smtp2…,smtp3…:9025` — both hosts on the one port.
    ldap.add(&route_entry(DOMAIN, MAIL_HOST, Some(&format!("{CA2},{CA3}:{}", probe_sink.port()))));
    let ca = CallaheadSetup::new()
        .domain(DOMAIN)
        .route("example.test", &dead())
        // Never used: LDAP routes the domain.
        .route(DOMAIN, &dead())
        // Rule 1: one host without a port → its SMTP route, with the route's port.
        .route(MAIL_HOST, &delivery_sink.host_port())
        // Rule 2: a host with a port → its route, on the LDAP port (port 1 is replaced).
        .route(CA2, "127.0.0.1:1")
        // CA3 has no route (rule 3): DNS A, on the LDAP port.
        .dns(dns.addr())
        .listener_key("ldap_routing", "\"R\"")
        .extra(&ldap.server_toml("LDAP1"))
        .extra(&routing_query("(mail={d})", 300))
        .start();

    let reply = send(&ca, &format!("someone@{DOMAIN}"));
    assert_eq!(reply.code, 250, "{reply:?}\n{}", ca.server.log());
    let decision = ca.wait_decision(&format!("someone@{DOMAIN}"), 1).remove(0);
    assert_eq!(decision.field("ldap"), "entry", "{decision:?}");
    assert_eq!(decision.field("server"), format!("127.0.0.1:{}", probe_sink.port()), "probed at the callAhead hosts, LDAP port");
    let delivered = event(&ca, "delivered", &format!("someone@{DOMAIN}"), 1);
    assert!(delivered[0].contains(&format!("relay=127.0.0.1:{}", delivery_sink.port())) && delivered[0].contains("via=ldap"), "{delivered:?}");
    let got = delivery_sink.wait_for_messages(1, WAIT);
    assert_eq!(got[0].recipients(), [format!("someone@{DOMAIN}")]);
    assert_eq!(probe_sink.count(), 0, "the call-ahead server got a probe, never the mail");
}

#[test]
fn a_host_with_a_port_takes_its_route_or_dns_on_that_port_and_no_entry_falls_through_to_the_domain_route() {
    let dns = dns();
    let (probe_sink, domain_sink) = (Sink::start(), Sink::start());
    let ldap = Slapd::start();
    // One host with a port and no SMTP route: DNS A with that port (rule 3).
    ldap.add(&route_entry(DOMAIN, &format!("{CA3}:{}", probe_sink.port()), None));
    // One host with a port and an SMTP route on port 1: the route, on the LDAP port (rule 2).
    ldap.add(&route_entry("two.example.test", &format!("{CA2}:{}", probe_sink.port()), None));
    let ca = CallaheadSetup::new()
        .domain(DOMAIN)
        .domain("two.example.test")
        .route("two.example.test", &dead())
        .route(CA2, "127.0.0.1:1")
        .domain("plain.example.test")
        .route("example.test", &dead())
        .route(DOMAIN, &dead())
        .route("plain.example.test", &domain_sink.host_port())
        .dns(dns.addr())
        .listener_key("ldap_routing", "\"R\"")
        .extra(&ldap.server_toml("LDAP1"))
        .extra(&routing_query("(mail={d})", 300))
        .start();

    assert_eq!(ca.rcpt(&format!("a@{DOMAIN}")).code, 250);
    let decision = ca.wait_decision(&format!("a@{DOMAIN}"), 1).remove(0);
    assert_eq!(decision.field("server"), format!("127.0.0.1:{}", probe_sink.port()), "no callAhead: the mail host is asked");
    assert_eq!(ca.rcpt("b@two.example.test").code, 250, "{}", ca.server.log());
    let decision = ca.wait_decision("b@two.example.test", 1).remove(0);
    assert_eq!(decision.field("server"), format!("127.0.0.1:{}", probe_sink.port()), "the route's port 1 is replaced");
    // No entry for the domain: its own SMTP route, as without LDAP.
    assert_eq!(ca.rcpt("b@plain.example.test").code, 250);
    let decision = ca.wait_decision("b@plain.example.test", 1).remove(0);
    assert_eq!((decision.field("ldap").as_str(), decision.field("server")), ("no-entry", domain_sink.host_port()));
    let reply = send(&ca, "c@plain.example.test");
    assert_eq!(reply.code, 250, "{reply:?}");
    let delivered = event(&ca, "delivered", "c@plain.example.test", 1);
    assert!(delivered[0].contains("via=domain"), "{delivered:?}");
    domain_sink.wait_for_messages(1, WAIT);
}

#[test]
fn a_rewritten_recipient_is_what_is_probed_and_delivered() {
    let dns = dns();
    let sink = Sink::start();
    let ldap = Slapd::start();
    ldap.add(&person("alias@example.test", &format!("mailRoutingAddress: real@inside.example.test\nmailHost: {MAIL_HOST}\n")));
    let ca = CallaheadSetup::new()
        .route("example.test", &dead())
        .route(MAIL_HOST, &sink.host_port())
        .dns(dns.addr())
        .listener_key("ldap_routing", "\"R\"")
        .extra(&ldap.server_toml("LDAP1"))
        .extra(&routing_query("(mail={a})", 300))
        .start();

    let reply = send(&ca, "alias@example.test");
    assert_eq!(reply.code, 250, "{reply:?}\n{}", ca.server.log());
    let decision = ca.wait_decision("alias@example.test", 1).remove(0);
    assert_eq!(decision.field("probed"), "<real@inside.example.test>", "{decision:?}");
    let got = sink.wait_for_messages(1, WAIT);
    assert_eq!(got[0].recipients(), ["real@inside.example.test"], "the envelope recipient is rewritten");
    let delivered = event(&ca, "delivered", "real@inside.example.test", 1);
    assert!(delivered[0].contains("orig_to=<alias@example.test>"), "{delivered:?}");
}

#[test]
fn the_accept_query_refuses_who_is_not_in_the_directory_without_calling_ahead_and_counts_dhap() {
    let sink = Sink::start();
    let ldap = Slapd::start();
    ldap.add(&person("known@example.test", ""));
    let ca = CallaheadSetup::new()
        .route("example.test", &sink.host_port())
        .dhap_max_invalid(3)
        .listener_key("ldap_accept", "\"A\"")
        .extra(&ldap.server_toml("LDAP1"))
        .extra(&accept_query())
        .start();

    assert_eq!(ca.rcpt("known@example.test").code, 250);
    let refused = ca.rcpt("unknown@example.test");
    assert_eq!((refused.code, refused.text().contains("5.1.1")), (550, true), "{refused:?}");
    // Injection: unescaped, `(mail=*@example.test)` would match the known entry.
    for hostile in ["*@example.test", "\"*)(mail=*\"@example.test", "\"known)(|(mail=*\"@example.test"] {
        let reply = ca.rcpt(hostile);
        assert_eq!(reply.code, 550, "{hostile}: {reply:?}");
    }
    ca.wait_decision("known@example.test", 1);
    assert!(ca.decisions("unknown@example.test").is_empty(), "an unknown recipient is never called ahead");
    let lines = event(&ca, "ldap-accept", "result=rejected", 4);
    assert!(lines.iter().any(|l| l.contains("rcpt=<unknown@example.test>")), "{lines:?}");
    // DHAP counts directory refusals: the harvesting client gets DHAP's reply past 3.
    let mut raw = ca.session_from(HARVEST_CLIENT);
    for i in 0..3 {
        let reply = raw.cmd(&format!("RCPT TO:<nobody{i}@example.test>")).unwrap();
        assert!(reply.code == 550 && reply.text().contains("User unknown"), "{reply:?}");
    }
    let over = raw.cmd("RCPT TO:<known@example.test>").unwrap();
    assert!(over.code == 550 && over.text().contains("Too many invalid recipients"), "DHAP counts the directory's refusals: {over:?}");
    let page = ca.metrics();
    // 4 refusals from 127.0.0.1, 3 from the harvester; its 4th RCPT met DHAP before the directory.
    assert_eq!(metric(&page, "portcullis_ldap_accept_total", &[("result", "rejected")]), Some(7.0), "{page}");
}

#[test]
fn a_directory_that_is_down_gets_the_failure_action_the_shards_keep_serving_and_it_recovers() {
    let dns = dns();
    let sink = Sink::start();
    let mut ldap = Slapd::start();
    ldap.add(&person("known@example.test", ""));
    ldap.add(&route_entry("example.test", MAIL_HOST, None));
    let ca = CallaheadSetup::new()
        .cores(2)
        .route("example.test", &dead())
        .route(MAIL_HOST, &sink.host_port())
        .dns(dns.addr())
        .profile("validation_timeout_secs", "5")
        .listener_key("ldap_accept", "\"A\"")
        .listener_key("ldap_routing", "\"R\"")
        .extra(&ldap.server_toml("LDAP1").replace("[ldap.server.LDAP1]", "[ldap.server.LDAP1]\ntimeout_secs = 2"))
        .extra(&accept_query())
        .extra(&routing_query("(mail={d})", 0))
        .start();
    assert_eq!(send(&ca, "known@example.test").code, 250);
    sink.wait_for_messages(1, WAIT);

    ldap.kill();
    for _ in 0..3 {
        let reply = ca.rcpt("known@example.test");
        assert_eq!((reply.code, reply.text().contains("4.4.3")), (451, true), "{reply:?}");
    }
    // The shards still serve: a relaying client (no RAT, no directory), the admin.
    let mut relay = ca.session_from(RELAY_CLIENT);
    assert_eq!(relay.cmd("RCPT TO:<anyone@elsewhere.test>").unwrap().code, 250);
    assert!(ca.metrics().contains("portcullis_ldap_lookups_total"));
    let failures = event(&ca, "ldap-accept", "result=failure-rejected", 3);
    assert!(failures[0].contains("why=\""), "{failures:?}");

    ldap.restart();
    assert!(common::process::wait_until(WAIT, || ca.rcpt("known@example.test").code == 250), "{}", ca.server.log());
    assert_eq!(ca.rcpt("unknown@example.test").code, 550);
}

#[test]
fn delivery_defers_while_the_routing_query_cannot_be_answered_and_delivers_when_it_can() {
    let dns = dns();
    let sink = Sink::start();
    let mut ldap = Slapd::start();
    ldap.add(&route_entry("example.test", MAIL_HOST, None));
    let ca = CallaheadSetup::new()
        .without_callahead()
        .route("example.test", &dead())
        .route(MAIL_HOST, &sink.host_port())
        .dns(dns.addr())
        .listener_key("ldap_routing", "\"R\"")
        .extra(&ldap.server_toml("LDAP1").replace("[ldap.server.LDAP1]", "[ldap.server.LDAP1]\ntimeout_secs = 1"))
        .extra(&routing_query("(mail={d})", 0))
        .start();
    ldap.kill();
    // Without call-ahead, RCPT asks nothing of the directory: the mail is taken...
    assert_eq!(send(&ca, "later@example.test").code, 250);
    // ...and waits, never sent to the domain's own route.
    let retry = event(&ca, "retry", "LDAP routing query R", 1);
    assert!(retry[0].contains("rcpts=1"), "{retry:?}");
    assert_eq!(sink.count(), 0);
    ldap.restart();
    let got = sink.wait_for_messages(1, std::time::Duration::from_secs(90));
    assert_eq!(got[0].recipients(), ["later@example.test"]);
}

#[test]
fn answers_are_cached_on_the_owner_shard_of_the_domain() {
    let dns = dns();
    let sink = Sink::start();
    let ldap = Slapd::start();
    ldap.add(&route_entry("example.test", MAIL_HOST, None));
    let ca = CallaheadSetup::new()
        .cores(2)
        .route("example.test", &dead())
        .route(MAIL_HOST, &sink.host_port())
        .dns(dns.addr())
        .listener_key("ldap_routing", "\"R\"")
        .extra(&ldap.server_toml("LDAP1"))
        .extra(&routing_query("(mail={d})", 300))
        .profile("cache_ttl_secs", "60")
        .start();
    for i in 0..6 {
        assert_eq!(ca.rcpt(&format!("user{i}@example.test")).code, 250);
    }
    let page = ca.metrics();
    let searched = metric(&page, "portcullis_ldap_lookups_total", &[("result", "entry")]).unwrap_or(0.0);
    let hits = metric(&page, "portcullis_ldap_lookups_total", &[("result", "hit")]).unwrap_or(0.0);
    // One search for the domain (its filter uses only {d}), whatever shard the sessions landed on.
    assert_eq!((searched, hits), (1.0, 5.0), "{page}");
    assert_eq!(metric(&page, "portcullis_ldap_cache_entries", &[]), Some(1.0), "{page}");
}
