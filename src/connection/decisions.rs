//! Policy decisions in flight for one connection, completing in any order.
//!
//! The session may have several questions out at once (pipelined RCPTs, at
//! most `limits::SESSION_REPLIES_HELD_MAX`); call-ahead will answer them at
//! different times. Each decision is a future keyed by its ticket and `next`
//! yields whichever completes first. Today's decisions are ready at once.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use crate::smtp::{Decision, Ticket};

type Deciding<'a> = Pin<Box<dyn Future<Output = Decision> + 'a>>;

/// Keyed by `smtp::Ticket` (generic only so a test can make keys).
pub(super) struct Decisions<'a, K = Ticket> {
    pending: Vec<(K, Deciding<'a>)>,
}

impl<K> Default for Decisions<'_, K> {
    fn default() -> Self {
        Decisions { pending: Vec::new() }
    }
}

impl<'a, K: Copy> Decisions<'a, K> {
    pub(super) fn push(&mut self, ticket: K, decision: impl Future<Output = Decision> + 'a) {
        self.pending.push((ticket, Box::pin(decision)));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The next decision to complete, whichever it is. Never completes while
    /// none is in flight (the caller's timeout ends that wait).
    pub(super) async fn next(&mut self) -> (K, Decision) {
        std::future::poll_fn(|cx| {
            // Polling every one is fine: a future tolerates a spurious poll,
            // and a connection has at most a few hundred in flight.
            for i in 0..self.pending.len() {
                if let Poll::Ready(decision) = self.pending[i].1.as_mut().poll(cx) {
                    let (ticket, _) = self.pending.swap_remove(i);
                    return Poll::Ready((ticket, decision));
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::Reply;
    use futures_lite::future::{block_on, yield_now};

    /// A decision that takes `polls` polls, as a call-ahead probe takes time.
    async fn after(polls: usize, decision: Decision) -> Decision {
        for _ in 0..polls {
            yield_now().await;
        }
        decision
    }

    #[test]
    fn the_first_decision_done_comes_first_whatever_the_order_asked() {
        let refuse = Decision::Refuse(Reply::new(550, "5.1.1", "User unknown"));
        let mut decisions: Decisions<'_, u32> = Decisions::default();
        decisions.push(1, after(5, Decision::Accept));
        decisions.push(2, after(0, refuse.clone()));
        decisions.push(3, after(2, Decision::Accept));
        let order: Vec<(u32, Decision)> = block_on(async {
            let mut order = Vec::new();
            while !decisions.is_empty() {
                order.push(decisions.next().await);
            }
            order
        });
        assert_eq!(order, [(2, refuse), (3, Decision::Accept), (1, Decision::Accept)]);
    }
}
