//! End to end: `[[listener]]` tables. Two listeners on two ports, each
//! judged by its own HAT:
//!
//! - "inbound" (public, HAT `inbound`, RAT `inbound`): 127.0.0.60 is
//!   BLOCKED, anyone else ACCEPTED (the public default) under the RAT
//!   (example.test only);
//! - "outbound" (private, HAT `outbound`, no RAT, its own `hostname` in
//!   its banner): 127.0.0.61 is BLOCKED, anyone else RELAYED (the private
//!   default): any recipient, delivered.
//!
//! So the same client gets a different policy on each port, and the mail
//! log's `hat` line names the listener. Also:
//!
//! - `--listen` with a file that has `[[listener]]` tables is refused at
//!   start with a message naming both; check-config refuses the file's
//!   `listen` key beside `[[listener]]` with its line;
//! - no admin port unless asked: the harness default (`--admin-listen ""`)
//!   overrides a file's `admin_listen`, and a file with `admin_listen = ""`
//!   and no flag opens none: the process listens on its SMTP port only
//!   (its sockets in LISTEN state, read from /proc);
//! - a listener without a HAT and `unmatched_policy = "BLOCKED"` refuses
//!   everyone at the banner;
//! - a SIGHUP that changes the HAT: a new connection from the same address
//!   gets the new policy, a connection opened before keeps the old one to
//!   its end.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

const TABLES: &str = r#"
[[hat.inbound]]
group = "BLOCKLIST"
senders = ["127.0.0.60"]
policy = "BLOCKED"

[[hat.outbound]]
group = "BLOCKLIST"
senders = ["127.0.0.61"]
policy = "BLOCKED"

[[rat.inbound]]
recipient = "example.test"
action = "accept"

[[rat.inbound]]
recipient = "ALL"
action = "reject"
"#;

fn two_listeners(public: u16, private: u16) -> String {
    format!(
        "[[listener]]\nname = \"inbound\"\naddress = \"127.0.0.1:{public}\"\ntype = \"public\"\nhat = \"inbound\"\nrat = \"inbound\"\n\n\
         [[listener]]\nname = \"outbound\"\naddress = \"127.0.0.1:{private}\"\ntype = \"private\"\nhat = \"outbound\"\nhostname = \"relay.inside.test\"\n{TABLES}"
    )
}

/// The `hat` line of the connection whose `connect` line matches both needles.
fn hat_line(server: &Portcullis, peer: Ipv4Addr, listener: &str) -> String {
    let (peer, listener) = (format!(" peer={peer}:"), format!(" listener={listener} "));
    let mut found = None;
    wait_until(WAIT, || {
        let log = server.log();
        let conns: Vec<String> = log
            .lines()
            .filter(|l| l.contains(" connect ") && l.contains(&peer) && l.contains(&listener))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("conn=")))
            .map(|w| format!("{w} "))
            .collect();
        found = log
            .lines()
            .find(|l| l.contains(" hat ") && conns.iter().any(|c| l.contains(c.as_str())))
            .map(str::to_owned);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no hat line for {peer} on {listener}\n{}", server.log()))
}

fn send(addr: std::net::SocketAddr, from: Ipv4Addr, to: &str) -> Reply {
    let (mut c, banner) = RawSmtp::connect_from(addr, from).unwrap();
    assert_eq!(banner.code, 220, "{from} → {addr}: {banner:?}");
    let reply = c
        .send_mail("sender@client.test", &[to], b"Subject: two listeners\r\n\r\nbody\r\n")
        .unwrap();
    let _ = c.cmd("QUIT");
    reply
}

