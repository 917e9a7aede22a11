//! Shards: one pinned glommio executor per core, the one rule of ownership
//! `owner(key) = hash(key) % shards`, and the one mesh that carries every
//! subsystem's requests between them.
//!
//! Business code never builds channels. A subsystem declares its request and
//! reply types in its own module (`impl ShardRequest for LdapPurge`), registers
//! an async handler at start (`mesh.handle(|req: LdapPurge| async { .. })`), and
//! calls `mesh.ask_owner(key, req)` / `mesh.ask(shard, req)`. A request for
//! the local shard runs in place, without a channel. Every ask is bounded by
//! the request type's timeout and returns `Err(ShardGone)` instead of
//! panicking or hanging when the peer stopped, dropped the request or did not
//! answer in time.
//!
//! One mesh for all subsystems: requests travel type-erased (`Box<dyn Any>`)
//! and are dispatched by `TypeId` on arrival. Channel memory: glommio's full
//! mesh holds `shards × (shards − 1)` bounded channels of
//! `limits::MESH_CHANNEL_DEPTH` slots of one `Letter` (40 bytes plus the
//! ring's per-slot overhead, ~64 bytes), i.e. about 16 KiB per pair:
//! 2 shards 32 KiB, 8 shards 0.9 MiB, 64 shards 64 MiB. One mesh per
//! subsystem would multiply that by the number of subsystems.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_lite::StreamExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use hashbrown::HashMap;

use crate::limits;

/// Which shard owns `key`. Stable across runs and shards (SipHash with
/// fixed zero keys), so every shard computes the same owner.
pub fn owner(key: &str, shards: usize) -> usize {
    debug_assert!(shards > 0);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.to_ascii_lowercase().hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// A request one shard may send another. Declared next to the subsystem
/// that handles it.
pub trait ShardRequest: Send + 'static {
    type Reply: Send + 'static;
    /// How long an ask may take, queueing and handling included, before the
    /// caller gets `ShardGone::TimedOut`.
    fn timeout() -> Duration {
        Duration::from_millis(limits::SHARD_REQUEST_TIMEOUT_MS)
    }
}

/// Why a request to another shard did not get its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardGone {
    /// The shard has stopped (its channel is closed) or dropped the request.
    Stopped(usize),
    /// No reply within the request's timeout.
    TimedOut(usize),
    /// The shard has no handler for this request type (a wiring bug, never a panic).
    NoHandler(usize),
}

impl std::fmt::Display for ShardGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardGone::Stopped(s) => write!(f, "shard {s} has stopped"),
            ShardGone::TimedOut(s) => write!(f, "shard {s} did not answer in time"),
            ShardGone::NoHandler(s) => write!(f, "shard {s} does not handle this request"),
        }
    }
}

type AnyBox = Box<dyn Any + Send>;
type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;
type ErasedHandler = Rc<dyn Fn(AnyBox) -> LocalFuture<AnyBox>>;

/// A request in flight between shards, with where to send the reply.
pub struct Letter {
    kind: TypeId,
    request: AnyBox,
    reply: Option<oneshot::Sender<AnyBox>>,
}

/// Counters shared by all shards so that shutdown can tell when every
/// letter addressed to a shard has been handled (`Mesh::drain`).
pub struct MeshLedger {
    /// Letters put into shard i's channels, by anyone.
    addressed: Vec<AtomicU64>,
    /// Letters shard i has finished handling.
    handled: Vec<AtomicU64>,
    /// Raised by the process when it stops: a shard still waiting for its
    /// peers to join gives up instead of waiting forever.
    stop: Arc<AtomicBool>,
}

/// What every shard needs to join the one mesh; clone it into each shard.
#[derive(Clone)]
pub struct MeshPlan {
    builder: Option<MeshBuilder<Letter, Full>>,
    ledger: Arc<MeshLedger>,
    shards: usize,
}

impl MeshPlan {
    /// `stop` is the process's stop flag (see `lifecycle`).
    pub fn new(shards: usize, stop: Arc<AtomicBool>) -> MeshPlan {
        let counters = || (0..shards).map(|_| AtomicU64::new(0)).collect();
        MeshPlan {
            builder: (shards > 1).then(|| MeshBuilder::full(shards, limits::MESH_CHANNEL_DEPTH)),
            ledger: Arc::new(MeshLedger { addressed: counters(), handled: counters(), stop }),
            shards,
        }
    }
}

