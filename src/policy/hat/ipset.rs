//! The HAT's (Host Access Table's) address index: every address criterion
//! (address, CIDR, partial address, range) of a table flattened into sorted,
//! disjoint intervals, each carrying the first entry that covers it.
//!
//! Built once by `HatTable::compile`; asked by `needs` and `first_match` on
//! every connection. One binary search per lookup (log2 of 2 × entries
//! steps, ~15 for 10,000 entries), however the entries overlap: CIDRs and
//! ranges are the same thing here, so ranges need no splitting into CIDRs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

use ipnet::IpNet;

/// An entry's number in the table: entries are numbered in table order
/// (group by group), so the smaller number is the earlier match.
pub type EntryId = u32;

/// Address intervals of both families, collected, then frozen by `build`.
#[derive(Default)]
pub struct AddressIndexBuilder {
    v4: Vec<Interval>,
    v6: Vec<Interval>,
}

/// Frozen: for every address, the first entry that covers it.
#[derive(Debug, Default)]
pub struct AddressIndex {
    v4: Segments,
    v6: Segments,
}

#[derive(Clone, Copy)]
struct Interval {
    first: u128,
    last: u128,
    entry: EntryId,
}

/// `starts` ascending, `starts[0] == 0`: segment i is [starts[i], starts[i+1]),
/// covered first by `entries[i]` (`None`: by no entry).
#[derive(Debug, Default)]
struct Segments {
    starts: Vec<u128>,
    entries: Vec<Option<EntryId>>,
}

impl AddressIndexBuilder {
    /// Adds the block `net` for `entry`. An IPv4-mapped IPv6 block
    /// (::ffff:0:0/96 or longer) is filed as IPv4, the way clients are.
    pub fn insert_net(&mut self, net: IpNet, entry: EntryId) {
        self.insert_range(net.network(), net.broadcast(), entry);
    }

    /// Adds `first..=last` (same family, `first <= last`) for `entry`.
    pub fn insert_range(&mut self, first: IpAddr, last: IpAddr, entry: EntryId) {
        match (super::canonical_ip(first), super::canonical_ip(last)) {
            (IpAddr::V4(a), IpAddr::V4(b)) => self.v4.push(Interval { first: u32::from(a).into(), last: u32::from(b).into(), entry }),
            (IpAddr::V6(a), IpAddr::V6(b)) => self.v6.push(Interval { first: a.into(), last: b.into(), entry }),
            // A range from a mapped address to a plain IPv6 one: keep it IPv6.
            _ => self.v6.push(Interval { first: v6_bits(first), last: v6_bits(last), entry }),
        }
    }

    pub fn build(self) -> AddressIndex {
        AddressIndex { v4: Segments::build(self.v4), v6: Segments::build(self.v6) }
    }
}

fn v6_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

impl AddressIndex {
    /// The first entry whose address criterion covers `ip` (already canonical).
    pub fn first_entry(&self, ip: IpAddr) -> Option<EntryId> {
        match ip {
            IpAddr::V4(v4) => self.v4.lookup(u32::from(v4).into()),
            IpAddr::V6(v6) => self.v6.lookup(v6.into()),
        }
    }
}

impl Segments {
    /// A sweep over the interval ends, keeping the covering entries in a
    /// min-heap; entries that ended are dropped lazily when they reach the
    /// top (one below the top can only be a later entry, so never the answer).
    fn build(mut intervals: Vec<Interval>) -> Segments {
        intervals.sort_unstable_by_key(|i| i.first);
        let mut points: Vec<u128> = Vec::with_capacity(2 * intervals.len() + 1);
        points.push(0);
        for i in &intervals {
            points.push(i.first);
            if let Some(after) = i.last.checked_add(1) {
                points.push(after);
            }
        }
        points.sort_unstable();
        points.dedup();
        let mut segments = Segments::default();
        let mut covering: BinaryHeap<Reverse<(EntryId, u128)>> = BinaryHeap::new();
        let mut next = 0;
        for point in points {
            while next < intervals.len() && intervals[next].first == point {
                covering.push(Reverse((intervals[next].entry, intervals[next].last)));
                next += 1;
            }
            while covering.peek().is_some_and(|Reverse((_, last))| *last < point) {
                covering.pop();
            }
            let entry = covering.peek().map(|Reverse((entry, _))| *entry);
            if segments.entries.last() != Some(&entry) {
                segments.starts.push(point);
                segments.entries.push(entry);
            }
        }
        debug_assert_eq!(segments.starts.first(), Some(&0));
        segments
    }

