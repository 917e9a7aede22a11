//! The operator's configuration as a file (TOML, then CLI flags), validated,
//! and split into what it becomes at run time.
//!
//! `Config` is the file format, keys as operators write them. It is checked
//! (`validate`) and then split: `Settings` (process: sockets, shards, spool,
//! fixed at start) and `Policy` (tables, limits, routes: a reloadable
//! snapshot per shard, see `policy.rs`). `reload.rs` rebuilds both from the
//! same file and flags on SIGHUP. Sections follow the SMTP phases: where we
//! listen, what the session allows, where mail goes.

pub mod access;
pub mod auth;
pub mod bounce;
pub mod bounce_verification;
pub mod callahead;
pub mod destination;
pub mod flow;
pub mod ldap;
pub mod policy;
pub mod reload;
pub mod routes;
pub mod settings;
pub mod tls;

pub use policy::{Policy, PolicyCell};
pub use routes::{RouteHost, Routes};
pub use settings::Settings;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::limits;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses every shard listens on (SO_REUSEPORT).
    pub listen: Vec<SocketAddr>,
    /// Shards (one pinned executor each); 0 = one per CPU of `cpu_set`.
    pub cores: usize,
    /// CPUs the shards are pinned to, in order (wrapping); empty = every online CPU.
    pub cpu_set: Vec<usize>,
    /// How long an idle shard polls for work before it parks its executor
    /// (glommio's `spin_before_park`), microseconds; 0 = park at once.
    /// Parking costs CPU of its own (a membarrier and an io_uring wait and
    /// wake-up), so a short spin can cost less than the park it avoids.
    pub spin_before_park_us: u64,
    /// A shard that waits for its CPU a good share of the time and gets
    /// events faster than one per this many microseconds yields its CPU to
    /// whoever waits for it (or, if nobody does, sleeps this long) in place
    /// of parking, so one wake-up takes many events (see `coalesce.rs`);
    /// 0 = always park.
    pub coalesce_us: u64,
    pub spool_dir: PathBuf,
    /// Undelivered message bytes on disk, all shards together, before new
    /// mail gets 452 4.3.1; 0 = no bound but the disk.
    pub spool_bytes_max: u64,
    /// Our name in the greeting, EHLO and Received headers.
    pub hostname: String,
    /// Domains we accept mail for. Everything else is refused: never an open relay.
    pub relay_domains: Vec<String>,
    /// `[routes]`: recipient domain ("example.com"), subdomains
    /// (".example.net") or "*" → downstream hosts, tried in order
    /// (`routes.rs`). A domain without a route goes by DNS.
    pub routes: BTreeMap<String, Vec<RouteHost>>,
    pub max_connections: usize,
    pub shutdown_grace_secs: u64,
    /// Mail log destination; "-" (default) is stderr.
    pub log_file: String,
    pub session: SessionLimits,
    pub timeouts: Timeouts,
    pub delivery: DeliverySettings,
    /// Admin listener (GET /metrics); "" = off.
    pub admin_listen: String,
    /// `[[listener]]` tables; empty = the `listen`/`relay_domains` shorthand.
    pub listener: Vec<access::ListenerConfig>,
    /// `[[hat.NAME]]`: ordered sender groups per HAT.
    pub hat: BTreeMap<String, Vec<access::HatRow>>,
    /// `[[rat.NAME]]`: ordered recipient rows per RAT.
    pub rat: BTreeMap<String, Vec<access::RatRow>>,
    /// `[default_policy]`: what every mail flow policy inherits (partial table).
    pub default_policy: toml::Table,
    /// `[policy.NAME]`: partial tables over `[default_policy]` (and ESA's
    /// values for the five predefined names).
    pub policy: BTreeMap<String, toml::Table>,
    pub sender_verification_exception: Vec<access::SenderExceptionRow>,
    /// `[dns]`: nameservers, timeouts, cache, the HAT lookup bound.
    pub dns: crate::dns::DnsSettings,
    /// `[rate_limits]`: counter tables and token leases.
    pub rate_limits: crate::policy::rate::RateSettings,
    /// `[callahead.NAME]`: SMTP call-ahead profiles, enabled per public listener.
    pub callahead: BTreeMap<String, callahead::CallaheadConfig>,
    /// `[ldap.server.NAME]`, `[ldap.query."NAME"]`: directory servers and
    /// the routing and accept queries listeners name.
    pub ldap: ldap::LdapConfig,
    /// `[tls]`: our certificate and key, and the CA for client certificates.
    pub tls: tls::TlsConfig,
    /// `[destination.default]`, `[destination."DOMAIN"]`: delivery's
    /// destination controls (TLS for now; `destination.rs`).
    pub destination: BTreeMap<String, destination::DestinationConfig>,
    /// `[bounce_profile.NAME]`: retries, time in queue and bounces
    /// (`bounce.rs`); `default` always exists (`bounce::effective`).
    pub bounce_profile: BTreeMap<String, bounce::BounceProfileConfig>,
    /// `[auth]`: the SMTP AUTH backend and the failed-AUTH limit per client IP.
    pub auth: auth::AuthConfig,
    /// `[bounce_verification]`: BATV prvs keys (current first), the tag
    /// lifetime, and whether untagged bounces are accepted; no keys = off.
    pub bounce_verification: bounce_verification::BounceVerificationConfig,
}

