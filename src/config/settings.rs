//! Process settings: what is wired once at start and needs a restart to
//! change (sockets, shards, spool, mail log, delivery pool sizes and
//! bounds). A reload that changes one of these keeps the running value and
//! says so; everything else is the reloadable `Policy`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Config;
use crate::policy::rate::RateSettings;
use crate::pool::PoolConfig;

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Listeners every shard binds (SO_REUSEPORT): name and address. Their
    /// HAT and RAT are in the policy, found by name.
    pub listeners: Vec<(String, SocketAddr)>,
    pub cores: usize,
    pub cpu_set: Vec<usize>,
    /// How long an idle shard polls before parking its executor (0 = at once).
    pub spin_before_park: Duration,
    /// Sleep in place of parking while the shard's CPU is contended (0 = never).
    pub coalesce: Duration,
    pub spool_dir: PathBuf,
    /// Our name in EHLO to downstreams and in Received headers.
    pub hostname: String,
    /// Inbound connections, all shards together; then 421 4.7.0.
    pub max_connections: usize,
    pub shutdown_grace_secs: u64,
    pub log_file: String,
    /// Delivery's per-shard connection pool.
    pub pool: PoolConfig,
    /// Undelivered messages one shard's spool holds; then 452 4.3.1.
    pub queue_messages_max: usize,
    /// Message bytes one shard's delivery holds in memory (then it waits).
    pub queue_bytes_max: u64,
    /// Undelivered message bytes on disk, all shards; then 452 4.3.1. 0 = no bound.
    pub spool_bytes_max: u64,
    /// GET /metrics; None = off.
    pub admin_listen: Option<SocketAddr>,
    /// `[dns] servers` as configured (empty = /etc/resolv.conf at start).
    pub dns_servers: Vec<SocketAddr>,
    pub dns_cache_entries: usize,
    /// The per-shard counter tables and their leases.
    pub rate: RateSettings,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        let t = &config.timeouts;
        let d = &config.delivery;
        Settings {
            listeners: config.listeners().into_iter().map(|l| (l.name, l.address)).collect(),
            cores: config.cores,
            cpu_set: config.cpu_set.clone(),
            spin_before_park: Duration::from_micros(config.spin_before_park_us),
            coalesce: Duration::from_micros(config.coalesce_us),
            spool_dir: config.spool_dir.clone(),
            hostname: config.hostname.clone(),
            max_connections: config.max_connections,
            shutdown_grace_secs: config.shutdown_grace_secs,
            log_file: config.log_file.clone(),
            pool: PoolConfig {
                helo_name: config.hostname.clone(),
                connect_timeout: Duration::from_secs(t.client_connect_secs),
                greeting_timeout: Duration::from_secs(t.client_greeting_secs),
                command_timeout: Duration::from_secs(t.client_command_secs),
                data_block_timeout: Duration::from_secs(t.client_data_block_secs),
                data_termination_timeout: Duration::from_secs(t.client_data_termination_secs),
                connections_per_host_max: d.connections_per_host_max,
                idle_timeout: Duration::from_secs(d.pool_idle_secs),
                messages_per_connection_max: d.messages_per_connection_max,
            },
            queue_messages_max: d.queue_messages_max,
            queue_bytes_max: d.queue_bytes_max,
            spool_bytes_max: config.spool_bytes_max,
            admin_listen: config.admin_listen.parse().ok(),
            dns_servers: config.dns.servers.clone(),
            dns_cache_entries: config.dns.cache_entries,
            rate: config.rate_limits.clone(),
        }
    }

    /// Names of the settings that differ from `running` (they need a restart).
    pub fn needing_restart(&self, running: &Settings) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |name: &'static str, differs: bool| {
            if differs {
                changed.push(name);
            }
        };
        check("listeners", self.listeners != running.listeners);
        check("admin_listen", self.admin_listen != running.admin_listen);
        check("dns servers and cache", self.dns_servers != running.dns_servers || self.dns_cache_entries != running.dns_cache_entries);
        check("rate_limits", self.rate != running.rate);
        check("cores", self.cores != running.cores);
        check("cpu_set", self.cpu_set != running.cpu_set);
        check("spin_before_park_us", self.spin_before_park != running.spin_before_park);
        check("coalesce_us", self.coalesce != running.coalesce);
        check("spool_dir", self.spool_dir != running.spool_dir);
        check("hostname", self.hostname != running.hostname);
        check("max_connections", self.max_connections != running.max_connections);
        check("shutdown_grace_secs", self.shutdown_grace_secs != running.shutdown_grace_secs);
        check("log_file", self.log_file != running.log_file);
        check("delivery pool and client timeouts", self.pool != running.pool);
        check("queue_messages_max", self.queue_messages_max != running.queue_messages_max);
        check("queue_bytes_max", self.queue_bytes_max != running.queue_bytes_max);
        check("spool_bytes_max", self.spool_bytes_max != running.spool_bytes_max);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_before_park_is_microseconds_and_needs_a_restart() {
        let running = Settings::from_config(&Config { spin_before_park_us: 0, ..Config::default() });
        let spinning = Settings::from_config(&Config { spin_before_park_us: 50, ..Config::default() });
        assert_eq!(running.spin_before_park, Duration::ZERO);
        assert_eq!(spinning.spin_before_park, Duration::from_micros(50));
        assert_eq!(spinning.needing_restart(&running), vec!["spin_before_park_us"]);
    }

    #[test]
    fn coalesce_is_microseconds_and_needs_a_restart() {
        let running = Settings::from_config(&Config::default());
        let parking = Settings::from_config(&Config { coalesce_us: 0, ..Config::default() });
        assert_eq!(running.coalesce, Duration::from_micros(crate::limits::COALESCE_US));
        assert_eq!(parking.coalesce, Duration::ZERO);
        assert_eq!(parking.needing_restart(&running), vec!["coalesce_us"]);
    }
}
