//! DANE without the network: TLSA parsing and usability, matching against
//! certificates made at test time with the openssl CLI (a CA, a server
//! leaf it signed for mx.dane.example, and an unrelated CA and leaf), the
//! verifier's DANE-EE and DANE-TA rules with time passed in, and the RFC
//! 7672 §2.2 decision table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};

use super::tlsa::*;
use super::*;
use crate::dns::Secured;

const MX_HOST: &str = "mx.dane.example";
const DOMAIN: &str = "dane.example";

/// The certificates, DER: (our CA, our leaf, the other CA, its leaf).
struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    other_ca: CertificateDer<'static>,
    other_leaf: CertificateDer<'static>,
}

/// Made once per test run (openssl takes a moment per key).
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("portcullis-dane-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        make_ca(&dir, "ca", "DANE Test CA");
        make_leaf(&dir, "leaf", "ca", MX_HOST);
        make_ca(&dir, "other-ca", "Other CA");
        make_leaf(&dir, "other-leaf", "other-ca", MX_HOST);
        let der = |name: &str| {
            crate::tls::pem::certificates("test", &dir.join(format!("{name}.pem")))
                .unwrap()
                .remove(0)
        };
        let pki = Pki {
            ca: der("ca"),
            leaf: der("leaf"),
            other_ca: der("other-ca"),
            other_leaf: der("other-leaf"),
        };
        let _ = std::fs::remove_dir_all(&dir);
        pki
    })
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const P256: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

fn make_ca(dir: &Path, name: &str, cn: &str) {
    let (key, pem, subject) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={cn}"),
    );
    let args = [
        &["req", "-x509"][..],
        &P256,
        &[
            "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject,
        ],
    ]
    .concat();
    openssl(dir, &args);
}

/// A server leaf for `host`, valid two days from now, signed by `ca`.
fn make_leaf(dir: &Path, name: &str, ca: &str, host: &str) {
    let ext: PathBuf = dir.join(format!("{name}.ext"));
    let text = format!(
        "subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    );
    std::fs::write(&ext, text).unwrap();
    let (key, csr, pem, subject) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("/CN={host}"),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &P256,
            &["-keyout", &key, "-out", &csr, "-subj", &subject],
        ]
        .concat(),
    );
    let (ca_pem, ca_key, ext) = (
        format!("{ca}.pem"),
        format!("{ca}.key"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

fn record(usage: u8, selector: u8, matching_type: u8, certificate: &CertificateDer<'_>) -> Tlsa {
    Tlsa::for_certificate(usage, selector, matching_type, certificate).unwrap()
}

fn now() -> UnixTime {
    UnixTime::now()
}

/// Ten days on: every test certificate has expired.
fn after_expiry() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(now().as_secs() + 10 * 86_400))
}

fn verifier(records: &[Tlsa]) -> Verifier {
    Verifier::new(records, &[MX_HOST, DOMAIN]).expect("a usable record")
}

#[test]
fn presentation_and_wire_forms_parse_alike() {
    let text = Tlsa::parse("3 1 1 0102 0304").unwrap();
    assert_eq!(text, Tlsa::from_rdata(&[3, 1, 1, 1, 2, 3, 4]).unwrap());
    assert_eq!(text.to_string(), "3 1 1 01020304");
    assert_eq!(
        (text.usage, text.selector, text.matching_type),
        (USAGE_DANE_EE, SELECTOR_SPKI, MATCHING_SHA256)
    );
    assert!(Tlsa::parse("3 1").is_err());
    assert!(Tlsa::parse("3 1 256 00").is_err());
    assert!(Tlsa::parse("3 1 1 0g").is_err());
    assert!(Tlsa::parse("3 1 1 012").is_err());
    assert!(Tlsa::from_rdata(&[3, 1]).is_err());
}

#[test]
fn only_dane_usages_with_known_parameters_are_usable() {
    let sha256 = "00".repeat(32);
    let usable = |text: &str| Tlsa::parse(text).unwrap().usability();
    assert_eq!(usable(&format!("3 1 1 {sha256}")), Ok(()));
    assert_eq!(usable(&format!("2 0 1 {sha256}")), Ok(()));
    assert_eq!(usable(&format!("3 0 2 {}", "00".repeat(64))), Ok(()));
    assert_eq!(usable("3 0 0 3082"), Ok(()));
    // RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) are not for SMTP.
    assert_eq!(usable(&format!("0 0 1 {sha256}")), Err(Unusable::PkixUsage));
    assert_eq!(usable(&format!("1 1 1 {sha256}")), Err(Unusable::PkixUsage));
    assert_eq!(usable(&format!("4 1 1 {sha256}")), Err(Unusable::Unknown));
    assert_eq!(usable(&format!("3 2 1 {sha256}")), Err(Unusable::Unknown));
    assert_eq!(usable(&format!("3 1 3 {sha256}")), Err(Unusable::Unknown));
    assert_eq!(usable("3 1 1 0011"), Err(Unusable::Malformed));
    assert_eq!(usable(&format!("3 1 2 {sha256}")), Err(Unusable::Malformed));
}

