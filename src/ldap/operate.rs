//! The operator's hands on the LDAP answer cache (issue 8 item 5):
//! `portcullis ldap purge` and `POST /ldap/purge`, through the admin
//! listener's bridge (`admin::ldap` → `admin::bridge` → here).
//!
//! Where it sits: a query's answers live on the owner shards of their keys
//! (`lookup`), and a key (a domain or an address) says nothing about which
//! query names it, so a purge asks every shard at once (`LdapPurge`, which
//! `Lookups::serve` registers on each) and adds up what they dropped.

use crate::ldap::lookup::LdapPurge;
use crate::shards::{join_all, Mesh, ShardGone};

/// Drop the cached answers of `query` ("" = every query's) on every shard,
/// concurrently: how many. One shard that does not answer fails the whole
/// purge (the operator must know that some answers may still be cached).
pub async fn purge_everywhere(mesh: &Mesh, query: &str) -> Result<usize, ShardGone> {
    let asks = (0..mesh.shards()).map(|shard| {
        mesh.ask(
            shard,
            LdapPurge {
                query: query.to_string(),
            },
        )
    });
    let mut total = 0;
    for purged in join_all(asks.collect()).await {
        total += purged?;
    }
    Ok(total)
}
