//! DHAP, Directory Harvest Attack Prevention: invalid recipients per hour
//! per client (its address or similarity group), in a sliding window on the
//! owner shard of its key, for the whole appliance.
//!
//! `count_invalid` is the one place an invalid recipient is counted: RAT
//! rejects today; call-ahead "mailbox unknown" and LDAP accept rejects call
//! it too when they land. Once `dhap_max_invalid_per_hour` are counted in
//! the last hour, every further RCPT from that client, valid or not, in any
//! session on any shard, gets the DHAP reply (and with
//! `dhap_drop_connection` the connection is closed after it). The tarpit
//! delays this client's invalid-recipient replies only: it is a timer in its
//! own decision future, never a pause of the shard.

use std::time::Duration;

use crate::policy::client::Client;
use crate::shard::Shard;
use crate::smtp::Decision;

/// The sliding window DHAP counts over.
pub const WINDOW_SECS: u64 = 3600;

fn key(client: &Client) -> String {
    format!("dhap:{}", client.key)
}

/// The DHAP refusal if this client is over its threshold, else None.
pub async fn refusal(shard: &Shard, client: &Client) -> Option<Decision> {
    let max = client.policy.params.dhap_max_invalid_per_hour;
    if max == 0 {
        return None;
    }
    // A counter that cannot be checked (the owner shard is stopping) counts 0: fail open.
    let count = shard.counters.count(&key(client), WINDOW_SECS).await.unwrap_or(0);
    if count < max {
        return None;
    }
    shard.metrics.dhap_refusal();
    let drop = client.policy.params.dhap_drop_connection;
    shard.log.event("limit", format_args!(
        "conn={} {} rule=dhap_max_invalid_per_hour key={} count={count} max={max} drop={drop}",
        client.peer.connection_id, client.label(), client.key
    ));
    let reply = client.policy.dhap_reply();
    Some(if drop { Decision::RefuseAndClose(reply) } else { Decision::Refuse(reply) })
}

/// Count one invalid recipient of this client (when its policy has DHAP on),
/// then hold its reply for the tarpit delay.
pub async fn count_invalid(shard: &Shard, client: &Client) {
    let p = &client.policy.params;
    if p.dhap_max_invalid_per_hour > 0 {
        let _ = shard.counters.add(&key(client), WINDOW_SECS).await;
    }
    if p.dhap_tarpit_ms > 0 {
        glommio::timer::sleep(Duration::from_millis(p.dhap_tarpit_ms)).await;
    }
}
