//! STARTTLS (RFC 3207) and AUTH (RFC 4954) transcripts against the pure
//! session: what is advertised under each tier, what is refused before TLS
//! or AUTH, the pipelining defence, the fresh start after the handshake,
//! and the SASL exchanges of PLAIN and LOGIN.

use super::*;
use crate::smtp::session::{AuthTier, TlsTier};

pub(super) fn tls_info(peer_subject: Option<&str>) -> TlsInfo {
    TlsInfo { version: "TLSv1.3", cipher: "TLS13_AES_128_GCM_SHA256".into(), peer_subject: peer_subject.map(str::to_string) }
}

fn under(tls: TlsTier, auth: AuthTier, auth_needs_tls: bool) -> Session {
    let mut p = (*policy()).clone();
    p.tls = tls;
    p.auth = auth;
    p.auth_needs_tls = auth_needs_tls;
    admitted(Arc::new(p))
}

fn talk(s: &mut Session, input: &str) -> String {
    run(s, input.as_bytes(), &mut Vec::new()).0
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn starttls_is_advertised_by_tier_and_not_once_active() {
    let mut off = under(TlsTier::Off, AuthTier::Off, true);
    assert!(!talk(&mut off, "EHLO c.test\r\n").contains("STARTTLS"));
    assert_eq!(talk(&mut off, "STARTTLS\r\n"), "502 5.5.1 Error: command not implemented\r\n");
    let mut preferred = under(TlsTier::Preferred, AuthTier::Off, true);
    assert!(talk(&mut preferred, "EHLO c.test\r\n").contains("250 STARTTLS\r\n"));
    assert_eq!(talk(&mut preferred, "STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(preferred.tls().map(|t| t.version), Some("TLSv1.3"));
    let ehlo = talk(&mut preferred, "EHLO c.test\r\n");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(talk(&mut preferred, "STARTTLS\r\n"), "503 5.5.1 Error: TLS already active\r\n");
}

#[test]
fn required_tls_refuses_mail_in_clear_with_530() {
    let mut s = under(TlsTier::Required, AuthTier::Off, true);
    let out = talk(&mut s, "EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\n");
    assert!(out.ends_with("530 5.7.0 Must issue a STARTTLS command first\r\n"), "{out}");
    let out = talk(&mut s, "STARTTLS\r\n");
    assert_eq!(out, "220 2.0.0 Ready to start TLS\r\n");
    // RFC 3207 §4.2: the session starts over, EHLO is needed again.
    assert_eq!(talk(&mut s, "MAIL FROM:<a@sender.test>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
    let out = talk(&mut s, "EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\n");
    assert!(out.ends_with("250 2.1.0 Ok\r\n"), "{out}");
}

#[test]
fn required_verify_needs_a_client_certificate() {
    let mut s = under(TlsTier::RequiredVerify, AuthTier::Off, true);
    talk(&mut s, "EHLO c.test\r\n");
    s.feed(b"STARTTLS\r\n");
    assert!(matches!(s.next_action(), Action::StartTls));
    s.tls_started(tls_info(None));
    let out = talk(&mut s, "EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\n");
    assert!(out.ends_with("530 5.7.0 Error: a trusted client certificate is required\r\n"), "{out}");
    let mut s = under(TlsTier::RequiredVerify, AuthTier::Off, true);
    talk(&mut s, "EHLO c.test\r\n");
    s.feed(b"STARTTLS\r\n");
    assert!(matches!(s.next_action(), Action::StartTls));
    s.tls_started(tls_info(Some("CN=client.test")));
    assert!(talk(&mut s, "EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\n").ends_with("250 2.1.0 Ok\r\n"));
}

#[test]
fn bytes_pipelined_after_starttls_are_discarded_and_the_session_closes() {
    // CVE-2011-0411: "STARTTLS\r\nRSET\r\n" in one packet.
    let mut s = under(TlsTier::Preferred, AuthTier::Off, true);
    talk(&mut s, "EHLO c.test\r\n");
    let (out, closed) = run(&mut s, b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n", &mut Vec::new());
    assert_eq!(out, "421 4.7.0 mx.example.test Error: data pipelined after STARTTLS, closing connection\r\n");
    assert!(closed && s.tls().is_none());
}

#[test]
fn starttls_inside_a_transaction_is_refused() {
    let mut s = under(TlsTier::Preferred, AuthTier::Off, true);
    let out = talk(&mut s, "EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\nSTARTTLS\r\n");
    assert!(out.ends_with("503 5.5.1 Error: MAIL transaction in progress\r\n"), "{out}");
}

#[test]
fn a_failed_handshake_closes_without_a_word() {
    let mut s = under(TlsTier::Preferred, AuthTier::Off, true);
    talk(&mut s, "EHLO c.test\r\n");
    s.feed(b"STARTTLS\r\n");
    assert!(matches!(s.next_action(), Action::StartTls));
    s.consume_output(s.output().len());
    s.tls_failed();
    assert!(matches!(s.next_action(), Action::Close));
    assert!(s.output().is_empty());
}

#[test]
fn auth_is_offered_only_over_tls_when_required() {
    let mut s = under(TlsTier::Preferred, AuthTier::Preferred, true);
    assert!(!talk(&mut s, "EHLO c.test\r\n").contains("AUTH"));
    let out = talk(&mut s, &format!("AUTH PLAIN {}\r\n", b64("\0alice\0right")));
    assert_eq!(out, "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    talk(&mut s, "STARTTLS\r\n");
    assert!(talk(&mut s, "EHLO c.test\r\n").contains("250 AUTH PLAIN LOGIN\r\n"));
    let mut clear = under(TlsTier::Off, AuthTier::Preferred, false);
    assert!(talk(&mut clear, "EHLO c.test\r\n").contains("AUTH PLAIN LOGIN"));
    let mut off = under(TlsTier::Preferred, AuthTier::Off, true);
    talk(&mut off, "EHLO c.test\r\n");
    assert_eq!(talk(&mut off, "AUTH LOGIN\r\n"), "503 5.5.1 Error: authentication not enabled\r\n");
}

#[test]
fn auth_plain_with_initial_response_and_after_a_challenge() {
    let mut s = under(TlsTier::Off, AuthTier::Preferred, false);
    talk(&mut s, "EHLO c.test\r\n");
    assert_eq!(talk(&mut s, &format!("AUTH PLAIN {}\r\n", b64("\0alice\0wrong"))), "535 5.7.8 Error: authentication failed\r\n");
    assert_eq!(talk(&mut s, "AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(talk(&mut s, &format!("{}\r\n", b64("\0alice\0right"))), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(s.authenticated(), Some("alice"));
    assert!(!talk(&mut s, "EHLO c.test\r\n").contains("AUTH"), "not offered again after success");
    assert_eq!(talk(&mut s, "AUTH PLAIN =\r\n"), "503 5.5.1 Error: already authenticated\r\n");
}

#[test]
fn auth_login_exchange_cancel_and_garbage() {
    let mut s = under(TlsTier::Off, AuthTier::Preferred, false);
    talk(&mut s, "EHLO c.test\r\n");
    assert_eq!(talk(&mut s, "AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(talk(&mut s, "*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
    assert_eq!(talk(&mut s, "AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(talk(&mut s, "not base64!\r\n"), "501 5.5.2 Error: cannot decode the response\r\n");
    assert_eq!(talk(&mut s, &format!("AUTH LOGIN {}\r\n", b64("alice"))), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(talk(&mut s, &format!("{}\r\n", b64("right"))), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(talk(&mut s, "AUTH CRAM-MD5\r\n"), "503 5.5.1 Error: already authenticated\r\n");
    let mut s = under(TlsTier::Off, AuthTier::Preferred, false);
    talk(&mut s, "EHLO c.test\r\n");
    assert_eq!(talk(&mut s, "AUTH CRAM-MD5\r\n"), "504 5.5.4 Error: unsupported authentication mechanism\r\n");
}

#[test]
fn credentials_never_reach_the_log() {
    let mut s = under(TlsTier::Off, AuthTier::Preferred, false);
    talk(&mut s, &format!("EHLO c.test\r\nAUTH PLAIN {}\r\nAUTH LOGIN\r\n{}\r\n{}\r\n", b64("\0alice\0wrong"), b64("alice"), b64("right")));
    let events: Vec<Event> = s.drain_events().collect();
    let text = format!("{events:?}");
    assert!(!text.contains(&b64("\0alice\0wrong")) && !text.contains(&b64("right")) && !text.contains("wrong"), "{text}");
    assert!(events.iter().any(|e| e.command == "AUTH" && e.reply.code == 235));
}

#[test]
fn required_auth_refuses_mail_first_and_authenticated_rcpts_may_relay() {
    let mut s = under(TlsTier::Off, AuthTier::Required, false);
    let out = talk(&mut s, "EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\n");
    assert!(out.ends_with("530 5.7.0 Authentication required\r\n"), "{out}");
    talk(&mut s, &format!("AUTH PLAIN {}\r\n", b64("\0alice\0right")));
    let out = talk(&mut s, "MAIL FROM:<a@sender.test>\r\nRCPT TO:<someone@elsewhere.test>\r\n");
    assert!(out.ends_with("250 2.1.5 Ok\r\n"), "the question says authenticated: {out}");
}