#[test]
fn a_set_of_unusable_records_makes_no_verifier() {
    let pki = pki();
    let pkix = [
        record(USAGE_PKIX_EE, 1, 1, &pki.leaf),
        record(USAGE_PKIX_TA, 0, 1, &pki.ca),
    ];
    assert!(Verifier::new(&pkix, &[MX_HOST]).is_none());
}

#[test]
fn dane_ee_spki_sha256_right_and_wrong() {
    let pki = pki();
    let right = verifier(&[record(3, 1, 1, &pki.leaf)]);
    assert_eq!(
        right.authenticate(&pki.leaf, &[], now()),
        Ok(DaneMatch::EndEntity)
    );
    assert!(right.authenticate(&pki.other_leaf, &[], now()).is_err());
    let wrong = verifier(&[Tlsa::parse(&format!("3 1 1 {}", "ab".repeat(32))).unwrap()]);
    assert!(wrong
        .authenticate(&pki.leaf, &[pki.ca.clone()], now())
        .is_err());
}

#[test]
fn dane_ee_full_certificate_and_other_digests_match() {
    let pki = pki();
    for (selector, matching_type) in [(0, 1), (0, 0), (1, 2), (1, 0), (0, 2)] {
        let verifier = verifier(&[record(3, selector, matching_type, &pki.leaf)]);
        let what = format!("3 {selector} {matching_type}");
        assert_eq!(
            verifier.authenticate(&pki.leaf, &[], now()),
            Ok(DaneMatch::EndEntity),
            "{what}"
        );
        assert!(
            verifier.authenticate(&pki.other_leaf, &[], now()).is_err(),
            "{what}"
        );
    }
}

#[test]
fn dane_ee_ignores_names_and_expiry() {
    let pki = pki();
    // RFC 7672 §3.1.1: the record is the trust; a name nobody asked for
    // and an expired certificate do not matter.
    let verifier = Verifier::new(&[record(3, 1, 1, &pki.leaf)], &["elsewhere.example"]).unwrap();
    assert_eq!(
        verifier.authenticate(&pki.leaf, &[], after_expiry()),
        Ok(DaneMatch::EndEntity)
    );
}

#[test]
fn dane_ta_on_the_ca_of_the_chain() {
    let pki = pki();
    let verifier = verifier(&[record(2, 0, 1, &pki.ca)]);
    let chain = [pki.ca.clone()];
    assert_eq!(
        verifier.authenticate(&pki.leaf, &chain, now()),
        Ok(DaneMatch::TrustAnchor)
    );
    // The other CA's leaf does not chain to ours, even with our CA sent.
    assert!(verifier
        .authenticate(&pki.other_leaf, &chain, now())
        .is_err());
    // RFC 7672 §3.1.2: the server must send the anchor; we do not have it.
    assert!(verifier.authenticate(&pki.leaf, &[], now()).is_err());
    // A chain with a certificate that matches no record.
    assert!(verifier
        .authenticate(&pki.leaf, &[pki.other_ca.clone()], now())
        .is_err());
}

#[test]
fn dane_ta_checks_names_and_expiry() {
    let pki = pki();
    let chain = [pki.ca.clone()];
    let elsewhere = Verifier::new(&[record(2, 1, 1, &pki.ca)], &["elsewhere.example"]).unwrap();
    assert!(elsewhere.authenticate(&pki.leaf, &chain, now()).is_err());
    let here = verifier(&[record(2, 1, 1, &pki.ca)]);
    assert_eq!(
        here.authenticate(&pki.leaf, &chain, now()),
        Ok(DaneMatch::TrustAnchor)
    );
    assert!(here
        .authenticate(&pki.leaf, &chain, after_expiry())
        .is_err());
}

#[test]
fn any_matching_record_authenticates() {
    let pki = pki();
    let records = [
        record(3, 1, 1, &pki.other_leaf),
        record(2, 0, 1, &pki.ca),
        record(1, 1, 1, &pki.leaf),
    ];
    let verifier = verifier(&records);
    assert_eq!(
        verifier.records().count(),
        2,
        "the PKIX-EE record is dropped"
    );
    assert_eq!(
        verifier.authenticate(&pki.leaf, &[pki.ca.clone()], now()),
        Ok(DaneMatch::TrustAnchor)
    );
    assert_eq!(
        verifier.authenticate(&pki.other_leaf, &[], now()),
        Ok(DaneMatch::EndEntity)
    );
}

