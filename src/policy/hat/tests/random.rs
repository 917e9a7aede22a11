//! A 10,000-entry table against a naive matcher that walks every group and
//! entry in order (the definition of "first match wins"), on random clients
//! and random DNS facts; and `needs` checked the same way, plus the promise
//! the lead relies on: facts outside `needs(ip)` never change the answer.
//! A deterministic PRNG (SplitMix64) keeps failures reproducible.

use super::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64 (Steele, Lea, Flood 2014).
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const ZONES: [&str; 5] = ["bl.example.org", "pbl.example.org", "wl.example.net", "dnsbl.test", "rbl.example"];

/// Client IPv4 addresses and entries crowd into 10.0.0.0/12 so they meet.
fn v4_near(rng: &mut Rng) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | (rng.next() as u32 & 0x000f_ffff))
}

/// IPv6 likewise in 2001:db8:0:0-f::/64.
fn v6_near(rng: &mut Rng) -> std::net::Ipv6Addr {
    let prefix: u128 = 0x2001_0db8_0000_0000 << 64;
    std::net::Ipv6Addr::from(prefix | (u128::from(rng.below(16)) << 64) | u128::from(rng.below(1 << 20)))
}

fn host_name(rng: &mut Rng) -> String {
    format!("mx{}.d{}.example", rng.below(40), rng.below(25))
}

/// One random entry, as an operator would write it; `address_only` keeps
/// to the kinds decided by the address alone.
fn entry(rng: &mut Rng, address_only: bool) -> String {
    match rng.below(if address_only { 66 } else { 100 }) {
        0..=29 => {
            let len = 22 + rng.below(11) as u8;
            format!("{}", IpNet::new(IpAddr::V4(v4_near(rng)), len).unwrap().trunc())
        }
        30..=41 => {
            let len = 112 + rng.below(17) as u8;
            format!("{}", IpNet::new(IpAddr::V6(v6_near(rng)), len).unwrap().trunc())
        }
        42..=49 => {
            let [a, b, c, d] = v4_near(rng).octets();
            format!("{a}.{b}.{c}.{d}-{}", d as u64 + rng.below(256 - d as u64))
        }
        50..=53 => {
            let [a, b, c, _] = v4_near(rng).octets();
            format!("{a}.{b}.{c}-{}.", c as u64 + rng.below(3.min(256 - c as u64)))
        }
        54..=56 => {
            let [a, b, c, _] = v4_near(rng).octets();
            format!("{a}.{b}.{c}.")
        }
        57..=61 => {
            let first = v4_near(rng);
            let last = Ipv4Addr::from(u32::from(first).saturating_add(rng.below(5000) as u32));
            format!("{first}-{last}")
        }
        62..=65 => {
            let first = v6_near(rng);
            let last = std::net::Ipv6Addr::from(u128::from(first).saturating_add(u128::from(rng.below(1 << 18))));
            format!("{first}-{last}")
        }
        66..=79 => host_name(rng),
        80..=87 => format!(".d{}.example", rng.below(25)),
        88..=93 => {
            let zone = ZONES[rng.below(ZONES.len() as u64) as usize];
            match rng.below(3) {
                0 => format!("dnslist[{zone}]"),
                _ => format!("dnslist[{zone}]=127.0.0.{},127.0.0.{}", 2 + rng.below(6), 2 + rng.below(6)),
            }
        }
        94..=95 => "ptr:none".into(),
        96..=97 => "ptr:tempfail".into(),
        98 => "ptr:mismatch".into(),
        _ => format!("::ffff:{}/{}", IpNet::new(IpAddr::V4(v4_near(rng)), 24).unwrap().trunc().network(), 120),
    }
}

struct Spec {
    names: Vec<String>,
    senders: Vec<Vec<String>>,
    /// `senders` parsed, for the reference matcher.
    criteria: Vec<Vec<SenderCriterion>>,
    skip: Vec<bool>,
}

impl Spec {
    /// `groups` groups of 10 entries; the first tenth are address-only (a
    /// whitelist of networks on top, so some clients need no lookup).
    fn random(rng: &mut Rng, groups: usize) -> Spec {
        let senders: Vec<Vec<String>> = (0..groups).map(|g| (0..10).map(|_| entry(rng, g < groups / 10)).collect()).collect();
        let criteria = senders.iter().map(|s| s.iter().map(|e| parse_sender(e).unwrap()).collect()).collect();
        let skip = (0..groups).map(|_| rng.chance(5)).collect();
        Spec { names: (0..groups).map(|g| format!("G{g}")).collect(), senders, criteria, skip }
    }

