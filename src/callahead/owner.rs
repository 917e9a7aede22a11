//! The owner shard of a recipient domain answers validation requests for
//! it: from its cache partition, or by one probe however many sessions (on
//! any shard) ask for the same address at once (single flight).
//!
//! Order on a miss: the probe budget of the client IP (an appliance-wide
//! counter, so a dictionary attack cannot become a flood downstream), the
//! domain's catch-all status (one random-local-part probe per domain per
//! cache TTL), then the servers — the domain's route or the static list,
//! round robin — each asked through its owner shard's probe pool until one
//! gives an answer about the recipient, all within the request's deadline.
//! Only "accepted" and "mailbox unknown" are cached; a positive hit late in
//! its TTL, or a negative one past its recheck interval, is answered from
//! the cache and probed again in the background.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use hashbrown::HashMap;

use super::cache::{Cached, Lookup, VerdictCache};
use super::connection::ProbeTlsSetup;
use super::pool::{ProbePool, ProbeRequest};
use super::profile::Servers;
use super::verdict::{of_fault, Stage, Verdict};
use super::Profile;
use crate::config::PolicyCell;
use crate::dns::Resolver;
use crate::limits::{CALLAHEAD_IN_FLIGHT_MAX, CALLAHEAD_TIMEOUT_SECS_MAX};
use crate::message::domain_of;
use crate::metrics::Metrics;
use crate::policy::rate::Counters;
use crate::ldap::hosts::LdapHost;
use crate::routing::{self, RouteError};
use crate::shards::{Mesh, ShardRequest};

/// Validate `address` (sent to the owner shard of its domain).
#[derive(Debug)]
pub struct Validate {
    pub profile: Arc<Profile>,
    pub address: String,
    pub client_ip: IpAddr,
    pub deadline: Instant,
    /// The hosts an LDAP routing query gave for the recipient (its
    /// `callAhead`, else its `mailHost`); empty = the domain's route.
    pub hosts: Vec<LdapHost>,
}

impl ShardRequest for Validate {
    type Reply = Resolution;
    fn timeout() -> Duration {
        Duration::from_secs(CALLAHEAD_TIMEOUT_SECS_MAX + 10)
    }
}

/// Where a verdict came from (the log line and the metrics say it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Cache,
    Probe,
    Breaker,
    Budget,
    CatchAll,
    Bypass,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Probe => "probe",
            Source::Breaker => "breaker",
            Source::Budget => "budget",
            Source::CatchAll => "catch-all",
            Source::Bypass => "bypass",
        }
    }
}

/// The owner's answer.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub verdict: Verdict,
    pub source: Source,
    /// The server that answered (or was last tried).
    pub server: Option<SocketAddr>,
    /// The shard that owns the domain.
    pub shard: usize,
    /// "TLSv1.3/CIPHER" when the answering probe ran over TLS.
    pub tls: Option<String>,
}

/// One shard's call-ahead state: the cache partitions of the domains it
/// owns and the probe pool of the servers it owns.
pub struct Callahead {
    mesh: Rc<Mesh>,
    resolver: Rc<Resolver>,
    counters: Rc<Counters>,
    policy: Rc<PolicyCell>,
    pub pool: Rc<ProbePool>,
    /// This shard's metrics (cache lookups here, probes in the pool).
    pub(super) metrics: Arc<Metrics>,
    /// Per profile name.
    pub(super) caches: RefCell<HashMap<String, VerdictCache>>,
    /// Addresses being probed ("profile\0address") and who waits for them.
    in_flight: RefCell<HashMap<String, Vec<oneshot::Sender<Resolution>>>>,
    /// "profile\0domain" → (accepts everything, until when).
    catch_all: RefCell<lru::LruCache<String, (bool, u64)>>,
    /// Next static server per profile.
    rotation: RefCell<HashMap<String, usize>>,
    epoch: Instant,
}

