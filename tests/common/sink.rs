//! Postfix's `smtp-sink` as the downstream mail server of a test.
//!
//! The sink runs with `-d DIR/`: it writes each mail transaction to its own
//! file `DIR/<8 hex digits>`, created at MAIL and closed after the final
//! dot, before the reply is sent. A file that the sink still holds open is a
//! transaction in progress; [`Sink::messages`] leaves those out by reading
//! `/proc/<pid>/fd`, so a test never sees half a message.
//!
//! Behaviour of smtp-sink 3.7 checked on the real binary:
//! - as root it refuses to run without `-u USER`; the harness passes
//!   `-u nobody` and makes the dump dir world-writable;
//! - `-r CMD,...` answers 450 4.3.0, `-f CMD,...` answers 500 5.3.0 (both
//!   turn PIPELINING off), `-q CMD,...` drops the connection without a
//!   reply, `-Q CMD,...` answers 421 and drops it; CMD is one of CONNECT,
//!   HELO, EHLO, MAIL, RCPT, DATA, ".", RSET, NOOP, QUIT;
//! - a message rejected at "." (`-r .` / `-f .`) IS still dumped, because
//!   the dump is finished before the reply: count attempts, not deliveries,
//!   in that mode. A transaction cut off before "." leaves no file;
//! - the dump strips CR from line ends and undoes dot-stuffing; bare CR
//!   bytes inside lines are dropped too (use the raw client for CR tests);
//! - `-R DIR` chroots (root only), the dump path is then inside DIR.

use super::process::{free_port, TempDir};
use super::process::{is_root, program, set_mode, signal_and_wait, wait_listening, wait_until};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

/// Options for an `smtp-sink`; `Sink::builder().start()` is a sink that
/// accepts everything.
#[derive(Default, Clone)]
pub struct SinkBuilder {
    port: Option<u16>,
    args: Vec<String>,
}

impl SinkBuilder {
    /// Listen on this port instead of a fresh free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Answer 450 4.3.0 to these commands (`-r`), e.g. `&["RCPT"]`, `&["."]`.
    pub fn reject_soft(self, commands: &[&str]) -> Self {
        self.arg("-r").arg(&commands.join(","))
    }
    /// Answer 500 5.3.0 to these commands (`-f`).
    pub fn reject_hard(self, commands: &[&str]) -> Self {
        self.arg("-f").arg(&commands.join(","))
    }
    /// Close the connection without a reply after these commands (`-q`).
    pub fn disconnect_at(self, commands: &[&str]) -> Self {
        self.arg("-q").arg(&commands.join(","))
    }
    /// Answer 421 and close after these commands (`-Q`).
    pub fn close_421_at(self, commands: &[&str]) -> Self {
        self.arg("-Q").arg(&commands.join(","))
    }
    /// Wait `secs` before answering `command` (`-W command:secs`), e.g. to
    /// make a call-ahead or delivery time out.
    pub fn delay(self, command: &str, secs: u32) -> Self {
        self.arg("-W").arg(&format!("{command}:{secs}"))
    }
    /// Greeting/EHLO host name (`-h`); default "smtp-sink".
    pub fn hostname(self, name: &str) -> Self {
        self.arg("-h").arg(name)
    }
    /// Any other smtp-sink option, passed through verbatim.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }
    pub fn start(self) -> Sink {
        let port = self.port.unwrap_or_else(free_port);
        let dir = TempDir::new("sink");
        let dump_dir = dir.subdir("dump");
        // The sink drops to `nobody` when we are root; it must be able to
        // create files here.
        set_mode(&dump_dir, 0o1777);
        let mut sink = Sink {
            builder: self,
            port,
            dir,
            dump_dir,
            child: None,
        };
        sink.spawn();
        sink
    }
}

/// A running `smtp-sink` on 127.0.0.1; killed on drop.
pub struct Sink {
    builder: SinkBuilder,
    port: u16,
    dir: TempDir,
    dump_dir: PathBuf,
    child: Option<Child>,
}

impl Sink {
    /// A sink that accepts every message, on a fresh port.
    pub fn start() -> Sink {
        SinkBuilder::default().start()
    }
    pub fn builder() -> SinkBuilder {
        SinkBuilder::default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    /// "127.0.0.1:PORT", the form `--route DOMAIN=HOST:PORT` wants.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn dump_dir(&self) -> &Path {
        &self.dump_dir
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(program("smtp-sink"));
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        // The trailing slash makes smtp-sink create `DIR/<hex>` files.
        cmd.arg("-d").arg(format!("{}/", self.dump_dir.display()));
        cmd.args(&self.builder.args);
        // Backlog 1024: load tests open many connections at once.
        cmd.arg(format!("127.0.0.1:{}", self.port)).arg("1024");
        let log = std::fs::File::create(self.dir.path().join("sink.log")).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = cmd.spawn().expect("spawn smtp-sink");
        if let Err(e) = wait_listening(&mut child, self.port, Duration::from_secs(10)) {
            panic!("smtp-sink {e}; its log: {}", self.log());
        }
        self.child = Some(child);
    }

