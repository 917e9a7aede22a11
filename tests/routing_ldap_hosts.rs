//! Hosts from an LDAP routing query (`mailHost`, `callAhead`) to addresses,
//! against a real DNS server (unbound on loopback, tests/common/dns.rs):
//! `ldap::hosts::parse_hosts` of the attribute values as a directory holds
//! them, then `routing::resolve_hosts` with the seed's three port rules
//! ("SMTP Call-Ahead Query Routing") with and without a matching SMTP
//! route, IP literals, USEDNS in the host's route, the `*` route left out,
//! a failing host among good ones, and which failure is reported when no
//! host resolves.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use common::dns::*;
use portcullis::config::{RouteHost, Routes};
use portcullis::dns::{DnsSettings, Resolver};
use portcullis::ldap::hosts::{parse_hosts, LdapHost};
use portcullis::metrics::Metrics;
use portcullis::routing::{self, RouteError};

/// The seed's entry, under the test zone: `mailHost: smtp.mydomain…`,
/// `callAhead: smtp2.mydomain…,smtp3.mydomain…:9025`.
const SEED_MAILHOST: &str = "smtp.mydomain.example.test";
const SEED_CALLAHEAD: &str = "smtp2.mydomain.example.test,smtp3.mydomain.example.test:9025";
/// A host with an exact SMTP route of three entries: a name with a port,
/// an IP with a port, an IP without one.
const ROUTED: &str = "smtp.routed.example.test";
const ROUTE_NAME: &str = "relay1.example.test";
/// Hosts under `.suffix.example.test` take that route.
const SUFFIX_ROUTED: &str = "mx.suffix.example.test";
/// A host whose route is `USEDNS` then an IP: the host's own MX first.
const USEDNS_ROUTED: &str = "usedns.example.test";
/// A host that publishes a null MX (and has an A record).
const NULL_MX_HOST: &str = "nullmx.example.test";
/// What the `*` route would give: never for an LDAP host.
const DEFAULT_ROUTE_ADDR: &str = "127.0.0.99:9999";

fn zone() -> Zone {
    Zone::standard()
        .a(SEED_MAILHOST, "127.0.0.71")
        .a("smtp2.mydomain.example.test", "127.0.0.72")
        .a("smtp3.mydomain.example.test", "127.0.0.73")
        .a(ROUTED, "127.0.0.79")
        .a(ROUTE_NAME, "127.0.0.80")
        .a(SUFFIX_ROUTED, "127.0.0.79")
        .mx(USEDNS_ROUTED, 10, "mx.usedns.example.test")
        .a("mx.usedns.example.test", "127.0.0.85")
        .mx(NULL_MX_HOST, 0, ".")
        .a(NULL_MX_HOST, "127.0.0.86")
}

/// The site's `[routes]`: routes for some LDAP hosts, and a `*` route.
fn site_routes() -> Routes {
    routes(&[
        (
            ROUTED,
            &[
                &format!("{ROUTE_NAME}:2525"),
                "127.0.0.81:2526",
                "127.0.0.82",
            ],
        ),
        (".suffix.example.test", &["127.0.0.83:2527"]),
        (USEDNS_ROUTED, &["USEDNS", "127.0.0.84:2528"]),
        ("*", &[DEFAULT_ROUTE_ADDR]),
    ])
}

fn routes(table: &[(&str, &[&str])]) -> Routes {
    let table: BTreeMap<String, Vec<RouteHost>> = table
        .iter()
        .map(|(key, hosts)| {
            (
                key.to_string(),
                hosts.iter().map(|h| h.parse().unwrap()).collect(),
            )
        })
        .collect();
    Routes::compile(&table).unwrap()
}

fn resolver(server: SocketAddr) -> Resolver {
    let settings = DnsSettings {
        servers: vec![server],
        timeout_ms: 800,
        attempts: 2,
        ..DnsSettings::default()
    };
    Resolver::new(
        settings.nameservers().unwrap(),
        &settings,
        Arc::new(Metrics::default()),
    )
}

/// Runs `body` on a glommio executor of its own, as a shard would.
fn on_shard<T: Send + 'static>(
    body: impl FnOnce() -> Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(body)
        .unwrap()
        .join()
        .unwrap()
}

/// An attribute's values as the directory holds them, one per string.
fn hosts(values: &[&str]) -> Vec<LdapHost> {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    parse_hosts(&values).unwrap_or_else(|e| panic!("{values:?}: {e}"))
}

