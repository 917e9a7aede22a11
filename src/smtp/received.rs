//! The Received: trace header we prepend to every accepted message (RFC 5321 §4.4).

use crate::message::{Envelope, QueueId};

/// `Received: from HELO (ip) by HOSTNAME (Portcullis) with ESMTP id QID; DATE`
/// plus the connection id as a comment, folded, CRLF-terminated. Over TLS
/// the protocol is ESMTPS (RFC 3848) and a comment names the TLS version
/// and cipher, as Postfix writes it. `date` is an RFC 5322 date-time passed
/// in by the caller (the pure core has no clock).
pub fn header(envelope: &Envelope, queue_id: &QueueId, hostname: &str, date: &str) -> Vec<u8> {
    let recipient = match envelope.recipients.as_slice() {
        [only] => format!("\r\n\tfor <{only}>"),
        _ => String::new(),
    };
    let tls = match &envelope.secured.tls {
        Some(tls) => format!("\r\n\t(using {} with cipher {})", tls.version, tls.cipher),
        None => String::new(),
    };
    format!(
        "Received: from {helo} ({ip}){tls}\r\n\tby {hostname} (Portcullis) with {proto} id {queue_id}\r\n\t(connection {conn}){recipient}; {date}\r\n",
        helo = sanitize(&envelope.helo),
        ip = sanitize_ip(envelope.peer.ip()),
        proto = envelope.protocol(),
        conn = envelope.connection_id,
    )
    .into_bytes()
}

fn sanitize(text: &str) -> String {
    // The HELO argument is client-controlled: keep it printable, no header injection.
    let s: String = text.chars().filter(|c| !c.is_control() && *c != '(' && *c != ')').take(255).collect();
    if s.is_empty() { "unknown".to_string() } else { s }
}

fn sanitize_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("[{v4}]"),
        std::net::IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::BodyType;

    #[test]
    fn header_names_helo_ip_queue_and_connection() {
        let env = Envelope {
            connection_id: "C1f".into(),
            peer: "127.0.0.1:40000".parse().unwrap(),
            helo: "client.test\r\nX-Evil: 1".into(),
            esmtp: true,
            mail_from: "a@b.test".into(),
            body_type: BodyType::SevenBit,
            smtputf8: false,
            recipients: vec!["u@example.test".into()],
            ldap_routing: String::new(),
            relayed: false,
            secured: Default::default(),
            ..Default::default()
        };
        let h = String::from_utf8(header(&env, &QueueId("Q1".into()), "mx.test", "Sun, 22 Nov 2026 07:00:00 +0000")).unwrap();
        assert!(h.starts_with("Received: from client.testX-Evil: 1 ([127.0.0.1])\r\n"), "{h}");
        assert!(h.contains("with ESMTP id Q1"));
        assert!(h.contains("(connection C1f)"));
        assert!(h.ends_with("; Sun, 22 Nov 2026 07:00:00 +0000\r\n"));
        assert_eq!(h.matches("\r\n").count(), 4);
    }

    #[test]
    fn tls_and_auth_show_in_the_protocol_and_a_comment() {
        let mut env = Envelope {
            connection_id: "C1".into(),
            peer: "127.0.0.1:40000".parse().unwrap(),
            helo: "client.test".into(),
            esmtp: true,
            mail_from: String::new(),
            body_type: BodyType::SevenBit,
            smtputf8: false,
            recipients: vec!["a@example.test".into(), "b@example.test".into()],
            ldap_routing: String::new(),
            relayed: false,
            secured: Default::default(),
            ..Default::default()
        };
        let tls = crate::tls::TlsInfo { version: "TLSv1.3", cipher: "TLS13_AES_256_GCM_SHA384".into(), peer_subject: None };
        env.secured.tls = Some(tls);
        let h = String::from_utf8(header(&env, &QueueId("Q".into()), "mx.test", "D")).unwrap();
        assert!(h.contains("([127.0.0.1])\r\n\t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n"), "{h}");
        assert!(h.contains("with ESMTPS id Q"), "{h}");
        env.secured.authenticated = Some("alice".into());
        env.smtputf8 = true;
        let h = String::from_utf8(header(&env, &QueueId("Q".into()), "mx.test", "D")).unwrap();
        assert!(h.contains("with UTF8SMTPSA id Q") && !h.contains("alice"), "{h}");
        env.esmtp = false;
        assert_eq!(env.protocol(), "SMTP");
    }
}
