//! Routing against a real DNS server (unbound on loopback, see
//! tests/common/dns.rs): `routing::resolve` in ESA's order — SMTP route,
//! else MX by preference, else A/AAAA — and `routing::resolve_static` for
//! call-ahead servers (MX, then A, keeping the entry's port). Each answer
//! class as the server really sends it: MX preferences, equal preferences
//! shuffled, the null MX of RFC 7505, no MX (the implicit MX), SERVFAIL,
//! NXDOMAIN, and addresses that appear twice.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use common::dns::*;
use portcullis::config::{RouteHost, Routes};
use portcullis::dns::{DnsSettings, Resolver};
use portcullis::metrics::Metrics;
use portcullis::routing::{self, RouteError};

const PREF_DOMAIN: &str = "pref.example.test";
const EQUAL_DOMAIN: &str = "equal.example.test";
const NULL_MX_DOMAIN: &str = "nullmx.example.test";
const PARTIAL_DOMAIN: &str = "partial.example.test";
const BROKEN_MX_DOMAIN: &str = "brokenmx.example.test";
const DANGLING_DOMAIN: &str = "dangling.example.test";
const DUP_DOMAIN: &str = "dup.example.test";

/// The standard world plus the MX shapes routing cares about.
fn zone() -> Zone {
    Zone::standard()
        .mx(PREF_DOMAIN, 20, "mx-b.pref.example.test")
        .mx(PREF_DOMAIN, 10, "mx-a.pref.example.test")
        .a("mx-a.pref.example.test", "127.0.0.31")
        .a("mx-b.pref.example.test", "127.0.0.32")
        .mx(EQUAL_DOMAIN, 10, "e1.equal.example.test")
        .mx(EQUAL_DOMAIN, 10, "e2.equal.example.test")
        .mx(EQUAL_DOMAIN, 20, "e3.equal.example.test")
        .a("e1.equal.example.test", "127.0.0.41")
        .a("e2.equal.example.test", "127.0.0.42")
        .a("e3.equal.example.test", "127.0.0.43")
        .mx(NULL_MX_DOMAIN, 0, ".")
        // Also has an A record: a null MX wins over the implicit MX.
        .a(NULL_MX_DOMAIN, "127.0.0.44")
        // The better MX host's lookup fails (SERVFAIL); the other resolves.
        .mx(PARTIAL_DOMAIN, 10, &format!("mx.{SERVFAIL_DOMAIN}"))
        .mx(PARTIAL_DOMAIN, 20, "mx2.partial.example.test")
        .a("mx2.partial.example.test", "127.0.0.51")
        // Its only MX host fails: nothing is known for sure.
        .mx(BROKEN_MX_DOMAIN, 10, &format!("mx.{SERVFAIL_DOMAIN}"))
        // Its only MX host does not exist.
        .mx(DANGLING_DOMAIN, 10, "nohost.example.test")
        // Two MX hosts with one address.
        .mx(DUP_DOMAIN, 10, "d1.dup.example.test")
        .mx(DUP_DOMAIN, 20, "d2.dup.example.test")
        .a("d1.dup.example.test", "127.0.0.61")
        .a("d2.dup.example.test", "127.0.0.61")
}

fn resolver(server: SocketAddr) -> Resolver {
    let settings = DnsSettings { servers: vec![server], timeout_ms: 800, attempts: 2, ..DnsSettings::default() };
    Resolver::new(settings.nameservers().unwrap(), &settings, Arc::new(Metrics::default()))
}

/// Runs `body` on a glommio executor of its own, as a shard would.
fn on_shard<T: Send + 'static>(body: impl FnOnce() -> Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(body).unwrap().join().unwrap()
}

/// `[routes]` from (key, entries) as an operator writes them.
fn routes(table: &[(&str, &[&str])]) -> Routes {
    let table: BTreeMap<String, Vec<RouteHost>> =
        table.iter().map(|(key, hosts)| (key.to_string(), hosts.iter().map(|h| h.parse().unwrap()).collect())).collect();
    Routes::compile(&table).unwrap()
}

