//! Transcripts against the pure client: "S:" is what the downstream sends,
//! "C:" what the client must have written before it reads again.

use super::*;
use super::RecipientOutcome::{Deferred, Delivered, Failed};

const ESMTP_PIPELINING: &str =
    "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
const ESMTP_LOCKSTEP: &str = "250-mx.test\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";

/// Everything the client wrote since the last call.
fn c(client: &mut Client) -> String {
    let out = String::from_utf8(client.output().to_vec()).unwrap();
    let n = client.output().len();
    client.consume_output(n);
    out
}

fn s(client: &mut Client, bytes: &str) {
    client.feed(bytes.as_bytes());
}

fn connected(ehlo_reply: &str) -> Client {
    let mut client = Client::new("relay.test");
    assert_eq!(client.next_action(), Action::Read(Wait::Greeting));
    s(&mut client, "220 mx.test ESMTP\r\n");
    assert_eq!(c(&mut client), "EHLO relay.test\r\n");
    assert_eq!(client.next_action(), Action::Read(Wait::Command));
    s(&mut client, ehlo_reply);
    assert_eq!(client.next_action(), Action::Ready);
    client
}

fn envelope(recipients: &[&str]) -> OutboundEnvelope {
    OutboundEnvelope {
        mail_from: "a@src.test".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        body_type: BodyType::SevenBit,
        smtputf8: false,
        ..Default::default()
    }
}

fn reply(code: u16, enhanced: &str, text: &str) -> Reply {
    Reply::new(code, enhanced, text)
}

#[test]
fn pipelined_transaction_is_one_write_and_replies_in_order() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test", "y@dst.test"]), 10);
    assert_eq!(
        c(&mut client),
        "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@dst.test>\r\nRCPT TO:<y@dst.test>\r\nDATA\r\n"
    );
    assert_eq!(client.next_action(), Action::Read(Wait::Command));
    s(
        &mut client,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n354 go ahead\r\n",
    );
    assert_eq!(client.next_action(), Action::SendBody);
    client.body_sent();
    assert_eq!(client.next_action(), Action::Read(Wait::DataTermination));
    s(&mut client, "250 2.0.0 Ok: queued as 1234\r\n");
    assert_eq!(
        client.next_action(),
        Action::Done(vec![
            Delivered(reply(250, "2.0.0", "Ok: queued as 1234")),
            Failed(reply(550, "5.1.1", "unknown")),
        ])
    );
    assert_eq!(client.next_action(), Action::Ready);
    assert!(client.is_reusable());
    assert_eq!(c(&mut client), "", "no RSET after a finished transaction");
}

#[test]
fn lock_step_transaction_sends_one_command_per_reply() {
    let mut client = connected(ESMTP_LOCKSTEP);
    client.start(&envelope(&["x@dst.test", "y@dst.test"]), 10);
    assert_eq!(c(&mut client), "MAIL FROM:<a@src.test>\r\n");
    s(&mut client, "250 2.1.0 Ok\r\n");
    assert_eq!(c(&mut client), "RCPT TO:<x@dst.test>\r\n");
    s(&mut client, "450 4.2.0 busy\r\n");
    assert_eq!(c(&mut client), "RCPT TO:<y@dst.test>\r\n");
    s(&mut client, "250 2.1.5 Ok\r\n");
    assert_eq!(c(&mut client), "DATA\r\n");
    s(&mut client, "354 go\r\n");
    assert_eq!(client.next_action(), Action::SendBody);
    client.body_sent();
    s(&mut client, "452 4.3.1 full\r\n");
    assert_eq!(
        client.next_action(),
        Action::Done(vec![
            Deferred(reply(450, "4.2.0", "busy")),
            Deferred(reply(452, "4.3.1", "full")),
        ])
    );
    assert!(client.is_reusable());
}

