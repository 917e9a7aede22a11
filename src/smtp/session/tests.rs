//! Unit tests of the machine itself: relay guard end to end, events,
//! phases, buffer bounds. Conversations live in tests/transcripts/.

use super::*;
use crate::message::domain_of;

fn config() -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        hostname: "mx.example.test".into(),
        message_bytes_max: 1000,
        recipients_max: 3,
        messages_per_connection_max: 10,
        postmaster_domain: "example.test".into(),
    })
}

fn session() -> Session {
    let peer = Peer {
        connection_id: "C1".into(),
        addr: "192.0.2.10:40000".parse().unwrap(),
        local: "192.0.2.1:25".parse().unwrap(),
    };
    Session::new(config(), peer)
}

/// Feed `input`, answer checks with `verdict` (recording the mailboxes) and
/// stores with Ok; return the output text and whether the session closed.
fn run(s: &mut Session, input: &[u8], checks: &mut Vec<String>) -> (String, bool) {
    s.feed(input);
    let closed = loop {
        match s.next_action() {
            Action::Read => break false,
            Action::Close => break true,
            Action::CheckRecipient { mailbox, .. } => {
                let verdict = if domain_of(&mailbox) == "example.test" {
                    Verdict::Accept
                } else {
                    Verdict::Refuse(Reply::new(550, "5.7.1", "Relaying denied"))
                };
                checks.push(mailbox);
                s.recipient_verdict(verdict);
            }
            Action::Store(_) => s.stored(Ok(QueueId("Q1".into()))),
        }
    };
    let out = String::from_utf8(s.output().to_vec()).unwrap();
    let n = s.output().len();
    s.consume_output(n);
    (out, closed)
}

fn ready() -> Session {
    let mut s = session();
    let (out, _) = run(&mut s, b"EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\n", &mut Vec::new());
    assert!(out.ends_with("250 2.1.0 Ok\r\n"), "{out}");
    s
}

/// Under the default policy (accept only example.test), no smuggling form is
/// accepted, and whatever the policy is asked about carries the domain the
/// mail would really go to, with a local part that routes nowhere else.
#[test]
fn relay_smuggling_forms_are_refused_end_to_end() {
    // The parser's list, plus a form only a whole command line can carry.
    let extra = ["<user@example.test> <user@outside.test>"];
    let forms = crate::smtp::address::tests::RELAY_SMUGGLING_FORMS.iter().chain(extra.iter());
    for form in forms {
        let mut s = ready();
        let mut checks = Vec::new();
        let (out, _) = run(&mut s, format!("RCPT TO:{form}\r\n").as_bytes(), &mut checks);
        assert!(out.starts_with('5'), "{form} got {out}");
        for mailbox in checks {
            let (local, domain) = mailbox.rsplit_once('@').unwrap();
            assert!(!local.contains(['@', '%', '!']), "{form} asked about {mailbox}");
            assert_ne!(domain, "example.test", "{form} asked about {mailbox}");
        }
    }
}

#[test]
fn postmaster_gets_the_configured_domain() {
    let mut s = ready();
    let mut checks = Vec::new();
    let (out, _) = run(&mut s, b"RCPT TO:<POSTMASTER>\r\n", &mut checks);
    assert_eq!(out, "250 2.1.5 Ok\r\n");
    assert_eq!(checks, ["postmaster@example.test"]);
}

#[test]
fn one_event_per_command_and_data_end() {
    let mut s = session();
    let input = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n";
    let (_, closed) = run(&mut s, input, &mut Vec::new());
    assert!(closed);
    let events: Vec<String> = s.drain_events().map(|e| format!("{} [{}] {}", e.command, e.argument, e.reply)).collect();
    assert_eq!(
        events,
        [
            "CONNECT [192.0.2.10:40000] 220 mx.example.test ESMTP Portcullis",
            "EHLO [c.test] 250 mx.example.test / PIPELINING / SIZE 1000 / 8BITMIME / SMTPUTF8 / ENHANCEDSTATUSCODES / CHUNKING",
            "MAIL [FROM:<a@b.test>] 250 2.1.0 Ok",
            "RCPT [TO:<u@example.test>] 250 2.1.5 Ok",
            "DATA [] 354 End data with <CR><LF>.<CR><LF>",
            "DATA-END [4] 250 2.0.0 Ok: queued as Q1",
            "QUIT [] 221 2.0.0 Bye",
        ]
    );
    assert_eq!(s.drain_events().count(), 0);
}

