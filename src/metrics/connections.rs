//! `portcullis_connections_total{listener,group,policy,outcome}` on one
//! shard: the one family whose label values come from the operator's config,
//! so it is a table, not a fixed array of atomics.
//!
//! The table is behind a `Mutex` that only its own shard (once per
//! connection decision) and a scrape (a copy, microseconds) ever take, so it
//! is uncontended in practice. A hit looks up by borrowed `&str`s and does
//! not allocate; only the first connection of a new label set does. The
//! table holds at most `limits::METRICS_LABEL_SETS_MAX` label sets; past it,
//! new ones are counted under listener = group = policy = "other" with their
//! outcome kept (so at most that many plus one per outcome).

use crate::limits::METRICS_LABEL_SETS_MAX;
use hashbrown::{Equivalent, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The label set of one `portcullis_connections_total` series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionLabels {
    pub listener: Box<str>,
    pub group: Box<str>,
    pub policy: Box<str>,
    pub outcome: &'static str,
}

impl ConnectionLabels {
    /// Where label sets past the bound are counted.
    fn overflow(outcome: &'static str) -> Self {
        ConnectionLabels {
            listener: "other".into(),
            group: "other".into(),
            policy: "other".into(),
            outcome,
        }
    }
}

/// The same labels borrowed, to look a series up without allocating. Its
/// derived `Hash` equals `ConnectionLabels`' (`Box<str>` and `&str` both hash
/// as `str`, fields in the same order), as `Equivalent` requires.
#[derive(Hash)]
struct LabelsRef<'a> {
    listener: &'a str,
    group: &'a str,
    policy: &'a str,
    outcome: &'static str,
}

impl Equivalent<ConnectionLabels> for LabelsRef<'_> {
    fn equivalent(&self, key: &ConnectionLabels) -> bool {
        *self.listener == *key.listener
            && *self.group == *key.group
            && *self.policy == *key.policy
            && self.outcome == key.outcome
    }
}

/// One shard's connection counts, bounded.
#[derive(Debug, Default)]
pub(super) struct ConnectionCounts {
    table: Mutex<HashMap<ConnectionLabels, u64>>,
}

impl ConnectionCounts {
    pub(super) fn count(&self, listener: &str, group: &str, policy: &str, outcome: &'static str) {
        let mut table = self.lock();
        let labels = LabelsRef {
            listener,
            group,
            policy,
            outcome,
        };
        if let Some(count) = table.get_mut(&labels) {
            *count += 1;
            return;
        }
        let key = if table.len() < METRICS_LABEL_SETS_MAX {
            ConnectionLabels {
                listener: listener.into(),
                group: group.into(),
                policy: policy.into(),
                outcome,
            }
        } else {
            ConnectionLabels::overflow(outcome)
        };
        *table.entry(key).or_insert(0) += 1;
    }

    pub(super) fn copy(&self) -> HashMap<ConnectionLabels, u64> {
        self.lock().clone()
    }

    /// A panic elsewhere while the lock was held leaves plain counts behind,
    /// still valid: keep counting rather than poison every later connection.
    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectionLabels, u64>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
