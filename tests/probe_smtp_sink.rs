//! Call-ahead probe connections (`callahead::connection::ProbeConnection`)
//! against a real downstream, Postfix's `smtp-sink` on 127.0.0.1: accept,
//! hard and soft RCPT rejects, MAIL and EHLO refused, 421 at connect, hang
//! ups, a stall past the deadline, 100 pipelined RCPTs, reuse over several
//! batches and RSET. A small fake server (a std thread, below) makes only
//! the faults smtp-sink cannot: garbage, endless continuation lines, a
//! close mid-reply, replies that tell the recipients apart (order), a 421
//! on an idle connection, and the peer address of a bound source.
//!
//! smtp-sink's `-f` answers 500 5.3.0 and `-r` 450 4.3.0, and both turn
//! PIPELINING off, so those scenarios also run the lock-step path.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{wait_until, Sink};
use glommio::LocalExecutor;
use portcullis::callahead::connection::ProbeConnection;
use portcullis::callahead::verdict::{Stage, Verdict};

const HELO: &str = "probe.portcullis.test";

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    LocalExecutor::default().run(f)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn rcpts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@dst.test")).collect()
}

async fn open(server: SocketAddr) -> ProbeConnection {
    match ProbeConnection::open(server, HELO, None, soon()).await {
        Ok(conn) => conn,
        Err(verdict) => panic!("open {server}: {verdict:?}"),
    }
}

/// (kind, code, stage) of a verdict, for compact assertions.
fn shape(v: &Verdict) -> (&'static str, Option<u16>, Option<Stage>) {
    match v {
        Verdict::Accepted(r) => ("accepted", Some(r.code), None),
        Verdict::MailboxUnknown(r) => ("unknown", Some(r.code), None),
        Verdict::RecipientRefused(r) => ("refused", Some(r.code), None),
        Verdict::TempFail(r) => ("tempfail", Some(r.code), None),
        Verdict::DownstreamFailure { stage, reply, .. } => {
            ("failure", reply.as_ref().map(|r| r.code), Some(*stage))
        }
    }
}

fn why(v: &Verdict) -> &str {
    match v {
        Verdict::DownstreamFailure { why, .. } => why,
        other => panic!("not a failure: {other:?}"),
    }
}

/// smtp-sink's `-c` counters (sessions, QUITs, messages) from its log.
fn counters(sink: &Sink) -> (u64, u64, u64) {
    let log = sink.log();
    let Some(last) = log
        .split(['\r', '\n'])
        .rev()
        .find(|s| s.starts_with("sess="))
    else {
        return (0, 0, 0);
    };
    let mut n = last
        .split_whitespace()
        .map(|kv| kv.split('=').nth(1).unwrap().parse::<u64>().unwrap());
    (n.next().unwrap(), n.next().unwrap(), n.next().unwrap())
}

#[test]
fn accepted_recipients_are_accepted_and_pipelined() {
    let sink = Sink::start();
    let (verdicts, pipelining) = run(async {
        let mut conn = open(sink.addr()).await;
        let verdicts = conn.probe("", &rcpts(3), soon()).await;
        assert!(conn.is_reusable());
        (verdicts, conn.pipelining())
    });
    assert!(pipelining, "smtp-sink offers PIPELINING by default");
    for v in &verdicts {
        assert!(matches!(v, Verdict::Accepted(r) if r.code == 250), "{v:?}");
        assert!(v.is_cacheable());
    }
    assert_eq!(verdicts.len(), 3);
}

