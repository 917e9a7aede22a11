//! The compiled access tables of one policy snapshot: per listener its HAT
//! (Host Access Table: ordered sender groups → mail flow policies), its RAT
//! (Recipient Access Table) and the policy of unmatched clients; every mail
//! flow policy by name; the sender verification exception table.
//!
//! Compiling is also validating: `Config::validate` compiles and reports the
//! first error with the table and row it is in, so check-config and a reload
//! refuse exactly what would not run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::access::{ListenerKind, SHORTHAND_POLICY};
use crate::config::flow::{self, Behavior, FlowParams};
use crate::config::Config;
use crate::policy::flow::MailFlowPolicy;
use crate::policy::hat::{HatGroupSpec, HatTable};
use crate::policy::rat::Rat;
use crate::policy::sender::SenderExceptions;
use crate::callahead::Profile;
use crate::config::ldap::QueryKind;
use crate::ldap::Query;
use crate::smtp::SessionConfig;

/// One sender group of a listener's HAT.
#[derive(Debug)]
pub struct SenderGroup {
    pub name: String,
    pub policy: Arc<MailFlowPolicy>,
}

/// Everything a connection on one listener is judged by.
#[derive(Debug)]
pub struct ListenerPolicy {
    pub name: String,
    pub kind: ListenerKind,
    pub address: SocketAddr,
    /// `$Hostname` in this listener's banners, and its name in EHLO and 421s.
    pub hostname: String,
    /// What every session on this listener knows (its host name, the
    /// postmaster domain): built once per snapshot.
    pub session_config: Arc<SessionConfig>,
    pub hat: HatTable,
    /// In HAT order; `HatTable::first_match` returns an index into this.
    pub groups: Vec<SenderGroup>,
    /// The policy of a client no group matches.
    pub unmatched: Arc<MailFlowPolicy>,
    /// Public listeners only.
    pub rat: Option<Rat>,
    /// The call-ahead profile validating this listener's recipients (public only).
    pub callahead: Option<Arc<Profile>>,
    /// The LDAP routing query of this listener's recipients.
    pub ldap_routing: Option<Arc<Query>>,
    /// The LDAP accept query (after the RAT, before call-ahead).
    pub ldap_accept: Option<Arc<Query>>,
    /// RFC 8314 implicit TLS (port 465): the handshake before the greeting.
    pub implicit_tls: bool,
}

/// The access part of a policy snapshot.
#[derive(Debug)]
pub struct Access {
    pub listeners: Vec<Arc<ListenerPolicy>>,
    pub policies: BTreeMap<String, Arc<MailFlowPolicy>>,
    pub sender_exceptions: SenderExceptions,
    /// Every `[ldap.query]` by name (delivery finds a message's routing query here).
    pub ldap_queries: BTreeMap<String, Arc<Query>>,
}

/// A compile error: the key to point at (for the line) and why.
pub type Invalid = (String, String);