impl Callahead {
    pub fn new(mesh: Rc<Mesh>, resolver: Rc<Resolver>, counters: Rc<Counters>, policy: Rc<PolicyCell>, helo_name: &str, metrics: Arc<Metrics>) -> Rc<Callahead> {
        Rc::new(Callahead {
            mesh,
            resolver,
            counters,
            policy,
            pool: ProbePool::new(helo_name, metrics.clone()),
            metrics,
            caches: RefCell::new(HashMap::new()),
            in_flight: RefCell::new(HashMap::new()),
            catch_all: RefCell::new(lru::LruCache::new(NonZeroUsize::new(CALLAHEAD_IN_FLIGHT_MAX).expect("not zero"))),
            rotation: RefCell::new(HashMap::new()),
            epoch: Instant::now(),
        })
    }

    /// Milliseconds on this shard's cache clock (the cache is pure: time is passed in).
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn resolution(&self, verdict: Verdict, source: Source, server: Option<SocketAddr>) -> Resolution {
        Resolution { verdict, source, server, shard: self.mesh.id(), tls: None }
    }

    /// Answer a validation request for a domain this shard owns.
    pub async fn validate(self: &Rc<Self>, request: Validate) -> Resolution {
        let profile = &request.profile;
        let key = request.address.to_ascii_lowercase();
        let lookup = self.with_cache(profile, |cache, now| cache.lookup(&key, &profile.ttls, now));
        self.metrics.callahead_cache_lookup(matches!(lookup, Lookup::Hit { .. }));
        if let Lookup::Hit { verdict, reprobe, .. } = lookup {
            if reprobe {
                self.start_probe(&request, &key, true);
            }
            return self.resolution(verdict.into(), Source::Cache, None);
        }
        let flight = flight_key(profile, &key);
        let (tell, answer) = oneshot::channel();
        let first = {
            let mut in_flight = self.in_flight.borrow_mut();
            match in_flight.get_mut(&flight) {
                Some(waiters) => {
                    waiters.push(tell);
                    false
                }
                None => {
                    in_flight.insert(flight.clone(), vec![tell]);
                    true
                }
            }
        };
        if first {
            match self.refuse_new_probe(&request).await {
                // Whoever joined meanwhile shares the refusal (a budget is per client, so rarely anyone).
                Some(refusal) => self.answer_waiters(&flight, &refusal),
                None => self.start_probe(&request, &key, false),
            }
        }
        answer.await.unwrap_or_else(|_| self.resolution(of_fault(Stage::Connect, "validation abandoned"), Source::Probe, None))
    }

    /// A new probe may not start: the single-flight table is full, or the
    /// client IP has spent its probe budget.
    async fn refuse_new_probe(&self, request: &Validate) -> Option<Resolution> {
        if self.in_flight.borrow().len() > CALLAHEAD_IN_FLIGHT_MAX {
            let why = format!("{CALLAHEAD_IN_FLIGHT_MAX} validations already in progress on this shard");
            return Some(self.resolution(of_fault(Stage::Connect, why), Source::Probe, None));
        }
        let budget = request.profile.probes_per_client_per_minute;
        if budget > 0 {
            let key = format!("ca-probes:{}:{}", request.profile.name, request.client_ip);
            if self.counters.take(&key, budget, 60).await.is_err() {
                let why = format!("client {} spent its probe budget of {budget} per minute", request.client_ip);
                return Some(self.resolution(of_fault(Stage::Connect, why), Source::Budget, None));
            }
        }
        None
    }

    /// Probe in a task of its own (a waiter that gives up does not stop it)
    /// and answer everyone waiting for the address. `background`: a
    /// re-probe nobody waits for, skipped if a probe is already out.
    fn start_probe(self: &Rc<Self>, request: &Validate, key: &str, background: bool) {
        let flight = flight_key(&request.profile, key);
        if background {
            let mut in_flight = self.in_flight.borrow_mut();
            if in_flight.contains_key(&flight) || in_flight.len() >= CALLAHEAD_IN_FLIGHT_MAX {
                return;
            }
            in_flight.insert(flight.clone(), Vec::new());
        }
        let this = self.clone();
        let (profile, address, deadline, hosts) = (request.profile.clone(), request.address.clone(), request.deadline, request.hosts.clone());
        let key = key.to_string();
        glommio::spawn_local(async move {
            let budget = deadline.saturating_duration_since(Instant::now());
            let resolution = match glommio::timer::timeout(budget, async { Ok(this.probe(&profile, &address, &hosts, deadline).await) }).await {
                Ok(resolution) => resolution,
                Err(_) => this.resolution(of_fault(Stage::Rcpt, format!("validation timed out after {} ms", budget.as_millis())), Source::Probe, None),
            };
            if let Ok(cached) = Cached::try_from(&resolution.verdict) {
                if resolution.source == Source::Probe {
                    this.with_cache(&profile, |cache, now| cache.store(&key, cached, &profile.ttls, now));
                }
            }
            this.answer_waiters(&flight, &resolution);
        })
        .detach();
    }

