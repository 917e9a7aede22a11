//! The operator's query and purge on two real shards joined by the mesh:
//! each shard holds the verdicts of the domains it owns, in two profile
//! partitions; shard 0 asks about addresses wherever they live.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::callahead::cache::{Cached, Ttls, VerdictCache};
use crate::config::{Config, PolicyCell};
use crate::dns::Resolver;
use crate::metrics::Metrics;
use crate::policy::rate::Counters;
use crate::shards::{owner, wait_until, MeshPlan};
use crate::smtp::Reply;

const TTLS: Ttls = Ttls {
    positive_ms: 900_000,
    negative_ms: 600_000,
    negative_recheck_ms: 300_000,
};

/// Addresses of several domains (so both shards own some), cached in
/// profile "ca", and the unknown ones also in profile "strict".
const KNOWN: [&str; 8] = [
    "a@one.test",
    "b@one.test",
    "c@two.test",
    "d@three.test",
    "e@four.test",
    "f@five.test",
    "g@six.test",
    "h@seven.test",
];

fn callahead_on(mesh: &Rc<Mesh>, metrics: Arc<Metrics>) -> Rc<Callahead> {
    let (settings, policy) = Config::default().split();
    let resolver = Rc::new(Resolver::new(Vec::new(), &policy.dns, metrics.clone()));
    let counters = Counters::new(mesh.clone(), &settings.rate);
    let cell = Rc::new(PolicyCell::new(Arc::new(policy)));
    Callahead::new(
        mesh.clone(),
        resolver,
        counters,
        cell,
        "test.example",
        metrics,
    )
}

/// Store this shard's share of `KNOWN`: even ones accepted, odd ones unknown.
fn seed(callahead: &Callahead, id: usize, shards: usize) -> usize {
    let now = callahead.now_ms();
    let mut caches = callahead.caches.borrow_mut();
    let mut stored = 0;
    for (i, address) in KNOWN.iter().enumerate() {
        if owner(&domain_of(address), shards) != id {
            continue;
        }
        let unknown = Cached::MailboxUnknown(Reply::new(
            550,
            "5.1.1",
            format!("<{address}>: Recipient address rejected: User unknown"),
        ));
        let verdict = if i % 2 == 0 {
            Cached::Accepted(Reply::new(250, "2.1.5", "Ok"))
        } else {
            unknown
        };
        caches
            .entry("ca".into())
            .or_insert_with(|| VerdictCache::new(100))
            .store(address, verdict.clone(), &TTLS, now);
        stored += 1;
        if i % 2 == 1 {
            caches
                .entry("strict".into())
                .or_insert_with(|| VerdictCache::new(100))
                .store(address, verdict, &TTLS, now);
            stored += 1;
        }
    }
    stored
}

/// Two shards, each seeded before it opens to its peer (so no ask can
/// arrive before the seed); shard 0 runs `body`, shard 1 serves until it is done.
fn on_two_shards<T: Send + 'static>(
    body: impl Fn(Rc<Mesh>, Rc<Callahead>) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>
        + Send
        + Sync
        + Clone
        + 'static,
) -> (T, [usize; 2], Vec<Arc<Metrics>>) {
    let plan = MeshPlan::new(2, Arc::new(AtomicBool::new(false)));
    let done = Arc::new(AtomicBool::new(false));
    let metrics: Vec<Arc<Metrics>> = (0..2).map(|_| Arc::new(Metrics::default())).collect();
    let spawn = |id: usize| {
        let (plan, done, body, metrics) = (
            plan.clone(),
            done.clone(),
            body.clone(),
            metrics[id].clone(),
        );
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mesh = Mesh::join(plan, id).await.unwrap();
                let callahead = callahead_on(&mesh, metrics);
                callahead.serve(&mesh);
                let seeded = seed(&callahead, id, 2);
                mesh.open();
                let result = if id == 0 {
                    let result = body(mesh.clone(), callahead.clone()).await;
                    done.store(true, Ordering::SeqCst);
                    Some(result)
                } else {
                    wait_until(
                        Instant::now() + Duration::from_secs(30),
                        Duration::from_millis(5),
                        || done.load(Ordering::SeqCst),
                    )
                    .await;
                    None
                };
                (result, seeded)
            })
            .unwrap()
    };
    let handles = [spawn(0), spawn(1)];
    let [first, second] = handles.map(|h| h.join().unwrap());
    (first.0.unwrap(), [first.1, second.1], metrics)
}

/// The first address of `KNOWN` owned by `shard`.
fn owned_by(shard: usize) -> &'static str {
    KNOWN
        .iter()
        .find(|a| owner(&domain_of(a), 2) == shard)
        .expect("both shards own some")
}

