//! What `portcullis ldap test` prints, without I/O (ESA's "Test Query"):
//! the query, the filter as sent, the directory's answer, and what routing
//! (or the accept query) makes of it, step by step.
//!
//! Where it sits: `test.rs` loads the config, asks the directory and DNS;
//! in between, [`plan`] says where delivery and call-ahead would go — the
//! same decisions `delivery::plan` and `callahead::validate` take (entry
//! hosts with the seed's port rules, else the (rewritten) domain's SMTP
//! route, else DNS; a directory error or an unusable entry routes nowhere)
//! — and after, [`render`] writes it all out. Both are pure, so every
//! branch is tested without LDAP or DNS.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::config::ldap::QueryKind;
use crate::config::routes::{RouteHost, Routes};
use crate::ldap::client::Entry;
use crate::ldap::hosts::LdapHost;
use crate::ldap::{Query, Route};
use crate::limits::SMTP_PORT;
use crate::message::domain_of;
use crate::routing::RouteError;
use crate::smtp::Reply;

/// The directory's answer: an entry, none, or why it could not be asked.
pub type Answer = Result<Option<Entry>, String>;

/// Where one side (delivery or call-ahead) goes, before DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Way {
    /// The entry's hosts, resolved with the seed's port rules
    /// (`routing::resolve_hosts`); `from` names the attribute.
    Hosts {
        address: String,
        from: String,
        hosts: Vec<LdapHost>,
    },
    /// The domain of `address` (the recipient's or the rewritten one),
    /// by its SMTP route, else DNS (`routing::resolve`); `why` says which
    /// stage sent it there.
    Domain {
        address: String,
        domain: String,
        why: String,
    },
    /// Not routed at all (deferred, or the profile's failure action).
    Nowhere { why: String },
}

/// What a routing query's answer means for delivery and call-ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The entry as `Query::route` reads it; None without an entry.
    pub route: Option<Route>,
    pub delivery: Way,
    pub callahead: Way,
}

/// What DNS made of one side: per host of a `Way::Hosts` (in order), and
/// the addresses the side would try, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub per_host: Vec<Result<Vec<SocketAddr>, RouteError>>,
    pub addresses: Option<Result<Vec<SocketAddr>, RouteError>>,
}

/// Everything one test run found, in the order it is printed.
#[derive(Debug)]
pub struct Report<'a> {
    pub query: &'a Query,
    pub address: String,
    pub filter: String,
    pub answer: Answer,
    /// Routing queries: the plan and what each side resolved to.
    pub routing: Option<(Plan, Resolved, Resolved)>,
}

/// Where delivery and call-ahead go for `address` given the `answer` of a
/// routing query: the decisions of `delivery::plan` and
/// `callahead::validate`, written out.
pub fn plan(query: &Query, address: &str, answer: &Answer) -> Plan {
    let entry = match answer {
        Err(_) => {
            // The reason is step 3's; each side says what it does about it.
            let why = "the directory cannot be asked";
            return Plan {
                route: None,
                delivery: Way::Nowhere {
                    why: format!("{why}: delivery defers (4xx), retried later"),
                },
                callahead: Way::Nowhere {
                    why: format!("{why}: the call-ahead profile's failure action"),
                },
            };
        }
        Ok(None) => {
            let by_domain = Way::Domain {
                address: address.to_string(),
                domain: domain_of(address),
                why: "no entry".into(),
            };
            return Plan {
                route: None,
                delivery: by_domain.clone(),
                callahead: by_domain,
            };
        }
        Ok(Some(entry)) => entry,
    };
    let route = query.route(entry);
    if let Err(why) = route.clone().usable() {
        let (delivery, callahead) = (
            format!("{why}: delivery defers (4xx)"),
            format!("{why}: the call-ahead profile's failure action"),
        );
        return Plan {
            route: Some(route),
            delivery: Way::Nowhere { why: delivery },
            callahead: Way::Nowhere { why: callahead },
        };
    }
    let routed = route.rewrite.clone().unwrap_or_else(|| address.to_string());
    let attribute = |a: &Option<String>| a.clone().unwrap_or_default();
    let by_domain = |why: &str| Way::Domain {
        address: routed.clone(),
        domain: domain_of(&routed),
        why: why.to_string(),
    };
    let delivery = match route.mailhosts.is_empty() {
        true => by_domain("the entry names no mail host"),
        false => Way::Hosts {
            address: routed.clone(),
            from: attribute(&query.mailhost_attribute),
            hosts: route.mailhosts.clone(),
        },
    };
    let callahead_unusable = route.clone().usable_for_callahead().err();
    let callahead = match (route.callahead.is_empty(), route.mailhosts.is_empty()) {
        _ if callahead_unusable.is_some() => Way::Nowhere {
            why: format!("{}: the call-ahead profile's failure action", callahead_unusable.unwrap_or_default()),
        },
        (false, _) => Way::Hosts {
            address: routed.clone(),
            from: attribute(&query.callahead_attribute),
            hosts: route.callahead.clone(),
        },
        (true, false) => Way::Hosts {
            address: routed.clone(),
            from: format!(
                "{} (no call-ahead hosts)",
                attribute(&query.mailhost_attribute)
            ),
            hosts: route.mailhosts.clone(),
        },
        (true, true) => by_domain("the entry names no call-ahead or mail host"),
    };
    Plan {
        route: Some(route),
        delivery,
        callahead,
    }
}

