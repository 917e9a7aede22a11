//! A real Postfix `smtpd` as a call-ahead downstream: the test's own
//! Postfix instance on 127.0.0.1, so "550 5.1.1 <x@d>: Recipient address
//! rejected: User unknown in relay recipient table" comes from the real
//! thing, word for word.
//!
//! ```ignore
//! let pf = PostfixSmtpd::start(&["example.test"], &["known@example.test"]);
//! // RCPT TO:<known@example.test>   -> 250 2.1.5 Ok
//! // RCPT TO:<nobody@example.test>  -> 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in relay recipient table
//! // RCPT TO:<x@elsewhere.test>     -> 554 5.7.1 <x@elsewhere.test>: Relay access denied   (a policy reject)
//! pf.add_mailbox("new@example.test"); // answered 250 from the next RCPT on, even in an open session
//! ```
//!
//! How it is built (Postfix 3.7, checked against the binaries; the private
//! instance of `benches/load.sh` is the model):
//! - its own `config_directory`, `queue_directory` and `data_directory` in a
//!   temp dir, its own `master` (`postfix -c DIR start`), a `master.cf`
//!   with one `smtpd` on 127.0.0.1:PORT and only the daemons smtpd needs;
//!   chroot off. The system Postfix (if any) is never used or touched.
//! - `relay_domains` = the test's domains, `smtpd_relay_restrictions =
//!   reject_unauth_destination` (loopback is not trusted, so another domain
//!   gets Postfix's 5.7.1 relay denial, a policy reject).
//! - The recipient table is `relay_recipient_maps = tcp:127.0.0.1:T`,
//!   answered by a thread of the test process ([`RecipientTable`]), not a
//!   `hash:` file: smtpd reads a changed hash file only in a new session
//!   (checked: after `postmap` + `postfix reload` an open session still
//!   says "User unknown"), and the call-ahead pool keeps its probe
//!   connections open. With the tcp table `add_mailbox` holds for the very
//!   next RCPT, and each lookup is counted the moment it happens.
//! - Nothing is delivered: `relay_transport`/`default_transport` are
//!   `discard:` (the `error:` transport would make smtpd refuse every RCPT).
//!   Only the RCPT answers matter; a DATA that gets through is dropped.
//! - Postfix's default error throttling (`smtpd_soft_error_limit` 10: every
//!   reply slowed by `smtpd_error_sleep_time` past 10 errors in a session;
//!   `smtpd_hard_error_limit` 20: 421 and hang-up), as a real site runs
//!   it: the probe pool must retire connections before either bites.
//! - Logging: `maillog_file` through `postlogd` (no syslog in CI). The
//!   counters below read smtpd's own `connect from` / `disconnect from …
//!   rcpt=N/M` lines: that is "counted at the server".
//!
//! - TLS (`start_tls`): STARTTLS with a certificate of the test PKI
//!   (`common::certs`), `smtpd_tls_security_level = may` (offered) or
//!   `encrypt` (MAIL in clear gets 530), `smtpd_tls_loglevel = 1`, so the
//!   log says "… TLS connection established from …" per session; smtpd
//!   reads the key as root before it drops privileges. `tlsmgr` joins the
//!   daemons.
//!
//! Runs only as root (the master drops to the `postfix` user); the package
//! comes from `tests/run.sh` (postfix).

