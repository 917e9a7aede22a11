//! Routing: the downstream addresses for a recipient domain, the same for
//! delivery and for call-ahead (seed, "SMTP Call-Ahead Query Routing").
//!
//! Where it sits: `delivery` asks it at the start of every round of
//! attempts, call-ahead (delivery-host profiles) before a probe; both pass
//! their snapshot's `[routes]` and the shard's `dns::Resolver`.
//!
//! The order, as ESA checks it:
//! 1. LDAP routing: the hosts of the recipient's directory entry
//!    (`mailHost` for delivery, `callAhead` for call-ahead), looked up by
//!    the caller (`delivery::plan`, `callahead::validate`), read by
//!    `ldap::hosts` and resolved by [`resolve_hosts`] (below); a recipient
//!    without an entry goes on to step 2 with its domain (`resolve`);
//! 2. the SMTP route of the domain (`config::routes`: exact, `.suffix`,
//!    `*`), its entries in order: an IP as written, a host name as its A
//!    then AAAA addresses with the entry's port, USEDNS as step 3;
//! 3. no route at all: DNS. MX by preference, equal preferences shuffled
//!    (RFC 5321 §5.1), each exchange's A/AAAA on port 25; a null MX
//!    (RFC 7505) means the domain takes no mail; no MX means the domain's
//!    own A/AAAA (RFC 5321 §5.1, the implicit MX).
//!
//! What comes back is deduplicated, in order, at most
//! `ROUTE_ADDRESSES_MAX` long. An error says whether to try again: a
//! lookup that failed temporarily leaves `TempFail` (deferred, 4xx); a null
//! MX or a domain that does not exist is final (5xx).
//!
//! Static call-ahead servers take no route: `resolve_static` resolves
//! their names MX first, then A/AAAA, keeping each entry's port.
//!
//! Hosts from LDAP (seed, "SMTP Call-Ahead Query Routing", its three port
//! rules made precise), each in the order the directory gave them:
//! - an IP literal is that address, on the host's port, else 25;
//! - a name with an SMTP route of its own (exact or `.suffix` key, never
//!   `*`: `Routes::lookup_host`) is that route's entries in order, each on
//!   the LDAP host's port when it has one ("the port returned by the LDAP
//!   query is used over any ports specified in SMTP routes"), else on the
//!   entry's own port; an entry that is a name is its A then AAAA, USEDNS
//!   is DNS (MX, then A) of the LDAP host's name;
//! - a name without a route is DNS: its MX hosts, else its own A/AAAA
//!   (the implicit MX), on the LDAP port or 25. A null MX there is "not
//!   found" for that host only: it says nothing of the recipient's domain.
//! A host's port comes from `ldap::hosts::parse_hosts`, which gives a
//! list's port to the hosts written without one (`a,b:9025`: both on
//! 9025); so a single host without a port keeps the routes' ports, and a
//! host with a port, or a list with one, replaces them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use rand::seq::SliceRandom;

use crate::config::routes::{RouteHost, Routes};
use crate::dns::{Lookup, Mx, Resolver};
use crate::ldap::hosts::LdapHost;
use crate::limits::{ROUTE_ADDRESSES_MAX, ROUTE_MX_HOSTS_MAX, SMTP_PORT};
use crate::smtp::Reply;

/// Why a domain has no address to send to, and whether that can change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// RFC 7505: the domain publishes "MX 0 ." — it accepts no mail (final).
    NullMx,
    /// The domain, or every host it names, does not exist (final).
    NotFound(String),
    /// A lookup failed temporarily (or a route names a host without an
    /// address, which an operator can fix): try again later.
    TempFail(String),
}

impl RouteError {
    /// Final: the recipient is refused (5xx), not retried.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, RouteError::TempFail(_))
    }

    /// The SMTP answer for a recipient that cannot be routed: RFC 7505
    /// §3.2's 556 5.1.10 for a null MX, 550 5.1.2 (RFC 3463: bad
    /// destination system) for a domain that does not exist, 451 4.4.3
    /// (routing server failure) while DNS fails.
    pub fn reply(&self) -> Reply {
        match self {
            RouteError::NullMx => Reply::new(556, "5.1.10", "Recipient address has null MX"),
            RouteError::NotFound(why) => Reply::new(550, "5.1.2", why.clone()),
            RouteError::TempFail(why) => Reply::new(451, "4.4.3", why.clone()),
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::NullMx => {
                f.write_str("the domain has a null MX (RFC 7505): it accepts no mail")
            }
            RouteError::NotFound(why) | RouteError::TempFail(why) => f.write_str(why),
        }
    }
}

/// One address to try, with the host name it was found under (a route's
/// host, an MX exchange, the domain itself as its implicit MX, an LDAP
/// host): the TLS identity of the peer (RFC 7672 §3.2.2 and Postfix's
/// `secure` level check the MX host name). None for an IP literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub address: SocketAddr,
    pub name: Option<String>,
}

