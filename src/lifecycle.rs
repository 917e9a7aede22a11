//! The process lifecycle: recover the spool, start one pinned executor per
//! shard and wire each shard's parts, then serve signals: SIGHUP reloads
//! the policy, SIGTERM/SIGINT wind down within the grace.
//!
//! Start-up cannot hang: every fallible step of a shard (mail log, spool,
//! binding the listeners) runs before it joins the mesh, a shard that fails
//! raises the process's failure flag, and the peers waiting in `Mesh::join`
//! give up when the process stops. The main thread waits for the shards
//! with a deadline and exits non-zero with the reason.
//!
//! Shutdown loses no request between shards: each shard stops accepting,
//! lets sessions finish (then 421), stops delivery and waits for its
//! attempts in progress; then all shards meet at a barrier (nobody sends
//! any more), each drains the letters addressed to it (rate-slot
//! releases and the like), syncs its spool (delivery's done markers,
//! applied where the message is), and exits. A shard that cannot finish in
//! time leaves its recipients owed: sent again after the restart
//! (duplicates, never loss).

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Latency, Placement, Shares};

use crate::callahead::Callahead;
use crate::ldap::client::Directory;
use crate::ldap::lookup::Lookups;
use crate::config::reload::{self, ConfigSource, PolicyBoard, ReloadOutcome};
use crate::config::{Config, PolicyCell, Settings};
use crate::delivery::queue::QueueAsk;
use crate::delivery::Delivery;
use crate::intake::{self, Stored};
use crate::limits;
use crate::listener;
use crate::dns::Resolver;
use crate::maillog::MailLog;
use crate::admin;
use crate::metrics::{Metrics, MetricsBoard};
use crate::policy::rate::Counters;
use crate::shard::{Shard, TaskQueues};
use crate::shards::{self, Mesh, MeshPlan};
use crate::spool::CompactionPolicy;
use crate::spool::recovery::{self, RecoveredShard};
use crate::spool::{Spool, SpoolBytes, SpoolSettings};

/// What every shard shares with the main thread and its peers.
#[derive(Clone)]
struct Shared {
    settings: Arc<Settings>,
    board: Arc<PolicyBoard>,
    /// Raised by a signal or a failed shard: every shard winds down.
    stop: Arc<AtomicBool>,
    /// Raised when a shard failed to start or panicked.
    failed: Arc<AtomicBool>,
    /// Open inbound connections, all shards (max_connections is exact).
    connections: Arc<AtomicUsize>,
    /// Shards that have stopped sending to their peers (the stop barrier).
    quiesced: Arc<AtomicUsize>,
    plan: MeshPlan,
    count: usize,
    /// Undelivered bytes on disk, all shards (`spool_bytes_max` is exact).
    spool_bytes: SpoolBytes,
    /// `[dns] servers`, or /etc/resolv.conf's, read once at start.
    nameservers: Arc<Vec<std::net::SocketAddr>>,
    /// One per shard, by shard id; the admin listener sums them.
    metrics: Arc<Vec<Arc<Metrics>>>,
    /// The shards' end of the admin bridge (every shard polls it), when
    /// there is an admin listener.
    admin_inbox: Option<admin::bridge::BridgeInbox>,
    /// The LDAP thread (started whether or not a query is configured yet:
    /// a reload may add one); every shard sends it its searches.
    directory: Directory,
}

