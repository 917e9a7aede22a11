//! The transcript text: directive lines, `{c*n}` and escapes, decisions,
//! CONFIG settings, and the one-line envelope summary M: compares with.

use std::sync::Arc;

use portcullis::message::{BodyType, Message};
use portcullis::smtp::{Banner, ConnectionPolicy, Decision, Reply};

/// `admit [code text]` (under `policy`, with that banner), or a refuse/close decision.
pub fn parse_connect(policy: &ConnectionPolicy, rest: &str) -> Result<Decision, String> {
    {
        let Some(banner) = rest.strip_prefix("admit") else { return parse_decision(rest) };
        let mut policy = policy.clone();
        if let Some((code, text)) = banner.trim().split_once(' ') {
            let code = code.parse().map_err(|_| format!("bad banner code in A: {rest}"))?;
            policy.banner = Banner { code, text: text.to_string() };
        }
        Ok(Decision::Admit(Arc::new(policy)))
    }
}

/// `accept`, `refuse CODE ENHANCED text` or `close CODE ENHANCED text`.
pub fn parse_decision(rest: &str) -> Result<Decision, String> {
    if rest == "accept" {
        return Ok(Decision::Accept);
    }
    let mut words = rest.splitn(4, ' ');
    let (Some(kind), Some(code), Some(enhanced), Some(text)) = (words.next(), words.next(), words.next(), words.next()) else {
        return Err(format!("bad decision: {rest}"));
    };
    let enhanced = if enhanced == "-" { "" } else { enhanced }; // none, as in a greeting
    let reply = Reply::new(code.parse().map_err(|_| format!("bad code in {rest}"))?, enhanced, text);
    match kind {
        "refuse" => Ok(Decision::Refuse(reply)),
        "close" => Ok(Decision::Close(reply)),
        // DHAP with dhap_drop_connection: the refusal is the reply, then the close.
        "refuse-close" => Ok(Decision::RefuseAndClose(reply)),
        _ => Err(format!("bad decision: {rest}")),
    }
}

pub fn body_name(body: BodyType) -> &'static str {
    match body {
        BodyType::SevenBit => "7BIT",
        BodyType::EightBitMime => "8BITMIME",
        BodyType::BinaryMime => "BINARYMIME",
    }
}

pub fn summary(m: &Message) -> String {
    let e = &m.envelope;
    let mut s = format!("<{}> ->", e.mail_from);
    for r in &e.recipients {
        s.push_str(&format!(" <{r}>"));
    }
    if e.body_type != BodyType::SevenBit {
        s.push_str(&format!(" BODY={}", body_name(e.body_type)));
    }
    if e.smtputf8 {
        s.push_str(" SMTPUTF8");
    }
    s
}

/// `{c*n}` → c repeated n times.
pub fn expand(text: &str) -> String {
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

pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
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
pub fn directives(text: &str) -> Vec<(usize, String)> {
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

pub fn configure(config: &mut ConnectionPolicy, settings: &str) -> Result<(), String> {
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