#[test]
fn phases_follow_the_conversation() {
    let mut s = ready();
    assert_eq!(s.phase(), Phase::Command);
    s.feed(b"RCPT TO:<u@example.test>\r\n");
    assert!(matches!(s.next_action(), Action::CheckRecipient { .. }));
    assert_eq!(s.phase(), Phase::Waiting);
    s.recipient_verdict(Verdict::Accept);
    s.feed(b"DATA\r\npartial");
    assert!(matches!(s.next_action(), Action::Read));
    assert_eq!(s.phase(), Phase::Data);
    assert_eq!(s.buffered_input(), 0, "DATA octets are consumed as they come");
    s.feed(b"\r\n.\r\n");
    assert!(matches!(s.next_action(), Action::Store(_)));
    assert_eq!(s.phase(), Phase::Waiting);
    s.stored(Err(StoreError::DiskFull));
    assert!(matches!(s.next_action(), Action::Read));
    assert!(String::from_utf8_lossy(s.output()).ends_with("452 4.3.1 Insufficient system storage\r\n"));
    assert_eq!(s.phase(), Phase::Command);
}

#[test]
fn pipelined_commands_wait_behind_a_pending_verdict() {
    let mut s = ready();
    s.feed(b"RCPT TO:<u@example.test>\r\nRCPT TO:<v@example.test>\r\nNOOP\r\n");
    assert!(matches!(s.next_action(), Action::CheckRecipient { ref mailbox, .. } if mailbox == "u@example.test"));
    assert!(s.buffered_input() > 0, "the rest stays buffered");
    s.recipient_verdict(Verdict::Refuse(Reply::new(450, "4.2.0", "Try later")));
    assert!(matches!(s.next_action(), Action::CheckRecipient { ref mailbox, .. } if mailbox == "v@example.test"));
    s.recipient_verdict(Verdict::Accept);
    assert!(matches!(s.next_action(), Action::Read));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.ends_with("450 4.2.0 Try later\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n"), "{out}");
}

#[test]
fn command_buffer_stays_bounded() {
    let mut s = session();
    let mut checks = Vec::new();
    for _ in 0..100 {
        s.feed(&[b'x'; 1000]);
        assert!(matches!(s.next_action(), Action::Read));
        assert!(s.buffered_input() <= limits::COMMAND_LINE_BYTES_MAX);
    }
    let (out, closed) = run(&mut s, b"\r\nNOOP\r\n", &mut checks);
    assert!(!closed);
    assert!(out.ends_with("500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"), "{out}");
}

#[test]
fn timeout_and_shutdown_close_with_421() {
    let mut s = ready();
    s.timed_out();
    assert!(matches!(s.next_action(), Action::Close));
    assert!(String::from_utf8_lossy(s.output()).ends_with("421 4.4.2 mx.example.test Error: timeout exceeded\r\n"));
    let mut s = ready();
    s.feed(b"RCPT TO:<u@example.test>\r\n");
    assert!(matches!(s.next_action(), Action::CheckRecipient { .. }));
    s.shutting_down();
    s.recipient_verdict(Verdict::Accept); // late answer is ignored
    assert!(matches!(s.next_action(), Action::Close));
    assert!(String::from_utf8_lossy(s.output()).ends_with("421 4.3.2 mx.example.test Service shutting down, closing connection\r\n"));
}

#[test]
fn excessive_pipelining_output_is_cut_off() {
    let mut s = session();
    let batch = b"EHLO c.test\r\n".repeat(1000);
    let (out, closed) = run(&mut s, &batch, &mut Vec::new());
    assert!(closed);
    assert!(out.ends_with("421 4.7.0 mx.example.test Error: too much pipelined input\r\n"));
    assert!(out.len() < limits::SESSION_OUTPUT_BYTES_MAX + 1024);
}
