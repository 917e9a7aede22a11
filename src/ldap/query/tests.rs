//! Compiling queries (what check-config refuses) and reading entries.

use super::*;
use crate::config::ldap::{LdapQueryConfig, LdapServerConfig};

fn config(query: LdapQueryConfig) -> LdapConfig {
    let mut c = LdapConfig::default();
    c.server.insert("LDAP1".into(), LdapServerConfig { urls: vec!["ldap://127.0.0.1:3389".into()], base: "dc=example,dc=com".into(), ..Default::default() });
    c.query.insert("q".into(), query);
    c
}

fn routing(filter: &str) -> LdapQueryConfig {
    LdapQueryConfig {
        server: "LDAP1".into(),
        filter: filter.into(),
        rewrite_attribute: "mailRoutingAddress".into(),
        mailhost_attribute: "mailHost".into(),
        callahead_attribute: "callAhead".into(),
        ..Default::default()
    }
}

fn entry(pairs: &[(&str, &[&str])]) -> Entry {
    pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.iter().map(|s| s.to_string()).collect())).collect()
}

#[test]
fn the_seed_example_routes_call_ahead_to_its_own_hosts_on_its_port() {
    let q = Query::compile("q", &config(routing("(mail={d})"))).unwrap();
    let e = entry(&[("mailHost", &["smtp.mydomain.test"]), ("callAhead", &["smtp2.mydomain.test,smtp3.mydomain.test:9025"])]);
    let route = q.route(&e).usable().unwrap();
    assert_eq!(route.rewrite, None);
    assert_eq!(route.mailhosts.iter().map(ToString::to_string).collect::<Vec<_>>(), ["smtp.mydomain.test"]);
    assert_eq!(route.callahead_hosts().iter().map(ToString::to_string).collect::<Vec<_>>(), ["smtp2.mydomain.test:9025", "smtp3.mydomain.test:9025"]);
}

#[test]
fn without_call_ahead_hosts_call_ahead_asks_the_mail_host() {
    let q = Query::compile("q", &config(routing("(mail={a})"))).unwrap();
    let route = q.route(&entry(&[("mailhost", &["mh.test:2525"])])).usable().unwrap();
    assert_eq!(route.callahead_hosts(), route.mailhosts.as_slice());
}

#[test]
fn a_rewrite_must_be_an_address_and_garbage_makes_the_entry_unusable() {
    let q = Query::compile("q", &config(routing("(mail={a})"))).unwrap();
    let good = q.route(&entry(&[("mailRoutingAddress", &["real@inside.test"])])).usable().unwrap();
    assert_eq!(good.rewrite.as_deref(), Some("real@inside.test"));
    for bad in [entry(&[("mailRoutingAddress", &["not an address"])]), entry(&[("mailHost", &["bad host name"])]), entry(&[("<cut>", &["mailhost: a value cut"])])] {
        assert!(q.route(&bad).usable().is_err(), "{bad:?}");
        assert!(q.route(&bad).usable_for_callahead().is_err(), "{bad:?}");
    }
    // A bad call-ahead host stops call-ahead only: delivery never reads it.
    let bad_callahead = entry(&[("mailHost", &["mh.test"]), ("callAhead", &["h.test:99999"])]);
    assert!(q.route(&bad_callahead).usable().is_ok());
    assert!(q.route(&bad_callahead).usable_for_callahead().is_err());
}

#[test]
fn the_key_is_the_domain_only_when_the_filter_uses_only_the_domain() {
    let by_domain = Query::compile("q", &config(routing("(mail={d})"))).unwrap();
    assert_eq!(by_domain.key("Joe@Example.TEST"), "example.test");
    let by_address = Query::compile("q", &config(routing("(&(uid={u})(domain={d}))"))).unwrap();
    assert_eq!(by_address.key("Joe@Example.TEST"), "joe@example.test");
}

