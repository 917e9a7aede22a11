//! End-to-end: routes that name hosts, and ESA's `.subdomain` keys.
//!
//! The test DNS (unbound on loopback) says mx1.example.test is 127.0.0.1.
//! Routes: `example.test = mx1.example.test:PORT1` (a host name, resolved
//! by the shards' resolver, with the route's port) and `.example.test =
//! 127.0.0.1:PORT2` (any subdomain). A message to example.test and
//! eu.example.test is split by domain: each part reaches its own
//! smtp-sink, so the name was resolved with the route's port and the
//! subdomain did not take its parent's route. (MX routing, on port 25,
//! is shown at the resolver level in tests/routing_dns.rs.)

mod common;

use common::dns::{TestDns, Zone};
use common::*;

#[test]
fn a_host_name_route_and_a_subdomain_route_each_get_their_mail() {
    let dns = TestDns::start(&Zone::new().a("mx1.example.test", "127.0.0.1"));
    let (parent, subdomains) = (Sink::start(), Sink::start());
    let server = Portcullis::builder()
        .cores(2)
        .dns(dns.addr())
        .relay_domain("example.test")
        .relay_domain("eu.example.test")
        .route_hosts("example.test", &[&format!("mx1.example.test:{}", parent.port())])
        .route(".example.test", &subdomains)
        .start();

    let sent = Swaks::new(server.addr())
        .to("alice@example.test")
        .to("bob@eu.example.test")
        .header("Subject: two routes")
        .run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());

    let got = parent.wait_for_messages(1, WAIT);
    assert_eq!(got[0].recipients(), ["alice@example.test"], "{}", server.log());
    let got = subdomains.wait_for_messages(1, WAIT);
    assert_eq!(got[0].recipients(), ["bob@eu.example.test"], "{}", server.log());
    let qid = sent.queue_id().expect("queue id in the 250");
    server.wait_for_log(&format!("removed qid={qid}"), 1, WAIT);
    assert_eq!((parent.count(), subdomains.count()), (1, 1));
}
