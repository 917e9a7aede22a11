//! Process plumbing for the harness: temp dirs, loopback ports, readiness
//! polls with a deadline, and commands run with a time limit.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a readiness poll looks again. Short, because a poll costs a
/// `readdir` or a read of `/proc`, and tests should not wait longer than
/// the condition takes.
pub const POLL: Duration = Duration::from_millis(20);

/// A directory removed when dropped (unless `keep()` was called or the
/// environment asks to keep test dirs for a post-mortem).
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Creates `$PORTCULLIS_TEST_TMPDIR/<prefix>-<pid>-<n>-<nanos>` (default
    /// parent: the system temp dir). Mode 0755 so that an `smtp-sink`
    /// running as `nobody` can reach directories below it.
    pub fn new(prefix: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let parent = std::env::var_os("PORTCULLIS_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        set_mode(&path, 0o755);
        let keep = std::env::var_os("PORTCULLIS_KEEP_TMP").is_some();
        TempDir { path, keep }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates (if needed) and returns a subdirectory.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let dir = self.path.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        dir
    }

    /// Leaves the directory on disk after the test, e.g. to inspect a spool.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep || thread::panicking() {
            eprintln!("harness: kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A TCP port on 127.0.0.1 that is free now and was not handed out before
/// in this process. Ports come from 20000..32000, below the kernel's
/// ephemeral range (32768..60999 by default), so outgoing connections of
/// other tests cannot grab a port between allocation and bind.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Spread test binaries (different pids) over the range so that two
    // harnesses running at once rarely probe the same ports.
    let base = std::process::id().wrapping_mul(7919) % SPAN;
    let mut given = GIVEN.lock().unwrap();
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
        let port = (LOW + (base + step) % SPAN) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in 20000..32000 on 127.0.0.1");
}

/// Number of sockets in LISTEN state on 127.0.0.1:`port` or 0.0.0.0:`port`
/// (IPv4 only), read from `/proc/net/tcp`. Reading the kernel table instead
/// of connecting means a readiness check never opens an SMTP session, which
/// would show up in logs and rate counters of the server under test.
pub fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1).unwrap_or("");
            let state = cols.nth(1).unwrap_or("");
            state == "0A" && wanted.iter().any(|w| w == local)
        })
        .count()
}

pub fn is_listening(port: u16) -> bool {
    listening_sockets(port) > 0
}

/// Polls `cond` every [`POLL`] until it is true or `timeout` passes.
/// Returns whether it became true; the caller decides how to fail.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// Waits until `port` is in LISTEN state while `child` is alive. Fails early
/// with the exit status when the child dies first, instead of waiting out
/// the deadline.
pub fn wait_listening(child: &mut Child, port: u16, timeout: Duration) -> Result<(), String> {
    let mut exited = None;
    let ready = wait_until(timeout, || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        is_listening(port)
    });
    match (ready, exited) {
        (_, Some(status)) => Err(format!(
            "exited with {status} before listening on port {port}"
        )),
        (true, None) => Ok(()),
        (false, None) => Err(format!(
            "not listening on 127.0.0.1:{port} after {timeout:?}"
        )),
    }
}

/// Sends `signal` to `child` if it still runs, then waits for it up to
/// `timeout`; escalates to SIGKILL after that. Returns the exit status.
pub fn signal_and_wait(child: &mut Child, signal: i32, timeout: Duration) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    // SAFETY: kill(2) on the pid of our own unreaped child: the pid cannot
    // have been recycled because we have not waited for it yet.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    match status {
        Some(status) => status,
        None => {
            let _ = child.kill();
            child.wait().expect("wait for killed child")
        }
    }
}

/// Output of a command run with [`run_with_timeout`].
#[derive(Debug)]
pub struct CmdOutput {
    /// `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.map(|s| s.success()).unwrap_or(false)
    }
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// Runs `cmd` with stdin closed and stdout/stderr captured; kills it at
/// `timeout` so a hung client fails the test instead of hanging it.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    run_with_stdin(cmd, Stdio::null(), timeout)
}

/// `run_with_timeout` with the child's standard input from `stdin`.
pub fn run_with_stdin(cmd: &mut Command, stdin: Stdio, timeout: Duration) -> CmdOutput {
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // Drain both pipes on threads so a chatty child cannot block on a full
    // pipe while we poll for its exit.
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let mut status = None;
    let exited = wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    CmdOutput {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        timed_out: !exited,
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Absolute path of a program in `/usr/sbin`, `/usr/bin` or `$PATH`; panics
/// with a hint to run `tests/run.sh` (which installs the Debian packages).
pub fn program(name: &str) -> PathBuf {
    let path_var = std::env::var("PATH").unwrap_or_default();
    let dirs = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path_var));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} not found: run `bash tests/run.sh`, it installs postfix, swaks and openssl");
}
