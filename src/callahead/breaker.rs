//! The circuit breaker of one call-ahead server (issue 7 item 7), kept on
//! the server's owner shard beside its probe pool, so it is one state for
//! the whole appliance.
//!
//! Closed: probes go through; `failures` consecutive server failures
//! (timeouts, connection errors, refusals before RCPT, policy rejects) open
//! it. Open: for `open_for` every probe is answered at once with the
//! failure action, so a dead downstream costs the clients nothing and gets
//! no traffic. Then half-open: one trial probe goes through while the rest
//! still get the failure action; its outcome closes the breaker or opens it
//! again. Time is passed in (milliseconds), so the tests drive it.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until_ms: u64 },
    /// One trial probe is out.
    Trial,
}

#[derive(Clone, Debug)]
pub struct Breaker {
    state: State,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { state: State::Closed { failures: 0 } }
    }
}

impl Breaker {
    /// May a probe go to the server now? (A `true` in the half-open state
    /// makes that probe the trial.) `failures == 0` turns the breaker off.
    pub fn admit(&mut self, failures: u32, now_ms: u64) -> bool {
        if failures == 0 {
            return true;
        }
        match self.state {
            State::Closed { .. } => true,
            State::Open { until_ms } if now_ms >= until_ms => {
                self.state = State::Trial;
                true
            }
            State::Open { .. } | State::Trial => false,
        }
    }

    /// The outcome of a probe that was admitted.
    pub fn record(&mut self, server_failed: bool, failures: u32, open_for_ms: u64, now_ms: u64) {
        if failures == 0 {
            return;
        }
        self.state = match (self.state, server_failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Trial, true) => State::Open { until_ms: now_ms + open_for_ms },
            (State::Closed { failures: n }, true) if n + 1 >= failures => State::Open { until_ms: now_ms + open_for_ms },
            (State::Closed { failures: n }, true) => State::Closed { failures: n + 1 },
            // A probe admitted before the breaker opened and ending now
            // changes nothing: the open period stands.
            (open @ State::Open { .. }, true) => open,
        };
    }

    /// Is the breaker refusing probes (open, or half-open with its trial out)?
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_one_trial_decides() {
        let mut b = Breaker::default();
        for _ in 0..4 {
            assert!(b.admit(5, 0));
            b.record(true, 5, 30_000, 0);
        }
        assert!(!b.is_open());
        assert!(b.admit(5, 0));
        b.record(true, 5, 30_000, 1_000);
        assert!(b.is_open());
        assert!(!b.admit(5, 30_999), "open for the whole period");
        assert!(b.admit(5, 31_000), "then one trial");
        assert!(!b.admit(5, 31_000), "and only one");
        b.record(true, 5, 30_000, 32_000);
        assert!(!b.admit(5, 61_999), "a failed trial opens it again");
        assert!(b.admit(5, 62_000));
        b.record(false, 5, 30_000, 62_500);
        assert!(!b.is_open());
        assert!(b.admit(5, 62_500));
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = Breaker::default();
        for _ in 0..4 {
            b.record(true, 5, 1000, 0);
        }
        b.record(false, 5, 1000, 0);
        for _ in 0..4 {
            b.record(true, 5, 1000, 0);
        }
        assert!(!b.is_open(), "4 + 4 failures with a success between are not 5 in a row");
    }

    #[test]
    fn zero_failures_means_off() {
        let mut b = Breaker::default();
        for _ in 0..100 {
            b.record(true, 0, 1000, 0);
        }
        assert!(b.admit(0, 0));
        assert!(!b.is_open());
    }
}
