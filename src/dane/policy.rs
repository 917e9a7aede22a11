//! What DANE decides for one delivery host (RFC 7672 §2.2), as a pure
//! function, and the rustls client config that carries the decision.
//!
//! Where it sits: delivery, for a destination whose `dane` is not `off`
//! and that has no SMTP route (seed 003: DANE does not apply to routed
//! domains; the caller's rule), finds the MX hosts with
//! `Resolver::secure_mx`, the host's addresses with
//! `Resolver::secure_addresses`, asks [`lookup_tlsa`], then [`policy`];
//! `Authenticate` and `EncryptOnly` go to `client_config` and on to
//! `tls::Stream::connect`, `Defer` defers the mail (or tries the next MX),
//! `NotApplied` leaves the destination's own `tls` setting in charge.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};

use super::tlsa::Tlsa;
use super::verifier::Verifier;
use crate::dns::{Resolver, Secured};
use crate::tls;

/// `dane` of a `[destination.*]` (CONFIG.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaneMode {
    /// TLSA records are not looked up.
    #[default]
    Off,
    /// DANE when the host has secure, usable TLSA records; otherwise the
    /// destination's `tls` setting (RFC 7672 §2.2).
    Opportunistic,
    /// Only DANE-authenticated TLS: without secure usable TLSA records no
    /// connection is made (seed 003) and the mail is deferred.
    Mandatory,
}

/// The decision for one host.
#[derive(Clone, Debug)]
pub enum DaneDecision {
    /// DANE does not apply: the destination's `tls` setting decides.
    NotApplied,
    /// TLS is mandatory and the server must match these records.
    Authenticate(Arc<Verifier>),
    /// Secure TLSA records exist but none is usable: TLS is mandatory (no
    /// clear-text fallback), the certificate is not checked (RFC 7672
    /// §2.2, "unusable" TLSA RRset). Only in opportunistic mode.
    EncryptOnly,
    /// Do not connect to this host now (try another MX, or later).
    Defer(String),
}

impl DaneDecision {
    /// The `result` label of `portcullis_dane_total` for the decision
    /// alone; once the handshake ran, `authenticated` or `failed` instead.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DaneDecision::NotApplied | DaneDecision::EncryptOnly => "not-applied",
            DaneDecision::Authenticate(_) => "authenticated",
            DaneDecision::Defer(_) => "deferred",
        }
    }
}

/// The TLSA records to decide on for `host` (its TLSA base domain) and
/// `port`: asked only when DANE is on and the RRsets that led to the host
/// (the MX RRset, the host's addresses) were secure, since an attacker
/// who can forge an insecure MX could pick a host without TLSA (RFC 7672
/// §2.2.1, §2.2.2). Otherwise an empty insecure set, without a query.
pub async fn lookup_tlsa(
    resolver: &Resolver,
    mode: DaneMode,
    host: &str,
    port: u16,
    host_secure: bool,
) -> Secured<Vec<Tlsa>> {
    if mode == DaneMode::Off || !host_secure {
        return Secured::Insecure(Vec::new());
    }
    resolver.tlsa(host, port).await
}

/// RFC 7672 §2.2 for one host. `mx_secure`: the MX RRset (or, for a
/// domain without MX, the address RRset) that named the host was
/// authenticated. `names`: the reference identifiers for DANE-TA (§3.2.2:
/// the TLSA base domain, the MX host name when different, and the
/// next-hop domain).
pub fn policy(
    mode: DaneMode,
    tlsa: Secured<Vec<Tlsa>>,
    mx_secure: bool,
    names: &[&str],
) -> DaneDecision {
    let mandatory = mode == DaneMode::Mandatory;
    let without_dane = |why: &str| {
        if mandatory {
            DaneDecision::Defer(format!("DANE mandatory: {why}"))
        } else {
            DaneDecision::NotApplied
        }
    };
    if mode == DaneMode::Off {
        return DaneDecision::NotApplied;
    }
    if !mx_secure {
        return without_dane("the MX or address records are not DNSSEC-authenticated");
    }
    match tlsa {
        // §2.1.1: a bogus or failed TLSA lookup may hide records an
        // attacker removed; neither clear text nor plain TLS is safe.
        Secured::Bogus => {
            DaneDecision::Defer("TLSA records are bogus (DNSSEC validation failed)".into())
        }
        Secured::Failed(why) => DaneDecision::Defer(format!("TLSA lookup failed: {why}")),
        Secured::Insecure(_) => without_dane("the TLSA records are not DNSSEC-authenticated"),
        Secured::Secure(records) if records.is_empty() => {
            without_dane("the host publishes no TLSA records")
        }
        Secured::Secure(records) => match Verifier::new(&records, names) {
            Some(verifier) => DaneDecision::Authenticate(Arc::new(verifier)),
            None if mandatory => {
                DaneDecision::Defer("DANE mandatory: no usable TLSA record (RFC 7672 §3.1)".into())
            }
            None => DaneDecision::EncryptOnly,
        },
    }
}

/// The rustls client config for a decision that needs TLS: TLS 1.3 and
/// 1.2 (`tls::PROTOCOL_VERSIONS`), the DANE verifier (or none, for
/// `EncryptOnly`), no client certificate. `None` for `NotApplied` and
/// `Defer`. The caller connects with the TLSA base domain as the server
/// name, which rustls sends as SNI (RFC 7672 §8.1).
pub fn client_config(decision: &DaneDecision) -> Option<Arc<ClientConfig>> {
    let verifier: Arc<dyn ServerCertVerifier> = match decision {
        DaneDecision::Authenticate(verifier) => Arc::clone(verifier) as Arc<dyn ServerCertVerifier>,
        // RFC 7672 §2.2: TLS required, the certificate not checked.
        DaneDecision::EncryptOnly => Arc::new(tls::client::AnyCertificate::new(tls::provider())),
        DaneDecision::NotApplied | DaneDecision::Defer(_) => return None,
    };
    let config = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(tls::PROTOCOL_VERSIONS)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Some(Arc::new(config))
}
