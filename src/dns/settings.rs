//! The `[dns]` section of the configuration (CONFIG.md) and where the
//! nameservers come from: `servers` (or `--dns`) when given, else the
//! `nameserver` lines of /etc/resolv.conf.
//!
//! Read once at start; `config` embeds [`DnsSettings`] and calls
//! `validate` (check-config) and `nameservers` (start-up), then each shard
//! builds its `Resolver` from the result.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::limits::{
    DNS_ATTEMPTS_MAX, DNS_CACHE_ENTRIES_MAX, DNS_HAT_LOOKUP_TIMEOUT_MS_MAX, DNS_HAT_LOOKUP_TIMEOUT_MS_MIN, DNS_SERVERS_MAX,
    DNS_TIMEOUT_MS_MAX, DNS_TIMEOUT_MS_MIN,
};

/// Where the system resolver's configuration lives (resolv.conf(5)).
pub const RESOLV_CONF_PATH: &str = "/etc/resolv.conf";

/// `[dns]`: nameservers, per-attempt timeout, attempts, cache size per
/// shard and the bound on HAT lookups at connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSettings {
    /// Empty: the nameservers of /etc/resolv.conf (port 53).
    pub servers: Vec<SocketAddr>,
    /// One attempt (one server, UDP and a TCP retry) waits this long.
    pub timeout_ms: u64,
    /// Attempts per query, rotating over the servers.
    pub attempts: u32,
    /// Cached answers per shard.
    pub cache_entries: usize,
    /// The most that PTR + DNS-list lookups may hold a banner.
    pub hat_lookup_timeout_ms: u64,
    /// The servers in `servers` validate DNSSEC and the path to them is
    /// trusted (a validating resolver on loopback): their AD bit makes an
    /// answer `Secured::Secure` and their SERVFAIL `Bogus` (RFC 7672
    /// §2.1.3). Off: no answer is secure, so DANE never applies.
    pub trust_ad: bool,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            timeout_ms: 2_000,
            attempts: 2,
            cache_entries: 100_000,
            hat_lookup_timeout_ms: 3_000,
            trust_ad: false,
        }
    }
}

