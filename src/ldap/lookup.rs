//! LDAP lookups, on the owner shard of their key: the cache (answers for
//! `cache_ttl_secs`, least recently used evicted past
//! `LDAP_CACHE_ENTRIES`), single flight (every shard asking for one key at
//! once shares one search), and the call to the LDAP thread.
//!
//! The key is the recipient's domain when the filter uses only `{d}`, else
//! the address (`Query::key`), so a domain's LDAP answer lives on the same
//! shard as its call-ahead verdicts and its delivery queue. An entry and
//! "no entry" are both cached; a failure never is (the next lookup asks
//! again). Whatever goes wrong — the LDAP thread's queue full, the thread
//! gone, the server down, a timeout, the owner shard gone — the answer is
//! `Err(reason)`: a temporary failure the caller turns into its failure
//! action or a deferral. Nothing here blocks a shard.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use hashbrown::HashMap;

use super::client::{Directory, Entry};
use super::Query;
use crate::limits::{LDAP_ANSWER_SLACK_MS, LDAP_CACHE_ENTRIES, LDAP_IN_FLIGHT_MAX, LDAP_TIMEOUT_SECS_MAX};
use crate::metrics::Metrics;
use crate::shards::{Mesh, ShardRequest};

/// An entry, or none; Err: the directory could not be asked (temporary).
pub type Answer = Result<Option<Arc<Entry>>, String>;

/// Look `address` up with `query` (sent to the owner shard of its key).
#[derive(Debug)]
pub struct LdapLookup {
    pub query: Arc<Query>,
    pub address: String,
}

impl ShardRequest for LdapLookup {
    type Reply = Looked;
    fn timeout() -> Duration {
        Duration::from_secs(LDAP_TIMEOUT_SECS_MAX) + Duration::from_millis(LDAP_ANSWER_SLACK_MS)
    }
}

/// The owner's answer and where it came from.
#[derive(Clone, Debug)]
pub struct Looked {
    pub answer: Answer,
    /// From the cache (no search).
    pub cached: bool,
    /// The shard that owns the key.
    pub shard: usize,
    /// The filter as sent (escaped), for the log and `ldap test`.
    pub filter: String,
}

/// Drop `query`'s cached answers ("" = every query's) on the shard it is sent to.
#[derive(Debug)]
pub struct LdapPurge {
    pub query: String,
}

impl ShardRequest for LdapPurge {
    type Reply = usize;
    /// A map walk on the shard: longer means it is stuck (the admin gives up at 3 s anyway).
    fn timeout() -> Duration {
        Duration::from_millis(crate::limits::CALLAHEAD_OPERATION_TIMEOUT_MS)
    }
}

/// One shard's part: the answers for the keys it owns.
pub struct Lookups {
    directory: Directory,
    mesh: Rc<Mesh>,
    metrics: Arc<Metrics>,
    /// "query\0fingerprint\0key" → (expires at, ms on `epoch`; the answer).
    cache: RefCell<lru::LruCache<String, (u64, Option<Arc<Entry>>)>>,
    /// "query\0fingerprint\0key" being searched, and who waits for it.
    in_flight: RefCell<HashMap<String, Vec<oneshot::Sender<Looked>>>>,
    epoch: Instant,
}

impl Lookups {
    pub fn new(directory: Directory, mesh: Rc<Mesh>, metrics: Arc<Metrics>) -> Rc<Lookups> {
        Rc::new(Lookups {
            directory,
            mesh,
            metrics,
            cache: RefCell::new(lru::LruCache::new(NonZeroUsize::new(LDAP_CACHE_ENTRIES).expect("not zero"))),
            in_flight: RefCell::new(HashMap::new()),
            epoch: Instant::now(),
        })
    }

    /// Look `address` up, from any shard: asks the key's owner, within the
    /// server's timeout plus slack.
    pub async fn lookup(&self, query: &Arc<Query>, address: &str) -> Looked {
        let request = LdapLookup { query: query.clone(), address: address.to_string() };
        let wait = query.server.timeout + Duration::from_millis(LDAP_ANSWER_SLACK_MS);
        let asked = async { Ok(self.mesh.ask_owner(&query.key(address), request).await) };
        let failed = |why: String| Looked { answer: Err(why), cached: false, shard: usize::MAX, filter: query.template.fill(address) };
        match glommio::timer::timeout(wait, asked).await {
            Ok(Ok(looked)) => looked,
            Ok(Err(gone)) => failed(format!("the key's owner shard did not answer: {gone}")),
            Err(_) => failed(format!("LDAP lookup timed out after {} ms", wait.as_millis())),
        }
    }

