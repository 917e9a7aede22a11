//! SMTP routes (`[routes]`, ESA's "SMTP Routes"): which downstream hosts
//! mail for a recipient domain goes to, as the operator wrote them.
//!
//! Where it sits: `Config.routes` holds the file's entries as
//! [`RouteHost`]s; `Policy` compiles them into [`Routes`] (hash maps, one
//! lookup per RCPT or delivery round); `crate::routing` turns the matching
//! entries into socket addresses with the shard's resolver, for delivery
//! and call-ahead alike.
//!
//! Keys, as ESA reads them: `"example.com"` is that domain only,
//! `".example.net"` any subdomain of example.net (any depth; the longest
//! suffix wins), `"*"` every other domain. A domain no key matches is
//! routed by DNS (MX, then A/AAAA).
//!
//! Entries: `"10.0.0.11"`, `"10.0.0.11:2525"`, `"2001:db8::1"`,
//! `"[2001:db8::1]:25"`, `"mail1.example.com"`, `"mail1.example.com:2525"`
//! (port 25 when none is given), or `"USEDNS"` (any case): the recipient
//! domain's own MX, then A/AAAA, at that place in the list.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hashbrown::HashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::{ROUTE_HOSTS_MAX, SMTP_PORT};

/// The route key of the default route.
pub const DEFAULT_ROUTE: &str = "*";

/// One entry of a route: where to try, in the order written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteHost {
    /// An IP literal, with its port (25 when none was written).
    Addr(SocketAddr),
    /// A host name (lower case, no trailing dot), resolved to its A and
    /// AAAA addresses when used.
    Name { host: String, port: u16 },
    /// ESA's USEDNS: the recipient domain's MX, then its A/AAAA.
    UseDns,
}

impl RouteHost {
    /// Whether this entry may name a static call-ahead server: a server is
    /// a host or an address, never "the recipient's DNS" (static servers
    /// take no route, so USEDNS means nothing there).
    pub fn is_static_server(&self) -> bool {
        !matches!(self, RouteHost::UseDns)
    }
}

impl FromStr for RouteHost {
    type Err = String;

    fn from_str(text: &str) -> Result<RouteHost, String> {
        let s = text.trim();
        if s.eq_ignore_ascii_case("USEDNS") {
            return Ok(RouteHost::UseDns);
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return check_port(addr.port()).map(|_| RouteHost::Addr(addr));
        }
        // A bare IP literal, or a bracketed IPv6 one without a port.
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(RouteHost::Addr(SocketAddr::new(ip, SMTP_PORT)));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("{port:?} is not a port"))
                    .and_then(check_port)?,
            ),
            None => (s, SMTP_PORT),
        };
        parse_host_name(host).map(|host| RouteHost::Name { host, port })
    }
}

/// Port 0 cannot be connected to.
fn check_port(port: u16) -> Result<u16, String> {
    match port {
        0 => Err("port 0 is not a port".into()),
        port => Ok(port),
    }
}

/// A host name in RFC 1035 preferred syntax, lower case, without the
/// trailing dot. A name ending in a numeric label is a mistyped IP
/// address (RFC 1123 §2.1: a top-level label is never all digits).
fn parse_host_name(host: &str) -> Result<String, String> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host == "usedns" {
        return Err("USEDNS takes no port".into());
    }
    if host.contains([':', '[', ']']) {
        return Err("an IPv6 address with a port is written [ADDRESS]:PORT".into());
    }
    if !super::is_domain(&host) {
        return Err("not a host name".into());
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not an IP address, and a host name does not end in a number".into());
    }
    Ok(host)
}

impl fmt::Display for RouteHost {
    /// The form `FromStr` reads back (the port always written).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteHost::Addr(addr) => write!(f, "{addr}"),
            RouteHost::Name { host, port } => write!(f, "{host}:{port}"),
            RouteHost::UseDns => f.write_str("USEDNS"),
        }
    }
}

