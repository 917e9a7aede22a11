//! Rate counters exact across shards: recipients per hour per IP, per
//! envelope sender, DHAP's invalid recipients, concurrent connections per
//! IP. The mechanism only; which key, limit and reply is policy's call.
//!
//! Where it sits: `connection`/`policy` call `Counters` of their shard at
//! connect (`open`), MAIL/RCPT (`take`) and on an invalid recipient (`add`,
//! `count`). One counter per key for the whole appliance, held by the owner
//! shard of the key (`shards::owner`); a caller on the owner shard runs
//! locally, others ask it over the mesh (`requests.rs`), except when they
//! hold a lease (below).
//!
//! **What counts.** A counter is a key (case-insensitive) and a window:
//! `take(key, limit, 3600)` and `take(key, limit, 60)` are two counters; so
//! are `open(key, ..)` slots. Windows slide: 60 buckets of window/60 each
//! (not a GCRA: DHAP needs a count, and a GCRA lets a burst of L be followed
//! by more inside the same window). A token counts from when it is taken
//! until between one window and one window + one bucket later, so any
//! interval of one window holds at most the limit: no reset cliff, no 2×
//! burst around a boundary (`window.rs`). `take` counts only granted tokens
//! (a refused one does not count, so a client retrying in a storm is not
//! locked out longer); `add` counts every event.
//!
//! **Leases** keep the hot path local. A shard that is not the owner asks
//! for up to `lease_tokens` (default 8) at once: one it takes, the rest it
//! spends locally, no mesh round trip, until the owner's current bucket ends
//! (so a leased token is spent in the bucket it was counted in). Near the
//! limit the owner grants at most what is left divided by the shard count
//! (at least 1), so one shard cannot hog the rest. A lease serves only
//! takes whose limit is at least the one it was granted under (listeners'
//! policies check their own thresholds against one counter); a take with a
//! lower limit asks the owner, which recalls the lease. Accounting:
//! - The owner counts leased tokens as taken when it grants them and never
//!   grants past the limit, so the tokens spent are at most the limit:
//!   **overshoot 0** while every recall is answered.
//! - **Never undershoot:** before refusing, the owner recalls every
//!   outstanding lease of the key from its holders (one mesh ask each),
//!   credits the unused tokens back and decides again. A holder answers
//!   from its book: unused tokens of a lease it holds (spent ones stay
//!   counted), or "forfeited" for a grant still on its way (it discards it
//!   when it arrives). A holder remembers every lease until the owner has
//!   its account, so spent tokens are never taken for unused ones. A
//!   shard runs its recalls one at a time, so each answer is applied
//!   before the next recall is chosen (two recalls of one lease could
//!   otherwise be answered "returned" then "forfeited" and credit spent
//!   tokens).
//! - Leases also end on their own: at their deadline the holder settles
//!   them (the next take of the key, or the sweep every
//!   `RATE_LEASE_SWEEP_MS`), and the owner forgets a lease once its bucket
//!   has left the window. A settle is idempotent (by lease id).
//! - If a holder does not answer a recall within `RATE_RECALL_TIMEOUT_MS`
//!   (it is stopping) the owner credits the whole lease (so the others are
//!   not refused below the limit) and leases that holder no more tokens of
//!   the key. The holder might still spend that lease: the overshoot bound
//!   is therefore `(lease_tokens − 1) × (shards − 1)` over the life of a
//!   table entry, and 0 when no shard stops.
//!
//! **Concurrent slots** (connections per IP) are exact without leases: an
//! ask to the owner per open, and the `Slot` releases itself when dropped,
//! however the connection ends (a tell to the owner; no task waits for it).
//! Slots have ids, so a release is idempotent; an open whose answer was
//! lost is released anyway.
//!
//! **Bounds.** Each shard's table holds at most `table_entries` keys; a new
//! key evicts the least recently used idle key (no open slot, no
//! outstanding lease), which starts empty next time (`table.rs`). The
//! leases a shard holds are bounded the same way (past it: single tokens).
//!
//! **When the counter cannot be consulted** (the owner shard is gone or
//! does not answer: only a stopping process loses a shard; or its table is
//! full of busy keys), `take` and `open` fail OPEN: `Ok` with
//! `unchecked: Some(why)` for the caller to log; `add`/`count` return
//! `Err(Unchecked)` and the caller treats it as 0.
//!
//! Files: `window.rs` (one sliding window), `table.rs` (the owner's
//! table), `holder.rs` (the leases this shard holds) are pure, time passed
//! in; `requests.rs` the mesh letters; `serve.rs` the handlers, the owner's
//! take with recalls, and the chores (release sender, lease sweep);
//! `slot.rs` the self-releasing slot. Time is one monotonic clock for all
//! shards (`Clock`, injected in tests).

