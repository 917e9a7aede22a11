//! The request delivery sends to the shard whose spool holds a message:
//! "these recipients are finished". Declared here, handled by `Spool`'s
//! shard (wired in `lifecycle`), sent with `Mesh::tell`.

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
}
