//! One shard's partition of the call-ahead verdict cache: the verdicts for
//! the recipient domains this shard owns (`shards::owner(domain)`), pure,
//! time passed in as milliseconds.
//!
//! Only `Verdict::is_cacheable` answers are stored: "accepted" for
//! `cache_ttl_secs`, "mailbox unknown" for `negative_cache_ttl_secs`, each
//! with the downstream's reply, returned on a hit. Two background
//! re-probes keep it fresh without making a client wait:
//! - refresh-ahead: a positive hit in the last 10 % of its TTL is answered
//!   from the cache and asks for one background probe;
//! - negative recheck: a negative hit asks for a background probe at most
//!   once per `negative_recheck_secs`, so a mailbox created downstream is
//!   accepted within minutes, not at the end of the negative TTL.
//!
//! Bounded: at most `capacity` entries, least recently used evicted first
//! (an evicted address is simply probed again). Purge by address, by domain
//! or all (`portcullis callahead purge`).

use std::num::NonZeroUsize;

use lru::LruCache;

use crate::smtp::Reply;

/// A cached verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cached {
    Accepted(Reply),
    MailboxUnknown(Reply),
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Miss,
    /// Answer with `verdict`; when `reprobe` is set, also probe again in
    /// the background (refresh-ahead or negative recheck) and store the result.
    Hit { verdict: Cached, age_ms: u64, ttl_ms: u64, reprobe: bool },
}

#[derive(Clone, Debug)]
struct Entry {
    verdict: Cached,
    stored_ms: u64,
    ttl_ms: u64,
    /// When a background re-probe was last asked for (refresh or recheck).
    reprobed_ms: Option<u64>,
}

/// The TTLs of one call-ahead profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttls {
    pub positive_ms: u64,
    pub negative_ms: u64,
    pub negative_recheck_ms: u64,
}

pub struct VerdictCache {
    entries: LruCache<String, Entry>,
}

