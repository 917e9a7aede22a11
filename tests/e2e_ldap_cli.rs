//! End to end: the LDAP operator commands of the real binary (issue 8
//! items 5 and 6), `--cores 2`.
//!
//! `portcullis ldap purge` against a running appliance with an admin
//! listener and an LDAP routing query configured: `--all` and `--query
//! NAME` ask every shard (`LdapPurge` over the mesh) and print `purged=N`,
//! `--config FILE` finds the admin listener in the file the server runs,
//! and a dead admin port fails with exit 1 and the address in the reason.
//! `portcullis ldap test` needs no running appliance: without a query in
//! the config it is a config error (exit 2).
//!
//! Not here yet: `ldap test` against a real slapd (the seed's entry, the
//! call-ahead port 9025, no entry, filter injection, slapd killed), which
//! needs the real LDAP client and `tests/common/slapd.rs`.

mod common;

use common::*;

use std::net::SocketAddr;

const SHARDS: usize = 2;

fn config(port: u16, admin: SocketAddr) -> String {
    format!(
        r#"admin_listen = "{admin}"

[[listener]]
name = "inbound"
address = "127.0.0.1:{port}"
type = "public"
hat = "inbound"
rat = "inbound"
ldap_routing = "LDAP1.routing"

[[hat.inbound]]
group = "ALL"
senders = ["ALL"]
policy = "ACCEPTED"

[[rat.inbound]]
recipient = "example.test"
action = "accept"

[[rat.inbound]]
recipient = "ALL"
action = "reject"

[ldap.server.LDAP1]
urls = ["ldap://127.0.0.1:1"]
base = "ou=domains,dc=example,dc=com"

[ldap.query."LDAP1.routing"]
server = "LDAP1"
kind = "routing"
filter = "(mail={{d}})"
mailhost_attribute = "mailHost"
callahead_attribute = "callAhead"
"#
    )
}

/// `portcullis ldap ARGS`: (exit code, stdout, stderr).
fn ldap(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["ldap"];
    all.extend_from_slice(args);
    let out = run_portcullis(&all, WAIT);
    assert!(!out.timed_out, "portcullis {all:?} hung");
    (out.code(), out.stdout, out.stderr)
}

#[test]
fn purge_asks_every_shard_through_the_admin_listener() {
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let file = ConfigFile::with_text(&config(port, admin));
    let mut server = Portcullis::builder().listeners_file(&file, port).cores(SHARDS).admin_listen(&admin.to_string()).start();
    server.wait_every_shard_serving(SHARDS, WAIT);
    assert!(wait_until(WAIT, || is_listening(admin.port())), "admin port\n{}", server.log());
    let admin_flag = admin.to_string();

    let (code, stdout, stderr) = ldap(&["purge", "--all", "--admin", &admin_flag]);
    assert_eq!((code, stdout.as_str()), (Some(0), "purged=0\n"), "{stderr}");
    let (code, stdout, stderr) = ldap(&["purge", "--query", "LDAP1.routing", "--admin", &admin_flag]);
    assert_eq!((code, stdout.as_str()), (Some(0), "purged=0\n"), "{stderr}");
    // --config takes admin_listen from the file the server runs.
    let config = file.path().display().to_string();
    let (code, stdout, stderr) = ldap(&["purge", "--all", "--config", &config]);
    assert_eq!((code, stdout.as_str()), (Some(0), "purged=0\n"), "{stderr}");
    // An empty name is refused by the admin, not taken for "all".
    let (code, _, stderr) = ldap(&["purge", "--query", "", "--admin", &admin_flag]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("400") && stderr.contains("?all=1"), "{stderr}");

    let status = server.stop(WAIT).expect("it was running");
    assert!(status.success(), "{status:?}\n{}", server.log());
    let (code, stdout, stderr) = ldap(&["purge", "--all", "--admin", &admin_flag]);
    assert_eq!((code, stdout.as_str()), (Some(1), ""), "the admin is down");
    assert!(stderr.contains(&admin_flag) && stderr.contains("is portcullis running"), "{stderr}");
}

#[test]
fn test_without_a_query_is_a_config_error() {
    let (code, stdout, stderr) = ldap(&["test", "LDAP1.routing", "a@example.test"]);
    assert_eq!((code, stdout.as_str()), (Some(2), ""));
    assert!(stderr.contains("built-in default config") && stderr.contains("--config"), "{stderr}");
    let file = ConfigFile::with_text(&config(free_port(), SocketAddr::from(([127, 0, 0, 1], free_port()))));
    let path = file.path().display().to_string();
    let (code, _, stderr) = ldap(&["test", "LDAP1.accept", "a@example.test", "--config", &path]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("LDAP1.routing"), "names the queries there are: {stderr}");
}
