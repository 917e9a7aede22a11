//! The rate counters' side of the mesh: the handlers `Counters::serve`
//! registers on every shard, the owner's take decision (settle, take, and
//! at the limit recall every outstanding lease before deciding again), and
//! the shard's two chores: sending released slots to their owners and
//! settling expired leases.
//!
//! Sits between `shards::Mesh` (letters in and out) and the pure `table`
//! (owner) and `holder` (lease book) of this shard. See `rate.rs` for the
//! accounting these steps keep exact.

use std::rc::{Rc, Weak};
use std::time::Duration;

use futures_channel::oneshot;
use glommio::channels::local_channel::LocalReceiver;

use super::requests::{
    AddEvent, OpenSlot, ReadCount, RecallLease, ReleaseSlot, SettleLeases, TakeToken,
};
use super::table::{CounterKey, RecallAnswer, SlotDecision, TakeDecision};
use super::Counters;
use crate::limits;
use crate::shards::Mesh;

impl Counters {
    /// Register this subsystem's mesh handlers and start its two chores:
    /// sending released slots to their owners, and settling expired leases.
    /// Call once per shard, before `mesh.open()`.
    pub fn serve(self: &Rc<Self>, mesh: &Mesh) {
        debug_assert_eq!(mesh.id(), self.mesh.id());
        let me = Rc::downgrade(self);
        mesh.handle(move |q: TakeToken| {
            let me = me.upgrade();
            async move {
                match me {
                    Some(c) => c.decide_take(q).await,
                    None => TakeDecision::TableFull,
                }
            }
        });
        let me = Rc::downgrade(self);
        mesh.handle(move |q: SettleLeases| {
            if let Some(c) = me.upgrade() {
                c.table
                    .borrow_mut()
                    .settle(&q.key, q.holder, &q.settles, c.now());
            }
            async {}
        });
        let me = Rc::downgrade(self);
        mesh.handle(move |q: RecallLease| {
            let answer = me.upgrade().map_or(RecallAnswer::Forfeited, |c| {
                c.leases.borrow_mut().recall(&q.key, q.id)
            });
            async move { answer }
        });
        let me = Rc::downgrade(self);
        mesh.handle(move |q: AddEvent| {
            let count = me
                .upgrade()
                .and_then(|c| c.table.borrow_mut().add(&q.key, c.now()));
            async move { count }
        });
        let me = Rc::downgrade(self);
        mesh.handle(move |q: ReadCount| {
            let count = me
                .upgrade()
                .map_or(0, |c| c.table.borrow_mut().count(&q.key, c.now()));
            async move { count }
        });
        let me = Rc::downgrade(self);
        mesh.handle(move |q: OpenSlot| {
            let decision = me.upgrade().map_or(SlotDecision::TableFull, |c| {
                c.table.borrow_mut().open(&q.key, q.max, q.slot, c.now())
            });
            async move { decision }
        });
        let me = Rc::downgrade(self);
        mesh.handle(move |q: ReleaseSlot| {
            if let Some(c) = me.upgrade() {
                c.table.borrow_mut().release(&q.key, q.slot);
            }
            async {}
        });
        if let Some(pending) = self.pending_releases.borrow_mut().take() {
            glommio::spawn_local(send_releases(self.mesh.clone(), pending)).detach();
        }
        glommio::spawn_local(sweep_leases(Rc::downgrade(self))).detach();
    }

    /// Wind-down, before the shards' stop barrier: wait until every
    /// released slot is in its owner's channel, and stop the lease sweep,
    /// so that nothing is sent to a peer after the barrier (`Mesh::drain`).
    /// Takes and opens still work (asks, not chores).
    pub async fn stop(&self) {
        self.stopped.set(true);
        self.flush_releases().await;
    }

    /// The owner decides one take: settle the holder's leases, take; at the
    /// limit, recall every outstanding lease of the key and decide again.
    ///
    /// Recalls on this shard run one at a time (`recall_turn`): two
    /// recalls of the same lease could otherwise be answered "returned"
    /// then "forfeited" (it is gone by the second) and the owner, applying
    /// the second first, would credit tokens that were spent. One at a
    /// time, each answer is applied before the next recall is chosen.
    pub(super) async fn decide_take(&self, q: TakeToken) -> TakeDecision {
        let mut table = self.table.borrow_mut();
        table.settle(&q.key, q.holder, &q.settles, self.now());
        let first = table.take(&q.key, q.limit, q.want, q.holder, self.now());
        let recall_needed = match first {
            TakeDecision::AtLimit { .. } => !table.recall_targets(&q.key, self.now()).is_empty(),
            _ => return first,
        };
        drop(table);
        if !recall_needed {
            return first;
        }
        let Ok(_turn) = self.recall_turn.acquire_permit(1).await else {
            return first;
        };
        // Chosen again now: a recall before ours may have settled some.
        let targets = self.table.borrow_mut().recall_targets(&q.key, self.now());
        for (holder, id) in targets {
            let answer = self.recall(holder, &q.key, id).await;
            self.table
                .borrow_mut()
                .recalled(&q.key, holder, id, answer, self.now());
        }
        self.table
            .borrow_mut()
            .take(&q.key, q.limit, q.want, q.holder, self.now())
    }

    /// Ask `holder` for the unused tokens of lease `id`. One holder after
    /// the other: there are at most `shards − 1` and a recall is rare.
    async fn recall(&self, holder: usize, key: &CounterKey, id: u64) -> RecallAnswer {
        if holder == self.mesh.id() {
            return self.leases.borrow_mut().recall(key, id);
        }
        match self
            .mesh
            .ask(
                holder,
                RecallLease {
                    key: key.clone(),
                    id,
                },
            )
            .await
        {
            Ok(answer) => answer,
            Err(_) => RecallAnswer::Unanswered,
        }
    }

    /// Settle this shard's expired and spent leases with their owners.
    pub(super) async fn settle_due(&self) {
        let due = self.leases.borrow_mut().due(self.now());
        for (key, settles) in due {
            let request = SettleLeases {
                key: key.clone(),
                holder: self.mesh.id(),
                settles: settles.clone(),
            };
            let reached = self
                .mesh
                .ask_owner(&key.name.clone(), request)
                .await
                .is_ok();
            self.leases.borrow_mut().settled(&key, &settles, reached);
        }
    }
}

/// What `serve`'s release sender is given, in order.
pub(super) enum Release {
    Slot(usize, ReleaseSlot),
    /// Answer once everything queued before it is sent.
    Flush(oneshot::Sender<()>),
}

/// Send released slots to their owners, one after the other, until the
/// shard's `Counters` and every `Slot` are gone.
async fn send_releases(mesh: Rc<Mesh>, pending: LocalReceiver<Release>) {
    while let Some(release) = pending.recv().await {
        match release {
            Release::Slot(owner, release) => {
                let _ = mesh.tell(owner, release).await;
            }
            Release::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Every `RATE_LEASE_SWEEP_MS`, settle expired leases (so unused tokens
/// go back without waiting for a recall), until the `Counters` is gone.
async fn sweep_leases(counters: Weak<Counters>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(limits::RATE_LEASE_SWEEP_MS)).await;
        let Some(counters) = counters.upgrade() else {
            return;
        };
        if counters.stopped.get() {
            return;
        }
        counters.settle_due().await;
    }
}
