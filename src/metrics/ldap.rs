//! The LDAP families (issue 8 item 5): lookups by result, directory search
//! latency, cached answers (a gauge the shard sets) and accept-query
//! decisions at RCPT.
//!
//! Counters are bumped where the event happens: lookups and search latency
//! on the key's owner shard (`ldap::lookup`, which holds the cache and asks
//! the LDAP thread on a miss), accept decisions on the session's shard
//! (`ldap::accept`, after the RAT and before call-ahead). The cache gauge is
//! this shard's own count, so the sum over shards is the appliance's. Fixed
//! label sets as arrays of atomics, like the call-ahead family; a value
//! outside them counts as `other`.

use super::board::{encode_labelled, encode_latency_histogram};
use super::snapshot::add_all;
use super::{index_of, latency_slot, load_all};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// `result` of `portcullis_ldap_lookups_total`: answered from the owner's
/// cache, joined a search already in flight for the same key, or asked
/// the directory and found an entry, found none, or got no answer (queue
/// full, server down, timeout); the last is the catch-all.
pub const LDAP_LOOKUP_RESULTS: [&str; 6] = ["hit", "shared", "entry", "no-entry", "error", "other"];
/// `result` of `portcullis_ldap_accept_total`: an entry (accepted), no
/// entry (rejected, 550 5.1.1), or the directory did not answer and the
/// query's failure action rejected (451 4.4.3 by default) or accepted;
/// the last is the catch-all.
pub const LDAP_ACCEPT_RESULTS: [&str; 5] = [
    "accepted",
    "rejected",
    "failure-rejected",
    "failure-accepted",
    "other",
];
/// Upper bounds of `portcullis_ldap_query_seconds`: from an indexed search
/// on a loopback slapd over a bound connection (~0.25 ms) to a directory
/// that answers only near a generous per-query timeout (30 s, the
/// call-ahead `validation_timeout_secs` default it sits inside); slower
/// lands in +Inf.
pub const LDAP_QUERY_LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

const LDAP_QUERY_LATENCY_SLOTS: usize = LDAP_QUERY_LATENCY_BUCKETS_SECONDS.len() + 1;

/// One shard's LDAP metrics.
#[derive(Default, Debug)]
pub(super) struct LdapMetrics {
    lookups: [AtomicU64; LDAP_LOOKUP_RESULTS.len()],
    /// Not cumulative: slot i counts searches in (bound i-1, bound i].
    query_latency_slots: [AtomicU64; LDAP_QUERY_LATENCY_SLOTS],
    query_latency_nanos_sum: AtomicU64,
    cache_entries: AtomicI64,
    accepts: [AtomicU64; LDAP_ACCEPT_RESULTS.len()],
}

/// A copy of LDAP values: one shard's, or the sum; indices follow
/// `LDAP_LOOKUP_RESULTS` and `LDAP_ACCEPT_RESULTS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LdapSnapshot {
    pub lookups: [u64; LDAP_LOOKUP_RESULTS.len()],
    /// Not cumulative: one count per bound of
    /// `LDAP_QUERY_LATENCY_BUCKETS_SECONDS`, then +Inf.
    pub query_latency_slots: [u64; LDAP_QUERY_LATENCY_SLOTS],
    pub query_latency_nanos_sum: u64,
    pub cache_entries: i64,
    pub accepts: [u64; LDAP_ACCEPT_RESULTS.len()],
}

impl LdapMetrics {
    pub(super) fn lookup(&self, result: &str) {
        self.lookups[index_of(&LDAP_LOOKUP_RESULTS, result)].fetch_add(1, Relaxed);
    }

    pub(super) fn query_latency(&self, latency: Duration) {
        let slot = latency_slot(&LDAP_QUERY_LATENCY_BUCKETS_SECONDS, latency);
        self.query_latency_slots[slot].fetch_add(1, Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.query_latency_nanos_sum.fetch_add(nanos, Relaxed);
    }

    pub(super) fn set_cache_entries(&self, entries: usize) {
        let entries = i64::try_from(entries).unwrap_or(i64::MAX);
        self.cache_entries.store(entries, Relaxed);
    }

    pub(super) fn accept(&self, result: &str) {
        self.accepts[index_of(&LDAP_ACCEPT_RESULTS, result)].fetch_add(1, Relaxed);
    }

    pub(super) fn snapshot(&self) -> LdapSnapshot {
        LdapSnapshot {
            lookups: load_all(&self.lookups),
            query_latency_slots: load_all(&self.query_latency_slots),
            query_latency_nanos_sum: self.query_latency_nanos_sum.load(Relaxed),
            cache_entries: self.cache_entries.load(Relaxed),
            accepts: load_all(&self.accepts),
        }
    }
}

impl LdapSnapshot {
    /// Adds another shard's values (wrapping, like the atomics).
    pub fn add(&mut self, other: &LdapSnapshot) {
        add_all(&mut self.lookups, &other.lookups);
        add_all(&mut self.query_latency_slots, &other.query_latency_slots);
        self.query_latency_nanos_sum = self
            .query_latency_nanos_sum
            .wrapping_add(other.query_latency_nanos_sum);
        self.cache_entries = self.cache_entries.wrapping_add(other.cache_entries);
        add_all(&mut self.accepts, &other.accepts);
    }

    /// Directory searches timed (`ldap_query_latency`), all results.
    pub fn query_count(&self) -> u64 {
        self.query_latency_slots.iter().sum()
    }
}

/// Every LDAP family of the summed snapshot, in a stable order.
pub(super) fn encode(encoder: &mut DescriptorEncoder, sum: &LdapSnapshot) -> fmt::Result {
    encode_labelled(
        encoder,
        "portcullis_ldap_lookups",
        "LDAP lookups on the key's owner shard, by result: hit (cache), entry or no-entry (asked the directory), error (the directory did not answer)",
        ("result", &LDAP_LOOKUP_RESULTS),
        &sum.lookups,
    )?;
    encode_latency_histogram(
        encoder,
        "portcullis_ldap_query_seconds",
        "Time one LDAP directory search took (cache hits not included), answered or failed",
        &LDAP_QUERY_LATENCY_BUCKETS_SECONDS,
        &sum.query_latency_slots,
        sum.query_latency_nanos_sum,
    )?;
    let entries = encoder.encode_descriptor(
        "portcullis_ldap_cache_entries",
        "LDAP answers cached, all queries and shards",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(sum.cache_entries).encode(entries)?;
    encode_labelled(
        encoder,
        "portcullis_ldap_accept",
        "LDAP accept-query decisions at RCPT: accepted, rejected (no entry), or the directory failed and the failure action rejected or accepted",
        ("result", &LDAP_ACCEPT_RESULTS),
        &sum.accepts,
    )
}

#[cfg(test)]
mod tests;
