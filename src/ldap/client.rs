//! The LDAP client thread: where the routing and accept queries (issue 8)
//! meet the directory. Shards never run ldap3 (it lives on tokio), so one
//! thread, "portcullis-ldap", runs it on a tokio current-thread runtime;
//! a shard hands it a search over a bounded crossbeam channel and awaits a
//! oneshot reply, so it only ever awaits and never blocks.
//!
//! Flow: `Directory::search` (any thread, any runtime) → `try_send` of a
//! `Job` → the thread's loop hands it to a local task → `pool::ServerPool`
//! of that server (bound connections, `urls` in order, round robin) →
//! ldap3 search → the first entry, bounded, back over the oneshot.
//!
//! SMTP AUTH against LDAP (`Directory::bind_entry`, `pool/bind.rs`)
//! takes the same way: the search for the user's entry on the pooled
//! service connections, then a bind as that entry on a connection of its
//! own, so a user's bind never changes who a pooled connection is.
//!
//! Every way a search can go wrong — a full queue, a stopped or dead
//! thread, an unreachable server, a refused bind, a timeout, an LDAP error
//! result — is `Err(reason)`, which the caller treats as a temporary
//! failure (4xx, defer). Only "nothing matches" is `Ok(None)`. Nothing
//! here panics on the caller's side or blocks it.
//!
//! No glommio in this file: it is tested from plain threads with
//! `futures_lite::future::block_on`.

mod pool;
mod tls;

#[cfg(test)]
mod tests;

use crate::limits::{LDAP_JOBS_MAX, LDAP_QUEUE_MAX};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_channel::oneshot;
use pool::ServerPool;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// One configured LDAP server (`[ldap.server.NAME]`), as the thread needs
/// it. Two specs of one name that differ (a reload changed it) do not
/// share connections: the new spec gets a new pool.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    /// `ldap://` or `ldaps://`, tried in order.
    pub urls: Vec<String>,
    /// Empty: anonymous (no bind operation at all).
    pub bind_dn: String,
    /// Read from `bind_password_file` by the config loader. Never logged,
    /// never in an error, not shown by `Debug`.
    pub bind_password: String,
    /// The search base; every search is a subtree search under it.
    pub base: String,
    /// StartTLS (RFC 4511 §4.14) on `ldap://` URLs.
    pub starttls: bool,
    /// Extra trust anchors (PEM) for ldaps/StartTLS, added to the system's.
    pub ca_file: Option<PathBuf>,
    /// Each connect (TCP and TLS), bind, search, and each wait for a turn.
    pub timeout: Duration,
    /// Bound connections kept (1 ..= `LDAP_CONNECTIONS_MAX`).
    pub connections: usize,
}

/// The password is replaced so that a spec in a log line or a test
/// failure cannot leak it.
impl fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("name", &self.name)
            .field("urls", &self.urls)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"<redacted>")
            .field("base", &self.base)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .field("connections", &self.connections)
            .finish()
    }
}

/// An entry's attributes: names lower-cased (LDAP attribute descriptions
/// compare without case, RFC 4512 §2.5), values as stored, bounded by
/// `LDAP_ENTRY_ATTRIBUTES_MAX`, `LDAP_ATTRIBUTE_VALUES_MAX` and
/// `LDAP_VALUE_BYTES_MAX`.
pub type Entry = BTreeMap<String, Vec<String>>;

/// The key under which an entry lists what the client cut to its bounds
/// (not an attribute name LDAP allows, so it never collides with one).
pub const CUT_MARK: &str = "<cut>";

/// What a search answers: the first entry, `None` when nothing matches,
/// or why it failed (a temporary failure for the caller).
pub type Answer = Result<Option<Entry>, String>;

/// The thread `Directory::start` started last (see `Directory::running`).
static RUNNING: std::sync::Mutex<std::sync::Weak<Handle>> = std::sync::Mutex::new(std::sync::Weak::new());

const QUEUE_FULL: &str = "LDAP request queue full";
const STOPPED: &str = "LDAP thread stopped";

/// What a user bind (`Directory::bind_entry`) answers; Err is a
/// temporary failure, as for a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindVerdict {
    /// The entry's DN took the password.
    Bound { dn: String },
    /// The filter found no entry.
    NoEntry,
    /// The entry exists; the server refused the password (RFC 4511
    /// §4.1.9: invalidCredentials, inappropriateAuthentication,
    /// insufficientAccessRights).
    Refused { dn: String },
    /// An empty password, refused before anything was asked (RFC 4513
    /// §5.1.2: it would be an unauthenticated bind, which "succeeds").
    EmptyPassword,
    /// The filter matches this many entries or more: no bind is tried.
    Ambiguous { entries: usize },
}

pub type BindAnswer = Result<BindVerdict, String>;

/// One search or user bind handed to the thread.
struct Job {
    server: Arc<ServerSpec>,
    work: Work,
}

enum Work {
    Search { filter: String, attributes: Vec<String>, reply: oneshot::Sender<Answer> },
    /// Find the entry with `filter`, then bind as it with `password`.
    Bind { filter: String, password: String, reply: oneshot::Sender<BindAnswer> },
}

