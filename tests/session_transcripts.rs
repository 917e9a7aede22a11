//! Golden C:/S: transcripts against the pure session (tests/transcripts/*.txt).
//!
//! Each file is one conversation. Every file runs twice: once feeding each
//! client batch whole, once feeding it one octet at a time with the session
//! driven after every octet, so no reply may depend on how TCP split the
//! stream. The format (one directive per line, `#` comments):
//!
//! ```text
//! CONFIG key=value ...   the connection policy of the default connect answer:
//!                        message_bytes_max, recipients_max, messages_per_connection_max
//! C: text                client sends text + CRLF; consecutive C:/R: lines are one batch
//! R: escaped             client sends raw bytes, no CRLF added (\r \n \t \\ \xHH)
//! S: text                next server reply line, exact (CRLF stripped)
//! A: admit [220 text] | A: refuse 554 5.7.1 text | A: close 421 4.7.0 text
//!                        answers Question::Connect, before the session starts;
//!                        an enhanced code `-` means none (RFC 5321 §4.2 greeting)
//!                        (default: admit under CONFIG, banner "220 mx.example.test
//!                        ESMTP Portcullis"; `admit 220 text` sets the banner)
//! F: accept | F: refuse 550 5.7.1 text | F: close 421 4.7.0 text
//!                        answers the next MAIL question (default accept)
//! V: accept | V: refuse 550 5.1.1 text | V: close 421 4.7.0 text
//!   | V: refuse-close 550 5.7.1 text   (refused, then the session closes: DHAP drop)
//!                        answers the next RCPT question (default: accept if the
//!                        domain is example.test, else refuse 550 5.7.1 Relaying denied)
//!                        Answers are chosen when the question is asked and given
//!                        when the session waits (Action::AwaitAnswers).
//! K: mailbox [< from]    the next RCPT question asked about this; `K: none`: no more
//! KF: <from> [SIZE=n] [BODY=..] [SMTPUTF8]   the next MAIL question; `KF: none`: no more
//! ORDER: asked | reversed   the order the runner answers the questions it holds
//! HOLD                   from now on leave questions unanswered when the session
//!                        waits (the client may keep sending) ...
//! ANSWER                 ... until ANSWER gives the held answers and stops holding
//! INFLIGHT: n            most questions unanswered at once since the last INFLIGHT
//! Q: ok ID | Q: err      answers the next Store (default ok Q1, Q2, ...)
//! M: <from> -> <rcpt>... [BODY=8BITMIME|BINARYMIME] [SMTPUTF8]   next stored message
//! M: none                no (further) message was stored
//! B: text / BR: escaped  expected body of the last M: (B: adds CRLF)
//! E: VERB [argument] => reply    the next log event
//! PHASE: Command|Data|Waiting
//! EOF | TIMEOUT | SHUTDOWN   the driver reports client EOF / timeout / shutdown
//! CLOSE                  the session has asked to close
//! REPEAT n directive     repeat a directive, `{i}` is replaced by 1..=n
//! ```
//! `{c*n}` inside C:/R:/B:/BR: text stands for the character c repeated n times.
//! All server output must be matched by S: lines before the next batch is
//! sent and at the end of the file.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

#[path = "session_transcripts/format.rs"]
mod format;
use format::{body_name, configure, directives, expand, parse_connect, parse_decision, summary, unescape};

use portcullis::message::{domain_of, Message, QueueId};
use portcullis::smtp::session::Event;
use portcullis::smtp::{
    Action, Banner, ConnectionPolicy, Decision, Peer, Question, Reply, Session, SessionConfig, StoreError, Ticket,
};

#[derive(Clone, Copy, PartialEq)]
enum Feeding {
    Whole,
    OctetByOctet,
}

struct Runner {
    feeding: Feeding,
    config: SessionConfig,
    /// Limits of the default connect answer (CONFIG).
    policy: ConnectionPolicy,
    session: Option<Session>,
    pending_input: Vec<u8>,
    output: Vec<u8>,
    closed: bool,
    connect_answer: Option<Decision>,
    mail_answers: VecDeque<Decision>,
    rcpt_answers: VecDeque<Decision>,
    /// Asked and not answered yet, with the answer chosen when asked.
    held: Vec<(Ticket, Decision)>,
    reversed: bool,
    holding: bool,
    most_in_flight: usize,
    store_answers: VecDeque<Result<QueueId, StoreError>>,
    stores: usize,
    checks: VecDeque<(String, String)>,
    mail_checks: VecDeque<String>,
    messages: VecDeque<Message>,
    events: VecDeque<Event>,
    /// The message named by the last M: and the body expected for it.
    body_check: Option<(Message, Vec<u8>)>,
}

