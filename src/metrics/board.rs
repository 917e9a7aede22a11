//! The admin's view of every shard's metrics: sums them on read and encodes
//! the sum in the Prometheus text exposition format (version 0.0.4) with
//! `prometheus-client`, so HELP/TYPE lines, `_total` suffixes, label
//! escaping and histogram buckets follow the format without hand-written
//! text. Runs on the admin thread, never on a shard.

use super::connections::ConnectionLabels;
use super::{
    Metrics, Snapshot, DNS_LATENCY_BUCKETS_SECONDS, DNS_RECORD_TYPES, DNS_RESULTS, RATE_LIMIT_KINDS,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap as StdHashMap;
use std::fmt;
use std::sync::Arc;

/// The `Content-Type` of what `render` returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every shard's `Metrics`, built once at start (one per shard, in shard
/// order) and handed to the admin listener.
#[derive(Debug)]
pub struct MetricsBoard {
    shards: Vec<Arc<Metrics>>,
}

impl MetricsBoard {
    pub fn new(shards: Vec<Arc<Metrics>>) -> Self {
        MetricsBoard { shards }
    }

    /// One fresh `Metrics` per shard, and the board that reads them all.
    pub fn for_shards(count: usize) -> (Vec<Arc<Metrics>>, Self) {
        let shards: Vec<_> = (0..count).map(|_| Arc::new(Metrics::default())).collect();
        (shards.clone(), MetricsBoard { shards })
    }

    pub fn shards(&self) -> &[Arc<Metrics>] {
        &self.shards
    }

    /// Every shard's values added up (what /metrics shows).
    pub fn summed(&self) -> Snapshot {
        let mut sum = Snapshot::default();
        for shard in &self.shards {
            sum.add(&shard.snapshot());
        }
        sum
    }

    /// The Prometheus text page of the summed values.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Summed(self.summed())));
        let mut page = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut page, &registry)
            .expect("encoding into a String cannot fail");
        page
    }
}

/// The summed snapshot as a collector: the registry asks it for its
/// families at encode time.
#[derive(Debug)]
struct Summed(Snapshot);

impl Collector for Summed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sum = &self.0;
        encode_connections(&mut encoder, &sum.connections)?;
        encode_labelled(
            &mut encoder,
            "portcullis_rate_limit_refusals",
            "RCPTs and connections refused by a rate limit, by limit",
            ("kind", &RATE_LIMIT_KINDS),
            &sum.rate_limit_refusals,
        )?;
        encode_counter(
            &mut encoder,
            "portcullis_dhap_refusals",
            "RCPTs refused by directory harvest attack prevention (DHAP)",
            sum.dhap_refusals,
        )?;
        encode_dns_queries(&mut encoder, &sum.dns_queries)?;
        encode_dns_latency(&mut encoder, sum)?;
        encode_labelled(
            &mut encoder,
            "portcullis_dns_cache_hits",
            "DNS questions answered from a shard's cache, by record type",
            ("type", &DNS_RECORD_TYPES),
            &sum.dns_cache_hits,
        )?;
        encode_counter(
            &mut encoder,
            "portcullis_messages_accepted",
            "Messages stored durably and answered 250",
            sum.messages_accepted,
        )?;
        encode_counter(
            &mut encoder,
            "portcullis_messages_delivered",
            "Messages handed to a downstream server",
            sum.messages_delivered,
        )?;
        encode_counter(
            &mut encoder,
            "portcullis_coalesced_sleep_microseconds",
            "Time shards gave their CPU away (yielding or sleeping) in place of parking while it was contended (coalesce_us)",
            sum.coalesced_sleep_micros,
        )?;
        let open = encoder.encode_descriptor(
            "portcullis_open_connections",
            "Client connections open now",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(sum.open_connections).encode(open)?;
        super::callahead::encode(&mut encoder, &sum.callahead)?;
        super::ldap::encode(&mut encoder, &sum.ldap)?;
        super::handshakes::encode(&mut encoder, &sum.handshakes)?;
        super::tls::encode(&mut encoder, &sum.outbound_tls)?;
        super::auth::encode(&mut encoder, &sum.auth)?;
        super::bounces::encode(&mut encoder, &sum.bounces)?;
        super::destinations::encode(&mut encoder, &sum.destinations)?;
        super::dane::encode(&mut encoder, &sum.dane)?;
        super::bounce_verification::encode(&mut encoder, &sum.bounce_verification)
    }
}

