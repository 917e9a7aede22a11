//! End to end: inbound TLS (issue 9 items 1 and 2) against real clients:
//! `swaks --tls` and `openssl s_client` on STARTTLS (RFC 3207) and an
//! implicit TLS listener (RFC 8314), over the test PKI of `common::certs`.
//!
//! Listeners and policies (clients pick theirs by source address through
//! the HAT, or by the listener they connect to):
//!
//! | listener  | client       | policy | tls              |
//! |-----------|--------------|--------|------------------|
//! | inbound   | 127.0.0.1    | PREF   | preferred        |
//! | inbound   | 127.0.0.62   | REQ    | required         |
//! | inbound   | 127.0.0.64   | PREFV  | preferred-verify |
//! | verify    | anyone       | VERIFY | required-verify  |
//! | implicit  | anyone       | PREF   | (implicit TLS)   |
//!
//! The command timeout is 3 s so a stalled handshake is cut quickly.

mod common;

use common::certs::TestPki;
use common::clients::tcp_from;
use common::openssl::s_client;
use common::process::TempDir;
use common::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    pki: TestPki,
    _dir: TempDir,
    file: ConfigFile,
    sink: Sink,
    server: Portcullis,
    verify: SocketAddr,
    implicit: SocketAddr,
}

fn config_text(pki: &TestPki, cert: &std::path::Path, key: &std::path::Path, ports: [u16; 3]) -> String {
    format!(
        r#"
[tls]
certificate = "{cert}"
private_key = "{key}"
client_ca = "{ca}"

[timeouts]
command_secs = 3

[[listener]]
name = "inbound"
address = "127.0.0.1:{p0}"
type = "public"
hat = "inbound"
rat = "inbound"
unmatched_policy = "PREF"

[[listener]]
name = "verify"
address = "127.0.0.1:{p1}"
type = "public"
rat = "inbound"
unmatched_policy = "VERIFY"

[[listener]]
name = "implicit"
address = "127.0.0.1:{p2}"
type = "public"
rat = "inbound"
unmatched_policy = "PREF"
implicit_tls = true

[[hat.inbound]]
group = "REQ"
senders = ["127.0.0.62"]
policy = "REQ"

[[hat.inbound]]
group = "PREFV"
senders = ["127.0.0.64"]
policy = "PREFV"

[[rat.inbound]]
recipient = "example.test"
action = "accept"

[policy.PREF]
tls = "preferred"
[policy.REQ]
tls = "required"
[policy.PREFV]
tls = "preferred-verify"
[policy.VERIFY]
tls = "required-verify"
"#,
        cert = cert.display(),
        key = key.display(),
        ca = pki.ca().display(),
        p0 = ports[0],
        p1 = ports[1],
        p2 = ports[2],
    )
}

fn setup() -> Setup {
    let dir = TempDir::new("starttls");
    let pki = TestPki::new(dir.path(), &[]);
    let ports = [free_port(), free_port(), free_port()];
    let file = ConfigFile::with_text(&config_text(&pki, &pki.server_cert(), &pki.server_key(), ports));
    let sink = Sink::start();
    let server = Portcullis::builder().listeners_file(&file, ports[0]).route("*", &sink).start();
    let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
    Setup { pki, _dir: dir, file, sink, verify: at(ports[1]), implicit: at(ports[2]), server }
}

fn swaks_tls(to: SocketAddr, extra: &[&str]) -> SwaksResult {
    let mut swaks = Swaks::new(to).to("rcpt@example.test").arg("--tls");
    for a in extra {
        swaks = swaks.arg(a);
    }
    swaks.run()
}

#[test]
fn swaks_over_starttls_is_received_as_esmtps_with_version_and_cipher() {
    let s = setup();
    let r = swaks_tls(s.server.addr(), &[]);
    assert_eq!(r.final_code(), Some(250), "{}", r.transcript());
    let message = &s.sink.wait_for_messages(1, WAIT)[0];
    let received = message.header("Received").expect("a Received header");
    assert!(received.contains("with ESMTPS id"), "{received}");
    assert!(received.contains("(using TLSv1.3 with cipher TLS13_"), "{received}");
    let tls = s.server.wait_for_log("tls conn=", 1, WAIT);
    assert!(tls[0].contains("result=ok version=TLSv1.3") && tls[0].contains("policy=PREF"), "{tls:?}");
    // Without TLS the same policy still takes mail (preferred).
    assert_eq!(Swaks::new(s.server.addr()).to("rcpt@example.test").run().final_code(), Some(250));
}

