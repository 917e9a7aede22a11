//! Mail flow policies as the operator writes them (`[default_policy]`,
//! `[policy.NAME]`), and how one policy's full parameters are found.
//!
//! A policy is layered, each layer a partial TOML table over the one below:
//! the built-in defaults (CONFIG.md's values), then `[default_policy]`, then
//! ESA's values for the five predefined names (ACCEPTED, BLOCKED, THROTTLED,
//! TRUSTED, RELAYED), then `[policy.NAME]`. The merged table is read into
//! `FlowParams`, where every key is checked and range-checked, so an unknown
//! key or a bad value in any layer is named with its policy.

use serde::{Deserialize, Serialize};

/// What a connection under this policy may do (ESA's connection behaviour).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// Mail accepted subject to the RAT and the limits.
    Accept,
    /// Refused at the banner (or at every RCPT with `reject_at = "rcpt"`).
    Reject,
    /// Any recipient, no RAT (outbound mail); still every limit.
    Relay,
    /// Closed before any byte is sent (RST).
    Tcprefuse,
    /// The sender group is skipped and matching goes on.
    Continue,
}

/// Where a REJECT policy refuses.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RejectAt {
    Banner,
    Rcpt,
}

/// STARTTLS per mail flow policy (seed 003, "Encryption and
/// authentication"). With the `-verify` tiers the client is asked for a
/// certificate, checked against `[tls] client_ca`: an invalid one fails
/// the handshake; without one, `preferred-verify` goes on (even in clear)
/// and `required-verify` refuses MAIL.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsTier {
    Off,
    Preferred,
    Required,
    PreferredVerify,
    RequiredVerify,
}

impl TlsTier {
    pub fn offered(self) -> bool {
        self != TlsTier::Off
    }
    pub fn required(self) -> bool {
        matches!(self, TlsTier::Required | TlsTier::RequiredVerify)
    }
    pub fn verify_client(self) -> bool {
        matches!(self, TlsTier::PreferredVerify | TlsTier::RequiredVerify)
    }
}

/// SMTP AUTH per mail flow policy.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthTier {
    Off,
    Preferred,
    Required,
}

/// Every parameter of one mail flow policy (CONFIG.md, `[default_policy]`).
/// Counts of 0 mean "unlimited" where CONFIG.md says so.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlowParams {
    pub behavior: Behavior,
    pub reject_at: RejectAt,
    pub max_messages_per_connection: u32,
    pub max_recipients_per_message: u32,
    pub max_message_size: u64,
    pub max_concurrent_connections_per_ip: u32,
    pub banner_code: u16,
    pub banner_text: String,
    pub banner_hostname: String,
    pub reject_banner_code: u16,
    pub reject_banner_text: String,
    pub max_recipients_per_hour: u32,
    pub max_recipients_per_hour_code: u16,
    pub max_recipients_per_hour_text: String,
    pub group_by_similarity_bits_v4: u8,
    pub group_by_similarity_bits_v6: u8,
    pub sender_rate_limit: u32,
    pub sender_rate_interval_secs: u64,
    pub sender_rate_limit_code: u16,
    pub sender_rate_limit_text: String,
    pub sender_rate_limit_exceptions: Vec<String>,
    pub dhap_max_invalid_per_hour: u32,
    pub dhap_drop_connection: bool,
    pub dhap_code: u16,
    pub dhap_text: String,
    pub dhap_tarpit_ms: u64,
    pub sender_dns_verification: bool,
    pub sender_malformed_code: u16,
    pub sender_malformed_text: String,
    pub sender_nxdomain_code: u16,
    pub sender_nxdomain_text: String,
    pub sender_servfail_code: u16,
    pub sender_servfail_text: String,
    pub use_sender_verification_exceptions: bool,
    /// STARTTLS offered, required, and whether a client certificate is asked for.
    pub tls: TlsTier,
    /// SMTP AUTH (RFC 4954) offered or required.
    pub smtp_auth: AuthTier,
    /// AUTH only after STARTTLS (not advertised, 538 5.7.11 in clear).
    pub require_tls_for_auth: bool,
    /// Content scanning (milters) is not built: only `[]`.
    pub scan: Vec<String>,
}