#[test]
fn hard_reject_at_rcpt_is_500_5_3_0_a_downstream_failure() {
    // `-f RCPT`: 500 5.3.0, a mail-system status: it says nothing about the
    // mailbox, so it is a downstream failure (failure action, never cached,
    // fed to the breaker), not "mailbox unknown".
    let sink = Sink::builder().reject_hard(&["RCPT"]).start();
    let (verdicts, pipelining) = run(async {
        let mut conn = open(sink.addr()).await;
        let v = conn.probe("", &rcpts(2), soon()).await;
        assert!(conn.is_reusable());
        (v, conn.pipelining())
    });
    assert!(
        !pipelining,
        "-f turns PIPELINING off: the lock-step path ran"
    );
    for v in &verdicts {
        let Verdict::DownstreamFailure { stage: Stage::Rcpt, reply: Some(r), .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!((r.code, r.enhanced.as_str()), (500, "5.3.0"));
        assert!(!v.is_cacheable() && !v.is_invalid_recipient() && v.is_server_failure());
    }
    assert_eq!(verdicts.len(), 2);
}

#[test]
fn soft_reject_at_rcpt_is_a_tempfail() {
    let sink = Sink::builder().reject_soft(&["RCPT"]).start();
    let verdicts = run(async {
        let mut conn = open(sink.addr()).await;
        conn.probe("", &rcpts(2), soon()).await
    });
    for v in &verdicts {
        let Verdict::TempFail(r) = v else {
            panic!("{v:?}")
        };
        assert_eq!((r.code, r.enhanced.as_str()), (450, "4.3.0"));
        assert!(!v.is_cacheable());
    }
}

#[test]
fn refused_mail_from_fails_every_recipient_and_keeps_the_connection() {
    let sink = Sink::builder().reject_hard(&["MAIL"]).start();
    run(async {
        let mut conn = open(sink.addr()).await;
        let verdicts = conn.probe("probe@us.test", &rcpts(3), soon()).await;
        assert_eq!(verdicts.len(), 3);
        for v in &verdicts {
            assert_eq!(shape(v), ("failure", Some(500), Some(Stage::MailFrom)));
            assert!(!v.is_cacheable() && v.is_server_failure());
        }
        assert!(
            conn.is_reusable(),
            "a refused MAIL leaves the connection usable"
        );
        assert_eq!(conn.rcpts_in_transaction(), 0);
        let again = conn.probe("probe@us.test", &rcpts(1), soon()).await;
        assert_eq!(
            shape(&again[0]),
            ("failure", Some(500), Some(Stage::MailFrom))
        );
    });
}

#[test]
fn refused_ehlo_falls_back_to_helo() {
    let sink = Sink::builder().reject_hard(&["EHLO"]).start();
    run(async {
        let mut conn = open(sink.addr()).await;
        assert!(!conn.pipelining(), "HELO offers no extensions");
        let verdicts = conn.probe("", &rcpts(2), soon()).await;
        assert!(
            verdicts.iter().all(|v| matches!(v, Verdict::Accepted(_))),
            "{verdicts:?}"
        );
    });
}

#[test]
fn refused_ehlo_and_helo_is_a_failure_at_hello() {
    let sink = Sink::builder().reject_hard(&["EHLO", "HELO"]).start();
    let err = run(async {
        ProbeConnection::open(sink.addr(), HELO, None, soon())
            .await
            .err()
    });
    let v = err.expect("open must fail");
    assert_eq!(shape(&v), ("failure", Some(500), Some(Stage::Hello)));
}

#[test]
fn a_421_greeting_is_a_failure_at_greeting() {
    let sink = Sink::builder().close_421_at(&["CONNECT"]).start();
    let err = run(async {
        ProbeConnection::open(sink.addr(), HELO, None, soon())
            .await
            .err()
    });
    let v = err.expect("open must fail");
    assert_eq!(shape(&v), ("failure", Some(421), Some(Stage::Greeting)));
}

#[test]
fn a_hang_up_after_connect_is_a_failure_at_greeting() {
    let sink = Sink::builder().disconnect_at(&["CONNECT"]).start();
    let err = run(async {
        ProbeConnection::open(sink.addr(), HELO, None, soon())
            .await
            .err()
    });
    let v = err.expect("open must fail");
    assert_eq!(shape(&v), ("failure", None, Some(Stage::Greeting)));
    assert!(
        why(&v).contains("closed the connection while we waited for the greeting"),
        "{v:?}"
    );
}

#[test]
fn a_hang_up_at_rcpt_fails_the_batch_and_the_connection() {
    let sink = Sink::builder().disconnect_at(&["RCPT"]).start();
    run(async {
        let mut conn = open(sink.addr()).await;
        let verdicts = conn.probe("", &rcpts(2), soon()).await;
        assert_eq!(verdicts.len(), 2);
        for v in &verdicts {
            let (kind, reply, _) = shape(v);
            assert_eq!((kind, reply), ("failure", None), "{v:?}");
            assert!(why(v).contains("closed the connection"), "{v:?}");
        }
        assert!(!conn.is_reusable());
    });
}

#[test]
fn nobody_listening_is_a_failure_at_connect() {
    let port = common::free_port();
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let err = run(async {
        ProbeConnection::open(server, HELO, None, soon())
            .await
            .err()
    });
    let v = err.expect("open must fail");
    assert_eq!(shape(&v), ("failure", None, Some(Stage::Connect)));
    assert!(why(&v).contains("cannot connect"), "{v:?}");
}

#[test]
fn a_stall_past_the_deadline_is_a_timeout_failure() {
    // The sink would answer RCPT after 10 s (then 250): a verdict before
    // that, and a failure rather than "accepted", shows the deadline held.
    let sink = Sink::builder().delay("RCPT", 10).start();
    let started = Instant::now();
    let (verdicts, dead_before_use) = run(async {
        let mut conn = open(sink.addr()).await;
        let deadline = Instant::now() + Duration::from_millis(500);
        let v = conn.probe("", &rcpts(2), deadline).await;
        assert!(!conn.is_reusable());
        (v, conn.was_dead_before_use())
    });
    let took = started.elapsed();
    for v in &verdicts {
        assert_eq!(shape(v).0, "failure", "{v:?}");
        assert!(
            why(v).contains("downstream timed out waiting for the reply to"),
            "{v:?}"
        );
    }
    assert!(
        !dead_before_use,
        "a timeout is not a dead socket: do not repeat"
    );
    assert!(
        took < Duration::from_secs(8),
        "returned only after {took:?}"
    );
}

#[test]
fn a_hundred_rcpts_in_one_batch_get_a_hundred_verdicts() {
    let sink = Sink::start();
    let verdicts = run(async {
        let mut conn = open(sink.addr()).await;
        assert!(conn.pipelining());
        let v = conn.probe("", &rcpts(100), soon()).await;
        assert_eq!(conn.rcpts_in_transaction(), 100);
        v
    });
    assert_eq!(verdicts.len(), 100);
    assert!(verdicts.iter().all(|v| matches!(v, Verdict::Accepted(_))));
}

#[test]
fn one_connection_carries_several_batches_and_rset() {
    let sink = Sink::builder().arg("-c").start();
    run(async {
        let mut conn = open(sink.addr()).await;
        for batch in 1..=3 {
            let v = conn.probe("", &rcpts(5), soon()).await;
            assert!(v.iter().all(|v| matches!(v, Verdict::Accepted(_))), "{v:?}");
            assert_eq!(conn.rcpts_in_transaction(), 5 * batch);
        }
        assert!(conn.rset(soon()).await);
        assert_eq!(conn.rcpts_in_transaction(), 0);
        let v = conn.probe("", &rcpts(2), soon()).await;
        assert!(v.iter().all(|v| matches!(v, Verdict::Accepted(_))), "{v:?}");
        assert_eq!(conn.rcpts_in_transaction(), 2);
        conn.quit().await;
    });
    // One session at the server, ended by our QUIT, no message (never DATA).
    let mut seen = (0, 0, 0);
    let ok = wait_until(Duration::from_secs(10), || {
        seen = counters(&sink);
        seen.0 >= 1
    });
    assert!(
        ok && seen == (1, 1, 0),
        "sess/quit/mesg = {seen:?}; log: {}",
        sink.log()
    );
}

// ---- A fake downstream for faults smtp-sink cannot make -------------------

/// A one-connection downstream running `script` on its own thread; it
/// returns where the client came from.
fn fake(script: impl FnOnce(&mut Peer) + Send + 'static) -> (SocketAddr, JoinHandle<SocketAddr>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, from) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut peer = Peer {
            stream,
            seen: Vec::new(),
        };
        script(&mut peer);
        from
    });
    (addr, handle)
}