/// Run until SIGTERM/SIGINT. `source` rebuilds the config on SIGHUP (the
/// same file and flags as `config`). Returns an error when a shard cannot
/// start or does not stop.
pub fn run(config: Config, source: ConfigSource) -> Result<(), String> {
    let (mut settings, policy) = config.split();
    // Absolute, so that io_uring opens (which take no working directory) find it.
    std::fs::create_dir_all(&settings.spool_dir).map_err(|e| format!("spool {}: {e}", settings.spool_dir.display()))?;
    settings.spool_dir = settings.spool_dir.canonicalize().map_err(|e| format!("spool {}: {e}", settings.spool_dir.display()))?;
    let online = shards::online_cpus();
    // A CPU the machine has but this process may not use (cpuset, taskset)
    // would fail inside the shard's thread: refuse it here, by name.
    if let Some(bad) = settings.cpu_set.iter().find(|c| !online.contains(c)) {
        return Err(format!("cpu_set: CPU {bad} does not exist or is not available to this process (available: {online:?})"));
    }
    let cpus = if settings.cpu_set.is_empty() { online } else { settings.cpu_set.clone() };
    let count = if settings.cores == 0 { cpus.len() } else { settings.cores };
    let recovered = recovery::recover(&settings.spool_dir, count).map_err(|e| format!("spool {}: {e}", settings.spool_dir.display()))?;
    let owed: usize = recovered.iter().map(|r| r.messages.len()).sum();
    let torn: usize = recovered.iter().map(|r| r.torn_tails).sum();
    eprintln!(
        "portcullis: starting {count} shard(s) to listen on {:?}, spool {} ({owed} message(s) recovered, {torn} torn tail(s) ignored)",
        settings.listeners,
        settings.spool_dir.display()
    );
    let dns = &policy.dns;
    let nameservers = Arc::new(dns.nameservers().map_err(|e| format!("dns: {e}"))?);
    let (metrics, board) = MetricsBoard::for_shards(count);
    let metrics = Arc::new(metrics);
    let (admin_bridge, admin_inbox) = match settings.admin_listen {
        Some(_) => {
            let (bridge, inbox) = admin::bridge::channel(limits::ADMIN_BRIDGE_QUEUE_MAX);
            (Some(bridge), Some(inbox))
        }
        None => (None, None),
    };
    block_signals();
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Shared {
        settings: Arc::new(settings),
        board: PolicyBoard::new(Arc::new(policy)),
        stop: stop.clone(),
        failed: Arc::new(AtomicBool::new(false)),
        connections: Arc::new(AtomicUsize::new(0)),
        quiesced: Arc::new(AtomicUsize::new(0)),
        plan: MeshPlan::new(count, stop),
        count,
        // Every shard's recovered mail counts before any shard accepts more.
        spool_bytes: SpoolBytes::new(recovered.iter().map(|r| r.pending_bytes()).sum()),
        nameservers,
        metrics,
        admin_inbox,
        directory: Directory::start(),
    };
    let mut shards = Vec::new();
    for (id, rec) in recovered.into_iter().enumerate() {
        match start_shard(id, cpus[id % cpus.len()], rec, shared.clone()) {
            Ok(shard) => shards.push(shard),
            Err(e) => {
                shared.stop.store(true, Ordering::SeqCst);
                let _ = wait_for_shards(shards, Duration::from_secs(5));
                return Err(e);
            }
        }
    }
    // Off the shards: a blocking thread of its own. A port in use is a start-up failure.
    let admin = match shared.settings.admin_listen {
        Some(addr) => match admin::start_with_bridge(addr, Arc::new(board), admin_bridge.expect("made with admin_listen")) {
            Ok(handle) => Some(handle),
            Err(e) => {
                shared.stop.store(true, Ordering::SeqCst);
                let _ = wait_for_shards(shards, Duration::from_secs(5));
                return Err(format!("admin_listen {addr}: {e}"));
            }
        },
        None => None,
    };
    serve_signals(&shared, &source);
    // A shard's wind-down after the grace: 2 s of 421s, then four drain
    // bounds (delivery, barrier, letters, spool sync) and 2 s of QUITs; main
    // waits longer than all of that, so a shard is never cut off mid-sync.
    let deadline = Duration::from_secs(shared.settings.shutdown_grace_secs + 2 + 2 + 10) + Duration::from_millis(4 * limits::SHUTDOWN_DRAIN_MS);
    let errors = wait_for_shards(shards, deadline);
    drop(admin);
    // No shard asks any more: the LDAP thread answers what is left with
    // errors and ends, before the process does.
    if !shared.directory.stop_and_wait(Duration::from_millis(limits::MAILLOG_CLOSE_WAIT_MS)) {
        eprintln!("portcullis: the LDAP thread did not end within {} ms", limits::MAILLOG_CLOSE_WAIT_MS);
    }
    if errors.is_empty() && !shared.failed.load(Ordering::SeqCst) {
        eprintln!("portcullis: stopped");
        Ok(())
    } else if errors.is_empty() {
        Err("a shard failed".into())
    } else {
        Err(errors.join("; "))
    }
}

/// A started shard thread and the flag it raises when it has ended.
struct Running {
    id: usize,
    handle: glommio::ExecutorJoinHandle<Result<(), String>>,
    ended: Arc<AtomicBool>,
}