use super::process::{free_port, is_listening, is_root, program, wait_until, TempDir};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long `postfix start` may take before the test fails (it runs
/// postfix-script's checks, then forks the master).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits for the master and its daemons to exit before
/// it kills them.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// STARTTLS on the instance's smtpd.
#[derive(Clone, Debug)]
pub struct PostfixTls {
    /// `smtpd_tls_security_level`: "may" or "encrypt".
    pub level: &'static str,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A private Postfix instance with one `smtpd` on 127.0.0.1; stopped (and
/// every daemon of it killed) on drop.
pub struct PostfixSmtpd {
    dir: TempDir,
    /// Where smtpd listens: 127.0.0.1 and a free port, unless `start_tls_at`.
    ip: Ipv4Addr,
    port: u16,
    table: RecipientTable,
    running: bool,
}

impl PostfixSmtpd {
    /// Starts an instance relaying for `domains` whose existing mailboxes
    /// are `mailboxes` (full addresses, case-insensitive). Panics with the
    /// instance's log if it does not listen in time.
    pub fn start(domains: &[&str], mailboxes: &[&str]) -> PostfixSmtpd {
        PostfixSmtpd::start_with(domains, mailboxes, None)
    }

    /// `start`, with STARTTLS as `tls` says.
    pub fn start_tls(domains: &[&str], mailboxes: &[&str], tls: &PostfixTls) -> PostfixSmtpd {
        PostfixSmtpd::start_with(domains, mailboxes, Some(tls))
    }

    /// `start_tls` with smtpd on `ip:port` (delivery by MX goes to port 25:
    /// give each test its own 127.0.0.x so none meets another's server).
    pub fn start_tls_at(ip: Ipv4Addr, port: u16, domains: &[&str], mailboxes: &[&str], tls: &PostfixTls) -> PostfixSmtpd {
        PostfixSmtpd::start_on((ip, port), domains, mailboxes, Some(tls))
    }

    fn start_with(domains: &[&str], mailboxes: &[&str], tls: Option<&PostfixTls>) -> PostfixSmtpd {
        PostfixSmtpd::start_on((Ipv4Addr::LOCALHOST, free_port()), domains, mailboxes, tls)
    }

    fn start_on((ip, port): (Ipv4Addr, u16), domains: &[&str], mailboxes: &[&str], tls: Option<&PostfixTls>) -> PostfixSmtpd {
        assert!(
            is_root(),
            "PostfixSmtpd needs root (the master drops to user postfix)"
        );
        let dir = TempDir::new("postfix");
        let table = RecipientTable::start(mailboxes);
        let pf = PostfixSmtpd {
            ip,
            port,
            dir,
            table,
            running: false,
        };
        pf.write_config(domains, tls);
        pf.launch()
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }
    /// "127.0.0.1:PORT", the form routes and `static_servers` take.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Makes `mailbox` exist from the next RCPT on, also in sessions that
    /// are already open (see the module header: no reload needed).
    pub fn add_mailbox(&self, mailbox: &str) {
        self.table.add(mailbox);
    }
    /// The opposite: `mailbox` is "User unknown" from the next RCPT on.
    pub fn remove_mailbox(&self, mailbox: &str) {
        self.table.remove(mailbox);
    }

    /// RCPT commands that reached the recipient table, counted live by
    /// the table itself (no log delay, open sessions included). A RCPT
    /// refused before the table (relay denied, bad syntax) is not counted:
    /// use [`PostfixSmtpd::rcpt_commands_logged`] for those.
    pub fn rcpt_commands_total(&self) -> u64 {
        self.table.lookups()
    }
    /// Table lookups of one address (how often the server was asked about it).
    pub fn rcpt_lookups_of(&self, mailbox: &str) -> u64 {
        self.table.lookups_of(mailbox)
    }

    /// Sessions smtpd accepted ("connect from" lines).
    pub fn connections_total(&self) -> usize {
        self.smtpd_lines(" connect from ").len()
    }
    /// Sessions smtpd has ended ("disconnect from" lines).
    pub fn disconnections_total(&self) -> usize {
        self.smtpd_lines(" disconnect from ").len()
    }
    /// Sessions open right now as far as the log says.
    pub fn open_connections(&self) -> usize {
        self.connections_total()
            .saturating_sub(self.disconnections_total())
    }
    /// The most sessions smtpd held open at once: the log's connect (+1)
    /// and disconnect (-1) lines replayed in order. Exact about smtpd's
    /// view (postlogd writes the lines in the order the events happened;
    /// each smtpd sends its line at the event, before it goes on).
    pub fn max_concurrent_connections(&self) -> usize {
        max_open(&self.log())
    }
    /// RCPT commands of the sessions that have ended, from the `rcpt=N/M`
    /// counts of the disconnect lines (all RCPTs, refused ones included).
    /// A session still open is not in it yet.
    pub fn rcpt_commands_logged(&self) -> u64 {
        self.smtpd_lines(" disconnect from ")
            .iter()
            .map(|l| command_count(l, "rcpt"))
            .sum()
    }
    /// Waits until smtpd has accepted at least `n` sessions; panics with
    /// the log after `timeout`.
    pub fn wait_connections(&self, n: usize, timeout: Duration) {
        if !wait_until(timeout, || self.connections_total() >= n) {
            panic!(
                "postfix: {} of {n} connections after {timeout:?}\n{}",
                self.connections_total(),
                self.log()
            );
        }
    }

    /// The instance's mail log (postlogd's `maillog_file`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
    /// Sessions that ran over TLS ("… TLS connection established from …").
    pub fn tls_sessions(&self) -> usize {
        self.smtpd_lines(" TLS connection established from ").len()
    }

    /// The `NOQUEUE: reject: RCPT …` lines (one per refused RCPT).
    pub fn rejected_rcpt_lines(&self) -> Vec<String> {
        self.smtpd_lines(" reject: RCPT from ")
    }

    /// Stops the instance (`postfix stop`, then kills what is left). Idempotent.
    pub fn stop(&mut self) {
        if !std::mem::take(&mut self.running) {
            return;
        }
        let master = self.master_pid();
        // The master signals its daemons and exits without waiting for
        // them: note them first so none outlives the test holding a port.
        let daemons = master.map(children_of).unwrap_or_default();
        let _ = Command::new(program("postfix"))
            .arg("-c")
            .arg(self.etc())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for pid in master.into_iter().chain(daemons) {
            if !wait_until(STOP_TIMEOUT, || !is_alive(pid)) {
                // SAFETY: kill(2) with a pid we read from the master's pid
                // file or its children; at worst the signal misses.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }

    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn smtpd_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("postfix/smtpd[") && l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    fn master_pid(&self) -> Option<u32> {
        let pid_file = self.dir.path().join("queue/pid/master.pid");
        std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
    }

    fn write_config(&self, domains: &[&str], tls: Option<&PostfixTls>) {
        let root = self.dir.path();
        let etc = self.etc();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(root.join("queue")).unwrap();
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        // The master takes its lock in data_directory as mail_owner.
        let chown = Command::new("chown").arg("postfix:").arg(&data).status();
        assert!(
            matches!(chown, Ok(s) if s.success()),
            "chown postfix: {}",
            data.display()
        );
        let mut master = master_cf(self.ip, self.port);
        let mut main = main_cf(root, domains, self.table.port());
        if let Some(tls) = tls {
            master.push_str("tlsmgr    unix  - - n 1000? 1 tlsmgr\n");
            main.push_str(&format!(
                "smtpd_tls_security_level = {}\nsmtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\nsmtpd_tls_loglevel = 1\n",
                tls.level,
                tls.cert.display(),
                tls.key.display()
            ));
        }
        std::fs::write(etc.join("master.cf"), master).unwrap();
        std::fs::write(etc.join("main.cf"), main).unwrap();
    }

    fn launch(mut self) -> PostfixSmtpd {
        let out = Command::new(program("postfix"))
            .arg("-c")
            .arg(self.etc())
            .arg("start")
            .output()
            .expect("run postfix start");
        self.running = true;
        let listening =
            out.status.success() && wait_until(START_TIMEOUT, || listening_at(self.ip, self.port));
        if !listening {
            panic!(
                "postfix did not start on {}:{}: {}{}\n--- maillog ---\n{}",
                self.ip,
                self.port,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        self
    }
}

impl Drop for PostfixSmtpd {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- postfix maillog {} ---\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
        self.stop();
    }
}

/// One smtpd on the test's port; the daemons smtpd calls on (cleanup and
/// trivial-rewrite for addresses, proxymap, anvil) and postlogd for the
/// log. qmgr and discard only matter if a test sends DATA. Chroot off: a
/// chroot would need copies of /etc files inside the queue directory.
fn master_cf(ip: Ipv4Addr, port: u16) -> String {
    format!(
        "{ip}:{port} inet n - n - - smtpd\n\
         cleanup   unix  n - n -     0 cleanup\n\
         qmgr      unix  n - n 300   1 qmgr\n\
         rewrite   unix  - - n -     - trivial-rewrite\n\
         bounce    unix  - - n -     0 bounce\n\
         defer     unix  - - n -     0 bounce\n\
         trace     unix  - - n -     0 bounce\n\
         error     unix  - - n -     - error\n\
         retry     unix  - - n -     - error\n\
         discard   unix  - - n -     - discard\n\
         proxymap  unix  - - n -     - proxymap\n\
         anvil     unix  - - n -     1 anvil\n\
         postlog   unix-dgram n - n - 1 postlogd\n"
    )
}

fn main_cf(root: &Path, domains: &[&str], table_port: u16) -> String {
    let root = root.display();
    let domains = domains.join(", ");
    format!(
        "# Private test instance written by tests/common/postfix.rs.\n\
         compatibility_level = 3.6\n\
         queue_directory = {root}/queue\n\
         data_directory = {root}/data\n\
         mail_owner = postfix\n\
         setgid_group = postdrop\n\
         myhostname = downstream.test\n\
         mydomain = downstream.test\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         # Loopback is the test's client: not trusted, so relay rules apply.\n\
         mynetworks = 192.0.2.255/32\n\
         mydestination =\n\
         relay_domains = {domains}\n\
         relay_recipient_maps = tcp:127.0.0.1:{table_port}\n\
         smtpd_relay_restrictions = reject_unauth_destination\n\
         local_recipient_maps =\n\
         alias_maps =\n\
         alias_database =\n\
         default_transport = discard:test instance delivers nothing\n\
         relay_transport = discard:test instance delivers nothing\n\
         smtpd_peername_lookup = no\n\
         smtpd_client_connection_count_limit = 0\n\
         smtpd_recipient_limit = 100000\n\
         maillog_file = {root}/maillog\n\
         maillog_file_prefixes = {root}\n\
         biff = no\n\
         append_dot_mydomain = no\n"
    )
}

/// Whether a socket listens on `ip:port` (IPv4), read from `/proc/net/tcp`
/// like `process::is_listening` (which knows 127.0.0.1 and 0.0.0.0 only):
/// no probe connection shows up in the server's log.
fn listening_at(ip: Ipv4Addr, port: u16) -> bool {
    if ip == Ipv4Addr::LOCALHOST {
        return is_listening(port);
    }
    // The kernel prints the address in host byte order (little-endian here).
    let wanted = format!("{:08X}:{port:04X}", u32::from_le_bytes(ip.octets()));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let mut cols = line.split_whitespace();
        let local = cols.nth(1).unwrap_or("");
        let state = cols.nth(1).unwrap_or("");
        state == "0A" && local == wanted
    })
}

/// Replays `connect from` (+1) and `disconnect from` (-1) lines of smtpd
/// in log order; the highest level reached.
fn max_open(log: &str) -> usize {
    let (mut open, mut max) = (0usize, 0usize);
    for line in log.lines().filter(|l| l.contains("postfix/smtpd[")) {
        if line.contains(" disconnect from ") {
            open = open.saturating_sub(1);
        } else if line.contains(" connect from ") {
            open += 1;
            max = max.max(open);
        }
    }
    max
}

/// `rcpt=3/5` → 5 (commands given), `rcpt=2` → 2, absent → 0.
fn command_count(line: &str, command: &str) -> u64 {
    let prefix = format!("{command}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .map(|v| v.rsplit('/').next().unwrap_or(v))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn is_alive(pid: u32) -> bool {
    // A zombie has exited; only its parent (the master, or init) reaps it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_field(&stat, 0).map(|s| s != "Z").unwrap_or(false),
        Err(_) => false,
    }
}

/// Field `n` after the `(comm)` of a `/proc/PID/stat` line (0 = state,
/// 1 = ppid).
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(n)
}

/// Live direct children of `parent` (the master's daemons).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_field(&s, 1).map(|p| p == parent.to_string()))
                .unwrap_or(false)
        })
        .collect()
}

