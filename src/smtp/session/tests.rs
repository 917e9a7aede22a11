//! Unit tests of the machine itself: relay guard end to end, events,
//! phases, buffer bounds. Conversations live in tests/transcripts/.

use super::*;
use crate::message::{domain_of, QueueId};

fn config() -> Arc<SessionConfig> {
    Arc::new(SessionConfig { hostname: "mx.example.test".into(), postmaster_domain: "example.test".into() })
}

fn policy() -> Arc<ConnectionPolicy> {
    Arc::new(ConnectionPolicy::plain(Banner::standard("mx.example.test"), 1000, 3, 10))
}

/// A session whose connection was admitted under `policy()`.
fn session() -> Session {
    admitted(policy())
}

fn admitted(policy: Arc<ConnectionPolicy>) -> Session {
    let peer = Peer {
        connection_id: "C1".into(),
        addr: "192.0.2.10:40000".parse().unwrap(),
        local: "192.0.2.1:25".parse().unwrap(),
    };
    let mut s = Session::new(config(), peer);
    let Action::Ask { ticket, question: Question::Connect } = s.next_action() else { panic!("Connect first") };
    s.answer(ticket, Decision::Admit(policy));
    s
}

/// The default policy: MAIL accepted, RCPT only for example.test.
fn decide(question: &Question) -> Decision {
    match question {
        Question::Auth { user, password } if user == "alice" && password.expose() == "right" => Decision::Accept,
        Question::Auth { .. } => Decision::Refuse(Reply::new(535, "5.7.8", "Error: authentication failed")),
        Question::Rcpt { mailbox, authenticated: false, .. } if domain_of(mailbox) != "example.test" => {
            Decision::Refuse(Reply::new(550, "5.7.1", "Relaying denied"))
        }
        _ => Decision::Accept,
    }
}

/// Feed `input`, answer questions with `decide` when the session waits
/// (recording the RCPT mailboxes) and stores with Ok; return the output text
/// and whether the session closed.
fn run(s: &mut Session, input: &[u8], checks: &mut Vec<String>) -> (String, bool) {
    s.feed(input);
    let mut asked = Vec::new();
    let closed = loop {
        match s.next_action() {
            Action::Read => break false,
            Action::Close => break true,
            Action::Ask { ticket, question } => {
                if let Question::Rcpt { mailbox, .. } = &question {
                    checks.push(mailbox.clone());
                }
                asked.push((ticket, decide(&question)));
            }
            Action::AwaitAnswers => {
                assert!(!asked.is_empty(), "AwaitAnswers with nothing asked");
                for (ticket, decision) in asked.drain(..) {
                    s.answer(ticket, decision);
                }
            }
            Action::Store(_) => s.stored(Ok(QueueId("Q1".into()))),
            // The driver's handshake, as if it succeeded.
            Action::StartTls => s.tls_started(secure::tls_info(None)),
        }
    };
    let out = String::from_utf8(s.output().to_vec()).unwrap();
    let n = s.output().len();
    s.consume_output(n);
    (out, closed)
}

fn ready() -> Session {
    ready_under(policy())
}

