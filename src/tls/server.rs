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
//! Shared-nothing: the snapshot's configs are built once, but rustls's
//! session cache sits behind one Mutex in the config, so each shard
//! handshakes with copies of its own (`ShardTls`), each with its own
//! bounded cache. A client resuming on another shard gets a full handshake.
//!
//! TLS 1.3 and 1.2 only, ring's suites (AEAD only, forward secrecy only),
//! and the server's order of preference: testssl.sh rates a server that
//! follows the client's order as a finding.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
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
}

/// One shard's copies of the server configs, with session caches of its
/// own, for the newest `TLS_SHARD_CONFIGS_MAX` snapshots' `ServerTls`.
#[derive(Default)]
pub struct ShardTls {
    copies: RefCell<VecDeque<ShardCopy>>,
}

struct ShardCopy {
    of: Arc<ServerTls>,
    plain: Arc<ServerConfig>,
    verify: Option<Arc<ServerConfig>>,
}

impl ShardTls {
    /// This shard's copy of the config for a policy that does
    /// (`verify_client`) or does not ask for a client certificate. A
    /// `*-verify` policy without `client_ca` is refused by validation, so
    /// the fallback never weakens a check.
    pub fn config(&self, server: &Arc<ServerTls>, verify_client: bool) -> Arc<ServerConfig> {
        let mut copies = self.copies.borrow_mut();
        let at = match copies.iter().position(|c| Arc::ptr_eq(&c.of, server)) {
            Some(at) => at,
            None => {
                copies.push_front(ShardCopy { of: server.clone(), plain: own_cache(&server.plain), verify: server.verify.as_ref().map(own_cache) });
                copies.truncate(crate::limits::TLS_SHARD_CONFIGS_MAX);
                0
            }
        };
        let copy = &copies[at];
        match (&copy.verify, verify_client) {
            (Some(verify), true) => verify.clone(),
            _ => copy.plain.clone(),
        }
    }
}

/// The same config with a session cache of its own.
fn own_cache(config: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut copy = ServerConfig::clone(config);
    copy.session_storage = ServerSessionMemoryCache::new(crate::limits::TLS_SESSION_CACHE_ENTRIES);
    Arc::new(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Arc<ServerTls> {
        let provider = crate::tls::provider();
        let key = rcgen_free_key();
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(crate::tls::PROTOCOL_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(key));
        Arc::new(ServerTls { plain: Arc::new(config), verify: None, subject: String::new() })
    }

    /// A resolver with no certificate: enough to build a config (no handshake here).
    fn rcgen_free_key() -> rustls::server::ResolvesServerCertUsingSni {
        rustls::server::ResolvesServerCertUsingSni::new()
    }

    #[test]
    fn each_shard_copy_has_its_own_session_cache_and_follows_reloads() {
        let (a, b) = (server(), server());
        let shard = ShardTls::default();
        let first = shard.config(&a, false);
        assert!(Arc::ptr_eq(&first, &shard.config(&a, false)), "one copy per snapshot");
        assert!(!Arc::ptr_eq(&first, &a.plain), "a copy, not the shared config");
        assert!(!Arc::ptr_eq(&first.session_storage, &a.plain.session_storage), "its own cache");
        let other = ShardTls::default().config(&a, false);
        assert!(!Arc::ptr_eq(&first.session_storage, &other.session_storage), "shards do not share a cache");
        // A reload: the new snapshot gets its copy, the old one keeps its own.
        let second = shard.config(&b, false);
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&first, &shard.config(&a, false)), "the older snapshot still resolves");
        let third = server();
        shard.config(&third, false);
        assert!(!Arc::ptr_eq(&first, &shard.config(&a, false)), "bounded: the oldest copy went");
    }
}
