//! Plain copies of metric values: one shard's (`Metrics::snapshot`), or the
//! sum over every shard (`MetricsBoard::summed`), which is what /metrics
//! shows. Counters add; the open-connections gauge adds too (each shard
//! counts its own connections).

use super::callahead::CallaheadSnapshot;
use super::auth::AuthSnapshot;
use super::bounces::BounceSnapshot;
use super::destinations::DestinationSnapshot;
use super::ldap::LdapSnapshot;
use super::connections::ConnectionLabels;
use super::{DNS_LATENCY_SLOTS, DNS_RECORD_TYPES, DNS_RESULTS, RATE_LIMIT_KINDS};
use hashbrown::HashMap;

/// Metric values at one moment; indices follow the label constants in
/// `metrics` (`RATE_LIMIT_KINDS`, `DNS_RECORD_TYPES`, `DNS_RESULTS`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub connections: HashMap<ConnectionLabels, u64>,
    pub rate_limit_refusals: [u64; RATE_LIMIT_KINDS.len()],
    pub dhap_refusals: u64,
    pub dns_queries: [[u64; DNS_RESULTS.len()]; DNS_RECORD_TYPES.len()],
    /// Not cumulative: one count per bound of `DNS_LATENCY_BUCKETS_SECONDS`, then +Inf.
    pub dns_latency_slots: [u64; DNS_LATENCY_SLOTS],
    pub dns_latency_nanos_sum: u64,
    pub dns_cache_hits: [u64; DNS_RECORD_TYPES.len()],
    pub messages_accepted: u64,
    pub messages_delivered: u64,
    pub coalesced_sleep_micros: u64,
    pub open_connections: i64,
    pub callahead: CallaheadSnapshot,
    pub ldap: LdapSnapshot,
    pub handshakes: super::HandshakeSnapshot,
    pub outbound_tls: HashMap<super::tls::OutboundTlsLabels, u64>,
    pub auth: AuthSnapshot,
    pub bounces: BounceSnapshot,
    pub destinations: DestinationSnapshot,
    pub dane: super::dane::DaneSnapshot,
    pub bounce_verification: super::BounceVerificationSnapshot,
}

impl Snapshot {
    /// Adds another shard's values to these. Wrapping: a counter that
    /// overflows u64 wraps like the atomics it came from.
    pub fn add(&mut self, other: &Snapshot) {
        for (labels, count) in &other.connections {
            match self.connections.get_mut(labels) {
                Some(sum) => *sum = sum.wrapping_add(*count),
                None => {
                    self.connections.insert(labels.clone(), *count);
                }
            }
        }
        add_all(&mut self.rate_limit_refusals, &other.rate_limit_refusals);
        self.dhap_refusals = self.dhap_refusals.wrapping_add(other.dhap_refusals);
        for (mine, theirs) in self.dns_queries.iter_mut().zip(&other.dns_queries) {
            add_all(mine, theirs);
        }
        add_all(&mut self.dns_latency_slots, &other.dns_latency_slots);
        self.dns_latency_nanos_sum = self
            .dns_latency_nanos_sum
            .wrapping_add(other.dns_latency_nanos_sum);
        add_all(&mut self.dns_cache_hits, &other.dns_cache_hits);
        self.messages_accepted = self.messages_accepted.wrapping_add(other.messages_accepted);
        self.messages_delivered = self
            .messages_delivered
            .wrapping_add(other.messages_delivered);
        self.coalesced_sleep_micros = self.coalesced_sleep_micros.wrapping_add(other.coalesced_sleep_micros);
        self.open_connections = self.open_connections.wrapping_add(other.open_connections);
        self.callahead.add(&other.callahead);
        self.ldap.add(&other.ldap);
        self.handshakes.add(&other.handshakes);
        super::tls::add(&mut self.outbound_tls, &other.outbound_tls);
        self.auth.add(&other.auth);
        self.bounces.add(&other.bounces);
        self.destinations.add(&other.destinations);
        self.dane.add(&other.dane);
        self.bounce_verification.add(&other.bounce_verification);
    }

    /// DNS queries that went to the network, all types and results.
    pub fn dns_query_count(&self) -> u64 {
        self.dns_latency_slots.iter().sum()
    }
}

pub(super) fn add_all<const N: usize>(sums: &mut [u64; N], values: &[u64; N]) {
    for (sum, value) in sums.iter_mut().zip(values) {
        *sum = sum.wrapping_add(*value);
    }
}
