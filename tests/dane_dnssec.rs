//! DNSSEC-aware lookups and the DANE decision against a real validating
//! resolver: unbound validating a zone this test signs (tests/common/
//! dnssec.rs). The TLSA records of a signed name come back Secure when
//! `[dns] trust_ad` is on and Insecure when it is off; an unsigned zone's
//! are Insecure; a name whose signature was broken is Bogus (Failed when
//! the resolver is not trusted); a signed name without TLSA is a secure
//! denial. The plain lookups answer as before beside them.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use common::dnssec::*;
use portcullis::dane::{self, DaneDecision, DaneMode, Tlsa};
use portcullis::dns::{DnsSettings, Lookup, Mx, Resolver, Secured};
use portcullis::metrics::Metrics;

fn published() -> Vec<Tlsa> {
    vec![
        Tlsa::parse(&format!("3 1 1 {}", "ab".repeat(32))).unwrap(),
        Tlsa::parse(&format!("2 0 1 {}", "cd".repeat(32))).unwrap(),
    ]
}

fn start() -> SignedDns {
    SignedDns::start(&published().iter().map(Tlsa::to_string).collect::<Vec<_>>())
}

fn resolver(server: SocketAddr, trust_ad: bool) -> Resolver {
    let settings = DnsSettings {
        servers: vec![server],
        timeout_ms: 2_000,
        attempts: 2,
        trust_ad,
        ..DnsSettings::default()
    };
    Resolver::new(vec![server], &settings, Arc::new(Metrics::default()))
}

fn on_shard<T: Send + 'static>(
    body: impl FnOnce() -> Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || body())
        .unwrap()
        .join()
        .unwrap()
}

fn sorted(mut records: Vec<Tlsa>) -> Vec<Tlsa> {
    records.sort_by_key(|r| r.to_string());
    records
}

fn sorted_secured(tlsa: Secured<Vec<Tlsa>>) -> Secured<Vec<Tlsa>> {
    tlsa.map(sorted)
}

#[test]
fn signed_tlsa_is_secure_from_a_trusted_resolver() {
    let dns = start();
    let server = dns.addr();
    let (tlsa, mx, addresses) = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server, true);
            (
                r.tlsa(SIGNED_MX, 25).await,
                r.secure_mx(SIGNED_ZONE).await,
                r.secure_addresses(SIGNED_MX).await,
            )
        })
    });
    assert_eq!(sorted_secured(tlsa), Secured::Secure(sorted(published())));
    let exchange = Mx {
        preference: 10,
        exchange: SIGNED_MX.into(),
    };
    assert_eq!(mx, Secured::Secure(vec![exchange]));
    let ip: IpAddr = HOST_IP.parse().unwrap();
    // A is signed, AAAA securely denied (NSEC): both secure.
    assert_eq!(addresses, Secured::Secure(vec![ip]));
}

#[test]
fn the_same_answer_is_not_trusted_without_trust_ad() {
    let dns = start();
    let server = dns.addr();
    let (tlsa, mx, bogus) = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server, false);
            (
                r.tlsa(SIGNED_MX, 25).await,
                r.secure_mx(SIGNED_ZONE).await,
                r.tlsa(BOGUS_HOST, 25).await,
            )
        })
    });
    assert_eq!(sorted_secured(tlsa), Secured::Insecure(sorted(published())));
    assert!(
        matches!(mx, Secured::Insecure(ref mxs) if mxs.len() == 1),
        "{mx:?}"
    );
    // A SERVFAIL from a resolver we do not trust is only a failure.
    assert!(matches!(bogus, Secured::Failed(_)), "{bogus:?}");
}

#[test]
fn an_unsigned_zone_is_insecure() {
    let dns = start();
    let server = dns.addr();
    let (tlsa, mx) = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server, true);
            (
                r.tlsa(UNSIGNED_MX, 25).await,
                r.secure_mx(UNSIGNED_ZONE).await,
            )
        })
    });
    assert_eq!(sorted_secured(tlsa), Secured::Insecure(sorted(published())));
    assert!(
        matches!(mx, Secured::Insecure(ref mxs) if mxs.len() == 1),
        "{mx:?}"
    );
}

#[test]
fn a_broken_signature_is_bogus() {
    let dns = start();
    let server = dns.addr();
    let bogus = on_shard(move || {
        Box::pin(async move { resolver(server, true).tlsa(BOGUS_HOST, 25).await })
    });
    assert_eq!(bogus, Secured::Bogus);
    let decision = dane::policy(
        DaneMode::Opportunistic,
        bogus,
        true,
        &[BOGUS_HOST, SIGNED_ZONE],
    );
    assert!(matches!(decision, DaneDecision::Defer(_)), "{decision:?}");
}

#[test]
fn a_signed_host_without_tlsa_is_a_secure_denial() {
    let dns = start();
    let server = dns.addr();
    let none = on_shard(move || {
        Box::pin(async move { resolver(server, true).tlsa(NO_TLSA_HOST, 25).await })
    });
    assert_eq!(none, Secured::Secure(vec![]));
    let names = [NO_TLSA_HOST, SIGNED_ZONE];
    assert!(matches!(
        dane::policy(DaneMode::Opportunistic, none.clone(), true, &names),
        DaneDecision::NotApplied
    ));
    assert!(matches!(
        dane::policy(DaneMode::Mandatory, none, true, &names),
        DaneDecision::Defer(_)
    ));
}

#[test]
fn delivery_flow_reaches_a_verifier_for_a_signed_mx() {
    let dns = start();
    let server = dns.addr();
    let (decision, unsigned, plain_mx, queries) = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server, true);
            let decide = |domain: &'static str| {
                let r = r.clone();
                async move {
                    let mx = r.secure_mx(domain).await;
                    let host = mx.value().unwrap()[0].exchange.clone();
                    let addresses = r.secure_addresses(&host).await;
                    let host_secure = mx.is_secure() && addresses.is_secure();
                    let tlsa =
                        dane::lookup_tlsa(&r, DaneMode::Opportunistic, &host, 25, host_secure)
                            .await;
                    dane::policy(DaneMode::Opportunistic, tlsa, host_secure, &[&host, domain])
                }
            };
            let signed = decide(SIGNED_ZONE).await;
            let before = r.network_queries();
            let unsigned = decide(UNSIGNED_ZONE).await;
            // MX, A and AAAA of the unsigned domain; no TLSA query (§2.2.1).
            let queries = r.network_queries() - before;
            // The plain lookup is unchanged: found, asked apart.
            let plain_mx = r.mx(SIGNED_ZONE).await;
            (signed, unsigned, plain_mx, queries)
        })
    });
    match decision {
        DaneDecision::Authenticate(verifier) => assert_eq!(verifier.records().count(), 2),
        other => panic!("expected DANE authentication, got {other:?}"),
    }
    assert!(matches!(unsigned, DaneDecision::NotApplied), "{unsigned:?}");
    assert_eq!(queries, 3);
    assert!(
        matches!(plain_mx, Lookup::Found(ref mxs) if mxs[0].exchange == SIGNED_MX),
        "{plain_mx:?}"
    );
}
