//! End to end: SMTP AUTH (RFC 4954, issue 9 item 3) against real clients:
//! `swaks --tls --auth PLAIN|LOGIN` over STARTTLS, and [`RawSmtp`] where a
//! test needs the exact reply. The password file is made by the built
//! `portcullis passwd USER` (password on standard input), as an operator
//! makes it.
//!
//! One listener; clients pick their mail flow policy by source address
//! through the HAT:
//!
//! | client            | policy  | tls       | smtp_auth | require_tls_for_auth |
//! |-------------------|---------|-----------|-----------|----------------------|
//! | 127.0.0.1 (other) | AUTHPREF| preferred | preferred | true (default)       |
//! | 127.0.0.81        | AUTHREQ | preferred | required  | true                 |
//! | 127.0.0.82        | NOAUTH  | preferred | off       | true                 |
//! | 127.0.0.83–.84    | CLEAR   | preferred | preferred | false                |
//! | 127.0.0.85        | LIMITED | off       | preferred | false                |
//!
//! LIMITED also has 2 recipients per message and 3 per hour: an
//! authenticated session skips the RAT, not the policy's limits.
//!
//! The RAT accepts only `example.test`: mail to any other domain is relay,
//! which only an authenticated session may do (`policy::recipient`). Every
//! route goes to one smtp-sink. `auth_failures_max = 3`.
//!
//! Brute force: failures are counted per client IP on the owner shard of
//! `auth:IP` (`auth::failures`), so a client that spreads its guesses over
//! connections on both shards (`--cores 2`) is stopped after exactly 3
//! sequential failures. The check (`blocked`) and the count (`count`) are
//! two messages to the owner with the password check in between, so
//! attempts that are *in flight at the same time* all pass the check:
//! concurrent attempts of one IP can overshoot the limit by the number in
//! flight (at most `max - 1 + in flight` failures are verified). This file
//! tests the sequential case exactly.

mod common;

use common::certs::TestPki;
use common::process::TempDir;
use common::*;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "Tr0ub4dor-and-3";
const BOB: &str = "bob@client.test";
const BOB_PASSWORD: &str = "correct-horse-battery";
/// A domain the RAT does not accept: only an authenticated session relays there.
const OUTSIDE: &str = "friend@elsewhere.example";
const FAILURES_MAX: usize = 3;

const REQUIRED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 81);
const NO_AUTH: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 82);
const CLEAR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 83);
const CLEAR_OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 84);
const LIMITED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 85);

struct Setup {
    _dir: TempDir,
    _file: ConfigFile,
    sink: Sink,
    server: Portcullis,
}

/// `portcullis passwd USER` with the password on standard input: the line
/// for the password file.
fn passwd_line(user: &str, password: &str) -> String {
    let mut child = Command::new(portcullis_bin())
        .args(["passwd", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis passwd");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "portcullis passwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("{user}:{{ARGON2ID}}")),
        "{stdout}"
    );
    stdout.trim_end().to_string()
}

fn config_text(pki: &TestPki, users: &std::path::Path, port: u16) -> String {
    format!(
        r#"
[tls]
certificate = "{cert}"
private_key = "{key}"

[auth]
backend = "passwd_file"
passwd_file = "{users}"
auth_failures_max = {FAILURES_MAX}

[[listener]]
name = "inbound"
address = "127.0.0.1:{port}"
type = "public"
hat = "inbound"
rat = "inbound"
unmatched_policy = "AUTHPREF"

[[hat.inbound]]
group = "REQUIRED"
senders = ["{REQUIRED}"]
policy = "AUTHREQ"

[[hat.inbound]]
group = "NOAUTH"
senders = ["{NO_AUTH}"]
policy = "NOAUTH"

[[hat.inbound]]
group = "CLEAR"
senders = ["{CLEAR}", "{CLEAR_OTHER}"]
policy = "CLEAR"

[[hat.inbound]]
group = "LIMITED"
senders = ["{LIMITED}"]
policy = "LIMITED"

[[rat.inbound]]
recipient = "example.test"
action = "accept"

[policy.AUTHPREF]
tls = "preferred"
smtp_auth = "preferred"
[policy.AUTHREQ]
tls = "preferred"
smtp_auth = "required"
[policy.NOAUTH]
tls = "preferred"
smtp_auth = "off"
[policy.CLEAR]
tls = "preferred"
smtp_auth = "preferred"
require_tls_for_auth = false
[policy.LIMITED]
smtp_auth = "preferred"
require_tls_for_auth = false
max_recipients_per_message = 2
max_recipients_per_hour = 3
"#,
        cert = pki.server_cert().display(),
        key = pki.server_key().display(),
        users = users.display(),
    )
}

