//! The bridge from the admin thread to the shards: the admin listener is a
//! std thread and cannot await glommio futures, and a shard must never
//! block, so requests cross a bounded crossbeam channel that the shards
//! poll, and each answer comes back on its own one-slot channel that the
//! admin thread waits on with a deadline.
//!
//! Every shard polls the one channel (`serve`, started by `lifecycle`), so
//! whichever shard is free first takes a request and asks the owner shards
//! over the mesh (`callahead::operate`, `ldap::operate`). Nothing can hang the admin thread:
//! a full channel is `Busy` at once, and no answer within
//! `limits::ADMIN_BRIDGE_TIMEOUT_MS` (shards stopping, stuck, or gone) is
//! `NoAnswer`; both become HTTP 503.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};

use crate::callahead::operate::{self, CachedEntry, PurgeTarget};
use crate::limits::{ADMIN_BRIDGE_POLL_MS, ADMIN_BRIDGE_TIMEOUT_MS};
use crate::shards::Mesh;

/// What the admin asks the shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminRequest {
    CallaheadQuery { address: String },
    CallaheadPurge(PurgeTarget),
    /// Drop the LDAP answers cached for `query` ("" = every query) on every shard.
    LdapPurge { query: String },
    /// A queue command (`delivery::queue`), answered by every shard.
    Queue(crate::delivery::queue::QueueOp),
}

/// What a shard answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminReply {
    Cached(Vec<CachedEntry>),
    Purged(usize),
    /// Text rendered by the shards (the queue commands).
    Text(String),
    /// The owner shard did not answer (`ShardGone`), said why.
    Failed(String),
}

/// Why the admin got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeError {
    /// `limits::ADMIN_BRIDGE_QUEUE_MAX` requests already wait.
    Busy,
    /// No shard answered in time, or none is serving any more.
    NoAnswer,
}

struct Envelope {
    request: AdminRequest,
    reply: Sender<AdminReply>,
}

/// The admin thread's end.
pub struct Bridge {
    requests: Sender<Envelope>,
    timeout: Duration,
}

/// The shards' end (one clone per shard).
#[derive(Clone)]
pub struct BridgeInbox {
    requests: Receiver<Envelope>,
}

/// A bridge holding at most `capacity` waiting requests, whose calls wait
/// `ADMIN_BRIDGE_TIMEOUT_MS` for an answer.
pub fn channel(capacity: usize) -> (Bridge, BridgeInbox) {
    channel_with_timeout(capacity, Duration::from_millis(ADMIN_BRIDGE_TIMEOUT_MS))
}

/// `channel` with another wait for the answer (tests use a short one).
pub fn channel_with_timeout(capacity: usize, timeout: Duration) -> (Bridge, BridgeInbox) {
    let (requests, inbox) = crossbeam_channel::bounded(capacity);
    (
        Bridge { requests, timeout },
        BridgeInbox { requests: inbox },
    )
}

impl Bridge {
    /// Hand `request` to the shards and wait for the answer, bounded.
    pub fn call(&self, request: AdminRequest) -> Result<AdminReply, BridgeError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        match self.requests.try_send(Envelope { request, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(BridgeError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(BridgeError::NoAnswer),
        }
        answer.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected => BridgeError::NoAnswer,
        })
    }
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bridge {{ waiting: {}, timeout: {:?} }}",
            self.requests.len(),
            self.timeout
        )
    }
}

