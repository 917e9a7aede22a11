//! The admin's call-ahead endpoints (issue 7 item 9), what
//! `portcullis callahead query|purge` talks to:
//!
//! - `GET /callahead/query?address=ADDR`: one line per profile that has
//!   the address cached, `profile=P verdict=V source=cache reply="…"
//!   age_secs=N ttl_secs=N shard=N`, or `verdict=none`;
//! - `POST /callahead/purge?address=ADDR` | `?domain=DOMAIN` | `?all=1`:
//!   `purged=N`.
//!
//! The query string is percent-decoded (RFC 3986 §2.1) and checked here,
//! on the admin thread: a malformed escape, an unknown or repeated
//! parameter, or a value that is not an address or a domain is a 400 and
//! never reaches a shard. `+` stays a plus (addresses have them; it means
//! a space only in HTML forms). The work is done on the shards through the
//! bridge; no answer in time is a 503.

use percent_encoding::percent_decode_str;

use super::bridge::{AdminReply, AdminRequest, Bridge, BridgeError};
use super::http::Response;
use crate::callahead::operate::{CachedEntry, PurgeTarget};

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets, brackets included.
const ADDRESS_BYTES_MAX: usize = 254;
/// RFC 1035 §2.3.4: 255 octets on the wire, 253 as text.
const DOMAIN_BYTES_MAX: usize = 253;

/// The answer for a `/callahead/…` path, or None for another path.
pub fn route(method: &str, path: &str, query: &str, bridge: Option<&Bridge>) -> Option<Response> {
    let (allowed, build): (
        &'static str,
        fn(&[(String, String)]) -> Result<AdminRequest, String>,
    ) = match path {
        "/callahead/query" => ("GET", query_request),
        "/callahead/purge" => ("POST", purge_request),
        _ => return None,
    };
    Some(operate(method, allowed, query, build, bridge, "call-ahead"))
}

/// One admin operation on the shards, for `/callahead/…` and `/ldap/…`
/// alike: `allowed` is the only method (else 405), the query string is
/// parsed and `build` makes the request (else 400), the bridge carries it
/// (none, busy or no answer: 503), and the reply becomes the body.
/// `subsystem` names what this admin listener does not serve without a bridge.
pub(super) fn operate(
    method: &str,
    allowed: &'static str,
    query: &str,
    build: fn(&[(String, String)]) -> Result<AdminRequest, String>,
    bridge: Option<&Bridge>,
    subsystem: &str,
) -> Response {
    if method != allowed {
        return Response {
            allow: Some(allowed),
            ..Response::text(
                405,
                "Method Not Allowed",
                format!("405 Method Not Allowed: use {allowed}\n"),
            )
        };
    }
    let request = match parse_query(query).and_then(|pairs| build(&pairs)) {
        Ok(request) => request,
        Err(why) => return Response::text(400, "Bad Request", format!("400 Bad Request: {why}\n")),
    };
    let Some(bridge) = bridge else {
        return unavailable(&format!("{subsystem} operations are not served by this admin listener"));
    };
    match bridge.call(request) {
        Ok(AdminReply::Cached(entries)) => Response::text(200, "OK", render_entries(&entries)),
        Ok(AdminReply::Purged(count)) => Response::text(200, "OK", format!("purged={count}\n")),
        Ok(AdminReply::Text(text)) => Response::text(200, "OK", text),
        Ok(AdminReply::Failed(why)) => unavailable(&why),
        Err(BridgeError::Busy) => unavailable("too many admin requests are waiting for the shards"),
        Err(BridgeError::NoAnswer) => unavailable("no shard answered in time"),
    }
}

/// RFC 9110 §15.6.4: 503, the shards could not answer now.
pub(super) fn unavailable(why: &str) -> Response {
    Response::text(
        503,
        "Service Unavailable",
        format!("503 Service Unavailable: {why}\n"),
    )
}

/// `name=value&…`, each part percent-decoded; a repeated name is refused
/// (which one would count?).
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let (name, value) = (decode(name)?, decode(value)?);
        if pairs.iter().any(|(seen, _)| *seen == name) {
            return Err(format!("{name:?} given twice"));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// RFC 3986 §2.1: `%` and two hex digits, the result UTF-8 without controls.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('%') {
        let well_formed = bytes
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        if !well_formed {
            return Err(format!("bad percent escape in {text:?}"));
        }
    }
    let decoded = percent_decode_str(text)
        .decode_utf8()
        .map_err(|_| format!("{text:?} is not UTF-8 once decoded"))?;
    if decoded.chars().any(char::is_control) {
        return Err(format!("control character in {text:?}"));
    }
    Ok(decoded.into_owned())
}