#[test]
fn each_listener_has_its_own_hat_and_the_private_one_relays() {
    let sink = Sink::start();
    let (public, private) = (free_port(), free_port());
    let file = ConfigFile::with_text(&two_listeners(public, private));
    let server = Portcullis::builder()
        .listeners_file(&file, public)
        .route("*", &sink)
        .start();
    assert!(wait_until(WAIT, || is_listening(private)), "the private listener binds\n{}", server.log());
    let public_addr = server.addr();
    let private_addr = std::net::SocketAddr::from(([127, 0, 0, 1], private));

    // 127.0.0.60: blocked on the public listener, relayed on the private one.
    let (mut c, banner) = RawSmtp::connect_from(public_addr, ip(60)).unwrap();
    assert_eq!(banner.code, 554, "{banner:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    let line = hat_line(&server, ip(60), "inbound");
    assert!(line.contains("listener=inbound group=BLOCKLIST") && line.contains("policy=BLOCKED"), "{line}");
    // The private listener's own host name is its banner's $Hostname.
    let (mut c, banner) = RawSmtp::connect_from(private_addr, ip(60)).unwrap();
    assert_eq!(banner.text(), "relay.inside.test ESMTP", "{banner:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    let relayed = send(private_addr, ip(60), "anyone@elsewhere.test");
    assert_eq!(relayed.code, 250, "private: no RAT, RELAYED: {relayed:?}");
    let line = hat_line(&server, ip(60), "outbound");
    assert!(
        line.contains("listener=outbound group=(unmatched)") && line.contains("policy=RELAYED ") && line.contains("outcome=relayed"),
        "{line}"
    );

    // 127.0.0.61: the other way round. On the public listener it is
    // ACCEPTED under the RAT: example.test yes, elsewhere.test no.
    let (mut c, banner) = RawSmtp::connect_from(private_addr, ip(61)).unwrap();
    assert_eq!(banner.code, 554, "{banner:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    let line = hat_line(&server, ip(61), "outbound");
    assert!(line.contains("group=BLOCKLIST") && line.contains("policy=BLOCKED"), "{line}");
    let denied = send(public_addr, ip(61), "anyone@elsewhere.test");
    assert_eq!(denied.code, 550, "public: the RAT refuses: {denied:?}");
    let accepted = send(public_addr, ip(61), "user@example.test");
    assert_eq!(accepted.code, 250, "{accepted:?}");
    let line = hat_line(&server, ip(61), "inbound");
    assert!(line.contains("group=(unmatched)") && line.contains("policy=ACCEPTED ") && line.contains("outcome=accepted"), "{line}");

    let messages = sink.wait_for_messages(2, WAIT);
    let mut rcpts: Vec<String> = messages.iter().flat_map(|m| m.recipients()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["anyone@elsewhere.test", "user@example.test"]);
}

#[test]
fn listen_flag_with_listener_tables_is_refused() {
    let port = free_port();
    let file = ConfigFile::with_text(&two_listeners(port, free_port()));
    // The harness passes --listen 127.0.0.1:PORT unless listeners_from_config.
    let Err((reason, log)) = Portcullis::builder().config(file.path()).port(port).try_start() else {
        panic!("--listen with [[listener]] tables started");
    };
    assert!(
        log.contains("--listen") && log.contains("[[listener]]"),
        "the refusal names the flag and the tables: {reason}\n{log}"
    );
    assert!(!is_listening(port), "nothing was bound");

    // The file's own `listen` beside [[listener]]: check-config names it and its line.
    let mut text = format!("listen = [\"127.0.0.1:{port}\"]\n");
    text.push_str(&two_listeners(port, free_port()));
    file.write_text(&text);
    let out = run_portcullis(&["check-config", &file.path().display().to_string()], WAIT);
    assert!(!out.success(), "check-config accepted listen + [[listener]]: {}", out.stdout);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("line 1") && said.contains("listen"), "{said}");
}

/// The TCP ports process `pid` has sockets in LISTEN state on (IPv4 and
/// IPv6), from its fds and the kernel's tables.
fn listening_ports_of(pid: u32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let target = target.display().to_string();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                let port = cols[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// The config of one public listener on `port`, with `admin_listen = admin`.
fn one_listener(port: u16, admin: &str) -> String {
    format!(
        "admin_listen = \"{admin}\"\n[[listener]]\nname = \"inbound\"\naddress = \"127.0.0.1:{port}\"\ntype = \"public\"\nhat = \"inbound\"\nrat = \"inbound\"\n{TABLES}"
    )
}

/// Start-up is complete once a SIGHUP is served: the signal thread starts
/// after the shards and the admin listener (a blocked SIGHUP waits for it).
fn started_completely(pid: u32, log: impl Fn() -> String) {
    // SAFETY: our own child, not reaped while the caller holds it.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
    assert!(wait_until(WAIT, || log().contains("reload: policy generation 1 published")), "no reload served\n{}", log());
}

#[test]
fn no_admin_port_unless_asked() {
    let admin = free_port();
    let file = ConfigFile::new(&PolicyToml::new());

    // The harness default, --admin-listen "", beats the file's admin_listen.
    // (Each run its own SMTP port: a killed process's sockets may linger.)
    let port = free_port();
    file.write_text(&one_listener(port, &format!("127.0.0.1:{admin}")));
    let server = Portcullis::builder().listeners_file(&file, port).start();
    let pid = server.pid().unwrap();
    started_completely(pid, || server.log());
    assert_eq!(listening_ports_of(pid), BTreeSet::from([port]), "only the SMTP port");
    drop(server);

    // Positive control: asked for, it is there.
    let port = free_port();
    file.write_text(&one_listener(port, ""));
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .admin_listen(&format!("127.0.0.1:{admin}"))
        .start();
    let pid = server.pid().unwrap();
    started_completely(pid, || server.log());
    assert_eq!(listening_ports_of(pid), BTreeSet::from([port, admin]), "{}", server.log());
    drop(server);

    // admin_listen = "" in the file, and no --admin-listen flag at all.
    let port = free_port();
    file.write_text(&one_listener(port, ""));
    let dir = TempDir::new("no-admin");
    let log_path = dir.path().join("portcullis.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(portcullis_bin())
        .args(["run", "--config", &file.path().display().to_string()])
        .args(["--spool-dir", &dir.path().join("spool").display().to_string()])
        .args(["--hostname", "portcullis.test"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let ready = wait_listening(&mut child, port, WAIT);
    let ports = ready.is_ok().then(|| {
        started_completely(child.id(), read_log);
        listening_ports_of(child.id())
    });
    let _ = child.kill();
    let _ = child.wait();
    ready.unwrap_or_else(|e| panic!("{e}\n{}", read_log()));
    assert_eq!(ports, Some(BTreeSet::from([port])), "admin_listen = \"\" opens no admin port");
}

/// v1: 127.0.0.70 is in RELAYERS (RELAYED); v2: it is in BLOCKLIST.
fn reload_config(port: u16, v2: bool) -> String {
    let (group, policy) = if v2 { ("BLOCKLIST", "BLOCKED") } else { ("RELAYERS", "RELAYED") };
    format!(
        "[[listener]]\nname = \"inbound\"\naddress = \"127.0.0.1:{port}\"\ntype = \"public\"\nhat = \"inbound\"\nrat = \"inbound\"\n\n\
         [[hat.inbound]]\ngroup = \"{group}\"\nsenders = [\"127.0.0.70\"]\npolicy = \"{policy}\"\n\n\
         [[rat.inbound]]\nrecipient = \"example.test\"\naction = \"accept\"\n"
    )
}

#[test]
fn a_reloaded_hat_applies_to_new_connections_only() {
    const SHARDS: usize = 2;
    let sink = Sink::start();
    let port = free_port();
    let file = ConfigFile::with_text(&reload_config(port, false));
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .cores(SHARDS)
        .route("*", &sink)
        .start();
    server.wait_every_shard_serving(SHARDS, WAIT);

    let (mut before, banner) = RawSmtp::connect_from(server.addr(), ip(70)).unwrap();
    assert_eq!(banner.code, 220, "v1: RELAYED: {banner:?}");
    assert_eq!(before.cmd("EHLO client.test").unwrap().code, 250);

    file.write_text(&reload_config(port, true));
    server.sighup();
    server.wait_for_reload(1, SHARDS, WAIT);

    // A new connection from the same address: the new HAT.
    let (mut after, banner) = RawSmtp::connect_from(server.addr(), ip(70)).unwrap();
    assert_eq!(banner.code, 554, "v2: BLOCKED: {banner:?}");
    let ehlo = after.cmd("EHLO client.test").unwrap();
    assert_eq!(ehlo.code, 503, "{ehlo:?}");
    assert_eq!(after.cmd("QUIT").unwrap().code, 221);
    let blocked = server.wait_for_log("group=BLOCKLIST", 1, WAIT);
    assert!(blocked[0].contains("policy=BLOCKED ") && blocked[0].contains("outcome=rejected"), "{blocked:?}");

    // The connection opened before still relays anywhere, to its end.
    assert_eq!(before.cmd("MAIL FROM:<a@client.test>").unwrap().code, 250);
    let rcpt = before.cmd("RCPT TO:<anyone@elsewhere.test>").unwrap();
    assert_eq!(rcpt.code, 250, "the old policy (RELAYED) after the reload: {rcpt:?}");
    assert_eq!(before.cmd("DATA").unwrap().code, 354);
    before.send(b"Subject: before\r\n\r\nold policy\r\n.\r\n").unwrap();
    assert_eq!(before.read_reply().unwrap().code, 250);
    assert_eq!(before.cmd("QUIT").unwrap().code, 221);
    let messages = sink.wait_for_messages(1, WAIT);
    assert_eq!(messages[0].recipients(), ["anyone@elsewhere.test"]);
}

#[test]
fn unmatched_policy_of_a_listener_without_a_hat() {
    let port = free_port();
    let file = ConfigFile::with_text(&format!(
        "[[listener]]\nname = \"closed\"\naddress = \"127.0.0.1:{port}\"\ntype = \"public\"\nrat = \"inbound\"\nunmatched_policy = \"BLOCKED\"\n{TABLES}"
    ));
    let server = Portcullis::builder().listeners_file(&file, port).start();
    for last in [1, 62] {
        let (mut c, banner) = RawSmtp::connect_from(server.addr(), ip(last)).unwrap();
        assert_eq!((banner.code, banner.text().as_str()), (554, "Access denied"), "127.0.0.{last}");
        assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    }
    let lines = server.wait_for_log(" hat ", 2, WAIT);
    assert!(
        lines.iter().all(|l| l.contains("listener=closed group=(unmatched)") && l.contains("policy=BLOCKED ")),
        "{lines:#?}"
    );
}
