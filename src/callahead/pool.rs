//! The probe pool of the call-ahead servers this shard owns (a server's
//! owner is `owner("IP:PORT")`), so one shard holds every probe connection
//! to a server and `max_connections_per_server` holds for the whole
//! appliance, exactly, with the server's breaker beside it.
//!
//! Probes queue per server. A worker holds one connection: it takes the
//! queued probes that share a MAIL FROM (at most what the session has left
//! of `max_recipients_per_session`, and `CALLAHEAD_BATCH_RCPTS_MAX`), sends
//! them as one pipelined batch into the open transaction (MAIL FROM once
//! per session, RFC 2920), answers each, RSETs when the session is full and
//! goes on while probes wait; then the connection waits idle for the next
//! (`CALLAHEAD_IDLE_SECS`). So RCPTs of many client sessions share one
//! probe transaction, and a burst opens at most the cap.
//!
//! TLS (RFC 3207): a request carries how its profile wants STARTTLS; the
//! connections of a server are kept apart by that mode (a connection in
//! clear never answers a probe that requires TLS), so the cap holds per
//! server and mode. The verdict says how the answering connection was
//! protected (`Probed::tls`, for the call-ahead log line).
//!
//! A reused connection found dead before it answered anything (the server
//! timed it out while idle) is replaced once, unseen. Every wait is bounded
//! by the earliest deadline of the batch: the profile's validation timeout
//! covers the whole request.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use hashbrown::HashMap;

use super::breaker::Breaker;
use super::connection::{ProbeConnection, ProbeTlsSetup};
use super::verdict::{of_fault, Stage, Verdict};
use super::Profile;
use crate::metrics::Metrics;
use crate::limits::{
    CALLAHEAD_BATCH_RCPTS_MAX, CALLAHEAD_IDLE_SECS, CALLAHEAD_QUEUE_MAX, CALLAHEAD_REFUSALS_PER_CONNECTION_MAX, CALLAHEAD_RESETS_PER_CONNECTION_MAX,
    CALLAHEAD_TIMEOUT_SECS_MAX,
};
use crate::shards::ShardRequest;
use crate::smtp::client::StartTls;

/// Probe `address` at `server` (sent to the server's owner shard).
#[derive(Debug)]
pub struct ProbeRequest {
    pub server: SocketAddr,
    pub profile: Arc<Profile>,
    pub address: String,
    pub deadline: Instant,
    /// STARTTLS as the profile wants it (`ProbeTlsSetup::default()`: off).
    pub tls: ProbeTlsSetup,
}

/// What the server said, or why it was not asked.
#[derive(Clone, Debug)]
pub struct Probed {
    pub verdict: Verdict,
    /// The breaker answered: no probe was sent.
    pub by_breaker: bool,
    /// "TLSv1.3/CIPHER" when the answering connection ran over TLS.
    pub tls: Option<String>,
}

impl ShardRequest for ProbeRequest {
    type Reply = Probed;
    fn timeout() -> Duration {
        Duration::from_secs(CALLAHEAD_TIMEOUT_SECS_MAX + 5)
    }
}

struct Job {
    address: String,
    profile: Arc<Profile>,
    deadline: Instant,
    reply: oneshot::Sender<(Verdict, Option<String>)>,
    /// Already repeated once after a stale connection.
    retried: bool,
}

/// One server: its queue, its connections, its breaker.
struct Server {
    addr: SocketAddr,
    tls: ProbeTlsSetup,
    queue: RefCell<VecDeque<Job>>,
    idle: RefCell<Vec<ProbeConnection>>,
    /// Connections open (busy or idle): never above the cap.
    open: Cell<usize>,
    /// Workers spawned that have not taken their first batch yet.
    starting: Cell<usize>,
    breaker: RefCell<Breaker>,
}

pub struct ProbePool {
    helo_name: String,
    servers: RefCell<HashMap<(SocketAddr, StartTls), Rc<Server>>>,
    /// The shard's metrics: probes sent, connections opened, probe latency.
    metrics: Arc<Metrics>,
    epoch: Instant,
}

