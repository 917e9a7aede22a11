//! TEMP STUB (not committed)
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSettings { pub servers: Vec<SocketAddr>, pub timeout_ms: u64, pub attempts: u32, pub cache_entries: usize, pub hat_lookup_timeout_ms: u64 }
impl Default for DnsSettings { fn default() -> Self { DnsSettings { servers: vec![], timeout_ms: 2000, attempts: 2, cache_entries: 100000, hat_lookup_timeout_ms: 3000 } } }
impl DnsSettings { pub fn validate(&self) -> Result<(), (String, String)> { Ok(()) } pub fn nameservers(&self) -> Result<Vec<SocketAddr>, String> { Ok(self.servers.clone()) } }
#[derive(Debug, Clone)]
pub enum Lookup<T> { Found(T), NotFound, TempFail(String) }
pub struct Mx { pub preference: u16, pub exchange: String }
pub struct Resolver;
impl Resolver {
    pub fn new(_n: Vec<SocketAddr>, _s: &DnsSettings, _m: Arc<crate::metrics::Metrics>) -> Resolver { Resolver }
    pub async fn ipv4(&self, _n: &str) -> Lookup<Vec<Ipv4Addr>> { Lookup::NotFound }
    pub async fn ipv6(&self, _n: &str) -> Lookup<Vec<Ipv6Addr>> { Lookup::NotFound }
    pub async fn addresses(&self, _n: &str) -> Lookup<Vec<IpAddr>> { Lookup::NotFound }
    pub async fn mx(&self, _n: &str) -> Lookup<Vec<Mx>> { Lookup::NotFound }
    pub async fn ptr(&self, _ip: IpAddr) -> Lookup<Vec<String>> { Lookup::NotFound }
    pub async fn txt(&self, _n: &str) -> Lookup<Vec<String>> { Lookup::NotFound }
}
