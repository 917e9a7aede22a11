//! The outbound TLS family (issue 9 item 6):
//! `portcullis_outbound_tls_total{side,destination,result}` — connections
//! delivery and call-ahead opened under a TLS level other than none, by
//! how they ended up: `tls` (encrypted), `clear` (preferred, and the
//! server offered no STARTTLS or refused it or the handshake failed), or
//! `failed` (required TLS not to be had: the mail deferred, the probe
//! failed, an alert logged).
//!
//! Counted on the shard that opened the connection (`pool`,
//! `callahead::pool`). `destination` comes from the operator's file, never
//! from the mail: for delivery the `[destination."DOMAIN"]` table that
//! applied, or "default"; for call-ahead the profile's name. So the table
//! is bounded by the config, and by `limits::METRICS_LABEL_SETS_MAX` on top
//! (past it, new label sets count under destination = "other").

use crate::limits::METRICS_LABEL_SETS_MAX;
use hashbrown::HashMap;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// `side`: which client opened the connection; the last is the catch-all.
pub const OUTBOUND_TLS_SIDES: [&str; 3] = ["delivery", "callahead", "other"];
/// `result`: see the module header; the last is the catch-all.
pub const OUTBOUND_TLS_RESULTS: [&str; 4] = ["tls", "clear", "failed", "other"];

/// The labels of one series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboundTlsLabels {
    pub side: &'static str,
    pub destination: Box<str>,
    pub result: &'static str,
}

/// One shard's counts, bounded.
#[derive(Debug, Default)]
pub(super) struct OutboundTlsCounts {
    table: Mutex<HashMap<OutboundTlsLabels, u64>>,
}

impl OutboundTlsCounts {
    pub(super) fn count(&self, side: &str, destination: &str, result: &str) {
        let side = OUTBOUND_TLS_SIDES[super::index_of(&OUTBOUND_TLS_SIDES, side)];
        let result = OUTBOUND_TLS_RESULTS[super::index_of(&OUTBOUND_TLS_RESULTS, result)];
        let mut table = self.lock();
        let mut labels = OutboundTlsLabels {
            side,
            destination: destination.into(),
            result,
        };
        if table.len() >= METRICS_LABEL_SETS_MAX && !table.contains_key(&labels) {
            labels.destination = "other".into();
        }
        *table.entry(labels).or_insert(0) += 1;
    }

    pub(super) fn copy(&self) -> HashMap<OutboundTlsLabels, u64> {
        self.lock().clone()
    }

    /// A panic elsewhere while the lock was held leaves valid counts behind.
    fn lock(&self) -> MutexGuard<'_, HashMap<OutboundTlsLabels, u64>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Adds one shard's counts to the sum.
pub(super) fn add(
    sum: &mut HashMap<OutboundTlsLabels, u64>,
    other: &HashMap<OutboundTlsLabels, u64>,
) {
    for (labels, count) in other {
        let slot = sum.entry(labels.clone()).or_insert(0);
        *slot = slot.wrapping_add(*count);
    }
}

/// The family, series sorted so the page is stable between scrapes.
pub(super) fn encode(
    encoder: &mut DescriptorEncoder,
    counts: &HashMap<OutboundTlsLabels, u64>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "portcullis_outbound_tls",
        "Outbound connections (delivery, call-ahead) that wanted TLS, by destination and result: tls, clear (preferred fell back), failed (required TLS not to be had)",
        None,
        MetricType::Counter,
    )?;
    let mut series: Vec<_> = counts.iter().collect();
    series.sort_unstable();
    for (labels, count) in series {
        let label_set = [
            ("side", labels.side),
            ("destination", &*labels.destination),
            ("result", labels.result),
        ];
        ConstCounter::new(*count).encode(family.encode_family(&label_set)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_labels_and_bounds_unknown_values() {
        let counts = OutboundTlsCounts::default();
        counts.count("delivery", "partner.test", "tls");
        counts.count("delivery", "partner.test", "tls");
        counts.count("callahead", "internal", "failed");
        counts.count("sideways", "default", "maybe");
        let copy = counts.copy();
        let get = |side, dest: &str, result| {
            copy.get(&OutboundTlsLabels {
                side,
                destination: dest.into(),
                result,
            })
            .copied()
        };
        assert_eq!(get("delivery", "partner.test", "tls"), Some(2));
        assert_eq!(get("callahead", "internal", "failed"), Some(1));
        assert_eq!(
            get("other", "default", "other"),
            Some(1),
            "unknown side and result land in other"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let counts = OutboundTlsCounts::default();
        for i in 0..METRICS_LABEL_SETS_MAX + 10 {
            counts.count("delivery", &format!("d{i}.test"), "tls");
        }
        let copy = counts.copy();
        assert!(copy.len() <= METRICS_LABEL_SETS_MAX + 1);
        let other = OutboundTlsLabels {
            side: "delivery",
            destination: "other".into(),
            result: "tls",
        };
        assert_eq!(copy.get(&other), Some(&10));
    }
}
