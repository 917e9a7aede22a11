//! Transcripts against the pure probe client: "S:" is what the downstream
//! sends (`s`), "C:" what the prober must have written before it reads
//! again (`c`).

use super::*;
use crate::limits::{CLIENT_REPLY_LINES_MAX, CLIENT_REPLY_LINE_BYTES_MAX};
use RcptAnswer::{MailRefused, Rcpt};

const ESMTP_PIPELINING: &str =
    "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
const ESMTP_LOCKSTEP: &str = "250-mx.test\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";

/// Everything the prober wrote since the last call.
fn c(prober: &mut Prober) -> String {
    let out = String::from_utf8(prober.output().to_vec()).unwrap();
    prober.consume_output(prober.output().len());
    out
}

fn s(prober: &mut Prober, bytes: &str) {
    prober.feed(bytes.as_bytes());
}

fn connected(ehlo_reply: &str) -> Prober {
    let mut prober = Prober::new("probe.test");
    assert_eq!(prober.next_action(), ProbeAction::Read(Wait::Greeting));
    s(&mut prober, "220 mx.test ESMTP\r\n");
    assert_eq!(c(&mut prober), "EHLO probe.test\r\n");
    assert_eq!(prober.next_action(), ProbeAction::Read(Wait::Command));
    s(&mut prober, ehlo_reply);
    assert_eq!(prober.next_action(), ProbeAction::Ready);
    assert!(prober.is_reusable());
    prober
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|r| r.to_string()).collect()
}

fn reply(code: u16, enhanced: &str, text: &str) -> Reply {
    Reply::new(code, enhanced, text)
}