impl Work {
    fn is_canceled(&self) -> bool {
        match self {
            Work::Search { reply, .. } => reply.is_canceled(),
            Work::Bind { reply, .. } => reply.is_canceled(),
        }
    }

    /// Answer with `why` (a temporary failure) without doing the work.
    fn fail(self, why: String) {
        let _ = match self {
            Work::Search { reply, .. } => reply.send(Err(why)).map_err(drop),
            Work::Bind { reply, .. } => reply.send(Err(why)).map_err(drop),
        };
    }
}

/// What callers and the thread share: the stop flag and the wake-up. The
/// thread never blocks on the channel (it runs tokio tasks meanwhile), so
/// a sender wakes it through the `Notify`, which keeps one permit when
/// the thread is busy: a send is never missed.
#[derive(Default)]
struct Shared {
    stopped: AtomicBool,
    wake: Notify,
}

impl Shared {
    // SeqCst: a caller's "sent, then not stopped?" and the thread's
    // "stopped, then drain" must see each other (see `answer_leftovers`).
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// Answers every job still queued with "stopped". A crossbeam channel
/// keeps its messages while any sender lives, so jobs left in the queue
/// by a stopped (or stuck) thread would never be answered: both the thread
/// on its way out and the callers (`stop`, and a `submit` that finds the
/// flag set after sending) empty it. Each job is taken once, by whoever
/// gets it first.
fn answer_leftovers(jobs: &Receiver<Job>) {
    while let Ok(job) = jobs.try_recv() {
        job.work.fail(STOPPED.to_string());
    }
}

/// The sending side, and a receiver to empty the queue when stopping; the
/// thread stops when the last `Directory` clone drops it.
struct Handle {
    jobs: Sender<Job>,
    leftovers: Receiver<Job>,
    shared: Arc<Shared>,
    /// The thread, for `stop_and_wait`.
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Handle {
    fn stop(&self) {
        self.shared.stop();
        answer_leftovers(&self.leftovers);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The process's way to the LDAP thread: `Send + Sync`, cheap to clone,
/// one per process (every shard holds a clone).
#[derive(Clone)]
pub struct Directory {
    handle: Arc<Handle>,
}

impl Directory {
    /// Spawns the LDAP thread ("portcullis-ldap") with its tokio
    /// current-thread runtime and a queue of `LDAP_QUEUE_MAX` searches.
    pub fn start() -> Directory {
        let directory = Directory::with_bounds(LDAP_QUEUE_MAX, LDAP_JOBS_MAX);
        *RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::downgrade(&directory.handle);
        directory
    }

    /// The process's LDAP thread, the one [`Directory::start`] started
    /// last, while a clone of it lives (the shards and lifecycle hold
    /// one): how SMTP AUTH finds it without a handle of its own.
    pub fn running() -> Option<Directory> {
        let running = RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        running.upgrade().map(|handle| Directory { handle })
    }

    /// Like [`Directory::start`] with a queue of `capacity` searches.
    /// Capacity 0 is a rendezvous channel the thread never waits on
    /// (it only polls it), so every search fails "queue full" at once:
    /// how tests see that answer.
    pub fn with_queue(capacity: usize) -> Directory {
        Directory::with_bounds(capacity, LDAP_JOBS_MAX)
    }

    fn with_bounds(queue: usize, jobs_max: usize) -> Directory {
        let (jobs, receiver) = crossbeam_channel::bounded(queue);
        let shared = Arc::new(Shared::default());
        let (thread_receiver, thread_shared) = (receiver.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name("portcullis-ldap".into())
            .spawn(move || run(thread_receiver, thread_shared, jobs_max));
        let failed = spawned.is_err();
        let handle = Handle {
            jobs,
            leftovers: receiver,
            shared,
            thread: std::sync::Mutex::new(spawned.ok()),
        };
        if failed {
            handle.stop(); // every search answers "stopped", no panic
        }
        Directory {
            handle: Arc::new(handle),
        }
    }

    /// Searches `server.base` (subtree) with `filter` (already escaped by
    /// the caller, `ldap::filter`) for `attributes` (empty: all user
    /// attributes); the first entry, or `None` when nothing matches.
    /// Queued at once (a full queue answers at once); never blocks the
    /// caller and never panics.
    pub fn search(
        &self,
        server: &Arc<ServerSpec>,
        filter: String,
        attributes: Vec<String>,
    ) -> impl Future<Output = Answer> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let submitted = self.submit(server.clone(), Work::Search { filter, attributes, reply }).map(|()| answer);
        async move {
            let reply = submitted?;
            // A dropped sender: the thread stopped (or died) with the job.
            reply.await.unwrap_or_else(|_| Err(STOPPED.to_string()))
        }
    }

    /// Finds the one entry `filter` (escaped by the caller) matches under
    /// `server.base` with the service bind, then binds as its DN with
    /// `password` on a new connection (`server`'s URLs, TLS and timeout),
    /// closed after. An empty password is refused here, before anything
    /// is asked. Queued like a search; never blocks, never panics.
    pub fn bind_entry(
        &self,
        server: &Arc<ServerSpec>,
        filter: String,
        password: String,
    ) -> impl Future<Output = BindAnswer> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let submitted = match password.is_empty() {
            true => Err(None),
            false => self.submit(server.clone(), Work::Bind { filter, password, reply }).map_err(Some),
        };
        async move {
            match submitted {
                Ok(()) => answer.await.unwrap_or_else(|_| Err(STOPPED.to_string())),
                Err(None) => Ok(BindVerdict::EmptyPassword),
                Err(Some(why)) => Err(why),
            }
        }
    }

    /// Stops the thread: pending and later searches answer `Err`. Also
    /// done when the last clone drops. Does not wait for the thread.
    pub fn stop(&self) {
        self.handle.stop();
    }

    /// Stop, then wait (at most `wait`) for the thread to have ended: the
    /// process must not exit while it still tears its runtime down (the
    /// allocator's exit hook racing a live thread ends in SIGSEGV, as the
    /// mail log's writer threads once did). True when it has ended.
    pub fn stop_and_wait(&self, wait: std::time::Duration) -> bool {
        self.stop();
        let deadline = std::time::Instant::now() + wait;
        let mut thread = self.handle.thread.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(running) = thread.as_ref() {
            if running.is_finished() {
                let _ = thread.take().map(|t| t.join());
                break;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        true
    }

    fn submit(&self, server: Arc<ServerSpec>, work: Work) -> Result<(), String> {
        if self.handle.shared.is_stopped() {
            return Err(STOPPED.to_string());
        }
        let job = Job { server, work };
        match self.handle.jobs.try_send(job) {
            Ok(()) => {
                self.handle.shared.wake.notify_one();
                if self.handle.shared.is_stopped() {
                    // The thread may have drained for the last time
                    // before this job arrived: answer it (and any other).
                    answer_leftovers(&self.handle.leftovers);
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(QUEUE_FULL.to_string()),
            Err(TrySendError::Disconnected(_)) => Err("LDAP thread not running".to_string()),
        }
    }
}

/// The thread's body: a current-thread runtime with a `LocalSet`, so the
/// pools are plain `Rc`/`Cell` (one thread, no locks). Returning drops the
/// runtime and its tasks, and with them every pending reply sender; jobs
/// still queued are answered "stopped".
fn run(jobs: Receiver<Job>, shared: Arc<Shared>, jobs_max: usize) {
    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, serve(&jobs, &shared, jobs_max));
    }
    shared.stop();
    answer_leftovers(&jobs);
}

/// Takes jobs off the channel until stopped. Each job runs as its own
/// local task; at most `jobs_max` at once, past that a job is answered at
/// once (the thread is far behind: better a 4xx now than one later).
async fn serve(jobs: &Receiver<Job>, shared: &Shared, jobs_max: usize) {
    let mut pools: HashMap<String, Rc<ServerPool>> = HashMap::new();
    let in_flight = Rc::new(Cell::new(0usize));
    while !shared.is_stopped() {
        let mut took_any = false;
        while let Ok(job) = jobs.try_recv() {
            took_any = true;
            dispatch(job, &mut pools, &in_flight, jobs_max);
        }
        if took_any {
            // Let the searches run before draining again: a flood of
            // jobs must not starve the tasks that answer them.
            tokio::task::yield_now().await;
        } else {
            shared.wake.notified().await;
        }
    }
}

fn dispatch(
    job: Job,
    pools: &mut HashMap<String, Rc<ServerPool>>,
    in_flight: &Rc<Cell<usize>>,
    jobs_max: usize,
) {
    if job.work.is_canceled() {
        return; // the caller gave up waiting: nobody reads the answer
    }
    if in_flight.get() >= jobs_max {
        job.work.fail(format!("LDAP thread busy: {jobs_max} searches in flight"));
        return;
    }
    let pool = pool_for(pools, &job.server);
    let counted = InFlight::enter(in_flight);
    tokio::task::spawn_local(async move {
        let _counted = counted;
        match job.work {
            Work::Search { filter, attributes, reply } => {
                let _ = reply.send(pool.search(&filter, &attributes).await);
            }
            Work::Bind { filter, password, reply } => {
                let _ = reply.send(pool.bind_entry(&filter, &password).await);
            }
        }
    });
}

/// The pool of `spec.name`, made anew when the spec changed (reload):
/// searches already running keep the old pool until they finish.
fn pool_for(pools: &mut HashMap<String, Rc<ServerPool>>, spec: &Arc<ServerSpec>) -> Rc<ServerPool> {
    if let Some(pool) = pools.get(&spec.name) {
        if pool.spec() == &**spec {
            return pool.clone();
        }
    }
    let pool = Rc::new(ServerPool::new(spec.clone()));
    pools.insert(spec.name.clone(), pool.clone());
    pool
}

/// Counts a running job; uncounted when its task ends, however it ends.
struct InFlight(Rc<Cell<usize>>);

impl InFlight {
    fn enter(count: &Rc<Cell<usize>>) -> InFlight {
        count.set(count.get() + 1);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
