//! Per-shard accept loop. Every shard binds every listen address with
//! SO_REUSEPORT (glommio sets it), so the kernel spreads connections and
//! there is no accept lock. The global connection cap is checked here;
//! every other admission decision (HAT, TCPREFUSE) is the connection's.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpListener;

use crate::connection;
use crate::shard::Shard;

/// Accept on one listener (`name` finds its HAT and RAT in the policy).
pub async fn accept_loop(listener: TcpListener, name: String, shard: Rc<Shard>) {
    let name: Rc<str> = name.into();
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning.
                shard.log.event("accept-error", format_args!("error=\"{e}\""));
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let open = shard.connections.fetch_add(1, Ordering::SeqCst) + 1;
        if open > shard.settings.max_connections {
            shard.connections.fetch_sub(1, Ordering::SeqCst);
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            shard.log.event("refused", format_args!("peer={peer} reason=\"too many connections ({})\"", shard.settings.max_connections));
            let reply = format!("421 4.7.0 {} Too many connections, try again later\r\n", shard.settings.hostname);
            glommio::spawn_local(async move {
                let mut stream = stream;
                let write = async { stream.write_all(reply.as_bytes()).await };
                let _ = glommio::timer::timeout(Duration::from_secs(5), async { Ok(write.await?) }).await;
                let _ = stream.close().await;
            })
            .detach();
            continue;
        }
        let shard = shard.clone();
        let queue = shard.queues.sessions;
        let name = name.clone();
        glommio::spawn_local_into(async move {
            shard.active.set(shard.active.get() + 1);
            connection::serve(stream, &shard, &name).await;
            shard.active.set(shard.active.get() - 1);
            shard.connections.fetch_sub(1, Ordering::SeqCst);
        }, queue)
        .expect("the sessions queue exists")
        .detach();
    }
}
