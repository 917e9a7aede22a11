//! Golden C:/S: transcripts against the pure session (tests/transcripts/*.txt).
//!
//! Each file is one conversation. Every file runs twice: once feeding each
//! client batch whole, once feeding it one octet at a time with the session
//! driven after every octet, so no reply may depend on how TCP split the
//! stream. The format (one directive per line, `#` comments):
//!
//! ```text
//! CONFIG key=value ...   message_bytes_max, recipients_max, messages_per_connection_max
//! C: text                client sends text + CRLF; consecutive C:/R: lines are one batch
//! R: escaped             client sends raw bytes, no CRLF added (\r \n \t \\ \xHH)
//! S: text                next server reply line, exact (CRLF stripped)
//! V: accept | V: refuse 550 5.1.1 text   answers the next CheckRecipient
//!                        (default: accept if the domain is example.test,
//!                        else refuse 550 5.7.1 Relaying denied)
//! K: mailbox [< from]    the next CheckRecipient asked about this; `K: none`: no more
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

use portcullis::message::{domain_of, BodyType, Message, QueueId};
use portcullis::smtp::session::Event;
use portcullis::smtp::{Action, Peer, Reply, Session, SessionConfig, StoreError, Verdict};

#[derive(Clone, Copy, PartialEq)]
enum Feeding {
    Whole,
    OctetByOctet,
}

struct Runner {
    feeding: Feeding,
    config: SessionConfig,
    session: Option<Session>,
    pending_input: Vec<u8>,
    output: Vec<u8>,
    closed: bool,
    verdicts: VecDeque<Verdict>,
    store_answers: VecDeque<Result<QueueId, StoreError>>,
    stores: usize,
    checks: VecDeque<(String, String)>,
    messages: VecDeque<Message>,
    events: VecDeque<Event>,
    /// The message named by the last M: and the body expected for it.
    body_check: Option<(Message, Vec<u8>)>,
}

impl Runner {
    fn new(feeding: Feeding) -> Runner {
        Runner {
            feeding,
            config: SessionConfig {
                hostname: "mx.example.test".into(),
                message_bytes_max: portcullis::limits::MESSAGE_BYTES_MAX,
                recipients_max: portcullis::limits::RECIPIENTS_PER_MESSAGE_MAX,
                messages_per_connection_max: portcullis::limits::MESSAGES_PER_CONNECTION_MAX,
                postmaster_domain: "example.test".into(),
            },
            session: None,
            pending_input: Vec::new(),
            output: Vec::new(),
            closed: false,
            verdicts: VecDeque::new(),
            store_answers: VecDeque::new(),
            stores: 0,
            checks: VecDeque::new(),
            messages: VecDeque::new(),
            events: VecDeque::new(),
            body_check: None,
        }
    }

    fn session(&mut self) -> &mut Session {
        if self.session.is_none() {
            let peer = Peer {
                connection_id: "C1".into(),
                addr: "192.0.2.10:40000".parse().unwrap(),
                local: "192.0.2.1:25".parse().unwrap(),
            };
            self.session = Some(Session::new(Arc::new(self.config.clone()), peer));
            self.drive();
        }
        self.session.as_mut().unwrap()
    }

    /// Do what the driver does until the session wants to read or close.
    fn drive(&mut self) {
        let s = self.session.as_mut().unwrap();
        while !self.closed {
            match s.next_action() {
                Action::Read => break,
                Action::Close => self.closed = true,
                Action::CheckRecipient { mailbox, mail_from } => {
                    let verdict = self.verdicts.pop_front().unwrap_or_else(|| {
                        if domain_of(&mailbox) == "example.test" {
                            Verdict::Accept
                        } else {
                            Verdict::Refuse(Reply::new(550, "5.7.1", "Relaying denied"))
                        }
                    });
                    self.checks.push_back((mailbox, mail_from));
                    s.recipient_verdict(verdict);
                }
                Action::Store(message) => {
                    self.stores += 1;
                    let answer = self.store_answers.pop_front().unwrap_or_else(|| Ok(QueueId(format!("Q{}", self.stores))));
                    self.messages.push_back(message);
                    s.stored(answer);
                }
            }
        }
        self.output.extend_from_slice(s.output());
        let n = s.output().len();
        s.consume_output(n);
        self.events.extend(s.drain_events());
    }

