//! Destination controls applied at delivery (issue 10 item 2, seed 003):
//! which destination an attempt counts against, its connection quota for
//! the pool, and its recipients per period.
//!
//! Where it sits: `Delivery::attempt_each` asks `recipients` how many of a
//! host's pending recipients may go now (waiting, alone for its
//! destination on this shard, until at least one may), then the pool for
//! a turn under `quota` (`pool::Pool::turn`: the connection limit).
//!
//! Both limits are appliance-wide and exact: the counts live on the owner
//! shard of the destination's key (`policy::rate::Counters`). Recipients
//! per period are tokens of a sliding window of `recipients_period_secs`
//! (`take`, leased to shards in batches; overshoot 0 while every shard
//! runs, at most `(lease_tokens − 1) × (shards − 1)` when one stops with a
//! lease, rate.rs). A token is spent when a recipient is attempted, not
//! when it is accepted: a refused or deferred recipient still counts, so
//! the downstream never sees more than the limit of RCPTs per period.
//!
//! Fairness: a destination over its rate or connection limit waits in its
//! own queue; nothing it holds (no message bytes, no slot of another
//! destination) delays mail for other destinations.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use std::collections::VecDeque;

use futures_channel::oneshot;
use hashbrown::HashMap;

use crate::config::destination::{ApplyTo, DestinationSettings};
use crate::limits;
use crate::policy::rate::Counters;
use crate::pool::Quota;

/// The destination an attempt to `host` for mail to `domain` counts against.
pub fn destination_key(settings: &DestinationSettings, domain: &str, host: SocketAddr) -> Rc<str> {
    match settings.apply_to {
        ApplyTo::Domain => format!("domain:{domain}").into(),
        ApplyTo::Host => format!("host:{host}").into(),
    }
}

/// The pool's view of a destination's connection limits; `label` names it
/// in the metrics (its `[destination]` table).
pub fn quota(settings: &DestinationSettings, key: Rc<str>, label: &str) -> Quota {
    Quota {
        key,
        max_connections: settings.max_connections,
        max_messages_per_connection: settings.max_messages_per_connection,
        label: label.into(),
    }
}

/// This shard's side of the recipient rates.
pub struct Controls {
    counters: Rc<Counters>,
    /// One attempt per destination on this shard asks the owner for
    /// tokens; the others for it queue here (FIFO) instead of polling too.
    /// An entry lives while its destination has an asker.
    turns: Rc<RefCell<HashMap<Rc<str>, VecDeque<oneshot::Sender<()>>>>>,
}

/// The turn to ask for a destination's tokens; handed to the next in line
/// when dropped (however the holder ends).
struct AskTurn {
    turns: Rc<RefCell<HashMap<Rc<str>, VecDeque<oneshot::Sender<()>>>>>,
    key: Rc<str>,
}

impl Drop for AskTurn {
    fn drop(&mut self) {
        let mut turns = self.turns.borrow_mut();
        let Some(waiting) = turns.get_mut(&self.key) else { return };
        // A waiter that gave up (its receiver dropped) is skipped.
        while let Some(next) = waiting.pop_front() {
            if next.send(()).is_ok() {
                return;
            }
        }
        turns.remove(&self.key);
    }
}

impl Controls {
    pub fn new(counters: Rc<Counters>) -> Controls {
        Controls { counters, turns: Rc::default() }
    }

    /// Wait for the turn to ask for `key`'s tokens on this shard.
    async fn ask_turn(&self, key: &Rc<str>) -> AskTurn {
        let waiting = {
            let mut turns = self.turns.borrow_mut();
            match turns.get_mut(key) {
                None => {
                    turns.insert(key.clone(), VecDeque::new());
                    None
                }
                Some(queue) => {
                    let (tx, rx) = oneshot::channel();
                    queue.push_back(tx);
                    Some(rx)
                }
            }
        };
        // Handed over by the previous holder (a closed channel cannot
        // happen: a sender is only dropped by sending, or with the whole
        // entry, which happens only with no one waiting). Made only once
        // held: a waiter dropped while waiting hands nothing over.
        if let Some(handed_over) = waiting {
            let _ = handed_over.await;
        }
        AskTurn { turns: self.turns.clone(), key: key.clone() }
    }

    /// How many of `wanted` recipients for destination `key` may be
    /// attempted now (their tokens are taken): all of them when the
    /// destination has no rate, else as many as the period allows, waiting
    /// until at least one does. The caller attempts that many and comes
    /// back for the rest.
    pub async fn recipients(&self, key: &Rc<str>, settings: &DestinationSettings, wanted: usize) -> usize {
        if settings.max_recipients == 0 || wanted == 0 {
            return wanted;
        }
        let _turn = self.ask_turn(key).await;
        self.take_at_least_one(key, settings, wanted).await
    }

    async fn take_at_least_one(&self, key: &str, settings: &DestinationSettings, wanted: usize) -> usize {
        let counter = format!("destination-recipients {key}");
        // The window slides by one bucket (period/60): no token frees sooner.
        let bucket_ms = (settings.recipients_period_secs * 1000 / 60).max(limits::DESTINATION_RATE_RETRY_MIN_MS);
        loop {
            let mut granted = 0;
            while granted < wanted {
                match self.counters.take(&counter, settings.max_recipients, settings.recipients_period_secs).await {
                    Ok(_) => granted += 1,
                    Err(_) => break,
                }
            }
            if granted > 0 {
                return granted;
            }
            glommio::timer::sleep(Duration::from_millis(bucket_ms)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_domain_or_the_host_as_the_destination_says() {
        let host: SocketAddr = "192.0.2.1:25".parse().unwrap();
        let mut settings = DestinationSettings::default();
        assert_eq!(&*destination_key(&settings, "example.com", host), "domain:example.com");
        settings.apply_to = ApplyTo::Host;
        assert_eq!(&*destination_key(&settings, "example.com", host), "host:192.0.2.1:25");
        let quota = quota(&settings, "host:192.0.2.1:25".into(), "default");
        assert_eq!((quota.max_connections, quota.max_messages_per_connection), (50, 50));
    }
}
