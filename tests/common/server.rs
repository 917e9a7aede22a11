//! The `portcullis` binary under test, as a child process.
//!
//! `Portcullis::builder().route("*", &sink).start()` runs
//! `portcullis run --listen 127.0.0.1:PORT --spool-dir TMP/spool
//!  --hostname portcullis.test --route *=127.0.0.1:SINKPORT ...` with stderr
//! (the mail log and any panic) going to `TMP/portcullis.log`, and returns
//! once the port is in LISTEN state. The handle can SIGTERM it, `kill -9`
//! it, and restart it on the same spool and port.

use super::process::{free_port, signal_and_wait, wait_listening, wait_until, TempDir};
use super::sink::Sink;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The binary Cargo built for this test run (release under
/// `cargo test --release`).
pub fn portcullis_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// How long start-up may take before the test fails. Spool recovery after
/// a `kill -9` under load is part of start-up, hence not tiny.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Command line for one `portcullis run`.
#[derive(Clone)]
pub struct PortcullisBuilder {
    program: PathBuf,
    port: Option<u16>,
    spool_dir: Option<PathBuf>,
    routes: Vec<String>,
    /// No `--route` flag at all: the routes come from the config file.
    routes_from_config: bool,
    /// No `--listen`: the config file's `[[listener]]` tables bind (the
    /// test puts `port` in the first one's address).
    listeners_from_config: bool,
    /// `--admin-listen`; off unless asked for (tests run side by side).
    admin_listen: String,
    args: Vec<String>,
}

impl Default for PortcullisBuilder {
    fn default() -> Self {
        PortcullisBuilder {
            program: portcullis_bin(),
            port: None,
            spool_dir: None,
            routes: Vec::new(),
            routes_from_config: false,
            listeners_from_config: false,
            admin_listen: String::new(),
            args: Vec::new(),
        }
    }
}

impl PortcullisBuilder {
    /// Listen on this port instead of a fresh free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Use this spool dir instead of a fresh one under the test's temp dir.
    pub fn spool_dir(mut self, dir: &Path) -> Self {
        self.spool_dir = Some(dir.to_owned());
        self
    }
    /// `--route DOMAIN=127.0.0.1:SINKPORT` (`"*"` is the default route).
    pub fn route(self, domain: &str, sink: &Sink) -> Self {
        let hosts = sink.host_port();
        self.route_hosts(domain, &[hosts.as_str()])
    }
    /// `--route DOMAIN=HOST:PORT,HOST:PORT`.
    pub fn route_hosts(mut self, domain: &str, hosts: &[&str]) -> Self {
        self.routes.push(format!("{domain}={}", hosts.join(",")));
        self
    }
    /// `--relay-domain DOMAIN` (repeatable; the binary's default is
    /// example.test when none is given).
    pub fn relay_domain(self, domain: &str) -> Self {
        self.arg("--relay-domain").arg(domain)
    }
    /// Pass no `--route` (not even the harness's default route to a dead
    /// port): the config file's `[routes]` are the routes, and a reload
    /// can change them (a flag would override the file).
    pub fn routes_from_config(mut self) -> Self {
        self.routes_from_config = true;
        self
    }
    /// Pass no `--listen`: the config's `[[listener]]` tables are the
    /// listeners; the port (`.port(p)`) must be in one of them, the harness
    /// waits for it.
    pub fn listeners_from_config(mut self) -> Self {
        self.listeners_from_config = true;
        self
    }
    /// `--config FILE`, whose `[[listener]]` tables bind `port` (no
    /// `--listen`; the harness waits for that port).
    pub fn listeners_file(self, file: &super::config::ConfigFile, port: u16) -> Self {
        self.config(file.path()).listeners_from_config().port(port)
    }
    /// `--admin-listen ADDR` (the harness passes "" = off otherwise).
    pub fn admin_listen(mut self, addr: &str) -> Self {
        self.admin_listen = addr.to_owned();
        self
    }
    /// `--dns ADDR` (repeatable): the test's own DNS server.
    pub fn dns(self, addr: SocketAddr) -> Self {
        self.arg("--dns").arg(&addr.to_string())
    }
    pub fn cores(self, n: usize) -> Self {
        self.arg("--cores").arg(&n.to_string())
    }
    pub fn config(self, file: &Path) -> Self {
        self.arg("--config").arg(&file.display().to_string())
    }
    /// Delivery retry schedule: first delay and cap, in seconds.
    pub fn retry_secs(self, first: u64, max: u64) -> Self {
        self.arg("--retry-first-secs")
            .arg(&first.to_string())
            .arg("--retry-max-secs")
            .arg(&max.to_string())
    }
    /// Any other flag, verbatim, e.g. `.arg("--max-connections").arg("5")`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }
    /// Run another program with the same flags (harness self-tests).
    pub fn program(mut self, program: &Path) -> Self {
        self.program = program.to_owned();
        self
    }

    /// Starts it and waits until it listens; panics with its log if not.
    pub fn start(self) -> Portcullis {
        match self.try_start() {
            Ok(server) => server,
            Err((reason, log)) => panic!("portcullis {reason}\n--- portcullis log ---\n{log}"),
        }
    }

    /// Like `start`, but returns `Err((reason, log))` when it exits or does
    /// not listen in time, for tests that expect a refusal to start.
    pub fn try_start(self) -> Result<Portcullis, (String, String)> {
        let dir = TempDir::new("portcullis");
        let port = self.port.unwrap_or_else(free_port);
        let spool_dir = self
            .spool_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("spool"));
        // Without a route the binary would relay to its default
        // 127.0.0.1:2526, which some other test may own; point it at a port
        // nobody listens on instead ("downstream down").
        let mut routes = self.routes.clone();
        if routes.is_empty() && !self.routes_from_config {
            routes.push(format!("*=127.0.0.1:{}", free_port()));
        }
        let mut server = Portcullis {
            builder: PortcullisBuilder { routes, ..self },
            port,
            spool_dir,
            log_path: dir.path().join("portcullis.log"),
            dir,
            child: None,
        };
        match server.spawn() {
            Ok(()) => Ok(server),
            Err(reason) => Err((reason, server.log())),
        }
    }
}