#[test]
fn openssl_verifies_our_certificate_and_negotiates_tls_1_3_or_1_2_only() {
    let s = setup();
    let out = s_client(s.server.addr(), true, &s.pki.ca(), None, &["EHLO c.test", "QUIT"]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("Verification: OK"), "{text}");
    assert!(text.contains("Protocol version: TLSv1.3"), "{text}");
    assert!(text.contains("221 2.0.0"), "QUIT inside TLS: {text}");
    // The EHLO reply inside TLS (on stdout; s_client's own STARTTLS
    // exchange goes to stderr) no longer offers STARTTLS.
    assert!(out.stdout.contains("250-PIPELINING") && !out.stdout.contains("STARTTLS"), "{text}");
    // TLS 1.1 is refused (RFC 8996).
    let mut cmd = std::process::Command::new(common::process::program("openssl"));
    cmd.args(["s_client", "-connect", &s.server.addr().to_string(), "-starttls", "smtp", "-tls1_1", "-brief"]);
    let old = common::process::run_with_timeout(&mut cmd, WAIT);
    assert!(!old.success(), "TLS 1.1 must fail: {}{}", old.stdout, old.stderr);
}

#[test]
fn required_tls_refuses_mail_in_clear_and_accepts_it_after_starttls() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), Ipv4Addr::new(127, 0, 0, 62)).unwrap();
    raw.cmd("EHLO c.test").unwrap();
    let reply = raw.cmd("MAIL FROM:<a@client.test>").unwrap();
    assert_eq!((reply.code, reply.text()), (530, "5.7.0 Must issue a STARTTLS command first".to_string()), "{}", s.server.log());
    let r = swaks_tls(s.server.addr(), &["--local-interface", "127.0.0.62"]);
    assert_eq!(r.final_code(), Some(250), "{}", r.transcript());
}

#[test]
fn required_verify_takes_a_trusted_client_certificate_only() {
    let s = setup();
    let (cert, key) = s.pki.client("relay.client.test");
    let (cs, ks) = (cert.display().to_string(), key.display().to_string());
    let r = swaks_tls(s.verify, &["--tls-cert", &cs, "--tls-key", &ks]);
    assert_eq!(r.final_code(), Some(250), "{}", r.transcript());
    let line = s.server.wait_for_log("client_cert=\"CN=relay.client.test\"", 1, WAIT);
    assert!(line[0].contains("policy=VERIFY"), "{line:?}");
    // No certificate: TLS works, MAIL is refused.
    let r = swaks_tls(s.verify, &[]);
    assert_eq!(r.code_for("MAIL"), Some(530), "{}", r.transcript());
    // A certificate from an untrusted CA: the handshake fails.
    let (rogue, rogue_key) = s.pki.rogue_client("rogue.test");
    let out = s_client(s.verify, true, &s.pki.ca(), Some((&rogue, &rogue_key)), &["EHLO c.test", "QUIT"]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!text.contains("221 2.0.0"), "an invalid certificate must not get a session: {text}");
    let failed = s.server.wait_for_log("result=failed", 1, WAIT);
    assert!(failed[0].contains("policy=VERIFY"), "{failed:?}");
}

#[test]
fn preferred_verify_lets_clear_clients_in_and_refuses_an_invalid_certificate() {
    let s = setup();
    let clear = Swaks::new(s.server.addr()).to("rcpt@example.test").arg("--local-interface").arg("127.0.0.64").run();
    assert_eq!(clear.final_code(), Some(250), "{}", clear.transcript());
    let (rogue, rogue_key) = s.pki.rogue_client("rogue.test");
    let (rs, rk) = (rogue.display().to_string(), rogue_key.display().to_string());
    let r = swaks_tls(s.server.addr(), &["--local-interface", "127.0.0.64", "--tls-cert", &rs, "--tls-key", &rk]);
    assert_ne!(r.final_code(), Some(250), "{}", r.transcript());
    assert_eq!(s.sink.count(), 1, "only the clear message arrived");
}

