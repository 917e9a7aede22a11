//! End to end: the DSN extension (RFC 3461) in and out.
//!
//! Inbound, EHLO lists DSN (seen by swaks), a malformed NOTIFY gets
//! 501 5.5.4 and a message with RET, ENVID, NOTIFY and ORCPT is taken.
//! Outbound, the downstream is Postfix's `smtp-sink`, which offers DSN and
//! writes the arguments of MAIL and RCPT exactly as received into its dump
//! (`X-Mail-Args`, `X-Rcpt-Args`): there the relayed parameters must be
//! the client's, xtext-encoded again. A sink started with `-e` (no ESMTP:
//! the relay falls back to HELO) must get none of them (RFC 3461 §5.2.2:
//! we stay the MTA that reports on the mail).
//!
//! A real Postfix `smtpd` as the downstream then proves the encoding: it
//! refuses DSN parameters it cannot parse, and its success notice for
//! NOTIFY=SUCCESS shows the NOTIFY arrived.
//!
//! The parameters are sent with the raw client: the swaks of the test
//! machine (20201014) has no option for DSN parameters.

mod common;

use common::*;

const SENDER: &str = "sender@client.test";

/// EHLO, then MAIL with RET/ENVID, a RCPT with a malformed NOTIFY (501
/// 5.5.4), a RCPT with NOTIFY/ORCPT, one without; returns the 250 to the
/// final dot.
fn send_with_dsn(server: &Portcullis) -> Reply {
    let (mut client, greeting) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(greeting.code, 220);
    let ehlo = client.cmd("EHLO client.test").unwrap();
    assert!(ehlo.lines.iter().any(|l| l == "DSN"), "{ehlo:?}");
    let mail = client
        .cmd(&format!("MAIL FROM:<{SENDER}> RET=HDRS ENVID=QQ314159+2Bx"))
        .unwrap();
    assert_eq!(mail.code, 250, "{mail:?}");
    let bad = client.cmd("RCPT TO:<u@example.test> NOTIFY=NEVER,DELAY").unwrap();
    assert_eq!(bad.code, 501, "{bad:?}");
    assert_eq!(bad.text(), "5.5.4 Bad NOTIFY parameter syntax: NEVER must stand alone");
    let rcpt = client
        .cmd("RCPT TO:<u@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bu@example.test")
        .unwrap();
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    assert_eq!(client.cmd("RCPT TO:<v@example.test>").unwrap().code, 250);
    assert_eq!(client.cmd("DATA").unwrap().code, 354);
    client.send(b"Subject: dsn\r\n\r\nhello\r\n.\r\n").unwrap();
    let queued = client.read_reply().unwrap();
    assert_eq!(queued.code, 250, "{queued:?}");
    queued
}

#[test]
fn ehlo_lists_dsn_to_swaks() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).start();
    let result = Swaks::new(server.addr()).arg("--quit-after").arg("EHLO").run();
    assert!(
        result.output.stdout.contains("<-  250-DSN") || result.output.stdout.contains("<-  250 DSN"),
        "{}",
        result.transcript()
    );
}

#[test]
fn dsn_parameters_are_relayed_to_a_downstream_that_offers_dsn() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).start();
    send_with_dsn(&server);
    let messages = sink.wait_for_messages(1, WAIT);
    let message = &messages[0];
    assert_eq!(message.recipients(), ["u@example.test", "v@example.test"]);
    let mail_args = &message.mail_args;
    assert!(mail_args.starts_with(&format!("<{SENDER}>")), "{mail_args}");
    assert!(mail_args.contains(" RET=HDRS ENVID=QQ314159+2Bx"), "{mail_args}");
    assert_eq!(
        message.rcpt_args,
        [
            "<u@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bu@example.test",
            "<v@example.test>"
        ]
    );
}

#[test]
fn a_downstream_without_dsn_gets_no_dsn_parameters() {
    let sink = Sink::builder().arg("-e").start(); // -e: no ESMTP announced, so no DSN
    let server = Portcullis::builder().route("*", &sink).start();
    send_with_dsn(&server);
    let messages = sink.wait_for_messages(1, WAIT);
    let message = &messages[0];
    assert_eq!(message.mail_args.trim(), format!("<{SENDER}>"));
    assert_eq!(message.rcpt_args, ["<u@example.test>", "<v@example.test>"]);
}

/// A real Postfix smtpd downstream checks what we relay: it refuses DSN
/// parameters it cannot parse (501 5.5.4), so both recipients delivered
/// (to its `discard:` transport) mean it took RET, ENVID, NOTIFY and ORCPT
/// as we encoded them; the success notice it sends for NOTIFY=SUCCESS
/// shows that NOTIFY arrived.
#[test]
fn a_real_postfix_smtpd_takes_the_relayed_dsn_parameters() {
    let pf = PostfixSmtpd::start(&["example.test"], &["u@example.test", "v@example.test"]);
    let server = Portcullis::builder().route_hosts("*", &[pf.host_port().as_str()]).start();
    send_with_dsn(&server);
    let sent = |to: &str| pf.log().lines().any(|l| l.contains(&format!("to=<{to}>")) && l.contains("status=sent"));
    assert!(wait_until(WAIT, || sent("u@example.test") && sent("v@example.test")), "{}", pf.log());
    let notice = "sender delivery status notification";
    assert!(wait_until(WAIT, || pf.log().contains(notice)), "no success DSN for NOTIFY=SUCCESS\n{}", pf.log());
}
