//! End to end: what a client sends arrives at the downstream byte for byte.
//!
//! RawSmtp → portcullis → smtp-sink. The message has lines that start with
//! "." (dot-stuffed on the wire in both hops), 8-bit UTF-8 text sent with
//! BODY=8BITMIME, a 5000-octet line, trailing blanks and a tab. The sink must
//! hold exactly our Received header followed by the message, and the
//! Received header must name the queue id of the 250 reply and the
//! connection id of the mail log. BDAT (CHUNKING) in two chunks, split in
//! the middle of a line and between a CR and its LF, must arrive the same.
//! Both run with `--cores 1` and `--cores 2`.
//!
//! How the sink's dump is compared (documented smtp-sink 3.7 behaviour, see
//! tests/common/sink.rs): it strips the CR of every CRLF and undoes
//! dot-stuffing. The expected dump is therefore the message as the client
//! meant it (unstuffed) with CRLF replaced by LF; the message has no bare
//! CR or LF, so that mapping is exact.

mod common;

use common::*;

const SENDER: &str = "alice@client.test";
const RECIPIENT: &str = "bob@example.test";

/// The message as the client means it (unstuffed), CRLF line ends.
fn message() -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(
        "From: Alice <alice@client.test>\r\n\
         To: Bob <bob@example.test>\r\n\
         Subject: byte exact\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         .leading dot\r\n\
         ..two leading dots\r\n\
         .\r\n\
         a line with only a dot above\r\n\
         Grüße aus Köln — ünïcödé, 日本語, emoji 📬\r\n\
         \ttab first, trailing blanks   \r\n"
            .as_bytes(),
    );
    // A 5000-octet line (RFC 5321 §4.5.3.1.6 says 1000; real mail has longer).
    let long: String = (0..5000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    m.extend_from_slice(long.as_bytes());
    m.extend_from_slice(b"\r\n.. ending with dots ..\r\nlast line\r\n");
    m
}

/// RFC 5321 §4.5.2: a line starting with "." gets one more on the wire.
fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut line_start = true;
    for &b in data {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

/// What smtp-sink's dump holds for CRLF text: the same with LF line ends.
fn as_dumped(data: &[u8]) -> Vec<u8> {
    String::from_utf8(data.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes()
}

/// The connection id the mail log gave the connection from our local port.
fn connection_id(server: &Portcullis, client: &RawSmtp) -> String {
    let port = client.stream().local_addr().unwrap().port();
    let needle = format!("peer=127.0.0.1:{port} ");
    let lines = server.wait_for_log(&needle, 1, WAIT);
    let line = lines
        .iter()
        .find(|l| l.contains(" connect "))
        .unwrap_or_else(|| {
            panic!("no connect line for port {port}: {lines:?}");
        });
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("conn="))
        .unwrap_or_else(|| panic!("no conn= in {line:?}"))
        .to_owned()
}

fn queue_id(reply: &Reply) -> String {
    assert_eq!(reply.code, 250, "{reply:?}");
    reply.queue_id().unwrap_or_else(|| panic!("no queue id in {reply:?}"))
}

/// Checks the sink's dump: our Received header first (naming `qid` and
/// `conn`), then exactly `expected` (already in dump form).
fn assert_arrived_exactly(msg: &SinkMessage, qid: &str, conn: &str, expected: &[u8]) {
    assert_eq!(
        msg.sender(),
        SENDER,
        "MAIL args at the sink: {}",
        msg.mail_args
    );
    assert_eq!(
        msg.recipients(),
        [RECIPIENT],
        "RCPT args: {:?}",
        msg.rcpt_args
    );
    assert!(
        msg.data.ends_with(expected),
        "message changed on the way.\n--- sink data ---\n{}\n--- expected tail ---\n{}",
        msg.text(),
        String::from_utf8_lossy(expected)
    );
    let header = String::from_utf8(msg.data[..msg.data.len() - expected.len()].to_vec())
        .expect("the prepended header is ASCII");
    // Exactly one prepended field: our Received, folded over 4 lines.
    let lines: Vec<&str> = header
        .strip_suffix('\n')
        .unwrap_or("")
        .split('\n')
        .collect();
    assert_eq!(lines.len(), 4, "prepended header: {header:?}");
    assert_eq!(
        lines[0], "Received: from client.test ([127.0.0.1])",
        "{header}"
    );
    assert_eq!(
        lines[1],
        format!("\tby portcullis.test (Portcullis) with ESMTP id {qid}"),
        "{header}"
    );
    assert_eq!(lines[2], format!("\t(connection {conn})"), "{header}");
    let date = lines[3]
        .strip_prefix(&format!("\tfor <{RECIPIENT}>; "))
        .unwrap_or_else(|| panic!("for-clause and date: {header}"));
    // RFC 5322 date-time, e.g. "Sun, 22 Nov 2026 07:39:00 +0000".
    assert!(
        date.len() >= 29 && date.as_bytes()[3] == b',' && date.ends_with("+0000"),
        "date {date:?}"
    );
    assert_eq!(msg.header("received").map(|r| r.contains(qid)), Some(true));
}

fn data_transfer_arrives_byte_exact(cores: usize) {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).cores(cores).start();
    let (mut client, greeting) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(greeting.code, 220, "{greeting:?}");
    let ehlo = client.cmd("EHLO client.test").unwrap();
    assert!(ehlo.contains("8BITMIME"), "{ehlo:?}");
    let body = message();
    let mail = client
        .cmd(&format!(
            "MAIL FROM:<{SENDER}> BODY=8BITMIME SIZE={}",
            body.len()
        ))
        .unwrap();
    assert_eq!((mail.code, mail.text()), (250, "2.1.0 Ok".to_owned()));
    assert_eq!(
        client.cmd(&format!("RCPT TO:<{RECIPIENT}>")).unwrap().code,
        250
    );
    assert_eq!(client.cmd("DATA").unwrap().code, 354);
    client.send(&dot_stuff(&body)).unwrap();
    client.send(b".\r\n").unwrap();
    let qid = queue_id(&client.read_reply().unwrap());
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    let conn = connection_id(&server, &client);

    let messages = sink.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let msg = &messages[0];
    assert_arrived_exactly(msg, &qid, &conn, &as_dumped(&body));
    // The 8-bit body is still declared as such downstream (smtp-sink does
    // not advertise a SIZE limit, so no SIZE= is relayed).
    assert_eq!(msg.mail_args, format!("<{SENDER}> BODY=8BITMIME"));
    assert_eq!(msg.rcpt_args, [format!("<{RECIPIENT}>")]);
    assert_eq!(msg.helo.as_deref(), Some("portcullis.test"));
    server.wait_for_log(&format!("qid={qid} "), 2, WAIT);
}

