//! The client configs against a rustls server in memory (no sockets): the
//! test PKI is made with the openssl CLI, like `tests/common/certs.rs`.

use super::*;
use crate::tls::ServerTls;
use rustls::{ClientConnection, ServerConnection};
use std::path::PathBuf;
use std::process::Command;

/// A CA and a server certificate for `localhost`, `mx.partner.test` and
/// 127.0.0.1, plus a client certificate, in a fresh directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-tls-client-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Test CA",
        ]);
        pki.leaf(
            "server",
            "IP:127.0.0.1,DNS:localhost,DNS:mx.partner.test",
            "serverAuth",
        );
        pki.leaf("client", "DNS:probe.test", "clientAuth");
        pki
    }

    fn leaf(&self, name: &str, san: &str, usage: &str) {
        std::fs::write(
            self.dir.join(format!("{name}.ext")),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(&self.dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// The server side; with `client_ca`, it asks for a client certificate.
    fn server(&self, client_ca: bool) -> Arc<rustls::ServerConfig> {
        let config = TlsConfig {
            certificate: self.path("server.pem"),
            private_key: self.path("server.key"),
            client_ca: if client_ca {
                self.path("ca.pem")
            } else {
                String::new()
            },
        };
        crate::tls::ShardTls::default().config(&ServerTls::load(&config).unwrap().unwrap(), client_ca)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run a handshake in memory; the first error either side raises.
fn handshake(
    client: Arc<ClientConfig>,
    name: ServerName<'static>,
    server: Arc<rustls::ServerConfig>,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let mut c = ClientConnection::new(client, name)?;
    let mut s = ServerConnection::new(server)?;
    for _ in 0..20 {
        transfer(&mut c, &mut s)?;
        transfer(&mut s, &mut c)?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok((c, s));
        }
    }
    panic!("the handshake did not finish");
}

fn transfer(
    from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl rustls::SideData>>,
    to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl rustls::SideData>>,
) -> Result<(), rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

fn name(host: &str) -> ServerName<'static> {
    server_name(Some(host), "127.0.0.1".parse().unwrap())
}

#[test]
fn encrypt_only_accepts_a_certificate_nobody_trusts_and_any_name() {
    let pki = Pki::new("encrypt");
    let (c, _) = handshake(
        encrypt_only(None).unwrap(),
        name("not-in-the-certificate.test"),
        pki.server(false),
    )
    .unwrap();
    let version = c.protocol_version().unwrap();
    assert!(
        matches!(
            version,
            rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2
        ),
        "{version:?}"
    );
}

#[test]
fn verified_checks_the_chain_and_the_name() {
    let pki = Pki::new("verify");
    let ca = pki.dir.join("ca.pem");
    let trusting = verified(Some(&ca)).unwrap();
    handshake(trusting.clone(), name("mx.partner.test"), pki.server(false))
        .expect("the right name, the right CA");
    handshake(
        trusting.clone(),
        server_name(None, "127.0.0.1".parse().unwrap()),
        pki.server(false),
    )
    .expect("an IP literal matches its IP SAN");
    let wrong = handshake(
        trusting.clone(),
        name("other.partner.test"),
        pki.server(false),
    )
    .unwrap_err();
    assert!(
        matches!(wrong, rustls::Error::InvalidCertificate(_)),
        "{wrong:?}"
    );
    let wrong_ip = handshake(
        trusting,
        server_name(None, "127.0.0.2".parse().unwrap()),
        pki.server(false),
    )
    .unwrap_err();
    assert!(
        matches!(wrong_ip, rustls::Error::InvalidCertificate(_)),
        "{wrong_ip:?}"
    );
    // The system roots alone do not know the test CA.
    let unknown = handshake(
        verified(None).unwrap(),
        name("mx.partner.test"),
        pki.server(false),
    )
    .unwrap_err();
    assert!(
        matches!(unknown, rustls::Error::InvalidCertificate(_)),
        "{unknown:?}"
    );
}

#[test]
fn our_client_certificate_is_presented_when_configured() {
    let pki = Pki::new("identity");
    let ours = TlsConfig {
        certificate: pki.path("client.pem"),
        private_key: pki.path("client.key"),
        client_ca: String::new(),
    };
    let identity = identity(&ours).unwrap();
    assert!(identity.is_some());
    let (_, server) = handshake(
        encrypt_only(identity).unwrap(),
        name("localhost"),
        pki.server(true),
    )
    .unwrap();
    assert!(
        server
            .peer_certificates()
            .is_some_and(|chain| !chain.is_empty()),
        "the server saw our certificate"
    );
    let (_, server) = handshake(
        encrypt_only(None).unwrap(),
        name("localhost"),
        pki.server(true),
    )
    .unwrap();
    assert!(server.peer_certificates().is_none());
    assert!(
        super::identity(&TlsConfig::default()).unwrap().is_none(),
        "no [tls] certificate, no identity"
    );
}

#[test]
fn a_missing_ca_file_is_an_error_naming_it() {
    let err = verified(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
    assert!(err.starts_with("ca_file /nonexistent/ca.pem"), "{err}");
}

#[test]
fn server_names_come_from_the_host_name_else_the_address() {
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    assert_eq!(
        server_name(Some("MX1.Example.COM."), ip),
        ServerName::try_from("MX1.Example.COM").unwrap()
    );
    assert_eq!(server_name(None, ip), ServerName::IpAddress(ip.into()));
    assert_eq!(
        server_name(Some("not a name"), ip),
        ServerName::IpAddress(ip.into())
    );
}