struct Peer {
    stream: TcpStream,
    /// Everything the client wrote so far.
    seen: Vec<u8>,
}

impl Peer {
    fn send(&mut self, s: &str) {
        let _ = self.stream.write_all(s.as_bytes());
    }

    /// Read until the client has written `lines` lines in all.
    fn lines(&mut self, lines: usize) {
        let mut buf = [0u8; 4096];
        while self.seen.iter().filter(|&&b| b == b'\n').count() < lines {
            let n = self.stream.read(&mut buf).unwrap_or(0);
            assert!(
                n > 0,
                "client closed; saw {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            self.seen.extend_from_slice(&buf[..n]);
        }
    }

    /// Read until the client hangs up.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.stream.read(&mut buf) {
            self.seen.extend_from_slice(&buf[..n]);
        }
    }

    /// Greeting and a PIPELINING EHLO reply: 1 client line read.
    fn greet(&mut self) {
        self.send("220 fake.test ESMTP\r\n");
        self.lines(1);
        self.send("250-fake.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
    }
}

#[test]
fn garbage_from_the_downstream_is_a_failure() {
    let (addr, fake) = fake(|p| {
        p.greet();
        p.lines(1 + 3); // EHLO, MAIL, 2 RCPT
        p.send("250 2.1.0 Ok\r\nHTTP/1.1 400 Bad Request\r\n\r\n");
        p.drain();
    });
    run(async {
        let mut conn = open(addr).await;
        let verdicts = conn.probe("", &rcpts(2), soon()).await;
        for v in &verdicts {
            assert_eq!(shape(v), ("failure", None, Some(Stage::Rcpt)));
            assert!(
                why(v).contains("downstream protocol error: malformed reply line"),
                "{v:?}"
            );
        }
        assert!(!conn.is_reusable());
    });
    fake.join().unwrap();
}