impl Runner {
    fn new(feeding: Feeding) -> Runner {
        Runner {
            feeding,
            config: SessionConfig { hostname: "mx.example.test".into(), postmaster_domain: "example.test".into() },
            policy: ConnectionPolicy::plain(Banner::standard("mx.example.test"), portcullis::limits::MESSAGE_BYTES_MAX, portcullis::limits::RECIPIENTS_PER_MESSAGE_MAX, portcullis::limits::MESSAGES_PER_CONNECTION_MAX),
            session: None,
            pending_input: Vec::new(),
            output: Vec::new(),
            closed: false,
            connect_answer: None,
            mail_answers: VecDeque::new(),
            rcpt_answers: VecDeque::new(),
            held: Vec::new(),
            reversed: false,
            holding: false,
            most_in_flight: 0,
            store_answers: VecDeque::new(),
            stores: 0,
            checks: VecDeque::new(),
            mail_checks: VecDeque::new(),
            messages: VecDeque::new(),
            events: VecDeque::new(),
            body_check: None,
        }
    }

    fn session(&mut self) -> Result<&mut Session, String> {
        if self.session.is_none() {
            let peer = Peer {
                connection_id: "C1".into(),
                addr: "192.0.2.10:40000".parse().unwrap(),
                local: "192.0.2.1:25".parse().unwrap(),
            };
            self.session = Some(Session::new(Arc::new(self.config.clone()), peer));
            self.drive()?;
        }
        Ok(self.session.as_mut().unwrap())
    }

    /// Do what the driver does until the session wants to read or close
    /// (or waits for answers while the runner holds them).
    fn drive(&mut self) -> Result<(), String> {
        let mut s = self.session.take().unwrap();
        let result = self.drive_session(&mut s);
        self.output.extend_from_slice(s.output());
        let n = s.output().len();
        s.consume_output(n);
        self.events.extend(s.drain_events());
        self.session = Some(s);
        result
    }

    fn drive_session(&mut self, s: &mut Session) -> Result<(), String> {
        while !self.closed {
            match s.next_action() {
                Action::Read => break,
                Action::Close => self.closed = true,
                Action::Ask { ticket, question } => {
                    let decision = self.decide(question);
                    self.held.push((ticket, decision));
                    self.most_in_flight = self.most_in_flight.max(self.held.len());
                }
                Action::AwaitAnswers if self.holding => break,
                Action::AwaitAnswers => {
                    if self.held.is_empty() {
                        return Err("the session waits for answers but asked nothing".into());
                    }
                    self.answer_held(s);
                }
                Action::Store(message) => {
                    self.stores += 1;
                    let answer = self.store_answers.pop_front().unwrap_or_else(|| Ok(QueueId(format!("Q{}", self.stores))));
                    self.messages.push_back(message);
                    s.stored(answer);
                }
                // The transcripts' policy does not offer STARTTLS (its
                // transcripts are in the session's unit tests).
                Action::StartTls => return Err("StartTls under a policy without TLS".into()),
            }
        }
        Ok(())
    }

    /// The answer to a question, chosen when it is asked (A:, F:, V: or the default).
    fn decide(&mut self, question: Question) -> Decision {
        match question {
            Question::Connect => {
                let policy = Arc::new(self.policy.clone());
                self.connect_answer.take().unwrap_or(Decision::Admit(policy))
            }
            Question::Mail { mail_from, size, body, smtputf8 } => {
                let mut summary = format!("<{mail_from}>");
                if let Some(size) = size {
                    summary.push_str(&format!(" SIZE={size}"));
                }
                if let Some(body) = body {
                    summary.push_str(&format!(" BODY={}", body_name(body)));
                }
                if smtputf8 {
                    summary.push_str(" SMTPUTF8");
                }
                self.mail_checks.push_back(summary);
                self.mail_answers.pop_front().unwrap_or(Decision::Accept)
            }
            Question::Auth { .. } => Decision::Refuse(Reply::new(503, "5.5.1", "AUTH is not offered in transcripts")),
            Question::Rcpt { mailbox, mail_from, .. } => {
                let answer = self.rcpt_answers.pop_front().unwrap_or_else(|| {
                    if domain_of(&mailbox) == "example.test" {
                        Decision::Accept
                    } else {
                        Decision::Refuse(Reply::new(550, "5.7.1", "Relaying denied"))
                    }
                });
                self.checks.push_back((mailbox, mail_from));
                answer
            }
        }
    }

