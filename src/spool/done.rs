//! The request delivery sends to the shard whose spool holds a message:
//! "these recipients are finished". Declared here, handled by `Spool`'s
//! shard (wired in `lifecycle`), sent with `Mesh::tell`.

use crate::limits;
use crate::message::QueueId;
use crate::shards::ShardRequest;

/// Recipients `recipients` (indices into the envelope) of `queue_id` are
/// finished: delivered, or kept in the failed area.
#[derive(Debug)]
pub struct MarkDone {
    pub queue_id: QueueId,
    pub recipients: Vec<u32>,
}

impl ShardRequest for MarkDone {
    type Reply = ();
    /// A marker that gave up would keep its message owed (and its bytes
    /// counted) until a restart: wait out any back-pressure; only a stopped
    /// shard ends the wait.
    fn timeout() -> std::time::Duration {
        std::time::Duration::from_secs(limits::MARK_DONE_TIMEOUT_SECS)
    }
}
