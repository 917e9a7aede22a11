//! The DANE family (issue 9 item 6): `portcullis_dane_total{result}`, one
//! count per delivery host DANE was decided for.
//!
//! Counted on the delivery shard that connects: `deferred` or
//! `not-applied` when `dane::policy` says so (`DaneDecision::metric_label`;
//! an encrypt-only host counts as not-applied), else after the handshake
//! `authenticated` (the server matched a TLSA record) or `failed` (it did
//! not, or the handshake broke). Fixed labels as an array of atomics, like
//! the LDAP family; a value outside them counts as `other`.

use super::board::encode_labelled;
use super::snapshot::add_all;
use super::{index_of, load_all};
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `result` of `portcullis_dane_total`; the last is the catch-all.
pub const DANE_RESULTS: [&str; 5] = [
    "authenticated",
    "not-applied",
    "failed",
    "deferred",
    "other",
];

/// One shard's DANE counters.
#[derive(Default, Debug)]
pub struct DaneMetrics {
    results: [AtomicU64; DANE_RESULTS.len()],
}

/// A copy of the DANE counters: one shard's, or the sum; indices follow
/// `DANE_RESULTS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaneSnapshot {
    pub results: [u64; DANE_RESULTS.len()],
}

impl DaneMetrics {
    /// One DANE verdict: authenticated | not-applied | failed | deferred.
    pub fn count(&self, result: &str) {
        self.results[index_of(&DANE_RESULTS, result)].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> DaneSnapshot {
        DaneSnapshot {
            results: load_all(&self.results),
        }
    }
}

impl DaneSnapshot {
    /// Adds another shard's values (wrapping, like the atomics).
    pub fn add(&mut self, other: &DaneSnapshot) {
        add_all(&mut self.results, &other.results);
    }
}

/// The DANE family of the summed snapshot.
pub fn encode(encoder: &mut DescriptorEncoder, sum: &DaneSnapshot) -> fmt::Result {
    encode_labelled(
        encoder,
        "portcullis_dane",
        "DANE verdicts per delivery host: authenticated (a TLSA record matched), not-applied, failed (no match or handshake error), deferred (bogus, failed or missing TLSA where required)",
        ("result", &DANE_RESULTS),
        &sum.results,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::check_exposition_format;
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Page(DaneSnapshot);

    impl Collector for Page {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            encode(&mut encoder, &self.0)
        }
    }

    fn render(sum: DaneSnapshot) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Page(sum)));
        let mut page = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut page, &registry).unwrap();
        page
    }

    #[test]
    fn verdicts_land_under_their_labels_and_shards_add_up() {
        let (first, second) = (DaneMetrics::default(), DaneMetrics::default());
        first.count("authenticated");
        first.count("authenticated");
        first.count("deferred");
        second.count("failed");
        second.count("not-applied");
        second.count("misspelt");
        let mut sum = first.snapshot();
        sum.add(&second.snapshot());
        assert_eq!(
            sum.results,
            [2, 1, 1, 1, 1],
            "authenticated, not-applied, failed, deferred, other"
        );
        let page = render(sum);
        check_exposition_format(&page);
        for line in [
            "portcullis_dane_total{result=\"authenticated\"} 2",
            "portcullis_dane_total{result=\"not-applied\"} 1",
            "portcullis_dane_total{result=\"failed\"} 1",
            "portcullis_dane_total{result=\"deferred\"} 1",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "{line} missing from\n{page}"
            );
        }
    }
}
