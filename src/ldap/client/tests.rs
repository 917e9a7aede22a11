//! The LDAP thread without a directory server: its bounds (queue, jobs in
//! flight, entry size), stopping, pool replacement on a changed spec, and
//! the failures that never reach a server. Searches against a real slapd
//! are in tests/ldap_client.rs.

use super::pool::{bounded_entry, truncated_for_test, ServerPool};
use super::*;
use futures_lite::future::block_on;
use std::net::TcpListener;

fn spec(urls: Vec<String>) -> Arc<ServerSpec> {
    Arc::new(ServerSpec {
        name: "LDAP1".into(),
        urls,
        bind_dn: "cn=portcullis,dc=example,dc=com".into(),
        bind_password: "s3cret-password".into(),
        base: "dc=example,dc=com".into(),
        starttls: false,
        ca_file: None,
        timeout: Duration::from_secs(30),
        connections: 1,
    })
}

/// A port on 127.0.0.1 nobody listens on: connecting is refused at once.
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("ldap://127.0.0.1:{port}/")
}

fn search(directory: &Directory, server: &Arc<ServerSpec>) -> impl Future<Output = Answer> {
    directory.search(
        server,
        "(mail=x.example.test)".into(),
        vec!["mailHost".into()],
    )
}

#[test]
fn debug_never_shows_the_password() {
    let shown = format!("{:?}", spec(vec![]));
    assert!(!shown.contains("s3cret-password"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[test]
fn a_rendezvous_queue_is_always_full() {
    let directory = Directory::with_queue(0);
    let answer = block_on(search(&directory, &spec(vec![closed_port_url()])));
    assert_eq!(answer, Err(QUEUE_FULL.to_string()));
}

#[test]
fn the_queue_refuses_at_once_past_its_capacity() {
    // A directory whose receiver nobody drains: what a stuck thread looks like.
    let (jobs, leftovers) = crossbeam_channel::bounded(2);
    let directory = Directory {
        handle: Arc::new(Handle {
            jobs,
            leftovers,
            shared: Arc::new(Shared::default()),
            thread: std::sync::Mutex::new(None),
        }),
    };
    let server = spec(vec![closed_port_url()]);
    let first = search(&directory, &server);
    let second = search(&directory, &server);
    assert_eq!(
        block_on(search(&directory, &server)),
        Err(QUEUE_FULL.to_string())
    );
    assert_eq!(directory.handle.leftovers.len(), 2);
    // Stopping answers what the stuck thread never took: no hang.
    directory.stop();
    assert_eq!(block_on(first), Err(STOPPED.to_string()));
    assert_eq!(block_on(second), Err(STOPPED.to_string()));
    assert_eq!(directory.handle.leftovers.len(), 0);
}

#[test]
fn jobs_past_the_bound_are_refused_and_stop_answers_the_rest() {
    // Accepts connections (the kernel's backlog) and never answers:
    // the bind of each search waits out its 30 s timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = spec(vec![format!("ldap://{}/", silent.local_addr().unwrap())]);
    let directory = Directory::with_bounds(16, 2);
    let first = search(&directory, &server);
    let second = search(&directory, &server);
    let third = block_on(search(&directory, &server));
    assert_eq!(
        third,
        Err("LDAP thread busy: 2 searches in flight".to_string())
    );
    directory.stop();
    assert_eq!(block_on(first), Err(STOPPED.to_string()));
    assert_eq!(block_on(second), Err(STOPPED.to_string()));
    assert_eq!(
        block_on(search(&directory, &server)),
        Err(STOPPED.to_string())
    );
}

#[test]
fn dropping_the_last_clone_stops_the_thread() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = spec(vec![format!("ldap://{}/", silent.local_addr().unwrap())]);
    let directory = Directory::start();
    let clone = directory.clone();
    let pending = search(&directory, &server);
    drop(directory);
    assert!(!clone.handle.shared.is_stopped(), "a clone still holds it");
    drop(clone);
    assert_eq!(block_on(pending), Err(STOPPED.to_string()));
}

#[test]
fn every_unreachable_url_is_named_in_the_failure() {
    let (a, b) = (closed_port_url(), closed_port_url());
    let directory = Directory::start();
    let failure = block_on(search(&directory, &spec(vec![a.clone(), b.clone()]))).unwrap_err();
    assert!(failure.starts_with("LDAP server LDAP1: "), "{failure}");
    assert!(
        failure.contains(&format!("{a}: connect")) && failure.contains(&format!("{b}: connect")),
        "{failure}"
    );
    assert!(!failure.contains("s3cret-password"), "{failure}");
}

#[test]
fn a_dn_with_an_empty_password_is_refused_before_any_connection() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut unauthenticated =
        (*spec(vec![format!("ldap://{}/", silent.local_addr().unwrap())])).clone();
    unauthenticated.bind_password.clear();
    let failure = block_on(search(&Directory::start(), &Arc::new(unauthenticated))).unwrap_err();
    assert!(failure.contains("password is empty"), "{failure}");
}

#[test]
fn an_unreadable_ca_file_fails_every_tls_search() {
    let mut tls = (*spec(vec!["ldaps://127.0.0.1:1/".into()])).clone();
    tls.ca_file = Some("/nonexistent/portcullis-ca.pem".into());
    let failure = block_on(search(&Directory::start(), &Arc::new(tls))).unwrap_err();
    assert!(
        failure.contains("ca_file /nonexistent/portcullis-ca.pem"),
        "{failure}"
    );
}

#[test]
fn a_changed_spec_gets_a_new_pool_and_an_unchanged_one_keeps_it() {
    let mut pools = HashMap::new();
    let first = spec(vec!["ldap://127.0.0.1:1/".into()]);
    let pool = pool_for(&mut pools, &first);
    let same = Arc::new((*first).clone());
    assert!(Rc::ptr_eq(&pool, &pool_for(&mut pools, &same)));
    let mut moved = (*first).clone();
    moved.urls = vec!["ldap://127.0.0.1:2/".into()];
    let replaced = pool_for(&mut pools, &Arc::new(moved.clone()));
    assert!(!Rc::ptr_eq(&pool, &replaced));
    assert_eq!(replaced.spec(), &moved);
    assert_eq!(pools.len(), 1);
    let _: &ServerPool = &replaced;
}

#[test]
fn entries_are_bounded_and_their_names_lower_cased() {
    use crate::limits::{
        LDAP_ATTRIBUTE_VALUES_MAX, LDAP_ENTRY_ATTRIBUTES_MAX, LDAP_VALUE_BYTES_MAX,
    };
    let mut attrs = std::collections::HashMap::new();
    attrs.insert(
        "mailHost".to_string(),
        vec!["x".repeat(LDAP_VALUE_BYTES_MAX + 10)],
    );
    attrs.insert(
        "callAhead".to_string(),
        (0..LDAP_ATTRIBUTE_VALUES_MAX + 5)
            .map(|i| format!("h{i}"))
            .collect(),
    );
    for i in 0..LDAP_ENTRY_ATTRIBUTES_MAX + 5 {
        attrs.insert(format!("zz{i:03}"), vec!["v".to_string()]);
    }
    let entry = bounded_entry(ldap3::SearchEntry {
        dn: "mail=x,dc=example,dc=com".into(),
        attrs,
        bin_attrs: std::collections::HashMap::new(),
    });
    // The kept attributes, and the mark that says what was cut.
    assert_eq!(entry.len(), LDAP_ENTRY_ATTRIBUTES_MAX + 1);
    let cut = &entry[super::CUT_MARK];
    assert!(cut.iter().any(|c| c.contains("mailhost: a value cut")), "{cut:?}");
    assert!(cut.iter().any(|c| c.contains("callahead: values past")), "{cut:?}");
    assert!(cut.iter().any(|c| c.contains("dropped") && c.starts_with("attribute zz")), "{cut:?}");
    assert_eq!(entry["mailhost"][0].len(), LDAP_VALUE_BYTES_MAX);
    assert_eq!(entry["callahead"].len(), LDAP_ATTRIBUTE_VALUES_MAX);
    assert_eq!(
        entry["callahead"][0], "h0",
        "values keep the server's order"
    );
}

#[test]
fn truncation_stays_on_a_character_boundary() {
    assert_eq!(truncated_for_test("ab", 5), "ab");
    assert_eq!(truncated_for_test("abcdef", 3), "abc");
    // "é" is two bytes: cutting inside it keeps the character out whole.
    assert_eq!(truncated_for_test("aé", 2), "a");
}

#[test]
fn a_server_that_never_answers_fails_at_the_timeout() {
    // Connects (the kernel's backlog accepts), then the bind is never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut slow = (*spec(vec![format!("ldap://{}/", silent.local_addr().unwrap())])).clone();
    slow.timeout = Duration::from_millis(200);
    let failure = block_on(search(&Directory::start(), &Arc::new(slow))).unwrap_err();
    assert!(failure.contains("bind: timeout"), "{failure}");
}

#[test]
fn stop_and_wait_returns_once_the_thread_has_ended() {
    let directory = Directory::start();
    assert!(directory.stop_and_wait(std::time::Duration::from_secs(5)), "the idle thread ends at once");
    assert!(directory.handle.thread.lock().unwrap().is_none(), "joined");
    assert!(block_on(search(&directory, &spec(vec![closed_port_url()]))).is_err(), "a stopped directory answers Err");
    assert!(directory.stop_and_wait(std::time::Duration::from_millis(1)), "again: nothing to wait for");
}
