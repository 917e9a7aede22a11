//! The call-ahead families (issue 7 item 9): RCPT verdicts by source and
//! result, probe latency, probes sent, probe connections opened, cache
//! lookups by hit or miss, and three gauges the shard sets (cache entries,
//! open probe connections, open breakers).
//!
//! Counters are bumped where the event happens: verdicts in
//! `callahead::validate::log` (one per RCPT decision, on the session's
//! shard), lookups in `Callahead::validate` (the domain's owner shard),
//! probes, connections and latency in `ProbePool` (the server's owner
//! shard). The gauges are this shard's own values (its cache partitions,
//! the servers it owns), set by a one-second task, so their sum over the
//! shards is the appliance's. Fixed label sets as arrays of atomics, like
//! the other families; a value outside them counts as `other`.

use super::board::{encode_counter, encode_latency_histogram, shown};
use super::snapshot::add_all;
use super::{index_of, latency_slot, load_all};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// `source` of `portcullis_callahead_verdicts_total`: "rat" (a RAT reject on
/// a listener with call-ahead: never probed), then the
/// `callahead::owner::Source` names; the last is the catch-all.
pub const CALLAHEAD_SOURCES: [&str; 8] = [
    "rat",
    "cache",
    "probe",
    "bypass",
    "breaker",
    "budget",
    "catch-all",
    "other",
];
/// `result` of `portcullis_callahead_verdicts_total`
/// (`callahead::validate::verdict_name`); the last is the catch-all.
pub const CALLAHEAD_RESULTS: [&str; 6] = [
    "accepted",
    "mailbox-unknown",
    "refused",
    "tempfail",
    "failure",
    "other",
];
/// `result` of `portcullis_callahead_cache_lookups_total`.
pub const CACHE_LOOKUP_RESULTS: [&str; 2] = ["hit", "miss"];
/// Upper bounds of `portcullis_callahead_probe_seconds`: from a pipelined
/// RCPT on an open loopback connection (~0.5 ms) to a slow downstream near
/// the default `validation_timeout_secs` (30); slower lands in +Inf.
pub const PROBE_LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

const PROBE_LATENCY_SLOTS: usize = PROBE_LATENCY_BUCKETS_SECONDS.len() + 1;

/// One shard's call-ahead metrics.
#[derive(Default, Debug)]
pub(super) struct CallaheadMetrics {
    verdicts: [[AtomicU64; CALLAHEAD_RESULTS.len()]; CALLAHEAD_SOURCES.len()],
    /// Not cumulative: slot i counts probes in (bound i-1, bound i].
    probe_latency_slots: [AtomicU64; PROBE_LATENCY_SLOTS],
    probe_latency_nanos_sum: AtomicU64,
    probes: AtomicU64,
    connections_opened: AtomicU64,
    cache_lookups: [AtomicU64; CACHE_LOOKUP_RESULTS.len()],
    cache_entries: AtomicI64,
    probe_connections: AtomicI64,
    breakers_open: AtomicI64,
    /// The servers this shard owns: (server, open connections, breaker
    /// open), replaced whole with the gauges; at most
    /// `METRICS_LABEL_SETS_MAX` (a server is owned by one shard, so the
    /// shards' lists never overlap).
    servers: std::sync::Mutex<Vec<ServerGauge>>,
}

/// One call-ahead server's gauges.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerGauge {
    pub server: String,
    pub connections: i64,
    pub breaker_open: bool,
}

/// A copy of call-ahead values: one shard's, or the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallaheadSnapshot {
    pub verdicts: [[u64; CALLAHEAD_RESULTS.len()]; CALLAHEAD_SOURCES.len()],
    pub probe_latency_slots: [u64; PROBE_LATENCY_SLOTS],
    pub probe_latency_nanos_sum: u64,
    pub probes: u64,
    pub connections_opened: u64,
    pub cache_lookups: [u64; CACHE_LOOKUP_RESULTS.len()],
    pub cache_entries: i64,
    pub probe_connections: i64,
    pub breakers_open: i64,
    pub servers: Vec<ServerGauge>,
}

