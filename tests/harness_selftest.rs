//! Tests of the end-to-end harness itself, against the real peers only
//! (smtp-sink, swaks, smtp-source): if these fail, an end-to-end failure
//! says nothing about portcullis.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn swaks_message_reaches_sink_and_reads_back() {
    let sink = Sink::start();
    let result = Swaks::new(sink.addr())
        .from("alice@client.test")
        .to("bob@example.test")
        .to("carol@example.test")
        .header("Subject: harness")
        .body("first line\n.leading dot\nlast line")
        .run();
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    assert_eq!(result.exit_code(), Some(0));
    assert_eq!(result.code_for("RCPT"), Some(250));

    let messages = sink.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1);
    let msg = &messages[0];
    assert_eq!(msg.sender(), "alice@client.test");
    assert_eq!(msg.recipients(), ["bob@example.test", "carol@example.test"]);
    assert_eq!(msg.client_addr, "127.0.0.1");
    assert_eq!(msg.helo.as_deref(), Some("client.test"));
    assert_eq!(msg.header("subject").as_deref(), Some("harness"));
    // Dot-stuffing is undone in the dump; lines end in LF.
    assert!(
        msg.body()
            .starts_with("first line\n.leading dot\nlast line\n"),
        "{:?}",
        msg.body()
    );
}

#[test]
fn sink_soft_rejects_rcpt_and_stores_nothing() {
    let sink = Sink::builder().reject_soft(&["RCPT"]).start();
    let result = Swaks::new(sink.addr()).body("x").run();
    assert_eq!(
        result.code_for("RCPT"),
        Some(450),
        "{}",
        result.transcript()
    );
    assert_eq!(result.final_code(), Some(450));
    assert_eq!(result.exit_code(), Some(24));
    assert_eq!(sink.count(), 0);
}

#[test]
fn sink_hard_rejects_dot_but_still_dumps_the_attempt() {
    let sink = Sink::builder().reject_hard(&["."]).start();
    let result = Swaks::new(sink.addr()).body("x").run();
    assert_eq!(result.final_code(), Some(500), "{}", result.transcript());
    // Documented smtp-sink behaviour: the dump is written before the reply.
    assert_eq!(sink.wait_for_messages(1, WAIT).len(), 1);
}

#[test]
fn sink_421_at_mail_drops_the_session() {
    let sink = Sink::builder().close_421_at(&["MAIL"]).start();
    let (mut raw, greeting) = RawSmtp::connect(sink.addr()).unwrap();
    assert_eq!(greeting.code, 220);
    assert!(raw.cmd("EHLO client.test").unwrap().is_positive());
    assert_eq!(raw.cmd("MAIL FROM:<a@client.test>").unwrap().code, 421);
    assert!(raw.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn raw_client_sends_exact_bytes_and_pipelines() {
    let sink = Sink::start();
    let (mut raw, _) = RawSmtp::connect(sink.addr()).unwrap();
    let ehlo = raw.cmd("EHLO client.test").unwrap();
    assert_eq!(ehlo.code, 250);
    assert!(ehlo.contains("PIPELINING"), "{ehlo:?}");
    // RFC 2920: MAIL, RCPT, RCPT and DATA in one write, replies in order.
    raw.send(b"MAIL FROM:<p@client.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        .unwrap();
    let codes: Vec<u16> = raw
        .read_replies(4)
        .unwrap()
        .iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [250, 250, 250, 354]);
    raw.send(b"Subject: raw\r\n\r\n..stuffed\r\nend\r\n.\r\n")
        .unwrap();
    assert_eq!(raw.read_reply().unwrap().code, 250);
    assert_eq!(raw.cmd("QUIT").unwrap().code, 221);

    let msg = &sink.wait_for_messages(1, WAIT)[0];
    assert_eq!(msg.recipients(), ["a@example.test", "b@example.test"]);
    assert_eq!(msg.body(), ".stuffed\nend\n");
}

#[test]
fn raw_client_send_mail_helper() {
    let sink = Sink::start();
    let (mut raw, _) = RawSmtp::connect(sink.addr()).unwrap();
    let reply = raw
        .send_mail(
            "s@client.test",
            &["r@example.test"],
            b"Subject: s\r\n\r\nhi\r\n",
        )
        .unwrap();
    assert_eq!(reply.code, 250);
    assert_eq!(sink.wait_for_messages(1, WAIT)[0].body(), "hi\n");
}

#[test]
fn smtp_source_load_arrives_completely() {
    let sink = Sink::start();
    let out = run_smtp_source(
        sink.addr(),
        &[
            "-s",
            "5",
            "-m",
            "200",
            "-r",
            "3",
            "-l",
            "1024",
            "-f",
            "s@client.test",
            "-t",
            "r@example.test",
            "-M",
            "client.test",
        ],
        Duration::from_secs(60),
    );
    assert!(out.success(), "smtp-source: {out:?}");
    let messages = sink.wait_for_recipients(600, WAIT);
    assert_eq!(messages.len(), 200);
    assert!(messages.iter().all(|m| m.rcpt_args.len() == 3));
    // smtp-source 3.7 makes recipients distinct by prepending a counter
    // (r@, 2r@, 3r@ ...).
    let mut rcpts = messages[0].recipients();
    rcpts.sort();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 3, "{rcpts:?}");
    assert!(
        rcpts.iter().all(|r| r.ends_with("r@example.test")),
        "{rcpts:?}"
    );
}

#[test]
fn sink_stops_and_starts_again_on_the_same_port() {
    let mut sink = Sink::start();
    let port = sink.port();
    Swaks::new(sink.addr()).body("one").run();
    sink.wait_for_messages(1, WAIT);
    sink.stop();
    assert!(!is_listening(port));
    let down = Swaks::new(sink.addr()).body("lost").run();
    assert_eq!(
        down.exit_code(),
        Some(2),
        "swaks exit code for connect failure: {}",
        down.transcript()
    );
    sink.start_again();
    assert_eq!(sink.port(), port);
    assert_eq!(
        Swaks::new(sink.addr()).body("two").run().final_code(),
        Some(250)
    );
    assert_eq!(sink.wait_for_messages(2, WAIT).len(), 2);
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    let mut unique = ports.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ports.len());
    for port in ports.iter().take(5) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", *port)).unwrap();
        assert!(is_listening(*port));
        drop(listener);
    }
}

