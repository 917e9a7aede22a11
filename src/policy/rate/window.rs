//! One sliding-window counter, pure: the owner shard's record of how many
//! tokens of one key were taken in the last `window_secs`.
//!
//! Sits under `rate::table` (one `Window` per key) on the owner shard; time
//! is passed in (`now_ms` since an arbitrary epoch), so tests never sleep.
//!
//! The window is cut into `RATE_WINDOW_BUCKETS` (60) buckets of
//! `window / 60` each ("per hour" = 60 one-minute buckets). The count is the
//! sum of the current, partial bucket and the 60 full buckets before it, so
//! a token is counted from the moment it is taken until between `window` and
//! `window + window/60` later. That is deliberately conservative: whatever
//! interval of length `window` one looks at, it never holds more than the
//! limit (no 2× burst around a bucket or hour boundary, no reset cliff);
//! the price is that a token comes back up to one bucket late. Memory is
//! sparse: only buckets that hold tokens are stored (a key seen once costs
//! one bucket, a busy key at most 61).

use std::collections::VecDeque;

use crate::limits::RATE_WINDOW_BUCKETS;

/// Buckets a token stays counted in: the current one and the 60 before it.
const BUCKETS_COUNTED: u64 = RATE_WINDOW_BUCKETS + 1;

/// Width of one bucket of a `window_secs` window, at least 1 ms.
pub fn bucket_width_ms(window_secs: u64) -> u64 {
    (window_secs.saturating_mul(1000) / RATE_WINDOW_BUCKETS).max(1)
}

/// The bucket `now_ms` falls in.
pub fn bucket_at(now_ms: u64, window_secs: u64) -> u64 {
    now_ms / bucket_width_ms(window_secs)
}

/// Milliseconds from `now_ms` until its bucket ends (at least 1).
pub fn bucket_left_ms(now_ms: u64, window_secs: u64) -> u64 {
    let width = bucket_width_ms(window_secs);
    (bucket_at(now_ms, window_secs) + 1) * width - now_ms
}

/// Tokens taken per bucket, oldest first; `total` is their sum.
#[derive(Debug, Default, Clone)]
pub struct Window {
    buckets: VecDeque<(u64, u32)>,
    total: u32,
}

impl Window {
    /// Forget buckets that left the window at bucket `now`.
    fn expire(&mut self, now: u64) {
        while let Some(&(bucket, tokens)) = self.buckets.front() {
            if bucket + BUCKETS_COUNTED > now {
                break;
            }
            self.total -= tokens;
            self.buckets.pop_front();
        }
        debug_assert_eq!(self.total, self.buckets.iter().map(|b| b.1).sum::<u32>());
    }

    /// Tokens counted at bucket `now`.
    pub fn count(&mut self, now: u64) -> u32 {
        self.expire(now);
        self.total
    }

    /// Record `tokens` taken in bucket `now` (never earlier than the last
    /// bucket recorded: time only moves forward on one shard).
    pub fn add(&mut self, now: u64, tokens: u32) {
        self.expire(now);
        match self.buckets.back_mut() {
            Some((bucket, n)) if *bucket >= now => *n = n.saturating_add(tokens),
            _ => self.buckets.push_back((now, tokens)),
        }
        self.total = self.total.saturating_add(tokens);
    }

    /// Give back up to `tokens` recorded in `bucket` (a lease's unused
    /// tokens); nothing if that bucket has already left the window (its
    /// tokens are back anyway). Returns what was given back.
    pub fn credit(&mut self, now: u64, bucket: u64, tokens: u32) -> u32 {
        self.expire(now);
        let Some(slot) = self.buckets.iter_mut().find(|b| b.0 == bucket) else {
            return 0;
        };
        let back = tokens.min(slot.1);
        slot.1 -= back;
        self.total -= back;
        back
    }

    /// Whether `bucket` still counts at bucket `now`.
    pub fn holds(now: u64, bucket: u64) -> bool {
        bucket + BUCKETS_COUNTED > now
    }