pub mod holder;
pub mod requests;
mod serve;
pub mod slot;
pub mod table;
pub mod window;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Instant;

use futures_channel::oneshot;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use serde::{Deserialize, Serialize};

use crate::limits;
use crate::shards::{Mesh, ShardGone};
use holder::{Ask, LeaseBook};
use requests::{AddEvent, OpenSlot, ReadCount, ReleaseSlot, TakeToken};
use serve::Release;
pub use slot::Slot;
use table::{CounterKey, SlotDecision, SlotId, Table, TakeDecision};

/// The operator's settings of the counters (`[rate_limits]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateSettings {
    /// Tokens a shard may lease from a key's owner at once (1 = no leases).
    pub lease_tokens: u32,
    /// Keys one shard's counter table holds.
    pub table_entries: usize,
}

impl Default for RateSettings {
    fn default() -> Self {
        RateSettings {
            lease_tokens: limits::RATE_LEASE_TOKENS_DEFAULT,
            table_entries: limits::RATE_TABLE_ENTRIES,
        }
    }
}

impl RateSettings {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, why: String| Err((key.to_string(), why));
        if !(1..=limits::RATE_LEASE_TOKENS_MAX).contains(&self.lease_tokens) {
            return bad(
                "rate_limits.lease_tokens",
                format!(
                    "{} is not in 1..={}",
                    self.lease_tokens,
                    limits::RATE_LEASE_TOKENS_MAX
                ),
            );
        }
        if !(limits::RATE_TABLE_ENTRIES_MIN..=limits::RATE_TABLE_ENTRIES_MAX)
            .contains(&self.table_entries)
        {
            let range = format!(
                "{}..={}",
                limits::RATE_TABLE_ENTRIES_MIN,
                limits::RATE_TABLE_ENTRIES_MAX
            );
            return bad(
                "rate_limits.table_entries",
                format!("{} is not in {range}", self.table_entries),
            );
        }
        Ok(())
    }
}

/// A token was granted (or the counter could not be consulted: fail open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The count including this token, for the log line: exact on the
    /// owner; on a lease holder, the owner's count at the grant plus what
    /// this shard spent of it since.
    pub count: u32,
    /// Why the limit was not checked, if it was not (log it).
    pub unchecked: Option<Unchecked>,
}

/// The limit is reached: `count` tokens are counted in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub count: u32,
}

/// Why a counter could not be consulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unchecked {
    /// The owner shard is stopping or did not answer in time.
    OwnerGone(ShardGone),
    /// The owner's table is full of busy keys (open slots, leases).
    TableFull,
}

impl std::fmt::Display for Unchecked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unchecked::OwnerGone(gone) => write!(f, "counter unchecked: {gone}"),
            Unchecked::TableFull => {
                write!(f, "counter unchecked: the owner's counter table is full")
            }
        }
    }
}

/// Milliseconds on this shard's clock.
pub type Clock = Rc<dyn Fn() -> u64>;

/// Milliseconds since the process's first use of the counters (monotonic,
/// one epoch for every shard).
fn process_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One shard's rate counters: the table of the keys it owns and the book
/// of the leases it holds of keys others own.
pub struct Counters {
    mesh: Rc<Mesh>,
    lease_tokens: u32,
    table: RefCell<Table>,
    leases: RefCell<LeaseBook>,
    clock: Clock,
    next_slot: Cell<u64>,
    /// Set by `stop`: the lease sweep sends nothing more.
    stopped: Cell<bool>,
    /// Held by the one recall in progress on this shard (see `decide_take`).
    recall_turn: glommio::sync::Semaphore,
    /// Releases of dropped slots, to send to their owners (`serve` runs the sender).
    releases: LocalSender<Release>,
    pending_releases: RefCell<Option<LocalReceiver<Release>>>,
    /// Takes waiting for the lease being asked for their key (single
    /// flight: one ask per lease, not one per concurrent take).
    lease_waiters: RefCell<hashbrown::HashMap<CounterKey, Vec<futures_channel::oneshot::Sender<()>>>>,
}

impl Counters {
    pub fn new(mesh: Rc<Mesh>, settings: &RateSettings) -> Rc<Counters> {
        Counters::with_clock(mesh, settings, Rc::new(process_ms))
    }

