//! A real DNS server for the tests: `unbound` on 127.0.0.1:<free port>,
//! run in the foreground (`unbound -d -c FILE`) from a config generated
//! into a temp dir, killed when the handle drops. Point portcullis at it
//! with `--dns <addr>` or `[dns] servers`; the resolver tests use `.addr()`.
//!
//! ```ignore
//! let dns = TestDns::start(&Zone::standard());
//! let dns = TestDns::start(&Zone::new().a("x.example.test", "127.0.0.5").nxdomain("gone.example.test"));
//! ```
//!
//! How each answer is made (unbound 1.17, checked against the binary):
//! - records are `local-data` in unbound's built-in static zones: `test.`
//!   (RFC 6761) and `127.in-addr.arpa.`; a name of those zones without
//!   data is NXDOMAIN, a name with data but not of the type asked is
//!   NODATA. `example.test.` is declared static here with its own SOA
//!   (negative TTL [`NEGATIVE_TTL_SECS`]).
//! - NXDOMAIN names are `always_nxdomain` zones.
//! - SERVFAIL names are a `transparent` local zone (to get out of the
//!   static `test.` zone) plus a `forward-zone` to a 127.0.0.1 port nobody
//!   listens on; `infra-cache-max-rtt: 300` makes unbound give up quickly.
//! - timeout names are `always_deny` zones: unbound drops the query.
//! Nothing leaves 127.0.0.0/8: every name a test asks is in these zones.
//!
//! [`Zone::standard`] is the shared test world (see the constants below):
//!
//! | name / address                   | answers                                          |
//! |----------------------------------|--------------------------------------------------|
//! | 127.0.0.10 PTR                   | good.example.test (A 127.0.0.10, AAAA 2001:db8::10): forward-confirmed |
//! | 127.0.0.11 PTR                   | mismatch.example.test (A 127.0.0.99): not confirmed |
//! | 127.0.0.12 PTR                   | none (NXDOMAIN)                                  |
//! | 127.0.0.13 PTR                   | times out                                        |
//! | 127.0.0.16 PTR                   | SERVFAIL                                         |
//! | 2.0.0.127.bl.example.test        | A 127.0.0.2, TXT "listed": 127.0.0.2 is listed   |
//! | 15.0.0.127.bl.example.test       | A 127.0.0.10: 127.0.0.15 listed with code .10    |
//! | 14.0.0.127.bl.example.test       | A 127.255.255.254: an error answer, not a listing |
//! | *.slowbl.example.test            | times out (a DNS list that never answers)        |
//! | withmx.example.test              | MX 10 mx1.withmx.example.test (A 127.0.0.21)     |
//! | aonly.example.test               | A 127.0.0.22, no MX                              |
//! | nodata.example.test              | TXT only: NODATA for A/AAAA/MX                   |
//! | nxdomain.example.test            | NXDOMAIN                                         |
//! | servfail.example.test            | SERVFAIL                                         |
//! | timeout.example.test             | times out                                        |
//! | alias.example.test               | CNAME good.example.test                          |

use super::process::{free_port, program, signal_and_wait, wait_listening, wait_until, TempDir};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// TTL of every record the harness serves.
pub const TTL_SECS: u32 = 300;
/// SOA MINIMUM of `example.test.`: the negative TTL (RFC 2308 §5).
pub const NEGATIVE_TTL_SECS: u32 = 60;

pub const GOOD_IP: &str = "127.0.0.10";
pub const GOOD_NAME: &str = "good.example.test";
pub const GOOD_IPV6: &str = "2001:db8::10";
pub const MISMATCH_IP: &str = "127.0.0.11";
pub const MISMATCH_NAME: &str = "mismatch.example.test";
pub const MISMATCH_NAME_ADDR: &str = "127.0.0.99";
pub const NO_PTR_IP: &str = "127.0.0.12";
pub const PTR_TIMEOUT_IP: &str = "127.0.0.13";
pub const PTR_SERVFAIL_IP: &str = "127.0.0.16";
pub const DNSLIST_ZONE: &str = "bl.example.test";
pub const DNSLIST_LISTED_IP: &str = "127.0.0.2";
pub const DNSLIST_CODE10_IP: &str = "127.0.0.15";
pub const DNSLIST_ERROR_IP: &str = "127.0.0.14";
pub const DNSLIST_TIMEOUT_ZONE: &str = "slowbl.example.test";
pub const MX_DOMAIN: &str = "withmx.example.test";
pub const MX_HOST: &str = "mx1.withmx.example.test";
pub const MX_HOST_IP: &str = "127.0.0.21";
pub const A_ONLY_DOMAIN: &str = "aonly.example.test";
pub const A_ONLY_IP: &str = "127.0.0.22";
pub const NODATA_DOMAIN: &str = "nodata.example.test";
pub const NXDOMAIN_DOMAIN: &str = "nxdomain.example.test";
pub const SERVFAIL_DOMAIN: &str = "servfail.example.test";
pub const TIMEOUT_DOMAIN: &str = "timeout.example.test";
pub const CNAME_ALIAS: &str = "alias.example.test";