/// The connection series sorted, so the page is stable between scrapes.
fn encode_connections(
    encoder: &mut DescriptorEncoder,
    connections: &hashbrown::HashMap<ConnectionLabels, u64>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "portcullis_connections",
        "Connections decided, by listener, sender group, mail flow policy and outcome",
        None,
        MetricType::Counter,
    )?;
    let mut series: Vec<_> = connections.iter().collect();
    series.sort_unstable();
    for (labels, count) in series {
        let label_set = [
            ("listener", &*labels.listener),
            ("group", &*labels.group),
            ("policy", &*labels.policy),
            ("outcome", labels.outcome),
        ];
        ConstCounter::new(*count).encode(family.encode_family(&label_set)?)?;
    }
    Ok(())
}

fn encode_dns_queries(
    encoder: &mut DescriptorEncoder,
    queries: &[[u64; DNS_RESULTS.len()]; DNS_RECORD_TYPES.len()],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "portcullis_dns_queries",
        "DNS queries sent to the network, by record type and result",
        None,
        MetricType::Counter,
    )?;
    for (rtype, by_result) in DNS_RECORD_TYPES.iter().zip(queries) {
        for (result, count) in DNS_RESULTS.iter().zip(by_result) {
            if shown(rtype, *count) && shown(result, *count) {
                let label_set = [("type", *rtype), ("result", *result)];
                ConstCounter::new(*count).encode(family.encode_family(&label_set)?)?;
            }
        }
    }
    Ok(())
}

fn encode_dns_latency(encoder: &mut DescriptorEncoder, sum: &Snapshot) -> fmt::Result {
    encode_latency_histogram(
        encoder,
        "portcullis_dns_query_seconds",
        "Time from sending a DNS query to its answer or its failure",
        &DNS_LATENCY_BUCKETS_SECONDS,
        &sum.dns_latency_slots,
        sum.dns_latency_nanos_sum,
    )
}

/// A latency histogram from per-slot counts (`slots`: one per bound of
/// `bounds`, then +Inf; not cumulative: the encoder accumulates them).
pub(super) fn encode_latency_histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    bounds: &[f64],
    slots: &[u64],
    nanos_sum: u64,
) -> fmt::Result {
    debug_assert_eq!(slots.len(), bounds.len() + 1);
    let mut histogram = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let buckets: Vec<(f64, u64)> = bounds
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(slots.iter().copied())
        .collect();
    let seconds = nanos_sum as f64 / 1e9;
    histogram.encode_histogram(seconds, slots.iter().sum(), &buckets, None::<NoExemplars>)
}

pub(super) type NoExemplars = &'static StdHashMap<usize, Exemplar<Vec<(String, String)>, f64>>;

/// A counter family over a fixed label set; the catch-all value (last) is
/// shown only once something was counted under it.
pub(super) fn encode_labelled(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    (label, values): (&str, &[&str]),
    counts: &[u64],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values.iter().zip(counts) {
        if shown(value, *count) {
            let label_set = [(label, *value)];
            ConstCounter::new(*count).encode(family.encode_family(&label_set)?)?;
        }
    }
    Ok(())
}

pub(super) fn encode_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    count: u64,
) -> fmt::Result {
    let counter = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(count).encode(counter)
}

/// Known label values are always shown (a zero series is better than a
/// missing one for rate() and alerts); `other` only when it counted something.
pub(super) fn shown(value: &str, count: u64) -> bool {
    value != "other" || count > 0
}