impl CallaheadMetrics {
    pub(super) fn verdict(&self, source: &str, result: &str) {
        let source = index_of(&CALLAHEAD_SOURCES, source);
        self.verdicts[source][index_of(&CALLAHEAD_RESULTS, result)].fetch_add(1, Relaxed);
    }

    pub(super) fn probe_latency(&self, latency: Duration) {
        self.probe_latency_slots[latency_slot(&PROBE_LATENCY_BUCKETS_SECONDS, latency)].fetch_add(1, Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.probe_latency_nanos_sum.fetch_add(nanos, Relaxed);
    }

    pub(super) fn probes(&self, rcpts: u64) {
        self.probes.fetch_add(rcpts, Relaxed);
    }

    pub(super) fn connection_opened(&self) {
        self.connections_opened.fetch_add(1, Relaxed);
    }

    pub(super) fn cache_lookup(&self, hit: bool) {
        self.cache_lookups[usize::from(!hit)].fetch_add(1, Relaxed);
    }

    pub(super) fn set_gauges(
        &self,
        cache_entries: usize,
        probe_connections: usize,
        breakers_open: usize,
    ) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.cache_entries.store(gauge(cache_entries), Relaxed);
        self.probe_connections
            .store(gauge(probe_connections), Relaxed);
        self.breakers_open.store(gauge(breakers_open), Relaxed);
    }

    pub(super) fn set_servers(&self, mut servers: Vec<ServerGauge>) {
        servers.truncate(crate::limits::METRICS_LABEL_SETS_MAX);
        *self.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = servers;
    }

    pub(super) fn snapshot(&self) -> CallaheadSnapshot {
        CallaheadSnapshot {
            verdicts: self.verdicts.each_ref().map(load_all),
            probe_latency_slots: load_all(&self.probe_latency_slots),
            probe_latency_nanos_sum: self.probe_latency_nanos_sum.load(Relaxed),
            probes: self.probes.load(Relaxed),
            connections_opened: self.connections_opened.load(Relaxed),
            cache_lookups: load_all(&self.cache_lookups),
            cache_entries: self.cache_entries.load(Relaxed),
            probe_connections: self.probe_connections.load(Relaxed),
            breakers_open: self.breakers_open.load(Relaxed),
            servers: self.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone(),
        }
    }
}

impl CallaheadSnapshot {
    /// Adds another shard's values (wrapping, like the atomics).
    pub fn add(&mut self, other: &CallaheadSnapshot) {
        for (mine, theirs) in self.verdicts.iter_mut().zip(&other.verdicts) {
            add_all(mine, theirs);
        }
        add_all(&mut self.probe_latency_slots, &other.probe_latency_slots);
        self.probe_latency_nanos_sum = self
            .probe_latency_nanos_sum
            .wrapping_add(other.probe_latency_nanos_sum);
        self.probes = self.probes.wrapping_add(other.probes);
        self.connections_opened = self
            .connections_opened
            .wrapping_add(other.connections_opened);
        add_all(&mut self.cache_lookups, &other.cache_lookups);
        self.cache_entries = self.cache_entries.wrapping_add(other.cache_entries);
        self.probe_connections = self.probe_connections.wrapping_add(other.probe_connections);
        self.breakers_open = self.breakers_open.wrapping_add(other.breakers_open);
        self.servers.extend(other.servers.iter().cloned());
    }
}


