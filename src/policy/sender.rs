//! Envelope sender verification (seed "Verifying Senders"): at MAIL FROM,
//! per mail flow policy.
//!
//! Order: the null sender `<>` always passes (bounces must get through, and
//! it is never malformed); then the sender verification exception table
//! (when the policy uses it, even with DNS verification off, as the seed
//! says): a matching row accepts without DNS or rejects with its reply; then,
//! with `sender_dns_verification`, a malformed sender (no dot in the domain,
//! or an address literal: nothing DNS can confirm) gets the malformed reply,
//! and the domain is looked up: MX, else A/AAAA. Found → pass; NXDOMAIN or no
//! records → "does not exist"; SERVFAIL or timeout → "does not resolve"
//! (a temporary 4xx by default: a DNS hiccup must not bounce real mail).

use crate::config::access::{AccessAction, SenderExceptionRow};
use crate::dns::{Lookup, Resolver};
use crate::policy::flow::MailFlowPolicy;
use crate::policy::patterns::MailboxPatterns;
use crate::policy::rat::{check_reply, enhanced};
use crate::smtp::Reply;

/// The sender verification exception table: full addresses, domains and
/// `.subdomain` suffixes (`policy::patterns`); first row wins.
#[derive(Debug, Default)]
pub struct SenderExceptions {
    rows: Vec<SenderExceptionRow>,
    patterns: MailboxPatterns,
}

/// Why a sender was refused, for the mail log (`rule=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderRefusal {
    pub reply: Reply,
    /// exception | malformed | nxdomain | servfail
    pub rule: &'static str,
    pub detail: String,
}

impl SenderExceptions {
    pub fn compile(rows: &[SenderExceptionRow]) -> Result<SenderExceptions, String> {
        let mut table = SenderExceptions { rows: rows.to_vec(), patterns: MailboxPatterns::default() };
        for (i, row) in rows.iter().enumerate() {
            check_reply(row.code, row.text.as_deref()).map_err(|why| format!("{:?}: {why}", row.pattern))?;
            table.patterns.insert(&row.pattern, i)?;
        }
        Ok(table)
    }

    /// The first row matching `sender`.
    fn find(&self, sender: &str) -> Option<&SenderExceptionRow> {
        self.patterns.first_match(sender).map(|i| &self.rows[i])
    }
}

/// What the table says before DNS: accept now, refuse now, or go on.
enum Exception {
    Accept,
    Reject(SenderRefusal),
    None,
}

fn exception(sender: &str, policy: &MailFlowPolicy, table: &SenderExceptions) -> Exception {
    if !policy.params.use_sender_verification_exceptions {
        return Exception::None;
    }
    match table.find(sender) {
        Some(row) if row.action == AccessAction::Accept => Exception::Accept,
        Some(row) => {
            let code = row.code.unwrap_or(553);
            let text = row.text.clone().unwrap_or_else(|| "Envelope sender refused".into());
            Exception::Reject(SenderRefusal { reply: Reply::new(code, &enhanced(code, "7.1"), text), rule: "exception", detail: row.pattern.clone() })
        }
        None => Exception::None,
    }
}

/// A sender DNS cannot confirm: no dot in the domain, or an address literal.
pub fn is_malformed(sender: &str) -> bool {
    match sender.rsplit_once('@') {
        Some((local, domain)) => local.is_empty() || domain.starts_with('[') || !domain.contains('.'),
        None => true,
    }
}

/// Verify `sender` (empty = `<>`) under `policy`. Ok: go on.
pub async fn verify(sender: &str, policy: &MailFlowPolicy, table: &SenderExceptions, resolver: &Resolver) -> Result<(), SenderRefusal> {
    if sender.is_empty() {
        return Ok(());
    }
    match exception(sender, policy, table) {
        Exception::Accept => return Ok(()),
        Exception::Reject(refusal) => return Err(refusal),
        Exception::None => {}
    }
    if !policy.params.sender_dns_verification {
        return Ok(());
    }
    if is_malformed(sender) {
        return Err(SenderRefusal { reply: policy.sender_malformed_reply(sender), rule: "malformed", detail: String::new() });
    }
    let domain = sender.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase();
    let outcome = match resolver.mx(&domain).await {
        Lookup::Found(_) => return Ok(()),
        Lookup::TempFail(why) => Err(why),
        Lookup::NotFound => match resolver.addresses(&domain).await {
            Lookup::Found(_) => return Ok(()),
            Lookup::NotFound => Ok(()),
            Lookup::TempFail(why) => Err(why),
        },
    };
    Err(match outcome {
        Ok(()) => SenderRefusal { reply: policy.sender_nxdomain_reply(sender), rule: "nxdomain", detail: domain },
        Err(why) => SenderRefusal { reply: policy.sender_servfail_reply(sender), rule: "servfail", detail: format!("{domain}: {why}") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::flow::FlowParams;

    fn row(pattern: &str, action: AccessAction) -> SenderExceptionRow {
        SenderExceptionRow { pattern: pattern.into(), action, code: None, text: None }
    }

    #[test]
    fn exception_rows_first_match_wins() {
        let mut bad = row("bad@spam.example", AccessAction::Reject);
        bad.code = Some(553);
        bad.text = Some("Sender refused".into());
        let table = SenderExceptions::compile(&[bad, row("spam.example", AccessAction::Accept), row(".partner.example", AccessAction::Accept)]).unwrap();
        let policy = MailFlowPolicy::compile("P", FlowParams::default()).unwrap();
        match exception("BAD@spam.example", &policy, &table) {
            Exception::Reject(r) => assert_eq!(r.reply.to_string(), "553 5.7.1 Sender refused"),
            _ => panic!("not refused"),
        }
        assert!(matches!(exception("good@spam.example", &policy, &table), Exception::Accept));
        assert!(matches!(exception("a@mx.partner.example", &policy, &table), Exception::Accept));
        assert!(matches!(exception("a@partner.example", &policy, &table), Exception::None));
        let off = MailFlowPolicy::compile("P", FlowParams { use_sender_verification_exceptions: false, ..FlowParams::default() }).unwrap();
        assert!(matches!(exception("bad@spam.example", &off, &table), Exception::None));
    }

    #[test]
    fn malformed_senders() {
        assert!(is_malformed("user@localhost"));
        assert!(is_malformed("user@[192.0.2.1]"));
        assert!(!is_malformed("user@example.com"));
    }
}
