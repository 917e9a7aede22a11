//! The admin listener's HTTP, without I/O: a request head in (parsed by
//! `httparse`), an answer out. Only what a Prometheus scraper and an
//! operator's curl need: `GET`/`HEAD /metrics`, the call-ahead endpoints
//! (`callahead.rs`) and the LDAP purge (`ldap.rs`), through the shards'
//! bridge; everything else refused
//! with the status RFC 9110 gives it, and every answer closes the connection.

use super::bridge::Bridge;
use crate::limits::ADMIN_REQUEST_HEADERS_MAX;
use crate::metrics::{self, MetricsBoard};

/// The request line of a complete head (headers are read and ignored:
/// nothing here depends on them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The path without its query (`/metrics?x=1` is `/metrics`).
    pub path: String,
}

/// Why no request head was read; all but `Closed` get an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The client closed or reset before a whole head: nobody to answer.
    Closed,
    /// RFC 9110 §15.5.9: 408 Request Timeout.
    TimedOut,
    /// RFC 6585 §5: 431 Request Header Fields Too Large.
    TooLarge,
    /// Not HTTP/1.x: 400 Bad Request.
    Malformed,
}

/// Parses the bytes read so far: `Ok(None)` while the head is incomplete.
#[cfg(test)]
pub fn parse_head(bytes: &[u8]) -> Result<Option<Head>, HeadError> {
    Ok(parse_request(bytes)?.map(|(head, _query)| head))
}

/// `parse_head`, and the query of the target (after `?`, "" if none).
pub fn parse_request(bytes: &[u8]) -> Result<Option<(Head, String)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; ADMIN_REQUEST_HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(HeadError::Malformed);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
    };
    Ok(Some((head, query.to_owned())))
}

/// What the admin answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    /// RFC 9110 §15.5.6: a 405 lists the methods the resource allows.
    pub allow: Option<&'static str>,
    pub body: String,
    /// RFC 9110 §9.3.2: HEAD gets the headers of GET (Content-Length
    /// included) and no body.
    pub head_only: bool,
}

const PLAIN_TEXT: &str = "text/plain; charset=utf-8";
const METRICS_METHODS: &str = "GET, HEAD";

/// The answer to a complete head: the metrics page or a refusal.
#[cfg(test)]
pub fn route(head: &Head, board: &MetricsBoard) -> Response {
    route_with(head, "", board, None)
}

/// `route`, with the target's query and the bridge to the shards (the
/// call-ahead endpoints; without a bridge they answer 503).
pub fn route_with(head: &Head, query: &str, board: &MetricsBoard, bridge: Option<&Bridge>) -> Response {
    if let Some(response) = super::callahead::route(&head.method, &head.path, query, bridge) {
        return response;
    }
    if let Some(response) = super::ldap::route(&head.method, &head.path, query, bridge) {
        return response;
    }
    if let Some(response) = super::queue::route(&head.method, &head.path, query, bridge) {
        return response;
    }
    if head.path != "/metrics" {
        return Response::plain(404, "Not Found");
    }
    match head.method.as_str() {
        "GET" | "HEAD" => Response {
            status: 200,
            reason: "OK",
            content_type: metrics::CONTENT_TYPE,
            allow: None,
            body: board.render(),
            head_only: head.method == "HEAD",
        },
        _ => Response {
            allow: Some(METRICS_METHODS),
            ..Response::plain(405, "Method Not Allowed")
        },
    }
}

impl Response {
    /// The answer to a head that could not be read.
    pub fn refusal(error: HeadError) -> Response {
        match error {
            HeadError::TimedOut => Response::plain(408, "Request Timeout"),
            HeadError::TooLarge => Response::plain(431, "Request Header Fields Too Large"),
            HeadError::Malformed | HeadError::Closed => Response::plain(400, "Bad Request"),
        }
    }

    /// A status with its reason phrase as a one-line plain-text body.
    fn plain(status: u16, reason: &'static str) -> Response {
        Response::text(status, reason, format!("{status} {reason}\n"))
    }

    /// A status and a plain-text body.
    pub(super) fn text(status: u16, reason: &'static str, body: String) -> Response {
        Response {
            status,
            reason,
            content_type: PLAIN_TEXT,
            allow: None,
            body,
            head_only: false,
        }
    }

    /// The bytes on the wire: status line, headers, body (RFC 9112 §3-§6).
    pub fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            head.push_str(&format!("Allow: {allow}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}
