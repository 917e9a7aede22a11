//! The operator's hands on the call-ahead cache (issue 7 item 9): what is
//! cached for an address, and purging an address, a domain or everything
//! (`portcullis callahead query|purge`, through the admin listener's bridge).
//!
//! Where it sits: the verdicts of a domain live only on the domain's owner
//! shard (`owner.rs`), one partition per profile, so a query or a purge of
//! an address or a domain is one shard request to that owner, which looks
//! in every profile's partition; a purge of everything asks every shard.
//! A query peeks (`VerdictCache::peek`): it does not make an entry recently
//! used nor spend its refresh-ahead or recheck, so looking never changes
//! what the cache does next.
//!
//! This shard also publishes its call-ahead gauges (cache entries, open
//! probe connections, open breakers) once a second
//! (`limits::CALLAHEAD_GAUGES_MS`), so the admin thread reads them without
//! asking a shard.

use std::rc::{Rc, Weak};
use std::time::Duration;

use super::cache::Cached;
use super::owner::Callahead;
use crate::limits::{CALLAHEAD_GAUGES_MS, CALLAHEAD_OPERATION_TIMEOUT_MS};
use crate::message::domain_of;
use crate::metrics::ServerGauge;
use crate::shards::{join_all, Mesh, ShardGone, ShardRequest};

/// What is cached for `address` (sent to the owner shard of its domain).
#[derive(Debug)]
pub struct CacheQuery {
    pub address: String,
}

/// One profile's cached verdict for an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedEntry {
    /// The `[callahead.NAME]` profile whose partition holds it.
    pub profile: String,
    /// "accepted" | "mailbox-unknown" (the only verdicts ever cached).
    pub verdict: &'static str,
    /// The downstream's reply, as a hit returns it.
    pub reply: String,
    pub age_secs: u64,
    pub ttl_secs: u64,
    /// The shard that owns the domain (and holds the entry).
    pub shard: usize,
}

impl ShardRequest for CacheQuery {
    type Reply = Vec<CachedEntry>;
    fn timeout() -> Duration {
        Duration::from_millis(CALLAHEAD_OPERATION_TIMEOUT_MS)
    }
}

/// What to forget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PurgeTarget {
    Address(String),
    Domain(String),
    All,
}

/// Forget cached verdicts on the shard it is sent to (the owner of the
/// address's or domain's partition; every shard for `All`): how many.
#[derive(Debug)]
pub struct CachePurge {
    pub what: PurgeTarget,
}

impl ShardRequest for CachePurge {
    type Reply = usize;
    fn timeout() -> Duration {
        Duration::from_millis(CALLAHEAD_OPERATION_TIMEOUT_MS)
    }
}

/// Ask the owner of `address`'s domain what it has cached for it, every
/// profile, sorted by profile name.
pub async fn query(mesh: &Mesh, address: &str) -> Result<Vec<CachedEntry>, ShardGone> {
    let address = address.to_ascii_lowercase();
    mesh.ask_owner(&domain_of(&address), CacheQuery { address })
        .await
}

/// Purge `what` where it lives: on the owner of the address's or domain's
/// partition, or on every shard (at once) for `All`. The count purged.
pub async fn purge(mesh: &Mesh, what: PurgeTarget) -> Result<usize, ShardGone> {
    match what {
        PurgeTarget::Address(address) => {
            let address = address.to_ascii_lowercase();
            mesh.ask_owner(
                &domain_of(&address),
                CachePurge {
                    what: PurgeTarget::Address(address),
                },
            )
            .await
        }
        PurgeTarget::Domain(domain) => {
            let domain = domain.to_ascii_lowercase();
            mesh.ask(
                mesh.owner(&domain),
                CachePurge {
                    what: PurgeTarget::Domain(domain),
                },
            )
            .await
        }
        PurgeTarget::All => {
            let asks = (0..mesh.shards()).map(|shard| {
                mesh.ask(
                    shard,
                    CachePurge {
                        what: PurgeTarget::All,
                    },
                )
            });
            let mut total = 0;
            for counted in join_all(asks.collect()).await {
                total += counted?;
            }
            Ok(total)
        }
    }
}

