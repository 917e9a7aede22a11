//! End to end: the LDAP operator commands of the real binary (issue 8
//! items 5 and 6), `--cores 2`.
//!
//! `portcullis ldap purge` against a running appliance with an admin
//! listener and an LDAP routing query configured: `--all` and `--query
//! NAME` ask every shard (`LdapPurge` over the mesh) and print `purged=N`,
//! `--config FILE` finds the admin listener in the file the server runs,
//! and a dead admin port fails with exit 1 and the address in the reason.
//! With slapd behind an accept query, two RCPTs leave one cached answer on
//! each shard, and `--query` purges both (`purged=2`).
//! `portcullis ldap test` needs no running appliance: without a query in
//! the config it is a config error (exit 2). Against a real slapd holding
//! the seed's entry and the test DNS server (tests/common/slapd.rs, dns.rs)
//! it prints the filter as sent, the entry, the mail and call-ahead hosts
//! and their addresses — call-ahead on the LDAP port 9025, delivery on 25;
//! no entry → the domain's MX; an injection attempt (`*)(mail=*`) stays one
//! escaped value and finds nothing (exit 0); slapd killed → exit 1 with
//! the reason.

mod common;

use common::dns::{TestDns, Zone};
use common::slapd::route_entry;
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

// ---- ldap test against a real slapd --------------------------------------

/// The seed's entry under the test zone, as `ldap test` must explain it.
const SEED_DOMAIN: &str = "cisco.example.test";
const SEED_MAILHOST: &str = "smtp.mydomain.example.test";
const SEED_CALLAHEAD: &str = "smtp2.mydomain.example.test,smtp3.mydomain.example.test:9025";
/// A domain without an entry: its MX decides ("*" = USEDNS).
const NO_ENTRY_DOMAIN: &str = "nomatch.example.test";

fn zone() -> Zone {
    Zone::standard()
        .a(SEED_MAILHOST, "127.0.0.71")
        .a("smtp2.mydomain.example.test", "127.0.0.72")
        .a("smtp3.mydomain.example.test", "127.0.0.73")
        .mx(NO_ENTRY_DOMAIN, 10, "mx.nomatch.example.test")
        .a("mx.nomatch.example.test", "127.0.0.74")
}

/// The directory (with the seed's entry), the test DNS, and a config file
/// with a routing query on `{d}` and an accept query on `{a}`.
struct Site {
    slapd: Slapd,
    dns: TestDns,
    file: ConfigFile,
}

fn site() -> Site {
    let slapd = Slapd::start();
    slapd.add(&route_entry(SEED_DOMAIN, SEED_MAILHOST, Some(SEED_CALLAHEAD)));
    let dns = TestDns::start(&zone());
    let text = format!(
        r#"[routes]
"*" = ["USEDNS"]

{server}
[ldap.query."LDAP1.routing"]
server = "LDAP1"
kind = "routing"
filter = "(mail={{d}})"
mailhost_attribute = "mailHost"
callahead_attribute = "callAhead"

[ldap.query."LDAP1.accept"]
server = "LDAP1"
kind = "accept"
filter = "(mail={{a}})"
"#,
        server = slapd.server_toml("LDAP1")
    );
    Site { slapd, dns, file: ConfigFile::with_text(&text) }
}

/// `portcullis ldap test QUERY ADDR --config FILE --dns DNS`.
fn test_query(d: &Site, query: &str, address: &str) -> (Option<i32>, String, String) {
    let (config, dns) = (d.file.path().display().to_string(), d.dns.addr().to_string());
    ldap(&["test", query, address, "--config", &config, "--dns", &dns])
}

/// The value of the line that starts with `label` (after it).
fn line<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout.lines().find_map(|l| l.trim_start().strip_prefix(label)).unwrap_or_else(|| panic!("no {label:?} line in\n{stdout}"))
}

