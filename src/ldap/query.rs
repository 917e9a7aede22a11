//! A compiled LDAP query: the filter template, its server as the LDAP
//! thread needs it (password read from its file), the attributes it asks
//! for, its cache key rule, and what an answer means — for a routing query
//! the rewritten address and the host lists (`Route`), for an accept query
//! the refusal and the failure reply.
//!
//! Built once per policy snapshot (`config::Config::validate` compiles it
//! too, so a bad filter or an unreadable password file is refused by
//! check-config and by a reload).

use std::sync::Arc;
use std::time::Duration;

use super::client::{Entry, ServerSpec};
use super::filter::Template;
use super::hosts::{parse_hosts, LdapHost};
use crate::config::callahead::FailureAction;
use crate::config::ldap::{LdapConfig, LdapQueryConfig, QueryKind};
use crate::message::domain_of;
use crate::policy::rat::enhanced;
use crate::smtp::Reply;

#[derive(Debug)]
pub struct Query {
    pub name: String,
    /// A hash of what decides an answer (filter, attributes, server, base):
    /// part of the cache key, so a reload that changes the query never
    /// serves answers of the old one.
    pub fingerprint: u64,
    pub kind: QueryKind,
    pub server: Arc<ServerSpec>,
    pub template: Template,
    /// Lower-cased attribute names (LDAP attribute names are case-insensitive).
    pub rewrite_attribute: Option<String>,
    pub mailhost_attribute: Option<String>,
    pub callahead_attribute: Option<String>,
    pub cache_ttl: Duration,
    /// Accept: no entry.
    pub reject: Reply,
    /// Accept: the directory cannot be asked; None = accept the recipient.
    pub failure: Option<Reply>,
}

/// What a routing query says about a recipient (an entry was found).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// The address to deliver to and probe instead of the recipient's.
    pub rewrite: Option<String>,
    /// Delivery's hosts (mailHost); empty = route the (rewritten) domain.
    pub mailhosts: Vec<LdapHost>,
    /// Call-ahead's hosts (callAhead); empty = the mail hosts.
    pub callahead: Vec<LdapHost>,
    /// Values that could not be used: the rewrite, the mail hosts, or an
    /// entry the client had to cut to its bounds. An entry with any is not
    /// used (delivery defers, call-ahead fails): routing on half an entry
    /// could send mail to the domain's MX, which may be us.
    pub ignored: Vec<String>,
    /// The call-ahead hosts that could not be used: only call-ahead fails
    /// (delivery never reads them).
    pub ignored_callahead: Vec<String>,
}

impl Route {
    /// For delivery: Err(why) when the entry holds a rewrite or mail host
    /// value that cannot be used, or was cut.
    pub fn usable(self) -> Result<Route, String> {
        match self.ignored.first() {
            None => Ok(self),
            Some(why) => Err(format!("unusable directory entry: {why}")),
        }
    }

    /// For call-ahead: `usable`, and its own hosts usable too.
    pub fn usable_for_callahead(self) -> Result<Route, String> {
        let route = self.usable()?;
        match route.ignored_callahead.first() {
            None => Ok(route),
            Some(why) => Err(format!("unusable directory entry: {why}")),
        }
    }

    /// The hosts call-ahead asks: the call-ahead attribute's, else the mail host's.
    pub fn callahead_hosts(&self) -> &[LdapHost] {
        match self.callahead.is_empty() {
            true => &self.mailhosts,
            false => &self.callahead,
        }
    }
}

impl Query {
    pub fn compile(name: &str, config: &LdapConfig) -> Result<Query, String> {
        let q: &LdapQueryConfig = config.query.get(name).ok_or_else(|| format!("no [ldap.query.\"{name}\"]"))?;
        q.validate(&config.server)?;
        let s = &config.server[&q.server];
        s.validate().map_err(|why| format!("ldap.server.{}: {why}", q.server))?;
        let template = Template::parse(&q.filter).map_err(|why| format!("filter: {why}"))?;
        let server = ServerSpec {
            name: q.server.clone(),
            urls: s.urls.clone(),
            bind_dn: s.bind_dn.clone(),
            bind_password: s.read_password().map_err(|why| format!("ldap.server.{}: {why}", q.server))?,
            base: s.base.clone(),
            starttls: s.starttls,
            ca_file: s.ca_file(),
            timeout: Duration::from_secs(s.timeout_secs),
            connections: s.connections,
        };
        let attribute = |a: &str| (!a.is_empty()).then(|| a.to_ascii_lowercase());
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&q.filter, &q.rewrite_attribute, &q.mailhost_attribute, &q.callahead_attribute, &s.urls, &s.base, &s.bind_dn).hash(&mut h);
            h.finish()
        };
        Ok(Query {
            name: name.to_string(),
            fingerprint,
            kind: q.kind,
            server: Arc::new(server),
            template,
            rewrite_attribute: attribute(&q.rewrite_attribute),
            mailhost_attribute: attribute(&q.mailhost_attribute),
            callahead_attribute: attribute(&q.callahead_attribute),
            cache_ttl: Duration::from_secs(q.cache_ttl_secs),
            reject: Reply::new(q.reject_code, &enhanced(q.reject_code, "1.1"), q.reject_text.clone()),
            failure: match q.failure_action {
                FailureAction::Accept => None,
                FailureAction::Reject => Some(Reply::new(q.failure_code, &enhanced(q.failure_code, "4.3"), q.failure_text.clone())),
            },
        })
    }

    /// The attributes to ask for: the routing ones, or only the DN's
    /// existence ("1.1", RFC 4511 §4.5.1.8) for an accept query.
    pub fn attributes(&self) -> Vec<String> {
        let asked: Vec<String> = [&self.rewrite_attribute, &self.mailhost_attribute, &self.callahead_attribute]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        match asked.is_empty() {
            true => vec!["1.1".to_string()],
            false => asked,
        }
    }

    /// The cache (and owner shard) key of `address`: its domain when the
    /// filter uses only `{d}` (one answer serves the whole domain), else
    /// the address, lower-cased.
    pub fn key(&self, address: &str) -> String {
        match self.template.uses_only_domain() {
            true => domain_of(address),
            false => address.to_ascii_lowercase(),
        }
    }

    /// A routing entry read: the rewrite (a usable address only) and the
    /// host lists, values that cannot be used set aside for the log.
    pub fn route(&self, entry: &Entry) -> Route {
        let mut route = Route::default();
        let values = |attribute: &Option<String>| attribute.as_ref().and_then(|a| entry.get(a)).cloned().unwrap_or_default();
        if let Some(rewrite) = values(&self.rewrite_attribute).into_iter().next() {
            match crate::smtp::address::parse_mailbox(&rewrite, false) {
                Ok(_) if rewrite.contains('@') => route.rewrite = Some(rewrite),
                _ => route.ignored.push(format!("rewrite {rewrite:?} is not an address")),
            }
        }
        if let Some(cut) = entry.get(super::client::CUT_MARK) {
            route.ignored.push(format!("the directory's entry exceeds the client's bounds ({})", cut.join(", ")));
        }
        let hosts = |attribute: &Option<String>, ignored: &mut Vec<String>| match parse_hosts(&values(attribute)) {
            Ok(hosts) => hosts,
            Err(why) => {
                ignored.push(why);
                Vec::new()
            }
        };
        route.mailhosts = hosts(&self.mailhost_attribute, &mut route.ignored);
        route.callahead = hosts(&self.callahead_attribute, &mut route.ignored_callahead);
        route
    }
}

#[cfg(test)]
mod tests;
