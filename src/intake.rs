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

/// Group `recipients` by recipient domain (lower case) and send each group
/// to the domain's owner shard, in the background (the client already
/// has, or will get, its 250). The group is per domain, not per route:
/// a USEDNS or "*" route sends each domain to its own MX hosts, and
/// delivery routes a domain afresh each round (`crate::routing`).
pub fn dispatch(shard: &Shard, queue_id: QueueId, envelope: Arc<Envelope>, stored: Stored, recipients: &[u32], accepted_secs: u64) {
    let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for &i in recipients {
        groups.entry(domain_of(&envelope.recipients[i as usize])).or_default().push(i);
    }
    let spool_shard = shard.mesh.id();
    for (destination, recipients) in groups {
        let mut job = DeliveryJob {
            queue_id: queue_id.clone(),
            spool_shard,
            destination,
            envelope: envelope.clone(),
            recipients,
            body: stored.body.clone(),
            data: stored.data.clone(),
            accepted_secs,
        };
        let (mesh, delivery, log) = (shard.mesh.clone(), shard.delivery.clone(), shard.log.clone());
        // The bytes travel with the job only while this shard's delivery
        // memory has room for them; else the owner reads them from the spool.
        let room = job.data.as_ref().and_then(|data| delivery.try_room(data.len() as u64));
        if room.is_none() {
            job.data = None;
        }
        glommio::spawn_local_into(
            async move {
                let _room = room;
                let owner = mesh.owner(&job.destination);
                let queue_id = job.queue_id.clone();
                // Jobs travel by value; if the owner cannot take it, deliver from here.
                if let Err((job, gone)) = send_job(&mesh, owner, job).await {
                    log.event("dispatch", format_args!("qid={queue_id} reason=\"{gone}; delivering from this shard\""));
                    delivery.enqueue(job);
                }
            },
            shard.queues.delivery,
        )
        .map(|task| task.detach())
        .ok();
    }
}

/// Hand `job` to shard `owner`; give it back when that shard is gone.
async fn send_job(mesh: &crate::shards::Mesh, owner: usize, job: DeliveryJob) -> Result<(), (DeliveryJob, crate::shards::ShardGone)> {
    // A job is cheap to clone (Arcs and a few indices): keep one to fall back on.
    let spare = job.clone();
    mesh.tell(owner, job).await.map_err(|gone| (spare, gone))
}
