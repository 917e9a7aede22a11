//! The rustls certificate verifier of a DANE-authenticated connection
//! (RFC 7672 §3): the server's chain must match one of the usable TLSA
//! records of the host.
//!
//! Where it sits: `policy` builds a [`Verifier`] from the secure, usable
//! TLSA records of one delivery host and the names RFC 7672 §3.2.2 allows;
//! `policy::client_config` puts it in the rustls `ClientConfig` that the
//! outbound TLS code hands to `tls::Stream::connect`. rustls calls
//! `verify_server_cert` once per handshake, then the signature checks.
//!
//! - DANE-EE(3): the leaf (whole or its key) matches; its names, issuer
//!   and expiry are not checked (§3.1.1): the record is the trust.
//! - DANE-TA(2): a certificate of the presented chain matches and becomes
//!   the trust anchor; the leaf must chain to it with valid signatures,
//!   be within its validity and carry one of the reference names (§3.1.2,
//!   §3.2.2). webpki (rustls's own path builder) does that part.
//! - Handshake signatures (the server proves it holds the leaf's key) are
//!   checked with the provider's algorithms in every case.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use super::tlsa::{Tlsa, USAGE_DANE_EE, USAGE_DANE_TA};
use crate::tls;
use crate::tls::client::AnyCertificate;

/// Which record authenticated the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaneMatch {
    /// DANE-EE(3): the leaf itself.
    EndEntity,
    /// DANE-TA(2): a trust anchor of the chain, the leaf chained to it.
    TrustAnchor,
}

/// Authenticates a server by its TLSA records (see the module header).
#[derive(Debug)]
pub struct Verifier {
    end_entity: Vec<Tlsa>,
    trust_anchor: Vec<Tlsa>,
    /// Reference identifiers for DANE-TA (RFC 7672 §3.2.2).
    names: Vec<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
    /// Handshake signatures are checked the one way every client config
    /// checks them, whatever the TLSA records said about the certificate.
    signatures: AnyCertificate,
}

impl Verifier {
    /// A verifier for the usable records among `records` (RFC 7672 §3.1)
    /// that checks DANE-TA chains against `names` (the TLSA base domain,
    /// the MX host name, the next-hop domain: RFC 7672 §3.2.2); names that
    /// are not DNS names are left out. `None` when no record is usable.
    pub fn new(records: &[Tlsa], names: &[&str]) -> Option<Verifier> {
        let usable = records.iter().filter(|r| r.is_usable());
        let (end_entity, trust_anchor): (Vec<Tlsa>, Vec<Tlsa>) =
            usable.cloned().partition(|r| r.usage == USAGE_DANE_EE);
        if end_entity.is_empty() && trust_anchor.is_empty() {
            return None;
        }
        debug_assert!(trust_anchor.iter().all(|r| r.usage == USAGE_DANE_TA));
        let names = names
            .iter()
            .map(|name| name.strip_suffix('.').unwrap_or(name))
            .filter_map(|name| ServerName::try_from(name.to_owned()).ok())
            .filter(|name| matches!(name, ServerName::DnsName(_)))
            .collect();
        Some(Verifier {
            end_entity,
            trust_anchor,
            names,
            provider: tls::provider(),
            signatures: AnyCertificate::new(tls::provider()),
        })
    }

    /// The records this verifier accepts (usable ones only).
    pub fn records(&self) -> impl Iterator<Item = &Tlsa> {
        self.end_entity.iter().chain(&self.trust_anchor)
    }

    /// Checks the presented chain at `now`: which record matched, or why
    /// none did.
    pub fn authenticate(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<DaneMatch, Error> {
        if self.end_entity.iter().any(|record| record.matches(leaf)) {
            return Ok(DaneMatch::EndEntity);
        }
        let mut last_error = None;
        for anchor in self.matching_anchors(leaf, intermediates) {
            match self.chains_to(anchor, leaf, intermediates, now) {
                Ok(()) => return Ok(DaneMatch::TrustAnchor),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
                NoTlsaMatch,
            ))))
        }))
    }

    /// The presented certificates a DANE-TA record names (RFC 7672
    /// §3.1.2: the server sends its trust anchor in the chain).
    fn matching_anchors<'c>(
        &self,
        leaf: &'c CertificateDer<'c>,
        intermediates: &'c [CertificateDer<'c>],
    ) -> Vec<&'c CertificateDer<'c>> {
        std::iter::once(leaf)
            .chain(intermediates)
            .filter(|certificate| {
                self.trust_anchor
                    .iter()
                    .any(|record| record.matches(certificate))
            })
            .collect()
    }

    /// webpki with `anchor` as the only root: path, signatures, validity,
    /// server-auth usage, and one of the reference names.
    fn chains_to(
        &self,
        anchor: &CertificateDer<'_>,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Error> {
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| Error::General(format!("DANE-TA anchor: {e}")))?;
        let mut last_error = Error::InvalidCertificate(CertificateError::NotValidForName);
        for name in &self.names {
            match webpki.verify_server_cert(leaf, intermediates, name, &[], now) {
                Ok(_) => return Ok(()),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }
}

/// The error text a failed handshake carries when nothing matched.
#[derive(Debug)]
struct NoTlsaMatch;

impl std::fmt::Display for NoTlsaMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no TLSA record matches the server's certificate chain (RFC 7672 §3)")
    }
}

impl std::error::Error for NoTlsaMatch {}

impl ServerCertVerifier for Verifier {
    /// `server_name` is what rustls sent as SNI; the names checked are the
    /// verifier's own (RFC 7672 §3.2.2), and only for DANE-TA.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.authenticate(end_entity, intermediates, now)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_verify_schemes()
    }
}