    /// Stops the sink (the port goes dark: "downstream down"). Messages
    /// already dumped stay readable.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_and_wait(&mut child, libc::SIGKILL, Duration::from_secs(5));
        }
    }

    /// Starts the sink again on the same port and dump dir, with the same
    /// options ("downstream back").
    pub fn start_again(&mut self) {
        self.stop();
        self.spawn();
    }

    /// smtp-sink's own output (fatal errors, `-c` counters, `-v` traces).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default()
    }

    /// Every complete transaction received so far, oldest first.
    pub fn messages(&self) -> Vec<SinkMessage> {
        // List first, then ask which files are open: a file opened after
        // the listing is simply not listed, so nothing in progress slips in.
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&self.dump_dir) {
            Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(_) => return Vec::new(),
        };
        let open = self.open_files();
        paths.retain(|p| !open.contains(p));
        let mut messages: Vec<SinkMessage> =
            paths.iter().filter_map(|p| SinkMessage::read(p)).collect();
        messages.sort_by(|a, b| (a.received, &a.path).cmp(&(b.received, &b.path)));
        messages
    }

    pub fn count(&self) -> usize {
        self.messages().len()
    }

    /// Waits until at least `n` complete transactions arrived; returns them
    /// all. Panics after `timeout` with what did arrive.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<SinkMessage> {
        let mut got = Vec::new();
        if wait_until(timeout, || {
            got = self.messages();
            got.len() >= n
        }) {
            return got;
        }
        panic!(
            "smtp-sink on port {}: {} of {n} messages after {timeout:?}; sink log: {}",
            self.port,
            got.len(),
            self.log()
        );
    }

    /// Waits until the complete transactions hold at least `n` recipients
    /// in total (a relay may split or merge recipients over transactions).
    pub fn wait_for_recipients(&self, n: usize, timeout: Duration) -> Vec<SinkMessage> {
        let mut got = Vec::new();
        let total = |m: &[SinkMessage]| m.iter().map(|m| m.rcpt_args.len()).sum::<usize>();
        if wait_until(timeout, || {
            got = self.messages();
            total(&got) >= n
        }) {
            return got;
        }
        panic!(
            "smtp-sink on port {}: {} of {n} recipients after {timeout:?}",
            self.port,
            total(&got)
        );
    }

    /// Dump files the sink process holds open right now.
    fn open_files(&self) -> HashSet<PathBuf> {
        let Some(child) = self.child.as_ref() else {
            return HashSet::new();
        };
        let fd_dir = format!("/proc/{}/fd", child.id());
        let Ok(entries) = std::fs::read_dir(fd_dir) else {
            return HashSet::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|target| target.starts_with(&self.dump_dir))
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One mail transaction as smtp-sink dumped it.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    pub path: PathBuf,
    pub received: SystemTime,
    /// Client IP as the sink saw it (`X-Client-Addr`).
    pub client_addr: String,
    /// EHLO/HELO argument, if any (`X-Helo-Args`).
    pub helo: Option<String>,
    /// Everything after `MAIL FROM:`, e.g. `<a@b.test> SIZE=123 BODY=8BITMIME`.
    pub mail_args: String,
    /// Everything after `RCPT TO:`, one entry per recipient, in order.
    pub rcpt_args: Vec<String>,
    /// Header and body as received: LF line ends, dot-stuffing undone.
    pub data: Vec<u8>,
}

impl SinkMessage {
    /// Parses a dump file; `None` if it vanished (an aborted transaction is
    /// unlinked by the sink) or is not a dump.
    pub fn read(path: &Path) -> Option<SinkMessage> {
        let bytes = std::fs::read(path).ok()?;
        let received = std::fs::metadata(path).ok()?.modified().ok()?;
        let mut msg = SinkMessage {
            path: path.to_owned(),
            received,
            client_addr: String::new(),
            helo: None,
            mail_args: String::new(),
            rcpt_args: Vec::new(),
            data: Vec::new(),
        };
        let mut rest = &bytes[..];
        // Sink headers end with a three-line `Received:` record; the
        // message data follows it.
        let mut in_received = 0;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&rest[..nl]).into_owned();
            rest = &rest[nl + 1..];
            if in_received > 0 {
                in_received -= 1;
                if in_received == 0 {
                    break;
                }
                continue;
            }
            match line.split_once(": ") {
                Some(("X-Client-Addr", v)) => msg.client_addr = v.to_owned(),
                Some(("X-Helo-Args", v)) => msg.helo = Some(v.to_owned()),
                Some(("X-Mail-Args", v)) => msg.mail_args = v.to_owned(),
                Some(("X-Rcpt-Args", v)) => msg.rcpt_args.push(v.to_owned()),
                Some(("Received", _)) => in_received = 2,
                _ => {}
            }
        }
        // The dump format appends one empty line after the data.
        msg.data = rest.strip_suffix(b"\n").unwrap_or(rest).to_vec();
        Some(msg)
    }

    /// The envelope sender without angle brackets or parameters ("" for <>).
    pub fn sender(&self) -> String {
        mailbox(&self.mail_args)
    }
    /// The envelope recipients without angle brackets or parameters.
    pub fn recipients(&self) -> Vec<String> {
        self.rcpt_args.iter().map(|a| mailbox(a)).collect()
    }
    /// The message data as text (lossy for 8-bit bytes).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
    /// Value of the first header field `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    /// All header fields in order, continuation lines unfolded.
    pub fn headers(&self) -> Vec<(String, String)> {
        let text = self.text();
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.split('\n') {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(last) = fields.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((n, v)) = line.split_once(':') {
                fields.push((n.to_owned(), v.trim().to_owned()));
            }
        }
        fields
    }
    /// The body: everything after the first empty line.
    pub fn body(&self) -> String {
        let text = self.text();
        match text.split_once("\n\n") {
            Some((_, body)) => body.to_owned(),
            None => String::new(),
        }
    }
}

/// `<a@b.test> SIZE=1` → `a@b.test`.
fn mailbox(args: &str) -> String {
    let args = args.trim();
    match (args.find('<'), args.find('>')) {
        (Some(open), Some(close)) if open < close => args[open + 1..close].to_owned(),
        _ => args.split_whitespace().next().unwrap_or("").to_owned(),
    }
}
