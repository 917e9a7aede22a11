//! RAT, the Recipient Access Table: which recipients a public listener
//! accepts mail for. Ordered rows, first match wins; a recipient no row
//! matches is refused as relaying (550 5.7.1), so a RAT can never make an
//! open relay by omission.
//!
//! Rows: `user@domain` (exact address), `user@` (that local part at any
//! domain), `domain` (exact), `.domain` (its subdomains, not itself), `ALL`,
//! looked up by hash probes (`policy::patterns`), not a scan.

use crate::config::access::{AccessAction, RatRow};
use crate::policy::patterns::MailboxPatterns;
use crate::smtp::Reply;

/// What the RAT says about one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatVerdict {
    /// Accept, or refuse with this reply.
    pub refusal: Option<Reply>,
    /// The row that decided, as written ("example.com", "ALL"); "" when none did.
    pub row: String,
    pub bypass_callahead: bool,
    pub bypass_receiving_control: bool,
}

/// A compiled RAT.
#[derive(Debug, Default)]
pub struct Rat {
    rows: Vec<RatRow>,
    patterns: MailboxPatterns,
}

impl Rat {
    /// Compile rows; Err names the row and why.
    pub fn compile(rows: &[RatRow]) -> Result<Rat, String> {
        let mut rat = Rat { rows: rows.to_vec(), patterns: MailboxPatterns::default() };
        for (i, row) in rows.iter().enumerate() {
            check_reply(row.code, row.text.as_deref()).map_err(|why| format!("{:?}: {why}", row.recipient))?;
            rat.patterns.insert(&row.recipient, i)?;
        }
        Ok(rat)
    }

    /// The verdict for a final mailbox `local@domain`.
    pub fn check(&self, mailbox: &str) -> RatVerdict {
        let mailbox = mailbox.to_ascii_lowercase();
        match self.patterns.first_match(&mailbox) {
            Some(i) => self.verdict(&self.rows[i], &mailbox),
            None => RatVerdict {
                refusal: Some(Reply::new(550, "5.7.1", format!("<{mailbox}>: Relay access denied"))),
                row: String::new(),
                bypass_callahead: false,
                bypass_receiving_control: false,
            },
        }
    }

    fn verdict(&self, row: &RatRow, mailbox: &str) -> RatVerdict {
        let refusal = match row.action {
            AccessAction::Accept => None,
            AccessAction::Reject => {
                let code = row.code.unwrap_or(550);
                let text = row.text.clone().unwrap_or_else(|| "Recipient address rejected".into());
                Some(Reply::new(code, &enhanced(code, "7.1"), format!("<{mailbox}>: {text}")))
            }
        };
        RatVerdict {
            refusal,
            row: row.recipient.clone(),
            bypass_callahead: row.bypass_callahead,
            bypass_receiving_control: row.bypass_receiving_control,
        }
    }
}

/// The RFC 3463 code of a configured reply: the class from the code's first
/// digit, the subject and detail by purpose ("7.1", "2.2", …).
pub fn enhanced(code: u16, detail: &str) -> String {
    format!("{}.{detail}", code / 100)
}

/// A configured refusal: 4xx or 5xx (never 2xx, never 421 which closes) and
/// a one-line text.
pub fn check_reply(code: Option<u16>, text: Option<&str>) -> Result<(), String> {
    if let Some(code) = code {
        if !(400..=599).contains(&code) || code == 421 {
            return Err(format!("code {code}: must be 4xx or 5xx (not 421)"));
        }
    }
    match text {
        Some(text) => crate::config::flow::check_reply_text(text).map_err(|why| format!("text: {why}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(recipient: &str, action: AccessAction) -> RatRow {
        RatRow { recipient: recipient.into(), action, code: None, text: None, bypass_callahead: false, bypass_receiving_control: false }
    }

    fn rat() -> Rat {
        let mut support = row("Support@Example.com", AccessAction::Accept);
        support.bypass_receiving_control = true;
        let mut spam = row("spam@", AccessAction::Reject);
        spam.code = Some(551);
        spam.text = Some("Go away".into());
        Rat::compile(&[
            support,
            spam,
            row("example.com", AccessAction::Accept),
            row(".example.net", AccessAction::Accept),
            row("bad.example.net", AccessAction::Reject),
            row("ALL", AccessAction::Reject),
        ])
        .unwrap()
    }

    #[test]
    fn first_matching_row_wins() {
        let rat = rat();
        let v = rat.check("support@EXAMPLE.COM");
        assert_eq!((v.refusal, v.row.as_str(), v.bypass_receiving_control), (None, "Support@Example.com", true));
        // user@ is before example.com: refused even in an accepted domain.
        let v = rat.check("spam@example.com");
        assert_eq!(v.refusal.unwrap().to_string(), "551 5.7.1 <spam@example.com>: Go away");
        assert_eq!(rat.check("joe@example.com").refusal, None);
        // .example.net matches subdomains only, and comes before bad.example.net.
        assert_eq!(rat.check("joe@mail.example.net").refusal, None);
        assert_eq!(rat.check("joe@bad.example.net").refusal, None);
        assert!(rat.check("joe@example.net").refusal.is_some());
        let v = rat.check("joe@other.test");
        assert_eq!((v.refusal.unwrap().code, v.row.as_str()), (550, "ALL"));
    }

    #[test]
    fn no_row_is_a_relay_refusal() {
        let rat = Rat::compile(&[row("example.com", AccessAction::Accept)]).unwrap();
        let refusal = rat.check("a@other.test").refusal.unwrap();
        assert_eq!((refusal.code, refusal.enhanced.as_str()), (550, "5.7.1"));
    }

    #[test]
    fn bad_rows_are_refused() {
        assert!(Rat::compile(&[row("exa mple.com", AccessAction::Accept)]).is_err());
        assert!(Rat::compile(&[row("@example.com", AccessAction::Accept)]).is_err());
        let mut r = row("a.test", AccessAction::Reject);
        r.code = Some(250);
        assert!(Rat::compile(&[r]).is_err());
    }
}
