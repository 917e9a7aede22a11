//! STUB (replaced by the LDAP thread): the API the shards use.
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    pub urls: Vec<String>,
    pub bind_dn: String,
    pub bind_password: String,
    pub base: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub connections: usize,
}
pub type Entry = BTreeMap<String, Vec<String>>;

#[derive(Clone)]
pub struct Directory {}
impl Directory {
    pub fn start() -> Directory {
        Directory {}
    }
    pub fn search(&self, _server: &Arc<ServerSpec>, _filter: String, _attributes: Vec<String>) -> impl Future<Output = Result<Option<Entry>, String>> + Send + 'static {
        async { Err("stub".to_string()) }
    }
    pub fn stop(&self) {}
}
