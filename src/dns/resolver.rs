//! The per-shard resolver: cache, single flight, attempts over the
//! nameservers, and the typed lookups the policy and delivery call.
//!
//! A question goes: normalised name → cache (hit: done) → the query in
//! flight for the same (name, type), if any (await its outcome) → else a
//! new flight, run as its own task so an asker that gives up (the HAT
//! lookup bound) does not cancel the query for the others. The flight
//! tries `attempts` times, rotating over the nameservers, each attempt
//! bounded by `timeout_ms`; then it publishes the outcome to every waiter
//! and (unless it is a TempFail) to the cache.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use hashbrown::HashMap;
use hickory_proto::rr::{Name, RecordType};

use super::cache::Cache;
use super::transport::exchange;
use super::wire::{query_name, reverse_name, Outcome, Rdata, Records};
use super::{DnsSettings, Lookup, Mx};
use crate::limits::{DNS_CNAME_CHAIN_MAX, DNS_INFLIGHT_MAX};
use crate::metrics::Metrics;

/// Cache and flight key: the lower-case wire name, the type, and whether
/// the resolver's DNSSEC verdict was asked for (`secure`: DO and AD set).
/// The two kinds of answer are cached apart, so a plain answer never
/// stands in for an authenticated one.
type Key = (Name, RecordType, bool);

/// What a flight publishes to its askers and the cache.
#[derive(Clone, Debug)]
pub(super) struct Answer {
    pub lookup: Lookup<Records>,
    /// AD was set on every reply along the CNAME chain.
    pub authenticated: bool,
    /// The last attempt got SERVFAIL (bogus, from a validating resolver).
    pub servfail: bool,
}

/// One shard's resolver. Cheap to clone (an `Rc`); use it only on the
/// shard (glommio executor) that built it.
#[derive(Clone)]
pub struct Resolver {
    inner: Rc<Inner>,
}

struct Inner {
    servers: Vec<SocketAddr>,
    attempt_timeout: Duration,
    attempts: u32,
    cache: RefCell<Cache<Key, Answer>>,
    /// Waiters of each query in flight.
    flights: RefCell<HashMap<Key, Vec<oneshot::Sender<Answer>>>>,
    /// `[dns] trust_ad`: the servers validate DNSSEC and the path to them
    /// is trusted, so their AD bit means something (RFC 7672 §2.1.3).
    trust_ad: bool,
    metrics: Arc<Metrics>,
    network_queries: Cell<u64>,
}

impl Resolver {
    /// A resolver asking `nameservers` (from `DnsSettings::nameservers`)
    /// with the timeouts, attempts and cache size of `settings`.
    pub fn new(nameservers: Vec<SocketAddr>, settings: &DnsSettings, metrics: Arc<Metrics>) -> Resolver {
        let inner = Inner {
            servers: nameservers,
            attempt_timeout: Duration::from_millis(settings.timeout_ms),
            attempts: settings.attempts.max(1),
            cache: RefCell::new(Cache::new(settings.cache_entries)),
            flights: RefCell::new(HashMap::new()),
            trust_ad: settings.trust_ad,
            metrics,
            network_queries: Cell::new(0),
        };
        Resolver { inner: Rc::new(inner) }
    }

    /// IPv4 addresses of `name` (A records, CNAMEs followed).
    pub async fn ipv4(&self, name: &str) -> Lookup<Vec<Ipv4Addr>> {
        let records = self.lookup(name, RecordType::A).await;
        records.map(|rs| {
            rs.iter()
                .filter_map(|r| if let Rdata::V4(ip) = r { Some(*ip) } else { None })
                .collect()
        })
    }

    /// IPv6 addresses of `name` (AAAA records).
    pub async fn ipv6(&self, name: &str) -> Lookup<Vec<Ipv6Addr>> {
        let records = self.lookup(name, RecordType::AAAA).await;
        records.map(|rs| {
            rs.iter()
                .filter_map(|r| if let Rdata::V6(ip) = r { Some(*ip) } else { None })
                .collect()
        })
    }

