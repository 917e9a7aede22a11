//! End-to-end: a shard that cannot start stops the whole process, fast.
//!
//! With `--cores 2`, one shard failing to start must not leave the other
//! waiting for it in the mesh: the process exits non-zero within seconds
//! and says why on stderr. Three ways to fail: shard 1 pinned to a CPU
//! that does not exist (`--cpu-set 0,99`); shard 1's spool directory not
//! writable, even for root (a symlink into /proc), so shard 1 fails inside
//! its executor while shard 0 is already waiting for it in the mesh; and a
//! listen address that another socket holds without SO_REUSEPORT (every
//! shard's bind fails).
//!
//! The other side of the same start-up: a SIGTERM that arrives while the
//! shards are still starting (the port already listens) is an ordinary
//! stop, exit 0 and prompt, not a failed start; and a port whose previous
//! server's connections linger in TIME_WAIT is bound all the same.

mod common;

use common::conncount::sockets_in_state;
use common::process::{listening_sockets, signal_and_wait};
use common::*;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The process must be gone well within this.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// Runs `portcullis run --cores 2 --listen 127.0.0.1:PORT ...extra` with a
/// fresh spool; kills it at twice `EXIT_WITHIN`. Returns the output and
/// how long it ran.
fn run(port: u16, extra: &[&str]) -> (CmdOutput, Duration) {
    let dir = TempDir::new("startup");
    run_on(port, &dir.path().join("spool"), extra)
}

fn run_on(port: u16, spool: &std::path::Path, extra: &[&str]) -> (CmdOutput, Duration) {
    let spool = spool.display().to_string();
    let listen = format!("127.0.0.1:{port}");
    let route = format!("*=127.0.0.1:{}", free_port());
    let mut args = vec![
        "run",
        "--cores",
        "2",
        "--listen",
        &listen,
        "--spool-dir",
        &spool,
    ];
    args.extend(["--route", &route, "--hostname", "portcullis.test", "--admin-listen", ""]);
    args.extend(extra);
    let started = Instant::now();
    let out = run_portcullis(&args, EXIT_WITHIN * 2);
    (out, started.elapsed())
}

fn assert_failed_fast(out: &CmdOutput, took: Duration) {
    assert!(!out.timed_out, "still running after {took:?}: {out:?}");
    assert!(took < EXIT_WITHIN, "took {took:?} to give up: {out:?}");
    let code = out.code().expect("exited, not killed by a signal");
    assert_ne!(code, 0, "{out:?}");
    eprintln!("exited {code} after {took:?}; stderr:\n{}", out.stderr);
}

#[test]
fn a_shard_on_a_cpu_that_does_not_exist_stops_the_process() {
    let port = free_port();
    let (out, took) = run(port, &["--cpu-set", "0,99"]);
    assert_failed_fast(&out, took);
    assert!(out.stderr.contains("CPU 99"), "names the CPU: {out:?}");
    assert!(!is_listening(port), "something still listens on {port}");
}

#[test]
fn a_shard_whose_spool_cannot_be_written_stops_the_process() {
    let dir = TempDir::new("startup");
    let spool = dir.subdir("spool");
    // Readable, so recovery (before the shards start) finds nothing to
    // recover; not writable, so shard 1 cannot create its segment.
    std::os::unix::fs::symlink("/proc/sys/kernel", spool.join("shard-1")).unwrap();
    let port = free_port();
    let (out, took) = run_on(port, &spool, &[]);
    assert_failed_fast(&out, took);
    assert!(
        out.stderr.contains("shard 1: spool") && out.stderr.contains("shard-1/seg-"),
        "names the shard and the file: {out:?}"
    );
    assert!(!is_listening(port), "something still listens on {port}");
}

#[test]
fn a_listen_address_held_by_another_socket_stops_the_process() {
    // std binds without SO_REUSEPORT: no shard may share this address.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let (out, took) = run(port, &[]);
    assert_failed_fast(&out, took);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}"))
            && out.stderr.contains("Address already in use"),
        "names the address and the error: {out:?}"
    );
    // Only our socket listens there; it was never shared.
    assert_eq!(listening_sockets(port), 1);
}

#[test]
fn a_port_another_server_just_closed_connections_on_still_binds() {
    // Another server (no SO_REUSEPORT, as most MTAs) accepted a connection
    // on the port and closed it first: its side lingers in TIME_WAIT for
    // a minute. The appliance replacing it must bind the port all the
    // same (SO_REUSEADDR); with SO_REUSEPORT alone the bind failed.
    let port = free_port();
    {
        let other = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (accepted, _) = other.accept().unwrap();
        drop(accepted);
        let _ = std::io::Read::read(&mut &client, &mut [0u8; 1]); // its end of file
    }
    assert!(
        wait_until(Duration::from_secs(2), || !sockets_in_state(port, "06").is_empty()),
        "the other server's side of the connection is in TIME_WAIT on {port}"
    );
    let server = Portcullis::builder().port(port).cores(2).start();
    assert!(wait_until(Duration::from_secs(5), || listening_sockets(port) == 2), "both shards listen on {port}");
    let (_client, greeting) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(greeting.code, 220, "{greeting:?}");
}

#[test]
fn sigterm_while_the_shards_start_is_a_clean_stop() {
    // The window is a few milliseconds after the port listens: watch for
    // it closely, try several times, stop at the first failure.
    for attempt in 1..=20 {
        let dir = TempDir::new("startup");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let mut child = Command::new(portcullis_bin())
            .args(["run", "--cores", "2", "--hostname", "portcullis.test", "--admin-listen", ""])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--spool-dir")
            .arg(dir.path().join("spool"))
            .args(["--route", &format!("*=127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let listening = wait_until(EXIT_WITHIN, || {
            is_listening(port) || child.try_wait().ok().flatten().is_some()
        });
        assert!(listening, "attempt {attempt}: not listening");
        let signalled = Instant::now();
        let status = signal_and_wait(&mut child, libc::SIGTERM, EXIT_WITHIN);
        let took = signalled.elapsed();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        assert_eq!(
            status.code(),
            Some(0),
            "attempt {attempt}: {status} after {took:?}\n{log}"
        );
        assert!(
            took < Duration::from_secs(3),
            "attempt {attempt}: {took:?}\n{log}"
        );
    }
}
