//! Reload: rebuild the policy from the same file and flags the process
//! started with, and publish it to every shard.
//!
//! The main thread does the work (reading a file is blocking; it is not a
//! shard): on SIGHUP it parses and validates the file again with the
//! original flags on top. A bad file is refused with the reason and the
//! running policy stays. A good one is published on the `PolicyBoard`; each
//! shard notices the new generation on its housekeeping tick (at most
//! `limits::RELOAD_POLL_MS` later) and installs it in its `PolicyCell`.
//! Connections and delivery jobs already running keep the snapshot they
//! took. Settings that need a restart are reported and keep running as
//! they were.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Config, ConfigError, Policy, Settings};

/// Builds a config the way the process was started: file, then flags.
pub type ConfigSource = Box<dyn Fn() -> Result<Config, ConfigError> + Send>;

/// The newest policy, shared by the main thread (writer) and the shards
/// (readers, by polling `generation`).
pub struct PolicyBoard {
    generation: AtomicU64,
    latest: Mutex<Arc<Policy>>,
}

impl PolicyBoard {
    pub fn new(first: Arc<Policy>) -> Arc<PolicyBoard> {
        Arc::new(PolicyBoard { generation: AtomicU64::new(first.generation), latest: Mutex::new(first) })
    }

    /// Generation of the newest policy (cheap: a shard polls this).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn latest(&self) -> Arc<Policy> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn publish(&self, policy: Arc<Policy>) {
        let generation = policy.generation;
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = policy;
        self.generation.store(generation, Ordering::Release);
    }
}

/// What a reload did, for the process log.
#[derive(Debug, PartialEq)]
pub enum ReloadOutcome {
    /// Published this generation; these settings changed but need a restart.
    Published { generation: u64, needs_restart: Vec<&'static str> },
    /// The file was refused; the running policy stays.
    Refused(String),
}

/// Re-read the configuration and publish its policy.
pub fn reload(source: &ConfigSource, running: &Settings, board: &PolicyBoard) -> ReloadOutcome {
    let config = match source() {
        Ok(c) => c,
        Err(e) => return ReloadOutcome::Refused(e.0),
    };
    let mut config = config;
    let mut settings = Settings::from_config(&config);
    // The running spool path is absolute (see lifecycle); compare like with like.
    if let Ok(absolute) = settings.spool_dir.canonicalize() {
        settings.spool_dir = absolute;
    }
    // Sockets are bound at start and each finds its HAT and RAT by listener
    // name: a policy whose listeners differ would leave a socket without
    // its tables. Refused whole; the running policy stays.
    if settings.listeners != running.listeners {
        return ReloadOutcome::Refused("listeners (names and addresses) change only with a restart".into());
    }
    // The host name is a process setting (Received headers, downstream
    // HELO): the policy is compiled with the running one until a restart.
    config.hostname = running.hostname.clone();
    let generation = board.generation() + 1;
    let policy = match Policy::try_compile(&config, generation) {
        Ok(policy) => policy,
        Err(why) => return ReloadOutcome::Refused(why),
    };
    board.publish(Arc::new(policy));
    ReloadOutcome::Published { generation, needs_restart: settings.needing_restart(running) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &'static str) -> ConfigSource {
        Box::new(move || Config::from_toml(text))
    }

    /// Does the shorthand listener's RAT of this snapshot accept `mailbox`?
    fn accepts(policy: &Policy, mailbox: &str) -> bool {
        let listener = policy.access.listener("default").expect("the shorthand listener");
        listener.rat.as_ref().expect("a public listener has a RAT").check(mailbox).refusal.is_none()
    }

    #[test]
    fn a_good_file_is_published_and_a_bad_one_refused() {
        let first = Config::from_toml("relay_domains = [\"a.test\"]\n").unwrap();
        let (settings, policy) = first.split();
        let board = PolicyBoard::new(Arc::new(policy));

        let outcome = reload(&source("relay_domains = [\"b.test\"]\n"), &settings, &board);
        assert_eq!(outcome, ReloadOutcome::Published { generation: 1, needs_restart: vec![] });
        assert!(accepts(&board.latest(), "u@b.test") && !accepts(&board.latest(), "u@a.test"));

        let outcome = reload(&source("relay_domains = [\"*\"]\n"), &settings, &board);
        assert!(matches!(outcome, ReloadOutcome::Refused(ref why) if why.contains("relay_domains")), "{outcome:?}");
        assert_eq!(board.generation(), 1);
        assert!(accepts(&board.latest(), "u@b.test"));

        let outcome = reload(&source("relay_domains = [\"b.test\"]\nmax_connections = 7\n"), &settings, &board);
        assert_eq!(outcome, ReloadOutcome::Published { generation: 2, needs_restart: vec!["max_connections"] });
    }

    #[test]
    fn a_new_hostname_waits_for_a_restart_everywhere() {
        let (settings, policy) = Config::from_toml("hostname = \"old.test\"\n").unwrap().split();
        let board = PolicyBoard::new(Arc::new(policy));
        let outcome = reload(&source("hostname = \"new.test\"\n"), &settings, &board);
        assert_eq!(outcome, ReloadOutcome::Published { generation: 1, needs_restart: vec!["hostname", "delivery pool and client timeouts"] });
        // Banners and EHLO keep the name Received headers and HELO keep.
        let latest = board.latest();
        let listener = latest.access.listener("default").unwrap();
        assert_eq!((listener.hostname.as_str(), listener.session_config.hostname.as_str()), ("old.test", "old.test"));
    }

    #[test]
    fn changed_listeners_are_refused_whole() {
        let (settings, policy) = Config::from_toml("listen = [\"127.0.0.1:2600\"]\n").unwrap().split();
        let board = PolicyBoard::new(Arc::new(policy));
        let outcome = reload(&source("listen = [\"127.0.0.1:2601\"]\n"), &settings, &board);
        assert!(matches!(outcome, ReloadOutcome::Refused(ref why) if why.contains("listeners")), "{outcome:?}");
        assert_eq!(board.generation(), 0);
    }

    #[test]
    fn a_cell_installs_only_newer_generations() {
        let (_, policy) = Config::default().split();
        let cell = crate::config::PolicyCell::new(Arc::new(policy.clone()));
        let taken = cell.current();
        let table = std::collections::BTreeMap::from([("*".to_string(), vec!["127.0.0.1:9".parse().unwrap()])]);
        let routes = crate::config::Routes::compile(&table).unwrap();
        assert!(cell.install(Arc::new(Policy { generation: 3, routes, ..policy.clone() })));
        assert!(!cell.install(Arc::new(Policy { generation: 2, ..policy.clone() })));
        assert_eq!(cell.current().generation, 3);
        // A snapshot taken before the install is unchanged.
        assert_eq!(taken.routes, policy.routes);
    }
}