    /// A and AAAA asked in parallel: Found (IPv4 first) if either has
    /// records; else TempFail if either failed temporarily; else NotFound.
    pub async fn addresses(&self, name: &str) -> Lookup<Vec<IpAddr>> {
        let (v4, v6) = futures_lite::future::zip(self.ipv4(name), self.ipv6(name)).await;
        match (v4, v6) {
            (Lookup::Found(v4), Lookup::Found(v6)) => {
                Lookup::Found(v4.into_iter().map(IpAddr::V4).chain(v6.into_iter().map(IpAddr::V6)).collect())
            }
            (Lookup::Found(v4), _) => Lookup::Found(v4.into_iter().map(IpAddr::V4).collect()),
            (_, Lookup::Found(v6)) => Lookup::Found(v6.into_iter().map(IpAddr::V6).collect()),
            (Lookup::TempFail(why), _) | (_, Lookup::TempFail(why)) => Lookup::TempFail(why),
            (Lookup::NotFound, Lookup::NotFound) => Lookup::NotFound,
        }
    }

    /// Mail exchangers of `name`, by preference (lowest first; equal
    /// preferences in the order of the answer, for the caller to shuffle
    /// as RFC 5321 §5.1 asks).
    pub async fn mx(&self, name: &str) -> Lookup<Vec<Mx>> {
        let records = self.lookup(name, RecordType::MX).await;
        records.map(|rs| {
            let mut mxs: Vec<Mx> = rs
                .iter()
                .filter_map(|r| if let Rdata::Mx(mx) = r { Some(mx.clone()) } else { None })
                .collect();
            mxs.sort_by_key(|mx| mx.preference);
            mxs
        })
    }

    /// Names of `ip` (PTR of its in-addr.arpa / ip6.arpa name), lower
    /// case, no trailing dot. Not forward-confirmed: that is the caller's.
    pub async fn ptr(&self, ip: IpAddr) -> Lookup<Vec<String>> {
        let records = self.lookup(&reverse_name(ip), RecordType::PTR).await;
        records.map(|rs| {
            rs.iter()
                .filter_map(|r| if let Rdata::Ptr(name) = r { Some(name.clone()) } else { None })
                .collect()
        })
    }

    /// TXT records of `name`, each one's strings joined.
    pub async fn txt(&self, name: &str) -> Lookup<Vec<String>> {
        let records = self.lookup(name, RecordType::TXT).await;
        records.map(|rs| {
            rs.iter()
                .filter_map(|r| if let Rdata::Txt(text) = r { Some(text.clone()) } else { None })
                .collect()
        })
    }

    /// Questions that went to the network (one per flight, however many
    /// attempts and askers it had), for tests and status.
    pub fn network_queries(&self) -> u64 {
        self.inner.network_queries.get()
    }

    /// Entries in this shard's cache.
    pub fn cached_entries(&self) -> usize {
        self.inner.cache.borrow().len()
    }

    /// Whether the AD bit of the configured servers is believed (`[dns]
    /// trust_ad`); without it no answer is ever `Secured::Secure`.
    pub fn trusts_ad(&self) -> bool {
        self.inner.trust_ad
    }

    /// A plain lookup (no DNSSEC bits asked), as every lookup but the
    /// `secure` ones.
    async fn lookup(&self, name: &str, rtype: RecordType) -> Lookup<Records> {
        self.answer(name, rtype, false).await.lookup
    }

    /// The cached answer, the flight in progress, or a new flight; `secure`
    /// asks for the resolver's DNSSEC verdict. A name that cannot be a
    /// domain name (empty or over-long label) does not exist: NotFound,
    /// without asking anyone.
    pub(super) async fn answer(&self, name: &str, rtype: RecordType, secure: bool) -> Answer {
        let Some(name) = query_name(name) else { return Answer::plain(Lookup::NotFound) };
        let key = (name, rtype, secure);
        if let Some(cached) = self.inner.cache.borrow_mut().get(&key, Instant::now()) {
            self.inner.metrics.dns_cache_hit(rtype_label(rtype));
            return cached;
        }
        let (sender, receiver) = oneshot::channel();
        let start_flight = {
            let mut flights = self.inner.flights.borrow_mut();
            if let Some(waiters) = flights.get_mut(&key) {
                waiters.push(sender);
                false
            } else if flights.len() >= DNS_INFLIGHT_MAX {
                return Answer::plain(Lookup::TempFail(format!(
                    "{DNS_INFLIGHT_MAX} DNS queries in flight on this shard"
                )));
            } else {
                flights.insert(key.clone(), vec![sender]);
                true
            }
        };
        if start_flight {
            glommio::spawn_local(Rc::clone(&self.inner).fly(key)).detach();
        }
        // The flight always answers (it is bounded by timeout × attempts);
        // a dropped sender means the executor is going away.
        receiver
            .await
            .unwrap_or_else(|_| Answer::plain(Lookup::TempFail("DNS query abandoned".into())))
    }
}

