//! The admin's LDAP endpoint (issue 8 item 5), what `portcullis ldap
//! purge` talks to:
//!
//! - `POST /ldap/purge?query=NAME` | `?all=1`: every shard drops the
//!   answers it caches for query NAME (or for every query), `purged=N`.
//!
//! Checked here, on the admin thread, before any shard is asked: the query
//! string is percent-decoded as for `/callahead/…` (`callahead::parse_query`),
//! and anything but exactly one of `query=NAME` (non-empty, at most
//! `LDAP_QUERY_NAME_BYTES_MAX` bytes) or `all=1` is a 400. A name no query
//! has purges nothing (`purged=0`): the admin thread holds no policy to
//! check it against, and after a reload that removed a query its leftover
//! answers are still worth purging. The shards do the work through the
//! bridge (`ldap::operate`); no answer in time is a 503.

use super::bridge::{AdminRequest, Bridge};
use super::callahead::operate;
use super::http::Response;
use crate::limits::LDAP_QUERY_NAME_BYTES_MAX;

const PURGE_PATH: &str = "/ldap/purge";
const PURGE_METHOD: &str = "POST";

/// The answer for an `/ldap/…` path, or None for another path.
pub fn route(method: &str, path: &str, query: &str, bridge: Option<&Bridge>) -> Option<Response> {
    if path != PURGE_PATH {
        return None;
    }
    Some(operate(method, PURGE_METHOD, query, purge_request, bridge, "LDAP"))
}

/// `query=NAME` → that query's answers; `all=1` → every query's ("").
pub fn purge_request(pairs: &[(String, String)]) -> Result<AdminRequest, String> {
    match pairs {
        [(name, value)] if name == "query" => Ok(AdminRequest::LdapPurge {
            query: query_name(value)?,
        }),
        [(name, value)] if name == "all" && value == "1" => Ok(AdminRequest::LdapPurge {
            query: String::new(),
        }),
        _ => Err("expected exactly one of ?query=NAME, ?all=1".into()),
    }
}

/// A query name as `[ldap.query."NAME"]` spells it: not empty (that would
/// mean every query), bounded.
fn query_name(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("query= names an [ldap.query.\"NAME\"]; every query is ?all=1".into());
    }
    if value.len() > LDAP_QUERY_NAME_BYTES_MAX {
        return Err(format!(
            "a query name is at most {LDAP_QUERY_NAME_BYTES_MAX} bytes"
        ));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::bridge::{channel_with_timeout, AdminReply};
    use super::super::callahead::parse_query;
    use super::*;
    use std::time::Duration;

    fn purge(query: &str) -> Result<AdminRequest, String> {
        purge_request(&parse_query(query)?)
    }

    fn ldap_purge(query: &str) -> AdminRequest {
        AdminRequest::LdapPurge {
            query: query.into(),
        }
    }

    #[test]
    fn purge_takes_one_query_name_or_all() {
        assert_eq!(
            purge("query=LDAP1.routing"),
            Ok(ldap_purge("LDAP1.routing"))
        );
        assert_eq!(
            purge("query=My%20Query%2Baccept"),
            Ok(ldap_purge("My Query+accept")),
            "names are percent-decoded"
        );
        assert_eq!(
            purge("all=1"),
            Ok(ldap_purge("")),
            "every query is the empty name"
        );
        let longest = "q".repeat(LDAP_QUERY_NAME_BYTES_MAX);
        assert_eq!(purge(&format!("query={longest}")), Ok(ldap_purge(&longest)));
        let too_long = format!("query={longest}q");
        for bad in [
            "",
            "query=",
            "all=0",
            "all=yes",
            "all=",
            "query=a&all=1",
            "query=a&query=b",
            "name=a",
            "query=a%zz",
            "query=a%0a",
            &too_long,
        ] {
            assert!(purge(bad).is_err(), "{bad:.40}");
        }
    }

    #[test]
    fn the_endpoint_answers_through_the_bridge() {
        let (bridge, inbox) = channel_with_timeout(4, Duration::from_secs(30));
        let shard = inbox.answer_on_thread(|request| match request {
            AdminRequest::LdapPurge { query } if query.is_empty() => AdminReply::Purged(5),
            AdminRequest::LdapPurge { query } if query == "LDAP1.routing" => AdminReply::Purged(2),
            _ => AdminReply::Failed("shard 1 did not answer in time".into()),
        });
        let answer = |method, query| {
            route(method, "/ldap/purge", query, Some(&bridge)).expect("an LDAP path")
        };
        let all = answer("POST", "all=1");
        assert_eq!((all.status, all.body.as_str()), (200, "purged=5\n"));
        assert_eq!(answer("POST", "query=LDAP1.routing").body, "purged=2\n");
        let failed = answer("POST", "query=other");
        assert_eq!(failed.status, 503, "a shard that did not answer");
        assert!(
            failed.body.contains("shard 1 did not answer"),
            "{}",
            failed.body
        );
        let bad = answer("POST", "query=");
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("?all=1"), "{}", bad.body);
        let wrong = answer("GET", "all=1");
        assert_eq!((wrong.status, wrong.allow), (405, Some("POST")));
        assert!(
            route("POST", "/ldap/purge/x", "all=1", Some(&bridge)).is_none(),
            "not ours"
        );
        assert!(
            route("POST", "/callahead/purge", "all=1", Some(&bridge)).is_none(),
            "not ours"
        );
        drop(bridge);
        shard.join().unwrap();
    }

    #[test]
    fn no_bridge_or_no_answer_is_503_never_a_hang() {
        assert_eq!(
            route("POST", "/ldap/purge", "all=1", None).unwrap().status,
            503
        );
        let (bridge, _inbox) = channel_with_timeout(1, Duration::from_millis(50));
        let unanswered = route("POST", "/ldap/purge", "all=1", Some(&bridge)).unwrap();
        assert_eq!(unanswered.status, 503);
        assert!(
            unanswered.body.contains("no shard answered in time"),
            "{}",
            unanswered.body
        );
        let busy = route("POST", "/ldap/purge", "all=1", Some(&bridge)).unwrap();
        assert!(
            busy.body.contains("too many admin requests"),
            "the one slot is still taken: {}",
            busy.body
        );
        assert_eq!(
            route("POST", "/ldap/purge", "bogus=1", Some(&bridge))
                .unwrap()
                .status,
            400,
            "checked before the bridge"
        );
    }
}
