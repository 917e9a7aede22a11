//! The undelivered message bytes on disk, all shards together: one counter
//! shared by every shard's spool, so `spool_bytes_max` is exact across
//! shards (an atomic reserve, never a per-shard share of the bound).
//!
//! A message's bytes are reserved before it enters a batch and released when
//! its write fails or its last recipient is finished.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct SpoolBytes(Arc<AtomicU64>);

impl SpoolBytes {
    /// Start at what recovery found still owed on every shard. Counted once,
    /// before any shard accepts mail, so no shard can fill the room that
    /// another shard's recovered mail already takes.
    pub fn new(recovered_bytes: u64) -> SpoolBytes {
        SpoolBytes(Arc::new(AtomicU64::new(recovered_bytes)))
    }

    /// Take room for `bytes` unless that would pass `max` (0 = no bound but
    /// the disk). False means: answer 452 4.3.1.
    pub fn try_reserve(&self, bytes: u64, max: u64) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.checked_add(bytes)?;
                (max == 0 || after <= max).then_some(after)
            })
            .is_ok()
    }

    /// Give back room taken by `try_reserve` (or counted by `new`). Never
    /// below zero: a wrapped counter would refuse all mail from then on.
    pub fn release(&self, bytes: u64) {
        let before = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(bytes)));
        debug_assert!(before.is_ok_and(|used| used >= bytes), "released {bytes} bytes, more than reserved");
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}
