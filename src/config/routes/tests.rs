//! Route entries as operators write them, and ESA's key semantics.

use super::*;
use crate::config::Config;

fn host(s: &str) -> RouteHost {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn addr(s: &str) -> RouteHost {
    RouteHost::Addr(s.parse().unwrap())
}

fn name(host: &str, port: u16) -> RouteHost {
    RouteHost::Name {
        host: host.into(),
        port,
    }
}

#[test]
fn every_written_form_parses() {
    assert_eq!(host("10.0.0.11"), addr("10.0.0.11:25"));
    assert_eq!(host("10.0.0.11:2525"), addr("10.0.0.11:2525"));
    assert_eq!(host("[2001:db8::1]:25"), addr("[2001:db8::1]:25"));
    assert_eq!(host("[2001:db8::1]:2525"), addr("[2001:db8::1]:2525"));
    assert_eq!(host("2001:db8::1"), addr("[2001:db8::1]:25"));
    assert_eq!(host("[2001:db8::1]"), addr("[2001:db8::1]:25"));
    assert_eq!(host("mail1.example.com"), name("mail1.example.com", 25));
    assert_eq!(
        host("mail1.example.com:2525"),
        name("mail1.example.com", 2525)
    );
    assert_eq!(host("Mail1.Example.COM.:26"), name("mail1.example.com", 26));
    assert_eq!(host("localhost"), name("localhost", 25));
    assert_eq!(host(" mx.test "), name("mx.test", 25));
    for usedns in ["USEDNS", "usedns", "UseDns"] {
        assert_eq!(host(usedns), RouteHost::UseDns);
    }
}

#[test]
fn bad_forms_are_refused_with_a_reason() {
    for (bad, why) in [
        ("", "not a host name"),
        ("mail1.example.com:", "is not a port"),
        ("mail1.example.com:smtp", "is not a port"),
        ("mail1.example.com:70000", "is not a port"),
        ("10.0.0.11:0", "port 0"),
        ("mail1.example.com:0", "port 0"),
        ("mail1..example.com", "not a host name"),
        ("-bad_name.example", "not a host name"),
        ("mail one.example.com", "not a host name"),
        ("10.0.0.300", "does not end in a number"),
        ("10.0.0", "does not end in a number"),
        ("[2001:db8::1", "[ADDRESS]:PORT"),
        ("2001:db8::zz:25", "[ADDRESS]:PORT"),
        ("USEDNS:25", "USEDNS takes no port"),
    ] {
        match bad.parse::<RouteHost>() {
            Ok(parsed) => panic!("{bad:?} parsed as {parsed:?}"),
            Err(e) => assert!(e.contains(why), "{bad:?}: {e}"),
        }
    }
}

#[test]
fn display_is_read_back_as_the_same_entry() {
    for written in [
        "10.0.0.11",
        "10.0.0.11:2525",
        "2001:db8::1",
        "[2001:db8::1]:26",
        "mx.example.com",
        "mx.example.com:2525",
        "usedns",
    ] {
        let parsed = host(written);
        assert_eq!(
            host(&parsed.to_string()),
            parsed,
            "{written:?} shown as {parsed}"
        );
    }
    assert_eq!(host("10.0.0.11").to_string(), "10.0.0.11:25");
    assert_eq!(host("mx.example.com").to_string(), "mx.example.com:25");
    assert_eq!(host("usedns").to_string(), "USEDNS");
}

#[test]
fn usedns_cannot_be_a_static_server() {
    assert!(!RouteHost::UseDns.is_static_server());
    assert!(host("cah1.example.com:25").is_static_server());
    assert!(host("10.0.0.7:2525").is_static_server());
}

#[test]
fn a_bad_entry_in_the_file_is_named_with_its_line() {
    let text = "hostname = \"mx.test\"\n[routes]\n\"a.test\" = [\"10.0.0.1\"]\n\"b.test\" = [\"10.0.0.2\", \"mx..b.test:25\"]\n";
    let err = Config::from_toml(text).unwrap_err();
    assert!(err.0.starts_with("line 4: routes: "), "{}", err.0);
    assert!(
        err.0.contains("mx..b.test:25") && err.0.contains("route host"),
        "{}",
        err.0
    );
}

#[test]
fn a_bad_key_is_named_with_its_line() {
    let text =
        "hostname = \"mx.test\"\n[routes]\n\"*\" = [\"10.0.0.1\"]\n\"*.b.test\" = [\"10.0.0.2\"]\n";
    let err = Config::from_toml(text).unwrap_err();
    assert!(err.0.starts_with("line 4: routes:"), "{}", err.0);
    let empty = Config::from_toml("hostname = \"mx.test\"\n[routes]\n\"*\" = []\n").unwrap_err();
    assert!(
        empty.0.starts_with("line 3: routes:") && empty.0.contains("no hosts"),
        "{}",
        empty.0
    );
}

#[test]
fn the_effective_config_prints_entries_check_config_reads_back() {
    let text = "[routes]\n\"example.test\" = [\"mx1.example.test\", \"10.0.0.1\", \"usedns\"]\n\"*\" = [\"[2001:db8::1]:2525\"]\n";
    let config = Config::from_toml(text).unwrap();
    let printed = config.to_toml();
    assert!(printed.contains("\"mx1.example.test:25\""), "{printed}");
    assert_eq!(Config::from_toml(&printed).unwrap().routes, config.routes);
}

fn compiled(keys: &[&str]) -> Routes {
    let routes = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), vec![addr(&format!("10.0.0.{}:25", i + 1))]))
        .collect();
    Routes::compile(&routes).unwrap()
}