/// This shard's end of the mesh.
pub struct Mesh {
    id: usize,
    shards: usize,
    senders: Option<Senders<Letter>>,
    handlers: RefCell<HashMap<TypeId, ErasedHandler>>,
    ledger: Arc<MeshLedger>,
    /// Opened by `open`: peers' letters wait here until every handler is registered.
    ready: glommio::sync::Semaphore,
}

impl Mesh {
    /// Join the mesh: waits until every shard has joined, or fails when the
    /// process is stopping (a peer failed to start) — never waits forever.
    pub async fn join(plan: MeshPlan, id: usize) -> Result<Rc<Mesh>, String> {
        let MeshPlan { builder, ledger, shards } = plan;
        let (senders, receivers) = match builder {
            Some(builder) => {
                let stop = ledger.stop.clone();
                let joined = async { Some(builder.join().await) };
                let stopped = async {
                    while !stop.load(Ordering::SeqCst) {
                        glommio::timer::sleep(Duration::from_millis(20)).await;
                    }
                    None
                };
                match futures_lite::future::or(joined, stopped).await {
                    Some(Ok((s, r))) => (Some(s), Some(r)),
                    Some(Err(e)) => return Err(format!("joining the shard mesh: {e}")),
                    None => return Err("stopped before every shard joined the mesh".into()),
                }
            }
            None => (None, None),
        };
        let mesh = Rc::new(Mesh {
            id,
            shards,
            senders,
            handlers: RefCell::new(HashMap::new()),
            ledger,
            ready: glommio::sync::Semaphore::new(0),
        });
        if let Some(mut receivers) = receivers {
            for (_, stream) in receivers.streams() {
                glommio::spawn_local(mesh.clone().serve_peer(stream)).detach();
            }
        }
        Ok(mesh)
    }

    /// Handle letters from one peer, each in its own task (a handler may
    /// await, e.g. a call-ahead probe), at most
    /// `limits::MESH_HANDLERS_PER_PEER_MAX` at once: past that the peer's
    /// channel fills and its sender waits (back-pressure, not loss).
    async fn serve_peer(self: Rc<Self>, mut stream: glommio::channels::shared_channel::ConnectedReceiver<Letter>) {
        if self.ready.acquire(1).await.is_err() {
            return;
        }
        self.ready.signal(1);
        let slots = Rc::new(glommio::sync::Semaphore::new(limits::MESH_HANDLERS_PER_PEER_MAX as u64));
        while let Some(letter) = stream.next().await {
            let Ok(permit) = slots.acquire_static_permit(1).await else { return };
            let mesh = self.clone();
            glommio::spawn_local(async move {
                mesh.deliver(letter).await;
                mesh.ledger.handled[mesh.id].fetch_add(1, Ordering::SeqCst);
                drop(permit);
            })
            .detach();
        }
    }

    async fn deliver(&self, letter: Letter) {
        let handler = self.handlers.borrow().get(&letter.kind).cloned();
        // No handler: dropping the reply sender tells the asker at once.
        let Some(handler) = handler else { return };
        let reply = handler(letter.request).await;
        if let Some(tx) = letter.reply {
            let _ = tx.send(reply);
        }
    }

    /// Register this shard's handler for requests of type `Q` (local and
    /// from peers). Call for every subsystem, then `open`.
    pub fn handle<Q, F, Fut>(&self, handler: F)
    where
        Q: ShardRequest,
        F: Fn(Q) -> Fut + 'static,
        Fut: Future<Output = Q::Reply> + 'static,
    {
        let erased: ErasedHandler = Rc::new(move |request: AnyBox| {
            let request = *request.downcast::<Q>().expect("letter kind matches its TypeId");
            let reply = handler(request);
            Box::pin(async move { Box::new(reply.await) as AnyBox })
        });
        self.handlers.borrow_mut().insert(TypeId::of::<Q>(), erased);
    }

