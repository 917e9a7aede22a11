//! Sender entry parsing: every form the HAT accepts, and every refusal with
//! its reason (what check-config shows the operator).

use super::*;

fn net(s: &str) -> SenderCriterion {
    SenderCriterion::Net(s.parse().unwrap())
}

fn range(first: &str, last: &str) -> SenderCriterion {
    SenderCriterion::Range { first: first.parse().unwrap(), last: last.parse().unwrap() }
}

fn parsed(s: &str) -> SenderCriterion {
    parse_sender(s).unwrap_or_else(|why| panic!("`{s}` refused: {why}"))
}

/// The entry is refused and the reason mentions `because`.
fn refused(s: &str, because: &str) {
    match parse_sender(s) {
        Ok(c) => panic!("`{s}` accepted as {c:?}"),
        Err(why) => assert!(why.contains(because), "`{s}`: `{why}` does not say `{because}`"),
    }
}

#[test]
fn addresses_are_single_address_blocks() {
    assert_eq!(parsed("192.0.2.7"), net("192.0.2.7/32"));
    assert_eq!(parsed(" 192.0.2.7 "), net("192.0.2.7/32"));
    assert_eq!(parsed("2001:db8::7"), net("2001:db8::7/128"));
    assert_eq!(parsed("::ffff:192.0.2.7"), net("::ffff:192.0.2.7/128"));
}

#[test]
fn cidr_blocks_v4_and_v6() {
    assert_eq!(parsed("10.0.0.0/8"), net("10.0.0.0/8"));
    assert_eq!(parsed("0.0.0.0/0"), net("0.0.0.0/0"));
    assert_eq!(parsed("192.0.2.7/32"), net("192.0.2.7/32"));
    assert_eq!(parsed("2001:db8::/48"), net("2001:db8::/48"));
    assert_eq!(parsed("::/0"), net("::/0"));
}

#[test]
fn cidr_errors_say_why() {
    refused("10.0.0.0/33", "not 0–32");
    refused("2001:db8::/129", "not 0–128");
    refused("10.0.0.0/", "prefix length");
    refused("10.0.0.0/+8", "prefix length");
    refused("10.0.0.0/x", "prefix length");
    refused("10.0.0/8", "not an IP address");
    refused("300.0.0.0/8", "not an IP address");
    refused("10.1.2.3/8", "did you mean `10.0.0.0/8`");
    refused("2001:db8::1/48", "did you mean `2001:db8::/48`");
}

#[test]
fn partial_addresses_are_prefixes() {
    assert_eq!(parsed("10."), net("10.0.0.0/8"));
    assert_eq!(parsed("10.2."), net("10.2.0.0/16"));
    assert_eq!(parsed("10.2.3."), net("10.2.3.0/24"));
}

#[test]
fn ranges_of_the_last_octet_a_partial_address_and_two_addresses() {
    assert_eq!(parsed("192.0.2.10-20"), range("192.0.2.10", "192.0.2.20"));
    assert_eq!(parsed("192.0.2.10-10"), range("192.0.2.10", "192.0.2.10"));
    assert_eq!(parsed("10.1.1-5."), range("10.1.1.0", "10.1.5.255"));
    assert_eq!(parsed("10-11."), range("10.0.0.0", "11.255.255.255"));
    assert_eq!(parsed("10.1-3."), range("10.1.0.0", "10.3.255.255"));
    assert_eq!(parsed("192.0.2.10-192.0.3.20"), range("192.0.2.10", "192.0.3.20"));
    assert_eq!(parsed("2001:db8::1-2001:db8::1:ff"), range("2001:db8::1", "2001:db8::1:ff"));
}

#[test]
fn address_and_range_errors_say_why() {
    refused("192.0.2.20-10", "reversed range");
    refused("10.1.5-1.", "reversed range");
    refused("192.0.3.1-192.0.2.1", "reversed range");
    refused("2001:db8::ff-2001:db8::1", "reversed range");
    refused("192.0.2.10-256", "not an octet");
    refused("192.0.2.300", "not an octet");
    refused("192.0.2.010", "no leading zeros");
    refused("192.0.2", "a partial address ends with a dot");
    refused("10.2.3.4.", "1 to 3 octets");
    refused("10..3.", "empty octet");
    refused(".", "empty name");
    refused("10.1.1-5", "ends with a dot");
    refused("10.1.1.-5.", "partial range as");
    refused("10.1.1.1-5.", "1 to 3 octets");
    refused("192.0.2.1-2-3", "one dash");
    refused("10.0.0.1.2-3", "more than 4 octets");
    refused("192.0.2.10-192.0.2", "octet");
    refused("2001:db8::1-ff", "two full IPv6 addresses");
    refused("2001:db8::1-192.0.2.1", "two full IPv6 addresses");
    refused("2001:db8:::1", "not an IPv6 address");
    refused("2001:db8::g", "not an IPv6 address");
}

