//! SMTP call-ahead recipient validation (issue 7; seeds "Validating
//! Recipients Using an SMTP Server"): at RCPT the session waits while the
//! owner shard of the recipient's domain answers from its verdict cache or
//! probes the downstream server.
//!
//! Built so far, pure and not yet wired into `policy::recipient`:
//! - `verdict`: what a downstream's reply at each stage of a probe says
//!   about the recipient, and what may be cached;
//! - `cache`: one shard's partition of the verdict cache (bounded, TTLs,
//!   refresh-ahead, negative recheck, purge).
//!
//! To come (issue 7): routing (routes → MX → A), profiles, the probe pool
//! over the pure SMTP client, single flight on the owner shard, the
//! breaker, the probe budget, catch-all detection, warn mode, the CLI.

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
