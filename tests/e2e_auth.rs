//! End to end: SMTP AUTH (RFC 4954, issue 9 item 3) against real clients:
//! `swaks --tls --auth PLAIN|LOGIN` over STARTTLS, and [`RawSmtp`] where a
//! test needs the exact reply. The scenario (policies by client address,
//! the password file, the sink) is `common::auth`. Here: the relay of an
//! authenticated session (outside the RAT, as ESMTPSA, within its policy's
//! limits), every refusal of the exchange, and the mail log (the `auth`
//! line joined to the session by `conn=`, never a credential). Brute
//! force is `e2e_auth_brute_force.rs`, the LDAP backend `e2e_auth_ldap.rs`.

mod common;

use common::auth::*;
use common::*;
use std::net::Ipv4Addr;

#[test]
fn plain_over_starttls_relays_outside_the_rat_as_esmtpsa() {
    let s = setup();
    // Without AUTH the same mail is refused by the RAT: this test can fail.
    let anonymous = Swaks::new(s.server.addr()).to(OUTSIDE).arg("--tls").run();
    assert_eq!(
        anonymous.code_for("RCPT"),
        Some(550),
        "{}",
        anonymous.transcript()
    );
    let r = swaks_auth(
        &s,
        Ipv4Addr::LOCALHOST,
        "PLAIN",
        ALICE,
        ALICE_PASSWORD,
        OUTSIDE,
    );
    assert_relayed_as(&s, &r, ALICE, ALICE_PASSWORD, 1);
}

#[test]
fn login_over_starttls_relays_outside_the_rat_as_esmtpsa() {
    let s = setup();
    let r = swaks_auth(&s, Ipv4Addr::LOCALHOST, "LOGIN", BOB, BOB_PASSWORD, OUTSIDE);
    assert!(
        r.replies.iter().any(|(_, code, _)| *code == 334),
        "LOGIN asks twice: {}",
        r.transcript()
    );
    assert_relayed_as(&s, &r, BOB, BOB_PASSWORD, 1);
}

#[test]
fn a_wrong_password_gets_535_5_7_8_and_is_logged_without_it() {
    let s = setup();
    for mechanism in ["PLAIN", "LOGIN"] {
        let r = swaks_auth(
            &s,
            Ipv4Addr::LOCALHOST,
            mechanism,
            ALICE,
            "not-the-password",
            OUTSIDE,
        );
        let refusal =
            reply_to(&r, 535).unwrap_or_else(|| panic!("{mechanism}: {}", r.transcript()));
        assert!(refusal.starts_with("535 5.7.8"), "{refusal}");
        assert_eq!(r.code_for("MAIL"), None, "swaks stops at the failed AUTH");
    }
    let failures = s.server.wait_for_log("result=failure", 2, WAIT);
    assert!(
        failures
            .iter()
            .all(|l| l.contains("user=\"alice\"") && l.contains(" conn=C")),
        "{failures:?}"
    );
    assert_no_secret_in_log(&s, ALICE, "not-the-password");
    assert_eq!(s.sink.count(), 0);
}

#[test]
fn auth_in_clear_is_not_offered_and_gets_538_when_tls_is_required_for_it() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect(s.server.addr()).unwrap();
    let ehlo = raw.cmd("EHLO client.test").unwrap();
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo:?}"
    );
    let reply = raw
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain_response(ALICE, ALICE_PASSWORD)
        ))
        .unwrap();
    assert_eq!(
        said(&reply),
        (
            538,
            "5.7.11 Encryption required for requested authentication mechanism".into()
        )
    );
    // Nothing was asked of the backend (RFC 4954 §4: refused before the exchange).
    assert!(
        s.server.event_lines("auth").is_empty(),
        "{}",
        s.server.log()
    );
    // And swaks over STARTTLS sees AUTH offered inside TLS.
    let r = swaks_auth(
        &s,
        Ipv4Addr::LOCALHOST,
        "PLAIN",
        ALICE,
        ALICE_PASSWORD,
        "rcpt@example.test",
    );
    assert!(
        r.output.stdout.contains("250-AUTH PLAIN LOGIN")
            || r.output.stdout.contains("250 AUTH PLAIN LOGIN"),
        "{}",
        r.transcript()
    );
    assert_eq!(r.final_code(), Some(250), "{}", r.transcript());
}

#[test]
fn auth_on_a_policy_with_smtp_auth_off_gets_503_5_5_1() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), NO_AUTH).unwrap();
    let ehlo = raw.cmd("EHLO client.test").unwrap();
    assert!(!ehlo.contains("AUTH"), "{ehlo:?}");
    let reply = raw
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain_response(ALICE, ALICE_PASSWORD)
        ))
        .unwrap();
    assert_eq!(
        (reply.code, reply.text().starts_with("5.5.1")),
        (503, true),
        "{reply:?}"
    );
    // Over TLS neither: swaks finds no AUTH to use and gives up (exit 28).
    let r = swaks_auth(&s, NO_AUTH, "PLAIN", ALICE, ALICE_PASSWORD, OUTSIDE);
    assert!(!r.output.stdout.contains("AUTH"), "{}", r.transcript());
    assert_eq!(
        (r.exit_code(), r.code_for("MAIL")),
        (Some(28), None),
        "{}",
        r.transcript()
    );
    assert_eq!(s.sink.count(), 0);
}

