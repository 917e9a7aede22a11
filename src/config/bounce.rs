//! `[bounce_profile.NAME]`: how long delivery keeps retrying a deferred
//! message and what the sender hears about it (CONFIG.md; seed "bounce
//! profiles", ESA's defaults and ranges). A `[destination.*]` names its
//! profile with `bounce_profile = "NAME"`; `default` always exists (built
//! in when the file has none). `delivery::retry` turns a profile into the
//! retry schedule and the delay-warning rule; `delivery::bounce` writes the
//! RFC 3464 report that `send_hard_bounces` / `send_delay_warnings` allow.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::limits;

/// The profile every destination uses unless it names another.
pub const DEFAULT_PROFILE: &str = "default";

/// One `[bounce_profile.NAME]` table; every key has CONFIG.md's default.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BounceProfileConfig {
    /// Retries after the first attempt; then the message bounces. 0 = the
    /// first temporary failure is final.
    pub max_retries: u32,
    /// Time in queue (from arrival) after which the message bounces.
    pub max_queue_lifetime_secs: u64,
    /// The wait after the first failed attempt; doubles per retry.
    pub initial_retry_secs: u64,
    /// The longest wait between two attempts.
    pub max_retry_secs: u64,
    /// Send an RFC 3464 "failed" report to the envelope sender when a
    /// recipient is refused (5xx) or the limits above are reached.
    pub send_hard_bounces: bool,
    /// Send a "delayed" report while the message is still being retried.
    pub send_delay_warnings: bool,
    /// The first delay warning after this long in queue, then at most one
    /// per this interval.
    pub delay_warning_secs: u64,
}

impl Default for BounceProfileConfig {
    /// ESA's and CONFIG.md's defaults: 100 retries, 3 days, 1 min to 1 h,
    /// hard bounces on, delay warnings off (first after 4 h when on).
    fn default() -> Self {
        BounceProfileConfig {
            max_retries: 100,
            max_queue_lifetime_secs: 259_200,
            initial_retry_secs: 60,
            max_retry_secs: 3_600,
            send_hard_bounces: true,
            send_delay_warnings: false,
            delay_warning_secs: 14_400,
        }
    }
}

impl BounceProfileConfig {
    /// The ranges a profile must keep. Err: (key, why).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, why: String| Err((key.to_string(), why));
        if self.max_retries > limits::BOUNCE_RETRIES_MAX {
            return bad("max_retries", format!("must be 0..={}", limits::BOUNCE_RETRIES_MAX));
        }
        let lifetime = limits::BOUNCE_QUEUE_LIFETIME_SECS_MIN..=limits::BOUNCE_QUEUE_LIFETIME_SECS_MAX;
        if !lifetime.contains(&self.max_queue_lifetime_secs) {
            return bad("max_queue_lifetime_secs", format!("must be {}..={} (60 s to 30 days)", lifetime.start(), lifetime.end()));
        }
        if self.initial_retry_secs == 0 || self.initial_retry_secs > self.max_retry_secs {
            return bad("initial_retry_secs", "need 1 <= initial_retry_secs <= max_retry_secs".into());
        }
        if self.max_retry_secs > limits::BOUNCE_RETRY_SECS_MAX {
            return bad("max_retry_secs", format!("must be at most {} (one day)", limits::BOUNCE_RETRY_SECS_MAX));
        }
        let warning = limits::BOUNCE_DELAY_WARNING_SECS_MIN..=limits::BOUNCE_QUEUE_LIFETIME_SECS_MAX;
        if !warning.contains(&self.delay_warning_secs) {
            return bad("delay_warning_secs", format!("must be {}..={}", warning.start(), warning.end()));
        }
        if self.send_delay_warnings && self.delay_warning_secs >= self.max_queue_lifetime_secs {
            // The bounce would always come first: the operator asked for
            // warnings that can never be sent.
            return bad("delay_warning_secs", "must be less than max_queue_lifetime_secs when send_delay_warnings = true".into());
        }
        Ok(())
    }
}

