//! `--spool-bytes-max`: undelivered bytes on disk, all shards together.
//! With the downstream down, mail is accepted until the bound and then gets
//! 452 4.3.1 (never 250), whichever shard takes the connection; after a
//! `kill -9` the recovered mail still fills the bound; once it is delivered
//! there is room again.

mod common;

use common::*;

const MESSAGE_BYTES: usize = 60 * 1024;
/// Room for three stored messages (body + Received header), not four.
const SPOOL_BYTES_MAX: usize = 3 * MESSAGE_BYTES + MESSAGE_BYTES / 2;

fn message(n: usize) -> Vec<u8> {
    let mut m = format!("Subject: fill {n}\r\n\r\n").into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxy\r\n";
    while m.len() + line.len() <= MESSAGE_BYTES {
        m.extend_from_slice(line);
    }
    m
}

/// One message in its own session. Right after a (re)start the listeners
/// are bound a moment before every shard accepts, and a connection in that
/// moment can be reset before the greeting: only then is it tried again.
fn send(server: &Portcullis, n: usize) -> Reply {
    let mut client = None;
    wait_until(WAIT, || {
        client = RawSmtp::connect(server.addr()).ok().map(|(c, _)| c);
        client.is_some()
    });
    let mut client = client.expect("no greeting within WAIT");
    client.send_mail("s@sender.test", &["user@example.test"], &message(n)).unwrap()
}

#[test]
fn spool_bytes_max_answers_452_across_shards_and_after_a_restart() {
    let sink_port = free_port();
    let mut server = Portcullis::builder()
        .route_hosts("*", &[&format!("127.0.0.1:{sink_port}")])
        .cores(2)
        .retry_secs(1, 1)
        .arg("--spool-bytes-max")
        .arg(&SPOOL_BYTES_MAX.to_string())
        .start();

    let mut accepted = Vec::new();
    let mut refusal = None;
    for n in 0..10 {
        let reply = send(&server, n);
        if reply.code == 250 {
            accepted.push(n);
        } else {
            refusal = Some(reply);
            break;
        }
    }
    let refusal = refusal.expect("the bound refuses before ten messages");
    assert_eq!(refusal.code, 452, "{:?}", refusal.lines);
    assert!(refusal.contains("4.3.1"), "{:?}", refusal.lines);
    assert_eq!(accepted.len(), SPOOL_BYTES_MAX / MESSAGE_BYTES, "as many as fit, on any shard");

    // Recovered mail counts against the bound before any new mail.
    server.restart();
    assert_eq!(send(&server, 100).code, 452, "recovered mail fills the bound\n{}", server.log());

    // Downstream up: the recovered mail is delivered and frees its room.
    let sink = Sink::builder().port(sink_port).start();
    let got = sink.wait_for_messages(accepted.len(), WAIT);
    for n in &accepted {
        assert!(got.iter().any(|m| m.header("Subject").as_deref() == Some(&format!("fill {n}"))), "message {n} lost");
    }
    let ok = wait_until(WAIT, || send(&server, 200).code == 250);
    assert!(ok, "room was not given back after delivery\n{}", server.log());
    server.stop(std::time::Duration::from_secs(5));
}
