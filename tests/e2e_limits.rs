//! End to end: every bound a client can push against has its SMTP answer,
//! and hitting it never lets anything through nor takes the server down.
//!
//! - message size: `SIZE=` over `--message-size-max` at MAIL, and a body
//!   that is bigger than declared → 552 5.3.4, nothing delivered;
//! - the 101st RCPT → 452 4.5.3 (the 100 before it are delivered);
//! - a command line over 512 octets → 500 5.5.2 (512 exactly is fine);
//! - `--max-connections 2`: the third concurrent connection → 421 4.7.0;
//! - idle client with `--timeout-command-secs 1` → 421 4.4.2 and closed;
//! - a client trickling DATA below `--min-data-rate` → 421 4.4.2, nothing
//!   delivered;
//! - a client that pipelines NOOPs and never reads a reply is disconnected
//!   (its replies are not buffered without bound), and the server serves
//!   the next client.
//!
//! Timing: nothing sleeps to assert a time. Waits poll with deadlines; the
//! only sleeps pace the trickling client and the writer that never reads.

mod common;

use common::*;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ehlo(client: &mut RawSmtp) {
    let reply = client.cmd("EHLO client.test").unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
}

fn starts(reply: &Reply, code: u16, enhanced: &str) -> bool {
    reply.code == code && reply.text().starts_with(&format!("{enhanced} "))
}

/// Sends one legitimate message and waits for it at the sink; then the sink
/// must hold `expected` messages in total.
fn control_message_arrives_alone(
    server: &Portcullis,
    sink: &Sink,
    expected: usize,
) -> Vec<SinkMessage> {
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    let reply = client
        .send_mail(
            "control@client.test",
            &["control@example.test"],
            b"Subject: control\r\n\r\nok\r\n",
        )
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    let messages = sink.wait_for_messages(expected, WAIT);
    assert_eq!(messages.len(), expected, "{messages:#?}");
    messages
}

#[test]
fn oversize_message_is_refused_552_declared_and_actual() {
    let sink = Sink::start();
    let server = Portcullis::builder()
        .route("*", &sink)
        .arg("--message-size-max")
        .arg("2048")
        .start();
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    let ehlo = client.cmd("EHLO client.test").unwrap();
    assert!(ehlo.contains("SIZE 2048"), "{ehlo:?}");

    // Declared too big at MAIL (RFC 1870 §6.1).
    let mail = client.cmd("MAIL FROM:<big@client.test> SIZE=4096").unwrap();
    assert!(starts(&mail, 552, "5.3.4"), "{mail:?}");
    let rcpt = client.cmd("RCPT TO:<rcpt@example.test>").unwrap();
    assert_eq!(
        rcpt.code, 503,
        "no transaction after a refused MAIL: {rcpt:?}"
    );

    // Declared small, sent big.
    assert_eq!(
        client
            .cmd("MAIL FROM:<big@client.test> SIZE=1000")
            .unwrap()
            .code,
        250
    );
    assert_eq!(client.cmd("RCPT TO:<rcpt@example.test>").unwrap().code, 250);
    assert_eq!(client.cmd("DATA").unwrap().code, 354);
    let line = format!("{}\r\n", "x".repeat(98));
    let mut body = b"Subject: too big\r\n\r\n".to_vec();
    for _ in 0..60 {
        body.extend_from_slice(line.as_bytes()); // 6000 octets
    }
    client.send(&body).unwrap();
    client.send(b".\r\n").unwrap();
    let end = client.read_reply().unwrap();
    assert!(starts(&end, 552, "5.3.4"), "{end:?}");
    // Same via BDAT.
    assert_eq!(client.cmd("MAIL FROM:<big@client.test>").unwrap().code, 250);
    assert_eq!(client.cmd("RCPT TO:<rcpt@example.test>").unwrap().code, 250);
    let mut wire = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
    wire.extend_from_slice(&body);
    client.send(&wire).unwrap();
    let bdat = client.read_reply().unwrap();
    assert!(starts(&bdat, 552, "5.3.4"), "{bdat:?}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);

    let messages = control_message_arrives_alone(&server, &sink, 1);
    assert_eq!(messages[0].recipients(), ["control@example.test"]);
}

#[test]
fn the_101st_recipient_gets_452_and_the_first_100_are_delivered() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).start();
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    ehlo(&mut client);
    // Pipelined (RFC 2920): MAIL and 101 RCPTs in one write.
    let mut batch = String::from("MAIL FROM:<many@client.test>\r\n");
    for i in 1..=101 {
        batch.push_str(&format!("RCPT TO:<r{i}@example.test>\r\n"));
    }
    client.send(batch.as_bytes()).unwrap();
    let replies = client.read_replies(102).unwrap();
    assert_eq!(replies[0].code, 250);
    for (i, reply) in replies[1..101].iter().enumerate() {
        assert_eq!(reply.code, 250, "RCPT #{}: {reply:?}", i + 1);
    }
    assert!(starts(&replies[101], 452, "4.5.3"), "{:?}", replies[101]);
    assert_eq!(client.cmd("DATA").unwrap().code, 354);
    client.send(b"Subject: hundred\r\n\r\nhi\r\n.\r\n").unwrap();
    assert_eq!(client.read_reply().unwrap().code, 250);
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);

    let messages = sink.wait_for_recipients(100, WAIT);
    let mut rcpts: Vec<String> = messages.iter().flat_map(|m| m.recipients()).collect();
    rcpts.sort();
    let mut expected: Vec<String> = (1..=100).map(|i| format!("r{i}@example.test")).collect();
    expected.sort();
    assert_eq!(rcpts, expected);
}