    /// With an injected clock (tests).
    pub fn with_clock(mesh: Rc<Mesh>, settings: &RateSettings, clock: Clock) -> Rc<Counters> {
        let (releases, pending) = local_channel::new_unbounded();
        Rc::new(Counters {
            table: RefCell::new(Table::new(settings.table_entries, mesh.shards())),
            leases: RefCell::new(LeaseBook::new(settings.table_entries)),
            lease_tokens: settings
                .lease_tokens
                .clamp(1, limits::RATE_LEASE_TOKENS_MAX),
            mesh,
            clock,
            next_slot: Cell::new(0),
            stopped: Cell::new(false),
            recall_turn: glommio::sync::Semaphore::new(1),
            releases,
            pending_releases: RefCell::new(Some(pending)),
            lease_waiters: RefCell::new(hashbrown::HashMap::new()),
        })
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Take one token of `key` if fewer than `limit` were taken in the last
    /// `window_secs` (sliding). `Err(Refused)` at the limit; `Ok` with
    /// `unchecked` set when the counter could not be consulted (fail open).
    pub async fn take(&self, key: &str, limit: u32, window_secs: u64) -> Result<Granted, Refused> {
        let key = CounterKey::window(key, window_secs.max(1));
        let owner = self.mesh.owner(&key.name);
        let me = self.mesh.id();
        if owner == me {
            let asked = TakeToken {
                key,
                limit,
                want: 1,
                holder: me,
                settles: Vec::new(),
            };
            return answer(Ok(self.decide_take(asked).await));
        }
        // A take that finds the lease of its key being asked for waits for
        // it (bounded: the ask is bounded by the mesh timeout) instead of
        // asking the owner for a single token of its own.
        let mut waits = 0;
        let now = loop {
            let now = self.now();
            if let Some(count) = self.leases.borrow_mut().spend(&key, now, limit) {
                return Ok(Granted { count, unchecked: None });
            }
            if waits == limits::RATE_LEASE_WAITS_MAX || !self.leases.borrow().is_asking(&key) {
                break now;
            }
            waits += 1;
            let (wake, woken) = futures_channel::oneshot::channel();
            self.lease_waiters.borrow_mut().entry(key.clone()).or_default().push(wake);
            let _ = woken.await; // Canceled (the asker gave up) wakes us as well
        };
        let ask = self
            .leases
            .borrow_mut()
            .prepare(&key, now, self.lease_tokens, limit);
        let mut asking = Asking {
            book: &self.leases,
            waiters: &self.lease_waiters,
            key: &key,
            ask: &ask,
            done: false,
        };
        let request = TakeToken {
            key: key.clone(),
            limit,
            want: ask.want,
            holder: me,
            settles: ask.settles.clone(),
        };
        let reply = self.mesh.ask(owner, request).await;
        let grant = match reply {
            Ok(TakeDecision::Granted {
                count,
                lease: Some(lease),
            }) => Some((lease, count)),
            _ => None,
        };
        asking.done = true;
        self.leases
            .borrow_mut()
            .finish(&key, &ask, reply.is_ok(), grant, now);
        wake_lease_waiters(&self.lease_waiters, &key);
        answer(reply)
    }

    /// Count one event of `key` without a limit (DHAP: an invalid
    /// recipient); the count in the window after it.
    pub async fn add(&self, key: &str, window_secs: u64) -> Result<u32, Unchecked> {
        let key = CounterKey::window(key, window_secs.max(1));
        let counted = if self.mesh.owner(&key.name) == self.mesh.id() {
            Ok(self.table.borrow_mut().add(&key, self.now()))
        } else {
            self.mesh
                .ask_owner(&key.name.clone(), AddEvent { key })
                .await
        };
        counted
            .map_err(Unchecked::OwnerGone)?
            .ok_or(Unchecked::TableFull)
    }

    /// The count of `key` in the last `window_secs` (DHAP, before each
    /// RCPT). Includes tokens leased to shards and not yet spent (at most
    /// `lease_tokens − 1` per shard, while their bucket lasts).
    pub async fn count(&self, key: &str, window_secs: u64) -> Result<u32, Unchecked> {
        let key = CounterKey::window(key, window_secs.max(1));
        if self.mesh.owner(&key.name) == self.mesh.id() {
            return Ok(self.table.borrow_mut().count(&key, self.now()));
        }
        self.mesh
            .ask_owner(&key.name.clone(), ReadCount { key })
            .await
            .map_err(Unchecked::OwnerGone)
    }

    /// One concurrent slot of `key` (connections per IP) if fewer than `max`
    /// are open appliance-wide. The slot releases itself when dropped.
    /// Fails open (`Ok`, `slot.unchecked()` set, nothing to release) when the
    /// owner cannot be consulted.
    pub async fn open(self: &Rc<Self>, key: &str, max: u32) -> Result<Slot, Refused> {
        let key = CounterKey::slots(key);
        let owner = self.mesh.owner(&key.name);
        let seq = self.next_slot.get();
        self.next_slot.set(seq + 1);
        let slot = SlotId {
            shard: self.mesh.id(),
            seq,
        };
        let decided = if owner == self.mesh.id() {
            Ok(self.table.borrow_mut().open(&key, max, slot, self.now()))
        } else {
            self.mesh
                .ask(
                    owner,
                    OpenSlot {
                        key: key.clone(),
                        max,
                        slot,
                    },
                )
                .await
        };
        match decided {
            Ok(SlotDecision::Opened { count }) => {
                Ok(Slot::opened(self.clone(), key, slot, owner, count))
            }
            Ok(SlotDecision::AtLimit { count }) => Err(Refused { count }),
            Ok(SlotDecision::TableFull) => Ok(Slot::not_counted(Unchecked::TableFull)),
            Err(gone) => {
                // The owner may have opened it all the same (a timeout): release it by id.
                self.release(owner, key, slot);
                Ok(Slot::not_counted(Unchecked::OwnerGone(gone)))
            }
        }
    }

    /// Close `slot`: at once on the owner, else queued for `serve`'s sender
    /// (a `Slot`'s drop cannot await).
    fn release(&self, owner: usize, key: CounterKey, slot: SlotId) {
        if owner == self.mesh.id() {
            self.table.borrow_mut().release(&key, slot);
        } else {
            // Fails only when the sender task is gone (the shard is stopping).
            let _ = self
                .releases
                .try_send(Release::Slot(owner, ReleaseSlot { key, slot }));
        }
    }

    /// Wait until every slot released so far on this shard is in its
    /// owner's channel (shutdown; tests). Needs `serve`.
    pub async fn flush_releases(&self) {
        let (done, flushed) = oneshot::channel();
        if self.releases.try_send(Release::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }

    /// Keys in this shard's table (tests, status).
    pub fn table_len(&self) -> usize {
        self.table.borrow().len()
    }

    /// Keys this shard holds leases of (tests, status).
    pub fn leases_held(&self) -> usize {
        self.leases.borrow().len()
    }

    /// Open slots of `key` on this shard's table (tests, status).
    pub fn open_slots(&self, key: &str) -> u32 {
        self.table.borrow().open_slots(&CounterKey::slots(key))
    }

    /// Unused leased tokens of `key` this shard holds (tests, status).
    pub fn unused_leased(&self, key: &str, window_secs: u64) -> u32 {
        self.leases
            .borrow()
            .unused(&CounterKey::window(key, window_secs.max(1)))
    }
}

/// The caller's answer from the owner's decision.
fn answer(decided: Result<TakeDecision, ShardGone>) -> Result<Granted, Refused> {
    match decided {
        Ok(TakeDecision::Granted { count, .. }) => Ok(Granted {
            count,
            unchecked: None,
        }),
        Ok(TakeDecision::AtLimit { count }) => Err(Refused { count }),
        Ok(TakeDecision::TableFull) => Ok(Granted {
            count: 0,
            unchecked: Some(Unchecked::TableFull),
        }),
        Err(gone) => Ok(Granted {
            count: 0,
            unchecked: Some(Unchecked::OwnerGone(gone)),
        }),
    }
}

/// A take waiting for the owner. If the caller drops it mid-ask (the
/// connection went away), the book still learns the ask ended unanswered.
struct Asking<'a> {
    book: &'a RefCell<LeaseBook>,
    waiters: &'a RefCell<hashbrown::HashMap<CounterKey, Vec<futures_channel::oneshot::Sender<()>>>>,
    key: &'a CounterKey,
    ask: &'a Ask,
    done: bool,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.book
                .borrow_mut()
                .finish(self.key, self.ask, false, None, 0);
            wake_lease_waiters(self.waiters, self.key);
        }
    }
}

/// The lease ask for `key` ended (granted or not): its waiters try again.
fn wake_lease_waiters(waiters: &RefCell<hashbrown::HashMap<CounterKey, Vec<futures_channel::oneshot::Sender<()>>>>, key: &CounterKey) {
    let woken = waiters.borrow_mut().remove(key);
    for wake in woken.into_iter().flatten() {
        let _ = wake.send(());
    }
}

#[cfg(test)]
mod tests;
