//! `[destination.default]` and `[destination."DOMAIN"]`: the destination
//! controls of delivery (CONFIG.md; seed "destination controls"), as far as
//! issue 9 builds them: how much TLS delivery to a domain wants, DANE, and
//! extra trust anchors. Compiled into `tls::client::OutboundTls` once per
//! policy snapshot; `delivery` picks a recipient domain's entry (its exact
//! table, else `default`) for every attempt.
//!
//! The other keys of the section (connection and rate limits, bounce
//! verification, bounce profiles) come with issue 10: a file that sets
//! them is refused ("not built yet") rather than silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How much TLS delivery to the destination wants (seed: none / preferred
/// / required, and required-verify).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationTls {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, the certificate not checked; clear text
    /// when not offered, refused, or the handshake fails (RFC 7435).
    #[default]
    Preferred,
    /// STARTTLS or no delivery (the mail is deferred), the certificate not
    /// checked (Postfix's `encrypt`).
    Required,
    /// STARTTLS with a certificate that chains to the system's roots or
    /// `ca_file` and names the host the route or MX gave (Postfix's `secure`).
    RequiredVerify,
}

impl DestinationTls {
    /// As the operator writes it, for the log.
    pub fn name(self) -> &'static str {
        match self {
            DestinationTls::None => "none",
            DestinationTls::Preferred => "preferred",
            DestinationTls::Required => "required",
            DestinationTls::RequiredVerify => "required-verify",
        }
    }
}

/// DANE for SMTP (RFC 7672): `off | opportunistic | mandatory`, the
/// DANE module's own mode (delivery applies it to destinations reached by
/// MX; `delivery::dane`).
pub use crate::dane::DaneMode;

/// One `[destination.*]` table; keys of issue 10 are read only to be refused.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DestinationConfig {
    pub tls: DestinationTls,
    pub dane: DaneMode,
    /// PEM trust anchors added to the system's for `required-verify`; "" = none.
    pub ca_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages_per_connection: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_recipients: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients_period_secs: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_verification: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_profile: Option<toml::Value>,
}

impl DestinationConfig {
    /// Err: (key, why).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let later = [
            ("max_connections", &self.max_connections),
            (
                "max_messages_per_connection",
                &self.max_messages_per_connection,
            ),
            ("max_recipients", &self.max_recipients),
            ("recipients_period_secs", &self.recipients_period_secs),
            ("bounce_verification", &self.bounce_verification),
            ("bounce_profile", &self.bounce_profile),
        ];
        if let Some((key, _)) = later.iter().find(|(_, value)| value.is_some()) {
            return Err((
                key.to_string(),
                "not built yet (destination controls land with issue 10)".into(),
            ));
        }
        if !self.ca_file.is_empty() && self.tls != DestinationTls::RequiredVerify {
            return Err((
                "ca_file".into(),
                "only with tls = \"required-verify\" (nothing else checks certificates)".into(),
            ));
        }
        if self.tls == DestinationTls::RequiredVerify {
            // Read the anchors now: a file that cannot be used is named by
            // check-config, not discovered by a deferred message.
            let ca = (!self.ca_file.is_empty()).then(|| std::path::Path::new(&self.ca_file));
            crate::tls::client::verified(ca).map_err(|why| ("ca_file".to_string(), why))?;
        }
        Ok(())
    }
}

/// Every table valid, and every name a domain (or `default`). Err: (key, why).
pub fn validate(
    destinations: &BTreeMap<String, DestinationConfig>,
) -> Result<(), (String, String)> {
    for (name, destination) in destinations {
        if name != "default" && !super::is_domain(name) {
            return Err((
                "destination".into(),
                format!("[destination.\"{name}\"]: {name:?} is not a domain (or \"default\")"),
            ));
        }
        destination
            .validate()
            .map_err(|(key, why)| (key, format!("destination.{name}: {why}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, DestinationConfig>, String> {
        #[derive(Deserialize)]
        struct File {
            destination: BTreeMap<String, DestinationConfig>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
        validate(&file.destination).map_err(|(key, why)| format!("{key}: {why}"))?;
        Ok(file.destination)
    }

    #[test]
    fn defaults_are_preferred_tls_and_no_dane() {
        let d = DestinationConfig::default();
        assert_eq!(
            (d.tls, d.dane, d.ca_file.as_str()),
            (DestinationTls::Preferred, DaneMode::Off, "")
        );
        let parsed =
            parse("[destination.default]\n[destination.\"partner.test\"]\ntls = \"required\"\n")
                .unwrap();
        assert_eq!(parsed["default"].tls, DestinationTls::Preferred);
        assert_eq!(parsed["partner.test"].tls, DestinationTls::Required);
    }

    #[test]
    fn every_tls_level_parses() {
        for (text, level) in [
            ("none", DestinationTls::None),
            ("preferred", DestinationTls::Preferred),
            ("required", DestinationTls::Required),
        ] {
            let parsed = parse(&format!("[destination.default]\ntls = \"{text}\"\n")).unwrap();
            assert_eq!(parsed["default"].tls, level);
        }
        assert!(parse("[destination.default]\ntls = \"sometimes\"\n").is_err());
    }

    #[test]
    fn every_dane_mode_parses() {
        for (text, mode) in [
            ("off", DaneMode::Off),
            ("opportunistic", DaneMode::Opportunistic),
            ("mandatory", DaneMode::Mandatory),
        ] {
            let parsed = parse(&format!("[destination.default]\ndane = \"{text}\"\n")).unwrap();
            assert_eq!(parsed["default"].dane, mode);
        }
        assert!(parse("[destination.default]\ndane = \"maybe\"\n").is_err());
    }

    #[test]
    fn issue_10_keys_are_refused_as_not_built_yet() {
        for key in [
            "max_connections = 5",
            "max_messages_per_connection = 5",
            "max_recipients = 0",
            "recipients_period_secs = 60",
            "bounce_verification = false",
            "bounce_profile = \"default\"",
        ] {
            let err = parse(&format!("[destination.default]\n{key}\n")).unwrap_err();
            assert!(err.contains("not built yet"), "{key}: {err}");
            assert!(
                err.starts_with(key.split(' ').next().unwrap()),
                "{key}: {err}"
            );
        }
        assert!(parse("[destination.default]\nmystery = 1\n").is_err());
    }

    #[test]
    fn ca_file_goes_with_required_verify_and_must_be_readable() {
        let err = parse("[destination.default]\nca_file = \"/etc/hostname\"\n").unwrap_err();
        assert!(err.starts_with("ca_file"), "{err}");
        let err = parse(
            "[destination.\"p.test\"]\ntls = \"required-verify\"\nca_file = \"/nonexistent.pem\"\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("ca_file: destination.p.test: ca_file /nonexistent.pem"),
            "{err}"
        );
    }

    #[test]
    fn table_names_are_domains_or_default() {
        assert!(parse("[destination.\"not a domain\"]\n")
            .unwrap_err()
            .starts_with("destination"));
    }
}