#[test]
fn endless_continuation_lines_end_in_a_failure_not_a_timeout() {
    let (addr, fake) = fake(|p| {
        p.greet();
        p.lines(1 + 2);
        p.send("250 2.1.0 Ok\r\n");
        // Until the client gives up and closes (then the write fails).
        for _ in 0..1_000_000 {
            if p.stream.write_all(b"250-2.1.5 and more\r\n").is_err() {
                break;
            }
        }
    });
    run(async {
        let mut conn = open(addr).await;
        let v = conn.probe("", &rcpts(1), soon()).await;
        assert_eq!(shape(&v[0]), ("failure", None, Some(Stage::Rcpt)));
        assert!(why(&v[0]).contains("reply of more than"), "{v:?}");
        drop(conn);
    });
    fake.join().unwrap();
}

#[test]
fn a_close_in_the_middle_of_a_reply_is_a_failure() {
    let (addr, fake) = fake(|p| {
        p.greet();
        p.lines(1 + 3);
        p.send("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550-5.1.1 half a");
        // Dropping the stream closes it.
    });
    run(async {
        let mut conn = open(addr).await;
        let v = conn.probe("", &rcpts(2), soon()).await;
        // The first RCPT was answered before the close and keeps its answer.
        assert_eq!(shape(&v[0]), ("accepted", Some(250), None));
        assert_eq!(shape(&v[1]), ("failure", None, Some(Stage::Rcpt)));
        assert!(
            why(&v[1]).contains("closed the connection while we waited for the reply to RCPT"),
            "{v:?}"
        );
        assert!(!conn.was_dead_before_use());
    });
    fake.join().unwrap();
}

