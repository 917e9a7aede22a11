//! The resolver against a small purpose-built fake nameserver (a std thread
//! on 127.0.0.1), for the faults no real server produces on demand:
//! garbage, wrong ids, answers for another name or from another address
//! (all ignored: the query runs into its timeout), and truncation (TC, then
//! the TCP answer is used). Also the attempt loop, single flight and what
//! is cached. Real answers from unbound are in tests/dns_resolver.rs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record};

use super::*;
use crate::metrics::Metrics;

/// What the fake sends back for one query: datagrams, in order, each from
/// the server's socket or (`from_other_port`) from another one.
struct Datagram {
    bytes: Vec<u8>,
    from_other_port: bool,
}

fn datagram(bytes: Vec<u8>) -> Datagram {
    Datagram {
        bytes,
        from_other_port: false,
    }
}

type UdpScript = Box<dyn Fn(&Message) -> Vec<Datagram> + Send>;
type TcpScript = Box<dyn Fn(&Message) -> Vec<u8> + Send>;

/// A nameserver on 127.0.0.1 (UDP, and TCP on the same port when given a
/// TCP script) that answers each query by its script and counts queries.
struct FakeDns {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeDns {
    fn start(udp: UdpScript, tcp: Option<TcpScript>) -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        // Lets the thread see the stop flag; not a timing assumption of any test.
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let (stop, udp_queries, tcp_queries) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let mut threads = vec![std::thread::spawn({
            let (stop, count) = (stop.clone(), udp_queries.clone());
            move || serve_udp(socket, udp, stop, count)
        })];
        if let Some(tcp) = tcp {
            let listener = TcpListener::bind(addr).unwrap();
            let (stop, count) = (stop.clone(), tcp_queries.clone());
            threads.push(std::thread::spawn(move || serve_tcp(listener, tcp, stop, count)));
        }
        FakeDns {
            addr,
            udp_queries,
            tcp_queries,
            stop,
            threads,
        }
    }

    fn udp_queries(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes a TCP thread blocked in accept.
        let _ = TcpStream::connect(self.addr);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve_udp(socket: UdpSocket, script: UdpScript, stop: Arc<AtomicBool>, count: Arc<AtomicUsize>) {
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buffer = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((length, client)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        let query = Message::from_vec(&buffer[..length]).expect("the resolver sends valid queries");
        count.fetch_add(1, Ordering::SeqCst);
        for reply in script(&query) {
            let from = if reply.from_other_port { &other } else { &socket };
            from.send_to(&reply.bytes, client).unwrap();
        }
    }
}

fn serve_tcp(listener: TcpListener, script: TcpScript, stop: Arc<AtomicBool>, count: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let mut prefix = [0u8; 2];
        if stream.read_exact(&mut prefix).is_err() {
            continue;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut query).unwrap();
        count.fetch_add(1, Ordering::SeqCst);
        let reply = script(&Message::from_vec(&query).unwrap());
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).unwrap();
    }
}

/// The response skeleton for `query`: same id and question.
fn response(query: &Message, code: ResponseCode) -> Message {
    let mut message = Message::new();
    message
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(true)
        .set_response_code(code);
    message.add_queries(query.queries().to_vec());
    message
}

/// A correct answer: A 192.0.2.1 for the name asked, TTL 300.
fn answer(query: &Message) -> Message {
    let mut message = response(query, ResponseCode::NoError);
    let owner = query.queries()[0].name().clone();
    message.add_answer(Record::from_rdata(owner, 300, RData::A(A::new(192, 0, 2, 1))));
    message
}

fn bytes(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap()
}

/// 200 ms per attempt, 2 attempts: every test's worst case is 400 ms.
fn settings() -> DnsSettings {
    DnsSettings {
        timeout_ms: 200,
        attempts: 2,
        cache_entries: 100,
        ..DnsSettings::default()
    }
}

fn resolver(servers: Vec<SocketAddr>) -> Resolver {
    Resolver::new(servers, &settings(), Arc::new(Metrics::default()))
}

/// Runs `body` on a glommio executor of its own (a shard stand-in).
fn on_shard<T: Send + 'static>(body: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static) -> T {
    crate::test_support::on_executor(body)
}

/// Asks the fake for A of `name` and returns the lookup and how long it took.
fn ask_a(server: SocketAddr, name: &'static str) -> (Lookup<Vec<Ipv4Addr>>, Duration) {
    on_shard(move || {
        Box::pin(async move {
            let started = Instant::now();
            let lookup = resolver(vec![server]).ipv4(name).await;
            (lookup, started.elapsed())
        })
    })
}