fn key_of<'a>(routes: &'a Routes, domain: &str) -> Option<&'a str> {
    routes.lookup(domain).map(|(key, _)| key)
}

#[test]
fn a_domain_key_matches_only_that_domain() {
    let routes = compiled(&["example.com"]);
    assert_eq!(key_of(&routes, "example.com"), Some("example.com"));
    assert_eq!(key_of(&routes, "EXAMPLE.com."), Some("example.com"));
    assert_eq!(
        key_of(&routes, "sub.example.com"),
        None,
        "no implicit parent match"
    );
    assert_eq!(key_of(&routes, "notexample.com"), None);
}

#[test]
fn a_dot_key_matches_subdomains_at_any_depth_but_not_the_domain() {
    let routes = compiled(&[".example.net"]);
    assert_eq!(key_of(&routes, "a.example.net"), Some(".example.net"));
    assert_eq!(key_of(&routes, "a.b.c.example.net"), Some(".example.net"));
    assert_eq!(key_of(&routes, "example.net"), None);
    assert_eq!(key_of(&routes, "badexample.net"), None);
}

#[test]
fn the_longest_suffix_wins_then_the_default() {
    let routes = compiled(&[".example.net", ".eu.example.net", "example.net", "*"]);
    assert_eq!(
        key_of(&routes, "mx.eu.example.net"),
        Some(".eu.example.net")
    );
    assert_eq!(
        key_of(&routes, "deep.mx.eu.example.net"),
        Some(".eu.example.net")
    );
    assert_eq!(key_of(&routes, "eu.example.net"), Some(".example.net"));
    assert_eq!(key_of(&routes, "example.net"), Some("example.net"));
    assert_eq!(key_of(&routes, "other.test"), Some("*"));
    let (_, hosts) = routes.lookup("eu.example.net").unwrap();
    assert_eq!(hosts, &[addr("10.0.0.1:25")]);
}

#[test]
fn exact_beats_a_suffix_and_keys_ignore_case() {
    let routes = compiled(&[".Example.Net", "A.Example.Net"]);
    assert_eq!(key_of(&routes, "a.example.net"), Some("a.example.net"));
    assert_eq!(key_of(&routes, "b.example.net"), Some(".example.net"));
}

#[test]
fn no_keys_means_no_route() {
    let routes = Routes::compile(&BTreeMap::new()).unwrap();
    assert!(routes.is_empty());
    assert_eq!(key_of(&routes, "example.com"), None);
}

#[test]
fn the_same_key_twice_in_other_case_is_refused() {
    let routes = BTreeMap::from([
        ("example.com".to_string(), vec![addr("10.0.0.1:25")]),
        ("EXAMPLE.com".to_string(), vec![addr("10.0.0.2:25")]),
    ]);
    let (key, why) = Routes::compile(&routes).unwrap_err();
    assert_eq!(key, "routes");
    assert!(why.contains("twice"), "{why}");
}

#[test]
fn a_host_from_ldap_takes_its_own_route_but_never_the_default() {
    let routes = compiled(&["*", ".example.net", "mx.example.org"]);
    let key_of_host = |name: &str| routes.lookup_host(name).map(|(key, _)| key);
    assert_eq!(key_of_host("Smtp2.Example.Net."), Some(".example.net"));
    assert_eq!(key_of_host("mx.example.org"), Some("mx.example.org"));
    // `lookup` would give "*": an LDAP host without a route goes by DNS.
    assert_eq!(key_of(&routes, "other.test"), Some("*"));
    assert_eq!(key_of_host("other.test"), None);
}
