//! Criterion benches of the HAT (Host Access Table) matcher: a table of
//! 10,000 sender entries (IPv4/IPv6 CIDRs, ranges, partial addresses, host
//! names, suffixes; 1,000 groups of 10) plus a last group `ALL`, and per
//! connection what the connect decision does: `needs(ip)`, then
//! `first_match(ip, facts)` with the DNS facts it asked for.
//!
//! Cases: an address matching in the last group (IPv4 and IPv6), an address
//! matching nothing (falls to ALL, the PTR looked up and unrelated), a
//! PTR-name match (exact and suffix) late in the table; and the compile.
//!
//! Run: `cargo bench --bench hat` (about 20 s).

use std::net::IpAddr;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::policy::hat::{HatFacts, HatGroupSpec, HatTable, PtrFact};

const GROUPS: usize = 1000;

/// Entry `k` of group `g`; `i` numbers the entry across the table so no two
/// address entries overlap (a late address then matches only late).
fn entry(g: usize, k: usize) -> String {
    let i = g * 10 + k;
    let (a, b) = (i / 256, i % 256);
    match k {
        0 => format!("10.{a}.{b}.0/24"),
        1 => format!("2001:db8:{i:x}::/48"),
        2 => format!("172.{}.{}.{}/28", 16 + i / 4096, (i / 16) % 256, (i % 16) * 16),
        3 => format!("11.{a}.{b}.10-11.{a}.{b}.20"),
        4 => format!("12.{a}.{b}.1-100"),
        5 => format!("13.{a}.{b}."),
        6 => format!("mx{i}.partner{g}.example"),
        7 => format!("mail{i}.example.net"),
        8 => format!(".d{g}.example.org"),
        _ => format!("2001:db8:ffff::{i:x}:0-2001:db8:ffff::{i:x}:ff"),
    }
}

fn table() -> (Vec<String>, Vec<Vec<String>>) {
    let mut names: Vec<String> = (0..GROUPS).map(|g| format!("G{g}")).collect();
    let mut senders: Vec<Vec<String>> = (0..GROUPS).map(|g| (0..10).map(|k| entry(g, k)).collect()).collect();
    names.push("ALL".into());
    senders.push(vec!["ALL".into()]);
    (names, senders)
}

fn compile(names: &[String], senders: &[Vec<String>]) -> HatTable {
    let specs: Vec<HatGroupSpec> = names.iter().zip(senders).map(|(name, senders)| HatGroupSpec { name, senders, skip: false }).collect();
    HatTable::compile(&specs).expect("bench table compiles")
}

/// One connection: what to look up, then the match with those facts.
fn decide(table: &HatTable, ip: IpAddr, facts: &HatFacts) -> Option<usize> {
    let needs = table.needs(black_box(ip));
    let none = HatFacts::default();
    let facts = if needs.ptr { facts } else { &none };
    table.first_match(ip, facts).map(|m| m.group)
}

fn bench_hat(c: &mut Criterion) {
    let (names, senders) = table();
    let table = compile(&names, &senders);
    let confirmed = |name: &str| HatFacts { ptr: PtrFact::Confirmed(name.into()), dnslists: vec![] };
    let cases: [(&str, &str, HatFacts, usize); 5] = [
        ("late_ipv4_address", "10.39.6.77", HatFacts::default(), GROUPS - 1),
        ("late_ipv6_range", "2001:db8:ffff::270f:a0", HatFacts::default(), GROUPS - 1),
        ("no_match_falls_to_all", "203.0.113.5", confirmed("mta.unrelated.test"), GROUPS),
        ("late_ptr_name", "203.0.113.5", confirmed("mx9986.partner998.example"), GROUPS - 2),
        ("late_ptr_suffix", "203.0.113.5", confirmed("a.b.d997.example.org"), GROUPS - 3),
    ];
    let mut group = c.benchmark_group("hat_10000");
    for (name, ip, facts, expected) in &cases {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(decide(&table, ip, facts), Some(*expected), "{name}");
        group.bench_function(*name, |b| b.iter(|| decide(&table, ip, facts)));
    }
    group.bench_function("compile", |b| b.iter(|| compile(&names, &senders)));
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = bench_hat }
criterion_main!(benches);
