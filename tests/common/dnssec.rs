//! A DNSSEC-validating resolver for the DANE tests: one `unbound` on
//! 127.0.0.1:<free port> that serves two zones from files (auth-zone,
//! `for-upstream`: its iterator reads them as if from their authoritative
//! servers) and validates them (`module-config: "validator iterator"`),
//! with the test zone's own key as its only trust anchor. Portcullis asks
//! it like any recursive resolver and sees AD=1 for names of the signed
//! zone. Keys are made and the zone signed at test time with ldnsutils
//! (`ldns-keygen`, `ldns-signzone`; installed by run.sh).
//!
//! The world it serves (`SIGNED_ZONE` is signed, `UNSIGNED_ZONE` is not):
//!
//! | name                         | answers                                            |
//! |------------------------------|----------------------------------------------------|
//! | dane.example MX              | 10 mx.dane.example (secure)                        |
//! | mx.dane.example A            | 127.0.0.1 (secure)                                 |
//! | _25._tcp.mx.dane.example     | the TLSA records the test gives (secure)           |
//! | nodane.dane.example A        | 127.0.0.1, no TLSA: secure NODATA for TLSA         |
//! | _25._tcp.bogus.dane.example  | TLSA whose data was changed after signing: bogus, SERVFAIL |
//! | plain.example MX             | 10 mx.plain.example (insecure: no trust anchor)    |
//! | _25._tcp.mx.plain.example    | the same TLSA records, unsigned (insecure)         |

use super::process::{free_port, program, run_with_timeout, signal_and_wait, TempDir};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

pub const SIGNED_ZONE: &str = "dane.example";
pub const SIGNED_MX: &str = "mx.dane.example";
pub const NO_TLSA_HOST: &str = "nodane.dane.example";
pub const BOGUS_HOST: &str = "bogus.dane.example";
pub const UNSIGNED_ZONE: &str = "plain.example";
pub const UNSIGNED_MX: &str = "mx.plain.example";
/// Where every host of both zones points.
pub const HOST_IP: &str = "127.0.0.1";

const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// The TLSA record of `BOGUS_HOST` as signed, and what it becomes after.
const SIGNED_BOGUS_TLSA: &str =
    "3 1 1 1111111111111111111111111111111111111111111111111111111111111111";
const TAMPERED_BOGUS_TLSA: &str =
    "3 1 1 3333333333333333333333333333333333333333333333333333333333333333";

pub struct SignedDns {
    addr: SocketAddr,
    dir: TempDir,
    child: Option<Child>,
}

impl SignedDns {
    /// Signs the zones with `tlsa` (presentation form, "3 1 1 ab…") at
    /// `_25._tcp` of both MX hosts and starts the validating unbound.
    pub fn start(tlsa: &[String]) -> SignedDns {
        SignedDns::start_at(tlsa, HOST_IP)
    }

    /// `start`, with every host of both zones at `host_ip` instead of
    /// `HOST_IP` (delivery by MX connects to port 25 there: a test that
    /// runs a server on 127.0.0.x:25 keeps clear of other tests).
    pub fn start_at(tlsa: &[String], host_ip: &str) -> SignedDns {
        let dir = TempDir::new("unbound-dnssec");
        let key = ldns(
            dir.path(),
            "ldns-keygen",
            &["-a", "ECDSAP256SHA256", "-k", SIGNED_ZONE],
        );
        let key = key.trim().to_owned();
        std::fs::write(dir.path().join("signed.zone"), signed_zone_text(tlsa, host_ip)).expect("write zone");
        std::fs::write(dir.path().join("unsigned.zone"), unsigned_zone_text(tlsa, host_ip))
            .expect("write zone");
        ldns(
            dir.path(),
            "ldns-signzone",
            &["-f", "signed.zone.signed", "signed.zone", &key],
        );
        tamper(&dir.path().join("signed.zone.signed"));
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = dir.path().join("unbound.conf");
        std::fs::write(
            &config,
            unbound_config(dir.path(), addr, &format!("{key}.key")),
        )
        .expect("write unbound.conf");
        let child = spawn(&config, addr, &dir.path().join("unbound.log"));
        SignedDns {
            addr,
            dir,
            child: Some(child),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("unbound.log")).unwrap_or_default()
    }
}

