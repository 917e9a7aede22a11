//! End to end: testssl.sh (Debian's package, installed by run.sh) rates
//! the STARTTLS port (issue 9: no protocol older than TLS 1.2, no weak
//! cipher, the server's own cipher order, no finding above LOW).
//!
//! Findings about the test certificate itself are not the server's: its CA
//! is made by the test, so no trust store knows it (`cert_chain_of_trust`),
//! and it names no CRL or OCSP responder (`cert_revocation`). Those two
//! are left out; everything else counts. The certificate is valid for 90
//! days, since testssl.sh rates one that expires within 30 days as HIGH.
//! One full scan takes about a minute.

mod common;

use common::certs::TestPki;
use common::process::{program, run_with_timeout, TempDir};
use common::*;
use std::time::Duration;

const SCAN_TIMEOUT: Duration = Duration::from_secs(600);
/// Properties of the test PKI, not of the server (see the header).
const TEST_PKI_FINDINGS: [&str; 2] = ["cert_chain_of_trust", "cert_revocation"];

#[test]
fn testssl_finds_nothing_above_low_on_the_starttls_port() {
    let dir = TempDir::new("testssl");
    let pki = TestPki::valid_for(dir.path(), &[], 90);
    let config = format!(
        "[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
        pki.server_cert().display(),
        pki.server_key().display()
    );
    let file = ConfigFile::with_text(&config);
    let sink = Sink::start();
    let server = Portcullis::builder().config(file.path()).route("*", &sink).start();
    let json = dir.path().join("testssl.json");
    let mut cmd = std::process::Command::new(program("testssl"));
    cmd.args(["--quiet", "--color", "0", "--warnings", "off", "--starttls", "smtp", "--jsonfile"])
        .arg(&json)
        .arg(server.addr().to_string());
    let out = run_with_timeout(&mut cmd, SCAN_TIMEOUT);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no testssl.sh report ({e}): {}{}", out.stdout, out.stderr));
    let findings = parse(&text);
    assert!(findings.len() > 50, "a full scan: {} findings\n{}", findings.len(), out.stdout);
    let finding = |id: &str| findings.iter().find(|f| f.id == id).map(|f| f.finding.as_str()).unwrap_or("(missing)");
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(finding(old), "not offered", "{old}");
    }
    assert!(finding("TLS1_2").starts_with("offered") && finding("TLS1_3").starts_with("offered"));
    assert_eq!(finding("cipher_order"), "server", "the server's cipher order");
    for weak in ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA"] {
        assert_eq!(finding(weak), "not offered", "{weak}");
    }
    let serious: Vec<&Finding> = findings
        .iter()
        .filter(|f| !matches!(f.severity.as_str(), "OK" | "INFO" | "LOW" | "DEBUG" | "WARN"))
        .filter(|f| !TEST_PKI_FINDINGS.contains(&f.id.as_str()))
        .collect();
    assert!(serious.is_empty(), "findings above LOW: {serious:#?}");
}

/// One entry of testssl.sh's flat JSON report.
#[derive(Debug, serde::Deserialize)]
struct Finding {
    id: String,
    severity: String,
    finding: String,
}

fn parse(text: &str) -> Vec<Finding> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("testssl.sh JSON: {e}"))
}
