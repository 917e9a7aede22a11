//! One exchange with one nameserver: a UDP query from a fresh random port,
//! and the same query over TCP when the answer comes back truncated
//! (RFC 7766 §5), both within the attempt's deadline.
//!
//! `resolver` calls [`exchange`] once per attempt; `wire` builds and checks
//! the messages. Only glommio sockets: the shard never blocks. Anything
//! that is not the answer (another source address, a wrong id, another
//! question, garbage) is dropped and the wait goes on until the deadline.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpStream, UdpSocket};
use hickory_proto::rr::{Name, RecordType};

use super::wire::{encode_dnssec_query, encode_query, read_reply, Outcome, Reply};
use crate::limits::{DNS_TCP_MESSAGE_BYTES_MAX, DNS_UDP_PAYLOAD_BYTES};

/// Why an exchange gave no answer (the resolver's TempFail text).
pub(crate) type Failure = String;

/// Asks `server` about `name`/`rtype` with query id `id` and waits for the
/// answer until `deadline`; `dnssec` asks for the resolver's DNSSEC
/// verdict too (DO and AD bits, `wire::encode_dnssec_query`).
pub(crate) async fn exchange(
    server: SocketAddr,
    id: u16,
    name: &Name,
    rtype: RecordType,
    dnssec: bool,
    deadline: Instant,
) -> Result<Outcome, Failure> {
    let query = if dnssec {
        encode_dnssec_query(id, name, rtype)
    } else {
        encode_query(id, name, rtype)
    };
    let udp = within(deadline, udp_exchange(server, &query, id, name, rtype)).await;
    match udp {
        None => Err(format!("no answer from {server} in time")),
        Some(Err(e)) => Err(format!("{server}: {e}")),
        Some(Ok(Reply::Answer(outcome))) => Ok(outcome),
        Some(Ok(Reply::Truncated)) => match within(deadline, tcp_exchange(server, &query, id, name, rtype)).await {
            None => Err(format!("no TCP answer from {server} in time")),
            Some(Err(e)) => Err(format!("{server} over TCP: {e}")),
            Some(Ok(outcome)) => Ok(outcome),
        },
    }
}

/// Runs `work` until `deadline`; `None` when the deadline came first.
pub(crate) async fn within<T>(deadline: Instant, work: impl std::future::Future<Output = T>) -> Option<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    let work = async { Some(work.await) };
    let timer = async {
        glommio::timer::sleep(left).await;
        None
    };
    futures_lite::future::or(work, timer).await
}

/// Sends the query from a fresh socket on a random port (RFC 5452 §9.2:
/// id and port both unpredictable) and reads datagrams until one is our
/// answer. Only errors of our own socket end it early.
async fn udp_exchange(server: SocketAddr, query: &[u8], id: u16, name: &Name, rtype: RecordType) -> io::Result<Reply> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut socket = UdpSocket::bind(local)?;
    // We advertise this payload size (EDNS0); a longer datagram is cut and
    // then fails to parse, which is what it deserves.
    socket.set_buffer_size(usize::from(DNS_UDP_PAYLOAD_BYTES));
    socket.send_to(query, server).await?;
    let mut buffer = vec![0u8; usize::from(DNS_UDP_PAYLOAD_BYTES)];
    loop {
        let (length, from) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            // An ICMP port unreachable from a dead server shows as a
            // refused receive: that server will not answer this attempt.
            Err(e) => return Err(e.into()),
        };
        if from != server {
            continue;
        }
        if let Some(reply) = read_reply(&buffer[..length], id, name, rtype) {
            return Ok(reply);
        }
    }
}

/// The same query over TCP, each message behind its 2-byte length
/// (RFC 1035 §4.2.2, RFC 7766 §8). One query per connection.
async fn tcp_exchange(server: SocketAddr, query: &[u8], id: u16, name: &Name, rtype: RecordType) -> io::Result<Outcome> {
    let mut stream = TcpStream::connect(server).await?;
    let length = u16::try_from(query.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    stream.flush().await?;
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await?;
    let length = usize::from(u16::from_be_bytes(prefix));
    if length > DNS_TCP_MESSAGE_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("answer of {length} bytes")));
    }
    let mut message = vec![0u8; length];
    stream.read_exact(&mut message).await?;
    match read_reply(&message, id, name, rtype) {
        Some(Reply::Answer(outcome)) => Ok(outcome),
        Some(Reply::Truncated) => Err(io::Error::new(io::ErrorKind::InvalidData, "truncated answer over TCP")),
        None => Err(io::Error::new(io::ErrorKind::InvalidData, "answer does not match the question")),
    }
}
