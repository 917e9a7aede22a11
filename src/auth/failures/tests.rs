//! Failed AUTHs counted across two real shards (two executors joined to
//! one mesh, as in `policy/rate/tests.rs`): failures counted on either
//! shard block the IP on both, whichever shard owns its counter; 0 is no
//! limit; an IPv6 client is counted by its /64. Shard 1 only serves (and
//! answers "is it blocked?" from its own side) until shard 0 is done.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::*;
use crate::policy::rate::RateSettings;
use crate::shards::{owner, Mesh, MeshPlan, ShardRequest};

const SHARDS: usize = 2;

/// "Is `ip` blocked at `max`?", answered by the shard it is sent to.
struct IsBlocked {
    ip: IpAddr,
    max: u32,
}
impl ShardRequest for IsBlocked {
    type Reply = bool;
}

/// "Count a failure of `ip`", on the shard it is sent to.
struct CountFailure {
    ip: IpAddr,
}
impl ShardRequest for CountFailure {
    type Reply = ();
}

/// Shard 0 is done: shard 1 may stop serving.
struct Done;
impl ShardRequest for Done {
    type Reply = ();
}

/// An IPv4 address whose counter lives on `shard`.
fn ip_owned_by(shard: usize) -> IpAddr {
    (1..=254u8)
        .map(|i| IpAddr::from([192, 0, 2, i]))
        .find(|ip| owner(&key(*ip), SHARDS) == shard)
        .unwrap()
}

/// What shard 0 saw, as (what, observed) pairs; asserted on the test's thread.
async fn scenario(counters: Rc<Counters>, mesh: Rc<Mesh>) -> Vec<(String, bool)> {
    let mut seen = Vec::new();
    let both_sides = |ip: IpAddr, max: u32| {
        let (counters, mesh) = (counters.clone(), mesh.clone());
        async move {
            (
                blocked(&counters, ip, max).await,
                mesh.ask(1, IsBlocked { ip, max }).await.unwrap_or(false),
            )
        }
    };
    for owner_shard in 0..SHARDS {
        let ip = ip_owned_by(owner_shard);
        seen.push((
            format!("{ip} (owner {owner_shard}) not blocked at first"),
            both_sides(ip, 3).await == (false, false),
        ));
        // Failures from both shards add up in one counter.
        count(&counters, ip, 3).await;
        let _ = mesh.ask(1, CountFailure { ip }).await;
        count(&counters, ip, 3).await;
        seen.push((
            format!("{ip}: 3 failures block at max 3 on both shards"),
            both_sides(ip, 3).await == (true, true),
        ));
        seen.push((
            format!("{ip}: 3 failures do not block at max 4"),
            both_sides(ip, 4).await == (false, false),
        ));
        seen.push((
            format!("{ip}: max 0 never blocks"),
            both_sides(ip, 0).await == (false, false),
        ));
    }
    // max 0 counts nothing: the counter is still empty at max 1.
    let quiet = IpAddr::from([198, 51, 100, 7]);
    count(&counters, quiet, 0).await;
    seen.push((
        "max 0 counts nothing".into(),
        both_sides(quiet, 1).await == (false, false),
    ));
    // One /64 is one client; the next /64 is another.
    let (a, b, other): (IpAddr, IpAddr, IpAddr) = (
        "2001:db8:1:2::1".parse().unwrap(),
        "2001:db8:1:2:ffff::9".parse().unwrap(),
        "2001:db8:1:3::1".parse().unwrap(),
    );
    count(&counters, a, 1).await;
    seen.push((
        "a failure of one address blocks its /64".into(),
        both_sides(b, 1).await == (true, true),
    ));
    seen.push((
        "the next /64 is not blocked".into(),
        both_sides(other, 1).await == (false, false),
    ));
    seen
}

#[test]
fn failures_block_an_ip_on_every_shard() {
    let plan = MeshPlan::new(SHARDS, Arc::new(AtomicBool::new(false)));
    let shards: Vec<_> = (0..SHARDS)
        .map(|id| {
            let plan = plan.clone();
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .spawn(move || async move {
                    let mesh = Mesh::join(plan, id).await.unwrap();
                    let counters = Counters::new(mesh.clone(), &RateSettings::default());
                    counters.serve(&mesh);
                    let (done_tx, done) = glommio::channels::local_channel::new_unbounded();
                    let asked = counters.clone();
                    mesh.handle(move |q: IsBlocked| {
                        let counters = asked.clone();
                        async move { blocked(&counters, q.ip, q.max).await }
                    });
                    let counting = counters.clone();
                    mesh.handle(move |q: CountFailure| {
                        let counters = counting.clone();
                        async move { count(&counters, q.ip, 3).await }
                    });
                    mesh.handle(move |_: Done| {
                        let _ = done_tx.try_send(());
                        async {}
                    });
                    mesh.open();
                    if id == 1 {
                        let _ = done.recv().await;
                        return Vec::new();
                    }
                    let seen = scenario(counters, mesh.clone()).await;
                    let _ = mesh.tell(1, Done).await;
                    seen
                })
                .unwrap()
        })
        .collect();
    let seen: Vec<_> = shards.into_iter().flat_map(|s| s.join().unwrap()).collect();
    assert!(seen.len() > 8, "{seen:?}");
    for (what, held) in &seen {
        assert!(held, "{what}: {seen:?}");
    }
}