/// EHLO and MAIL done.
fn ready_under(policy: Arc<ConnectionPolicy>) -> Session {
    let mut s = admitted(policy);
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
            "EHLO [c.test] 250 mx.example.test / PIPELINING / SIZE 1000 / 8BITMIME / SMTPUTF8 / ENHANCEDSTATUSCODES / CHUNKING / DSN",
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
    let Action::Ask { ticket, .. } = s.next_action() else { panic!("RCPT is asked") };
    assert_eq!(s.phase(), Phase::Waiting);
    assert!(matches!(s.next_action(), Action::AwaitAnswers));
    s.answer(ticket, Decision::Accept);
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

/// The next action must be a RCPT question about `mailbox`; its ticket.
fn asked_rcpt(s: &mut Session, mailbox: &str) -> Ticket {
    match s.next_action() {
        Action::Ask { ticket, question: Question::Rcpt { mailbox: m, .. } } if m == mailbox => ticket,
        other => panic!("expected RCPT {mailbox} to be asked, got {other:?}"),
    }
}

#[test]
fn pipelined_rcpts_are_asked_at_once_and_replies_stay_in_order() {
    let mut s = ready();
    s.feed(b"RCPT TO:<u@example.test>\r\nRCPT TO:<v@example.test>\r\nNOOP\r\n");
    let u = asked_rcpt(&mut s, "u@example.test");
    let v = asked_rcpt(&mut s, "v@example.test");
    assert!(matches!(s.next_action(), Action::AwaitAnswers), "NOOP waits for both answers");
    assert!(s.buffered_input() > 0, "NOOP stays buffered");
    s.answer(v, Decision::Accept);
    assert!(s.output().is_empty(), "v's reply waits behind u's");
    assert!(matches!(s.next_action(), Action::AwaitAnswers));
    s.answer(u, Decision::Refuse(Reply::new(450, "4.2.0", "Try later")));
    assert!(matches!(s.next_action(), Action::Read));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert_eq!(out, "450 4.2.0 Try later\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n");
    let rcpts: Vec<String> = s.drain_events().filter(|e| e.command == "RCPT").map(|e| e.argument).collect();
    assert_eq!(rcpts, ["TO:<u@example.test>", "TO:<v@example.test>"], "log events in command order too");
}

#[test]
fn a_rcpt_after_mail_waits_for_the_mail_answer() {
    let mut s = session();
    run(&mut s, b"EHLO c.test\r\n", &mut Vec::new());
    s.feed(b"MAIL FROM:<a@sender.test> SIZE=10\r\nRCPT TO:<u@example.test>\r\n");
    let Action::Ask { ticket, question } = s.next_action() else { panic!("MAIL is asked") };
    let from = Question::Mail { mail_from: "a@sender.test".into(), size: Some(10), body: None, smtputf8: false };
    assert_eq!(question, from);
    assert!(matches!(s.next_action(), Action::AwaitAnswers), "RCPT depends on the MAIL answer");
    s.answer(ticket, Decision::Refuse(Reply::new(550, "5.7.1", "Sender refused")));
    assert!(matches!(s.next_action(), Action::Read), "RCPT answered on the spot, nothing asked");
    assert_eq!(String::from_utf8_lossy(s.output()), "550 5.7.1 Sender refused\r\n503 5.5.1 Error: need MAIL command\r\n");
}

#[test]
fn recipients_in_flight_count_against_the_limit() {
    let mut s = ready(); // recipients_max = 3
    s.feed(b"RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<d@example.test>\r\n");
    let tickets = [asked_rcpt(&mut s, "a@example.test"), asked_rcpt(&mut s, "b@example.test"), asked_rcpt(&mut s, "c@example.test")];
    assert!(matches!(s.next_action(), Action::AwaitAnswers), "d is refused without asking");
    for ticket in tickets.into_iter().rev() {
        s.answer(ticket, Decision::Accept);
    }
    assert!(matches!(s.next_action(), Action::Read));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.ends_with("250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n"), "{out}");
}

#[test]
fn a_policy_close_waits_for_earlier_replies_and_drops_later_ones() {
    let mut s = ready();
    s.feed(b"RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n");
    let (a, b, c) = (asked_rcpt(&mut s, "a@example.test"), asked_rcpt(&mut s, "b@example.test"), asked_rcpt(&mut s, "c@example.test"));
    s.answer(b, Decision::Close(Reply::new(421, "4.7.0", "mx.example.test Too many invalid recipients")));
    assert!(matches!(s.next_action(), Action::AwaitAnswers), "a's reply goes first");
    s.answer(c, Decision::Accept); // after the close: ignored
    s.answer(a, Decision::Accept);
    assert!(matches!(s.next_action(), Action::Close));
    assert_eq!(String::from_utf8_lossy(s.output()), "250 2.1.5 Ok\r\n421 4.7.0 mx.example.test Too many invalid recipients\r\n");
}

