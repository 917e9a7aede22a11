//! The server side: `[tls]` compiled into the rustls configs a policy
//! snapshot carries, one per way a mail flow policy may ask for TLS.
//!
//! - `plain`: no certificate request (`tls = "preferred" | "required"`).
//! - `verify`: asks for a client certificate and checks it against
//!   `client_ca`, but lets a client without one finish the handshake
//!   (`*-verify` policies; seed 003: with "preferred" a client without a
//!   certificate may go on, an invalid certificate is refused, which is the
//!   handshake failing; with "required" the session refuses MAIL until a
//!   verified certificate was presented).
//!
//! TLS 1.3 and 1.2 only, ring's suites (AEAD only, forward secrecy only),
//! and the server's order of preference: testssl.sh rates a server that
//! follows the client's order as a finding.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::{pem, provider, PROTOCOL_VERSIONS};
use crate::config::tls::TlsConfig;

/// The compiled server side of `[tls]`.
#[derive(Debug)]
pub struct ServerTls {
    pub plain: Arc<ServerConfig>,
    /// Present when `client_ca` is configured.
    pub verify: Option<Arc<ServerConfig>>,
    /// Our certificate's subject, for the start log.
    pub subject: String,
}

impl ServerTls {
    /// Read the files and build the configs; None when `[tls]` has no
    /// certificate. Errors name the key and the file.
    pub fn load(config: &TlsConfig) -> Result<Option<Arc<ServerTls>>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let chain = pem::certificates("certificate", Path::new(&config.certificate))?;
        let key = pem::private_key("private_key", Path::new(&config.private_key))?;
        let subject = pem::subject(&chain[0]);
        let builder = || {
            ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(PROTOCOL_VERSIONS)
                .map_err(|e| format!("tls: {e}"))
        };
        let finish = |mut config: ServerConfig| {
            config.ignore_client_order = true;
            Arc::new(config)
        };
        let plain = builder()?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("private_key {}: {e}", config.private_key))?;
        let verify = match config.client_ca.as_str() {
            "" => None,
            ca => {
                let roots = pem::roots("client_ca", Some(Path::new(ca)), false)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("client_ca {ca}: {e}"))?;
                let config = builder()?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain, key)
                    .map_err(|e| format!("private_key {}: {e}", config.private_key))?;
                Some(finish(config))
            }
        };
        Ok(Some(Arc::new(ServerTls { plain: finish(plain), verify, subject })))
    }

    /// The config for a policy that does (`verify_client`) or does not ask
    /// for a client certificate. A `*-verify` policy without `client_ca` is
    /// refused by validation, so the fallback never weakens a check.
    pub fn config(&self, verify_client: bool) -> Arc<ServerConfig> {
        match (&self.verify, verify_client) {
            (Some(verify), true) => verify.clone(),
            _ => self.plain.clone(),
        }
    }
}
