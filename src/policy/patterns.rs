//! Ordered mailbox patterns, first match wins, without a scan: the one
//! lookup structure behind the RAT (Recipient Access Table) and the sender
//! verification exception table.
//!
//! Patterns: `user@domain` (that address), `user@` (that local part at any
//! domain), `domain` (exact), `.domain` (its subdomains, not itself), `ALL`.
//! Each kind is a hash map from the pattern to its first row; a lookup
//! probes the address, the local part, the domain and each parent of the
//! domain, and the smallest row index among the hits wins. Everything
//! compares case-insensitively (RFC 5321 §2.4 makes only the local part
//! case-sensitive in theory; every site treats it as not).

use hashbrown::HashMap;

use crate::config::is_domain;

#[derive(Debug, Default)]
pub struct MailboxPatterns {
    addresses: HashMap<String, usize>,
    local_parts: HashMap<String, usize>,
    domains: HashMap<String, usize>,
    suffixes: HashMap<String, usize>,
    all: Option<usize>,
}

impl MailboxPatterns {
    /// Add `pattern` as row `row` (rows in order; a later duplicate never
    /// wins). Err: why the pattern is not one of the forms above.
    pub fn insert(&mut self, pattern: &str, row: usize) -> Result<(), String> {
        let p = pattern.trim().to_ascii_lowercase();
        let bad = |why: &str| Err(format!("{p:?}: {why}"));
        let map = if p == "all" {
            self.all.get_or_insert(row);
            return Ok(());
        } else if let Some(local) = p.strip_suffix('@') {
            if check_local(local).is_err() {
                return bad("not a local part");
            }
            &mut self.local_parts
        } else if let Some((local, domain)) = p.rsplit_once('@') {
            if check_local(local).is_err() || !is_domain(domain) {
                return bad("not an address");
            }
            &mut self.addresses
        } else if let Some(parent) = p.strip_prefix('.') {
            if !is_domain(parent) {
                return bad("not a domain");
            }
            &mut self.suffixes
        } else {
            if !is_domain(&p) {
                return bad("not a domain");
            }
            &mut self.domains
        };
        let key = p.strip_prefix('.').unwrap_or(p.strip_suffix('@').unwrap_or(&p)).to_string();
        map.entry(key).or_insert(row);
        Ok(())
    }

    /// The first row matching `mailbox` (`local@domain`), if any.
    pub fn first_match(&self, mailbox: &str) -> Option<usize> {
        let mailbox = mailbox.to_ascii_lowercase();
        let (local, domain) = mailbox.rsplit_once('@').unwrap_or((mailbox.as_str(), ""));
        let mut best = self.all;
        let mut consider = |hit: Option<&usize>| {
            if let Some(&i) = hit {
                best = Some(best.map_or(i, |b| b.min(i)));
            }
        };
        consider(self.addresses.get(mailbox.as_str()));
        consider(self.local_parts.get(local));
        consider(self.domains.get(domain));
        let mut parent = domain;
        while let Some(dot) = parent.find('.') {
            parent = &parent[dot + 1..];
            consider(self.suffixes.get(parent));
        }
        best
    }
}

fn check_local(local: &str) -> Result<(), ()> {
    if local.is_empty() || local.len() > crate::limits::LOCAL_PART_BYTES_MAX || local.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_row_among_the_kinds_wins() {
        let mut p = MailboxPatterns::default();
        for (row, pattern) in ["Support@Example.com", "spam@", "example.com", ".example.net", "bad.example.net", "ALL"].iter().enumerate() {
            p.insert(pattern, row).unwrap();
        }
        assert_eq!(p.first_match("SUPPORT@example.COM"), Some(0));
        assert_eq!(p.first_match("spam@example.com"), Some(1));
        assert_eq!(p.first_match("joe@example.com"), Some(2));
        assert_eq!(p.first_match("joe@mx.example.net"), Some(3));
        assert_eq!(p.first_match("joe@bad.example.net"), Some(3), ".example.net comes first");
        assert_eq!(p.first_match("joe@example.net"), Some(5), "a suffix is not the domain itself");
        assert_eq!(p.first_match("joe@other.test"), Some(5));
        assert_eq!(MailboxPatterns::default().first_match("joe@other.test"), None);
    }

    #[test]
    fn bad_patterns_are_refused() {
        let mut p = MailboxPatterns::default();
        assert!(p.insert("exa mple.com", 0).is_err());
        assert!(p.insert("@example.com", 0).is_err());
        assert!(p.insert("a@b@", 0).is_err());
        assert!(p.insert("..example.com", 0).is_err());
    }
}
