//! The client side: the rustls configs our outbound SMTP connections use
//! when a downstream offers STARTTLS (RFC 3207) — delivery (`pool`) and
//! call-ahead probes (`callahead::connection`).
//!
//! Where it sits: `config::destination` and `[callahead.NAME] tls` say how
//! much TLS a connection wants; `OutboundTls::compile` builds the configs
//! once per policy snapshot (never per connection: building a verifying
//! config reads the system's trust store); the drivers hand the chosen
//! config and the peer's name to `tls::Stream::connect`.
//!
//! Two kinds of config:
//! - **encrypt only** (`preferred`, `required`): the certificate is not
//!   checked (RFC 7435 opportunistic security; Postfix's `may` and
//!   `encrypt` levels). Most MX hosts present certificates no public CA
//!   would match to their MX name, so checking would only push mail back
//!   to clear text. The handshake signatures are still verified with the
//!   provider's algorithms, so the session key is bound to the key the
//!   server showed (a passive listener learns nothing).
//! - **verified** (`required-verify`): WebPKI path validation to the
//!   system's roots plus the destination's `ca_file`, and the name the
//!   route or MX gave (an IP literal only matches an IP SAN).
//!
//! TLS 1.3 and 1.2 only (`tls::PROTOCOL_VERSIONS`), ring's suites.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::{pem, provider, PROTOCOL_VERSIONS};
use crate::config::tls::TlsConfig;

/// Accepts any server certificate but verifies the handshake signatures
/// (RFC 7435 §4: encrypt without authenticating). Only for the
/// opportunistic and required-unverified levels.
#[derive(Debug)]
pub struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl AnyCertificate {
    pub fn new(provider: Arc<CryptoProvider>) -> AnyCertificate {
        AnyCertificate { provider }
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client certificate chain and its key (`[tls]`, for call-ahead).
pub type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Encrypt without checking the server's certificate; present `identity`
/// as our client certificate when given (a server that asks for one).
pub fn encrypt_only(identity: Option<ClientIdentity>) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let verifier = Arc::new(AnyCertificate::new(provider.clone()));
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("tls: client certificate: {e}"))?,
    };
    Ok(Arc::new(config))
}

/// WebPKI verification against the system's roots plus `ca_file` (PEM);
/// the name is the one given to `Stream::connect`. An unreadable or empty
/// `ca_file` is an error naming it; no trust anchor at all is one too.
pub fn verified(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let roots = pem::roots("ca_file", ca_file, true)?;
    if roots.is_empty() {
        return Err("ca_file: no trust anchors (the system has none and no ca_file is set)".into());
    }
    let provider = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("tls: {e}"))?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| format!("tls: {e}"))?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Our `[tls]` certificate and key as a client identity, when configured
/// (seed 002: call-ahead presents a valid client certificate).
pub fn identity(config: &TlsConfig) -> Result<Option<ClientIdentity>, String> {
    if !config.enabled() {
        return Ok(None);
    }
    let chain = pem::certificates("certificate", Path::new(&config.certificate))?;
    let key = pem::private_key("private_key", Path::new(&config.private_key))?;
    Ok(Some((chain, key)))
}

/// The TLS identity of a downstream: the host name the route, MX or LDAP
/// entry gave; without one (an IP literal) the address, which only an IP
/// SAN matches (RFC 6125 §6.2 does not apply to addresses; rustls sends no
/// SNI for them, RFC 6066 §3).
pub fn server_name(host: Option<&str>, ip: IpAddr) -> ServerName<'static> {
    host.and_then(|h| ServerName::try_from(h.trim_end_matches('.').to_string()).ok())
        .unwrap_or(ServerName::IpAddress(ip.into()))
}

#[cfg(test)]
mod tests;