/// `routing::resolve_hosts` of each answer (the values of one attribute),
/// in order, on one shard.
fn resolve_each(
    dns: &TestDns,
    routes: Routes,
    answers: &[&[&str]],
) -> Vec<Result<Vec<SocketAddr>, RouteError>> {
    let server = dns.addr();
    let answers: Vec<Vec<LdapHost>> = answers.iter().map(|values| hosts(values)).collect();
    on_shard(move || {
        Box::pin(async move {
            let resolver = resolver(server);
            let mut out = Vec::new();
            for answer in &answers {
                out.push(routing::resolve_hosts(answer, &routes, &resolver).await);
            }
            out
        })
    })
}

fn resolve(dns: &TestDns, routes: Routes, values: &[&str]) -> Result<Vec<SocketAddr>, RouteError> {
    resolve_each(dns, routes, &[values]).remove(0)
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn the_seeds_entry_without_routes_goes_by_dns_on_the_ldap_port() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(&dns, site_routes(), &[&[SEED_CALLAHEAD], &[SEED_MAILHOST]]);
    // callAhead: both hosts on the list's port 9025.
    assert_eq!(
        results[0],
        Ok(addrs(&["127.0.0.72:9025", "127.0.0.73:9025"]))
    );
    // mailHost: one host, no port, no route of its own: its A on 25.
    assert_eq!(results[1], Ok(addrs(&["127.0.0.71:25"])));
}

#[test]
fn a_single_host_without_a_port_takes_its_route_with_the_routes_ports() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(&dns, site_routes(), &[&[ROUTED], &[SUFFIX_ROUTED]]);
    // The route's entries, not the host's own A record (127.0.0.79).
    assert_eq!(
        results[0],
        Ok(addrs(&[
            "127.0.0.80:2525",
            "127.0.0.81:2526",
            "127.0.0.82:25"
        ]))
    );
    // The longest `.suffix` key applies to an LDAP host too.
    assert_eq!(results[1], Ok(addrs(&["127.0.0.83:2527"])));
}

#[test]
fn a_single_host_with_a_port_takes_its_route_on_the_ldap_port() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(
        &dns,
        site_routes(),
        &[
            &[&format!("{ROUTED}:9025")],
            &[&format!("{SUFFIX_ROUTED}:9026")],
        ],
    );
    assert_eq!(
        results[0],
        Ok(addrs(&[
            "127.0.0.80:9025",
            "127.0.0.81:9025",
            "127.0.0.82:9025"
        ]))
    );
    assert_eq!(results[1], Ok(addrs(&["127.0.0.83:9026"])));
}

#[test]
fn several_hosts_take_their_routes_with_the_ldap_ports() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(
        &dns,
        site_routes(),
        &[
            // The seed's form: the port written once is the list's.
            &[&format!("{ROUTED},{A_ONLY_DOMAIN}:9025")],
            // Each host its own port, in two values.
            &[&format!("{ROUTED}:26"), &format!("{A_ONLY_DOMAIN}:27")],
            // No port anywhere: the routes' ports, DNS on 25.
            &[&format!("{ROUTED},{A_ONLY_DOMAIN}")],
        ],
    );
    let a_only = |port: u16| format!("{A_ONLY_IP}:{port}");
    assert_eq!(
        results[0],
        Ok(addrs(&[
            "127.0.0.80:9025",
            "127.0.0.81:9025",
            "127.0.0.82:9025",
            &a_only(9025)
        ]))
    );
    assert_eq!(
        results[1],
        Ok(addrs(&[
            "127.0.0.80:26",
            "127.0.0.81:26",
            "127.0.0.82:26",
            &a_only(27)
        ]))
    );
    assert_eq!(
        results[2],
        Ok(addrs(&[
            "127.0.0.80:2525",
            "127.0.0.81:2526",
            "127.0.0.82:25",
            &a_only(25)
        ]))
    );
}

#[test]
fn a_host_without_a_route_is_its_mx_then_its_a_on_the_ldap_port_or_25() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(
        &dns,
        site_routes(),
        &[
            &[MX_DOMAIN],
            &[&format!("{MX_DOMAIN}:2600")],
            &[A_ONLY_DOMAIN],
            &[&format!("{A_ONLY_DOMAIN}:2601")],
            &[GOOD_NAME],
        ],
    );
    assert_eq!(results[0], Ok(addrs(&[&format!("{MX_HOST_IP}:25")])));
    assert_eq!(results[1], Ok(addrs(&[&format!("{MX_HOST_IP}:2600")])));
    assert_eq!(results[2], Ok(addrs(&[&format!("{A_ONLY_IP}:25")])));
    assert_eq!(results[3], Ok(addrs(&[&format!("{A_ONLY_IP}:2601")])));
    // A then AAAA.
    assert_eq!(
        results[4],
        Ok(addrs(&[
            &format!("{GOOD_IP}:25"),
            &format!("[{GOOD_IPV6}]:25")
        ]))
    );
}

