//! TLS for every socket we speak SMTP on: rustls (ring) over glommio TCP
//! streams through futures-rustls.
//!
//! Where it sits: `config::tls` is the operator's `[tls]` section;
//! `server` compiles it into the rustls server configs the policy snapshot
//! carries (so SIGHUP reloads certificate and key, and a session keeps the
//! config it started with); `stream` is the socket `connection` drives,
//! plain until STARTTLS (RFC 3207) or implicit TLS (RFC 8314) upgrades it;
//! `pem` reads certificates and keys. The call-ahead and delivery clients
//! upgrade their sockets with the same `Stream`, with the configs of
//! `client` (encrypt-only or verified, built once per policy snapshot).
//!
//! Why futures-rustls and not rustls's sans-IO `Connection` in the driver:
//! glommio's `TcpStream` already implements the futures-io traits, so the
//! adapter adds no copy the sans-IO loop would save (rustls buffers the
//! records either way), and the driver keeps one read/write path for clear
//! and encrypted sessions. The benchmark (benches/tls.sh) measures what TLS
//! costs per session.

pub mod client;
pub mod outbound;
pub mod pem;
pub mod server;
pub mod stream;

pub use server::{ServerTls, ShardTls};
pub use stream::{Stream, TlsInfo};

use std::sync::Arc;

/// The crypto provider every config names explicitly (ring: no cmake, no
/// C toolchain beyond cc), so nothing depends on a process default.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2 only: 1.0 and 1.1 are deprecated (RFC 8996).
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
