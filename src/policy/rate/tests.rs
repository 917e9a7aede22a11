//! The counters across real shards (2 and 3 executors joined to one mesh,
//! as in `shards/tests.rs`): exactness with leases (never more than the
//! limit while no shard stops, never less, also when a shard sits on an
//! unused lease), leases that expire go back, slots return to zero, add
//! and count agree everywhere, the table stays bounded, and a missing
//! owner fails open. Shards take turns by telling each other (`Turns`),
//! never by sleeping; the clock is injected where time matters.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures_lite::FutureExt;

use super::*;
use crate::shards::{owner, MeshPlan, ShardRequest};

const HOUR: u64 = 3600;

/// A turn handed to another shard.
struct Turn;
impl ShardRequest for Turn {
    type Reply = ();
}

/// A round trip to a peer: the await a real caller makes on its socket
/// between two takes, so that the shards' takes interleave.
struct Ping;
impl ShardRequest for Ping {
    type Reply = ();
}

/// A shard is done asking and may stop serving once every peer is.
struct Finished;
impl ShardRequest for Finished {
    type Reply = ();
}

/// Awaitable turns between the shards of one test.
struct Turns {
    mesh: Rc<Mesh>,
    turns: LocalReceiver<()>,
}

impl Turns {
    /// Hand the turn to `to`.
    async fn give(&self, to: usize) {
        self.mesh.tell(to, Turn).await.unwrap();
    }

    /// Wait for a turn handed to this shard.
    async fn wait(&self) {
        self.turns.recv().await.unwrap();
    }
}

type Body<T> = Pin<Box<dyn Future<Output = T>>>;

/// How a test's shards are set up.
#[derive(Clone)]
struct Setup {
    shards: usize,
    settings: RateSettings,
    /// Shards that register the counters' handlers (all by default).
    serving: Vec<bool>,
    /// Milliseconds, shared by every shard (the injected clock).
    clock: Arc<AtomicU64>,
}

