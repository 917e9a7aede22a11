//! End to end: the HAT (Host Access Table) of one public listener picks a
//! mail flow policy by the client's address, and each policy's behaviour and
//! limits reach the client as SMTP replies. Clients bind chosen 127.0.0.x
//! source addresses; the `hat` mail log line names the group and policy.
//!
//! The HAT, first match wins:
//!
//! | group       | senders                          | policy     | what it is          |
//! |-------------|----------------------------------|------------|---------------------|
//! | SKIPPED     | 127.0.0.25, 127.0.0.45           | PASS       | CONTINUE: skipped   |
//! | FIRST       | 127.0.0.25 (single IP)           | ACCEPTED   | beats the range     |
//! | BLOCKLIST   | 127.0.0.20-29 (range)            | BLOCKED    | REJECT at banner    |
//! | OUTBOUND    | 127.0.0.32/30 (CIDR)             | OUTBOUND   | RELAY, 2 rcpts/msg  |
//! | QUARANTINE  | 127.0.0.40                       | QUARANTINE | REJECT at RCPT      |
//! | REFUSED     | 127.0.0.41                       | DROP       | TCPREFUSE           |
//! | TIGHT       | 127.0.0.42                       | TIGHT      | limits, banner vars |
//! | SUSPECT     | 127.0.0.43                       | THROTTLED  | predefined          |
//! | BUSY        | 127.0.0.46                       | BUSY       | REJECT with 421     |
//! | PARTIAL     | 127.0.1-2. (octet range, prefix) | TRUSTED    | predefined          |
//! | INHERIT     | 127.0.0.44                       | INHERITS   | [default_policy]    |
//!
//! Anything else (127.0.0.45 after its CONTINUE group, 127.0.0.50) is
//! unmatched and gets the public listener's default, ACCEPTED: the RAT
//! accepts example.test (250) and refuses other domains (550 5.7.1).
//!
//! `[default_policy]` sets max_recipients_per_message = 7 and a banner
//! text: INHERITS and ACCEPTED inherit both, THROTTLED keeps ESA's
//! max_messages_per_connection = 1 (its predefined layer), and a second
//! test overrides that with `[policy.THROTTLED]`.
//!
//! Nothing sleeps: log lines and sink messages are awaited with deadlines.

mod common;

use common::*;
use std::io::{ErrorKind, Read};
use std::net::Ipv4Addr;
use common::clients::tcp_from;

const HAT: &str = r#"
[[hat.inbound]]
group = "SKIPPED"
senders = ["127.0.0.25", "127.0.0.45"]
policy = "PASS"

[[hat.inbound]]
group = "FIRST"
senders = ["127.0.0.25"]
policy = "ACCEPTED"

[[hat.inbound]]
group = "BLOCKLIST"
senders = ["127.0.0.20-29"]
policy = "BLOCKED"

[[hat.inbound]]
group = "OUTBOUND"
senders = ["127.0.0.32/30"]
policy = "OUTBOUND"

[[hat.inbound]]
group = "QUARANTINE"
senders = ["127.0.0.40"]
policy = "QUARANTINE"

[[hat.inbound]]
group = "REFUSED"
senders = ["127.0.0.41"]
policy = "DROP"

[[hat.inbound]]
group = "TIGHT"
senders = ["127.0.0.42"]
policy = "TIGHT"

[[hat.inbound]]
group = "SUSPECT"
senders = ["127.0.0.43"]
policy = "THROTTLED"

[[hat.inbound]]
group = "BUSY"
senders = ["127.0.0.46"]
policy = "BUSY"

[[hat.inbound]]
group = "PARTIAL"
senders = ["127.0.1-2."]
policy = "TRUSTED"

[[hat.inbound]]
group = "INHERIT"
senders = ["127.0.0.44"]
policy = "INHERITS"

[[rat.inbound]]
recipient = "example.test"
action = "accept"

