//! Delivery: on the shard whose spool holds the message (intake queues it
//! there; issue 10 item 1), send each message to its recipient domains'
//! hosts through the shard's pool, under the destination controls
//! (`controls`: connections and recipients per period, counted
//! appliance-wide by the destination's owner shard), retry what was
//! deferred, keep what was refused, and tell the spool which recipients
//! are finished.
//!
//! Order of attempts: each round starts by routing the domain
//! (`crate::routing`: SMTP route, else MX, else A/AAAA), then tries the
//! addresses in that order; a connection failure or a 4xx moves on to the
//! next address at once; when every address was tried, wait (capped
//! exponential backoff) and route again. A 5xx is final: the message is
//! kept in the failed area (bounces come later), and so is a domain that
//! cannot take mail (null MX: 556 5.1.10, RFC 7505 §3.2; not found: 550
//! 5.1.2). A DNS failure defers the round. Nothing is marked done before
//! the downstream's 250 to the final dot or before the failed copy is
//! durable.
//!
//! A job keeps the policy snapshot it started with for its retry schedule;
//! routes are read from the shard's current policy every round, so a
//! reload that adds or changes a route applies to mail already queued (as
//! ESA applies SMTP routes at delivery). Deferred recipients expire with
//! the queue lifetime.
//!
//! Message bytes are held in memory only for one round of attempts: a job
//! keeps the envelope and the message's place in the spool (`BodyLocation`)
//! and reads the bytes back for each round, so deferred mail waits on disk.
//! What delivery holds at once on a shard is bounded by `queue_bytes_max`
//! (a semaphore of bytes): past it a round waits for room; mail is never
//! refused for it. A fresh message's bytes from intake are used for its
//! first round when there is room, else dropped and read back later.
//!
//! TLS (RFC 3207, issue 9 item 5): every attempt asks the current
//! policy's destination controls for the recipient domain
//! (`tls::outbound`: its `[destination."DOMAIN"]`, else the default) and
//! hands the pool a plan per host, named as the route or MX gave it. A
//! required TLS that cannot be had defers the recipients on that host
//! (never sent in clear), logs one `tls-alert` line and counts
//! `portcullis_outbound_tls_total{result="failed"}`. The delivered and
//! deferred lines say `tls=VERSION/CIPHER` or `tls=none`.
//!
//! DANE (RFC 7672, `delivery::dane`): when the destination's `dane` is not
//! off and the hosts came from MX (no SMTP route, no LDAP `mailHost`),
//! each host is decided before it is tried: DANE-authenticated (or
//! encrypt-only) TLS that may not fall back to clear text, the
//! destination's `tls` as above, or skipped (a `deferred` line with
//! `dane=deferred`; the reason reaches the retry line when no host is left).
//!
//! Shutdown (`stop`): no new attempt starts, retry waits end, and `stopped`
//! resolves once the attempts in progress have finished (their done markers
//! sent), so the spool shards can drain them before they exit.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::clock;
use crate::config::{PolicyCell, Settings};
use crate::dns::Resolver;
use crate::maillog::MailLog;
use crate::metrics::Metrics;
use crate::message::{Envelope, QueueId};
use crate::policy::rate::Counters;
use crate::pool::{OutboundEnvelope, Pool, Quota, RecipientOutcome};
use crate::config::ldap::QueryKind;
use crate::ldap::lookup::Lookups;
use crate::routing::{RouteError, Target};
use crate::smtp::client::StartTls;
use crate::tls::outbound::Destination;
use crate::shards::Mesh;
use crate::config::bounce::BounceProfileConfig;
use crate::spool::{BodyLocation, Spool};

pub mod bounce;
pub mod controls;
mod dane;
mod failure;
mod notify;
mod plan;
pub mod queue;
pub mod retry;
use bounce::{Action, RecipientReport};
use queue::{JobState, Order, Registry};
use retry::NextAttempt;
use controls::Controls;
use dane::{DanePlan, HostTls, LegDane};
use plan::Leg;

