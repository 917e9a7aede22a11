//! LDAP routing and accept queries (issue 8; seed "Configuring LDAP
//! Routing Query Settings").
//!
//! Built so far, not wired: `filter`, the query strings with
//! `{a}`/`{u}`/`{d}` filled in and RFC 4515-escaped; `client`, the ldap3
//! client on its own thread (`Directory::search` from any shard). To
//! come: the routing and accept queries, their cache on the key's owner
//! shard, `portcullis ldap test`.

pub mod client;
pub mod filter;
