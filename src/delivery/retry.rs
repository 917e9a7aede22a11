//! The retry schedule of a deferred message and its delay warnings, from
//! its destination's bounce profile (`config::bounce`). Pure: delivery
//! passes the attempts made, the message's age and a random number, and
//! gets back when to try again or why to give up (then it bounces the
//! recipients, `delivery::bounce`). Time is never read here.

use std::time::Duration;

use crate::config::bounce::BounceProfileConfig;
use crate::limits;

/// What delivery does after a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextAttempt {
    /// Try again after this wait.
    RetryIn(Duration),
    /// Stop: the profile's limit reached, said for the bounce and the log
    /// ("max retries (N) reached", "max time in queue (Ns) reached").
    GiveUp(String),
}

/// When to try a message again after `attempts_made` failed attempts
/// (the first delivery attempt counts; so `max_retries` retries means at
/// most `1 + max_retries` attempts), `age_secs` after it arrived.
///
/// The rule, exactly:
/// - give up when `attempts_made > max_retries` (no retry left) or when
///   `age_secs >= max_queue_lifetime_secs` (time in queue used up);
/// - else the nominal wait is `initial_retry_secs * 2^(attempts_made - 1)`
///   (60, 120, 240 … with the defaults), at most `max_retry_secs`;
/// - jitter: the wait is the nominal times `0.8 + 0.4 * jitter`, rounded
///   to whole seconds, so `jitter` in `0.0..1.0` spreads it over ±20 %
///   (`limits::BOUNCE_RETRY_JITTER_PERCENT`); a `jitter` outside that range
///   is clamped into it (NaN counts as 0.5, the nominal wait);
/// - the jittered wait is then kept within `1 ..= max_retry_secs` (the
///   maximum is a maximum: at the cap the spread is downwards only);
/// - and it never reaches past the lifetime: when the queue lifetime ends
///   sooner, the wait is the time left, so the last attempt lands at the
///   lifetime's end and the call after it gives up.
pub fn next_attempt(profile: &BounceProfileConfig, attempts_made: u32, age_secs: u64, jitter: f64) -> NextAttempt {
    if attempts_made > profile.max_retries {
        return NextAttempt::GiveUp(format!("max retries ({}) reached", profile.max_retries));
    }
    let lifetime = profile.max_queue_lifetime_secs;
    if age_secs >= lifetime {
        return NextAttempt::GiveUp(format!("max time in queue ({lifetime}s) reached"));
    }
    let wait = jittered(nominal_wait_secs(profile, attempts_made), jitter).clamp(1, profile.max_retry_secs.max(1));
    NextAttempt::RetryIn(Duration::from_secs(wait.min(lifetime - age_secs)))
}

/// `initial * 2^(attempts_made - 1)`, capped at `max_retry_secs`, without
/// overflow for any number of attempts.
fn nominal_wait_secs(profile: &BounceProfileConfig, attempts_made: u32) -> u64 {
    let doublings = attempts_made.saturating_sub(1);
    let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
    profile.initial_retry_secs.saturating_mul(factor).min(profile.max_retry_secs)
}

/// `secs * (1 - p + 2p * jitter)` with p = the jitter percent, rounded.
fn jittered(secs: u64, jitter: f64) -> u64 {
    let jitter = if jitter.is_nan() { 0.5 } else { jitter.clamp(0.0, 1.0) };
    let spread = limits::BOUNCE_RETRY_JITTER_PERCENT as f64 / 100.0;
    let factor = 1.0 - spread + 2.0 * spread * jitter;
    (secs as f64 * factor).round() as u64
}

/// Whether a delay warning ("still being retried", RFC 3464 Action:
/// delayed) is due now, `age_secs` after arrival, the last one sent at
/// `last_warning_age_secs` (None: none yet).
///
/// Never when the profile's `send_delay_warnings` is off, and never once
/// the queue lifetime is used up (the bounce says it instead). The first
/// at `delay_warning_secs` in queue, then at most once per
/// `delay_warning_secs` after the last one. A warning is sent only when
/// an attempt fails, so the actual times follow the retry schedule.
pub fn delay_warning_due(profile: &BounceProfileConfig, age_secs: u64, last_warning_age_secs: Option<u64>) -> bool {
    if !profile.send_delay_warnings || age_secs >= profile.max_queue_lifetime_secs {
        return false;
    }
    let interval = profile.delay_warning_secs;
    match last_warning_age_secs {
        None => age_secs >= interval,
        Some(last) => age_secs >= last.saturating_add(interval),
    }
}