/// The recipients of one message that share a domain, queued for delivery
/// on the shard whose spool holds the message.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub queue_id: QueueId,
    /// The recipients' domain, lower case: the owner key, and what is routed.
    pub destination: String,
    pub envelope: Arc<Envelope>,
    /// Indices into `envelope.recipients`.
    pub recipients: Vec<u32>,
    /// Where the stored message (Received header + body) is in the spool.
    pub body: BodyLocation,
    /// The stored message bytes, when intake still has them in memory
    /// (fresh mail): spares the first round a read. None after recovery.
    pub data: Option<Arc<Vec<u8>>>,
    /// Unix seconds when we accepted the message (queue lifetime starts here).
    pub accepted_secs: u64,
}

pub struct Delivery {
    settings: Arc<Settings>,
    policy: Rc<PolicyCell>,
    pool: Pool,
    /// The shard's resolver: every round routes the domain with it.
    resolver: Rc<Resolver>,
    /// LDAP routing lookups (messages from listeners with `ldap_routing`).
    ldap: Rc<Lookups>,
    mesh: Rc<Mesh>,
    log: Rc<MailLog>,
    metrics: Arc<Metrics>,
    next_id: Cell<u64>,
    in_flight: Cell<usize>,
    /// Attempts talking to a downstream right now.
    attempting: Cell<usize>,
    /// Set by `stop`: no new attempt starts.
    stop_requested: Cell<bool>,
    /// Closed by `stop`: retry waits end.
    stopping: glommio::sync::Semaphore,
    /// Delivery's own task queue (its share of the shard's CPU).
    queue: glommio::TaskQueueHandle,
    /// Bytes of message data held in memory, in units of one byte
    /// (`queue_bytes_max` of them).
    memory: Rc<glommio::sync::Semaphore>,
    /// Recipients per period of the destinations (`controls`).
    controls: Controls,
    /// This shard's spool: where our own bounces are stored (`notify`).
    spool: Rc<Spool>,
    /// Itself, for queueing the bounces it makes (`notify`).
    me: std::rc::Weak<Delivery>,
    /// Every living job, for the queue commands (`queue`).
    jobs: Registry,
}

/// A job's message bytes, held for one round and counted while held.
struct Held {
    data: Arc<Vec<u8>>,
    _room: glommio::sync::StaticPermit,
}

impl Delivery {
    #[allow(clippy::too_many_arguments)]
    pub fn new(settings: Arc<Settings>, policy: Rc<PolicyCell>, (resolver, ldap, counters, spool): (Rc<Resolver>, Rc<Lookups>, Rc<Counters>, Rc<Spool>), mesh: Rc<Mesh>, log: Rc<MailLog>, metrics: Arc<Metrics>, queue: glommio::TaskQueueHandle) -> Rc<Delivery> {
        let memory = Rc::new(glommio::sync::Semaphore::new(memory_units(&settings)));
        let pool = Pool::with_counters(settings.pool.clone(), counters.clone(), metrics.clone());
        Rc::new_cyclic(|me| Delivery {
            me: me.clone(),
            jobs: Registry::default(),
            controls: Controls::new(counters),
            spool,
            settings,
            policy,
            pool,
            resolver,
            ldap,
            mesh,
            log,
            metrics,
            next_id: Cell::new(0),
            in_flight: Cell::new(0),
            attempting: Cell::new(0),
            stop_requested: Cell::new(false),
            stopping: glommio::sync::Semaphore::new(0),
            queue,
            memory,
        })
    }

    /// Shutdown: start no new attempt and end the retry waits.
    pub fn stop(&self) {
        self.stop_requested.set(true);
        self.stopping.close();
    }

    fn is_stopping(&self) -> bool {
        self.stop_requested.get()
    }

    /// After `stop`: resolves when no attempt is talking to a downstream
    /// (their done markers are sent), or at `deadline`. Returns the
    /// attempts still running then (their recipients stay owed: sent again
    /// after the restart, duplicates but never loss).
    pub async fn stopped(&self, deadline: std::time::Instant) -> usize {
        crate::shards::wait_until(deadline, Duration::from_millis(10), || self.attempting.get() == 0).await;
        self.attempting.get()
    }

    /// Resolves at shutdown (`stop` closes the semaphore; nothing else does).
    async fn until_stopped(&self) {
        let _ = self.stopping.acquire(1).await;
    }

    /// Jobs being worked on or waiting to retry on this shard.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Say QUIT to every idle downstream connection (shutdown).
    pub async fn close_idle(&self) {
        self.pool.close_idle().await;
    }