fn setup_with_cores(cores: usize) -> Setup {
    let dir = TempDir::new("auth-e2e");
    let pki = TestPki::new(dir.path(), &[]);
    let users = dir.path().join("users");
    let lines = [
        passwd_line(ALICE, ALICE_PASSWORD),
        passwd_line(BOB, BOB_PASSWORD),
    ];
    std::fs::write(
        &users,
        format!("# portcullis passwd\n{}\n", lines.join("\n")),
    )
    .unwrap();
    let port = free_port();
    let file = ConfigFile::with_text(&config_text(&pki, &users, port));
    let sink = Sink::start();
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .route("*", &sink)
        .cores(cores)
        .start();
    Setup {
        _dir: dir,
        _file: file,
        sink,
        server,
    }
}

fn setup() -> Setup {
    setup_with_cores(1)
}

/// swaks over STARTTLS with AUTH `mechanism` as `user`, from `source`.
fn swaks_auth(
    s: &Setup,
    source: Ipv4Addr,
    mechanism: &str,
    user: &str,
    password: &str,
    to: &str,
) -> SwaksResult {
    let source = source.to_string();
    let options = [
        "--tls",
        "--auth",
        mechanism,
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--local-interface",
        &source,
    ];
    with_args(Swaks::new(s.server.addr()).to(to), &options).run()
}

/// The base64 of AUTH PLAIN's `\0user\0password` (RFC 4616).
fn plain_response(user: &str, password: &str) -> String {
    base64(format!("\0{user}\0{password}").as_bytes())
}

/// RFC 4648 base64, as a SASL client sends it.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The reply's code and its text (enhanced status code first).
fn said(reply: &Reply) -> (u16, String) {
    (reply.code, reply.text())
}

/// `swaks` with these options added, verbatim.
fn with_args(swaks: Swaks, args: &[&str]) -> Swaks {
    args.iter().fold(swaks, |swaks, a| swaks.arg(a))
}

/// The last line of the first reply with `code` in a swaks run.
fn reply_to(r: &SwaksResult, code: u16) -> Option<String> {
    r.replies
        .iter()
        .find(|(_, c, _)| *c == code)
        .map(|(_, _, text)| text.clone())
}

/// What an authenticated relay must show: 235, 250 at the end, the message
/// at the sink as ESMTPSA, and in the mail log the `auth` line of `user`
/// with result=success and the connection id of the `queued` line of that
/// message (what an operator greps to join them); no password anywhere.
fn assert_relayed_as(s: &Setup, r: &SwaksResult, user: &str, password: &str, nth: usize) {
    assert!(
        reply_to(r, 235).is_some_and(|t| t.starts_with("235 2.7.0")),
        "{}",
        r.transcript()
    );
    assert_eq!(
        r.final_code(),
        Some(250),
        "{}\n{}",
        r.transcript(),
        s.server.log()
    );
    let messages = s.sink.wait_for_messages(nth, WAIT);
    let message = messages
        .iter()
        .find(|m| m.recipients().contains(&OUTSIDE.to_string()))
        .expect("relayed to the sink");
    let received = message.header("Received").expect("a Received header");
    assert!(
        received.contains("with ESMTPSA id"),
        "RFC 3848: TLS + AUTH is ESMTPSA: {received}"
    );
    let qid = r.queue_id().expect("queued as");
    let queued = s.server.wait_for_log("queued conn=", 1, WAIT);
    let queued = queued
        .iter()
        .find(|l| l.contains(&format!(" qid={qid} ")))
        .unwrap_or_else(|| panic!("no queued line for {qid}: {queued:?}"));
    let conn = field(queued, "conn=");
    let auth = s
        .server
        .wait_for_log(&format!(" auth conn={conn} "), 1, WAIT);
    assert!(
        auth[0].contains(&format!(
            "user=\"{user}\" backend=passwd_file result=success"
        )),
        "{auth:?}"
    );
    assert_no_secret_in_log(s, user, password);
}

/// The value of `name` (e.g. "conn=") in a mail log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// The whole mail log never shows the password, in clear or as the base64
/// a client sent (PLAIN's response, LOGIN's password line).
fn assert_no_secret_in_log(s: &Setup, user: &str, password: &str) {
    let log = s.server.log();
    for secret in [
        password.to_string(),
        plain_response(user, password),
        base64(password.as_bytes()),
    ] {
        assert!(
            !log.contains(&secret),
            "{secret:?} is in the mail log:\n{log}"
        );
    }
}

