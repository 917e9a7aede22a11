//! The pool against a scripted fake downstream, for faults smtp-sink cannot
//! make on demand: a server that stalls in the middle of a reply, one that
//! never stops a reply, and a wire-level check of what the client writes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use glommio::LocalExecutor;
use portcullis::message::BodyType;
use portcullis::pool::{OutboundEnvelope, Pool, PoolConfig, RecipientOutcome, TransportError};

/// A one-connection downstream running `script` on its own thread.
fn fake(script: impl FnOnce(&mut Peer) + Send + 'static) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut peer = Peer {
            stream,
            seen: Vec::new(),
        };
        script(&mut peer);
        peer.seen
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
        self.stream.write_all(s.as_bytes()).unwrap();
    }

    /// Read until the client's bytes so far end with `end`.
    fn until(&mut self, end: &str) {
        let mut buf = [0u8; 4096];
        while !self.seen.ends_with(end.as_bytes()) {
            let n = self.stream.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "client closed; waited for {end:?}, saw {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            self.seen.extend_from_slice(&buf[..n]);
        }
    }

    fn greet_esmtp(&mut self) {
        self.send("220 fake.test ESMTP\r\n");
        self.until("\r\n");
        self.send("250-fake.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
    }

    fn stall(&mut self) {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn config() -> PoolConfig {
    let short = Duration::from_millis(300);
    PoolConfig {
        helo_name: "relay.test".into(),
        connect_timeout: short,
        greeting_timeout: short,
        command_timeout: short,
        data_block_timeout: short,
        data_termination_timeout: short,
        connections_per_host_max: 1,
        idle_timeout: Duration::from_secs(30),
        messages_per_connection_max: 100,
    }
}

fn envelope(recipients: &[&str]) -> OutboundEnvelope {
    OutboundEnvelope {
        mail_from: "s@src.test".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        body_type: BodyType::SevenBit,
        smtputf8: false,
        ..Default::default()
    }
}

/// Send one message; the error and how long it took.
fn send_one(addr: SocketAddr) -> (Result<Vec<RecipientOutcome>, TransportError>, Duration) {
    let started = Instant::now();
    let result = LocalExecutor::default().run(async {
        Pool::new(config())
            .send(addr, &envelope(&["r@dst.test"]), b"hi\r\n")
            .await
    });
    (result, started.elapsed())
}

fn assert_timed_out(
    result: Result<Vec<RecipientOutcome>, TransportError>,
    took: Duration,
    what: &str,
) {
    let error = result.expect_err("a stalled downstream is a transport error");
    assert!(error.reason.contains("timed out"), "{}", error.reason);
    assert!(error.reason.contains(what), "{}", error.reason);
    assert!(
        took < Duration::from_secs(2),
        "the 300ms timeout took {took:?}"
    );
}

#[test]
fn greeting_stalled_mid_reply_times_out() {
    let (addr, server) = fake(|peer| {
        peer.send("220-fake.test first line of a greeting that never ends\r\n");
        peer.stall();
    });
    let (result, took) = send_one(addr);
    assert_timed_out(result, took, "greeting");
    server.join().unwrap();
}

#[test]
fn reply_to_mail_stalled_mid_reply_times_out() {
    let (addr, server) = fake(|peer| {
        peer.greet_esmtp();
        peer.until("DATA\r\n");
        peer.send("250-2.1.0 Ok but");
        peer.stall();
    });
    let (result, took) = send_one(addr);
    assert_timed_out(result, took, "MAIL");
    server.join().unwrap();
}

#[test]
fn final_dot_without_reply_times_out() {
    let (addr, server) = fake(|peer| {
        peer.greet_esmtp();
        peer.until("DATA\r\n");
        peer.send("250 Ok\r\n250 Ok\r\n354 go\r\n");
        peer.until("\r\n.\r\n");
        peer.stall();
    });
    let (result, took) = send_one(addr);
    assert_timed_out(result, took, "end of data");
    server.join().unwrap();
}

#[test]
fn greeting_421_is_a_transport_error() {
    let (addr, server) = fake(|peer| peer.send("421 4.3.2 fake.test busy, try later\r\n"));
    let (result, _) = send_one(addr);
    let error = result.unwrap_err();
    assert!(error.reason.contains("421 4.3.2"), "{}", error.reason);
    server.join().unwrap();
}

#[test]
fn endless_reply_is_cut_off() {
    let (addr, server) = fake(|peer| {
        let line = format!("220-{}\r\n", "x".repeat(200));
        for _ in 0..10_000 {
            if peer.stream.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
    });
    let (result, took) = send_one(addr);
    let error = result.unwrap_err();
    assert!(error.reason.contains("protocol error"), "{}", error.reason);
    assert!(took < Duration::from_secs(2));
    server.join().unwrap();
}

#[test]
fn wire_transcript_pipelined_with_all_refused_then_stuffed_body() {
    let (addr, server) = fake(|peer| {
        peer.greet_esmtp();
        // Everyone refused, DATA accepted anyway: the client ends it with a lone dot.
        peer.until("DATA\r\n");
        peer.send("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n");
        peer.until("\r\n.\r\n");
        peer.send("554 5.5.1 No valid recipients\r\n");
        // The next transaction on the same connection, no RSET in between.
        peer.until("DATA\r\n");
        peer.send("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n");
        peer.until("\r\n.\r\n");
        peer.send("250 2.0.0 Ok: queued as F00\r\n");
        peer.until("QUIT\r\n");
    });
    let outcomes = LocalExecutor::default().run(async {
        let pool = Pool::new(config());
        let first = pool
            .send(addr, &envelope(&["nobody@dst.test"]), b"x\r\n")
            .await
            .unwrap();
        let second = pool
            .send(addr, &envelope(&["r@dst.test"]), b".a\r\n..b\r\nc")
            .await
            .unwrap();
        pool.close_idle().await;
        (first, second)
    });
    assert!(
        matches!(&outcomes.0[0], RecipientOutcome::Failed(r) if r.code == 550 && r.enhanced == "5.1.1")
    );
    assert!(
        matches!(&outcomes.1[0], RecipientOutcome::Delivered(r) if r.lines[0] == "Ok: queued as F00")
    );
    let seen = String::from_utf8(server.join().unwrap()).unwrap();
    assert_eq!(
        seen,
        "EHLO relay.test\r\n\
         MAIL FROM:<s@src.test>\r\nRCPT TO:<nobody@dst.test>\r\nDATA\r\n.\r\n\
         MAIL FROM:<s@src.test>\r\nRCPT TO:<r@dst.test>\r\nDATA\r\n\
         ..a\r\n...b\r\nc\r\n.\r\n\
         QUIT\r\n"
    );
}
