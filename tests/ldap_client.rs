//! The LDAP client thread (`portcullis::ldap::client`) against a real
//! slapd (tests/common/slapd.rs): what a search finds, what it does not,
//! and every way it fails — a wrong password, no bind, a killed server
//! and its return, a dead first URL, a full queue, a stopped thread —
//! plus many searches at once, a reloaded spec and TLS (ldaps://,
//! StartTLS) with the server's CA in `ca_file`.

mod common;

use common::slapd::{route_entry, Slapd, PEOPLE};
use futures_lite::future::block_on;
use portcullis::ldap::client::{Answer, Directory, ServerSpec};
use portcullis::ldap::filter::Template;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

const DOMAIN: &str = "cisco.example.test";
const MAIL_HOST: &str = "smtp.mydomain.example.test";
const CALL_AHEAD: &str = "smtp2.mydomain.example.test,smtp3.mydomain.example.test:9025";

/// slapd with the seed's example entry.
fn seeded() -> Slapd {
    let ldap = Slapd::start();
    ldap.add(&route_entry(DOMAIN, MAIL_HOST, Some(CALL_AHEAD)));
    ldap
}

/// The spec the config loader would build from `ldap.server_toml(..)`.
fn spec_for(ldap: &Slapd, urls: Vec<String>) -> ServerSpec {
    ServerSpec {
        name: "LDAP1".into(),
        urls,
        bind_dn: ldap.bind_dn().into(),
        bind_password: std::fs::read_to_string(ldap.password_file()).unwrap(),
        base: ldap.base().into(),
        starttls: false,
        ca_file: None,
        timeout: Duration::from_secs(10),
        connections: 2,
    }
}

fn route_query(directory: &Directory, server: &ServerSpec, filter: &str) -> Answer {
    let attributes = vec!["mailHost".to_string(), "callAhead".to_string()];
    block_on(directory.search(&Arc::new(server.clone()), filter.to_string(), attributes))
}

fn domain_filter() -> String {
    Template::parse("(mail={d})")
        .unwrap()
        .fill(&format!("postmaster@{DOMAIN}"))
}

fn assert_seed_entry(answer: Answer) {
    let entry = answer
        .expect("search succeeds")
        .expect("the seed entry is found");
    assert_eq!(
        entry.get("mailhost"),
        Some(&vec![MAIL_HOST.to_string()]),
        "{entry:?}"
    );
    assert_eq!(
        entry.get("callahead"),
        Some(&vec![CALL_AHEAD.to_string()]),
        "{entry:?}"
    );
    assert!(
        !entry.contains_key("mail"),
        "only the attributes asked for: {entry:?}"
    );
}

/// A URL where nothing listens: connecting is refused at once.
fn dead_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("ldap://127.0.0.1:{port}/")
}

#[test]
fn the_seed_entry_is_found_with_its_attributes() {
    let ldap = seeded();
    let directory = Directory::start();
    assert_seed_entry(route_query(
        &directory,
        &spec_for(&ldap, vec![ldap.url()]),
        &domain_filter(),
    ));
}

#[test]
fn no_entry_is_none_not_an_error() {
    let ldap = seeded();
    let directory = Directory::start();
    let answer = route_query(
        &directory,
        &spec_for(&ldap, vec![ldap.url()]),
        "(mail=unknown.example.test)",
    );
    assert_eq!(answer, Ok(None));
}

#[test]
fn an_escaped_injection_finds_nothing() {
    let ldap = seeded();
    let directory = Directory::start();
    let server = spec_for(&ldap, vec![ldap.url()]);
    // Unescaped, the wildcard would match the seed entry ...
    assert!(matches!(
        route_query(&directory, &server, "(mail=*)"),
        Ok(Some(_))
    ));
    // ... escaped (RFC 4515 §3) it is a literal "*)(mail=*" that nothing has.
    let injected = Template::parse("(mail={a})").unwrap().fill("*)(mail=*");
    assert_eq!(
        route_query(&directory, &server, &injected),
        Ok(None),
        "filter {injected}"
    );
}

#[test]
fn more_than_one_match_answers_the_first() {
    let ldap = seeded();
    ldap.add(&route_entry(
        "other.example.test",
        "mx.other.example.test",
        None,
    ));
    let directory = Directory::start();
    // The server stops at our size limit of one (result code 4): still an answer.
    let entry = route_query(
        &directory,
        &spec_for(&ldap, vec![ldap.url()]),
        "(mail=*.example.test)",
    )
    .expect("sizeLimitExceeded with an entry is an answer")
    .expect("an entry");
    assert!(entry.contains_key("mailhost"), "{entry:?}");
}

#[test]
fn a_wrong_password_is_a_failure_that_does_not_show_it() {
    let ldap = seeded();
    let directory = Directory::start();
    let mut server = spec_for(&ldap, vec![ldap.url()]);
    server.bind_password = "not-the-password".into();
    let failure = route_query(&directory, &server, &domain_filter()).unwrap_err();
    assert!(
        failure.contains("bind as cn=portcullis,dc=example,dc=com refused"),
        "{failure}"
    );
    assert!(!failure.contains("not-the-password"), "{failure}");
}