/// The whole printout; `routes` is the config's `[routes]`, to say which
/// stage each host or domain goes through.
pub fn render(report: &Report, routes: &Routes) -> String {
    let mut out = String::new();
    render_query(&mut out, report.query);
    let _ = writeln!(out, "2. filter: {}", report.filter);
    render_answer(&mut out, report.query, &report.answer);
    match (&report.query.kind, &report.routing) {
        (QueryKind::Accept, _) => {
            render_accept(&mut out, report.query, &report.address, &report.answer)
        }
        (QueryKind::Routing, Some((plan, delivery, callahead))) => {
            render_route(&mut out, plan, &report.answer);
            render_side(&mut out, (5, "delivery"), &plan.delivery, delivery, routes);
            render_side(
                &mut out,
                (6, "call-ahead"),
                &plan.callahead,
                callahead,
                routes,
            );
        }
        (QueryKind::Routing, None) | (QueryKind::Auth, _) => {}
    }
    out
}

fn render_query(out: &mut String, query: &Query) {
    let kind = match query.kind {
        QueryKind::Routing => "routing",
        QueryKind::Accept => "accept",
        QueryKind::Auth => "auth",
    };
    let server = &query.server;
    let bind = match server.bind_dn.is_empty() {
        true => "anonymous",
        false => server.bind_dn.as_str(),
    };
    let _ = writeln!(
        out,
        "1. query {:?}: kind {kind}, server {}",
        query.name, server.name
    );
    let _ = writeln!(out, "   urls: {}", server.urls.join(", "));
    let _ = writeln!(out, "   base: {}", server.base);
    let _ = writeln!(
        out,
        "   bind: {bind}{}",
        if server.starttls { " (StartTLS)" } else { "" }
    );
    let _ = writeln!(out, "   attributes: {}", query.attributes().join(", "));
}

fn render_answer(out: &mut String, query: &Query, answer: &Answer) {
    let entry = match answer {
        Err(why) => {
            let _ = writeln!(out, "3. result: error: {why}");
            return;
        }
        Ok(None) => {
            let _ = writeln!(out, "3. result: no entry");
            return;
        }
        Ok(Some(entry)) => entry,
    };
    let _ = writeln!(out, "3. result: entry found");
    for attribute in query.attributes().iter().filter(|a| *a != "1.1") {
        match entry.get(attribute) {
            Some(values) => {
                let _ = writeln!(out, "   {attribute}: {}", values.join(" | "));
            }
            None => {
                let _ = writeln!(out, "   {attribute}: (absent)");
            }
        }
    }
}

fn render_accept(out: &mut String, query: &Query, address: &str, answer: &Answer) {
    let line = match answer {
        Ok(Some(_)) => {
            "accept (the recipient has an entry; call-ahead next, if the listener has it)"
                .to_string()
        }
        Ok(None) => {
            let text = format!("<{address}>: {}", query.reject.lines.join(" "));
            format!(
                "refuse {} (no entry; counted by DHAP, never called ahead)",
                reply_text(&Reply::new(query.reject.code, &query.reject.enhanced, text))
            )
        }
        Err(_) => match &query.failure {
            Some(reply) => format!(
                "refuse {} (the directory cannot be asked: failure_action = reject)",
                reply_text(reply)
            ),
            None => "accept (the directory cannot be asked: failure_action = accept)".to_string(),
        },
    };
    let _ = writeln!(out, "4. accept: {line}");
}