[[rat.inbound]]
recipient = "ALL"
action = "reject"
code = 550
text = "Relay access denied"

[default_policy]
max_recipients_per_message = 7
banner_text = "$Hostname ESMTP default"

[policy.PASS]
behavior = "continue"

[policy.BLOCKED]
reject_banner_text = "$RemoteIP ($Group) refused by $Hostname"

[policy.OUTBOUND]
behavior = "relay"
max_recipients_per_message = 2

[policy.QUARANTINE]
behavior = "reject"
reject_at = "rcpt"
reject_banner_code = 550
reject_banner_text = "Mail from $RemoteIP is not accepted"

[policy.DROP]
behavior = "tcprefuse"

[policy.TIGHT]
max_messages_per_connection = 2
max_recipients_per_message = 3
max_message_size = 4096
banner_code = 220
banner_hostname = "edge.example.test"
banner_text = "$Hostname ready for $RemoteIP in $Group/$Policy at $LocalIP"

[policy.BUSY]
behavior = "reject"
reject_banner_code = 421
reject_banner_text = "$Hostname busy, try later"

[policy.INHERITS]
max_messages_per_connection = 3
"#;

/// The config: one public listener on `port` with the HAT above, plus `extra`.
fn config_text(port: u16, extra: &str) -> String {
    format!(
        "[[listener]]\nname = \"inbound\"\naddress = \"127.0.0.1:{port}\"\ntype = \"public\"\nhat = \"inbound\"\nrat = \"inbound\"\n{HAT}\n{extra}"
    )
}

