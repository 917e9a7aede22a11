//! DANE in delivery (RFC 7672): per host of a round, whether the
//! connection must be DANE-authenticated TLS, may go as the destination's
//! `tls` setting says, or must not be tried now.
//!
//! Where it sits: `Delivery::attempt_each` asks [`LegDane::start`] once per
//! leg (after routing found the hosts) and [`LegDane::host`] before each
//! address; `attempt` then connects with the [`DanePlan`] (no clear-text
//! fallback: a failed handshake or a certificate that matches no TLSA
//! record defers, with a `tls-alert` line) or with the destination's own
//! plan. The DANE module (`crate::dane`) decides; this file only gathers
//! what it decides on, with the shard's resolver:
//! - the MX RRset of the next-hop domain (`Resolver::secure_mx`), once per
//!   leg: was it authenticated, and is the host one of its exchanges
//!   (RFC 7672 §2.2.1); without MX the domain itself is the host (the
//!   implicit MX) and its address RRset stands for the MX RRset;
//! - the host's A/AAAA (`secure_addresses`, §2.2.2), then its TLSA
//!   records at `_PORT._tcp.HOST` (`dane::lookup_tlsa`, §2.2.3; PORT is
//!   the port connected to, 25 for MX routing), once per host name.
//!
//! When DANE applies (seed 003: "DANE is not applied to domains with an
//! SMTP route"): the destination's `dane` is not `off` and the leg's hosts
//! came from DNS, i.e. the next-hop domain has no SMTP route, or only a
//! route of `USEDNS` entries (the operator's way of writing "DNS"), and
//! was not routed by an LDAP `mailHost`. Otherwise nothing here runs: with
//! `dane = "off"` delivery asks no DNS question more than before.
//!
//! Every decision is counted in `portcullis_dane_total`: `deferred` and
//! `not-applied` when made; a host that needs TLS after its transaction,
//! `authenticated` (or `not-applied` for an encrypt-only host, RFC 7672
//! §2.2's unusable TLSA RRset) or, when the handshake or the match failed,
//! `failed` (`Delivery::attempt`). A connection that fails before TLS
//! (refused, timed out) verified nothing and is not counted again.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::destination::DestinationTls;
use crate::config::routes::{RouteHost, Routes};
use crate::dane::{self, DaneDecision, DaneMode};
use crate::dns::{Mx, Resolver, Secured};
use crate::message::domain_of;
use crate::metrics::Metrics;
use crate::routing::Target;
use crate::smtp::client::StartTls;
use crate::tls::outbound::TlsPlan;

/// What DANE says for one address of a leg.
#[derive(Debug)]
pub enum HostTls {
    /// DANE is off or does not apply: the destination's `tls` decides.
    Destination,
    /// STARTTLS with the DANE config, mandatory (RFC 7672 §2.2).
    Dane(DanePlan),
    /// Do not connect to this host now; the reason goes to the log and,
    /// when no host is left, to the retry line.
    Skip(String),
}

/// A DANE connection: the pool's plan and what to log and count.
#[derive(Debug)]
pub struct DanePlan {
    pub plan: TlsPlan,
    /// The server must match a TLSA record (else: encrypt only).
    pub authenticated: bool,
}

impl DanePlan {
    /// The `dane=` of the delivered line and the metric of a transaction
    /// that went through (`metrics::dane::DANE_RESULTS`).
    pub fn result(&self) -> &'static str {
        match self.authenticated {
            true => "authenticated",
            false => "encrypt-only",
        }
    }

    /// The `result` label counted for a transaction that went through.
    pub fn metric(&self) -> &'static str {
        match self.authenticated {
            true => "authenticated",
            false => "not-applied",
        }
    }
}

/// The MX RRset of the next-hop domain, as DANE sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum MxVerdict {
    /// These exchanges, authenticated (lower case, no root dot).
    Secure(Vec<String>),
    /// Secure denial: the domain has no MX, its A/AAAA is the host.
    SecureNone,
    /// Not authenticated (an unsigned zone, an untrusted resolver).
    Insecure,
    /// Bogus or failed: no host of the domain may be used now (§2.1.1).
    Broken(String),
}

