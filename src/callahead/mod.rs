//! SMTP call-ahead recipient validation (issue 7; seeds "Validating
//! Recipients Using an SMTP Server"): at RCPT the session waits while the
//! owner shard of the recipient's domain answers from its verdict cache or
//! probes the downstream server.
//!
//! Along the flow of one RCPT:
//! - `validate` (the session's shard): after the RAT and the rate limits,
//!   ask the domain's owner shard within the profile's timeout, answer
//!   (enforce) or only log (warn), count an unknown mailbox for DHAP, log
//!   one line per decision;
//! - `owner` (the domain's owner shard): the cache partition (`cache`),
//!   single flight, refresh-ahead and negative recheck in the background,
//!   the probe budget per client IP, catch-all detection, the servers to
//!   try (the route, or the static list round robin);
//! - `pool` (each server's owner shard): the probe connections of that
//!   server, at most `max_connections_per_server` for the appliance,
//!   pipelined batches into open transactions, and its `breaker`;
//! - `connection`: one probe connection driving the pure
//!   `smtp::client::probe::Prober`; `verdict` reads what the downstream said.
//!
//! `profile` is a compiled `[callahead.NAME]`.

pub mod breaker;
pub mod cache;
pub mod connection;
pub mod operate;
pub mod owner;
pub mod pool;
pub mod profile;
pub mod validate;
pub mod verdict;

pub use owner::Callahead;
pub use profile::Profile;