fn addresses_of(targets: Vec<Target>) -> Vec<SocketAddr> {
    targets.into_iter().map(|t| t.address).collect()
}

/// The addresses to try for `domain`, in order: its SMTP route, else DNS
/// (a caller with an LDAP answer uses [`resolve_hosts`] instead).
pub async fn resolve(
    domain: &str,
    routes: &Routes,
    resolver: &Resolver,
) -> Result<Vec<SocketAddr>, RouteError> {
    resolve_targets(domain, routes, resolver).await.map(addresses_of)
}

/// [`resolve`], each address with the host name it came from.
pub async fn resolve_targets(
    domain: &str,
    routes: &Routes,
    resolver: &Resolver,
) -> Result<Vec<Target>, RouteError> {
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    match routes.lookup(&domain) {
        Some((_, hosts)) => resolve_route(&domain, hosts, None, resolver).await,
        // ESA: wherever no SMTP route is present, a DNS lookup is performed.
        None => resolve_by_dns(&domain, SMTP_PORT, resolver).await,
    }
}

/// The addresses for the hosts an LDAP routing query returned
/// (`ldap::hosts::parse_hosts` of `mailHost` or `callAhead`), in order,
/// per the seed's rules (module doc): an IP literal on the host's port or
/// 25; a name with an SMTP route of its own (`Routes::lookup_host`, never
/// the `*` default) as that route's entries with the LDAP port replacing
/// theirs when the host has one; a name without a route by DNS, MX then
/// A/AAAA, on the LDAP port or 25.
///
/// The hosts are resolved at once (each its own task on this shard) and
/// taken in their order; at most `ROUTE_ADDRESSES_MAX` hosts, addresses
/// deduplicated and bounded the same. A host that fails is skipped when
/// another resolves; when none does, the answer is always `TempFail` (the
/// first reason: a temporary one before "not found"; a host's null MX is
/// never the recipient domain's `NullMx`): what the directory names is
/// fixed by an operator, so its mail waits instead of bouncing. No hosts
/// at all is the same (a caller with an empty answer goes to the next
/// stage instead of asking).
pub async fn resolve_hosts(
    hosts: &[LdapHost],
    routes: &Routes,
    resolver: &Resolver,
) -> Result<Vec<SocketAddr>, RouteError> {
    resolve_host_targets(hosts, routes, resolver).await.map(addresses_of)
}

/// [`resolve_hosts`], each address with the host name it came from.
pub async fn resolve_host_targets(
    hosts: &[LdapHost],
    routes: &Routes,
    resolver: &Resolver,
) -> Result<Vec<Target>, RouteError> {
    let lookups: Vec<_> = hosts
        .iter()
        .take(ROUTE_ADDRESSES_MAX)
        .map(|host| {
            let route = match host.ip() {
                Some(_) => None,
                None => routes
                    .lookup_host(&host.host)
                    .map(|(_, entries)| entries.to_vec()),
            };
            let (host, resolver) = (host.clone(), resolver.clone());
            glommio::spawn_local(async move {
                resolve_ldap_host(&host, route.as_deref(), &resolver).await
            })
        })
        .collect();
    let mut found = Found::default();
    for lookup in lookups {
        match lookup.await {
            Ok(targets) => targets.into_iter().for_each(|t| found.push_target(t)),
            Err(e) => found.absorb(e),
        }
    }
    if hosts.is_empty() {
        found.not_found("the LDAP routing answer named no host".into());
    }
    // A directory's host that does not resolve is a mistake an operator
    // can fix (a typo in the entry, a zone not yet updated), like a route
    // host without an address: its mail waits rather than bouncing.
    found.finish().map_err(|error| match error {
        RouteError::NotFound(why) | RouteError::TempFail(why) => RouteError::TempFail(why),
        RouteError::NullMx => RouteError::TempFail("every LDAP host has a null MX".into()),
    })
}

/// One host from LDAP: an IP literal as is, else its own SMTP route
/// (`route`) with the LDAP port over the entries' ports, else DNS.
/// Failures name the LDAP host, for the log.
async fn resolve_ldap_host(
    host: &LdapHost,
    route: Option<&[RouteHost]>,
    resolver: &Resolver,
) -> Result<Vec<Target>, RouteError> {
    if let Some(ip) = host.ip() {
        return Ok(vec![Target { address: SocketAddr::new(ip, host.port.unwrap_or(SMTP_PORT)), name: None }]);
    }
    let name = host.host.as_str();
    let resolved = match route {
        Some(entries) => resolve_route(name, entries, host.port, resolver).await,
        None => resolve_by_dns(name, host.port.unwrap_or(SMTP_PORT), resolver).await,
    };
    resolved.map_err(|error| match error {
        // The host's null MX: that host takes no mail, the domain may elsewhere.
        RouteError::NullMx => RouteError::NotFound(format!("LDAP host {name} has a null MX")),
        RouteError::NotFound(why) => RouteError::NotFound(format!("LDAP host {name}: {why}")),
        RouteError::TempFail(why) => RouteError::TempFail(format!("LDAP host {name}: {why}")),
    })
}

