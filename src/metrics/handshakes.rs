//! Inbound TLS handshakes (issue 9 item 6): STARTTLS and implicit TLS, by
//! result and negotiated version, counted on the session's shard by
//! `connection::handshake`. Fixed label sets; a value outside them counts
//! as `other`.

use super::index_of;
use super::snapshot::add_all;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `result`: done, failed (garbage, no shared parameters, an invalid client
/// certificate), timed out (a stalled client), cut by the shutdown.
pub const HANDSHAKE_RESULTS: [&str; 5] = ["ok", "failed", "timeout", "shutdown", "other"];
/// `version`: what was negotiated; "none" when the handshake did not finish.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["TLSv1.3", "TLSv1.2", "none", "other"];

const CELLS: usize = HANDSHAKE_RESULTS.len() * HANDSHAKE_VERSIONS.len();

#[derive(Default, Debug)]
pub(super) struct HandshakeMetrics {
    counts: [AtomicU64; CELLS],
}

/// Counts by `result × version`, row-major (`HANDSHAKE_RESULTS` rows).
#[derive(Debug, Clone, PartialEq)]
pub struct HandshakeSnapshot {
    pub counts: [u64; CELLS],
}

impl Default for HandshakeSnapshot {
    fn default() -> Self {
        HandshakeSnapshot { counts: [0; CELLS] }
    }
}

impl HandshakeMetrics {
    pub(super) fn count(&self, result: &str, version: &str) {
        let cell = index_of(&HANDSHAKE_RESULTS, result) * HANDSHAKE_VERSIONS.len() + index_of(&HANDSHAKE_VERSIONS, version);
        self.counts[cell].fetch_add(1, Relaxed);
    }

    pub(super) fn snapshot(&self) -> HandshakeSnapshot {
        HandshakeSnapshot { counts: super::load_all(&self.counts) }
    }
}

impl HandshakeSnapshot {
    pub fn add(&mut self, other: &HandshakeSnapshot) {
        add_all(&mut self.counts, &other.counts);
    }

    /// One cell, for tests and the status page.
    pub fn get(&self, result: &str, version: &str) -> u64 {
        self.counts[index_of(&HANDSHAKE_RESULTS, result) * HANDSHAKE_VERSIONS.len() + index_of(&HANDSHAKE_VERSIONS, version)]
    }
}

/// `portcullis_tls_handshakes_total{result,version}`: only the pairs that
/// can happen (ok with a version, the failures with "none") plus any
/// `other` that counted.
pub(super) fn encode(encoder: &mut DescriptorEncoder, sum: &HandshakeSnapshot) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "portcullis_tls_handshakes",
        "Inbound TLS handshakes (STARTTLS and implicit TLS) by result and negotiated version",
        None,
        MetricType::Counter,
    )?;
    for (r, result) in HANDSHAKE_RESULTS.iter().enumerate() {
        for (v, version) in HANDSHAKE_VERSIONS.iter().enumerate() {
            let count = sum.counts[r * HANDSHAKE_VERSIONS.len() + v];
            let possible = (*result == "ok") != (*version == "none") && *result != "other" && *version != "other";
            if possible || count > 0 {
                ConstCounter::new(count).encode(family.encode_family(&[("result", *result), ("version", *version)])?)?;
            }
        }
    }
    Ok(())
}