#[test]
fn plain_over_starttls_relays_outside_the_rat_as_esmtpsa() {
    let s = setup();
    // Without AUTH the same mail is refused by the RAT: this test can fail.
    let anonymous = Swaks::new(s.server.addr()).to(OUTSIDE).arg("--tls").run();
    assert_eq!(
        anonymous.code_for("RCPT"),
        Some(550),
        "{}",
        anonymous.transcript()
    );
    let r = swaks_auth(
        &s,
        Ipv4Addr::LOCALHOST,
        "PLAIN",
        ALICE,
        ALICE_PASSWORD,
        OUTSIDE,
    );
    assert_relayed_as(&s, &r, ALICE, ALICE_PASSWORD, 1);
}

#[test]
fn login_over_starttls_relays_outside_the_rat_as_esmtpsa() {
    let s = setup();
    let r = swaks_auth(&s, Ipv4Addr::LOCALHOST, "LOGIN", BOB, BOB_PASSWORD, OUTSIDE);
    assert!(
        r.replies.iter().any(|(_, code, _)| *code == 334),
        "LOGIN asks twice: {}",
        r.transcript()
    );
    assert_relayed_as(&s, &r, BOB, BOB_PASSWORD, 1);
}

#[test]
fn a_wrong_password_gets_535_5_7_8_and_is_logged_without_it() {
    let s = setup();
    for mechanism in ["PLAIN", "LOGIN"] {
        let r = swaks_auth(
            &s,
            Ipv4Addr::LOCALHOST,
            mechanism,
            ALICE,
            "not-the-password",
            OUTSIDE,
        );
        let refusal =
            reply_to(&r, 535).unwrap_or_else(|| panic!("{mechanism}: {}", r.transcript()));
        assert!(refusal.starts_with("535 5.7.8"), "{refusal}");
        assert_eq!(r.code_for("MAIL"), None, "swaks stops at the failed AUTH");
    }
    let failures = s.server.wait_for_log("result=failure", 2, WAIT);
    assert!(
        failures
            .iter()
            .all(|l| l.contains("user=\"alice\"") && l.contains(" conn=C")),
        "{failures:?}"
    );
    assert_no_secret_in_log(&s, ALICE, "not-the-password");
    assert_eq!(s.sink.count(), 0);
}

#[test]
fn auth_in_clear_is_not_offered_and_gets_538_when_tls_is_required_for_it() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect(s.server.addr()).unwrap();
    let ehlo = raw.cmd("EHLO client.test").unwrap();
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo:?}"
    );
    let reply = raw
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain_response(ALICE, ALICE_PASSWORD)
        ))
        .unwrap();
    assert_eq!(
        said(&reply),
        (
            538,
            "5.7.11 Encryption required for requested authentication mechanism".into()
        )
    );
    // Nothing was asked of the backend (RFC 4954 §4: refused before the exchange).
    assert!(
        s.server.event_lines("auth").is_empty(),
        "{}",
        s.server.log()
    );
    // And swaks over STARTTLS sees AUTH offered inside TLS.
    let r = swaks_auth(
        &s,
        Ipv4Addr::LOCALHOST,
        "PLAIN",
        ALICE,
        ALICE_PASSWORD,
        "rcpt@example.test",
    );
    assert!(
        r.output.stdout.contains("250-AUTH PLAIN LOGIN")
            || r.output.stdout.contains("250 AUTH PLAIN LOGIN"),
        "{}",
        r.transcript()
    );
    assert_eq!(r.final_code(), Some(250), "{}", r.transcript());
}

#[test]
fn auth_on_a_policy_with_smtp_auth_off_gets_503_5_5_1() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), NO_AUTH).unwrap();
    let ehlo = raw.cmd("EHLO client.test").unwrap();
    assert!(!ehlo.contains("AUTH"), "{ehlo:?}");
    let reply = raw
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain_response(ALICE, ALICE_PASSWORD)
        ))
        .unwrap();
    assert_eq!(
        (reply.code, reply.text().starts_with("5.5.1")),
        (503, true),
        "{reply:?}"
    );
    // Over TLS neither: swaks finds no AUTH to use and gives up (exit 28).
    let r = swaks_auth(&s, NO_AUTH, "PLAIN", ALICE, ALICE_PASSWORD, OUTSIDE);
    assert!(!r.output.stdout.contains("AUTH"), "{}", r.transcript());
    assert_eq!(
        (r.exit_code(), r.code_for("MAIL")),
        (Some(28), None),
        "{}",
        r.transcript()
    );
    assert_eq!(s.sink.count(), 0);
}

