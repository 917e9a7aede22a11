//! Delivery status notifications of our own (issue 10 item 3): the
//! RFC 3464 bounce for recipients that failed for good (a 5xx at
//! delivery, a domain that takes no mail, the bounce profile's limits
//! reached) and the delay warning for recipients still retried.
//!
//! Where it sits: `Delivery` calls `report` after a failure's copy is
//! durable and before the recipients are marked finished, or when the
//! profile says a warning is due (`retry::delay_warning_due`). The report
//! (`bounce::build`) is stored in this shard's spool like any accepted
//! message (MAIL FROM:<>, one recipient: the envelope sender) and queued
//! for delivery here, so it is retried, bounded and survives a restart as
//! any mail does. One report per event for the recipients of that event:
//! a recipient is finished once it bounced, so it never bounces twice.
//!
//! Never sent: to the null sender or for a message that is itself a
//! bounce or an auto-reply (`bounce::should_send`, RFC 5321 §4.5.5,
//! RFC 3834), when the profile turns it off (`send_hard_bounces`,
//! `send_delay_warnings`), or for a recipient whose NOTIFY (RFC 3461
//! §4.1) does not ask for it (NOTIFY=NEVER, or not FAILURE / DELAY).
//! A report that cannot be stored (spool full) is logged
//! (`bounce-lost`); the failure itself stays in the failed area.

use std::sync::Arc;

use super::bounce::{self, Action, RecipientReport, Report};
use super::{Delivery, DeliveryJob};
use crate::clock;
use crate::message::{domain_of, Envelope};
use crate::smtp::dsn;

impl Delivery {
    /// Send one report of `action` to the envelope sender of `job` for
    /// the recipients in `reports` (indices into the envelope) that want
    /// it. `data` is the stored message (returned in part 3).
    pub(super) async fn report(&self, job: &DeliveryJob, data: &[u8], dlv: &str, action: Action, reports: Vec<(u32, RecipientReport)>) {
        let env = &job.envelope;
        let wanted: Vec<RecipientReport> = reports
            .into_iter()
            .filter(|(i, _)| {
                let notify = env.rcpt_dsn(*i as usize).notify;
                match action {
                    Action::Delayed => notify.wants_delay(),
                    _ => notify.wants_failure(),
                }
            })
            .map(|(i, report)| report.with_original_recipient(env.rcpt_dsn(i as usize).original_recipient()))
            .collect();
        if wanted.is_empty() || !bounce::should_send(&env.mail_from, data) {
            return;
        }
        let now = clock::now().0;
        let ret = match env.dsn.ret {
            Some(dsn::Ret::Headers) => bounce::Ret::Headers,
            _ => bounce::Ret::Full,
        };
        let report = Report {
            reporting_mta: &self.settings.hostname,
            queue_id: &job.queue_id.0,
            sender: &env.mail_from,
            envid: env.dsn.envid.as_deref(),
            arrival_secs: job.accepted_secs,
            ret,
            recipients: wanted,
            original: data,
        };
        let message = bounce::build(&report, now);
        let rcpts = report.recipients.len();
        let envelope = Envelope {
            connection_id: dlv.to_string(),
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            helo: self.settings.hostname.clone(),
            esmtp: true,
            mail_from: String::new(),
            recipients: vec![env.mail_from.clone()],
            ..Default::default()
        };
        let queue_id = self.spool.next_queue_id();
        let body = match self.spool.store(&queue_id, &envelope, now, &message).await {
            Ok(body) => body,
            Err(e) => {
                self.log.event("bounce-lost", format_args!("qid={} dlv={dlv} to=<{}> kind={} reason=\"{e:?}\"", job.queue_id, env.mail_from, action.name()));
                return;
            }
        };
        self.metrics.bounce(action.name());
        self.log.event("bounce", format_args!("qid={} dlv={dlv} bounce_qid={queue_id} to=<{}> kind={} rcpts={rcpts} size={}", job.queue_id, env.mail_from, action.name(), message.len()));
        let Some(delivery) = self.me.upgrade() else { return };
        delivery.enqueue(DeliveryJob {
            queue_id,
            destination: domain_of(&env.mail_from),
            envelope: Arc::new(envelope),
            recipients: vec![0],
            body,
            data: Some(Arc::new(message)),
            accepted_secs: now,
        });
    }
}
