//! The session's side of call-ahead: at RCPT (after the RAT, which a
//! rejected recipient never gets past), ask the domain's owner shard for a
//! verdict within the profile's validation timeout, turn it into the reply
//! (enforce) or only the log line (warn), count an unknown mailbox for
//! DHAP, and write the one log line of the decision.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::owner::{Resolution, Source, Validate};
use super::profile::{Answer, Profile};
use super::verdict::{of_fault, Stage, Verdict};
use crate::ldap::hosts::LdapHost;
use crate::ldap::Query;
use crate::message::domain_of;
use crate::policy::client::Client;
use crate::policy::dhap;
use crate::shard::Shard;
use crate::smtp::{Decision, Reply};

/// Slack over the profile's timeout for the owner's answer to travel back.
const ANSWER_SLACK: Duration = Duration::from_millis(250);

/// What to probe: the recipient, or what its LDAP routing entry says.
struct Target {
    address: String,
    hosts: Vec<LdapHost>,
    /// "off" (no routing query), "entry", "no-entry", "error".
    ldap: &'static str,
}

/// Validate `mailbox` with `profile`: Accept, or the refusal to give. With
/// an LDAP routing query, its entry's rewritten address is what is probed
/// and its hosts are where; a directory that cannot be asked is the
/// profile's failure (ESA: LDAP unreachable is a temporary failure).
pub async fn validate(shard: &Shard, client: &Client, profile: &Arc<Profile>, routing: Option<&Arc<Query>>, mailbox: &str) -> Decision {
    let started = Instant::now();
    let target = match routing {
        Some(query) => ldap_target(shard, query, mailbox).await,
        None => Ok(Target { address: mailbox.to_string(), hosts: Vec::new(), ldap: "off" }),
    };
    // The routing lookup's share of the wait ("-" without one).
    let ldap_ms = match routing {
        Some(_) => format!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        None => "-".to_string(),
    };
    let (resolution, probed, ldap) = match target {
        Err(why) => (unanswered(shard, format!("LDAP routing: {why}")), mailbox.to_string(), "error"),
        Ok(target) => {
            let timeout = (started + profile.timeout).saturating_duration_since(Instant::now());
            let domain = domain_of(&target.address);
            let request = Validate { profile: profile.clone(), address: target.address.clone(), client_ip: client.ip, deadline: started + profile.timeout, hosts: target.hosts };
            let asked = async { Ok(shard.mesh.ask_owner(&domain, request).await) };
            let resolution = match glommio::timer::timeout(timeout + ANSWER_SLACK, asked).await {
                Ok(Ok(resolution)) => resolution,
                Ok(Err(gone)) => unanswered(shard, format!("the domain's owner shard did not answer: {gone}")),
                Err(_) => unanswered(shard, format!("validation timed out after {} ms", profile.timeout.as_millis())),
            };
            (resolution, target.address, target.ldap)
        }
    };
    let answer = profile.answer(&resolution.verdict);
    let enforce = !profile.warn_only;
    if enforce && resolution.verdict.is_invalid_recipient() {
        dhap::count_invalid(shard, client).await;
    }
    log(shard, client, mailbox, &resolution, &answer, enforce, started, (ldap, &probed, &ldap_ms));
    match answer {
        Answer::Refuse(reply) if enforce => Decision::Refuse(reply),
        _ => Decision::Accept,
    }
}

/// A RAT row with `bypass_callahead`: accepted without a probe, and said so.
pub fn bypass(shard: &Shard, client: &Client, mailbox: &str) {
    let resolution = Resolution { verdict: Verdict::Accepted(Reply::new(250, "2.1.5", "bypass")), source: Source::Bypass, server: None, shard: shard.mesh.id(), tls: None };
    log(shard, client, mailbox, &resolution, &Answer::Accept, true, Instant::now(), ("off", mailbox, "-"));
}

/// The address and hosts the recipient's LDAP routing entry gives; no
/// entry: the recipient itself, by its domain's route.
async fn ldap_target(shard: &Shard, query: &Arc<Query>, mailbox: &str) -> Result<Target, String> {
    let looked = shard.ldap.lookup(query, mailbox).await;
    match looked.answer? {
        None => Ok(Target { address: mailbox.to_string(), hosts: Vec::new(), ldap: "no-entry" }),
        Some(entry) => {
            let route = query.route(&entry).usable_for_callahead()?;
            let address = route.rewrite.clone().unwrap_or_else(|| mailbox.to_string());
            Ok(Target { address, hosts: route.callahead_hosts().to_vec(), ldap: "entry" })
        }
    }
}

fn unanswered(shard: &Shard, why: String) -> Resolution {
    Resolution { verdict: of_fault(Stage::Connect, why), source: Source::Probe, server: None, shard: shard.mesh.id(), tls: None }
}

/// The one log line of a call-ahead decision; `ldap`: what the routing
/// query found, the address probed, and the lookup's milliseconds.
#[allow(clippy::too_many_arguments)]
fn log(shard: &Shard, client: &Client, mailbox: &str, r: &Resolution, answer: &Answer, enforce: bool, started: Instant, ldap: (&str, &str, &str)) {
    let action = match (answer, enforce) {
        (Answer::Accept, _) => "accept",
        (Answer::Refuse(_), true) => "reject",
        (Answer::Refuse(_), false) => "warn-accept",
    };
    let server = r.server.map_or_else(|| "-".to_string(), |s| s.to_string());
    let (reply, why) = describe(&r.verdict);
    shard.metrics.callahead_verdict(r.source.name(), verdict_name(&r.verdict));
    shard.log.event("callahead", format_args!(
        "conn={} ip={} {} rcpt=<{mailbox}> source={} verdict={} action={action} server={server} reply=\"{}\" why=\"{}\" owner={} ms={:.3} ldap={} probed=<{}> ldap_ms={} tls={}",
        client.peer.connection_id, client.ip, client.label(), r.source.name(), verdict_name(&r.verdict),
        reply.escape_debug(), why.escape_debug(), r.shard, started.elapsed().as_secs_f64() * 1000.0, ldap.0, ldap.1, ldap.2,
        tls_label(r)
    ));
}

/// `tls=` of the log line: how the answering probe connection was
/// protected; "none" in clear, "-" when no probe answered (cache, breaker,
/// bypass, a failure before any connection).
fn tls_label(r: &Resolution) -> &str {
    match (&r.tls, r.server, r.source.name()) {
        (Some(tls), _, _) => tls,
        (None, Some(_), "probe") => "none",
        _ => "-",
    }
}

pub fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Accepted(_) => "accepted",
        Verdict::MailboxUnknown(_) => "mailbox-unknown",
        Verdict::RecipientRefused(_) => "refused",
        Verdict::TempFail(_) => "tempfail",
        Verdict::DownstreamFailure { .. } => "failure",
    }
}

/// The downstream's reply (if any) and the fault, for the log.
fn describe(verdict: &Verdict) -> (String, String) {
    match verdict {
        Verdict::Accepted(r) | Verdict::MailboxUnknown(r) | Verdict::RecipientRefused(r) | Verdict::TempFail(r) => (r.to_string(), String::new()),
        Verdict::DownstreamFailure { reply, why, .. } => (reply.as_ref().map_or_else(String::new, |r| r.to_string()), why.clone()),
    }
}
