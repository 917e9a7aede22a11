//! `[callahead.NAME]`: one SMTP call-ahead profile as the operator writes it
//! (CONFIG.md; seed "Validating Recipients Using an SMTP Server", with ESA's
//! ranges where the seed gives them). `callahead::Profile` compiles it into
//! what the owner shard and the probe pool use.

use serde::{Deserialize, Serialize};

use super::flow::check_reply_text;
use super::RouteHost;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ServerType {
    /// The route of the recipient's domain (LDAP routing, SMTP routes, MX, A).
    DeliveryHost,
    /// `static_servers`, round robin from the first; no SMTP routes.
    Static,
}

/// What a failed (or temporarily failed) validation answers the client.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    Accept,
    Reject,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    /// Decide and log, accept anyway (roll-out).
    Warn,
}

/// STARTTLS to the call-ahead server (RFC 3207): never, when offered
/// (else clear), or always (else the probe fails: nothing about the
/// recipient). The certificate is not checked; ours is presented when
/// `[tls]` has one.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ProbeTls {
    Off,
    Preferred,
    Required,
}

/// One `[callahead.NAME]` table; every key has CONFIG.md's default.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallaheadConfig {
    pub server_type: ServerType,
    /// `host[:port]` or an IP literal; names resolved MX then A.
    pub static_servers: Vec<RouteHost>,
    pub tls: ProbeTls,
    /// Our MAIL FROM in probes; "" = the null sender `<>`.
    pub mail_from: String,
    /// One validation request, however many servers it tries.
    pub validation_timeout_secs: u64,
    pub failure_action: FailureAction,
    pub failure_code: u16,
    pub failure_text: String,
    pub tempfail_action: FailureAction,
    /// 0 = pass the downstream's 4xx code and text through.
    pub tempfail_code: u16,
    pub tempfail_text: String,
    pub max_recipients_per_session: u32,
    pub max_connections_per_server: u32,
    pub cache_entries: u32,
    pub cache_ttl_secs: u64,
    pub negative_cache_ttl_secs: u64,
    pub negative_recheck_secs: u64,
    pub mode: Mode,
    /// Consecutive failures that open a server's breaker; 0 = off.
    pub breaker_failures: u32,
    pub breaker_open_secs: u64,
    /// Uncached probes one client IP may cause per minute; 0 = off.
    pub probes_per_client_per_minute: u32,
    pub catch_all_detection: bool,
    /// Local address probes are sent from; "" = the kernel's choice.
    pub source_address: String,
}

impl Default for CallaheadConfig {
    fn default() -> Self {
        CallaheadConfig {
            server_type: ServerType::DeliveryHost,
            static_servers: Vec::new(),
            tls: ProbeTls::Off,
            mail_from: String::new(),
            validation_timeout_secs: 30,
            failure_action: FailureAction::Reject,
            failure_code: 451,
            failure_text: "Recipient validation failed, try again later".into(),
            tempfail_action: FailureAction::Reject,
            tempfail_code: 0,
            tempfail_text: String::new(),
            max_recipients_per_session: 1000,
            max_connections_per_server: 5,
            cache_entries: 10_000,
            cache_ttl_secs: 900,
            negative_cache_ttl_secs: 900,
            negative_recheck_secs: 300,
            mode: Mode::Enforce,
            breaker_failures: 5,
            breaker_open_secs: 30,
            probes_per_client_per_minute: 0,
            catch_all_detection: false,
            source_address: String::new(),
        }
    }
}

