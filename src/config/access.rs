//! Who may send, as the operator writes it: `[[listener]]`, the HAT rows
//! (`[[hat.NAME]]`), the RAT rows (`[[rat.NAME]]`) and the sender
//! verification exception table. Plain file types; `policy::access`
//! compiles them into the tables sessions consult.
//!
//! The flat `listen` + `relay_domains` keys are the shorthand for one public
//! listener per address whose HAT admits everyone under the permissive
//! policy (`SHORTHAND_POLICY`) and whose RAT accepts the relay domains;
//! `listeners()` expands it, so the rest of the code only sees listeners.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Config;

/// The name of the policy the shorthand's listeners admit everyone under:
/// the `[session]` limits, no per-IP caps, no DHAP (not ESA's ACCEPTED, so a
/// load test from one address keeps working).
pub const SHORTHAND_POLICY: &str = "SHORTHAND";
/// The HAT and RAT names the shorthand expands to.
pub const SHORTHAND_TABLE: &str = "shorthand";

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Inbound: HAT and RAT (and call-ahead later).
    Public,
    /// Outbound: HAT only; a client the HAT does not match is RELAYED.
    Private,
}

/// One `[[listener]]` table.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    #[serde(rename = "type")]
    pub kind: ListenerKind,
    /// `[[hat.NAME]]`; none = every client gets `unmatched_policy`.
    #[serde(default)]
    pub hat: Option<String>,
    /// `[[rat.NAME]]`; public listeners only (a public listener without
    /// one accepts no recipient but under RELAY policies).
    #[serde(default)]
    pub rat: Option<String>,
    /// The policy of a client no sender group matches. Default: ACCEPTED on
    /// a public listener (its RAT still decides), RELAYED on a private one.
    #[serde(default)]
    pub unmatched_policy: Option<String>,
    /// Our name in this listener's banner ($Hostname); default `hostname`.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `[callahead.NAME]` validating this listener's recipients; public only.
    #[serde(default)]
    pub callahead: Option<String>,
    /// `[ldap.query."NAME"]` of kind routing: rewrite, mail host, call-ahead hosts.
    #[serde(default)]
    pub ldap_routing: Option<String>,
    /// `[ldap.query."NAME"]` of kind accept: recipients without an entry are refused.
    #[serde(default)]
    pub ldap_accept: Option<String>,
    /// RFC 8314 implicit TLS (submissions, port 465): TLS from the first
    /// octet, with `[tls]`'s certificate; STARTTLS is then not offered.
    #[serde(default)]
    pub implicit_tls: bool,
}

impl ListenerConfig {
    pub fn unmatched_policy(&self) -> &str {
        match (&self.unmatched_policy, self.kind) {
            (Some(name), _) => name,
            (None, ListenerKind::Public) => "ACCEPTED",
            (None, ListenerKind::Private) => "RELAYED",
        }
    }
}

/// One HAT row: a sender group, its senders, the policy it names.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HatRow {
    pub group: String,
    pub senders: Vec<String>,
    pub policy: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessAction {
    Accept,
    Reject,
}

/// One RAT row. `recipient`: `domain`, `.subdomain`, `user@domain`,
/// `user@` or `ALL`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RatRow {
    pub recipient: String,
    pub action: AccessAction,
    /// Reject reply; default 550 "Recipient address rejected".
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub text: Option<String>,
    /// Accepted without a call-ahead probe (acted on by call-ahead).
    #[serde(default)]
    pub bypass_callahead: bool,
    /// Skips the rate limits (recipients per hour, sender rate).
    #[serde(default)]
    pub bypass_receiving_control: bool,
}

/// One row of the sender verification exception table: `match` is a
/// domain, `.subdomain` or full address.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SenderExceptionRow {
    #[serde(rename = "match")]
    pub pattern: String,
    pub action: AccessAction,
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub text: Option<String>,
}

impl Config {
    /// The listeners this config runs: its `[[listener]]` tables, or the
    /// shorthand's one public listener per `listen` address.
    pub fn listeners(&self) -> Vec<ListenerConfig> {
        if !self.listener.is_empty() {
            return self.listener.clone();
        }
        self.listen
            .iter()
            .enumerate()
            .map(|(i, address)| ListenerConfig {
                name: if i == 0 { "default".into() } else { format!("default{i}") },
                address: *address,
                kind: ListenerKind::Public,
                hat: None,
                rat: Some(SHORTHAND_TABLE.into()),
                unmatched_policy: Some(SHORTHAND_POLICY.into()),
                hostname: None,
                callahead: None,
                ldap_routing: None,
                ldap_accept: None,
                implicit_tls: false,
            })
            .collect()
    }

    /// The RAT rows of `name`, the shorthand's included.
    pub fn rat_rows(&self, name: &str) -> Option<Vec<RatRow>> {
        if self.listener.is_empty() && name == SHORTHAND_TABLE {
            let mut rows: Vec<RatRow> = self
                .relay_domains
                .iter()
                .map(|d| RatRow { recipient: d.to_ascii_lowercase(), action: AccessAction::Accept, code: None, text: None, bypass_callahead: false, bypass_receiving_control: false })
                .collect();
            rows.push(RatRow { recipient: "ALL".into(), action: AccessAction::Reject, code: Some(550), text: Some("Relay access denied".into()), bypass_callahead: false, bypass_receiving_control: false });
            return Some(rows);
        }
        self.rat.get(name).cloned()
    }
}
