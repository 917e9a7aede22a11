//! The leases a shard holds of keys other shards own, pure: spend a leased
//! token locally, say what to settle when asking the owner again, answer
//! the owner's recall.
//!
//! Sits under `rate::Counters` on a non-owner shard (the hot path: a
//! recipient from an IP whose counter lives elsewhere). Time comes in as
//! `now_ms`. Rules that keep the owner's count exact (see `rate.rs`):
//! - a lease is spent only before its deadline, which is when the owner's
//!   bucket it was counted in ends (measured from when we asked, so early);
//! - a lease is spent only by a take whose limit is at least the one it was
//!   granted under: listeners' policies check their own thresholds against
//!   one counter, and the owner granted it against the other threshold;
//! - every lease is remembered until the owner has its account (a settle
//!   the owner answered, or a recall): then the owner never mistakes spent
//!   tokens for unused ones;
//! - a recall of a lease we do not hold means its grant is still on the way
//!   (or our ask gave up): we forfeit it, and discard it if it arrives.

use hashbrown::HashMap;

use super::table::{CounterKey, LeaseGrant, RecallAnswer, Settle};

#[derive(Clone, Debug, PartialEq, Eq)]
struct HeldLease {
    id: u64,
    unused: u32,
    /// The owner's count when it granted the lease (incl. the token taken
    /// with it); plus what we spent since, it is the count we log.
    count_at_grant: u32,
    spent: u32,
    /// The limit of the take it was granted with: the owner never grants
    /// past it, so only a take with this limit or a higher one may spend it.
    limit: u32,
    deadline_ms: u64,
    /// Its account is on the way to the owner.
    settling: bool,
}

impl HeldLease {
    fn is_spendable(&self, now_ms: u64, limit: u32) -> bool {
        !self.settling && self.unused > 0 && now_ms < self.deadline_ms && self.limit <= limit
    }

    fn is_due(&self, now_ms: u64) -> bool {
        !self.settling && (self.unused == 0 || now_ms >= self.deadline_ms)
    }

    fn settle(&self) -> Settle {
        Settle {
            id: self.id,
            unused: self.unused,
        }
    }
}

#[derive(Debug, Default)]
struct Book {
    leases: Vec<HeldLease>,
    /// A lease is being asked for: a second take asks for one token only.
    asking: bool,
    /// Leases up to this id were forfeited by a recall before they arrived.
    revoked_through: u64,
}

impl Book {
    fn is_empty(&self) -> bool {
        self.leases.is_empty() && !self.asking
    }

    /// Mark the leases that are spent or past their deadline as settling.
    fn take_due(&mut self, now_ms: u64) -> Vec<Settle> {
        let due = self.leases.iter_mut().filter(|l| l.is_due(now_ms));
        due.map(|l| {
            l.settling = true;
            l.settle()
        })
        .collect()
    }
}

/// What to send the owner with one take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// Tokens wanted: 1 to take, more to lease the rest.
    pub want: u32,
    /// Accounts of our spent or expired leases of this key.
    pub settles: Vec<Settle>,
    /// The limit of the take: a lease granted with it is spent only by
    /// takes with this limit or a higher one.
    pub limit: u32,
}

/// Leases held by this shard, by key; at most `capacity` keys (past it a
/// take asks for single tokens, no lease).
pub struct LeaseBook {
    books: HashMap<CounterKey, Book>,
    capacity: usize,
}

impl LeaseBook {
    pub fn new(capacity: usize) -> LeaseBook {
        LeaseBook {
            books: HashMap::new(),
            capacity,
        }
    }

    /// Keys with leases held or asked for.
    pub fn len(&self) -> usize {
        self.books.len()
    }

    pub fn is_empty(&self) -> bool {
        self.books.is_empty()
    }

    /// Is a lease of `key` being asked for?
    pub fn is_asking(&self, key: &CounterKey) -> bool {
        self.books.get(key).is_some_and(|b| b.asking)
    }

    /// Spend one leased token of `key` for a take with `limit`: the count
    /// to log, or None (no lease of it granted under `limit` or a lower one).
    pub fn spend(&mut self, key: &CounterKey, now_ms: u64, limit: u32) -> Option<u32> {
        let lease = self
            .books
            .get_mut(key)?
            .leases
            .iter_mut()
            .find(|l| l.is_spendable(now_ms, limit))?;
        lease.unused -= 1;
        lease.spent += 1;
        Some(lease.count_at_grant + lease.spent)
    }