#[test]
fn malformed_base64_gets_501_5_5_2_and_the_session_goes_on() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), CLEAR).unwrap();
    let ehlo = raw.cmd("EHLO client.test").unwrap();
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN"),
        "require_tls_for_auth = false offers AUTH in clear: {ehlo:?}"
    );
    let reply = raw.cmd("AUTH PLAIN not*base64!").unwrap();
    assert_eq!(
        (reply.code, reply.text().starts_with("5.5.2")),
        (501, true),
        "{reply:?}"
    );
    // The same in the middle of a LOGIN exchange.
    assert_eq!(raw.cmd("AUTH LOGIN").unwrap().code, 334);
    let reply = raw.cmd("%%%").unwrap();
    assert_eq!(
        (reply.code, reply.text().starts_with("5.5.2")),
        (501, true),
        "{reply:?}"
    );
    // Not a failed password: not counted, and the right one still works.
    let reply = raw
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain_response(ALICE, ALICE_PASSWORD)
        ))
        .unwrap();
    assert_eq!(
        said(&reply),
        (235, "2.7.0 Authentication successful".into())
    );
    assert!(
        s.server.log_lines("result=failure").is_empty(),
        "{}",
        s.server.log()
    );
}

#[test]
fn smtp_auth_required_refuses_mail_before_auth_and_takes_it_after() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), REQUIRED).unwrap();
    raw.cmd("EHLO client.test").unwrap();
    let reply = raw.cmd("MAIL FROM:<someone@client.test>").unwrap();
    assert_eq!(
        (reply.code, reply.text().starts_with("5.7.0")),
        (530, true),
        "{reply:?}"
    );
    // swaks over TLS without AUTH: refused at MAIL, even to a RAT domain.
    let r = with_args(
        Swaks::new(s.server.addr()).to("rcpt@example.test"),
        &["--tls", "--local-interface", &REQUIRED.to_string()],
    )
    .run();
    assert_eq!(r.code_for("MAIL"), Some(530), "{}", r.transcript());
    // With AUTH: accepted, and relayed.
    let r = swaks_auth(&s, REQUIRED, "PLAIN", ALICE, ALICE_PASSWORD, OUTSIDE);
    assert_relayed_as(&s, &r, ALICE, ALICE_PASSWORD, 1);
}

#[test]
fn credentials_pipelined_after_a_refused_auth_never_reach_the_log() {
    // A client that pipelines its LOGIN responses (against RFC 4954 §4)
    // after an AUTH we refuse in clear (538): the two base64 lines are
    // then unknown commands, and the log must not name them.
    let s = setup();
    let (mut raw, _) = RawSmtp::connect(s.server.addr()).unwrap();
    raw.cmd("EHLO client.test").unwrap();
    let (user, password) = (base64(ALICE.as_bytes()), base64(ALICE_PASSWORD.as_bytes()));
    // And an initial response glued to its mechanism by a tab, or sent
    // without one: not a mechanism we know, so not shown either.
    let plain = plain_response(ALICE, ALICE_PASSWORD);
    raw.send(
        format!(
            "AUTH LOGIN\r\n{user}\r\n{password}\r\nAUTH PLAIN\t{plain}\r\nAUTH {plain}\r\nQUIT\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let codes: Vec<u16> = raw
        .read_replies(6)
        .unwrap()
        .iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [538, 500, 500, 538, 538, 221]);
    let commands = s.server.wait_for_log("cmd=QUIT", 1, WAIT);
    let log = s.server.log();
    let unknown = log
        .lines()
        .filter(|l| l.contains(" cmd=UNKNOWN arg=\"\" reply=\"500 "))
        .count();
    assert_eq!(unknown, 2, "{commands:?}\n{log}");
    // Not even upper-cased or cut short (as a verb used to be logged).
    for secret in [
        &password[..12],
        &password.to_uppercase()[..12],
        &user[..6],
        &plain[..12],
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}

#[test]
fn an_authenticated_session_relays_within_the_policys_limits() {
    let s = setup();
    let (mut raw, _) = RawSmtp::connect_from(s.server.addr(), LIMITED).unwrap();
    raw.cmd("EHLO client.test").unwrap();
    let reply = raw
        .cmd(&format!("AUTH PLAIN {}", plain_response(BOB, BOB_PASSWORD)))
        .unwrap();
    assert_eq!(reply.code, 235, "{reply:?}");
    let rcpt = |raw: &mut RawSmtp, n: usize| {
        raw.cmd(&format!("RCPT TO:<r{n}@elsewhere.example>"))
            .unwrap()
    };
    // max_recipients_per_message = 2: the third gets 452 4.5.3.
    assert_eq!(raw.cmd("MAIL FROM:<bob@client.test>").unwrap().code, 250);
    assert_eq!((rcpt(&mut raw, 1).code, rcpt(&mut raw, 2).code), (250, 250));
    let third = rcpt(&mut raw, 3);
    assert_eq!(
        (third.code, third.text().starts_with("4.5.3")),
        (452, true),
        "{third:?}"
    );
    assert_eq!(raw.cmd("RSET").unwrap().code, 250);
    // max_recipients_per_hour = 3 (the 452 above was not counted): one more, then 452.
    assert_eq!(raw.cmd("MAIL FROM:<bob@client.test>").unwrap().code, 250);
    assert_eq!(rcpt(&mut raw, 4).code, 250);
    let over = rcpt(&mut raw, 5);
    assert_eq!(over.code, 452, "{over:?}");
    assert!(
        over.text()
            .contains("Too many recipients received this hour"),
        "{over:?}"
    );
}
