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

#[derive(Default)]
pub(super) struct Decisions<'a> {
    pending: Vec<(Ticket, Deciding<'a>)>,
}

impl<'a> Decisions<'a> {
    pub(super) fn push(&mut self, ticket: Ticket, decision: impl Future<Output = Decision> + 'a) {
        self.pending.push((ticket, Box::pin(decision)));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The next decision to complete, whichever it is. Never completes while
    /// none is in flight (the caller's timeout ends that wait).
    pub(super) async fn next(&mut self) -> (Ticket, Decision) {
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
