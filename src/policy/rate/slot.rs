//! One open concurrent slot of a key (a connection counted against
//! "connections per IP"), released when dropped however the connection
//! ends: closed, timed out, killed, or its task dropped at shutdown.
//!
//! Created by `Counters::open`; the connection keeps it for its life. The
//! release is a tell to the owner shard, queued for the shard's release
//! sender (`Counters::serve`) because a drop cannot await; nothing waits
//! for it, so a stopping owner never holds a connection up.

use std::rc::Rc;

use super::table::{CounterKey, SlotId};
use super::{Counters, Unchecked};

pub struct Slot {
    /// None: nothing to release (unchecked).
    opened: Option<Opened>,
    count: u32,
    unchecked: Option<Unchecked>,
}

struct Opened {
    counters: Rc<Counters>,
    key: CounterKey,
    id: SlotId,
    owner: usize,
}

impl Slot {
    pub(super) fn opened(
        counters: Rc<Counters>,
        key: CounterKey,
        id: SlotId,
        owner: usize,
        count: u32,
    ) -> Slot {
        Slot {
            opened: Some(Opened {
                counters,
                key,
                id,
                owner,
            }),
            count,
            unchecked: None,
        }
    }

    pub(super) fn not_counted(why: Unchecked) -> Slot {
        Slot {
            opened: None,
            count: 0,
            unchecked: Some(why),
        }
    }

    /// Slots of the key open appliance-wide, this one included (for the
    /// log line; 0 when unchecked).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Why the limit was not checked, if it was not (fail open: log it).
    pub fn unchecked(&self) -> Option<Unchecked> {
        self.unchecked
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(Opened {
            counters,
            key,
            id,
            owner,
        }) = self.opened.take()
        {
            counters.release(owner, key, id);
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("count", &self.count)
            .field("unchecked", &self.unchecked)
            .finish()
    }
}