/// A TempFail that came from waiting out every attempt, not from giving up
/// early: timers never fire before their time, so the lower bound is exact;
/// the upper bound only catches a hang.
fn assert_timed_out(lookup: Lookup<Vec<Ipv4Addr>>, took: Duration) {
    assert!(matches!(lookup, Lookup::TempFail(_)), "{lookup:?}");
    let bound = Duration::from_millis(settings().query_bound_ms());
    assert!(took >= bound, "gave up after {took:?}, before the {bound:?} of its attempts");
    assert!(took < bound + Duration::from_secs(5), "took {took:?}");
}

#[test]
fn correct_answer_is_found() {
    let fake = FakeDns::start(Box::new(|q| vec![datagram(bytes(&answer(q)))]), None);
    let (lookup, _) = ask_a(fake.addr, "host.example.test");
    assert_eq!(lookup, Lookup::Found(vec![Ipv4Addr::new(192, 0, 2, 1)]));
    assert_eq!(fake.udp_queries(), 1);
}

#[test]
fn garbage_is_ignored_until_the_timeout() {
    let fake = FakeDns::start(
        Box::new(|q| {
            let mut cut = bytes(&answer(q));
            cut.truncate(cut.len() - 4);
            vec![datagram(b"\x00\x01garbage".to_vec()), datagram(vec![]), datagram(cut)]
        }),
        None,
    );
    let (lookup, took) = ask_a(fake.addr, "host.example.test");
    assert_timed_out(lookup, took);
    assert_eq!(fake.udp_queries(), 2, "one query per attempt");
}

#[test]
fn wrong_id_is_ignored_until_the_timeout() {
    let fake = FakeDns::start(
        Box::new(|q| {
            let mut wrong = answer(q);
            wrong.set_id(q.id().wrapping_add(1));
            vec![datagram(bytes(&wrong))]
        }),
        None,
    );
    let (lookup, took) = ask_a(fake.addr, "host.example.test");
    assert_timed_out(lookup, took);
}

#[test]
fn answer_for_another_name_is_ignored_until_the_timeout() {
    let fake = FakeDns::start(
        Box::new(|q| {
            let mut other = q.clone();
            other.queries_mut()[0].set_name(Name::from_str("evil.example.test.").unwrap());
            vec![datagram(bytes(&answer(&other)))]
        }),
        None,
    );
    let (lookup, took) = ask_a(fake.addr, "host.example.test");
    assert_timed_out(lookup, took);
}

#[test]
fn answer_from_another_address_is_ignored_until_the_timeout() {
    let fake = FakeDns::start(
        Box::new(|q| {
            vec![Datagram {
                bytes: bytes(&answer(q)),
                from_other_port: true,
            }]
        }),
        None,
    );
    let (lookup, took) = ask_a(fake.addr, "host.example.test");
    assert_timed_out(lookup, took);
}

#[test]
fn the_right_answer_after_garbage_is_taken() {
    let fake = FakeDns::start(
        Box::new(|q| {
            let mut wrong = answer(q);
            wrong.set_id(q.id().wrapping_add(1));
            vec![datagram(b"junk".to_vec()), datagram(bytes(&wrong)), datagram(bytes(&answer(q)))]
        }),
        None,
    );
    let (lookup, _) = ask_a(fake.addr, "host.example.test");
    assert_eq!(lookup, Lookup::Found(vec![Ipv4Addr::new(192, 0, 2, 1)]));
    assert_eq!(fake.udp_queries(), 1);
}

#[test]
fn truncated_answer_is_asked_again_over_tcp() {
    let udp: UdpScript = Box::new(|q| {
        let mut truncated = response(q, ResponseCode::NoError);
        truncated.set_truncated(true);
        vec![datagram(bytes(&truncated))]
    });
    let tcp: TcpScript = Box::new(|q| {
        let mut full = answer(q);
        full.add_answer(Record::from_rdata(
            q.queries()[0].name().clone(),
            300,
            RData::A(A::new(192, 0, 2, 2)),
        ));
        bytes(&full)
    });
    let fake = FakeDns::start(udp, Some(tcp));
    let (lookup, _) = ask_a(fake.addr, "big.example.test");
    assert_eq!(
        lookup,
        Lookup::Found(vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)])
    );
    assert_eq!((fake.udp_queries(), fake.tcp_queries.load(Ordering::SeqCst)), (1, 1));
}

#[test]
fn truncated_answer_without_tcp_is_a_temp_fail() {
    // Nothing listens on the TCP port: connection refused, next attempt.
    let fake = FakeDns::start(
        Box::new(|q| {
            let mut truncated = response(q, ResponseCode::NoError);
            truncated.set_truncated(true);
            vec![datagram(bytes(&truncated))]
        }),
        None,
    );
    let (lookup, _) = ask_a(fake.addr, "big.example.test");
    assert!(matches!(lookup, Lookup::TempFail(ref why) if why.contains("TCP")), "{lookup:?}");
    assert_eq!(fake.udp_queries(), 2);
}

