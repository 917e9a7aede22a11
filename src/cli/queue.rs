//! `portcullis queue list|show|flush|delete|bounce` (issue 10 item 6): the
//! operator's hands on the delivery queue of the running appliance,
//! through its admin listener (`admin::queue`).

use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::admin_client::{ask_and_print, AdminArgs};

#[derive(Args, Debug)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub action: QueueAction,
}

#[derive(Subcommand, Debug)]
pub enum QueueAction {
    /// Messages and recipients queued per destination with the last error, then the queued messages.
    List {
        /// Only the messages for this destination domain.
        #[arg(long, value_name = "DOMAIN")]
        destination: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One message: its deliveries, recipients still owed, attempts, last error, next try.
    Show {
        queue_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Retry now: the messages for DESTINATION, or every message.
    Flush {
        destination: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drop a message's owed recipients undelivered (logged `deleted`).
    Delete {
        queue_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Fail a message's owed recipients now, with a bounce to its sender.
    Bounce {
        queue_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub fn run(args: QueueArgs) -> i32 {
    let (method, target) = request_target(&args.action);
    let admin = match &args.action {
        QueueAction::List { admin, .. }
        | QueueAction::Show { admin, .. }
        | QueueAction::Flush { admin, .. }
        | QueueAction::Delete { admin, .. }
        | QueueAction::Bounce { admin, .. } => admin,
    };
    ask_and_print(admin.address(), method, &target)
}

/// The admin request of an action (values percent-encoded).
pub fn request_target(action: &QueueAction) -> (&'static str, String) {
    let enc = |v: &str| utf8_percent_encode(v, NON_ALPHANUMERIC).to_string();
    match action {
        QueueAction::List { destination: None, .. } => ("GET", "/queue".into()),
        QueueAction::List { destination: Some(d), .. } => ("GET", format!("/queue?destination={}", enc(d))),
        QueueAction::Show { queue_id, .. } => ("GET", format!("/queue/show?qid={}", enc(queue_id))),
        QueueAction::Flush { destination: None, .. } => ("POST", "/queue/flush?all=1".into()),
        QueueAction::Flush { destination: Some(d), .. } => ("POST", format!("/queue/flush?destination={}", enc(d))),
        QueueAction::Delete { queue_id, .. } => ("POST", format!("/queue/delete?qid={}", enc(queue_id))),
        QueueAction::Bounce { queue_id, .. } => ("POST", format!("/queue/bounce?qid={}", enc(queue_id))),
    }
}
