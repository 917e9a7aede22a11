//! End to end: DANE (RFC 7672) on delivery by MX, against real peers.
//!
//! - A zone the test signs (`common::dnssec`), served by a validating
//!   unbound that Portcullis trusts (`[dns] trust_ad = true`):
//!   dane.example MX 10 mx.dane.example, with the TLSA records the test
//!   gives at `_25._tcp.mx.dane.example`; nodane.dane.example (no MX: its
//!   own A is the host) without TLSA; bogus.dane.example whose TLSA fails
//!   validation. Every host is one 127.0.0.x of the test's own.
//! - A real Postfix `smtpd` on that 127.0.0.x:25 (delivery by MX connects
//!   to port 25) with STARTTLS offered (`smtpd_tls_security_level = may`:
//!   it would take mail in clear too, so mail that did not arrive was not
//!   sent, and mail that did came as the log says). Its certificate is the
//!   test PKI's server certificate; the good TLSA record is `3 1 1` of it.
//! - Routes: `"*" = ["USEDNS"]` (DNS, as with no route at all: the
//!   harness's flag-less default would relay to 127.0.0.1:2526), and in
//!   the routed case one SMTP route (seed 003: no DANE for a domain with
//!   an SMTP route).
//!
//! Nothing sleeps: log lines are awaited with deadlines.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;

use common::certs::TestPki;
use common::dnssec::{SignedDns, BOGUS_HOST, NO_TLSA_HOST, SIGNED_ZONE};
use common::postfix::PostfixTls;
use common::*;
use portcullis::dane::Tlsa;
use portcullis::tls;

const RCPT: &str = "bob@dane.example";
const NO_TLSA_RCPT: &str = "bob@nodane.dane.example";
const BOGUS_RCPT: &str = "bob@bogus.dane.example";

/// The peers of one test: the PKI, the signed zone and Postfix on `ip:25`.
struct World {
    _dir: TempDir,
    dns: SignedDns,
    postfix: PostfixSmtpd,
}

/// `tlsa` picks the records of `_25._tcp.mx.dane.example` from the PKI.
fn world(ip: Ipv4Addr, tlsa: impl FnOnce(&TestPki) -> Vec<String>) -> World {
    let dir = TempDir::new("dane-pki");
    let pki = TestPki::new(dir.path(), &[common::dnssec::SIGNED_MX]);
    let dns = SignedDns::start_at(&tlsa(&pki), &ip.to_string());
    let postfix_tls = PostfixTls {
        level: "may",
        cert: pki.server_cert(),
        key: pki.server_key(),
    };
    let domains = [SIGNED_ZONE, NO_TLSA_HOST, BOGUS_HOST];
    let postfix = PostfixSmtpd::start_tls_at(
        ip,
        25,
        &domains,
        &[RCPT, NO_TLSA_RCPT, BOGUS_RCPT],
        &postfix_tls,
    );
    World {
        _dir: dir,
        dns,
        postfix,
    }
}

/// `3 1 1` of the first certificate in `pem` (RFC 7671 §5.1: DANE-EE, SPKI, SHA-256).
fn tlsa_3_1_1(pem: &Path) -> String {
    let certificate = tls::pem::certificates("test", pem)
        .expect("a PEM certificate")
        .remove(0);
    Tlsa::for_certificate(3, 1, 1, &certificate)
        .expect("3 1 1")
        .to_string()
}

/// Portcullis relaying the test domains by DNS (`"*" = ["USEDNS"]`, and
/// the `routes` lines), `[dns] trust_ad` on, and the `destinations`
/// tables; an admin listener for /metrics.
fn portcullis(
    world: &World,
    routes: &str,
    destinations: &str,
) -> (ConfigFile, Portcullis, std::net::SocketAddr) {
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let text = format!(
        "relay_domains = [{SIGNED_ZONE:?}, {NO_TLSA_HOST:?}, {BOGUS_HOST:?}]\n\n[dns]\ntrust_ad = true\n\n\
         [routes]\n\"*\" = [\"USEDNS\"]\n{routes}\n\n{destinations}\n"
    );
    let file = ConfigFile::with_text(&text);
    let server = Portcullis::builder()
        .config(file.path())
        .routes_from_config()
        .dns(world.dns.addr())
        .retry_secs(1, 1)
        .admin_listen(&admin.to_string())
        .start();
    assert!(
        wait_until(WAIT, || is_listening(admin.port())),
        "admin port\n{}",
        server.log()
    );
    (file, server, admin)
}