/// `routing::resolve` of each domain, in order, on one shard.
fn resolve_each(dns: &TestDns, routes: Routes, domains: &[&str]) -> Vec<Result<Vec<SocketAddr>, RouteError>> {
    let (server, domains): (_, Vec<String>) = (dns.addr(), domains.iter().map(|d| d.to_string()).collect());
    on_shard(move || {
        Box::pin(async move {
            let resolver = resolver(server);
            let mut out = Vec::new();
            for domain in &domains {
                out.push(routing::resolve(domain, &routes, &resolver).await);
            }
            out
        })
    })
}

fn resolve(dns: &TestDns, routes: Routes, domain: &str) -> Result<Vec<SocketAddr>, RouteError> {
    resolve_each(dns, routes, &[domain]).remove(0)
}

fn resolve_static(dns: &TestDns, servers: &[&str]) -> Result<Vec<SocketAddr>, RouteError> {
    let server = dns.addr();
    let servers: Vec<RouteHost> = servers.iter().map(|s| s.parse().unwrap()).collect();
    on_shard(move || Box::pin(async move { routing::resolve_static(&servers, &resolver(server)).await }))
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn no_routes() -> Routes {
    routes(&[])
}

#[test]
fn mx_hosts_come_by_preference_on_port_25() {
    let dns = TestDns::start(&zone());
    assert_eq!(resolve(&dns, no_routes(), PREF_DOMAIN), Ok(addrs(&["127.0.0.31:25", "127.0.0.32:25"])));
    assert_eq!(resolve(&dns, no_routes(), "Withmx.Example.Test."), Ok(addrs(&[&format!("{MX_HOST_IP}:25")])));
}

#[test]
fn equal_preferences_are_both_tried_in_either_order() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(&dns, no_routes(), &[EQUAL_DOMAIN; 64]);
    let orders: HashSet<Vec<SocketAddr>> = results.into_iter().map(|r| r.expect("equal.example.test resolves")).collect();
    // Each order has probability 2^-64 of never showing in 64 resolutions.
    let expected: HashSet<Vec<SocketAddr>> = [
        addrs(&["127.0.0.41:25", "127.0.0.42:25", "127.0.0.43:25"]),
        addrs(&["127.0.0.42:25", "127.0.0.41:25", "127.0.0.43:25"]),
    ]
    .into();
    assert_eq!(orders, expected);
}

#[test]
fn a_null_mx_means_no_mail_even_with_an_a_record() {
    let dns = TestDns::start(&zone());
    assert_eq!(resolve(&dns, no_routes(), NULL_MX_DOMAIN), Err(RouteError::NullMx));
    // USEDNS in a route is the same DNS step.
    let usedns = routes(&[(NULL_MX_DOMAIN, &["USEDNS"])]);
    assert_eq!(resolve(&dns, usedns, NULL_MX_DOMAIN), Err(RouteError::NullMx));
}

#[test]
fn without_mx_the_domain_itself_is_the_host() {
    let dns = TestDns::start(&zone());
    assert_eq!(resolve(&dns, no_routes(), A_ONLY_DOMAIN), Ok(addrs(&[&format!("{A_ONLY_IP}:25")])));
    // A and AAAA, IPv4 first (RFC 5321 §5.1 implicit MX).
    assert_eq!(resolve(&dns, no_routes(), GOOD_NAME), Ok(addrs(&[&format!("{GOOD_IP}:25"), &format!("[{GOOD_IPV6}]:25")])));
}

#[test]
fn a_domain_that_does_not_exist_is_not_found() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(&dns, no_routes(), &[NXDOMAIN_DOMAIN, NODATA_DOMAIN, DANGLING_DOMAIN]);
    for (domain, result) in [NXDOMAIN_DOMAIN, NODATA_DOMAIN, DANGLING_DOMAIN].iter().zip(results) {
        match result {
            Err(RouteError::NotFound(why)) => assert!(why.contains(domain), "{domain}: {why}"),
            other => panic!("{domain}: {other:?}"),
        }
    }
}

