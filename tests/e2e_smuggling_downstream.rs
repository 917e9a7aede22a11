//! End to end: nothing Portcullis relays can end DATA early on a lax
//! downstream (SMTP smuggling, outbound side).
//!
//! Inbound, bare CR and LF are refused in DATA and in text BDAT
//! (e2e_smuggling.rs). But BDAT with BODY=BINARYMIME is opaque by design,
//! and delivery relays every message with DATA (src/smtp/client.rs). So a
//! client can hand us a binary body holding `\r.\r\n` or `\n.\n` followed
//! by a complete second transaction. On the wire to the downstream, RFC
//! 5321 §2.3.8 allows CR and LF only together: a bare one is exactly what
//! lax servers (the 2023 SMTP-smuggling findings) read as a line end, and
//! then as the end of the data.
//!
//! The downstream here is a small fake (smtp-sink drops CRs from its dump,
//! so it cannot show them): it records the raw DATA octets of each
//! transaction. The test asserts that Portcullis either refuses such a
//! message or relays it without a bare CR or LF, and that the downstream
//! sees one transaction per accepted message.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Raw DATA octets (up to and including CRLF.CRLF) per transaction.
type Captured = Arc<Mutex<Vec<Vec<u8>>>>;

/// A minimal ESMTP server on loopback: 8BITMIME and PIPELINING, accepts
/// everything, records the DATA octets exactly as they came.
fn fake_downstream() -> (u16, Captured) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let captured: Captured = Arc::default();
    let store = captured.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || serve(stream, store));
        }
    });
    (port, captured)
}

fn serve(stream: TcpStream, store: Captured) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut out = stream.try_clone().unwrap();
    let mut input = BufReader::new(stream);
    let _ = out.write_all(b"220 fake ESMTP\r\n");
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return;
        }
        let verb = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let reply: &[u8] = if verb.starts_with("EHLO") {
            b"250-fake\r\n250-8BITMIME\r\n250 PIPELINING\r\n"
        } else if verb.starts_with("DATA") {
            let _ = out.write_all(b"354 go ahead\r\n");
            // Read to the real end marker, keeping every octet.
            let mut data = Vec::new();
            while !data.ends_with(b"\r\n.\r\n") && data != b".\r\n" {
                let mut chunk = Vec::new();
                if input.read_until(b'\n', &mut chunk).unwrap_or(0) == 0 {
                    return;
                }
                data.extend_from_slice(&chunk);
            }
            store.lock().unwrap().push(data);
            b"250 2.0.0 Ok\r\n"
        } else if verb.starts_with("QUIT") {
            let _ = out.write_all(b"221 bye\r\n");
            return;
        } else {
            b"250 2.0.0 Ok\r\n"
        };
        if out.write_all(reply).is_err() {
            return;
        }
    }
}

/// Positions of CR not followed by LF and LF not preceded by CR.
fn bare_line_ends(data: &[u8]) -> Vec<usize> {
    (0..data.len())
        .filter(|&i| match data[i] {
            b'\r' => data.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || data[i - 1] != b'\r',
            _ => false,
        })
        .collect()
}

#[test]
fn binarymime_body_is_never_relayed_with_bare_cr_or_lf() {
    let (port, captured) = fake_downstream();
    let server = Portcullis::builder()
        .route_hosts("*", &[&format!("127.0.0.1:{port}")])
        .start();
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(client.cmd("EHLO client.test").unwrap().code, 250);
    let mail = client
        .cmd("MAIL FROM:<attacker@client.test> BODY=BINARYMIME")
        .unwrap();
    let mut replies = vec![format!("MAIL: {} {}", mail.code, mail.text())];
    if mail.code == 250 {
        assert_eq!(
            client.cmd("RCPT TO:<someone@example.test>").unwrap().code,
            250
        );
        let body = b"Subject: binary\r\n\r\nHello\r.\r\n\
                     MAIL FROM:<ceo@spoofed.test>\r\n\
                     RCPT TO:<victim@example.test>\r\n\
                     DATA\r\n\
                     Subject: smuggled\r\n\r\nsmuggled\n.\n\
                     more\r\n";
        let mut wire = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        client.send(&wire).unwrap();
        let end = client.read_reply().unwrap();
        replies.push(format!("BDAT LAST: {} {}", end.code, end.text()));
        if end.code == 250 {
            // Accepted: then it must reach the downstream clean.
            let got = wait_until(WAIT, || !captured.lock().unwrap().is_empty());
            assert!(
                got,
                "accepted message never reached the downstream: {}",
                server.log()
            );
            let data = captured.lock().unwrap()[0].clone();
            let bare = bare_line_ends(&data);
            assert!(
                bare.is_empty(),
                "relayed DATA has bare CR/LF at {bare:?}: {:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    eprintln!("replies: {replies:?}");
    assert!(
        captured.lock().unwrap().len() <= 1,
        "more than one transaction downstream"
    );
}

#[test]
fn text_messages_are_relayed_with_crlf_only() {
    // The control for the test above: the fake and the checker are right.
    let (port, captured) = fake_downstream();
    let server = Portcullis::builder()
        .route_hosts("*", &[&format!("127.0.0.1:{port}")])
        .start();
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    let reply = client
        .send_mail(
            "sender@client.test",
            &["someone@example.test"],
            b"Subject: text\r\n\r\n..dot\r\nline\r\n",
        )
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        wait_until(WAIT, || !captured.lock().unwrap().is_empty()),
        "{}",
        server.log()
    );
    let data = captured.lock().unwrap()[0].clone();
    assert!(
        bare_line_ends(&data).is_empty(),
        "{:?}",
        String::from_utf8_lossy(&data)
    );
    assert!(
        data.ends_with(b"\r\n..dot\r\nline\r\n.\r\n"),
        "{:?}",
        String::from_utf8_lossy(&data)
    );
    assert_eq!(bare_line_ends(b"a\rb\r\nc\nd"), [1, 6]);
}
