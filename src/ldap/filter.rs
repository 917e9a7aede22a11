//! LDAP query strings (issue 8 item 2): the operator's filter template with
//! `{a}` (the whole address), `{u}` (its local part) and `{d}` (its
//! domain), filled in with every substituted value escaped as RFC 4515
//! §3 requires, so a recipient like `*)(uid=*` stays one value and cannot
//! change the filter's shape.
//!
//! Pure: parsed once per policy snapshot (`Template::parse`, which also
//! says which parts a query uses, for its cache key), filled per lookup.

use std::fmt::Write as _;

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Address,
    Local,
    Domain,
}

/// A parsed filter template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parse `text`. Braces other than `{a}`, `{u}`, `{d}` are refused (a
    /// typo would otherwise search for the literal text), as is a filter
    /// whose parentheses do not balance.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            literal.push_str(&rest[..open]);
            let after = &rest[open..];
            let (piece, len) = match after.get(..3) {
                Some("{a}") => (Piece::Address, 3),
                Some("{u}") => (Piece::Local, 3),
                Some("{d}") => (Piece::Domain, 3),
                _ => return Err(format!("{text:?}: only {{a}}, {{u}} and {{d}} may stand in braces")),
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
            rest = &after[len..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        check_parentheses(text)?;
        Ok(Template { pieces })
    }

    /// Does the filter depend on the domain alone (then answers can be
    /// cached per domain, on the domain's owner shard)?
    pub fn uses_only_domain(&self) -> bool {
        !self.pieces.iter().any(|p| matches!(p, Piece::Address | Piece::Local))
    }

    /// The filter for `address` (`local@domain`; without an `@` the whole
    /// text is the local part and the domain is empty).
    pub fn fill(&self, address: &str) -> String {
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
        let mut filter = String::with_capacity(64);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => filter.push_str(text),
                Piece::Address => escape_into(&mut filter, address),
                Piece::Local => escape_into(&mut filter, local),
                Piece::Domain => escape_into(&mut filter, domain),
            }
        }
        filter
    }
}

/// RFC 4515 §3: in an assertion value, `*`, `(`, `)`, `\` and NUL are
/// written as a backslash and two hex digits. Other octets may stay.
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => {
                let _ = write!(out, "\\{:02x}", c as u32);
            }
            _ => out.push(c),
        }
    }
}

/// The template's own parentheses balance (RFC 4515 §2: a filter is one
/// parenthesised item); substituted values are escaped and cannot add any.
fn check_parentheses(text: &str) -> Result<(), String> {
    let mut depth = 0i32;
    for c in text.chars() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth < 0 {
            return Err(format!("{text:?}: a ')' closes nothing"));
        }
    }
    match depth {
        0 => Ok(()),
        _ => Err(format!("{text:?}: a '(' is never closed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_address_local_part_and_domain() {
        let t = Template::parse("(|(mail={a})(&(uid={u})(domain={d})))").unwrap();
        assert_eq!(t.fill("joe@example.com"), "(|(mail=joe@example.com)(&(uid=joe)(domain=example.com)))");
        assert!(!t.uses_only_domain());
        assert!(Template::parse("(mail={d})").unwrap().uses_only_domain());
    }

    #[test]
    fn an_injected_value_cannot_change_the_filter() {
        let t = Template::parse("(mail={a})").unwrap();
        assert_eq!(t.fill("*)(uid=*@example.com"), "(mail=\\2a\\29\\28uid=\\2a@example.com)");
        let t = Template::parse("(uid={u})").unwrap();
        assert_eq!(t.fill("a\\b\0c@d"), "(uid=a\\5cb\\00c)");
        // Whatever the value, the filled filter has the template's parentheses only.
        for nasty in ["*)(|(uid=*", "x)(objectClass=*", "((((", "))))@x", "\\29@x"] {
            let filled = t.fill(nasty);
            assert_eq!(filled.matches('(').count(), 1, "{filled}");
            assert_eq!(filled.matches(')').count(), 1, "{filled}");
            assert!(!filled.contains('*'), "{filled}");
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(Template::parse("(mail={x})").is_err());
        assert!(Template::parse("(mail={a)").is_err());
        assert!(Template::parse("(mail=a})").is_err());
        assert!(Template::parse("(mail={a}").is_err());
        assert!(Template::parse("mail={a})").is_err());
        assert_eq!(Template::parse("(objectClass=*)").unwrap().fill("x@y"), "(objectClass=*)", "the template's own * stays");
    }

    #[test]
    fn an_address_without_at_is_all_local_part() {
        let t = Template::parse("(&(uid={u})(dc={d}))").unwrap();
        assert_eq!(t.fill("postmaster"), "(&(uid=postmaster)(dc=))");
    }
}