/// The recipient table smtpd asks over Postfix's `tcp:` lookup protocol
/// (tcp_table(5)): `get KEY\n` → `200 VALUE\n` (found) or `500 …\n` (not
/// found); keys are %XX-encoded. One thread per smtpd connection; the
/// threads end when smtpd closes the connection or the table is dropped.
pub struct RecipientTable {
    port: u16,
    state: Arc<TableState>,
}

#[derive(Default)]
struct TableState {
    mailboxes: Mutex<HashSet<String>>,
    /// Every looked-up key, in order (lowercased, decoded).
    asked: Mutex<Vec<String>>,
    lookups: AtomicU64,
    stop: AtomicBool,
    clients: Mutex<Vec<TcpStream>>,
}

impl RecipientTable {
    pub fn start(mailboxes: &[&str]) -> RecipientTable {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recipient table");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(TableState::default());
        for mailbox in mailboxes {
            state
                .mailboxes
                .lock()
                .unwrap()
                .insert(mailbox.to_ascii_lowercase());
        }
        let accept_state = Arc::clone(&state);
        thread::spawn(move || accept_lookups(listener, accept_state));
        RecipientTable { port, state }
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn add(&self, mailbox: &str) {
        self.state
            .mailboxes
            .lock()
            .unwrap()
            .insert(mailbox.to_ascii_lowercase());
    }
    pub fn remove(&self, mailbox: &str) {
        self.state
            .mailboxes
            .lock()
            .unwrap()
            .remove(&mailbox.to_ascii_lowercase());
    }
    /// Lookups of full addresses (`user@domain`): one per RCPT that
    /// reached the table. Postfix may also ask `@domain` or a bare local
    /// part for some tables; those are not RCPTs and not counted.
    pub fn lookups(&self) -> u64 {
        self.state.lookups.load(Ordering::SeqCst)
    }
    pub fn lookups_of(&self, mailbox: &str) -> u64 {
        let wanted = mailbox.to_ascii_lowercase();
        self.state
            .asked
            .lock()
            .unwrap()
            .iter()
            .filter(|k| **k == wanted)
            .count() as u64
    }
}

impl Drop for RecipientTable {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop, and end the per-connection threads.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for client in self.state.clients.lock().unwrap().drain(..) {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn accept_lookups(listener: TcpListener, state: Arc<TableState>) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if let Ok(clone) = stream.try_clone() {
            state.clients.lock().unwrap().push(clone);
        }
        let state = Arc::clone(&state);
        thread::spawn(move || answer_lookups(stream, state));
    }
}

fn answer_lookups(stream: TcpStream, state: Arc<TableState>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let Some(key) = line.strip_prefix("get ") else {
            let _ = writer.write_all(b"400 unsupported request\n");
            continue;
        };
        let key = percent_decode(key.trim()).to_ascii_lowercase();
        let is_address = key.find('@').is_some_and(|at| at > 0);
        if is_address {
            state.lookups.fetch_add(1, Ordering::SeqCst);
        }
        state.asked.lock().unwrap().push(key.clone());
        let found = state.mailboxes.lock().unwrap().contains(&key);
        let answer: &[u8] = if found {
            b"200 OK\n"
        } else {
            b"500 not-found\n"
        };
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

/// tcp_table(5) encodes characters outside the printable set as %XX.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
