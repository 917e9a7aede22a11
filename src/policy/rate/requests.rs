//! The rate counters' requests between shards (one mesh, see `shards.rs`):
//! a holder asks the owner of a key; the owner recalls leases from holders.

use std::time::Duration;

use super::table::{CounterKey, RecallAnswer, Settle, SlotDecision, SlotId, TakeDecision};
use crate::limits;
use crate::shards::ShardRequest;

/// Holder → owner: take one token of `key` (and lease up to `want - 1`
/// more), after settling the holder's earlier leases of it.
pub struct TakeToken {
    pub key: CounterKey,
    pub limit: u32,
    pub want: u32,
    pub holder: usize,
    pub settles: Vec<Settle>,
}

impl ShardRequest for TakeToken {
    type Reply = TakeDecision;
}

/// Holder → owner: accounts of leases spent or expired (the sweep).
pub struct SettleLeases {
    pub key: CounterKey,
    pub holder: usize,
    pub settles: Vec<Settle>,
}

impl ShardRequest for SettleLeases {
    type Reply = ();
}

/// Owner → holder: give back lease `id` of `key` before I refuse.
pub struct RecallLease {
    pub key: CounterKey,
    pub id: u64,
}

impl ShardRequest for RecallLease {
    type Reply = RecallAnswer;
    /// Short: a take waits for it. A holder that does not answer in time
    /// is taken to be stopping (see `RecallAnswer::Unanswered`).
    fn timeout() -> Duration {
        Duration::from_millis(limits::RATE_RECALL_TIMEOUT_MS)
    }
}

/// Count one event of `key` without a limit; the count after it (None: table full).
pub struct AddEvent {
    pub key: CounterKey,
}

impl ShardRequest for AddEvent {
    type Reply = Option<u32>;
}

/// The count of `key` now.
pub struct ReadCount {
    pub key: CounterKey,
}

impl ShardRequest for ReadCount {
    type Reply = u32;
}

/// Open concurrent slot `slot` of `key` if fewer than `max` are open.
pub struct OpenSlot {
    pub key: CounterKey,
    pub max: u32,
    pub slot: SlotId,
}

impl ShardRequest for OpenSlot {
    type Reply = SlotDecision;
}

/// Close slot `slot` of `key` (sent with `tell` when a `Slot` drops).
pub struct ReleaseSlot {
    pub key: CounterKey,
    pub slot: SlotId,
}

impl ShardRequest for ReleaseSlot {
    type Reply = ();
    /// Long: a lost release would leave the count stale; only a stopping
    /// owner makes it wait this long, and no connection waits for it.
    fn timeout() -> Duration {
        Duration::from_millis(limits::RATE_RELEASE_TIMEOUT_MS)
    }
}
