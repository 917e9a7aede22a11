//! `ldap test`'s plan and printout, without LDAP or DNS: the seed's entry,
//! no entry, a rewrite, an unusable entry, a directory error, the accept
//! query's three answers, and which stage each host and domain goes by.

use std::collections::BTreeMap;

use crate::ldap::client::ServerSpec;

use super::*;
use crate::config::ldap::{LdapConfig, LdapQueryConfig, LdapServerConfig};

fn query(kind: QueryKind, rewrite: &str) -> Query {
    let mut c = LdapConfig::default();
    let server = LdapServerConfig {
        urls: vec!["ldap://127.0.0.1:3389".into()],
        base: "ou=domains,dc=example,dc=com".into(),
        ..Default::default()
    };
    c.server.insert("LDAP1".into(), server);
    let q = LdapQueryConfig {
        server: "LDAP1".into(),
        kind,
        filter: "(mail={d})".into(),
        rewrite_attribute: rewrite.into(),
        mailhost_attribute: if kind == QueryKind::Routing {
            "mailHost".into()
        } else {
            String::new()
        },
        callahead_attribute: if kind == QueryKind::Routing {
            "callAhead".into()
        } else {
            String::new()
        },
        ..Default::default()
    };
    c.query.insert("LDAP1.q".into(), q);
    let mut query = Query::compile("LDAP1.q", &c).unwrap();
    // Compiling with a bind DN would need a password file; the report never shows the password.
    let bound = ServerSpec {
        bind_dn: "cn=portcullis,dc=example,dc=com".into(),
        bind_password: "secret".into(),
        ..(*query.server).clone()
    };
    query.server = std::sync::Arc::new(bound);
    query
}

fn entry(pairs: &[(&str, &str)]) -> Entry {
    pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), vec![v.to_string()]))
        .collect()
}

fn seed_entry() -> Entry {
    entry(&[
        ("mailHost", "smtp.mydomain.example.test"),
        (
            "callAhead",
            "smtp2.mydomain.example.test,smtp3.mydomain.example.test:9025",
        ),
    ])
}

/// `[routes]` as an operator writes them.
fn routes(table: &[(&str, &[&str])]) -> Routes {
    let table: BTreeMap<String, Vec<RouteHost>> = table
        .iter()
        .map(|(key, hosts)| {
            (
                key.to_string(),
                hosts.iter().map(|h| h.parse().unwrap()).collect(),
            )
        })
        .collect();
    Routes::compile(&table).unwrap()
}

fn host(text: &str) -> LdapHost {
    crate::ldap::hosts::parse_hosts(&[text.to_string()])
        .unwrap()
        .remove(0)
}

fn addresses(list: &[&str]) -> Option<Result<Vec<SocketAddr>, RouteError>> {
    Some(Ok(list.iter().map(|a| a.parse().unwrap()).collect()))
}