impl CallaheadConfig {
    /// ESA's ranges (seed) and ours where the seed is silent. Err: "key: why".
    pub fn validate(&self) -> Result<(), String> {
        let range = |key: &str, v: u64, lo: u64, hi: u64| match (lo..=hi).contains(&v) {
            true => Ok(()),
            false => Err(format!("{key}: {v} is out of range {lo}–{hi}")),
        };
        range("validation_timeout_secs", self.validation_timeout_secs, 1, crate::limits::CALLAHEAD_TIMEOUT_SECS_MAX)?;
        range("max_recipients_per_session", self.max_recipients_per_session.into(), 1, 25_000)?;
        range("max_connections_per_server", self.max_connections_per_server.into(), 1, 100)?;
        range("cache_entries", self.cache_entries.into(), 100, 1_000_000)?;
        range("cache_ttl_secs", self.cache_ttl_secs, 60, 86_400)?;
        range("negative_cache_ttl_secs", self.negative_cache_ttl_secs, 60, 86_400)?;
        range("negative_recheck_secs", self.negative_recheck_secs, 10, 86_400)?;
        range("breaker_failures", self.breaker_failures.into(), 0, 1000)?;
        range("breaker_open_secs", self.breaker_open_secs, 1, 3600)?;
        range("probes_per_client_per_minute", self.probes_per_client_per_minute.into(), 0, 1_000_000)?;
        range("failure_code", self.failure_code.into(), 400, 599)?;
        if self.tempfail_code != 0 {
            range("tempfail_code", self.tempfail_code.into(), 400, 599)?;
        }
        for (key, text) in [("failure_text", &self.failure_text), ("tempfail_text", &self.tempfail_text)] {
            check_reply_text(text).map_err(|why| format!("{key}: {why}"))?;
        }
        if !self.mail_from.is_empty() && crate::smtp::address::parse_mailbox(&self.mail_from, false).is_err() {
            return Err(format!("mail_from: {:?} is not an address (\"\" means <>)", self.mail_from));
        }
        if !self.source_address.is_empty() && self.source_address.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("source_address: {:?} is not an IP address", self.source_address));
        }
        match (self.server_type, self.static_servers.is_empty()) {
            (ServerType::Static, true) => return Err("static_servers: a static profile needs at least one server".into()),
            (ServerType::DeliveryHost, false) => return Err("static_servers: only with server_type = \"static\"".into()),
            _ => {}
        }
        if let Some(bad) = self.static_servers.iter().find(|s| !s.is_static_server()) {
            return Err(format!("static_servers: {bad} is not a host (USEDNS is for routes)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(), String> {
        let c: CallaheadConfig = toml::from_str(text).map_err(|e| e.message().to_string())?;
        c.validate()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(parse(""), Ok(()));
    }

    #[test]
    fn esa_ranges_are_enforced() {
        for (text, key) in [
            ("max_recipients_per_session = 0", "max_recipients_per_session"),
            ("max_recipients_per_session = 25001", "max_recipients_per_session"),
            ("max_connections_per_server = 101", "max_connections_per_server"),
            ("cache_entries = 99", "cache_entries"),
            ("cache_ttl_secs = 59", "cache_ttl_secs"),
            ("negative_cache_ttl_secs = 86401", "negative_cache_ttl_secs"),
            ("validation_timeout_secs = 0", "validation_timeout_secs"),
            ("failure_code = 250", "failure_code"),
            ("tempfail_code = 399", "tempfail_code"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with(key), "{text}: {err}");
        }
        assert_eq!(parse("max_recipients_per_session = 25000\nmax_connections_per_server = 100"), Ok(()));
    }

    #[test]
    fn static_servers_go_with_the_static_type() {
        assert!(parse("server_type = \"static\"").unwrap_err().starts_with("static_servers"));
        assert!(parse("static_servers = [\"10.0.0.1\"]").unwrap_err().starts_with("static_servers"));
        assert_eq!(parse("server_type = \"static\"\nstatic_servers = [\"cah.example.com:25\", \"10.0.0.7\"]"), Ok(()));
        assert!(parse("server_type = \"static\"\nstatic_servers = [\"USEDNS\"]").unwrap_err().starts_with("static_servers"));
        assert!(parse("server_type = \"static\"\nstatic_servers = [\"bad..name\"]").is_err());
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        assert!(parse("servers = []").is_err());
        assert!(parse("mode = \"maybe\"").is_err());
        assert!(parse("mail_from = \"not an address\"").unwrap_err().starts_with("mail_from"));
        assert!(parse("source_address = \"nowhere\"").unwrap_err().starts_with("source_address"));
    }
}
