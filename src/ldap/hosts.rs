//! The host lists of an LDAP routing query: the values of the mail host
//! attribute (`mailHost`, delivery) and of the call-ahead server attribute
//! (`callAhead`), read into [`LdapHost`]s (seed, "Configuring LDAP Routing
//! Query Settings").
//!
//! Where it sits: the routing query's answer (an entry's attribute values,
//! as the LDAP thread hands them back) → [`parse_hosts`] → the hosts that
//! `routing::resolve_hosts` turns into addresses with the seed's port
//! rules ("SMTP Call-Ahead Query Routing"). Pure: no I/O, no DNS.
//!
//! What a value looks like: `smtp2.mydomain.com,smtp3.mydomain.com:9025`
//! (the seed's example), one host or several, each `host`, `host:port`,
//! `1.2.3.4`, `1.2.3.4:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
//! An attribute may also hold several values; they read as one list.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::config::is_domain;
use crate::limits::ROUTE_ADDRESSES_MAX;

/// One host named by an LDAP routing answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LdapHost {
    /// Lower case, no trailing dot: a host name, or an IP literal in its
    /// canonical text form (IPv6 without brackets).
    pub host: String,
    /// The port written on the list for this host (see [`parse_hosts`]);
    /// None: none was written, the SMTP route's ports (or 25) apply.
    pub port: Option<u16>,
}

impl LdapHost {
    /// The address when the host is an IP literal, None for a name.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for LdapHost {
    /// `host`, `host:port`, or `[v6]:port`: the form `parse_hosts` reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip(), self.port) {
            (Some(ip), Some(port)) => write!(f, "{}", SocketAddr::new(ip, port)),
            (None, Some(port)) => write!(f, "{}:{port}", self.host),
            (_, None) => f.write_str(&self.host),
        }
    }
}

/// The hosts of an attribute's `values`, in the order written.
///
/// Every value is split on commas; each piece is trimmed and empty pieces
/// are skipped (so no value, or only empty ones, gives an empty list: the
/// attribute named no host). A piece is `host`, `host:port`,
/// `1.2.3.4:port`, `[v6]:port`, `[v6]` or a bare IPv6 address.
///
/// The port of a list: the seed's `smtp2.x,smtp3.x:9025` means both hosts
/// on port 9025 ("the SMTP Call-Ahead Server Attribute returns the values
/// for the call-ahead servers and the port that should be used"). So a
/// host written without a port takes the port written on the list — the
/// first one written, in any value; hosts written with their own port
/// keep it. A list with no port at all leaves every port None.
///
/// Refused, with the reason and the piece for the log: an empty host
/// (`:25`), a bad port (0, above 65535, anything but digits), spaces inside
/// a name, a name that fails DNS syntax (RFC 1035 §2.3.1 letters, digits,
/// inner hyphens; labels of 1–63 bytes) or ends in a numeric label (a mistyped
/// IP, RFC 1123 §2.1). One bad piece refuses the whole answer: routing on
/// part of a garbled entry could send mail somewhere the directory did not
/// mean.
///
/// Bounded: duplicates are dropped, and at most `ROUTE_ADDRESSES_MAX` hosts
/// are kept (a round never tries more addresses than that); the rest are
/// dropped.
pub fn parse_hosts(values: &[String]) -> Result<Vec<LdapHost>, String> {
    let mut hosts = Vec::new();
    for piece in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if !piece.is_empty() {
            hosts.push(parse_host(piece).map_err(|why| format!("LDAP host {piece:?}: {why}"))?);
        }
    }
    let list_port = hosts.iter().find_map(|h| h.port);
    let mut kept: Vec<LdapHost> = Vec::new();
    for mut host in hosts {
        host.port = host.port.or(list_port);
        if !kept.contains(&host) {
            kept.push(host);
        }
    }
    kept.truncate(ROUTE_ADDRESSES_MAX);
    Ok(kept)
}

/// One trimmed, non-empty piece of a value.
fn parse_host(piece: &str) -> Result<LdapHost, String> {
    if let Some(host) = ip_literal(piece)? {
        return Ok(host);
    }
    let (name, port) = match piece.rsplit_once(':') {
        Some((name, port)) => (name, Some(parse_port(port)?)),
        None => (piece, None),
    };
    Ok(LdapHost {
        host: parse_name(name)?,
        port,
    })
}

/// `1.2.3.4`, `1.2.3.4:port`, `[v6]`, `[v6]:port`, bare `v6`; None when
/// the piece is not an IP literal (a name, or garbage for `parse_name`).
fn ip_literal(piece: &str) -> Result<Option<LdapHost>, String> {
    let literal = |ip: IpAddr, port| LdapHost {
        host: ip.to_string(),
        port,
    };
    if let Ok(ip) = piece.parse::<IpAddr>() {
        return Ok(Some(literal(ip, None)));
    }
    if let Some(inside) = piece.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return match inside.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Ok(Some(literal(IpAddr::V6(ip), None))),
            Err(_) => Err("not an IPv6 address in brackets".into()),
        };
    }
    if let Some((address, port)) = piece.rsplit_once(':') {
        let bare = address.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
        let ip = match bare {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().map(IpAddr::V6).ok(),
            None => address.parse::<std::net::Ipv4Addr>().map(IpAddr::V4).ok(),
        };
        if let Some(ip) = ip {
            return Ok(Some(literal(ip, Some(parse_port(port)?))));
        }
    }
    Ok(None)
}

/// A port as written in a directory: digits only (no sign, no name such
/// as "smtp"), 1–65535 (port 0 cannot be connected to).
fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{port:?} is not a port"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 is not a port".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("{port:?} is not a port (1-65535)")),
    }
}

/// A host name, lower case and without its trailing dot.
fn parse_name(name: &str) -> Result<String, String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        return Err("no host before the port".into());
    }
    if name.contains(char::is_whitespace) {
        return Err("a host name has no spaces".into());
    }
    if name.contains([':', '[', ']']) {
        return Err("an IPv6 address with a port is written [ADDRESS]:PORT".into());
    }
    // RFC 1123 §2.1: a label neither starts nor ends with a hyphen.
    let hyphen_at_edge = name
        .split('.')
        .any(|l| l.starts_with('-') || l.ends_with('-'));
    if !is_domain(&name) || hyphen_at_edge {
        return Err("not a host name".into());
    }
    let last_label = name.rsplit('.').next().unwrap_or_default();
    if last_label.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not an IP address, and a host name does not end in a number".into());
    }
    Ok(name)
}

#[cfg(test)]
mod tests;