    /// Give every held answer, in the order asked or reversed (ORDER:).
    fn answer_held(&mut self, s: &mut Session) {
        let mut held = std::mem::take(&mut self.held);
        if self.reversed {
            held.reverse();
        }
        for (ticket, decision) in held {
            s.answer(ticket, decision);
        }
    }

    /// Send the pending client batch, if any.
    fn sync(&mut self) -> Result<(), String> {
        let started = self.session.is_some();
        self.session()?;
        if self.pending_input.is_empty() {
            return Ok(());
        }
        // Input sent before the greeting was read is fine (the session
        // answers it after the greeting); later batches must follow replies.
        if started && !self.output.is_empty() {
            return Err(format!("unexpected server output before the next batch: {:?}", String::from_utf8_lossy(&self.output)));
        }
        if self.closed {
            return Err("client sends after the session closed".into());
        }
        let input = std::mem::take(&mut self.pending_input);
        match self.feeding {
            Feeding::Whole => {
                self.session.as_mut().unwrap().feed(&input);
                self.drive()?;
            }
            Feeding::OctetByOctet => {
                for octet in input.chunks(1) {
                    if self.closed {
                        break;
                    }
                    self.session.as_mut().unwrap().feed(octet);
                    self.drive()?;
                }
            }
        }
        Ok(())
    }

    fn next_output_line(&mut self) -> Result<String, String> {
        let Some(end) = self.output.windows(2).position(|w| w == b"\r\n") else {
            return Err(format!("no more server output (pending: {:?})", String::from_utf8_lossy(&self.output)));
        };
        let line = String::from_utf8_lossy(&self.output[..end]).into_owned();
        self.output.drain(..end + 2);
        Ok(line)
    }

    fn finish_body_check(&mut self) -> Result<(), String> {
        if let Some((message, expected)) = self.body_check.take() {
            if message.body != expected {
                return Err(format!(
                    "stored body differs\n  expected: {:?}\n  got:      {:?}",
                    String::from_utf8_lossy(&expected),
                    String::from_utf8_lossy(&message.body)
                ));
            }
        }
        Ok(())
    }

