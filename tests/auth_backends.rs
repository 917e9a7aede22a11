//! The SMTP AUTH backends end to end, below the session: `portcullis
//! passwd USER` (the built binary, password on standard input) prints a
//! line that the password file backend takes and verifies; the LDAP bind
//! backend against a real slapd (tests/common/slapd.rs) with a person
//! entry: right password → Success (by uid and by mail), wrong → Failure,
//! unknown → Failure, empty → Failure without asking the directory (it
//! is still Failure once slapd is killed), a login matching two entries
//! → TemporaryFailure, slapd killed → TemporaryFailure. Every attempt
//! goes through `auth::Authenticator` on a one-shard glommio executor, so
//! the failure limit (Blocked before the password is looked at), the
//! mail log line (never the password) and `portcullis_auth_total` are
//! checked on the way.

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{TempDir, POLL};
use common::slapd::{Slapd, PEOPLE};
use portcullis::auth::{AuthOutcome, Authenticator, Credentials, Secret};
use portcullis::config::{Config, Policy};
use portcullis::ldap::client::Directory;
use portcullis::maillog::MailLog;
use portcullis::metrics::{Metrics, MetricsBoard};
use portcullis::policy::rate::{Counters, RateSettings};
use portcullis::shards::{Mesh, MeshPlan};

const CLIENT: &str = "192.0.2.25";
const ALICE_PASSWORD: &str = "alice-ldap-secret";

/// `portcullis passwd ARGS` with `stdin` written to it; (exit code, stdout, stderr).
fn passwd(args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis passwd");
    // A USER refused before reading leaves the pipe unread: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("portcullis passwd did not end within 60 s");
        }
        std::thread::sleep(POLL);
    }
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// A mail log whose lines the test can read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What one run of attempts saw: outcomes in order, the log, the metrics page.
struct Run {
    outcomes: Vec<AuthOutcome>,
    log: String,
    metrics: String,
}

/// Authenticate each (login, password) in order from `CLIENT` with
/// `policy`, on a one-shard executor with real counters; `between` runs
/// on the test's thread after the attempt of that index (e.g. kill slapd).
fn attempts(
    policy: Policy,
    logins: Vec<(&'static str, String)>,
    directory: Option<Directory>,
    mut between: impl FnMut(usize) + Send + 'static,
) -> Run {
    let captured = Captured::default();
    let metrics = Arc::new(Metrics::default());
    let (log_out, shard_metrics) = (captured.clone(), metrics.clone());
    let outcomes = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let mesh = Mesh::join(MeshPlan::new(1, Arc::new(AtomicBool::new(false))), 0)
                .await
                .unwrap();
            let counters = Counters::new(mesh.clone(), &RateSettings::default());
            counters.serve(&mesh);
            mesh.open();
            let log = MailLog::to_writer(Box::new(log_out), 0).unwrap();
            let auth = Authenticator {
                counters: &counters,
                metrics: &shard_metrics,
                log: &log,
                directory,
            };
            let ip: IpAddr = CLIENT.parse().unwrap();
            let mut outcomes = Vec::new();
            for (i, (user, password)) in logins.into_iter().enumerate() {
                let credentials = Credentials {
                    user: user.to_string(),
                    password: Secret::new(password),
                };
                let conn = format!("C0-{i}");
                outcomes.push(auth.authenticate(&policy, &conn, ip, credentials).await);
                between(i);
            }
            log.sync().await;
            log.close();
            outcomes
        })
        .unwrap()
        .join()
        .unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    Run {
        outcomes,
        log,
        metrics: MetricsBoard::new(vec![metrics]).render(),
    }
}

fn policy_of(toml: &str) -> Policy {
    let config = Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config.split().1
}

fn metric(page: &str, result: &str) -> u64 {
    let series = format!("portcullis_auth_total{{result=\"{result}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} in\n{page}"))
        .parse()
        .unwrap()
}

/// The `portcullis passwd` line for `user`, checked for shape.
fn passwd_line(user: &str, password: &str) -> String {
    let (code, stdout, stderr) = passwd(&[user], &format!("{password}\n"));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let line = stdout.trim_end().to_string();
    assert!(
        line.starts_with(&format!("{user}:{{ARGON2ID}}$argon2id$v=19$")),
        "{line}"
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the line on stdout: {stdout:?}"
    );
    assert!(!stdout.contains(password) && !stderr.contains(password));
    line
}

fn write_users(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("users");
    std::fs::write(
        &path,
        format!("# made by portcullis passwd\n{}\n", lines.join("\n")),
    )
    .unwrap();
    path
}

