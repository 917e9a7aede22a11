//! `Decision::AcceptAs`: a RCPT the policy accepts under another mailbox (a
//! BATV-tagged bounce address stripped to its mailbox, `policy::bounce`)
//! puts that mailbox in the envelope, once, in RCPT order.

use super::*;

/// Pipelined RCPTs answered in the given order; the stored envelope's recipients.
fn stored_envelope(answers: impl Fn(&str) -> Decision) -> (String, crate::message::Envelope) {
    let mut s = ready();
    let rcpts = [
        "prvs=0123b59994=bob@example.test",
        "carol@example.test",
        "PRVS=0123B59994=bob@example.test",
    ];
    for r in rcpts {
        s.feed(format!("RCPT TO:<{r}>\r\n").as_bytes());
    }
    let tickets: Vec<Ticket> = rcpts.iter().map(|r| asked_rcpt(&mut s, r)).collect();
    // Answered last to first: the envelope keeps RCPT order anyway.
    for (ticket, r) in tickets.iter().zip(rcpts).rev() {
        s.answer(*ticket, answers(r));
    }
    s.feed(b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    let mut envelope = None;
    loop {
        match s.next_action() {
            Action::Store(message) => {
                envelope = Some(message.envelope);
                s.stored(Ok(QueueId("Q1".into())));
            }
            Action::Read => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let out = String::from_utf8_lossy(s.output()).into_owned();
    (out, envelope.expect("stored"))
}

fn stripped(r: &str) -> Decision {
    match r.rsplit_once('=') {
        Some((_, mailbox)) => Decision::AcceptAs(mailbox.to_string()),
        None => Decision::Accept,
    }
}

#[test]
fn an_accept_as_stores_the_stripped_mailbox_once() {
    let (out, envelope) = stored_envelope(stripped);
    assert!(
        out.starts_with("250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 "),
        "{out}"
    );
    assert_eq!(envelope.recipients, ["bob@example.test", "carol@example.test"]);
    // RFC 3461 §5.2.1: a DSN names the address the client used, from the
    // RCPT that stayed (the first), and nothing for the one not rewritten.
    let orcpt = |i: usize| envelope.rcpt_dsn(i).orcpt;
    let first = ("rfc822".to_string(), "prvs=0123b59994=bob@example.test".to_string());
    assert_eq!((orcpt(0), orcpt(1)), (Some(first), None));
}

#[test]
fn a_refused_tag_leaves_the_others() {
    let (out, envelope) = stored_envelope(|r| match r.starts_with("PRVS") {
        true => Decision::Refuse(Reply::new(550, "5.7.1", "Bounce address tag is not valid")),
        false => stripped(r),
    });
    assert!(
        out.starts_with(
            "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n550 5.7.1 Bounce address tag is not valid\r\n354 "
        ),
        "{out}"
    );
    assert_eq!(envelope.recipients, ["bob@example.test", "carol@example.test"]);
}

#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "AcceptAs answers RCPT only")
)]
fn an_accept_as_for_mail_is_a_policy_bug_never_a_250() {
    let mut s = session();
    run(&mut s, b"EHLO c.test\r\n", &mut Vec::new());
    s.feed(b"MAIL FROM:<a@sender.test>\r\n");
    let Action::Ask { ticket, .. } = s.next_action() else {
        panic!("MAIL is asked")
    };
    s.answer(ticket, Decision::AcceptAs("x@example.test".into()));
    assert!(String::from_utf8_lossy(s.output()).starts_with("451 4.3.0"));
}
