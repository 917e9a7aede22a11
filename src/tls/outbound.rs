//! The outbound TLS policy of one snapshot: per destination (delivery)
//! and for call-ahead probes, how much TLS a connection wants and the
//! rustls config it uses (`tls::client`), compiled once per policy
//! snapshot (`config::Policy::outbound_tls`).
//!
//! Where it sits: `delivery` looks a recipient domain up (`destination`:
//! its `[destination."DOMAIN"]` table, else `[destination.default]`) and
//! gives `pool` a `TlsPlan` per host; `callahead::owner` gives the probe
//! pool the `probe` config when a profile's `tls` is not off.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::client;
use crate::config::destination::{self as destination_config, DaneMode, DestinationSettings, DestinationTls};
use crate::config::Config;
use crate::smtp::client::StartTls;

/// One destination's compiled TLS controls.
#[derive(Debug)]
pub struct Destination {
    /// The metric and log label: the `[destination."DOMAIN"]` name, or
    /// "default" (bounded by the file, never by the mail).
    pub label: String,
    pub tls: DestinationTls,
    pub dane: DaneMode,
    /// The client config (None for `tls = "none"`); Err when it could not
    /// be built (a `ca_file` gone since check-config): required TLS then
    /// defers the mail rather than weakening the check.
    pub client: Result<Option<Arc<ClientConfig>>, String>,
    /// Everything else the table says (connection and rate limits, bounce
    /// profile, tagging): `delivery::controls` applies it.
    pub settings: DestinationSettings,
}

impl Destination {
    /// What the pure client asks for.
    pub fn starttls(&self) -> StartTls {
        match self.tls {
            DestinationTls::None => StartTls::Off,
            DestinationTls::Preferred => StartTls::Preferred,
            DestinationTls::Required | DestinationTls::RequiredVerify => StartTls::Required,
        }
    }

    /// The plan for one host of this destination (`name`: the host name
    /// the route or MX gave, None for an IP literal). Err: why no
    /// connection may be tried (the config is missing).
    pub fn plan(&self, name: Option<&str>, ip: std::net::IpAddr) -> Result<TlsPlan, String> {
        let config = self.client.clone()?;
        Ok(TlsPlan {
            starttls: self.starttls(),
            level: self.tls,
            config,
            name: client::server_name(name, ip),
            dane: false,
        })
    }
}

/// What one outbound connection wants: part of the delivery pool's key, so
/// a connection opened under a weaker level never carries mail that needs
/// a stricter one.
#[derive(Clone, Debug)]
pub struct TlsPlan {
    pub starttls: StartTls,
    pub level: DestinationTls,
    /// None when `starttls` is off.
    pub config: Option<Arc<ClientConfig>>,
    /// The peer's TLS identity (SNI, and the name checked under
    /// `required-verify`).
    pub name: ServerName<'static>,
    /// `config` authenticates the server by its TLSA records (RFC 7672;
    /// `delivery::dane`): pooled apart from every other plan, so mail that
    /// needs DANE never rides a connection checked otherwise, nor the
    /// reverse.
    pub dane: bool,
}

impl TlsPlan {
    /// No TLS at all (the pool's plain `send`, tests).
    pub fn none(ip: std::net::IpAddr) -> TlsPlan {
        TlsPlan {
            starttls: StartTls::Off,
            level: DestinationTls::None,
            config: None,
            name: ServerName::IpAddress(ip.into()),
            dane: false,
        }
    }
}

/// The outbound TLS policy of one snapshot.
#[derive(Debug)]
pub struct OutboundTls {
    default: Arc<Destination>,
    by_domain: HashMap<String, Arc<Destination>>,
    /// Call-ahead: encrypt only, with our `[tls]` certificate as client
    /// certificate when there is one. Err: why it could not be built.
    probe: Result<Arc<ClientConfig>, String>,
}

impl OutboundTls {
    /// Compile `[destination.*]` and the probe config of a validated
    /// config. Never fails: a config that cannot be built (a file gone
    /// since validation) is kept as its error and fails closed when used.
    pub fn compile(config: &Config) -> OutboundTls {
        let encrypt = client::encrypt_only(None);
        let mut verified: HashMap<String, Result<Arc<ClientConfig>, String>> = HashMap::new();
        let mut compile = |label: &str, d: &DestinationSettings| {
            let client = match d.tls {
                DestinationTls::None => Ok(None),
                DestinationTls::Preferred | DestinationTls::Required => encrypt.clone().map(Some),
                DestinationTls::RequiredVerify => verified
                    .entry(d.ca_file.clone())
                    .or_insert_with(|| {
                        client::verified((!d.ca_file.is_empty()).then(|| Path::new(&d.ca_file)))
                    })
                    .clone()
                    .map(Some),
            };
            Arc::new(Destination {
                label: label.to_string(),
                tls: d.tls,
                dane: d.dane,
                client,
                settings: d.clone(),
            })
        };
        let (default, domains) = destination_config::resolve(&config.destination);
        let default = compile("default", &default);
        let by_domain = domains.iter().map(|(name, d)| (name.clone(), compile(name, d))).collect();
        let probe = client::identity(&config.tls).and_then(client::encrypt_only);
        OutboundTls {
            default,
            by_domain,
            probe,
        }
    }

    /// The controls of a recipient domain: its own table, else the default.
    pub fn destination(&self, domain: &str) -> Arc<Destination> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.by_domain.get(&domain).unwrap_or(&self.default).clone()
    }

    /// The call-ahead probe config.
    pub fn probe(&self) -> Result<Arc<ClientConfig>, String> {
        self.probe.clone()
    }
}

impl Default for OutboundTls {
    /// `compile` of the default config: preferred TLS everywhere.
    fn default() -> OutboundTls {
        OutboundTls::compile(&Config::default())
    }
}
