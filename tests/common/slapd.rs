//! A real LDAP server for the tests: OpenLDAP's `slapd` on
//! 127.0.0.1:<free port>, run in the foreground (`slapd -d 0 -f FILE`)
//! from a config generated into a temp dir, killed when the handle drops.
//! The LDAP routing and accept queries (issue 8) and the LDAP client thread
//! (`portcullis::ldap::client`) are tested against it.
//!
//! ```ignore
//! let ldap = Slapd::start();
//! ldap.add(&route_entry("cisco.example.test", "smtp.mydomain.example.test", Some("…")));
//! let toml = ldap.server_toml("LDAP1");   // [ldap.server.LDAP1] urls/bind_dn/bind_password_file/base
//! ldap.kill();                            // connections refused from now on
//! ldap.restart();                         // same port, same data
//! ```
//!
//! What it serves (slapd 2.5, checked against the binary):
//! - one mdb database under [`BASE`] with `ou=domains` and `ou=people`,
//!   loaded with `slapadd` before the first start; the data directory
//!   survives [`Slapd::kill`] and [`Slapd::restart`].
//! - schemas core, cosine, inetorgperson and [`SCHEMA`]: `mailHost`,
//!   `callAhead`, `mailRoutingAddress`, `mailAlternateAddress` and the
//!   structural class `portcullisMailRoute` (private OIDs under
//!   1.3.6.1.4.1.99999), so the seed's example entry can be stored.
//! - the bind user [`BIND_DN`] (a `simpleSecurityObject` with a clear-text
//!   `userPassword`) reads everything; anonymous may bind (to authenticate)
//!   but reads nothing, so a query that forgot to bind finds nothing
//!   (slapd hides the base: noSuchObject, result 32). The rootdn
//!   [`ROOT_DN`] writes (`add`, `modify`), bypassing the ACLs.
//! - with [`Slapd::start_tls`], also `ldaps://` on a second port and
//!   StartTLS on the first, with a server certificate for 127.0.0.1 and
//!   `localhost` signed by a test CA made with the `openssl` CLI
//!   ([`Slapd::ca_file`]).
//!
//! Needs `slapd` and `ldap-utils` (installed by `tests/run.sh`).