impl Callahead {
    /// Register the operator's requests on this shard and start publishing
    /// its gauges. Called from `Callahead::serve`.
    pub fn serve_operations(self: &Rc<Self>, mesh: &Mesh) {
        let (this, shard) = (Rc::downgrade(self), mesh.id());
        mesh.handle(move |request: CacheQuery| {
            let entries = this.upgrade().map_or_else(Vec::new, |this| {
                this.cached_entries(&request.address, shard)
            });
            async move { entries }
        });
        let this = Rc::downgrade(self);
        mesh.handle(move |request: CachePurge| {
            let purged = this
                .upgrade()
                .map_or(0, |this| this.purge_here(&request.what));
            async move { purged }
        });
        glommio::spawn_local(publish_gauges(Rc::downgrade(self))).detach();
    }

    /// This shard's entries for `address` (lower case), every profile;
    /// expired ones (not evicted yet) are not answers any more and left out.
    fn cached_entries(&self, address: &str, shard: usize) -> Vec<CachedEntry> {
        let now_ms = self.now_ms();
        let caches = self.caches.borrow();
        let mut entries: Vec<CachedEntry> = caches
            .iter()
            .filter_map(|(profile, cache)| {
                let (cached, age_ms, ttl_ms) = cache.peek(address, now_ms)?;
                (age_ms < ttl_ms).then(|| entry(profile, cached, age_ms, ttl_ms, shard))
            })
            .collect();
        entries.sort_by(|a, b| a.profile.cmp(&b.profile));
        entries
    }

    /// Purge `what` from every profile partition on this shard.
    fn purge_here(&self, what: &PurgeTarget) -> usize {
        let mut caches = self.caches.borrow_mut();
        caches
            .values_mut()
            .map(|cache| match what {
                PurgeTarget::Address(address) => usize::from(cache.purge(address)),
                PurgeTarget::Domain(domain) => cache.purge_domain(domain),
                PurgeTarget::All => cache.purge_all(),
            })
            .sum()
    }

    /// This shard's gauges: its cache entries, and the open connections
    /// and open breakers of the servers it owns.
    fn publish_gauge_values(&self) {
        let servers = self.pool.servers();
        let open: usize = servers.iter().map(|(_, open, _)| open).sum();
        let breakers = servers
            .iter()
            .filter(|(_, _, breaker_open)| *breaker_open)
            .count();
        self.metrics
            .set_callahead_gauges(self.cached(), open, breakers);
        let per_server = servers
            .into_iter()
            .map(|(server, connections, breaker_open)| ServerGauge { server: server.to_string(), connections: connections as i64, breaker_open })
            .collect();
        self.metrics.set_callahead_servers(per_server);
    }
}

fn entry(profile: &str, cached: Cached, age_ms: u64, ttl_ms: u64, shard: usize) -> CachedEntry {
    let (verdict, reply) = match cached {
        Cached::Accepted(reply) => ("accepted", reply),
        Cached::MailboxUnknown(reply) => ("mailbox-unknown", reply),
    };
    CachedEntry {
        profile: profile.to_string(),
        verdict,
        reply: reply.to_string(),
        age_secs: age_ms / 1000,
        ttl_secs: ttl_ms / 1000,
        shard,
    }
}

/// Until the shard's `Callahead` is gone: set its gauges every
/// `CALLAHEAD_GAUGES_MS` (a scrape sees values at most that old).
async fn publish_gauges(callahead: Weak<Callahead>) {
    loop {
        match callahead.upgrade() {
            Some(callahead) => callahead.publish_gauge_values(),
            None => return,
        }
        glommio::timer::sleep(Duration::from_millis(CALLAHEAD_GAUGES_MS)).await;
    }
}

#[cfg(test)]
mod tests;