fn failed(prober: &mut Prober) -> (Stage, Option<Reply>, String) {
    match prober.next_action() {
        ProbeAction::Failed { stage, reply, why } => (stage, reply, why),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn pipelined_batch_is_one_write_and_answers_come_in_order() {
    let mut p = connected(ESMTP_PIPELINING);
    assert!(p.pipelining());
    p.probe("", &rcpts(&["a@dst.test", "b@dst.test", "c@dst.test"]));
    assert_eq!(
        c(&mut p),
        "MAIL FROM:<>\r\nRCPT TO:<a@dst.test>\r\nRCPT TO:<b@dst.test>\r\nRCPT TO:<c@dst.test>\r\n"
    );
    assert!(p.is_stale(), "nothing answered yet");
    s(
        &mut p,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <b@dst.test>: unknown\r\n",
    );
    assert_eq!(p.next_action(), ProbeAction::Read(Wait::Command));
    assert_eq!(p.awaiting(), "the reply to RCPT");
    s(&mut p, "450 4.2.1 try later\r\n");
    assert_eq!(
        p.next_action(),
        ProbeAction::Answered(vec![
            Rcpt(reply(250, "2.1.5", "Ok")),
            Rcpt(reply(550, "5.1.1", "<b@dst.test>: unknown")),
            Rcpt(reply(450, "4.2.1", "try later")),
        ])
    );
    assert_eq!(p.next_action(), ProbeAction::Ready);
    assert!(p.in_transaction());
    assert_eq!(p.rcpts_in_transaction(), 3);
    assert!(!p.is_stale());
    assert_eq!(c(&mut p), "", "never DATA, no RSET on its own");
}

#[test]
fn the_open_transaction_takes_the_next_batch_without_mail() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("probe@us.test", &rcpts(&["a@dst.test"]));
    assert_eq!(
        c(&mut p),
        "MAIL FROM:<probe@us.test>\r\nRCPT TO:<a@dst.test>\r\n"
    );
    s(&mut p, "250 Ok\r\n250 Ok\r\n");
    assert!(matches!(p.next_action(), ProbeAction::Answered(a) if a.len() == 1));
    p.probe("probe@us.test", &rcpts(&["b@dst.test", "c@dst.test"]));
    assert_eq!(
        c(&mut p),
        "RCPT TO:<b@dst.test>\r\nRCPT TO:<c@dst.test>\r\n"
    );
    s(&mut p, "250 Ok\r\n250 Ok\r\n");
    assert!(matches!(p.next_action(), ProbeAction::Answered(a) if a.len() == 2));
    assert_eq!(p.rcpts_in_transaction(), 3);
}

#[test]
fn lock_step_sends_one_command_per_reply() {
    let mut p = connected(ESMTP_LOCKSTEP);
    assert!(!p.pipelining());
    p.probe("", &rcpts(&["a@dst.test", "b@dst.test"]));
    assert_eq!(c(&mut p), "MAIL FROM:<>\r\n");
    assert_eq!(p.awaiting(), "the reply to MAIL");
    s(&mut p, "250 2.1.0 Ok\r\n");
    assert_eq!(c(&mut p), "RCPT TO:<a@dst.test>\r\n");
    assert_eq!(p.next_action(), ProbeAction::Read(Wait::Command));
    s(&mut p, "250 2.1.5 Ok\r\n");
    assert_eq!(c(&mut p), "RCPT TO:<b@dst.test>\r\n");
    s(&mut p, "550 5.1.1 unknown\r\n");
    assert_eq!(c(&mut p), "");
    assert_eq!(
        p.next_action(),
        ProbeAction::Answered(vec![
            Rcpt(reply(250, "2.1.5", "Ok")),
            Rcpt(reply(550, "5.1.1", "unknown")),
        ])
    );
    assert!(p.is_reusable());
}

#[test]
fn multi_line_replies_and_replies_split_across_reads() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test", "b@dst.test"]));
    c(&mut p);
    s(
        &mut p,
        "250 Ok\r\n550-5.1.1 The email account that you tried\r\n550-5.1.1 to reach does",
    );
    assert_eq!(p.next_action(), ProbeAction::Read(Wait::Command));
    s(&mut p, " not exist.\r\n550 5.1.1 Please check.\r\n25");
    assert_eq!(p.next_action(), ProbeAction::Read(Wait::Command));
    s(&mut p, "0-first\r\n250 second\r\n");
    let ProbeAction::Answered(answers) = p.next_action() else {
        panic!("not answered")
    };
    let Rcpt(unknown) = &answers[0] else {
        panic!("{answers:?}")
    };
    assert_eq!(unknown.enhanced, "5.1.1");
    assert_eq!(
        unknown.lines,
        vec![
            "The email account that you tried",
            "to reach does not exist.",
            "Please check."
        ]
    );
    assert_eq!(
        answers[1],
        Rcpt(Reply {
            code: 250,
            enhanced: String::new(),
            lines: vec!["first".into(), "second".into()]
        })
    );
}

#[test]
fn mail_refused_without_pipelining_sends_no_rcpt() {
    let mut p = connected(ESMTP_LOCKSTEP);
    p.probe("", &rcpts(&["a@dst.test", "b@dst.test"]));
    assert_eq!(c(&mut p), "MAIL FROM:<>\r\n");
    s(&mut p, "550 5.7.1 Null sender refused\r\n");
    let refusal = reply(550, "5.7.1", "Null sender refused");
    assert_eq!(
        p.next_action(),
        ProbeAction::Answered(vec![MailRefused(refusal.clone()), MailRefused(refusal)])
    );
    assert_eq!(
        c(&mut p),
        "",
        "no RCPT after a refused MAIL, no RSET either"
    );
    assert!(!p.in_transaction());
    assert!(p.is_reusable());
    // The next batch tries MAIL again.
    p.probe("", &rcpts(&["c@dst.test"]));
    assert_eq!(c(&mut p), "MAIL FROM:<>\r\n");
}