    /// On the owner: the cached answer, or one search shared by everyone asking meanwhile.
    async fn answer(self: &Rc<Self>, request: LdapLookup) -> Looked {
        let query = &request.query;
        let filter = query.template.fill(&request.address);
        let slot = format!("{}\0{:x}\0{}", query.name, query.fingerprint, query.key(&request.address));
        let now = self.now_ms();
        let hit = {
            let mut cache = self.cache.borrow_mut();
            match cache.get(&slot) {
                Some((expires, entry)) if *expires > now => Some(entry.clone()),
                Some(_) => {
                    cache.pop(&slot);
                    None
                }
                None => None,
            }
        };
        if let Some(entry) = hit {
            self.metrics.ldap_lookup("hit");
            return Looked { answer: Ok(entry), cached: true, shard: self.mesh.id(), filter };
        }
        let (tell, answer) = oneshot::channel();
        let first = {
            let mut in_flight = self.in_flight.borrow_mut();
            if in_flight.len() >= LDAP_IN_FLIGHT_MAX && !in_flight.contains_key(&slot) {
                drop(in_flight);
                self.metrics.ldap_lookup("error");
                let why = format!("{LDAP_IN_FLIGHT_MAX} LDAP lookups already waiting on this shard");
                return Looked { answer: Err(why), cached: false, shard: self.mesh.id(), filter };
            }
            let waiters = in_flight.entry(slot.clone()).or_default();
            waiters.push(tell);
            waiters.len() == 1
        };
        match first {
            true => self.start_search(query.clone(), slot, filter.clone()),
            // Joined a search in flight: counted, the search itself counts once.
            false => self.metrics.ldap_lookup("shared"),
        }
        answer.await.unwrap_or_else(|_| Looked { answer: Err("LDAP lookup abandoned".into()), cached: false, shard: self.mesh.id(), filter })
    }

    /// Search in a task of its own (a waiter that gives up does not stop
    /// it), cache what it finds, answer everyone waiting.
    fn start_search(self: &Rc<Self>, query: Arc<Query>, slot: String, filter: String) {
        let this = self.clone();
        glommio::spawn_local(async move {
            let started = Instant::now();
            let search = this.directory.search(&query.server, filter.clone(), query.attributes());
            let wait = query.server.timeout + Duration::from_millis(LDAP_ANSWER_SLACK_MS);
            let answer: Answer = match glommio::timer::timeout(wait, async { Ok(search.await) }).await {
                Ok(Ok(entry)) => Ok(entry.map(Arc::new)),
                Ok(Err(why)) => Err(why),
                Err(_) => Err(format!("LDAP server {} did not answer within {} ms", query.server.name, wait.as_millis())),
            };
            this.metrics.ldap_query_latency(started.elapsed());
            this.metrics.ldap_lookup(match &answer {
                Ok(Some(_)) => "entry",
                Ok(None) => "no-entry",
                Err(_) => "error",
            });
            if let Ok(entry) = &answer {
                if !query.cache_ttl.is_zero() {
                    let expires = this.now_ms() + query.cache_ttl.as_millis() as u64;
                    this.cache.borrow_mut().put(slot.clone(), (expires, entry.clone()));
                    this.metrics.set_ldap_cache_entries(this.cached());
                }
            }
            let looked = Looked { answer, cached: false, shard: this.mesh.id(), filter };
            for waiter in this.in_flight.borrow_mut().remove(&slot).unwrap_or_default() {
                let _ = waiter.send(looked.clone());
            }
        })
        .detach();
    }

    /// Drop the cached answers of `query` ("" = all) on this shard.
    pub fn purge(&self, query: &str) -> usize {
        let purged = self.purge_cache(query);
        self.metrics.set_ldap_cache_entries(self.cached());
        purged
    }

    fn purge_cache(&self, query: &str) -> usize {
        let mut cache = self.cache.borrow_mut();
        if query.is_empty() {
            let n = cache.len();
            cache.clear();
            return n;
        }
        let prefix = format!("{query}\0");
        let doomed: Vec<String> = cache.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
        doomed.iter().for_each(|k| {
            cache.pop(k);
        });
        doomed.len()
    }

    /// Answers cached on this shard.
    pub fn cached(&self) -> usize {
        self.cache.borrow().len()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Register this shard's handlers: lookups for the keys it owns, purges.
    pub fn serve(self: &Rc<Self>, mesh: &Mesh) {
        let this = Rc::downgrade(self);
        mesh.handle(move |request: LdapLookup| {
            let this = this.upgrade();
            async move {
                match this {
                    Some(this) => this.answer(request).await,
                    None => Looked { answer: Err("shard stopping".into()), cached: false, shard: usize::MAX, filter: String::new() },
                }
            }
        });
        let this = Rc::downgrade(self);
        mesh.handle(move |request: LdapPurge| {
            let purged = this.upgrade().map_or(0, |this| this.purge(&request.query));
            async move { purged }
        });
    }
}
