//! Shards: one pinned glommio executor per core, and the one rule of
//! ownership, `owner(key) = hash(key) % shards`.
//!
//! Business code never builds channels: it calls `Mesh::ask_owner(key, req)`
//! (run on the owner shard, await its reply) or `Mesh::tell(shard, req)`.
//! A request for the local shard is handled in place, without a channel.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use futures_channel::oneshot;
use futures_lite::StreamExt;
use glommio::channels::channel_mesh::{MeshBuilder, Senders};

/// Which shard owns `key`. Stable across runs and shards (SipHash with
/// fixed zero keys), so every shard computes the same owner.
pub fn owner(key: &str, shards: usize) -> usize {
    debug_assert!(shards > 0);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.to_ascii_lowercase().hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// A request in flight between shards, with where to send the reply.
pub struct Letter<Q, R> {
    request: Q,
    reply: Option<oneshot::Sender<R>>,
}

/// The handler a shard runs for requests addressed to it.
pub type Handler<Q, R> = Rc<dyn Fn(Q) -> R>;

/// This shard's end of the channel mesh.
pub struct Mesh<Q: Send + 'static, R: Send + 'static> {
    id: usize,
    shards: usize,
    senders: Option<Senders<Letter<Q, R>>>,
    handler: RefCell<Option<Handler<Q, R>>>,
    /// Opened by `serve`: peers' requests wait here until there is a handler.
    ready: glommio::sync::Semaphore,
}

impl<Q: Send + 'static, R: Send + 'static> Mesh<Q, R> {
    /// Join the mesh (every shard must call this with a clone of the same
    /// builder) and start serving requests from the other shards.
    pub async fn join(builder: Option<MeshBuilder<Letter<Q, R>, glommio::channels::channel_mesh::Full>>, id: usize, shards: usize) -> Rc<Self> {
        let (senders, receivers) = match builder {
            Some(b) if shards > 1 => {
                let (s, r) = b.join().await.expect("joining the shard mesh");
                (Some(s), Some(r))
            }
            _ => (None, None),
        };
        let mesh = Rc::new(Mesh { id, shards, senders, handler: RefCell::new(None), ready: glommio::sync::Semaphore::new(0) });
        if let Some(mut receivers) = receivers {
            for (_, mut stream) in receivers.streams() {
                let mesh = mesh.clone();
                glommio::spawn_local(async move {
                    if mesh.ready.acquire(1).await.is_err() {
                        return;
                    }
                    mesh.ready.signal(1);
                    while let Some(letter) = stream.next().await {
                        let reply = mesh.handle(letter.request);
                        if let Some(tx) = letter.reply {
                            let _ = tx.send(reply);
                        }
                    }
                })
                .detach();
            }
        }
        mesh
    }

    /// Set what this shard does with requests (local or from peers).
    pub fn serve(&self, handler: Handler<Q, R>) {
        *self.handler.borrow_mut() = Some(handler);
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

    fn handle(&self, request: Q) -> R {
        let handler = self.handler.borrow().clone().expect("mesh handler set before traffic");
        handler(request)
    }

    /// Run `request` on the shard that owns `key` and return its reply.
    pub async fn ask_owner(&self, key: &str, request: Q) -> R {
        self.ask(self.owner(key), request).await
    }

    /// Run `request` on shard `to` and return its reply.
    pub async fn ask(&self, to: usize, request: Q) -> R {
        if to == self.id {
            return self.handle(request);
        }
        let (tx, rx) = oneshot::channel();
        self.send(to, Letter { request, reply: Some(tx) }).await;
        rx.await.expect("peer shard dropped a request")
    }

    /// Run `request` on shard `to`, not waiting for it to be handled.
    pub async fn tell(&self, to: usize, request: Q) {
        if to == self.id {
            self.handle(request);
            return;
        }
        self.send(to, Letter { request, reply: None }).await;
    }

    async fn send(&self, to: usize, letter: Letter<Q, R>) {
        let senders = self.senders.as_ref().expect("mesh with more than one shard");
        // send_to waits when the peer's channel is full: back-pressure, not loss.
        if senders.send_to(to, letter).await.is_err() {
            panic!("shard {to} closed its mesh channel");
        }
    }
}

/// The builder every shard joins; None for a single shard.
pub fn mesh_builder<Q: Send + 'static, R: Send + 'static>(shards: usize) -> Option<MeshBuilder<Letter<Q, R>, glommio::channels::channel_mesh::Full>> {
    (shards > 1).then(|| MeshBuilder::full(shards, crate::limits::MESH_CHANNEL_DEPTH))
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
mod tests {
    use super::*;

    #[test]
    fn owner_is_stable_and_in_range() {
        for n in 1..8 {
            let o = owner("Example.TEST", n);
            assert!(o < n);
            assert_eq!(o, owner("example.test", n));
        }
        // Keys spread: 1000 keys over 4 shards, none empty.
        let mut counts = [0; 4];
        for i in 0..1000 {
            counts[owner(&format!("d{i}.test"), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 150), "{counts:?}");
    }

    #[test]
    fn ask_crosses_shards_and_local_is_in_place() {
        let builder = mesh_builder::<u64, (usize, u64)>(2);
        let handles: Vec<_> = (0..2)
            .map(|id| {
                let builder = builder.clone();
                glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                    .spawn(move || async move {
                        let mesh = Mesh::join(builder, id, 2).await;
                        mesh.serve(Rc::new(move |q: u64| (id, q * 2)));
                        let there = mesh.ask(1 - id, 21).await;
                        let here = mesh.ask(id, 5).await;
                        // Keep serving until the peer is done asking.
                        glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
                        (there, here)
                    })
                    .unwrap()
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results[0], ((1, 42), (0, 10)));
        assert_eq!(results[1], ((0, 42), (1, 10)));
    }
}