fn start_shard(id: usize, cpu: usize, recovered: RecoveredShard, shared: Shared) -> Result<Running, String> {
    let ended = Arc::new(AtomicBool::new(false));
    // Made here and moved into the thread: if glommio fails to build the
    // executor there (affinity, io_uring), our future never runs, and the
    // alarm dropped with it still tells the process.
    let alarm = EndAlarm { failed: shared.failed.clone(), ended: ended.clone(), clean: false };
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu)).name(&format!("shard-{id}"));
    // glommio issues membarrier(PRIVATE_EXPEDITED) and an io_uring wait
    // every time an executor parks (sys/uring.rs `Reactor::wait`); polling
    // a little first saves both when the next event is that close. Only a
    // pinned executor spins (Placement::Fixed), as here.
    if !shared.settings.spin_before_park.is_zero() {
        builder = builder.spin_before_park(shared.settings.spin_before_park);
    }
    let handle = builder
        .spawn(move || async move {
            let mut alarm = alarm;
            let result = shard_main(id, recovered, shared.clone()).await;
            if let Err(e) = &result {
                eprintln!("portcullis: shard {id}: {e}");
            }
            alarm.clean = result.is_ok();
            result
        })
        .map_err(|e| format!("starting shard {id} on CPU {cpu}: {e}"))?;
    Ok(Running { id, handle, ended })
}

/// Until stop: SIGTERM/SIGINT stop, SIGHUP reloads, a failed shard stops.
fn serve_signals(shared: &Shared, source: &ConfigSource) {
    while !shared.stop.load(Ordering::SeqCst) {
        match wait_signal(Duration::from_millis(limits::RELOAD_POLL_MS)) {
            Some(libc::SIGHUP) => match reload::reload(source, &shared.settings, &shared.board) {
                ReloadOutcome::Published { generation, needs_restart } => {
                    eprintln!("portcullis: reload: policy generation {generation} published");
                    if !needs_restart.is_empty() {
                        eprintln!("portcullis: reload: changed but kept until a restart: {}", needs_restart.join(", "));
                    }
                }
                ReloadOutcome::Refused(why) => eprintln!("portcullis: reload refused, the running policy stays: {why}"),
            },
            Some(_) => shared.stop.store(true, Ordering::SeqCst),
            None if shared.failed.load(Ordering::SeqCst) => shared.stop.store(true, Ordering::SeqCst),
            None => {}
        }
    }
}

/// Join every shard that ends within `limit`; name the others.
fn wait_for_shards(shards: Vec<Running>, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !shards.iter().all(|s| s.ended.load(Ordering::SeqCst)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut errors = Vec::new();
    for shard in shards {
        if !shard.ended.load(Ordering::SeqCst) {
            errors.push(format!("shard {} did not stop within {}s", shard.id, limit.as_secs()));
            continue;
        }
        match shard.handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("shard {}: {e}", shard.id)),
            Err(e) => errors.push(format!("shard {}: {e}", shard.id)),
        }
    }
    errors
}

/// One shard's life, with its mail log open around it: however the shard
/// ends, the log's last lines are written and its writer thread has ended
/// before the shard's thread does.
async fn shard_main(id: usize, recovered: RecoveredShard, shared: Shared) -> Result<(), String> {
    let log_file = &shared.settings.log_file;
    let log = MailLog::open(log_file, id).map_err(|e| format!("log {log_file}: {e}"))?;
    glommio::spawn_local(MailLog::flush_periodically(Rc::downgrade(&log))).detach();
    if !shared.settings.coalesce.is_zero() {
        glommio::spawn_local(crate::coalesce::run(shared.settings.coalesce, shared.metrics[id].clone())).detach();
    }
    let result = shard_body(id, recovered, shared, log.clone()).await;
    log.close();
    result
}