impl Answer {
    /// An answer made here, not by a server: nothing authenticated.
    fn plain(lookup: Lookup<Records>) -> Answer {
        Answer {
            lookup,
            authenticated: false,
            servfail: false,
        }
    }
}

impl Inner {
    /// Resolves `key` over the network and hands the outcome to its
    /// waiters and the cache.
    async fn fly(self: Rc<Self>, key: Key) {
        let started = Instant::now();
        let outcome = self.resolve(&key.0, key.1, key.2, started + self.query_bound()).await;
        self.network_queries.set(self.network_queries.get() + 1);
        self.metrics
            .dns_query(rtype_label(key.1), outcome.lookup.class(), started.elapsed());
        let answer = Answer {
            lookup: outcome.lookup,
            authenticated: outcome.authenticated,
            servfail: outcome.servfail,
        };
        if let Some(ttl) = outcome.ttl_secs {
            let ttl = Duration::from_secs(u64::from(ttl));
            self.cache
                .borrow_mut()
                .insert(key.clone(), answer.clone(), ttl, Instant::now());
        }
        let waiters = self.flights.borrow_mut().remove(&key).unwrap_or_default();
        for waiter in waiters {
            // An asker that gave up has dropped its receiver: fine.
            let _ = waiter.send(answer.clone());
        }
    }

    /// The whole of one question: timeout × attempts.
    fn query_bound(&self) -> Duration {
        self.attempt_timeout * self.attempts
    }

    /// Asks the network, and again for the end of a CNAME chain the server
    /// did not chase, all before `deadline`. The outcome's TTL is the
    /// smallest along the chain, and it is authenticated only when every
    /// reply along the chain was.
    async fn resolve(&self, name: &Name, rtype: RecordType, secure: bool, deadline: Instant) -> Outcome {
        let mut name = name.clone();
        let mut chain_ttl = u32::MAX;
        let mut chain_authenticated = true;
        for _ in 0..=DNS_CNAME_CHAIN_MAX {
            let mut outcome = self.query_network(&name, rtype, secure, deadline).await;
            outcome.ttl_secs = outcome.ttl_secs.map(|ttl| ttl.min(chain_ttl));
            chain_authenticated &= outcome.authenticated;
            outcome.authenticated = chain_authenticated;
            let Some(target) = outcome.alias.take() else { return outcome };
            chain_ttl = chain_ttl.min(outcome.ttl_secs.unwrap_or(0));
            name = target;
        }
        Outcome::temp_fail(format!("CNAME chain longer than {DNS_CNAME_CHAIN_MAX}"))
    }

    /// Up to `attempts` exchanges, rotating over the servers, each with a
    /// fresh random id and its own timeout, none past `deadline`. An
    /// answer (found or not) ends it; a failure (timeout, SERVFAIL,
    /// REFUSED, garbage) moves on to the next server, and the last failure
    /// is the outcome.
    async fn query_network(&self, name: &Name, rtype: RecordType, secure: bool, deadline: Instant) -> Outcome {
        if self.servers.is_empty() {
            return Outcome::temp_fail("no nameservers configured");
        }
        let mut last = Outcome::temp_fail("no time left for the query");
        for attempt in 0..self.attempts as usize {
            let server = self.servers[attempt % self.servers.len()];
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let deadline = deadline.min(now + self.attempt_timeout);
            last = match exchange(server, rand::random::<u16>(), name, rtype, secure, deadline).await {
                Ok(outcome) => outcome,
                Err(why) => Outcome::temp_fail(why),
            };
            if !matches!(last.lookup, Lookup::TempFail(_)) {
                break;
            }
        }
        last
    }
}

/// The metrics label of a record type: A | AAAA | MX | PTR | TXT | TLSA.
fn rtype_label(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::MX => "MX",
        RecordType::PTR => "PTR",
        RecordType::TXT => "TXT",
        RecordType::TLSA => "TLSA",
        _ => "other",
    }
}