#[test]
fn a_query_finds_every_profile_on_the_owner_shard_wherever_it_is_asked() {
    let ((remote, local, missing, odd_case), _, _) = on_two_shards(|mesh, _| {
        Box::pin(async move {
            let remote_unknown = KNOWN
                .iter()
                .enumerate()
                .find(|(i, a)| i % 2 == 1 && owner(&domain_of(a), 2) == 1);
            let remote = query(
                &mesh,
                remote_unknown.expect("shard 1 owns an unknown one").1,
            )
            .await
            .unwrap();
            let local = query(&mesh, owned_by(0)).await.unwrap();
            let missing = query(&mesh, "nobody@one.test").await.unwrap();
            let odd_case = query(&mesh, &owned_by(1).to_ascii_uppercase())
                .await
                .unwrap();
            (remote, local, missing, odd_case)
        })
    });
    assert_eq!(remote.len(), 2, "both profiles: {remote:?}");
    assert_eq!(
        (remote[0].profile.as_str(), remote[1].profile.as_str()),
        ("ca", "strict"),
        "sorted by profile"
    );
    for entry in &remote {
        assert_eq!(
            (entry.verdict, entry.shard, entry.ttl_secs),
            ("mailbox-unknown", 1, 600)
        );
        assert!(
            entry.reply.starts_with("550 5.1.1 <") && entry.reply.contains("User unknown"),
            "{entry:?}"
        );
        assert!(entry.age_secs < 600);
    }
    assert!(
        !local.is_empty() && local.iter().all(|e| e.shard == 0),
        "{local:?}"
    );
    assert!(missing.is_empty(), "{missing:?}");
    assert!(
        !odd_case.is_empty(),
        "addresses are looked up in lower case"
    );
}

#[test]
fn purges_by_address_domain_and_all_count_what_they_forgot() {
    let ((by_address, again, by_domain, after_domain, all), seeded, metrics) =
        on_two_shards(|mesh, callahead| {
            Box::pin(async move {
                // "b@one.test" is unknown: cached in both profiles.
                let by_address = purge(&mesh, PurgeTarget::Address("B@one.test".into()))
                    .await
                    .unwrap();
                let again = purge(&mesh, PurgeTarget::Address("b@one.test".into()))
                    .await
                    .unwrap();
                let by_domain = purge(&mesh, PurgeTarget::Domain("ONE.test".into()))
                    .await
                    .unwrap();
                let after_domain = query(&mesh, "a@one.test").await.unwrap();
                let all = purge(&mesh, PurgeTarget::All).await.unwrap();
                callahead.publish_gauge_values();
                (by_address, again, by_domain, after_domain, all)
            })
        });
    assert_eq!(
        (by_address, again),
        (2, 0),
        "both profiles, then nothing left"
    );
    assert_eq!(by_domain, 1, "a@one.test was the rest of one.test");
    assert!(after_domain.is_empty());
    let total: usize = seeded.iter().sum();
    assert_eq!(all, total - 3, "every shard purged everything else");
    assert_eq!(
        metrics[0].snapshot().callahead.cache_entries,
        0,
        "the gauge follows the purge"
    );
}

#[test]
fn a_query_peeks_without_making_the_entry_recently_used() {
    let (evicted, _, _) = on_two_shards(|mesh, callahead| {
        Box::pin(async move {
            // A domain this shard owns, so the test can fill its partition directly.
            let domain = (0..)
                .map(|i| format!("peek{i}.test"))
                .find(|d| owner(d, 2) == 0)
                .expect("some domain");
            let [first, second, third] = ["x", "y", "z"].map(|local| format!("{local}@{domain}"));
            let (first, second, third) = (first.as_str(), second.as_str(), third.as_str());
            let now = callahead.now_ms();
            let accepted = Cached::Accepted(Reply::new(250, "2.1.5", "Ok"));
            {
                let mut caches = callahead.caches.borrow_mut();
                let cache = caches
                    .entry("tiny".into())
                    .or_insert_with(|| VerdictCache::new(2));
                cache.store(first, accepted.clone(), &TTLS, now);
                cache.store(second, accepted.clone(), &TTLS, now);
            }
            assert_eq!(query(&mesh, first).await.unwrap().len(), 1);
            callahead
                .caches
                .borrow_mut()
                .get_mut("tiny")
                .unwrap()
                .store(third, accepted, &TTLS, now);
            query(&mesh, first).await.unwrap().is_empty()
        })
    });
    assert!(
        evicted,
        "the peeked entry was still the least recently used"
    );
}
