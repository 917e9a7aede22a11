//! The HAT as the connect decision sees it: each criterion through a
//! compiled table, first match wins across kinds, what `needs` asks for,
//! CONTINUE groups, DNS-list error answers, compile errors. The 10,000-entry
//! comparison against a naive matcher is in `tests/random.rs`.

use super::*;

mod random;

/// A table of groups `(name, senders, skip)`.
fn table(groups: &[(&str, &[&str], bool)]) -> HatTable {
    try_table(groups).unwrap_or_else(|e| panic!("{e}"))
}

fn try_table(groups: &[(&str, &[&str], bool)]) -> Result<HatTable, HatError> {
    let senders: Vec<Vec<String>> = groups.iter().map(|(_, s, _)| s.iter().map(|e| e.to_string()).collect()).collect();
    let specs: Vec<HatGroupSpec> =
        groups.iter().zip(&senders).map(|((name, _, skip), senders)| HatGroupSpec { name, senders, skip: *skip }).collect();
    HatTable::compile(&specs)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn code(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn no_facts() -> HatFacts {
    HatFacts::default()
}

fn ptr(fact: PtrFact) -> HatFacts {
    HatFacts { ptr: fact, dnslists: vec![] }
}

fn name(n: &str) -> HatFacts {
    ptr(PtrFact::Confirmed(n.into()))
}

fn listed(zone: usize, codes: &[&str]) -> HatFacts {
    HatFacts { ptr: PtrFact::Unknown, dnslists: vec![(zone, DnsListFact::Listed(codes.iter().map(|c| code(c)).collect()))] }
}

/// (group, entry) of the match, for short assertions.
fn hit(t: &HatTable, addr: &str, facts: &HatFacts) -> Option<(usize, String)> {
    t.first_match(ip(addr), facts).map(|m| (m.group, m.entry))
}

fn at(group: usize, entry: &str) -> Option<(usize, String)> {
    Some((group, entry.to_string()))
}

#[test]
fn address_criteria_match_by_address_alone() {
    let t = table(&[
        ("NETS", &["10.0.0.0/8", "2001:db8::/48", "192.0.2.7"], false),
        ("RANGES", &["192.0.2.10-20", "172.16.1-5.", "198.51.100.1-198.51.101.1", "2001:db8:1::1-2001:db8:1::ff"], false),
        ("PARTIAL", &["203.0.113."], false),
    ]);
    assert_eq!(hit(&t, "10.200.3.4", &no_facts()), at(0, "10.0.0.0/8"));
    assert_eq!(hit(&t, "2001:db8:0:ffff::1", &no_facts()), at(0, "2001:db8::/48"));
    assert_eq!(hit(&t, "2001:db8:1::1", &no_facts()), at(1, "2001:db8:1::1-2001:db8:1::ff"));
    assert_eq!(hit(&t, "2001:db8:1::100", &no_facts()), None);
    assert_eq!(hit(&t, "192.0.2.7", &no_facts()), at(0, "192.0.2.7"));
    assert_eq!(hit(&t, "192.0.2.8", &no_facts()), None);
    assert_eq!(hit(&t, "192.0.2.10", &no_facts()), at(1, "192.0.2.10-20"));
    assert_eq!(hit(&t, "192.0.2.20", &no_facts()), at(1, "192.0.2.10-20"));
    assert_eq!(hit(&t, "192.0.2.21", &no_facts()), None);
    assert_eq!(hit(&t, "172.16.0.255", &no_facts()), None);
    assert_eq!(hit(&t, "172.16.1.0", &no_facts()), at(1, "172.16.1-5."));
    assert_eq!(hit(&t, "172.16.5.255", &no_facts()), at(1, "172.16.1-5."));
    assert_eq!(hit(&t, "172.16.6.0", &no_facts()), None);
    assert_eq!(hit(&t, "198.51.100.200", &no_facts()), at(1, "198.51.100.1-198.51.101.1"));
    assert_eq!(hit(&t, "198.51.101.2", &no_facts()), None);
    assert_eq!(hit(&t, "203.0.113.99", &no_facts()), at(2, "203.0.113."));
    assert_eq!(hit(&t, "11.0.0.1", &no_facts()), None);
}

#[test]
fn ipv4_mapped_clients_match_as_ipv4() {
    let t = table(&[("A", &["10.0.0.0/8"], false), ("B", &["::ffff:192.0.2.0/120"], false), ("C", &["::/0"], false)]);
    assert_eq!(hit(&t, "::ffff:10.1.2.3", &no_facts()), at(0, "10.0.0.0/8"));
    assert_eq!(hit(&t, "192.0.2.5", &no_facts()), at(1, "::ffff:192.0.2.0/120"));
    // ::/0 is IPv6 space: an IPv4 client (mapped or not) is not in it.
    assert_eq!(hit(&t, "::ffff:11.0.0.1", &no_facts()), None);
    assert_eq!(hit(&t, "2001:db8::1", &no_facts()), at(2, "::/0"));
    assert!(t.needs(ip("::ffff:10.1.2.3")).is_empty());
}

#[test]
fn host_names_and_suffixes_match_the_confirmed_ptr_name() {
    let t = table(&[("NAMES", &["mail.partner.example", ".trusted.example"], false)]);
    assert_eq!(hit(&t, "192.0.2.1", &name("mail.partner.example")), at(0, "mail.partner.example"));
    assert_eq!(hit(&t, "192.0.2.1", &name("MAIL.partner.EXAMPLE.")), at(0, "mail.partner.example"));
    assert_eq!(hit(&t, "192.0.2.1", &name("mx.mail.partner.example")), None);
    assert_eq!(hit(&t, "192.0.2.1", &name("a.b.trusted.example")), at(0, ".trusted.example"));
    assert_eq!(hit(&t, "192.0.2.1", &name("trusted.example")), None);
    assert_eq!(hit(&t, "192.0.2.1", &name("untrusted.example")), None);
    // Only a confirmed name counts: a mismatch or no lookup matches no name.
    assert_eq!(hit(&t, "192.0.2.1", &ptr(PtrFact::Mismatch)), None);
    assert_eq!(hit(&t, "192.0.2.1", &no_facts()), None);
}

#[test]
fn ptr_criteria_match_their_fact_only() {
    let t = table(&[("N", &["ptr:none"], false), ("T", &["ptr:tempfail"], false), ("M", &["ptr:mismatch"], false)]);
    assert_eq!(hit(&t, "192.0.2.1", &ptr(PtrFact::None)), at(0, "ptr:none"));
    assert_eq!(hit(&t, "192.0.2.1", &ptr(PtrFact::TempFail)), at(1, "ptr:tempfail"));
    assert_eq!(hit(&t, "192.0.2.1", &ptr(PtrFact::Mismatch)), at(2, "ptr:mismatch"));
    assert_eq!(hit(&t, "192.0.2.1", &name("host.example")), None);
    assert_eq!(hit(&t, "192.0.2.1", &no_facts()), None);
}

#[test]
fn dnslists_match_listings_and_return_codes() {
    let t = table(&[("PBL", &["dnslist[pbl.example.org]=127.0.0.10,127.0.0.11"], false), ("BL", &["dnslist[bl.example.org]"], false)]);
    assert_eq!(t.zones(), ["pbl.example.org", "bl.example.org"]);
    assert_eq!(hit(&t, "192.0.2.1", &listed(0, &["127.0.0.11"])), at(0, "dnslist[pbl.example.org]=127.0.0.10,127.0.0.11"));
    assert_eq!(hit(&t, "192.0.2.1", &listed(0, &["127.0.0.2"])), None);
    assert_eq!(hit(&t, "192.0.2.1", &listed(0, &["127.0.0.2", "127.0.0.10"])), at(0, "dnslist[pbl.example.org]=127.0.0.10,127.0.0.11"));
    assert_eq!(hit(&t, "192.0.2.1", &listed(1, &["127.0.0.2"])), at(1, "dnslist[bl.example.org]"));
    assert_eq!(hit(&t, "192.0.2.1", &listed(1, &["127.0.0.200"])), at(1, "dnslist[bl.example.org]"));
    // A zone index the table does not have is ignored, not a panic.
    assert_eq!(hit(&t, "192.0.2.1", &listed(7, &["127.0.0.2"])), None);
}

#[test]
fn dnslist_error_answers_are_never_listings() {
    let t = table(&[("BL", &["dnslist[bl.example.org]"], false), ("ALL", &["ALL"], false)]);
    for fact in [DnsListFact::Error, DnsListFact::TimedOut, DnsListFact::TempFail, DnsListFact::NotListed] {
        let facts = HatFacts { ptr: PtrFact::Unknown, dnslists: vec![(0, fact)] };
        assert_eq!(hit(&t, "192.0.2.1", &facts), at(1, "ALL"));
    }
    // Through the classifier: 127.255.255.254 ("query refused") is an error.
    let answer = classify_dnslist_answer(&[code("127.255.255.254")]);
    let facts = HatFacts { ptr: PtrFact::Unknown, dnslists: vec![(0, answer)] };
    assert_eq!(hit(&t, "192.0.2.1", &facts), at(1, "ALL"));
    // Even a hand-built "listing" with error codes is not one.
    assert_eq!(hit(&t, "192.0.2.1", &listed(0, &["127.255.255.254", "10.0.0.1"])), at(1, "ALL"));
    assert_eq!(hit(&t, "192.0.2.1", &listed(0, &[])), at(1, "ALL"));
}

#[test]
fn all_matches_everything() {
    let t = table(&[("ALL", &["ALL"], false)]);
    assert_eq!(hit(&t, "192.0.2.1", &no_facts()), at(0, "ALL"));
    assert_eq!(hit(&t, "2001:db8::1", &no_facts()), at(0, "ALL"));
    assert!(t.needs(ip("192.0.2.1")).is_empty());
}

/// CONFIG.md's example table.
fn example() -> HatTable {
    table(&[
        ("WHITELIST", &["10.0.0.0/8", "2001:db8::/48", "192.0.2.10-20", "mail.partner.example", ".trusted.example"], false),
        ("BLACKLIST", &["dnslist[bl.example.org]", "ptr:none"], false),
        ("SUSPECTLIST", &["ptr:tempfail", "ptr:mismatch", "dnslist[pbl.example.org]=127.0.0.10,127.0.0.11"], false),
        ("ALL", &["ALL"], false),
    ])
}

#[test]
fn first_match_wins_across_mixed_criteria() {
    let t = example();
    // Whitelisted by address although listed and without PTR.
    let mut bad = listed(0, &["127.0.0.2"]);
    bad.ptr = PtrFact::None;
    assert_eq!(hit(&t, "10.1.1.1", &bad), at(0, "10.0.0.0/8"));
    // Whitelisted by name although listed.
    let mut named_listed = listed(0, &["127.0.0.2"]);
    named_listed.ptr = PtrFact::Confirmed("mx.trusted.example".into());
    assert_eq!(hit(&t, "198.51.100.1", &named_listed), at(0, ".trusted.example"));
    // Blacklisted: the listing comes before SUSPECTLIST's ptr:tempfail.
    let mut listed_tempfail = listed(0, &["127.0.0.2"]);
    listed_tempfail.ptr = PtrFact::TempFail;
    assert_eq!(hit(&t, "198.51.100.1", &listed_tempfail), at(1, "dnslist[bl.example.org]"));
    assert_eq!(hit(&t, "198.51.100.1", &ptr(PtrFact::None)), at(1, "ptr:none"));
    assert_eq!(hit(&t, "198.51.100.1", &ptr(PtrFact::TempFail)), at(2, "ptr:tempfail"));
    assert_eq!(hit(&t, "198.51.100.1", &listed(1, &["127.0.0.10"])), at(2, "dnslist[pbl.example.org]=127.0.0.10,127.0.0.11"));
    assert_eq!(hit(&t, "198.51.100.1", &name("other.example")), at(3, "ALL"));
    // Within a group the earliest entry is reported, address entries first
    // (so the log does not depend on which lookups were made).
    let t = table(&[("G", &["192.0.2.0/24", "192.0.2.1", "ALL"], false)]);
    assert_eq!(hit(&t, "192.0.2.1", &no_facts()), at(0, "192.0.2.0/24"));
    let t = table(&[("G", &["ptr:none", "dnslist[bl.example.org]", "192.0.2.0/24"], false)]);
    let mut both = listed(0, &["127.0.0.2"]);
    both.ptr = PtrFact::None;
    assert_eq!(hit(&t, "192.0.2.1", &both), at(0, "192.0.2.0/24"));
    assert_eq!(hit(&t, "198.51.100.1", &both), at(0, "ptr:none"));
    assert_eq!(hit(&t, "198.51.100.1", &listed(0, &["127.0.0.2"])), at(0, "dnslist[bl.example.org]"));
}

#[test]
fn needs_is_empty_when_the_address_decides_first() {
    let t = example();
    assert_eq!(t.needs(ip("10.9.9.9")), Needs::default());
    assert_eq!(t.needs(ip("192.0.2.15")), Needs::default());
    assert_eq!(t.needs(ip("2001:db8::25")), Needs::default());
    // Not whitelisted by address: the names, then both lists and the PTR.
    assert_eq!(t.needs(ip("198.51.100.1")), Needs { ptr: true, dnslists: vec![0, 1] });
}

#[test]
fn needs_stops_at_the_first_group_the_address_decides() {
    let t = table(&[
        ("BL", &["dnslist[bl.example.org]"], false),
        ("NETS", &["192.0.2.0/24"], false),
        ("NAMES", &[".example.net", "dnslist[pbl.example.org]"], false),
        ("ALL", &["ALL"], false),
    ]);
    assert_eq!(t.needs(ip("192.0.2.1")), Needs { ptr: false, dnslists: vec![0] });
    assert_eq!(t.needs(ip("198.51.100.1")), Needs { ptr: true, dnslists: vec![0, 1] });
    // In its own group a DNS criterion is not needed: the group matches anyway.
    let t = table(&[("G", &["ptr:none", "dnslist[bl.example.org]", "192.0.2.0/24"], false), ("H", &["ptr:mismatch"], false)]);
    assert!(t.needs(ip("192.0.2.1")).is_empty());
    assert_eq!(t.needs(ip("198.51.100.1")), Needs { ptr: true, dnslists: vec![0] });
}

#[test]
fn continue_groups_are_validated_but_never_match() {
    let t = table(&[
        ("SKIP", &["10.0.0.0/8", "dnslist[skip.example.org]", "ptr:none", ".example.com", "ALL"], true),
        ("NETS", &["10.1.0.0/16"], false),
    ]);
    assert_eq!(hit(&t, "10.1.2.3", &ptr(PtrFact::None)), at(1, "10.1.0.0/16"));
    assert_eq!(hit(&t, "10.2.0.1", &name("a.example.com")), None);
    assert!(t.zones().is_empty(), "a skipped group's lists are never queried");
    assert!(t.needs(ip("10.2.0.1")).is_empty());
    assert_eq!(t.len(), 6);
    let bad = try_table(&[("SKIP", &["10.0.0.0/33"], true)]).unwrap_err();
    assert_eq!((bad.group, bad.entry.as_str()), (0, "10.0.0.0/33"));
}

#[test]
fn compile_errors_name_the_group_the_entry_and_why() {
    let e = try_table(&[("OK", &["10.0.0.0/8"], false), ("BAD", &["192.0.2.1", "10.0.0.0/33"], false)]).unwrap_err();
    assert_eq!((e.group, e.group_name.as_str(), e.entry.as_str()), (1, "BAD", "10.0.0.0/33"));
    assert!(e.why.contains("/33"), "{}", e.why);
    assert_eq!(e.to_string(), format!("sender group 2 (`BAD`): sender `10.0.0.0/33`: {}", e.why));
    for (bad, why) in [("192.0.2.20-10", "reversed"), ("foo:bar", "unknown prefix"), ("10.1.2.3/8", "host bits")] {
        let e = try_table(&[("G", &[bad], false)]).unwrap_err();
        assert!(e.why.contains(why), "{bad}: {}", e.why);
    }
}

#[test]
fn empty_groups_and_tables_match_nothing() {
    let t = table(&[("WHITELIST", &[], false), ("BLACKLIST", &[], false)]);
    assert_eq!(hit(&t, "192.0.2.1", &name("a.example")), None);
    assert!(t.needs(ip("192.0.2.1")).is_empty());
    assert!(HatTable::compile(&[]).unwrap().is_empty());
}

#[test]
fn too_many_zones_or_entries_are_refused() {
    let zones: Vec<String> = (0..=HAT_DNSLIST_ZONES_MAX).map(|i| format!("dnslist[z{i}.example]")).collect();
    let e = HatTable::compile(&[HatGroupSpec { name: "Z", senders: &zones, skip: false }]).unwrap_err();
    assert!(e.why.contains("distinct DNS lists"), "{}", e.why);
    // The same zone twice is one zone.
    let twice = vec!["dnslist[z.example]".to_string(), "dnslist[Z.example.]=127.0.0.2".to_string()];
    assert_eq!(HatTable::compile(&[HatGroupSpec { name: "Z", senders: &twice, skip: false }]).unwrap().zones(), ["z.example"]);
    let many = vec!["192.0.2.1".to_string(); HAT_ENTRIES_MAX + 1];
    let e = HatTable::compile(&[HatGroupSpec { name: "BIG", senders: &many, skip: false }]).unwrap_err();
    assert!(e.why.contains("sender entries"), "{}", e.why);
}

#[test]
fn table_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<HatTable>();
}
