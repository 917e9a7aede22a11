//! Records waiting for a group commit, cut into batches of at most
//! `SpoolSettings::batch_bytes_max` bytes: one commit writes and syncs one
//! batch, so a burst of stores cannot grow a single write to the whole queue.

use std::collections::VecDeque;

use futures_channel::oneshot;

use super::body::BodyLocation;
use super::segments::SegmentId;
use crate::message::QueueId;
use crate::smtp::StoreError;

/// A message in a batch, registered as owed once the batch is durable.
pub struct QueuedMessage {
    pub queue_id: QueueId,
    pub recipients: u32,
    /// Where its record starts within the batch's bytes, and its length.
    pub record_at: usize,
    pub record_len: u64,
    /// Where the body starts within the batch's bytes.
    pub body_at: usize,
    pub body_len: u64,
    /// Unix time of our 250, kept as the age of its record.
    pub accepted_secs: u64,
    /// The `store` call waiting for this message to be durable.
    pub done: oneshot::Sender<Result<BodyLocation, StoreError>>,
}

/// A compaction copy in a batch (`compact.rs`): the message moves to where
/// the batch lands once it is durable.
pub struct QueuedMove {
    pub queue_id: QueueId,
    /// Where the copied record starts within the batch's bytes, and where
    /// its message bytes start within the record.
    pub record_at: usize,
    pub record_len: u64,
    pub body_in_record: u64,
    /// Unix time of the move: the copy's age starts over.
    pub moved_secs: u64,
    /// Filled with the new segment when the batch is durable (see `MoveTarget`).
    pub target: MoveTarget,
    /// The compaction pass waiting for the copy: Ok(true) moved, Ok(false)
    /// written but the message was finished meanwhile.
    pub done: oneshot::Sender<Result<bool, StoreError>>,
}

/// The segment a message in flight to a new place will be in, once known:
/// a done marker queued during the move must outlive that segment too.
pub type MoveTarget = std::rc::Rc<std::cell::Cell<Option<SegmentId>>>;

/// Records written and synced together.
#[derive(Default)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub messages: Vec<QueuedMessage>,
    pub moves: Vec<QueuedMove>,
    /// Segments holding the messages that the markers in `bytes` are for.
    pub marker_targets: Vec<SegmentId>,
    /// The same for markers of messages being moved: the segment of the
    /// copy, known once the move's batch (this one or an older) is durable.
    pub marker_move_targets: Vec<MoveTarget>,
    /// `sync_pending` calls waiting for everything queued before them.
    pub flushes: Vec<oneshot::Sender<Result<(), StoreError>>>,
}

/// Batches not yet taken by the committer, oldest first.
#[derive(Default)]
pub struct Batches {
    queue: VecDeque<Batch>,
}

impl Batches {
    /// Encode one record into the newest batch and return that batch and
    /// where the record starts in it. A record that takes a non-empty batch
    /// past `bytes_max` moves to a new batch of its own (one copy, only at a
    /// batch boundary), so a batch is at most `bytes_max` or one record.
    pub fn append<R>(&mut self, bytes_max: usize, encode: impl FnOnce(&mut Vec<u8>) -> R) -> (&mut Batch, usize, R) {
        if self.queue.is_empty() {
            self.queue.push_back(Batch::default());
        }
        let batch = self.queue.back_mut().expect("just ensured");
        let start = batch.bytes.len();
        let encoded = encode(&mut batch.bytes);
        if start > 0 && batch.bytes.len() > bytes_max {
            let record = batch.bytes.split_off(start);
            self.queue.push_back(Batch { bytes: record, ..Batch::default() });
            return (self.queue.back_mut().expect("just pushed"), 0, encoded);
        }
        (self.queue.back_mut().expect("just ensured"), start, encoded)
    }

    /// The newest batch, for a waiter that needs everything queued so far.
    pub fn newest(&mut self) -> &mut Batch {
        if self.queue.is_empty() {
            self.queue.push_back(Batch::default());
        }
        self.queue.back_mut().expect("just ensured")
    }

    /// The oldest batch, for the committer.
    pub fn take_oldest(&mut self) -> Option<Batch> {
        self.queue.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_at_most_bytes_max_or_one_larger_record() {
        let mut batches = Batches::default();
        let sizes = [300, 300, 300, 300, 2000, 10, 10];
        for n in sizes {
            batches.append(1000, |b| b.extend(std::iter::repeat_n(b'x', n)));
        }
        let mut written = Vec::new();
        while let Some(b) = batches.take_oldest() {
            written.push(b.bytes.len());
        }
        assert_eq!(written.iter().sum::<usize>(), sizes.iter().sum::<usize>(), "no byte lost or doubled");
        assert_eq!(written, vec![900, 300, 2000, 20]);
    }
}