impl BridgeInbox {
    /// The next waiting request, if any (never blocks).
    fn take(&self) -> Result<Option<Envelope>, ()> {
        match self.requests.try_recv() {
            Ok(envelope) => Ok(Some(envelope)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(()),
        }
    }
}

/// On a shard, until `stop` is raised or the admin is gone: take requests
/// every `ADMIN_BRIDGE_POLL_MS` and answer each in a task of its own (a
/// purge of everything waits for every shard; the next request need not).
/// Polled, not awaited: glommio has no way to sleep on a crossbeam channel.
pub async fn serve(inbox: BridgeInbox, mesh: Rc<Mesh>, stop: Arc<AtomicBool>) {
    // Once stopping, a shard sends nothing more to its peers (the stop barrier).
    while !stop.load(Ordering::SeqCst) {
        match inbox.take() {
            Ok(Some(envelope)) => {
                glommio::spawn_local(answer(envelope, mesh.clone())).detach();
            }
            Ok(None) => glommio::timer::sleep(Duration::from_millis(ADMIN_BRIDGE_POLL_MS)).await,
            Err(()) => return,
        }
    }
}

async fn answer(envelope: Envelope, mesh: Rc<Mesh>) {
    let reply = match envelope.request {
        AdminRequest::CallaheadQuery { address } => match operate::query(&mesh, &address).await {
            Ok(entries) => AdminReply::Cached(entries),
            Err(gone) => AdminReply::Failed(gone.to_string()),
        },
        AdminRequest::CallaheadPurge(what) => match operate::purge(&mesh, what).await {
            Ok(count) => AdminReply::Purged(count),
            Err(gone) => AdminReply::Failed(gone.to_string()),
        },
        AdminRequest::LdapPurge { query } => match crate::ldap::operate::purge_everywhere(&mesh, &query).await {
            Ok(count) => AdminReply::Purged(count),
            Err(gone) => AdminReply::Failed(gone.to_string()),
        },
        AdminRequest::Queue(op) => match crate::delivery::queue::everywhere(&mesh, op).await {
            Ok(text) => AdminReply::Text(text),
            Err(gone) => AdminReply::Failed(gone.to_string()),
        },
    };
    // The admin may have given up (timeout): nobody to tell then.
    let _ = envelope.reply.try_send(reply);
}

#[cfg(test)]
impl BridgeInbox {
    /// Answer every request on a plain thread until the admin's end is
    /// dropped (tests: a shard stand-in).
    pub(super) fn answer_on_thread(
        self,
        answer: impl Fn(AdminRequest) -> AdminReply + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            while let Ok(envelope) = self.requests.recv() {
                let _ = envelope.reply.try_send(answer(envelope.request));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    fn query() -> AdminRequest {
        AdminRequest::CallaheadQuery {
            address: "a@example.test".into(),
        }
    }

    #[test]
    fn an_answer_comes_back_to_the_caller() {
        let (bridge, inbox) = channel_with_timeout(1, Duration::from_secs(30));
        let shard = inbox.answer_on_thread(|request| match request {
            AdminRequest::CallaheadPurge(PurgeTarget::All) => AdminReply::Purged(7),
            _ => AdminReply::Cached(Vec::new()),
        });
        assert_eq!(
            bridge.call(AdminRequest::CallaheadPurge(PurgeTarget::All)),
            Ok(AdminReply::Purged(7))
        );
        assert_eq!(bridge.call(query()), Ok(AdminReply::Cached(Vec::new())));
        drop(bridge);
        shard.join().unwrap();
    }

    #[test]
    fn nobody_answering_is_no_answer_after_the_timeout_not_a_hang() {
        let (bridge, inbox) = channel_with_timeout(4, SHORT);
        assert_eq!(
            bridge.call(query()),
            Err(BridgeError::NoAnswer),
            "taken by nobody"
        );
        // A shard that took the request and dropped it (stopping) is no answer too.
        let taken = inbox.take().unwrap().expect("the request waits");
        drop(taken);
        drop(inbox);
        assert_eq!(
            bridge.call(query()),
            Err(BridgeError::NoAnswer),
            "no shard serves any more"
        );
    }

    #[test]
    fn a_full_channel_is_busy_at_once() {
        let (bridge, inbox) = channel_with_timeout(1, SHORT);
        assert_eq!(
            bridge.call(query()),
            Err(BridgeError::NoAnswer),
            "fills the only slot"
        );
        assert_eq!(bridge.call(query()), Err(BridgeError::Busy));
        assert!(inbox.take().unwrap().is_some());
        assert!(
            inbox.take().unwrap().is_none(),
            "the refused one never queued"
        );
    }
}