    fn groups(&self) -> Vec<HatGroupSpec<'_>> {
        (0..self.names.len()).map(|g| HatGroupSpec { name: &self.names[g], senders: &self.senders[g], skip: self.skip[g] }).collect()
    }
}

/// Is `ip` (canonical) in the address criterion `c`? IPv6 entries reach
/// IPv4 clients only wholly inside ::ffff:0:0/96.
fn covers(c: &SenderCriterion, ip: IpAddr) -> bool {
    let (first, last) = match c {
        SenderCriterion::Net(n) => (n.network(), n.broadcast()),
        SenderCriterion::Range { first, last } => (*first, *last),
        _ => return false,
    };
    let (first, last) = match (canonical_ip(first), canonical_ip(last)) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (IpAddr::V4(a), IpAddr::V4(b)),
        _ => (first, last),
    };
    first.is_ipv4() == ip.is_ipv4() && first <= ip && ip <= last
}

/// The naive reading of one entry.
fn reference_matches(c: &SenderCriterion, ip: IpAddr, facts: &HatFacts, zones: &[String]) -> bool {
    let confirmed = match &facts.ptr {
        PtrFact::Confirmed(n) => Some(n.trim_end_matches('.').to_ascii_lowercase()),
        _ => None,
    };
    match c {
        SenderCriterion::Net(_) | SenderCriterion::Range { .. } => covers(c, ip),
        SenderCriterion::Host(h) => confirmed.as_deref() == Some(h),
        SenderCriterion::Suffix(d) => confirmed.is_some_and(|n| n.ends_with(&format!(".{d}"))),
        SenderCriterion::DnsList { zone, codes } => facts.dnslists.iter().any(|(z, fact)| {
            let listed: Vec<_> = fact.listed_codes().iter().filter(|c| is_listing_code(**c)).collect();
            zones.get(*z) == Some(zone) && !listed.is_empty() && (codes.is_empty() || codes.iter().any(|c| listed.contains(&c)))
        }),
        SenderCriterion::PtrNone => facts.ptr == PtrFact::None,
        SenderCriterion::PtrTempFail => facts.ptr == PtrFact::TempFail,
        SenderCriterion::PtrMismatch => facts.ptr == PtrFact::Mismatch,
        SenderCriterion::All => true,
    }
}

fn decides_by_address(c: &SenderCriterion, ip: IpAddr) -> bool {
    *c == SenderCriterion::All || covers(c, ip)
}

/// First group whose entry matches, walking every entry; in a group the
/// address and ALL entries are reported before DNS ones.
fn reference_first_match(spec: &Spec, zones: &[String], ip: IpAddr, facts: &HatFacts) -> Option<(usize, String)> {
    let ip = canonical_ip(ip);
    for (g, criteria) in spec.criteria.iter().enumerate().filter(|(g, _)| !spec.skip[*g]) {
        let found = criteria
            .iter()
            .position(|c| decides_by_address(c, ip))
            .or_else(|| criteria.iter().position(|c| reference_matches(c, ip, facts, zones)));
        if let Some(e) = found {
            return Some((g, spec.senders[g][e].clone()));
        }
    }
    None
}

fn reference_needs(spec: &Spec, zones: &[String], ip: IpAddr) -> Needs {
    let ip = canonical_ip(ip);
    let mut needs = Needs::default();
    for (_, criteria) in spec.criteria.iter().enumerate().filter(|(g, _)| !spec.skip[*g]) {
        if criteria.iter().any(|c| decides_by_address(c, ip)) {
            break;
        }
        needs.ptr |= criteria.iter().any(SenderCriterion::needs_ptr);
        for c in criteria {
            if let SenderCriterion::DnsList { zone, .. } = c {
                needs.dnslists.push(zones.iter().position(|z| z == zone).unwrap());
            }
        }
    }
    needs.dnslists.sort_unstable();
    needs.dnslists.dedup();
    needs
}

