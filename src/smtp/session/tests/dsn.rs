//! DSN (RFC 3461) transcripts against the pure session: DSN is offered
//! after EHLO; RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT are taken, each
//! malformed form gets 501 5.5.4, and what was given reaches the envelope
//! handed to the spool. After HELO they are unknown parameters (555).

use super::*;
use crate::message::Envelope;
use crate::smtp::dsn::{Dsn, Notify, RecipientDsn, Ret};

/// Like `run`, but returns the envelopes handed to the spool.
fn talk(s: &mut Session, input: &str) -> (String, Vec<Envelope>) {
    s.feed(input.as_bytes());
    let (mut asked, mut stored) = (Vec::new(), Vec::new());
    loop {
        match s.next_action() {
            Action::Read | Action::Close => break,
            Action::Ask { ticket, question } => asked.push((ticket, decide(&question))),
            Action::AwaitAnswers => {
                for (ticket, decision) in asked.drain(..) {
                    s.answer(ticket, decision);
                }
            }
            Action::Store(message) => {
                stored.push(message.envelope);
                s.stored(Ok(QueueId("Q1".into())));
            }
            Action::StartTls => unreachable!("no STARTTLS here"),
        }
    }
    let out = String::from_utf8(s.output().to_vec()).unwrap();
    let n = s.output().len();
    s.consume_output(n);
    (out, stored)
}

fn ehlo() -> Session {
    let mut s = session();
    let (out, _) = talk(&mut s, "EHLO client.test\r\n");
    assert!(out.contains("250-CHUNKING\r\n250 DSN\r\n"), "DSN is offered: {out}");
    s
}

#[test]
fn dsn_parameters_reach_the_envelope() {
    let mut s = ehlo();
    let (out, stored) = talk(
        &mut s,
        "MAIL FROM:<a@sender.test> RET=HDRS ENVID=QQ314159+2Bx\r\n\
         RCPT TO:<u@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bu@example.test\r\n\
         RCPT TO:<v@example.test>\r\n\
         RCPT TO:<w@example.test> notify=never\r\n\
         DATA\r\nhi\r\n.\r\n",
    );
    assert_eq!(
        out,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q1\r\n"
    );
    let [envelope] = &stored[..] else { panic!("{stored:?}") };
    assert_eq!(
        envelope.dsn,
        Dsn {
            ret: Some(Ret::Headers),
            envid: Some("QQ314159+x".into())
        }
    );
    let notify_u = Notify::On {
        success: true,
        failure: true,
        delay: false,
    };
    assert_eq!(
        envelope.recipient_dsn,
        [
            RecipientDsn {
                notify: notify_u,
                orcpt: Some(("rfc822".into(), "orig+u@example.test".into()))
            },
            RecipientDsn::default(),
            RecipientDsn {
                notify: Notify::Never,
                orcpt: None
            },
        ]
    );
    assert_eq!(envelope.rcpt_dsn(1), RecipientDsn::default());
}

#[test]
fn without_dsn_parameters_the_envelope_keeps_the_defaults_and_no_list() {
    let mut s = ehlo();
    let (_, stored) = talk(
        &mut s,
        "MAIL FROM:<a@sender.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nhi\r\n.\r\n",
    );
    assert_eq!((&stored[0].dsn, stored[0].recipient_dsn.len()), (&Dsn::default(), 0));
    assert_eq!(stored[0].rcpt_dsn(0), RecipientDsn::default());
}

/// Recipients answered out of order keep their parameters beside them.
#[test]
fn parameters_follow_their_recipient_whatever_the_answer_order() {
    let mut s = ehlo();
    s.feed(b"MAIL FROM:<a@sender.test>\r\n");
    let Action::Ask { ticket, .. } = s.next_action() else {
        panic!("MAIL asked")
    };
    s.answer(ticket, Decision::Accept);
    s.feed(b"RCPT TO:<u@example.test> NOTIFY=DELAY\r\nRCPT TO:<v@example.test> NOTIFY=NEVER\r\n");
    let mut tickets = Vec::new();
    while let Action::Ask { ticket, .. } = s.next_action() {
        tickets.push(ticket);
    }
    for ticket in tickets.into_iter().rev() {
        s.answer(ticket, Decision::Accept);
    }
    let (_, stored) = talk(&mut s, "DATA\r\nhi\r\n.\r\n");
    let notify: Vec<Notify> = stored[0].recipient_dsn.iter().map(|r| r.notify).collect();
    assert_eq!(stored[0].recipients, ["u@example.test", "v@example.test"]);
    assert_eq!(
        notify,
        [
            Notify::On {
                success: false,
                failure: false,
                delay: true
            },
            Notify::Never
        ]
    );
}