impl Drop for SignedDns {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- validating unbound log ({}) ---\n{}",
                self.addr,
                self.log()
            );
        }
        if let Some(mut child) = self.child.take() {
            signal_and_wait(&mut child, libc::SIGKILL, Duration::from_secs(10));
        }
    }
}

fn signed_zone_text(tlsa: &[String], host_ip: &str) -> String {
    let mut zone = format!(
        "$ORIGIN {SIGNED_ZONE}.\n$TTL 300\n\
         @ IN SOA ns.{SIGNED_ZONE}. admin.{SIGNED_ZONE}. 1 3600 600 86400 60\n\
         @ IN NS ns.{SIGNED_ZONE}.\nns IN A {host_ip}\n\
         @ IN MX 10 {SIGNED_MX}.\nmx IN A {host_ip}\n\
         nodane IN A {host_ip}\n\
         bogus IN A {host_ip}\n_25._tcp.bogus IN TLSA {SIGNED_BOGUS_TLSA}\n"
    );
    for record in tlsa {
        zone.push_str(&format!("_25._tcp.mx IN TLSA {record}\n"));
    }
    zone
}

fn unsigned_zone_text(tlsa: &[String], host_ip: &str) -> String {
    let mut zone = format!(
        "$ORIGIN {UNSIGNED_ZONE}.\n$TTL 300\n\
         @ IN SOA ns.{UNSIGNED_ZONE}. admin.{UNSIGNED_ZONE}. 1 3600 600 86400 60\n\
         @ IN NS ns.{UNSIGNED_ZONE}.\nns IN A {host_ip}\n\
         @ IN MX 10 {UNSIGNED_MX}.\nmx IN A {host_ip}\n"
    );
    for record in tlsa {
        zone.push_str(&format!("_25._tcp.mx IN TLSA {record}\n"));
    }
    zone
}

/// Changes the bogus host's TLSA data after signing: its RRSIG no longer
/// matches, which a validator calls bogus (RFC 4035 §5.5: SERVFAIL).
fn tamper(signed: &Path) {
    let text = std::fs::read_to_string(signed).expect("read signed zone");
    let signed_tlsa = format!("TLSA\t{SIGNED_BOGUS_TLSA}");
    assert_eq!(
        text.matches(&signed_tlsa).count(),
        1,
        "ldns-signzone's output changed form:\n{text}"
    );
    let tampered = text.replace(&signed_tlsa, &format!("TLSA\t{TAMPERED_BOGUS_TLSA}"));
    std::fs::write(signed, tampered).expect("write tampered zone");
}

/// Runs an ldnsutils tool in `dir`; its standard output.
fn ldns(dir: &Path, tool: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program(tool));
    cmd.current_dir(dir).args(args);
    let out = run_with_timeout(&mut cmd, TOOL_TIMEOUT);
    assert!(
        out.success(),
        "{tool} {args:?} failed (run.sh installs ldnsutils): {}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Validator over the iterator; the two zones as auth-zones the iterator
/// reads instead of asking the network; one trust anchor, the signed
/// zone's key. Foreground, loopback only, no privileges dropped.
fn unbound_config(dir: &Path, addr: SocketAddr, key_file: &str) -> String {
    let home = dir.display();
    let zone = |name: &str, file: &str| {
        format!(
            "auth-zone:\n  name: \"{name}.\"\n  zonefile: \"{home}/{file}\"\n  for-downstream: no\n  for-upstream: yes\n  fallback-enabled: no\n"
        )
    };
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
  val-log-level: 2
  num-threads: 1
  so-reuseport: no
  module-config: \"validator iterator\"
  qname-minimisation: no
  trust-anchor-file: \"{home}/{key_file}\"
remote-control:
  control-enable: no
{signed}{unsigned}",
        ip = addr.ip(),
        port = addr.port(),
        signed = zone(SIGNED_ZONE, "signed.zone.signed"),
        unsigned = zone(UNSIGNED_ZONE, "unsigned.zone"),
    )
}

/// `unbound -d -c CONFIG`, ready when it answers over TCP and UDP (the
/// test DNS harness's start, `dns::spawn_unbound`); panics with its log.
fn spawn(config: &Path, addr: SocketAddr, log: &Path) -> Child {
    super::dns::spawn_unbound(config, addr, log).unwrap_or_else(|why| {
        panic!("validating unbound did not start: {why}\n{}", std::fs::read_to_string(log).unwrap_or_default())
    })
}
