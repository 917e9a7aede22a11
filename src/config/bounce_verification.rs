//! `[bounce_verification]`: the secrets BATV `prvs` tags (`crate::prvs`)
//! are made and checked with, how long a tag lives, and whether a bounce
//! without a tag is still accepted (ESA's "Consider Untagged Bounces
//! Valid"). Compiled into the policy snapshot (`Policy::bounce_verification`),
//! so a reload rotates the keys: put the new key first and keep the old one
//! after it until the tags made with it have expired.
//!
//! No keys: bounce verification is off (nothing is tagged, every bounce is
//! accepted as it is).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::limits::{
    BATV_KEYS_MAX, BATV_KEY_BYTES_MAX, BATV_TAG_LIFETIME_DAYS_DEFAULT, BATV_TAG_LIFETIME_DAYS_MAX,
};
use crate::prvs::Keys;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BounceVerificationConfig {
    /// Secrets, current first: the first tags, every one verifies. To
    /// rotate, add the new one in front and drop the last once its tags
    /// have expired (`tag_lifetime_days` after the change).
    pub keys: Vec<String>,
    /// A bounce (null sender) to an untagged recipient: accepted when
    /// true, else 550 5.7.1.
    pub accept_untagged_bounces: bool,
    /// Days a tag stays valid after the message was sent (1–30).
    pub tag_lifetime_days: u64,
}

impl Default for BounceVerificationConfig {
    fn default() -> Self {
        BounceVerificationConfig {
            keys: Vec::new(),
            accept_untagged_bounces: false,
            tag_lifetime_days: BATV_TAG_LIFETIME_DAYS_DEFAULT,
        }
    }
}

/// `[bounce_verification]` compiled: present only when keys are configured.
#[derive(Clone, Debug)]
pub struct BounceVerification {
    pub keys: Keys,
    pub accept_untagged_bounces: bool,
    pub tag_lifetime_days: u64,
}

impl BounceVerificationConfig {
    /// Keys not empty, not repeated, at most ten (one key digit); the
    /// lifetime in range. Errors never quote a secret: they name its
    /// position. Returns the offending key and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad =
            |key: &str, why: String| Err((key.to_string(), format!("bounce_verification: {why}")));
        if self.keys.len() > BATV_KEYS_MAX {
            return bad("keys", format!("at most {BATV_KEYS_MAX} keys (the prvs tag has one digit for the key), {} given", self.keys.len()));
        }
        for (i, key) in self.keys.iter().enumerate() {
            if key.is_empty() || key.len() > BATV_KEY_BYTES_MAX {
                return bad(
                    "keys",
                    format!("keys[{i}] must be 1–{BATV_KEY_BYTES_MAX} bytes"),
                );
            }
            if let Some(j) = self.keys[..i].iter().position(|k| k == key) {
                return bad("keys", format!("keys[{i}] repeats keys[{j}]"));
            }
        }
        if !(1..=BATV_TAG_LIFETIME_DAYS_MAX).contains(&self.tag_lifetime_days) {
            return bad(
                "tag_lifetime_days",
                format!(
                    "{} is out of range 1–{BATV_TAG_LIFETIME_DAYS_MAX}",
                    self.tag_lifetime_days
                ),
            );
        }
        Ok(())
    }

    /// The compiled form for the policy snapshot; None (off) without keys.
    pub fn compile(&self) -> Option<Arc<BounceVerification>> {
        if self.keys.is_empty() {
            return None;
        }
        Some(Arc::new(BounceVerification {
            keys: Keys::new(&self.keys, self.tag_lifetime_days),
            accept_untagged_bounces: self.accept_untagged_bounces,
            tag_lifetime_days: self.tag_lifetime_days,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(section: &str) -> Result<Config, String> {
        Config::from_toml(&format!("[bounce_verification]\n{section}")).map_err(|e| e.0)
    }

    #[test]
    fn keys_rotate_into_the_policy_and_none_is_off() {
        let config = parse(
            "keys = [\"current-secret\", \"previous-secret\"]\naccept_untagged_bounces = true\n",
        )
        .unwrap();
        let (_, policy) = config.split();
        let bv = policy
            .bounce_verification
            .as_ref()
            .expect("keys configured");
        assert_eq!(
            (
                bv.keys.len(),
                bv.accept_untagged_bounces,
                bv.tag_lifetime_days
            ),
            (2, true, 7)
        );
        let (_, off) = Config::default().split();
        assert!(off.bounce_verification.is_none());
    }

    #[test]
    fn bad_keys_are_named_by_position_and_line_without_the_secret() {
        for (section, expect) in [
            ("keys = [\"a\", \"\"]\n", "keys[1] must be"),
            (
                "keys = [\"s3cret\", \"s3cret\"]\n",
                "keys[1] repeats keys[0]",
            ),
            (
                "keys = [\"0\",\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\"]\n",
                "at most 10 keys",
            ),
        ] {
            let err = parse(section).unwrap_err();
            assert!(
                err.contains("line 2: keys: bounce_verification: ") && err.contains(expect),
                "{err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn the_printed_section_reads_back_the_same() {
        let config = parse("keys = [\"k1\", \"k0\"]\ntag_lifetime_days = 14\n").unwrap();
        let again = Config::from_toml(&config.to_toml()).unwrap_or_else(|e| panic!("{e}\n{}", config.to_toml()));
        assert_eq!(again.bounce_verification, config.bounce_verification);
    }

    #[test]
    fn the_lifetime_is_bounded() {
        for days in [0, 31] {
            let err = parse(&format!("keys = [\"k\"]\ntag_lifetime_days = {days}\n")).unwrap_err();
            assert!(
                err.contains("tag_lifetime_days") && err.contains("out of range 1–30"),
                "{err}"
            );
        }
        assert!(parse("keys = [\"k\"]\ntag_lifetime_days = 30\n").is_ok());
        assert!(parse("tag_lifetime_days = 1\nunknown = 1\n")
            .unwrap_err()
            .contains("unknown"));
    }
}