#[test]
fn command_line_over_512_octets_gets_500_and_the_session_goes_on() {
    let server = Portcullis::builder().start();
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    ehlo(&mut client);
    // RFC 5321 §4.5.3.1.4: 512 octets including CRLF is the maximum.
    let exactly = format!("NOOP {}", "a".repeat(512 - 5 - 2));
    assert_eq!(exactly.len() + 2, 512);
    assert_eq!(client.cmd(&exactly).unwrap().code, 250);
    let over = format!("NOOP {}", "a".repeat(512 - 5 - 1));
    let reply = client.cmd(&over).unwrap();
    assert!(starts(&reply, 500, "5.5.2"), "{reply:?}");
    // A much longer one: one 500, not one per 512 octets.
    let huge = format!("MAIL FROM:<{}@client.test>", "b".repeat(10_000));
    let reply = client.cmd(&huge).unwrap();
    assert!(starts(&reply, 500, "5.5.2"), "{reply:?}");
    let noop = client.cmd("NOOP").unwrap();
    assert_eq!(
        noop.code, 250,
        "the rest of the long line was taken as a command: {noop:?}"
    );
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
}

#[test]
fn third_concurrent_connection_gets_421_with_max_connections_2() {
    let server = Portcullis::builder()
        .arg("--max-connections")
        .arg("2")
        .start();
    let (mut first, g1) = RawSmtp::connect(server.addr()).unwrap();
    let (_second, g2) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!((g1.code, g2.code), (220, 220));
    let (mut third, g3) = RawSmtp::connect(server.addr()).unwrap();
    assert!(starts(&g3, 421, "4.7.0"), "{g3:?}");
    assert!(third.is_closed_within(WAIT), "refused connection left open");
    // The two admitted sessions still work.
    assert_eq!(first.cmd("NOOP").unwrap().code, 250);
    // A slot frees up when one closes (the count drops asynchronously).
    assert_eq!(first.cmd("QUIT").unwrap().code, 221);
    assert!(first.is_closed_within(WAIT));
    let mut greeting = None;
    let admitted = wait_until(WAIT, || {
        let (_, g) = RawSmtp::connect(server.addr()).unwrap();
        let ok = g.code == 220;
        greeting = Some(g);
        ok
    });
    assert!(admitted, "no slot after one of two closed: {greeting:?}");
    // The refusal is in the mail log (flushed on a short timer).
    server.wait_for_log(" refused ", 1, WAIT);
}

#[test]
fn idle_client_gets_421_after_the_command_timeout() {
    let server = Portcullis::builder()
        .arg("--timeout-command-secs")
        .arg("1")
        .start();
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    ehlo(&mut client);
    let idle_since = Instant::now();
    let reply = client
        .read_reply()
        .expect("a 421 before our 30 s read deadline");
    let idle = idle_since.elapsed();
    assert!(starts(&reply, 421, "4.4.2"), "{reply:?}");
    assert!(
        idle >= Duration::from_millis(900),
        "421 after only {idle:?}"
    );
    assert!(client.is_closed_within(WAIT), "not disconnected after 421");
}

