//! End to end: Portcullis is not an open relay, whatever the address form.
//!
//! Each form below is offered as `RCPT TO:<form>` in its own real SMTP
//! session (one session each, so the error limit never closes a session
//! early and every answer is about the form alone). Every form is refused
//! with a 5xx: 550 5.7.1 when it is a relay attempt (the final mailbox is
//! not in a relay domain, or the local part still routes elsewhere through
//! `%`, `!` or a quoted `@`), 501 5.1.3 when it is not RFC 5321 syntax. The
//! client then asks for DATA anyway and would send a body if it got 354, so
//! a refusal that does not stick would show up at the sink. A legitimate
//! control message goes last; once it arrived, the sink must hold it alone.
//!
//! And the one domain-less recipient RFC 5321 §4.5.1 requires, `postmaster`,
//! is accepted and delivered as postmaster@example.test.

mod common;

use common::*;

/// What the refusal must be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// 550 5.7.1: relaying denied.
    Relay,
    /// 501 5.1.3: bad recipient address syntax.
    Syntax,
}

use Expect::*;

/// The forms, as they go between the angle brackets.
const FORMS: &[(&str, Expect)] = &[
    // Percent hack, quoted @, bang path: our domain, but routes elsewhere.
    ("user%outside.test@example.test", Relay),
    ("\"user@outside.test\"@example.test", Relay),
    ("outside.test!user@example.test", Relay),
    ("\"user%outside.test\"@example.test", Relay),
    ("\"user!x\"@example.test", Relay),
    ("\"user\\@outside.test\"@example.test", Relay),
    ("user%outside.test%example.test@example.test", Relay),
    // Source routes are dropped: the final mailbox is outside.
    ("@example.test:user@outside.test", Relay),
    ("@a,@b:user@outside.test", Relay),
    ("@outside.test:\"user%x\"@example.test", Relay),
    // Plainly somewhere else, or only looking like ours.
    ("user@outside.test", Relay),
    ("user@[127.0.0.1]", Relay),
    ("user@[IPv6:::1]", Relay),
    ("user@EXAMPLE.TEST.outside.test", Relay),
    ("user@sub.example.test", Relay),
    ("user@localhost", Relay),
    // Not RFC 5321 §4.1.2 syntax.
    ("user@outside.test@example.test", Syntax),
    ("user\\@outside.test@example.test", Syntax),
    ("user@example.test.", Syntax),
    ("user@outside.test%example.test", Syntax),
    ("user@example.test,user@outside.test", Syntax),
    ("user@outside.test:example.test", Syntax),
    ("\"user@outside.test\"", Syntax),
    ("user%outside.test", Syntax),
    ("outside.test!user", Syntax),
    ("user@[example.test]", Syntax),
];

const CONTROL_RCPT: &str = "control@example.test";

/// One session: MAIL, RCPT <form>, then DATA (and a body if DATA says 354).
/// Returns the RCPT reply and the DATA reply.
fn offer(server: &Portcullis, form: &str) -> (Reply, Reply) {
    let (mut client, greeting) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(greeting.code, 220);
    assert_eq!(client.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(
        client
            .cmd("MAIL FROM:<relay-probe@client.test>")
            .unwrap()
            .code,
        250
    );
    let rcpt = client.cmd(&format!("RCPT TO:<{form}>")).unwrap();
    let data = client.cmd("DATA").unwrap();
    if data.code == 354 {
        client
            .send(format!("Subject: relayed to {form}\r\n\r\nrelay test\r\n.\r\n").as_bytes())
            .unwrap();
        client.read_reply().unwrap();
    }
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    (rcpt, data)
}

#[test]
fn every_relay_form_is_refused_and_nothing_reaches_the_sink() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).start();
    relay_battery(&server, &sink);
}

/// The same through a listener that calls every recipient ahead: a form
/// the RAT refuses is never probed, so the only call-ahead decision is the
/// control message's recipient.
#[test]
fn every_relay_form_is_refused_with_callahead_on_and_none_is_probed() {
    let sink = Sink::start();
    let (server, _config) = common::guarded::portcullis_with_callahead(&sink);
    relay_battery(&server, &sink);
    let decisions = server.wait_for_log(" callahead ", 1, WAIT);
    assert_eq!(decisions.len(), 1, "{decisions:#?}");
    assert!(decisions[0].contains(&format!("rcpt=<{CONTROL_RCPT}>")) && decisions[0].contains("source=probe verdict=accepted"), "{decisions:#?}");
}

fn relay_battery(server: &Portcullis, sink: &Sink) {
    assert!(FORMS.len() >= 20);
    let mut table = String::new();
    let mut wrong = Vec::new();
    for &(form, expect) in FORMS {
        let (rcpt, data) = offer(server, form);
        let got = format!("{} {}", rcpt.code, rcpt.text());
        table.push_str(&format!("  <{form}> -> {got} | DATA {}\n", data.code));
        let ok = match expect {
            Relay => rcpt.code == 550 && rcpt.text().starts_with("5.7.1 "),
            Syntax => rcpt.code == 501 && rcpt.text().starts_with("5.1.3 "),
        };
        if !ok || data.code == 354 {
            wrong.push(format!(
                "<{form}>: expected {expect:?}, got {got}, DATA {}",
                data.code
            ));
        }
    }
    eprintln!("RCPT replies per form:\n{table}");

    // The control message, last: when it is in, everything before it is too.
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    let reply = client
        .send_mail(
            "control@client.test",
            &[CONTROL_RCPT],
            b"Subject: control\r\n\r\nok\r\n",
        )
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    let messages = sink.wait_for_messages(1, WAIT);
    // Nothing but the control message may even be queued: once every
    // session's disconnect is in the log, every "queued" line before it is.
    server.wait_for_log(" disconnect ", FORMS.len() + 1, WAIT);
    let queued = server.event_lines("queued");
    assert_eq!(
        queued.len(),
        1,
        "only the control message is queued: {queued:#?}"
    );
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].recipients(), [CONTROL_RCPT]);
    assert_eq!(messages[0].sender(), "control@client.test");
    assert!(
        wrong.is_empty(),
        "refused wrongly:\n{}\nall:\n{table}",
        wrong.join("\n")
    );
}

#[test]
fn postmaster_without_domain_is_delivered_to_the_relay_domain() {
    let sink = Sink::start();
    let server = Portcullis::builder().route("*", &sink).start();
    let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
    assert_eq!(client.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(
        client.cmd("MAIL FROM:<someone@client.test>").unwrap().code,
        250
    );
    let rcpt = client.cmd("RCPT TO:<postmaster>").unwrap();
    assert_eq!((rcpt.code, rcpt.text()), (250, "2.1.5 Ok".to_owned()));
    assert_eq!(client.cmd("DATA").unwrap().code, 354);
    client
        .send(b"Subject: to the postmaster\r\n\r\nhello\r\n.\r\n")
        .unwrap();
    assert_eq!(client.read_reply().unwrap().code, 250);
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);

    let messages = sink.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].recipients(), ["postmaster@example.test"]);
    assert_eq!(
        messages[0].header("subject").as_deref(),
        Some("to the postmaster")
    );
}

