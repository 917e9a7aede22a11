//! The SMTP AUTH family (issue 9 item 6): `portcullis_auth_total` by
//! result — success (235), failure (535 5.7.8: wrong login or password),
//! tempfail (454 4.7.0: the backend could not answer) and blocked (421
//! 4.7.0: past `auth_failures_max` this hour). Counted on the session's
//! shard by `auth::authenticate`, once per AUTH attempt; a fixed label set
//! of atomics like the LDAP family, a value outside it counts as `other`.

use super::board::encode_labelled;
use super::snapshot::add_all;
use super::{index_of, load_all};
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `result` of `portcullis_auth_total`, in `auth::AuthOutcome::name`'s
/// words; the last is the catch-all.
pub const AUTH_RESULTS: [&str; 5] = ["success", "failure", "tempfail", "blocked", "other"];

/// One shard's AUTH metrics.
#[derive(Default, Debug)]
pub(super) struct AuthMetrics {
    attempts: [AtomicU64; AUTH_RESULTS.len()],
}

/// A copy of the AUTH values: one shard's, or the sum; indices follow `AUTH_RESULTS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthSnapshot {
    pub attempts: [u64; AUTH_RESULTS.len()],
}

impl AuthMetrics {
    pub(super) fn attempt(&self, result: &str) {
        self.attempts[index_of(&AUTH_RESULTS, result)].fetch_add(1, Relaxed);
    }

    pub(super) fn snapshot(&self) -> AuthSnapshot {
        AuthSnapshot {
            attempts: load_all(&self.attempts),
        }
    }
}

impl AuthSnapshot {
    /// Adds another shard's values (wrapping, like the atomics).
    pub fn add(&mut self, other: &AuthSnapshot) {
        add_all(&mut self.attempts, &other.attempts);
    }
}

/// The AUTH family of the summed snapshot.
pub(super) fn encode(encoder: &mut DescriptorEncoder, sum: &AuthSnapshot) -> fmt::Result {
    encode_labelled(
        encoder,
        "portcullis_auth",
        "SMTP AUTH attempts by result: success, failure (535 5.7.8), tempfail (454 4.7.0, the backend did not answer), blocked (421 4.7.0, too many failures from the client IP this hour)",
        ("result", &AUTH_RESULTS),
        &sum.attempts,
    )
}

#[cfg(test)]
mod tests {
    use crate::metrics::{Metrics, MetricsBoard};
    use std::sync::Arc;

    #[test]
    fn attempts_are_summed_over_shards_by_result() {
        let shards = [Arc::new(Metrics::default()), Arc::new(Metrics::default())];
        shards[0].auth_attempt("success");
        shards[1].auth_attempt("failure");
        shards[1].auth_attempt("failure");
        shards[0].auth_attempt("blocked");
        shards[1].auth_attempt("misspelt");
        let page = MetricsBoard::new(shards.to_vec()).render();
        for line in [
            "portcullis_auth_total{result=\"success\"} 1",
            "portcullis_auth_total{result=\"failure\"} 2",
            "portcullis_auth_total{result=\"tempfail\"} 0",
            "portcullis_auth_total{result=\"blocked\"} 1",
            "portcullis_auth_total{result=\"other\"} 1",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "{line} missing in:\n{page}"
            );
        }
    }
}
