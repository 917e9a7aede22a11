//! End to end: one pipelined write of 3000 RCPTs (about 100 KB: more than
//! the session's input bound, `limits::SESSION_INPUT_BYTES_MAX`, and far more
//! than the replies it holds behind questions in flight,
//! `limits::SESSION_REPLIES_HELD_MAX`), every seventh one refused by the
//! relay policy. The driver keeps questions in flight, stops reading while
//! the session's input is full, and every RCPT gets its own reply, in
//! order. The 428 policy refusals do not trip the error limit (20).

mod common;

use common::*;

#[test]
fn a_huge_pipelined_rcpt_batch_is_answered_in_order() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).arg("--recipients-max").arg("5000").start();
    let (mut client, greeting) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(greeting.code, 220);
    assert!(client.cmd("EHLO client.test").unwrap().contains("PIPELINING"));
    assert_eq!(client.cmd("MAIL FROM:<batch@client.test>").unwrap().code, 250);

    let n = 3000;
    let mailbox = |i: usize| {
        let domain = if i % 7 == 3 { "outside.test" } else { "example.test" };
        format!("user{i:04}@{domain}")
    };
    let mut batch: Vec<u8> = (0..n).flat_map(|i| format!("RCPT TO:<{}>\r\n", mailbox(i)).into_bytes()).collect();
    batch.extend_from_slice(b"DATA\r\n");
    assert!(batch.len() > 64 * 1024 + 16 * 1024, "over the input bound plus one read");
    client.send(&batch).unwrap();

    let replies = client.read_replies(n + 1).unwrap();
    for (i, reply) in replies[..n].iter().enumerate() {
        if i % 7 == 3 {
            assert_eq!(reply.code, 550, "RCPT {i}: {}", reply.text());
            assert!(reply.text().contains(&mailbox(i)), "RCPT {i} out of order: {}", reply.text());
        } else {
            assert_eq!(reply.code, 250, "RCPT {i}: {}", reply.text());
        }
    }
    assert_eq!(replies[n].code, 354, "{}", replies[n].text());
    client.send(b"Subject: batch\r\n\r\nhello\r\n.\r\n").unwrap();
    let queued = client.read_reply().unwrap();
    assert_eq!(queued.code, 250, "{}", queued.text());

    let messages = sink.wait_for_messages(1, WAIT);
    let expected: Vec<String> = (0..n).filter(|i| i % 7 != 3).map(mailbox).collect();
    assert_eq!(messages[0].recipients(), expected, "accepted recipients in RCPT order");
}
