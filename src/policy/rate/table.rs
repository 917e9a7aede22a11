//! The owner shard's counter table, pure: one entry per key this shard
//! owns, bounded, least recently used idle keys forgotten first.
//!
//! Sits under `rate::Counters` on the owner shard: every take, add, count,
//! open and release of a key ends here (locally or from a peer over the
//! mesh). Time comes in as `now_ms`. An entry holds the key's sliding
//! `Window`, the leases granted to other shards that have not been settled
//! (so they can be recalled, see `rate.rs`), and the open concurrent slots.
//!
//! Bound: at most `capacity` entries. A new key evicts the least recently
//! used *idle* entry (no open slot, no outstanding lease): its count is
//! forgotten, so an evicted key starts empty next time. Busy entries are
//! never evicted (that would make a slot count or a lease stale); if the
//! `RATE_EVICTION_SCAN_MAX` least recently used are all busy, the request is
//! answered `TableFull` and the caller passes it unchecked.

use lru::LruCache;

use super::window::{bucket_at, bucket_left_ms, Window};
use crate::limits;

/// One counter: a key and its window; `window_secs == 0` is the key's
/// concurrent slots (connections per IP), a counter of its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub name: Box<str>,
    pub window_secs: u64,
}

impl CounterKey {
    pub fn window(name: &str, window_secs: u64) -> CounterKey {
        debug_assert!(window_secs > 0);
        CounterKey {
            name: name.to_ascii_lowercase().into(),
            window_secs,
        }
    }

    pub fn slots(name: &str) -> CounterKey {
        CounterKey {
            name: name.to_ascii_lowercase().into(),
            window_secs: 0,
        }
    }

    fn bucket(&self, now_ms: u64) -> u64 {
        bucket_at(now_ms, self.window_secs.max(1))
    }
}

/// Tokens granted to `holder` as lease `id`, recorded in `bucket` of the
/// owner's window, not yet settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outstanding {
    pub holder: usize,
    pub id: u64,
    pub bucket: u64,
    pub tokens: u32,
}

/// A holder's account of one lease: `unused` of its tokens were not spent
/// and never will be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settle {
    pub id: u64,
    pub unused: u32,
}

/// One concurrent slot: which shard opened it, and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotId {
    pub shard: usize,
    pub seq: u64,
}

/// Tokens lent to the asking shard beyond the one it took, to spend
/// locally within `valid_ms` (until the owner's bucket ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    pub id: u64,
    pub tokens: u32,
    pub valid_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeDecision {
    /// One token taken; `count` includes it (and any lease granted with it).
    Granted {
        count: u32,
        lease: Option<LeaseGrant>,
    },
    /// `count` tokens are counted and the limit leaves none.
    AtLimit {
        count: u32,
    },
    TableFull,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotDecision {
    Opened { count: u32 },
    AtLimit { count: u32 },
    TableFull,
}

/// What a holder said when its lease was recalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecallAnswer {
    /// It gave back this many unused tokens and dropped the lease.
    Returned(u32),
    /// It never received the lease (the grant was still travelling, or its
    /// ask gave up) and will discard it: every token comes back.
    Forfeited,
    /// No answer (the holder is stopping): every token comes back, and the
    /// holder gets no more leases of this key (bounds the overshoot).
    Unanswered,
}

#[derive(Debug, Default)]
struct Entry {
    window: Window,
    leases: Vec<Outstanding>,
    slots: Vec<SlotId>,
    /// Holders whose recall went unanswered: single tokens only from now on.
    no_leases_for: Vec<usize>,
}

impl Entry {
    /// Outstanding leases whose bucket left the window no longer count:
    /// their tokens are back, and their holders stopped spending them when
    /// the bucket ended.
    fn forget_expired_leases(&mut self, now_bucket: u64) {
        self.leases.retain(|l| Window::holds(now_bucket, l.bucket));
    }

    fn is_idle(&mut self, now_bucket: u64) -> bool {
        self.forget_expired_leases(now_bucket);
        self.slots.is_empty() && self.leases.is_empty()
    }

    /// Give back up to `tokens` of lease `at` (removed from the outstanding list).
    fn credit(&mut self, now_bucket: u64, at: usize, tokens: u32) {
        let lease = self.leases.swap_remove(at);
        self.window
            .credit(now_bucket, lease.bucket, tokens.min(lease.tokens));
    }
}

pub struct Table {
    entries: LruCache<CounterKey, Entry>,
    capacity: usize,
    shards: usize,
    next_lease_id: u64,
}

