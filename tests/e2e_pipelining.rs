//! End to end: PIPELINING (RFC 2920) through the real binary.
//!
//! - swaks `--pipeline` delivers a message;
//! - a raw client sends MAIL, RCPT, RCPT (refused), RCPT, DATA in one
//!   write and gets the five replies in order (the refused recipient in the
//!   middle makes the order visible);
//! - the final dot, the next transaction's MAIL, RCPT and DATA go in one
//!   write, then the second body, its dot, a third MAIL FROM and QUIT in
//!   one write: replies come in order, both complete messages arrive with
//!   their own envelopes, the abandoned third one does not.

mod common;

use common::*;

#[test]
fn swaks_pipeline_delivers() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).start();
    let result = Swaks::new(server.addr())
        .from("piped@client.test")
        .to("one@example.test")
        .to("two@example.test")
        .header("Subject: swaks pipelined")
        .arg("--pipeline")
        .run();
    assert_eq!(result.exit_code(), Some(0), "{}", result.transcript());
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    let qid = result.queue_id().expect("queue id in the 250");
    // swaks really pipelined (it says so when the server offers it).
    assert!(
        !result.transcript().contains("does not support PIPELINING"),
        "{}",
        result.transcript()
    );

    let messages = sink.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].sender(), "piped@client.test");
    assert_eq!(
        messages[0].recipients(),
        ["one@example.test", "two@example.test"]
    );
    assert_eq!(
        messages[0].header("subject").as_deref(),
        Some("swaks pipelined")
    );
    assert!(messages[0].header("received").unwrap().contains(&qid));
}

fn texts(replies: &[Reply]) -> Vec<String> {
    replies
        .iter()
        .map(|r| format!("{} {}", r.code, r.text()))
        .collect()
}

#[test]
fn raw_pipelined_groups_are_answered_in_order() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).start();
    let (mut client, greeting) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(greeting.code, 220);
    let ehlo = client.cmd("EHLO client.test").unwrap();
    assert!(ehlo.contains("PIPELINING"), "{ehlo:?}");

    // Group 1: the whole envelope in one write.
    client
        .send(
            b"MAIL FROM:<first@client.test>\r\n\
              RCPT TO:<a@example.test>\r\n\
              RCPT TO:<x@outside.test>\r\n\
              RCPT TO:<b@example.test>\r\n\
              DATA\r\n",
        )
        .unwrap();
    let replies = client.read_replies(5).unwrap();
    let got = texts(&replies);
    assert_eq!(
        replies.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 550, 250, 354],
        "{got:#?}"
    );
    assert!(got[2].starts_with("550 5.7.1 "), "{got:#?}");

    // Group 2: body, dot and the next envelope in one write.
    client
        .send(
            b"Subject: first\r\n\r\nbody one\r\n.\r\n\
              MAIL FROM:<second@client.test>\r\n\
              RCPT TO:<c@example.test>\r\n\
              DATA\r\n",
        )
        .unwrap();
    let replies = client.read_replies(4).unwrap();
    let got = texts(&replies);
    assert_eq!(
        replies.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 250, 354],
        "{got:#?}"
    );
    assert!(
        got[0].contains("queued as "),
        "the dot is answered first: {got:#?}"
    );
    assert_eq!(got[1], "250 2.1.0 Ok", "{got:#?}");

    // Group 3: second body, its dot, a third MAIL and QUIT in one write
    // (QUIT abandons the third transaction).
    client
        .send(b"Subject: second\r\n\r\nbody two\r\n.\r\nMAIL FROM:<third@client.test>\r\nQUIT\r\n")
        .unwrap();
    let replies = client.read_replies(3).unwrap();
    let got = texts(&replies);
    assert!(got[0].starts_with("250 2.0.0 Ok: queued as "), "{got:#?}");
    assert_eq!(got[1], "250 2.1.0 Ok", "{got:#?}");
    assert!(got[2].starts_with("221 "), "{got:#?}");
    assert!(client.is_closed_within(WAIT));

    let mut messages = sink.wait_for_messages(2, WAIT);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    messages.sort_by_key(|m| m.header("subject"));
    assert_eq!(messages[0].header("subject").as_deref(), Some("first"));
    assert_eq!(messages[0].sender(), "first@client.test");
    assert_eq!(
        messages[0].recipients(),
        ["a@example.test", "b@example.test"]
    );
    assert!(
        messages[0].body().starts_with("body one\n"),
        "{:?}",
        messages[0].body()
    );
    assert_eq!(messages[1].header("subject").as_deref(), Some("second"));
    assert_eq!(messages[1].sender(), "second@client.test");
    assert_eq!(messages[1].recipients(), ["c@example.test"]);
    assert!(
        messages[1].body().starts_with("body two\n"),
        "{:?}",
        messages[1].body()
    );
}
