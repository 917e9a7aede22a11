//! End to end: the metrics page of the real binary (`--admin-listen
//! 127.0.0.1:PORT`, `--cores 2`, GET /metrics over a raw HTTP/1.0
//! request) counts what the HAT decided, summed over both shards.
//!
//! One public listener "inbound"; its HAT: 127.0.0.80 BLOCKLIST → BLOCKED
//! (rejected at the banner), 127.0.0.81 REFUSED → DROP (tcprefuse),
//! 127.0.0.82 RELAYERS → RELAYED (relayed); anyone else unmatched →
//! ACCEPTED. Each client makes a known number of connections (enough that
//! both shards take some: SO_REUSEPORT spreads them by source port), the
//! accepted ones send messages, and the page must show exactly:
//!
//! - `portcullis_connections_total{listener,group,policy,outcome}` per
//!   group (the probes that wait for both shards are unmatched/accepted and
//!   counted too);
//! - `portcullis_messages_accepted_total` = the messages answered 250, and
//!   `portcullis_messages_delivered_total` = those at the sink;
//! - `portcullis_open_connections 0` once every client has closed (polled:
//!   the server notices a close a moment after the client).
//!
//! A DHAP refusal counts in `portcullis_dhap_refusals_total` (with the
//! real appliance-wide counters of `policy::rate`) and drops the connection.

mod common;

use common::clients::tcp_from;
use common::*;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};

const SHARDS: usize = 2;

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
group = "BLOCKLIST"
senders = ["127.0.0.80"]
policy = "BLOCKED"

[[hat.inbound]]
group = "REFUSED"
senders = ["127.0.0.81"]
policy = "DROP"

[[hat.inbound]]
group = "RELAYERS"
senders = ["127.0.0.82"]
policy = "RELAYED"

[[hat.inbound]]
group = "HARVESTERS"
senders = ["127.0.0.84"]
policy = "HARVEST"

[[rat.inbound]]
recipient = "example.test"
action = "accept"

[[rat.inbound]]
recipient = "ALL"
action = "reject"

[policy.DROP]
behavior = "tcprefuse"

[policy.HARVEST]
dhap_max_invalid_per_hour = 2
dhap_drop_connection = true
"#
    )
}

struct Setup {
    _file: ConfigFile,
    _sink: Sink,
    server: Portcullis,
    admin: SocketAddr,
}

fn start() -> Setup {
    let sink = Sink::start();
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let file = ConfigFile::with_text(&config(port));
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .cores(SHARDS)
        .admin_listen(&admin.to_string())
        .route("*", &sink)
        .start();
    server.wait_every_shard_serving(SHARDS, WAIT);
    assert!(wait_until(WAIT, || is_listening(admin.port())), "admin port\n{}", server.log());
    Setup { _file: file, _sink: sink, server, admin }
}