/// The built-in profiles: just `default`, at its defaults.
pub fn builtin_profiles() -> BTreeMap<String, BounceProfileConfig> {
    BTreeMap::from([(DEFAULT_PROFILE.to_string(), BounceProfileConfig::default())])
}

/// serde `deserialize_with` for `Config::bounce_profile`: the file's
/// tables, plus `default` at its defaults when the file does not set it.
pub fn deserialize_profiles<'de, D>(deserializer: D) -> Result<BTreeMap<String, BounceProfileConfig>, D::Error>
where
    D: Deserializer<'de>,
{
    let mut profiles = BTreeMap::<String, BounceProfileConfig>::deserialize(deserializer)?;
    profiles.entry(DEFAULT_PROFILE.to_string()).or_default();
    Ok(profiles)
}

/// Every profile valid, named sensibly, `default` present. Err: (key, why).
pub fn validate(profiles: &BTreeMap<String, BounceProfileConfig>) -> Result<(), (String, String)> {
    if profiles.len() > limits::BOUNCE_PROFILES_MAX {
        return Err(("bounce_profile".into(), format!("at most {} profiles", limits::BOUNCE_PROFILES_MAX)));
    }
    if !profiles.contains_key(DEFAULT_PROFILE) {
        return Err(("bounce_profile".into(), "a profile named \"default\" is needed".into()));
    }
    for (name, profile) in profiles {
        if !is_profile_name(name) {
            return Err((
                "bounce_profile".into(),
                format!("[bounce_profile.\"{name}\"]: names are 1..={} letters, digits, '-', '_' or '.'", limits::BOUNCE_PROFILE_NAME_BYTES_MAX),
            ));
        }
        profile.validate().map_err(|(key, why)| (key, format!("bounce_profile.{name}: {why}")))?;
    }
    Ok(())
}

/// Every name (a destination's `bounce_profile`) is a profile that exists.
/// Err: ("bounce_profile", why) naming the first unknown one.
pub fn validate_names<'a>(
    profiles: &BTreeMap<String, BounceProfileConfig>,
    mut names: impl Iterator<Item = &'a str>,
) -> Result<(), (String, String)> {
    match names.find(|name| !profiles.contains_key(*name)) {
        None => Ok(()),
        Some(name) => {
            let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
            Err(("bounce_profile".into(), format!("\"{name}\" is not a [bounce_profile.*] (known: {})", known.join(", "))))
        }
    }
}

