//! The shard context: everything one shard owns, in one place, handed by
//! reference to the listener, the connections and intake. Lives on its
//! executor; never crosses threads (what is shared between shards is an
//! `Arc` of an atomic, named as such).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use glommio::TaskQueueHandle;

use crate::callahead::Callahead;
use crate::config::{PolicyCell, Settings};
use crate::delivery::Delivery;
use crate::ldap::lookup::Lookups;
use crate::dns::Resolver;
use crate::metrics::Metrics;
use crate::policy::rate::Counters;
use crate::maillog::MailLog;
use crate::shards::Mesh;
use crate::spool::Spool;

/// The glommio task queues of a shard. Sessions, spool commits and
/// delivery get their own shares of the CPU, so a delivery backlog cannot
/// slow the 250s and a busy client cannot starve the spool.
#[derive(Clone, Copy, Debug)]
pub struct TaskQueues {
    /// Client connections (the SMTP server side).
    pub sessions: TaskQueueHandle,
    /// Delivery jobs and their downstream connections.
    pub delivery: TaskQueueHandle,
    /// The spool's group committer: the 250s wait for it.
    pub spool: TaskQueueHandle,
}

pub struct Shard {
    pub settings: Arc<Settings>,
    /// The current policy; a connection takes `policy.current()` once.
    pub policy: Rc<PolicyCell>,
    pub mesh: Rc<Mesh>,
    pub spool: Rc<Spool>,
    pub delivery: Rc<Delivery>,
    pub log: Rc<MailLog>,
    /// This shard's DNS resolver and cache.
    pub resolver: Rc<Resolver>,
    /// The appliance-wide rate counters (this shard's part, and its leases).
    pub counters: Rc<Counters>,
    /// This shard's metrics (the admin listener sums every shard's).
    pub metrics: Arc<Metrics>,
    /// Call-ahead: the verdict caches of the domains this shard owns and
    /// the probe pools of the servers it owns.
    pub callahead: Rc<Callahead>,
    /// LDAP: the cached answers for the keys this shard owns, and the way
    /// to the LDAP thread.
    pub ldap: Rc<Lookups>,
    pub queues: TaskQueues,
    /// Open connections on all shards (max_connections is global and exact).
    pub connections: Arc<AtomicUsize>,
    /// Open connections on this shard.
    pub active: Cell<usize>,
    next_connection: Cell<u64>,
    /// Closed when the shutdown grace is over: sessions still open answer 421.
    pub shutdown: glommio::sync::Semaphore,
    /// This shard's copies of the TLS server configs (own session caches).
    pub tls: crate::tls::ShardTls,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Arc<Settings>,
        policy: Rc<PolicyCell>,
        mesh: Rc<Mesh>,
        spool: Rc<Spool>,
        delivery: Rc<Delivery>,
        log: Rc<MailLog>,
        services: (Rc<Resolver>, Rc<Counters>, Arc<Metrics>, Rc<Callahead>, Rc<Lookups>),
        queues: TaskQueues,
        connections: Arc<AtomicUsize>,
    ) -> Shard {
        let (resolver, counters, metrics, callahead, ldap) = services;
        Shard {
            settings,
            policy,
            mesh,
            spool,
            delivery,
            log,
            resolver,
            callahead,
            ldap,
            counters,
            metrics,
            queues,
            connections,
            active: Cell::new(0),
            next_connection: Cell::new(0),
            shutdown: glommio::sync::Semaphore::new(0),
            tls: crate::tls::ShardTls::default(),
        }
    }

    /// "C" + shard + sequence, unique within this run and readable in logs.
    pub fn next_connection_id(&self) -> String {
        let n = self.next_connection.get();
        self.next_connection.set(n + 1);
        format!("C{}-{n}", self.mesh.id())
    }
}
