//! The slapd harness itself (tests/common/slapd.rs): the seed's example
//! routing entry is stored and found by the bind user, hidden from an
//! anonymous search, gone while slapd is killed and back after a restart
//! on the same port with the same data. The LDAP client and queries are
//! tested against this harness, so it must hold what it promises.

mod common;

use common::slapd::{route_entry, Slapd};
use std::net::TcpStream;

const DOMAIN: &str = "cisco.example.test";
const FILTER: &str = "(mail=cisco.example.test)";

fn seed_entry() -> String {
    route_entry(
        DOMAIN,
        "smtp.mydomain.example.test",
        Some("smtp2.mydomain.example.test,smtp3.mydomain.example.test:9025"),
    )
}

#[test]
fn seed_entry_is_served_to_the_bind_user_only_and_survives_a_restart() {
    let mut ldap = Slapd::start();
    ldap.add(&seed_entry());

    let found = ldap.search(true, FILTER);
    assert!(found.success(), "ldapsearch as the bind user: {found:?}");
    assert!(
        found
            .stdout
            .contains("dn: mail=cisco.example.test,ou=domains,dc=example,dc=com"),
        "{}",
        found.stdout
    );
    assert!(
        found
            .stdout
            .contains("mailHost: smtp.mydomain.example.test"),
        "{}",
        found.stdout
    );
    assert!(
        found
            .stdout
            .contains("callAhead: smtp2.mydomain.example.test,smtp3.mydomain.example.test:9025"),
        "{}",
        found.stdout
    );

    // Anonymous may bind but reads nothing: slapd hides the base
    // (noSuchObject, ldapsearch exits 32) and prints no entry.
    let anonymous = ldap.search(false, FILTER);
    assert_eq!(
        anonymous.code(),
        Some(32),
        "anonymous search: {anonymous:?}"
    );
    assert!(!anonymous.stdout.contains("dn:"), "{}", anonymous.stdout);

    ldap.kill();
    let refused = TcpStream::connect(("127.0.0.1", ldap.port()));
    assert!(
        refused.is_err(),
        "slapd killed but port {} accepts",
        ldap.port()
    );

    ldap.restart();
    let again = ldap.search(true, FILTER);
    assert!(
        again
            .stdout
            .contains("mailHost: smtp.mydomain.example.test"),
        "after restart: {again:?}"
    );
}

#[test]
fn modify_changes_what_the_bind_user_reads() {
    let ldap = Slapd::start();
    ldap.add(&seed_entry());
    ldap.modify(&format!(
        "dn: mail={DOMAIN},ou=domains,dc=example,dc=com\nchangetype: modify\nreplace: mailHost\nmailHost: other.example.test\n"
    ));
    let found = ldap.search(true, FILTER);
    assert!(
        found.stdout.contains("mailHost: other.example.test"),
        "{found:?}"
    );
}

#[test]
#[should_panic(expected = "ldapadd failed")]
fn add_panics_with_slapds_message() {
    let ldap = Slapd::start();
    // No such attribute in any loaded schema: slapd refuses it.
    ldap.add("dn: mail=x.example.test,ou=domains,dc=example,dc=com\nobjectClass: portcullisMailRoute\nmail: x.example.test\nnoSuchAttribute: 1\n");
}

#[test]
fn tls_listeners_serve_the_bind_user() {
    let ldap = Slapd::start_tls();
    ldap.add(&seed_entry());
    let url = ldap.ldaps_url();
    let out = tls_search(&ldap, &url, &[]);
    assert!(
        out.stdout.contains("mailHost: smtp.mydomain.example.test"),
        "{url}: {out:?}"
    );
    // StartTLS (-ZZ: fail unless it succeeds) on the plain port.
    let out = tls_search(&ldap, &ldap.url(), &["-ZZ"]);
    assert!(
        out.stdout.contains("mailHost: smtp.mydomain.example.test"),
        "StartTLS: {out:?}"
    );
}

/// ldapsearch of the seed entry at `url` as the bind user, trusting the
/// test CA, with `extra` options (e.g. `-ZZ` for StartTLS).
fn tls_search(ldap: &Slapd, url: &str, extra: &[&str]) -> common::CmdOutput {
    let mut cmd = std::process::Command::new(common::process::program("ldapsearch"));
    cmd.env("LDAPTLS_CACERT", ldap.ca_file())
        .arg("-x")
        .args(extra)
        .args(["-LLL", "-H", url, "-b", ldap.base(), "-D", ldap.bind_dn(), "-y"])
        .arg(ldap.password_file())
        .arg(FILTER);
    common::run_with_timeout(&mut cmd, common::WAIT)
}
