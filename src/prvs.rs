//! Bounce Address Tag Validation (BATV), the `prvs` tag scheme of
//! draft-levine-smtp-batv-01 §4.1: pure tagging and verification of
//! envelope addresses, no I/O and no clock (the day is passed in).
//!
//! Where it sits in the flow: delivery tags the envelope sender of mail we
//! relay outbound (`outbound_sender`, for destinations with
//! `bounce_verification = true`); a bounce to that address comes back to a
//! public listener as a RCPT with the null sender, and `policy::bounce`
//! asks `verify` whether we made the tag before the RAT, call-ahead and
//! delivery see the stripped mailbox.
//!
//! The tag (§4.1): `prvs=KDDDSSSSSS=local@domain`, where
//! - K is the key number, an index into the configured keys (0..=9);
//! - DDD the expiry day: days since 1970-01-01 (UTC), mod 1000;
//! - SSSSSS the first three bytes, in hex, of HMAC-SHA1 (RFC 2104, ring's
//!   `HMAC_SHA1_FOR_LEGACY_USE_ONLY`: the draft names SHA-1, and three
//!   bytes of it are all the tag carries) keyed with the secret, over the
//!   hash source `K DDD local@domain`.
//!
//! One deliberate deviation: the domain is hashed lower-cased (a bouncing
//! MTA may change the domain's case, RFC 5321 §2.4 lets it; the local part
//! is hashed exactly as given). Our own tags are the only ones we verify,
//! so this never breaks interoperation.

use std::borrow::Cow;
use std::fmt;

use ring::hmac;

use crate::limits;

/// The tag type prefix (§4.1), compared case-insensitively.
const PREFIX: &str = "prvs=";
/// `KDDDSSSSSS`: one key digit, three day digits, six hex digits.
const TAG_VAL_BYTES: usize = 10;
/// DDD counts days modulo this (three decimal digits).
const DAY_MODULUS: u64 = 1000;

/// The secrets tags are made and verified with. `keys[0]` (key number 0)
/// tags; every key verifies, so a rotation (a new key first, the old one
/// after it) keeps the tags already out there valid until the old key is
/// removed. The key digit says where the key stood when the tag was made;
/// a rotation moves the old keys down the list, so `verify` tries the key
/// the digit names first and then the others (the digit is hashed, so
/// this costs at most one HMAC per key, never a false match beyond the
/// 2^-24 per key a 24-bit hash allows). Debug never shows the secrets.
#[derive(Clone)]
pub struct Keys {
    secrets: Vec<hmac::Key>,
    lifetime_days: u64,
}

impl Keys {
    /// From `[bounce_verification] keys`, current first. At most
    /// `limits::BATV_KEYS_MAX` are kept (the tag has one key digit); the
    /// config refuses more. `lifetime_days` bounds how far in the future a
    /// tag's day may lie for `verify` (a tag claiming more was not ours).
    pub fn new(secrets: &[String], lifetime_days: u64) -> Keys {
        debug_assert!(
            secrets.len() <= limits::BATV_KEYS_MAX,
            "validated by the config"
        );
        let secrets = secrets
            .iter()
            .take(limits::BATV_KEYS_MAX)
            .map(|s| hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes()))
            .collect();
        Keys {
            secrets,
            lifetime_days,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn lifetime_days(&self) -> u64 {
        self.lifetime_days
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keys({} secrets, {} days)",
            self.secrets.len(),
            self.lifetime_days
        )
    }
}

/// What `verify` found in a recipient address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A tag we made, not expired: `stripped` is the mailbox it tags.
    Valid { stripped: String },
    /// A tag we made whose day has passed.
    Expired,
    /// A `prvs=` address we did not make: malformed, a key number we do not
    /// have (rotated out), a wrong hash, or a day too far in the future.
    BadTag,
    /// No `prvs=` tag at all.
    Untagged,
}

impl Verdict {
    /// The word for logs and the metric's `result` label.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Valid { .. } => "valid",
            Verdict::Expired => "expired",
            Verdict::BadTag => "bad",
            Verdict::Untagged => "untagged",
        }
    }
}

/// The pieces of a `prvs=KDDDSSSSSS=local@domain` address.
#[derive(Debug, PartialEq, Eq)]
pub struct Tagged<'a> {
    pub key_number: usize,
    pub day: u64,
    /// The six hex digits as written.
    pub hash_hex: &'a str,
    /// `local@domain`, the original mailbox.
    pub mailbox: &'a str,
}

/// Days since the Unix epoch of a Unix time in seconds (the day tags count).
pub fn day_of(unix_secs: u64) -> u64 {
    unix_secs / 86_400
}

