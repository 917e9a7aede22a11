//! PEM files to rustls types: certificate chains, private keys, trust
//! anchors. Errors name the file and the key that named it, for
//! `check-config` and the reload log.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// Every certificate in the file, in order (leaf first for a chain).
/// Unreadable, unparsable or empty is an error: the operator named it.
pub fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let why = |e: &dyn std::fmt::Display| format!("{key} {}: {e}", path.display());
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| why(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| why(&e))?;
    if certificates.is_empty() {
        return Err(why(&"no PEM certificate in it"));
    }
    Ok(certificates)
}

/// The first private key in the file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{key} {}: {e}", path.display()))
}

/// Trust anchors from a PEM file, optionally on top of the system's roots.
pub fn roots(key: &str, path: Option<&Path>, system: bool) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if system {
        // Certificates the system has that rustls cannot parse are skipped;
        // a missing system store leaves the named file as the only anchors.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    if let Some(path) = path {
        for certificate in certificates(key, path)? {
            roots.add(certificate).map_err(|e| format!("{key} {}: {e}", path.display()))?;
        }
    }
    Ok(roots)
}

/// The subject of a DER certificate as an RFC 4514 string, for the log;
/// "(unparsable)" when it cannot be read (rustls already verified or
/// refused it: this is only for humans).
pub fn subject(certificate: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(certificate) {
        Ok((_, parsed)) => parsed.subject().to_string(),
        Err(_) => "(unparsable)".into(),
    }
}
