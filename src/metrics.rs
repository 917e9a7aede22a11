//! Per-shard counters and histograms, summed on read (Prometheus text on the
//! admin listener, `admin.rs`).
//!
//! Each shard owns one `Metrics` (in an `Arc`, so the admin thread can read
//! it); the hot path only touches its own shard's counters: relaxed atomics
//! for the families whose labels are a fixed set, and for the one family
//! whose labels come from the operator's config (connections by listener,
//! group and policy) a small table behind a mutex that only its shard and a
//! scrape ever take (`connections.rs`), bounded by
//! `limits::METRICS_LABEL_SETS_MAX`. The admin thread takes a `Snapshot` of
//! every shard, adds them up and encodes the sum (`board.rs`); no series
//! carries a shard label.
//!
//! Label values outside the known set of a fixed family (a DNS type nobody
//! listed, a misspelt outcome) are counted under `other` rather than lost or
//! allowed to grow the page.

mod auth;
mod bounces;
mod destinations;
mod board;
mod bounce_verification;
mod callahead;
mod connections;
mod handshakes;
pub mod dane;
mod ldap;
mod snapshot;
mod tls;
#[cfg(test)]
mod tests;

pub use auth::{AuthSnapshot, AUTH_RESULTS};
pub use bounces::{BounceSnapshot, BOUNCE_KINDS};
pub use destinations::{DestinationSnapshot, DESTINATION_RESULTS};
pub use board::{MetricsBoard, CONTENT_TYPE};
pub use bounce_verification::{BounceVerificationSnapshot, BOUNCE_VERIFICATION_RESULTS};
pub use callahead::{ServerGauge, 
    CallaheadSnapshot, CACHE_LOOKUP_RESULTS, CALLAHEAD_RESULTS, CALLAHEAD_SOURCES,
    PROBE_LATENCY_BUCKETS_SECONDS,
};
pub use connections::ConnectionLabels;
pub use handshakes::{HandshakeSnapshot, HANDSHAKE_RESULTS, HANDSHAKE_VERSIONS};
pub use ldap::{
    LdapSnapshot, LDAP_ACCEPT_RESULTS, LDAP_LOOKUP_RESULTS, LDAP_QUERY_LATENCY_BUCKETS_SECONDS,
};
pub use snapshot::Snapshot;
pub use tls::{OutboundTlsLabels, OUTBOUND_TLS_RESULTS, OUTBOUND_TLS_SIDES};

use auth::AuthMetrics;
use bounces::BounceMetrics;
use bounce_verification::BounceVerificationMetrics;
use callahead::CallaheadMetrics;
use connections::ConnectionCounts;
use handshakes::HandshakeMetrics;
use ldap::LdapMetrics;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// `kind` of `portcullis_rate_limit_refusals_total`; the last is the catch-all.
pub const RATE_LIMIT_KINDS: [&str; 4] = [
    "recipients_per_hour",
    "sender_rate",
    "concurrent_connections",
    "other",
];
/// `type` of the DNS families: the record types the resolver asks for
/// (TLSA lands with DANE); the last is the catch-all.
pub const DNS_RECORD_TYPES: [&str; 7] = ["A", "AAAA", "MX", "PTR", "TXT", "TLSA", "other"];
/// `result` of `portcullis_dns_queries_total`: the three failure classes the
/// resolver keeps apart (issue 6 item 1); the last is the catch-all.
pub const DNS_RESULTS: [&str; 4] = ["answer", "not_found", "tempfail", "other"];
/// `outcome` of `portcullis_connections_total`; the last is the catch-all.
pub const CONNECTION_OUTCOMES: [&str; 8] = [
    "accepted",
    "rejected",
    "rejected_at_rcpt",
    "tcprefused",
    "relayed",
    "limited",
    "closed",
    "other",
];
/// Upper bounds of `portcullis_dns_query_seconds`: from a cache-warm
/// loopback resolver (~0.5 ms) to the longest a query may take
/// (`[dns] timeout_ms` 2000 × 2 attempts, rounded up); slower lands in +Inf.
pub const DNS_LATENCY_BUCKETS_SECONDS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets of the latency histogram: one per bound plus +Inf.
const DNS_LATENCY_SLOTS: usize = DNS_LATENCY_BUCKETS_SECONDS.len() + 1;

