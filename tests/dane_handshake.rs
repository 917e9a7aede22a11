//! The DANE verifier in real handshakes: `openssl s_server` on loopback
//! with the test PKI's server certificate (SAN mx.dane.example, its CA
//! sent in the chain), and Portcullis's client (`tls::Stream::connect`
//! with `dane::client_config`). A matching DANE-EE or DANE-TA record
//! gets through, over TLS 1.3 and 1.2; a wrong record, or a DANE-TA
//! record with names the certificate lacks, is refused. Then the whole
//! flow: the TLSA record published in a zone the test signs, read through
//! the validating unbound, decided on and used for the handshake.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::certs::TestPki;
use common::dnssec::{SignedDns, SIGNED_MX, SIGNED_ZONE};
use common::process::{free_port, program, signal_and_wait, wait_listening, TempDir};
use portcullis::dane::{self, DaneDecision, DaneMode, Tlsa, Verifier};
use portcullis::dns::{DnsSettings, Resolver, Secured};
use portcullis::metrics::Metrics;
use portcullis::tls::{self, Stream, TlsInfo};
use rustls::pki_types::{CertificateDer, ServerName};

/// `openssl s_server -www` with the test server certificate and its CA
/// as the chain; killed on drop.
struct OpensslServer {
    addr: SocketAddr,
    child: Child,
}

impl OpensslServer {
    fn start(pki: &TestPki, extra: &[&str]) -> OpensslServer {
        let port = free_port();
        let mut child = Command::new(program("openssl"))
            .arg("s_server")
            .args(["-accept", &format!("127.0.0.1:{port}"), "-www", "-quiet"])
            .arg("-cert")
            .arg(pki.server_cert())
            .arg("-key")
            .arg(pki.server_key())
            .arg("-cert_chain")
            .arg(pki.ca())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_server");
        wait_listening(&mut child, port, Duration::from_secs(10)).expect("s_server listens");
        OpensslServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        }
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        signal_and_wait(&mut self.child, libc::SIGKILL, Duration::from_secs(10));
    }
}

fn certificate(path: &Path) -> CertificateDer<'static> {
    tls::pem::certificates("test", path).unwrap().remove(0)
}

fn pki(dir: &TempDir) -> TestPki {
    TestPki::new(dir.path(), &[SIGNED_MX])
}

fn on_shard<T: Send + 'static>(
    body: impl FnOnce() -> Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || body())
        .unwrap()
        .join()
        .unwrap()
}

/// Connects to `server` and runs the handshake with the config of
/// `decision`, SNI = the MX host (RFC 7672 §8.1).
fn handshake(server: SocketAddr, decision: DaneDecision) -> Result<TlsInfo, String> {
    let config = dane::client_config(&decision).expect("a TLS decision");
    on_shard(move || {
        Box::pin(async move {
            let tcp = glommio::net::TcpStream::connect(server)
                .await
                .map_err(|e| e.to_string())?;
            let mut stream = Stream::Plain(tcp);
            let name = ServerName::try_from(SIGNED_MX).unwrap();
            stream
                .connect(config, name)
                .await
                .map_err(|e| e.to_string())
        })
    })
}

fn authenticate(records: Vec<Tlsa>, names: &[&str]) -> DaneDecision {
    DaneDecision::Authenticate(Arc::new(
        Verifier::new(&records, names).expect("usable records"),
    ))
}

const NAMES: [&str; 2] = [SIGNED_MX, SIGNED_ZONE];

#[test]
fn matching_records_authenticate_the_server() {
    let dir = TempDir::new("dane-handshake");
    let pki = pki(&dir);
    let server = OpensslServer::start(&pki, &[]);
    let (leaf, ca) = (certificate(&pki.server_cert()), certificate(&pki.ca()));
    let ee = Tlsa::for_certificate(3, 1, 1, &leaf).unwrap();
    let info = handshake(server.addr, authenticate(vec![ee], &NAMES)).expect("3 1 1 of the leaf");
    assert_eq!(info.version, "TLSv1.3");
    let ta = Tlsa::for_certificate(2, 0, 1, &ca).unwrap();
    handshake(server.addr, authenticate(vec![ta], &NAMES)).expect("2 0 1 of the CA in the chain");
}

#[test]
fn tls12_handshake_signatures_are_checked_too() {
    let dir = TempDir::new("dane-handshake12");
    let pki = pki(&dir);
    let server = OpensslServer::start(&pki, &["-tls1_2"]);
    let ee = Tlsa::for_certificate(3, 1, 1, &certificate(&pki.server_cert())).unwrap();
    let info = handshake(server.addr, authenticate(vec![ee], &NAMES)).expect("3 1 1 over TLS 1.2");
    assert_eq!(info.version, "TLSv1.2");
}

#[test]
fn wrong_records_are_refused() {
    let dir = TempDir::new("dane-refused");
    let pki = pki(&dir);
    let server = OpensslServer::start(&pki, &[]);
    let (rogue, _) = pki.rogue_client("rogue.example");
    let wrong = Tlsa::for_certificate(3, 1, 1, &certificate(&rogue)).unwrap();
    let refused = handshake(server.addr, authenticate(vec![wrong], &NAMES));
    assert!(refused.is_err(), "a wrong 3 1 1 got through: {refused:?}");
    // The right anchor, but the certificate does not carry these names.
    let ta = Tlsa::for_certificate(2, 0, 1, &certificate(&pki.ca())).unwrap();
    let refused = handshake(server.addr, authenticate(vec![ta], &["elsewhere.example"]));
    assert!(
        refused.is_err(),
        "DANE-TA without a matching name got through: {refused:?}"
    );
    // Unusable records only: encrypted, not authenticated (RFC 7672 §2.2).
    handshake(server.addr, DaneDecision::EncryptOnly).expect("encrypt-only handshake");
}

#[test]
fn published_tlsa_through_the_validating_resolver_authenticates() {
    let dir = TempDir::new("dane-flow");
    let pki = pki(&dir);
    let server = OpensslServer::start(&pki, &[]);
    let leaf = certificate(&pki.server_cert());
    let good = Tlsa::for_certificate(3, 1, 1, &leaf).unwrap();
    let dns = SignedDns::start(&[good.to_string()]);
    let dns_addr = dns.addr();
    let tlsa = on_shard(move || {
        Box::pin(async move {
            let settings = DnsSettings {
                trust_ad: true,
                ..DnsSettings::default()
            };
            let resolver = Resolver::new(vec![dns_addr], &settings, Arc::new(Metrics::default()));
            dane::lookup_tlsa(&resolver, DaneMode::Mandatory, SIGNED_MX, 25, true).await
        })
    });
    assert_eq!(tlsa, Secured::Secure(vec![good]));
    let decision = dane::policy(DaneMode::Mandatory, tlsa, true, &NAMES);
    assert!(
        matches!(decision, DaneDecision::Authenticate(_)),
        "{decision:?}"
    );
    handshake(server.addr, decision).expect("DANE-authenticated handshake");
}
