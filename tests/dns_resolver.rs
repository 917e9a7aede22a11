//! The shard resolver against a real DNS server: unbound on loopback
//! serving the harness's standard zone (tests/common/dns.rs). Each answer
//! class as a real server produces it: records of every type, NXDOMAIN,
//! NODATA, SERVFAIL (a forward zone to a dead port), a timeout (a dropped
//! query); then the cache (unbound stopped, still answered) and single
//! flight (ten askers, one query).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dns::*;
use portcullis::dns::{DnsSettings, Lookup, Mx, Resolver};
use portcullis::metrics::{Metrics, DNS_RECORD_TYPES, DNS_RESULTS};

/// Short attempts so the timeout cases stay quick; the worst case of one
/// lookup is `timeout_ms × attempts` = 1.6 s.
fn settings(server: SocketAddr) -> DnsSettings {
    DnsSettings {
        servers: vec![server],
        timeout_ms: 800,
        attempts: 2,
        ..DnsSettings::default()
    }
}

fn resolver(server: SocketAddr) -> Resolver {
    resolver_with(server, Arc::new(Metrics::default()))
}

fn resolver_with(server: SocketAddr, metrics: Arc<Metrics>) -> Resolver {
    let settings = settings(server);
    Resolver::new(settings.nameservers().unwrap(), &settings, metrics)
}

/// Runs `body` on a glommio executor of its own, as a shard would.
fn on_shard<T: Send + 'static>(body: impl FnOnce() -> Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || body())
        .unwrap()
        .join()
        .unwrap()
}

fn v4(ip: &str) -> Ipv4Addr {
    ip.parse().unwrap()
}

#[test]
fn records_of_every_type_are_found() {
    let dns = TestDns::start(&Zone::standard());
    let server = dns.addr();
    let (a, aaaa, both, mx, ptr, txt, alias) = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server);
            (
                r.ipv4(GOOD_NAME).await,
                r.ipv6("Good.Example.Test.").await,
                r.addresses(GOOD_NAME).await,
                r.mx(MX_DOMAIN).await,
                r.ptr(GOOD_IP.parse().unwrap()).await,
                r.txt(&format!("{}.{DNSLIST_ZONE}", reverse_v4(DNSLIST_LISTED_IP))).await,
                r.ipv4(CNAME_ALIAS).await,
            )
        })
    });
    assert_eq!(a, Lookup::Found(vec![v4(GOOD_IP)]));
    assert_eq!(aaaa, Lookup::Found(vec![GOOD_IPV6.parse::<Ipv6Addr>().unwrap()]));
    assert_eq!(both, Lookup::Found(vec![IpAddr::from(v4(GOOD_IP)), GOOD_IPV6.parse().unwrap()]));
    assert_eq!(
        mx,
        Lookup::Found(vec![Mx {
            preference: 10,
            exchange: MX_HOST.into()
        }])
    );
    assert_eq!(ptr, Lookup::Found(vec![GOOD_NAME.to_owned()]));
    assert_eq!(txt, Lookup::Found(vec!["listed".to_owned()]));
    assert_eq!(alias, Lookup::Found(vec![v4(GOOD_IP)]), "CNAME followed");
}

#[test]
fn dns_list_answers_are_plain_a_records() {
    let dns = TestDns::start(&Zone::standard());
    let server = dns.addr();
    let query = |ip: &str| format!("{}.{DNSLIST_ZONE}", reverse_v4(ip));
    let (listed, error, clean) = (query(DNSLIST_LISTED_IP), query(DNSLIST_ERROR_IP), query("127.0.0.99"));
    let answers = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server);
            (r.ipv4(&listed).await, r.ipv4(&error).await, r.ipv4(&clean).await)
        })
    });
    assert_eq!(
        answers,
        (
            Lookup::Found(vec![v4("127.0.0.2")]),
            Lookup::Found(vec![v4("127.255.255.254")]),
            Lookup::NotFound
        )
    );
}

#[test]
fn nxdomain_and_nodata_are_not_found() {
    let dns = TestDns::start(&Zone::standard());
    let server = dns.addr();
    let answers = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server);
            let nx = (
                r.ipv4(NXDOMAIN_DOMAIN).await,
                r.mx(NXDOMAIN_DOMAIN).await,
                r.ipv4("nothing-here.example.test").await,
            );
            let nodata = (r.ipv4(NODATA_DOMAIN).await, r.mx(A_ONLY_DOMAIN).await, r.ipv6(MX_HOST).await);
            let no_ptr = r.ptr(NO_PTR_IP.parse().unwrap()).await;
            (nx, nodata, no_ptr)
        })
    });
    assert_eq!(answers.0, (Lookup::NotFound, Lookup::NotFound, Lookup::NotFound));
    assert_eq!(answers.1, (Lookup::NotFound, Lookup::NotFound, Lookup::NotFound));
    assert_eq!(answers.2, Lookup::NotFound);
}