/// One shard's metrics. Cheap to update from its own shard.
#[derive(Default, Debug)]
pub struct Metrics {
    connections: ConnectionCounts,
    rate_limit_refusals: [AtomicU64; RATE_LIMIT_KINDS.len()],
    dhap_refusals: AtomicU64,
    dns_queries: [[AtomicU64; DNS_RESULTS.len()]; DNS_RECORD_TYPES.len()],
    /// Not cumulative: slot i counts queries in (bound i-1, bound i].
    dns_latency_slots: [AtomicU64; DNS_LATENCY_SLOTS],
    dns_latency_nanos_sum: AtomicU64,
    dns_cache_hits: [AtomicU64; DNS_RECORD_TYPES.len()],
    messages_accepted: AtomicU64,
    messages_delivered: AtomicU64,
    /// Time the shard gave its CPU away (yielded or slept) in place of
    /// parking (`coalesce.rs`).
    coalesced_sleep_micros: AtomicU64,
    /// May dip below zero on one shard if a connection is counted open on
    /// one shard and closed on another; only the sum means anything.
    open_connections: AtomicI64,
    callahead: CallaheadMetrics,
    ldap: LdapMetrics,
    handshakes: HandshakeMetrics,
    outbound_tls: tls::OutboundTlsCounts,
    auth: AuthMetrics,
    bounces: BounceMetrics,
    destinations: destinations::DestinationCounts,
    dane: dane::DaneMetrics,
    bounce_verification: BounceVerificationMetrics,
}