#[test]
fn the_seed_entry_sends_delivery_to_the_mail_host_and_call_ahead_to_its_own_hosts() {
    let q = query(QueryKind::Routing, "");
    let plan = plan(&q, "user@cisco.example.test", &Ok(Some(seed_entry())));
    let hosts = |list: &[&str]| list.iter().map(|h| host(h)).collect::<Vec<_>>();
    assert_eq!(
        plan.delivery,
        Way::Hosts {
            address: "user@cisco.example.test".into(),
            from: "mailhost".into(),
            hosts: hosts(&["smtp.mydomain.example.test"])
        }
    );
    assert_eq!(
        plan.callahead,
        Way::Hosts {
            address: "user@cisco.example.test".into(),
            from: "callahead".into(),
            hosts: hosts(&[
                "smtp2.mydomain.example.test:9025",
                "smtp3.mydomain.example.test:9025"
            ])
        }
    );

    let delivery = Resolved {
        per_host: vec![Ok(vec!["127.0.0.71:25".parse().unwrap()])],
        addresses: addresses(&["127.0.0.71:25"]),
    };
    let callahead = Resolved {
        per_host: vec![
            Ok(vec!["127.0.0.72:9025".parse().unwrap()]),
            Err(RouteError::TempFail("SERVFAIL".into())),
        ],
        addresses: addresses(&["127.0.0.72:9025"]),
    };
    let report = Report {
        query: &q,
        address: "user@cisco.example.test".into(),
        filter: q.template.fill("user@cisco.example.test"),
        answer: Ok(Some(seed_entry())),
        routing: Some((plan, delivery, callahead)),
    };
    let text = render(&report, &routes(&[("*", &["127.0.0.1:2526"])]));
    assert!(!text.contains("secret"), "never the password");
    let expected = r#"1. query "LDAP1.q": kind routing, server LDAP1
   urls: ldap://127.0.0.1:3389
   base: ou=domains,dc=example,dc=com
   bind: cn=portcullis,dc=example,dc=com
   attributes: mailhost, callahead
2. filter: (mail=cisco.example.test)
3. result: entry found
   mailhost: smtp.mydomain.example.test
   callahead: smtp2.mydomain.example.test,smtp3.mydomain.example.test:9025
4. routing: the entry
   rewritten address: none
   mail hosts: smtp.mydomain.example.test
   call-ahead hosts: smtp2.mydomain.example.test:9025, smtp3.mydomain.example.test:9025
5. delivery of <user@cisco.example.test>: the entry's hosts (mailhost)
   smtp.mydomain.example.test: no SMTP route → DNS (MX, then A/AAAA), port 25 → 127.0.0.71:25
   delivery addresses: 127.0.0.71:25
6. call-ahead of <user@cisco.example.test>: the entry's hosts (callahead)
   smtp2.mydomain.example.test:9025: no SMTP route → DNS (MX, then A/AAAA), port 9025 → 127.0.0.72:9025
   smtp3.mydomain.example.test:9025: no SMTP route → DNS (MX, then A/AAAA), port 9025 → error (temporary): SERVFAIL
   call-ahead addresses: 127.0.0.72:9025
"#;
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn no_entry_goes_to_the_domains_route_on_both_sides() {
    let q = query(QueryKind::Routing, "");
    let plan = plan(&q, "u@other.test", &Ok(None));
    let by_domain = Way::Domain {
        address: "u@other.test".into(),
        domain: "other.test".into(),
        why: "no entry".into(),
    };
    assert_eq!(
        (&plan.route, &plan.delivery, &plan.callahead),
        (&None, &by_domain, &by_domain)
    );
    let resolved = Resolved {
        per_host: Vec::new(),
        addresses: addresses(&["127.0.0.1:2526"]),
    };
    let report = Report {
        query: &q,
        address: "u@other.test".into(),
        filter: "(mail=other.test)".into(),
        answer: Ok(None),
        routing: Some((plan, resolved.clone(), resolved)),
    };
    let text = render(&report, &routes(&[("*", &["127.0.0.1:2526"])]));
    assert!(
        text.contains("3. result: no entry\n4. routing: no entry → the recipient's domain (SMTP routes, then DNS)\n"),
        "{text}"
    );
    assert!(text.contains("5. delivery of <u@other.test>: no entry → SMTP route \"*\" for other.test = 127.0.0.1:2526\n   delivery addresses: 127.0.0.1:2526\n"), "{text}");
    assert!(
        text.contains(
            "6. call-ahead of <u@other.test>: no entry → SMTP route \"*\" for other.test"
        ),
        "{text}"
    );
}

#[test]
fn a_rewrite_is_what_is_routed_and_without_hosts_its_domain_decides() {
    let q = query(QueryKind::Routing, "mailRoutingAddress");
    let found = entry(&[("mailRoutingAddress", "jane@internal.test")]);
    let plan = plan(&q, "j@example.test", &Ok(Some(found)));
    let by_domain = |why: &str| Way::Domain {
        address: "jane@internal.test".into(),
        domain: "internal.test".into(),
        why: why.into(),
    };
    assert_eq!(plan.delivery, by_domain("the entry names no mail host"));
    assert_eq!(
        plan.callahead,
        by_domain("the entry names no call-ahead or mail host")
    );
    assert_eq!(
        plan.route.unwrap().rewrite.as_deref(),
        Some("jane@internal.test")
    );

    let mail_host_only = entry(&[("mailHost", "10.0.0.5:2525")]);
    let plan = super::plan(&q, "j@example.test", &Ok(Some(mail_host_only)));
    let Way::Hosts { from, hosts, .. } = &plan.callahead else {
        panic!("{plan:?}")
    };
    assert_eq!(
        (from.as_str(), hosts),
        (
            "mailhost (no call-ahead hosts)",
            &vec![host("10.0.0.5:2525")]
        ),
        "call-ahead asks the mail host"
    );
}

#[test]
fn an_unusable_entry_or_a_directory_error_routes_nowhere() {
    let q = query(QueryKind::Routing, "");
    let garbled = entry(&[("mailHost", "smtp..bad:99999")]);
    let plan = plan(&q, "u@x.test", &Ok(Some(garbled)));
    assert!(
        matches!(&plan.delivery, Way::Nowhere { why } if why.contains("unusable directory entry") && why.contains("defers")),
        "{plan:?}"
    );
    assert!(
        matches!(&plan.callahead, Way::Nowhere { why } if why.contains("failure action")),
        "{plan:?}"
    );
    let report = Report {
        query: &q,
        address: "u@x.test".into(),
        filter: String::new(),
        answer: Ok(None),
        routing: Some((plan, Resolved::default(), Resolved::default())),
    };
    let text = render(&report, &routes(&[]));
    assert!(
        text.contains("   unusable: LDAP host \"smtp..bad:99999\""),
        "{text}"
    );
    assert!(text.contains("5. delivery: nowhere: unusable"), "{text}");

    let down = super::plan(&q, "u@x.test", &Err("connection refused".into()));
    assert!(
        matches!(&down.delivery, Way::Nowhere { why } if why.contains("cannot be asked: delivery defers")),
        "{down:?}"
    );
    let report = Report {
        query: &q,
        address: "u@x.test".into(),
        filter: "(mail=x.test)".into(),
        answer: Err("connection refused".into()),
        routing: Some((down, Resolved::default(), Resolved::default())),
    };
    let text = render(&report, &routes(&[]));
    assert!(
        text.contains(
            "3. result: error: connection refused\n4. routing: the directory could not be asked\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("6. call-ahead: nowhere: the directory cannot be asked"),
        "{text}"
    );
}

#[test]
fn the_accept_query_says_accept_or_the_reply_it_refuses_with() {
    let q = query(QueryKind::Accept, "");
    let said = |answer: Answer| {
        let report = Report {
            query: &q,
            address: "nobody@example.test".into(),
            filter: String::new(),
            answer,
            routing: None,
        };
        render(&report, &routes(&[]))
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    assert!(said(Ok(Some(Entry::new()))).starts_with("4. accept: accept "));
    assert_eq!(said(Ok(None)), "4. accept: refuse \"550 5.1.1 <nobody@example.test>: User unknown\" (no entry; counted by DHAP, never called ahead)");
    assert!(
        said(Err("down".into())).starts_with("4. accept: refuse \"451 4.4.3 Directory unavailable"),
        "{}",
        said(Err("down".into()))
    );
    let mut accepting = query(QueryKind::Accept, "");
    accepting.failure = None;
    let report = Report {
        query: &accepting,
        address: "a@x.test".into(),
        filter: String::new(),
        answer: Err("down".into()),
        routing: None,
    };
    assert!(render(&report, &routes(&[]))
        .contains("4. accept: accept (the directory cannot be asked: failure_action = accept)"));
    assert!(
        render(&report, &routes(&[]))
            .contains("   attributes: 1.1\n2. filter: \n3. result: error: down\n"),
        "an accept query asks for no attribute"
    );
}

#[test]
fn stages_follow_the_seeds_port_rules() {
    let table = routes(&[
        ("smtp.mydomain.test", &["10.0.0.1:2525", "USEDNS"]),
        (".relay.test", &["10.0.0.2"]),
        ("*", &["10.0.0.9"]),
    ]);
    assert_eq!(
        host_stage(&host("smtp.mydomain.test"), &table),
        "SMTP route \"smtp.mydomain.test\" = 10.0.0.1:2525, USEDNS, the route's ports"
    );
    assert_eq!(host_stage(&host("smtp.mydomain.test:9025"), &table), "SMTP route \"smtp.mydomain.test\" = 10.0.0.1:2525, USEDNS, LDAP port 9025 replacing the route's");
    assert!(host_stage(&host("a.relay.test"), &table).starts_with("SMTP route \".relay.test\""));
    assert_eq!(
        host_stage(&host("other.test"), &table),
        "no SMTP route → DNS (MX, then A/AAAA), port 25",
        "never the * route"
    );
    assert_eq!(host_stage(&host("[::1]:26"), &table), "IP literal, port 26");
    assert_eq!(
        domain_stage("mail.other.test", &table),
        "SMTP route \"*\" for mail.other.test = 10.0.0.9:25"
    );
    assert_eq!(
        domain_stage("x.test", &routes(&[("*", &["USEDNS"])])),
        "DNS MX (then A/AAAA) for x.test"
    );
    assert_eq!(
        domain_stage("x.test", &routes(&[])),
        "DNS MX (then A/AAAA) for x.test"
    );
    assert_eq!(
        domain_stage("", &table),
        "no domain in the address: nothing to route"
    );
}
