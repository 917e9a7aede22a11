//! Portcullis: an SMTP edge appliance, thread-per-core on glommio.
//!
//! Layout, in the order a message flows: `listener` accepts on every shard
//! (SO_REUSEPORT), one accept loop per configured listener → `connection`
//! drives one socket (a `tls::Stream`: clear, upgraded in place by STARTTLS
//! or implicit TLS with the policy's rustls config) and feeds the pure
//! `smtp::Session`, carrying out what it asks: `auth` answers AUTH (password
//! file or LDAP bind, failures per IP on the owner shard); the connect
//! decision from `policy::connect` (the HAT matches
//! the client, with `dns` lookups only as far as the match needs, and picks
//! its mail flow policy; TCPREFUSE resets here), MAIL and RCPT decisions
//! from `policy` (sender verification, DHAP, the RAT, rate limits on the
//! appliance-wide counters of `policy::rate`, the `ldap` accept query, then
//! `callahead`: the recipient domain's owner shard answers from its verdict
//! cache or probes the downstream through the probe pool of the server's
//! owner shard; `ldap` lookups go to the owner shard of their key, which
//! answers from its cache or asks the LDAP thread), and
//! at the end of data
//! `intake`, which stores the message durably in `spool` (group commit,
//! then 250) and hands its recipients to `delivery`
//! on the same shard (one job per recipient domain), which finds the hosts with
//! `routing` (the LDAP routing query's hosts, else SMTP routes, then MX,
//! then A/AAAA; call-ahead routes the same way), waits for the
//! destination's turn (`delivery::controls`: connection slots and
//! recipient tokens held appliance-wide by the destination's owner shard),
//! sends them downstream through `pool` (the pure `smtp::client` on a
//! socket, STARTTLS per the destination's `tls`, `dane` where
//! DNSSEC-signed TLSA records authenticate the MX, the sender tagged by
//! `prvs` where asked), retries on the bounce profile's schedule, bounces
//! what failed (`delivery::notify`, RFC 3464) and marks the recipients done
//! in its spool; `delivery::queue` is what `portcullis queue` sees. `lifecycle` starts and stops the shards and serves
//! signals (SIGHUP reload); `shard` is one shard's context; `shards` holds
//! the one `owner(key)` rule and the mesh (`ask_owner`); `config` the file
//! format, split into process `Settings` and the reloadable `Policy`;
//! `limits` every bound; `maillog` one line per event; `metrics` per-shard
//! counters that `admin` (its own thread) serves summed as GET /metrics.
//!
//! The seams, for whoever adds the next subsystem:
//! - **A shard request**: declare `struct MyRequest` and
//!   `impl ShardRequest for MyRequest { type Reply = …; }` in the
//!   subsystem's module, register `mesh.handle(|req: MyRequest| async { … })`
//!   in `lifecycle::serve_requests`, and call
//!   `shard.mesh.ask_owner(key, MyRequest { … }).await` — a `Result`, never a
//!   panic or a hang (`ShardGone`). Example: `ldap::lookup::LdapPurge`.
//! - **An invalid recipient** (call-ahead's "mailbox unknown", LDAP accept's
//!   "no entry"): call `policy::dhap::count_invalid`, the one place DHAP
//!   counts.
//! - **A policy question**: the session returns `Action::Ask` with a
//!   `Question`; `connection` has `policy` answer it with a `Decision` (a
//!   future, so it may await the mesh, DNS or a probe) and feeds it back.
//! - **A reload**: `config::reload` builds a new `Policy` from the same file
//!   and flags on SIGHUP and publishes it; each shard installs it in its
//!   `PolicyCell` on its next tick; connections and delivery jobs keep the
//!   snapshot they took when they started.

pub mod admin;
pub mod auth;
pub mod callahead;
pub mod cli;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod connection;
pub mod dane;
pub mod delivery;
pub mod dns;
pub mod intake;
pub mod ldap;
pub mod lifecycle;
pub mod limits;
pub mod listener;
pub mod maillog;
pub mod message;
pub mod metrics;
pub mod policy;
pub mod prvs;
pub mod shard;
pub mod shards;
pub mod pool;
pub mod routing;
pub mod smtp;
pub mod spool;
pub mod tls;
#[cfg(test)]
pub mod test_support;
