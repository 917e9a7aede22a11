//! End-to-end: deferred mail waits on disk, not in memory, and is not
//! refused for the memory bound.
//!
//! `--queue-bytes-max` bounds the message bytes delivery holds in memory on
//! a shard. With the downstream down, three times that much mail is
//! accepted (250, never 452): what does not fit waits in the spool and is
//! read back for each retry. When the downstream comes back, every message
//! arrives byte for byte.

mod common;

use common::*;

const QUEUE_BYTES_MAX: usize = 1024 * 1024;
const MESSAGE_BYTES: usize = 256 * 1024;
const MESSAGES: usize = 12; // 3 MiB: three times the memory bound

/// A body of `bytes` octets in 100-octet CRLF lines, tagged with `n`.
fn body(n: usize, bytes: usize) -> Vec<u8> {
    let mut data = format!("Subject: deferred {n}\r\n\r\n").into_bytes();
    let line = format!("{n:04}{}\r\n", "x".repeat(94));
    while data.len() + line.len() <= bytes {
        data.extend_from_slice(line.as_bytes());
    }
    data
}

#[test]
fn deferred_mail_beyond_the_memory_bound_is_accepted_and_delivered() {
    let mut sink = Sink::start();
    sink.stop(); // downstream down: everything is deferred
    let server = Portcullis::builder()
        .cores(2)
        .route("*", &sink)
        .retry_secs(1, 1)
        .arg("--queue-bytes-max")
        .arg(&QUEUE_BYTES_MAX.to_string())
        .start();
    let mut sent = Vec::new();
    for n in 0..MESSAGES {
        let data = body(n, MESSAGE_BYTES);
        let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
        let reply = client.send_mail("sender@client.test", &["rcpt@example.test"], &data).unwrap();
        assert_eq!(reply.code, 250, "message {n} refused: {}\n{}", reply.text(), server.log());
        sent.push(data);
    }
    // Every message has been tried and deferred at least once while down.
    server.wait_for_log(" retry qid=", MESSAGES, WAIT);
    sink.start_again();
    let got = sink.wait_for_messages(MESSAGES, WAIT);
    assert_eq!(got.len(), MESSAGES, "{}", server.log());
    for data in &sent {
        let subject = String::from_utf8_lossy(&data[..data.iter().position(|&b| b == b'\r').unwrap()]).to_string();
        let wanted = subject.strip_prefix("Subject: ").unwrap();
        let message = got
            .iter()
            .find(|m| m.header("Subject").as_deref() == Some(wanted))
            .unwrap_or_else(|| panic!("{wanted} not delivered"));
        let body_sent = String::from_utf8_lossy(&data[data.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..]).to_string();
        assert_eq!(message.body().replace("\r\n", "\n"), body_sent.replace("\r\n", "\n"), "{wanted} byte for byte");
    }
    server.wait_for_log(" removed qid=", MESSAGES, WAIT);
}