// ---- RFC 7672 §2.2: the decision per host ---------------------------------

fn decide(mode: DaneMode, tlsa: Secured<Vec<Tlsa>>, mx_secure: bool) -> &'static str {
    match policy(mode, tlsa, mx_secure, &[MX_HOST, DOMAIN]) {
        DaneDecision::NotApplied => "not-applied",
        DaneDecision::Authenticate(_) => "authenticate",
        DaneDecision::EncryptOnly => "encrypt-only",
        DaneDecision::Defer(_) => "defer",
    }
}

#[test]
fn decisions_follow_rfc_7672() {
    use DaneMode::*;
    let good = || vec![Tlsa::parse(&format!("3 1 1 {}", "00".repeat(32))).unwrap()];
    let unusable = || vec![Tlsa::parse(&format!("1 1 1 {}", "00".repeat(32))).unwrap()];
    let table: [(DaneMode, Secured<Vec<Tlsa>>, bool, &str, &str); 16] = [
        (
            Off,
            Secured::Secure(good()),
            true,
            "not-applied",
            "off never looks",
        ),
        (Off, Secured::Bogus, true, "not-applied", "off never looks"),
        (
            Opportunistic,
            Secured::Secure(good()),
            true,
            "authenticate",
            "secure usable records",
        ),
        (
            Mandatory,
            Secured::Secure(good()),
            true,
            "authenticate",
            "secure usable records",
        ),
        (
            Opportunistic,
            Secured::Secure(vec![]),
            true,
            "not-applied",
            "securely no TLSA",
        ),
        (
            Mandatory,
            Secured::Secure(vec![]),
            true,
            "defer",
            "seed 003: no DANE, no connection",
        ),
        (
            Opportunistic,
            Secured::Insecure(good()),
            true,
            "not-applied",
            "insecure TLSA",
        ),
        (
            Mandatory,
            Secured::Insecure(good()),
            true,
            "defer",
            "insecure TLSA",
        ),
        (Opportunistic, Secured::Bogus, true, "defer", "§2.1.1 bogus"),
        (Mandatory, Secured::Bogus, true, "defer", "§2.1.1 bogus"),
        (
            Opportunistic,
            Secured::Failed("timeout".into()),
            true,
            "defer",
            "§2.1.1 failure",
        ),
        (
            Opportunistic,
            Secured::Secure(unusable()),
            true,
            "encrypt-only",
            "§2.2 all unusable",
        ),
        (
            Mandatory,
            Secured::Secure(unusable()),
            true,
            "defer",
            "mandatory needs authentication",
        ),
        (
            Opportunistic,
            Secured::Secure(good()),
            false,
            "not-applied",
            "§2.2.1 insecure MX",
        ),
        (
            Mandatory,
            Secured::Secure(good()),
            false,
            "defer",
            "§2.2.1 insecure MX",
        ),
        (
            Opportunistic,
            Secured::Bogus,
            false,
            "not-applied",
            "§2.2.1: no TLSA lookup at all",
        ),
    ];
    for (mode, tlsa, mx_secure, expected, why) in table {
        let shown = format!("{mode:?} {tlsa:?} mx_secure={mx_secure}");
        assert_eq!(decide(mode, tlsa, mx_secure), expected, "{shown}: {why}");
    }
}

#[test]
fn client_config_only_for_tls_decisions() {
    let pki = pki();
    let authenticate = policy(
        DaneMode::Opportunistic,
        Secured::Secure(vec![record(3, 1, 1, &pki.leaf)]),
        true,
        &[MX_HOST],
    );
    assert_eq!(authenticate.metric_label(), "authenticated");
    assert!(client_config(&authenticate).is_some());
    assert!(client_config(&DaneDecision::EncryptOnly).is_some());
    assert!(client_config(&DaneDecision::NotApplied).is_none());
    assert!(client_config(&DaneDecision::Defer("x".into())).is_none());
    assert_eq!(DaneDecision::Defer("x".into()).metric_label(), "deferred");
}

#[test]
fn dane_mode_reads_as_configured() {
    #[derive(serde::Deserialize)]
    struct Destination {
        dane: DaneMode,
    }
    let read = |text: &str| toml::from_str::<Destination>(text).map(|d| d.dane);
    assert_eq!(
        read("dane = \"opportunistic\"").unwrap(),
        DaneMode::Opportunistic
    );
    assert_eq!(read("dane = \"mandatory\"").unwrap(), DaneMode::Mandatory);
    assert_eq!(read("dane = \"off\"").unwrap(), DaneMode::Off);
    assert!(read("dane = \"maybe\"").is_err());
}