fn render_route(out: &mut String, plan: &Plan, answer: &Answer) {
    let Some(route) = &plan.route else {
        let line = match answer {
            Err(_) => "4. routing: the directory could not be asked",
            Ok(_) => "4. routing: no entry → the recipient's domain (SMTP routes, then DNS)",
        };
        let _ = writeln!(out, "{line}");
        return;
    };
    let _ = writeln!(out, "4. routing: the entry");
    let _ = writeln!(
        out,
        "   rewritten address: {}",
        route.rewrite.as_deref().unwrap_or("none")
    );
    let _ = writeln!(out, "   mail hosts: {}", host_list(&route.mailhosts));
    let callahead = match route.callahead.is_empty() {
        true => format!(
            "{} (none of its own: the mail hosts)",
            host_list(route.callahead_hosts())
        ),
        false => host_list(&route.callahead),
    };
    let _ = writeln!(out, "   call-ahead hosts: {callahead}");
    for why in route.ignored.iter().chain(&route.ignored_callahead) {
        let _ = writeln!(out, "   unusable: {why}");
    }
}

/// One side's step: where it goes, each host's stage and addresses, and
/// the addresses it would try, in order.
fn render_side(
    out: &mut String,
    (step, side): (u8, &str),
    way: &Way,
    resolved: &Resolved,
    routes: &Routes,
) {
    let title = format!("{step}. {side}");
    match way {
        Way::Nowhere { why } => {
            let _ = writeln!(out, "{title}: nowhere: {why}");
            return;
        }
        Way::Hosts {
            address,
            from,
            hosts,
        } => {
            let _ = writeln!(out, "{title} of <{address}>: the entry's hosts ({from})");
            for (i, host) in hosts.iter().enumerate() {
                let found = resolved
                    .per_host
                    .get(i)
                    .map(addresses_text)
                    .unwrap_or_else(|| "not resolved".into());
                let _ = writeln!(out, "   {host}: {} → {found}", host_stage(host, routes));
            }
        }
        Way::Domain {
            address,
            domain,
            why,
        } => {
            let _ = writeln!(
                out,
                "{title} of <{address}>: {why} → {}",
                domain_stage(domain, routes)
            );
        }
    }
    let found = resolved
        .addresses
        .as_ref()
        .map(addresses_text)
        .unwrap_or_else(|| "not resolved".into());
    let _ = writeln!(out, "   {side} addresses: {found}");
}

/// Which of the seed's port rules a host from LDAP goes by (`routing`'s
/// module doc): an IP literal, its own SMTP route, or DNS.
pub fn host_stage(host: &LdapHost, routes: &Routes) -> String {
    let port = host.port.unwrap_or(SMTP_PORT);
    if host.ip().is_some() {
        return format!("IP literal, port {port}");
    }
    match routes.lookup_host(&host.host) {
        Some((key, entries)) => match host.port {
            Some(port) => format!(
                "SMTP route {key:?} = {}, LDAP port {port} replacing the route's",
                route_text(entries)
            ),
            None => format!(
                "SMTP route {key:?} = {}, the route's ports",
                route_text(entries)
            ),
        },
        None => format!("no SMTP route → DNS (MX, then A/AAAA), port {port}"),
    }
}

/// The stage a recipient domain goes by: its SMTP route (exact, `.suffix`
/// or `*`), else DNS.
pub fn domain_stage(domain: &str, routes: &Routes) -> String {
    if domain.is_empty() {
        return "no domain in the address: nothing to route".into();
    }
    match routes.lookup(domain) {
        Some((_, [RouteHost::UseDns])) | None => format!("DNS MX (then A/AAAA) for {domain}"),
        Some((key, entries)) => {
            format!("SMTP route {key:?} for {domain} = {}", route_text(entries))
        }
    }
}

fn route_text(entries: &[RouteHost]) -> String {
    entries
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn host_list(hosts: &[LdapHost]) -> String {
    match hosts.is_empty() {
        true => "none".into(),
        false => hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn addresses_text(found: &Result<Vec<SocketAddr>, RouteError>) -> String {
    match found {
        Ok(addresses) if addresses.is_empty() => "no address".into(),
        Ok(addresses) => addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) if e.is_permanent() => format!("error (final): {e}"),
        Err(e) => format!("error (temporary): {e}"),
    }
}

fn reply_text(reply: &Reply) -> String {
    format!(
        "\"{} {} {}\"",
        reply.code,
        reply.enhanced,
        reply.lines.join(" ")
    )
}

#[cfg(test)]
mod tests;