    fn answer_waiters(&self, flight: &str, resolution: &Resolution) {
        for waiter in self.in_flight.borrow_mut().remove(flight).unwrap_or_default() {
            let _ = waiter.send(resolution.clone());
        }
    }

    /// The probe itself: catch-all first when enabled, then the servers in order.
    async fn probe(&self, profile: &Arc<Profile>, address: &str, ldap_hosts: &[LdapHost], deadline: Instant) -> Resolution {
        let domain = domain_of(address);
        let servers = match self.servers(profile, &domain, ldap_hosts).await {
            Ok(servers) => servers,
            Err(verdict) => return self.resolution(verdict, Source::Probe, None),
        };
        if profile.catch_all_detection && self.is_catch_all(profile, &domain, &servers, deadline).await {
            return self.resolution(Verdict::Accepted(crate::smtp::Reply::new(250, "2.1.5", "catch-all domain")), Source::CatchAll, None);
        }
        self.ask_servers(profile, address, &servers, deadline).await
    }

    /// Ask each server in turn until one says something about the
    /// recipient (a failure moves on to the next).
    async fn ask_servers(&self, profile: &Arc<Profile>, address: &str, servers: &[SocketAddr], deadline: Instant) -> Resolution {
        let mut last = self.resolution(of_fault(Stage::Connect, "no server to ask"), Source::Probe, None);
        let tls = self.probe_tls(profile);
        for &server in servers {
            let request = ProbeRequest { server, profile: profile.clone(), address: address.to_string(), deadline, tls: tls.clone() };
            let probed = match self.mesh.ask_owner(&server.to_string(), request).await {
                Ok(probed) => probed,
                Err(gone) => super::pool::Probed { verdict: of_fault(Stage::Connect, format!("{server}: {gone}")), by_breaker: false, tls: None },
            };
            let source = if probed.by_breaker { Source::Breaker } else { Source::Probe };
            last = self.resolution(probed.verdict, source, Some(server));
            last.tls = probed.tls;
            if !last.verdict.is_server_failure() {
                break;
            }
        }
        last
    }

    /// STARTTLS as the profile wants it, with this snapshot's probe config
    /// (none if it could not be built: `required` then fails, `preferred`
    /// stays in clear).
    fn probe_tls(&self, profile: &Profile) -> ProbeTlsSetup {
        let config = match profile.tls {
            crate::smtp::client::StartTls::Off => None,
            _ => self.policy.current().outbound_tls.probe().ok(),
        };
        ProbeTlsSetup { mode: profile.tls, config }
    }

    /// Does the domain's server accept a random local part? Asked once per
    /// domain per positive cache TTL.
    async fn is_catch_all(&self, profile: &Arc<Profile>, domain: &str, servers: &[SocketAddr], deadline: Instant) -> bool {
        let key = flight_key(profile, domain);
        let now = self.now_ms();
        if let Some(&(accepts, until)) = self.catch_all.borrow_mut().get(&key) {
            if now < until {
                return accepts;
            }
        }
        let random = format!("portcullis-catch-all-{:016x}@{domain}", rand::random::<u64>());
        let answer = self.ask_servers(profile, &random, servers, deadline).await;
        if answer.verdict.is_server_failure() || matches!(answer.verdict, Verdict::TempFail(_)) {
            return false; // unknown: ask again next time
        }
        let accepts = matches!(answer.verdict, Verdict::Accepted(_));
        self.catch_all.borrow_mut().put(key, (accepts, now + profile.ttls.positive_ms));
        accepts
    }