#[test]
fn passwd_prints_a_line_the_password_file_verifies() {
    let dir = TempDir::new("auth-passwd");
    let users = write_users(
        dir.path(),
        &[
            passwd_line("alice", "correct horse battery"),
            passwd_line("bob@example.test", "another one"),
        ],
    );
    let policy = policy_of(&format!(
        "[auth]\nbackend = \"passwd_file\"\npasswd_file = \"{}\"\nauth_failures_max = 3\n",
        users.display()
    ));
    let logins = vec![
        ("alice", "correct horse battery".to_string()),
        ("bob@example.test", "another one".to_string()),
        ("alice", "correct horse battery ".to_string()),
        ("mallory", "correct horse battery".to_string()),
        ("alice", String::new()),
        // Three failures this hour: the right password is not even looked at.
        ("alice", "correct horse battery".to_string()),
    ];
    let run = attempts(policy, logins, None, |_| {});
    assert_eq!(
        run.outcomes,
        [
            AuthOutcome::Success {
                user: "alice".into()
            },
            AuthOutcome::Success {
                user: "bob@example.test".into()
            },
            AuthOutcome::Failure,
            AuthOutcome::Failure,
            AuthOutcome::Failure,
            AuthOutcome::Blocked,
        ]
    );
    // One line per attempt, each with the connection id that made it.
    for i in 0..6 {
        let line = format!(" auth conn=C0-{i} ip=192.0.2.25 ");
        assert_eq!(run.log.matches(&line).count(), 1, "{line}\n{}", run.log);
    }
    assert!(
        run.log
            .contains("user=\"mallory\" backend=passwd_file result=failure"),
        "{}",
        run.log
    );
    assert!(
        !run.log.contains("correct horse") && !run.log.contains("another one"),
        "no password in the log:\n{}",
        run.log
    );
    let counted: Vec<_> = ["success", "failure", "tempfail", "blocked"]
        .iter()
        .map(|r| metric(&run.metrics, r))
        .collect();
    assert_eq!(counted, [2, 3, 0, 1]);
}

#[test]
fn passwd_refuses_an_empty_password_and_a_bad_user() {
    let (code, stdout, stderr) = passwd(&["alice"], "\n");
    assert_eq!((code, stdout.as_str()), (Some(1), ""), "{stderr}");
    assert!(stderr.contains("empty password"), "{stderr}");
    let (code, _, _) = passwd(&["alice"], "");
    assert_eq!(code, Some(1), "no line at all is an empty password too");
    for user in ["al:ice", "al ice"] {
        let (code, stdout, stderr) = passwd(&[user], "secret\n");
        assert_eq!((code, stdout.as_str()), (Some(2), ""), "{user:?}: {stderr}");
    }
}

/// slapd with alice (uid and mail), and two entries one login matches.
fn directory_with_people() -> Slapd {
    let ldap = Slapd::start();
    let person = |uid: &str, mail: &str, password: &str| {
        format!("dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: Example\nmail: {mail}\nuserPassword: {password}\n")
    };
    ldap.add(&person("alice", "alice@example.com", ALICE_PASSWORD));
    ldap.add(&person("carol", "carol@example.com", "carol-secret"));
    ldap.add(&person("carol2", "carol", "carol-secret")); // mail "carol" also matches the login "carol"
    ldap
}

fn ldap_policy(ldap: &Slapd, failures_max: u32) -> Policy {
    policy_of(&format!(
        "{}[ldap.query.\"LDAP1.auth\"]\nserver = \"LDAP1\"\nkind = \"auth\"\nfilter = \"(|(uid={{a}})(mail={{a}}))\"\n\
         [auth]\nbackend = \"ldap\"\nldap_query = \"LDAP1.auth\"\nauth_failures_max = {failures_max}\n",
        ldap.server_toml("LDAP1")
    ))
}