#[test]
fn mail_refused_with_pipelining_drops_the_rcpt_replies() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test", "b@dst.test"]));
    c(&mut p);
    s(&mut p, "451 4.3.0 Try again\r\n503 5.5.1 need MAIL\r\n");
    assert_eq!(
        p.next_action(),
        ProbeAction::Read(Wait::Command),
        "one RCPT reply still due"
    );
    s(&mut p, "503 5.5.1 need MAIL\r\n");
    let refusal = reply(451, "4.3.0", "Try again");
    assert_eq!(
        p.next_action(),
        ProbeAction::Answered(vec![MailRefused(refusal.clone()), MailRefused(refusal)])
    );
    assert!(!p.in_transaction());
    assert_eq!(p.rcpts_in_transaction(), 0);
    assert!(p.is_reusable());
}

#[test]
fn rset_ends_the_transaction_and_the_next_batch_opens_a_new_one() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test"]));
    c(&mut p);
    s(&mut p, "250 Ok\r\n250 Ok\r\n");
    p.next_action();
    p.rset();
    assert_eq!(c(&mut p), "RSET\r\n");
    assert_eq!(p.awaiting(), "the reply to RSET");
    assert!(!p.is_reusable());
    s(&mut p, "250 2.0.0 Ok\r\n");
    assert_eq!(p.next_action(), ProbeAction::Ready);
    assert!(!p.in_transaction());
    assert_eq!(p.rcpts_in_transaction(), 0);
    p.probe("", &rcpts(&["b@dst.test"]));
    assert_eq!(c(&mut p), "MAIL FROM:<>\r\nRCPT TO:<b@dst.test>\r\n");
}

#[test]
fn rset_without_a_transaction_sends_nothing() {
    let mut p = connected(ESMTP_PIPELINING);
    p.rset();
    assert_eq!(c(&mut p), "");
    assert_eq!(p.next_action(), ProbeAction::Ready);
}

#[test]
fn refused_rset_kills_the_connection() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test"]));
    c(&mut p);
    s(&mut p, "250 Ok\r\n250 Ok\r\n");
    p.next_action();
    p.rset();
    s(&mut p, "500 what\r\n");
    let (_, reply, why) = failed(&mut p);
    assert_eq!(reply.map(|r| r.code), Some(500));
    assert!(why.contains("RSET"), "{why}");
    assert!(!p.is_reusable());
}

#[test]
fn helo_after_a_permanent_ehlo_refusal_and_no_pipelining() {
    let mut p = Prober::new("probe.test");
    s(&mut p, "220 old.test SMTP\r\n");
    assert_eq!(c(&mut p), "EHLO probe.test\r\n");
    s(&mut p, "502 5.5.2 What?\r\n");
    assert_eq!(c(&mut p), "HELO probe.test\r\n");
    assert_eq!(p.awaiting(), "the reply to HELO");
    s(&mut p, "250 old.test\r\n");
    assert_eq!(p.next_action(), ProbeAction::Ready);
    assert!(!p.pipelining());
}

#[test]
fn ehlo_and_helo_refused_fail_at_hello() {
    let mut p = Prober::new("probe.test");
    s(&mut p, "220 old.test SMTP\r\n");
    s(&mut p, "500 no\r\n");
    assert_eq!(c(&mut p), "EHLO probe.test\r\nHELO probe.test\r\n");
    s(&mut p, "550 5.7.1 go away\r\n");
    assert_eq!(
        failed(&mut p),
        (
            Stage::Hello,
            Some(reply(550, "5.7.1", "go away")),
            "downstream refused EHLO and HELO: 550 5.7.1 go away".into()
        )
    );
    // A 4xx to EHLO is not "does not know EHLO": no HELO.
    let mut p = Prober::new("probe.test");
    s(&mut p, "220 mx.test\r\n450 busy\r\n");
    assert_eq!(c(&mut p), "EHLO probe.test\r\n");
    assert_eq!(failed(&mut p).0, Stage::Hello);
}