    fn directive(&mut self, line: &str) -> Result<(), String> {
        let (key, rest) = match line.split_once(": ") {
            Some((k, r)) if !k.contains(' ') => (k, r),
            _ => (line.strip_suffix(':').unwrap_or(line), ""),
        };
        if key != "B" && key != "BR" {
            self.finish_body_check()?;
        }
        match key {
            "C" => {
                self.pending_input.extend_from_slice(expand(rest).as_bytes());
                self.pending_input.extend_from_slice(b"\r\n");
            }
            "R" => self.pending_input.extend_from_slice(&unescape(&expand(rest))?),
            "V" => self.rcpt_answers.push_back(parse_decision(rest)?),
            "F" => self.mail_answers.push_back(parse_decision(rest)?),
            "A" if self.session.is_some() => return Err("A: after the session started".into()),
            "A" => self.connect_answer = Some(parse_connect(&self.policy, rest)?),
            "ORDER" => {
                self.reversed = match rest {
                    "asked" => false,
                    "reversed" => true,
                    _ => return Err(format!("bad ORDER: {rest}")),
                }
            }
            "HOLD" => self.holding = true,
            "ANSWER" => {
                self.sync()?;
                self.holding = false;
                let mut s = self.session.take().unwrap();
                self.answer_held(&mut s);
                self.session = Some(s);
                self.drive()?;
            }
            "INFLIGHT" => {
                self.sync()?;
                let want: usize = rest.parse().map_err(|_| format!("bad INFLIGHT: {rest}"))?;
                let got = std::mem::take(&mut self.most_in_flight);
                self.most_in_flight = self.held.len();
                if got != want {
                    return Err(format!("at most {got} questions were in flight, expected {want}"));
                }
            }
            "Q" => self.store_answers.push_back(match rest.split_once(' ') {
                Some(("ok", id)) => Ok(QueueId(id.to_string())),
                None if rest == "err" => Err(StoreError::DiskFull),
                _ => return Err(format!("bad Q: {rest}")),
            }),
            "S" => {
                self.sync()?;
                let got = self.next_output_line()?;
                if got != rest {
                    return Err(format!("server said\n  {got:?}\nexpected\n  {rest:?}"));
                }
            }
            "K" => {
                self.sync()?;
                let got = self.checks.pop_front();
                let want = if rest == "none" { None } else { Some(expand(rest)) };
                let got = got.map(|(m, from)| if rest.contains(" < ") { format!("{m} < {from}") } else { m });
                if got != want {
                    return Err(format!("RCPT question: got {got:?}, expected {want:?}"));
                }
            }
            "KF" => {
                self.sync()?;
                let got = self.mail_checks.pop_front();
                let want = if rest == "none" { None } else { Some(expand(rest)) };
                if got != want {
                    return Err(format!("MAIL question: got {got:?}, expected {want:?}"));
                }
            }
            "M" => {
                self.sync()?;
                let got = self.messages.pop_front();
                match (rest, got) {
                    ("none", None) => {}
                    ("none", Some(m)) => return Err(format!("unexpected stored message {}", summary(&m))),
                    (_, None) => return Err("no message was stored".into()),
                    (want, Some(m)) => {
                        if summary(&m) != want {
                            return Err(format!("stored envelope\n  {}\nexpected\n  {want}", summary(&m)));
                        }
                        self.body_check = Some((m, Vec::new()));
                    }
                }
            }
            "B" | "BR" => {
                let Some((_, body)) = self.body_check.as_mut() else { return Err("B: without M:".into()) };
                if key == "B" {
                    body.extend_from_slice(expand(rest).as_bytes());
                    body.extend_from_slice(b"\r\n");
                } else {
                    body.extend_from_slice(&unescape(&expand(rest))?);
                }
            }
            "E" => {
                self.sync()?;
                let got = self.events.pop_front().map(|e| {
                    let arg = if e.argument.is_empty() { String::new() } else { format!(" {}", e.argument) };
                    format!("{}{arg} => {}", e.command, e.reply)
                });
                let want = expand(rest);
                if got.as_deref() != Some(want.as_str()) {
                    return Err(format!("event {got:?}, expected {want:?}"));
                }
            }
            "PHASE" => {
                self.sync()?;
                let phase = format!("{:?}", self.session()?.phase());
                if phase != rest {
                    return Err(format!("phase {phase}, expected {rest}"));
                }
            }
            "EOF" | "TIMEOUT" | "SHUTDOWN" => {
                self.sync()?;
                let s = self.session.as_mut().unwrap();
                match key {
                    "EOF" => s.input_closed(),
                    "TIMEOUT" => s.timed_out(),
                    _ => s.shutting_down(),
                }
                self.drive()?;
            }
            "CLOSE" => {
                self.sync()?;
                if !self.closed {
                    return Err("the session did not close".into());
                }
            }
            _ => return Err(format!("unknown directive {line:?}")),
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), String> {
        self.finish_body_check()?;
        self.sync()?;
        if !self.output.is_empty() {
            return Err(format!("unmatched server output at end: {:?}", String::from_utf8_lossy(&self.output)));
        }
        Ok(())
    }
}

fn run_transcript(path: &Path, feeding: Feeding) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut runner = Runner::new(feeding);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    for (n, line) in directives(&text) {
        let result = match line.strip_prefix("CONFIG ") {
            Some(settings) if runner.session.is_none() => configure(&mut runner.policy, settings),
            Some(_) => Err("CONFIG after the session started".into()),
            None => runner.directive(&line),
        };
        result.map_err(|e| format!("{name}:{n}: {e}\n    at: {line}"))?;
    }
    runner.end().map_err(|e| format!("{name}: at end: {e}"))
}

#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let only = std::env::var("TRANSCRIPT").ok();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/transcripts")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .filter(|p| only.as_deref().is_none_or(|o| p.file_stem().unwrap().to_string_lossy().contains(o)))
        .collect();
    files.sort();
    if only.is_none() {
        assert!(files.len() >= 30, "expected at least 30 transcripts, found {}", files.len());
    }
    let mut failures = Vec::new();
    for file in &files {
        for (feeding, how) in [(Feeding::Whole, "whole batches"), (Feeding::OctetByOctet, "octet by octet")] {
            if let Err(e) = run_transcript(file, feeding) {
                failures.push(format!("[{how}] {e}"));
            }
        }
    }
    eprintln!("{} transcripts, {} failures", files.len(), failures.len());
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// The runner must be able to fail: a wrong expectation is reported with
/// its file and line.
#[test]
fn a_wrong_transcript_fails_with_its_line() {
    let dir = std::env::temp_dir().join(format!("portcullis-transcript-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wrong.txt");
    std::fs::write(&file, "S: 220 mx.example.test ESMTP Portcullis\nC: NOOP\nS: 250 2.0.0 Not what it says\n").unwrap();
    let err = run_transcript(&file, Feeding::Whole).unwrap_err();
    assert!(err.starts_with("wrong.txt:3:"), "{err}");
    std::fs::write(&file, "S: 220 mx.example.test ESMTP Portcullis\nC: NOOP\n").unwrap();
    let err = run_transcript(&file, Feeding::Whole).unwrap_err();
    assert!(err.contains("unmatched server output"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
