//! The owner's table alone: lease accounting (grants count at once,
//! settles and recalls give unused tokens back exactly once), near-limit
//! lease sizes, slots, and the bound with idle-only eviction.

use super::*;

const HOUR: u64 = 3600;
const MINUTE_MS: u64 = 60_000;

fn ip(n: u32) -> CounterKey {
    CounterKey::window(&format!("rcpt:192.0.2.{n}"), HOUR)
}

fn lease_of(d: TakeDecision) -> LeaseGrant {
    match d {
        TakeDecision::Granted { lease: Some(l), .. } => l,
        other => panic!("expected a lease: {other:?}"),
    }
}

#[test]
fn a_lease_counts_as_taken_when_granted() {
    let mut t = Table::new(10, 2);
    let key = ip(1);
    let l = lease_of(t.take(&key, 100, 8, 1, 0));
    assert_eq!(l.tokens, 7);
    assert_eq!(l.valid_ms, MINUTE_MS, "valid until the owner's bucket ends");
    assert_eq!(t.count(&key, 0), 8);
    assert_eq!(
        t.outstanding(&key),
        vec![Outstanding {
            holder: 1,
            id: l.id,
            bucket: 0,
            tokens: 7
        }]
    );
}

#[test]
fn near_the_limit_leases_shrink_to_a_share_of_what_is_left() {
    let mut t = Table::new(10, 2);
    let key = ip(1);
    // 10 left, 2 shards: at most 5 (1 taken + 4 leased).
    assert_eq!(lease_of(t.take(&key, 10, 8, 1, 0)).tokens, 4);
    // 5 left → 2.
    assert_eq!(lease_of(t.take(&key, 10, 8, 1, 1)).tokens, 1);
    // 3 left → 1 (no lease), 2 left → 1, 1 left → 1, then none.
    for count in 8..=10 {
        assert_eq!(
            t.take(&key, 10, 8, 1, 2),
            TakeDecision::Granted { count, lease: None }
        );
    }
    assert_eq!(
        t.take(&key, 10, 8, 1, 3),
        TakeDecision::AtLimit { count: 10 }
    );
}

#[test]
fn settle_gives_unused_tokens_back_once() {
    let mut t = Table::new(10, 2);
    let key = ip(1);
    let l = lease_of(t.take(&key, 100, 8, 1, 0));
    let settle = [Settle {
        id: l.id,
        unused: 5,
    }];
    t.settle(&key, 1, &settle, 10);
    assert_eq!(t.count(&key, 10), 3, "1 taken + 2 of the lease spent");
    t.settle(&key, 1, &settle, 20);
    assert_eq!(
        t.count(&key, 20),
        3,
        "a second settle of the same lease changes nothing"
    );
    t.settle(
        &key,
        0,
        &[Settle {
            id: l.id,
            unused: 2,
        }],
        20,
    );
    assert_eq!(t.count(&key, 20), 3, "another holder cannot settle it");
    assert!(t.outstanding(&key).is_empty());
}

#[test]
fn recall_credits_what_comes_back() {
    let mut t = Table::new(10, 3);
    let key = ip(1);
    let a = lease_of(t.take(&key, 100, 8, 1, 0));
    let b = lease_of(t.take(&key, 100, 8, 2, 0));
    assert_eq!(t.count(&key, 0), 16);
    assert_eq!(t.recall_targets(&key, 0), vec![(1, a.id), (2, b.id)]);
    t.recalled(&key, 1, a.id, RecallAnswer::Returned(3), 0);
    assert_eq!(t.count(&key, 0), 13);
    t.recalled(&key, 2, b.id, RecallAnswer::Forfeited, 0);
    assert_eq!(t.count(&key, 0), 6, "a forfeited lease comes back whole");
    t.recalled(&key, 2, b.id, RecallAnswer::Forfeited, 0);
    assert_eq!(t.count(&key, 0), 6, "once");
    assert!(t.recall_targets(&key, 0).is_empty());
}

#[test]
fn an_unanswered_recall_ends_leasing_to_that_holder() {
    let mut t = Table::new(10, 2);
    let key = ip(1);
    let a = lease_of(t.take(&key, 100, 8, 1, 0));
    t.recalled(&key, 1, a.id, RecallAnswer::Unanswered, 0);
    assert_eq!(t.count(&key, 0), 1);
    assert_eq!(
        t.take(&key, 100, 8, 1, 0),
        TakeDecision::Granted {
            count: 2,
            lease: None
        }
    );
    assert!(
        matches!(
            t.take(&key, 100, 8, 0, 0),
            TakeDecision::Granted { lease: Some(_), .. }
        ),
        "others still lease"
    );
}