#[test]
fn an_accept_query_asks_for_no_attribute_and_has_the_configured_replies() {
    let q = Query::compile("q", &config(LdapQueryConfig { server: "LDAP1".into(), kind: QueryKind::Accept, filter: "(mail={a})".into(), ..Default::default() })).unwrap();
    assert_eq!(q.attributes(), ["1.1"]);
    assert_eq!((q.reject.code, q.reject.enhanced.as_str()), (550, "5.1.1"));
    let failure = q.failure.as_ref().unwrap();
    assert_eq!((failure.code, failure.enhanced.as_str()), (451, "4.4.3"));
    let accepting = LdapQueryConfig { server: "LDAP1".into(), kind: QueryKind::Accept, filter: "(mail={a})".into(), failure_action: FailureAction::Accept, ..Default::default() };
    assert!(Query::compile("q", &config(accepting)).unwrap().failure.is_none());
}

#[test]
fn mistakes_are_refused_with_their_key() {
    let refused = |q: LdapQueryConfig| Query::compile("q", &config(q)).unwrap_err();
    assert!(refused(routing("(mail={x})")).starts_with("filter:"));
    assert!(refused(routing("(mail={d}")).starts_with("filter:"));
    assert!(refused(LdapQueryConfig { server: "nope".into(), ..routing("(mail={d})") }).starts_with("server:"));
    assert!(refused(LdapQueryConfig { reject_code: 450, ..routing("(mail={d})") }).starts_with("reject_code:"));
    let bare = LdapQueryConfig { server: "LDAP1".into(), filter: "(mail={d})".into(), ..Default::default() };
    assert!(refused(bare).starts_with("mailhost_attribute:"), "a routing query that reads nothing");
    let mut c = config(routing("(mail={d})"));
    c.server.get_mut("LDAP1").unwrap().bind_dn = "cn=x".into();
    c.server.get_mut("LDAP1").unwrap().bind_password_file = "/nonexistent/ldap.pw".into();
    assert!(Query::compile("q", &c).unwrap_err().contains("bind_password_file"));
}

fn listener_config(keys: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
    crate::config::Config::from_toml(&format!(
        "hostname = \"mx.test\"\n[[listener]]\nname = \"in\"\naddress = \"127.0.0.1:2525\"\ntype = \"public\"\nrat = \"in\"\n{keys}\n\
         [[rat.in]]\nrecipient = \"example.test\"\naction = \"accept\"\n\
         [routes]\n\"example.test\" = [\"127.0.0.1:26\"]\n\
         [ldap.server.LDAP1]\nurls = [\"ldap://127.0.0.1:3389\"]\nbase = \"dc=example,dc=com\"\n\
         [ldap.query.\"R\"]\nserver = \"LDAP1\"\nkind = \"routing\"\nfilter = \"(mail={{d}})\"\nmailhost_attribute = \"mailHost\"\n\
         [ldap.query.\"A\"]\nserver = \"LDAP1\"\nkind = \"accept\"\nfilter = \"(mail={{a}})\"\n"
    ))
}

#[test]
fn a_listener_names_existing_queries_of_the_right_kind() {
    let config = listener_config("ldap_routing = \"R\"\nldap_accept = \"A\"").unwrap();
    let policy = crate::config::Policy::compile(&config, 0);
    let listener = policy.access.listener("in").unwrap();
    assert_eq!(listener.ldap_routing.as_ref().map(|q| q.name.as_str()), Some("R"));
    assert_eq!(listener.ldap_accept.as_ref().map(|q| q.name.as_str()), Some("A"));
    assert_eq!(policy.access.ldap_queries.len(), 2);
    for (keys, why) in [("ldap_routing = \"A\"", "kind"), ("ldap_accept = \"R\"", "kind"), ("ldap_accept = \"nope\"", "no [ldap.query")] {
        let err = listener_config(keys).unwrap_err().0;
        assert!(err.contains(why), "{keys}: {err}");
    }
}