    fn lookup(&self, key: u128) -> Option<EntryId> {
        let after = self.starts.partition_point(|start| *start <= key);
        // starts[0] == 0 <= key, so `after` is at least 1 (when any segment exists).
        self.entries.get(after.checked_sub(1)?).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn index(entries: &[&str]) -> AddressIndex {
        let mut b = AddressIndexBuilder::default();
        for (id, e) in entries.iter().enumerate() {
            match e.split_once('-') {
                Some((a, z)) => b.insert_range(ip(a), ip(z), id as EntryId),
                None => b.insert_net(net(e), id as EntryId),
            }
        }
        b.build()
    }

    #[test]
    fn empty_index_matches_nothing() {
        let idx = AddressIndex::default();
        assert_eq!(idx.first_entry(ip("10.0.0.1")), None);
        assert_eq!(index(&[]).first_entry(ip("::1")), None);
    }

    #[test]
    fn nested_blocks_give_the_earliest_entry() {
        let idx = index(&["10.1.0.0/16", "10.0.0.0/8", "10.1.2.0/24"]);
        assert_eq!(idx.first_entry(ip("10.1.2.3")), Some(0));
        assert_eq!(idx.first_entry(ip("10.2.0.0")), Some(1));
        assert_eq!(idx.first_entry(ip("10.255.255.255")), Some(1));
        assert_eq!(idx.first_entry(ip("11.0.0.0")), None);
        assert_eq!(idx.first_entry(ip("9.255.255.255")), None);
    }

    #[test]
    fn later_narrower_block_inside_earlier_wide_one_never_wins() {
        let idx = index(&["10.0.0.0/8", "10.1.2.0/24"]);
        assert_eq!(idx.first_entry(ip("10.1.2.3")), Some(0));
    }

    #[test]
    fn overlapping_ranges_and_the_ends_of_the_space() {
        let idx = index(&["192.0.2.10-192.0.2.20", "192.0.2.15-255.255.255.255", "0.0.0.0/32"]);
        assert_eq!(idx.first_entry(ip("192.0.2.9")), None);
        assert_eq!(idx.first_entry(ip("192.0.2.10")), Some(0));
        assert_eq!(idx.first_entry(ip("192.0.2.20")), Some(0));
        assert_eq!(idx.first_entry(ip("192.0.2.21")), Some(1));
        assert_eq!(idx.first_entry(ip("255.255.255.255")), Some(1));
        assert_eq!(idx.first_entry(ip("0.0.0.0")), Some(2));
        assert_eq!(idx.first_entry(ip("0.0.0.1")), None);
        let all6 = index(&["::/0"]);
        assert_eq!(all6.first_entry(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), Some(0));
        assert_eq!(all6.first_entry(ip("10.0.0.1")), None);
    }

    #[test]
    fn mapped_ipv6_block_is_filed_as_ipv4() {
        let idx = index(&["::ffff:10.0.0.0/104", "2001:db8::/32"]);
        assert_eq!(idx.first_entry(ip("10.9.9.9")), Some(0));
        assert_eq!(idx.first_entry(ip("2001:db8::1")), Some(1));
        assert_eq!(idx.first_entry(ip("2001:db9::1")), None);
    }
}