#[test]
fn helo_after_ehlo_refused_with_5xx() {
    let mut client = Client::new("relay.test");
    s(&mut client, "220 old.test\r\n");
    assert_eq!(c(&mut client), "EHLO relay.test\r\n");
    s(&mut client, "502 command not implemented\r\n");
    assert_eq!(c(&mut client), "HELO relay.test\r\n");
    s(&mut client, "250 old.test\r\n");
    assert_eq!(client.next_action(), Action::Ready);
    assert_eq!(client.extensions(), &Extensions::default());
    let mut env = envelope(&["x@dst.test"]);
    env.body_type = BodyType::EightBitMime;
    client.start(&env, 10);
    assert_eq!(
        c(&mut client),
        "MAIL FROM:<a@src.test>\r\n",
        "no BODY= to a HELO server"
    );
}

#[test]
fn greeting_421_and_554_fail_the_connection() {
    for greeting in ["421 4.3.2 busy\r\n", "554 5.7.1 go away\r\n"] {
        let mut client = Client::new("relay.test");
        s(&mut client, greeting);
        assert!(
            matches!(client.next_action(), Action::Failed(r) if r.contains("refused the connection"))
        );
        assert_eq!(c(&mut client), "");
    }
}

#[test]
fn ehlo_4xx_fails_the_connection() {
    let mut client = Client::new("relay.test");
    s(&mut client, "220 mx\r\n");
    s(&mut client, "451 later\r\n");
    assert!(matches!(client.next_action(), Action::Failed(_)));
}

#[test]
fn every_recipient_refused_pipelined_data_354_gets_a_lone_dot() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test"]), 10);
    c(&mut client);
    s(&mut client, "250 Ok\r\n550 5.1.1 no\r\n354 go\r\n");
    assert_eq!(c(&mut client), ".\r\n");
    assert_eq!(client.next_action(), Action::Read(Wait::DataTermination));
    s(&mut client, "554 5.5.1 no valid recipients\r\n");
    assert_eq!(
        client.next_action(),
        Action::Done(vec![Failed(reply(550, "5.1.1", "no"))])
    );
    assert!(client.is_reusable());
}

#[test]
fn every_recipient_refused_pipelined_data_refused_gets_rset() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test", "y@dst.test"]), 10);
    c(&mut client);
    s(
        &mut client,
        "250 Ok\r\n550 5.1.1 no\r\n450 4.1.1 later\r\n554 5.5.1 no valid recipients\r\n",
    );
    assert_eq!(c(&mut client), "RSET\r\n");
    s(&mut client, "250 2.0.0 Ok\r\n");
    assert_eq!(
        client.next_action(),
        Action::Done(vec![
            Failed(reply(550, "5.1.1", "no")),
            Deferred(reply(450, "4.1.1", "later"))
        ])
    );
    assert!(client.is_reusable());
}

#[test]
fn every_recipient_refused_lock_step_sends_rset_not_data() {
    let mut client = connected(ESMTP_LOCKSTEP);
    client.start(&envelope(&["x@dst.test"]), 10);
    assert_eq!(c(&mut client), "MAIL FROM:<a@src.test>\r\n");
    s(&mut client, "250 Ok\r\n");
    c(&mut client);
    s(&mut client, "550 5.1.1 no\r\n");
    assert_eq!(c(&mut client), "RSET\r\n");
    s(&mut client, "250 Ok\r\n");
    assert_eq!(
        client.next_action(),
        Action::Done(vec![Failed(reply(550, "5.1.1", "no"))])
    );
    assert!(client.is_reusable());
}

#[test]
fn mail_refused_decides_every_recipient() {
    // Lock-step: nothing more is sent, no RSET (no transaction was opened).
    let mut client = connected(ESMTP_LOCKSTEP);
    client.start(&envelope(&["x@dst.test", "y@dst.test"]), 10);
    c(&mut client);
    s(&mut client, "451 4.3.0 try later\r\n");
    assert_eq!(c(&mut client), "");
    let later = Deferred(reply(451, "4.3.0", "try later"));
    assert_eq!(
        client.next_action(),
        Action::Done(vec![later.clone(), later])
    );
    assert!(client.is_reusable());

    // Pipelined: the RCPT and DATA replies that follow are read and ignored.
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test"]), 10);
    c(&mut client);
    s(
        &mut client,
        "553 5.1.8 bad sender\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n",
    );
    assert_eq!(c(&mut client), "");
    assert_eq!(
        client.next_action(),
        Action::Done(vec![Failed(reply(553, "5.1.8", "bad sender"))])
    );
    assert!(client.is_reusable());
}