fn random_client(rng: &mut Rng) -> IpAddr {
    match rng.below(10) {
        0..=4 => IpAddr::V4(v4_near(rng)),
        5 => IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
        6 => IpAddr::V6(v4_near(rng).to_ipv6_mapped()),
        7..=8 => IpAddr::V6(v6_near(rng)),
        _ => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()))),
    }
}

fn random_facts(rng: &mut Rng, zones: usize) -> HatFacts {
    let ptr = match rng.below(20) {
        0 => PtrFact::None,
        1 => PtrFact::TempFail,
        2 => PtrFact::Mismatch,
        3..=4 => PtrFact::Confirmed(format!("x.{}", host_name(rng)).to_uppercase()),
        5..=7 => PtrFact::Confirmed(host_name(rng)),
        8..=13 => PtrFact::Confirmed("mx.unrelated.test".into()),
        _ => PtrFact::Unknown,
    };
    let mut dnslists = Vec::new();
    for zone in (0..zones).filter(|_| rng.chance(20)).collect::<Vec<_>>() {
        let fact = match rng.below(5) {
            0 => DnsListFact::NotListed,
            1 => DnsListFact::Error,
            2 => DnsListFact::TimedOut,
            3 => DnsListFact::Listed(vec![Ipv4Addr::new(127, 255, 255, 254)]),
            _ => DnsListFact::Listed(vec![Ipv4Addr::new(127, 0, 0, 2 + rng.below(6) as u8)]),
        };
        dnslists.push((zone, fact));
    }
    HatFacts { ptr, dnslists }
}

/// `facts` reduced to what `needs` asked for.
fn only_needed(facts: &HatFacts, needs: &Needs) -> HatFacts {
    HatFacts {
        ptr: if needs.ptr { facts.ptr.clone() } else { PtrFact::Unknown },
        dnslists: facts.dnslists.iter().filter(|(z, _)| needs.dnslists.contains(z)).cloned().collect(),
    }
}

#[test]
fn ten_thousand_entries_agree_with_the_naive_matcher() {
    let mut rng = Rng(0x5eed_0006);
    let spec = Spec::random(&mut rng, 1000);
    let table = HatTable::compile(&spec.groups()).unwrap();
    assert_eq!(table.len(), 10_000);
    let zones = table.zones().to_vec();
    let (mut no_lookup, mut by_address, mut by_dns, mut none) = (0, 0, 0, 0);
    for round in 0..3000 {
        let ip = random_client(&mut rng);
        let facts = random_facts(&mut rng, zones.len());
        let got = table.first_match(ip, &facts).map(|m| (m.group, m.entry));
        assert_eq!(got, reference_first_match(&spec, &zones, ip, &facts), "round {round}: {ip} {facts:?}");
        let needs = table.needs(ip);
        assert_eq!(needs, reference_needs(&spec, &zones, ip), "round {round}: {ip}");
        let reduced = table.first_match(ip, &only_needed(&facts, &needs)).map(|m| (m.group, m.entry));
        assert_eq!(reduced, got, "round {round}: facts outside needs({ip}) changed the answer");
        no_lookup += usize::from(needs.is_empty());
        match got.map(|(_, entry)| parse_sender(&entry).unwrap()) {
            None => none += 1,
            Some(c) if decides_by_address(&c, canonical_ip(ip)) => by_address += usize::from(!needs.is_empty()),
            Some(_) => by_dns += 1,
        }
    }
    // The comparison means something only if every outcome was exercised.
    let outcomes = format!("no lookup {no_lookup}, address after lookups {by_address}, dns {by_dns}, none {none}");
    assert!(no_lookup > 300 && by_address > 300 && by_dns > 300 && none > 200, "{outcomes}");
}

#[test]
fn needs_names_the_zones_in_use_and_only_those() {
    let mut rng = Rng(42);
    let spec = Spec::random(&mut rng, 1000);
    let table = HatTable::compile(&spec.groups()).unwrap();
    let mut zones = table.zones().to_vec();
    zones.sort();
    let mut all: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
    all.sort();
    assert_eq!(zones, all);
    // An address outside every block needs every lookup before ALL (none here).
    let far = ip("192.0.2.1");
    assert_eq!(table.needs(far), Needs { ptr: true, dnslists: (0..ZONES.len()).collect() });
}