impl DnsSettings {
    /// Range checks for check-config and start-up: `Err((key, why))`, the
    /// key as the operator writes it (`dns.timeout_ms`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, why: String| Err((format!("dns.{key}"), why));
        if self.servers.len() > DNS_SERVERS_MAX {
            return fail(
                "servers",
                format!("at most {DNS_SERVERS_MAX} servers, {} given", self.servers.len()),
            );
        }
        if let Some(server) = self.servers.iter().find(|s| s.port() == 0 || s.ip().is_unspecified()) {
            return fail("servers", format!("{server} is not an address a query can be sent to"));
        }
        if !(DNS_TIMEOUT_MS_MIN..=DNS_TIMEOUT_MS_MAX).contains(&self.timeout_ms) {
            return fail(
                "timeout_ms",
                format!("must be {DNS_TIMEOUT_MS_MIN}-{DNS_TIMEOUT_MS_MAX}, is {}", self.timeout_ms),
            );
        }
        if !(1..=DNS_ATTEMPTS_MAX).contains(&self.attempts) {
            return fail("attempts", format!("must be 1-{DNS_ATTEMPTS_MAX}, is {}", self.attempts));
        }
        if !(1..=DNS_CACHE_ENTRIES_MAX).contains(&self.cache_entries) {
            return fail(
                "cache_entries",
                format!("must be 1-{DNS_CACHE_ENTRIES_MAX}, is {}", self.cache_entries),
            );
        }
        let hat = DNS_HAT_LOOKUP_TIMEOUT_MS_MIN..=DNS_HAT_LOOKUP_TIMEOUT_MS_MAX;
        if !hat.contains(&self.hat_lookup_timeout_ms) {
            let (min, max) = (hat.start(), hat.end());
            return fail(
                "hat_lookup_timeout_ms",
                format!("must be {min}-{max}, is {}", self.hat_lookup_timeout_ms),
            );
        }
        Ok(())
    }

    /// The nameservers to ask: `servers` when given, else those of
    /// /etc/resolv.conf. As resolv.conf(5) says, a missing file or one
    /// without nameserver lines means the server on the local machine
    /// (127.0.0.1:53), so start-up never fails for want of DNS; an
    /// unreadable file is an error naming it.
    pub fn nameservers(&self) -> Result<Vec<SocketAddr>, String> {
        if !self.servers.is_empty() {
            return Ok(self.servers.clone());
        }
        match std::fs::read_to_string(RESOLV_CONF_PATH) {
            Ok(text) => Ok(or_local_server(parse_resolv_conf(&text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(or_local_server(Vec::new())),
            Err(e) => Err(format!("{RESOLV_CONF_PATH}: {e} (set [dns] servers or --dns)")),
        }
    }

    /// The total time one query may take: every attempt waiting out its
    /// timeout.
    pub fn query_bound_ms(&self) -> u64 {
        self.timeout_ms.saturating_mul(u64::from(self.attempts))
    }
}

/// resolv.conf(5)'s default when no nameserver is named.
fn or_local_server(servers: Vec<SocketAddr>) -> Vec<SocketAddr> {
    if servers.is_empty() {
        vec![SocketAddr::from(([127, 0, 0, 1], 53))]
    } else {
        servers
    }
}

/// The `nameserver ADDRESS` lines of a resolv.conf text, port 53, in file
/// order, at most `DNS_SERVERS_MAX`. Comments (`#`, `;`), other options and
/// unparseable addresses are skipped; so are scoped IPv6 addresses
/// (`fe80::1%eth0`), which would need an interface index.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(address)) => address.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .take(DNS_SERVERS_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.1\n  nameserver\t2001:db8::53 # v6\n\
                    ;nameserver 10.9.9.9\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\nnameserver 10.0.0.2\n";
        let servers: Vec<String> = parse_resolv_conf(text).iter().map(|s| s.to_string()).collect();
        assert_eq!(servers, ["10.0.0.1:53", "[2001:db8::53]:53", "10.0.0.2:53"]);
    }

    #[test]
    fn resolv_conf_without_nameservers_is_empty() {
        assert!(parse_resolv_conf("").is_empty());
        assert!(parse_resolv_conf("search a.example\nnameserver10.0.0.1\n").is_empty());
        assert_eq!(or_local_server(parse_resolv_conf("")), ["127.0.0.1:53".parse().unwrap()]);
        let many: String = (1..=20).map(|i| format!("nameserver 10.0.0.{i}\n")).collect();
        assert_eq!(parse_resolv_conf(&many).len(), DNS_SERVERS_MAX);
    }

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let settings = DnsSettings::default();
        assert_eq!(settings, toml::from_str::<DnsSettings>("").unwrap());
        assert_eq!(
            (settings.timeout_ms, settings.attempts, settings.cache_entries),
            (2_000, 2, 100_000)
        );
        assert_eq!(settings.hat_lookup_timeout_ms, 3_000);
        assert!(settings.servers.is_empty());
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn toml_keys_parse_and_unknown_keys_are_refused() {
        let settings: DnsSettings = toml::from_str("servers = [\"127.0.0.1:5353\", \"[::1]:53\"]\ntimeout_ms = 500").unwrap();
        assert_eq!(
            settings.servers,
            vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!(settings.timeout_ms, 500);
        assert_eq!(settings.attempts, 2);
        assert_eq!(settings.nameservers().unwrap(), settings.servers);
        assert!(toml::from_str::<DnsSettings>("timeout = 5").is_err());
    }

    #[test]
    fn the_ad_bit_is_trusted_only_when_configured() {
        assert!(!DnsSettings::default().trust_ad, "an untrusted path never makes DANE apply");
        let trusted: DnsSettings = toml::from_str("trust_ad = true").unwrap();
        assert!(trusted.trust_ad);
        assert!(toml::from_str::<DnsSettings>("trust_ad = \"yes\"").is_err());
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let key_of = |settings: DnsSettings| settings.validate().unwrap_err().0;
        let base = DnsSettings::default();
        assert_eq!(
            key_of(DnsSettings {
                timeout_ms: 0,
                ..base.clone()
            }),
            "dns.timeout_ms"
        );
        assert_eq!(
            key_of(DnsSettings {
                attempts: 0,
                ..base.clone()
            }),
            "dns.attempts"
        );
        assert_eq!(
            key_of(DnsSettings {
                cache_entries: 0,
                ..base.clone()
            }),
            "dns.cache_entries"
        );
        assert_eq!(
            key_of(DnsSettings {
                hat_lookup_timeout_ms: 10,
                ..base.clone()
            }),
            "dns.hat_lookup_timeout_ms"
        );
        assert_eq!(
            key_of(DnsSettings {
                servers: vec!["127.0.0.1:0".parse().unwrap()],
                ..base.clone()
            }),
            "dns.servers"
        );
        let many = (1..=9).map(|i| SocketAddr::from(([10, 0, 0, i], 53))).collect();
        assert_eq!(key_of(DnsSettings { servers: many, ..base }), "dns.servers");
    }
}
