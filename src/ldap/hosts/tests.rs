//! `parse_hosts` on the attribute values a directory really holds: the
//! seed's example, several values, every IP form, every refusal, the bound.

use super::*;

fn values(list: &[&str]) -> Vec<String> {
    list.iter().map(|v| v.to_string()).collect()
}

fn parse(list: &[&str]) -> Vec<LdapHost> {
    parse_hosts(&values(list)).unwrap_or_else(|e| panic!("{list:?}: {e}"))
}

fn host(host: &str, port: Option<u16>) -> LdapHost {
    LdapHost {
        host: host.into(),
        port,
    }
}

#[test]
fn the_seeds_example_puts_both_hosts_on_the_port_written_once() {
    assert_eq!(
        parse(&["smtp2.mydomain.com,smtp3.mydomain.com:9025"]),
        [
            host("smtp2.mydomain.com", Some(9025)),
            host("smtp3.mydomain.com", Some(9025))
        ]
    );
    // The seed's mailHost: one host, no port.
    assert_eq!(
        parse(&["smtp.mydomain.com"]),
        [host("smtp.mydomain.com", None)]
    );
}

#[test]
fn names_are_trimmed_lowered_and_lose_the_trailing_dot() {
    assert_eq!(
        parse(&[" SMTP2.MyDomain.com. , , smtp3.mydomain.com ,"]),
        [
            host("smtp2.mydomain.com", None),
            host("smtp3.mydomain.com", None)
        ]
    );
}

#[test]
fn several_values_read_as_one_list_with_the_first_port_written() {
    assert_eq!(
        parse(&[
            "a.example.com",
            "b.example.com:2525,c.example.com:2526",
            "d.example.com"
        ]),
        [
            host("a.example.com", Some(2525)),
            host("b.example.com", Some(2525)),
            host("c.example.com", Some(2526)),
            host("d.example.com", Some(2525))
        ]
    );
    assert_eq!(
        parse(&["a.example.com", "b.example.com"]),
        [host("a.example.com", None), host("b.example.com", None)]
    );
}

#[test]
fn every_ip_form_is_a_literal() {
    assert_eq!(
        parse(&["10.0.0.1", "10.0.0.2:2525"]),
        [host("10.0.0.1", Some(2525)), host("10.0.0.2", Some(2525))]
    );
    assert_eq!(parse(&["2001:DB8::1"]), [host("2001:db8::1", None)]);
    assert_eq!(parse(&["[2001:db8::1]"]), [host("2001:db8::1", None)]);
    assert_eq!(
        parse(&["[2001:db8::1]:26"]),
        [host("2001:db8::1", Some(26))]
    );
    assert_eq!(
        parse(&["[::1]:27,10.0.0.3"]),
        [host("::1", Some(27)), host("10.0.0.3", Some(27))]
    );
    let literal = &parse(&["[2001:db8::1]:26"])[0];
    assert_eq!(literal.ip(), Some("2001:db8::1".parse().unwrap()));
    assert_eq!(parse(&["mx.example.com"])[0].ip(), None);
}

#[test]
fn nothing_written_is_an_empty_list() {
    assert_eq!(parse(&[]), []);
    assert_eq!(parse(&["", " , ,", "  "]), []);
}

#[test]
fn garbage_is_refused_with_the_piece_and_the_reason() {
    for (bad, why) in [
        (":25", "no host before the port"),
        ("mx.example.com:", "is not a port"),
        ("mx.example.com:0", "port 0"),
        ("10.0.0.1:0", "port 0"),
        ("[::1]:0", "port 0"),
        ("mx.example.com:65536", "1-65535"),
        ("10.0.0.1:99999", "1-65535"),
        ("mx.example.com:smtp", "is not a port"),
        ("mx.example.com:+25", "is not a port"),
        ("mx.example.com:2 5", "is not a port"),
        ("mail one.example.com", "no spaces"),
        ("mx..example.com", "not a host name"),
        ("-mx.example.com", "not a host name"),
        ("mx-.example.com", "not a host name"),
        ("mx_1.example.com", "not a host name"),
        ("mx.exa*mple.com", "not a host name"),
        ("10.0.0.300", "does not end in a number"),
        ("[2001:db8::zz]", "IPv6 address in brackets"),
        ("[2001:db8::1", "[ADDRESS]:PORT"),
        ("2001:db8::zz:25", "[ADDRESS]:PORT"),
    ] {
        match parse_hosts(&values(&["good.example.com", bad])) {
            Ok(parsed) => panic!("{bad:?} parsed as {parsed:?}"),
            Err(e) => {
                assert!(e.contains(why), "{bad:?}: {e}");
                assert!(e.contains(&format!("{:?}", bad.trim())), "{bad:?}: {e}");
            }
        }
    }
}

#[test]
fn a_name_of_more_than_63_bytes_in_a_label_is_refused() {
    let long = format!("{}.example.com", "a".repeat(64));
    assert!(parse_hosts(&values(&[&long])).is_err());
    let fits = format!("{}.example.com", "a".repeat(63));
    assert_eq!(parse(&[&fits]), [host(&fits, None)]);
}

#[test]
fn duplicates_are_dropped_and_the_list_is_bounded() {
    assert_eq!(
        parse(&["a.example.com:25,A.example.com.", "a.example.com:26"]),
        [
            host("a.example.com", Some(25)),
            host("a.example.com", Some(26))
        ]
    );
    let many: Vec<String> = (0..ROUTE_ADDRESSES_MAX + 5)
        .map(|i| format!("mx{i}.example.com"))
        .collect();
    let parsed = parse_hosts(&[many.join(",")]).unwrap();
    assert_eq!(parsed.len(), ROUTE_ADDRESSES_MAX);
    assert_eq!(parsed[0], host("mx0.example.com", None));
    assert_eq!(
        parsed[ROUTE_ADDRESSES_MAX - 1].host,
        format!("mx{}.example.com", ROUTE_ADDRESSES_MAX - 1)
    );
}

#[test]
fn display_is_read_back_as_the_same_host() {
    for written in [
        "mx.example.com",
        "mx.example.com:2525",
        "10.0.0.1",
        "10.0.0.1:26",
        "2001:db8::1",
        "[2001:db8::1]:26",
    ] {
        let parsed = parse(&[written]);
        assert_eq!(parsed[0].to_string(), written);
        assert_eq!(parse(&[&parsed[0].to_string()]), parsed, "{written}");
    }
}
