//! The queue as the operator sees it (issue 10 item 6): every delivery job
//! on a shard is registered here while it lives, with what `portcullis
//! queue list|show` prints (destination, sender, recipients still owed,
//! attempts, last error, next try), and orders from `queue flush|delete|
//! bounce` reach it through its `JobState`.
//!
//! Where it sits: `Delivery::run` registers a job and updates it after each
//! round; at its retry wait it takes the order given meanwhile (flush: try
//! now; delete: finish its recipients undelivered, logged `deleted`;
//! bounce: fail them as the operator's, with a bounce to the sender). An
//! order given while an attempt is under way applies when it ends. The
//! admin asks every shard at once (`QueueAsk`, `everywhere`) and joins
//! the text the shards render. Bounded: a shard lists at most
//! `QUEUE_LIST_ENTRIES_MAX` jobs (the per-destination counts cover all).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::rc::Rc;

use futures_channel::oneshot;

use crate::clock;
use crate::limits;
use crate::message::QueueId;
use crate::shards::{join_all, Mesh, ShardGone, ShardRequest};

/// What the operator asks of the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueOp {
    /// Counts per destination and the jobs (of one destination, if given).
    List { destination: Option<String> },
    /// Every job of one message.
    Show { queue_id: String },
    /// Retry now: the jobs of one destination, or all.
    Flush { destination: Option<String> },
    /// Drop a message's owed recipients undelivered.
    Delete { queue_id: String },
    /// Fail a message's owed recipients now, bouncing them to the sender.
    Bounce { queue_id: String },
}

/// An order a job takes at its next wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Flush,
    Delete,
    Bounce,
}

/// One job as the queue commands see it, kept up to date by `Delivery::run`.
pub struct JobState {
    pub queue_id: QueueId,
    pub destination: String,
    pub sender: String,
    pub accepted_secs: u64,
    pub size: u64,
    pub pending: RefCell<Vec<String>>,
    pub attempts: Cell<u32>,
    pub last_error: RefCell<String>,
    /// Unix seconds of the next round; 0 while a round is under way.
    pub next_secs: Cell<u64>,
    order: Cell<Option<Order>>,
    /// Set while the job waits for its next round: an order wakes it.
    wake: RefCell<Option<oneshot::Sender<()>>>,
}

impl JobState {
    pub fn new(queue_id: QueueId, destination: String, sender: String, accepted_secs: u64, size: u64) -> JobState {
        JobState {
            queue_id,
            destination,
            sender,
            accepted_secs,
            size,
            pending: RefCell::default(),
            attempts: Cell::new(0),
            last_error: RefCell::default(),
            next_secs: Cell::new(0),
            order: Cell::new(None),
            wake: RefCell::new(None),
        }
    }

    /// Give `order` (a later one replaces an earlier flush; delete and
    /// bounce are final) and wake the job if it waits.
    pub fn give(&self, order: Order) {
        if !matches!(self.order.get(), Some(Order::Delete | Order::Bounce)) {
            self.order.set(Some(order));
        }
        if let Some(wake) = self.wake.borrow_mut().take() {
            let _ = wake.send(());
        }
    }

    /// The order given since the last call, if any.
    pub fn take_order(&self) -> Option<Order> {
        self.order.take()
    }

    /// Resolves when an order is given (the job's retry wait races it).
    pub fn ordered(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        *self.wake.borrow_mut() = Some(tx);
        rx
    }

    fn line(&self, now: u64) -> String {
        let next = match self.next_secs.get() {
            0 => "now".to_string(),
            at => format!("{}s", at.saturating_sub(now)),
        };
        format!(
            "qid={} destination={} from=<{}> rcpts={} size={} age={}s attempts={} next={next} error=\"{}\"",
            self.queue_id,
            self.destination,
            self.sender,
            self.pending.borrow().len(),
            self.size,
            now.saturating_sub(self.accepted_secs),
            self.attempts.get(),
            self.last_error.borrow().escape_debug()
        )
    }
}

/// One shard's registry of living jobs.
#[derive(Default)]
pub struct Registry {
    jobs: RefCell<hashbrown::HashMap<u64, Rc<JobState>>>,
}