impl Setup {
    fn new(shards: usize) -> Setup {
        Setup {
            shards,
            settings: RateSettings::default(),
            serving: vec![true; shards],
            clock: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Run `body` on every shard of `setup`; each shard's result, by shard id.
fn on_shards<T: Send + 'static>(
    setup: Setup,
    body: impl Fn(Rc<Counters>, Turns) -> Body<T> + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let plan = MeshPlan::new(setup.shards, Arc::new(AtomicBool::new(false)));
    let handles: Vec<_> = (0..setup.shards)
        .map(|id| {
            let (plan, body, setup) = (plan.clone(), body.clone(), setup.clone());
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .spawn(move || async move {
                    let mesh = Mesh::join(plan, id).await.unwrap();
                    let clock = setup.clock.clone();
                    let counters = Counters::with_clock(
                        mesh.clone(),
                        &setup.settings,
                        Rc::new(move || clock.load(Ordering::SeqCst)),
                    );
                    if setup.serving[id] {
                        counters.serve(&mesh);
                    }
                    let (turn_tx, turns) = local_channel::new_unbounded();
                    mesh.handle(move |_: Turn| {
                        let _ = turn_tx.try_send(());
                        async {}
                    });
                    let (finished_tx, finished) = local_channel::new_unbounded();
                    mesh.handle(|_: Ping| async {});
                    mesh.handle(move |_: Finished| {
                        let _ = finished_tx.try_send(());
                        async {}
                    });
                    mesh.open();
                    // A failed assertion still takes part in the goodbyes below, so
                    // the peers finish and the test fails instead of hanging.
                    let result = AssertUnwindSafe(body(
                        counters.clone(),
                        Turns {
                            mesh: mesh.clone(),
                            turns,
                        },
                    ))
                    .catch_unwind()
                    .await;
                    // Keep answering recalls and releases until every peer is done.
                    for peer in (0..setup.shards).filter(|&p| p != id) {
                        mesh.tell(peer, Finished).await.unwrap();
                    }
                    for _ in 1..setup.shards {
                        finished.recv().await.unwrap();
                    }
                    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .unwrap()
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// A key whose counter lives on shard `shard` of `shards`.
fn key_owned_by(shard: usize, shards: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| owner(k, shards) == shard)
        .unwrap()
}

/// Take `n` tokens; how many were granted (all checked).
async fn take_n(c: &Counters, key: &str, limit: u32, n: u32) -> u32 {
    let mut granted = 0;
    for _ in 0..n {
        match c.take(key, limit, HOUR).await {
            Ok(g) => {
                assert_eq!(g.unchecked, None);
                granted += 1;
            }
            Err(Refused { count }) => assert!(count >= 1),
        }
        // Let the peers' letters in (a real caller awaits its socket).
        futures_lite::future::yield_now().await;
    }
    granted
}

/// N takes spread over every shard at once, limit L: at least min(N, L)
/// granted (never undershoot), at most L + (lease − 1) × (shards − 1).
fn spread_takes(shards: usize, limit: u32, per_shard: u32) -> u32 {
    let key = key_owned_by(0, shards, "rcpt:192.0.2.");
    let granted = on_shards(Setup::new(shards), move |c, turns| {
        let key = key.clone();
        Box::pin(async move {
            let next = (turns.mesh.id() + 1) % turns.mesh.shards();
            let mut granted = 0;
            for _ in 0..per_shard {
                granted += take_n(&c, &key, limit, 1).await;
                turns.mesh.ask(next, Ping).await.unwrap();
            }
            granted
        })
    });
    let total: u32 = granted.iter().sum();
    let n = per_shard * shards as u32;
    let overshoot_max = (limits::RATE_LEASE_TOKENS_DEFAULT - 1) * (shards as u32 - 1);
    assert!(
        total >= n.min(limit),
        "undershoot: {total} granted of {n} asked, limit {limit} ({granted:?})"
    );
    assert!(
        total <= n.min(limit) + overshoot_max,
        "overshoot past the bound: {total} ({granted:?})"
    );
    total
}

#[test]
fn takes_spread_over_two_shards_stop_at_the_limit() {
    // No shard stops here, so no recall goes unanswered: exactly the limit.
    assert_eq!(spread_takes(2, 50, 100), 50);
    assert_eq!(
        spread_takes(2, 50, 20),
        40,
        "below the limit every take is granted"
    );
}

#[test]
fn takes_spread_over_three_shards_stop_at_the_limit() {
    assert_eq!(spread_takes(3, 61, 100), 61);
    assert_eq!(spread_takes(3, 7, 100), 7, "a limit below lease × shards");
}

/// The owner (shard 0) takes after the others took one token each and sit
/// on the rest of their lease: it still gets everything up to the limit.
fn unused_leases_do_not_refuse_others(shards: usize) -> (Vec<u32>, u32) {
    let key = key_owned_by(0, shards, "rcpt:198.51.100.");
    let results = on_shards(Setup::new(shards), move |c, turns| {
        let key = key.clone();
        Box::pin(async move {
            let me = turns.mesh.id();
            if me == 0 {
                for _ in 1..turns.mesh.shards() {
                    turns.wait().await;
                }
                let granted = take_n(&c, &key, 20, 40).await;
                for peer in 1..turns.mesh.shards() {
                    turns.give(peer).await;
                }
                (granted, 0)
            } else {
                assert!(c.take(&key, 20, HOUR).await.is_ok());
                let unused = c.unused_leased(&key, HOUR);
                turns.give(0).await;
                turns.wait().await;
                // The owner recalled the lease: nothing is left here.
                assert_eq!(c.unused_leased(&key, HOUR), 0);
                assert_eq!(c.take(&key, 20, HOUR).await, Err(Refused { count: 20 }));
                (1, unused)
            }
        })
    });
    let granted = results.iter().map(|r| r.0).collect();
    (granted, results.iter().map(|r| r.1).sum())
}

#[test]
fn a_shard_sitting_on_an_unused_lease_never_makes_the_owner_refuse_below_the_limit() {
    let (granted, unused) = unused_leases_do_not_refuse_others(2);
    assert!(unused > 0, "shard 1 held a lease: {unused}");
    assert_eq!(granted, vec![19, 1]);
    let (granted, unused) = unused_leases_do_not_refuse_others(3);
    assert!(unused > 0);
    assert_eq!(granted, vec![18, 1, 1]);
}

#[test]
fn a_lease_held_by_one_peer_never_makes_another_peer_refuse_below_the_limit() {
    // Three shards: 0 owns the key, 1 sits on a lease, 2 takes to the limit.
    let key = key_owned_by(0, 3, "sender:");
    let results = on_shards(Setup::new(3), move |c, turns| {
        let key = key.clone();
        Box::pin(async move {
            match turns.mesh.id() {
                1 => {
                    assert!(c.take(&key, 30, HOUR).await.is_ok());
                    assert!(c.unused_leased(&key, HOUR) > 0);
                    turns.give(2).await;
                    1
                }
                2 => {
                    turns.wait().await;
                    take_n(&c, &key, 30, 60).await
                }
                _ => 0,
            }
        })
    });
    assert_eq!(results, vec![0, 1, 29]);
}

#[test]
fn a_holder_that_does_not_answer_a_recall_overshoots_at_most_its_lease() {
    // Shard 1 takes from the owner but never answers a recall (as a
    // stopping shard would): the owner credits its lease back rather than
    // refuse below the limit, and leases it nothing more. Shard 1 may still
    // spend that lease: the overshoot is at most lease − 1 per such holder.
    let mut setup = Setup::new(2);
    setup.serving[1] = false;
    let key = key_owned_by(0, 2, "rcpt:192.0.2.");
    let results = on_shards(setup, move |c, turns| {
        let key = key.clone();
        Box::pin(async move {
            if turns.mesh.id() == 1 {
                let first = take_n(&c, &key, 10, 1).await;
                let leased = c.unused_leased(&key, HOUR);
                turns.give(0).await;
                turns.wait().await;
                let after = take_n(&c, &key, 10, 10).await;
                (first + after, leased)
            } else {
                turns.wait().await;
                let granted = take_n(&c, &key, 10, 20).await;
                turns.give(1).await;
                (granted, 0)
            }
        })
    });
    let leased = results[1].1;
    assert_eq!(
        leased, 4,
        "10 left over 2 shards: 5 tokens, 4 of them leased"
    );
    assert_eq!(results[0].0, 9, "the owner was not refused below the limit");
    assert_eq!(
        results[1].0,
        1 + leased,
        "shard 1 spent its lease, then was refused"
    );
    let total = results[0].0 + results[1].0;
    assert!(
        total - 10 <= limits::RATE_LEASE_TOKENS_DEFAULT - 1,
        "overshoot {} within lease − 1",
        total - 10
    );
}

#[test]
fn an_expired_lease_goes_back_to_the_owner() {
    let setup = Setup::new(2);
    let clock = setup.clock.clone();
    let key = key_owned_by(0, 2, "rcpt:203.0.113.");
    let results = on_shards(setup, move |c, turns| {
        let (key, clock) = (key.clone(), clock.clone());
        Box::pin(async move {
            if turns.mesh.id() == 1 {
                assert!(c.take(&key, 100, HOUR).await.is_ok());
                let leased = c.unused_leased(&key, HOUR);
                turns.give(0).await;
                turns.wait().await;
                // The owner's minute ends: the lease may not be spent any more.
                clock.store(60_000, Ordering::SeqCst);
                c.settle_due().await;
                turns.give(0).await;
                leased
            } else {
                turns.wait().await;
                let before = c.count(&key, HOUR).await.unwrap();
                turns.give(1).await;
                turns.wait().await;
                // Still within the hour: only the token taken counts.
                assert_eq!(c.count(&key, HOUR).await.unwrap(), 1);
                before
            }
        })
    });
    assert_eq!(
        results[0],
        1 + results[1],
        "the lease counted as taken while held"
    );
    assert_eq!(results[1], 7);
}

#[test]
fn a_full_window_opens_again_an_hour_later_on_every_shard() {
    // Shard 1 (leasing) takes 5 at minute 0, the owner the other 5; at
    // minute 60 nothing is back on either shard, at minute 61 all of it.
    let setup = Setup::new(2);
    let clock = setup.clock.clone();
    let key = key_owned_by(0, 2, "rcpt:192.0.2.");
    let results = on_shards(setup, move |c, turns| {
        let (key, clock) = (key.clone(), clock.clone());
        Box::pin(async move {
            if turns.mesh.id() == 1 {
                let first = take_n(&c, &key, 10, 5).await;
                turns.give(0).await;
                turns.wait().await;
                let at_61 = take_n(&c, &key, 10, 20).await;
                vec![first, at_61]
            } else {
                turns.wait().await;
                let first = take_n(&c, &key, 10, 10).await;
                clock.store(60 * 60_000, Ordering::SeqCst);
                let at_60 = take_n(&c, &key, 10, 10).await;
                clock.store(61 * 60_000, Ordering::SeqCst);
                turns.give(1).await;
                vec![first, at_60]
            }
        })
    });
    assert_eq!(results, vec![vec![5, 0], vec![5, 10]]);
}

#[test]
fn slots_are_exact_across_shards_and_return_to_zero() {
    let key = key_owned_by(0, 2, "conn:192.0.2.");
    let results = on_shards(Setup::new(2), move |c, turns| {
        let key = key.clone();
        Box::pin(async move {
            if turns.mesh.id() == 1 {
                let mut slots = Vec::new();
                for n in 1..=3 {
                    let slot = c.open(&key, 3).await.unwrap();
                    assert_eq!((slot.count(), slot.unchecked()), (n, None));
                    slots.push(slot);
                }
                assert_eq!(c.open(&key, 3).await.unwrap_err(), Refused { count: 3 });
                turns.give(0).await;
                turns.wait().await;
                drop(slots);
                c.flush_releases().await;
                turns.give(0).await;
                0
            } else {
                turns.wait().await;
                assert_eq!(
                    c.open(&key, 3).await.unwrap_err(),
                    Refused { count: 3 },
                    "appliance-wide"
                );
                let local = c.open(&key, 4).await.unwrap();
                assert_eq!(local.count(), 4);
                drop(local);
                assert_eq!(c.open_slots(&key), 3);
                turns.give(1).await;
                turns.wait().await;
                c.open_slots(&key)
            }
        })
    });
    assert_eq!(results[0], 0, "every slot released");
}

#[test]
fn a_slot_held_by_an_abandoned_task_is_released() {
    // A connection task dropped mid-way (killed client, shutdown) drops its slot.
    let key = key_owned_by(1, 2, "conn:198.51.100.");
    let results = on_shards(Setup::new(2), move |c, turns| {
        let key = key.clone();
        Box::pin(async move {
            if turns.mesh.id() == 0 {
                let (c2, k2) = (c.clone(), key.clone());
                let connection = glommio::spawn_local(async move {
                    let _slot = c2.open(&k2, 10).await.unwrap();
                    futures_lite::future::pending::<()>().await;
                });
                futures_lite::future::yield_now().await;
                turns.give(1).await;
                turns.wait().await;
                drop(connection);
                c.flush_releases().await;
                turns.give(1).await;
                0
            } else {
                turns.wait().await;
                let open = c.open_slots(&key);
                turns.give(0).await;
                turns.wait().await;
                assert_eq!(open, 1, "the connection held its slot");
                c.open_slots(&key)
            }
        })
    });
    assert_eq!(results[1], 0);
}

#[test]
fn add_and_count_agree_on_every_shard() {
    let key = key_owned_by(1, 2, "dhap:192.0.2.");
    let results = on_shards(Setup::new(2), move |c, turns| {
        let key = key.clone();
        Box::pin(async move {
            let peer = 1 - turns.mesh.id();
            let mut after = Vec::new();
            for _ in 0..5 {
                after.push(c.add(&key, HOUR).await.unwrap());
            }
            turns.give(peer).await;
            turns.wait().await;
            (after, c.count(&key, HOUR).await.unwrap())
        })
    });
    assert_eq!(results[0].1, 10);
    assert_eq!(results[1].1, 10);
    let mut all: Vec<u32> = results.iter().flat_map(|r| r.0.clone()).collect();
    all.sort();
    assert_eq!(
        all,
        (1..=10).collect::<Vec<_>>(),
        "each add saw the count after it"
    );
}

#[test]
fn the_table_stays_bounded() {
    let mut setup = Setup::new(1);
    setup.settings.table_entries = 100;
    let results = on_shards(setup, |c, _| {
        Box::pin(async move {
            for _ in 0..10_000 {
                drop(c.open("conn:192.0.2.1", 10).await.unwrap());
            }
            let one_client = c.table_len();
            for n in 0..1_000 {
                c.add(&format!("dhap:10.0.{}.{}", n / 256, n % 256), HOUR)
                    .await
                    .unwrap();
            }
            (one_client, c.table_len())
        })
    });
    assert_eq!(results[0], (1, 100));
}

#[test]
fn a_missing_owner_fails_open_and_says_so() {
    // Shard 1 registers no counters: its answers never come.
    let mut setup = Setup::new(2);
    setup.serving[1] = false;
    let key = key_owned_by(1, 2, "rcpt:192.0.2.");
    let results = on_shards(setup, move |c, turns| {
        let key = key.clone();
        Box::pin(async move {
            if turns.mesh.id() == 1 {
                return None;
            }
            let taken = c.take(&key, 1, HOUR).await.unwrap();
            let slot = c.open(&key, 1).await.unwrap();
            let added = c.add(&key, HOUR).await;
            Some((taken.unchecked, slot.unchecked(), added))
        })
    });
    let gone = Some(Unchecked::OwnerGone(ShardGone::Stopped(1)));
    assert_eq!(results[0], Some((gone, gone, Err(gone.unwrap()))));
}

#[test]
fn settings_are_range_checked() {
    assert_eq!(RateSettings::default().validate(), Ok(()));
    let bad = RateSettings {
        lease_tokens: limits::RATE_LEASE_TOKENS_MAX + 1,
        ..RateSettings::default()
    };
    assert_eq!(bad.validate().unwrap_err().0, "rate_limits.lease_tokens");
    let bad = RateSettings {
        lease_tokens: 0,
        ..RateSettings::default()
    };
    assert_eq!(bad.validate().unwrap_err().0, "rate_limits.lease_tokens");
    let bad = RateSettings {
        table_entries: 10,
        ..RateSettings::default()
    };
    assert_eq!(bad.validate().unwrap_err().0, "rate_limits.table_entries");
    let parsed: RateSettings = toml::from_str("lease_tokens = 4").unwrap();
    assert_eq!(
        parsed,
        RateSettings {
            lease_tokens: 4,
            table_entries: limits::RATE_TABLE_ENTRIES
        }
    );
    assert!(
        toml::from_str::<RateSettings>("lease = 4").is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn a_short_window_opens_again_after_it_on_every_shard() {
    // Destination recipient rates use windows of seconds (issue 10):
    // a 2 s window full at t=0 is open again by t=2.1 s.
    let setup = Setup::new(2);
    let clock = setup.clock.clone();
    let key = key_owned_by(0, 2, "destination-recipients ");
    let results = on_shards(setup, move |c, turns| {
        let (key, clock) = (key.clone(), clock.clone());
        Box::pin(async move {
            let take = |n| {
                let (c, key) = (c.clone(), key.clone());
                async move {
                    let mut granted = 0;
                    for _ in 0..n {
                        granted += u32::from(c.take(&key, 4, 2).await.is_ok());
                    }
                    granted
                }
            };
            if turns.mesh.id() == 1 {
                let first = take(2).await;
                turns.give(0).await;
                turns.wait().await;
                vec![first, take(10).await]
            } else {
                turns.wait().await;
                let first = take(10).await;
                clock.store(2_100, Ordering::SeqCst);
                let later = take(2).await;
                turns.give(1).await;
                vec![first, later]
            }
        })
    });
    assert_eq!(results, vec![vec![2, 2], vec![2, 2]]);
}