/// Until when (Unix seconds) a message that arrived at `arrival_secs` is
/// retried: the bounce's Will-Retry-Until (RFC 3464 §2.3.8).
pub fn retry_until_secs(profile: &BounceProfileConfig, arrival_secs: u64) -> u64 {
    arrival_secs.saturating_add(profile.max_queue_lifetime_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> BounceProfileConfig {
        BounceProfileConfig::default()
    }

    fn wait(next: NextAttempt) -> u64 {
        match next {
            NextAttempt::RetryIn(d) => d.as_secs(),
            NextAttempt::GiveUp(why) => panic!("gave up: {why}"),
        }
    }

    #[test]
    fn backoff_doubles_from_initial_to_max_at_nominal_jitter() {
        let p = profile();
        let waits: Vec<u64> = (1..=8).map(|n| wait(next_attempt(&p, n, 0, 0.5))).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }

    #[test]
    fn jitter_spreads_twenty_percent_either_way_below_the_cap() {
        let p = profile();
        // Second wait: nominal 120 s.
        assert_eq!(wait(next_attempt(&p, 2, 0, 0.0)), 96);
        assert_eq!(wait(next_attempt(&p, 2, 0, 0.999_999)), 144);
        for i in 0..=100 {
            let w = wait(next_attempt(&p, 2, 0, i as f64 / 100.0));
            assert!((96..=144).contains(&w), "jitter {i}%: {w}");
        }
        // Out-of-range jitter is clamped, NaN is the nominal wait.
        assert_eq!(wait(next_attempt(&p, 2, 0, -3.0)), 96);
        assert_eq!(wait(next_attempt(&p, 2, 0, 7.0)), 144);
        assert_eq!(wait(next_attempt(&p, 2, 0, f64::NAN)), 120);
    }

    #[test]
    fn jitter_never_passes_max_retry_secs() {
        let p = profile();
        assert_eq!(wait(next_attempt(&p, 30, 0, 1.0)), 3600);
        assert_eq!(wait(next_attempt(&p, 30, 0, 0.0)), 2880);
        // One second apart stays at least one second.
        let tight = BounceProfileConfig { initial_retry_secs: 1, max_retry_secs: 1, ..profile() };
        assert_eq!(wait(next_attempt(&tight, 1, 0, 0.0)), 1);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let p = BounceProfileConfig { max_retries: 10_000, ..profile() };
        assert_eq!(wait(next_attempt(&p, 64, 0, 0.5)), 3600);
        assert_eq!(wait(next_attempt(&p, 10_000, 0, 0.5)), 3600);
    }

    #[test]
    fn gives_up_after_max_retries() {
        let p = BounceProfileConfig { max_retries: 3, ..profile() };
        // Attempt 1 is the first delivery, 2..=4 the three retries.
        for attempts in 1..=3 {
            assert!(matches!(next_attempt(&p, attempts, 0, 0.5), NextAttempt::RetryIn(_)));
        }
        assert_eq!(next_attempt(&p, 4, 0, 0.5), NextAttempt::GiveUp("max retries (3) reached".into()));
        let none = BounceProfileConfig { max_retries: 0, ..profile() };
        assert_eq!(next_attempt(&none, 1, 0, 0.5), NextAttempt::GiveUp("max retries (0) reached".into()));
    }

    #[test]
    fn gives_up_at_the_lifetime() {
        let p = profile();
        assert_eq!(next_attempt(&p, 5, 259_200, 0.5), NextAttempt::GiveUp("max time in queue (259200s) reached".into()));
        assert_eq!(next_attempt(&p, 5, 300_000, 0.5), NextAttempt::GiveUp("max time in queue (259200s) reached".into()));
    }

    #[test]
    fn the_last_retry_lands_at_the_lifetime_end() {
        let p = profile();
        // 100 s left, the schedule wants an hour: retry in 100 s, exactly at the end.
        assert_eq!(wait(next_attempt(&p, 20, 259_100, 1.0)), 100);
        // Walk a whole schedule: no attempt is ever planned past the lifetime,
        // and the last one is at the lifetime's end.
        let short = BounceProfileConfig { max_queue_lifetime_secs: 10_000, ..profile() };
        let (mut age, mut attempts) = (0u64, 1u32);
        loop {
            match next_attempt(&short, attempts, age, 0.9) {
                NextAttempt::RetryIn(d) => {
                    age += d.as_secs();
                    attempts += 1;
                    assert!(age <= 10_000, "attempt {attempts} at {age}");
                }
                NextAttempt::GiveUp(why) => {
                    assert_eq!(age, 10_000, "{why}");
                    assert!(why.contains("max time in queue"), "{why}");
                    break;
                }
            }
        }
    }

    #[test]
    fn delay_warnings_are_off_unless_asked_for() {
        let p = profile();
        assert!(!delay_warning_due(&p, 100_000, None));
    }

    #[test]
    fn the_first_delay_warning_comes_after_delay_warning_secs() {
        let p = BounceProfileConfig { send_delay_warnings: true, ..profile() };
        assert!(!delay_warning_due(&p, 14_399, None));
        assert!(delay_warning_due(&p, 14_400, None));
        assert!(delay_warning_due(&p, 20_000, None));
    }

    #[test]
    fn later_delay_warnings_at_most_once_per_interval() {
        let p = BounceProfileConfig { send_delay_warnings: true, ..profile() };
        assert!(!delay_warning_due(&p, 20_000, Some(14_500)));
        assert!(!delay_warning_due(&p, 28_899, Some(14_500)));
        assert!(delay_warning_due(&p, 28_900, Some(14_500)));
        // Never at or past the lifetime: the bounce is due instead.
        assert!(!delay_warning_due(&p, 259_200, Some(14_500)));
        assert!(!delay_warning_due(&p, 259_200, None));
    }

    #[test]
    fn retry_until_is_arrival_plus_lifetime() {
        assert_eq!(retry_until_secs(&profile(), 1_000), 260_200);
        assert_eq!(retry_until_secs(&profile(), u64::MAX), u64::MAX);
    }
}