    /// About to ask the owner for a token of `key` under `limit`: how many
    /// to want and what to settle with it.
    pub fn prepare(&mut self, key: &CounterKey, now_ms: u64, lease_tokens: u32, limit: u32) -> Ask {
        if !self.books.contains_key(key) {
            if self.books.len() >= self.capacity || lease_tokens <= 1 {
                return Ask {
                    want: 1,
                    settles: Vec::new(),
                    limit,
                };
            }
            self.books.insert(key.clone(), Book::default());
        }
        let book = self.books.get_mut(key).expect("just made");
        let settles = book.take_due(now_ms);
        let want = if book.asking || lease_tokens <= 1 {
            1
        } else {
            lease_tokens
        };
        book.asking |= want > 1;
        Ask { want, settles, limit }
    }

    /// The owner answered `ask` (`reached`) or did not. On an answer its
    /// settles are done and a lease granted with it is installed (unless
    /// recalled meanwhile); without one the settles are sent again later.
    /// `asked_at_ms` is when we asked: the deadline counts from there.
    pub fn finish(
        &mut self,
        key: &CounterKey,
        ask: &Ask,
        reached: bool,
        grant: Option<(LeaseGrant, u32)>,
        asked_at_ms: u64,
    ) {
        let Some(book) = self.books.get_mut(key) else {
            return;
        };
        if ask.want > 1 {
            book.asking = false;
        }
        settled(book, &ask.settles, reached);
        if let Some((lease, count)) = grant.filter(|(l, _)| l.id > book.revoked_through) {
            let deadline_ms = asked_at_ms + lease.valid_ms;
            book.leases.push(HeldLease {
                id: lease.id,
                unused: lease.tokens,
                count_at_grant: count,
                spent: 0,
                limit: ask.limit,
                deadline_ms,
                settling: false,
            });
        }
        if book.is_empty() {
            self.books.remove(key);
        }
    }

    /// The owner recalls lease `id` of `key`: give back what is unused.
    pub fn recall(&mut self, key: &CounterKey, id: u64) -> RecallAnswer {
        let Some(book) = self.books.get_mut(key) else {
            return RecallAnswer::Forfeited;
        };
        let answer = match book.leases.iter().position(|l| l.id == id) {
            Some(at) => RecallAnswer::Returned(book.leases.swap_remove(at).unused),
            None => {
                book.revoked_through = book.revoked_through.max(id);
                RecallAnswer::Forfeited
            }
        };
        if book.is_empty() {
            self.books.remove(key);
        }
        answer
    }

    /// Leases spent or past their deadline, to settle with their owners
    /// now (the periodic sweep); they are marked settling.
    pub fn due(&mut self, now_ms: u64) -> Vec<(CounterKey, Vec<Settle>)> {
        let due = self
            .books
            .iter_mut()
            .map(|(key, book)| (key, book.take_due(now_ms)));
        due.filter(|(_, settles)| !settles.is_empty())
            .map(|(key, settles)| (key.clone(), settles))
            .collect()
    }

    /// The sweep's settles of `key` reached the owner, or did not.
    pub fn settled(&mut self, key: &CounterKey, settles: &[Settle], reached: bool) {
        let Some(book) = self.books.get_mut(key) else {
            return;
        };
        settled(book, settles, reached);
        if book.is_empty() {
            self.books.remove(key);
        }
    }

    /// Unused leased tokens of `key` (tests and status).
    pub fn unused(&self, key: &CounterKey) -> u32 {
        self.books
            .get(key)
            .map_or(0, |b| b.leases.iter().map(|l| l.unused).sum())
    }
}