/// The addresses of static call-ahead servers, in the order written: an
/// IP as is; a name by its MX hosts' A/AAAA, or its own A/AAAA when it has
/// no MX, always with the entry's port. No SMTP route applies (ESA).
pub async fn resolve_static(
    servers: &[RouteHost],
    resolver: &Resolver,
) -> Result<Vec<SocketAddr>, RouteError> {
    let mut found = Found::default();
    for server in servers {
        if found.is_full() {
            break;
        }
        match server {
            RouteHost::Addr(addr) => found.push(*addr),
            RouteHost::Name { host, port } => {
                static_server(host, *port, resolver, &mut found).await
            }
            // Config validation refuses it (`is_static_server`); skipped if it slips through.
            RouteHost::UseDns => found.not_found("USEDNS is not a call-ahead server".into()),
        }
    }
    found.finish().map(addresses_of)
}

/// The entries of the SMTP route of `domain` (a recipient domain, or a
/// host LDAP named), in order, each on `port_override` when given (the
/// LDAP host's port), else on the entry's own port; USEDNS is DNS of
/// `domain`. A host name without an address is a mistake in the route,
/// not in the recipient's domain: its mail waits (TempFail) for the
/// operator rather than bouncing.
async fn resolve_route(
    domain: &str,
    hosts: &[RouteHost],
    port_override: Option<u16>,
    resolver: &Resolver,
) -> Result<Vec<Target>, RouteError> {
    let mut found = Found::default();
    for entry in hosts {
        if found.is_full() {
            break;
        }
        match entry {
            RouteHost::Addr(addr) => {
                found.push(SocketAddr::new(addr.ip(), port_override.unwrap_or(addr.port())))
            }
            RouteHost::Name { host, port } => match resolver.addresses(host).await {
                Lookup::Found(ips) => found.push_all(&ips, port_override.unwrap_or(*port), host),
                Lookup::NotFound => {
                    found.temp_fail(format!("route host {host} has no A/AAAA record"))
                }
                Lookup::TempFail(why) => found.temp_fail(format!("route host {host}: {why}")),
            },
            RouteHost::UseDns => {
                let port = port_override.unwrap_or(SMTP_PORT);
                match resolve_by_dns(domain, port, resolver).await {
                    Ok(targets) => targets.into_iter().for_each(|t| found.push_target(t)),
                    Err(e) => found.absorb(e),
                }
            }
        }
    }
    found.finish()
}

/// DNS routing of a recipient domain (or of a host LDAP named): MX, then
/// the implicit MX, every address on `port` (25, or the LDAP host's port).
async fn resolve_by_dns(
    domain: &str,
    port: u16,
    resolver: &Resolver,
) -> Result<Vec<Target>, RouteError> {
    let mut found = Found::default();
    match resolver.mx(domain).await {
        Lookup::Found(mxs) if is_null_mx(&mxs) => return Err(RouteError::NullMx),
        Lookup::Found(mxs) => {
            exchanges_addresses(order_exchanges(mxs), port, resolver, &mut found).await;
            if found.addresses.is_empty() && found.temp_fail.is_none() {
                return Err(RouteError::NotFound(format!(
                    "no MX host of {domain} has an address"
                )));
            }
        }
        // RFC 5321 §5.1: no MX, so the domain itself is the only host.
        Lookup::NotFound => match resolver.addresses(domain).await {
            Lookup::Found(ips) => found.push_all(&ips, port, domain),
            Lookup::NotFound => {
                return Err(RouteError::NotFound(format!(
                    "domain {domain} not found: no MX and no A/AAAA record"
                )))
            }
            Lookup::TempFail(why) => found.temp_fail(format!("A/AAAA of {domain}: {why}")),
        },
        Lookup::TempFail(why) => found.temp_fail(format!("MX of {domain}: {why}")),
    }
    found.finish()
}

/// A static server's name: its MX hosts if it has some, else itself.
async fn static_server(host: &str, port: u16, resolver: &Resolver, found: &mut Found) {
    match resolver.mx(host).await {
        Lookup::Found(mxs) if !is_null_mx(&mxs) => {
            exchanges_addresses(order_exchanges(mxs), port, resolver, found).await
        }
        Lookup::TempFail(why) => found.temp_fail(format!("MX of {host}: {why}")),
        Lookup::Found(_) | Lookup::NotFound => match resolver.addresses(host).await {
            Lookup::Found(ips) => found.push_all(&ips, port, host),
            Lookup::NotFound => found.not_found(format!("call-ahead server {host} not found")),
            Lookup::TempFail(why) => found.temp_fail(format!("A/AAAA of {host}: {why}")),
        },
    }
}

