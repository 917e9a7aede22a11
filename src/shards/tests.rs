//! The mesh between shards: ownership, typed requests of several
//! subsystems over one mesh, async handlers, and the ways an ask ends
//! without a reply (stopped peer, no handler, timeout) — never a panic or
//! a hang.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Two subsystems' requests, as two modules would declare them.
struct Double(u64);
impl ShardRequest for Double {
    type Reply = (usize, u64);
}

struct Greet(String);
impl ShardRequest for Greet {
    type Reply = String;
}

/// Never registered anywhere.
struct Orphan;
impl ShardRequest for Orphan {
    type Reply = ();
}

/// Its handler sleeps longer than its timeout.
struct Slow;
impl ShardRequest for Slow {
    type Reply = ();
    fn timeout() -> Duration {
        Duration::from_millis(100)
    }
}

/// Its handler is slow and its asks give up quickly: it fills channels.
struct Stuck;
impl ShardRequest for Stuck {
    type Reply = ();
    fn timeout() -> Duration {
        Duration::from_millis(50)
    }
}

/// Run `body` on `n` shards joined to one mesh; returns each shard's result.
fn on_shards<T: Send + 'static>(n: usize, body: impl Fn(Rc<Mesh>) -> Pin<Box<dyn Future<Output = T>>> + Send + Sync + Clone + 'static) -> Vec<T> {
    let plan = MeshPlan::new(n, Arc::new(AtomicBool::new(false)));
    let handles: Vec<_> = (0..n)
        .map(|id| {
            let (plan, body) = (plan.clone(), body.clone());
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .spawn(move || async move {
                    let mesh = Mesh::join(plan, id).await.unwrap();
                    mesh.handle(move |q: Double| async move { (id, q.0 * 2) });
                    mesh.handle(move |q: Greet| async move {
                        // An async handler: awaits before answering.
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                        format!("shard {id} greets {}", q.0)
                    });
                    mesh.handle(|_: Slow| async { glommio::timer::sleep(Duration::from_secs(5)).await });
                    mesh.handle(|_: Stuck| async { glommio::timer::sleep(Duration::from_millis(300)).await });
                    mesh.open();
                    let result = body(mesh.clone()).await;
                    // Keep serving until the peers are done asking.
                    glommio::timer::sleep(Duration::from_millis(300)).await;
                    result
                })
                .unwrap()
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn requests_of_several_subsystems_cross_one_mesh_and_local_runs_in_place() {
    let results = on_shards(2, |mesh| {
        Box::pin(async move {
            let me = mesh.id();
            let there = mesh.ask(1 - me, Double(21)).await.unwrap();
            let here = mesh.ask(me, Double(5)).await.unwrap();
            let greeting = mesh.ask(1 - me, Greet(format!("shard {me}"))).await.unwrap();
            (there, here, greeting)
        })
    });
    assert_eq!(results[0], ((1, 42), (0, 10), "shard 1 greets shard 0".to_string()));
    assert_eq!(results[1], ((0, 42), (1, 10), "shard 0 greets shard 1".to_string()));
}

#[test]
fn missing_handler_and_timeout_are_errors_not_panics_or_hangs() {
    let results = on_shards(2, |mesh| {
        Box::pin(async move {
            let peer = 1 - mesh.id();
            let orphan_there = mesh.ask(peer, Orphan).await;
            let orphan_here = mesh.ask(mesh.id(), Orphan).await;
            let started = Instant::now();
            let slow = mesh.ask(peer, Slow).await;
            (orphan_there, orphan_here, slow, started.elapsed())
        })
    });
    for (id, (there, here, slow, took)) in results.into_iter().enumerate() {
        assert_eq!(there, Err(ShardGone::Stopped(1 - id)));
        assert_eq!(here, Err(ShardGone::NoHandler(id)));
        assert_eq!(slow, Err(ShardGone::TimedOut(1 - id)));
        assert!(took < Duration::from_secs(2), "timeout honoured: {took:?}");
    }
}

#[test]
fn asking_a_stopped_shard_is_an_error() {
    let plan = MeshPlan::new(2, Arc::new(AtomicBool::new(false)));
    let quitter = {
        let plan = plan.clone();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mesh = Mesh::join(plan, 1).await.unwrap();
                mesh.open();
                // Leaves at once: its receivers close.
            })
            .unwrap()
    };
    let asker = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let mesh = Mesh::join(plan, 0).await.unwrap();
            mesh.open();
            glommio::timer::sleep(Duration::from_millis(200)).await;
            mesh.ask(1, Double(1)).await
        })
        .unwrap();
    quitter.join().unwrap();
    let result = asker.join().unwrap();
    assert!(matches!(result, Err(ShardGone::Stopped(1)) | Err(ShardGone::TimedOut(1))), "{result:?}");
}

#[test]
fn join_gives_up_when_the_process_stops() {
    // Shard 1 never starts (as if its spool could not open): shard 0 must
    // not wait in join forever once the process raises stop.
    let stop = Arc::new(AtomicBool::new(false));
    let plan = MeshPlan::new(2, stop.clone());
    let lonely = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move { Mesh::join(plan, 0).await.map(|_| ()) })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let result = lonely.join().unwrap();
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn drain_waits_for_told_letters_to_be_handled() {
    let results = on_shards(2, |mesh| {
        Box::pin(async move {
            let peer = 1 - mesh.id();
            for i in 0..50 {
                mesh.tell(peer, Greet(format!("{i}"))).await.unwrap();
            }
            // Every shard has sent everything before either drains.
            glommio::timer::sleep(Duration::from_millis(50)).await;
            mesh.drain(Instant::now() + Duration::from_secs(5)).await
        })
    });
    assert_eq!(results, vec![0, 0], "no letter left unhandled");
}

#[test]
fn a_send_dropped_by_its_timeout_is_not_left_for_drain() {
    let results = on_shards(2, |mesh| {
        Box::pin(async move {
            if mesh.id() == 0 {
                // Fill shard 1's handlers and channel, until three sends time out waiting for room.
                let (mut sent, mut timed_out) = (0u64, 0u64);
                while timed_out < 3 {
                    match mesh.tell(1, Stuck).await {
                        Ok(()) => sent += 1,
                        Err(ShardGone::TimedOut(1)) => timed_out += 1,
                        Err(other) => panic!("{other}"),
                    }
                }
                glommio::timer::sleep(Duration::from_millis(1500)).await;
                (sent, timed_out)
            } else {
                glommio::timer::sleep(Duration::from_millis(500)).await;
                (mesh.drain(Instant::now() + Duration::from_secs(3)).await, 0)
            }
        })
    });
    let (sent, timed_out) = results[0];
    assert_eq!(timed_out, 3);
    assert!(sent >= limits::MESH_CHANNEL_DEPTH as u64, "the channel was filled: {sent}");
    assert_eq!(results[1].0, 0, "every letter that went in was handled; none that timed out is waited for");
}