impl ProbePool {
    pub fn new(helo_name: &str, metrics: Arc<Metrics>) -> Rc<ProbePool> {
        let pool = Rc::new(ProbePool {
            helo_name: helo_name.to_string(),
            servers: RefCell::new(HashMap::new()),
            metrics,
            epoch: Instant::now(),
        });
        glommio::spawn_local(reap_idle(Rc::downgrade(&pool))).detach();
        pool
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Answer one probe request (on the server's owner shard).
    pub async fn probe(self: &Rc<Self>, request: ProbeRequest) -> Probed {
        let server = self.server(request.server, &request.tls);
        let profile = request.profile.clone();
        if !server.breaker.borrow_mut().admit(profile.breaker_failures, self.now_ms()) {
            let why = format!("{}: circuit breaker open after {} consecutive failures", server.addr, profile.breaker_failures);
            return Probed { verdict: of_fault(Stage::Connect, why), by_breaker: true, tls: None };
        }
        if server.queue.borrow().len() >= CALLAHEAD_QUEUE_MAX {
            let why = format!("{}: {} probes already wait for this server", server.addr, CALLAHEAD_QUEUE_MAX);
            return Probed { verdict: of_fault(Stage::Connect, why), by_breaker: false, tls: None };
        }
        let (reply, answered) = oneshot::channel();
        let reached = Instant::now();
        server.queue.borrow_mut().push_back(Job { address: request.address, profile, deadline: request.deadline, reply, retried: false });
        self.dispatch(&server);
        let (verdict, tls) = answered.await.unwrap_or_else(|_| (of_fault(Stage::Connect, "probe pool stopped"), None));
        self.metrics.callahead_probe_latency(reached.elapsed());
        let failures = request.profile.breaker_failures;
        let open_ms = request.profile.breaker_open.as_millis() as u64;
        server.breaker.borrow_mut().record(verdict.is_server_failure(), failures, open_ms, self.now_ms());
        Probed { verdict, by_breaker: false, tls }
    }

    /// Connections open to `server` from the whole appliance (this shard owns it).
    pub fn open_connections(&self, server: SocketAddr) -> usize {
        self.servers.borrow().values().filter(|s| s.addr == server).map(|s| s.open.get()).sum()
    }

    /// Is `server`'s breaker refusing probes?
    pub fn breaker_open(&self, server: SocketAddr) -> bool {
        self.servers.borrow().values().any(|s| s.addr == server && s.breaker.borrow().is_open())
    }

    /// Every server this shard owns with its open connections and breaker state.
    pub fn servers(&self) -> Vec<(SocketAddr, usize, bool)> {
        self.servers.borrow().values().map(|s| (s.addr, s.open.get(), s.breaker.borrow().is_open())).collect()
    }

    /// QUIT every idle connection (shutdown).
    pub async fn close_idle(&self) {
        let idle: Vec<ProbeConnection> = self.servers.borrow().values().flat_map(|s| s.idle.borrow_mut().drain(..).collect::<Vec<_>>()).collect();
        for conn in idle {
            conn.quit().await;
        }
    }

    fn server(&self, addr: SocketAddr, tls: &ProbeTlsSetup) -> Rc<Server> {
        self.servers
            .borrow_mut()
            .entry((addr, tls.mode))
            .or_insert_with(|| {
                Rc::new(Server {
                    addr,
                    tls: tls.clone(),
                    queue: RefCell::new(VecDeque::new()),
                    idle: RefCell::new(Vec::new()),
                    open: Cell::new(0),
                    starting: Cell::new(0),
                    breaker: RefCell::new(Breaker::default()),
                })
            })
            .clone()
    }

    /// Start a worker if probes wait that no starting worker will take:
    /// on an idle connection first, else on a new one while under the cap.
    /// Busy workers take what is left when their batch is answered.
    fn dispatch(self: &Rc<Self>, server: &Rc<Server>) {
        let waiting = server.queue.borrow().len();
        if waiting <= server.starting.get() {
            return;
        }
        let cap = server.queue.borrow().front().map_or(1, |j| j.profile.max_connections_per_server);
        let conn = server.idle.borrow_mut().pop();
        if conn.is_none() && server.open.get() >= cap {
            return;
        }
        if conn.is_none() {
            server.open.set(server.open.get() + 1);
        }
        server.starting.set(server.starting.get() + 1);
        glommio::spawn_local(self.clone().work(server.clone(), conn)).detach();
    }

    /// One connection's life: batches until the queue is empty, then idle.
    async fn work(self: Rc<Self>, server: Rc<Server>, conn: Option<ProbeConnection>) {
        let mut conn = conn;
        let mut first = true;
        loop {
            let batch = take_batch(&server, conn.as_ref());
            if first {
                server.starting.set(server.starting.get() - 1);
                first = false;
            }
            let Some(batch) = batch else { break };
            let deadline = batch.iter().map(|j| j.deadline).min().expect("a batch is not empty");
            let reused = conn.is_some();
            let mut c = match conn.take() {
                Some(c) => c,
                None => match ProbeConnection::open_with(server.addr, &self.helo_name, batch[0].profile.source_address, deadline, &server.tls).await {
                    Ok(c) => {
                        self.metrics.callahead_connection_opened();
                        if server.tls.mode != StartTls::Off {
                            self.metrics.outbound_tls("callahead", &batch[0].profile.name, if c.tls.is_some() { "tls" } else { "clear" });
                        }
                        c
                    }
                    Err(failed) => {
                        if failed.tls_refused {
                            self.metrics.outbound_tls("callahead", &batch[0].profile.name, "failed");
                        }
                        answer_all(batch, &failed.verdict, None);
                        server.open.set(server.open.get() - 1);
                        return self.dispatch(&server);
                    }
                },
            };
            // A full probe session is reset now, not when it filled: the
            // client whose RCPT filled it got its answer without that wait.
            let session_max = batch[0].profile.max_recipients_per_session;
            if c.rcpts_in_transaction() >= session_max && !c.rset(deadline).await {
                requeue_front(&server, batch, false);
                continue;
            }
            let addresses: Vec<String> = batch.iter().map(|j| j.address.clone()).collect();
            self.metrics.callahead_probes_sent(addresses.len() as u64);
            let verdicts = c.probe(&batch[0].profile.mail_from, &addresses, deadline).await;
            if !c.is_reusable() && reused && c.was_dead_before_use() && batch.iter().all(|j| !j.retried) {
                // The server closed the idle connection: nothing was asked. Again, on a fresh one.
                requeue_front(&server, batch, true);
                continue;
            }
            c.refusals += verdicts.iter().filter(|v| !matches!(v, Verdict::Accepted(_))).count();
            let tls = c.tls.as_ref().map(|t| format!("{}/{}", t.version, t.cipher));
            for (job, verdict) in batch.into_iter().zip(verdicts) {
                let _ = job.reply.send((verdict, tls.clone()));
            }
            if c.is_reusable() && !is_worn(&c) {
                conn = Some(c);
            } else if c.is_reusable() {
                // Retired before the server's error limits punish it (the
                // batch is answered; the slot stays this worker's, and the
                // QUIT goes out before a fresh connection may open).
                c.quit().await;
            }
        }
        match conn {
            Some(mut c) => {
                c.idle_since = Instant::now();
                server.idle.borrow_mut().push(c);
            }
            None => server.open.set(server.open.get() - 1),
        }
        // Probes may have queued while the last batch was out.
        self.dispatch(&server);
    }
}

/// The next batch for `conn` (None: a connection yet to open): waiting
/// probes with the first one's MAIL FROM, in order, within the room left
/// in its probe session (a full session will be reset first). Probes past
/// their deadline are answered.
fn take_batch(server: &Server, conn: Option<&ProbeConnection>) -> Option<Vec<Job>> {
    let mut queue = server.queue.borrow_mut();
    let now = Instant::now();
    while queue.front().is_some_and(|j| j.deadline <= now) {
        let job = queue.pop_front().expect("checked");
        let _ = job.reply.send((of_fault(Stage::Connect, format!("{}: validation timed out waiting for a probe connection", server.addr)), None));
    }
    let first = queue.front()?;
    let mail_from = first.profile.mail_from.clone();
    let max = first.profile.max_recipients_per_session;
    let in_session = conn.map_or(0, |c| c.rcpts_in_transaction());
    let refusals_left = CALLAHEAD_REFUSALS_PER_CONNECTION_MAX.saturating_sub(conn.map_or(0, |c| c.refusals)).max(1);
    let room = match in_session >= max {
        true => max,
        false => max - in_session,
    }
    .min(CALLAHEAD_BATCH_RCPTS_MAX)
    .min(refusals_left);
    let mut batch = Vec::new();
    let mut rest = VecDeque::new();
    while let Some(job) = queue.pop_front() {
        if batch.len() < room && job.profile.mail_from == mail_from && job.deadline > now {
            batch.push(job);
        } else {
            rest.push_back(job);
        }
        if batch.len() == room {
            break;
        }
    }
    rest.append(&mut queue);
    *queue = rest;
    Some(batch)
}

/// Has the connection collected as many refusals or RSETs as a server
/// tolerates in one session (see `CALLAHEAD_REFUSALS_PER_CONNECTION_MAX`)?
fn is_worn(conn: &ProbeConnection) -> bool {
    conn.refusals >= CALLAHEAD_REFUSALS_PER_CONNECTION_MAX || conn.resets >= CALLAHEAD_RESETS_PER_CONNECTION_MAX
}

fn answer_all(batch: Vec<Job>, verdict: &Verdict, tls: Option<String>) {
    for job in batch {
        let _ = job.reply.send((verdict.clone(), tls.clone()));
    }
}

/// Put a batch back at the head of the queue; `retried`: it met a stale
/// connection (it is repeated once, not twice).
fn requeue_front(server: &Server, batch: Vec<Job>, retried: bool) {
    let mut queue = server.queue.borrow_mut();
    for mut job in batch.into_iter().rev() {
        job.retried |= retried;
        queue.push_front(job);
    }
}

/// QUIT connections idle past `CALLAHEAD_IDLE_SECS`, and forget servers
/// with nothing open or queued (their breaker too, once closed).
async fn reap_idle(pool: Weak<ProbePool>) {
    let idle_for = Duration::from_secs(CALLAHEAD_IDLE_SECS);
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut expired = Vec::new();
        for server in pool.servers.borrow().values() {
            let old: Vec<ProbeConnection> = {
                let mut idle = server.idle.borrow_mut();
                let (old, fresh) = idle.drain(..).partition(|c| c.idle_since.elapsed() >= idle_for);
                *idle = fresh;
                old
            };
            expired.extend(old.into_iter().map(|c| (server.clone(), c)));
        }
        // Each slot is given back once its QUIT is out: the server never
        // sees more than the cap.
        for (server, conn) in expired {
            conn.quit().await;
            server.open.set(server.open.get() - 1);
        }
        pool.servers.borrow_mut().retain(|_, s| Rc::strong_count(s) > 1 || s.open.get() > 0 || !s.queue.borrow().is_empty() || s.breaker.borrow().is_open());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::callahead::CallaheadConfig;

    fn profile(mail_from: &str, session: u32) -> Arc<Profile> {
        let config = CallaheadConfig { mail_from: mail_from.into(), max_recipients_per_session: session, ..CallaheadConfig::default() };
        Arc::new(Profile::compile("p", &config))
    }

    fn server_with(jobs: Vec<(&str, Arc<Profile>, Instant)>) -> (Server, Vec<oneshot::Receiver<(Verdict, Option<String>)>>) {
        let server = Server {
            addr: "127.0.0.1:25".parse().unwrap(),
            tls: ProbeTlsSetup::default(),
            queue: RefCell::new(VecDeque::new()),
            idle: RefCell::new(Vec::new()),
            open: Cell::new(0),
            starting: Cell::new(0),
            breaker: RefCell::new(Breaker::default()),
        };
        let mut answers = Vec::new();
        for (address, profile, deadline) in jobs {
            let (reply, answer) = oneshot::channel();
            server.queue.borrow_mut().push_back(Job { address: address.into(), profile, deadline, reply, retried: false });
            answers.push(answer);
        }
        (server, answers)
    }

    fn addresses(batch: &[Job]) -> Vec<&str> {
        batch.iter().map(|j| j.address.as_str()).collect()
    }

    #[test]
    fn a_batch_shares_one_mail_from_and_keeps_queue_order() {
        let later = Instant::now() + Duration::from_secs(60);
        let (a, b) = (profile("", 1000), profile("verify@portcullis.test", 1000));
        let (server, _answers) = server_with(vec![("1@d", a.clone(), later), ("2@d", b.clone(), later), ("3@d", a.clone(), later), ("4@d", b, later)]);
        let batch = take_batch(&server, None).unwrap();
        assert_eq!(addresses(&batch), ["1@d", "3@d"]);
        let batch = take_batch(&server, None).unwrap();
        assert_eq!(addresses(&batch), ["2@d", "4@d"]);
        assert!(take_batch(&server, None).is_none());
    }

    #[test]
    fn a_batch_fits_the_session_the_batch_bound_and_the_refusal_budget() {
        let later = Instant::now() + Duration::from_secs(60);
        let p = profile("", 3);
        let jobs: Vec<_> = ["1@d", "2@d", "3@d", "4@d"].into_iter().map(|a| (a, p.clone(), later)).collect();
        let (server, _answers) = server_with(jobs);
        assert_eq!(take_batch(&server, None).unwrap().len(), 3, "max_recipients_per_session");
        assert_eq!(take_batch(&server, None).unwrap().len(), 1);
        let big = profile("", 25_000);
        let jobs: Vec<_> = (0..CALLAHEAD_BATCH_RCPTS_MAX + 5).map(|_| ("x@d", big.clone(), later)).collect();
        let (server, _answers) = server_with(jobs);
        // A fresh connection may collect CALLAHEAD_REFUSALS_PER_CONNECTION_MAX
        // refusals: no batch risks more (every RCPT might be refused).
        let bound = CALLAHEAD_BATCH_RCPTS_MAX.min(CALLAHEAD_REFUSALS_PER_CONNECTION_MAX);
        assert_eq!(take_batch(&server, None).unwrap().len(), bound);
    }

    #[test]
    fn probes_past_their_deadline_are_answered_not_sent() {
        let p = profile("", 1000);
        let (past, later) = (Instant::now() - Duration::from_millis(1), Instant::now() + Duration::from_secs(60));
        let (server, mut answers) = server_with(vec![("late@d", p.clone(), past), ("fine@d", p, later)]);
        let batch = take_batch(&server, None).unwrap();
        assert_eq!(addresses(&batch), ["fine@d"]);
        let (verdict, _) = answers[0].try_recv().unwrap().expect("answered at once");
        assert!(verdict.is_server_failure() && !verdict.is_cacheable(), "{verdict:?}");
    }
}