#[test]
fn data_refused_decides_the_accepted_recipients_then_rset() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test", "y@dst.test"]), 10);
    c(&mut client);
    s(
        &mut client,
        "250 Ok\r\n250 Ok\r\n550 5.1.1 no\r\n451 4.3.0 not now\r\n",
    );
    assert_eq!(c(&mut client), "RSET\r\n");
    s(&mut client, "250 Ok\r\n");
    assert_eq!(
        client.next_action(),
        Action::Done(vec![
            Deferred(reply(451, "4.3.0", "not now")),
            Failed(reply(550, "5.1.1", "no"))
        ])
    );
}

#[test]
fn final_dot_5xx_fails_the_accepted_recipients() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test"]), 10);
    c(&mut client);
    s(&mut client, "250 Ok\r\n250 Ok\r\n354 go\r\n");
    client.body_sent();
    s(&mut client, "554 5.6.0 content rejected\r\n");
    assert_eq!(
        client.next_action(),
        Action::Done(vec![Failed(reply(554, "5.6.0", "content rejected"))])
    );
    assert!(client.is_reusable());
}

#[test]
fn rset_refused_makes_the_connection_unusable() {
    let mut client = connected(ESMTP_LOCKSTEP);
    client.start(&envelope(&["x@dst.test"]), 10);
    s(&mut client, "250 Ok\r\n");
    s(&mut client, "550 no\r\n");
    s(&mut client, "500 what\r\n");
    assert!(matches!(client.next_action(), Action::Done(_)));
    assert!(!client.is_reusable());
    assert!(matches!(client.next_action(), Action::Failed(_)));
}

#[test]
fn eight_bit_mime_size_and_smtputf8_parameters() {
    let mut client =
        connected("250-mx\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000\r\n250 SMTPUTF8\r\n");
    let mut env = envelope(&["ü@dst.test"]);
    env.body_type = BodyType::EightBitMime;
    env.smtputf8 = true;
    client.start(&env, 123);
    assert_eq!(
        c(&mut client),
        "MAIL FROM:<a@src.test> BODY=8BITMIME SIZE=123 SMTPUTF8\r\nRCPT TO:<ü@dst.test>\r\nDATA\r\n"
    );
}

#[test]
fn smtputf8_without_downstream_support_fails_without_io() {
    let mut client = connected(ESMTP_PIPELINING);
    let mut env = envelope(&["x@dst.test", "y@dst.test"]);
    env.smtputf8 = true;
    client.start(&env, 10);
    assert_eq!(c(&mut client), "");
    match client.next_action() {
        Action::Done(outcomes) => {
            assert_eq!(outcomes.len(), 2);
            assert!(outcomes
                .iter()
                .all(|o| matches!(o, Failed(r) if r.code == 553 && r.enhanced == "5.6.7")));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.next_action(), Action::Ready);
}

#[test]
fn message_over_the_advertised_size_fails_without_io() {
    let mut client = connected("250-mx\r\n250 SIZE 100\r\n");
    client.start(&envelope(&["x@dst.test"]), 101);
    assert_eq!(c(&mut client), "");
    assert!(
        matches!(client.next_action(), Action::Done(o) if matches!(&o[0], Failed(r) if r.code == 552))
    );
}

#[test]
fn address_with_crlf_is_refused_locally() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test>\r\nRSET"]), 10);
    assert_eq!(c(&mut client), "");
    assert!(
        matches!(client.next_action(), Action::Done(o) if matches!(&o[0], Failed(r) if r.code == 501))
    );
}

#[test]
fn connection_lost_before_any_answer_is_a_transport_failure() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test"]), 10);
    c(&mut client);
    assert!(client.is_stale());
    client.lost("connection reset by downstream");
    assert!(client.is_stale());
    assert_eq!(
        client.next_action(),
        Action::Failed("connection reset by downstream".into())
    );
}

