//! The compiled policy: everything that judges and routes mail, as one
//! immutable snapshot that a reload replaces whole.
//!
//! Each shard holds the current snapshot in a `PolicyCell`. A connection
//! or a delivery job takes `cell.current()` once when it starts and keeps
//! that `Arc` to the end, so a reload never changes the rules under an open
//! session. What cannot change without a restart (sockets, cores, spool,
//! pool sizes) is in `Settings` instead.

use std::cell::RefCell;
use std::sync::Arc;

use super::routes::{RouteHost, Routes};
use super::Config;
use crate::policy::access::Access;

/// RFC 5321 §4.5.3.2 server-side timeouts and the minimum data rate.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerTimeouts {
    pub command_secs: u64,
    pub data_block_secs: u64,
    pub data_rate_min_bytes_per_sec: u64,
    pub data_rate_window_secs: u64,
}

/// One validated, compiled policy snapshot.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Counts reloads from 0 (the start); shows in the mail log.
    pub generation: u64,
    /// `[routes]` compiled: domain, `.subdomain` and "*" keys → hosts in
    /// order (`crate::routing` resolves them; no route means DNS).
    pub routes: Routes,
    pub timeouts: ServerTimeouts,
    /// Listeners with their HAT and RAT, the mail flow policies, the sender
    /// verification exceptions (`policy::access`).
    pub access: Arc<Access>,
    /// `[dns]` (the timeouts reload; servers and cache size need a restart).
    pub dns: crate::dns::DnsSettings,
    /// `[tls]` compiled: the server configs STARTTLS and implicit TLS
    /// listeners use; None without a certificate. A reload reads the files
    /// again, so a renewed certificate needs no restart.
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// `[destination.*]` TLS and the call-ahead probe config (`tls::outbound`).
    pub outbound_tls: Arc<crate::tls::outbound::OutboundTls>,
    /// `[auth]` loaded (password file or LDAP query); None: AUTH is not offered.
    pub auth: Option<Arc<crate::auth::Backend>>,
    /// `[bounce_profile.*]` with `default` always there (`bounce::effective`).
    pub bounce_profiles: Arc<std::collections::BTreeMap<String, super::bounce::BounceProfileConfig>>,
    /// `[bounce_verification]` compiled (BATV prvs keys, current first);
    /// None without keys: nothing is tagged, every bounce is accepted.
    pub bounce_verification: Option<Arc<super::bounce_verification::BounceVerification>>,
}

impl Policy {
    /// Compile the policy part of a validated config.
    pub fn compile(config: &Config, generation: u64) -> Policy {
        Policy::try_compile(config, generation).expect("compile() takes a validated config")
    }

    /// Compile, reading the files the policy names (certificates): a file
    /// that changed since the config was validated is an error, not a panic.
    pub fn try_compile(config: &Config, generation: u64) -> Result<Policy, String> {
        let t = &config.timeouts;
        let d = &config.delivery;
        Ok(Policy {
            generation,
            tls: crate::tls::ServerTls::load(&config.tls)?,
            access: Arc::new(Access::compile(config).expect("compile() takes a validated config")),
            dns: config.dns.clone(),
            outbound_tls: Arc::new(crate::tls::outbound::OutboundTls::compile(config)),
            auth: crate::auth::Backend::compile(&config.auth, &config.ldap),
            bounce_profiles: Arc::new(super::bounce::effective(&config.bounce_profile, d)),
            bounce_verification: config.bounce_verification.compile(),
            routes: Routes::compile(&config.routes).expect("compile() takes a validated config"),
            timeouts: ServerTimeouts {
                command_secs: t.command_secs,
                data_block_secs: t.data_block_secs,
                data_rate_min_bytes_per_sec: t.data_rate_min_bytes_per_sec,
                data_rate_window_secs: t.data_rate_window_secs,
            },
        })
    }

    /// The route of a recipient domain: its exact key, else the longest
    /// `.suffix` key, else "*"; None when nothing matches (DNS routes it).
    pub fn route_for(&self, domain: &str) -> Option<(&str, &[RouteHost])> {
        self.routes.lookup(domain)
    }
}

/// A shard's current policy: read once per connection or delivery job,
/// replaced whole by a reload. Single-threaded (one per shard).
pub struct PolicyCell {
    current: RefCell<Arc<Policy>>,
}

impl PolicyCell {
    pub fn new(policy: Arc<Policy>) -> PolicyCell {
        PolicyCell { current: RefCell::new(policy) }
    }

    /// The snapshot to use from now on for one connection or job.
    pub fn current(&self) -> Arc<Policy> {
        self.current.borrow().clone()
    }

    /// Install a newer snapshot; an older or equal generation is ignored.
    /// Returns true when it was installed.
    pub fn install(&self, policy: Arc<Policy>) -> bool {
        let mut current = self.current.borrow_mut();
        if policy.generation <= current.generation {
            return false;
        }
        *current = policy;
        true
    }
}