/// `sender` tagged with the current key (`keys[0]`), expiring
/// `lifetime_days` after `today_days`. The null sender, an address that
/// is already tagged, one without a domain, a quoted local part and a
/// local part the tag would push past RFC 5321 §4.5.3.1.1's 64 octets
/// stay as they are; so does everything when there is no key.
pub fn tag(sender: &str, keys: &Keys, today_days: u64, lifetime_days: u64) -> String {
    match keys.secrets.first() {
        Some(secret) if taggable(sender) => {
            let day = (today_days + lifetime_days) % DAY_MODULUS;
            let prefix = format!("0{day:03}");
            format!(
                "{PREFIX}{prefix}{}={sender}",
                hash_hex(secret, &prefix, sender)
            )
        }
        _ => sender.to_string(),
    }
}

/// Did we tag this recipient? Checks the hash with the named key, then
/// with the others (see `Keys`), then the day (so a forged tag is never
/// reported as merely expired). No key of ours matches: BadTag.
pub fn verify(recipient: &str, keys: &Keys, today_days: u64) -> Verdict {
    let Some(tagged) = parse(recipient) else {
        return if has_prefix(recipient) {
            Verdict::BadTag
        } else {
            Verdict::Untagged
        };
    };
    let source = &recipient[PREFIX.len()..PREFIX.len() + 4]; // "KDDD" as written
    let named = keys.secrets.get(tagged.key_number);
    let others = keys
        .secrets
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != tagged.key_number)
        .map(|(_, k)| k);
    let ours = named
        .into_iter()
        .chain(others)
        .any(|secret| same_hex(&hash_hex(secret, source, tagged.mailbox), tagged.hash_hex));
    if !ours {
        return Verdict::BadTag; // rotated out, or never ours
    }
    // Days until the tag's day, mod 1000 (§4.1 leaves the wrap to us): up to
    // the lifetime ahead is valid; further ahead than any lifetime we may
    // have issued is read as a day that has passed.
    let ahead = (tagged.day + DAY_MODULUS - today_days % DAY_MODULUS) % DAY_MODULUS;
    if ahead <= keys.lifetime_days {
        Verdict::Valid {
            stripped: tagged.mailbox.to_string(),
        }
    } else if ahead > limits::BATV_TAG_LIFETIME_DAYS_MAX {
        Verdict::Expired
    } else {
        Verdict::BadTag
    }
}

/// The tag's pieces, or None when `address` is not a well-formed `prvs=`
/// address (the key number need not be one we have).
pub fn parse(address: &str) -> Option<Tagged<'_>> {
    if !has_prefix(address) {
        return None;
    }
    let rest = &address[PREFIX.len()..];
    let tag_val = rest.get(..TAG_VAL_BYTES)?;
    let mailbox = rest.get(TAG_VAL_BYTES..)?.strip_prefix('=')?;
    let b = tag_val.as_bytes();
    if !b[..4].iter().all(u8::is_ascii_digit) || !b[4..].iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let (local, domain) = mailbox.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(Tagged {
        key_number: usize::from(b[0] - b'0'),
        day: tag_val[1..4].parse().ok()?,
        hash_hex: &tag_val[4..],
        mailbox,
    })
}

/// The envelope sender delivery sends with: tagged when the message was
/// relayed outbound (a RELAY policy or an authenticated session), the
/// destination asks for tags (`[destination.*] bounce_verification`) and
/// keys are configured; otherwise as it was. Mail we received inbound is
/// never tagged: its bounces do not come back to us.
pub fn outbound_sender<'a>(
    mail_from: &'a str,
    relayed: bool,
    destination_wants_tag: bool,
    keys: Option<&Keys>,
    today_days: u64,
    lifetime_days: u64,
) -> Cow<'a, str> {
    match keys {
        Some(keys)
            if relayed && destination_wants_tag && !keys.is_empty() && taggable(mail_from) =>
        {
            Cow::Owned(tag(mail_from, keys, today_days, lifetime_days))
        }
        _ => Cow::Borrowed(mail_from),
    }
}

fn has_prefix(address: &str) -> bool {
    address
        .get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// Can this sender carry a tag? Not `<>`, not one already tagged, not one
/// without a domain or with a quoted local part, not one the tag would
/// make too long.
fn taggable(sender: &str) -> bool {
    let Some((local, domain)) = sender.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !local.starts_with('"')
        && !has_prefix(sender)
        // "prvs=" + KDDDSSSSSS + "=" in front of the local part.
        && PREFIX.len() + TAG_VAL_BYTES + 1 + local.len() <= limits::LOCAL_PART_BYTES_MAX
}

/// The six hex digits: HMAC-SHA1 over `K DDD local@domain` (domain
/// lower-cased, see the module comment), its first three bytes.
fn hash_hex(secret: &hmac::Key, key_and_day: &str, mailbox: &str) -> String {
    let (local, domain) = mailbox.rsplit_once('@').unwrap_or((mailbox, ""));
    let mut ctx = hmac::Context::with_key(secret);
    ctx.update(key_and_day.as_bytes());
    ctx.update(local.as_bytes());
    ctx.update(b"@");
    ctx.update(domain.to_ascii_lowercase().as_bytes());
    let mac = ctx.sign();
    mac.as_ref()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Hex digits equal ignoring case, in time independent of where they differ.
fn same_hex(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
            == 0
}

#[cfg(test)]
mod tests;
