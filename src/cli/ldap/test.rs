//! `portcullis ldap test QUERY ADDR` (issue 8 item 6, ESA's "Test
//! Query"): offline, no running appliance. Loads the config (the file, or
//! the built-in default, which has no queries), compiles QUERY as a reload
//! would, starts an LDAP thread of its own (`ldap::client::Directory`),
//! searches once, and for a routing query resolves what delivery and
//! call-ahead would use through DNS, then prints it all (`report`).
//!
//! The search and DNS run on one glommio executor of their own, as on a
//! shard (the resolver is glommio's UDP/TCP); nothing is cached across
//! runs, so what is printed is what the directory and DNS say now.
//!
//! Exit status: 0 the directory answered (an entry or none), 1 it could not
//! be asked (down, timeout, refused bind), 2 the config or the query is bad.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::report::{self, Answer, Plan, Report, Resolved, Way};
use crate::config::ldap::QueryKind;
use crate::config::{Config, Routes};
use crate::dns::{DnsSettings, Resolver};
use crate::ldap::client::Directory;
use crate::ldap::Query;
use crate::limits::LDAP_ANSWER_SLACK_MS;
use crate::metrics::Metrics;
use crate::routing;

/// Exit status: the directory answered.
const ANSWERED: i32 = 0;
/// Exit status: the directory could not be asked.
const DIRECTORY_ERROR: i32 = 1;
/// Exit status: the config or the query is bad.
const CONFIG_ERROR: i32 = 2;

/// What the command needs from the config, checked before any I/O.
struct Setup {
    query: Query,
    routes: Routes,
    dns: DnsSettings,
}

/// Run the test and print the report: the process exit status.
pub fn run(query: &str, address: &str, config: Option<&Path>, dns: &[SocketAddr]) -> i32 {
    let setup = match load(query, config, dns) {
        Ok(setup) => setup,
        Err(why) => {
            eprintln!("portcullis: {why}");
            return CONFIG_ERROR;
        }
    };
    let directory = Directory::start();
    let outcome = ask_and_resolve(&setup, &directory, address);
    // Ended before the process exits (see `Directory::stop_and_wait`).
    directory.stop_and_wait(std::time::Duration::from_millis(crate::limits::MAILLOG_CLOSE_WAIT_MS));
    let (answer, routing) = match outcome {
        Ok(outcome) => outcome,
        Err(why) => {
            eprintln!("portcullis: {why}");
            return DIRECTORY_ERROR;
        }
    };
    if let Err(why) = &answer {
        eprintln!("portcullis: the directory could not be asked: {why}");
    }
    let failed = answer.is_err();
    let filter = setup.query.template.fill(address);
    let report = Report {
        query: &setup.query,
        address: address.to_string(),
        filter,
        answer,
        routing,
    };
    print!("{}", report::render(&report, &setup.routes));
    match failed {
        true => DIRECTORY_ERROR,
        false => ANSWERED,
    }
}

/// The config (file or built-in default, `--dns` over `[dns] servers`),
/// QUERY compiled, the routes compiled. Err: what to tell the operator.
fn load(name: &str, file: Option<&Path>, dns: &[SocketAddr]) -> Result<Setup, String> {
    let mut config = match file {
        Some(path) => Config::from_file(path).map_err(|e| format!("invalid config: {e}"))?,
        None => Config::default(),
    };
    if config.ldap.query.is_empty() {
        let whose = file.map_or(
            "the built-in default config (give --config FILE)".to_string(),
            |p| p.display().to_string(),
        );
        return Err(format!(
            "{whose} has no [ldap.query.\"NAME\"]: nothing to test"
        ));
    }
    if !config.ldap.query.contains_key(name) {
        let known: Vec<&str> = config.ldap.query.keys().map(String::as_str).collect();
        return Err(format!(
            "no [ldap.query.\"{name}\"]; the config has {}",
            known.join(", ")
        ));
    }
    let query = Query::compile(name, &config.ldap)
        .map_err(|why| format!("ldap.query.\"{name}\": {why}"))?;
    let routes =
        Routes::compile(&config.routes).map_err(|(key, why)| format!("routes.\"{key}\": {why}"))?;
    if !dns.is_empty() {
        config.dns.servers = dns.to_vec();
    }
    Ok(Setup {
        query,
        routes,
        dns: config.dns,
    })
}

/// The directory's answer and, for a routing query, where each side goes.
/// Err: the executor could not run (the machine, not the directory).
fn ask_and_resolve(
    setup: &Setup,
    directory: &Directory,
    address: &str,
) -> Result<(Answer, Option<(Plan, Resolved, Resolved)>), String> {
    let search = directory.search(
        &setup.query.server,
        setup.query.template.fill(address),
        setup.query.attributes(),
    );
    let wait = setup.query.server.timeout + Duration::from_millis(LDAP_ANSWER_SLACK_MS);
    let server = setup.query.server.name.clone();
    let answer = on_executor(move || async move {
        match glommio::timer::timeout(wait, async { Ok(search.await) }).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "LDAP server {server} did not answer within {} ms",
                wait.as_millis()
            )),
        }
    })?;
    if setup.query.kind != QueryKind::Routing {
        return Ok((answer, None));
    }
    let plan = report::plan(&setup.query, address, &answer);
    let nameservers = setup
        .dns
        .nameservers()
        .map_err(|why| format!("[dns]: {why}"))?;
    let (dns, routes, ways) = (
        setup.dns.clone(),
        setup.routes.clone(),
        (plan.delivery.clone(), plan.callahead.clone()),
    );
    let (delivery, callahead) = on_executor(move || async move {
        let resolver = Resolver::new(nameservers, &dns, Arc::new(Metrics::default()));
        (
            resolve(&ways.0, &routes, &resolver).await,
            resolve(&ways.1, &routes, &resolver).await,
        )
    })?;
    Ok((answer, Some((plan, delivery, callahead))))
}

/// What DNS makes of one side: each host alone (to show it), then the
/// whole list as delivery or call-ahead would ask for it.
async fn resolve(way: &Way, routes: &Routes, resolver: &Resolver) -> Resolved {
    match way {
        Way::Nowhere { .. } => Resolved::default(),
        Way::Domain { domain, .. } if domain.is_empty() => Resolved::default(),
        Way::Domain { domain, .. } => Resolved {
            per_host: Vec::new(),
            addresses: Some(routing::resolve(domain, routes, resolver).await),
        },
        Way::Hosts { hosts, .. } => {
            let mut per_host = Vec::with_capacity(hosts.len());
            for host in hosts {
                per_host.push(
                    routing::resolve_hosts(std::slice::from_ref(host), routes, resolver).await,
                );
            }
            Resolved {
                per_host,
                addresses: Some(routing::resolve_hosts(hosts, routes, resolver).await),
            }
        }
    }
}

/// Runs `work` on a glommio executor of its own (unpinned) and waits for it.
fn on_executor<T, F, Fut>(work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("ldap-test")
        .spawn(work)
        .map_err(|e| format!("cannot start an executor: {e}"))?
        .join()
        .map_err(|e| format!("the executor failed: {e}"))
}