async fn shard_body(id: usize, recovered: RecoveredShard, shared: Shared, log: Rc<MailLog>) -> Result<(), String> {
    // However this shard ends, its peers must not wait for it at the barrier.
    let arrival = Arrival { quiesced: shared.quiesced.clone(), arrived: std::cell::Cell::new(false) };
    let settings = shared.settings.clone();
    // Everything that can fail runs before joining the mesh, so a failing
    // shard never leaves its peers waiting for it.
    let spool_settings = SpoolSettings { messages_max: settings.queue_messages_max, bytes_max: settings.spool_bytes_max, ..SpoolSettings::default() };
    let spool = Spool::open(&settings.spool_dir, id, &recovered, spool_settings, shared.spool_bytes.clone()).await.map_err(|e| format!("spool: {e}"))?;
    let listeners = settings
        .listeners
        .iter()
        .map(|(name, a)| crate::listener::bind(*a).map(|l| (name.clone(), l)).map_err(|e| format!("listener {name} {a}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let queues = task_queues();
    spool.commit_in(queues.spool);
    // Long-deferred mail moves out of old segments so they can be deleted.
    let compaction_log = log.clone();
    spool.start_compaction(CompactionPolicy::default(), move |pass| {
        if pass.moved + pass.failed > 0 {
            compaction_log.event("compacted", format_args!("segments={} moved={} bytes={} skipped={} failed={} error=\"{}\"", pass.segments, pass.moved, pass.moved_bytes, pass.skipped, pass.failed, pass.last_error.as_deref().unwrap_or("")));
        }
    });
    let mesh = match Mesh::join(shared.plan.clone(), id).await {
        Ok(mesh) => mesh,
        // A signal during start-up is a clean stop; a failed peer is not.
        Err(_) if !shared.failed.load(Ordering::SeqCst) => return Ok(()),
        Err(e) => return Err(e),
    };
    let policy = Rc::new(PolicyCell::new(shared.board.latest()));
    let metrics = shared.metrics[id].clone();
    let dns = &policy.current().dns;
    let resolver = Rc::new(Resolver::new(shared.nameservers.to_vec(), dns, metrics.clone()));
    let ldap = Lookups::new(shared.directory.clone(), mesh.clone(), metrics.clone());
    let counters = Counters::new(mesh.clone(), &settings.rate);
    let delivery = Delivery::new(settings.clone(), policy.clone(), (resolver.clone(), ldap.clone(), counters.clone(), spool.clone()), mesh.clone(), log.clone(), metrics.clone(), queues.delivery);
    let callahead = Callahead::new(mesh.clone(), resolver.clone(), counters.clone(), policy.clone(), &settings.hostname, metrics.clone());
    let services = (resolver, counters, metrics, callahead, ldap);
    let shard = Rc::new(Shard::new(settings.clone(), policy, mesh.clone(), spool, delivery, log.clone(), services, queues, shared.connections.clone()));
    serve_requests(&shard);
    if let Some(inbox) = shared.admin_inbox.clone() {
        glommio::spawn_local(admin::bridge::serve(inbox, shard.mesh.clone(), shared.stop.clone())).detach();
    }
    let first_policy = shard.policy.current();
    log.event("started", format_args!("policy={} recovered={}", first_policy.generation, recovered.messages.len()));
    for m in recovered.messages {
        let envelope = Arc::new(m.envelope);
        // The bytes stay on disk: delivery reads them when it tries.
        let stored = Stored { body: m.body, data: None };
        intake::dispatch(&shard, m.queue_id, envelope, stored, &m.remaining, m.accepted_secs);
    }
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(name, l)| glommio::spawn_local_into(listener::accept_loop(l, name, shard.clone()), queues.sessions).expect("the sessions queue exists"))
        .collect();

    while !shared.stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(limits::RELOAD_POLL_MS)).await;
        if shared.board.generation() > shard.policy.current().generation && shard.policy.install(shared.board.latest()) {
            log.event("reload", format_args!("generation={}", shard.policy.current().generation));
        }
    }
    drop(accepting); // closes the listening sockets
    wind_down(&shard, &shared, &arrival).await;
    Ok(())
}

/// The shard's handlers for requests from its peers (and itself).
fn serve_requests(shard: &Rc<Shard>) {
    shard.counters.serve(&shard.mesh);
    shard.callahead.serve(&shard.mesh);
    shard.ldap.serve(&shard.mesh);
    let weak = Rc::downgrade(shard);
    shard.mesh.handle(move |ask: QueueAsk| {
        let answer = weak.upgrade().map(|shard| shard.delivery.queue().operate(&ask.0)).unwrap_or_default();
        async move { answer }
    });
    shard.mesh.open();
}

