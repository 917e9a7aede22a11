//! The per-recipient rate limits of a mail flow policy, one appliance-wide
//! counter per key on its owner shard (`policy::rate`):
//! - `max_recipients_per_hour`: per client (address or similarity group),
//!   one counter shared by every listener; each policy checks its own
//!   threshold against it;
//! - `sender_rate_limit` per `sender_rate_interval_secs`: per envelope
//!   sender, except the policy's exceptions (addresses, domains, client IPs)
//!   and the null sender (bounces come from everywhere as `<>`).
//!
//! With similarity grouping the client's counter is its group's; each
//! member address still gets a count of its own (`rcpt-ip:ADDR`, added in
//! the background, never refusing) that the refusal's log line reports.
//!
//! Both windows slide (see `policy::rate`). A recipient refused by the
//! sender limit has already spent its per-hour token: the per-hour count may
//! run ahead of what was accepted by at most the refused RCPTs (stated, not
//! worth a refund round trip).

use crate::policy::client::Client;
use crate::policy::rate::Unchecked;
use crate::shard::Shard;
use crate::smtp::Decision;

pub const RECIPIENTS_PER_HOUR_WINDOW_SECS: u64 = 3600;

/// The refusal of the first limit this recipient passes, else None.
pub async fn recipient(shard: &Shard, client: &Client, mail_from: &str) -> Option<Decision> {
    let flow = &client.policy;
    let p = &flow.params;
    if p.max_recipients_per_hour > 0 {
        let key = format!("rcpt:{}", client.key);
        match shard.counters.take(&key, p.max_recipients_per_hour, RECIPIENTS_PER_HOUR_WINDOW_SECS).await {
            Ok(granted) => {
                log_unchecked(shard, client, &key, granted.unchecked);
                count_member(shard, client);
            }
            Err(refused) => {
                let member = member_report(shard, client).await;
                return Some(refuse(shard, client, ("max_recipients_per_hour", &key), (refused.count, p.max_recipients_per_hour), flow.recipients_per_hour_reply(), &member));
            }
        }
    }
    if p.sender_rate_limit > 0 && !mail_from.is_empty() && !flow.sender_rate_exempt(mail_from, client.ip) {
        let key = format!("sender:{}:{}", p.sender_rate_interval_secs, mail_from.to_ascii_lowercase());
        match shard.counters.take(&key, p.sender_rate_limit, p.sender_rate_interval_secs).await {
            Ok(granted) => log_unchecked(shard, client, &key, granted.unchecked),
            Err(refused) => return Some(refuse(shard, client, ("sender_rate_limit", &key), (refused.count, p.sender_rate_limit), flow.sender_rate_reply(), "")),
        }
    }
    None
}

/// A counter that could not be checked let the recipient through (fail
/// open: only a stopping shard or a table full of busy keys does this); say so.
pub fn log_unchecked(shard: &Shard, client: &Client, key: &str, unchecked: Option<Unchecked>) {
    if let Some(why) = unchecked {
        shard.log.event("limit-unchecked", format_args!("conn={} {} key={key} why=\"{why}\"", client.peer.connection_id, client.label()));
    }
}

/// The key of one member address's own count inside a similarity group.
fn member_key(client: &Client) -> String {
    format!("rcpt-ip:{}", client.ip)
}

/// Count one accepted recipient for the member address of a grouped client,
/// off the RCPT's path (a background task: the reply does not wait for it).
fn count_member(shard: &Shard, client: &Client) {
    if !client.grouped() {
        return;
    }
    let (counters, key) = (shard.counters.clone(), member_key(client));
    glommio::spawn_local(async move {
        let _ = counters.add(&key, RECIPIENTS_PER_HOUR_WINDOW_SECS).await;
    })
    .detach();
}

/// ` ip=ADDR ip_count=N` for a grouped client's refusal line, else "".
async fn member_report(shard: &Shard, client: &Client) -> String {
    if !client.grouped() {
        return String::new();
    }
    let count = shard.counters.count(&member_key(client), RECIPIENTS_PER_HOUR_WINDOW_SECS).await.unwrap_or(0);
    format!(" ip={} ip_count={count}", client.ip)
}

fn refuse(shard: &Shard, client: &Client, (rule, key): (&str, &str), (count, max): (u32, u32), reply: crate::smtp::Reply, extra: &str) -> Decision {
    let kind = if rule == "sender_rate_limit" { "sender_rate" } else { "recipients_per_hour" };
    shard.metrics.rate_limit_refusal(kind);
    shard.log.event("limit", format_args!(
        "conn={} {} rule={rule} key={key} count={count} max={max}{extra} reply=\"{reply}\"",
        client.peer.connection_id, client.label()
    ));
    Decision::Refuse(reply)
}
