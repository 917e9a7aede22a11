//! The admin's HTTP without sockets: heads in, answers out. (The listener
//! thread itself is tested over loopback in `tests/admin_metrics.rs`.)

use super::http::{parse_head, route, Head, HeadError, Response};
use crate::limits::ADMIN_REQUEST_HEADERS_MAX;
use crate::metrics::MetricsBoard;

fn head(method: &str, path: &str) -> Head {
    Head {
        method: method.into(),
        path: path.into(),
    }
}

fn board_with_one_dhap_refusal() -> MetricsBoard {
    let (shards, board) = MetricsBoard::for_shards(2);
    shards[1].dhap_refusal();
    board
}

#[test]
fn a_head_is_complete_only_after_the_empty_line() {
    let request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for cut in 0..request.len() {
        assert_eq!(parse_head(&request[..cut]), Ok(None), "cut at {cut}");
    }
    assert_eq!(parse_head(request), Ok(Some(head("GET", "/metrics"))));
}

#[test]
fn the_query_is_not_part_of_the_path() {
    let parsed = parse_head(b"GET /metrics?name[]=up HTTP/1.0\r\n\r\n");
    assert_eq!(parsed, Ok(Some(head("GET", "/metrics"))));
}

#[test]
fn bad_heads_are_refused() {
    assert_eq!(
        parse_head(b"\x16\x03\x01\x02\x00\x01\x00"),
        Err(HeadError::Malformed),
        "TLS hello"
    );
    assert_eq!(
        parse_head(b"GET /metrics SMTP/1.0\r\n\r\n"),
        Err(HeadError::Malformed)
    );
    let mut many = String::from("GET /metrics HTTP/1.1\r\n");
    for i in 0..=ADMIN_REQUEST_HEADERS_MAX {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(parse_head(many.as_bytes()), Err(HeadError::TooLarge));
}

#[test]
fn get_metrics_is_the_page_with_its_content_type() {
    let response = route(&head("GET", "/metrics"), &board_with_one_dhap_refusal());
    assert_eq!((response.status, response.reason), (200, "OK"));
    assert_eq!(
        response.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(response
        .body
        .lines()
        .any(|l| l == "portcullis_dhap_refusals_total 1"));
    let wire = String::from_utf8(response.encode()).unwrap();
    let (head, body) = wire.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, response.body);
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
    let headers: Vec<_> = lines.collect();
    assert!(headers.contains(&"Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    assert!(headers.contains(&format!("Content-Length: {}", body.len()).as_str()));
    assert!(headers.contains(&"Connection: close"));
}

#[test]
fn head_metrics_has_the_headers_of_get_and_no_body() {
    let board = board_with_one_dhap_refusal();
    let response = route(&head("HEAD", "/metrics"), &board);
    let wire = String::from_utf8(response.encode()).unwrap();
    let length = format!("Content-Length: {}\r\n", response.body.len());
    assert!(
        wire.starts_with("HTTP/1.1 200 OK\r\n") && wire.contains(&length),
        "{wire}"
    );
    assert!(wire.ends_with("\r\n\r\n"), "no body: {wire}");
}

#[test]
fn other_paths_and_methods_are_refused() {
    let board = MetricsBoard::new(Vec::new());
    assert_eq!(route(&head("GET", "/"), &board).status, 404);
    assert_eq!(route(&head("GET", "/metrics/"), &board).status, 404);
    assert_eq!(route(&head("POST", "/other"), &board).status, 404);
    let post = route(&head("POST", "/metrics"), &board);
    assert_eq!((post.status, post.allow), (405, Some("GET, HEAD")));
    let wire = String::from_utf8(post.encode()).unwrap();
    assert!(
        wire.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{wire}"
    );
    assert!(wire.contains("\r\nAllow: GET, HEAD\r\n"), "{wire}");
}

#[test]
fn unreadable_heads_get_their_status() {
    let status = |error| Response::refusal(error).status;
    assert_eq!(status(HeadError::TimedOut), 408);
    assert_eq!(status(HeadError::TooLarge), 431);
    assert_eq!(status(HeadError::Malformed), 400);
}