fn bdat_in_two_chunks_arrives_byte_exact(cores: usize) {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).cores(cores).start();
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    let ehlo = client.cmd("EHLO client.test").unwrap();
    assert!(ehlo.contains("CHUNKING"), "{ehlo:?}");
    assert_eq!(
        client
            .cmd(&format!("MAIL FROM:<{SENDER}> BODY=8BITMIME"))
            .unwrap()
            .code,
        250
    );
    assert_eq!(
        client.cmd(&format!("RCPT TO:<{RECIPIENT}>")).unwrap().code,
        250
    );
    // BDAT carries no dot-stuffing: the octets are the message itself.
    let body = message();
    // First split: between the CR and the LF that end the "Subject" line.
    let cr = body
        .windows(12)
        .position(|w| w == b"byte exact\r\n")
        .unwrap()
        + 11;
    let (first, second) = body.split_at(cr);
    assert!(first.ends_with(b"\r") && second.starts_with(b"\n"));
    let mut wire = format!("BDAT {}\r\n", first.len()).into_bytes();
    wire.extend_from_slice(first);
    client.send(&wire).unwrap();
    let reply = client.read_reply().unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        reply.text().contains(&format!("{} octets", first.len())),
        "{reply:?}"
    );
    let mut wire = format!("BDAT {} LAST\r\n", second.len()).into_bytes();
    wire.extend_from_slice(second);
    client.send(&wire).unwrap();
    let qid = queue_id(&client.read_reply().unwrap());
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    let conn = connection_id(&server, &client);

    let messages = sink.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_arrived_exactly(&messages[0], &qid, &conn, &as_dumped(&body));
}

#[test]
fn data_transfer_arrives_byte_exact_one_core() {
    data_transfer_arrives_byte_exact(1);
}

#[test]
fn data_transfer_arrives_byte_exact_two_cores() {
    data_transfer_arrives_byte_exact(2);
}

#[test]
fn bdat_in_two_chunks_arrives_byte_exact_one_core() {
    bdat_in_two_chunks_arrives_byte_exact(1);
}

#[test]
fn bdat_in_two_chunks_arrives_byte_exact_two_cores() {
    bdat_in_two_chunks_arrives_byte_exact(2);
}