fn query_request(pairs: &[(String, String)]) -> Result<AdminRequest, String> {
    match pairs {
        [(name, value)] if name == "address" => Ok(AdminRequest::CallaheadQuery {
            address: address(value)?,
        }),
        _ => Err("expected exactly ?address=ADDR".into()),
    }
}

fn purge_request(pairs: &[(String, String)]) -> Result<AdminRequest, String> {
    let what = match pairs {
        [(name, value)] if name == "address" => PurgeTarget::Address(address(value)?),
        [(name, value)] if name == "domain" => {
            PurgeTarget::Domain(domain(value.strip_prefix('@').unwrap_or(value))?)
        }
        [(name, value)] if name == "all" && value == "1" => PurgeTarget::All,
        _ => return Err("expected exactly one of ?address=ADDR, ?domain=DOMAIN, ?all=1".into()),
    };
    Ok(AdminRequest::CallaheadPurge(what))
}

/// `local@domain`, both parts present, within RFC 5321's length.
fn address(value: &str) -> Result<String, String> {
    let value = value.trim_start_matches('<').trim_end_matches('>');
    match value.rsplit_once('@') {
        Some((local, dom))
            if !local.is_empty() && value.len() <= ADDRESS_BYTES_MAX && !value.contains(' ') =>
        {
            domain(dom)?;
            Ok(value.to_string())
        }
        _ => Err(format!("{value:?} is not an address (local@domain)")),
    }
}

fn domain(value: &str) -> Result<String, String> {
    let fine = !value.is_empty()
        && value.len() <= DOMAIN_BYTES_MAX
        && !value.contains(['@', ' ', '/'])
        && !value.starts_with('.');
    if fine {
        Ok(value.to_string())
    } else {
        Err(format!("{value:?} is not a domain"))
    }
}

