//! The admin listener in-process, over loopback with a plain `TcpStream`:
//!
//! - `GET /metrics` → 200, the Prometheus content type, a Content-Length
//!   that matches, `Connection: close`, and the values of two shards summed;
//! - `HEAD /metrics` → the same headers, no body;
//! - `GET /other` → 404, `POST /metrics` → 405 with `Allow`;
//! - a head over 8 KiB → 431, and the answer arrives whole (the server reads
//!   and discards the rest rather than resetting the connection);
//! - a client that connects and says nothing gets 408 once the exchange
//!   timeout passes, and the next client is served after it;
//! - a port in use is an error from `start`, not from a thread later;
//! - dropping the handle stops the thread and frees the port, also while a
//!   silent client is connected.
//!
//! Timing: nothing is timed. Clients have a long read timeout only so a
//! broken server fails the test instead of hanging it.

use portcullis::admin::{self, AdminHandle};
use portcullis::limits::ADMIN_REQUEST_HEAD_BYTES_MAX;
use portcullis::metrics::{Metrics, MetricsBoard};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const HANG_GUARD: Duration = Duration::from_secs(30);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn start_admin() -> (Vec<Arc<Metrics>>, AdminHandle) {
    let (shards, board) = MetricsBoard::for_shards(2);
    let handle = admin::start(loopback(), Arc::new(board)).expect("admin starts");
    (shards, handle)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the admin listener");
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    stream
}

/// Sends `request` and reads the answer until the server closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .expect("the whole answer, then end of file");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("a head ending in an empty line");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let headers = lines.map(str::to_owned).collect();
    Answer {
        status_line,
        headers,
        body: body.to_owned(),
    }
}

struct Answer {
    status_line: String,
    headers: Vec<String>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.headers.iter().find_map(|h| h.strip_prefix(&prefix))
    }
}

#[test]
fn get_metrics_serves_the_sum_of_every_shard() {
    let (shards, admin) = start_admin();
    shards[0].connection("InboundMail", "ALL", "ACCEPTED", "accepted");
    shards[1].connection("InboundMail", "ALL", "ACCEPTED", "accepted");
    shards[1].dns_query("MX", "answer", Duration::from_millis(2));
    shards[0].message_accepted();

    let answer = exchange(
        admin.local_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        answer.header("Content-Length"),
        Some(answer.body.len().to_string().as_str())
    );
    assert_eq!(answer.header("Connection"), Some("close"));
    for line in [
        "# TYPE portcullis_connections_total counter",
        r#"portcullis_connections_total{listener="InboundMail",group="ALL",policy="ACCEPTED",outcome="accepted"} 2"#,
        r#"portcullis_dns_queries_total{type="MX",result="answer"} 1"#,
        r#"portcullis_dns_query_seconds_bucket{le="0.0025"} 1"#,
        "portcullis_messages_accepted_total 1",
    ] {
        assert!(
            answer.body.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            answer.body
        );
    }

    // A later scrape sees later counts: nothing is cached between scrapes.
    shards[1].message_accepted();
    let again = exchange(admin.local_addr(), b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(again
        .body
        .lines()
        .any(|l| l == "portcullis_messages_accepted_total 2"));
}

#[test]
fn head_metrics_has_headers_and_no_body() {
    let (_shards, admin) = start_admin();
    let answer = exchange(admin.local_addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    let length: usize = answer.header("Content-Length").unwrap().parse().unwrap();
    assert!(length > 0);
    assert_eq!(answer.body, "");
}

#[test]
fn other_paths_are_404_and_other_methods_405() {
    let (_shards, admin) = start_admin();
    let other = exchange(admin.local_addr(), b"GET /other HTTP/1.1\r\n\r\n");
    assert_eq!(other.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(other.header("Connection"), Some("close"));
    let post = exchange(
        admin.local_addr(),
        b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(post.status_line, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    let garbage = exchange(admin.local_addr(), b"EHLO client.test\r\n\r\n");
    assert_eq!(garbage.status_line, "HTTP/1.1 400 Bad Request");
}

#[test]
fn an_oversized_head_gets_431_whole() {
    let (_shards, admin) = start_admin();
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    request.resize(2 * ADMIN_REQUEST_HEAD_BYTES_MAX, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    let answer = exchange(admin.local_addr(), &request);
    assert_eq!(
        answer.status_line,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(
        answer.header("Content-Length"),
        Some(answer.body.len().to_string().as_str())
    );

    // The listener is still there for the next client.
    let next = exchange(admin.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(next.status_line, "HTTP/1.1 200 OK");
}

#[test]
fn a_silent_client_times_out_and_the_next_is_served() {
    let board = Arc::new(MetricsBoard::for_shards(1).1);
    let short = Duration::from_millis(200);
    let admin = admin::start_with_timeout(loopback(), board, short).unwrap();
    let mut silent = connect(admin.local_addr());
    // Queued behind the silent client (one exchange at a time), so it is
    // answered only once the silent one has timed out.
    let next = exchange(admin.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(next.status_line, "HTTP/1.1 200 OK");
    let timed_out = read_answer(&mut silent);
    assert_eq!(timed_out.status_line, "HTTP/1.1 408 Request Timeout");
}

#[test]
fn a_port_in_use_fails_at_start() {
    let (_shards, admin) = start_admin();
    let board = Arc::new(MetricsBoard::new(Vec::new()));
    let error = admin::start(admin.local_addr(), board).expect_err("the port is taken");
    assert_eq!(error.kind(), ErrorKind::AddrInUse);
}

#[test]
fn dropping_the_handle_stops_the_thread_and_frees_the_port() {
    let (_shards, admin) = start_admin();
    let addr = admin.local_addr();
    assert_eq!(
        exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").status_line,
        "HTTP/1.1 200 OK"
    );
    drop(admin); // joins the thread
    let refused = TcpStream::connect(addr).expect_err("nobody listens after the drop");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn stop_returns_while_a_silent_client_is_connected() {
    let board = Arc::new(MetricsBoard::for_shards(1).1);
    let admin = admin::start_with_timeout(loopback(), board, Duration::from_millis(200)).unwrap();
    let addr = admin.local_addr();
    let mut silent = connect(addr);
    // The exchange with the silent client is bounded, so stop cannot hang.
    admin.stop();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let refused = TcpStream::connect(addr).expect_err("nobody listens after stop");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}
