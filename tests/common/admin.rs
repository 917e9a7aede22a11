//! The admin listener as the tests see it: GET /metrics over HTTP/1.0, and
//! one sample read off the page.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The body of `GET /metrics`; panics unless the answer is a 200.
pub fn scrape(admin: SocketAddr) -> String {
    let mut stream = TcpStream::connect(admin).expect("connect to the admin port");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .expect("the whole answer, then EOF");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_owned()
}

/// The value of the sample `name{labels}` (labels exactly as printed, in
/// the order given) or of `name` alone; None if the page has no such line.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{series}: {v:?}: {e}"))
        })
}
