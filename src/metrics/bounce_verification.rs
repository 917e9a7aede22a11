//! The bounce verification family (issue 10 item 4):
//! `portcullis_bounce_verification_total` by result — valid (a bounce to a
//! prvs tag we made, accepted on as the stripped address), expired and bad
//! (550 5.7.1), untagged_accepted (`accept_untagged_bounces`, or the
//! postmaster) and untagged_refused (550 5.7.1). Counted on the session's
//! shard by `policy::bounce`, once per RCPT of a bounce (null sender) while
//! keys are configured; a fixed label set of atomics like the AUTH family,
//! a value outside it counts as `other`.

use super::board::encode_labelled;
use super::snapshot::add_all;
use super::{index_of, load_all};
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `result` of `portcullis_bounce_verification_total`; the last is the catch-all.
pub const BOUNCE_VERIFICATION_RESULTS: [&str; 6] = [
    "valid",
    "expired",
    "bad",
    "untagged_accepted",
    "untagged_refused",
    "other",
];

/// One shard's bounce verification counters.
#[derive(Default, Debug)]
pub(super) struct BounceVerificationMetrics {
    verdicts: [AtomicU64; BOUNCE_VERIFICATION_RESULTS.len()],
}

/// A copy of the values: one shard's, or the sum; indices follow
/// `BOUNCE_VERIFICATION_RESULTS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BounceVerificationSnapshot {
    pub verdicts: [u64; BOUNCE_VERIFICATION_RESULTS.len()],
}

impl BounceVerificationMetrics {
    pub(super) fn verdict(&self, result: &str) {
        self.verdicts[index_of(&BOUNCE_VERIFICATION_RESULTS, result)].fetch_add(1, Relaxed);
    }

    pub(super) fn snapshot(&self) -> BounceVerificationSnapshot {
        BounceVerificationSnapshot {
            verdicts: load_all(&self.verdicts),
        }
    }
}

impl BounceVerificationSnapshot {
    /// Adds another shard's values (wrapping, like the atomics).
    pub fn add(&mut self, other: &BounceVerificationSnapshot) {
        add_all(&mut self.verdicts, &other.verdicts);
    }
}

/// The bounce verification family of the summed snapshot.
pub(super) fn encode(
    encoder: &mut DescriptorEncoder,
    sum: &BounceVerificationSnapshot,
) -> fmt::Result {
    encode_labelled(
        encoder,
        "portcullis_bounce_verification",
        "Bounces (null sender) judged by their recipient's BATV prvs tag: valid, expired and bad (550 5.7.1), untagged_accepted, untagged_refused (550 5.7.1)",
        ("result", &BOUNCE_VERIFICATION_RESULTS),
        &sum.verdicts,
    )
}

#[cfg(test)]
mod tests {
    use crate::metrics::{Metrics, MetricsBoard};
    use std::sync::Arc;

    #[test]
    fn verdicts_are_summed_over_shards_by_result() {
        let shards = [Arc::new(Metrics::default()), Arc::new(Metrics::default())];
        shards[0].bounce_verification("valid");
        shards[1].bounce_verification("valid");
        shards[1].bounce_verification("bad");
        shards[0].bounce_verification("untagged_refused");
        shards[1].bounce_verification("misspelt");
        let page = MetricsBoard::new(shards.to_vec()).render();
        for line in [
            "portcullis_bounce_verification_total{result=\"valid\"} 2",
            "portcullis_bounce_verification_total{result=\"expired\"} 0",
            "portcullis_bounce_verification_total{result=\"bad\"} 1",
            "portcullis_bounce_verification_total{result=\"untagged_accepted\"} 0",
            "portcullis_bounce_verification_total{result=\"untagged_refused\"} 1",
            "portcullis_bounce_verification_total{result=\"other\"} 1",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "{line} missing in:\n{page}"
            );
        }
    }
}
