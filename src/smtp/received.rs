//! The Received: trace header we prepend to every accepted message (RFC 5321 §4.4).

use crate::message::{Envelope, QueueId};

/// `Received: from HELO (ip) by HOSTNAME (Portcullis) with ESMTP id QID; DATE`
/// plus the connection id as a comment, folded, CRLF-terminated. `date` is
/// an RFC 5322 date-time passed in by the caller (the pure core has no clock).
pub fn header(envelope: &Envelope, queue_id: &QueueId, hostname: &str, date: &str) -> Vec<u8> {
    let recipient = match envelope.recipients.as_slice() {
        [only] => format!("\r\n\tfor <{only}>"),
        _ => String::new(),
    };
    format!(
        "Received: from {helo} ({ip})\r\n\tby {hostname} (Portcullis) with {proto} id {queue_id}\r\n\t(connection {conn}){recipient}; {date}\r\n",
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
        };
        let h = String::from_utf8(header(&env, &QueueId("Q1".into()), "mx.test", "Sun, 22 Nov 2026 07:00:00 +0000")).unwrap();
        assert!(h.starts_with("Received: from client.testX-Evil: 1 ([127.0.0.1])\r\n"), "{h}");
        assert!(h.contains("with ESMTP id Q1"));
        assert!(h.contains("(connection C1f)"));
        assert!(h.ends_with("; Sun, 22 Nov 2026 07:00:00 +0000\r\n"));
        assert_eq!(h.matches("\r\n").count(), 4);
    }
}
