//! Command-line interface (clap). Flags override the config file; a list
//! flag given at least once replaces the file's list.

pub mod admin_client;
pub mod callahead;
pub mod ldap;
pub mod passwd;
pub mod queue;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, RouteHost};

#[derive(Parser, Debug)]
#[command(name = "portcullis", version, about = "SMTP edge appliance: thread-per-core ESMTP relay with a durable spool")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, `portcullis [FLAGS]` is `portcullis run [FLAGS]`.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the appliance (the default).
    Run(RunArgs),
    /// Validate a config file and print the effective config, or name the bad key and its line.
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
    /// Query or purge the call-ahead verdict cache of the running appliance (through its admin listener).
    Callahead(callahead::CallaheadArgs),
    /// LDAP queries: `test QUERY ADDR` runs one against its directory and explains the answer (offline); `purge` forgets cached answers in the running appliance (through its admin listener).
    Ldap(ldap::LdapArgs),
    /// The delivery queue of the running appliance (through its admin listener): `list`, `show QID`, `flush [DOMAIN]`, `delete QID`, `bounce QID`.
    Queue(queue::QueueArgs),
    /// Read a password from standard input (no echo on a terminal) and print the `USER:{ARGON2ID}…` line for `[auth] passwd_file`.
    Passwd(passwd::PasswdArgs),
}

#[derive(Args, Debug, Default, Clone)]
pub struct RunArgs {
    /// TOML config file; flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to accept SMTP on (repeatable). Default 127.0.0.1:2525.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Shards: pinned executors, one per core. Default: every online CPU.
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// CPUs to pin shards to, e.g. "2-15" or "0,2,4"; default every online CPU.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpu_set: Option<CpuList>,
    /// Microseconds an idle shard polls for work before it parks (0 = park at once); see `spin_before_park_us` in the config.
    #[arg(long, value_name = "MICROS")]
    pub spin_before_park_us: Option<u64>,
    /// Microseconds a shard whose CPU is contended sleeps in place of parking when nobody else wants its CPU (it yields first), to take many events per wake-up (0 = always park); see `coalesce_us` in the config.
    #[arg(long, value_name = "MICROS")]
    pub coalesce_us: Option<u64>,
    /// Spool directory (one subdirectory per shard, plus failed/). Default ./spool.
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Undelivered message bytes on disk, all shards together, before new mail gets 452 4.3.1. Default 0 = no bound but the disk.
    #[arg(long, value_name = "BYTES")]
    pub spool_bytes_max: Option<u64>,
    /// Our host name in the greeting, EHLO and Received headers. Default: the kernel host name.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Domain we accept mail for (repeatable). Default example.test. No wildcards: never an open relay.
    #[arg(long = "relay-domain", value_name = "DOMAIN")]
    pub relay_domains: Vec<String>,
    /// Where mail for DOMAIN goes (repeatable): DOMAIN is a domain, .domain (its subdomains) or "*" (the default); hosts are HOST[:PORT], IP, [IPv6]:PORT or USEDNS, tried in order. Default *=127.0.0.1:2526.
    #[arg(long = "route", value_name = "DOMAIN=HOST[:PORT][,…]", value_parser = parse_route)]
    pub routes: Vec<(String, Vec<RouteHost>)>,
    /// Concurrent inbound connections, all shards together; above it 421 4.7.0.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// On SIGTERM/SIGINT, how long open sessions may finish before 421 and close.
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Nameserver for the shards' resolver (repeatable); default the `[dns] servers` of the file, else /etc/resolv.conf.
    #[arg(long = "dns", value_name = "ADDR:PORT")]
    pub dns: Vec<SocketAddr>,
    /// Admin listener (GET /metrics); "" turns it off. Default 127.0.0.1:9425.
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin_listen: Option<String>,
    /// Mail log file, or "-" for stderr (default).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<String>,
    /// SIZE limit in bytes (RFC 1870); larger messages get 552 5.3.4. Default 10 MiB.
    #[arg(long, value_name = "BYTES")]
    pub message_size_max: Option<usize>,
    /// Recipients per message (>= 100); the next RCPT gets 452 4.5.3.
    #[arg(long, value_name = "N")]
    pub recipients_max: Option<usize>,
    /// Messages per connection; then 421 4.7.0.
    #[arg(long, value_name = "N")]
    pub messages_per_connection_max: Option<u32>,
    /// RFC 5321 §4.5.3.2.7: wait for the next command. Default 300.
    #[arg(long, value_name = "SECS")]
    pub timeout_command_secs: Option<u64>,
    /// RFC 5321 §4.5.3.2.5: wait for each DATA block. Default 180.
    #[arg(long, value_name = "SECS")]
    pub timeout_data_block_secs: Option<u64>,
    /// Minimum average bytes/s during DATA/BDAT, checked after --data-rate-window-secs; slower clients get 421 4.4.2.
    #[arg(long, value_name = "BYTES")]
    pub min_data_rate: Option<u64>,
    /// Window for --min-data-rate. Default 30.
    #[arg(long, value_name = "SECS")]
    pub data_rate_window_secs: Option<u64>,
    /// Delivery: TCP connect timeout. Default 30.
    #[arg(long, value_name = "SECS")]
    pub client_connect_timeout_secs: Option<u64>,
    /// Delivery: RFC 5321 §4.5.3.2.1-4 greeting and command replies. Default 300.
    #[arg(long, value_name = "SECS")]
    pub client_command_timeout_secs: Option<u64>,
    /// Delivery: RFC 5321 §4.5.3.2.5-6 data blocks and the reply to the final dot. Default 180/600.
    #[arg(long, value_name = "SECS")]
    pub client_data_timeout_secs: Option<u64>,
    /// Delivery: open connections per downstream host per shard. Default 16.
    #[arg(long, value_name = "N")]
    pub connections_per_host: Option<usize>,
    /// Delivery: first retry delay, doubled per round, capped by --retry-max-secs. Default 1.
    #[arg(long, value_name = "SECS")]
    pub retry_first_secs: Option<u64>,
    /// Delivery: longest retry delay. Default 600.
    #[arg(long, value_name = "SECS")]
    pub retry_max_secs: Option<u64>,
    /// Delivery: give up (keep in spool/failed) after this long. Default 5 days.
    #[arg(long, value_name = "SECS")]
    pub queue_lifetime_secs: Option<u64>,
    /// Undelivered messages per shard before new mail gets 452 4.3.1. Default 100000.
    #[arg(long, value_name = "N")]
    pub queue_max: Option<usize>,
    /// Message bytes delivery holds in memory per shard (not a refusal bound: see --spool-bytes-max). Default 1 GiB.
    #[arg(long, value_name = "BYTES")]
    pub queue_bytes_max: Option<u64>,
}