#[test]
fn ldap_bind_decides_and_a_dead_directory_is_a_temporary_failure() {
    let ldap = Arc::new(Mutex::new(directory_with_people()));
    let policy = ldap_policy(&ldap.lock().unwrap(), 0);
    let directory = Directory::start();
    assert!(
        Directory::running().is_some(),
        "the shards find the LDAP thread"
    );
    let logins = vec![
        ("alice", ALICE_PASSWORD.to_string()),
        ("alice@example.com", ALICE_PASSWORD.to_string()),
        ("alice", "not-her-password".to_string()),
        ("nobody", ALICE_PASSWORD.to_string()),
        ("alice", String::new()),
        ("carol", "carol-secret".to_string()),
        ("*", ALICE_PASSWORD.to_string()), // escaped: a literal "*", no entry
        // slapd is killed after this attempt (index 7):
        ("alice", ALICE_PASSWORD.to_string()),
        ("alice", ALICE_PASSWORD.to_string()),
        ("alice", String::new()),
    ];
    let killer = ldap.clone();
    let run = attempts(policy, logins, Some(directory.clone()), move |i| {
        if i == 7 {
            killer.lock().unwrap().kill();
        }
    });
    let o = &run.outcomes;
    assert_eq!(
        o[..5],
        [
            AuthOutcome::Success {
                user: "alice".into()
            },
            AuthOutcome::Success {
                user: "alice@example.com".into()
            },
            AuthOutcome::Failure,
            AuthOutcome::Failure,
            AuthOutcome::Failure
        ]
    );
    assert!(
        matches!(&o[5], AuthOutcome::TemporaryFailure(why) if why.contains("matches 2 or more entries")),
        "{:?}",
        o[5]
    );
    assert_eq!(
        o[6..8],
        [
            AuthOutcome::Failure,
            AuthOutcome::Success {
                user: "alice".into()
            }
        ]
    );
    assert!(
        matches!(&o[8], AuthOutcome::TemporaryFailure(why) if why.contains("LDAP server LDAP1")),
        "{:?}",
        o[8]
    );
    assert_eq!(
        o[9],
        AuthOutcome::Failure,
        "an empty password is refused without asking the (dead) directory"
    );
    assert!(
        !run.log.contains(ALICE_PASSWORD),
        "no password in the log:\n{}",
        run.log
    );
    assert!(
        run.log
            .contains("backend=ldap result=tempfail why=\"LDAP server LDAP1"),
        "{}",
        run.log
    );
    assert_eq!(
        (
            metric(&run.metrics, "success"),
            metric(&run.metrics, "failure"),
            metric(&run.metrics, "tempfail")
        ),
        (3, 5, 2)
    );
    directory.stop_and_wait(Duration::from_secs(10));
}

#[test]
fn ldap_failures_block_the_client_before_its_password_is_looked_at() {
    let mut ldap = directory_with_people();
    let policy = ldap_policy(&ldap, 2);
    let directory = Directory::start();
    let logins = vec![
        ("alice", "wrong-1".to_string()),
        ("nobody", "wrong-2".to_string()),
        ("alice", ALICE_PASSWORD.to_string()),
    ];
    let run = attempts(policy, logins, Some(directory.clone()), |_| {});
    assert_eq!(
        run.outcomes,
        [
            AuthOutcome::Failure,
            AuthOutcome::Failure,
            AuthOutcome::Blocked
        ]
    );
    assert_eq!(metric(&run.metrics, "blocked"), 1);
    ldap.kill();
    directory.stop_and_wait(Duration::from_secs(10));
}

/// What a terminal's reader (the master side of a pty) has seen so far.
fn pty_seen(seen: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&seen.lock().unwrap()).into_owned()
}

/// Poll (with a deadline) until the terminal shows `text`.
fn wait_for_terminal(seen: &Mutex<Vec<u8>>, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pty_seen(seen).contains(text) {
        assert!(
            Instant::now() < deadline,
            "the terminal never showed {text:?}: {:?}",
            pty_seen(seen)
        );
        std::thread::sleep(POLL);
    }
}

#[test]
fn passwd_on_a_terminal_asks_twice_without_echo_and_restores_it() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: out-pointers to two ints; no name, default settings.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(master)),
            OwnedFd::from_raw_fd(slave),
        )
    };
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["passwd", "alice"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn portcullis passwd");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (reader, into) = (master.try_clone().unwrap(), seen.clone());
    std::thread::spawn(move || {
        use std::io::Read;
        let mut reader = reader;
        let mut buffer = [0u8; 256];
        while let Ok(n @ 1..) = reader.read(&mut buffer) {
            into.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    });
    let mut typing = master;
    wait_for_terminal(&seen, "Password for alice: ");
    typing.write_all(b"typed-on-a-tty\n").unwrap();
    wait_for_terminal(&seen, "Again: ");
    typing.write_all(b"typed-on-a-tty\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "terminal: {:?}",
        pty_seen(&seen)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("alice:{ARGON2ID}$argon2id$"), "{line}");
    assert!(
        !pty_seen(&seen).contains("typed-on-a-tty"),
        "echoed: {:?}",
        pty_seen(&seen)
    );
    // The echo is back on once the command is done.
    // SAFETY: a zeroed termios is a valid out-parameter; the slave fd is open.
    let mut settings: libc::termios = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::tcgetattr(std::os::fd::AsRawFd::as_raw_fd(&slave), &mut settings) },
        0
    );
    assert_ne!(settings.c_lflag & libc::ECHO, 0, "echo restored");
    // And the line verifies.
    let file =
        portcullis::auth::passwd::PasswdFile::parse(line.trim_end(), Path::new("users")).unwrap();
    assert_eq!(file.users(), 1);
    let hash = line.trim_end().split_once(":{ARGON2ID}").unwrap().1;
    assert!(portcullis::auth::passwd::verify_hash(
        hash,
        "typed-on-a-tty"
    ));
}
