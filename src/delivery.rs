//! Delivery: on the owner shard of a destination, send each message to the
//! route's hosts through the pool, retry what was deferred, keep what was
//! refused, and tell the spool shard which recipients are finished.
//!
//! Order of attempts: the route's hosts in order; a connection failure or a
//! 4xx moves on to the next host at once; when every host was tried, wait
//! (capped exponential backoff) and start again from the first. A 5xx is
//! final: the message is kept in the failed area (bounces come later).
//! Nothing is marked done before the downstream's 250 to the final dot or
//! before the failed copy is durable.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::clock;
use crate::config::Config;
use crate::maillog::MailLog;
use crate::message::{Envelope, QueueId};
use crate::pool::{OutboundEnvelope, Pool, RecipientOutcome};
use crate::server::{ShardMesh, Work};
use crate::spool;

/// The recipients of one message that share a destination, handed to the
/// destination's owner shard.
#[derive(Debug)]
pub struct DeliveryJob {
    pub queue_id: QueueId,
    /// The shard whose spool holds the message (it takes the done markers).
    pub spool_shard: usize,
    /// Route key from the config ("example.test", "*").
    pub destination: String,
    pub envelope: Arc<Envelope>,
    /// Indices into `envelope.recipients`.
    pub recipients: Vec<u32>,
    /// The stored message: Received header + body.
    pub data: Arc<Vec<u8>>,
    /// Unix seconds when we accepted the message (queue lifetime starts here).
    pub accepted_secs: u64,
}

pub struct Delivery {
    config: Arc<Config>,
    pool: Pool,
    mesh: Rc<ShardMesh>,
    log: Rc<MailLog>,
    next_id: Cell<u64>,
    in_flight: Cell<usize>,
}

impl Delivery {
    pub fn new(config: Arc<Config>, pool: Pool, mesh: Rc<ShardMesh>, log: Rc<MailLog>) -> Rc<Delivery> {
        Rc::new(Delivery { config, pool, mesh, log, next_id: Cell::new(0), in_flight: Cell::new(0) })
    }

    /// Jobs being worked on or waiting to retry on this shard.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Say QUIT to every idle downstream connection (shutdown).
    pub async fn close_idle(&self) {
        self.pool.close_idle().await;
    }

    /// Take a job (this shard owns its destination) and work on it in the background.
    pub fn enqueue(self: &Rc<Self>, job: DeliveryJob) {
        self.in_flight.set(self.in_flight.get() + 1);
        let this = self.clone();
        glommio::spawn_local(async move {
            this.clone().run(job).await;
            this.in_flight.set(this.in_flight.get() - 1);
        })
        .detach();
    }

