//! End-to-end: a 10,000-message backlog after a downstream outage drains,
//! exactly once, while mail for a second destination keeps flowing (issue
//! 10 tests). `--cores 2`; backlog.test routes to a port where nothing
//! listens while smtp-source sends 10,000 messages (each deferred, next
//! retry 300 s away); then its smtp-sink starts, `portcullis queue flush
//! backlog.test` starts the drain, and 20 messages for flowing.test are
//! sent during it: they arrive promptly, not behind the backlog.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BACKLOG: &str = "backlog.test";
const FLOWING: &str = "flowing.test";
const MESSAGES: usize = 10_000;

fn source(server: &Portcullis, messages: usize, sessions: usize, to: &str) {
    let out = run_smtp_source(
        server.addr(),
        &["-s", &sessions.to_string(), "-m", &messages.to_string(), "-f", "s@sender.test", "-t", to, "-l", "512"],
        Duration::from_secs(300),
    );
    assert!(out.success(), "smtp-source: {} {}", out.stdout, out.stderr);
}

fn list(admin: SocketAddr) -> String {
    let admin = admin.to_string();
    run_portcullis(&["queue", "list", "--admin", &admin], WAIT).stdout
}

#[test]
fn a_10k_backlog_drains_exactly_once_while_another_destination_flows() {
    let backlog_port = free_port();
    let flowing = Sink::start();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let text = format!(
        "relay_domains = [{BACKLOG:?}, {FLOWING:?}]\n\n[routes]\n{BACKLOG:?} = [\"127.0.0.1:{backlog_port}\"]\n{FLOWING:?} = [{:?}]\n",
        flowing.host_port()
    );
    let file = ConfigFile::with_text(&text);
    let server = Portcullis::builder().config(file.path()).routes_from_config().cores(2).retry_secs(300, 300).admin_listen(&admin.to_string()).start();
    assert!(wait_until(WAIT, || is_listening(admin.port())), "{}", server.log());

    source(&server, MESSAGES, 20, &format!("r@{BACKLOG}"));
    let all_deferred = format!("destination={BACKLOG} messages={MESSAGES} rcpts={MESSAGES}");
    assert!(wait_until(Duration::from_secs(120), || list(admin).contains(&all_deferred)), "{}", list(admin).lines().next().unwrap_or(""));

    let backlog = Sink::builder().port(backlog_port).start();
    let admin_arg = admin.to_string();
    let flush = run_portcullis(&["queue", "flush", BACKLOG, "--admin", &admin_arg], WAIT);
    assert_eq!(flush.stdout, format!("flushed={MESSAGES}\n"), "{}", flush.stderr);
    let sent_at = Instant::now();
    source(&server, 20, 2, &format!("r@{FLOWING}"));
    flowing.wait_for_messages(20, Duration::from_secs(30));
    let flowing_took = sent_at.elapsed();
    let backlog_then = backlog.count();

    backlog.wait_for_messages(MESSAGES, Duration::from_secs(300));
    let drained = sent_at.elapsed();
    eprintln!("flowing.test: 20 delivered {flowing_took:?} after the flush ({backlog_then} of the backlog by then); backlog drained in {drained:?}");
    assert!(backlog_then < MESSAGES, "flowing.test waited for the whole backlog");
    assert!(wait_until(WAIT, || list(admin).trim().is_empty()), "{}", list(admin));
    assert_eq!(backlog.count(), MESSAGES, "each backlog message exactly once");
    assert_eq!(server.event_lines("delivered").len(), MESSAGES + 20);
}
