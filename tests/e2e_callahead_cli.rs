//! End to end: operating the call-ahead cache of the real binary with the
//! real CLI (issue 7 item 9), `--cores 2`.
//!
//! A public listener with `callahead = "ca"` (server type delivery host)
//! routes example.test and other.test to Postfix's smtp-sink, which
//! accepts every recipient. A client's RCPTs are probed once and cached on
//! the owner shard of their domain; then `portcullis callahead query`
//! shows each cached verdict with the downstream's reply and the shard
//! that holds it, `purge ADDR`, `purge @DOMAIN` and `purge --all` print
//! what they forgot, and the next query says `verdict=none`. The metrics
//! page counts the verdicts by source (probe first, cache on the repeat),
//! the RCPTs sent to the server, the cache lookups and the cache size.
//! Bad input and a dead admin port fail with the reason, and the appliance
//! still stops cleanly with the admin bridge running.

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
callahead = "ca"

[[hat.inbound]]
group = "ALL"
senders = ["ALL"]
policy = "ACCEPTED"

[[rat.inbound]]
recipient = "example.test"
action = "accept"

[[rat.inbound]]
recipient = "other.test"
action = "accept"

[[rat.inbound]]
recipient = "ALL"
action = "reject"

[callahead.ca]
server_type = "delivery_host"
"#
    )
}

struct Setup {
    file: ConfigFile,
    _sink: Sink,
    server: Portcullis,
    admin: SocketAddr,
}

fn start() -> Setup {
    let sink = Sink::start();
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let file = ConfigFile::with_text(&config(port, admin));
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .cores(SHARDS)
        .admin_listen(&admin.to_string())
        .route("example.test", &sink)
        .route("other.test", &sink)
        .start();
    server.wait_every_shard_serving(SHARDS, WAIT);
    assert!(wait_until(WAIT, || is_listening(admin.port())), "admin port\n{}", server.log());
    Setup { file, _sink: sink, server, admin }
}

/// `portcullis callahead ARGS --admin ADMIN`: (exit code, stdout, stderr).
fn callahead(admin: SocketAddr, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["callahead"];
    all.extend_from_slice(args);
    let admin = admin.to_string();
    all.extend_from_slice(&["--admin", &admin]);
    let out = run_portcullis(&all, WAIT);
    assert!(!out.timed_out, "portcullis {all:?} hung");
    (out.code(), out.stdout, out.stderr)
}

/// The stdout of a command that must succeed.
fn ok(admin: SocketAddr, args: &[&str]) -> String {
    let (code, stdout, stderr) = callahead(admin, args);
    assert_eq!(code, Some(0), "{args:?}: {stdout}{stderr}");
    stdout
}

/// One session: the RCPTs in order, each must be accepted.
fn rcpts(server: &Portcullis, to: &[&str]) {
    let (mut smtp, greeting) = RawSmtp::connect(server.addr()).expect("connect");
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert_eq!(smtp.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(smtp.cmd("MAIL FROM:<sender@client.test>").unwrap().code, 250);
    for rcpt in to {
        let reply = smtp.cmd(&format!("RCPT TO:<{rcpt}>")).unwrap();
        assert_eq!(reply.code, 250, "{rcpt}: {reply:?}\n{}", server.log());
    }
    let _ = smtp.cmd("QUIT");
}

fn metric(admin: SocketAddr, series: &str) -> f64 {
    sample(&scrape(admin), series).unwrap_or_else(|| panic!("no {series} on the page"))
}

#[test]
fn query_and_purge_the_cache_through_the_cli() {
    let s = start();
    rcpts(&s.server, &["a@example.test", "b@example.test", "c@other.test"]);
    // The repeat is answered from the cache (Source::Cache).
    rcpts(&s.server, &["A@example.test"]);

    let owner = owner_of("example.test", SHARDS);
    let shown = ok(s.admin, &["query", "a@example.test"]);
    let line = shown.lines().next().unwrap_or_default();
    assert!(line.starts_with("profile=ca verdict=accepted source=cache reply=\"250"), "{shown}");
    assert!(line.contains(" ttl_secs=900 ") && line.ends_with(&format!(" shard={owner}")), "{shown}");
    assert_eq!(shown.lines().count(), 1, "one profile: {shown}");
    assert_eq!(ok(s.admin, &["query", "nobody@example.test"]), "verdict=none\n");

    // The metrics count what happened.
    let page = scrape(s.admin);
    let verdicts = |source: &str| sample(&page, &format!(r#"portcullis_callahead_verdicts_total{{source="{source}",result="accepted"}}"#));
    assert_eq!(verdicts("probe"), Some(3.0), "{page}");
    assert_eq!(verdicts("cache"), Some(1.0), "{page}");
    assert_eq!(sample(&page, "portcullis_callahead_probes_total"), Some(3.0), "one RCPT per new address");
    assert!(sample(&page, "portcullis_callahead_probe_connections_opened_total") >= Some(1.0));
    assert_eq!(sample(&page, r#"portcullis_callahead_cache_lookups_total{result="hit"}"#), Some(1.0));
    assert_eq!(sample(&page, "portcullis_callahead_probe_seconds_count"), Some(3.0));
    // The gauge is published each second by every shard.
    assert!(wait_until(WAIT, || metric(s.admin, "portcullis_callahead_cache_entries") == 3.0), "{}", scrape(s.admin));

    assert_eq!(ok(s.admin, &["purge", "a@example.test"]), "purged=1\n");
    assert_eq!(ok(s.admin, &["query", "a@example.test"]), "verdict=none\n");
    assert!(ok(s.admin, &["query", "b@example.test"]).contains("verdict=accepted"), "only a@ went");
    assert_eq!(ok(s.admin, &["purge", "@EXAMPLE.test"]), "purged=1\n", "b@ was the rest of the domain");
    assert_eq!(ok(s.admin, &["query", "b@example.test"]), "verdict=none\n");
    assert_eq!(ok(s.admin, &["purge", "--all"]), "purged=1\n", "c@other.test, wherever it lives");
    assert_eq!(ok(s.admin, &["query", "c@other.test"]), "verdict=none\n");
    assert_eq!(ok(s.admin, &["purge", "--all"]), "purged=0\n");
    assert!(wait_until(WAIT, || metric(s.admin, "portcullis_callahead_cache_entries") == 0.0));

    // Purged means asked again: a new probe, cached again.
    rcpts(&s.server, &["a@example.test"]);
    assert_eq!(metric(s.admin, "portcullis_callahead_probes_total"), 4.0);
    assert!(ok(s.admin, &["query", "a@example.test"]).contains("verdict=accepted"));
}

#[test]
fn bad_input_and_no_listener_fail_with_the_reason() {
    let mut s = start();
    let (code, stdout, stderr) = callahead(s.admin, &["query", "not-an-address"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stderr.contains("400") && stderr.contains("not an address"), "{stderr}");

    // --config takes admin_listen from the file (the same file the server runs).
    let config = s.file.path().display().to_string();
    let out = run_portcullis(&["callahead", "query", "x@example.test", "--config", &config], WAIT);
    assert_eq!((out.code(), out.stdout.as_str()), (Some(0), "verdict=none\n"), "{}", out.stderr);

    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (code, _, stderr) = callahead(dead, &["purge", "--all"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains(&dead.to_string()), "{stderr}");

    // The shards' bridge tasks do not hold up a clean stop.
    let status = s.server.stop(WAIT).expect("it was running");
    assert!(status.success(), "{status:?}\n{}", s.server.log());
}
