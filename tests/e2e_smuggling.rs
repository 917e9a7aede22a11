//! End to end: SMTP smuggling cannot slip a second message past Portcullis.
//!
//! An attacker ends the DATA of a legitimate message with a fake end marker
//! that some MTA downstream might honour (`\n.\n`, `\n.\r\n`, `\r.\r\n`,
//! `\r\n.\n`, `\r\n.\r`), puts a complete second transaction behind it
//! (MAIL FROM of a spoofed sender, RCPT, DATA, body) and only then the real
//! `\r\n.\r\n`. Portcullis must see one message with a bare CR or LF in it
//! and refuse it whole with 554 5.6.0 (src/smtp/body.rs), must not answer
//! the smuggled commands (the next reply is to our own next command), and
//! the sink must never get the smuggled envelope or text. Each attempt is
//! sent once in one write and once split in the middle of the fake marker.
//! After each refusal the same session sends a clean message, which must
//! arrive: the session is back in sync.
//!
//! Bare CR or LF in command lines is refused with 500 5.5.2 and the
//! command is not executed.

mod common;

use common::*;

const FAKE_ENDS: &[(&str, &[u8])] = &[
    ("LF.LF", b"\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CR.CRLF", b"\r.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CRLF.CR", b"\r\n.\r"),
];

const SMUGGLED_FROM: &str = "ceo@spoofed.test";
const SMUGGLED_RCPT: &str = "victim@example.test";

fn smuggling_data(fake_end: &[u8]) -> (Vec<u8>, usize) {
    let mut data = b"From: attacker@client.test\r\nSubject: innocent\r\n\r\nHello".to_vec();
    let split = data.len() + fake_end.len() / 2;
    data.extend_from_slice(fake_end);
    data.extend_from_slice(
        format!(
            "MAIL FROM:<{SMUGGLED_FROM}>\r\n\
             RCPT TO:<{SMUGGLED_RCPT}>\r\n\
             DATA\r\n\
             From: {SMUGGLED_FROM}\r\n\
             Subject: smuggled\r\n\
             \r\n\
             smuggled body\r\n\
             .\r\n"
        )
        .as_bytes(),
    );
    (data, split)
}

/// One attempt in its own session; returns the reply to the final dot.
fn attempt(server: &Portcullis, name: &str, fake_end: &[u8], split_writes: bool) -> Reply {
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(client.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(
        client.cmd("MAIL FROM:<attacker@client.test>").unwrap().code,
        250
    );
    assert_eq!(
        client.cmd("RCPT TO:<someone@example.test>").unwrap().code,
        250
    );
    assert_eq!(client.cmd("DATA").unwrap().code, 354);
    let (data, split) = smuggling_data(fake_end);
    if split_writes {
        client.send(&data[..split]).unwrap();
        // Let the first half be read on its own (not a timing assertion:
        // either way the result must be the same).
        std::thread::sleep(std::time::Duration::from_millis(50));
        client.send(&data[split..]).unwrap();
    } else {
        client.send(&data).unwrap();
    }
    let end = client.read_reply().unwrap();
    // The next reply must answer *our* next command, not a smuggled one.
    let noop = client.cmd("NOOP after smuggling").unwrap();
    assert_eq!(
        (noop.code, noop.text()),
        (250, "2.0.0 Ok".to_owned()),
        "{name}: reply after the refused message was not ours"
    );
    // Back in sync: a clean message in the same session goes through.
    let subject = format!("clean after {name} split={split_writes}");
    let clean = client
        .send_mail(
            "attacker@client.test",
            &["someone@example.test"],
            format!("Subject: {subject}\r\n\r\nclean\r\n").as_bytes(),
        )
        .unwrap();
    assert_eq!(
        clean.code, 250,
        "{name}: clean message after the attempt: {clean:?}"
    );
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    end
}

#[test]
fn fake_end_markers_never_end_data_nor_start_a_second_message() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).start();
    fake_end_battery(&server, &sink);
}