/// A client pipelining far ahead of a slow policy: the driver reads only
/// while `wants_input`, and then the session holds at most
/// SESSION_INPUT_BYTES_MAX plus one read, and at most
/// SESSION_REPLIES_HELD_MAX replies; answered, every RCPT gets its reply.
#[test]
fn input_is_bounded_while_answers_are_slow() {
    const READ: usize = 16 * 1024;
    let lines = 3_000; // about 100 KB of RCPTs
    let mut s = ready_under(Arc::new(ConnectionPolicy { recipients_max: lines, ..(*policy()).clone() }));
    let client: Vec<u8> = (0..lines).flat_map(|i| format!("RCPT TO:<user{i}@example.test>\r\n").into_bytes()).collect();
    let mut sent = 0;
    let mut asked = Vec::new();
    let mut most_buffered = 0;
    let mut output = Vec::new();
    loop {
        match s.next_action() {
            Action::Read if sent == client.len() => break,
            Action::Ask { ticket, .. } => asked.push(ticket),
            Action::Read | Action::AwaitAnswers if s.wants_input() && sent < client.len() => {
                let n = READ.min(client.len() - sent);
                s.feed(&client[sent..sent + n]);
                sent += n;
                most_buffered = most_buffered.max(s.buffered_input());
            }
            Action::AwaitAnswers => {
                // The slow policy answers only once the client is held back.
                assert!(!s.wants_input() || sent == client.len());
                assert!(asked.len() <= limits::SESSION_REPLIES_HELD_MAX);
                asked.drain(..).for_each(|t| s.answer(t, Decision::Accept));
            }
            other => panic!("unexpected {other:?}"),
        }
        output.extend_from_slice(s.output());
        s.consume_output(s.output().len());
    }
    output.extend_from_slice(s.output());
    assert!(most_buffered > limits::SESSION_INPUT_BYTES_MAX, "the bound was reached ({most_buffered})");
    assert!(most_buffered <= limits::SESSION_INPUT_BYTES_MAX + READ, "{most_buffered}");
    let out = String::from_utf8(output).unwrap();
    assert_eq!(out.lines().count(), lines);
    assert!(out.lines().all(|l| l == "250 2.1.5 Ok"), "every RCPT answered");
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
    s.feed(b"RCPT TO:<u@example.test>\r\nRCPT TO:<v@example.test>\r\n");
    let u = asked_rcpt(&mut s, "u@example.test");
    let v = asked_rcpt(&mut s, "v@example.test");
    s.answer(v, Decision::Accept);
    s.shutting_down();
    s.answer(u, Decision::Accept); // late answer is ignored
    assert!(matches!(s.next_action(), Action::Close));
    assert_eq!(String::from_utf8_lossy(s.output()), "421 4.3.2 mx.example.test Service shutting down, closing connection\r\n");
}

#[test]
fn a_timeout_before_the_connect_answer_closes() {
    let peer = Peer { connection_id: "C1".into(), addr: "192.0.2.10:40000".parse().unwrap(), local: "192.0.2.1:25".parse().unwrap() };
    let mut s = Session::new(config(), peer);
    let Action::Ask { ticket, .. } = s.next_action() else { panic!("Connect first") };
    assert_eq!(s.phase(), Phase::Waiting);
    assert!(matches!(s.next_action(), Action::AwaitAnswers));
    s.timed_out();
    s.answer(ticket, Decision::Admit(policy())); // too late
    assert!(matches!(s.next_action(), Action::Close));
    assert_eq!(String::from_utf8_lossy(s.output()), "421 4.4.2 mx.example.test Error: timeout exceeded\r\n");
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

mod dsn;
mod rewrite;
mod secure;