#[test]
fn server_that_exits_at_start_is_reported_not_waited_for() {
    let started = std::time::Instant::now();
    let result = Portcullis::builder()
        .program(std::path::Path::new("/bin/false"))
        .try_start();
    let (reason, _log) = result.err().expect("/bin/false cannot listen");
    assert!(reason.contains("exited"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn run_with_timeout_kills_a_hung_command() {
    let out = run_with_timeout(
        std::process::Command::new("sleep").arg("30"),
        Duration::from_millis(200),
    );
    assert!(out.timed_out);
    assert!(out.status.is_none());
}

#[test]
fn portcullis_binary_is_built() {
    assert!(portcullis_bin().is_file(), "{}", portcullis_bin().display());
}

#[test]
fn sink_hides_a_transaction_in_progress() {
    let sink = Sink::start();
    let (mut raw, _) = RawSmtp::connect(sink.addr()).unwrap();
    raw.cmd("EHLO client.test").unwrap();
    raw.cmd("MAIL FROM:<s@client.test>").unwrap();
    raw.cmd("RCPT TO:<r@example.test>").unwrap();
    assert_eq!(raw.cmd("DATA").unwrap().code, 354);
    raw.send(b"Subject: half\r\n\r\nnot finished\r\n").unwrap();
    // The dump file exists from MAIL on, but is still open: not a message.
    assert!(wait_until(WAIT, || std::fs::read_dir(sink.dump_dir())
        .unwrap()
        .count()
        == 1));
    assert_eq!(sink.count(), 0);
    raw.send(b".\r\n").unwrap();
    assert_eq!(raw.read_reply().unwrap().code, 250);
    assert_eq!(sink.wait_for_messages(1, WAIT)[0].body(), "not finished\n");
}

/// The server lifecycle (start, log, kill -9, restart, SIGTERM) against a
/// stand-in that takes the same flags: a script that logs like the mail log
/// and runs smtp-sink on the --listen address.
#[test]
fn server_lifecycle_with_a_stand_in_binary() {
    let dir = TempDir::new("stand-in");
    let script = dir.path().join("portcullis");
    let user = if common::process::is_root() {
        "-u nobody"
    } else {
        ""
    };
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nwhile [[ $# -gt 0 && $1 != --listen ]]; do shift; done\n\
             echo \"started queued 1\" >&2\nexec /usr/sbin/smtp-sink {user} \"$2\" 100\n"
        ),
    )
    .unwrap();
    common::process::set_mode(&script, 0o755);

    let mut server = Portcullis::builder()
        .program(&script)
        .arg("--cores")
        .arg("1")
        .start();
    let port = server.port();
    assert!(server.command_line().contains(&"--cores".to_owned()));
    assert_eq!(server.wait_for_log("queued", 1, WAIT).len(), 1);
    assert_eq!(
        Swaks::new(server.addr()).body("x").run().final_code(),
        Some(250)
    );

    server.kill9();
    assert!(!server.is_running());
    assert!(!is_listening(port));
    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    // The log is appended across restarts.
    assert_eq!(server.log_lines("started").len(), 2);

    let status = server.stop(Duration::from_secs(10)).expect("was running");
    assert!(!status.success(), "smtp-sink dies of SIGTERM: {status}");
}

// ---- call-ahead downstreams (issue 7): real Postfix, the fake, counters ----

const PF_DOMAIN: &str = "example.test";

#[test]
fn postfix_accepts_a_mailbox_and_refuses_an_unknown_one_with_its_own_words() {
    let pf = PostfixSmtpd::start(&[PF_DOMAIN], &["known@example.test"]);
    let (mut raw, greeting) = RawSmtp::connect(pf.addr()).unwrap();
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert!(greeting.text().contains("Postfix"), "{greeting:?}");
    let ehlo = raw.cmd("EHLO portcullis.test").unwrap();
    assert!(ehlo.contains("PIPELINING"), "{ehlo:?}");
    assert_eq!(raw.cmd("MAIL FROM:<>").unwrap().code, 250);
    let known = raw.cmd("RCPT TO:<known@example.test>").unwrap();
    assert_eq!((known.code, known.text()), (250, "2.1.5 Ok".to_owned()));
    let unknown = raw.cmd("RCPT TO:<nobody@example.test>").unwrap();
    assert_eq!(unknown.code, 550);
    assert_eq!(
        unknown.text(),
        "5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in relay recipient table"
    );
    // Another domain: Postfix's policy refusal (5.7.1), not "user unknown".
    let relay = raw.cmd("RCPT TO:<x@elsewhere.test>").unwrap();
    assert_eq!(relay.code, 554, "{relay:?}");
    assert!(relay.text().starts_with("5.7.1 ") && relay.text().contains("Relay access denied"), "{relay:?}");
    assert_eq!(raw.cmd("QUIT").unwrap().code, 221);
    // The relay refusal comes before the table: two lookups, three RCPTs.
    assert_eq!(pf.rcpt_commands_total(), 2);
    assert_eq!(pf.rcpt_lookups_of("nobody@example.test"), 1);
    assert!(wait_until(WAIT, || pf.rcpt_commands_logged() == 3), "{}", pf.log());
    assert_eq!(pf.rejected_rcpt_lines().len(), 2, "{}", pf.log());
}

#[test]
fn postfix_new_mailbox_is_accepted_in_an_open_session() {
    let pf = PostfixSmtpd::start(&[PF_DOMAIN], &[]);
    let (mut raw, _) = RawSmtp::connect(pf.addr()).unwrap();
    raw.cmd("EHLO portcullis.test").unwrap();
    raw.cmd("MAIL FROM:<>").unwrap();
    assert_eq!(raw.cmd("RCPT TO:<new@example.test>").unwrap().code, 550);
    pf.add_mailbox("New@Example.test");
    assert_eq!(raw.cmd("RCPT TO:<new@example.test>").unwrap().code, 250);
    pf.remove_mailbox("new@example.test");
    assert_eq!(raw.cmd("RCPT TO:<new@example.test>").unwrap().code, 550);
    assert_eq!(pf.rcpt_lookups_of("new@example.test"), 3);
}

#[test]
fn postfix_counts_connections_peak_and_pipelined_rcpts_at_the_server() {
    let pf = PostfixSmtpd::start(&[PF_DOMAIN], &["a@example.test"]);
    let mut sessions: Vec<RawSmtp> = (0..3).map(|_| RawSmtp::connect(pf.addr()).unwrap().0).collect();
    pf.wait_connections(3, WAIT);
    assert_eq!(pf.open_connections(), 3);
    // RFC 2920: five RCPTs in one write, five replies in order.
    let first = &mut sessions[0];
    first.cmd("EHLO portcullis.test").unwrap();
    first.send(b"MAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<a@example.test>\r\n").unwrap();
    let codes: Vec<u16> = first.read_replies(6).unwrap().iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 550, 250, 550, 250]);
    assert_eq!(pf.rcpt_commands_total(), 5);
    for mut s in sessions.drain(..) {
        assert_eq!(s.cmd("QUIT").unwrap().code, 221);
    }
    assert!(wait_until(WAIT, || pf.disconnections_total() == 3), "{}", pf.log());
    let (mut fourth, _) = RawSmtp::connect(pf.addr()).unwrap();
    fourth.cmd("QUIT").unwrap();
    assert!(wait_until(WAIT, || pf.disconnections_total() == 4), "{}", pf.log());
    assert_eq!(pf.connections_total(), 4);
    assert_eq!(pf.max_concurrent_connections(), 3);
    assert_eq!(pf.rcpt_commands_logged(), 5);
}

#[test]
fn postfix_stops_cleanly() {
    let mut pf = PostfixSmtpd::start(&[PF_DOMAIN], &[]);
    let port = pf.port();
    let (_raw, _) = RawSmtp::connect(pf.addr()).unwrap();
    pf.stop();
    assert!(!is_listening(port));
}

fn raw_session(addr: std::net::SocketAddr) -> RawSmtp {
    let (raw, greeting) = RawSmtp::connect(addr).unwrap();
    assert_eq!(greeting.code, 220);
    raw
}

#[test]
fn fake_behaves_and_counts_when_told_no_fault() {
    let fake = FakeSmtp::start(Fault::None);
    let mut a = raw_session(fake.addr());
    let mut b = raw_session(fake.addr());
    assert!(a.cmd("EHLO x").unwrap().contains("PIPELINING"));
    a.send(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRSET\r\n").unwrap();
    let codes: Vec<u16> = a.read_replies(4).unwrap().iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 250]);
    assert_eq!(b.cmd("QUIT").unwrap().code, 221);
    assert_eq!(fake.connections_total(), 2);
    assert_eq!(fake.max_concurrent_connections(), 2);
    assert_eq!(fake.count_commands("RCPT"), 2);
    assert!(wait_until(WAIT, || fake.open_connections() == 1));
}

