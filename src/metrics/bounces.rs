//! The bounce family (issue 10 item 6): `portcullis_bounces_total` by
//! kind — the RFC 3464 reports delivery generated and stored
//! (`delivery::notify`): `failed` (a bounce) and `delayed` (a delay
//! warning). Counted on the shard that stored the report; a fixed label
//! set, a value outside it counts as `other`.

use super::board::encode_labelled;
use super::snapshot::add_all;
use super::{index_of, load_all};
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `kind` of `portcullis_bounces_total` (`bounce::Action::name`); the last is the catch-all.
pub const BOUNCE_KINDS: [&str; 3] = ["failed", "delayed", "other"];

/// One shard's bounce counts.
#[derive(Default, Debug)]
pub(super) struct BounceMetrics {
    sent: [AtomicU64; BOUNCE_KINDS.len()],
}

/// A copy of the bounce counts: one shard's, or the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BounceSnapshot {
    pub sent: [u64; BOUNCE_KINDS.len()],
}

impl BounceMetrics {
    pub(super) fn count(&self, kind: &str) {
        self.sent[index_of(&BOUNCE_KINDS, kind)].fetch_add(1, Relaxed);
    }

    pub(super) fn snapshot(&self) -> BounceSnapshot {
        BounceSnapshot { sent: load_all(&self.sent) }
    }
}

impl BounceSnapshot {
    /// Adds another shard's values (wrapping, like the atomics).
    pub fn add(&mut self, other: &BounceSnapshot) {
        add_all(&mut self.sent, &other.sent);
    }
}

/// The bounce family of the summed snapshot.
pub(super) fn encode(encoder: &mut DescriptorEncoder, sum: &BounceSnapshot) -> fmt::Result {
    encode_labelled(
        encoder,
        "portcullis_bounces",
        "Delivery status notifications generated and queued to the envelope sender: failed (a bounce), delayed (a delay warning)",
        ("kind", &BOUNCE_KINDS),
        &sum.sent,
    )
}