#[test]
fn refused_greeting_fails_at_greeting_with_the_reply() {
    for greeting in ["554 5.7.1 no service\r\n", "421 4.3.2 shutting down\r\n"] {
        let mut p = Prober::new("probe.test");
        s(&mut p, greeting);
        let (stage, reply, _) = failed(&mut p);
        assert_eq!(stage, Stage::Greeting);
        assert!(reply.is_some());
        assert_eq!(c(&mut p), "", "no EHLO after a refusal");
    }
}

#[test]
fn a_421_mid_batch_fails_and_keeps_the_answers_so_far() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test", "b@dst.test", "c@dst.test"]));
    c(&mut p);
    s(
        &mut p,
        "250 Ok\r\n250 2.1.5 Ok\r\n421 4.4.2 idle too long\r\n",
    );
    let (stage, refusal, why) = failed(&mut p);
    assert_eq!(stage, Stage::Rcpt);
    assert_eq!(refusal, Some(reply_421()));
    assert!(why.contains("closing"), "{why}");
    assert_eq!(
        p.answered_so_far(),
        &[Some(Rcpt(reply(250, "2.1.5", "Ok"))), None, None]
    );
    assert!(!p.is_stale(), "the downstream answered part of it");
    assert!(!p.is_reusable());
}

fn reply_421() -> Reply {
    reply(421, "4.4.2", "idle too long")
}

#[test]
fn a_leading_421_makes_the_batch_stale() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test"]));
    c(&mut p);
    s(&mut p, "421 4.4.2 idle too long\r\n");
    let (stage, reply, _) = failed(&mut p);
    assert_eq!((stage, reply), (Stage::MailFrom, Some(reply_421())));
    assert!(
        p.is_stale(),
        "nothing of the batch was answered: safe to repeat"
    );
    assert_eq!(p.answered_so_far(), &[None]);
}

#[test]
fn a_lost_connection_mid_batch_names_the_stage_awaited() {
    let mut p = connected(ESMTP_LOCKSTEP);
    p.probe("", &rcpts(&["a@dst.test", "b@dst.test"]));
    s(&mut p, "250 Ok\r\n250 Ok\r\n");
    assert_eq!(p.awaiting(), "the reply to RCPT");
    p.lost("downstream timed out waiting for the reply to RCPT");
    let (stage, refusal, why) = failed(&mut p);
    assert_eq!((stage, refusal), (Stage::Rcpt, None));
    assert_eq!(why, "downstream timed out waiting for the reply to RCPT");
    assert_eq!(
        p.answered_so_far(),
        &[Some(Rcpt(reply(250, "", "Ok"))), None]
    );
    assert!(!p.is_stale());
    // Nothing fed after death changes it.
    s(&mut p, "250 late\r\n");
    assert_eq!(failed(&mut p).0, Stage::Rcpt);
}

#[test]
fn garbage_is_a_protocol_error() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test"]));
    c(&mut p);
    s(&mut p, "250 Ok\r\nHTTP/1.1 400 Bad Request\r\n");
    let (stage, reply, why) = failed(&mut p);
    assert_eq!((stage, reply), (Stage::Rcpt, None));
    assert!(
        why.starts_with("downstream protocol error: malformed reply line"),
        "{why}"
    );
    assert!(!p.is_reusable() && !p.is_stale());
}

#[test]
fn endless_continuation_lines_end_in_a_failure() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test"]));
    c(&mut p);
    s(&mut p, "250 Ok\r\n");
    for _ in 0..=CLIENT_REPLY_LINES_MAX {
        s(&mut p, "250-still going\r\n");
    }
    let (stage, _, why) = failed(&mut p);
    assert_eq!(stage, Stage::Rcpt);
    assert!(why.contains("lines"), "{why}");
}