/// A list of CPU numbers (a newtype so clap takes "0,2-3" as one value).
#[derive(Clone, Debug)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim) {
        let bad = |_| format!("{part:?}: expected N or N-M");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(bad)?, b.parse().map_err(bad)?);
                if a > b {
                    return Err(format!("{part:?}: empty range"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(bad)?),
        }
    }
    Ok(CpuList(cpus))
}

/// `DOMAIN=HOST[:PORT][,…]`, each host as `[routes]` reads it.
fn parse_route(s: &str) -> Result<(String, Vec<RouteHost>), String> {
    let (domain, hosts) = s.split_once('=').ok_or("expected DOMAIN=HOST[:PORT][,HOST[:PORT]…]")?;
    let hosts = hosts
        .split(',')
        .map(|h| h.parse::<RouteHost>().map_err(|e| format!("{h:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((domain.trim().to_ascii_lowercase(), hosts))
}

impl RunArgs {
    /// The file (or the built-in default), then the flags, then validation.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if !c.listener.is_empty() && (!self.listen.is_empty() || !self.relay_domains.is_empty()) {
            return Err(ConfigError("--listen/--relay-domain: the config file has [[listener]] tables; set each listener's address and RAT there".into()));
        }
        if !self.listen.is_empty() {
            c.listen = self.listen;
        }
        if !self.dns.is_empty() {
            c.dns.servers = self.dns;
        }
        set(&mut c.admin_listen, self.admin_listen);
        if !self.relay_domains.is_empty() {
            c.relay_domains = self.relay_domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        }
        if !self.routes.is_empty() {
            c.routes = self.routes.into_iter().collect();
        }
        set(&mut c.cores, self.cores);
        set(&mut c.cpu_set, self.cpu_set.map(|l| l.0));
        set(&mut c.spin_before_park_us, self.spin_before_park_us);
        set(&mut c.coalesce_us, self.coalesce_us);
        set(&mut c.spool_dir, self.spool_dir);
        set(&mut c.spool_bytes_max, self.spool_bytes_max);
        set(&mut c.hostname, self.hostname);
        set(&mut c.max_connections, self.max_connections);
        set(&mut c.shutdown_grace_secs, self.shutdown_grace_secs);
        set(&mut c.log_file, self.log_file);
        set(&mut c.session.message_bytes_max, self.message_size_max);
        set(&mut c.session.recipients_max, self.recipients_max);
        set(&mut c.session.messages_per_connection_max, self.messages_per_connection_max);
        let t = &mut c.timeouts;
        set(&mut t.command_secs, self.timeout_command_secs);
        set(&mut t.data_block_secs, self.timeout_data_block_secs);
        set(&mut t.data_rate_min_bytes_per_sec, self.min_data_rate);
        set(&mut t.data_rate_window_secs, self.data_rate_window_secs);
        set(&mut t.client_connect_secs, self.client_connect_timeout_secs);
        set(&mut t.client_greeting_secs, self.client_command_timeout_secs);
        set(&mut t.client_command_secs, self.client_command_timeout_secs);
        set(&mut t.client_data_block_secs, self.client_data_timeout_secs);
        set(&mut t.client_data_termination_secs, self.client_data_timeout_secs);
        let d = &mut c.delivery;
        set(&mut d.connections_per_host_max, self.connections_per_host);
        set(&mut d.retry_first_secs, self.retry_first_secs);
        set(&mut d.retry_max_secs, self.retry_max_secs);
        set(&mut d.queue_lifetime_secs, self.queue_lifetime_secs);
        set(&mut d.queue_messages_max, self.queue_max);
        set(&mut d.queue_bytes_max, self.queue_bytes_max);
        c.validate().map_err(|(key, msg)| ConfigError(format!("{key}: {msg}")))?;
        Ok(c)
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_defaults_and_routes_parse() {
        let cli = Cli::parse_from(["portcullis", "--route", "*=127.0.0.1:1,127.0.0.1:2", "--relay-domain", "A.test", "--cores", "1", "--cpu-set", "0,2-3"]);
        let c = cli.run.into_config().unwrap();
        assert_eq!(c.cpu_set, vec![0, 2, 3]);
        assert_eq!(c.routes["*"].len(), 2);
        assert_eq!(c.relay_domains, vec!["a.test"]);
        assert_eq!(c.cores, 1);
    }

    #[test]
    fn spool_bytes_max_flag_overrides_the_file() {
        let default = Cli::parse_from(["portcullis"]).run.into_config().unwrap();
        let set = Cli::parse_from(["portcullis", "--spool-bytes-max", "5000000"]).run.into_config().unwrap();
        assert_eq!(default.spool_bytes_max, crate::limits::SPOOL_BYTES_MAX);
        assert_eq!(set.spool_bytes_max, 5_000_000);
        let file = Config::from_toml("spool_bytes_max = 7\n").unwrap();
        assert_eq!(file.spool_bytes_max, 7);
    }

    #[test]
    fn spin_before_park_flag_overrides_the_file_and_is_bounded() {
        let set = Cli::parse_from(["portcullis", "--spin-before-park-us", "50"]).run.into_config().unwrap();
        assert_eq!(set.spin_before_park_us, 50);
        let over = (crate::limits::SPIN_BEFORE_PARK_US_MAX + 1).to_string();
        let err = Cli::parse_from(["portcullis", "--spin-before-park-us", over.as_str()]).run.into_config().unwrap_err();
        assert!(err.0.starts_with("spin_before_park_us:"), "{}", err.0);
        assert_eq!(Cli::parse_from(["portcullis", "--coalesce-us", "0"]).run.into_config().unwrap().coalesce_us, 0);
        let over = (crate::limits::COALESCE_US_MAX + 1).to_string();
        let err = Cli::parse_from(["portcullis", "--coalesce-us", over.as_str()]).run.into_config().unwrap_err();
        assert!(err.0.starts_with("coalesce_us:"), "{}", err.0);
    }

    #[test]
    fn route_flags_take_host_names_and_usedns() {
        let cli = Cli::parse_from(["portcullis", "--route", "example.test=mx.example:2525,10.0.0.1", "--route", ".example.net=USEDNS"]);
        let c = cli.run.into_config().unwrap();
        assert_eq!(c.routes["example.test"], vec![RouteHost::Name { host: "mx.example".into(), port: 2525 }, RouteHost::Addr("10.0.0.1:25".parse().unwrap())]);
        assert_eq!(c.routes[".example.net"], vec![RouteHost::UseDns]);
    }

    #[test]
    fn bad_route_is_rejected_by_the_parser() {
        assert!(Cli::try_parse_from(["portcullis", "--route", "example.test=mx..example:25"]).is_err());
        assert!(Cli::try_parse_from(["portcullis", "--route", "example.test=mx.example:0"]).is_err());
        assert!(Cli::try_parse_from(["portcullis", "--route", "example.test"]).is_err());
    }
}