    async fn run(self: Rc<Self>, job: DeliveryJob) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let dlv = format!("D{}-{id}", self.mesh.id());
        let hosts: Vec<SocketAddr> = self.config.routes.get(&job.destination).cloned().unwrap_or_default();
        let mut pending = job.recipients.clone();
        let d = &self.config.delivery;
        let mut delay = Duration::from_secs(d.retry_first_secs);
        let mut last_reason = String::from("no route hosts");
        while !pending.is_empty() {
            for &host in &hosts {
                if pending.is_empty() {
                    break;
                }
                match self.attempt(&job, &dlv, host, &pending).await {
                    Ok(deferred) => pending = deferred,
                    Err(reason) => last_reason = reason,
                }
            }
            if pending.is_empty() {
                break;
            }
            let age = clock::now().0.saturating_sub(job.accepted_secs);
            if age >= d.queue_lifetime_secs {
                let reason = format!("queue lifetime expired; last error: {last_reason}");
                self.fail(&job, &dlv, &pending, &reason).await;
                break;
            }
            // The last retry lands on the lifetime's end, not a backoff before it.
            let wait = delay.min(Duration::from_secs(d.queue_lifetime_secs - age));
            self.log.event("retry", format_args!("qid={} dlv={dlv} rcpts={} in={}s", job.queue_id, pending.len(), wait.as_secs()));
            glommio::timer::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(d.retry_max_secs));
        }
    }

    /// One transaction to one host. Ok(still deferred), or Err(reason) when
    /// the connection failed and nothing was decided.
    async fn attempt(&self, job: &DeliveryJob, dlv: &str, host: SocketAddr, pending: &[u32]) -> Result<Vec<u32>, String> {
        let env = &job.envelope;
        let outbound = OutboundEnvelope {
            mail_from: env.mail_from.clone(),
            recipients: pending.iter().map(|&i| env.recipients[i as usize].clone()).collect(),
            body_type: env.body_type,
            smtputf8: env.smtputf8,
        };
        let outcomes = match self.pool.send(host, &outbound, &job.data).await {
            Ok(o) => o,
            Err(e) => {
                self.log.event("deferred", format_args!("qid={} dlv={dlv} relay={host} rcpts={} reason=\"{}\"", job.queue_id, pending.len(), e.reason));
                return Err(e.reason);
            }
        };
        let mut failures = Vec::new();
        let mut deferred = Vec::new();
        for (&index, outcome) in pending.iter().zip(outcomes.iter()) {
            let rcpt = &env.recipients[index as usize];
            match outcome {
                RecipientOutcome::Delivered(reply) => {
                    self.log.event("delivered", format_args!("qid={} dlv={dlv} to=<{rcpt}> relay={host} reply=\"{reply}\"", job.queue_id));
                }
                RecipientOutcome::Deferred(reply) => {
                    self.log.event("deferred", format_args!("qid={} dlv={dlv} to=<{rcpt}> relay={host} reply=\"{reply}\"", job.queue_id));
                    deferred.push(index);
                }
                RecipientOutcome::Failed(reply) => failures.push((index, format!("{host} said: {reply}"))),
            }
        }
        // The pool answers for every recipient; anything it left out stays owed.
        deferred.extend(pending.iter().skip(outcomes.len()).copied());
        if !failures.is_empty() {
            let indices: Vec<u32> = failures.iter().map(|f| f.0).collect();
            let reasons: Vec<String> = failures.into_iter().map(|f| f.1).collect();
            self.keep_failed(job, dlv, &indices, &reasons, &mut deferred);
        }
        // Delivered, and failed ones whose copy is durable, are finished.
        let finished: Vec<u32> = indices_not_in(pending, &deferred).collect();
        self.finish(job, finished).await;
        Ok(deferred)
    }

    /// Every host and retry exhausted: keep the message as failed.
    async fn fail(&self, job: &DeliveryJob, dlv: &str, pending: &[u32], reason: &str) {
        let reasons = vec![reason.to_string(); pending.len()];
        let mut still_owed = Vec::new();
        self.keep_failed(job, dlv, pending, &reasons, &mut still_owed);
        let finished: Vec<u32> = indices_not_in(pending, &still_owed).collect();
        self.finish(job, finished).await;
    }

    /// Write the failed copy; on error the recipients stay owed (pushed to `owed`).
    fn keep_failed(&self, job: &DeliveryJob, dlv: &str, indices: &[u32], reasons: &[String], owed: &mut Vec<u32>) {
        let env = &job.envelope;
        let failures: Vec<(String, String)> =
            indices.iter().zip(reasons).map(|(&i, r)| (env.recipients[i as usize].clone(), r.clone())).collect();
        match spool::failed::keep(&self.config.spool_dir, &job.queue_id, env, &failures, &job.data) {
            Ok(()) => {
                for (rcpt, reason) in &failures {
                    self.log.event("failed", format_args!("qid={} dlv={dlv} to=<{rcpt}> reason=\"{reason}\"", job.queue_id));
                }
            }
            Err(e) => {
                self.log.event("deferred", format_args!("qid={} dlv={dlv} reason=\"cannot keep failed copy: {e}\"", job.queue_id));
                owed.extend_from_slice(indices);
            }
        }
    }

    /// Tell the spool shard these recipients are finished.
    async fn finish(&self, job: &DeliveryJob, recipients: Vec<u32>) {
        if recipients.is_empty() {
            return;
        }
        // Their delivered/failed lines reach the log before the spool forgets them.
        self.log.flush();
        self.mesh.tell(job.spool_shard, Work::Finished { queue_id: job.queue_id.clone(), recipients }).await;
    }
}

fn indices_not_in<'a>(all: &'a [u32], owed: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    all.iter().copied().filter(move |i| !owed.contains(i))
}