#[test]
fn an_over_long_line_ends_in_a_failure() {
    let mut p = Prober::new("probe.test");
    s(&mut p, &"2".repeat(CLIENT_REPLY_LINE_BYTES_MAX));
    let (stage, _, why) = failed(&mut p);
    assert_eq!(stage, Stage::Greeting);
    assert!(why.contains("longer than"), "{why}");
}

#[test]
fn a_1xx_or_3xx_to_rcpt_is_a_broken_server() {
    // 1xx is not an SMTP reply at all (RFC 5321 §4.2.1): garbage.
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test"]));
    c(&mut p);
    s(&mut p, "250 Ok\r\n150 go on\r\n");
    let (stage, reply, why) = failed(&mut p);
    assert_eq!((stage, reply), (Stage::Rcpt, None));
    assert!(why.contains("malformed"), "{why}");
    // 3xx parses, but no RCPT may get one: the server may be in DATA now.
    let mut p = connected(ESMTP_LOCKSTEP);
    p.probe("", &rcpts(&["a@dst.test", "b@dst.test"]));
    s(&mut p, "250 Ok\r\n354 go ahead\r\n");
    let (stage, reply, why) = failed(&mut p);
    assert_eq!((stage, reply.map(|r| r.code)), (Stage::Rcpt, Some(354)));
    assert_eq!(why, "downstream answered RCPT with 354 go ahead");
    assert_eq!(
        c(&mut p),
        "MAIL FROM:<>\r\nRCPT TO:<a@dst.test>\r\n",
        "b never sent"
    );
    assert_eq!(p.answered_so_far(), &[None, None]);
}

#[test]
fn a_reply_nobody_asked_for_voids_the_batch() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test"]));
    c(&mut p);
    // One reply too many: the answers may be shifted, keep none.
    s(&mut p, "250 Ok\r\n550 5.1.1 unknown\r\n250 Ok\r\n");
    let (_, _, why) = failed(&mut p);
    assert!(why.contains("nobody asked for"), "{why}");
    assert_eq!(p.answered_so_far(), &[None]);
}

#[test]
fn a_421_after_the_last_answer_keeps_the_answers() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &rcpts(&["a@dst.test"]));
    c(&mut p);
    s(&mut p, "250 Ok\r\n250 Ok\r\n421 bye\r\n");
    assert_eq!(
        p.next_action(),
        ProbeAction::Answered(vec![Rcpt(reply(250, "", "Ok"))])
    );
    assert!(!p.is_reusable());
    assert!(matches!(p.next_action(), ProbeAction::Failed { .. }));
}

#[test]
fn addresses_that_would_smuggle_commands_are_never_sent() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe(
        "",
        &rcpts(&["a@dst.test", "b@dst.test>\r\nDATA", "c@dst.test"]),
    );
    assert_eq!(
        c(&mut p),
        "MAIL FROM:<>\r\nRCPT TO:<a@dst.test>\r\nRCPT TO:<c@dst.test>\r\n"
    );
    s(&mut p, "250 Ok\r\n250 Ok\r\n250 Ok\r\n");
    let ProbeAction::Answered(answers) = p.next_action() else {
        panic!()
    };
    assert_eq!(answers.len(), 3);
    assert!(matches!(&answers[1], Rcpt(r) if r.code == 501 && r.enhanced == "5.5.4"));
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("x\n@y", &rcpts(&["a@dst.test"]));
    assert_eq!(c(&mut p), "");
    assert!(matches!(&p.next_action(), ProbeAction::Answered(a) if matches!(a[0], MailRefused(_))));
}

#[test]
fn an_empty_batch_is_answered_at_once() {
    let mut p = connected(ESMTP_PIPELINING);
    p.probe("", &[]);
    assert_eq!(c(&mut p), "");
    assert_eq!(p.next_action(), ProbeAction::Answered(vec![]));
    assert_eq!(p.next_action(), ProbeAction::Ready);
}