#[test]
fn fake_sends_garbage_where_a_reply_is_due() {
    let fake = FakeSmtp::start(Fault::Garbage(Step::Rcpt));
    let mut raw = raw_session(fake.addr());
    raw.cmd("EHLO x").unwrap();
    raw.cmd("MAIL FROM:<>").unwrap();
    let err = raw.cmd("RCPT TO:<a@x.test>").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}

#[test]
fn fake_sends_continuation_lines_without_end() {
    let fake = FakeSmtp::start(Fault::EndlessLines(Step::Ehlo));
    let mut raw = raw_session(fake.addr());
    let err = raw.cmd("EHLO x").unwrap_err();
    assert!(err.to_string().contains("more than 1000 reply lines"), "{err}");
}

#[test]
fn fake_stalls_in_the_middle_of_a_reply() {
    let fake = FakeSmtp::start(Fault::StallMidReply(Step::Mail));
    let mut raw = raw_session(fake.addr());
    raw.cmd("EHLO x").unwrap();
    raw.stream().set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let err = raw.cmd("MAIL FROM:<>").unwrap_err();
    assert!(matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{err}");
    // Still open: a stall, not a hang-up.
    assert_eq!(fake.open_connections(), 1);
    drop(fake);
    assert!(raw.is_closed_within(WAIT), "dropping the fake ends its stalls");
}

#[test]
fn fake_closes_right_after_the_banner() {
    let fake = FakeSmtp::start(Fault::CloseAfterBanner);
    let mut raw = raw_session(fake.addr());
    assert!(raw.is_closed_within(WAIT));
    assert_eq!(fake.connections_total(), 1);
}

#[test]
fn conn_counter_sees_established_connections_at_a_sink() {
    let sink = Sink::start();
    let counter = ConnCounter::start(sink.port());
    let sessions: Vec<RawSmtp> = (0..3).map(|_| raw_session(sink.addr())).collect();
    assert!(wait_until(WAIT, || counter.current() == 3), "current {}", counter.current());
    drop(sessions);
    assert!(wait_until(WAIT, || counter.current() == 0), "current {}", counter.current());
    assert_eq!(counter.max_concurrent(), 3);
    assert_eq!(counter.distinct_total(), 3);
}
