//! Call-ahead scenarios (issue 7) for the end-to-end batteries: one public
//! listener with a call-ahead profile in front of a downstream the test
//! starts (a real Postfix smtpd, smtp-sink, or the fake), and the ways a
//! test reads what happened: the client's replies, the `callahead` mail-log
//! line of each RCPT decision, the admin CLI and the metrics page.
//!
//! ```ignore
//! let pf = PostfixSmtpd::start(&["example.test"], &["known@example.test"]);
//! let ca = CallaheadSetup::new().route("example.test", &pf.host_port()).profile("validation_timeout_secs", "1").start();
//! assert_eq!(ca.rcpt("known@example.test").code, 250);
//! let line = ca.wait_decision("known@example.test", 1)[0].clone();
//! assert_eq!(line.field("source"), "probe");
//! ```
//!
//! The config (see `CallaheadSetup::render`): HAT 127.0.0.90 → RELAYED
//! (relay: no RAT, no call-ahead), 127.0.0.80 → HARVEST (DHAP threshold
//! set by the test), anyone else → OPEN (no per-IP limits, no DHAP). RAT:
//! `bypass@example.test` accepted with `bypass_callahead`, then the
//! test's domains accepted, anything else refused 550 "Relay access
//! denied". The profile is `[callahead.probe]` with the test's keys.

use super::admin::scrape;
use super::clients::{RawSmtp, Reply};
use super::config::ConfigFile;
use super::process::{free_port, is_listening, wait_until, CmdOutput};
use super::server::{run_portcullis, Portcullis, PortcullisBuilder};
use super::WAIT;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The RAT row with `bypass_callahead = true`.
pub const BYPASS_RCPT: &str = "bypass@example.test";
/// A client the HAT puts in RELAYED (relay policy: no call-ahead).
pub const RELAY_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 90);
/// A client the HAT puts in HARVEST (the test's DHAP threshold).
pub const HARVEST_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 80);
/// The default failure reply of a profile (CONFIG.md).
pub const FAILURE_CODE: u16 = 451;
pub const FAILURE_TEXT: &str = "Recipient validation failed, try again later";

/// Builds the config of one call-ahead scenario and starts `portcullis`.
#[derive(Clone)]
pub struct CallaheadSetup {
    domains: Vec<String>,
    routes: Vec<(String, Vec<String>)>,
    profile: Vec<(String, String)>,
    dhap_max_invalid: u32,
    cores: usize,
    dns: Option<SocketAddr>,
    /// More `key = value` lines of the listener (e.g. `ldap_routing`).
    listener_keys: Vec<(String, String)>,
    /// More TOML at the end (e.g. `[ldap.*]` tables).
    extra: String,
    /// The listener validates with `[callahead.probe]` (default true).
    callahead: bool,
}

impl Default for CallaheadSetup {
    fn default() -> Self {
        CallaheadSetup {
            domains: vec!["example.test".to_owned()],
            routes: Vec::new(),
            profile: Vec::new(),
            dhap_max_invalid: 0,
            cores: 1,
            dns: None,
            listener_keys: Vec::new(),
            extra: String::new(),
            callahead: true,
        }
    }
}