#[test]
fn connection_lost_after_some_answers_defers_the_rest() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test", "y@dst.test"]), 10);
    c(&mut client);
    s(&mut client, "250 Ok\r\n550 5.1.1 no\r\n");
    assert!(!client.is_stale());
    client.lost("timed out waiting for RCPT reply");
    match client.next_action() {
        Action::Done(o) => {
            assert_eq!(o[0], Failed(reply(550, "5.1.1", "no")));
            assert!(matches!(&o[1], Deferred(r) if r.code == 451 && r.enhanced == "4.4.2"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!client.is_reusable());
}

#[test]
fn leading_421_on_a_transaction_marks_a_stale_connection() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test"]), 10);
    s(&mut client, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
    assert!(client.is_stale());
    assert!(matches!(client.next_action(), Action::Failed(r) if r.contains("421")));
}

#[test]
fn a_421_after_answers_defers_the_rest_with_it() {
    let mut client = connected(ESMTP_LOCKSTEP);
    client.start(&envelope(&["x@dst.test", "y@dst.test"]), 10);
    s(&mut client, "250 Ok\r\n");
    s(&mut client, "550 5.1.1 no\r\n");
    s(&mut client, "421 4.3.2 shutting down\r\n");
    assert_eq!(
        client.next_action(),
        Action::Done(vec![
            Failed(reply(550, "5.1.1", "no")),
            Deferred(reply(421, "4.3.2", "shutting down"))
        ])
    );
    assert!(!client.is_reusable());
}

#[test]
fn over_long_reply_is_a_protocol_error() {
    let mut client = Client::new("relay.test");
    let mut endless = String::from("220-");
    endless.push_str(&"x".repeat(crate::limits::CLIENT_REPLY_LINE_BYTES_MAX));
    s(&mut client, &endless);
    assert!(matches!(client.next_action(), Action::Failed(r) if r.contains("protocol error")));

    let mut client = Client::new("relay.test");
    for _ in 0..=crate::limits::CLIENT_REPLY_LINES_MAX {
        s(&mut client, "220-still greeting\r\n");
    }
    assert!(matches!(client.next_action(), Action::Failed(r) if r.contains("protocol error")));
}

#[test]
fn unsolicited_reply_makes_the_connection_unusable() {
    let mut client = connected(ESMTP_PIPELINING);
    s(&mut client, "250 surprise\r\n");
    assert!(matches!(client.next_action(), Action::Failed(_)));
}

#[test]
fn extra_reply_after_the_transaction_keeps_the_outcomes() {
    let mut client = connected(ESMTP_PIPELINING);
    client.start(&envelope(&["x@dst.test"]), 10);
    s(&mut client, "250 Ok\r\n250 Ok\r\n354 go\r\n");
    client.body_sent();
    s(&mut client, "250 Ok\r\n250 extra\r\n");
    assert!(matches!(client.next_action(), Action::Done(o) if matches!(o[0], Delivered(_))));
    assert!(!client.is_reusable());
}

#[test]
fn quit_on_an_idle_connection() {
    let mut client = connected(ESMTP_PIPELINING);
    client.quit();
    assert_eq!(c(&mut client), "QUIT\r\n");
    assert!(!client.is_reusable());
}

#[test]
fn two_transactions_on_one_connection() {
    let mut client = connected(ESMTP_PIPELINING);
    for _ in 0..2 {
        client.start(&envelope(&["x@dst.test"]), 10);
        assert!(c(&mut client).starts_with("MAIL FROM:"));
        s(&mut client, "250 Ok\r\n250 Ok\r\n354 go\r\n");
        client.body_sent();
        s(&mut client, "250 Ok\r\n");
        assert!(matches!(client.next_action(), Action::Done(_)));
        assert_eq!(client.next_action(), Action::Ready);
    }
}

// ---- STARTTLS (RFC 3207) ----------------------------------------------------

const ESMTP_STARTTLS: &str = "250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n";

/// Greeting and EHLO with `tls`; returns the client after the EHLO reply.
fn greeted(tls: StartTls, ehlo_reply: &str) -> Client {
    let mut client = Client::with_tls("relay.test", tls);
    s(&mut client, "220 mx.test ESMTP\r\n");
    assert_eq!(c(&mut client), "EHLO relay.test\r\n");
    s(&mut client, ehlo_reply);
    client
}

#[test]
fn starttls_advertised_handshake_then_ehlo_again_with_fresh_extensions() {
    let mut client = greeted(StartTls::Preferred, ESMTP_STARTTLS);
    assert_eq!(c(&mut client), "STARTTLS\r\n");
    assert_eq!(client.next_action(), Action::Read(Wait::Command));
    assert_eq!(client.awaiting(), "the reply to STARTTLS");
    s(&mut client, "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(client.next_action(), Action::StartTls);
    assert!(!client.is_encrypted());
    client.tls_started();
    assert!(client.is_encrypted());
    assert_eq!(client.extensions(), &Extensions::default(), "what the server offered in clear is forgotten");
    assert_eq!(c(&mut client), "EHLO relay.test\r\n");
    assert_eq!(client.next_action(), Action::Read(Wait::Command));
    // Over TLS the server offers STARTTLS no more (or does: never asked twice).
    s(&mut client, "250-mx.test\r\n250-SIZE 1000\r\n250 STARTTLS\r\n");
    assert_eq!(client.next_action(), Action::Ready);
    assert_eq!(c(&mut client), "");
    assert_eq!(client.extensions().size, Some(1000));
    assert!(!client.extensions().pipelining, "PIPELINING was offered in clear only");
}

#[test]
fn starttls_required_works_the_same_when_offered() {
    let mut client = greeted(StartTls::Required, ESMTP_STARTTLS);
    assert_eq!(c(&mut client), "STARTTLS\r\n");
    s(&mut client, "220 Ready\r\n");
    assert_eq!(client.next_action(), Action::StartTls);
    client.tls_started();
    assert_eq!(c(&mut client), "EHLO relay.test\r\n");
    s(&mut client, ESMTP_PIPELINING);
    assert_eq!(client.next_action(), Action::Ready);
    assert!(!client.tls_refused());
}

#[test]
fn starttls_off_never_asks_even_when_offered() {
    let mut client = greeted(StartTls::Off, ESMTP_STARTTLS);
    assert_eq!(c(&mut client), "");
    assert_eq!(client.next_action(), Action::Ready);
}

#[test]
fn starttls_not_advertised_preferred_goes_on_in_clear() {
    let mut client = greeted(StartTls::Preferred, ESMTP_PIPELINING);
    assert_eq!(c(&mut client), "");
    assert_eq!(client.next_action(), Action::Ready);
    assert!(!client.is_encrypted());
}

#[test]
fn starttls_not_advertised_required_quits_and_fails() {
    let mut client = greeted(StartTls::Required, ESMTP_PIPELINING);
    assert_eq!(c(&mut client), "QUIT\r\n", "nothing of the mail in clear");
    match client.next_action() {
        Action::Failed(why) => assert!(why.contains("does not offer STARTTLS"), "{why}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(client.tls_refused());
}

#[test]
fn starttls_refused_preferred_goes_on_in_clear_on_the_same_connection() {
    let mut client = greeted(StartTls::Preferred, ESMTP_STARTTLS);
    assert_eq!(c(&mut client), "STARTTLS\r\n");
    s(&mut client, "454 4.7.0 TLS not available due to local problem\r\n");
    assert_eq!(client.next_action(), Action::Ready);
    client.start(&envelope(&["x@dst.test"]), 10);
    assert_eq!(c(&mut client), "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@dst.test>\r\nDATA\r\n", "pipelined, in clear");
}

#[test]
fn starttls_refused_required_quits_and_fails() {
    let mut client = greeted(StartTls::Required, ESMTP_STARTTLS);
    assert_eq!(c(&mut client), "STARTTLS\r\n");
    s(&mut client, "454 4.7.0 TLS not available\r\n");
    assert_eq!(c(&mut client), "QUIT\r\n");
    match client.next_action() {
        Action::Failed(why) => assert!(why.contains("refused STARTTLS") && why.contains("454"), "{why}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(client.tls_refused());
}

#[test]
fn bytes_after_the_220_to_starttls_kill_the_connection() {
    let mut client = greeted(StartTls::Preferred, ESMTP_STARTTLS);
    c(&mut client);
    s(&mut client, "220 Ready\r\n250 injected\r\n");
    assert!(matches!(client.next_action(), Action::Failed(_)), "clear text after 220 is never taken into the TLS session");
}

#[test]
fn a_failed_handshake_fails_the_connection_and_flags_required() {
    for (tls, flagged) in [(StartTls::Preferred, false), (StartTls::Required, true)] {
        let mut client = greeted(tls, ESMTP_STARTTLS);
        c(&mut client);
        s(&mut client, "220 Ready\r\n");
        assert_eq!(client.next_action(), Action::StartTls);
        client.tls_failed("invalid peer certificate");
        match client.next_action() {
            Action::Failed(why) => assert!(why.contains("TLS handshake") && why.contains("invalid peer certificate"), "{why}"),
            other => panic!("expected Failed, got {other:?}"),
        }
        assert_eq!(client.tls_refused(), flagged, "{tls:?}");
    }
}

#[test]
fn helo_server_has_no_starttls_so_required_fails() {
    let mut client = greeted(StartTls::Required, "502 5.5.1 EHLO not implemented\r\n");
    assert_eq!(c(&mut client), "HELO relay.test\r\n");
    s(&mut client, "250 mx.test\r\n");
    assert_eq!(c(&mut client), "QUIT\r\n");
    assert!(matches!(client.next_action(), Action::Failed(_)));
    assert!(client.tls_refused());
}

/// An envelope whose sender and first recipient carry DSN parameters
/// (RFC 3461); the second recipient has none.
fn dsn_envelope() -> OutboundEnvelope {
    use crate::smtp::dsn::{Notify, Ret};
    let mut env = envelope(&["x@dst.test", "y@dst.test"]);
    env.dsn = Dsn { ret: Some(Ret::Headers), envid: Some("QQ 31+4".into()) };
    env.recipient_dsn = vec![
        RecipientDsn {
            notify: Notify::On { success: true, failure: true, delay: false },
            orcpt: Some(("rfc822".into(), "orig+x@src.test".into())),
        },
        RecipientDsn::default(),
    ];
    env
}

#[test]
fn dsn_parameters_are_relayed_xtext_encoded_to_a_downstream_that_offers_dsn() {
    let mut client = connected("250-mx.test\r\n250-PIPELINING\r\n250 DSN\r\n");
    assert!(client.extensions().dsn);
    client.start(&dsn_envelope(), 10);
    assert_eq!(
        c(&mut client),
        "MAIL FROM:<a@src.test> RET=HDRS ENVID=QQ+2031+2B4\r\n\
         RCPT TO:<x@dst.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bx@src.test\r\n\
         RCPT TO:<y@dst.test>\r\n\
         DATA\r\n"
    );
}

/// RFC 3461 §5.2.2: a downstream without DSN gets no DSN parameters (they
/// would be 555); we stay the MTA that reports on this mail.
#[test]
fn dsn_parameters_are_left_out_when_the_downstream_does_not_offer_dsn() {
    let mut client = connected(ESMTP_PIPELINING);
    assert!(!client.extensions().dsn);
    client.start(&dsn_envelope(), 10);
    assert_eq!(
        c(&mut client),
        "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@dst.test>\r\nRCPT TO:<y@dst.test>\r\nDATA\r\n"
    );
}

#[test]
fn dsn_in_lock_step_rides_on_each_command() {
    let mut client = connected("250-mx.test\r\n250 DSN\r\n");
    client.start(&dsn_envelope(), 10);
    assert_eq!(c(&mut client), "MAIL FROM:<a@src.test> RET=HDRS ENVID=QQ+2031+2B4\r\n");
    s(&mut client, "250 2.1.0 Ok\r\n");
    assert_eq!(c(&mut client), "RCPT TO:<x@dst.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bx@src.test\r\n");
    s(&mut client, "250 2.1.5 Ok\r\n");
    assert_eq!(c(&mut client), "RCPT TO:<y@dst.test>\r\n");
}
