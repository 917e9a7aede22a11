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
use crate::message::domain_of;
use crate::policy::client::Client;
use crate::policy::dhap;
use crate::shard::Shard;
use crate::smtp::{Decision, Reply};

/// Slack over the profile's timeout for the owner's answer to travel back.
const ANSWER_SLACK: Duration = Duration::from_millis(250);

/// Validate `mailbox` with `profile`: Accept, or the refusal to give.
pub async fn validate(shard: &Shard, client: &Client, profile: &Arc<Profile>, mailbox: &str) -> Decision {
    let started = Instant::now();
    let request = Validate { profile: profile.clone(), address: mailbox.to_string(), client_ip: client.ip, deadline: started + profile.timeout };
    let asked = async { Ok(shard.mesh.ask_owner(&domain_of(mailbox), request).await) };
    let resolution = match glommio::timer::timeout(profile.timeout + ANSWER_SLACK, asked).await {
        Ok(Ok(resolution)) => resolution,
        Ok(Err(gone)) => unanswered(shard, format!("the domain's owner shard did not answer: {gone}")),
        Err(_) => unanswered(shard, format!("validation timed out after {} ms", profile.timeout.as_millis())),
    };
    let answer = profile.answer(&resolution.verdict);
    let enforce = !profile.warn_only;
    if enforce && resolution.verdict.is_invalid_recipient() {
        dhap::count_invalid(shard, client).await;
    }
    log(shard, client, mailbox, &resolution, &answer, enforce, started);
    match answer {
        Answer::Refuse(reply) if enforce => Decision::Refuse(reply),
        _ => Decision::Accept,
    }
}

/// A RAT row with `bypass_callahead`: accepted without a probe, and said so.
pub fn bypass(shard: &Shard, client: &Client, mailbox: &str) {
    let resolution = Resolution { verdict: Verdict::Accepted(Reply::new(250, "2.1.5", "bypass")), source: Source::Bypass, server: None, shard: shard.mesh.id() };
    log(shard, client, mailbox, &resolution, &Answer::Accept, true, Instant::now());
}

fn unanswered(shard: &Shard, why: String) -> Resolution {
    Resolution { verdict: of_fault(Stage::Connect, why), source: Source::Probe, server: None, shard: shard.mesh.id() }
}

/// The one log line of a call-ahead decision.
fn log(shard: &Shard, client: &Client, mailbox: &str, r: &Resolution, answer: &Answer, enforce: bool, started: Instant) {
    let action = match (answer, enforce) {
        (Answer::Accept, _) => "accept",
        (Answer::Refuse(_), true) => "reject",
        (Answer::Refuse(_), false) => "warn-accept",
    };
    let server = r.server.map_or_else(|| "-".to_string(), |s| s.to_string());
    let (reply, why) = describe(&r.verdict);
    shard.metrics.callahead_verdict(r.source.name(), verdict_name(&r.verdict));
    shard.log.event("callahead", format_args!(
        "conn={} ip={} {} rcpt=<{mailbox}> source={} verdict={} action={action} server={server} reply=\"{}\" why=\"{}\" owner={} ms={:.3}",
        client.peer.connection_id, client.ip, client.label(), r.source.name(), verdict_name(&r.verdict),
        reply.escape_debug(), why.escape_debug(), r.shard, started.elapsed().as_secs_f64() * 1000.0
    ));
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
