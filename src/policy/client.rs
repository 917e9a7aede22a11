//! The client of one connection as the policy sees it, from the connect
//! decision to the end: where it connected, which sender group matched,
//! the mail flow policy it lives under, its counter key, and the
//! concurrent-connection slot it holds (released when this is dropped,
//! however the connection ends).

use std::net::IpAddr;
use std::sync::Arc;

use crate::policy::access::ListenerPolicy;
use crate::policy::flow::{BannerVars, MailFlowPolicy};
use crate::policy::hat::canonical_ip;
use crate::policy::rate::Slot;
use crate::smtp::Peer;

pub struct Client {
    pub peer: Peer,
    /// The address the policy judges (IPv4-mapped IPv6 as IPv4).
    pub ip: IpAddr,
    pub listener: Arc<ListenerPolicy>,
    /// The sender group that matched, or "(unmatched)".
    pub group: String,
    pub policy: Arc<MailFlowPolicy>,
    /// The forward-confirmed PTR name, when it was looked up and confirmed.
    remote_host: Option<String>,
    /// The key of this client's appliance-wide counters: its address or its
    /// similarity group (`group_by_similarity_bits_v4`/`_v6`).
    pub key: String,
    /// Held while the connection is open (`max_concurrent_connections_per_ip`).
    pub slot: Option<Slot>,
}

impl Client {
    pub fn new(peer: Peer, listener: Arc<ListenerPolicy>, group: String, policy: Arc<MailFlowPolicy>, remote_host: Option<String>) -> Client {
        let ip = canonical_ip(peer.addr.ip());
        let key = policy.client_key(ip);
        Client { peer, ip, listener, group, policy, remote_host, key, slot: None }
    }

    /// Is the counter key a similarity group rather than the address itself?
    pub fn grouped(&self) -> bool {
        self.key.contains('/')
    }

    /// `$RemoteHost`: the confirmed name or "unknown".
    pub fn remote_host(&self) -> &str {
        self.remote_host.as_deref().unwrap_or("unknown")
    }

    pub fn banner_vars(&self) -> BannerVars<'_> {
        BannerVars { hostname: &self.listener.hostname, remote_ip: self.ip, remote_host: self.remote_host(), group: &self.group, local_ip: self.peer.local.ip() }
    }

    /// `listener=… group=… policy=…` for a mail log line.
    pub fn label(&self) -> String {
        format!("listener={} group={} policy={}", self.listener.name, self.group, self.policy.name)
    }
}
