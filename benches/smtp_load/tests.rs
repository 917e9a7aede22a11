//! Unit tests of the smtp_load client (benches/smtp_load.rs): one session
//! against a scripted server on loopback, the message it sends, the
//! percentiles it prints. The STARTTLS path is exercised end to end by
//! benches/tls.sh, which checks every handshake in Portcullis's log.

use super::*;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;

fn options(target: SocketAddr, messages: usize) -> Options {
    let mut args = vec!["smtp_load".to_string(), target.to_string()];
    args.extend(["--messages".into(), messages.to_string(), "--bytes".into(), "1024".into()]);
    Options::parse_from(args)
}

/// A scripted server: answers each command line with the next reply of
/// `replies` (after the banner), swallows DATA up to the dot, and
/// returns what the client sent, command by command.
fn fake_server(replies: Vec<&'static str>) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut out = tcp.try_clone().unwrap();
        let mut lines = BufReader::new(tcp);
        out.write_all(b"220 fake ESMTP\r\n").unwrap();
        let mut seen = Vec::new();
        let mut replies = replies.into_iter();
        while let Some(reply) = replies.next() {
            let mut line = String::new();
            if lines.read_line(&mut line).unwrap() == 0 {
                break;
            }
            seen.push(line.trim_end().to_string());
            out.write_all(reply.as_bytes()).unwrap();
            if line == "DATA\r\n" {
                // The message up to the dot; the next reply answers the dot.
                let mut body = 0;
                loop {
                    let mut l = String::new();
                    lines.read_line(&mut l).unwrap();
                    if l == ".\r\n" {
                        break;
                    }
                    body += l.len();
                }
                seen.push(format!("<{body} bytes>"));
                out.write_all(replies.next().unwrap_or("451 script ended\r\n").as_bytes()).unwrap();
            }
        }
        seen
    });
    (addr, server)
}

#[test]
fn a_session_sends_the_transaction_in_order_and_counts_messages_at_their_250() {
    let (addr, server) = fake_server(vec![
        "250-fake\r\n250 PIPELINING\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "354 go\r\n",
        "250 queued\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "354 go\r\n",
        "250 queued\r\n",
        "221 bye\r\n",
    ]);
    let plan = Plan::new(&options(addr, 2), None);
    let mut tally = Tally::default();
    run_session(&plan, &mut tally).unwrap();
    assert_eq!(tally.messages, 2);
    let seen = server.join().unwrap();
    let body = plan.message.len() - 3;
    assert_eq!(
        seen,
        [
            "EHLO client.test".to_string(),
            "MAIL FROM:<bench@client.test>".into(),
            "RCPT TO:<rcpt@example.test>".into(),
            "DATA".into(),
            format!("<{body} bytes>"),
            "MAIL FROM:<bench@client.test>".into(),
            "RCPT TO:<rcpt@example.test>".into(),
            "DATA".into(),
            format!("<{body} bytes>"),
            "QUIT".into(),
        ]
    );
}

#[test]
fn a_refused_recipient_fails_the_session_and_no_message_counts() {
    let (addr, _server) = fake_server(vec!["250 fake\r\n", "250 ok\r\n", "550 5.1.1 no such user\r\n"]);
    let plan = Plan::new(&options(addr, 1), None);
    let mut tally = Tally::default();
    let error = run_session(&plan, &mut tally).unwrap_err();
    assert!(error.contains("wanted 250, got 550 5.1.1"), "{error}");
    assert_eq!(tally.messages, 0);
}

#[test]
fn starttls_not_offered_is_an_error_before_any_mail() {
    let (addr, _server) = fake_server(vec!["250-fake\r\n250 SIZE 1000\r\n"]);
    let mut options = options(addr, 1);
    options.starttls = true;
    options.insecure = true;
    let tls = client_config(&options).unwrap();
    let plan = Plan::new(&options, Some(tls));
    let error = run_session(&plan, &mut Tally::default()).unwrap_err();
    assert!(error.contains("STARTTLS not offered"), "{error}");
}

#[test]
fn the_message_is_the_size_asked_for_and_needs_no_dot_stuffing() {
    for bytes in [300, 1024, 10_240] {
        let mut options = options("127.0.0.1:25".parse().unwrap(), 1);
        options.bytes = bytes;
        let text = message_text(&options);
        let without_dot = &text[..text.len() - 3];
        assert!(text.ends_with(b"\r\n.\r\n"));
        assert!(without_dot.len().abs_diff(bytes) <= 1, "{} vs {bytes}", without_dot.len());
        assert!(!without_dot.split(|&b| b == b'\n').any(|line| line.starts_with(b".")));
    }
}

#[test]
fn percentiles_are_nearest_rank() {
    let mut tally = Tally::default();
    tally.handshakes_us = (1..=100).map(|ms| ms * 1000).collect();
    let options = options("127.0.0.1:25".parse().unwrap(), 1);
    let report = Report::new(&options, tally, Duration::from_secs(1));
    assert_eq!(report.handshake_ms(50), "50.000");
    assert_eq!(report.handshake_ms(99), "99.000");
    assert_eq!(report.handshake_ms(100), "100.000");
}