#[test]
fn leases_of_an_expired_bucket_are_forgotten_and_not_credited() {
    let mut t = Table::new(10, 2);
    let key = ip(1);
    let l = lease_of(t.take(&key, 100, 8, 1, 0));
    let later = 61 * MINUTE_MS;
    assert_eq!(t.count(&key, later), 0);
    assert!(t.recall_targets(&key, later).is_empty());
    t.take(&key, 100, 1, 0, later);
    t.settle(
        &key,
        1,
        &[Settle {
            id: l.id,
            unused: 7,
        }],
        later,
    );
    assert_eq!(
        t.count(&key, later),
        1,
        "a late settle does not take from the new bucket"
    );
}

#[test]
fn slots_open_to_max_and_release_by_id() {
    let mut t = Table::new(10, 2);
    let key = CounterKey::slots("conn:192.0.2.1");
    let s = |seq| SlotId { shard: 1, seq };
    assert_eq!(t.open(&key, 2, s(1), 0), SlotDecision::Opened { count: 1 });
    assert_eq!(t.open(&key, 2, s(2), 0), SlotDecision::Opened { count: 2 });
    assert_eq!(t.open(&key, 2, s(3), 0), SlotDecision::AtLimit { count: 2 });
    t.release(&key, s(1));
    t.release(&key, s(1));
    assert_eq!(
        t.open_slots(&key),
        1,
        "a release of a closed slot is ignored"
    );
    t.release(&key, s(3));
    assert_eq!(t.open_slots(&key), 1, "a slot never opened is not released");
    t.release(&key, s(2));
    assert_eq!(t.open_slots(&key), 0);
}

#[test]
fn one_client_connecting_ten_thousand_times_is_one_entry() {
    let mut t = Table::new(100, 2);
    let key = CounterKey::slots("conn:192.0.2.1");
    for seq in 0..10_000 {
        let slot = SlotId { shard: 0, seq };
        assert_eq!(
            t.open(&key, 10, slot, seq),
            SlotDecision::Opened { count: 1 }
        );
        t.release(&key, slot);
    }
    assert_eq!(t.len(), 1);
}

#[test]
fn a_million_keys_keep_the_table_at_its_bound_and_evicted_keys_start_empty() {
    let mut t = Table::new(1000, 2);
    for n in 0..1_000_000u32 {
        assert_eq!(
            t.add(&CounterKey::window(&format!("k{n}"), HOUR), 0),
            Some(1)
        );
        assert!(t.len() <= 1000);
    }
    assert_eq!(t.len(), 1000);
    assert_eq!(
        t.count(&CounterKey::window("k0", HOUR), 0),
        0,
        "evicted: starts empty"
    );
    assert_eq!(t.count(&CounterKey::window("k999999", HOUR), 0), 1);
}

#[test]
fn busy_keys_are_not_evicted_and_a_table_of_busy_keys_answers_full() {
    let mut t = Table::new(4, 2);
    let busy = CounterKey::slots("conn:busy");
    let leased = ip(9);
    assert!(matches!(
        t.open(&busy, 10, SlotId { shard: 0, seq: 1 }, 0),
        SlotDecision::Opened { .. }
    ));
    lease_of(t.take(&leased, 100, 8, 1, 0));
    for n in 0..100 {
        t.add(&ip(n), 0);
    }
    assert_eq!(t.open_slots(&busy), 1, "the key with an open slot stayed");
    assert_eq!(
        t.outstanding(&leased).len(),
        1,
        "the key with a lease stayed"
    );
    // Fill the rest with busy keys: nothing idle to evict.
    for seq in 0..2 {
        t.open(
            &CounterKey::slots(&format!("conn:{seq}")),
            10,
            SlotId { shard: 0, seq },
            0,
        );
    }
    assert_eq!(t.len(), 4);
    assert_eq!(t.take(&ip(200), 10, 1, 0, 0), TakeDecision::TableFull);
    assert_eq!(t.add(&ip(201), 0), None);
    // Once its lease's bucket has passed, the leased key is idle again.
    assert_eq!(t.add(&ip(202), 61 * MINUTE_MS), Some(1));
    assert_eq!(t.outstanding(&leased).len(), 0);
}

#[test]
fn keys_are_case_insensitive() {
    let mut t = Table::new(10, 1);
    t.add(&CounterKey::window("Sender@Example.COM", HOUR), 0);
    assert_eq!(
        t.count(&CounterKey::window("sender@example.com", HOUR), 0),
        1
    );
    assert_eq!(
        t.count(&CounterKey::window("sender@example.com", 60), 0),
        0,
        "another window is another counter"
    );
}