impl Default for FlowParams {
    /// CONFIG.md's `[default_policy]` values.
    fn default() -> FlowParams {
        FlowParams {
            behavior: Behavior::Accept,
            reject_at: RejectAt::Banner,
            max_messages_per_connection: 10,
            max_recipients_per_message: 50,
            max_message_size: 10 * 1024 * 1024,
            max_concurrent_connections_per_ip: 10,
            banner_code: 220,
            banner_text: "$Hostname ESMTP".into(),
            banner_hostname: String::new(),
            reject_banner_code: 554,
            reject_banner_text: "Access denied".into(),
            max_recipients_per_hour: 0,
            max_recipients_per_hour_code: 452,
            max_recipients_per_hour_text: "Too many recipients received this hour".into(),
            group_by_similarity_bits_v4: 32,
            group_by_similarity_bits_v6: 64,
            sender_rate_limit: 0,
            sender_rate_interval_secs: 3600,
            sender_rate_limit_code: 452,
            sender_rate_limit_text: "Too many recipients received from the sender".into(),
            sender_rate_limit_exceptions: Vec::new(),
            dhap_max_invalid_per_hour: 25,
            dhap_drop_connection: true,
            dhap_code: 550,
            dhap_text: "Too many invalid recipients".into(),
            dhap_tarpit_ms: 0,
            sender_dns_verification: false,
            sender_malformed_code: 553,
            sender_malformed_text: "Domain required for sender address".into(),
            sender_nxdomain_code: 553,
            sender_nxdomain_text: "Domain of sender address <$EnvelopeSender> does not exist".into(),
            sender_servfail_code: 451,
            sender_servfail_text: "Domain of sender address <$EnvelopeSender> does not resolve".into(),
            use_sender_verification_exceptions: true,
            tls: TlsTier::Off,
            smtp_auth: AuthTier::Off,
            require_tls_for_auth: true,
            scan: Vec::new(),
        }
    }
}

/// ESA's five predefined policies, as layers over `[default_policy]`.
pub const PREDEFINED: [(&str, &str); 5] = [
    ("ACCEPTED", ""),
    ("BLOCKED", "behavior = \"reject\"\n"),
    (
        "THROTTLED",
        "max_messages_per_connection = 1\nmax_recipients_per_message = 25\nmax_recipients_per_hour = 20\n\
         max_concurrent_connections_per_ip = 10\ndhap_max_invalid_per_hour = 10\n",
    ),
    (
        "TRUSTED",
        "max_messages_per_connection = 5000\nmax_recipients_per_message = 5000\nmax_message_size = 104857600\n\
         max_concurrent_connections_per_ip = 600\nmax_recipients_per_hour = 0\ndhap_max_invalid_per_hour = 0\n",
    ),
    (
        "RELAYED",
        "behavior = \"relay\"\nmax_messages_per_connection = 5000\nmax_recipients_per_message = 5000\n\
         max_message_size = 104857600\nmax_concurrent_connections_per_ip = 600\nmax_recipients_per_hour = 0\n\
         dhap_max_invalid_per_hour = 0\n",
    ),
];

/// Is `name` one of the predefined policies?
pub fn is_predefined(name: &str) -> bool {
    PREDEFINED.iter().any(|(n, _)| *n == name)
}

/// The parameters of policy `name`: defaults, `[default_policy]`, the
/// predefined layer, `[policy.NAME]`. Err names the key and why.
pub fn resolve(name: &str, default_policy: &toml::Table, own: Option<&toml::Table>) -> Result<FlowParams, String> {
    let mut table = toml::Table::try_from(FlowParams::default()).expect("the defaults serialise");
    merge(&mut table, default_policy);
    if let Some((_, layer)) = PREDEFINED.iter().find(|(n, _)| *n == name) {
        merge(&mut table, &layer.parse::<toml::Table>().expect("the predefined layers parse"));
    }
    if let Some(own) = own {
        merge(&mut table, own);
    }
    let params: FlowParams = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().to_string())?;
    params.validate()?;
    Ok(params)
}

fn merge(base: &mut toml::Table, layer: &toml::Table) {
    for (key, value) in layer {
        base.insert(key.clone(), value.clone());
    }
}

