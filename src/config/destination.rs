//! `[destination.default]` and `[destination."DOMAIN"]`: the destination
//! controls of delivery (CONFIG.md; seed 003 "destination controls"): how
//! many connections the whole appliance may hold to a destination, how
//! many messages one connection carries, how many recipients per period,
//! whether these apply per recipient domain or per resolved host, TLS and
//! DANE, bounce verification tagging and the bounce profile.
//!
//! A domain's table overrides only the keys it sets; the rest come from
//! `[destination.default]`, whose unset keys are the built-in defaults
//! (`DestinationSettings::default`, the values CONFIG.md shows). So
//! `[destination."partner.example"] max_connections = 5` keeps the
//! default's TLS. `resolve` gives every table its complete settings;
//! `tls::outbound` compiles them once per policy snapshot and `delivery`
//! picks a recipient domain's (its exact table, else `default`) for every
//! attempt.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits;

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

/// What the connection and rate limits are counted per (seed 003: "apply
/// the limits per destination domain, or per mail server host").
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyTo {
    /// One count for the recipient domain, whatever hosts serve it.
    #[default]
    Domain,
    /// One count per resolved host address (an MX shared by many domains
    /// is protected once, across all of them).
    Host,
}

/// One `[destination.*]` table as written: every key optional (inherited).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DestinationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages_per_connection: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_recipients: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients_period_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_to: Option<ApplyTo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<DestinationTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dane: Option<DaneMode>,
    /// PEM trust anchors added to the system's for `required-verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_verification: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_profile: Option<String>,
}

/// One destination's complete settings (its table over the default's).
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationSettings {
    /// Connections the whole appliance may hold open to the destination
    /// at once; 0 = unlimited (no count kept, no lease asked).
    pub max_connections: u32,
    /// Transactions one connection carries before QUIT.
    pub max_messages_per_connection: u32,
    /// Recipients delivered per `recipients_period_secs`, appliance-wide;
    /// 0 = unlimited.
    pub max_recipients: u32,
    pub recipients_period_secs: u64,
    pub apply_to: ApplyTo,
    pub tls: DestinationTls,
    pub dane: DaneMode,
    /// "" = the system's roots only.
    pub ca_file: String,
    /// Tag the envelope sender of relayed mail (BATV prvs).
    pub bounce_verification: bool,
    /// The `[bounce_profile.NAME]` deciding retries and bounces.
    pub bounce_profile: String,
}

impl Default for DestinationSettings {
    /// The built-in `[destination.default]` (CONFIG.md).
    fn default() -> Self {
        DestinationSettings {
            max_connections: limits::DESTINATION_CONNECTIONS_DEFAULT,
            max_messages_per_connection: limits::DESTINATION_MESSAGES_PER_CONNECTION_DEFAULT,
            max_recipients: 0,
            recipients_period_secs: limits::DESTINATION_RECIPIENTS_PERIOD_SECS_DEFAULT,
            apply_to: ApplyTo::Domain,
            tls: DestinationTls::Preferred,
            dane: DaneMode::Off,
            ca_file: String::new(),
            bounce_verification: false,
            bounce_profile: "default".into(),
        }
    }
}

impl DestinationConfig {
    /// This table's keys over `base` (the default's settings).
    pub fn over(&self, base: &DestinationSettings) -> DestinationSettings {
        DestinationSettings {
            max_connections: self.max_connections.unwrap_or(base.max_connections),
            max_messages_per_connection: self.max_messages_per_connection.unwrap_or(base.max_messages_per_connection),
            max_recipients: self.max_recipients.unwrap_or(base.max_recipients),
            recipients_period_secs: self.recipients_period_secs.unwrap_or(base.recipients_period_secs),
            apply_to: self.apply_to.unwrap_or(base.apply_to),
            tls: self.tls.unwrap_or(base.tls),
            dane: self.dane.unwrap_or(base.dane),
            ca_file: self.ca_file.clone().unwrap_or_else(|| base.ca_file.clone()),
            bounce_verification: self.bounce_verification.unwrap_or(base.bounce_verification),
            bounce_profile: self.bounce_profile.clone().unwrap_or_else(|| base.bounce_profile.clone()),
        }
    }
}

