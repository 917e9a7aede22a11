//! Per-shard accept loop. Every shard binds every listen address with
//! SO_REUSEPORT (`bind`), so the kernel spreads connections and there is
//! no accept lock. The global connection cap is checked here; every other
//! admission decision (HAT, TCPREFUSE) is the connection's.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpListener;

use crate::connection;
use crate::limits;
use crate::shard::Shard;

/// A listening socket on `addr` for this shard's executor, with
/// SO_REUSEPORT (every shard binds the same address) and SO_REUSEADDR.
/// glommio's `TcpListener::bind` sets only the first; without the second
/// the bind fails while connections another server (say, the MTA this
/// appliance replaces) accepted on the port linger in TIME_WAIT, up to a
/// minute after it stopped. Must run on the shard's executor thread.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::unix::io::{FromRawFd, IntoRawFd};
    let domain = if addr.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(limits::LISTEN_BACKLOG)?;
    // SAFETY: the descriptor is a bound, listening TCP socket we own and
    // hand over whole (into_raw_fd gives up our ownership).
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

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
            let _open = shard.metrics.open_connection();
            connection::serve(stream, &shard, &name).await;
            shard.active.set(shard.active.get() - 1);
            shard.connections.fetch_sub(1, Ordering::SeqCst);
        }, queue)
        .expect("the sessions queue exists")
        .detach();
    }
}