impl Access {
    pub fn compile(config: &Config) -> Result<Access, Invalid> {
        let policies = compile_policies(config)?;
        let sender_exceptions = SenderExceptions::compile(&config.sender_verification_exception)
            .map_err(|why| ("sender_verification_exception".to_string(), why))?;
        let ldap_queries = compile_ldap_queries(config)?;
        let mut listeners = Vec::new();
        for l in config.listeners() {
            let bad = |key: &str, why: String| (key.to_string(), format!("{why} (listener {})", l.name));
            let find = |name: &str| policies.get(name).cloned().ok_or_else(|| bad("policy", format!("no policy named {name:?} (define [policy.{name}])")));
            let unmatched = find(l.unmatched_policy())?;
            if unmatched.behavior() == Behavior::Continue {
                return Err(bad("unmatched_policy", "the unmatched policy cannot be CONTINUE".into()));
            }
            let rows = match &l.hat {
                Some(name) => config.hat.get(name).ok_or_else(|| bad("hat", format!("no [[hat.{name}]] table")))?.clone(),
                None => Vec::new(),
            };
            let mut groups = Vec::with_capacity(rows.len());
            for row in &rows {
                groups.push(SenderGroup { name: row.group.clone(), policy: find(&row.policy)? });
            }
            let specs: Vec<HatGroupSpec> = rows
                .iter()
                .zip(&groups)
                .map(|(row, g)| HatGroupSpec { name: &row.group, senders: &row.senders, skip: g.policy.behavior() == Behavior::Continue })
                .collect();
            let hat = HatTable::compile(&specs).map_err(|e| ("senders".to_string(), format!("hat.{}: {e}", l.hat.as_deref().unwrap_or(""))))?;
            let rat = match (l.kind, &l.rat) {
                (ListenerKind::Private, Some(_)) => return Err(bad("rat", "a private listener has no RAT".into())),
                (ListenerKind::Private, None) => None,
                (ListenerKind::Public, None) => return Err(bad("rat", "a public listener needs a RAT (rat = \"NAME\")".into())),
                (ListenerKind::Public, Some(name)) => {
                    let rows = config.rat_rows(name).ok_or_else(|| bad("rat", format!("no [[rat.{name}]] table")))?;
                    Some(Rat::compile(&rows).map_err(|why| ("recipient".to_string(), format!("rat.{name}: {why}")))?)
                }
            };
            let callahead = match (&l.callahead, l.kind) {
                (None, _) => None,
                (Some(_), ListenerKind::Private) => return Err(bad("callahead", "call-ahead is for public listeners only".into())),
                (Some(name), ListenerKind::Public) => {
                    let profile = config.callahead.get(name).ok_or_else(|| bad("callahead", format!("no [callahead.{name}] profile")))?;
                    Some(Arc::new(Profile::compile(name, profile)))
                }
            };
            let ldap_query = |key: &str, name: &Option<String>, kind: QueryKind| match name {
                None => Ok(None),
                Some(name) => match ldap_queries.get(name) {
                    Some(query) if query.kind == kind => Ok(Some(query.clone())),
                    Some(_) => Err(bad(key, format!("[ldap.query.\"{name}\"] is not of kind {kind:?}"))),
                    None => Err(bad(key, format!("no [ldap.query.\"{name}\"]"))),
                },
            };
            let ldap_routing = ldap_query("ldap_routing", &l.ldap_routing, QueryKind::Routing)?;
            let ldap_accept = ldap_query("ldap_accept", &l.ldap_accept, QueryKind::Accept)?;
            let hostname = l.hostname.clone().unwrap_or_else(|| config.hostname.clone());
            let session_config = Arc::new(SessionConfig { hostname: hostname.clone(), postmaster_domain: postmaster_domain(config) });
            listeners.push(Arc::new(ListenerPolicy {
                name: l.name.clone(),
                kind: l.kind,
                address: l.address,
                hostname,
                session_config,
                hat,
                groups,
                unmatched,
                rat,
                callahead,
                ldap_routing,
                ldap_accept,
                implicit_tls: l.implicit_tls,
            }));
        }
        Ok(Access { listeners, policies, sender_exceptions, ldap_queries })
    }