/// The records and faults a [`TestDns`] serves.
#[derive(Clone, Default)]
pub struct Zone {
    /// `local-data` / `local-data-ptr` lines.
    data: Vec<String>,
    nxdomain: Vec<String>,
    servfail: Vec<String>,
    timeout: Vec<String>,
}

/// "name." from "name" or "name.".
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

impl Zone {
    /// An empty zone (only unbound's built-ins and `example.test.`'s SOA).
    pub fn new() -> Zone {
        Zone::default()
    }

    pub fn a(self, name: &str, ip: &str) -> Zone {
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "A {ip}");
        self.record(name, "A", ip)
    }
    pub fn aaaa(self, name: &str, ip: &str) -> Zone {
        assert!(ip.parse::<std::net::Ipv6Addr>().is_ok(), "AAAA {ip}");
        self.record(name, "AAAA", ip)
    }
    pub fn mx(self, name: &str, preference: u16, host: &str) -> Zone {
        let exchange = fqdn(host);
        self.record(name, "MX", &format!("{preference} {exchange}"))
    }
    pub fn cname(self, name: &str, target: &str) -> Zone {
        let target = fqdn(target);
        self.record(name, "CNAME", &target)
    }
    /// PTR of `ip` (v4 or v6) → `name`.
    pub fn ptr(mut self, ip: &str, name: &str) -> Zone {
        assert!(ip.parse::<IpAddr>().is_ok(), "PTR {ip}");
        self.data.push(format!("local-data-ptr: \"{ip} {}\"", fqdn(name)));
        self
    }
    /// One TXT record of one string (no quotes inside).
    pub fn txt(self, name: &str, text: &str) -> Zone {
        assert!(!text.contains(['"', '\'', '\\']), "TXT text with quotes: {text:?}");
        self.record(name, "TXT", &format!("\"{text}\""))
    }
    /// `name` and everything below it answer NXDOMAIN.
    pub fn nxdomain(mut self, name: &str) -> Zone {
        self.nxdomain.push(fqdn(name));
        self
    }
    /// `name` and everything below it answer SERVFAIL.
    pub fn servfail(mut self, name: &str) -> Zone {
        self.servfail.push(fqdn(name));
        self
    }
    /// Queries for `name` and below are dropped: the client times out.
    pub fn timeout(mut self, name: &str) -> Zone {
        self.timeout.push(fqdn(name));
        self
    }

    fn record(mut self, name: &str, rtype: &str, rdata: &str) -> Zone {
        self.data
            .push(format!("local-data: '{} {TTL_SECS} IN {rtype} {rdata}'", fqdn(name)));
        self
    }

    /// The shared test world of the module doc's table.
    pub fn standard() -> Zone {
        let listed = |ip: &str| format!("{}.{DNSLIST_ZONE}", reverse_v4(ip));
        Zone::new()
            .ptr(GOOD_IP, GOOD_NAME)
            .a(GOOD_NAME, GOOD_IP)
            .aaaa(GOOD_NAME, GOOD_IPV6)
            .ptr(MISMATCH_IP, MISMATCH_NAME)
            .a(MISMATCH_NAME, MISMATCH_NAME_ADDR)
            .timeout(&format!("{}.in-addr.arpa", reverse_v4(PTR_TIMEOUT_IP)))
            .servfail(&format!("{}.in-addr.arpa", reverse_v4(PTR_SERVFAIL_IP)))
            .a(&listed(DNSLIST_LISTED_IP), "127.0.0.2")
            .txt(&listed(DNSLIST_LISTED_IP), "listed")
            .a(&listed(DNSLIST_CODE10_IP), "127.0.0.10")
            .a(&listed(DNSLIST_ERROR_IP), "127.255.255.254")
            .timeout(DNSLIST_TIMEOUT_ZONE)
            .mx(MX_DOMAIN, 10, MX_HOST)
            .a(MX_HOST, MX_HOST_IP)
            .a(A_ONLY_DOMAIN, A_ONLY_IP)
            .txt(NODATA_DOMAIN, "v=spf1 -all")
            .nxdomain(NXDOMAIN_DOMAIN)
            .servfail(SERVFAIL_DOMAIN)
            .timeout(TIMEOUT_DOMAIN)
            .cname(CNAME_ALIAS, GOOD_NAME)
    }

    /// The `server:` lines for this zone, and the forward zones for the
    /// SERVFAIL names (to `dead`, where nothing listens).
    fn config_lines(&self, dead: SocketAddr) -> String {
        let mut text = String::new();
        text.push_str("  local-zone: \"example.test.\" static\n");
        let _ = writeln!(text, "  local-data: 'example.test. {TTL_SECS} IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 {NEGATIVE_TTL_SECS}'");
        for line in &self.data {
            let _ = writeln!(text, "  {line}");
        }
        for name in &self.nxdomain {
            let _ = writeln!(text, "  local-zone: \"{name}\" always_nxdomain");
        }
        for name in &self.timeout {
            let _ = writeln!(text, "  local-zone: \"{name}\" always_deny");
        }
        // A query must get out of the static zone above it to reach
        // the forward zone.
        for name in &self.servfail {
            let _ = writeln!(text, "  local-zone: \"{name}\" transparent");
        }
        for name in &self.servfail {
            let _ = write!(
                text,
                "forward-zone:\n  name: \"{name}\"\n  forward-addr: {}@{}\n",
                dead.ip(),
                dead.port()
            );
        }
        text
    }
}

