//! The rustls client config for `ldaps://` and StartTLS (RFC 4513 §3.1:
//! the server's identity is checked against the host of the URL, name or
//! IP address): the system's trust anchors plus the server's `ca_file`.
//! Built once per server spec by `pool::ServerPool::new`, on the LDAP
//! thread; ring as the crypto provider, named here rather than taken from
//! a process default, so nothing depends on which one was installed.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// A client config trusting the system's roots and every certificate in
/// `ca_file` (PEM). An unreadable or empty `ca_file` is an error: the
/// operator named it, so connecting without it would be a surprise.
pub(super) fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    // Certificates the system has that rustls cannot parse are skipped;
    // a missing system store just leaves `ca_file` as the only anchors.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        for certificate in read_certificates(path)? {
            roots
                .add(certificate)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let why = |e: &dyn std::fmt::Display| format!("ca_file {}: {e}", path.display());
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| why(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| why(&e))?;
    if certificates.is_empty() {
        return Err(why(&"no PEM certificate in it"));
    }
    Ok(certificates)
}