impl Registry {
    pub fn insert(&self, id: u64, job: Rc<JobState>) {
        self.jobs.borrow_mut().insert(id, job);
    }

    pub fn remove(&self, id: u64) {
        self.jobs.borrow_mut().remove(&id);
    }

    /// Carry out `op` on this shard's jobs; the text for the operator.
    pub fn operate(&self, op: &QueueOp) -> ShardAnswer {
        let now = clock::now().0;
        let jobs = self.jobs.borrow();
        let mut answer = ShardAnswer::default();
        let of_destination = |job: &JobState, d: &Option<String>| d.as_deref().is_none_or(|d| job.destination.eq_ignore_ascii_case(d));
        for job in jobs.values() {
            match op {
                QueueOp::List { destination } => {
                    let counts = answer.destinations.entry(job.destination.clone()).or_default();
                    counts.0 += 1;
                    counts.1 += job.pending.borrow().len();
                    counts.2 = job.last_error.borrow().clone();
                    if of_destination(job, destination) && answer.lines.len() < limits::QUEUE_LIST_ENTRIES_MAX {
                        answer.lines.push(job.line(now));
                    }
                }
                QueueOp::Show { queue_id } if job.queue_id.0.eq_ignore_ascii_case(queue_id) => {
                    let mut text = job.line(now);
                    for rcpt in job.pending.borrow().iter() {
                        let _ = write!(text, "\n  to=<{rcpt}>");
                    }
                    answer.lines.push(text);
                }
                QueueOp::Flush { destination } if of_destination(job, destination) => {
                    job.give(Order::Flush);
                    answer.count += 1;
                }
                QueueOp::Delete { queue_id } | QueueOp::Bounce { queue_id } if job.queue_id.0.eq_ignore_ascii_case(queue_id) => {
                    job.give(if matches!(op, QueueOp::Delete { .. }) { Order::Delete } else { Order::Bounce });
                    answer.count += 1;
                }
                _ => {}
            }
        }
        answer
    }
}

/// What one shard answers: listed lines, per-destination (jobs,
/// recipients, last error), and how many jobs took an order.
#[derive(Debug, Default)]
pub struct ShardAnswer {
    pub lines: Vec<String>,
    pub destinations: BTreeMap<String, (usize, usize, String)>,
    pub count: usize,
}

/// The queue request every shard answers for its own jobs.
#[derive(Debug)]
pub struct QueueAsk(pub QueueOp);

impl ShardRequest for QueueAsk {
    type Reply = ShardAnswer;
}

/// Ask every shard and render the operator's text: for `list` the
/// destinations (jobs, recipients, last error) then the jobs; for `show`
/// the message's jobs ("not queued" when none); for the orders the count.
pub async fn everywhere(mesh: &Mesh, op: QueueOp) -> Result<String, ShardGone> {
    let asks = (0..mesh.shards()).map(|shard| mesh.ask(shard, QueueAsk(op.clone())));
    let mut all = ShardAnswer::default();
    for answer in join_all(asks.collect()).await {
        let answer = answer?;
        all.lines.extend(answer.lines);
        all.count += answer.count;
        for (destination, (jobs, rcpts, error)) in answer.destinations {
            let entry = all.destinations.entry(destination).or_default();
            entry.0 += jobs;
            entry.1 += rcpts;
            if !error.is_empty() {
                entry.2 = error;
            }
        }
    }
    let mut text = String::new();
    match op {
        QueueOp::List { .. } => {
            for (destination, (jobs, rcpts, error)) in &all.destinations {
                let _ = writeln!(text, "destination={destination} messages={jobs} rcpts={rcpts} last_error=\"{}\"", error.escape_debug());
            }
            all.lines.sort();
            text.extend(all.lines.iter().map(|l| format!("{l}\n")));
        }
        QueueOp::Show { queue_id } if all.lines.is_empty() => text = format!("qid={queue_id} not queued\n"),
        QueueOp::Show { .. } => text.extend(all.lines.iter().map(|l| format!("{l}\n"))),
        QueueOp::Flush { .. } => text = format!("flushed={}\n", all.count),
        QueueOp::Delete { .. } => text = format!("deleted={}\n", all.count),
        QueueOp::Bounce { .. } => text = format!("bounced={}\n", all.count),
    }
    Ok(text)
}
