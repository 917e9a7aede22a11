//! Per-shard counters and histograms, summed on read (Prometheus text on the
//! admin listener, `admin.rs`).
//!
//! Each shard owns one `Metrics` (in an `Arc`, so the admin thread can read
//! it); the hot path only touches its own shard's counters. The admin sums
//! every shard's values when /metrics is scraped.
//!
//! STUB: the API below is what the rest of the code calls; the storage and
//! exposition are being built (issue 6, metrics).

use std::time::Duration;

/// One shard's metrics. Cheap to update from its own shard.
#[derive(Default, Debug)]
pub struct Metrics {}

impl Metrics {
    /// A connection decided: `outcome` is accepted | rejected | tcprefused |
    /// relayed | limited (concurrency) | closed.
    pub fn connection(&self, _listener: &str, _group: &str, _policy: &str, _outcome: &str) {}
    /// A RCPT or connection refused by a rate limit: `kind` is
    /// recipients_per_hour | sender_rate | concurrent_connections.
    pub fn rate_limit_refusal(&self, _kind: &str) {}
    /// A RCPT refused because the host passed its DHAP threshold.
    pub fn dhap_refusal(&self) {}
    /// One DNS query that went to the network: `rtype` A | AAAA | MX | PTR |
    /// TXT, `result` answer | not_found | tempfail.
    pub fn dns_query(&self, _rtype: &str, _result: &str, _latency: Duration) {}
    /// A DNS question answered from the shard's cache.
    pub fn dns_cache_hit(&self, _rtype: &str) {}
}
