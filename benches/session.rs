//! Criterion benches of the pure SMTP session: one whole transaction
//! (connect answer and greeting, EHLO, MAIL, RCPT, DATA, QUIT) per iteration,
//! driven the way the connection driver does it: one client write per round
//! trip, questions answered when the session waits. Variants: one recipient
//! and a short body, ten recipients, a 10 KiB body.
//!
//! Run: `cargo bench --bench session` (add `-- --quick` for a short run).

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use portcullis::message::QueueId;
use portcullis::smtp::{Action, Banner, ConnectionPolicy, Decision, Peer, Question, Session, SessionConfig};

fn config() -> Arc<SessionConfig> {
    Arc::new(SessionConfig { hostname: "mx.example.test".into(), postmaster_domain: "example.test".into() })
}

fn policy() -> Arc<ConnectionPolicy> {
    Arc::new(ConnectionPolicy::plain(Banner::standard("mx.example.test"), portcullis::limits::MESSAGE_BYTES_MAX, portcullis::limits::RECIPIENTS_PER_MESSAGE_MAX, portcullis::limits::MESSAGES_PER_CONNECTION_MAX))
}

fn peer() -> Peer {
    Peer {
        connection_id: "C1".into(),
        addr: "192.0.2.10:40000".parse().unwrap(),
        local: "192.0.2.1:25".parse().unwrap(),
    }
}

/// The client's writes for one transaction, each answered before the next.
fn conversation(recipients: usize, body: &[u8]) -> Vec<Vec<u8>> {
    let mut writes = vec![b"EHLO client.example.net\r\n".to_vec(), b"MAIL FROM:<sender@example.net> SIZE=20000\r\n".to_vec()];
    for i in 0..recipients {
        writes.push(format!("RCPT TO:<user{i}@example.test>\r\n").into_bytes());
    }
    writes.push(b"DATA\r\n".to_vec());
    let mut data = body.to_vec();
    data.extend_from_slice(b".\r\n");
    writes.push(data);
    writes.push(b"QUIT\r\n".to_vec());
    writes
}

/// A body of about `size` octets in 76-character lines, some dot-stuffed.
fn body(size: usize) -> Vec<u8> {
    let mut body = b"From: sender@example.net\r\nTo: user0@example.test\r\nSubject: bench\r\n\r\n".to_vec();
    let mut line = 0;
    while body.len() < size {
        if line % 20 == 0 {
            body.extend_from_slice(b"..stuffed line\r\n");
        }
        body.extend_from_slice(&[b'a' + (line % 26) as u8; 76]);
        body.extend_from_slice(b"\r\n");
        line += 1;
    }
    body
}

/// Run one connection to the end; returns the octets written to the client.
fn transaction(config: &Arc<SessionConfig>, policy: &Arc<ConnectionPolicy>, writes: &[Vec<u8>]) -> usize {
    let mut session = Session::new(config.clone(), peer());
    let mut written = 0;
    let mut writes = writes.iter();
    let mut stored = 0u32;
    let mut asked = Vec::new();
    loop {
        match session.next_action() {
            Action::Read => {
                written += flush(&mut session);
                match writes.next() {
                    Some(bytes) => session.feed(bytes),
                    None => session.input_closed(),
                }
            }
            Action::Ask { ticket, question } => {
                let decision = match black_box(question) {
                    Question::Connect => Decision::Admit(policy.clone()),
                    Question::Mail { .. } | Question::Rcpt { .. } | Question::Auth { .. } => Decision::Accept,
                };
                asked.push((ticket, decision));
            }
            Action::AwaitAnswers => asked.drain(..).for_each(|(ticket, decision)| session.answer(ticket, decision)),
            Action::Store(message) => {
                black_box(&message);
                stored += 1;
                session.stored(Ok(QueueId(format!("Q{stored}"))));
            }
            Action::Close | Action::StartTls => break,
        }
        session.drain_events().for_each(|e| {
            black_box(e);
        });
    }
    written + flush(&mut session)
}

fn flush(session: &mut Session) -> usize {
    let n = session.output().len();
    black_box(session.output());
    session.consume_output(n);
    n
}

fn benches(c: &mut Criterion) {
    let (config, policy) = (config(), policy());
    let mut group = c.benchmark_group("session");
    for (name, recipients, body) in [
        ("transaction_1rcpt", 1, body(512)),
        ("transaction_10rcpt", 10, body(512)),
        ("transaction_10KiB_body", 1, body(10 * 1024)),
    ] {
        let writes = conversation(recipients, &body);
        assert!(transaction(&config, &policy, &writes) > 0);
        group.throughput(Throughput::Bytes(writes.iter().map(Vec::len).sum::<usize>() as u64));
        group.bench_function(name, |b| b.iter(|| transaction(&config, &policy, black_box(&writes))));
    }
    group.finish();
}

criterion_group!(session_benches, benches);
criterion_main!(session_benches);
