//! The per-destination delivery families (issue 10 item 6):
//! `portcullis_destination_deliveries_total{destination,result}` — one per
//! recipient attempt's end: `delivered` (250), `deferred` (4xx, or the
//! connection failed; retried), `failed` (5xx, unroutable, or the bounce
//! profile gave up) — and `portcullis_destination_queued{destination}`, the
//! delivery jobs (a message's recipients of one domain) queued or in
//! progress now — and `portcullis_destination_connections{destination}`,
//! the delivery connections open now (`pool`).
//!
//! `destination` is the `[destination."DOMAIN"]` table that applied, or
//! "default": from the operator's file, never from the mail, so the label
//! set is bounded by the config and by `METRICS_LABEL_SETS_MAX` on top
//! (past it, new destinations count under "other"). Counted on the shard
//! that delivers (`delivery`).

use crate::limits::METRICS_LABEL_SETS_MAX;
use hashbrown::HashMap;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// `result` of the deliveries family; the last is the catch-all.
pub const DESTINATION_RESULTS: [&str; 4] = ["delivered", "deferred", "failed", "other"];

/// One shard's per-destination values, bounded.
#[derive(Debug, Default)]
pub(super) struct DestinationCounts {
    deliveries: Mutex<HashMap<(Box<str>, &'static str), u64>>,
    queued: Mutex<HashMap<Box<str>, i64>>,
    connections: Mutex<HashMap<Box<str>, i64>>,
}

/// A copy of the values: one shard's, or the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationSnapshot {
    pub deliveries: HashMap<(Box<str>, &'static str), u64>,
    pub queued: HashMap<Box<str>, i64>,
    pub connections: HashMap<Box<str>, i64>,
}

/// `destination`, or "other" when the table is full of other labels.
fn bounded<V>(table: &HashMap<Box<str>, V>, destination: &str) -> Box<str> {
    match table.len() < METRICS_LABEL_SETS_MAX || table.contains_key(destination) {
        true => destination.into(),
        false => "other".into(),
    }
}

fn gauge(table: &Mutex<HashMap<Box<str>, i64>>, destination: &str, change: i64) {
    let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
    let label = bounded(&table, destination);
    *table.entry(label).or_insert(0) += change;
}

impl DestinationCounts {
    pub(super) fn delivery(&self, destination: &str, result: &str, recipients: u64) {
        let result = DESTINATION_RESULTS[super::index_of(&DESTINATION_RESULTS, result)];
        let mut table = self.deliveries.lock().unwrap_or_else(PoisonError::into_inner);
        let full = table.len() >= METRICS_LABEL_SETS_MAX && !table.contains_key(&(destination.into(), result));
        let label: Box<str> = if full { "other".into() } else { destination.into() };
        *table.entry((label, result)).or_insert(0) += recipients;
    }

    pub(super) fn queued(&self, destination: &str, change: i64) {
        gauge(&self.queued, destination, change);
    }

    pub(super) fn connections(&self, destination: &str, change: i64) {
        gauge(&self.connections, destination, change);
    }

    pub(super) fn snapshot(&self) -> DestinationSnapshot {
        DestinationSnapshot {
            deliveries: self.deliveries.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            queued: self.queued.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            connections: self.connections.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }
}

impl DestinationSnapshot {
    /// Adds another shard's values.
    pub fn add(&mut self, other: &DestinationSnapshot) {
        for (labels, n) in &other.deliveries {
            let slot = self.deliveries.entry(labels.clone()).or_insert(0);
            *slot = slot.wrapping_add(*n);
        }
        for (mine, theirs) in [(&mut self.queued, &other.queued), (&mut self.connections, &other.connections)] {
            for (label, n) in theirs {
                *mine.entry(label.clone()).or_insert(0) += n;
            }
        }
    }
}

/// Both families, series sorted so the page is stable between scrapes.
pub(super) fn encode(encoder: &mut DescriptorEncoder, sum: &DestinationSnapshot) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "portcullis_destination_deliveries",
        "Recipients whose delivery attempt ended, by destination (the [destination] table that applied) and result: delivered, deferred (retried), failed (bounced)",
        None,
        MetricType::Counter,
    )?;
    let mut series: Vec<_> = sum.deliveries.iter().collect();
    series.sort_unstable();
    for ((destination, result), n) in series {
        ConstCounter::new(*n).encode(family.encode_family(&[("destination", &**destination), ("result", *result)])?)?;
    }
    encode_gauge(encoder, "portcullis_destination_queued", "Delivery jobs (one message's recipients of one domain) queued or in progress, by destination", &sum.queued)?;
    encode_gauge(encoder, "portcullis_destination_connections", "Delivery connections open now, by destination", &sum.connections)
}

fn encode_gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, values: &HashMap<Box<str>, i64>) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    let mut series: Vec<_> = values.iter().collect();
    series.sort_unstable();
    for (destination, n) in series {
        ConstGauge::new(*n).encode(family.encode_family(&[("destination", &**destination)])?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::metrics::{Metrics, MetricsBoard};
    use std::sync::Arc;

    #[test]
    fn deliveries_and_queued_jobs_are_summed_over_shards_by_destination() {
        let shards = [Arc::new(Metrics::default()), Arc::new(Metrics::default())];
        shards[0].destination_delivery("partner.test", "delivered", 2);
        shards[1].destination_delivery("partner.test", "delivered", 1);
        shards[1].destination_delivery("default", "failed", 1);
        shards[0].destination_queued("default", 1);
        shards[1].destination_queued("default", 1);
        shards[1].destination_queued("default", -1);
        shards[0].destination_connections("partner.test", 1);
        let page = MetricsBoard::new(shards.to_vec()).render();
        for line in [
            "portcullis_destination_deliveries_total{destination=\"partner.test\",result=\"delivered\"} 3",
            "portcullis_destination_deliveries_total{destination=\"default\",result=\"failed\"} 1",
            "portcullis_destination_queued{destination=\"default\"} 1",
            "portcullis_destination_connections{destination=\"partner.test\"} 1",
        ] {
            assert!(page.contains(line), "{line}\n{page}");
        }
    }
}