/// Per-session limits (HAT mail flow policies will refine these per sender group).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionLimits {
    pub message_bytes_max: usize,
    pub recipients_max: usize,
    pub messages_per_connection_max: u32,
}

/// RFC 5321 §4.5.3.2 timeouts, server and client side, in seconds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub command_secs: u64,
    pub data_block_secs: u64,
    pub data_rate_min_bytes_per_sec: u64,
    pub data_rate_window_secs: u64,
    pub client_connect_secs: u64,
    pub client_greeting_secs: u64,
    pub client_command_secs: u64,
    pub client_data_block_secs: u64,
    pub client_data_termination_secs: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    pub connections_per_host_max: usize,
    pub pool_idle_secs: u64,
    pub messages_per_connection_max: u32,
    pub retry_first_secs: u64,
    pub retry_max_secs: u64,
    pub queue_lifetime_secs: u64,
    /// Undelivered messages one shard holds before new mail gets 452 4.3.1.
    pub queue_messages_max: usize,
    /// Message bytes delivery on one shard holds in memory (the spool does
    /// not refuse on it: `spool_bytes_max` bounds what is on disk).
    pub queue_bytes_max: u64,
}

impl Default for Config {
    /// The safe built-in default: loopback only, mail for example.test only,
    /// relayed to 127.0.0.1:2526, spool under the working directory.
    fn default() -> Config {
        Config {
            listen: vec!["127.0.0.1:2525".parse().unwrap()],
            cores: 0,
            cpu_set: Vec::new(),
            spin_before_park_us: limits::SPIN_BEFORE_PARK_US,
            coalesce_us: limits::COALESCE_US,
            spool_dir: PathBuf::from("spool"),
            spool_bytes_max: limits::SPOOL_BYTES_MAX,
            hostname: default_hostname(),
            relay_domains: vec!["example.test".into()],
            routes: BTreeMap::from([("*".to_string(), vec![RouteHost::Addr("127.0.0.1:2526".parse().unwrap())])]),
            max_connections: limits::CONNECTIONS_MAX,
            shutdown_grace_secs: limits::SHUTDOWN_GRACE_SECS,
            log_file: "-".into(),
            session: SessionLimits::default(),
            timeouts: Timeouts::default(),
            delivery: DeliverySettings::default(),
            admin_listen: limits::ADMIN_LISTEN.into(),
            listener: Vec::new(),
            hat: BTreeMap::new(),
            rat: BTreeMap::new(),
            default_policy: toml::Table::new(),
            policy: BTreeMap::new(),
            sender_verification_exception: Vec::new(),
            dns: crate::dns::DnsSettings::default(),
            rate_limits: crate::policy::rate::RateSettings::default(),
            callahead: BTreeMap::new(),
            ldap: ldap::LdapConfig::default(),
            tls: tls::TlsConfig::default(),
            destination: BTreeMap::new(),
            bounce_profile: BTreeMap::new(),
            auth: auth::AuthConfig::default(),
            bounce_verification: bounce_verification::BounceVerificationConfig::default(),
        }
    }
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            message_bytes_max: limits::MESSAGE_BYTES_MAX,
            recipients_max: limits::RECIPIENTS_PER_MESSAGE_MAX,
            messages_per_connection_max: limits::MESSAGES_PER_CONNECTION_MAX,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command_secs: limits::TIMEOUT_COMMAND_SECS,
            data_block_secs: limits::TIMEOUT_DATA_BLOCK_SECS,
            data_rate_min_bytes_per_sec: limits::DATA_RATE_BYTES_PER_SEC_MIN,
            data_rate_window_secs: limits::DATA_RATE_WINDOW_SECS,
            client_connect_secs: limits::CLIENT_CONNECT_TIMEOUT_SECS,
            client_greeting_secs: limits::CLIENT_GREETING_TIMEOUT_SECS,
            client_command_secs: limits::CLIENT_COMMAND_TIMEOUT_SECS,
            client_data_block_secs: limits::CLIENT_DATA_BLOCK_TIMEOUT_SECS,
            client_data_termination_secs: limits::CLIENT_DATA_TERMINATION_TIMEOUT_SECS,
        }
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            connections_per_host_max: limits::POOL_CONNECTIONS_PER_HOST_MAX,
            pool_idle_secs: limits::POOL_IDLE_SECS,
            messages_per_connection_max: limits::POOL_MESSAGES_PER_CONNECTION_MAX,
            retry_first_secs: limits::RETRY_FIRST_SECS,
            retry_max_secs: limits::RETRY_MAX_SECS,
            queue_lifetime_secs: limits::QUEUE_LIFETIME_SECS,
            queue_messages_max: limits::DELIVERY_QUEUE_MESSAGES_MAX,
            queue_bytes_max: limits::DELIVERY_QUEUE_BYTES_MAX,
        }
    }
}

fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A config problem, naming the key and (for file errors) the line.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// Parse a TOML file. Unknown keys and wrong types are errors naming the
    /// key and its line (serde + toml spans).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Config::from_toml(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            match line {
                // A bad route entry names its table like validate's errors do.
                Some(line) if table_of_line(text, line) == Some("routes") => ConfigError(format!("line {line}: routes: {}", e.message())),
                Some(line) => ConfigError(format!("line {line}: {}", e.message())),
                None => ConfigError(e.message().to_string()),
            }
        })?;
        if !config.listener.is_empty() {
            // The shorthand and [[listener]] tables would describe the same sockets twice.
            let raw: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError(e.message().to_string()))?;
            for key in ["listen", "relay_domains"] {
                if raw.contains_key(key) {
                    let line = line_of_key(text, key).map_or(String::new(), |l| format!("line {l}: "));
                    return Err(ConfigError(format!("{line}{key}: not with [[listener]] tables (give each listener its address and RAT)")));
                }
            }
        }
        // Semantic errors found after parsing carry the key and the line where it is.
        config.validate().map_err(|(key, msg)| match line_of(text, &key, &msg) {
            Some(line) => ConfigError(format!("line {line}: {key}: {msg}")),
            None => ConfigError(format!("{key}: {msg}")),
        })?;
        Ok(config)
    }

    /// Check what types cannot: returns the offending key and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, msg: String| Err((key.to_string(), msg));
        if self.listen.is_empty() && self.listener.is_empty() {
            return bad("listen", "at least one address is needed".into());
        }
        self.validate_listeners()?;
        if self.hostname.is_empty() || !is_domain(&self.hostname) {
            return bad("hostname", format!("{:?} is not a host name", self.hostname));
        }
        if self.relay_domains.is_empty() && self.listener.is_empty() {
            return bad("relay_domains", "at least one domain is needed".into());
        }
        for d in &self.relay_domains {
            if !is_domain(d) {
                return bad("relay_domains", format!("{d:?} is not a domain (wildcards are not allowed: never an open relay)"));
            }
        }
        // A relay domain without a route would go by its MX: back to us.
        let routes = Routes::compile(&self.routes)?;
        for d in &self.relay_domains {
            if routes.lookup(d).is_none() {
                return bad("routes", format!("relay domain {d:?} has no route (add it, or \"*\" = [\"USEDNS\"] if its MX is not us)"));
            }
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1".into());
        }
        if self.spin_before_park_us > limits::SPIN_BEFORE_PARK_US_MAX {
            return bad("spin_before_park_us", format!("at most {} (a spinning shard burns its CPU)", limits::SPIN_BEFORE_PARK_US_MAX));
        }
        if self.coalesce_us > limits::COALESCE_US_MAX {
            return bad("coalesce_us", format!("at most {} (every event may wait this long)", limits::COALESCE_US_MAX));
        }
        let s = &self.session;
        if s.message_bytes_max < 1024 {
            return bad("message_bytes_max", "must be at least 1024".into());
        }
        if s.recipients_max < limits::RECIPIENTS_PER_MESSAGE_MAX {
            // RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients.
            return bad("recipients_max", "RFC 5321 §4.5.3.1.8 requires at least 100".into());
        }
        let t = &self.timeouts;
        for (key, v) in [
            ("command_secs", t.command_secs),
            ("data_block_secs", t.data_block_secs),
            ("data_rate_window_secs", t.data_rate_window_secs),
            ("client_connect_secs", t.client_connect_secs),
            ("client_greeting_secs", t.client_greeting_secs),
            ("client_command_secs", t.client_command_secs),
            ("client_data_block_secs", t.client_data_block_secs),
            ("client_data_termination_secs", t.client_data_termination_secs),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1 second".into());
            }
        }
        let d = &self.delivery;
        if d.connections_per_host_max == 0 || d.queue_messages_max == 0 || d.messages_per_connection_max == 0 || d.queue_bytes_max == 0 {
            return bad("delivery", "connections_per_host_max, messages_per_connection_max, queue_messages_max and queue_bytes_max must be at least 1".into());
        }
        if d.retry_first_secs == 0 || d.retry_max_secs < d.retry_first_secs {
            return bad("retry_max_secs", "need 1 <= retry_first_secs <= retry_max_secs".into());
        }
        if !self.admin_listen.is_empty() && self.admin_listen.parse::<SocketAddr>().is_err() {
            return bad("admin_listen", format!("{:?} is not ADDR:PORT (or \"\" for off)", self.admin_listen));
        }
        self.dns.validate()?;
        self.rate_limits.validate()?;
        self.tls.validate()?;
        // Reading the files is the check (an unreadable key, a certificate
        // that does not parse, a key that does not fit it).
        crate::tls::ServerTls::load(&self.tls).map_err(|why| (why.split(' ').next().unwrap_or("tls").to_string(), why))?;
        self.auth.validate(&self.ldap)?;
        for (name, profile) in &self.callahead {
            profile.validate().map_err(|why| {
                let key = why.split(':').next().unwrap_or("callahead").to_string();
                (key, format!("callahead.{name}: {why}"))
            })?;
        }
        destination::validate(&self.destination)?;
        self.bounce_verification.validate()?;
        bounce::validate(&self.bounce_profile)?;
        let named = destination::bounce_profiles(&self.destination);
        bounce::validate_names(&self.bounce_profile, named.iter().map(String::as_str))?;
        // Compiling the access tables is their validation (HAT, RAT, policies).
        crate::policy::access::Access::compile(self)?;
        Ok(())
    }

    /// Names and addresses unique, within the bound.
    fn validate_listeners(&self) -> Result<(), (String, String)> {
        let listeners = &self.listener;
        if listeners.len() > limits::LISTENERS_MAX {
            return Err(("listener".into(), format!("at most {} listeners", limits::LISTENERS_MAX)));
        }
        for (i, l) in listeners.iter().enumerate() {
            if l.name.is_empty() || listeners[..i].iter().any(|o| o.name == l.name) {
                return Err(("name".into(), format!("listener names must be unique and not empty: {:?}", l.name)));
            }
            if listeners[..i].iter().any(|o| o.address == l.address) {
                return Err(("address".into(), format!("listener {:?}: address {} is used twice", l.name, l.address)));
            }
            if l.implicit_tls && !self.tls.enabled() {
                return Err(("implicit_tls".into(), format!("listener {:?}: implicit_tls needs [tls] certificate and private_key", l.name)));
            }
            if let Some(h) = &l.hostname {
                if !is_domain(h) {
                    return Err(("hostname".into(), format!("listener {:?}: {h:?} is not a host name", l.name)));
                }
            }
        }
        Ok(())
    }

    /// Split a validated config into process settings and the first policy snapshot.
    pub fn split(&self) -> (Settings, Policy) {
        (Settings::from_config(self), Policy::compile(self, 0))
    }

    /// The effective config as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}