fn start(sink: &Sink, extra: &str) -> (ConfigFile, Portcullis) {
    let port = free_port();
    let file = ConfigFile::with_text(&config_text(port, extra));
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .route("*", sink)
        .start();
    (file, server)
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn connect(server: &Portcullis, last: u8) -> (RawSmtp, Reply) {
    RawSmtp::connect_from(server.addr(), ip(last))
        .unwrap_or_else(|e| panic!("connect from 127.0.0.{last}: {e}"))
}

/// The `hat` log line of the connection from 127.0.0.`last` (the first
/// one from that address: `connect` names the peer, `hat` the conn id).
fn hat_line(server: &Portcullis, last: u8) -> String {
    let peer = format!(" peer=127.0.0.{last}:");
    let mut found = None;
    wait_until(WAIT, || {
        let log = server.log();
        let conn = log
            .lines()
            .find(|l| l.contains(" connect ") && l.contains(&peer))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("conn=")))
            .map(|w| format!("{w} "));
        found = conn.and_then(|c| {
            log.lines()
                .find(|l| l.contains(" hat ") && l.contains(&c))
                .map(str::to_owned)
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no hat line for 127.0.0.{last}\n{}", server.log()))
}

fn assert_hat(server: &Portcullis, last: u8, group: &str, policy: &str, outcome: &str) {
    let line = hat_line(server, last);
    for want in [
        "listener=inbound".to_owned(),
        format!("group={group} "),
        format!("policy={policy} "),
        format!("outcome={outcome}"),
    ] {
        assert!(line.contains(&want), "127.0.0.{last}: {want:?} not in {line}");
    }
}

fn ehlo(client: &mut RawSmtp) -> Reply {
    let reply = client.cmd("EHLO client.test").unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    reply
}

fn is(reply: &Reply, code: u16, enhanced: &str) -> bool {
    reply.code == code && reply.text().starts_with(&format!("{enhanced} "))
}

/// One message on an open session; the reply to the dot (or the refusal).
fn message(client: &mut RawSmtp, to: &[&str], subject: &str) -> Reply {
    let mail = client.cmd("MAIL FROM:<sender@client.test>").unwrap();
    if !mail.is_positive() {
        return mail;
    }
    for rcpt in to {
        let reply = client.cmd(&format!("RCPT TO:<{rcpt}>")).unwrap();
        if !reply.is_positive() {
            return reply;
        }
    }
    assert_eq!(client.cmd("DATA").unwrap().code, 354);
    client
        .send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes())
        .unwrap();
    client.read_reply().unwrap()
}

#[test]
fn address_groups_pick_policies_and_each_behaviour_answers() {
    let sink = Sink::start();
    let (_file, server) = start(&sink, "");

    // Unmatched → ACCEPTED (the public listener's default): RAT applies.
    let (mut c, banner) = connect(&server, 50);
    assert_eq!(banner.code, 220, "{banner:?}");
    assert_eq!(banner.text(), "portcullis.test ESMTP default", "inherited banner_text");
    ehlo(&mut c);
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").unwrap().code, 250);
    let ok = c.cmd("RCPT TO:<user@example.test>").unwrap();
    assert!(is(&ok, 250, "2.1.5"), "accepted domain: {ok:?}");
    let denied = c.cmd("RCPT TO:<user@elsewhere.test>").unwrap();
    assert!(is(&denied, 550, "5.7.1"), "other domain: {denied:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert_hat(&server, 50, "(unmatched)", "ACCEPTED", "accepted");
    assert!(
        server.log_lines(" rat ").iter().any(|l| l.contains("rcpt=<user@elsewhere.test>")),
        "the RAT refusal is logged\n{}",
        server.log()
    );

    // CONTINUE: 127.0.0.45 matches SKIPPED first, which is skipped; nothing
    // else matches, so it is unmatched too.
    let (mut c, banner) = connect(&server, 45);
    assert_eq!(banner.code, 220, "{banner:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert_hat(&server, 45, "(unmatched)", "ACCEPTED", "accepted");

    // First match wins: 127.0.0.25 is in SKIPPED (skipped), FIRST and the
    // BLOCKLIST range; FIRST is the first that counts.
    let (mut c, banner) = connect(&server, 25);
    assert_eq!(banner.code, 220, "{banner:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert_hat(&server, 25, "FIRST", "ACCEPTED", "accepted");

    // An octet range in the prefix form: 127.0.1.0–127.0.2.255.
    for (source, group) in [(Ipv4Addr::new(127, 0, 2, 5), "group=PARTIAL "), (Ipv4Addr::new(127, 0, 3, 5), "group=(unmatched) ")] {
        let (mut c, banner) = RawSmtp::connect_from(server.addr(), source).unwrap();
        assert_eq!(banner.code, 220, "{banner:?}");
        assert_eq!(c.cmd("QUIT").unwrap().code, 221);
        let peer = format!(" peer={source}:");
        let conn = server.wait_for_log(&peer, 1, WAIT)[0]
            .split_whitespace()
            .find(|w| w.starts_with("conn="))
            .map(|w| format!("{w} "))
            .unwrap();
        let hat = server.wait_for_log(&conn, 2, WAIT);
        assert!(hat.iter().any(|l| l.contains(" hat ") && l.contains(group)), "{source}: {hat:#?}");
    }

    // A REJECT banner with a 421 code closes at once (RFC 5321 §3.8).
    let (mut c, banner) = connect(&server, 46);
    assert_eq!((banner.code, banner.text().as_str()), (421, "portcullis.test busy, try later"));
    assert!(c.is_closed_within(WAIT), "closed after a 421 banner");
    assert_hat(&server, 46, "BUSY", "BUSY", "rejected");

    // Range: 127.0.0.21 → BLOCKED, REJECT at the banner with the variables
    // substituted; 503 5.5.1 to everything but QUIT.
    let (mut c, banner) = connect(&server, 21);
    assert_eq!(banner.code, 554, "{banner:?}");
    assert_eq!(banner.text(), "127.0.0.21 (BLOCKLIST) refused by portcullis.test");
    for cmd in [
        "EHLO client.test",
        "MAIL FROM:<a@client.test>",
        "RCPT TO:<user@example.test>",
        "DATA",
        "NOOP",
        "RSET",
    ] {
        let reply = c.cmd(cmd).unwrap();
        assert!(is(&reply, 503, "5.5.1"), "{cmd} after a REJECT banner: {reply:?}");
    }
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert!(c.is_closed_within(WAIT), "closed after QUIT");
    assert_hat(&server, 21, "BLOCKLIST", "BLOCKED", "rejected");
    let line = hat_line(&server, 21);
    assert!(line.contains("entry=\"127.0.0.20-29\""), "the log names the entry that matched: {line}");
    // Pipelined, with a "message" in it: nothing is a DATA body; the
    // commands get 503 5.5.1, the body lines are unknown commands (500
    // 5.5.2), QUIT gets 221.
    let (mut c, banner) = connect(&server, 22);
    assert_eq!(banner.code, 554, "{banner:?}");
    c.send(b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nSubject: x\r\n.\r\nQUIT\r\n").unwrap();
    let replies = c.read_replies(6).unwrap();
    for (i, reply) in replies.iter().enumerate() {
        let want = if i < 4 { (503, "5.5.1") } else { (500, "5.5.2") };
        assert!(is(reply, want.0, want.1), "pipelined line {i} after a REJECT banner: {replies:?}");
    }
    assert_eq!(c.read_reply().unwrap().code, 221);
    assert!(c.is_closed_within(WAIT));
    // The range's other end.
    let (mut c, banner) = connect(&server, 29);
    assert_eq!(banner.code, 554, "{banner:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert_hat(&server, 29, "BLOCKLIST", "BLOCKED", "rejected");

    // REJECT with reject_at = "rcpt": the session runs, every RCPT gets the
    // reject reply, and the log names who was targeted.
    let (mut c, banner) = connect(&server, 40);
    assert_eq!(banner.code, 220, "{banner:?}");
    ehlo(&mut c);
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").unwrap().code, 250);
    for rcpt in ["ceo@example.test", "cfo@example.test", "x@elsewhere.test"] {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).unwrap();
        assert!(is(&reply, 550, "5.7.1"), "{rcpt}: {reply:?}");
        assert!(reply.text().contains("Mail from 127.0.0.40 is not accepted"), "{reply:?}");
    }
    let data = c.cmd("DATA").unwrap();
    assert_eq!(data.code, 554, "DATA without a recipient: {data:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert_hat(&server, 40, "QUARANTINE", "QUARANTINE", "rejected_at_rcpt");
    for rcpt in ["ceo@example.test", "cfo@example.test"] {
        let lines = server.wait_for_log(&format!("<{rcpt}>"), 1, WAIT);
        assert!(
            lines.iter().any(|l| l.contains("cmd=RCPT") && l.contains("550 5.7.1")),
            "the targeted recipient and its refusal are logged: {lines:#?}"
        );
    }

    // TCPREFUSE: a reset before any byte; never a banner.
    let mut raw = tcp_from(server.addr(), ip(41)).expect("the kernel accepts the SYN");
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    match raw.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("TCPREFUSE sent {n} bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("TCPREFUSE: expected a reset or EOF, got {e}"),
    }
    assert_hat(&server, 41, "REFUSED", "DROP", "tcprefused");

    // Nothing from any of these reached the sink: a control message from
    // an accepted client is the only one.
    let (mut c, _) = connect(&server, 50);
    ehlo(&mut c);
    let end = message(&mut c, &["control@example.test"], "control");
    assert_eq!(end.code, 250, "{end:?}");
    let messages = sink.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].recipients(), ["control@example.test"]);
}

#[test]
fn relay_takes_any_recipient_and_keeps_its_limits() {
    let sink = Sink::start();
    let (_file, server) = start(&sink, "");
    // CIDR 127.0.0.32/30: .33 and .35 are in it, .36 is not.
    let (mut c, banner) = connect(&server, 33);
    assert_eq!(banner.code, 220, "{banner:?}");
    ehlo(&mut c);
    assert_eq!(c.cmd("MAIL FROM:<out@client.test>").unwrap().code, 250);
    for rcpt in ["someone@elsewhere.test", "other@far.example"] {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).unwrap();
        assert!(is(&reply, 250, "2.1.5"), "RELAY, no RAT: {rcpt}: {reply:?}");
    }
    let third = c.cmd("RCPT TO:<third@elsewhere.test>").unwrap();
    assert!(is(&third, 452, "4.5.3"), "OUTBOUND's max_recipients_per_message = 2: {third:?}");
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    c.send(b"Subject: out\r\n\r\nrelayed\r\n.\r\n").unwrap();
    let end = c.read_reply().unwrap();
    assert_eq!(end.code, 250, "{end:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert_hat(&server, 33, "OUTBOUND", "OUTBOUND", "relayed");
    let line = hat_line(&server, 33);
    assert!(line.contains("entry=\"127.0.0.32/30\""), "the log names the entry that matched: {line}");

    let messages = sink.wait_for_recipients(2, WAIT);
    let mut rcpts: Vec<String> = messages.iter().flat_map(|m| m.recipients()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["other@far.example", "someone@elsewhere.test"]);

    let (mut c, _) = connect(&server, 35);
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert_hat(&server, 35, "OUTBOUND", "OUTBOUND", "relayed");
    // Just outside the CIDR: unmatched, the RAT applies.
    let (mut c, _) = connect(&server, 36);
    ehlo(&mut c);
    assert_eq!(c.cmd("MAIL FROM:<out@client.test>").unwrap().code, 250);
    let reply = c.cmd("RCPT TO:<someone@elsewhere.test>").unwrap();
    assert!(is(&reply, 550, "5.7.1"), "{reply:?}");
    assert_hat(&server, 36, "(unmatched)", "ACCEPTED", "accepted");
}

#[test]
fn policy_limits_and_banner_variables() {
    let sink = Sink::start();
    let (_file, server) = start(&sink, "");
    let (mut c, banner) = connect(&server, 42);
    assert_eq!(banner.code, 220);
    assert_eq!(
        banner.text(),
        "edge.example.test ready for 127.0.0.42 in TIGHT/TIGHT at 127.0.0.1",
        "banner_hostname, $RemoteIP, $Group, $Policy, $LocalIP"
    );
    let ehlo_reply = ehlo(&mut c);
    assert!(ehlo_reply.contains("SIZE 4096"), "the policy's SIZE: {ehlo_reply:?}");

    // max_message_size: declared over it, and sent over it.
    let mail = c.cmd("MAIL FROM:<a@client.test> SIZE=5000").unwrap();
    assert!(is(&mail, 552, "5.3.4"), "{mail:?}");
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<big@example.test>").unwrap().code, 250);
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..60 {
        body.extend_from_slice(format!("{}\r\n", "x".repeat(98)).as_bytes());
    }
    body.extend_from_slice(b".\r\n");
    c.send(&body).unwrap();
    let end = c.read_reply().unwrap();
    assert!(is(&end, 552, "5.3.4"), "6000 octets over 4096: {end:?}");

    // max_recipients_per_message = 3 (below 100: a policy's right).
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").unwrap().code, 250);
    for i in 1..=3 {
        assert_eq!(c.cmd(&format!("RCPT TO:<r{i}@example.test>")).unwrap().code, 250);
    }
    let fourth = c.cmd("RCPT TO:<r4@example.test>").unwrap();
    assert!(is(&fourth, 452, "4.5.3"), "{fourth:?}");
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    c.send(b"Subject: first\r\n\r\nbody\r\n.\r\n").unwrap();
    assert_eq!(c.read_reply().unwrap().code, 250, "message 1");

    // max_messages_per_connection = 2: the second is accepted, then 421.
    assert_eq!(message(&mut c, &["two@example.test"], "second").code, 250);
    let third = c.cmd("MAIL FROM:<a@client.test>").unwrap();
    assert!(is(&third, 421, "4.7.0"), "after 2 messages: {third:?}");
    assert!(c.is_closed_within(WAIT), "closed after the 421");
    let messages = sink.wait_for_messages(2, WAIT);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_hat(&server, 42, "TIGHT", "TIGHT", "accepted");
    // Each limit decision is one mail log line naming its rule and value
    // (the log is buffered per shard: wait for it).
    for (rule, max) in [("max_message_size", 4096), ("max_recipients_per_message", 3), ("max_messages_per_connection", 2)] {
        let want = format!("group=TIGHT policy=TIGHT rule={rule} max={max} ");
        let logged = wait_until(WAIT, || server.log().lines().any(|l| l.contains(" limit ") && l.contains(&want)));
        assert!(logged, "no limit line {want:?}\n{}", server.log());
    }
}

/// 1 + `count` messages on one connection from 127.0.0.`last`: how many
/// got 250 before the 421 4.7.0 (or all of them).
fn messages_until_421(server: &Portcullis, last: u8, count: usize) -> usize {
    let (mut c, banner) = connect(server, last);
    assert_eq!(banner.code, 220, "{banner:?}");
    ehlo(&mut c);
    for n in 0..count {
        let reply = message(&mut c, &[&format!("m{n}@example.test")], "n");
        if reply.code == 421 {
            assert!(is(&reply, 421, "4.7.0"), "{reply:?}");
            assert!(c.is_closed_within(WAIT), "closed after the 421");
            return n;
        }
        assert_eq!(reply.code, 250, "message {n}: {reply:?}");
    }
    count
}

#[test]
fn default_policy_and_predefined_policies_are_inherited() {
    let sink = Sink::start();
    let (_file, server) = start(&sink, "");
    // THROTTLED: ESA's max_messages_per_connection = 1.
    assert_eq!(messages_until_421(&server, 43, 3), 1, "THROTTLED");
    assert_hat(&server, 43, "SUSPECT", "THROTTLED", "accepted");
    // INHERITS sets 3 itself and inherits [default_policy]'s 7 recipients.
    assert_eq!(messages_until_421(&server, 44, 5), 3, "INHERITS");
    let (mut c, banner) = connect(&server, 44);
    assert_eq!(banner.text(), "portcullis.test ESMTP default", "[default_policy] banner_text");
    ehlo(&mut c);
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").unwrap().code, 250);
    for i in 1..=7 {
        let reply = c.cmd(&format!("RCPT TO:<r{i}@example.test>")).unwrap();
        assert_eq!(reply.code, 250, "rcpt {i}: {reply:?}");
    }
    let eighth = c.cmd("RCPT TO:<r8@example.test>").unwrap();
    assert!(is(&eighth, 452, "4.5.3"), "[default_policy] max_recipients_per_message = 7: {eighth:?}");
    // THROTTLED's own layer (25 recipients) beats [default_policy]'s 7.
    let (mut c, _) = connect(&server, 43);
    ehlo(&mut c);
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").unwrap().code, 250);
    for i in 1..=8 {
        let reply = c.cmd(&format!("RCPT TO:<r{i}@example.test>")).unwrap();
        assert_eq!(reply.code, 250, "THROTTLED rcpt {i}: {reply:?}");
    }
}

#[test]
fn a_predefined_policy_can_be_overridden() {
    let sink = Sink::start();
    let (_file, server) = start(&sink, "[policy.THROTTLED]\nmax_messages_per_connection = 2\n");
    assert_eq!(messages_until_421(&server, 43, 4), 2, "[policy.THROTTLED] override");
    assert_hat(&server, 43, "SUSPECT", "THROTTLED", "accepted");
}
