//! The server side TLS handshake of one connection (STARTTLS or implicit
//! TLS): the config its mail flow policy asks for, bounded by the command
//! timeout and the shutdown, one `tls` mail log line and the handshake
//! metrics. A client that sends garbage instead of a ClientHello fails at
//! once; one that stalls is cut off by the timeout; neither holds the shard.

use std::time::{Duration, Instant};

use crate::config::Policy;
use crate::policy::Client;
use crate::shard::Shard;
use crate::tls::{Stream, TlsInfo};

/// Run the handshake; Err is why the connection ends (for the disconnect line).
pub(super) async fn run(stream: &mut Stream, shard: &Shard, policy: &Policy, client: &Client, wait: Duration) -> Result<TlsInfo, String> {
    let conn = &client.peer.connection_id;
    let Some(server) = &policy.tls else {
        // Validation refuses a policy that offers TLS without a certificate.
        debug_assert!(false, "StartTls without [tls]");
        return Err("TLS is not configured".into());
    };
    let config = shard.tls.config(server, client.policy.params.tls.verify_client());
    let started = Instant::now();
    let handshake = async {
        let accept = async { Ok(stream.accept(config).await?) };
        match glommio::timer::timeout(wait, accept).await {
            Ok(info) => Ok(info),
            Err(glommio::GlommioError::TimedOut(_)) => Err(("timeout", "TLS handshake timed out".to_string())),
            Err(e) => Err(("failed", format!("TLS handshake failed: {}", std::io::Error::from(e)))),
        }
    };
    let shutdown = async {
        let _ = shard.shutdown.acquire(1).await;
        Err(("shutdown", "TLS handshake cut by the shutdown".to_string()))
    };
    let outcome = futures_lite::future::or(handshake, shutdown).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(info) => {
            shard.metrics.tls_handshake("ok", info.version);
            let subject = info.peer_subject.as_deref().unwrap_or("");
            shard.log.event("tls", format_args!(
                "conn={conn} {} result=ok version={} cipher={} client_cert=\"{}\" ms={ms:.3}",
                client.label(), info.version, info.cipher, subject.escape_debug()
            ));
            Ok(info)
        }
        Err((result, why)) => {
            shard.metrics.tls_handshake(result, "none");
            shard.log.event("tls", format_args!("conn={conn} {} result={result} why=\"{}\" ms={ms:.3}", client.label(), why.escape_debug()));
            Err(why)
        }
    }
}
