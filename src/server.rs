//! Start-up and shutdown: recover the spool, start one pinned executor per
//! shard, wire each shard's parts (log, spool, mesh, pool, delivery,
//! listeners), then wait for SIGTERM/SIGINT and wind down within the grace.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::clock;
use crate::config::Config;
use crate::delivery::{Delivery, DeliveryJob};
use crate::listener;
use crate::maillog::MailLog;
use crate::message::{domain_of, Envelope, Message, QueueId};
use crate::pool::{Pool, PoolConfig};
use crate::shards::{self, Mesh};
use crate::smtp::{received, SessionConfig, StoreError};
use crate::spool::recovery::{self, RecoveredShard};
use crate::spool::{QueueBounds, Spool};

/// What shards ask each other.
pub enum Work {
    /// Deliver these recipients (sent to the owner of `job.destination`).
    Deliver(DeliveryJob),
    /// These recipients are finished (sent to the shard whose spool holds the message).
    Finished { queue_id: QueueId, recipients: Vec<u32> },
}

pub type ShardMesh = Mesh<Work, ()>;

/// Everything one shard owns. Lives on its executor; never crosses threads.
pub struct Shard {
    pub config: Arc<Config>,
    pub session_config: Arc<SessionConfig>,
    pub mesh: Rc<ShardMesh>,
    pub spool: Rc<Spool>,
    pub delivery: Rc<Delivery>,
    pub log: Rc<MailLog>,
    /// Open connections on all shards (max_connections is global and exact).
    pub connections: Arc<AtomicUsize>,
    /// Open connections on this shard.
    pub active: Cell<usize>,
    next_connection: Cell<u64>,
    /// Closed when the shutdown grace is over: sessions still open answer 421.
    pub shutdown: glommio::sync::Semaphore,
}

impl Shard {
    /// "C" + shard + sequence, unique within this run and readable in logs.
    pub fn next_connection_id(&self) -> String {
        let n = self.next_connection.get();
        self.next_connection.set(n + 1);
        format!("C{}-{n}", self.mesh.id())
    }

    /// Prepend the Received header, store durably, and hand the recipients
    /// to their destinations' owner shards. Ok means: safe to say 250.
    pub async fn accept_message(&self, msg: Message) -> Result<QueueId, StoreError> {
        let queue_id = self.spool.next_queue_id();
        let (secs, _) = clock::now();
        let header = received::header(&msg.envelope, &queue_id, &self.config.hostname, &clock::rfc5322(secs));
        let mut data = Vec::with_capacity(header.len() + msg.body.len());
        data.extend_from_slice(&header);
        data.extend_from_slice(&msg.body);
        self.spool.store(&queue_id, &msg.envelope, secs, &data).await?;
        self.log.event_now(
            "queued",
            format_args!(
                "conn={} qid={queue_id} from=<{}> rcpts={} size={}",
                msg.envelope.connection_id,
                msg.envelope.mail_from,
                msg.envelope.recipients.len(),
                data.len()
            ),
        );
        let all: Vec<u32> = (0..msg.envelope.recipients.len() as u32).collect();
        self.dispatch(queue_id.clone(), Arc::new(msg.envelope), Arc::new(data), &all, secs);
        Ok(queue_id)
    }

    /// Group `recipients` by destination and send each group to its owner
    /// shard, in the background (the client already has, or will get, its 250).
    fn dispatch(&self, queue_id: QueueId, envelope: Arc<Envelope>, data: Arc<Vec<u8>>, recipients: &[u32], accepted_secs: u64) {
        let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for &i in recipients {
            let domain = domain_of(&envelope.recipients[i as usize]);
            match self.config.route_for(&domain) {
                Some((key, _)) => groups.entry(key.to_string()).or_default().push(i),
                None => self.log.event("deferred", format_args!("qid={queue_id} to=<{}> reason=\"no route in this config\"", envelope.recipients[i as usize])),
            }
        }
        let spool_shard = self.mesh.id();
        for (destination, recipients) in groups {
            let job = DeliveryJob {
                queue_id: queue_id.clone(),
                spool_shard,
                destination,
                envelope: envelope.clone(),
                recipients,
                data: data.clone(),
                accepted_secs,
            };
            let mesh = self.mesh.clone();
            glommio::spawn_local(async move {
                let key = job.destination.clone();
                mesh.ask_owner(&key, Work::Deliver(job)).await;
            })
            .detach();
        }
    }

