//! End to end: DHAP, Directory Harvest Attack Prevention (issue 6 item 6),
//! with the real binary, `--cores 2`, clients bound to chosen 127.0.0.x
//! addresses and sessions placed on each shard (`common::spread`).
//!
//! One public listener, RAT: example.test accepted, anything else refused
//! (550 5.7.1 relay access denied: an invalid recipient, counted for
//! DHAP). HAT: 127.0.0.70-71 → DROPPER (`dhap_max_invalid_per_hour = 4`,
//! `dhap_drop_connection = true`), 127.0.0.73-74 → KEEPER (4, false),
//! 127.0.0.75 → TARPIT (`dhap_tarpit_ms = 1500`, no threshold), anyone
//! else → OPEN (no DHAP).
//!
//! - 4 RAT rejects from one address, two in a session on each shard; then
//!   the next RCPT from it, even a valid one, in either session or a new
//!   one, gets 550 5.7.1 "Too many invalid recipients". DROPPER: the
//!   connection is closed after that reply and pipelined RCPTs behind it
//!   get nothing. KEEPER: the session stays open and keeps refusing every
//!   RCPT. Another address of the same policy is unaffected. Each refusal
//!   has its `limit … rule=dhap_max_invalid_per_hour` line and counts in
//!   `portcullis_dhap_refusals_total`.
//! - The tarpit delays that client's invalid-recipient replies (at least
//!   the delay), not its valid ones, and not another client on the same
//!   shard, answered while the tarpitted reply is still pending.

mod common;

use common::*;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const SHARDS: usize = 2;
/// `dhap_max_invalid_per_hour` of DROPPER and KEEPER.
const MAX_INVALID: usize = 4;
/// `dhap_tarpit_ms` of TARPIT.
const TARPIT_MS: u64 = 1500;
const DHAP_REPLY: &str = "5.7.1 Too many invalid recipients";

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn config(port: u16) -> String {
    format!(
        r#"[[listener]]
name = "inbound"
address = "127.0.0.1:{port}"
type = "public"
hat = "inbound"
rat = "inbound"

[[hat.inbound]]
group = "DROPPERS"
senders = ["127.0.0.70-71"]
policy = "DROPPER"

[[hat.inbound]]
group = "KEEPERS"
senders = ["127.0.0.73-74"]
policy = "KEEPER"

[[hat.inbound]]
group = "SLOWED"
senders = ["127.0.0.75"]
policy = "TARPIT"

[[hat.inbound]]
group = "ALL"
senders = ["ALL"]
policy = "OPEN"

[default_policy]
max_concurrent_connections_per_ip = 0
max_recipients_per_message = 100
dhap_max_invalid_per_hour = 0

[policy.DROPPER]
dhap_max_invalid_per_hour = {MAX_INVALID}
dhap_drop_connection = true

[policy.KEEPER]
dhap_max_invalid_per_hour = {MAX_INVALID}
dhap_drop_connection = false

[policy.TARPIT]
dhap_tarpit_ms = {TARPIT_MS}

[policy.OPEN]
dhap_max_invalid_per_hour = 0

[[rat.inbound]]
recipient = "example.test"
action = "accept"
"#
    )
}

struct Setup {
    _file: ConfigFile,
    server: Portcullis,
    admin: SocketAddr,
}

fn start() -> Setup {
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let file = ConfigFile::with_text(&config(port));
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .cores(SHARDS)
        .admin_listen(&admin.to_string())
        .start();
    server.wait_every_shard_serving(SHARDS, WAIT);
    assert!(wait_until(WAIT, || is_listening(admin.port())), "admin port\n{}", server.log());
    Setup { _file: file, server, admin }
}