/// A name an operator can type in a TOML key and a log line without quoting.
fn is_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::BOUNCE_PROFILE_NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[serde(default = "builtin_profiles", deserialize_with = "deserialize_profiles")]
        bounce_profile: BTreeMap<String, BounceProfileConfig>,
    }

    fn parse(text: &str) -> Result<BTreeMap<String, BounceProfileConfig>, String> {
        let file: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
        validate(&file.bounce_profile).map_err(|(key, why)| format!("{key}: {why}"))?;
        Ok(file.bounce_profile)
    }

    #[test]
    fn defaults_are_config_md_and_default_is_built_in() {
        let none = parse("").unwrap();
        assert_eq!(none.len(), 1);
        let d = &none[DEFAULT_PROFILE];
        assert_eq!(
            (d.max_retries, d.max_queue_lifetime_secs, d.initial_retry_secs, d.max_retry_secs),
            (100, 259_200, 60, 3_600)
        );
        assert_eq!((d.send_hard_bounces, d.send_delay_warnings, d.delay_warning_secs), (true, false, 14_400));
        // A file with other profiles only still gets `default`.
        let other = parse("[bounce_profile.fast]\nmax_retries = 3\n").unwrap();
        assert_eq!(other.keys().collect::<Vec<_>>(), ["default", "fast"]);
        assert_eq!(other["fast"].max_retries, 3);
        assert_eq!(other["fast"].max_retry_secs, 3_600);
    }

    #[test]
    fn the_file_may_change_default() {
        let p = parse("[bounce_profile.default]\nmax_retries = 7\nsend_delay_warnings = true\n").unwrap();
        assert_eq!(p[DEFAULT_PROFILE].max_retries, 7);
        assert!(p[DEFAULT_PROFILE].send_delay_warnings);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        assert!(parse("[bounce_profile.default]\nmax_retry = 3\n").is_err());
        assert!(parse("[bounce_profile.default]\nmax_retries = \"3\"\n").is_err());
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        for (line, key) in [
            ("max_retries = 10001", "max_retries"),
            ("max_queue_lifetime_secs = 59", "max_queue_lifetime_secs"),
            ("max_queue_lifetime_secs = 2592001", "max_queue_lifetime_secs"),
            ("initial_retry_secs = 0", "initial_retry_secs"),
            ("initial_retry_secs = 3601", "initial_retry_secs"),
            ("max_retry_secs = 86401\ninitial_retry_secs = 60", "max_retry_secs"),
            ("delay_warning_secs = 59", "delay_warning_secs"),
            ("send_delay_warnings = true\ndelay_warning_secs = 259200", "delay_warning_secs"),
        ] {
            let err = parse(&format!("[bounce_profile.slow]\n{line}\n")).unwrap_err();
            assert!(err.starts_with(&format!("{key}: bounce_profile.slow: ")), "{line}: {err}");
        }
        // The edges themselves are fine.
        parse("[bounce_profile.edge]\nmax_retries = 10000\nmax_queue_lifetime_secs = 60\ninitial_retry_secs = 1\nmax_retry_secs = 1\n").unwrap();
        parse("[bounce_profile.edge]\nmax_queue_lifetime_secs = 2592000\nmax_retry_secs = 86400\n").unwrap();
        // Warnings off: a warning interval past the lifetime is harmless.
        parse("[bounce_profile.edge]\nmax_queue_lifetime_secs = 600\n").unwrap();
    }

    #[test]
    fn odd_profile_names_are_refused() {
        let err = parse("[bounce_profile.\"a b\"]\n").unwrap_err();
        assert!(err.contains("\"a b\""), "{err}");
        let long = "x".repeat(limits::BOUNCE_PROFILE_NAME_BYTES_MAX + 1);
        assert!(parse(&format!("[bounce_profile.{long}]\n")).is_err());
    }

    #[test]
    fn a_programmatic_map_without_default_is_refused() {
        let err = validate(&BTreeMap::new()).unwrap_err();
        assert_eq!(err.0, "bounce_profile");
    }

    #[test]
    fn the_whole_config_has_default_and_names_a_bad_key_with_its_line() {
        use crate::config::Config;
        assert_eq!(Config::default().bounce_profile, builtin_profiles());
        let config = Config::from_toml("hostname = \"mx.test\"\n").unwrap();
        assert_eq!(config.bounce_profile, builtin_profiles());
        let config = Config::from_toml("[bounce_profile.fast]\nmax_retries = 3\n").unwrap();
        assert_eq!(config.bounce_profile.keys().collect::<Vec<_>>(), ["default", "fast"]);
        // The effective config printed by check-config reads back the same.
        assert_eq!(Config::from_toml(&config.to_toml()).unwrap().bounce_profile, config.bounce_profile);
        let err = Config::from_toml("hostname = \"mx.test\"\n[bounce_profile.slow]\nmax_retries = 20000\n").unwrap_err();
        assert!(err.0.starts_with("line 3: max_retries: bounce_profile.slow:"), "{}", err.0);
    }

    #[test]
    fn destinations_must_name_existing_profiles() {
        let profiles = parse("[bounce_profile.fast]\n").unwrap();
        validate_names(&profiles, ["default", "fast"].into_iter()).unwrap();
        let err = validate_names(&profiles, ["fast", "slow", "other"].into_iter()).unwrap_err();
        assert_eq!(err.0, "bounce_profile");
        assert!(err.1.contains("\"slow\"") && err.1.contains("default, fast"), "{}", err.1);
    }
}
