//! LDAP routing and accept queries (seed "Configuring LDAP Routing Query
//! Settings"; ESA's LDAP Accept).
//!
//! The flow: a listener names a routing query (`ldap_routing`) and/or an
//! accept query (`ldap_accept`). At RCPT, the accept query runs after the
//! RAT and before call-ahead; the routing query gives call-ahead the
//! address to probe and its hosts, and delivery the address to deliver to
//! and its mail hosts. Every lookup goes to the owner shard of its key
//! (`lookup`: the domain when the filter uses only `{d}`, else the
//! address), which answers from its cache or asks the LDAP thread
//! (`client`: ldap3 on a tokio runtime of its own, off the shards).
//!
//! - `filter`: templates with `{a}`/`{u}`/`{d}`, RFC 4515-escaped;
//! - `hosts`: host lists (`host[:port]`, comma-separated) from entries;
//! - `query`: a compiled query and what its answer means;
//! - `client`: the LDAP thread and its connection pools;
//! - `lookup`: the owner shard's cache and single flight, and the call;
//! - `accept`: the accept query's decision at RCPT;
//! - `operate`: the operator's purge of the cache, on every shard.

pub mod accept;
pub mod client;
pub mod filter;
pub mod hosts;
pub mod lookup;
pub mod operate;
pub mod query;

pub use query::{Query, Route};