impl Table {
    pub fn new(capacity: usize, shards: usize) -> Table {
        debug_assert!(capacity > 0 && shards > 0);
        Table {
            entries: LruCache::unbounded(),
            capacity: capacity.max(1),
            shards: shards.max(1),
            next_lease_id: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `key`, made (evicting an idle one if full) when missing.
    fn entry(&mut self, key: &CounterKey, now_ms: u64) -> Option<&mut Entry> {
        if !self.entries.contains(key) {
            if self.entries.len() >= self.capacity && !self.evict_idle(now_ms) {
                return None;
            }
            self.entries.push(key.clone(), Entry::default());
        }
        self.entries.get_mut(key)
    }

    /// Forget the least recently used idle entry among the last few.
    fn evict_idle(&mut self, now_ms: u64) -> bool {
        let victim = self
            .entries
            .iter_mut()
            .rev()
            .take(limits::RATE_EVICTION_SCAN_MAX)
            .find_map(|(key, entry)| entry.is_idle(key.bucket(now_ms)).then(|| key.clone()));
        victim.map(|key| self.entries.pop(&key)).is_some()
    }

    /// Take one token of `key` under `limit`, and lend `holder` up to
    /// `want - 1` more (a lease) while far from the limit: never more than
    /// what is left divided by the shard count, so one shard cannot hog
    /// the rest. Leased tokens count as taken from now on.
    pub fn take(
        &mut self,
        key: &CounterKey,
        limit: u32,
        want: u32,
        holder: usize,
        now_ms: u64,
    ) -> TakeDecision {
        let shards = self.shards as u32;
        let lease_id = self.next_lease_id;
        let now = key.bucket(now_ms);
        let Some(entry) = self.entry(key, now_ms) else {
            return TakeDecision::TableFull;
        };
        entry.forget_expired_leases(now);
        let count = entry.window.count(now);
        let left = limit.saturating_sub(count);
        if left == 0 {
            return TakeDecision::AtLimit { count };
        }
        let may_lease = !entry.no_leases_for.contains(&holder);
        let want = want.clamp(1, limits::RATE_LEASE_TOKENS_MAX);
        let tokens = if may_lease {
            want.min((left / shards).max(1))
        } else {
            1
        };
        entry.window.add(now, tokens);
        debug_assert!(
            entry.window.count(now) <= limit,
            "grants never pass the limit at the owner"
        );
        let lease = (tokens > 1).then(|| {
            entry.leases.push(Outstanding {
                holder,
                id: lease_id,
                bucket: now,
                tokens: tokens - 1,
            });
            LeaseGrant {
                id: lease_id,
                tokens: tokens - 1,
                valid_ms: bucket_left_ms(now_ms, key.window_secs),
            }
        });
        if lease.is_some() {
            self.next_lease_id += 1;
        }
        TakeDecision::Granted {
            count: count + 1,
            lease,
        }
    }

    /// A holder's accounts of its leases: unused tokens come back. An id
    /// already settled (or recalled, or expired) is ignored, so a settle
    /// may safely arrive twice or after a recall.
    pub fn settle(&mut self, key: &CounterKey, holder: usize, settles: &[Settle], now_ms: u64) {
        let now = key.bucket(now_ms);
        let Some(entry) = self.entries.peek_mut(key) else {
            return;
        };
        for settle in settles {
            if let Some(at) = entry
                .leases
                .iter()
                .position(|l| l.id == settle.id && l.holder == holder)
            {
                entry.credit(now, at, settle.unused);
            }
        }
    }

    /// The leases of `key` to recall before refusing: (holder, lease id).
    pub fn recall_targets(&mut self, key: &CounterKey, now_ms: u64) -> Vec<(usize, u64)> {
        let now = key.bucket(now_ms);
        let Some(entry) = self.entries.peek_mut(key) else {
            return Vec::new();
        };
        entry.forget_expired_leases(now);
        entry.leases.iter().map(|l| (l.holder, l.id)).collect()
    }

    /// Credit what the recall of lease `id` brought back.
    pub fn recalled(
        &mut self,
        key: &CounterKey,
        holder: usize,
        id: u64,
        answer: RecallAnswer,
        now_ms: u64,
    ) {
        let now = key.bucket(now_ms);
        let Some(entry) = self.entries.peek_mut(key) else {
            return;
        };
        let Some(at) = entry
            .leases
            .iter()
            .position(|l| l.id == id && l.holder == holder)
        else {
            return;
        };
        let tokens = match answer {
            RecallAnswer::Returned(unused) => unused,
            RecallAnswer::Forfeited | RecallAnswer::Unanswered => u32::MAX,
        };
        entry.credit(now, at, tokens);
        if answer == RecallAnswer::Unanswered && !entry.no_leases_for.contains(&holder) {
            entry.no_leases_for.push(holder);
        }
    }

    /// Count one event without a limit; the count after it (None: table full).
    pub fn add(&mut self, key: &CounterKey, now_ms: u64) -> Option<u32> {
        let now = key.bucket(now_ms);
        let entry = self.entry(key, now_ms)?;
        entry.window.add(now, 1);
        Some(entry.window.count(now))
    }

    /// Tokens counted for `key` now (0 for a key not in the table).
    pub fn count(&mut self, key: &CounterKey, now_ms: u64) -> u32 {
        let now = key.bucket(now_ms);
        self.entries.get_mut(key).map_or(0, |e| e.window.count(now))
    }

    /// Open one concurrent slot of `key` if fewer than `max` are open.
    pub fn open(&mut self, key: &CounterKey, max: u32, slot: SlotId, now_ms: u64) -> SlotDecision {
        debug_assert_eq!(key.window_secs, 0);
        let Some(entry) = self.entry(key, now_ms) else {
            return SlotDecision::TableFull;
        };
        let count = entry.slots.len() as u32;
        if count >= max {
            return SlotDecision::AtLimit { count };
        }
        entry.slots.push(slot);
        SlotDecision::Opened { count: count + 1 }
    }

    /// Close `slot` of `key`; a slot not open (already closed) is ignored.
    pub fn release(&mut self, key: &CounterKey, slot: SlotId) {
        if let Some(entry) = self.entries.peek_mut(key) {
            entry.slots.retain(|s| *s != slot);
        }
    }

    /// Open slots of `key` (tests and status).
    pub fn open_slots(&self, key: &CounterKey) -> u32 {
        self.entries.peek(key).map_or(0, |e| e.slots.len() as u32)
    }

    /// Outstanding leases of `key` (tests and status).
    pub fn outstanding(&self, key: &CounterKey) -> Vec<Outstanding> {
        self.entries
            .peek(key)
            .map_or(Vec::new(), |e| e.leases.clone())
    }
}

#[cfg(test)]
mod tests;