#[test]
fn ip_literals_are_used_as_written_on_the_ldap_port_or_25() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(
        &dns,
        site_routes(),
        &[
            &["127.0.0.9"],
            &["127.0.0.9:26"],
            &["2001:db8::5"],
            &["[2001:db8::5]:27"],
            &["127.0.0.9,[2001:db8::5]:28"],
        ],
    );
    assert_eq!(results[0], Ok(addrs(&["127.0.0.9:25"])));
    assert_eq!(results[1], Ok(addrs(&["127.0.0.9:26"])));
    assert_eq!(results[2], Ok(addrs(&["[2001:db8::5]:25"])));
    assert_eq!(results[3], Ok(addrs(&["[2001:db8::5]:27"])));
    assert_eq!(results[4], Ok(addrs(&["127.0.0.9:28", "[2001:db8::5]:28"])));
}

#[test]
fn usedns_in_the_hosts_route_is_the_hosts_own_mx_at_its_place() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(
        &dns,
        site_routes(),
        &[&[USEDNS_ROUTED], &[&format!("{USEDNS_ROUTED}:2600")]],
    );
    assert_eq!(results[0], Ok(addrs(&["127.0.0.85:25", "127.0.0.84:2528"])));
    assert_eq!(
        results[1],
        Ok(addrs(&["127.0.0.85:2600", "127.0.0.84:2600"]))
    );
}

#[test]
fn the_default_route_never_applies_to_an_ldap_host() {
    let dns = TestDns::start(&zone());
    assert_eq!(
        resolve(&dns, site_routes(), &[A_ONLY_DOMAIN]),
        Ok(addrs(&[&format!("{A_ONLY_IP}:25")]))
    );
    // The same name as a recipient domain does take the `*` route.
    let server = dns.addr();
    let as_domain = on_shard(move || {
        Box::pin(
            async move { routing::resolve(A_ONLY_DOMAIN, &site_routes(), &resolver(server)).await },
        )
    });
    assert_eq!(as_domain, Ok(addrs(&[DEFAULT_ROUTE_ADDR])));
}

#[test]
fn a_failing_host_among_good_ones_is_skipped() {
    let dns = TestDns::start(&zone());
    let answer =
        format!("{SERVFAIL_DOMAIN},{A_ONLY_DOMAIN},{NXDOMAIN_DOMAIN},{NULL_MX_HOST},{MX_DOMAIN}");
    assert_eq!(
        resolve(&dns, site_routes(), &[&answer]),
        Ok(addrs(&[
            &format!("{A_ONLY_IP}:25"),
            &format!("{MX_HOST_IP}:25")
        ]))
    );
}

#[test]
fn when_no_host_resolves_the_mail_waits_with_the_first_reason_and_a_null_mx_never_bounces() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(
        &dns,
        site_routes(),
        &[
            &[&format!("{NXDOMAIN_DOMAIN},{SERVFAIL_DOMAIN}")],
            &[&format!("{NXDOMAIN_DOMAIN},{NULL_MX_HOST}")],
            &[NULL_MX_HOST],
            &[],
        ],
    );
    assert!(
        matches!(&results[0], Err(RouteError::TempFail(why)) if why.contains(SERVFAIL_DOMAIN)),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(&results[1], Err(RouteError::TempFail(why)) if why.contains(NXDOMAIN_DOMAIN)),
        "{:?}",
        results[1]
    );
    // The host's null MX is not the recipient domain's (no 556 5.1.10):
    // a directory naming hosts that take no mail is fixed by an operator.
    assert!(
        matches!(&results[2], Err(RouteError::TempFail(why)) if why.contains("null MX") && why.contains(NULL_MX_HOST)),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(&results[3], Err(RouteError::TempFail(_))),
        "{:?}",
        results[3]
    );
}

#[test]
fn an_address_reached_twice_is_tried_once() {
    let dns = TestDns::start(&zone());
    // The name, its own IP, and a route entry that is the same address.
    let answer = format!("{A_ONLY_DOMAIN},{A_ONLY_IP},{ROUTED}");
    let table = routes(&[(ROUTED, &[&format!("{A_ONLY_IP}:25"), "127.0.0.82"])]);
    assert_eq!(
        resolve(&dns, table, &[&answer]),
        Ok(addrs(&[&format!("{A_ONLY_IP}:25"), "127.0.0.82:25"]))
    );
}

#[test]
fn a_route_entry_without_an_address_waits_for_the_operator() {
    let dns = TestDns::start(&zone());
    // The LDAP host's own route names a host that does not exist: a
    // mistake in the route, so the mail waits rather than bounces.
    let table = routes(&[(ROUTED, &["nohost.example.test:2525"])]);
    let result = resolve(&dns, table, &[ROUTED]);
    assert!(
        matches!(&result, Err(RouteError::TempFail(why)) if why.contains("nohost.example.test") && why.contains(ROUTED)),
        "{result:?}"
    );
}