/// Letters, digits, hyphens and dots, no empty label (RFC 1035 preferred syntax).
pub(crate) fn is_domain(s: &str) -> bool {
    s.len() <= limits::DOMAIN_BYTES_MAX
        && !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The line an error is on: the first quoted value of the message if the
/// text has it (a bad sender entry, a row), else the first line of `key`.
fn line_of(text: &str, key: &str, msg: &str) -> Option<usize> {
    let quoted = msg.split('"').nth(1).filter(|q| !q.is_empty());
    if let Some(q) = quoted {
        if let Some(i) = text.lines().position(|l| l.contains(&format!("\"{q}\"")) || l.contains(&format!("[{q}]"))) {
            return Some(i + 1);
        }
    }
    line_of_key(text, key)
}

/// The `[table]` header above 1-based `line`, if any.
fn table_of_line(text: &str, line: usize) -> Option<&str> {
    text.lines().take(line).filter_map(|l| l.trim().strip_prefix('[')?.split(']').next()).last().map(str::trim)
}

/// First line whose key (before '=') is `key`, 1-based.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.split('=').next().map(str::trim) == Some(key)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_not_an_open_relay() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.relay_domains, vec!["example.test"]);
        assert_eq!(c.listen[0].ip().to_string(), "127.0.0.1");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::from_toml("hostname = \"mx.test\"\nrelay_domain = [\"a.test\"]\n").unwrap_err();
        assert!(err.0.contains("line 2") && err.0.contains("relay_domain"), "{}", err.0);
    }

    #[test]
    fn wildcard_relay_domain_is_refused_with_line() {
        let err = Config::from_toml("hostname = \"mx.test\"\nrelay_domains = [\"*\"]\n").unwrap_err();
        assert!(err.0.starts_with("line 2: relay_domains"), "{}", err.0);
    }

    #[test]
    fn routes_match_the_domain_then_subdomain_keys_then_the_default() {
        let c = Config::from_toml(
            "[routes]\n\"example.test\" = [\"127.0.0.1:1\"]\n\".example.test\" = [\"127.0.0.1:3\"]\n\"*\" = [\"127.0.0.1:2\"]\n",
        )
        .unwrap();
        let (_, policy) = c.split();
        assert_eq!(policy.route_for("example.test").unwrap().0, "example.test");
        assert_eq!(policy.route_for("sub.example.test").unwrap().0, ".example.test");
        assert_eq!(policy.route_for("other.test").unwrap().0, "*");
    }

    #[test]
    fn a_relay_domain_needs_a_route_of_its_own_kind() {
        // ".example.test" covers its subdomains only, not example.test itself.
        let err = Config::from_toml("relay_domains = [\"example.test\"]\n[routes]\n\".example.test\" = [\"127.0.0.1:1\"]\n").unwrap_err();
        assert!(err.0.contains("relay domain \"example.test\" has no route"), "{}", err.0);
    }

    #[test]
    fn parking_keys_take_zero_to_their_bound_and_name_the_key_beyond() {
        let keys: [(&str, u64, u64, fn(&Config) -> u64); 2] = [
            ("spin_before_park_us", limits::SPIN_BEFORE_PARK_US_MAX, limits::SPIN_BEFORE_PARK_US, |c| c.spin_before_park_us),
            ("coalesce_us", limits::COALESCE_US_MAX, limits::COALESCE_US, |c| c.coalesce_us),
        ];
        for (key, max, default, get) in keys {
            assert_eq!(get(&Config::from_toml(&format!("{key} = 0\n")).unwrap()), 0);
            assert_eq!(get(&Config::from_toml(&format!("{key} = {max}\n")).unwrap()), max);
            let err = Config::from_toml(&format!("\n{key} = {}\n", max + 1)).unwrap_err();
            assert!(err.0.starts_with(&format!("line 2: {key}: at most")), "{}", err.0);
            assert!(Config::from_toml(&format!("{key} = -1\n")).is_err());
            assert_eq!(get(&Config::default()), default);
        }
    }
}