/// Settles the owner has: forget those leases. Not reached: send again later.
fn settled(book: &mut Book, settles: &[Settle], reached: bool) {
    for settle in settles {
        if reached {
            book.leases.retain(|l| l.id != settle.id);
        } else if let Some(lease) = book.leases.iter_mut().find(|l| l.id == settle.id) {
            lease.settling = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit of the takes below.
    const LIMIT: u32 = 100;

    fn key() -> CounterKey {
        CounterKey::window("rcpt:192.0.2.1", 3600)
    }

    fn grant(id: u64, tokens: u32) -> Option<(LeaseGrant, u32)> {
        Some((
            LeaseGrant {
                id,
                tokens,
                valid_ms: 1000,
            },
            1,
        ))
    }

    /// Ask, and get `tokens` leased as lease `id` at time `at`.
    fn lease(b: &mut LeaseBook, id: u64, tokens: u32, at: u64) -> Ask {
        let ask = b.prepare(&key(), at, 8, LIMIT);
        b.finish(&key(), &ask, true, grant(id, tokens), at);
        ask
    }

    #[test]
    fn a_lease_is_spent_locally_until_empty_or_its_deadline() {
        let mut b = LeaseBook::new(10);
        assert_eq!(b.spend(&key(), 0, LIMIT), None);
        let ask = lease(&mut b, 1, 3, 0);
        assert_eq!(
            ask,
            Ask {
                want: 8,
                settles: vec![],
                limit: LIMIT,
            }
        );
        assert_eq!(b.spend(&key(), 10, LIMIT), Some(2));
        assert_eq!(b.spend(&key(), 20, LIMIT), Some(3));
        assert_eq!(b.spend(&key(), 1000, LIMIT), None, "past the deadline");
        assert_eq!(b.unused(&key()), 1);
        // The next ask settles it: 1 unused.
        assert_eq!(
            b.prepare(&key(), 1000, 8, LIMIT),
            Ask {
                want: 8,
                settles: vec![Settle { id: 1, unused: 1 }],
                limit: LIMIT,
            }
        );
    }

    #[test]
    fn a_spent_lease_is_remembered_until_the_owner_has_its_account() {
        let mut b = LeaseBook::new(10);
        lease(&mut b, 1, 1, 0);
        assert!(b.spend(&key(), 1, LIMIT).is_some());
        let ask = b.prepare(&key(), 2, 8, LIMIT);
        assert_eq!(ask.settles, vec![Settle { id: 1, unused: 0 }]);
        // A recall while the settle travels: spent, nothing unused (not forfeited!).
        assert_eq!(b.recall(&key(), 1), RecallAnswer::Returned(0));
        b.finish(&key(), &ask, true, None, 2);
        assert!(b.is_empty());
    }

    #[test]
    fn settles_that_did_not_reach_the_owner_are_sent_again() {
        let mut b = LeaseBook::new(10);
        lease(&mut b, 1, 2, 0);
        let ask = b.prepare(&key(), 5000, 8, LIMIT);
        assert_eq!(ask.settles, vec![Settle { id: 1, unused: 2 }]);
        b.finish(&key(), &ask, false, None, 5000);
        assert_eq!(
            b.due(5001),
            vec![(key(), vec![Settle { id: 1, unused: 2 }])]
        );
        assert!(b.due(5002).is_empty(), "marked settling");
        b.settled(&key(), &[Settle { id: 1, unused: 2 }], true);
        assert!(b.is_empty());
    }

    #[test]
    fn a_recall_before_the_grant_arrives_forfeits_it() {
        let mut b = LeaseBook::new(10);
        let ask = b.prepare(&key(), 0, 8, LIMIT);
        assert_eq!(
            b.prepare(&key(), 0, 8, LIMIT).want,
            1,
            "one lease asked for at a time"
        );
        assert_eq!(b.recall(&key(), 7), RecallAnswer::Forfeited);
        b.finish(&key(), &ask, true, grant(7, 5), 0);
        assert_eq!(b.spend(&key(), 1, LIMIT), None, "the forfeited lease is discarded");
        assert!(b.is_empty());
        assert_eq!(
            b.recall(&key(), 8),
            RecallAnswer::Forfeited,
            "nothing held, nothing asked"
        );
    }

    #[test]
    fn recall_returns_the_unused_tokens() {
        let mut b = LeaseBook::new(10);
        lease(&mut b, 3, 5, 0);
        b.spend(&key(), 1, LIMIT);
        assert_eq!(b.recall(&key(), 3), RecallAnswer::Returned(4));
        assert_eq!(b.spend(&key(), 2, LIMIT), None);
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_book_asks_for_single_tokens() {
        let mut b = LeaseBook::new(1);
        lease(&mut b, 1, 5, 0);
        let other = CounterKey::window("rcpt:192.0.2.2", 3600);
        assert_eq!(
            b.prepare(&other, 0, 8, LIMIT),
            Ask {
                want: 1,
                settles: vec![],
                limit: LIMIT,
            }
        );
        assert_eq!(b.len(), 1);
        assert_eq!(
            LeaseBook::new(10).prepare(&key(), 0, 1, LIMIT).want,
            1,
            "lease_tokens = 1: no leases"
        );
    }

    #[test]
    fn a_lease_is_spent_only_under_a_limit_at_least_its_own() {
        // Two listeners' policies check 20 and 5 against one counter: a
        // lease granted under 20 says nothing about 5.
        let mut b = LeaseBook::new(10);
        let ask = b.prepare(&key(), 0, 8, 20);
        b.finish(&key(), &ask, true, grant(1, 7), 0);
        assert_eq!(b.spend(&key(), 1, 5), None, "granted under a higher limit");
        assert_eq!(b.unused(&key()), 7);
        assert_eq!(b.spend(&key(), 1, 20), Some(2));
        assert_eq!(b.spend(&key(), 1, 50), Some(3), "a higher limit may spend it");
    }
}