/// "10.0.0.127" from "127.0.0.10".
pub fn reverse_v4(ip: &str) -> String {
    let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}")
}

/// How long unbound may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running unbound on 127.0.0.1 (UDP and TCP); killed on drop.
pub struct TestDns {
    addr: SocketAddr,
    dir: TempDir,
    child: Option<Child>,
}

impl TestDns {
    /// Writes the config for `zone`, starts unbound and waits until it
    /// answers a query. Panics with unbound's log if it does not.
    pub fn start(zone: &Zone) -> TestDns {
        let dir = TempDir::new("unbound");
        let (config, log) = (dir.path().join("unbound.conf"), dir.path().join("unbound.log"));
        let mut last_error = String::new();
        // A port free for TCP may still be taken for UDP: try a few.
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
            std::fs::write(&config, server_config(&dir, addr) + &zone.config_lines(dead)).expect("write unbound.conf");
            match spawn_unbound(&config, addr, &log) {
                Ok(child) => {
                    return TestDns {
                        addr,
                        dir,
                        child: Some(child),
                    }
                }
                Err(why) => last_error = format!("{why}\n--- unbound log ---\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
            }
        }
        panic!("unbound did not start: {last_error}");
    }

    /// `127.0.0.1:PORT`, for `--dns` and `[dns] servers`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills unbound (to show that answers come from a cache).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_and_wait(&mut child, libc::SIGKILL, Duration::from_secs(10));
        }
    }

    /// What unbound wrote (its log goes to stderr in the foreground).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("unbound.log")).unwrap_or_default()
    }
}

/// Runs `unbound -d -c CONFIG` with its output in `log` and waits until
/// it answers on `addr` over TCP and UDP; kills it if it does not.
pub(super) fn spawn_unbound(config: &Path, addr: SocketAddr, log: &Path) -> Result<Child, String> {
    let log = std::fs::File::create(log).map_err(|e| format!("create log: {e}"))?;
    let mut child = Command::new(program("unbound"))
        .arg("-d")
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn unbound: {e} (run `bash tests/run.sh`, it installs unbound)"))?;
    let ready = wait_listening(&mut child, addr.port(), START_TIMEOUT).and_then(|()| {
        // TCP listens; the resolver asks over UDP first: wait for that too.
        match wait_until(START_TIMEOUT, || answers_udp(addr)) {
            true => Ok(()),
            false => Err(format!("no UDP answer from {addr} after {START_TIMEOUT:?}")),
        }
    });
    match ready {
        Ok(()) => Ok(child),
        Err(why) => {
            signal_and_wait(&mut child, libc::SIGKILL, Duration::from_secs(10));
            Err(why)
        }
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- unbound log ({}) ---\n{}", self.addr, self.log());
        }
        self.stop();
    }
}

/// The fixed part of the config: foreground, loopback only, no privileges
/// dropped, no chroot, files in the temp dir, iterator only (no DNSSEC
/// validation, no trust anchor to fetch), no remote control.
fn server_config(dir: &TempDir, addr: SocketAddr) -> String {
    let home = dir.path().display();
    format!(
        "server:
  interface: {ip}
  port: {port}
  do-ip4: yes
  do-ip6: no
  do-udp: yes
  do-tcp: yes
  access-control: 127.0.0.0/8 allow
  username: \"\"
  chroot: \"\"
  directory: \"{home}\"
  pidfile: \"{home}/unbound.pid\"
  use-syslog: no
  logfile: \"\"
  verbosity: 1
  num-threads: 1
  so-reuseport: no
  module-config: \"iterator\"
  qname-minimisation: no
  do-not-query-localhost: no
  infra-cache-max-rtt: 300
remote-control:
  control-enable: no
server:
",
        ip = addr.ip(),
        port = addr.port(),
    )
}

/// Whether `addr` answers a UDP query for `localhost.` (one of unbound's
/// built-in zones) within a short wait.
fn answers_udp(addr: SocketAddr) -> bool {
    // A minimal query: id 0x7e57, RD, one question "localhost. A IN".
    let mut query = vec![0x7e, 0x57, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x09localhost\x00\x00\x01\x00\x01");
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else { return false };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    if socket.send_to(&query, addr).is_err() {
        return false;
    }
    let mut buffer = [0u8; 512];
    matches!(socket.recv_from(&mut buffer), Ok((n, from)) if from == addr && n >= 12 && buffer[..2] == [0x7e, 0x57])
}
