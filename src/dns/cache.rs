//! The shard's DNS answer cache: bounded, TTL-honouring, clock eviction.
//!
//! `resolver` looks here before it asks the network and stores every
//! answer and negative answer (NXDOMAIN/NODATA) with the TTL `wire`
//! computed; temporary failures are never stored. Time is passed in, so
//! expiry is tested without sleeping.
//!
//! Eviction is the clock (second chance) algorithm: a hit sets the entry's
//! reference bit; when the cache is full the hand sweeps, clearing bits,
//! and replaces the first entry that is expired or was not used since the
//! hand last passed. O(1) amortised, no linked list, no allocation per hit.

use std::hash::Hash;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

struct Slot<K, V> {
    key: K,
    value: V,
    expires: Instant,
    referenced: bool,
}

/// At most `capacity` entries; never refuses an insert (it evicts).
pub(crate) struct Cache<K, V> {
    capacity: usize,
    slots: Vec<Slot<K, V>>,
    index: HashMap<K, usize>,
    hand: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // Grow on demand: a shard that sees few names keeps a small table.
        Cache {
            capacity,
            slots: Vec::new(),
            index: HashMap::new(),
            hand: 0,
        }
    }

    /// The live value for `key` at `now`, marking it recently used.
    pub(crate) fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        let slot = &mut self.slots[*self.index.get(key)?];
        if slot.expires <= now {
            return None;
        }
        slot.referenced = true;
        Some(slot.value.clone())
    }

    /// Stores `value` for `ttl` from `now`, replacing an older value of the
    /// same key or evicting another entry when full.
    pub(crate) fn insert(&mut self, key: K, value: V, ttl: Duration, now: Instant) {
        let expires = now + ttl;
        if let Some(&at) = self.index.get(&key) {
            let slot = &mut self.slots[at];
            (slot.value, slot.expires, slot.referenced) = (value, expires, false);
            return;
        }
        let slot = Slot {
            key: key.clone(),
            value,
            expires,
            referenced: false,
        };
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(slot);
            return;
        }
        let victim = self.sweep(now);
        self.index.remove(&self.slots[victim].key);
        self.index.insert(key, victim);
        self.slots[victim] = slot;
    }

    /// Advances the hand to an entry that may go: expired, or not used since
    /// the last pass. Ends within two turns (the first clears every bit).
    fn sweep(&mut self, now: Instant) -> usize {
        loop {
            let at = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = &mut self.slots[at];
            if slot.expires <= now || !slot.referenced {
                return at;
            }
            slot.referenced = false;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn value_lives_until_its_ttl() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.insert("a", 1, 30 * SEC, t0);
        assert_eq!(cache.get(&"a", t0), Some(1));
        assert_eq!(cache.get(&"a", t0 + 29 * SEC), Some(1));
        assert_eq!(cache.get(&"a", t0 + 30 * SEC), None);
        assert_eq!(cache.get(&"b", t0), None);
    }

    #[test]
    fn insert_replaces_value_and_ttl() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.insert("a", 1, 5 * SEC, t0);
        cache.insert("a", 2, 60 * SEC, t0 + 4 * SEC);
        assert_eq!(cache.get(&"a", t0 + 30 * SEC), Some(2));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn full_cache_stays_bounded_and_keeps_used_entries() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(key, i, 60 * SEC, t0);
        }
        // "a" and "c" are used: "b" is the one to go.
        cache.get(&"a", t0);
        cache.get(&"c", t0);
        cache.insert("d", 3, 60 * SEC, t0);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&"b", t0), None);
        assert_eq!(
            (cache.get(&"a", t0), cache.get(&"c", t0), cache.get(&"d", t0)),
            (Some(0), Some(2), Some(3))
        );
        for i in 0..1000 {
            cache.insert(if i % 2 == 0 { "x" } else { "y" }, i, SEC, t0);
        }
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn expired_entry_goes_even_when_it_was_used() {
        let t0 = Instant::now();
        let mut cache = Cache::new(2);
        cache.insert("live", 1, 60 * SEC, t0);
        cache.insert("stale", 2, SEC, t0);
        cache.get(&"live", t0);
        cache.get(&"stale", t0);
        cache.insert("new", 3, 60 * SEC, t0 + 2 * SEC);
        assert_eq!(cache.get(&"live", t0 + 2 * SEC), Some(1));
        assert_eq!(cache.get(&"new", t0 + 2 * SEC), Some(3));
    }
}