impl VerdictCache {
    pub fn new(capacity: usize) -> VerdictCache {
        VerdictCache { entries: LruCache::new(NonZeroUsize::new(capacity.max(1)).expect("at least 1")) }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Store a verdict for `address` (lower case `local@domain`).
    pub fn store(&mut self, address: &str, verdict: Cached, ttls: &Ttls, now_ms: u64) {
        let ttl_ms = match verdict {
            Cached::Accepted(_) => ttls.positive_ms,
            Cached::MailboxUnknown(_) => ttls.negative_ms,
        };
        self.entries.put(address.to_string(), Entry { verdict, stored_ms: now_ms, ttl_ms, reprobed_ms: None });
    }

    /// The verdict for `address`, if fresh; says whether to re-probe it.
    pub fn lookup(&mut self, address: &str, ttls: &Ttls, now_ms: u64) -> Lookup {
        let Some(entry) = self.entries.get_mut(address) else {
            return Lookup::Miss;
        };
        let age_ms = now_ms.saturating_sub(entry.stored_ms);
        if age_ms >= entry.ttl_ms {
            self.entries.pop(address);
            return Lookup::Miss;
        }
        let reprobe = match entry.verdict {
            // Refresh-ahead: in the last 10 % of the TTL, once.
            Cached::Accepted(_) => age_ms * 10 >= entry.ttl_ms * 9 && entry.reprobed_ms.is_none(),
            // Negative recheck: at most once per negative_recheck_ms.
            Cached::MailboxUnknown(_) => {
                let since = now_ms.saturating_sub(entry.reprobed_ms.unwrap_or(entry.stored_ms));
                since >= ttls.negative_recheck_ms
            }
        };
        if reprobe {
            entry.reprobed_ms = Some(now_ms);
        }
        Lookup::Hit { verdict: entry.verdict.clone(), age_ms, ttl_ms: entry.ttl_ms, reprobe }
    }

    /// The verdict for `address` without touching its recency or re-probe
    /// marks (the operator's query): (verdict, age, TTL), expired or not.
    pub fn peek(&self, address: &str, now_ms: u64) -> Option<(Cached, u64, u64)> {
        let entry = self.entries.peek(address)?;
        Some((entry.verdict.clone(), now_ms.saturating_sub(entry.stored_ms), entry.ttl_ms))
    }

    /// Change the bound (a reload changed `cache_entries`); the least
    /// recently used entries go if it shrank.
    pub fn resize(&mut self, capacity: usize) {
        if capacity != self.entries.cap().get() {
            self.entries.resize(NonZeroUsize::new(capacity.max(1)).expect("at least 1"));
        }
    }

    /// Forget one address; true if it was cached.
    pub fn purge(&mut self, address: &str) -> bool {
        self.entries.pop(address).is_some()
    }

    /// Forget every address of `domain`; how many.
    pub fn purge_domain(&mut self, domain: &str) -> usize {
        let doomed: Vec<String> = self
            .entries
            .iter()
            .filter(|(address, _)| address.rsplit_once('@').is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain)))
            .map(|(address, _)| address.clone())
            .collect();
        for address in &doomed {
            self.entries.pop(address);
        }
        doomed.len()
    }

    /// Forget everything; how many.
    pub fn purge_all(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTLS: Ttls = Ttls { positive_ms: 1_000_000, negative_ms: 900_000, negative_recheck_ms: 300_000 };

    fn yes() -> Cached {
        Cached::Accepted(Reply::new(250, "2.1.5", "Ok"))
    }

    fn no() -> Cached {
        Cached::MailboxUnknown(Reply::new(550, "5.1.1", "<a@x.test>: User unknown"))
    }

    fn reprobe(l: &Lookup) -> bool {
        matches!(l, Lookup::Hit { reprobe: true, .. })
    }

    #[test]
    fn hits_keep_the_downstream_reply_until_the_ttl() {
        let mut c = VerdictCache::new(10);
        c.store("a@x.test", no(), &TTLS, 0);
        assert_eq!(c.lookup("a@x.test", &TTLS, 1).clone(), Lookup::Hit { verdict: no(), age_ms: 1, ttl_ms: 900_000, reprobe: false });
        assert_eq!(c.lookup("a@x.test", &TTLS, 900_000), Lookup::Miss, "expired at its negative TTL");
        assert!(c.is_empty());
        assert_eq!(c.lookup("b@x.test", &TTLS, 0), Lookup::Miss);
    }

    #[test]
    fn refresh_ahead_once_in_the_last_tenth() {
        let mut c = VerdictCache::new(10);
        c.store("a@x.test", yes(), &TTLS, 0);
        assert!(!reprobe(&c.lookup("a@x.test", &TTLS, 899_999)));
        assert!(reprobe(&c.lookup("a@x.test", &TTLS, 900_000)), "last 10 %: answered and re-probed");
        assert!(!reprobe(&c.lookup("a@x.test", &TTLS, 950_000)), "one background probe, not one per hit");
        // The re-probe's answer replaces it, with a fresh TTL.
        c.store("a@x.test", yes(), &TTLS, 960_000);
        assert!(matches!(c.lookup("a@x.test", &TTLS, 1_500_000), Lookup::Hit { reprobe: false, .. }));
    }

    #[test]
    fn negative_recheck_at_most_once_per_interval() {
        let mut c = VerdictCache::new(10);
        c.store("a@x.test", no(), &TTLS, 0);
        assert!(!reprobe(&c.lookup("a@x.test", &TTLS, 299_999)));
        assert!(reprobe(&c.lookup("a@x.test", &TTLS, 300_000)));
        assert!(!reprobe(&c.lookup("a@x.test", &TTLS, 400_000)));
        assert!(reprobe(&c.lookup("a@x.test", &TTLS, 600_000)));
        // The mailbox was created: the recheck stores the positive answer.
        c.store("a@x.test", yes(), &TTLS, 600_100);
        assert!(matches!(c.lookup("a@x.test", &TTLS, 600_200), Lookup::Hit { verdict: Cached::Accepted(_), .. }));
    }

    #[test]
    fn bounded_and_purgeable() {
        let mut c = VerdictCache::new(3);
        for (i, a) in ["a@x.test", "b@x.test", "c@y.test", "d@x.test"].iter().enumerate() {
            c.store(a, yes(), &TTLS, i as u64);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.lookup("a@x.test", &TTLS, 10), Lookup::Miss, "least recently used went first");
        assert_eq!(c.purge_domain("X.test"), 2);
        assert!(c.purge("c@y.test"));
        assert!(!c.purge("c@y.test"));
        c.store("e@z.test", no(), &TTLS, 11);
        assert_eq!(c.purge_all(), 1);
        assert!(c.is_empty());
    }
}