    /// No token counted at bucket `now`.
    pub fn is_empty(&mut self, now: u64) -> bool {
        self.count(now) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;
    const MINUTE_MS: u64 = 60_000;

    /// Take one token at `minute` if fewer than `limit` are counted.
    fn take(w: &mut Window, minute: u64, limit: u32) -> bool {
        let b = bucket_at(minute * MINUTE_MS, HOUR);
        if w.count(b) >= limit {
            return false;
        }
        w.add(b, 1);
        true
    }

    #[test]
    fn an_hour_is_sixty_one_minute_buckets() {
        assert_eq!(bucket_width_ms(HOUR), MINUTE_MS);
        assert_eq!(bucket_at(59 * MINUTE_MS + 59_999, HOUR), 59);
        assert_eq!(bucket_left_ms(59 * MINUTE_MS + 59_999, HOUR), 1);
        assert_eq!(bucket_left_ms(60 * MINUTE_MS, HOUR), MINUTE_MS);
        assert_eq!(
            bucket_width_ms(1),
            16,
            "short windows still have 60 buckets"
        );
    }

    #[test]
    fn no_double_burst_around_a_boundary() {
        // L taken at minute 59 (just before the "hour" turns): a fixed
        // window would allow L more at minute 61; the sliding one refuses
        // until the whole hour has passed.
        let mut w = Window::default();
        for _ in 0..10 {
            assert!(take(&mut w, 59, 10));
        }
        assert!(!take(&mut w, 59, 10));
        for minute in [60, 61, 90, 118, 119] {
            assert!(!take(&mut w, minute, 10), "refused at minute {minute}");
        }
        // Back between one hour and one hour + one bucket later.
        assert!(take(&mut w, 120, 10));
    }

    #[test]
    fn tokens_come_back_bucket_by_bucket() {
        // One token a minute for an hour, limit 60: the window is full.
        let mut w = Window::default();
        for minute in 0..60 {
            assert!(take(&mut w, minute, 60));
        }
        assert!(!take(&mut w, 60, 60));
        // Each minute after, exactly the token of 61 minutes ago returns.
        for minute in 61..=120 {
            assert!(take(&mut w, minute, 60), "one back at minute {minute}");
            assert!(!take(&mut w, minute, 60), "only one at minute {minute}");
        }
        // Minute 60 took nothing, so nothing returns at 121; 61's returns at 122.
        assert!(!take(&mut w, 121, 60));
        assert!(take(&mut w, 122, 60));
        assert!(!take(&mut w, 122, 60));
    }

    #[test]
    fn any_interval_of_one_window_holds_at_most_the_limit() {
        // Greedy taker, one attempt per second for 5 hours, limit 7: every
        // interval of 3600 s holds at most 7 grants.
        let mut w = Window::default();
        let mut granted = Vec::new();
        for sec in 0..5 * HOUR {
            let b = bucket_at(sec * 1000, HOUR);
            if w.count(b) < 7 {
                w.add(b, 1);
                granted.push(sec);
            }
        }
        for (i, &t) in granted.iter().enumerate() {
            let within = granted[i..].iter().take_while(|&&u| u < t + HOUR).count();
            assert!(within <= 7, "{within} grants in the hour from {t}");
        }
        assert!(
            granted.len() >= 7 * 4,
            "the limit is reached again each hour: {}",
            granted.len()
        );
    }

    #[test]
    fn credit_gives_back_only_what_its_bucket_still_holds() {
        let mut w = Window::default();
        w.add(5, 8);
        w.add(6, 2);
        assert_eq!(w.credit(6, 5, 3), 3);
        assert_eq!(w.count(6), 7);
        assert_eq!(w.credit(6, 5, 100), 5, "never more than the bucket holds");
        assert_eq!(w.credit(6, 4, 1), 0, "no such bucket");
        assert_eq!(w.credit(70, 6, 2), 0, "bucket 6 has left the window at 67");
        assert!(w.is_empty(70));
        assert!(Window::holds(66, 6) && !Window::holds(67, 6));
    }
}