/// Every call-ahead family of the summed snapshot, in a stable order.
pub(super) fn encode(encoder: &mut DescriptorEncoder, sum: &CallaheadSnapshot) -> fmt::Result {
    encode_verdicts(encoder, &sum.verdicts)?;
    encode_probe_latency(encoder, sum)?;
    encode_counter(
        encoder,
        "portcullis_callahead_probes",
        "RCPT commands sent to call-ahead servers",
        sum.probes,
    )?;
    encode_counter(
        encoder,
        "portcullis_callahead_probe_connections_opened",
        "Probe connections opened to call-ahead servers",
        sum.connections_opened,
    )?;
    let mut lookups = encoder.encode_descriptor(
        "portcullis_callahead_cache_lookups",
        "Call-ahead verdict cache lookups on the domain's owner shard, by hit or miss (hit ratio = hit / (hit + miss))",
        None,
        MetricType::Counter,
    )?;
    for (result, count) in CACHE_LOOKUP_RESULTS.iter().zip(sum.cache_lookups) {
        ConstCounter::new(count).encode(lookups.encode_family(&[("result", *result)])?)?;
    }
    gauge(
        encoder,
        "portcullis_callahead_cache_entries",
        "Call-ahead verdicts cached, all profiles and shards",
        sum.cache_entries,
    )?;
    gauge(
        encoder,
        "portcullis_callahead_probe_connections",
        "Probe connections open now to call-ahead servers, all servers",
        sum.probe_connections,
    )?;
    gauge(
        encoder,
        "portcullis_callahead_breakers_open",
        "Call-ahead servers whose circuit breaker is open now",
        sum.breakers_open,
    )?;
    encode_servers(encoder, &sum.servers)
}

/// Per server (sorted, so the page is stable): open probe connections and
/// the breaker (1 = open).
fn encode_servers(encoder: &mut DescriptorEncoder, servers: &[ServerGauge]) -> fmt::Result {
    let mut servers = servers.to_vec();
    servers.sort_unstable();
    let mut connections = encoder.encode_descriptor(
        "portcullis_callahead_server_connections",
        "Probe connections open now, by call-ahead server",
        None,
        MetricType::Gauge,
    )?;
    for s in &servers {
        ConstGauge::new(s.connections).encode(connections.encode_family(&[("server", s.server.as_str())])?)?;
    }
    let mut breakers = encoder.encode_descriptor(
        "portcullis_callahead_server_breaker_open",
        "1 while the call-ahead server's circuit breaker is open, by server",
        None,
        MetricType::Gauge,
    )?;
    for s in &servers {
        ConstGauge::new(i64::from(s.breaker_open)).encode(breakers.encode_family(&[("server", s.server.as_str())])?)?;
    }
    Ok(())
}

/// Every known (source, result) pair, zero or not; `other` only once used.
fn encode_verdicts(
    encoder: &mut DescriptorEncoder,
    verdicts: &[[u64; CALLAHEAD_RESULTS.len()]; CALLAHEAD_SOURCES.len()],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "portcullis_callahead_verdicts",
        "Call-ahead RCPT verdicts, by where the verdict came from and what it was",
        None,
        MetricType::Counter,
    )?;
    for (source, by_result) in CALLAHEAD_SOURCES.iter().zip(verdicts) {
        for (result, count) in CALLAHEAD_RESULTS.iter().zip(by_result) {
            if shown(source, *count) && shown(result, *count) {
                let label_set = [("source", *source), ("result", *result)];
                ConstCounter::new(*count).encode(family.encode_family(&label_set)?)?;
            }
        }
    }
    Ok(())
}

fn encode_probe_latency(encoder: &mut DescriptorEncoder, sum: &CallaheadSnapshot) -> fmt::Result {
    encode_latency_histogram(
        encoder,
        "portcullis_callahead_probe_seconds",
        "Time from a probe request reaching the server's pool to the server's verdict",
        &PROBE_LATENCY_BUCKETS_SECONDS,
        &sum.probe_latency_slots,
        sum.probe_latency_nanos_sum,
    )
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_latency_buckets_are_upper_bound_inclusive() {
        assert_eq!(latency_slot(&PROBE_LATENCY_BUCKETS_SECONDS, Duration::from_micros(500)), 0);
        assert_eq!(latency_slot(&PROBE_LATENCY_BUCKETS_SECONDS, Duration::from_micros(501)), 1);
        assert_eq!(
            latency_slot(&PROBE_LATENCY_BUCKETS_SECONDS, Duration::from_secs(30)),
            PROBE_LATENCY_BUCKETS_SECONDS.len() - 1
        );
        assert_eq!(
            latency_slot(&PROBE_LATENCY_BUCKETS_SECONDS, Duration::from_secs(31)),
            PROBE_LATENCY_BUCKETS_SECONDS.len()
        );
    }
}