impl CallaheadSetup {
    pub fn new() -> Self {
        CallaheadSetup::default()
    }
    /// Another domain the RAT accepts (example.test always is).
    pub fn domain(mut self, domain: &str) -> Self {
        self.domains.push(domain.to_owned());
        self
    }
    /// `[routes] "DOMAIN" = ["HOST:PORT"]`.
    pub fn route(self, domain: &str, host: &str) -> Self {
        self.route_hosts(domain, &[host])
    }
    pub fn route_hosts(mut self, domain: &str, hosts: &[&str]) -> Self {
        self.routes.push((
            domain.to_owned(),
            hosts.iter().map(|h| h.to_string()).collect(),
        ));
        self
    }
    /// One key of `[callahead.probe]`, the value as TOML (`"\"warn\""`, `"1"`).
    pub fn profile(mut self, key: &str, toml_value: &str) -> Self {
        self.profile.push((key.to_owned(), toml_value.to_owned()));
        self
    }
    /// A string key of the profile (quoted for TOML here).
    pub fn profile_str(self, key: &str, value: &str) -> Self {
        self.profile(key, &format!("{value:?}"))
    }
    /// `server_type = "static"` with these servers, in order.
    pub fn static_servers(self, servers: &[&str]) -> Self {
        let list: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
        self.profile_str("server_type", "static")
            .profile("static_servers", &format!("[{}]", list.join(", ")))
    }
    /// `dhap_max_invalid_per_hour` of the HARVEST policy (127.0.0.80).
    pub fn dhap_max_invalid(mut self, n: u32) -> Self {
        self.dhap_max_invalid = n;
        self
    }
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = n;
        self
    }
    /// `--dns ADDR`: the test's DNS server, for routes naming hosts.
    pub fn dns(mut self, addr: SocketAddr) -> Self {
        self.dns = Some(addr);
        self
    }

    /// `key = value` (TOML) in the listener's table.
    pub fn listener_key(mut self, key: &str, toml_value: &str) -> Self {
        self.listener_keys.push((key.to_owned(), toml_value.to_owned()));
        self
    }
    /// TOML appended to the config (whole tables).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }
    /// The listener does no call-ahead (the profile is still defined).
    pub fn without_callahead(mut self) -> Self {
        self.callahead = false;
        self
    }

    pub fn render(&self, port: u16) -> String {
        let mut listener = String::new();
        if self.callahead {
            listener.push_str("callahead = \"probe\"\n");
        }
        for (key, value) in &self.listener_keys {
            listener.push_str(&format!("{key} = {value}\n"));
        }
        let mut text = format!(
            "[[listener]]\nname = \"inbound\"\naddress = \"127.0.0.1:{port}\"\ntype = \"public\"\n\
             hat = \"inbound\"\nrat = \"inbound\"\n{listener}\n\
             [[hat.inbound]]\ngroup = \"RELAYERS\"\nsenders = [\"{RELAY_CLIENT}\"]\npolicy = \"RELAYED\"\n\n\
             [[hat.inbound]]\ngroup = \"HARVESTERS\"\nsenders = [\"{HARVEST_CLIENT}\"]\npolicy = \"HARVEST\"\n\n\
             [[hat.inbound]]\ngroup = \"ALL\"\nsenders = [\"ALL\"]\npolicy = \"OPEN\"\n\n\
             [default_policy]\nmax_concurrent_connections_per_ip = 0\nmax_recipients_per_message = 1000\n\
             max_messages_per_connection = 1000\ndhap_max_invalid_per_hour = 0\n\n\
             [policy.OPEN]\ndhap_max_invalid_per_hour = 0\n\n\
             [policy.HARVEST]\ndhap_max_invalid_per_hour = {}\ndhap_drop_connection = false\n\n\
             [[rat.inbound]]\nrecipient = \"{BYPASS_RCPT}\"\naction = \"accept\"\nbypass_callahead = true\n\n",
            self.dhap_max_invalid
        );
        for domain in &self.domains {
            text.push_str(&format!(
                "[[rat.inbound]]\nrecipient = {domain:?}\naction = \"accept\"\n\n"
            ));
        }
        text.push_str(
            "[[rat.inbound]]\nrecipient = \"ALL\"\naction = \"reject\"\ncode = 550\ntext = \"Relay access denied\"\n\n[routes]\n",
        );
        if self.routes.is_empty() {
            // Static servers need no route, but delivery does (check-config
            // wants one for every relay domain): a port nobody listens on.
            let dead = format!("127.0.0.1:{}", free_port());
            text.push_str(&format!("\"*\" = [{dead:?}]\n"));
        }
        for (domain, hosts) in &self.routes {
            let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
            text.push_str(&format!("{domain:?} = [{}]\n", hosts.join(", ")));
        }
        text.push_str("\n[callahead.probe]\n");
        for (key, value) in &self.profile {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text.push('\n');
        text.push_str(&self.extra);
        text
    }

    /// Starts `portcullis` with this config, an admin listener, and waits
    /// until every shard serves.
    pub fn start(self) -> Callahead {
        let port = free_port();
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let file = ConfigFile::with_text(&self.render(port));
        let mut builder: PortcullisBuilder = Portcullis::builder()
            .listeners_file(&file, port)
            .routes_from_config()
            .cores(self.cores)
            .admin_listen(&admin.to_string());
        if let Some(dns) = self.dns {
            builder = builder.dns(dns);
        }
        let server = builder.start();
        server.wait_every_shard_serving(self.cores, WAIT);
        assert!(
            wait_until(WAIT, || is_listening(admin.port())),
            "admin port\n{}",
            server.log()
        );
        Callahead {
            server,
            admin,
            _file: file,
        }
    }
}

