//! A running `portcullis` beyond start and stop: SIGHUP reloads, and the
//! mail log seen per shard and per run.
//!
//! Each shard writes its own mail-log lines (`TS shard=N event ...`), and
//! the log file is appended across restarts; these helpers let a test
//! wait for every shard (`wait_for_reload`, `wait_every_shard_serving`)
//! and read one run at a time (`run_logs`).

use super::clients::RawSmtp;
use super::process::wait_until;
use super::server::Portcullis;
use std::time::Duration;

impl Portcullis {
    /// Waits until every one of `shards` shards has served a connection
    /// (probes: connect, greeting, QUIT); panics with the log after
    /// `timeout`. The port listens as soon as one shard has bound it, a
    /// little before every shard has finished starting; a shard that
    /// finishes after a SIGHUP starts with the new policy and logs no
    /// `reload` line, so reload tests wait for this first.
    pub fn wait_every_shard_serving(&self, shards: usize, timeout: Duration) {
        let serving = |server: &Portcullis| {
            let lines = server.event_lines("connect");
            (0..shards)
                .filter(|s| {
                    lines
                        .iter()
                        .any(|l| l.contains(&format!(" shard={s} connect ")))
                })
                .count()
        };
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok((mut probe, _)) = RawSmtp::connect(self.addr()) {
                let _ = probe.cmd("QUIT");
            }
            // The mail log is written out on a short timer.
            if wait_until(Duration::from_millis(500), || serving(self) == shards) {
                return;
            }
        }
        panic!(
            "portcullis log: {} of {shards} shards served a connection after {timeout:?}\n{}",
            serving(self),
            self.log()
        );
    }

    /// SIGHUP: reload the policy from the same file and flags. See
    /// `wait_for_reload` for when the shards have it.
    pub fn sighup(&self) {
        if let Some(pid) = self.pid() {
            // SAFETY: pid of our own child, not reaped while `self` holds it
            // (see process::signal_and_wait).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        }
    }

    /// Waits until each of `shards` shards logged `reload generation=N`
    /// (it installed policy generation N); panics with the log after
    /// `timeout`.
    pub fn wait_for_reload(&self, generation: u64, shards: usize, timeout: Duration) {
        let installed = |server: &Portcullis| {
            let lines = server.event_lines("reload");
            (0..shards)
                .filter(|s| {
                    let tag = format!("shard={s} reload generation={generation}");
                    lines
                        .iter()
                        .any(|l| l.ends_with(&tag) || l.contains(&format!("{tag} ")))
                })
                .count()
        };
        if !wait_until(timeout, || installed(self) == shards) {
            panic!(
                "portcullis log: {} of {shards} shards installed policy generation {generation} after {timeout:?}\n{}",
                installed(self),
                self.log()
            );
        }
    }

    /// The log split by process start: one string per run (`start`, then
    /// each `restart`), split at the start-up line `portcullis: starting N shard(s)`.
    pub fn run_logs(&self) -> Vec<String> {
        let mut runs: Vec<String> = Vec::new();
        for line in self.log().lines() {
            if runs.is_empty() || line.starts_with("portcullis: starting ") {
                runs.push(String::new());
            }
            let run = runs.last_mut().expect("pushed above");
            run.push_str(line);
            run.push('\n');
        }
        runs
    }
}
