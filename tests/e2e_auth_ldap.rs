//! End to end: SMTP AUTH (RFC 4954) with the LDAP bind backend (issue 9
//! item 3): `[auth] backend = "ldap"` with a `kind = "auth"` query against
//! a real slapd (`common::slapd`), and `swaks --tls --auth` as the client.
//! The directory holds alice (found by uid or mail); her LDAP password
//! relays mail outside the RAT, a wrong one gets 535 5.7.8, and a dead
//! directory gets 454 4.7.0 (try later), which is not counted as a failed
//! password. The mail log never shows the password.

mod common;

use common::certs::TestPki;
use common::process::TempDir;
use common::slapd::PEOPLE;
use common::*;

const ALICE_PASSWORD: &str = "alice-ldap-secret-42";
/// A domain the RAT does not accept: only an authenticated session relays there.
const OUTSIDE: &str = "friend@elsewhere.example";

fn config_text(pki: &TestPki, ldap: &Slapd, port: u16) -> String {
    format!(
        r#"
[tls]
certificate = "{cert}"
private_key = "{key}"

{server}
[ldap.query."LDAP1.auth"]
server = "LDAP1"
kind = "auth"
filter = "(|(uid={{a}})(mail={{a}}))"

[auth]
backend = "ldap"
ldap_query = "LDAP1.auth"
auth_failures_max = 3

[[listener]]
name = "inbound"
address = "127.0.0.1:{port}"
type = "public"
rat = "inbound"
unmatched_policy = "AUTHPREF"

[[rat.inbound]]
recipient = "example.test"
action = "accept"

[policy.AUTHPREF]
tls = "preferred"
smtp_auth = "preferred"
"#,
        cert = pki.server_cert().display(),
        key = pki.server_key().display(),
        server = ldap.server_toml("LDAP1"),
    )
}

fn swaks_auth(server: &Portcullis, mechanism: &str, user: &str, password: &str) -> SwaksResult {
    let options = [
        "--tls",
        "--auth",
        mechanism,
        "--auth-user",
        user,
        "--auth-password",
        password,
    ];
    options
        .iter()
        .fold(Swaks::new(server.addr()).to(OUTSIDE), |swaks, a| {
            swaks.arg(a)
        })
        .run()
}

/// The last line of the first reply with `code`.
fn reply_to(r: &SwaksResult, code: u16) -> Option<&str> {
    r.replies
        .iter()
        .find(|(_, c, _)| *c == code)
        .map(|(_, _, text)| text.as_str())
}

#[test]
fn an_ldap_password_relays_a_wrong_one_is_refused_and_a_dead_directory_is_454() {
    let dir = TempDir::new("auth-ldap-e2e");
    let pki = TestPki::new(dir.path(), &[]);
    let mut ldap = Slapd::start();
    ldap.add(&format!(
        "dn: uid=alice,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: alice\ncn: alice\nsn: Example\nmail: alice@example.com\nuserPassword: {ALICE_PASSWORD}\n"
    ));
    let port = free_port();
    let file = ConfigFile::with_text(&config_text(&pki, &ldap, port));
    let sink = Sink::start();
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .route("*", &sink)
        .start();

    // Her password, by uid (PLAIN) and by mail (LOGIN): 235, relayed.
    for (n, (mechanism, login)) in [("PLAIN", "alice"), ("LOGIN", "alice@example.com")]
        .into_iter()
        .enumerate()
    {
        let r = swaks_auth(&server, mechanism, login, ALICE_PASSWORD);
        assert!(
            reply_to(&r, 235).is_some_and(|t| t.starts_with("235 2.7.0")),
            "{}",
            r.transcript()
        );
        assert_eq!(r.final_code(), Some(250), "{}", r.transcript());
        let messages = sink.wait_for_messages(n + 1, WAIT);
        assert!(messages.iter().all(|m| m
            .header("Received")
            .is_some_and(|h| h.contains("with ESMTPSA id"))));
    }
    let successes = server.wait_for_log("backend=ldap result=success", 2, WAIT);
    assert!(
        successes.iter().all(|l| l.contains(" auth conn=C")),
        "{successes:?}"
    );

    // A wrong password: 535 5.7.8, nothing relayed.
    let r = swaks_auth(&server, "PLAIN", "alice", "not-her-password");
    assert!(
        reply_to(&r, 535).is_some_and(|t| t.starts_with("535 5.7.8")),
        "{}",
        r.transcript()
    );
    server.wait_for_log("backend=ldap result=failure", 1, WAIT);

    // The directory is down: 454 4.7.0 (RFC 4954 §6, try later), not a failure.
    ldap.kill();
    for _ in 0..3 {
        let r = swaks_auth(&server, "PLAIN", "alice", ALICE_PASSWORD);
        assert!(
            reply_to(&r, 454).is_some_and(|t| t.starts_with("454 4.7.0")),
            "{}",
            r.transcript()
        );
    }
    server.wait_for_log("backend=ldap result=tempfail", 3, WAIT);
    assert_eq!(
        server.log_lines("result=failure").len(),
        1,
        "a dead directory is not a wrong password"
    );
    assert_eq!(sink.count(), 2);

    let log = server.log();
    assert!(
        !log.contains(ALICE_PASSWORD) && !log.contains("not-her-password"),
        "a password in the log:\n{log}"
    );
}