#[test]
fn malformed_base64_gets_501_5_5_2_and_the_session_goes_on() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), CLEAR).unwrap();
    let ehlo = raw.cmd("EHLO client.test").unwrap();
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN"),
        "require_tls_for_auth = false offers AUTH in clear: {ehlo:?}"
    );
    let reply = raw.cmd("AUTH PLAIN not*base64!").unwrap();
    assert_eq!(
        (reply.code, reply.text().starts_with("5.5.2")),
        (501, true),
        "{reply:?}"
    );
    // The same in the middle of a LOGIN exchange.
    assert_eq!(raw.cmd("AUTH LOGIN").unwrap().code, 334);
    let reply = raw.cmd("%%%").unwrap();
    assert_eq!(
        (reply.code, reply.text().starts_with("5.5.2")),
        (501, true),
        "{reply:?}"
    );
    // Not a failed password: not counted, and the right one still works.
    let reply = raw
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain_response(ALICE, ALICE_PASSWORD)
        ))
        .unwrap();
    assert_eq!(
        said(&reply),
        (235, "2.7.0 Authentication successful".into())
    );
    assert!(
        s.server.log_lines("result=failure").is_empty(),
        "{}",
        s.server.log()
    );
}

#[test]
fn smtp_auth_required_refuses_mail_before_auth_and_takes_it_after() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), REQUIRED).unwrap();
    raw.cmd("EHLO client.test").unwrap();
    let reply = raw.cmd("MAIL FROM:<someone@client.test>").unwrap();
    assert_eq!(
        (reply.code, reply.text().starts_with("5.7.0")),
        (530, true),
        "{reply:?}"
    );
    // swaks over TLS without AUTH: refused at MAIL, even to a RAT domain.
    let r = with_args(
        Swaks::new(s.server.addr()).to("rcpt@example.test"),
        &["--tls", "--local-interface", &REQUIRED.to_string()],
    )
    .run();
    assert_eq!(r.code_for("MAIL"), Some(530), "{}", r.transcript());
    // With AUTH: accepted, and relayed.
    let r = swaks_auth(&s, REQUIRED, "PLAIN", ALICE, ALICE_PASSWORD, OUTSIDE);
    assert_relayed_as(&s, &r, ALICE, ALICE_PASSWORD, 1);
}

/// One AUTH PLAIN attempt in a new connection from `source` on `shard`:
/// the reply, and whether the server closed the connection after it.
fn attempt_on(s: &Setup, source: Ipv4Addr, shard: usize, password: &str) -> (Reply, bool) {
    let (mut raw, _) = s.server.session_on(s.server.addr(), source, shard);
    raw.cmd("EHLO client.test").unwrap();
    let reply = raw
        .cmd(&format!("AUTH PLAIN {}", plain_response(ALICE, password)))
        .unwrap();
    let closed = reply.code == 421 && raw.is_closed_within(WAIT);
    if reply.code != 421 {
        let _ = raw.cmd("QUIT");
    }
    (reply, closed)
}

#[test]
fn brute_force_over_both_shards_is_cut_off_after_auth_failures_max() {
    let s = setup_with_cores(2);
    // Failures 1..=3, each in a new connection, alternating shards: the
    // counter on the owner shard of auth:IP sees all of them.
    for i in 0..FAILURES_MAX {
        let (reply, _) = attempt_on(&s, CLEAR, i % 2, &format!("guess-{i}"));
        assert_eq!(
            reply.code,
            535,
            "attempt {} on shard {}: {reply:?}",
            i + 1,
            i % 2
        );
    }
    let shards: std::collections::BTreeSet<_> = s
        .server
        .wait_for_log("result=failure", FAILURES_MAX, WAIT)
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        shards.len(),
        2,
        "failures were decided on both shards: {shards:?}"
    );
    // The 4th attempt, new connection, right password, on either shard: 421, closed.
    for shard in [0, 1] {
        let (reply, closed) = attempt_on(&s, CLEAR, shard, ALICE_PASSWORD);
        assert_eq!(
            (reply.code, reply.text().starts_with("4.7.0")),
            (421, true),
            "shard {shard}: {reply:?}"
        );
        assert!(closed, "the connection closes after 421");
    }
    // swaks over STARTTLS from the same IP: cut off too.
    let r = swaks_auth(&s, CLEAR, "PLAIN", ALICE, ALICE_PASSWORD, OUTSIDE);
    assert!(
        reply_to(&r, 421).is_some_and(|t| t.starts_with("421 4.7.0")),
        "{}",
        r.transcript()
    );
    s.server.wait_for_log("result=blocked", 3, WAIT);
    // Another client IP is not blocked, on either shard.
    for shard in [0, 1] {
        let (reply, _) = attempt_on(&s, CLEAR_OTHER, shard, ALICE_PASSWORD);
        assert_eq!(reply.code, 235, "{reply:?}");
    }
    let r = swaks_auth(&s, CLEAR_OTHER, "LOGIN", ALICE, ALICE_PASSWORD, OUTSIDE);
    assert_relayed_as(&s, &r, ALICE, ALICE_PASSWORD, 1);
    assert_eq!(
        s.server.log_lines("result=failure").len(),
        FAILURES_MAX,
        "blocked attempts are not counted as failures"
    );
}

