//! One round's routing plan for a job: its pending recipients split into
//! legs, each with the addresses to try and the address each recipient is
//! sent as.
//!
//! Without an LDAP routing query (the message's listener had none) there
//! is one leg: the job's domain, routed (`crate::routing::resolve`). With
//! one, each recipient is looked up (on the owner shard of the query's
//! key; one lookup serves a whole domain when the filter uses only `{d}`):
//! - no entry: the domain's route, as without LDAP;
//! - an entry: its rewritten address (if any) is what is sent, to its mail
//!   hosts with the seed's port rules (`routing::resolve_hosts`), or,
//!   without mail hosts, by the rewritten address's domain;
//! - the directory cannot be asked, or the entry holds a value that cannot
//!   be used: the recipient is deferred (TempFail), never sent somewhere
//!   the directory might not have said.
//! Recipients that end up with the same hosts share a leg (one transaction).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::DeliveryJob;
use crate::config::Routes;
use crate::dns::Resolver;
use crate::ldap::lookup::Lookups;
use crate::ldap::Query;
use crate::message::domain_of;
use crate::routing::{self, RouteError, Target};

/// Recipients that go the same way this round.
#[derive(Debug)]
pub struct Leg {
    /// Indices into the envelope's recipients.
    pub recipients: Vec<u32>,
    /// The address each recipient is sent as, where LDAP rewrote it.
    pub rewrites: BTreeMap<u32, String>,
    /// The addresses to try, each with the host name it came from (the
    /// peer's TLS identity).
    pub route: Result<Vec<Target>, RouteError>,
    /// What the hosts came from, for the log ("domain", "ldap", "ldap-error").
    pub via: &'static str,
}

impl Leg {
    /// Every one of `recipients` waits this round, for `why`.
    pub fn deferred(recipients: &[u32], why: String) -> Leg {
        Leg { recipients: recipients.to_vec(), rewrites: BTreeMap::new(), route: Err(RouteError::TempFail(why)), via: "ldap-error" }
    }

    /// The address recipient `index` is sent as.
    pub fn address<'a>(&'a self, job: &'a DeliveryJob, index: u32) -> &'a str {
        self.rewrites.get(&index).map_or(
            job.envelope.recipients[index as usize].as_str(),
            String::as_str,
        )
    }
}

/// Where one recipient goes, before the hosts are resolved.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Way {
    Domain(String),
    MailHosts(Vec<String>),
    Deferred(String),
}

/// The legs of this round for `pending`.
pub async fn plan(
    job: &DeliveryJob,
    pending: &[u32],
    query: Option<&Arc<Query>>,
    routes: &Routes,
    resolver: &Resolver,
    ldap: &Lookups,
) -> Vec<Leg> {
    let Some(query) = query else {
        let route = routing::resolve_targets(&job.destination, routes, resolver).await;
        return vec![Leg {
            recipients: pending.to_vec(),
            rewrites: BTreeMap::new(),
            route,
            via: "domain",
        }];
    };
    let mut ways: BTreeMap<
        Way,
        (
            Vec<u32>,
            BTreeMap<u32, String>,
            Vec<crate::ldap::hosts::LdapHost>,
        ),
    > = BTreeMap::new();
    let mut by_key: BTreeMap<String, crate::ldap::lookup::Answer> = BTreeMap::new();
    // After one failure the directory is not asked again this round: a
    // server that does not answer would otherwise cost each recipient in
    // turn its whole timeout.
    let mut failed: Option<String> = None;
    for &index in pending {
        let recipient = &job.envelope.recipients[index as usize];
        let key = query.key(recipient);
        let answer = match (by_key.get(&key), &failed) {
            (Some(answer), _) => answer.clone(),
            (None, Some(why)) => Err(why.clone()),
            (None, None) => {
                let answer = ldap.lookup(query, recipient).await.answer;
                if let Err(why) = &answer {
                    failed = Some(why.clone());
                }
                by_key.insert(key, answer.clone());
                answer
            }
        };
        let (way, rewrite, hosts) = match answer {
            Err(why) => (
                Way::Deferred(format!("LDAP routing query {}: {why}", query.name)),
                None,
                Vec::new(),
            ),
            Ok(None) => (Way::Domain(job.destination.clone()), None, Vec::new()),
            Ok(Some(entry)) => match query.route(&entry).usable() {
                Err(why) => (
                    Way::Deferred(format!("LDAP routing query {}: {why}", query.name)),
                    None,
                    Vec::new(),
                ),
                Ok(route) => {
                    let sent_as = route.rewrite.clone().unwrap_or_else(|| recipient.clone());
                    let way = match route.mailhosts.is_empty() {
                        true => Way::Domain(domain_of(&sent_as)),
                        false => Way::MailHosts(
                            route.mailhosts.iter().map(ToString::to_string).collect(),
                        ),
                    };
                    (way, route.rewrite, route.mailhosts)
                }
            },
        };
        let leg = ways.entry(way).or_default();
        leg.0.push(index);
        if let Some(rewrite) = rewrite {
            leg.1.insert(index, rewrite);
        }
        leg.2 = hosts;
    }
    let mut legs = Vec::with_capacity(ways.len());
    for (way, (recipients, rewrites, hosts)) in ways {
        let (route, via) = match way {
            Way::Domain(domain) => (routing::resolve_targets(&domain, routes, resolver).await, "domain"),
            Way::MailHosts(_) => (
                routing::resolve_host_targets(&hosts, routes, resolver).await,
                "ldap",
            ),
            Way::Deferred(why) => (Err(RouteError::TempFail(why)), "ldap-error"),
        };
        legs.push(Leg {
            recipients,
            rewrites,
            route,
            via,
        });
    }
    legs
}