impl Metrics {
    /// A connection decided: `outcome` is accepted | rejected | tcprefused |
    /// relayed | limited (concurrency) | closed.
    pub fn connection(&self, listener: &str, group: &str, policy: &str, outcome: &str) {
        let outcome = CONNECTION_OUTCOMES[index_of(&CONNECTION_OUTCOMES, outcome)];
        self.connections.count(listener, group, policy, outcome);
    }
    /// A RCPT or connection refused by a rate limit: `kind` is
    /// recipients_per_hour | sender_rate | concurrent_connections.
    pub fn rate_limit_refusal(&self, kind: &str) {
        self.rate_limit_refusals[index_of(&RATE_LIMIT_KINDS, kind)].fetch_add(1, Relaxed);
    }
    /// The shard gave its CPU away for `slept` (yielded or slept) in
    /// place of parking (wake-up coalescing).
    pub fn coalesced_sleep(&self, slept: Duration) {
        self.coalesced_sleep_micros.fetch_add(slept.as_micros() as u64, Relaxed);
    }
    /// A RCPT refused because the host passed its DHAP threshold.
    pub fn dhap_refusal(&self) {
        self.dhap_refusals.fetch_add(1, Relaxed);
    }
    /// One DNS query that went to the network: `rtype` A | AAAA | MX | PTR |
    /// TXT, `result` answer | not_found | tempfail.
    pub fn dns_query(&self, rtype: &str, result: &str, latency: Duration) {
        let rtype = index_of(&DNS_RECORD_TYPES, rtype);
        self.dns_queries[rtype][index_of(&DNS_RESULTS, result)].fetch_add(1, Relaxed);
        self.dns_latency_slots[latency_slot(&DNS_LATENCY_BUCKETS_SECONDS, latency)].fetch_add(1, Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.dns_latency_nanos_sum.fetch_add(nanos, Relaxed);
    }
    /// A DNS question answered from the shard's cache.
    pub fn dns_cache_hit(&self, rtype: &str) {
        self.dns_cache_hits[index_of(&DNS_RECORD_TYPES, rtype)].fetch_add(1, Relaxed);
    }
    /// A message stored durably and answered 250 (intake).
    pub fn message_accepted(&self) {
        self.messages_accepted.fetch_add(1, Relaxed);
    }
    /// A message (all its recipients on one delivery) handed downstream.
    pub fn message_delivered(&self) {
        self.messages_delivered.fetch_add(1, Relaxed);
    }
    /// A client connection began; pair with `connection_closed`, or use
    /// `open_connection` so every way a connection ends is counted.
    pub fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Relaxed);
    }
    /// A client connection ended (see `connection_opened`).
    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Relaxed);
    }
    /// Counts a connection open until the guard is dropped, however the
    /// connection ends (error, panic, shutdown): no stale gauge.
    pub fn open_connection(self: &Arc<Self>) -> OpenConnection {
        self.connection_opened();
        OpenConnection {
            metrics: Arc::clone(self),
        }
    }

    /// One call-ahead RCPT decision: `source` and `result` as the log line
    /// names them (`Source::name`, `validate::verdict_name`).
    pub fn callahead_verdict(&self, source: &str, result: &str) {
        self.callahead.verdict(source, result);
    }
    /// One probe answered by its server (or failed there): the time from
    /// the request reaching the server's pool to its verdict.
    pub fn callahead_probe_latency(&self, latency: Duration) {
        self.callahead.probe_latency(latency);
    }
    /// RCPT commands sent to a call-ahead server.
    pub fn callahead_probes_sent(&self, rcpts: u64) {
        self.callahead.probes(rcpts);
    }
    /// A probe connection opened to a call-ahead server.
    pub fn callahead_connection_opened(&self) {
        self.callahead.connection_opened();
    }
    /// A verdict cache lookup on the domain's owner shard.
    pub fn callahead_cache_lookup(&self, hit: bool) {
        self.callahead.cache_lookup(hit);
    }
    /// This shard's call-ahead gauges: entries in its cache partitions,
    /// probe connections open and breakers open at the servers it owns.
    pub fn set_callahead_gauges(&self, cache_entries: usize, probe_connections: usize, breakers_open: usize) {
        self.callahead.set_gauges(cache_entries, probe_connections, breakers_open);
    }
    /// The call-ahead servers this shard owns, each with its open probe
    /// connections and breaker state (replaces the last list).
    pub fn set_callahead_servers(&self, servers: Vec<ServerGauge>) {
        self.callahead.set_servers(servers);
    }

    /// One lookup answered on the key's owner shard: result is "hit" (from
    /// the cache), "entry", "no-entry" (asked the directory), "error" (the
    /// directory could not answer: queue full, down, timeout…).
    pub fn ldap_lookup(&self, result: &str) {
        self.ldap.lookup(result);
    }
    /// The time one directory search took (not cache hits), success or not.
    pub fn ldap_query_latency(&self, latency: Duration) {
        self.ldap.query_latency(latency);
    }
    /// This shard's cached LDAP answers (a gauge, set by the shard).
    pub fn set_ldap_cache_entries(&self, entries: usize) {
        self.ldap.set_cache_entries(entries);
    }
    /// One accept-query decision at RCPT: "accepted", "rejected" (no
    /// entry), "failure-rejected", "failure-accepted".
    pub fn ldap_accept(&self, result: &str) {
        self.ldap.accept(result);
    }

    /// One inbound TLS handshake (`connection::handshake`).
    pub fn tls_handshake(&self, result: &str, version: &str) {
        self.handshakes.count(result, version);
    }

    /// One outbound connection that wanted TLS: `side` delivery |
    /// callahead, `destination` the `[destination.*]` name or "default"
    /// (call-ahead: the profile's name), `result` tls | clear | failed.
    pub fn outbound_tls(&self, side: &str, destination: &str, result: &str) {
        self.outbound_tls.count(side, destination, result);
    }

    /// One DANE decision or verification (`dane::DANE_RESULTS`).
    pub fn dane(&self, result: &str) {
        self.dane.count(result);
    }

    /// One SMTP AUTH attempt decided: "success", "failure", "tempfail",
    /// "blocked" (`auth::AuthOutcome::name`).
    pub fn auth_attempt(&self, result: &str) {
        self.auth.attempt(result);
    }
    /// A delivery status notification stored for the envelope sender:
    /// "failed" or "delayed" (`metrics::bounces`).
    pub fn bounce(&self, kind: &str) {
        self.bounces.count(kind);
    }
    /// `recipients` of a delivery attempt to `destination` (its
    /// `[destination]` label) ended `result`: delivered, deferred, failed.
    pub fn destination_delivery(&self, destination: &str, result: &str, recipients: u64) {
        self.destinations.delivery(destination, result, recipients);
    }
    /// A delivery job for `destination` began (+1) or ended (−1).
    pub fn destination_queued(&self, destination: &str, change: i64) {
        self.destinations.queued(destination, change);
    }
    /// A delivery connection to `destination` opened (+1) or closed (−1).
    pub fn destination_connections(&self, destination: &str, change: i64) {
        self.destinations.connections(destination, change);
    }

    /// One bounce's recipient judged by its prvs tag: "valid", "expired",
    /// "bad", "untagged_accepted", "untagged_refused" (`policy::bounce`).
    pub fn bounce_verification(&self, result: &str) {
        self.bounce_verification.verdict(result);
    }

    /// A copy of this shard's values, for summing (relaxed reads: each value
    /// is exact, values of different families may be a few events apart).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections: self.connections.copy(),
            rate_limit_refusals: load_all(&self.rate_limit_refusals),
            dhap_refusals: self.dhap_refusals.load(Relaxed),
            dns_queries: self.dns_queries.each_ref().map(load_all),
            dns_latency_slots: load_all(&self.dns_latency_slots),
            dns_latency_nanos_sum: self.dns_latency_nanos_sum.load(Relaxed),
            dns_cache_hits: load_all(&self.dns_cache_hits),
            messages_accepted: self.messages_accepted.load(Relaxed),
            messages_delivered: self.messages_delivered.load(Relaxed),
            coalesced_sleep_micros: self.coalesced_sleep_micros.load(Relaxed),
            open_connections: self.open_connections.load(Relaxed),
            callahead: self.callahead.snapshot(),
            ldap: self.ldap.snapshot(),
            handshakes: self.handshakes.snapshot(),
            outbound_tls: self.outbound_tls.copy(),
            auth: self.auth.snapshot(),
            bounces: self.bounces.snapshot(),
            destinations: self.destinations.snapshot(),
            dane: self.dane.snapshot(),
            bounce_verification: self.bounce_verification.snapshot(),
        }
    }
}

/// A connection counted in `portcullis_open_connections` while it lives.
#[derive(Debug)]
pub struct OpenConnection {
    metrics: Arc<Metrics>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

/// Position of `value` in a fixed label set, or the catch-all (last) slot.
fn index_of(known: &[&str], value: &str) -> usize {
    let other = known.len() - 1;
    known[..other]
        .iter()
        .position(|k| *k == value)
        .unwrap_or(other)
}

/// The histogram slot of one latency: the first of `bounds` (seconds) it
/// does not exceed (Prometheus buckets are `le`, upper bound inclusive),
/// else +Inf (`bounds.len()`).
fn latency_slot(bounds: &[f64], latency: Duration) -> usize {
    let seconds = latency.as_secs_f64();
    bounds.iter().position(|bound| seconds <= *bound).unwrap_or(bounds.len())
}

fn load_all<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
    counters.each_ref().map(|c| c.load(Relaxed))
}