/// The same with every recipient called ahead (at the same sink): the
/// pause at RCPT changes nothing about where the data ends.
#[test]
fn fake_end_markers_never_end_data_with_callahead_on() {
    let sink = Sink::start();
    let (server, _config) = common::guarded::portcullis_with_callahead(&sink);
    fake_end_battery(&server, &sink);
    let decisions = server.wait_for_log(" callahead ", FAKE_ENDS.len() * 4, WAIT);
    assert!(decisions.iter().all(|l| l.contains("verdict=accepted")), "{decisions:#?}");
}

fn fake_end_battery(server: &Portcullis, sink: &Sink) {
    let mut replies = Vec::new();
    for &(name, fake_end) in FAKE_ENDS {
        for split in [false, true] {
            let end = attempt(server, name, fake_end, split);
            replies.push(format!("{name} split={split}: {} {}", end.code, end.text()));
            assert_eq!(
                (end.code, end.text().starts_with("5.6.0 ")),
                (554, true),
                "{name} split={split}: {end:?}"
            );
        }
    }
    eprintln!("replies to the final dot:\n  {}", replies.join("\n  "));

    let expected = FAKE_ENDS.len() * 2;
    let messages = sink.wait_for_messages(expected, WAIT);
    server.wait_for_log(" disconnect ", expected, WAIT);
    assert_eq!(
        server.event_lines("queued").len(),
        expected,
        "only the clean messages are queued"
    );
    assert_eq!(messages.len(), expected, "{messages:#?}");
    for msg in &messages {
        assert_eq!(msg.sender(), "attacker@client.test", "{msg:#?}");
        assert_eq!(msg.recipients(), ["someone@example.test"], "{msg:#?}");
        assert!(
            msg.header("subject")
                .unwrap_or_default()
                .starts_with("clean after "),
            "{msg:#?}"
        );
        let text = msg.text();
        assert!(
            !text.contains("smuggled") && !text.contains(SMUGGLED_FROM),
            "{text}"
        );
    }
}

#[test]
fn bare_cr_or_lf_in_commands_is_refused_and_not_executed() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).start();
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();

    // A command ended by a bare LF is not a command.
    client.send(b"EHLO client.test\n").unwrap();
    let reply = client.read_reply().unwrap();
    assert_eq!(
        (reply.code, reply.text().starts_with("5.5.2 ")),
        (500, true),
        "{reply:?}"
    );
    // So MAIL still needs a HELO/EHLO.
    let mail = client.cmd("MAIL FROM:<a@client.test>").unwrap();
    assert_eq!(mail.code, 503, "{mail:?}");

    assert_eq!(client.cmd("EHLO client.test").unwrap().code, 250);
    // A bare CR hiding a MAIL inside a NOOP line: one line, refused whole.
    client
        .send(b"NOOP\rMAIL FROM:<evil@spoofed.test>\r\n")
        .unwrap();
    let hidden = client.read_reply().unwrap();
    assert_eq!(
        (hidden.code, hidden.text().starts_with("5.5.2 ")),
        (500, true),
        "{hidden:?}"
    );
    // The MAIL was not executed: RCPT has no transaction.
    let rcpt = client.cmd("RCPT TO:<victim@example.test>").unwrap();
    assert_eq!(rcpt.code, 503, "a smuggled MAIL was executed: {rcpt:?}");
    // A clean MAIL is not "nested": nothing was started before it.
    assert_eq!(client.cmd("MAIL FROM:<a@client.test>").unwrap().code, 250);
    // RCPT ended by bare LF: not executed, so DATA has no recipient.
    client.send(b"RCPT TO:<victim@example.test>\n").unwrap();
    assert_eq!(client.read_reply().unwrap().code, 500);
    let data = client.cmd("DATA").unwrap();
    assert_eq!(data.code, 554, "{data:?}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);

    server.wait_for_log(" disconnect ", 1, WAIT);
    assert!(server.event_lines("queued").is_empty(), "{}", server.log());
    assert_eq!(sink.count(), 0);
}