#[test]
fn host_names_are_lower_case_without_trailing_dot() {
    assert_eq!(parsed("mail.partner.example"), SenderCriterion::Host("mail.partner.example".into()));
    assert_eq!(parsed("Mail.Partner.Example."), SenderCriterion::Host("mail.partner.example".into()));
    assert_eq!(parsed("localhost"), SenderCriterion::Host("localhost".into()));
    assert_eq!(parsed("mx-1.a_b.example"), SenderCriterion::Host("mx-1.a_b.example".into()));
    assert_eq!(parsed("1.2.3.example"), SenderCriterion::Host("1.2.3.example".into()));
}

#[test]
fn suffixes_name_the_domain_without_its_dot() {
    assert_eq!(parsed(".trusted.example"), SenderCriterion::Suffix("trusted.example".into()));
    assert_eq!(parsed(".Trusted.Example."), SenderCriterion::Suffix("trusted.example".into()));
}

#[test]
fn name_errors_say_why() {
    refused("*.example.com", "write `.example.com`");
    refused("mail..example", "1 to 63 characters");
    refused("..example", "1 to 63 characters");
    refused(&format!("{}.example", "a".repeat(64)), "1 to 63 characters");
    refused(&format!("{}.example", "a.".repeat(130)), "longer than 253");
    refused("mail partner.example", "` ` is not allowed");
    refused("mail@partner.example", "`@` is not allowed");
    refused("bücher.example", "A-label");
    refused(".10.2", "neither an address nor a host name");
}

#[test]
fn dnslists_with_and_without_return_codes() {
    let list = |zone: &str, codes: &[&str]| SenderCriterion::DnsList {
        zone: zone.into(),
        codes: codes.iter().map(|c| c.parse().unwrap()).collect(),
    };
    assert_eq!(parsed("dnslist[bl.example.org]"), list("bl.example.org", &[]));
    assert_eq!(parsed("DNSList[BL.Example.org.]"), list("bl.example.org", &[]));
    assert_eq!(parsed("dnslist[pbl.example.org]=127.0.0.10,127.0.0.11"), list("pbl.example.org", &["127.0.0.10", "127.0.0.11"]));
    assert_eq!(parsed("dnslist[pbl.example.org]=127.0.0.2, 127.0.0.4"), list("pbl.example.org", &["127.0.0.2", "127.0.0.4"]));
}

#[test]
fn dnslist_errors_say_why() {
    refused("dnslist[bl.example.org", "closing `]`");
    refused("dnslist[]", "zone: empty name");
    refused("dnslist[bl example]", "zone");
    refused("dnslist[bl.example.org]127.0.0.2", "codes follow `=`");
    refused("dnslist[bl.example.org]=", "not an IPv4 return code");
    refused("dnslist[bl.example.org]=127.0.0.2,", "not an IPv4 return code");
    refused("dnslist[bl.example.org]=127.0.0.256", "not an IPv4 return code");
    refused("dnslist[bl.example.org]=127.255.255.254", "not a listing");
    refused("dnslist[bl.example.org]=10.0.0.2", "not a listing");
    let many = vec!["127.0.0.2"; HAT_DNSLIST_CODES_MAX + 1].join(",");
    refused(&format!("dnslist[bl.example.org]={many}"), "return codes");
}

#[test]
fn ptr_criteria_and_all() {
    assert_eq!(parsed("ptr:none"), SenderCriterion::PtrNone);
    assert_eq!(parsed("PTR:TempFail"), SenderCriterion::PtrTempFail);
    assert_eq!(parsed("ptr:mismatch"), SenderCriterion::PtrMismatch);
    assert_eq!(parsed("ALL"), SenderCriterion::All);
    assert_eq!(parsed("all"), SenderCriterion::All);
    assert!(parsed("ptr:none").needs_ptr() && parsed(".a.example").needs_ptr() && parsed("a.example").needs_ptr());
    assert!(!parsed("ALL").needs_ptr() && !parsed("dnslist[x.example]").needs_ptr() && !parsed("10.").needs_ptr());
}

#[test]
fn unknown_prefixes_and_empty_entries_are_refused() {
    refused("ptr:maybe", "unknown `ptr:maybe`");
    refused("foo:bar", "unknown prefix `foo:`");
    refused("spf:example.com", "unknown prefix `spf:`");
    refused("", "empty sender entry");
    refused("   ", "empty sender entry");
}