#[test]
fn test_explains_the_seeds_entry_no_entry_and_an_injection() {
    let d = site();
    let (code, stdout, stderr) = test_query(&d, "LDAP1.routing", &format!("user@{SEED_DOMAIN}"));
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", d.slapd.log());
    assert_eq!(line(&stdout, "2. filter: "), format!("(mail={SEED_DOMAIN})"));
    assert_eq!(line(&stdout, "3. result: "), "entry found", "{stdout}");
    assert_eq!(line(&stdout, "callahead: "), SEED_CALLAHEAD, "the attribute as stored");
    assert_eq!(line(&stdout, "mail hosts: "), SEED_MAILHOST);
    assert_eq!(line(&stdout, "call-ahead hosts: "), "smtp2.mydomain.example.test:9025, smtp3.mydomain.example.test:9025", "the list's port for both");
    // The seed's port rules: call-ahead on the LDAP port, delivery on 25.
    assert_eq!(line(&stdout, "call-ahead addresses: "), "127.0.0.72:9025, 127.0.0.73:9025", "{stdout}");
    assert_eq!(line(&stdout, "delivery addresses: "), "127.0.0.71:25", "{stdout}");

    let (code, stdout, stderr) = test_query(&d, "LDAP1.routing", &format!("user@{NO_ENTRY_DOMAIN}"));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(line(&stdout, "3. result: "), "no entry");
    assert!(line(&stdout, "5. delivery of ").ends_with(&format!("no entry → DNS MX (then A/AAAA) for {NO_ENTRY_DOMAIN}")), "{stdout}");
    assert_eq!(line(&stdout, "delivery addresses: "), "127.0.0.74:25");
    assert_eq!(line(&stdout, "call-ahead addresses: "), "127.0.0.74:25");

    // The accept query on {a}: the entry's own mail value is found; an
    // injection that would match every entry unescaped finds nothing.
    let (code, stdout, _) = test_query(&d, "LDAP1.accept", SEED_DOMAIN);
    assert_eq!((code, line(&stdout, "3. result: ")), (Some(0), "entry found"), "{stdout}");
    assert!(line(&stdout, "4. accept: ").starts_with("accept "), "{stdout}");
    let (code, stdout, stderr) = test_query(&d, "LDAP1.accept", "*)(mail=*");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(line(&stdout, "2. filter: "), r"(mail=\2a\29\28mail=\2a)");
    assert_eq!(line(&stdout, "3. result: "), "no entry");
    assert!(line(&stdout, "4. accept: ").starts_with("refuse \"550 5.1.1 <*)(mail=*>: User unknown\""), "{stdout}");
    let (code, stdout, _) = test_query(&d, "LDAP1.routing", "x@*)(mail=*");
    assert_eq!((code, line(&stdout, "3. result: ")), (Some(0), "no entry"), "{stdout}");
}

#[test]
fn test_with_the_directory_down_is_exit_1_with_the_reason() {
    let mut d = site();
    d.slapd.kill();
    let (code, stdout, stderr) = test_query(&d, "LDAP1.routing", &format!("user@{SEED_DOMAIN}"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(line(&stdout, "3. result: ").starts_with("error: "), "{stdout}");
    assert!(line(&stdout, "3. result: ").contains("Connection refused"), "the reason: {stdout}");
    assert!(stderr.contains("could not be asked") && stderr.contains("Connection refused"), "{stderr}");
    assert!(line(&stdout, "5. delivery: ").contains("defers"), "{stdout}");
}

#[test]
fn purge_forgets_what_the_shards_cached() {
    let slapd = Slapd::start();
    slapd.add(&route_entry(SEED_DOMAIN, SEED_MAILHOST, Some(SEED_CALLAHEAD)));
    let (port, admin) = (free_port(), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let text = format!(
        "admin_listen = \"{admin}\"\n\n[[listener]]\nname = \"inbound\"\naddress = \"127.0.0.1:{port}\"\ntype = \"public\"\nhat = \"inbound\"\nrat = \"inbound\"\nldap_accept = \"LDAP1.accept\"\n\n\
         [[hat.inbound]]\ngroup = \"ALL\"\nsenders = [\"ALL\"]\npolicy = \"ACCEPTED\"\n\n[[rat.inbound]]\nrecipient = \"ALL\"\naction = \"accept\"\n\n\
         {server}\n[ldap.query.\"LDAP1.accept\"]\nserver = \"LDAP1\"\nkind = \"accept\"\nfilter = \"(mail={{d}})\"\n",
        server = slapd.server_toml("LDAP1")
    );
    let file = ConfigFile::with_text(&text);
    let mut server = Portcullis::builder().listeners_file(&file, port).cores(SHARDS).admin_listen(&admin.to_string()).start();
    server.wait_every_shard_serving(SHARDS, WAIT);
    assert!(wait_until(WAIT, || is_listening(admin.port())), "admin port\n{}", server.log());

    // Two answers cached, each on the owner shard of its domain: an entry
    // and "no entry", for a domain the other shard owns.
    let elsewhere = (0..100).map(|i| format!("absent{i}.example.test")).find(|d| owner_of(d, SHARDS) != owner_of(SEED_DOMAIN, SHARDS)).expect("a domain on the other shard");
    let (mut smtp, greeting) = RawSmtp::connect(server.addr()).expect("connect");
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert_eq!(smtp.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(smtp.cmd("MAIL FROM:<sender@client.test>").unwrap().code, 250);
    assert_eq!(smtp.cmd(&format!("RCPT TO:<user@{SEED_DOMAIN}>")).unwrap().code, 250, "{}", server.log());
    assert_eq!(smtp.cmd(&format!("RCPT TO:<user@{elsewhere}>")).unwrap().code, 550, "{}", server.log());
    let _ = smtp.cmd("QUIT");

    let admin_flag = admin.to_string();
    let purge = |args: &[&str]| {
        let mut all = vec!["purge"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--admin", &admin_flag]);
        let (code, stdout, stderr) = ldap(&all);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        stdout
    };
    assert_eq!(purge(&["--query", "LDAP1.other"]), "purged=0\n", "another query's answers");
    assert_eq!(purge(&["--query", "LDAP1.accept"]), "purged=2\n", "one from each shard");
    assert_eq!(purge(&["--all"]), "purged=0\n");
    let status = server.stop(WAIT).expect("it was running");
    assert!(status.success(), "{status:?}\n{}", server.log());
}