    /// Every handler is registered: start taking peers' letters.
    pub fn open(&self) {
        self.ready.signal(1);
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    pub fn owner(&self, key: &str) -> usize {
        owner(key, self.shards)
    }

    /// Run `request` on the shard that owns `key` and return its reply.
    pub async fn ask_owner<Q: ShardRequest>(&self, key: &str, request: Q) -> Result<Q::Reply, ShardGone> {
        self.ask(self.owner(key), request).await
    }

    /// Run `request` on shard `to` and return its reply, within `Q::timeout()`.
    pub async fn ask<Q: ShardRequest>(&self, to: usize, request: Q) -> Result<Q::Reply, ShardGone> {
        let asking = async {
            if to == self.id {
                return self.ask_here(request).await;
            }
            let (tx, rx) = oneshot::channel();
            self.send(to, Letter { kind: TypeId::of::<Q>(), request: Box::new(request), reply: Some(tx) }).await?;
            let reply = rx.await.map_err(|_| ShardGone::Stopped(to))?;
            Ok(*reply.downcast::<Q::Reply>().expect("reply type matches its request"))
        };
        bounded(Q::timeout(), to, asking).await
    }

    /// Put `request` into shard `to`'s channel without waiting for it to be
    /// handled. Ok means it will be handled unless that shard dies; shutdown
    /// drains every channel (`drain`) before a shard exits.
    pub async fn tell<Q: ShardRequest>(&self, to: usize, request: Q) -> Result<(), ShardGone> {
        if to == self.id {
            return self.ask_here(request).await.map(drop);
        }
        let letter = Letter { kind: TypeId::of::<Q>(), request: Box::new(request), reply: None };
        bounded(Q::timeout(), to, self.send(to, letter)).await
    }

    async fn ask_here<Q: ShardRequest>(&self, request: Q) -> Result<Q::Reply, ShardGone> {
        let handler = self.handlers.borrow().get(&TypeId::of::<Q>()).cloned();
        let handler = handler.ok_or(ShardGone::NoHandler(self.id))?;
        let reply = handler(Box::new(request)).await;
        Ok(*reply.downcast::<Q::Reply>().expect("reply type matches its request"))
    }

    async fn send(&self, to: usize, letter: Letter) -> Result<(), ShardGone> {
        let senders = self.senders.as_ref().ok_or(ShardGone::Stopped(to))?;
        // Counted before the send (the peer may handle it at once), and
        // taken back unless it went in: also when a timeout drops this future.
        let mut count = Addressed { counter: &self.ledger.addressed[to], sent: false };
        count.counter.fetch_add(1, Ordering::SeqCst);
        // send_to waits while the peer's channel is full: back-pressure.
        if senders.send_to(to, letter).await.is_err() {
            return Err(ShardGone::Stopped(to));
        }
        count.sent = true;
        Ok(())
    }

    /// Shutdown: wait until every letter addressed to this shard so far has
    /// been handled, or `deadline`. Call once no shard sends any more (after
    /// the stop barrier). Returns the letters left unhandled.
    pub async fn drain(&self, deadline: Instant) -> u64 {
        let unhandled = || {
            let addressed = self.ledger.addressed[self.id].load(Ordering::SeqCst);
            addressed.saturating_sub(self.ledger.handled[self.id].load(Ordering::SeqCst))
        };
        wait_until(deadline, Duration::from_millis(5), || unhandled() == 0).await;
        unhandled()
    }
}

/// Wait on this shard until `done()` holds or `deadline` passes, looking
/// every `every`: for conditions other shards or tasks make true and no
/// one signals (shutdown's waits). Returns whether `done()` held.
pub async fn wait_until(deadline: Instant, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        glommio::timer::sleep(every).await;
    }
    true
}

/// One letter counted as addressed to a shard; uncounted on drop unless sent.
struct Addressed<'a> {
    counter: &'a AtomicU64,
    sent: bool,
}

impl Drop for Addressed<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.counter.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Bound `work` by `limit`; a timeout names shard `to`.
async fn bounded<T>(limit: Duration, to: usize, work: impl Future<Output = Result<T, ShardGone>>) -> Result<T, ShardGone> {
    let timer = async {
        glommio::timer::sleep(limit).await;
        Err(ShardGone::TimedOut(to))
    };
    futures_lite::future::or(work, timer).await
}

/// Await every future, concurrently (a slow shard does not hold up the
/// question to the next): what asking every shard at once needs
/// (`callahead::operate`, `ldap::operate`).
pub(crate) async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// CPUs this process may run on, in order (respects taskset/cgroups).
pub fn online_cpus() -> Vec<usize> {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect();
            if !cpus.is_empty() {
                return cpus;
            }
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

#[cfg(test)]
mod tests;
