//! The LDAP accept query at RCPT (ESA's LDAP Accept): after the RAT and
//! the rate limits, before call-ahead. A recipient with an entry goes on;
//! one without is refused with the query's reply (default 550 5.1.1),
//! counted for DHAP, and never called ahead; when the directory cannot be
//! asked, the query's failure action answers (default 451 4.4.3, or
//! accept). One `ldap-accept` log line per decision.

use std::sync::Arc;
use std::time::Instant;

use super::Query;
use crate::policy::client::Client;
use crate::policy::dhap;
use crate::shard::Shard;
use crate::smtp::{Decision, Reply};

/// None: the recipient exists (or the failure action accepts): go on.
pub async fn refusal(shard: &Shard, client: &Client, query: &Arc<Query>, mailbox: &str) -> Option<Decision> {
    let started = Instant::now();
    let looked = shard.ldap.lookup(query, mailbox).await;
    let (result, refusal, why) = match &looked.answer {
        Ok(Some(_)) => ("accepted", None, String::new()),
        Ok(None) => {
            dhap::count_invalid(shard, client).await;
            let reply = Reply::new(query.reject.code, &query.reject.enhanced, format!("<{mailbox}>: {}", query.reject.lines.join(" ")));
            ("rejected", Some(reply), String::new())
        }
        Err(why) => match &query.failure {
            Some(reply) => ("failure-rejected", Some(reply.clone()), why.clone()),
            None => ("failure-accepted", None, why.clone()),
        },
    };
    shard.metrics.ldap_accept(result);
    shard.log.event("ldap-accept", format_args!(
        "conn={} ip={} {} rcpt=<{mailbox}> query=\"{}\" result={result} cached={} owner={} why=\"{}\" ms={:.3}",
        client.peer.connection_id, client.ip, client.label(), query.name, looked.cached as u8,
        looked.shard, why.escape_debug(), started.elapsed().as_secs_f64() * 1000.0
    ));
    refusal.map(Decision::Refuse)
}
