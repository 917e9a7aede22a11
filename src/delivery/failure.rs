//! What delivery does with recipients that will not be delivered: a
//! domain that takes no mail, a 5xx, the bounce profile's limits reached,
//! or the operator's `queue delete|bounce`. A failed recipient is kept in
//! the failed area (`spool::failed`, written on the blocking pool), counted,
//! bounced to the sender when the profile says so (`notify`), and only then
//! marked done; a copy that cannot be written leaves it owed (retried).

use std::sync::Arc;

use super::bounce::{Action, RecipientReport};
use super::queue::Order;
use super::{indices_not_in, Delivery, DeliveryJob};
use crate::clock;
use crate::routing::RouteError;
use crate::spool;

impl Delivery {
    /// A domain that takes no mail (null MX) or does not exist: every
    /// pending recipient fails for good, like a 5xx. Returns those whose
    /// failed copy could not be written (still owed, retried).
    pub(super) async fn refuse_unroutable(&self, job: &DeliveryJob, data: &Arc<Vec<u8>>, dlv: &str, pending: &[u32], refused: &RouteError) -> Vec<u32> {
        debug_assert!(refused.is_permanent(), "a temporary routing failure defers");
        let reason = format!("{}: {}", job.destination, refused.reply());
        // Counted like an attempt: shutdown waits for its done marker.
        self.attempting.set(self.attempting.get() + 1);
        let (reply, now) = (refused.reply().to_string(), clock::now().0);
        let report = |rcpt: &str| RecipientReport::refused(rcpt, None, &reply, now);
        let owed = self.fail(job, data, dlv, pending, &reason, &report).await;
        self.attempting.set(self.attempting.get() - 1);
        owed
    }
    /// Keep the message as failed for `pending` (retries exhausted, or a
    /// domain that takes no mail). Returns the recipients still owed
    /// because the failed copy could not be written.
    pub(super) async fn fail(&self, job: &DeliveryJob, data: &Arc<Vec<u8>>, dlv: &str, pending: &[u32], reason: &str, report: &dyn Fn(&str) -> RecipientReport) -> Vec<u32> {
        let reasons = vec![reason.to_string(); pending.len()];
        let reports = pending.iter().map(|&i| report(&job.envelope.recipients[i as usize])).collect();
        let mut still_owed = Vec::new();
        self.keep_failed(job, data, dlv, (pending, &reasons, reports), &mut still_owed).await;
        let finished: Vec<u32> = indices_not_in(pending, &still_owed).collect();
        self.finish(job, finished).await;
        still_owed
    }
    /// Write the failed copy, then bounce them to the sender (`notify`,
    /// when the bounce profile sends hard bounces); on error the
    /// recipients stay owed (pushed to `owed`). The copy is written on
    /// glommio's blocking pool: file creation and fsync must not stall the
    /// shard's sessions.
    pub(super) async fn keep_failed(&self, job: &DeliveryJob, data: &Arc<Vec<u8>>, dlv: &str, (indices, reasons, reports): (&[u32], &[String], Vec<RecipientReport>), owed: &mut Vec<u32>) {
        let env = &job.envelope;
        let failures: Vec<(String, String)> =
            indices.iter().zip(reasons).map(|(&i, r)| (env.recipients[i as usize].clone(), r.clone())).collect();
        let (dir, queue_id, envelope, copy, list) =
            (self.settings.spool_dir.clone(), job.queue_id.clone(), job.envelope.clone(), data.clone(), failures.clone());
        let kept = glommio::executor().spawn_blocking(move || spool::failed::keep(&dir, &queue_id, &envelope, &list, &copy)).await;
        match kept {
            Ok(()) => {
                let label = self.policy.current().outbound_tls.destination(&job.destination).label.clone();
                self.metrics.destination_delivery(&label, "failed", failures.len() as u64);
                for (rcpt, reason) in &failures {
                    self.log.event("failed", format_args!("qid={} dlv={dlv} to=<{rcpt}> reason=\"{reason}\"", job.queue_id));
                }
                if self.profile(job).send_hard_bounces {
                    let reports = indices.iter().copied().zip(reports).collect();
                    self.report(job, data.as_slice(), dlv, Action::Failed, reports).await;
                }
            }
            Err(e) => {
                self.log.event("deferred", format_args!("qid={} dlv={dlv} reason=\"cannot keep failed copy: {e}\"", job.queue_id));
                owed.extend_from_slice(indices);
            }
        }
    }
    /// The operator's order for `pending` (`queue delete|bounce`): drop
    /// them undelivered (`deleted` lines), or fail them now with a bounce
    /// to the sender, as a 5xx would.
    pub(super) async fn obey(&self, job: &mut DeliveryJob, dlv: &str, pending: &[u32], order: Order) {
        // Counted like an attempt: shutdown waits for its done marker.
        self.attempting.set(self.attempting.get() + 1);
        match order {
            Order::Delete => {
                for &i in pending {
                    self.log.event("deleted", format_args!("qid={} dlv={dlv} to=<{}> reason=\"deleted by the operator\"", job.queue_id, job.envelope.recipients[i as usize]));
                }
                self.finish(job, pending.to_vec()).await;
            }
            _ => {
                let mut held = None;
                let data = self.held(job, &mut held).await.unwrap_or_default();
                let now = clock::now().0;
                let report = |rcpt: &str| RecipientReport::refused(rcpt, None, "550 5.0.0 Returned to the sender by the mail administrator", now);
                let _owed = self.fail(job, &data, dlv, pending, "bounced by the operator", &report).await;
            }
        }
        self.attempting.set(self.attempting.get() - 1);
    }
}