/// A running call-ahead scenario.
pub struct Callahead {
    pub server: Portcullis,
    pub admin: SocketAddr,
    _file: ConfigFile,
}

impl Callahead {
    /// A session from 127.0.0.1 after EHLO and `MAIL FROM:<s@client.test>`.
    pub fn session(&self) -> RawSmtp {
        self.session_from(Ipv4Addr::LOCALHOST)
    }
    pub fn session_from(&self, source: Ipv4Addr) -> RawSmtp {
        let (mut raw, greeting) = RawSmtp::connect_from(self.server.addr(), source)
            .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
        assert_eq!(greeting.code, 220, "{greeting:?}");
        assert_eq!(raw.cmd("EHLO client.test").unwrap().code, 250);
        let mail = raw.cmd("MAIL FROM:<s@client.test>").unwrap();
        assert_eq!(mail.code, 250, "{mail:?}");
        raw
    }
    /// One RCPT in a fresh session (then QUIT); the reply.
    pub fn rcpt(&self, rcpt: &str) -> Reply {
        let mut raw = self.session();
        let reply = raw
            .cmd(&format!("RCPT TO:<{rcpt}>"))
            .unwrap_or_else(|e| panic!("RCPT {rcpt}: {e}\n{}", self.server.log()));
        let _ = raw.cmd("QUIT");
        reply
    }

    /// The `callahead` decision lines of `rcpt`, in log order.
    pub fn decisions(&self, rcpt: &str) -> Vec<Decision> {
        self.server
            .event_lines("callahead")
            .into_iter()
            .map(Decision)
            .filter(|d| d.rcpt().eq_ignore_ascii_case(rcpt))
            .collect()
    }
    /// Waits until `rcpt` has at least `n` decision lines (the log is
    /// buffered); panics with the log after [`WAIT`].
    pub fn wait_decision(&self, rcpt: &str, n: usize) -> Vec<Decision> {
        let mut got = Vec::new();
        if wait_until(WAIT, || {
            got = self.decisions(rcpt);
            got.len() >= n
        }) {
            return got;
        }
        panic!(
            "{} of {n} callahead lines for {rcpt}\n{}",
            got.len(),
            self.server.log()
        );
    }
    /// Every `callahead` line.
    pub fn all_decisions(&self) -> Vec<Decision> {
        self.server
            .event_lines("callahead")
            .into_iter()
            .map(Decision)
            .collect()
    }

    /// `portcullis callahead ARGS --admin ADDR`.
    pub fn cli(&self, args: &[&str]) -> CmdOutput {
        let admin = self.admin.to_string();
        let mut argv = vec!["callahead"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--admin", &admin]);
        run_portcullis(&argv, Duration::from_secs(30))
    }
    /// The metrics page.
    pub fn metrics(&self) -> String {
        scrape(self.admin)
    }
}

/// One `callahead` mail-log line: `… callahead conn=N … rcpt=<addr>
/// source=… verdict=… action=… server=… reply="…" ms=N`.
#[derive(Clone, Debug)]
pub struct Decision(pub String);

impl Decision {
    /// The value of `name=` (first word after it; `<>` kept), "" if absent.
    pub fn field(&self, name: &str) -> String {
        let prefix = format!("{name}=");
        self.0
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix.as_str()))
            .unwrap_or("")
            .to_owned()
    }
    /// The recipient without angle brackets.
    pub fn rcpt(&self) -> String {
        self.field("rcpt")
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned()
    }
    /// The quoted downstream reply (`reply="…"`), "" if absent.
    pub fn reply(&self) -> String {
        match self.0.split_once("reply=\"") {
            Some((_, rest)) => quoted_prefix(rest),
            None => String::new(),
        }
    }
    /// The quoted fault (`why="…"`), "" if absent or empty.
    pub fn why(&self) -> String {
        let Some((_, rest)) = self.0.split_once("why=\"") else {
            return String::new();
        };
        quoted_prefix(rest)
    }
    /// The decision's wait in milliseconds (the log has microsecond precision).
    pub fn ms(&self) -> f64 {
        self.field("ms").parse().unwrap_or(f64::MAX)
    }
}

/// The value of metric `name` whose labels include every `label="value"`
/// pair given, in any order (None if no such series).
pub fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.trim().parse().ok())
}

/// The text up to the closing quote of a value the log wrote with
/// `escape_debug` (an escaped `\"` inside does not close it).
fn quoted_prefix(rest: &str) -> String {
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' if !escaped => return rest[..i].to_owned(),
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
    }
    rest.to_owned()
}