#[test]
fn attempts_rotate_to_the_next_server() {
    let silent = FakeDns::start(Box::new(|_| vec![]), None);
    let good = FakeDns::start(Box::new(|q| vec![datagram(bytes(&answer(q)))]), None);
    let (lookup, took) = ask_a_from(vec![silent.addr, good.addr], "host.example.test");
    assert!(lookup.is_found(), "{lookup:?}");
    assert!(
        took >= Duration::from_millis(settings().timeout_ms),
        "the first attempt waited out its timeout"
    );
    assert_eq!((silent.udp_queries(), good.udp_queries()), (1, 1));
}

fn ask_a_from(servers: Vec<SocketAddr>, name: &'static str) -> (Lookup<Vec<Ipv4Addr>>, Duration) {
    on_shard(move || {
        Box::pin(async move {
            let started = Instant::now();
            let lookup = resolver(servers).ipv4(name).await;
            (lookup, started.elapsed())
        })
    })
}

#[test]
fn servfail_is_retried_and_never_cached_nxdomain_is_cached() {
    let fake = FakeDns::start(
        Box::new(|q| {
            let name = q.queries()[0].name().to_ascii();
            if name.starts_with("broken.") {
                return vec![datagram(bytes(&response(q, ResponseCode::ServFail)))];
            }
            let mut nx = response(q, ResponseCode::NXDomain);
            let soa = SOA::new(
                Name::from_str("ns.example.test.").unwrap(),
                Name::from_str("root.example.test.").unwrap(),
                1,
                1,
                1,
                1,
                300,
            );
            nx.add_name_server(Record::from_rdata(Name::from_str("example.test.").unwrap(), 300, RData::SOA(soa)));
            vec![datagram(bytes(&nx))]
        }),
        None,
    );
    let server = fake.addr;
    let (broken, missing, network) = on_shard(move || {
        Box::pin(async move {
            let resolver = resolver(vec![server]);
            let broken = (
                resolver.ipv4("broken.example.test").await,
                resolver.ipv4("broken.example.test").await,
            );
            let missing = (
                resolver.ipv4("missing.example.test").await,
                resolver.ipv4("Missing.Example.Test.").await,
            );
            (broken, missing, resolver.network_queries())
        })
    });
    assert!(matches!(broken, (Lookup::TempFail(_), Lookup::TempFail(_))), "{broken:?}");
    assert_eq!(missing, (Lookup::NotFound, Lookup::NotFound));
    // SERVFAIL: 2 flights × 2 attempts; NXDOMAIN: 1 query, then the cache.
    assert_eq!(network, 3);
    assert_eq!(fake.udp_queries(), 5);
}

#[test]
fn concurrent_askers_share_one_query() {
    let fake = FakeDns::start(Box::new(|q| vec![datagram(bytes(&answer(q)))]), None);
    let server = fake.addr;
    let (lookups, network) = on_shard(move || {
        Box::pin(async move {
            let resolver = resolver(vec![server]);
            let asks = (0..10).map(|_| {
                let resolver = resolver.clone();
                async move { resolver.ipv4("host.example.test").await }
            });
            let lookups = join_all(asks.collect()).await;
            (lookups, resolver.network_queries())
        })
    });
    assert_eq!(lookups.len(), 10);
    assert!(
        lookups.iter().all(|l| *l == Lookup::Found(vec![Ipv4Addr::new(192, 0, 2, 1)])),
        "{lookups:?}"
    );
    assert_eq!((network, fake.udp_queries()), (1, 1));
}

/// Awaits every future concurrently on this executor.
async fn join_all<T: 'static>(futures: Vec<impl std::future::Future<Output = T> + 'static>) -> Vec<T> {
    let tasks: Vec<_> = futures.into_iter().map(glommio::spawn_local).collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await);
    }
    results
}

#[test]
fn invalid_names_are_not_found_without_a_query() {
    let fake = FakeDns::start(Box::new(|q| vec![datagram(bytes(&answer(q)))]), None);
    let (lookup, _) = ask_a(fake.addr, "bad..name");
    assert_eq!(lookup, Lookup::NotFound);
    assert_eq!(fake.udp_queries(), 0);
}

#[test]
fn no_nameservers_is_a_temp_fail() {
    let (lookup, _) = ask_a_from(vec![], "host.example.test");
    assert!(matches!(lookup, Lookup::TempFail(_)));
}