#[test]
fn quit_is_written_and_the_prober_is_done() {
    let mut p = connected(ESMTP_PIPELINING);
    p.quit();
    assert_eq!(c(&mut p), "QUIT\r\n");
    assert!(!p.is_reusable());
    assert_eq!(failed(&mut p).0, Stage::Connect);
}

#[test]
fn a_hundred_pipelined_rcpts_are_one_write_and_a_hundred_answers() {
    let mut p = connected(ESMTP_PIPELINING);
    let list: Vec<String> = (0..100).map(|i| format!("u{i}@dst.test")).collect();
    p.probe("", &list);
    let written = c(&mut p);
    assert_eq!(written.matches("RCPT TO:").count(), 100);
    let mut replies = String::from("250 Ok\r\n");
    for i in 0..100 {
        replies.push_str(&format!("250 2.1.5 u{i}\r\n"));
    }
    s(&mut p, &replies);
    let ProbeAction::Answered(answers) = p.next_action() else {
        panic!()
    };
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer, &Rcpt(reply(250, "2.1.5", &format!("u{i}"))));
    }
}

#[test]
fn a_batch_larger_than_one_group_goes_out_group_by_group() {
    use crate::limits::CALLAHEAD_PIPELINED_COMMANDS_MAX as GROUP;
    let mut p = connected(ESMTP_PIPELINING);
    let list: Vec<String> = (0..2 * GROUP + 5)
        .map(|i| format!("u{i}@dst.test"))
        .collect();
    p.probe("", &list);
    // MAIL and GROUP - 1 RCPTs, nothing more until their replies are in.
    assert_eq!(c(&mut p).lines().count(), GROUP);
    s(&mut p, &"250 Ok\r\n".repeat(GROUP - 1));
    assert_eq!(c(&mut p), "", "one reply of the group still due");
    s(&mut p, "250 Ok\r\n");
    assert_eq!(c(&mut p).lines().count(), GROUP);
    s(&mut p, &"250 Ok\r\n".repeat(GROUP));
    assert_eq!(c(&mut p).lines().count(), 6);
    s(&mut p, &"250 Ok\r\n".repeat(6));
    assert!(matches!(p.next_action(), ProbeAction::Answered(a) if a.len() == 2 * GROUP + 5));
}

#[test]
fn a_mail_refusal_stops_the_groups_not_yet_sent() {
    use crate::limits::CALLAHEAD_PIPELINED_COMMANDS_MAX as GROUP;
    let mut p = connected(ESMTP_PIPELINING);
    let list: Vec<String> = (0..GROUP + 10).map(|i| format!("u{i}@dst.test")).collect();
    p.probe("", &list);
    assert_eq!(c(&mut p).lines().count(), GROUP);
    s(&mut p, "550 5.7.1 no\r\n");
    s(&mut p, &"503 5.5.1 need MAIL\r\n".repeat(GROUP - 1));
    assert_eq!(c(&mut p), "", "the second group is never sent");
    let ProbeAction::Answered(answers) = p.next_action() else {
        panic!()
    };
    assert_eq!(answers.len(), GROUP + 10);
    assert!(answers
        .iter()
        .all(|a| matches!(a, MailRefused(r) if r.code == 550)));
}

// ---- STARTTLS (RFC 3207) ----------------------------------------------------

const ESMTP_STARTTLS: &str = "250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n";

fn greeted(tls: StartTls, ehlo_reply: &str) -> Prober {
    let mut prober = Prober::with_tls("probe.test", tls);
    s(&mut prober, "220 mx.test ESMTP\r\n");
    assert_eq!(c(&mut prober), "EHLO probe.test\r\n");
    s(&mut prober, ehlo_reply);
    prober
}