impl FlowParams {
    /// Range checks (ESA's ranges where it has them). Err: "key: why".
    pub fn validate(&self) -> Result<(), String> {
        let range = |key: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                return Err(format!("{key}: {v} is out of range {lo}–{hi}"));
            }
            Ok(())
        };
        range("max_messages_per_connection", self.max_messages_per_connection.into(), 1, 1_000_000)?;
        range("max_recipients_per_message", self.max_recipients_per_message.into(), 1, 100_000)?;
        range("max_message_size", self.max_message_size, 1024, crate::limits::MESSAGE_BYTES_CEILING)?;
        range("max_concurrent_connections_per_ip", self.max_concurrent_connections_per_ip.into(), 0, 1_000_000)?;
        range("banner_code", self.banner_code.into(), 200, 299)?;
        range("group_by_similarity_bits_v4", self.group_by_similarity_bits_v4.into(), 0, 32)?;
        range("group_by_similarity_bits_v6", self.group_by_similarity_bits_v6.into(), 0, 128)?;
        range("sender_rate_interval_secs", self.sender_rate_interval_secs, 60, 7 * 86400)?;
        range("dhap_tarpit_ms", self.dhap_tarpit_ms, 0, crate::limits::DHAP_TARPIT_MS_MAX)?;
        for (key, code) in [
            ("reject_banner_code", self.reject_banner_code),
            ("max_recipients_per_hour_code", self.max_recipients_per_hour_code),
            ("sender_rate_limit_code", self.sender_rate_limit_code),
            ("dhap_code", self.dhap_code),
            ("sender_malformed_code", self.sender_malformed_code),
            ("sender_nxdomain_code", self.sender_nxdomain_code),
            ("sender_servfail_code", self.sender_servfail_code),
        ] {
            range(key, code.into(), 400, 599)?;
        }
        for (key, text) in [
            ("banner_text", &self.banner_text),
            ("banner_hostname", &self.banner_hostname),
            ("reject_banner_text", &self.reject_banner_text),
            ("max_recipients_per_hour_text", &self.max_recipients_per_hour_text),
            ("sender_rate_limit_text", &self.sender_rate_limit_text),
            ("dhap_text", &self.dhap_text),
            ("sender_malformed_text", &self.sender_malformed_text),
            ("sender_nxdomain_text", &self.sender_nxdomain_text),
            ("sender_servfail_text", &self.sender_servfail_text),
        ] {
            check_reply_text(text).map_err(|why| format!("{key}: {why}"))?;
        }
        if !self.scan.is_empty() {
            return Err("scan: content scanning is not built yet".into());
        }
        Ok(())
    }
}

/// A configured reply text: one line of at most `REPLY_TEXT_BYTES_MAX`
/// octets (RFC 5321 §4.5.3.1.5 leaves room for the code), no control characters.
pub fn check_reply_text(text: &str) -> Result<(), String> {
    if text.len() > crate::limits::REPLY_TEXT_BYTES_MAX || text.chars().any(|c| c.is_control()) {
        return Err(format!("at most {} bytes, no control characters", crate::limits::REPLY_TEXT_BYTES_MAX));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn layers_apply_in_order() {
        let default_policy = table("max_recipients_per_hour = 100\nmax_messages_per_connection = 7\n");
        let accepted = resolve("ACCEPTED", &default_policy, None).unwrap();
        assert_eq!((accepted.max_recipients_per_hour, accepted.max_messages_per_connection), (100, 7));
        let throttled = resolve("THROTTLED", &default_policy, Some(&table("max_concurrent_connections_per_ip = 2\n"))).unwrap();
        assert_eq!(throttled.max_recipients_per_hour, 20, "the predefined layer is above [default_policy]");
        assert_eq!(throttled.max_messages_per_connection, 1);
        assert_eq!(throttled.max_concurrent_connections_per_ip, 2, "[policy.THROTTLED] is on top");
        assert_eq!(resolve("BLOCKED", &toml::Table::new(), None).unwrap().behavior, Behavior::Reject);
        assert_eq!(resolve("RELAYED", &toml::Table::new(), None).unwrap().behavior, Behavior::Relay);
        assert_eq!(resolve("MINE", &toml::Table::new(), None).unwrap(), FlowParams::default());
    }

    #[test]
    fn bad_values_are_named() {
        let err = resolve("X", &toml::Table::new(), Some(&table("group_by_similarity_bits_v4 = 33\n"))).unwrap_err();
        assert!(err.starts_with("group_by_similarity_bits_v4"), "{err}");
        let err = resolve("X", &table("max_recipents_per_hour = 3\n"), None).unwrap_err();
        assert!(err.contains("max_recipents_per_hour"), "{err}");
        let err = resolve("X", &toml::Table::new(), Some(&table("behavior = \"maybe\"\n"))).unwrap_err();
        assert!(err.contains("maybe"), "{err}");
        assert!(resolve("X", &toml::Table::new(), Some(&table("banner_code = 554\n"))).is_err());
        assert!(resolve("X", &toml::Table::new(), Some(&table("tls = \"sometimes\"\n"))).is_err());
        assert_eq!(resolve("X", &toml::Table::new(), Some(&table("tls = \"required-verify\"\n"))).unwrap().tls, TlsTier::RequiredVerify);
        // Below 100 recipients per message is a policy's right.
        assert_eq!(resolve("X", &toml::Table::new(), Some(&table("max_recipients_per_message = 5\n"))).unwrap().max_recipients_per_message, 5);
    }
}
