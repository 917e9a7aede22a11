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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::shards::{wait_until, MeshPlan};

    /// Two shards whose `LdapPurge` handlers record the query asked and
    /// answer "purged shard id + 1" (shard 1 only with `both_serve`);
    /// shard 0 purges everywhere.
    fn purge_on_two_shards(
        query: &'static str,
        both_serve: bool,
    ) -> (Result<usize, ShardGone>, Vec<String>) {
        let plan = MeshPlan::new(2, Arc::new(AtomicBool::new(false)));
        let (asked, done) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let shards: Vec<_> = (0..2)
            .map(|id| {
                let (plan, asked, done) = (plan.clone(), asked.clone(), done.clone());
                glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                    .spawn(move || async move {
                        let mesh = Mesh::join(plan, id).await.unwrap();
                        if id == 0 || both_serve {
                            mesh.handle(move |purge: LdapPurge| {
                                asked.lock().unwrap().push(purge.query);
                                async move { id + 1 }
                            });
                        }
                        mesh.open();
                        if id == 0 {
                            let purged = purge_everywhere(&mesh, query).await;
                            done.store(true, Ordering::SeqCst);
                            return Some(purged);
                        }
                        // Serve until shard 0 has its answer.
                        wait_until(
                            Instant::now() + Duration::from_secs(30),
                            Duration::from_millis(5),
                            || done.load(Ordering::SeqCst),
                        )
                        .await;
                        None
                    })
                    .unwrap()
            })
            .collect();
        let purged = shards
            .into_iter()
            .filter_map(|s| s.join().unwrap())
            .next()
            .expect("shard 0 answers");
        let asked = asked.lock().unwrap().clone();
        (purged, asked)
    }

    #[test]
    fn every_shard_purges_and_the_counts_add_up() {
        let (purged, mut asked) = purge_on_two_shards("LDAP1.routing", true);
        assert_eq!(purged, Ok(1 + 2));
        asked.sort();
        assert_eq!(
            asked,
            ["LDAP1.routing", "LDAP1.routing"],
            "each shard asked once, with the name"
        );
    }

    #[test]
    fn a_shard_that_cannot_purge_fails_the_whole_purge() {
        let (purged, asked) = purge_on_two_shards("", false);
        assert!(
            matches!(purged, Err(ShardGone::NoHandler(1) | ShardGone::Stopped(1))),
            "{purged:?}"
        );
        assert_eq!(asked, [""], "shard 0 still purged its own");
    }
}