/// RFC 7505 §3: a null MX is the domain's only MX, with exchange "."
/// (the resolver shows it as an empty name).
fn is_null_mx(mxs: &[Mx]) -> bool {
    matches!(mxs, [only] if only.exchange.is_empty())
}

/// Exchange names to try, best preference first, equal preferences in
/// random order (RFC 5321 §5.1: spread the load over equal MXs), at most
/// `ROUTE_MX_HOSTS_MAX`. `mxs` come sorted by preference from the resolver.
fn order_exchanges(mut mxs: Vec<Mx>) -> Vec<String> {
    mxs.sort_by_key(|mx| mx.preference);
    let mut rng = rand::rng();
    for same_preference in mxs.chunk_by_mut(|a, b| a.preference == b.preference) {
        same_preference.shuffle(&mut rng);
    }
    let mut names: Vec<String> = Vec::new();
    for mx in mxs {
        // A "." among real exchanges is a broken null MX: nothing to try there.
        if !mx.exchange.is_empty() && !names.contains(&mx.exchange) {
            names.push(mx.exchange);
        }
    }
    names.truncate(ROUTE_MX_HOSTS_MAX);
    names
}

/// The A/AAAA addresses of `exchanges`, asked all at once (each its own
/// task on this shard), taken in the exchanges' order. One that fails is
/// skipped when another resolves.
async fn exchanges_addresses(
    exchanges: Vec<String>,
    port: u16,
    resolver: &Resolver,
    found: &mut Found,
) {
    let lookups: Vec<_> = exchanges
        .iter()
        .map(|name| {
            let (resolver, name) = (resolver.clone(), name.clone());
            glommio::spawn_local(async move { resolver.addresses(&name).await })
        })
        .collect();
    for (name, lookup) in exchanges.iter().zip(lookups) {
        match lookup.await {
            Lookup::Found(ips) => found.push_all(&ips, port, name),
            Lookup::NotFound => found.not_found(format!("MX host {name} has no A/AAAA record")),
            Lookup::TempFail(why) => found.temp_fail(format!("MX host {name}: {why}")),
        }
    }
}

/// Addresses gathered so far, and the failures met on the way: they
/// matter only when no address was found.
#[derive(Default)]
struct Found {
    addresses: Vec<SocketAddr>,
    /// The host name of each address (same index), None for an IP literal.
    names: Vec<Option<String>>,
    temp_fail: Option<String>,
    null_mx: bool,
    not_found: Option<String>,
}

impl Found {
    fn is_full(&self) -> bool {
        self.addresses.len() >= ROUTE_ADDRESSES_MAX
    }

    /// Keeps the first place of an address given twice; drops it past the bound.
    fn push(&mut self, address: SocketAddr) {
        self.push_target(Target { address, name: None });
    }

    fn push_target(&mut self, target: Target) {
        if !self.is_full() && !self.addresses.contains(&target.address) {
            self.addresses.push(target.address);
            self.names.push(target.name);
        }
    }

    /// The addresses of host `name` (DNS names are case-insensitive:
    /// kept lower case, without the root dot).
    fn push_all(&mut self, ips: &[IpAddr], port: u16, name: &str) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        ips.iter()
            .for_each(|&ip| self.push_target(Target { address: SocketAddr::new(ip, port), name: Some(name.clone()) }));
    }

    /// The first reason of each kind is the one reported.
    fn temp_fail(&mut self, why: String) {
        self.temp_fail.get_or_insert(why);
    }

    fn not_found(&mut self, why: String) {
        self.not_found.get_or_insert(why);
    }

    fn absorb(&mut self, error: RouteError) {
        match error {
            RouteError::NullMx => self.null_mx = true,
            RouteError::NotFound(why) => self.not_found(why),
            RouteError::TempFail(why) => self.temp_fail(why),
        }
    }

    /// The addresses; without any, the failure that leaves the most hope:
    /// a temporary one, then a null MX, then "not found".
    fn finish(self) -> Result<Vec<Target>, RouteError> {
        if !self.addresses.is_empty() {
            let targets = self.addresses.into_iter().zip(self.names).map(|(address, name)| Target { address, name });
            return Ok(targets.collect());
        }
        if let Some(why) = self.temp_fail {
            return Err(RouteError::TempFail(why));
        }
        if self.null_mx {
            return Err(RouteError::NullMx);
        }
        Err(RouteError::NotFound(
            self.not_found.unwrap_or_else(|| "no address found".into()),
        ))
    }
}

#[cfg(test)]
mod tests;