#[test]
fn exactly_auth_failures_max_failures_are_allowed_before_the_block() {
    // The limit is exact for one client going one attempt at a time: the
    // 3rd failure is still a 535 (not 421), the attempt after it is 421.
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), CLEAR).unwrap();
    raw.cmd("EHLO client.test").unwrap();
    for i in 1..=FAILURES_MAX {
        let reply = raw
            .cmd(&format!(
                "AUTH PLAIN {}",
                plain_response(ALICE, &format!("guess-{i}"))
            ))
            .unwrap();
        assert_eq!(
            (reply.code, reply.text().starts_with("5.7.8")),
            (535, true),
            "failure {i}: {reply:?}"
        );
    }
    let reply = raw
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain_response(ALICE, ALICE_PASSWORD)
        ))
        .unwrap();
    assert_eq!(reply.code, 421, "{reply:?}");
    assert!(raw.is_closed_within(WAIT));
}

#[test]
fn credentials_pipelined_after_a_refused_auth_never_reach_the_log() {
    // A client that pipelines its LOGIN responses (against RFC 4954 §4)
    // after an AUTH we refuse in clear (538): the two base64 lines are
    // then unknown commands, and the log must not name them.
    let s = setup();
    let (mut raw, _) = RawSmtp::connect(s.server.addr()).unwrap();
    raw.cmd("EHLO client.test").unwrap();
    let (user, password) = (base64(ALICE.as_bytes()), base64(ALICE_PASSWORD.as_bytes()));
    // And an initial response glued to its mechanism by a tab, or sent
    // without one: not a mechanism we know, so not shown either.
    let plain = plain_response(ALICE, ALICE_PASSWORD);
    raw.send(
        format!(
            "AUTH LOGIN\r\n{user}\r\n{password}\r\nAUTH PLAIN\t{plain}\r\nAUTH {plain}\r\nQUIT\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let codes: Vec<u16> = raw
        .read_replies(6)
        .unwrap()
        .iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [538, 500, 500, 538, 538, 221]);
    let commands = s.server.wait_for_log("cmd=QUIT", 1, WAIT);
    let log = s.server.log();
    let unknown = log
        .lines()
        .filter(|l| l.contains(" cmd=UNKNOWN arg=\"\" reply=\"500 "))
        .count();
    assert_eq!(unknown, 2, "{commands:?}\n{log}");
    // Not even upper-cased or cut short (as a verb used to be logged).
    for secret in [
        &password[..12],
        &password.to_uppercase()[..12],
        &user[..6],
        &plain[..12],
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}

#[test]
fn an_authenticated_session_relays_within_the_policys_limits() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), LIMITED).unwrap();
    raw.cmd("EHLO client.test").unwrap();
    let reply = raw
        .cmd(&format!("AUTH PLAIN {}", plain_response(BOB, BOB_PASSWORD)))
        .unwrap();
    assert_eq!(reply.code, 235, "{reply:?}");
    let rcpt = |raw: &mut RawSmtp, n: usize| {
        raw.cmd(&format!("RCPT TO:<r{n}@elsewhere.example>"))
            .unwrap()
    };
    // max_recipients_per_message = 2: the third gets 452 4.5.3.
    assert_eq!(raw.cmd("MAIL FROM:<bob@client.test>").unwrap().code, 250);
    assert_eq!((rcpt(&mut raw, 1).code, rcpt(&mut raw, 2).code), (250, 250));
    let third = rcpt(&mut raw, 3);
    assert_eq!(
        (third.code, third.text().starts_with("4.5.3")),
        (452, true),
        "{third:?}"
    );
    assert_eq!(raw.cmd("RSET").unwrap().code, 250);
    // max_recipients_per_hour = 3 (the 452 above was not counted): one more, then 452.
    assert_eq!(raw.cmd("MAIL FROM:<bob@client.test>").unwrap().code, 250);
    assert_eq!(rcpt(&mut raw, 4).code, 250);
    let over = rcpt(&mut raw, 5);
    assert_eq!(over.code, 452, "{over:?}");
    assert!(
        over.text()
            .contains("Too many recipients received this hour"),
        "{over:?}"
    );
}
