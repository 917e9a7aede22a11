//! The SMTP AUTH scenario of `e2e_auth*.rs` (RFC 4954, issue 9 item 3):
//! one `portcullis` with `[tls]` from [`TestPki`], `[auth] backend =
//! "passwd_file"` over a password file made by the built `portcullis
//! passwd USER` (password on standard input, as an operator makes it), an
//! smtp-sink behind every route, and the clients' helpers (swaks over
//! STARTTLS with `--auth`, SASL responses for [`RawSmtp`], what an
//! authenticated relay must show in the mail log).
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
//! LIMITED also has 2 recipients per message and 3 per hour. The RAT
//! accepts only `example.test`: mail to any other domain is relay, which
//! only an authenticated session may do (`policy::recipient`).
//! `auth_failures_max = 3`.

use super::certs::TestPki;
use super::clients::{RawSmtp, Reply, Swaks, SwaksResult};
use super::config::ConfigFile;
use super::process::{free_port, TempDir};
use super::server::{portcullis_bin, Portcullis};
use super::sink::Sink;
use super::WAIT;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub const ALICE: &str = "alice";
pub const ALICE_PASSWORD: &str = "Tr0ub4dor-and-3";
pub const BOB: &str = "bob@client.test";
pub const BOB_PASSWORD: &str = "correct-horse-battery";
/// A domain the RAT does not accept: only an authenticated session relays there.
pub const OUTSIDE: &str = "friend@elsewhere.example";
pub const FAILURES_MAX: usize = 3;

pub const REQUIRED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 81);
pub const NO_AUTH: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 82);
pub const CLEAR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 83);
pub const CLEAR_OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 84);
pub const LIMITED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 85);

pub struct Setup {
    _dir: TempDir,
    _file: ConfigFile,
    pub sink: Sink,
    pub server: Portcullis,
}

/// `portcullis passwd USER` with the password on standard input: the line
/// for the password file.
pub fn passwd_line(user: &str, password: &str) -> String {
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

pub fn config_text(pki: &TestPki, users: &std::path::Path, port: u16) -> String {
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

pub fn setup_with_cores(cores: usize) -> Setup {
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

pub fn setup() -> Setup {
    setup_with_cores(1)
}

/// swaks over STARTTLS with AUTH `mechanism` as `user`, from `source`.
pub fn swaks_auth(
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
pub fn plain_response(user: &str, password: &str) -> String {
    base64(format!("\0{user}\0{password}").as_bytes())
}

/// RFC 4648 base64, as a SASL client sends it.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The reply's code and its text (enhanced status code first).
pub fn said(reply: &Reply) -> (u16, String) {
    (reply.code, reply.text())
}

/// `swaks` with these options added, verbatim.
pub fn with_args(swaks: Swaks, args: &[&str]) -> Swaks {
    args.iter().fold(swaks, |swaks, a| swaks.arg(a))
}

/// The last line of the first reply with `code` in a swaks run.
pub fn reply_to(r: &SwaksResult, code: u16) -> Option<String> {
    r.replies
        .iter()
        .find(|(_, c, _)| *c == code)
        .map(|(_, _, text)| text.clone())
}

/// What an authenticated relay must show: 235, 250 at the end, the message
/// at the sink as ESMTPSA, and in the mail log the `auth` line of `user`
/// with result=success and the connection id of the `queued` line of that
/// message (what an operator greps to join them); no password anywhere.
pub fn assert_relayed_as(s: &Setup, r: &SwaksResult, user: &str, password: &str, nth: usize) {
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
pub fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// The whole mail log never shows the password, in clear or as the base64
/// a client sent (PLAIN's response, LOGIN's password line).
pub fn assert_no_secret_in_log(s: &Setup, user: &str, password: &str) {
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