/// The connections counter of one group, whatever order the labels are in.
fn connections(page: &str, group: &str, policy: &str, outcome: &str) -> f64 {
    let want = [
        "listener=\"inbound\"".to_owned(),
        format!("group=\"{group}\""),
        format!("policy=\"{policy}\""),
        format!("outcome=\"{outcome}\""),
    ];
    page.lines()
        .filter(|l| l.starts_with("portcullis_connections_total{"))
        .filter(|l| {
            let labels = l.split_once('{').unwrap().1.split_once('}').unwrap().0;
            let labels: Vec<&str> = labels.split(',').collect();
            labels.len() == want.len() && want.iter().all(|w| labels.contains(&w.as_str()))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Connections on which the server has logged its `hat` decision, from `peer`.
fn decided(server: &Portcullis, peer: Ipv4Addr, n: usize) {
    let needle = format!(" peer={peer}:");
    server.wait_for_log(&needle, n, WAIT);
}

#[test]
fn connections_by_group_messages_and_open_connections() {
    let Setup { server, admin, _sink: sink, .. } = start();
    const EACH: usize = 6;

    for _ in 0..EACH {
        // BLOCKED: 554 banner, QUIT.
        let (mut c, banner) = RawSmtp::connect_from(server.addr(), ip(80)).unwrap();
        assert_eq!(banner.code, 554, "{banner:?}");
        assert_eq!(c.cmd("QUIT").unwrap().code, 221);
        // TCPREFUSE: reset before any byte.
        let mut raw = tcp_from(server.addr(), ip(81)).unwrap();
        raw.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        assert!(!matches!(raw.read(&mut buf), Ok(n) if n > 0), "TCPREFUSE sent bytes");
        // RELAYED: one message to anywhere.
        let (mut c, banner) = RawSmtp::connect_from(server.addr(), ip(82)).unwrap();
        assert_eq!(banner.code, 220, "{banner:?}");
        let end = c.send_mail("out@client.test", &["far@elsewhere.test"], b"Subject: r\r\n\r\nx\r\n").unwrap();
        assert_eq!(end.code, 250, "{end:?}");
        assert_eq!(c.cmd("QUIT").unwrap().code, 221);
        // ACCEPTED (unmatched): one message under the RAT.
        let (mut c, banner) = RawSmtp::connect_from(server.addr(), ip(83)).unwrap();
        assert_eq!(banner.code, 220, "{banner:?}");
        let end = c.send_mail("in@client.test", &["user@example.test"], b"Subject: a\r\n\r\nx\r\n").unwrap();
        assert_eq!(end.code, 250, "{end:?}");
        assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    }
    for last in [80, 81, 82, 83] {
        decided(&server, ip(last), EACH);
    }
    // The connections spread over both shards (else the sum proves nothing).
    let shards_used: std::collections::BTreeSet<String> = server
        .log_lines(" hat ")
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    assert_eq!(shards_used.len(), SHARDS, "{shards_used:?}");

    // The probes of wait_every_shard_serving came from 127.0.0.1: unmatched too.
    let probes = server
        .log_lines(" connect ")
        .iter()
        .filter(|l| l.contains(" peer=127.0.0.1:"))
        .count();
    let mut page = String::new();
    let expected_open_zero = wait_until(WAIT, || {
        page = scrape(admin);
        sample(&page, "portcullis_open_connections") == Some(0.0)
    });
    assert!(expected_open_zero, "open connections after every client closed:\n{page}");
    let each = EACH as f64;
    assert_eq!(connections(&page, "BLOCKLIST", "BLOCKED", "rejected"), each, "{page}");
    assert_eq!(connections(&page, "REFUSED", "DROP", "tcprefused"), each, "{page}");
    assert_eq!(connections(&page, "RELAYERS", "RELAYED", "relayed"), each, "{page}");
    assert_eq!(
        connections(&page, "(unmatched)", "ACCEPTED", "accepted"),
        each + probes as f64,
        "{page}"
    );
    assert_eq!(sample(&page, "portcullis_messages_accepted_total"), Some(2.0 * each), "{page}");
    // Nothing refused by a rate limit or DHAP in this run.
    assert_eq!(sample(&page, "portcullis_dhap_refusals_total"), Some(0.0), "{page}");
    assert_eq!(sink.wait_for_messages(2 * EACH, WAIT).len(), 2 * EACH);
    // Every message reached the sink: each was counted once as delivered.
    let delivered = wait_until(WAIT, || sample(&scrape(admin), "portcullis_messages_delivered_total") == Some(2.0 * each));
    assert!(delivered, "{}", scrape(admin));
}

#[test]
fn a_dhap_refusal_is_counted_and_drops_the_connection() {
    let Setup { server, admin, .. } = start();
    let (mut c, banner) = RawSmtp::connect_from(server.addr(), ip(84)).unwrap();
    assert_eq!(banner.code, 220, "{banner:?}");
    assert_eq!(c.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(c.cmd("MAIL FROM:<h@client.test>").unwrap().code, 250);
    for i in 0..2 {
        let reply = c.cmd(&format!("RCPT TO:<guess{i}@elsewhere.test>")).unwrap();
        assert_eq!(reply.code, 550, "RAT refusal {i}: {reply:?}");
    }
    // Over dhap_max_invalid_per_hour = 2: even a valid recipient gets the
    // DHAP reply, and the connection is dropped after it.
    let reply = c.cmd("RCPT TO:<user@example.test>").unwrap();
    assert_eq!((reply.code, reply.text().as_str()), (550, "5.7.1 Too many invalid recipients"));
    assert!(c.is_closed_within(WAIT), "dhap_drop_connection");
    let line = server.wait_for_log("rule=dhap_max_invalid_per_hour", 1, WAIT);
    assert!(line[0].contains("group=HARVESTERS") && line[0].contains("max=2"), "{line:?}");
    let mut page = String::new();
    assert!(
        wait_until(WAIT, || {
            page = scrape(admin);
            sample(&page, "portcullis_dhap_refusals_total") == Some(1.0)
                && sample(&page, "portcullis_open_connections") == Some(0.0)
        }),
        "{page}"
    );
}