    /// Send the pending client batch, if any.
    fn sync(&mut self) -> Result<(), String> {
        let started = self.session.is_some();
        self.session();
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
                self.drive();
            }
            Feeding::OctetByOctet => {
                for octet in input.chunks(1) {
                    if self.closed {
                        break;
                    }
                    self.session.as_mut().unwrap().feed(octet);
                    self.drive();
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
            "V" => self.verdicts.push_back(parse_verdict(rest)?),
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
                    return Err(format!("CheckRecipient: got {got:?}, expected {want:?}"));
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
                let phase = format!("{:?}", self.session().phase());
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
                self.drive();
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

fn parse_verdict(rest: &str) -> Result<Verdict, String> {
    if rest == "accept" {
        return Ok(Verdict::Accept);
    }
    let mut words = rest.splitn(4, ' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("refuse"), Some(code), Some(enhanced), Some(text)) => {
            let code = code.parse().map_err(|_| format!("bad code in V: {rest}"))?;
            Ok(Verdict::Refuse(Reply::new(code, enhanced, text)))
        }
        _ => Err(format!("bad V: {rest}")),
    }
}

fn summary(m: &Message) -> String {
    let e = &m.envelope;
    let mut s = format!("<{}> ->", e.mail_from);
    for r in &e.recipients {
        s.push_str(&format!(" <{r}>"));
    }
    match e.body_type {
        BodyType::SevenBit => {}
        BodyType::EightBitMime => s.push_str(" BODY=8BITMIME"),
        BodyType::BinaryMime => s.push_str(" BODY=BINARYMIME"),
    }
    if e.smtputf8 {
        s.push_str(" SMTPUTF8");
    }
    s
}

/// `{c*n}` → c repeated n times.
fn expand(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let tail = &rest[open..];
        let parsed = tail.find('}').and_then(|close| {
            let inner = &tail[1..close];
            let (c, n) = inner.split_once('*')?;
            let mut chars = c.chars();
            let ch = chars.next().filter(|_| chars.next().is_none())?;
            Some((ch, n.parse::<usize>().ok()?, close))
        });
        match parsed {
            Some((ch, n, close)) => {
                out.push_str(&rest[..open]);
                out.extend(std::iter::repeat_n(ch, n));
                rest = &tail[close + 1..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let hex = std::str::from_utf8(&hex).map_err(|e| e.to_string())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad \\x{hex}"))?);
            }
            other => return Err(format!("bad escape \\{:?}", other.map(char::from))),
        }
    }
    Ok(out)
}

/// Expand REPEAT into plain directives, with their source line numbers.
fn directives(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("REPEAT ") {
            let (count, directive) = rest.split_once(' ').expect("REPEAT n directive");
            for i in 1..=count.parse::<usize>().expect("REPEAT count") {
                out.push((n + 1, directive.replace("{i}", &i.to_string())));
            }
        } else {
            out.push((n + 1, line.to_string()));
        }
    }
    out
}

fn run_transcript(path: &Path, feeding: Feeding) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut runner = Runner::new(feeding);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    for (n, line) in directives(&text) {
        let result = match line.strip_prefix("CONFIG ") {
            Some(settings) if runner.session.is_none() => configure(&mut runner.config, settings),
            Some(_) => Err("CONFIG after the session started".into()),
            None => runner.directive(&line),
        };
        result.map_err(|e| format!("{name}:{n}: {e}\n    at: {line}"))?;
    }
    runner.end().map_err(|e| format!("{name}: at end: {e}"))
}

fn configure(config: &mut SessionConfig, settings: &str) -> Result<(), String> {
    for setting in settings.split_whitespace() {
        let (key, value) = setting.split_once('=').ok_or("CONFIG key=value")?;
        let number = || value.parse::<usize>().map_err(|e| e.to_string());
        match key {
            "message_bytes_max" => config.message_bytes_max = number()?,
            "recipients_max" => config.recipients_max = number()?,
            "messages_per_connection_max" => config.messages_per_connection_max = number()? as u32,
            _ => return Err(format!("unknown CONFIG key {key}")),
        }
    }
    Ok(())
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