impl DestinationSettings {
    /// Err: (key, why). `table` is what the operator wrote for this
    /// destination: a `ca_file` is refused only where it is written.
    fn validate(&self, table: &DestinationConfig) -> Result<(), (String, String)> {
        let max = limits::DESTINATION_CONNECTIONS_MAX;
        if self.max_connections > max {
            return Err(("max_connections".into(), format!("{} is more than {max} (0 = unlimited)", self.max_connections)));
        }
        let max = limits::DESTINATION_MESSAGES_PER_CONNECTION_MAX;
        if !(1..=max).contains(&self.max_messages_per_connection) {
            return Err(("max_messages_per_connection".into(), format!("{} is not in 1..={max}", self.max_messages_per_connection)));
        }
        let max = limits::DESTINATION_RECIPIENTS_PERIOD_SECS_MAX;
        if !(1..=max).contains(&self.recipients_period_secs) {
            return Err(("recipients_period_secs".into(), format!("{} is not in 1..={max}", self.recipients_period_secs)));
        }
        if table.ca_file.as_deref().is_some_and(|f| !f.is_empty()) && self.tls != DestinationTls::RequiredVerify {
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
        if self.bounce_profile.is_empty() {
            return Err(("bounce_profile".into(), "names a [bounce_profile.NAME] table".into()));
        }
        Ok(())
    }
}

/// The default's settings and every domain's (lower case), complete.
pub fn resolve(destinations: &BTreeMap<String, DestinationConfig>) -> (DestinationSettings, BTreeMap<String, DestinationSettings>) {
    let default = destinations.get("default").map_or_else(DestinationSettings::default, |d| d.over(&DestinationSettings::default()));
    let domains = destinations
        .iter()
        .filter(|(name, _)| name.as_str() != "default")
        .map(|(name, d)| (name.trim_end_matches('.').to_ascii_lowercase(), d.over(&default)))
        .collect();
    (default, domains)
}

/// Every table valid once inherited, and every name a domain (or
/// `default`). Err: (key, why).
pub fn validate(
    destinations: &BTreeMap<String, DestinationConfig>,
) -> Result<(), (String, String)> {
    let (default, _) = resolve(destinations);
    for (name, destination) in destinations {
        if name != "default" && !super::is_domain(name) {
            return Err((
                "destination".into(),
                format!("[destination.\"{name}\"]: {name:?} is not a domain (or \"default\")"),
            ));
        }
        let settings = match name.as_str() {
            "default" => default.clone(),
            _ => destination.over(&default),
        };
        settings
            .validate(destination)
            .map_err(|(key, why)| (key, format!("destination.{name}: {why}")))?;
    }
    Ok(())
}

/// The bounce profiles the destinations name (checked against
/// `[bounce_profile.*]` by the config's validation).
pub fn bounce_profiles(destinations: &BTreeMap<String, DestinationConfig>) -> Vec<String> {
    let (default, domains) = resolve(destinations);
    std::iter::once(default).chain(domains.into_values()).map(|d| d.bounce_profile).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table's complete settings, "default" included.
    fn parse(text: &str) -> Result<BTreeMap<String, DestinationSettings>, String> {
        #[derive(Deserialize)]
        struct File {
            destination: BTreeMap<String, DestinationConfig>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
        validate(&file.destination).map_err(|(key, why)| format!("{key}: {why}"))?;
        let (default, mut all) = resolve(&file.destination);
        all.insert("default".into(), default);
        Ok(all)
    }

    #[test]
    fn defaults_are_preferred_tls_and_no_dane() {
        let d = DestinationSettings::default();
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
    fn a_domain_table_inherits_what_it_does_not_set_from_the_default() {
        let parsed = parse(
            "[destination.default]\ntls = \"required\"\nmax_connections = 20\nmax_recipients = 100\n\
             [destination.\"Partner.Test\"]\nmax_connections = 5\napply_to = \"host\"\n",
        )
        .unwrap();
        let partner = &parsed["partner.test"];
        assert_eq!((partner.max_connections, partner.apply_to), (5, ApplyTo::Host));
        assert_eq!((partner.tls, partner.max_recipients), (DestinationTls::Required, 100));
        assert_eq!(partner.max_messages_per_connection, limits::DESTINATION_MESSAGES_PER_CONNECTION_DEFAULT);
        assert_eq!((parsed["default"].max_connections, parsed["default"].apply_to), (20, ApplyTo::Domain));
        // Without a default table, the built-in one (CONFIG.md's values).
        let parsed = parse("[destination.\"p.test\"]\nbounce_verification = true\n").unwrap();
        assert_eq!(parsed["default"], DestinationSettings::default());
        assert!(parsed["p.test"].bounce_verification);
        assert_eq!((parsed["p.test"].max_connections, parsed["p.test"].bounce_profile.as_str()), (50, "default"));
    }

    #[test]
    fn limits_out_of_range_are_refused_naming_the_key() {
        for (key, why) in [
            ("max_connections = 100001", "max_connections"),
            ("max_messages_per_connection = 0", "max_messages_per_connection"),
            ("recipients_period_secs = 0", "recipients_period_secs"),
            ("bounce_profile = \"\"", "bounce_profile"),
            // Type errors: the config loader names the key (tests/e2e_cli).
            ("apply_to = \"mx\"", "expected `domain` or `host`"),
            ("max_connections = -1", "u32"),
        ] {
            let err = parse(&format!("[destination.\"p.test\"]\n{key}\n")).unwrap_err();
            assert!(err.contains(why), "{key}: {err}");
        }
        assert!(parse("[destination.default]\nmystery = 1\n").is_err());
        assert!(parse("[destination.default]\nmax_connections = 0\n").is_ok(), "0 = unlimited");
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