/// A running `portcullis`; killed (SIGKILL) on drop. When the test is
/// panicking, the drop prints the tail of its log.
pub struct Portcullis {
    builder: PortcullisBuilder,
    port: u16,
    spool_dir: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
    child: Option<Child>,
}

impl Portcullis {
    pub fn builder() -> PortcullisBuilder {
        PortcullisBuilder::default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }
    /// The test's temp dir (holds the log, the spool, config files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The full command line, for messages.
    pub fn command_line(&self) -> Vec<String> {
        let b = &self.builder;
        let mut argv = vec!["run".to_owned()];
        if !b.listeners_from_config {
            argv.push("--listen".to_owned());
            argv.push(format!("127.0.0.1:{}", self.port));
        }
        argv.extend([
            "--admin-listen".to_owned(),
            b.admin_listen.clone(),
            "--spool-dir".to_owned(),
            self.spool_dir.display().to_string(),
            "--hostname".to_owned(),
            "portcullis.test".to_owned(),
        ]);
        for route in &b.routes {
            argv.push("--route".to_owned());
            argv.push(route.clone());
        }
        argv.extend(b.args.iter().cloned());
        argv
    }

    fn spawn(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.spool_dir).map_err(|e| format!("mkdir spool: {e}"))?;
        // Append, so the log of a run before a restart stays readable.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open log: {e}"))?;
        let mut child = Command::new(&self.builder.program)
            .args(self.command_line())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.builder.program.display()))?;
        let ready = wait_listening(&mut child, self.port, START_TIMEOUT);
        self.child = Some(child);
        if ready.is_err() {
            self.kill9();
        }
        ready
    }

    /// Graceful stop: SIGTERM, then wait up to `grace` (after which it is
    /// killed). Returns the exit status so a test can assert a clean exit.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        Some(signal_and_wait(&mut child, libc::SIGTERM, grace))
    }

    /// Sends SIGTERM without waiting (to test what happens during the
    /// shutdown grace period); `wait_exit` collects the status.
    pub fn sigterm(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // SAFETY: pid of our own unreaped child, see signal_and_wait.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// `kill -9`: no chance to flush or clean up (crash durability tests).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_and_wait(&mut child, libc::SIGKILL, Duration::from_secs(10));
        }
    }

    /// Starts it again with the same flags, port and spool dir; the old
    /// process is killed first if it still runs. Panics with the log if it
    /// does not come up.
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(reason) = self.spawn() {
            panic!(
                "portcullis restart: {reason}\n--- portcullis log ---\n{}",
                self.log()
            );
        }
    }

    /// Everything it wrote to stderr so far (mail log, warnings, panics).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Log lines containing `needle` (e.g. "queued", "delivered").
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Lines of one mail-log event (the word after `shard=N`), e.g.
    /// "queued" — not the command lines whose reply says "queued as".
    pub fn event_lines(&self, event: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(event))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until at least `n` log lines contain `needle`; returns them.
    /// Panics after `timeout` with the log.
    pub fn wait_for_log(&self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        if wait_until(timeout, || {
            lines = self.log_lines(needle);
            lines.len() >= n
        }) {
            return lines;
        }
        panic!(
            "portcullis log: {} of {n} lines with {needle:?} after {timeout:?}\n{}",
            lines.len(),
            self.log()
        );
    }

    /// Files below the spool dir (recursively), for durability checks.
    pub fn spool_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut dirs = vec![self.spool_dir.clone()];
        // Bounded: a spool deeper than this is a bug in itself.
        for _ in 0..10_000 {
            let Some(dir) = dirs.pop() else { break };
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- last lines of portcullis log {} ---",
                self.log_path.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Runs the binary with `args` to completion (e.g. `["check-config", f]`),
/// killed at `timeout`.
pub fn run_portcullis(args: &[&str], timeout: Duration) -> super::process::CmdOutput {
    super::process::run_with_timeout(Command::new(portcullis_bin()).args(args), timeout)
}