#[test]
fn servfail_is_a_temp_fail() {
    let dns = TestDns::start(&Zone::standard());
    let server = dns.addr();
    let (a, mx, ptr) = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server);
            (
                r.ipv4(SERVFAIL_DOMAIN).await,
                r.mx(SERVFAIL_DOMAIN).await,
                r.ptr(PTR_SERVFAIL_IP.parse().unwrap()).await,
            )
        })
    });
    for lookup in [a.class(), mx.class(), ptr.class()] {
        assert_eq!(lookup, "tempfail");
    }
    assert!(
        matches!(a, Lookup::TempFail(ref why) if why.contains("SERVFAIL") || why.contains("Server Failure")),
        "{a:?}"
    );
}

#[test]
fn timeout_is_a_temp_fail_within_the_bound() {
    let dns = TestDns::start(&Zone::standard());
    let server = dns.addr();
    let bound = Duration::from_millis(settings(server).query_bound_ms());
    let (a, ptr, took) = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server);
            let started = Instant::now();
            // Both at once: each is bounded on its own, so together too.
            let (a, ptr) = futures_lite::future::zip(r.ipv4(TIMEOUT_DOMAIN), r.ptr(PTR_TIMEOUT_IP.parse().unwrap())).await;
            (a, ptr, started.elapsed())
        })
    });
    assert!(matches!(a, Lookup::TempFail(_)), "{a:?}");
    assert!(matches!(ptr, Lookup::TempFail(_)), "{ptr:?}");
    // Timers never fire early: every attempt was waited out...
    assert!(took >= bound, "{took:?} < {bound:?}");
    // ...and the lookup did not hang past the bound (slack for a busy box).
    assert!(took < bound + Duration::from_secs(3), "{took:?}");
}

#[test]
fn cached_answers_survive_the_server() {
    let mut dns = TestDns::start(&Zone::standard());
    let server = dns.addr();
    let metrics = Arc::new(Metrics::default());
    let shard_metrics = metrics.clone();
    let (to_shard, from_test) = std::sync::mpsc::channel::<()>();
    let (to_test, on_test) = std::sync::mpsc::channel::<&'static str>();
    let shard = std::thread::spawn(move || {
        on_shard(move || {
            Box::pin(async move {
                let r = resolver_with(server, shard_metrics);
                let first = (r.ipv4(GOOD_NAME).await, r.ipv4(NXDOMAIN_DOMAIN).await);
                to_test.send("asked").unwrap();
                // Blocking the shard here is fine: nothing else runs on it.
                from_test.recv().unwrap();
                let again = (r.ipv4(GOOD_NAME).await, r.ipv4(NXDOMAIN_DOMAIN).await, r.ipv4(A_ONLY_DOMAIN).await);
                (first, again, r.network_queries())
            })
        })
    });
    assert_eq!(on_test.recv().unwrap(), "asked");
    dns.stop();
    to_shard.send(()).unwrap();
    let (first, again, network) = shard.join().unwrap();
    assert_eq!(first, (Lookup::Found(vec![v4(GOOD_IP)]), Lookup::NotFound));
    // Within the TTLs: the answer and the negative answer come from the
    // cache; a name never asked fails, the server being gone.
    assert_eq!((again.0, again.1), (Lookup::Found(vec![v4(GOOD_IP)]), Lookup::NotFound));
    assert!(matches!(again.2, Lookup::TempFail(_)), "{:?}", again.2);
    assert_eq!(network, 3);
    // Every network query is counted by result, every cache answer as a hit.
    let seen = metrics.snapshot();
    let index = |names: &[&str], name| names.iter().position(|n| *n == name).unwrap();
    let a = index(&DNS_RECORD_TYPES, "A");
    let (answer, not_found, tempfail) = (index(&DNS_RESULTS, "answer"), index(&DNS_RESULTS, "not_found"), index(&DNS_RESULTS, "tempfail"));
    assert_eq!((seen.dns_queries[a][answer], seen.dns_queries[a][not_found], seen.dns_queries[a][tempfail]), (1, 1, 1));
    assert_eq!(seen.dns_cache_hits[a], 2);
}

#[test]
fn concurrent_askers_share_one_query() {
    let dns = TestDns::start(&Zone::standard());
    let server = dns.addr();
    let (answers, network) = on_shard(move || {
        Box::pin(async move {
            let r = resolver(server);
            let tasks: Vec<_> = (0..10)
                .map(|_| {
                    let r = r.clone();
                    glommio::spawn_local(async move { r.mx(MX_DOMAIN).await })
                })
                .collect();
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await);
            }
            (answers, r.network_queries())
        })
    });
    let expected = Lookup::Found(vec![Mx {
        preference: 10,
        exchange: MX_HOST.into(),
    }]);
    assert!(answers.iter().all(|a| *a == expected), "{answers:?}");
    assert_eq!(network, 1, "ten askers, one query");
}
