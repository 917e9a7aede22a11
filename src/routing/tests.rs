//! The pure parts of routing: MX ordering, null MX, what a resolution
//! keeps and which failure it reports. Against a real DNS server:
//! tests/routing_dns.rs.

use super::*;

fn mx(preference: u16, exchange: &str) -> Mx {
    Mx {
        preference,
        exchange: exchange.into(),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn exchanges_come_by_preference() {
    let order = order_exchanges(vec![mx(30, "c.test"), mx(10, "a.test"), mx(20, "b.test")]);
    assert_eq!(order, ["a.test", "b.test", "c.test"]);
}

#[test]
fn equal_preferences_are_shuffled_and_both_come_first() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..64 {
        let order = order_exchanges(vec![mx(10, "a.test"), mx(10, "b.test"), mx(20, "c.test")]);
        assert_eq!(order[2], "c.test", "{order:?}");
        seen.insert(order);
    }
    // Each of the two orders has probability 2^-64 of never showing.
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn exchanges_are_deduplicated_bounded_and_a_stray_dot_is_skipped() {
    let mut mxs: Vec<Mx> = (0..30).map(|i| mx(i, &format!("mx{i}.test"))).collect();
    mxs.push(mx(0, ""));
    mxs.push(mx(50, "mx0.test"));
    let order = order_exchanges(mxs);
    assert_eq!(order.len(), ROUTE_MX_HOSTS_MAX);
    assert_eq!(order[0], "mx0.test");
    assert!(!order.iter().any(|n| n.is_empty()));
}

#[test]
fn a_null_mx_is_the_only_mx_with_an_empty_exchange() {
    assert!(is_null_mx(&[mx(0, "")]));
    assert!(!is_null_mx(&[mx(0, ""), mx(10, "mx.test")]));
    assert!(!is_null_mx(&[mx(10, "mx.test")]));
    assert!(!is_null_mx(&[]));
}

#[test]
fn found_keeps_the_first_place_of_a_duplicate_and_stops_at_the_bound() {
    let mut found = Found::default();
    found.push(addr("127.0.0.1:25"));
    found.push(addr("127.0.0.2:25"));
    found.push(addr("127.0.0.1:25"));
    found.push(addr("127.0.0.1:26"));
    assert_eq!(
        found.addresses,
        [
            addr("127.0.0.1:25"),
            addr("127.0.0.2:25"),
            addr("127.0.0.1:26")
        ]
    );
    let ips: Vec<IpAddr> = (0..40).map(|i| IpAddr::from([10, 0, 0, i])).collect();
    found.push_all(&ips, 25, "Many.Example.");
    assert!(found.is_full());
    assert_eq!(found.addresses.len(), ROUTE_ADDRESSES_MAX);
    assert_eq!(found.names.len(), ROUTE_ADDRESSES_MAX, "one name per address");
    assert_eq!(found.names[3].as_deref(), Some("many.example"), "names kept lower case, without the root dot");
    assert_eq!(found.names[0], None, "an IP literal has no name");
}

#[test]
fn addresses_win_over_any_failure() {
    let mut found = Found::default();
    found.temp_fail("MX host a: timeout".into());
    found.absorb(RouteError::NullMx);
    found.push(addr("127.0.0.1:25"));
    assert_eq!(found.finish(), Ok(vec![Target { address: addr("127.0.0.1:25"), name: None }]));
}

#[test]
fn without_addresses_a_temporary_failure_beats_null_mx_beats_not_found() {
    let mut found = Found::default();
    found.not_found("x not found".into());
    found.absorb(RouteError::NullMx);
    found.temp_fail("first".into());
    found.temp_fail("second".into());
    assert_eq!(found.finish(), Err(RouteError::TempFail("first".into())));

    let mut found = Found::default();
    found.not_found("x not found".into());
    found.absorb(RouteError::NullMx);
    assert_eq!(found.finish(), Err(RouteError::NullMx));

    let mut found = Found::default();
    found.not_found("x not found".into());
    assert_eq!(
        found.finish(),
        Err(RouteError::NotFound("x not found".into()))
    );
}

#[test]
fn errors_say_whether_they_are_final() {
    assert!(RouteError::NullMx.is_permanent());
    assert!(RouteError::NotFound("gone".into()).is_permanent());
    assert!(!RouteError::TempFail("servfail".into()).is_permanent());
    assert!(RouteError::NullMx.to_string().contains("RFC 7505"));
    assert_eq!(
        RouteError::TempFail("MX of a.test: timeout".into()).to_string(),
        "MX of a.test: timeout"
    );
}

#[test]
fn errors_become_the_rfc_replies() {
    assert_eq!(
        RouteError::NullMx.reply().to_string(),
        "556 5.1.10 Recipient address has null MX"
    );
    let gone =
        RouteError::NotFound("domain x.test not found: no MX and no A/AAAA record".into()).reply();
    assert_eq!((gone.code, gone.enhanced.as_str()), (550, "5.1.2"));
    let later = RouteError::TempFail("MX of x.test: SERVFAIL".into()).reply();
    assert_eq!((later.code, later.enhanced.as_str()), (451, "4.4.3"));
}
