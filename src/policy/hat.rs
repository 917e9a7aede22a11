//! HAT, the Host Access Table: ordered sender groups, each naming a mail
//! flow policy; the first group with a matching sender entry decides a
//! connection's policy (Cisco ESA's HAT).
//!
//! Where it sits: at connect, before the banner. The table is compiled once
//! per policy snapshot (`HatTable::compile`, also check-config's errors).
//! Per connection the caller asks `needs(ip)` which DNS facts could change
//! the answer (the forward-confirmed PTR, DNS lists), looks those up (lazily,
//! in parallel, bounded by `[dns] hat_lookup_timeout_ms`), and asks
//! `first_match(ip, facts)`. This module is pure: no DNS, no clock, no I/O.
//!
//! Rules beyond "first match wins": a group whose address entry (or ALL)
//! covers the client needs no lookup and reports that entry even when a DNS
//! entry of the same group would match too; facts not gathered
//! (`PtrFact::Unknown`, a zone missing from `HatFacts::dnslists`) never match;
//! a DNS-list error answer or timeout is never a listing; CONTINUE groups
//! are validated and then left out; an IPv4-mapped client (::ffff:a.b.c.d)
//! is the IPv4 client, and an IPv6 entry reaches it only when the entry lies
//! wholly inside ::ffff:0:0/96.
//!
//! Speed: no entry is scanned per connection. Addresses go through one
//! binary search over disjoint intervals (`ipset`), names through hash maps
//! (`names`), and every other criterion kind keeps only its first entry:
//! the answer is the smallest entry number any of them yields.

use std::net::{IpAddr, Ipv4Addr};

mod dnslist;
mod ipset;
mod names;
mod sender;

pub use dnslist::{classify_dnslist_answer, dnslist_query_name, is_listing_code, DnsListFact};
pub use ipnet::IpNet;
pub use sender::{parse_sender, SenderCriterion};

use crate::limits::{HAT_DNSLIST_ZONES_MAX, HAT_ENTRIES_MAX};
use ipset::{AddressIndex, AddressIndexBuilder, EntryId};
use names::NameIndex;

/// One sender group as configured (`[[hat.NAME]]`), in table order.
#[derive(Clone, Copy, Debug)]
pub struct HatGroupSpec<'a> {
    pub name: &'a str,
    pub senders: &'a [String],
    /// The group's policy is CONTINUE: its entries are validated but never
    /// match, and matching goes on with the next group.
    pub skip: bool,
}

/// Why a table does not compile: which group, which entry, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HatError {
    /// Index of the group in the spec.
    pub group: usize,
    pub group_name: String,
    /// The entry as written ("" when the error is not about one entry).
    pub entry: String,
    pub why: String,
}

impl std::fmt::Display for HatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sender group {} (`{}`): sender `{}`: {}", self.group + 1, self.group_name, self.entry, self.why)
    }
}

impl std::error::Error for HatError {}

/// The DNS facts a match could need for one client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The PTR name and its forward confirmation.
    pub ptr: bool,
    /// DNS lists to query, as indices into `HatTable::zones`, ascending.
    pub dnslists: Vec<usize>,
}

impl Needs {
    /// True when the address alone decides: no lookup at all.
    pub fn is_empty(&self) -> bool {
        !self.ptr && self.dnslists.is_empty()
    }
}

/// What the PTR lookup found for the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PtrFact {
    /// Not looked up: no PTR criterion matches.
    #[default]
    Unknown,
    /// The PTR name, confirmed by its forward lookup (any case; trailing dot ignored).
    Confirmed(String),
    /// No PTR record (NXDOMAIN or no data).
    None,
    /// The lookup failed temporarily or timed out.
    TempFail,
    /// The PTR name does not resolve back to the client's address.
    Mismatch,
}

/// The DNS facts gathered for one client; facts not gathered never match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HatFacts {
    pub ptr: PtrFact,
    /// (index into `HatTable::zones`, what that list said).
    pub dnslists: Vec<(usize, DnsListFact)>,
}

/// The group that matched and the entry that decided it, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// Index of the group in the spec.
    pub group: usize,
    /// The sender entry as written ("10.0.0.0/8", "dnslist[bl.example.org]", "ALL").
    pub entry: String,
}

/// A compiled table: immutable, shared by every connection of a snapshot.
#[derive(Debug, Default)]
pub struct HatTable {
    /// By entry number: its group and text.
    entries: Vec<EntryInfo>,
    addresses: AddressIndex,
    names: NameIndex,
    all: Option<EntryId>,
    ptr_none: Option<EntryId>,
    ptr_tempfail: Option<EntryId>,
    ptr_mismatch: Option<EntryId>,
    /// The first group with any PTR-dependent entry.
    ptr_first_group: Option<usize>,
    zones: Vec<String>,
    /// By zone: the first group that names it.
    zone_first_group: Vec<usize>,
    /// By zone: its entries in table order, with their return codes (empty: any).
    zone_entries: Vec<Vec<(EntryId, Vec<Ipv4Addr>)>>,
}

#[derive(Debug)]
struct EntryInfo {
    group: usize,
    text: Box<str>,
}

/// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 client it maps:
/// dual-stack sockets report IPv4 clients that way.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl HatTable {
    /// Parses and indexes every entry; the first bad one is the error.
    pub fn compile(groups: &[HatGroupSpec]) -> Result<HatTable, HatError> {
        let mut table = HatTable::default();
        let mut addresses = AddressIndexBuilder::default();
        for (index, group) in groups.iter().enumerate() {
            let fail = |entry: &str, why: String| HatError { group: index, group_name: group.name.into(), entry: entry.into(), why };
            for text in group.senders {
                let criterion = parse_sender(text).map_err(|why| fail(text, why))?;
                if table.entries.len() >= HAT_ENTRIES_MAX {
                    return Err(fail(text, format!("more than {HAT_ENTRIES_MAX} sender entries in one table")));
                }
                let entry = table.entries.len() as EntryId;
                table.entries.push(EntryInfo { group: index, text: text.trim().into() });
                if !group.skip {
                    table.index(criterion, index, entry, &mut addresses).map_err(|why| fail(text, why))?;
                }
            }
        }
        table.addresses = addresses.build();
        Ok(table)
    }

    fn index(
        &mut self,
        criterion: SenderCriterion,
        group: usize,
        entry: EntryId,
        addresses: &mut AddressIndexBuilder,
    ) -> Result<(), String> {
        if criterion.needs_ptr() {
            self.ptr_first_group.get_or_insert(group);
        }
        let first = |slot: &mut Option<EntryId>| {
            slot.get_or_insert(entry);
        };
        match criterion {
            SenderCriterion::Net(net) => addresses.insert_net(net, entry),
            SenderCriterion::Range { first, last } => addresses.insert_range(first, last, entry),
            SenderCriterion::Host(name) => self.names.insert_host(&name, entry),
            SenderCriterion::Suffix(domain) => self.names.insert_suffix(&domain, entry),
            SenderCriterion::DnsList { zone, codes } => {
                let zone = self.zone_index(zone, group)?;
                self.zone_entries[zone].push((entry, codes));
            }
            SenderCriterion::PtrNone => first(&mut self.ptr_none),
            SenderCriterion::PtrTempFail => first(&mut self.ptr_tempfail),
            SenderCriterion::PtrMismatch => first(&mut self.ptr_mismatch),
            SenderCriterion::All => first(&mut self.all),
        }
        Ok(())
    }

    /// The index of `zone`, added if new: each zone is one lookup per
    /// connection at most, so their number is bounded.
    fn zone_index(&mut self, zone: String, group: usize) -> Result<usize, String> {
        if let Some(known) = self.zones.iter().position(|z| *z == zone) {
            return Ok(known);
        }
        if self.zones.len() >= HAT_DNSLIST_ZONES_MAX {
            return Err(format!("more than {HAT_DNSLIST_ZONES_MAX} distinct DNS lists in one table"));
        }
        self.zones.push(zone);
        self.zone_first_group.push(group);
        self.zone_entries.push(Vec::new());
        Ok(self.zones.len() - 1)
    }

    /// The distinct DNS-list zones of groups that can match, in table order.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    /// Sender entries in the table, CONTINUE groups included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The DNS facts that could change the match for `ip`: those of groups
    /// before the first group that the address alone decides (an address
    /// criterion or ALL). Empty when that group comes first.
    pub fn needs(&self, ip: IpAddr) -> Needs {
        let decided = self.decided_by_address(canonical_ip(ip)).map_or(usize::MAX, |entry| self.group_of(entry));
        Needs {
            ptr: self.ptr_first_group.is_some_and(|group| group < decided),
            dnslists: (0..self.zones.len()).filter(|&zone| self.zone_first_group[zone] < decided).collect(),
        }
    }

    /// The first group matching `ip` with the DNS facts gathered for it
    /// (`needs(ip)`); `None`: the listener's default policy applies.
    /// Within one group an address (or ALL) entry is reported before a DNS
    /// one, so the log line does not depend on which lookups were made.
    pub fn first_match(&self, ip: IpAddr, facts: &HatFacts) -> Option<Match> {
        let decided = self.decided_by_address(canonical_ip(ip));
        let before_group = decided.map_or(usize::MAX, |entry| self.group_of(entry));
        let by_ptr = match &facts.ptr {
            PtrFact::Unknown => None,
            PtrFact::Confirmed(name) => self.names.first_entry(name),
            PtrFact::None => self.ptr_none,
            PtrFact::TempFail => self.ptr_tempfail,
            PtrFact::Mismatch => self.ptr_mismatch,
        };
        let mut by_dns = by_ptr.filter(|entry| self.group_of(*entry) < before_group);
        for (zone, fact) in &facts.dnslists {
            by_dns = earlier(by_dns, self.listed_entry(*zone, fact, before_group, by_dns));
        }
        by_dns.or(decided).map(|entry| {
            let info = &self.entries[entry as usize];
            Match { group: info.group, entry: info.text.to_string() }
        })
    }

    /// The first address or ALL entry covering `ip` (canonical).
    fn decided_by_address(&self, ip: IpAddr) -> Option<EntryId> {
        earlier(self.addresses.first_entry(ip), self.all)
    }

    /// The first entry of `zone` that `fact` matches, in a group before
    /// `before_group` and before the entry `before`.
    fn listed_entry(&self, zone: usize, fact: &DnsListFact, before_group: usize, before: Option<EntryId>) -> Option<EntryId> {
        // Only listing codes count, whoever built the fact (RFC 5782 §2.1).
        let listed = |code: &Ipv4Addr| is_listing_code(*code) && fact.listed_codes().contains(code);
        if !fact.listed_codes().iter().copied().any(is_listing_code) {
            return None;
        }
        let entries = self.zone_entries.get(zone)?;
        entries
            .iter()
            .take_while(|(entry, _)| self.group_of(*entry) < before_group && before.is_none_or(|b| *entry < b))
            .find(|(_, wanted)| wanted.is_empty() || wanted.iter().any(listed))
            .map(|(entry, _)| *entry)
    }

    fn group_of(&self, entry: EntryId) -> usize {
        self.entries[entry as usize].group
    }
}

fn earlier(a: Option<EntryId>, b: Option<EntryId>) -> Option<EntryId> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
