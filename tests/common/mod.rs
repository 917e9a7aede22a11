//! End-to-end test harness: real peers on loopback around the `portcullis`
//! binary.
//!
//! Every end-to-end test file says `mod common;` and builds its scenario from
//! these pieces, one scenario per file:
//!
//! - [`process`]: temp dirs, free loopback ports, readiness polls with a
//!   deadline, running a command with a time limit.
//! - [`sink`]: Postfix's `smtp-sink` as the downstream, dumping every message
//!   to a directory so the test can read it back (or replying 4xx/5xx).
//! - [`server`]: the `portcullis` binary as a child process: start, wait until
//!   it listens, read its mail log, SIGTERM, `kill -9`, restart on the same
//!   spool.
//! - [`config`]: a config file the test rewrites, for SIGHUP reloads.
//! - [`control`]: SIGHUP, waiting for every shard, the log of one run.
//! - [`clients`]: `swaks`, `smtp-source` and a raw SMTP client over
//!   `TcpStream` for exact bytes (smuggling, pipelining).
//! - [`spread`]: which shard serves a connection; a session on a chosen
//!   shard; the owner shard of a counter key.
//! - [`postfix`]: a real Postfix `smtpd` with a recipient table (the
//!   call-ahead downstream whose "550 5.1.1 User unknown" is the real one),
//!   counting connections and RCPTs at the server.
//! - [`fake_smtp`]: a scripted fake downstream, only for faults no real
//!   program makes (garbage, endless lines, a stall mid-reply).
//! - [`callahead`]: a public listener with a call-ahead profile in front of
//!   a test downstream; its decision log lines, CLI and metrics.
//! - [`slapd`]: OpenLDAP's `slapd` with the mail-routing schema, the bind
//!   user and the seed's example entry, for the LDAP queries.
//! - [`conncount`]: connections to a port sampled from /proc/net/tcp, for
//!   servers that do not log them (smtp-sink).
//! - [`auth`]: the SMTP AUTH scenario (policies by client address, a
//!   password file from `portcullis passwd`) and its client helpers.
//!
//! Children are killed when their handle drops, so a failing assertion never
//! leaves a daemon behind. Nothing waits a fixed time: every wait polls a
//! condition until a deadline and fails with what it saw.
#![allow(dead_code, unused_imports)]

pub mod admin;
pub mod auth;
pub mod callahead;
pub mod certs;
pub mod clients;
pub mod config;
pub mod conncount;
pub mod control;
pub mod dns;
pub mod dnssec;
pub mod guarded;
pub mod openssl;
pub mod fake_smtp;
pub mod postfix;
pub mod process;
pub mod server;
pub mod sink;
pub mod slapd;
pub mod spread;

pub use admin::{sample, scrape};
pub use clients::{run_smtp_source, RawSmtp, Reply, Swaks, SwaksResult};
pub use config::{ConfigFile, PolicyToml};
pub use conncount::ConnCounter;
pub use fake_smtp::{FakeSmtp, Fault, Step};
pub use postfix::PostfixSmtpd;
pub use process::{
    free_port, is_listening, run_with_timeout, wait_listening, wait_until, CmdOutput, TempDir,
};
pub use server::{portcullis_bin, run_portcullis, Portcullis, PortcullisBuilder};
pub use sink::{Sink, SinkBuilder, SinkMessage};
pub use slapd::Slapd;
pub use spread::{owner_of, Placement};

use std::time::Duration;

/// The relay domain `portcullis` accepts by default (`--relay-domain`).
pub const RELAY_DOMAIN: &str = "example.test";

/// Default deadline for waits in tests: generous, because a loaded CI box is
/// slow, and a wait only takes this long when the test is failing anyway.
pub const WAIT: Duration = Duration::from_secs(30);