fn dhap_refusals(admin: SocketAddr) -> f64 {
    let page = scrape(admin);
    page.lines()
        .find_map(|l| l.strip_prefix("portcullis_dhap_refusals_total "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no portcullis_dhap_refusals_total\n{page}"))
}

/// A session from `source` on `shard`, after EHLO and MAIL.
fn session(server: &Portcullis, source: Ipv4Addr, shard: usize) -> RawSmtp {
    let (mut client, banner) = server.session_on(server.addr(), source, shard);
    assert_eq!(banner.code, 220, "{banner:?}");
    begin(&mut client);
    client
}

fn begin(client: &mut RawSmtp) {
    assert_eq!(client.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(client.cmd("MAIL FROM:<h@client.test>").unwrap().code, 250);
}

fn rcpt(client: &mut RawSmtp, mailbox: &str) -> Reply {
    client.cmd(&format!("RCPT TO:<{mailbox}>")).unwrap()
}

/// An invalid recipient: the RAT's refusal, not (yet) DHAP's.
fn invalid(client: &mut RawSmtp, n: usize) {
    let reply = rcpt(client, &format!("guess{n}@elsewhere.test"));
    assert_eq!(reply.code, 550, "{reply:?}");
    assert!(reply.text().contains("Relay access denied"), "the RAT's reply: {reply:?}");
}

fn is_dhap(reply: &Reply) -> bool {
    reply.code == 550 && reply.text() == DHAP_REPLY
}

/// `MAX_INVALID` invalid recipients from `source`, half in a session on
/// each shard; returns both sessions.
fn harvest(server: &Portcullis, source: Ipv4Addr) -> [RawSmtp; 2] {
    let mut on = [session(server, source, 0), session(server, source, 1)];
    for n in 0..MAX_INVALID {
        invalid(&mut on[n % SHARDS], n);
    }
    on
}

/// The DHAP `limit` lines of `source` (waits for `n`).
fn dhap_lines(server: &Portcullis, source: Ipv4Addr, n: usize) -> Vec<String> {
    server.wait_for_log(&format!(" rule=dhap_max_invalid_per_hour key={source} "), n, WAIT)
}

#[test]
fn over_the_threshold_every_rcpt_is_refused_and_the_connection_dropped() {
    let Setup { server, admin, .. } = start();
    let harvester = ip(70);
    let [mut first, mut second] = harvest(&server, harvester);

    // Even a valid recipient, then the connection is closed.
    let reply = rcpt(&mut first, "user@example.test");
    assert!(is_dhap(&reply), "{reply:?}");
    assert_eq!(first.rest_until_closed(WAIT), Some(Vec::new()), "dhap_drop_connection: closed, nothing more");

    // On the other shard, pipelined RCPTs: one DHAP reply, then the close.
    second.send(b"RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n").unwrap();
    let reply = second.read_reply().unwrap();
    assert!(is_dhap(&reply), "{reply:?}");
    let rest = second.rest_until_closed(WAIT).expect("closed after the DHAP reply");
    assert!(rest.is_empty(), "the RCPTs behind it got {:?}", String::from_utf8_lossy(&rest));

    // A new session from that address: admitted, refused at its first RCPT.
    let (mut third, banner) = RawSmtp::connect_from(server.addr(), harvester).unwrap();
    assert_eq!(banner.code, 220, "{banner:?}");
    begin(&mut third);
    let reply = rcpt(&mut third, "user@example.test");
    assert!(is_dhap(&reply), "{reply:?}");
    assert!(third.is_closed_within(WAIT));

    // Another address of the same policy is not affected.
    let (mut other, _) = RawSmtp::connect_from(server.addr(), ip(71)).unwrap();
    begin(&mut other);
    assert_eq!(rcpt(&mut other, "user@example.test").code, 250);
    invalid(&mut other, 0);
    assert_eq!(rcpt(&mut other, "user2@example.test").code, 250);
    assert_eq!(other.cmd("QUIT").unwrap().code, 221);

    let lines = dhap_lines(&server, harvester, 3);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for line in &lines {
        assert!(line.contains(" group=DROPPERS policy=DROPPER "), "{line}");
        assert!(line.contains(&format!(" count={MAX_INVALID} max={MAX_INVALID} drop=true")), "{line}");
    }
    let shards: std::collections::BTreeSet<&str> = lines.iter().filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert!(shards.len() >= 2, "refused on both shards: {lines:#?}");
    assert!(server.log_lines("rule=dhap_max_invalid_per_hour key=127.0.0.71 ").is_empty());
    assert!(wait_until(WAIT, || dhap_refusals(admin) == 3.0), "portcullis_dhap_refusals_total {}", dhap_refusals(admin));
}

#[test]
fn without_drop_the_session_stays_open_and_keeps_refusing() {
    let Setup { server, admin, .. } = start();
    let harvester = ip(73);
    let [mut first, mut second] = harvest(&server, harvester);

    let reply = rcpt(&mut first, "user@example.test");
    assert!(is_dhap(&reply), "{reply:?}");
    assert_eq!(first.cmd("NOOP").unwrap().code, 250, "still open");
    for mailbox in ["user2@example.test", "guess@elsewhere.test"] {
        let reply = rcpt(&mut first, mailbox);
        assert!(is_dhap(&reply), "{mailbox}: {reply:?}");
    }
    let reply = rcpt(&mut second, "user@example.test");
    assert!(is_dhap(&reply), "the session on the other shard: {reply:?}");
    assert_eq!(second.cmd("QUIT").unwrap().code, 221);
    let (mut third, _) = RawSmtp::connect_from(server.addr(), harvester).unwrap();
    begin(&mut third);
    assert!(is_dhap(&rcpt(&mut third, "user@example.test")));
    assert_eq!(third.cmd("QUIT").unwrap().code, 221);
    assert_eq!(first.cmd("QUIT").unwrap().code, 221);

    let (mut other, _) = RawSmtp::connect_from(server.addr(), ip(74)).unwrap();
    begin(&mut other);
    assert_eq!(rcpt(&mut other, "user@example.test").code, 250);
    assert_eq!(other.cmd("QUIT").unwrap().code, 221);

    let lines = dhap_lines(&server, harvester, 5);
    for line in &lines {
        assert!(line.contains(" group=KEEPERS policy=KEEPER ") && line.contains(" drop=false"), "{line}");
    }
    assert!(wait_until(WAIT, || dhap_refusals(admin) == 5.0), "portcullis_dhap_refusals_total {}", dhap_refusals(admin));
}

#[test]
fn the_tarpit_slows_that_clients_invalid_recipients_only() {
    let Setup { server, .. } = start();
    let tarpit = Duration::from_millis(TARPIT_MS);
    let mut slow = session(&server, ip(75), 0);
    let mut neighbour = session(&server, ip(76), 0);

    // Its valid recipients are answered without the delay.
    let began = Instant::now();
    assert_eq!(rcpt(&mut slow, "user@example.test").code, 250);
    let valid = began.elapsed();
    assert!(valid < tarpit, "a valid recipient waited {valid:?}");

    // An invalid one waits; meanwhile the other client on the same shard is answered.
    let began = Instant::now();
    slow.send(b"RCPT TO:<guess@elsewhere.test>\r\n").unwrap();
    assert_eq!(rcpt(&mut neighbour, "user@example.test").code, 250);
    let neighbour_took = began.elapsed();
    let reply = slow.read_reply().unwrap();
    let slow_took = began.elapsed();
    assert_eq!(reply.code, 550, "{reply:?}");
    eprintln!("tarpit {tarpit:?}: the invalid recipient's reply after {slow_took:?}, the other client's after {neighbour_took:?}");
    assert!(slow_took >= tarpit, "the tarpit held the reply only {slow_took:?}");
    assert!(neighbour_took < tarpit, "the other client waited {neighbour_took:?}: the shard was held");
    assert_eq!(slow.cmd("QUIT").unwrap().code, 221);
    assert_eq!(neighbour.cmd("QUIT").unwrap().code, 221);
}