use super::process::{
    free_port, program, run_with_timeout, signal_and_wait, wait_listening, CmdOutput, TempDir,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The suffix of the test directory.
pub const BASE: &str = "dc=example,dc=com";
/// The entry the queries bind as (CONFIG.md's example `bind_dn`).
pub const BIND_DN: &str = "cn=portcullis,dc=example,dc=com";
pub const BIND_PASSWORD: &str = "portcullis-test-secret";
/// The rootdn: writes, ACLs do not apply to it. Only the harness uses it.
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
const ROOT_PASSWORD: &str = "admin-test-secret";
/// Where the routing entries live (CONFIG.md's example `base`).
pub const DOMAINS: &str = "ou=domains,dc=example,dc=com";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";

/// How long slapd may take to open its database and listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `slapadd`, `ldapadd`, `ldapmodify`, `ldapsearch` and `openssl`
/// may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// The attributes and the class of a mail route, as a site's own schema
/// would define them: IA5 strings compared without case, with substring
/// matching (for `mailAlternateAddress=*@domain` style filters).
/// The file is shared with the LDAP benchmark (`benches/lib.sh`), so an
/// entry written for the tests loads there too.
pub const SCHEMA: &str = include_str!("../slapd/portcullis.schema");

/// The seed's example routing entry for `domain` under `ou=domains`:
/// `mail: DOMAIN`, `mailHost`, and `callAhead` when given.
pub fn route_entry(domain: &str, mail_host: &str, call_ahead: Option<&str>) -> String {
    let mut ldif = format!(
        "dn: mail={domain},{DOMAINS}\nobjectClass: portcullisMailRoute\nmail: {domain}\nmailHost: {mail_host}\n"
    );
    if let Some(hosts) = call_ahead {
        ldif.push_str(&format!("callAhead: {hosts}\n"));
    }
    ldif
}

/// Where the TLS listener and its certificates are, when started with TLS.
struct Tls {
    ldaps_port: u16,
    ca_file: PathBuf,
}

/// A running slapd on 127.0.0.1; killed on drop.
pub struct Slapd {
    dir: TempDir,
    port: u16,
    tls: Option<Tls>,
    child: Option<Child>,
}

impl Slapd {
    /// Writes the config and the base entries, starts slapd and waits
    /// until it listens. Panics with slapd's output if it does not.
    pub fn start() -> Slapd {
        Slapd::launch(false)
    }

    /// Like [`Slapd::start`], plus StartTLS on [`Slapd::url`] and
    /// `ldaps://` on [`Slapd::ldaps_url`], with a certificate signed by
    /// the CA in [`Slapd::ca_file`].
    pub fn start_tls() -> Slapd {
        Slapd::launch(true)
    }

    fn launch(with_tls: bool) -> Slapd {
        let dir = TempDir::new("slapd");
        let tls = with_tls.then(|| Tls {
            ldaps_port: free_port(),
            ca_file: super::certs::TestPki::new(dir.path(), &[]).ca(),
        });
        let mut slapd = Slapd {
            port: free_port(),
            tls,
            child: None,
            dir,
        };
        std::fs::write(slapd.config_path(), slapd.config()).expect("write slapd.conf");
        std::fs::write(slapd.dir.path().join("portcullis.schema"), SCHEMA).expect("write schema");
        std::fs::write(slapd.password_file(), BIND_PASSWORD).expect("write bind password");
        slapd.load_base_entries();
        slapd.spawn();
        slapd
    }

    /// `ldap://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ldaps://127.0.0.1:PORT/` (only with [`Slapd::start_tls`]).
    pub fn ldaps_url(&self) -> String {
        let tls = self.tls.as_ref().expect("Slapd::start_tls");
        format!("ldaps://127.0.0.1:{}/", tls.ldaps_port)
    }

    /// The PEM file of the CA that signed slapd's certificate (only with
    /// [`Slapd::start_tls`]): a client's `ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("Slapd::start_tls").ca_file.clone()
    }

    pub fn bind_dn(&self) -> &str {
        BIND_DN
    }

    /// A file holding the bind password and nothing else (no newline).
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("bind.pw")
    }

    pub fn base(&self) -> &str {
        BASE
    }

    /// The `[ldap.server.NAME]` block for this slapd (CONFIG.md's keys).
    pub fn server_toml(&self, name: &str) -> String {
        format!(
            "[ldap.server.{name}]\nurls = [\"{url}\"]\nbind_dn = \"{BIND_DN}\"\nbind_password_file = \"{pw}\"\nbase = \"{BASE}\"\n",
            url = self.url(),
            pw = self.password_file().display(),
        )
    }

    /// Adds entries as the rootdn; panics with slapd's message on error.
    pub fn add(&self, ldif: &str) {
        self.write_as_root("ldapadd", ldif);
    }

    /// Applies an LDIF change record (`changetype: modify` …) as the
    /// rootdn; panics with slapd's message on error.
    pub fn modify(&self, ldif: &str) {
        self.write_as_root("ldapmodify", ldif);
    }

    /// `ldapsearch` under [`BASE`] for `filter`, bound as [`BIND_DN`] or
    /// anonymous; the LDIF it prints is in `stdout`.
    pub fn search(&self, bound: bool, filter: &str) -> CmdOutput {
        let mut cmd = Command::new(program("ldapsearch"));
        cmd.args(["-x", "-LLL", "-H", &self.url(), "-b", BASE]);
        if bound {
            cmd.arg("-D")
                .arg(BIND_DN)
                .arg("-y")
                .arg(self.password_file());
        }
        cmd.arg(filter);
        run_with_timeout(&mut cmd, TOOL_TIMEOUT)
    }

    /// SIGKILL, and waits for it: connections are refused from now on.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_and_wait(&mut child, libc::SIGKILL, Duration::from_secs(10));
        }
    }

    /// Kills slapd if it runs and starts it again on the same port(s)
    /// with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// What slapd wrote (stderr and stdout, in the foreground).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("slapd.conf")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The slapd.conf: foreground daemon files in the temp dir, the
    /// schemas, the ACLs of the module doc, one mdb database.
    fn config(&self) -> String {
        let home = self.dir.path().display();
        let tls = match &self.tls {
            Some(_) => format!(
                "TLSCACertificateFile {home}/ca.pem\nTLSCertificateFile {home}/server.pem\nTLSCertificateKeyFile {home}/server.key\n"
            ),
            None => String::new(),
        };
        std::fs::create_dir_all(self.data_dir()).expect("mkdir slapd data");
        format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {home}/portcullis.schema
pidfile {home}/slapd.pid
argsfile {home}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
{tls}
database mdb
maxsize 16777216
suffix \"{BASE}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PASSWORD}
directory {data}
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact=\"{BIND_DN}\" read
  by * none
",
            data = self.data_dir().display(),
        )
    }

    /// The suffix, `ou=domains`, `ou=people` and the bind user, loaded
    /// offline with `slapadd` (before the first start).
    fn load_base_entries(&self) {
        let ldif = format!(
            "dn: {BASE}
objectClass: dcObject
objectClass: organization
dc: example
o: Portcullis test directory

dn: {DOMAINS}
objectClass: organizationalUnit
ou: domains

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {BIND_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: portcullis
userPassword: {BIND_PASSWORD}
"
        );
        let file = self.dir.path().join("base.ldif");
        std::fs::write(&file, ldif).expect("write base.ldif");
        let mut cmd = Command::new(program("slapadd"));
        cmd.arg("-f").arg(self.config_path()).arg("-l").arg(&file);
        let out = run_with_timeout(&mut cmd, TOOL_TIMEOUT);
        assert!(
            out.success(),
            "slapadd failed: {}{}",
            out.stdout,
            out.stderr
        );
    }

    /// Starts `slapd -d 0` (foreground, no debug output) on the URLs and
    /// waits until every one listens.
    fn spawn(&mut self) {
        let log =
            std::fs::File::create(self.dir.path().join("slapd.log")).expect("create slapd.log");
        let mut urls = self.url();
        if let Some(tls) = &self.tls {
            urls.push_str(&format!(" ldaps://127.0.0.1:{}/", tls.ldaps_port));
        }
        let mut child = Command::new(program("slapd"))
            .args(["-d", "0", "-h", &urls, "-f"])
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn slapd: {e} (run `bash tests/run.sh`, it installs slapd)")
            });
        let ports = std::iter::once(self.port).chain(self.tls.as_ref().map(|t| t.ldaps_port));
        for port in ports {
            if let Err(why) = wait_listening(&mut child, port, START_TIMEOUT) {
                signal_and_wait(&mut child, libc::SIGKILL, Duration::from_secs(10));
                panic!("slapd {why}\n--- slapd log ---\n{}", self.log());
            }
        }
        self.child = Some(child);
    }

    fn write_as_root(&self, tool: &str, ldif: &str) {
        let file = self.dir.path().join("change.ldif");
        std::fs::write(&file, ldif).expect("write change.ldif");
        let mut cmd = Command::new(program(tool));
        cmd.args([
            "-x",
            "-H",
            &self.url(),
            "-D",
            ROOT_DN,
            "-w",
            ROOT_PASSWORD,
            "-f",
        ])
        .arg(&file);
        let out = run_with_timeout(&mut cmd, TOOL_TIMEOUT);
        assert!(
            out.success(),
            "{tool} failed: {}{}\n--- LDIF ---\n{ldif}",
            out.stdout,
            out.stderr
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- slapd log ({}) ---\n{}", self.url(), self.log());
        }
        self.kill();
    }
}

