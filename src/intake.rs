//! Intake: what happens to a message the session has finished receiving.
//! Prepend the Received header, store it durably (the 250 waits for this),
//! then hand its recipients, grouped by recipient domain, to the owner
//! shards of those domains. Also where recovered messages re-enter delivery.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock;
use crate::delivery::DeliveryJob;
use crate::message::{domain_of, Envelope, Message, QueueId};
use crate::shard::Shard;
use crate::smtp::{received, StoreError};
use crate::spool::BodyLocation;

/// Where a message is in the spool, and its bytes while intake has them.
pub struct Stored {
    pub body: BodyLocation,
    pub data: Option<Arc<Vec<u8>>>,
}

/// Store `msg` durably and dispatch it. Ok means: safe to say 250.
pub async fn accept_message(shard: &Shard, msg: Message) -> Result<QueueId, StoreError> {
    let queue_id = shard.spool.next_queue_id();
    let (secs, _) = clock::now();
    let header = received::header(&msg.envelope, &queue_id, &shard.settings.hostname, &clock::rfc5322(secs));
    let mut data = Vec::with_capacity(header.len() + msg.body.len());
    data.extend_from_slice(&header);
    data.extend_from_slice(&msg.body);
    let body = shard.spool.store(&queue_id, &msg.envelope, secs, &data).await?;
    shard.metrics.message_accepted();
    shard.log.event_now(
        "queued",
        format_args!(
            "conn={} qid={queue_id} from=<{}> rcpts={} size={}",
            msg.envelope.connection_id,
            msg.envelope.mail_from,
            msg.envelope.recipients.len(),
            data.len()
        ),
    )
    .await;
    let all: Vec<u32> = (0..msg.envelope.recipients.len() as u32).collect();
    let stored = Stored { body, data: Some(Arc::new(data)) };
    dispatch(shard, queue_id.clone(), Arc::new(msg.envelope), stored, &all, secs);
    Ok(queue_id)
}

/// Group `recipients` by recipient domain (lower case) and queue each
/// group for delivery on this shard, where the message is (issue 10 item
/// 1: no shard carries all outbound work when all mail takes one route,
/// and neither a job nor its done markers cross shards; the limits that
/// are appliance-wide are held by the destinations' owner shards,
/// `delivery::controls`). The group is per domain, not per route: a USEDNS
/// or "*" route sends each domain to its own MX hosts, and delivery routes
/// a domain afresh each round (`crate::routing`).
pub fn dispatch(shard: &Shard, queue_id: QueueId, envelope: Arc<Envelope>, stored: Stored, recipients: &[u32], accepted_secs: u64) {
    let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for &i in recipients {
        groups.entry(domain_of(&envelope.recipients[i as usize])).or_default().push(i);
    }
    for (destination, recipients) in groups {
        let job = DeliveryJob {
            queue_id: queue_id.clone(),
            destination,
            envelope: envelope.clone(),
            recipients,
            body: stored.body.clone(),
            data: stored.data.clone(),
            accepted_secs,
        };
        shard.delivery.enqueue(job);
    }
}
