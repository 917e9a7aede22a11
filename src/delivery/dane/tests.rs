//! The pure rules of DANE in delivery: which legs DANE applies to (seed
//! 003: not to domains with an SMTP route), how the MX verdict names a
//! host, and what a decision becomes for the pool. The lookups themselves
//! run against a validating unbound in tests/e2e_dane.rs.

use super::*;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::dane::{Tlsa, Verifier};

fn routes(entries: &[(&str, &[&str])]) -> Routes {
    let map: BTreeMap<String, Vec<RouteHost>> = entries
        .iter()
        .map(|(key, hosts)| {
            (
                key.to_string(),
                hosts.iter().map(|h| h.parse().unwrap()).collect(),
            )
        })
        .collect();
    Routes::compile(&map).unwrap()
}

fn no_rewrites() -> BTreeMap<u32, String> {
    BTreeMap::new()
}

#[test]
fn dane_applies_only_to_hosts_found_by_dns() {
    let none = routes(&[]);
    assert_eq!(
        next_hop_domain("domain", &no_rewrites(), "Dane.Example.", &none),
        Some("dane.example".into())
    );
    // Seed 003: a domain with an SMTP route gets no DANE, the default route included.
    let routed = routes(&[("dane.example", &["10.0.0.1"])]);
    assert_eq!(
        next_hop_domain("domain", &no_rewrites(), "dane.example", &routed),
        None
    );
    let default = routes(&[("*", &["smarthost.example:2525"])]);
    assert_eq!(
        next_hop_domain("domain", &no_rewrites(), "dane.example", &default),
        None
    );
    let suffix = routes(&[(".example", &["10.0.0.1"])]);
    assert_eq!(
        next_hop_domain("domain", &no_rewrites(), "dane.example", &suffix),
        None
    );
    // A route of USEDNS only is DNS routing written out.
    let usedns = routes(&[("*", &["USEDNS"])]);
    assert_eq!(
        next_hop_domain("domain", &no_rewrites(), "dane.example", &usedns),
        Some("dane.example".into())
    );
    let mixed = routes(&[("dane.example", &["USEDNS", "10.0.0.1"])]);
    assert_eq!(
        next_hop_domain("domain", &no_rewrites(), "dane.example", &mixed),
        None
    );
}

#[test]
fn ldap_mail_hosts_count_as_routed_and_rewrites_name_the_next_hop() {
    let none = routes(&[]);
    for via in ["ldap", "ldap-error"] {
        assert_eq!(
            next_hop_domain(via, &no_rewrites(), "dane.example", &none),
            None,
            "{via}"
        );
    }
    let rewrites = BTreeMap::from([(0, "bob@Other.Example".to_string())]);
    assert_eq!(
        next_hop_domain("domain", &rewrites, "dane.example", &none),
        Some("other.example".into())
    );
    let other_routed = routes(&[("other.example", &["10.0.0.1"])]);
    assert_eq!(
        next_hop_domain("domain", &rewrites, "dane.example", &other_routed),
        None
    );
}

#[test]
fn the_mx_verdict_names_the_hosts_it_authenticates() {
    let mx = |exchange: &str| Mx {
        preference: 10,
        exchange: exchange.into(),
    };
    let secure = mx_verdict(Secured::Secure(vec![
        mx("MX.dane.example."),
        mx("mx2.dane.example"),
    ]));
    assert_eq!(
        secure,
        MxVerdict::Secure(vec!["mx.dane.example".into(), "mx2.dane.example".into()])
    );
    assert!(host_from_secure_mx(
        &secure,
        "mx.dane.example",
        "dane.example",
        true
    ));
    assert!(
        !host_from_secure_mx(&secure, "elsewhere.example", "dane.example", true),
        "not in the RRset"
    );
    assert_eq!(
        mx_verdict(Secured::Insecure(vec![mx("mx.plain.example")])),
        MxVerdict::Insecure
    );
    assert!(!host_from_secure_mx(
        &MxVerdict::Insecure,
        "mx.plain.example",
        "plain.example",
        true
    ));
    assert!(matches!(mx_verdict(Secured::Bogus), MxVerdict::Broken(why) if why.contains("bogus")));
    assert!(
        matches!(mx_verdict(Secured::Failed("timeout".into())), MxVerdict::Broken(why) if why.contains("timeout"))
    );
    // No MX, securely: the domain is its own host when its addresses are secure.
    let none = mx_verdict(Secured::Secure(Vec::new()));
    assert_eq!(none, MxVerdict::SecureNone);
    assert!(host_from_secure_mx(
        &none,
        "dane.example",
        "dane.example",
        true
    ));
    assert!(!host_from_secure_mx(
        &none,
        "dane.example",
        "dane.example",
        false
    ));
    assert!(!host_from_secure_mx(
        &none,
        "other.example",
        "dane.example",
        true
    ));
}

fn authenticate() -> DaneDecision {
    let record = Tlsa::parse(&format!("3 1 1 {}", "ab".repeat(32))).expect("a TLSA record");
    DaneDecision::Authenticate(Arc::new(
        Verifier::new(&[record], &["mx.dane.example"]).expect("usable"),
    ))
}

#[test]
fn tls_decisions_become_mandatory_starttls_named_for_the_mx_host() {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    for (decision, authenticated) in [(authenticate(), true), (DaneDecision::EncryptOnly, false)] {
        let HostTls::Dane(dane) = host_tls(&decision, "mx.dane.example", ip) else {
            panic!("{decision:?} needs TLS");
        };
        assert_eq!(dane.authenticated, authenticated);
        let plan = &dane.plan;
        assert_eq!(
            (plan.starttls, plan.level, plan.dane),
            (StartTls::Required, DestinationTls::Required, true)
        );
        assert!(plan.config.is_some());
        assert_eq!(
            plan.name.to_str(),
            "mx.dane.example",
            "SNI is the TLSA base domain (RFC 7672 §8.1)"
        );
        assert!(needs_tls(&decision));
    }
    assert!(matches!(
        host_tls(&DaneDecision::NotApplied, "mx.dane.example", ip),
        HostTls::Destination
    ));
    for (why, logged) in [
        (
            "TLSA lookup failed: timeout",
            "DANE: TLSA lookup failed: timeout",
        ),
        ("DANE mandatory: no TLSA", "DANE mandatory: no TLSA"),
    ] {
        match host_tls(&DaneDecision::Defer(why.into()), "mx.dane.example", ip) {
            HostTls::Skip(reason) => assert_eq!(reason, logged),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        !needs_tls(&DaneDecision::NotApplied) && !needs_tls(&DaneDecision::Defer(String::new()))
    );
}

#[test]
fn results_are_labels_the_metric_knows() {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let HostTls::Dane(authenticated) = host_tls(&authenticate(), "mx.dane.example", ip) else {
        panic!()
    };
    let HostTls::Dane(encrypted) = host_tls(&DaneDecision::EncryptOnly, "mx.dane.example", ip)
    else {
        panic!()
    };
    assert_eq!(
        (authenticated.result(), authenticated.metric()),
        ("authenticated", "authenticated")
    );
    assert_eq!(
        (encrypted.result(), encrypted.metric()),
        ("encrypt-only", "not-applied")
    );
    for label in [
        authenticated.metric(),
        encrypted.metric(),
        "failed",
        "deferred",
    ] {
        assert!(
            crate::metrics::dane::DANE_RESULTS[..4].contains(&label),
            "{label}"
        );
    }
}
