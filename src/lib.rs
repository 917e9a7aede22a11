//! Portcullis: an SMTP edge appliance, thread-per-core on glommio.
//!
//! Layout, in the order a message flows: `listener` accepts on every shard
//! (SO_REUSEPORT) → `connection` drives one socket and feeds the pure
//! `smtp::Session`, carrying out what it asks: connect, MAIL and RCPT decisions from
//! `policy`, durable storage in `spool` (group commit, then 250) → `delivery`
//! on the owner shard of the destination sends it downstream through `pool`
//! (the pure `smtp::client` on a socket) and marks it done in the spool.
//! `shards` holds the executors and the one `owner(key)` rule with
//! `ask_owner`; `config` the validated snapshot; `limits` every bound;
//! `maillog` one line per event.

pub mod cli;
pub mod clock;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod limits;
pub mod listener;
pub mod maillog;
pub mod message;
pub mod policy;
pub mod server;
pub mod shards;
pub mod pool;
pub mod smtp;
pub mod spool;