#[test]
fn without_a_bind_the_hidden_base_is_a_failure_not_no_entry() {
    let ldap = seeded();
    let directory = Directory::start();
    let mut server = spec_for(&ldap, vec![ldap.url()]);
    server.bind_dn.clear();
    server.bind_password.clear();
    // slapd hides the base from anonymous (noSuchObject): "no entry" here
    // would refuse every recipient of an accept query.
    let failure = route_query(&directory, &server, &domain_filter()).unwrap_err();
    assert!(failure.contains("noSuchObject"), "{failure}");
    // A base that does not exist is the same failure, for the bind user too.
    let mut typo = spec_for(&ldap, vec![ldap.url()]);
    typo.base = "ou=nothere,dc=example,dc=com".into();
    assert!(route_query(&directory, &typo, &domain_filter()).unwrap_err().contains("noSuchObject"));
}

#[test]
fn a_killed_server_fails_and_its_restart_is_found_again() {
    let mut ldap = seeded();
    let directory = Directory::start();
    let server = spec_for(&ldap, vec![ldap.url()]);
    assert_seed_entry(route_query(&directory, &server, &domain_filter()));
    ldap.kill();
    let failure = route_query(&directory, &server, &domain_filter()).unwrap_err();
    assert!(failure.starts_with("LDAP server LDAP1: "), "{failure}");
    ldap.restart();
    // The same Directory reconnects: the pooled connection died with slapd.
    assert_seed_entry(route_query(&directory, &server, &domain_filter()));
}

#[test]
fn a_dead_first_url_falls_over_to_the_second() {
    let ldap = seeded();
    let directory = Directory::start();
    let server = spec_for(&ldap, vec![dead_url(), ldap.url()]);
    assert_seed_entry(route_query(&directory, &server, &domain_filter()));
}

#[test]
fn a_full_queue_answers_at_once() {
    let ldap = seeded();
    // Capacity 0: no search ever waits in the queue (see Directory::with_queue).
    let directory = Directory::with_queue(0);
    let answer = route_query(
        &directory,
        &spec_for(&ldap, vec![ldap.url()]),
        &domain_filter(),
    );
    assert_eq!(answer, Err("LDAP request queue full".to_string()));
}

#[test]
fn a_stopped_directory_fails_without_hanging() {
    let ldap = seeded();
    let directory = Directory::start();
    let server = spec_for(&ldap, vec![ldap.url()]);
    assert_seed_entry(route_query(&directory, &server, &domain_filter()));
    directory.stop();
    assert!(route_query(&directory, &server, &domain_filter()).is_err());
    assert!(route_query(&directory.clone(), &server, &domain_filter()).is_err());
}

#[test]
fn two_hundred_searches_at_once_are_all_answered() {
    let ldap = seeded();
    let directory = Directory::start();
    let server = Arc::new(spec_for(&ldap, vec![ldap.url()]));
    let attributes = vec!["mailHost".to_string()];
    // All queued before any is awaited: they are in flight together on
    // the thread, over the pool's two connections.
    let searches: Vec<_> = (0..200)
        .map(|i| {
            let filter = if i % 2 == 0 {
                domain_filter()
            } else {
                format!("(mail=absent{i}.example.test)")
            };
            directory.search(&server, filter, attributes.clone())
        })
        .collect();
    for (i, search) in searches.into_iter().enumerate() {
        let answer = block_on(search).unwrap_or_else(|why| panic!("search {i}: {why}"));
        assert_eq!(answer.is_some(), i % 2 == 0, "search {i}: {answer:?}");
    }
}

#[test]
fn a_changed_spec_of_the_same_name_takes_effect() {
    let ldap = seeded();
    let directory = Directory::start();
    let mut server = spec_for(&ldap, vec![ldap.url()]);
    server.bind_password = "not-the-password".into();
    assert!(route_query(&directory, &server, &domain_filter()).is_err());
    // A reload fixed the password: the server's pool is made anew.
    let fixed = spec_for(&ldap, vec![ldap.url()]);
    assert_seed_entry(route_query(&directory, &fixed, &domain_filter()));
    // And the base: the same name now searches where nothing is.
    let mut moved = fixed.clone();
    moved.base = PEOPLE.into();
    assert_eq!(route_query(&directory, &moved, &domain_filter()), Ok(None));
}

#[test]
fn ldaps_and_starttls_verify_the_server_with_ca_file() {
    let ldap = Slapd::start_tls();
    ldap.add(&route_entry(DOMAIN, MAIL_HOST, Some(CALL_AHEAD)));
    let directory = Directory::start();

    let mut ldaps = spec_for(&ldap, vec![ldap.ldaps_url()]);
    ldaps.ca_file = Some(ldap.ca_file());
    assert_seed_entry(route_query(&directory, &ldaps, &domain_filter()));

    let mut starttls = spec_for(&ldap, vec![ldap.url()]);
    starttls.name = "LDAP2".into();
    starttls.starttls = true;
    starttls.ca_file = Some(ldap.ca_file());
    assert_seed_entry(route_query(&directory, &starttls, &domain_filter()));

    // Without the test CA the certificate is not trusted: a failure.
    let mut untrusted = ldaps.clone();
    untrusted.name = "LDAP3".into();
    untrusted.ca_file = None;
    let failure = route_query(&directory, &untrusted, &domain_filter()).unwrap_err();
    assert!(
        failure.contains("invalid peer certificate: UnknownIssuer"),
        "{failure}"
    );
}