    fn handle(&self, work: Work) {
        match work {
            Work::Deliver(job) => self.delivery.enqueue(job),
            Work::Finished { queue_id, recipients } => {
                if self.spool.mark_done(&queue_id, &recipients) {
                    self.log.event("removed", format_args!("qid={queue_id}"));
                }
            }
        }
    }
}

/// Run until SIGTERM/SIGINT. Returns an error when a shard cannot start.
pub fn run(mut config: Config) -> Result<(), String> {
    // Absolute, so that io_uring opens (which take no working directory) find it.
    std::fs::create_dir_all(&config.spool_dir).map_err(|e| format!("spool {}: {e}", config.spool_dir.display()))?;
    config.spool_dir = config.spool_dir.canonicalize().map_err(|e| format!("spool {}: {e}", config.spool_dir.display()))?;
    let online = shards::online_cpus();
    let cpus = if config.cpu_set.is_empty() { online } else { config.cpu_set.clone() };
    if let Some(bad) = cpus.iter().find(|&&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(format!("cpu_set: CPU {bad} does not exist"));
    }
    let count = if config.cores == 0 { cpus.len() } else { config.cores };
    let recovered = recovery::recover(&config.spool_dir, count)
        .map_err(|e| format!("spool {}: {e}", config.spool_dir.display()))?;
    let owed: usize = recovered.iter().map(|r| r.messages.len()).sum();
    let torn: usize = recovered.iter().map(|r| r.torn_tails).sum();
    eprintln!(
        "portcullis: {count} shard(s), listening on {:?}, spool {} ({owed} message(s) recovered, {torn} torn tail(s) ignored)",
        config.listen,
        config.spool_dir.display()
    );
    block_stop_signals();
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(AtomicUsize::new(0));
    let builder = shards::mesh_builder::<Work, ()>(count);
    let mut handles = Vec::new();
    for (id, rec) in recovered.into_iter().enumerate() {
        let (config, stop, failed, connections, builder) =
            (config.clone(), stop.clone(), failed.clone(), connections.clone(), builder.clone());
        let cpu = cpus[id % cpus.len()];
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{id}"))
            .spawn(move || async move {
                let _alarm = PanicAlarm(failed.clone());
                let result = shard_main(id, count, config, rec, builder, stop, connections).await;
                if let Err(e) = &result {
                    eprintln!("portcullis: shard {id}: {e}");
                    failed.store(true, Ordering::SeqCst);
                }
                result
            })
            .map_err(|e| format!("starting shard {id}: {e}"))?;
        handles.push(handle);
    }
    while !stop.load(Ordering::SeqCst) {
        if wait_stop_signal(Duration::from_millis(100)) || failed.load(Ordering::SeqCst) {
            stop.store(true, Ordering::SeqCst);
        }
    }
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("{e:?}")),
        }
    }
    if errors.is_empty() {
        eprintln!("portcullis: stopped");
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

async fn shard_main(
    id: usize,
    count: usize,
    config: Arc<Config>,
    recovered: RecoveredShard,
    builder: Option<glommio::channels::channel_mesh::MeshBuilder<shards::Letter<Work, ()>, glommio::channels::channel_mesh::Full>>,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
) -> Result<(), String> {
    let log = MailLog::open(&config.log_file, id).map_err(|e| format!("log {}: {e}", config.log_file))?;
    glommio::spawn_local(log.clone().flush_periodically()).detach();
    let bounds = QueueBounds { messages_max: config.delivery.queue_messages_max, bytes_max: config.delivery.queue_bytes_max };
    let spool = Spool::open(&config.spool_dir, id, &recovered, bounds)
        .await
        .map_err(|e| format!("spool: {e}"))?;
    // Bind before joining the mesh so a bad address fails fast on every shard.
    let listeners = config
        .listen
        .iter()
        .map(|a| glommio::net::TcpListener::bind(a).map_err(|e| format!("listen {a}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mesh = Mesh::join(builder, id, count).await;
    let pool = Pool::new(pool_config(&config));
    let delivery = Delivery::new(config.clone(), pool, mesh.clone(), log.clone());
    let shard = Rc::new(Shard {
        session_config: Arc::new(session_config(&config)),
        config: config.clone(),
        mesh: mesh.clone(),
        spool,
        delivery,
        log: log.clone(),
        connections,
        active: Cell::new(0),
        next_connection: Cell::new(0),
        shutdown: glommio::sync::Semaphore::new(0),
    });
    let weak = Rc::downgrade(&shard);
    mesh.serve(Rc::new(move |work| {
        if let Some(shard) = weak.upgrade() {
            shard.handle(work);
        }
    }));
    for m in recovered.messages {
        let envelope = Arc::new(m.envelope);
        shard.dispatch(m.queue_id, envelope, Arc::new(m.data), &m.remaining, m.accepted_secs);
    }
    let accepting: Vec<_> = listeners.into_iter().map(|l| glommio::spawn_local(listener::accept_loop(l, shard.clone()))).collect();

    while !stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    // Stop accepting (dropping the tasks closes the listening sockets),
    // let sessions finish within the grace, then 421 the rest.
    drop(accepting);
    let grace_end = Instant::now() + Duration::from_secs(config.shutdown_grace_secs);
    while shard.active.get() > 0 && Instant::now() < grace_end {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    shard.shutdown.close();
    let hard_end = Instant::now() + Duration::from_secs(2);
    while shard.active.get() > 0 && Instant::now() < hard_end {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    // QUIT idle downstream connections, bounded: a stuck peer must not hold up the exit.
    let _ = glommio::timer::timeout(Duration::from_secs(2), async {
        shard.delivery.close_idle().await;
        Ok(())
    })
    .await;
    log.event("stopped", format_args!("owed={} delivering={}", shard.spool.live_messages(), shard.delivery.in_flight()));
    log.flush();
    Ok(())
}

pub fn session_config(config: &Config) -> SessionConfig {
    SessionConfig {
        hostname: config.hostname.clone(),
        postmaster_domain: config.relay_domains[0].to_ascii_lowercase(),
    }
}

fn pool_config(config: &Config) -> PoolConfig {
    let t = &config.timeouts;
    let d = &config.delivery;
    PoolConfig {
        helo_name: config.hostname.clone(),
        connect_timeout: Duration::from_secs(t.client_connect_secs),
        greeting_timeout: Duration::from_secs(t.client_greeting_secs),
        command_timeout: Duration::from_secs(t.client_command_secs),
        data_block_timeout: Duration::from_secs(t.client_data_block_secs),
        data_termination_timeout: Duration::from_secs(t.client_data_termination_secs),
        connections_per_host_max: d.connections_per_host_max,
        idle_timeout: Duration::from_secs(d.pool_idle_secs),
        messages_per_connection_max: d.messages_per_connection_max,
    }
}

/// Raises `failed` if a shard thread unwinds, so the process stops instead
/// of running on with a dead shard.
struct PanicAlarm(Arc<AtomicBool>);

impl Drop for PanicAlarm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Block SIGTERM/SIGINT in this thread and every thread started after it,
/// so that only `wait_stop_signal` sees them.
fn block_stop_signals() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// True if SIGTERM or SIGINT arrived within `wait`.
fn wait_stop_signal(wait: Duration) -> bool {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let ts = libc::timespec { tv_sec: wait.as_secs() as libc::time_t, tv_nsec: wait.subsec_nanos() as libc::c_long };
        libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) > 0
    }
}