fn send(server: &Portcullis, rcpt: &str) {
    let sent = Swaks::new(server.addr())
        .to(rcpt)
        .header("Subject: dane")
        .run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
}

/// The first `n` `event` lines that contain `needle`, awaited.
fn wait_lines(server: &Portcullis, event: &str, needle: &str, n: usize) -> Vec<String> {
    let lines = || {
        server
            .event_lines(event)
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(WAIT, || lines().len() >= n),
        "{n} {event} line(s) with {needle:?}\n{}",
        server.log()
    );
    lines()
}

/// Postfix took mail for `rcpt` (its discard transport "delivered" it).
fn postfix_received(postfix: &PostfixSmtpd, rcpt: &str) -> bool {
    let to = format!("to=<{rcpt}>");
    postfix
        .log()
        .lines()
        .any(|l| l.contains("postfix/discard") && l.contains(&to) && l.contains("status=sent"))
}

fn dane_count(admin: std::net::SocketAddr, result: &str) -> f64 {
    sample(
        &scrape(admin),
        &format!("portcullis_dane_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

#[test]
fn a_matching_tlsa_record_authenticates_the_mx() {
    let world = world(Ipv4Addr::new(127, 0, 0, 201), |pki| {
        vec![tlsa_3_1_1(&pki.server_cert())]
    });
    let (_file, server, admin) = portcullis(
        &world,
        "",
        &format!("[destination.{SIGNED_ZONE:?}]\ndane = \"mandatory\"\n"),
    );
    send(&server, RCPT);
    let delivered = wait_lines(&server, "delivered", RCPT, 1).remove(0);
    assert!(delivered.contains(" dane=authenticated "), "{delivered}");
    assert!(delivered.contains(" relay=127.0.0.201:25 "), "{delivered}");
    assert!(delivered.contains(" tls=TLSv1."), "{delivered}");
    assert!(
        wait_until(WAIT, || postfix_received(&world.postfix, RCPT)),
        "{}",
        world.postfix.log()
    );
    assert!(
        world
            .postfix
            .log()
            .contains("TLS connection established from"),
        "{}",
        world.postfix.log()
    );
    assert!(
        server.event_lines("tls-alert").is_empty(),
        "{}",
        server.log()
    );
    assert_eq!(dane_count(admin, "authenticated"), 1.0, "{}", scrape(admin));
}

#[test]
fn a_wrong_tlsa_record_defers_and_never_goes_in_clear() {
    let world = world(Ipv4Addr::new(127, 0, 0, 202), |pki| {
        let (rogue, _) = pki.rogue_client("rogue.example");
        vec![tlsa_3_1_1(&rogue)]
    });
    // Opportunistic: secure, usable records that do not match are still a
    // refusal (RFC 7672 §2.2), never a reason to fall back.
    let (_file, server, admin) = portcullis(
        &world,
        "",
        &format!("[destination.{SIGNED_ZONE:?}]\ndane = \"opportunistic\"\n"),
    );
    send(&server, RCPT);
    // Two attempts, two rounds: the retry did not fall back either.
    let alerts = wait_lines(&server, "tls-alert", "dane=failed", 2);
    assert!(
        alerts[0].contains(" wanted=authenticated ")
            && alerts[0].contains(" host=mx.dane.example "),
        "{}",
        alerts[0]
    );
    let retry = wait_lines(&server, "retry", "", 1).remove(0);
    assert!(
        retry.contains("TLS") || retry.contains("certificate"),
        "{retry}"
    );
    assert!(
        server.event_lines("delivered").is_empty(),
        "{}",
        server.log()
    );
    assert!(
        !postfix_received(&world.postfix, RCPT),
        "{}",
        world.postfix.log()
    );
    assert!(
        world.postfix.rcpt_commands_logged() == 0,
        "no RCPT reached Postfix\n{}",
        world.postfix.log()
    );
    assert!(dane_count(admin, "failed") >= 2.0, "{}", scrape(admin));
    assert_eq!(dane_count(admin, "authenticated"), 0.0);
}

#[test]
fn without_tlsa_mandatory_defers_and_opportunistic_follows_the_tls_setting() {
    let world = world(Ipv4Addr::new(127, 0, 0, 203), |_| Vec::new());
    let tables = format!(
        "[destination.{NO_TLSA_HOST:?}]\ndane = \"mandatory\"\n\n[destination.{BOGUS_HOST:?}]\ndane = \"opportunistic\"\n"
    );
    let (_file, server, admin) = portcullis(&world, "", &tables);
    send(&server, NO_TLSA_RCPT);
    send(&server, BOGUS_RCPT);
    let skipped = wait_lines(&server, "deferred", "dane=deferred", 2);
    assert!(
        skipped
            .iter()
            .any(|l| l.contains("host=nodane.dane.example") && l.contains("no TLSA records")),
        "{skipped:?}"
    );
    // A TLSA lookup that fails validation may hide records: no delivery at all.
    assert!(
        skipped
            .iter()
            .any(|l| l.contains("host=bogus.dane.example") && l.contains("bogus")),
        "{skipped:?}"
    );
    let retry = wait_lines(&server, "retry", "DANE mandatory", 1).remove(0);
    assert!(retry.contains("no TLSA records"), "{retry}");
    assert!(
        server.event_lines("delivered").is_empty(),
        "{}",
        server.log()
    );
    assert_eq!(
        world.postfix.connections_total(),
        0,
        "no connection was made\n{}",
        world.postfix.log()
    );
    assert!(dane_count(admin, "deferred") >= 2.0, "{}", scrape(admin));
    drop(server);

    // Opportunistic without TLSA: the destination's tls decides (required here).
    let tables =
        format!("[destination.{NO_TLSA_HOST:?}]\ndane = \"opportunistic\"\ntls = \"required\"\n");
    let (_file, server, admin) = portcullis(&world, "", &tables);
    send(&server, NO_TLSA_RCPT);
    let delivered = wait_lines(&server, "delivered", NO_TLSA_RCPT, 1).remove(0);
    assert!(
        delivered.contains(" tls=TLSv1.") && !delivered.contains(" dane="),
        "{delivered}"
    );
    assert!(
        wait_until(WAIT, || postfix_received(&world.postfix, NO_TLSA_RCPT)),
        "{}",
        world.postfix.log()
    );
    assert_eq!(dane_count(admin, "not-applied"), 1.0, "{}", scrape(admin));
}

#[test]
fn a_domain_with_an_smtp_route_gets_no_dane() {
    let world = world(Ipv4Addr::new(127, 0, 0, 204), |_| Vec::new());
    // Mandatory DANE and no TLSA would defer by MX; the route goes around
    // DANE. It names the host (not its IP), as the MX would: the same
    // host, only the route decides.
    let route = format!("{NO_TLSA_HOST:?} = [\"{NO_TLSA_HOST}:25\"]");
    let table = format!("[destination.{NO_TLSA_HOST:?}]\ndane = \"mandatory\"\n");
    let (_file, server, admin) = portcullis(&world, &route, &table);
    send(&server, NO_TLSA_RCPT);
    let delivered = wait_lines(&server, "delivered", NO_TLSA_RCPT, 1).remove(0);
    assert!(!delivered.contains(" dane="), "{delivered}");
    assert!(
        wait_until(WAIT, || postfix_received(&world.postfix, NO_TLSA_RCPT)),
        "{}",
        world.postfix.log()
    );
    let metrics = scrape(admin);
    for result in ["authenticated", "not-applied", "deferred", "failed"] {
        assert_eq!(
            dane_count(admin, result),
            0.0,
            "{result}: DANE was not asked\n{metrics}"
        );
    }
}
