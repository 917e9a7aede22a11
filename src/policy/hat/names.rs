//! The HAT's (Host Access Table's) name index: host names and `.domain`
//! suffixes, matched against the client's forward-confirmed PTR name.
//!
//! Built once by `HatTable::compile`; asked by `first_match` when the PTR
//! fact is a confirmed name. A lookup is one hash probe for the exact name
//! and one per parent domain (`a.b.example` tries `b.example`, `example`),
//! whatever the number of entries.

use hashbrown::HashMap;

use super::ipset::EntryId;

#[derive(Debug, Default)]
pub struct NameIndex {
    /// `mail.partner.example` → the first entry naming it.
    hosts: HashMap<Box<str>, EntryId>,
    /// `trusted.example` (written `.trusted.example`) → the first entry naming it.
    suffixes: HashMap<Box<str>, EntryId>,
}

impl NameIndex {
    /// Adds an exact host name (lower case, no trailing dot). Entries arrive
    /// in table order, so the first one kept is the earliest.
    pub fn insert_host(&mut self, name: &str, entry: EntryId) {
        self.hosts.entry(name.into()).or_insert(entry);
    }

    /// Adds a domain whose subdomains match (lower case, no dots around).
    pub fn insert_suffix(&mut self, domain: &str, entry: EntryId) {
        self.suffixes.entry(domain.into()).or_insert(entry);
    }

    /// The first entry matching `name`: exact, or a suffix of one of its
    /// parent domains. A suffix does not match the domain itself
    /// (`.example.com` is the subdomains; `example.com` names the host).
    pub fn first_entry(&self, name: &str) -> Option<EntryId> {
        let name = normalise(name);
        let name = name.as_ref();
        let mut best = self.hosts.get(name).copied();
        if self.suffixes.is_empty() {
            return best;
        }
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(&entry) = self.suffixes.get(parent) {
                best = Some(best.map_or(entry, |b| b.min(entry)));
            }
            rest = parent;
        }
        best
    }
}

/// Lower case and no trailing dot, without copying when it is already so
/// (the lead hands names in that form).
fn normalise(name: &str) -> std::borrow::Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        name.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> NameIndex {
        let mut idx = NameIndex::default();
        idx.insert_suffix("example.com", 0);
        idx.insert_host("mail.partner.example", 1);
        idx.insert_host("a.example.com", 2);
        idx.insert_suffix("partner.example", 3);
        idx.insert_host("mail.partner.example", 4);
        idx
    }

    #[test]
    fn exact_names_match_case_insensitive_without_trailing_dot() {
        let idx = index();
        assert_eq!(idx.first_entry("mail.partner.example"), Some(1));
        assert_eq!(idx.first_entry("MAIL.Partner.Example."), Some(1));
        assert_eq!(idx.first_entry("partner.example"), None);
        assert_eq!(idx.first_entry("xmail.partner.example"), Some(3));
    }

    #[test]
    fn suffixes_match_subdomains_only_and_the_earliest_entry_wins() {
        let idx = index();
        assert_eq!(idx.first_entry("example.com"), None);
        assert_eq!(idx.first_entry("a.example.com"), Some(0));
        assert_eq!(idx.first_entry("x.y.z.example.com"), Some(0));
        assert_eq!(idx.first_entry("badexample.com"), None);
        assert_eq!(idx.first_entry("example.com.evil"), None);
        assert_eq!(idx.first_entry(""), None);
    }
}