    /// The listener bound to `address` (listeners are fixed at start).
    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerPolicy>> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// Every query compiled (the unused ones too: check-config finds their
/// mistakes before a listener names them).
fn compile_ldap_queries(config: &Config) -> Result<BTreeMap<String, Arc<Query>>, Invalid> {
    let mut queries = BTreeMap::new();
    for (name, server) in &config.ldap.server {
        server.validate().map_err(|why| (why.split(':').next().unwrap_or("ldap").to_string(), format!("ldap.server.{name}: {why}")))?;
    }
    for name in config.ldap.query.keys() {
        let query = Query::compile(name, &config.ldap).map_err(|why| (why.split(':').next().unwrap_or("ldap").to_string(), format!("ldap.query.\"{name}\": {why}")))?;
        queries.insert(name.clone(), Arc::new(query));
    }
    Ok(queries)
}

/// The domain a bare `postmaster` recipient gets (RFC 5321 §4.5.1): the
/// first relay domain of the shorthand, else our host name (the RAT must
/// accept it like any other recipient).
fn postmaster_domain(config: &Config) -> String {
    match config.listener.is_empty() {
        true => config.relay_domains[0].to_ascii_lowercase(),
        false => config.hostname.to_ascii_lowercase(),
    }
}

/// The predefined policies, every `[policy.NAME]`, and the shorthand's.
fn compile_policies(config: &Config) -> Result<BTreeMap<String, Arc<MailFlowPolicy>>, Invalid> {
    let mut names: Vec<&str> = flow::PREDEFINED.iter().map(|(n, _)| *n).collect();
    names.extend(config.policy.keys().map(String::as_str).filter(|n| !flow::is_predefined(n)));
    let mut policies = BTreeMap::new();
    for name in names {
        if name == SHORTHAND_POLICY {
            return Err(("policy".into(), format!("{name:?} is reserved for the listen/relay_domains shorthand")));
        }
        let params = flow::resolve(name, &config.default_policy, config.policy.get(name))
            .map_err(|why| (why.split(':').next().unwrap_or("policy").to_string(), format!("policy {name}: {why}")))?;
        check_tls_tiers(name, &params, config)?;
        let compiled = MailFlowPolicy::compile(name, params).map_err(|why| ("sender_rate_limit_exceptions".to_string(), format!("policy {name}: {why}")))?;
        policies.insert(name.to_string(), Arc::new(compiled));
    }
    let shorthand = MailFlowPolicy::compile(SHORTHAND_POLICY, shorthand_params(config)).expect("the shorthand policy is valid");
    policies.insert(SHORTHAND_POLICY.to_string(), Arc::new(shorthand));
    Ok(policies)
}

/// A policy may offer STARTTLS only with a certificate, ask for client
/// certificates only with a CA to check them against, and offer AUTH only
/// where it can be used.
fn check_tls_tiers(name: &str, params: &FlowParams, config: &Config) -> Result<(), Invalid> {
    if params.tls.offered() && !config.tls.enabled() {
        return Err(("tls".into(), format!("policy {name}: tls = {:?} needs [tls] certificate and private_key", params.tls)));
    }
    if params.tls.verify_client() && config.tls.client_ca.is_empty() {
        return Err(("tls".into(), format!("policy {name}: tls = {:?} needs [tls] client_ca", params.tls)));
    }
    if params.smtp_auth != crate::config::flow::AuthTier::Off && !config.auth.enabled() {
        return Err(("smtp_auth".into(), format!("policy {name}: smtp_auth = {:?} needs an [auth] backend", params.smtp_auth)));
    }
    if params.smtp_auth != crate::config::flow::AuthTier::Off && params.require_tls_for_auth && !params.tls.offered() {
        return Err(("smtp_auth".into(), format!("policy {name}: AUTH only over TLS (require_tls_for_auth) needs tls other than \"off\"")));
    }
    Ok(())
}

/// The shorthand's permissive policy: the `[session]` limits and the
/// skeleton's banner, no per-IP caps, no rate limits, no DHAP, no sender DNS.
fn shorthand_params(config: &Config) -> FlowParams {
    let s = &config.session;
    FlowParams {
        max_messages_per_connection: s.messages_per_connection_max,
        max_recipients_per_message: s.recipients_max as u32,
        max_message_size: s.message_bytes_max as u64,
        max_concurrent_connections_per_ip: 0,
        banner_text: "$Hostname ESMTP Portcullis".into(),
        dhap_max_invalid_per_hour: 0,
        use_sender_verification_exceptions: false,
        // With a certificate, the shorthand offers STARTTLS (never requires it).
        tls: if config.tls.enabled() { crate::config::flow::TlsTier::Preferred } else { crate::config::flow::TlsTier::Off },
        ..FlowParams::default()
    }
}