    /// The servers to probe for `domain`, in the order to try them: the
    /// hosts of its LDAP routing entry (with the seed's port rules), else
    /// its route (SMTP routes, MX, A), or the static list
    /// resolved MX then A, rotated one further per probe (round robin
    /// from the first). A null MX refuses the recipient (RFC 7505).
    async fn servers(&self, profile: &Profile, domain: &str, ldap_hosts: &[LdapHost]) -> Result<Vec<SocketAddr>, Verdict> {
        let resolved = match &profile.servers {
            Servers::DeliveryHost if !ldap_hosts.is_empty() => routing::resolve_hosts(ldap_hosts, &self.policy.current().routes, &self.resolver).await,
            Servers::DeliveryHost => routing::resolve(domain, &self.policy.current().routes, &self.resolver).await,
            Servers::Static(list) => routing::resolve_static(list, &self.resolver).await.map(|mut servers| {
                let mut rotation = self.rotation.borrow_mut();
                let next = rotation.entry(profile.name.clone()).or_insert(0);
                let start = *next % servers.len().max(1);
                servers.rotate_left(start);
                *next = next.wrapping_add(1);
                servers
            }),
        };
        match resolved {
            Ok(servers) if !servers.is_empty() => Ok(servers),
            Ok(_) => Err(of_fault(Stage::Connect, format!("no address to probe for {domain}"))),
            Err(RouteError::NullMx) => Err(Verdict::RecipientRefused(RouteError::NullMx.reply())),
            Err(e) => Err(of_fault(Stage::Connect, format!("cannot route {domain}: {e}"))),
        }
    }

    /// Run `f` on `profile`'s cache partition (made, or resized, to the profile).
    fn with_cache<R>(&self, profile: &Profile, f: impl FnOnce(&mut VerdictCache, u64) -> R) -> R {
        let now = self.now_ms();
        let mut caches = self.caches.borrow_mut();
        let cache = caches.entry(profile.name.clone()).or_insert_with(|| VerdictCache::new(profile.cache_entries));
        cache.resize(profile.cache_entries);
        f(cache, now)
    }

    /// Register this shard's handlers: validations for the domains it owns,
    /// probes for the servers it owns.
    pub fn serve(self: &Rc<Self>, mesh: &Mesh) {
        let this = Rc::downgrade(self);
        mesh.handle(move |request: Validate| {
            let this = this.upgrade();
            async move {
                match this {
                    Some(this) => this.validate(request).await,
                    None => Resolution { verdict: of_fault(Stage::Connect, "shard stopping"), source: Source::Probe, server: None, shard: usize::MAX, tls: None },
                }
            }
        });
        let pool = Rc::downgrade(&self.pool);
        mesh.handle(move |request: ProbeRequest| {
            let pool = pool.upgrade();
            async move {
                match pool {
                    Some(pool) => pool.probe(request).await,
                    None => super::pool::Probed { verdict: of_fault(Stage::Connect, "shard stopping"), by_breaker: false, tls: None },
                }
            }
        });
        self.serve_operations(mesh);
    }

    /// Entries cached on this shard, all profiles.
    pub fn cached(&self) -> usize {
        self.caches.borrow().values().map(VerdictCache::len).sum()
    }
}

fn flight_key(profile: &Profile, key: &str) -> String {
    format!("{}\0{key}", profile.name)
}

impl From<Cached> for Verdict {
    fn from(cached: Cached) -> Verdict {
        match cached {
            Cached::Accepted(reply) => Verdict::Accepted(reply),
            Cached::MailboxUnknown(reply) => Verdict::MailboxUnknown(reply),
        }
    }
}

impl TryFrom<&Verdict> for Cached {
    type Error = ();
    fn try_from(verdict: &Verdict) -> Result<Cached, ()> {
        match verdict {
            Verdict::Accepted(reply) => Ok(Cached::Accepted(reply.clone())),
            Verdict::MailboxUnknown(reply) => Ok(Cached::MailboxUnknown(reply.clone())),
            _ => Err(()),
        }
    }
}