#[test]
fn data_trickled_below_the_minimum_rate_is_cut_off_and_not_delivered() {
    let sink = Sink::start();
    let server = min_rate_server(Portcullis::builder().route("*", &sink));
    let mut client = slow_client_in_transaction(&server);
    assert_eq!(client.cmd("DATA").unwrap().code, 354);

    // A writer thread sends one octet every 300 ms (about 3 octets/s) of a
    // complete message; the main thread waits for the server's answer.
    let message = b"Subject: slow\r\n\r\nslow body\r\n.\r\n".repeat(4);
    let stop = Arc::new(AtomicBool::new(false));
    let mut stream = client.stream().try_clone().unwrap();
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for byte in message {
                if stop.load(Ordering::Relaxed) || stream.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let started = Instant::now();
    let reply = client.read_reply();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let reply = reply.expect("an answer to the trickle");
    let after = started.elapsed();
    assert!(starts(&reply, 421, "4.4.2"), "{reply:?}");
    // Cut off by the rate check (window 2 s), not by a data timeout.
    assert!(
        after >= Duration::from_millis(1900),
        "cut off after only {after:?}"
    );
    assert!(
        after < Duration::from_secs(10),
        "cut off only after {after:?}"
    );
    assert!(client.is_closed_within(WAIT));
    server.wait_for_log(" slow ", 1, WAIT);

    control_message_arrives_alone(&server, &sink, 1);
    let queued = server.event_lines("queued");
    assert!(
        queued.iter().all(|l| !l.contains("slow@client.test")),
        "{queued:#?}"
    );
}

#[test]
fn client_that_never_reads_is_disconnected_not_buffered() {
    let server = Portcullis::builder()
        .arg("--timeout-command-secs")
        .arg("2")
        .start();
    let (client, _) = RawSmtp::connect(server.addr()).unwrap();
    let mut stream = client.stream().try_clone().unwrap();
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let block = b"NOOP\r\n".repeat(10_000);
    // Write NOOPs without ever reading; keep the command stream aligned
    // across partial writes. The server must end the connection.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0usize;
    let mut offset = 0usize;
    let outcome = loop {
        if Instant::now() > deadline {
            break Err(format!("still connected after 60 s and {sent} octets"));
        }
        match stream.write(&block[offset..]) {
            Ok(0) => break Ok("write returned 0".to_owned()),
            Ok(n) => {
                sent += n;
                offset = (offset + n) % block.len();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => break Ok(format!("{e}")),
        }
    };
    let how = outcome.unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    eprintln!("server closed the connection ({how}) after {sent} octets of NOOPs");
    assert!(
        sent >= 6 * 1000,
        "thousands of NOOPs were sent ({sent} octets)"
    );
    server.wait_for_log(" disconnect ", 1, WAIT);

    // Memory stayed bounded: the replies were not queued up in the server.
    let pid = server.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    eprintln!("portcullis peak RSS {rss_kib} KiB");
    assert!(rss_kib < 256 * 1024, "peak RSS {rss_kib} KiB");

    // And it is healthy for the next client.
    let (mut next, greeting) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(greeting.code, 220);
    ehlo(&mut next);
    assert_eq!(next.cmd("QUIT").unwrap().code, 221);
}


#[test]
fn bdat_trickled_in_tiny_chunks_is_cut_off() {
    let server = min_rate_server(Portcullis::builder());
    let mut client = slow_client_in_transaction(&server);
    // One-octet chunks, one every 300 ms: about 10 octets/s on the wire,
    // 3 octets/s of message, far below 100 octets/s.
    let started = Instant::now();
    let mut answers = Vec::new();
    let cut_off = loop {
        if started.elapsed() > Duration::from_secs(15) {
            break None;
        }
        let reply = match client
            .send(b"BDAT 1\r\nx")
            .and_then(|_| client.read_reply())
        {
            Ok(reply) => reply,
            Err(e) => break Some(format!("connection ended: {e}")),
        };
        if reply.code != 250 {
            break Some(format!("{} {}", reply.code, reply.text()));
        }
        answers.push(reply.code);
        std::thread::sleep(Duration::from_millis(300));
    };
    let after = started.elapsed();
    let cut_off = cut_off.unwrap_or_else(|| {
        panic!(
            "still receiving chunks after {after:?} ({} chunks accepted)",
            answers.len()
        )
    });
    assert!(cut_off.starts_with("421 4.4.2 "), "{cut_off}");
}

/// A server that wants at least 100 octets/s over a 2 s window.
fn min_rate_server(builder: PortcullisBuilder) -> Portcullis {
    builder.arg("--min-data-rate").arg("100").arg("--data-rate-window-secs").arg("2").start()
}

/// A client past EHLO, MAIL and RCPT, ready to trickle its message.
fn slow_client_in_transaction(server: &Portcullis) -> RawSmtp {
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    ehlo(&mut client);
    assert_eq!(client.cmd("MAIL FROM:<slow@client.test>").unwrap().code, 250);
    assert_eq!(client.cmd("RCPT TO:<rcpt@example.test>").unwrap().code, 250);
    client
}
