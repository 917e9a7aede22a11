//! A throw-away PKI for TLS tests, made with the `openssl` CLI (installed
//! by run.sh): a test CA, a server certificate for `localhost` and
//! 127.0.0.1 (plus any names asked for) signed by it, a client certificate
//! signed by it, and a client certificate from a second, untrusted CA (the
//! "invalid certificate" of seed 003). P-256 keys; two days of validity
//! unless asked for more.
//!
//! Not self-signed leaves: webpki (rustls) refuses a CA certificate used as
//! the end entity, and `openssl req -x509` marks its output CA:TRUE.

use super::process::{program, run_with_timeout};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const OPENSSL_TIMEOUT: Duration = Duration::from_secs(20);

/// The files of one test PKI, all PEM, under `dir`.
#[derive(Clone, Debug)]
pub struct TestPki {
    pub dir: PathBuf,
    /// Validity of every certificate made, in days.
    days: u32,
}

impl TestPki {
    /// Make the CA and the server certificate (SAN: localhost, 127.0.0.1
    /// and `extra_names`) in `dir`.
    pub fn new(dir: &Path, extra_names: &[&str]) -> TestPki {
        TestPki::valid_for(dir, extra_names, 2)
    }

    /// The same with `days` of validity (a scanner such as testssl.sh
    /// rates a certificate that expires within 30 days as a finding).
    pub fn valid_for(dir: &Path, extra_names: &[&str], days: u32) -> TestPki {
        let pki = TestPki { dir: dir.to_path_buf(), days };
        pki.make_ca("ca", "Portcullis Test CA");
        let mut san = String::from("IP:127.0.0.1,DNS:localhost");
        for name in extra_names {
            san.push_str(&format!(",DNS:{name}"));
        }
        pki.make_leaf("server", "ca", "localhost", &san, "serverAuth");
        pki
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A client certificate (CN = `cn`) signed by the test CA: returns
    /// (certificate, key).
    pub fn client(&self, cn: &str) -> (PathBuf, PathBuf) {
        let name = format!("client-{cn}");
        self.make_leaf(&name, "ca", cn, &format!("DNS:{cn}"), "clientAuth");
        (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")))
    }

    /// A client certificate from another CA that nothing trusts.
    pub fn rogue_client(&self, cn: &str) -> (PathBuf, PathBuf) {
        if !self.dir.join("rogue-ca.pem").exists() {
            self.make_ca("rogue-ca", "Rogue CA");
        }
        let name = format!("rogue-{cn}");
        self.make_leaf(&name, "rogue-ca", cn, &format!("DNS:{cn}"), "clientAuth");
        (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")))
    }

    /// A second server certificate and key for `cn` (a reload test swaps
    /// files): returns (certificate, key).
    pub fn another_server(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        self.make_leaf(name, "ca", cn, "IP:127.0.0.1,DNS:localhost", "serverAuth");
        (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")))
    }

    fn make_ca(&self, name: &str, cn: &str) {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let subject = format!("/CN={cn}");
        let days = self.days.to_string();
        openssl(&self.dir, &[&["req", "-x509"][..], &P256, &["-keyout", &key, "-out", &pem, "-days", &days, "-subj", &subject]].concat());
    }

    fn make_leaf(&self, name: &str, ca: &str, cn: &str, san: &str, usage: &str) {
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext, format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n")).expect("write ext");
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let subject = format!("/CN={cn}");
        openssl(&self.dir, &[&["req"][..], &P256, &["-keyout", &key, "-out", &csr, "-subj", &subject]].concat());
        let (ca_pem, ca_key, ext) = (format!("{ca}.pem"), format!("{ca}.key"), format!("{name}.ext"));
        let days = self.days.to_string();
        openssl(
            &self.dir,
            &["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial", "-out", &pem, "-days", &days, "-extfile", &ext],
        );
    }
}

const P256: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new(program("openssl"));
    cmd.current_dir(dir).args(args);
    let out = run_with_timeout(&mut cmd, OPENSSL_TIMEOUT);
    assert!(out.success(), "openssl {args:?} failed: {}{}", out.stdout, out.stderr);
}