#[test]
fn a_temporary_failure_defers_only_when_nothing_resolves() {
    let dns = TestDns::start(&zone());
    let results = resolve_each(&dns, no_routes(), &[SERVFAIL_DOMAIN, BROKEN_MX_DOMAIN, PARTIAL_DOMAIN]);
    assert!(matches!(&results[0], Err(RouteError::TempFail(why)) if why.contains(SERVFAIL_DOMAIN)), "{:?}", results[0]);
    assert!(matches!(&results[1], Err(RouteError::TempFail(why)) if why.contains("mx.servfail")), "{:?}", results[1]);
    // The MX host that failed is skipped: the other one is the route.
    assert_eq!(results[2], Ok(addrs(&["127.0.0.51:25"])));
}

#[test]
fn a_route_host_name_is_its_addresses_with_the_route_port() {
    let dns = TestDns::start(&zone());
    let table = routes(&[
        ("example.test", &[&format!("{MX_HOST}:2525")]),
        (".sub.example.test", &[&format!("{GOOD_NAME}:2526")]),
    ]);
    let results = resolve_each(&dns, table, &["example.test", "a.sub.example.test", A_ONLY_DOMAIN]);
    assert_eq!(results[0], Ok(addrs(&[&format!("{MX_HOST_IP}:2525")])));
    assert_eq!(results[1], Ok(addrs(&[&format!("{GOOD_IP}:2526"), &format!("[{GOOD_IPV6}]:2526")])));
    // No key matches: DNS, not a parent's route.
    assert_eq!(results[2], Ok(addrs(&[&format!("{A_ONLY_IP}:25")])));
}

#[test]
fn usedns_in_a_route_is_the_dns_step_at_its_place() {
    let dns = TestDns::start(&zone());
    let table = routes(&[("*", &["10.0.0.1:26", "USEDNS", "10.0.0.2"])]);
    assert_eq!(resolve(&dns, table, PREF_DOMAIN), Ok(addrs(&["10.0.0.1:26", "127.0.0.31:25", "127.0.0.32:25", "10.0.0.2:25"])));
}

#[test]
fn a_route_host_without_an_address_waits_for_the_operator() {
    let dns = TestDns::start(&zone());
    let table = routes(&[("a.example.test", &["nohost.example.test"]), ("b.example.test", &["nohost.example.test", "127.0.0.9:25"])]);
    let results = resolve_each(&dns, table, &["a.example.test", "b.example.test"]);
    assert!(matches!(&results[0], Err(RouteError::TempFail(why)) if why.contains("nohost.example.test")), "{:?}", results[0]);
    assert_eq!(results[1], Ok(addrs(&["127.0.0.9:25"])));
}

#[test]
fn addresses_given_twice_are_tried_once() {
    let dns = TestDns::start(&zone());
    assert_eq!(resolve(&dns, no_routes(), DUP_DOMAIN), Ok(addrs(&["127.0.0.61:25"])));
    // The IP, the name that resolves to it, and a USEDNS that finds
    // nothing (example.test has no MX, no A): one address, no error.
    let table = routes(&[("example.test", &[&format!("{MX_HOST_IP}:25"), MX_HOST, "USEDNS"])]);
    assert_eq!(resolve(&dns, table, "example.test"), Ok(addrs(&[&format!("{MX_HOST_IP}:25")])));
}

#[test]
fn static_servers_resolve_mx_then_a_with_their_port() {
    let dns = TestDns::start(&zone());
    // A name with an MX: its MX hosts, by preference, on the entry's port.
    assert_eq!(resolve_static(&dns, &[&format!("{PREF_DOMAIN}:2525")]), Ok(addrs(&["127.0.0.31:2525", "127.0.0.32:2525"])));
    // A name without one: its own A/AAAA. IPs as written, order kept.
    assert_eq!(
        resolve_static(&dns, &["10.0.0.7:2526", &format!("{A_ONLY_DOMAIN}:26")]),
        Ok(addrs(&["10.0.0.7:2526", &format!("{A_ONLY_IP}:26")]))
    );
    assert!(matches!(resolve_static(&dns, &[NXDOMAIN_DOMAIN]), Err(RouteError::NotFound(_))));
    assert!(matches!(resolve_static(&dns, &[SERVFAIL_DOMAIN]), Err(RouteError::TempFail(_))));
}