#[test]
fn commands_pipelined_after_starttls_are_discarded_and_the_connection_closed() {
    // CVE-2011-0411: STARTTLS and a command in one segment.
    let s = setup();
    let (mut raw, _) = RawSmtp::connect(s.server.addr()).unwrap();
    raw.cmd("EHLO c.test").unwrap();
    raw.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n").unwrap();
    let reply = raw.read_reply().unwrap();
    assert!(reply.code == 421 && reply.text().starts_with("4.7.0") && reply.contains("pipelined after STARTTLS"), "{}", reply.text());
    assert!(raw.is_closed_within(WAIT));
    let commands = s.server.event_lines("command");
    assert!(!commands.iter().any(|l| l.contains("cmd=MAIL")), "the injected MAIL never ran: {commands:?}");
}

#[test]
fn garbage_or_a_stall_instead_of_a_client_hello_ends_only_that_connection() {
    let s = setup();
    let (mut garbage, _) = RawSmtp::connect(s.server.addr()).unwrap();
    garbage.cmd("EHLO c.test").unwrap();
    assert!(garbage.cmd("STARTTLS").unwrap().code == 220);
    garbage.send(b"this is not a ClientHello\r\n").unwrap();
    assert!(garbage.is_closed_within(WAIT));
    s.server.wait_for_log("result=failed", 1, WAIT);
    // A stall: 220, then nothing. Cut at the 3 s command timeout.
    let (mut stall, _) = RawSmtp::connect(s.server.addr()).unwrap();
    stall.cmd("EHLO c.test").unwrap();
    assert!(stall.cmd("STARTTLS").unwrap().code == 220);
    let started = Instant::now();
    // Meanwhile the shard serves others.
    assert_eq!(swaks_tls(s.server.addr(), &[]).final_code(), Some(250));
    assert!(stall.is_closed_within(WAIT), "a stalled handshake is cut");
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the timeout");
    s.server.wait_for_log("result=timeout", 1, WAIT);
}

#[test]
fn an_implicit_tls_listener_greets_inside_tls() {
    let s = setup();
    let out = s_client(s.implicit, false, &s.pki.ca(), None, &["EHLO c.test", "QUIT"]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("Verification: OK") && text.contains("220 "), "{text}");
    assert!(!text.contains("STARTTLS"), "no STARTTLS inside implicit TLS: {text}");
    // A clear client gets no greeting: the listener waits for a ClientHello.
    let mut tcp = tcp_from(s.implicit, Ipv4Addr::new(127, 0, 0, 1)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 64];
    let got = std::io::Read::read(&mut tcp, &mut buf);
    assert!(!matches!(got, Ok(n) if n > 0 && buf.starts_with(b"220")), "no clear greeting: {got:?}");
}

#[test]
fn a_reload_serves_a_renewed_certificate_without_dropping_sessions() {
    let s = setup();
    let (renewed, renewed_key) = s.pki.another_server("renewed", "renewed.localhost");
    let ports = [s.server.port(), s.verify.port(), s.implicit.port()];
    s.file.write_text(&config_text(&s.pki, &renewed, &renewed_key, ports));
    s.server.sighup();
    s.server.wait_for_log("reload generation=1", 1, WAIT);
    let out = s_client(s.server.addr(), true, &s.pki.ca(), None, &["EHLO c.test", "QUIT"]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("renewed.localhost"), "the new certificate is served: {text}");
    // A bad file is refused and the old certificate stays.
    s.file.write_text(&config_text(&s.pki, &s.pki.dir.join("missing.pem"), &renewed_key, ports));
    s.server.sighup();
    s.server.wait_for_log("missing.pem", 1, WAIT);
    let r = swaks_tls(s.server.addr(), &[]);
    assert_eq!(r.final_code(), Some(250), "{}", r.transcript());
}