impl<'de> Deserialize<'de> for RouteHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RouteHost, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|why| {
            serde::de::Error::custom(format!(
                "route host \"{text}\": {why} (expected HOST[:PORT], IP, [IPv6]:PORT or USEDNS)"
            ))
        })
    }
}

impl Serialize for RouteHost {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The compiled `[routes]`: exact domains, `.suffix` keys, the default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Routes {
    /// "example.com" → hosts.
    exact: HashMap<String, Vec<RouteHost>>,
    /// ".example.net" (with its leading dot) → hosts.
    subdomains: HashMap<String, Vec<RouteHost>>,
    /// "*".
    default: Option<Vec<RouteHost>>,
}

impl Routes {
    /// Checks and compiles the file's routes. Errors name the key
    /// ("routes") and the bad route key, quoted (for the line).
    pub fn compile(routes: &BTreeMap<String, Vec<RouteHost>>) -> Result<Routes, (String, String)> {
        let bad = |msg: String| Err(("routes".to_string(), msg));
        let mut compiled = Routes::default();
        for (key, hosts) in routes {
            if hosts.is_empty() {
                return bad(format!("route \"{key}\" has no hosts"));
            }
            if hosts.len() > ROUTE_HOSTS_MAX {
                return bad(format!(
                    "route \"{key}\" has more than {ROUTE_HOSTS_MAX} hosts"
                ));
            }
            let normal = key.trim_end_matches('.').to_ascii_lowercase();
            let replaced = if normal == DEFAULT_ROUTE {
                compiled.default.replace(hosts.clone()).is_some()
            } else if let Some(parent) = normal.strip_prefix('.').filter(|p| super::is_domain(p)) {
                compiled
                    .subdomains
                    .insert(format!(".{parent}"), hosts.clone())
                    .is_some()
            } else if super::is_domain(&normal) {
                compiled.exact.insert(normal, hosts.clone()).is_some()
            } else {
                return bad(format!("\"{key}\" is not a domain, a .subdomain or \"*\""));
            };
            if replaced {
                return bad(format!(
                    "route \"{key}\" is given twice (keys are not case-sensitive)"
                ));
            }
        }
        Ok(compiled)
    }

    /// The route of `domain`: its exact key, else the longest `.suffix`
    /// key, else `"*"`. Returns the key as written in the file (lower
    /// case) and its hosts; None means "no route: use DNS".
    pub fn lookup(&self, domain: &str) -> Option<(&str, &[RouteHost])> {
        self.lookup_host(domain)
            .or_else(|| self.default.as_deref().map(|hosts| (DEFAULT_ROUTE, hosts)))
    }

    /// The route of a host an LDAP routing query named (`mailHost`,
    /// `callAhead`): its exact key, else the longest `.suffix` key — never
    /// `"*"`. The default route is for recipient domains no other route
    /// names; applied to LDAP hosts it would replace every directory
    /// answer with the default route's hosts (a site with `"*" =
    /// ["smarthost"]` could then never route by LDAP), so an LDAP host
    /// without a route of its own goes by DNS, as the seed says ("in any
    /// case where there is no SMTP Route present, a DNS lookup is
    /// performed").
    pub fn lookup_host(&self, domain: &str) -> Option<(&str, &[RouteHost])> {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        let lowered;
        let domain = if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = domain.to_ascii_lowercase();
            lowered.as_str()
        } else {
            domain
        };
        if let Some((key, hosts)) = self.exact.get_key_value(domain) {
            return Some((key.as_str(), hosts.as_slice()));
        }
        // Each dot starts a suffix; the first dot gives the longest one.
        let suffixes = domain
            .char_indices()
            .filter(|&(_, c)| c == '.')
            .map(|(i, _)| &domain[i..]);
        for suffix in suffixes {
            if let Some((key, hosts)) = self.subdomains.get_key_value(suffix) {
                return Some((key.as_str(), hosts.as_slice()));
            }
        }
        None
    }

    /// Whether no route is configured at all (everything goes by DNS).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.subdomains.is_empty() && self.default.is_none()
    }
}

#[cfg(test)]
mod tests;
