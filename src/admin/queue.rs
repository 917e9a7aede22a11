//! The admin's queue endpoints (issue 10 item 6), what `portcullis queue`
//! talks to:
//!
//! - `GET /queue` | `?destination=D`: per destination the messages,
//!   recipients and last error, then the jobs (of D only, if given);
//! - `GET /queue/show?qid=Q`: the jobs of one message and their recipients;
//! - `POST /queue/flush?destination=D` | `?all=1`: retry now;
//! - `POST /queue/delete?qid=Q`: drop its owed recipients undelivered;
//! - `POST /queue/bounce?qid=Q`: fail them now, bounced to the sender.
//!
//! Checked here (a queue id is hex, a destination a domain, bounded);
//! carried out by every shard for its own jobs through the bridge
//! (`delivery::queue::everywhere`); no answer in time is a 503.

use super::bridge::{AdminRequest, Bridge};
use super::callahead::operate;
use super::http::Response;
use crate::delivery::queue::QueueOp;

/// The answer for a `/queue…` path, or None for another path.
pub fn route(method: &str, path: &str, query: &str, bridge: Option<&Bridge>) -> Option<Response> {
    let (allowed, build): (&'static str, fn(&[(String, String)]) -> Result<AdminRequest, String>) = match path {
        "/queue" => ("GET", list),
        "/queue/show" => ("GET", show),
        "/queue/flush" => ("POST", flush),
        "/queue/delete" => ("POST", delete),
        "/queue/bounce" => ("POST", bounce),
        _ => return None,
    };
    Some(operate(method, allowed, query, build, bridge, "queue"))
}

fn list(pairs: &[(String, String)]) -> Result<AdminRequest, String> {
    let destination = match pairs {
        [] => None,
        [(name, value)] if name == "destination" => Some(destination(value)?),
        _ => return Err("expected nothing or ?destination=DOMAIN".into()),
    };
    Ok(AdminRequest::Queue(QueueOp::List { destination }))
}

fn flush(pairs: &[(String, String)]) -> Result<AdminRequest, String> {
    let destination = match pairs {
        [(name, value)] if name == "all" && value == "1" => None,
        [(name, value)] if name == "destination" => Some(destination(value)?),
        _ => return Err("expected exactly one of ?destination=DOMAIN, ?all=1".into()),
    };
    Ok(AdminRequest::Queue(QueueOp::Flush { destination }))
}

fn show(pairs: &[(String, String)]) -> Result<AdminRequest, String> {
    Ok(AdminRequest::Queue(QueueOp::Show { queue_id: queue_id(pairs)? }))
}

fn delete(pairs: &[(String, String)]) -> Result<AdminRequest, String> {
    Ok(AdminRequest::Queue(QueueOp::Delete { queue_id: queue_id(pairs)? }))
}

fn bounce(pairs: &[(String, String)]) -> Result<AdminRequest, String> {
    Ok(AdminRequest::Queue(QueueOp::Bounce { queue_id: queue_id(pairs)? }))
}

/// `qid=Q`: a queue id as the mail log prints it (16 hex digits).
fn queue_id(pairs: &[(String, String)]) -> Result<String, String> {
    match pairs {
        [(name, value)] if name == "qid" && value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(value.to_ascii_uppercase()),
        _ => Err("expected ?qid=QUEUE_ID (16 hex digits, as the mail log prints it)".into()),
    }
}

fn destination(value: &str) -> Result<String, String> {
    match crate::config::is_domain(value) {
        true => Ok(value.to_ascii_lowercase()),
        false => Err(format!("{value:?} is not a domain")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::callahead::parse_query;
    use super::*;

    fn build(f: fn(&[(String, String)]) -> Result<AdminRequest, String>, query: &str) -> Result<AdminRequest, String> {
        f(&parse_query(query)?)
    }

    #[test]
    fn requests_are_checked_before_any_shard_is_asked() {
        assert_eq!(build(list, ""), Ok(AdminRequest::Queue(QueueOp::List { destination: None })));
        assert_eq!(build(list, "destination=Dest.Test"), Ok(AdminRequest::Queue(QueueOp::List { destination: Some("dest.test".into()) })));
        assert_eq!(build(flush, "all=1"), Ok(AdminRequest::Queue(QueueOp::Flush { destination: None })));
        assert_eq!(build(show, "qid=00066158b07a321e"), Ok(AdminRequest::Queue(QueueOp::Show { queue_id: "00066158B07A321E".into() })));
        for (f, bad) in [(list as fn(&[(String, String)]) -> _, "destination=not%20a%20domain"), (flush, ""), (flush, "all=0"), (show, "qid=xyz"), (delete, ""), (bounce, "qid=0006615")] {
            assert!(build(f, bad).is_err(), "{bad}");
        }
        assert!(route("GET", "/other", "", None).is_none());
        assert_eq!(route("GET", "/queue/delete", "qid=00066158B07A321E", None).unwrap().status, 405);
    }
}