/// Sessions: let them finish within the grace, then 421. Delivery: stop,
/// wait for attempts in progress. Then the barrier, drain, spool sync.
async fn wind_down(shard: &Shard, shared: &Shared, arrival: &Arrival) {
    let grace_end = Instant::now() + Duration::from_secs(shared.settings.shutdown_grace_secs);
    shards::wait_until(grace_end, Duration::from_millis(50), || shard.active.get() == 0).await;
    shard.shutdown.close();
    let drain = Duration::from_millis(limits::SHUTDOWN_DRAIN_MS);
    shards::wait_until(Instant::now() + Duration::from_secs(2), Duration::from_millis(20), || shard.active.get() == 0).await;
    shard.delivery.stop();
    let abandoned = shard.delivery.stopped(Instant::now() + drain).await;
    // Connection-slot releases go out and the lease sweep ends: nothing
    // is sent to a peer after the barrier (bounded: a peer may be gone).
    let _ = glommio::timer::timeout(drain, async {
        shard.counters.stop().await;
        Ok(())
    })
    .await;
    // The barrier: once every shard is here, nobody sends requests any more.
    arrival.arrive();
    let everyone_here = || shared.quiesced.load(Ordering::SeqCst) >= shared.count;
    shards::wait_until(Instant::now() + drain, Duration::from_millis(5), everyone_here).await;
    let unhandled = shard.mesh.drain(Instant::now() + drain).await;
    // Done markers reach the disk (else they are sent again after the restart).
    shard.spool.stop_compaction();
    let synced = glommio::timer::timeout(drain, async { Ok(shard.spool.sync_pending().await) }).await;
    match synced {
        Ok(Ok(())) => {}
        Ok(Err(e)) => shard.log.event("error", format_args!("spool sync at shutdown: {e:?}")),
        Err(_) => shard.log.event("error", format_args!("spool sync at shutdown: not done within {}ms", limits::SHUTDOWN_DRAIN_MS)),
    }
    // QUIT idle downstream and probe connections, bounded: a stuck peer must not hold up the exit.
    let _ = glommio::timer::timeout(Duration::from_secs(2), async {
        shard.delivery.close_idle().await;
        shard.callahead.pool.close_idle().await;
        Ok(())
    })
    .await;
    shard.log.event(
        "stopped",
        format_args!("owed={} abandoned_attempts={abandoned} unhandled_requests={unhandled}", shard.spool.live_messages()),
    );
    shard.log.sync().await;
}

/// Sessions, the spool's committer and delivery in their own task queues.
/// Shares split the CPU when all are busy: a delivery backlog gets a third
/// at most, so it cannot slow the 250s; the committer is light but every
/// 250 waits for it, so it asks for low latency.
fn task_queues() -> TaskQueues {
    let ex = glommio::executor();
    TaskQueues {
        sessions: ex.create_task_queue(Shares::Static(1000), Latency::Matters(Duration::from_millis(10)), "sessions"),
        spool: ex.create_task_queue(Shares::Static(1000), Latency::Matters(Duration::from_millis(1)), "spool"),
        delivery: ex.create_task_queue(Shares::Static(500), Latency::NotImportant, "delivery"),
    }
}

/// This shard's arrival at the stop barrier: when it stops sending to its
/// peers, or, if it ends early (failed start, stop during start-up), when
/// it is dropped.
struct Arrival {
    quiesced: Arc<AtomicUsize>,
    arrived: std::cell::Cell<bool>,
}

impl Arrival {
    fn arrive(&self) {
        if !self.arrived.replace(true) {
            self.quiesced.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.arrive();
    }
}

/// Raises `ended` when the shard's thread is done with it, and `failed`
/// unless the shard ended cleanly (an error, a panic, or an executor that
/// never started), so the process stops instead of running on without it.
struct EndAlarm {
    failed: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    clean: bool,
}

impl Drop for EndAlarm {
    fn drop(&mut self) {
        if !self.clean {
            self.failed.store(true, Ordering::SeqCst);
        }
        self.ended.store(true, Ordering::SeqCst);
    }
}

fn signal_set() -> libc::sigset_t {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Block SIGTERM/SIGINT/SIGHUP in this thread and every thread started
/// after it, so that only `wait_signal` sees them.
fn block_signals() {
    let set = signal_set();
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The signal that arrived within `wait`, if any.
fn wait_signal(wait: Duration) -> Option<i32> {
    let set = signal_set();
    let ts = libc::timespec { tv_sec: wait.as_secs() as libc::time_t, tv_nsec: wait.subsec_nanos() as libc::c_long };
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}