/// One line per cached profile entry, or `verdict=none`.
pub fn render_entries(entries: &[CachedEntry]) -> String {
    if entries.is_empty() {
        return "verdict=none\n".into();
    }
    entries
        .iter()
        .map(|e| {
            format!(
                "profile={} verdict={} source=cache reply=\"{}\" age_secs={} ttl_secs={} shard={}\n",
                e.profile,
                e.verdict,
                e.reply.escape_debug(),
                e.age_secs,
                e.ttl_secs,
                e.shard
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::bridge::channel_with_timeout;
    use super::*;
    use std::time::Duration;

    fn entry(profile: &str, shard: usize) -> CachedEntry {
        let reply = "550 5.1.1 <b@x.test>: Recipient address rejected: \"User\" unknown".into();
        CachedEntry {
            profile: profile.into(),
            verdict: "mailbox-unknown",
            reply,
            age_secs: 12,
            ttl_secs: 900,
            shard,
        }
    }

    #[test]
    fn query_strings_are_percent_decoded_and_checked() {
        let pairs = parse_query("address=J%C3%B6rg%2Btag%40Example.test&x=").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("address".into(), "Jörg+tag@Example.test".into()),
                ("x".into(), "".into())
            ]
        );
        assert_eq!(
            parse_query("address=a+b@x.test").unwrap()[0].1,
            "a+b@x.test",
            "+ is not a space"
        );
        for bad in [
            "address=a%zz@x.test",
            "address=a%4",
            "address=%",
            "address=%ff@x.test",
            "address=a%0a@x.test",
            "address=a@x&address=b@x",
        ] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
        assert_eq!(
            query_request(&parse_query("address=%3Ca@x.test%3E").unwrap()),
            Ok(AdminRequest::CallaheadQuery {
                address: "a@x.test".into()
            })
        );
        for bad in [
            "",
            "address=",
            "address=nobody",
            "address=@x.test",
            "address=a@",
            "address=a@x.test&domain=x.test",
            "domain=x.test",
        ] {
            assert!(query_request(&parse_query(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn purge_takes_one_of_address_domain_or_all() {
        let purge = |q: &str| purge_request(&parse_query(q).unwrap());
        assert_eq!(
            purge("address=a@x.test"),
            Ok(AdminRequest::CallaheadPurge(PurgeTarget::Address(
                "a@x.test".into()
            )))
        );
        assert_eq!(
            purge("domain=%40x.test"),
            Ok(AdminRequest::CallaheadPurge(PurgeTarget::Domain(
                "x.test".into()
            )))
        );
        assert_eq!(
            purge("all=1"),
            Ok(AdminRequest::CallaheadPurge(PurgeTarget::All))
        );
        for bad in [
            "",
            "all=0",
            "all=yes",
            "all=1&domain=x.test",
            "domain=a@x.test",
            "domain=",
            "shard=1",
        ] {
            assert!(purge(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_are_one_line_each_and_none_says_so() {
        assert_eq!(render_entries(&[]), "verdict=none\n");
        let text = render_entries(&[entry("ca", 1), entry("strict", 1)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            r#"profile=ca verdict=mailbox-unknown source=cache reply="550 5.1.1 <b@x.test>: Recipient address rejected: \"User\" unknown" age_secs=12 ttl_secs=900 shard=1"#
        );
        assert!(lines[1].starts_with("profile=strict "));
    }

    #[test]
    fn the_endpoints_answer_through_the_bridge() {
        let (bridge, inbox) = channel_with_timeout(4, Duration::from_secs(30));
        let shard = inbox.answer_on_thread(|request| match request {
            AdminRequest::CallaheadQuery { address } if address == "b@x.test" => {
                AdminReply::Cached(vec![entry("ca", 1)])
            }
            AdminRequest::CallaheadQuery { .. } => AdminReply::Cached(Vec::new()),
            AdminRequest::CallaheadPurge(PurgeTarget::Domain(_)) => AdminReply::Purged(3),
            AdminRequest::CallaheadPurge(_) | AdminRequest::LdapPurge { .. } | AdminRequest::Queue(_) => {
                AdminReply::Failed("shard 1 did not answer in time".into())
            }
        });
        let answer = |method, path, query| {
            route(method, path, query, Some(&bridge)).expect("a call-ahead path")
        };
        let found = answer("GET", "/callahead/query", "address=b%40x.test");
        assert_eq!(found.status, 200);
        assert!(
            found
                .body
                .starts_with("profile=ca verdict=mailbox-unknown source=cache reply=\""),
            "{}",
            found.body
        );
        assert_eq!(
            answer("GET", "/callahead/query", "address=c@x.test").body,
            "verdict=none\n"
        );
        assert_eq!(
            answer("POST", "/callahead/purge", "domain=x.test").body,
            "purged=3\n"
        );
        assert_eq!(
            answer("POST", "/callahead/purge", "all=1").status,
            503,
            "a shard that did not answer"
        );
        assert_eq!(
            answer("GET", "/callahead/query", "address=a%zz").status,
            400
        );
        let wrong = answer("POST", "/callahead/query", "address=b@x.test");
        assert_eq!((wrong.status, wrong.allow), (405, Some("GET")));
        assert_eq!(
            answer("GET", "/callahead/purge", "all=1").allow,
            Some("POST")
        );
        assert!(
            route("GET", "/metrics", "", Some(&bridge)).is_none(),
            "not ours"
        );
        drop(bridge);
        shard.join().unwrap();
    }

    #[test]
    fn no_bridge_or_no_answer_is_503_never_a_hang() {
        assert_eq!(
            route("GET", "/callahead/query", "address=a@x.test", None)
                .unwrap()
                .status,
            503
        );
        let (bridge, _inbox) = channel_with_timeout(1, Duration::from_millis(50));
        let unanswered =
            route("GET", "/callahead/query", "address=a@x.test", Some(&bridge)).unwrap();
        assert_eq!(unanswered.status, 503);
        assert!(
            unanswered.body.contains("no shard answered in time"),
            "{}",
            unanswered.body
        );
        let busy = route("POST", "/callahead/purge", "all=1", Some(&bridge)).unwrap();
        assert!(
            busy.body.contains("too many admin requests"),
            "the one slot is still taken: {}",
            busy.body
        );
        assert_eq!(
            route("GET", "/callahead/query", "address=bad", Some(&bridge))
                .unwrap()
                .status,
            400,
            "checked before the bridge"
        );
    }
}