    /// Take a job (its message is in this shard's spool) and work on it in the background.
    pub fn enqueue(self: &Rc<Self>, job: DeliveryJob) {
        self.in_flight.set(self.in_flight.get() + 1);
        let this = self.clone();
        glommio::spawn_local_into(
            async move {
                this.clone().run(job).await;
                this.in_flight.set(this.in_flight.get() - 1);
            },
            self.queue,
        )
        .expect("the delivery queue exists")
        .detach();
    }

    /// A job's life, registered for the queue commands (`queue`).
    async fn run(self: Rc<Self>, job: DeliveryJob) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let env = &job.envelope;
        let state = Rc::new(JobState::new(job.queue_id.clone(), job.destination.clone(), env.mail_from.clone(), job.accepted_secs, job.body.len));
        self.jobs.insert(id, state.clone());
        let label = self.policy.current().outbound_tls.destination(&job.destination).label.clone();
        self.metrics.destination_queued(&label, 1);
        self.deliver(job, id, &state).await;
        self.metrics.destination_queued(&label, -1);
        self.jobs.remove(id);
    }

    async fn deliver(&self, mut job: DeliveryJob, id: u64, state: &JobState) {
        let dlv = format!("D{}-{id}", self.mesh.id());
        let profile = self.profile(&job);
        let mut pending = job.recipients.clone();
        let mut attempts = 0u32;
        let mut last_warning: Option<u64> = None;
        let mut last_reason = String::from("not tried yet");
        while !pending.is_empty() && !self.is_stopping() {
            let legs = self.plan(&job, &pending).await;
            if self.is_stopping() {
                break; // routing may have waited on DNS or LDAP while shutdown began
            }
            // The bytes are read (or intake's copy counted) only when an
            // attempt has its turn at a destination: a round that waits for
            // one, or has nothing to try (DNS, LDAP deferred), holds none.
            let mut held: Option<Held> = None;
            let mut still_pending = Vec::new();
            for leg in legs {
                match &leg.route {
                    Ok(hosts) => still_pending.extend(self.attempt_each(&mut job, &mut held, &dlv, hosts, &leg, &mut last_reason).await),
                    Err(RouteError::TempFail(why)) => {
                        last_reason = format!("routing {}: {why}", job.destination);
                        still_pending.extend_from_slice(&leg.recipients);
                    }
                    Err(refused) => {
                        last_reason = refused.to_string();
                        match self.held(&mut job, &mut held).await {
                            Ok(data) => still_pending.extend(self.refuse_unroutable(&job, &data, &dlv, &leg.recipients, refused).await),
                            Err(reason) => {
                                last_reason = reason;
                                still_pending.extend_from_slice(&leg.recipients);
                            }
                        }
                    }
                }
            }
            pending = still_pending;
            if pending.is_empty() || self.is_stopping() {
                break;
            }
            attempts += 1;
            state.attempts.set(attempts);
            *state.pending.borrow_mut() = pending.iter().map(|&i| job.envelope.recipients[i as usize].clone()).collect();
            *state.last_error.borrow_mut() = last_reason.clone();
            match state.take_order() {
                Some(Order::Flush) => continue,
                Some(order) => return self.obey(&mut job, &dlv, &pending, order).await,
                None => {}
            }
            let age = clock::now().0.saturating_sub(job.accepted_secs);
            let wait = match retry::next_attempt(&profile, attempts, age, jitter()) {
                NextAttempt::RetryIn(wait) => wait,
                NextAttempt::GiveUp(why) => {
                    let expired = match age >= profile.max_queue_lifetime_secs {
                        true => "queue lifetime expired",
                        false => "retries exhausted",
                    };
                    let reason = format!("{expired} ({why}); last error: {last_reason}");
                    // Without the bytes (unreadable spool) the failed copy keeps the envelope and reason.
                    let data = self.held(&mut job, &mut held).await.unwrap_or_default();
                    let now = clock::now().0;
                    let report = |rcpt: &str| RecipientReport::expired(rcpt, None, Some(&last_reason), now);
                    // Counted like an attempt: shutdown waits for its done marker.
                    self.attempting.set(self.attempting.get() + 1);
                    let _owed = self.fail(&job, &data, &dlv, &pending, &reason, &report).await;
                    self.attempting.set(self.attempting.get() - 1);
                    break;
                }
            };
            if retry::delay_warning_due(&profile, age, last_warning) {
                last_warning = Some(age);
                if let Ok(data) = self.held(&mut job, &mut held).await {
                    let (now, until) = (clock::now().0, retry::retry_until_secs(&profile, job.accepted_secs));
                    let reports = pending.iter().map(|&i| (i, RecipientReport::delayed(&job.envelope.recipients[i as usize], None, Some(&last_reason), now, until))).collect();
                    self.report(&job, data.as_slice(), &dlv, Action::Delayed, reports).await;
                }
            }
            drop(held); // deferred mail waits on disk, not in memory
            self.log.event("retry", format_args!("qid={} dlv={dlv} rcpts={} in={}s reason=\"{}\"", job.queue_id, pending.len(), wait.as_secs(), last_reason.escape_debug()));
            state.next_secs.set(clock::now().0 + wait.as_secs());
            let ordered = async {
                let _ = state.ordered().await;
            };
            futures_lite::future::or(glommio::timer::sleep(wait), futures_lite::future::or(self.until_stopped(), ordered)).await;
            state.next_secs.set(0);
            match state.take_order() {
                Some(Order::Delete) => return self.obey(&mut job, &dlv, &pending, Order::Delete).await,
                Some(Order::Bounce) => return self.obey(&mut job, &dlv, &pending, Order::Bounce).await,
                _ => {}
            }
        }
    }

    /// This shard's jobs as the queue commands see them.
    pub fn queue(&self) -> &Registry {
        &self.jobs
    }

    /// The envelope sender as it leaves: tagged with the current BATV key
    /// (`prvs`, issue 10 item 4) when the message was relayed outbound and
    /// the destination asks for bounce verification, else as received.
    fn outbound_sender(&self, env: &Envelope, destination: &crate::config::destination::DestinationSettings) -> String {
        let verification = self.policy.current().bounce_verification.clone();
        let keys = verification.as_deref().map(|v| &v.keys);
        let lifetime = verification.as_ref().map_or(0, |v| v.tag_lifetime_days);
        crate::prvs::outbound_sender(&env.mail_from, env.relayed, destination.bounce_verification, keys, crate::prvs::day_of(clock::now().0), lifetime).into_owned()
    }

    /// The bounce profile of the job's destination in the current policy
    /// (a job keeps it for its life: its retry schedule does not jump when
    /// a reload changes it).
    fn profile(&self, job: &DeliveryJob) -> BounceProfileConfig {
        let policy = self.policy.current();
        let name = &policy.outbound_tls.destination(&job.destination).settings.bounce_profile;
        let profiles = &policy.bounce_profiles;
        profiles.get(name).or_else(|| profiles.get(crate::config::bounce::DEFAULT_PROFILE)).cloned().unwrap_or_default()
    }

    /// The round's message bytes: those already held, else `hold` them.
    async fn held(&self, job: &mut DeliveryJob, held: &mut Option<Held>) -> Result<Arc<Vec<u8>>, String> {
        if held.is_none() {
            *held = Some(self.hold(job).await?);
        }
        Ok(held.as_ref().expect("just held").data.clone())
    }

    /// The message bytes for one round: intake's copy if there is room for
    /// it, else wait for room (or shutdown) and read them from the spool.
    async fn hold(&self, job: &mut DeliveryJob) -> Result<Held, String> {
        if let Some(data) = job.data.take() {
            if let Some(room) = self.try_room(job.body.len) {
                return Ok(Held { data, _room: room });
            }
        }
        let room = async { self.memory.acquire_static_permit(self.room_units(job.body.len)).await.ok() };
        let stopping = async {
            self.until_stopped().await;
            None
        };
        let room = futures_lite::future::or(room, stopping).await.ok_or("shutting down")?;
        // By queue id, not the place intake saw: compaction may have moved it.
        let data = self.spool.read_message(&job.queue_id).await.map_err(|e| format!("cannot read the spooled message: {e}"))?;
        Ok(Held { data: Arc::new(data), _room: room })
    }

    /// Room for `bytes` of message data in this shard's delivery memory, if
    /// there is some now (intake holds a fresh message's bytes with it while
    /// a job travels to its owner).
    pub fn try_room(&self, bytes: u64) -> Option<glommio::sync::StaticPermit> {
        self.memory.try_acquire_static_permit(self.room_units(bytes)).ok()
    }

    /// Units of delivery memory `bytes` of message take: a message larger
    /// than the whole bound takes all of it (it waits alone, never forever).
    fn room_units(&self, bytes: u64) -> u64 {
        bytes.clamp(1, memory_units(&self.settings))
    }

    /// This round's legs: the job's recipients routed by the shard's
    /// current policy, through the message's LDAP routing query if it has
    /// one (`plan`).
    async fn plan(&self, job: &DeliveryJob, pending: &[u32]) -> Vec<Leg> {
        let policy = self.policy.current();
        let query = match job.envelope.ldap_routing.as_str() {
            "" => None,
            name => match policy.access.ldap_queries.get(name) {
                Some(query) if query.kind == QueryKind::Routing => Some(query),
                // Removed or changed by a reload while mail that names it is
                // queued: it waits (and says why), never routed without it.
                _ => return vec![plan::Leg::deferred(pending, format!("LDAP routing query {name} is not configured (any more)"))],
            },
        };
        plan::plan(job, pending, query, &policy.routes, &self.resolver, &self.ldap).await
    }

    /// One round: each address in order until nothing is pending. Returns
    /// what is still pending; a failed connection's reason lands in
    /// `last_reason`. A destination with a recipient rate takes as many
    /// recipients per transaction as it may now and comes back to the
    /// same host for the rest.
    async fn attempt_each(&self, job: &mut DeliveryJob, held: &mut Option<Held>, dlv: &str, hosts: &[Target], leg: &Leg, last_reason: &mut String) -> Vec<u32> {
        let mut pending = leg.recipients.clone();
        let policy = self.policy.current();
        let destination = policy.outbound_tls.destination(&job.destination);
        // None (and no DNS question) unless DANE is on and the hosts came from MX.
        let mut dane = LegDane::start(destination.dane, (leg.via, &leg.rewrites), &job.destination, &policy.routes, &self.resolver);
        for host in hosts {
            if pending.is_empty() || self.is_stopping() {
                break;
            }
            let tls = match dane.as_mut() {
                Some(dane) => dane.host(host, &self.metrics).await,
                None => HostTls::Destination,
            };
            let dane_plan = match tls {
                HostTls::Destination => None,
                HostTls::Dane(plan) => Some(plan),
                HostTls::Skip(reason) => {
                    self.log.event("deferred", format_args!("qid={} dlv={dlv} relay={} host={} rcpts={} dane=deferred reason=\"{}\"", job.queue_id, host.address, host.name.as_deref().unwrap_or("-"), pending.len(), reason.escape_debug()));
                    *last_reason = reason;
                    continue;
                }
            };
            let key = controls::destination_key(&destination.settings, &job.destination, host.address);
            while !pending.is_empty() && !self.is_stopping() {
                let allowed = self.wait((held, &mut job.data), self.controls.recipients(&key, &destination.settings, pending.len())).await;
                let Some(allowed) = allowed else { break };
                let later = pending.split_off(allowed);
                let quota = controls::quota(&destination.settings, key.clone(), &destination.label);
                self.attempting.set(self.attempting.get() + 1);
                let outcome = self.attempt(job, held, dlv, host, leg, &pending, dane_plan.as_ref(), &quota).await;
                self.attempting.set(self.attempting.get() - 1);
                let (deferred, failed) = match outcome {
                    Ok(deferred) => (deferred, false),
                    Err(reason) => {
                        *last_reason = reason;
                        (std::mem::take(&mut pending), true)
                    }
                };
                let more_here = !later.is_empty() && deferred.is_empty() && !failed;
                pending = deferred;
                pending.extend(later);
                if !more_here {
                    break; // what this host deferred, and what it never took, goes to the next host
                }
            }
        }
        pending
    }

    /// Await `wait` (a turn at a destination, tokens of its rate) without
    /// holding the round's message bytes if it does not resolve at once:
    /// mail queued for a busy destination must not take the memory other
    /// destinations' mail needs. None at shutdown.
    async fn wait<T>(&self, (held, fresh): (&mut Option<Held>, &mut Option<Arc<Vec<u8>>>), wait: impl std::future::Future<Output = T>) -> Option<T> {
        let mut wait = std::pin::pin!(wait);
        if let Some(ready) = futures_lite::future::poll_once(&mut wait).await {
            return Some(ready);
        }
        // Intake's copy too: it is not counted in the memory bound until held.
        (*held, *fresh) = (None, None);
        let stopping = async {
            self.until_stopped().await;
            None
        };
        futures_lite::future::or(async { Some(wait.await) }, stopping).await
    }

    /// One transaction to one host, under DANE when `dane` says so (else
    /// the destination's `tls`). Ok(still deferred), or Err(reason) when
    /// the connection failed and nothing was decided.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(&self, job: &mut DeliveryJob, held: &mut Option<Held>, dlv: &str, target: &Target, leg: &Leg, pending: &[u32], dane: Option<&DanePlan>, quota: &Quota) -> Result<Vec<u32>, String> {
        let host = target.address;
        let destination = self.policy.current().outbound_tls.destination(&job.destination);
        let plan = match dane {
            Some(dane) => dane.plan.clone(),
            None => match destination.plan(target.name.as_deref(), host.ip()) {
                Ok(plan) => plan,
                Err(why) => {
                    let reason = format!("{host}: no TLS client config for destination {}: {why}", destination.label);
                    return Err(self.tls_refused(job, dlv, &destination, target, pending, reason, None));
                }
            },
        };
        let env = job.envelope.clone();
        let outbound = OutboundEnvelope {
            mail_from: self.outbound_sender(&env, &destination.settings),
            recipients: pending.iter().map(|&i| leg.address(job, i).to_string()).collect(),
            body_type: env.body_type,
            smtputf8: env.smtputf8,
            dsn: env.dsn.clone(),
            recipient_dsn: pending.iter().map(|&i| env.rcpt_dsn(i as usize)).collect(),
        };
        // The turn first (the destination's connection limit), then the bytes.
        let turn = match self.wait((held, &mut job.data), self.pool.turn(host, &plan, quota)).await {
            Some(Ok(turn)) => turn,
            Some(Err(e)) => return Err(e.reason),
            None => return Err("shutting down".into()),
        };
        let data = &self.held(job, held).await?;
        let sent = match self.pool.send_on(turn, host, &plan, &outbound, data).await {
            Ok(sent) => sent,
            Err(e) if e.tls_refused => return Err(self.tls_refused(job, dlv, &destination, target, pending, e.reason, dane)),
            Err(e) => {
                self.log.event("deferred", format_args!("qid={} dlv={dlv} relay={host} rcpts={} reason=\"{}\"", job.queue_id, pending.len(), e.reason));
                self.metrics.destination_delivery(&destination.label, "deferred", pending.len() as u64);
                return Err(e.reason);
            }
        };
        if plan.starttls != StartTls::Off {
            self.metrics.outbound_tls("delivery", &destination.label, if sent.tls.is_some() { "tls" } else { "clear" });
        }
        // A DANE plan requires TLS: a transaction that went through was verified.
        let dane_field = dane.map_or_else(String::new, |d| format!(" dane={}", d.result()));
        if let Some(dane) = dane {
            debug_assert!(sent.tls.is_some(), "DANE never goes in clear");
            self.metrics.dane(dane.metric());
        }
        let tls = sent.tls.as_ref().map_or_else(|| "none".to_string(), |t| format!("{}/{}", t.version, t.cipher));
        let outcomes = sent.outcomes;
        let mut failures = Vec::new();
        let mut deferred = Vec::new();
        // One message handed over, whatever the number of its recipients the downstream took.
        if outcomes.iter().any(|o| matches!(o, RecipientOutcome::Delivered(_))) {
            self.metrics.message_delivered();
        }
        for (&index, outcome) in pending.iter().zip(outcomes.iter()) {
            let rcpt = leg.address(job, index);
            // A recipient LDAP rewrote is logged as sent, with the address it came as.
            let orig = match leg.rewrites.contains_key(&index) {
                true => format!(" orig_to=<{}>", env.recipients[index as usize]),
                false => String::new(),
            };
            match outcome {
                RecipientOutcome::Delivered(reply) => {
                    self.metrics.destination_delivery(&destination.label, "delivered", 1);
                    self.log.event("delivered", format_args!("qid={} dlv={dlv} to=<{rcpt}>{orig} relay={host} via={} tls={tls}{dane_field} reply=\"{reply}\"", job.queue_id, leg.via));
                }
                RecipientOutcome::Deferred(reply) => {
                    self.metrics.destination_delivery(&destination.label, "deferred", 1);
                    self.log.event("deferred", format_args!("qid={} dlv={dlv} to=<{rcpt}>{orig} relay={host} tls={tls} reply=\"{reply}\"", job.queue_id));
                    deferred.push(index);
                }
                RecipientOutcome::Failed(reply) => {
                    let report = RecipientReport::refused(rcpt, Some(&host.ip().to_string()), &reply.to_string(), clock::now().0);
                    failures.push((index, format!("{host} said: {reply}"), report))
                }
            }
        }
        // The pool answers for every recipient; anything it left out stays owed.
        deferred.extend(pending.iter().skip(outcomes.len()).copied());
        if !failures.is_empty() {
            let indices: Vec<u32> = failures.iter().map(|f| f.0).collect();
            let reasons: Vec<String> = failures.iter().map(|f| f.1.clone()).collect();
            let reports = failures.into_iter().map(|f| f.2).collect();
            self.keep_failed(job, data, dlv, (&indices, &reasons, reports), &mut deferred).await;
        }
        // Delivered, and failed ones whose copy is durable, are finished.
        let finished: Vec<u32> = indices_not_in(pending, &deferred).collect();
        self.finish(job, finished).await;
        Ok(deferred)
    }

    /// A required TLS was not to be had at `target`: the recipients wait
    /// (the caller moves on to the next host, then retries), one alert
    /// line and the failed count (issue 9 item 5); under DANE (`dane`) the
    /// line says what DANE wanted and `portcullis_dane_total{result="failed"}`
    /// counts it too. Returns the reason.
    #[allow(clippy::too_many_arguments)]
    fn tls_refused(&self, job: &DeliveryJob, dlv: &str, destination: &Destination, target: &Target, pending: &[u32], reason: String, dane: Option<&DanePlan>) -> String {
        let host = target.address;
        let name = target.name.as_deref().unwrap_or("-");
        self.metrics.outbound_tls("delivery", &destination.label, "failed");
        self.metrics.destination_delivery(&destination.label, "deferred", pending.len() as u64);
        let (tls, dane_field) = match dane {
            Some(dane) => {
                self.metrics.dane("failed");
                ("required", format!(" dane=failed wanted={}", dane.result()))
            }
            None => (destination.tls.name(), String::new()),
        };
        self.log.event("tls-alert", format_args!(
            "qid={} dlv={dlv} domain={} destination={} tls={tls}{dane_field} relay={host} host={name} rcpts={} reason=\"{}\"",
            job.queue_id, job.destination, destination.label, pending.len(), reason.escape_debug()
        ));
        self.log.event("deferred", format_args!("qid={} dlv={dlv} relay={host} rcpts={} reason=\"{}\"", job.queue_id, pending.len(), reason.escape_debug()));
        reason
    }

    /// Mark these recipients finished in the spool (durable with its next commit).
    async fn finish(&self, job: &DeliveryJob, recipients: Vec<u32>) {
        if recipients.is_empty() {
            return;
        }
        // Their delivered/failed lines reach the log before the spool forgets them.
        self.log.sync().await;
        // The message is in this shard's spool (delivery runs where it is).
        if self.spool.mark_done(&job.queue_id, &recipients) {
            self.log.event("removed", format_args!("qid={}", job.queue_id));
        }
    }
}

/// A number in 0..1 for the retry jitter (`retry::next_attempt`): the
/// clock's nanoseconds are random enough to keep retries of a backlog
/// from landing in the same second.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

/// Delivery memory in units of one byte: `queue_bytes_max`, at least one.
fn memory_units(settings: &Settings) -> u64 {
    settings.queue_bytes_max.max(1)
}

fn indices_not_in<'a>(all: &'a [u32], owed: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    all.iter().copied().filter(move |i| !owed.contains(i))
}