#[test]
fn malformed_mail_parameters_get_501_5_5_4() {
    for (params, reply) in [
        ("RET=ALL", "501 5.5.4 Bad RET parameter syntax: FULL or HDRS expected"),
        ("RET", "501 5.5.4 Bad RET parameter syntax: a value is required"),
        ("RET=FULL RET=HDRS", "501 5.5.4 Bad RET parameter syntax: given twice"),
        ("ENVID=a=b", "501 5.5.4 Bad ENVID parameter syntax: not xtext"),
        (
            "ENVID=+0D+0A",
            "501 5.5.4 Bad ENVID parameter syntax: not printable US-ASCII",
        ),
        ("ENVID=x ENVID=y", "501 5.5.4 Bad ENVID parameter syntax: given twice"),
    ] {
        let mut s = ehlo();
        let (out, _) = talk(&mut s, &format!("MAIL FROM:<a@sender.test> {params}\r\n"));
        assert_eq!(out, format!("{reply}\r\n"), "{params}");
    }
    let mut s = ehlo();
    let long = format!("MAIL FROM:<a@sender.test> ENVID={}\r\n", "e".repeat(101));
    assert_eq!(
        talk(&mut s, &long).0,
        "501 5.5.4 Bad ENVID parameter syntax: longer than 100 characters\r\n"
    );
}

#[test]
fn malformed_rcpt_parameters_get_501_5_5_4_and_the_transaction_goes_on() {
    for (params, reply) in [
        (
            "NOTIFY=NEVER,FAILURE",
            "501 5.5.4 Bad NOTIFY parameter syntax: NEVER must stand alone",
        ),
        (
            "NOTIFY=FAILURE,FAILURE",
            "501 5.5.4 Bad NOTIFY parameter syntax: a keyword is repeated",
        ),
        (
            "NOTIFY=SOMETIMES",
            "501 5.5.4 Bad NOTIFY parameter syntax: NEVER or SUCCESS, FAILURE, DELAY expected",
        ),
        ("NOTIFY=", "501 5.5.4 Bad NOTIFY parameter syntax: a value is required"),
        (
            "NOTIFY=DELAY NOTIFY=DELAY",
            "501 5.5.4 Bad NOTIFY parameter syntax: given twice",
        ),
        (
            "ORCPT=u@example.test",
            "501 5.5.4 Bad ORCPT parameter syntax: addr-type;address expected",
        ),
        (
            "ORCPT=rfc(822);u@example.test",
            "501 5.5.4 Bad ORCPT parameter syntax: the addr-type is not an atom",
        ),
        (
            "ORCPT=rfc822;",
            "501 5.5.4 Bad ORCPT parameter syntax: the address is empty",
        ),
        (
            "ORCPT=rfc822;u+2x@example.test",
            "501 5.5.4 Bad ORCPT parameter syntax: the address is not xtext",
        ),
        (
            "ORCPT=rfc822;u+0D+0AX:y",
            "501 5.5.4 Bad ORCPT parameter syntax: control characters in the address",
        ),
        (
            "ORCPT=rfc822;a ORCPT=rfc822;a",
            "501 5.5.4 Bad ORCPT parameter syntax: given twice",
        ),
    ] {
        let mut s = ehlo();
        let (out, _) = talk(
            &mut s,
            &format!("MAIL FROM:<a@sender.test>\r\nRCPT TO:<u@example.test> {params}\r\n"),
        );
        assert_eq!(out, format!("250 2.1.0 Ok\r\n{reply}\r\n"), "{params}");
        // The refused RCPT did not end the transaction.
        assert_eq!(
            talk(&mut s, "RCPT TO:<u@example.test>\r\n").0,
            "250 2.1.5 Ok\r\n",
            "{params}"
        );
    }
}

#[test]
fn misplaced_and_unknown_parameters_get_555() {
    let mut s = ehlo();
    let (out, _) = talk(
        &mut s,
        "MAIL FROM:<a@sender.test> NOTIFY=NEVER\r\nMAIL FROM:<a@sender.test>\r\n",
    );
    assert_eq!(
        out, "555 5.5.4 Unsupported parameter\r\n250 2.1.0 Ok\r\n",
        "NOTIFY belongs to RCPT"
    );
    let (out, _) = talk(
        &mut s,
        "RCPT TO:<u@example.test> RET=FULL\r\nRCPT TO:<u@example.test> XDSN=1\r\n",
    );
    assert_eq!(
        out,
        "555 5.5.4 Unsupported parameter\r\n555 5.5.4 Unsupported parameter\r\n"
    );
}

#[test]
fn after_helo_dsn_is_neither_offered_nor_taken() {
    let mut s = session();
    let (out, _) = talk(&mut s, "HELO client.test\r\n");
    assert_eq!(out, "220 mx.example.test ESMTP Portcullis\r\n250 mx.example.test\r\n");
    let (out, _) = talk(
        &mut s,
        "MAIL FROM:<a@sender.test> RET=FULL\r\nMAIL FROM:<a@sender.test>\r\n",
    );
    assert_eq!(out, "555 5.5.4 Unsupported parameter\r\n250 2.1.0 Ok\r\n");
    let (out, _) = talk(
        &mut s,
        "RCPT TO:<u@example.test> NOTIFY=NEVER\r\nRCPT TO:<u@example.test>\r\n",
    );
    assert_eq!(out, "555 5.5.4 Unsupported parameter\r\n250 2.1.5 Ok\r\n");
}