/// DANE for the hosts of one leg of one round.
pub struct LegDane<'r> {
    mode: DaneMode,
    /// The next-hop domain: the MX owner, and a DANE-TA reference name
    /// (RFC 7672 §3.2.2).
    domain: String,
    resolver: &'r Resolver,
    mx: Option<MxVerdict>,
    /// Decisions made this round, by host name and port: a host with
    /// several addresses is decided (and counted) once. At most one per
    /// host routing returned (`ROUTE_ADDRESSES_MAX`).
    decided: Vec<(String, u16, DaneDecision)>,
}

impl<'r> LegDane<'r> {
    /// DANE for a leg, when it applies (see the module header): `None`
    /// without a lookup when `mode` is off or the hosts did not come from
    /// DNS. `via`, `rewrites`: the leg's; `destination`: the job's domain.
    pub fn start(
        mode: DaneMode,
        (via, rewrites): (&str, &BTreeMap<u32, String>),
        destination: &str,
        routes: &Routes,
        resolver: &'r Resolver,
    ) -> Option<LegDane<'r>> {
        if mode == DaneMode::Off {
            return None;
        }
        let domain = next_hop_domain(via, rewrites, destination, routes)?;
        Some(LegDane {
            mode,
            domain,
            resolver,
            mx: None,
            decided: Vec::new(),
        })
    }

    /// What DANE says for `target`. Decisions other than TLS are counted
    /// here; the caller counts the TLS ones after the transaction.
    pub async fn host(&mut self, target: &Target, metrics: &Metrics) -> HostTls {
        let Some(name) = target.name.as_deref() else {
            // An IP literal is not reached by MX (routing never yields one
            // for a DNS-routed leg): nothing to look TLSA up under.
            return HostTls::Destination;
        };
        let port = target.address.port();
        let known = self
            .decided
            .iter()
            .find(|(n, p, _)| n == name && *p == port);
        let decision = match known {
            Some((_, _, decision)) => decision.clone(),
            None => {
                let decision = self.decide(name, port).await;
                if !needs_tls(&decision) {
                    metrics.dane(decision.metric_label());
                }
                self.decided.push((name.to_owned(), port, decision.clone()));
                decision
            }
        };
        host_tls(&decision, name, target.address.ip())
    }

    /// RFC 7672 §2.2 for one host name: the MX verdict, the host's
    /// addresses, its TLSA records, then `dane::policy`.
    async fn decide(&mut self, name: &str, port: u16) -> DaneDecision {
        let mx = match &self.mx {
            Some(mx) => mx.clone(),
            None => {
                let mx = mx_verdict(self.resolver.secure_mx(&self.domain).await);
                self.mx = Some(mx.clone());
                mx
            }
        };
        if let MxVerdict::Broken(why) = &mx {
            return DaneDecision::Defer(format!("MX of {}: {why}", self.domain));
        }
        let host_secure = match self.resolver.secure_addresses(name).await {
            Secured::Secure(_) => true,
            Secured::Insecure(_) => false,
            // §2.2.2: an address lookup that failed validation (or did not
            // answer) could hide the host's real addresses: skip the host.
            Secured::Bogus => {
                return DaneDecision::Defer(format!(
                    "A/AAAA of {name} are bogus (DNSSEC validation failed)"
                ))
            }
            Secured::Failed(why) => {
                return DaneDecision::Defer(format!("secure A/AAAA lookup of {name} failed: {why}"))
            }
        };
        // Both RRsets that led to the host must be authenticated, or an
        // attacker could have picked a host without TLSA (§2.2.1, §2.2.2).
        let chain_secure = host_secure && host_from_secure_mx(&mx, name, &self.domain, host_secure);
        let tlsa = dane::lookup_tlsa(self.resolver, self.mode, name, port, chain_secure).await;
        dane::policy(self.mode, tlsa, chain_secure, &[name, &self.domain])
    }
}