#[test]
fn a_hundred_pipelined_rcpts_are_answered_in_order() {
    // The fake replies only once all 101 commands are in: a client that
    // waited for each reply would time out instead.
    let (addr, fake) = fake(|p| {
        p.greet();
        p.lines(1 + 101);
        let mut replies = String::from("250 2.1.0 Ok\r\n");
        for i in 0..100 {
            if i % 3 == 0 {
                replies.push_str(&format!("550 5.1.1 <user{i}@dst.test>: unknown\r\n"));
            } else {
                replies.push_str(&format!("250 2.1.5 <user{i}@dst.test> Ok\r\n"));
            }
        }
        p.send(&replies);
        p.drain();
    });
    let verdicts = run(async {
        let mut conn = open(addr).await;
        conn.probe("", &rcpts(100), soon()).await
    });
    assert_eq!(verdicts.len(), 100);
    for (i, v) in verdicts.iter().enumerate() {
        let expected = format!("<user{i}@dst.test>");
        match v {
            Verdict::MailboxUnknown(r) if i % 3 == 0 => assert!(r.lines[0].starts_with(&expected)),
            Verdict::Accepted(r) if i % 3 != 0 => assert!(r.lines[0].starts_with(&expected)),
            other => panic!("recipient {i}: {other:?}"),
        }
    }
    fake.join().unwrap();
}

#[test]
fn a_421_on_an_idle_connection_makes_it_dead_before_use() {
    let (addr, fake) = fake(|p| {
        p.greet();
        p.lines(1 + 3);
        p.send("421 4.4.2 fake.test idle timeout\r\n");
    });
    run(async {
        let mut conn = open(addr).await;
        let v = conn.probe("", &rcpts(2), soon()).await;
        for v in &v {
            assert_eq!(shape(v), ("failure", Some(421), Some(Stage::MailFrom)));
        }
        assert!(
            conn.was_dead_before_use(),
            "nothing answered: safe to repeat elsewhere"
        );
    });
    fake.join().unwrap();
}

#[test]
fn a_pipelined_mail_refusal_fails_the_batch_and_the_next_batch_retries_mail() {
    let (addr, fake) = fake(|p| {
        p.greet();
        p.lines(1 + 3);
        p.send("550 5.7.1 null sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n");
        p.lines(1 + 3 + 2);
        let tail = String::from_utf8_lossy(&p.seen).into_owned();
        assert!(
            tail.ends_with("MAIL FROM:<probe@us.test>\r\nRCPT TO:<user0@dst.test>\r\n"),
            "{tail}"
        );
        p.send("250 Ok\r\n250 Ok\r\n");
        p.drain();
    });
    run(async {
        let mut conn = open(addr).await;
        let v = conn.probe("", &rcpts(2), soon()).await;
        for v in &v {
            assert_eq!(shape(v), ("failure", Some(550), Some(Stage::MailFrom)));
        }
        assert!(conn.is_reusable());
        let v = conn.probe("probe@us.test", &rcpts(1), soon()).await;
        assert_eq!(shape(&v[0]), ("accepted", Some(250), None));
    });
    fake.join().unwrap();
}

#[test]
fn the_source_address_is_bound_before_connecting() {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (addr, fake) = fake(|p| {
        p.greet();
        p.drain();
    });
    run(async {
        let conn = ProbeConnection::open(addr, HELO, Some(source), soon()).await;
        assert!(conn.is_ok(), "{:?}", conn.err());
    });
    assert_eq!(fake.join().unwrap().ip(), source);
    // An address that is not ours cannot be bound: a failure at connect.
    let foreign = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let err = run(async {
        ProbeConnection::open(addr, HELO, Some(foreign), soon())
            .await
            .err()
    });
    let v = err.expect("binding a foreign address must fail");
    assert_eq!(shape(&v), ("failure", None, Some(Stage::Connect)));
}

#[test]
fn a_connect_nobody_answers_times_out_at_the_deadline() {
    // A listener whose accept queue is full drops further SYNs (Linux), so
    // our connect gets no answer at all: only the deadline ends it.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (backlog 0 holds one) with connections never accepted.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    let err = run(async {
        let deadline = Instant::now() + Duration::from_millis(500);
        ProbeConnection::open(addr, HELO, None, deadline)
            .await
            .err()
    });
    let v = err.expect("open must fail");
    assert_eq!(shape(&v), ("failure", None, Some(Stage::Connect)));
    assert!(why(&v).contains("timed out"), "{v:?}");
}
