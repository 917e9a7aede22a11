//! DNS lists (DNSBL/DNSWL) for the HAT (Host Access Table): the query name
//! for a client and what a list's answer means.
//!
//! The resolver (the lead's lookup step, before `HatTable::first_match`)
//! asks `dnslist_query_name(ip, zone)` for A records and hands the answer to
//! `classify_dnslist_answer`; the resulting `DnsListFact` goes into
//! `HatFacts`. Peers have read 127.255.255.254 ("query refused") as a listing
//! and rejected all mail; here an error answer is never a listing.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

/// What one DNS list said about the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsListFact {
    /// Listed, with the return codes (every one a listing code).
    Listed(Vec<Ipv4Addr>),
    /// NXDOMAIN or no A record.
    NotListed,
    /// An error answer (127.255.255.0/24 or outside 127.0.0.0/8): never a listing; log it.
    Error,
    /// The lookup did not finish within `hat_lookup_timeout_ms`: never a listing; log it.
    TimedOut,
    /// The resolver gave up (SERVFAIL, its own timeout, a garbage answer):
    /// never a listing; log it.
    TempFail,
}

impl DnsListFact {
    /// The listing codes, or nothing when the fact is not a listing.
    pub fn listed_codes(&self) -> &[Ipv4Addr] {
        match self {
            Self::Listed(codes) => codes,
            _ => &[],
        }
    }
}

/// RFC 5782 §2.1: a listing is an A record in 127.0.0.0/8; 127.255.255.0/24
/// is reserved for error answers (e.g. 127.255.255.254 "query refused" at
/// Spamhaus), never a listing.
pub fn is_listing_code(code: Ipv4Addr) -> bool {
    let [a, b, c, _] = code.octets();
    a == 127 && !(b == 255 && c == 255)
}

/// Classifies a DNS list's A answer. An answer with any error or foreign
/// address is an error as a whole: a list that mixes them is not trusted.
pub fn classify_dnslist_answer(answer: &[Ipv4Addr]) -> DnsListFact {
    if answer.is_empty() {
        DnsListFact::NotListed
    } else if answer.iter().all(|code| is_listing_code(*code)) {
        DnsListFact::Listed(answer.to_vec())
    } else {
        DnsListFact::Error
    }
}

/// The name to query for `ip` in `zone`: RFC 5782 §2.1 reversed octets for
/// IPv4, §2.4 reversed nibbles for IPv6. An IPv4-mapped IPv6 address
/// (::ffff:a.b.c.d) is queried as the IPv4 address it is.
pub fn dnslist_query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.strip_suffix('.').unwrap_or(zone);
    let mut name = String::with_capacity(64 + zone.len());
    match super::canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let _ = write!(name, "{d}.{c}.{b}.{a}.");
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
        }
    }
    name.push_str(zone);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_query_name_reverses_the_octets() {
        assert_eq!(dnslist_query_name("192.0.2.99".parse().unwrap(), "bl.example.org"), "99.2.0.192.bl.example.org");
        assert_eq!(dnslist_query_name("192.0.2.99".parse().unwrap(), "bl.example.org."), "99.2.0.192.bl.example.org");
    }

    #[test]
    fn ipv6_query_name_reverses_the_nibbles() {
        // RFC 5782 §2.4's example.
        let ip = "2001:db8:1:2:3:4:567:89ab".parse().unwrap();
        assert_eq!(
            dnslist_query_name(ip, "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
    }

    #[test]
    fn ipv4_mapped_address_is_queried_as_ipv4() {
        assert_eq!(dnslist_query_name("::ffff:192.0.2.99".parse().unwrap(), "bl.test"), "99.2.0.192.bl.test");
    }

    #[test]
    fn listing_answers_are_in_127_8() {
        assert_eq!(classify_dnslist_answer(&[v4("127.0.0.2")]), DnsListFact::Listed(vec![v4("127.0.0.2")]));
        let both = [v4("127.0.0.2"), v4("127.0.0.4")];
        assert_eq!(classify_dnslist_answer(&both), DnsListFact::Listed(both.to_vec()));
        assert_eq!(classify_dnslist_answer(&[]), DnsListFact::NotListed);
    }

    #[test]
    fn error_answers_are_never_listings() {
        for error in ["127.255.255.254", "127.255.255.252", "127.255.255.255", "127.255.255.0", "10.0.0.2", "0.0.0.0"] {
            assert_eq!(classify_dnslist_answer(&[v4(error)]), DnsListFact::Error, "{error}");
            // A listing beside an error answer does not make it a listing.
            assert_eq!(classify_dnslist_answer(&[v4("127.0.0.2"), v4(error)]), DnsListFact::Error, "{error}");
        }
        assert!(is_listing_code(v4("127.255.254.1")));
        assert!(!is_listing_code(v4("128.0.0.2")));
    }
}