/// The domain whose MX named the leg's hosts, when those came from DNS:
/// `None` for hosts from an LDAP `mailHost` (`via` "ldap"), a leg that
/// was not routed, or a domain with an SMTP route other than USEDNS (seed
/// 003). A leg LDAP rewrote to another domain (no `mailHost`) goes by that
/// domain's routing (`delivery::plan`), so that is the one asked.
fn next_hop_domain(
    via: &str,
    rewrites: &BTreeMap<u32, String>,
    destination: &str,
    routes: &Routes,
) -> Option<String> {
    if via != "domain" {
        return None;
    }
    let domain = match rewrites.values().next() {
        Some(rewritten) => domain_of(rewritten),
        None => destination.trim_end_matches('.').to_ascii_lowercase(),
    };
    match routes.lookup(&domain) {
        Some((_, hosts)) if !hosts.iter().all(|h| *h == RouteHost::UseDns) => None,
        _ => Some(domain),
    }
}

/// The MX lookup as DANE reads it (a null MX never gets here: routing
/// refused the domain).
fn mx_verdict(answer: Secured<Vec<Mx>>) -> MxVerdict {
    match answer {
        Secured::Secure(mxs) if mxs.is_empty() => MxVerdict::SecureNone,
        Secured::Secure(mxs) => MxVerdict::Secure(
            mxs.into_iter()
                .map(|mx| mx.exchange.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        ),
        Secured::Insecure(_) => MxVerdict::Insecure,
        Secured::Bogus => {
            MxVerdict::Broken("the MX records are bogus (DNSSEC validation failed)".into())
        }
        Secured::Failed(why) => MxVerdict::Broken(format!("secure MX lookup failed: {why}")),
    }
}

/// Whether `host` was named by an authenticated RRset: an exchange of a
/// secure MX RRset, or, for a domain securely without MX, the domain
/// itself with secure addresses (RFC 7672 §2.2.1: the implicit MX). A
/// host the plain routing found but the secure MX RRset does not list
/// (the answers changed in between) is not.
fn host_from_secure_mx(mx: &MxVerdict, host: &str, domain: &str, host_secure: bool) -> bool {
    match mx {
        MxVerdict::Secure(exchanges) => exchanges.iter().any(|e| e == host),
        MxVerdict::SecureNone => host == domain && host_secure,
        MxVerdict::Insecure | MxVerdict::Broken(_) => false,
    }
}

/// Decisions whose transaction is counted afterwards.
fn needs_tls(decision: &DaneDecision) -> bool {
    matches!(
        decision,
        DaneDecision::Authenticate(_) | DaneDecision::EncryptOnly
    )
}

/// The decision as what the caller does: a mandatory-TLS plan whose
/// server name (SNI, RFC 7672 §8.1) is the MX host, the destination's
/// own plan, or no connection.
fn host_tls(decision: &DaneDecision, name: &str, ip: IpAddr) -> HostTls {
    match decision {
        DaneDecision::NotApplied => HostTls::Destination,
        DaneDecision::Defer(why) if why.starts_with("DANE") => HostTls::Skip(why.clone()),
        DaneDecision::Defer(why) => HostTls::Skip(format!("DANE: {why}")),
        DaneDecision::Authenticate(_) | DaneDecision::EncryptOnly => {
            let config = dane::client_config(decision).expect("a TLS decision has a config");
            HostTls::Dane(DanePlan {
                plan: TlsPlan {
                    starttls: StartTls::Required,
                    level: DestinationTls::Required,
                    config: Some(config),
                    name: crate::tls::client::server_name(Some(name), ip),
                    dane: true,
                },
                authenticated: matches!(decision, DaneDecision::Authenticate(_)),
            })
        }
    }
}

#[cfg(test)]
mod tests;
