//! `[ldap.server.NAME]` and `[ldap.query."NAME"]` as the operator writes
//! them (CONFIG.md; seed "Configuring LDAP Routing Query Settings").
//! `ldap::Query::compile` turns a query and its server into what the
//! shards and the LDAP thread use; listeners name queries with
//! `ldap_routing` and `ldap_accept`, `[auth]` names one with `ldap_query`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::callahead::FailureAction;
use super::flow::check_reply_text;
use crate::limits::{LDAP_CONNECTIONS_MAX, LDAP_TIMEOUT_SECS_MAX};

/// `[ldap]`: servers and the queries that use them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    pub server: BTreeMap<String, LdapServerConfig>,
    pub query: BTreeMap<String, LdapQueryConfig>,
}

/// One directory server (several `urls` are the same directory, tried in order).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LdapServerConfig {
    /// `ldap://host:port` or `ldaps://host:port`, tried in order.
    pub urls: Vec<String>,
    /// Simple bind as this DN; "" = anonymous.
    pub bind_dn: String,
    /// A file holding the bind password (first line), read at start and on
    /// reload, so the password is not in the config file.
    pub bind_password_file: String,
    /// Search base (subtree).
    pub base: String,
    /// StartTLS on `ldap://` URLs.
    pub starttls: bool,
    /// PEM trust anchors for ldaps/StartTLS; "" = the system's.
    pub ca_file: String,
    /// Each connect, bind and search.
    pub timeout_secs: u64,
    /// Bound connections kept open to the server.
    pub connections: usize,
}

impl Default for LdapServerConfig {
    fn default() -> Self {
        LdapServerConfig {
            urls: Vec::new(),
            bind_dn: String::new(),
            bind_password_file: String::new(),
            base: String::new(),
            starttls: false,
            ca_file: String::new(),
            timeout_secs: 5,
            connections: 4,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueryKind {
    /// Rewrite, mail host and call-ahead hosts of a recipient.
    Routing,
    /// Does the recipient exist (ESA's LDAP Accept)?
    Accept,
    /// SMTP AUTH (`[auth] ldap_query`): the filter finds the login's
    /// entry, a bind as its DN checks the password. Never cached.
    Auth,
}

/// One query.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LdapQueryConfig {
    /// `[ldap.server.NAME]`.
    pub server: String,
    pub kind: QueryKind,
    /// RFC 4515 filter with `{a}` address, `{u}` local part, `{d}` domain.
    pub filter: String,
    /// Routing: the attribute holding the address delivery and call-ahead use instead.
    pub rewrite_attribute: String,
    /// Routing: the host(s) delivery uses (`host[:port]`, comma-separated).
    pub mailhost_attribute: String,
    /// Routing: the host(s) call-ahead asks, else the mail host.
    pub callahead_attribute: String,
    /// Answers (an entry or no entry) are cached this long; 0 = not cached.
    pub cache_ttl_secs: u64,
    /// Accept: the refusal of a recipient without an entry.
    pub reject_code: u16,
    pub reject_text: String,
    /// Accept: when the directory cannot be asked.
    pub failure_action: FailureAction,
    pub failure_code: u16,
    pub failure_text: String,
}

impl Default for LdapQueryConfig {
    fn default() -> Self {
        LdapQueryConfig {
            server: String::new(),
            kind: QueryKind::Routing,
            filter: String::new(),
            rewrite_attribute: String::new(),
            mailhost_attribute: String::new(),
            callahead_attribute: String::new(),
            cache_ttl_secs: 300,
            reject_code: 550,
            reject_text: "User unknown".into(),
            failure_action: FailureAction::Reject,
            failure_code: 451,
            failure_text: "Directory unavailable, try again later".into(),
        }
    }
}

impl LdapServerConfig {
    /// Err: "key: why".
    pub fn validate(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("urls: at least one ldap:// or ldaps:// URL".into());
        }
        for url in &self.urls {
            if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
                return Err(format!("urls: {url:?} is not ldap:// or ldaps://"));
            }
        }
        if !(1..=LDAP_TIMEOUT_SECS_MAX).contains(&self.timeout_secs) {
            return Err(format!("timeout_secs: {} is out of range 1–{LDAP_TIMEOUT_SECS_MAX}", self.timeout_secs));
        }
        if !(1..=LDAP_CONNECTIONS_MAX).contains(&self.connections) {
            return Err(format!("connections: {} is out of range 1–{LDAP_CONNECTIONS_MAX}", self.connections));
        }
        if !self.bind_dn.is_empty() && self.bind_password_file.is_empty() {
            return Err("bind_password_file: needed with bind_dn".into());
        }
        Ok(())
    }

    /// The bind password: the first line of `bind_password_file`.
    pub fn read_password(&self) -> Result<String, String> {
        if self.bind_password_file.is_empty() {
            return Ok(String::new());
        }
        let text = std::fs::read_to_string(&self.bind_password_file)
            .map_err(|e| format!("bind_password_file: cannot read {:?}: {e}", self.bind_password_file))?;
        Ok(text.lines().next().unwrap_or("").to_string())
    }

    pub fn ca_file(&self) -> Option<PathBuf> {
        (!self.ca_file.is_empty()).then(|| PathBuf::from(&self.ca_file))
    }
}

impl LdapQueryConfig {
    /// Err: "key: why". The filter template is checked by `ldap::Query::compile`.
    pub fn validate(&self, servers: &BTreeMap<String, LdapServerConfig>) -> Result<(), String> {
        if !servers.contains_key(&self.server) {
            return Err(format!("server: no [ldap.server.{}]", self.server));
        }
        if self.filter.is_empty() {
            return Err("filter: a query needs a filter".into());
        }
        if self.kind == QueryKind::Routing
            && self.rewrite_attribute.is_empty()
            && self.mailhost_attribute.is_empty()
            && self.callahead_attribute.is_empty()
        {
            return Err("mailhost_attribute: a routing query needs at least one of rewrite_attribute, mailhost_attribute, callahead_attribute".into());
        }
        if self.cache_ttl_secs > 86_400 {
            return Err(format!("cache_ttl_secs: {} is out of range 0–86400", self.cache_ttl_secs));
        }
        if !(500..=599).contains(&self.reject_code) {
            return Err(format!("reject_code: {} must be 5xx", self.reject_code));
        }
        if !(400..=599).contains(&self.failure_code) || self.failure_code == 421 {
            return Err(format!("failure_code: {} must be 4xx or 5xx (not 421)", self.failure_code));
        }
        for (key, text) in [("reject_text", &self.reject_text), ("failure_text", &self.failure_text)] {
            check_reply_text(text).map_err(|why| format!("{key}: {why}"))?;
        }
        Ok(())
    }
}