#[test]
fn starttls_advertised_then_ehlo_again_and_probes_over_tls() {
    let mut p = greeted(StartTls::Required, ESMTP_STARTTLS);
    assert_eq!(c(&mut p), "STARTTLS\r\n");
    assert_eq!(p.next_action(), ProbeAction::Read(Wait::Command));
    s(&mut p, "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(p.next_action(), ProbeAction::StartTls);
    p.tls_started();
    assert!(p.is_encrypted());
    assert!(!p.pipelining(), "clear-text extensions forgotten");
    assert_eq!(c(&mut p), "EHLO probe.test\r\n");
    s(&mut p, ESMTP_LOCKSTEP);
    assert_eq!(p.next_action(), ProbeAction::Ready);
    p.probe("", &rcpts(&["a@dst.test"]));
    assert_eq!(c(&mut p), "MAIL FROM:<>\r\n");
    s(&mut p, "250 2.1.0 Ok\r\n");
    assert_eq!(c(&mut p), "RCPT TO:<a@dst.test>\r\n");
    s(&mut p, "550 5.1.1 User unknown\r\n");
    assert_eq!(p.next_action(), ProbeAction::Answered(vec![Rcpt(reply(550, "5.1.1", "User unknown"))]));
}

#[test]
fn starttls_not_advertised_preferred_probes_in_clear() {
    let mut p = greeted(StartTls::Preferred, ESMTP_PIPELINING);
    assert_eq!(c(&mut p), "");
    assert_eq!(p.next_action(), ProbeAction::Ready);
    assert!(!p.is_encrypted());
}

#[test]
fn starttls_not_advertised_required_fails_at_hello_without_a_reply() {
    let mut p = greeted(StartTls::Required, ESMTP_PIPELINING);
    assert_eq!(c(&mut p), "QUIT\r\n");
    let (stage, reply, why) = failed(&mut p);
    assert_eq!((stage, reply), (Stage::Hello, None));
    assert!(why.contains("does not offer STARTTLS"), "{why}");
    assert!(p.tls_refused());
}

#[test]
fn starttls_refused_preferred_stays_usable_in_clear() {
    let mut p = greeted(StartTls::Preferred, ESMTP_STARTTLS);
    assert_eq!(c(&mut p), "STARTTLS\r\n");
    s(&mut p, "454 4.7.0 TLS not available\r\n");
    assert_eq!(p.next_action(), ProbeAction::Ready);
    assert!(p.is_reusable() && !p.is_encrypted());
}

#[test]
fn starttls_refused_required_fails_at_hello_with_the_reply() {
    let mut p = greeted(StartTls::Required, ESMTP_STARTTLS);
    c(&mut p);
    s(&mut p, "454 4.7.0 TLS not available\r\n");
    assert_eq!(c(&mut p), "QUIT\r\n");
    let (stage, reply, why) = failed(&mut p);
    assert_eq!(stage, Stage::Hello);
    assert_eq!(reply, Some(reply_454()));
    assert!(why.contains("refused STARTTLS"), "{why}");
    // Nothing about the recipient: a downstream failure, never cached.
    let verdict = crate::callahead::verdict::of_refusal(stage, reply.unwrap());
    assert!(verdict.is_server_failure() && !verdict.is_cacheable());
}

fn reply_454() -> Reply {
    reply(454, "4.7.0", "TLS not available")
}

#[test]
fn a_failed_handshake_fails_at_hello() {
    let mut p = greeted(StartTls::Required, ESMTP_STARTTLS);
    c(&mut p);
    s(&mut p, "220 Ready\r\n");
    p.tls_failed("received corrupt message");
    let (stage, reply, why) = failed(&mut p);
    assert_eq!((stage, reply), (Stage::Hello, None));
    assert!(why.contains("TLS handshake"), "{why}");
    assert!(p.tls_refused());
}

#[test]
fn bytes_after_the_220_to_starttls_fail_the_probe_connection() {
    let mut p = greeted(StartTls::Preferred, ESMTP_STARTTLS);
    c(&mut p);
    s(&mut p, "220 Ready\r\n250 injected\r\n");
    assert_eq!(failed(&mut p).0, Stage::Hello);
}
