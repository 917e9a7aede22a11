//! LDAP routing and accept queries (issue 8; seed "Configuring LDAP
//! Routing Query Settings").
//!
//! Built so far, pure and not wired: `filter`, the query strings with
//! `{a}`/`{u}`/`{d}` filled in and RFC 4515-escaped; `hosts`, the
//! `mailHost`/`callAhead` values read into hosts with the seed's list
//! port (`routing::resolve_hosts` turns them into addresses). To come: the ldap3
//! client on its own thread, the routing and accept queries, their cache
//! on the key's owner shard, `portcullis ldap test`.

pub mod filter;
pub mod hosts;
