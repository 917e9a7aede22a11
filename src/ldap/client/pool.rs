//! One LDAP server's pool on the LDAP thread: up to `connections` bound
//! ldap3 connections, searches spread over them round robin. A connection
//! is made on first use (the server's `urls` tried in order, then the
//! bind), kept while it works, and dropped when it fails (I/O, timeout)
//! to be made again on next use: that is how a restarted server comes
//! back. An LDAP result code is an answer, not a broken connection.
//!
//! Sits between `client::serve` (one local task per search) and ldap3;
//! everything here runs on the one LDAP thread, so no locks but tokio's
//! own async mutex per slot (searches that find a slot empty wait for the
//! one connecting instead of each opening a connection).

mod bind;

use super::{tls, Answer, Entry, ServerSpec};
use crate::limits::{
    LDAP_ATTRIBUTE_VALUES_MAX, LDAP_AUTH_BINDS_PER_SERVER_MAX, LDAP_CONNECTIONS_MAX, LDAP_ENTRY_ATTRIBUTES_MAX,
    LDAP_IN_FLIGHT_PER_CONNECTION, LDAP_VALUE_BYTES_MAX,
};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use rustls::ClientConfig;
use std::cell::Cell;
use std::sync::Arc;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::timeout;

/// RFC 4511 §4.1.9 result codes this client tells apart.
const RC_SUCCESS: u32 = 0;
/// The server stopped at the size limit we asked for: it had an entry.
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
/// The base does not exist, or (slapd) the ACLs hide it: nothing matches.
const RC_NO_SUCH_OBJECT: u32 = 32;

/// Entries asked of the server (RFC 4511 §4.5.1.5 sizeLimit): only the
/// first is used, so the server need not send more.
const ENTRIES_WANTED: i32 = 1;

/// A connection of a slot, numbered so that a failed search drops only
/// the connection it failed on, not a newer one made meanwhile.
struct Pooled {
    generation: u64,
    ldap: Ldap,
}

pub(super) struct ServerPool {
    spec: Arc<ServerSpec>,
    /// Built once per spec, only when a URL needs TLS; an unreadable
    /// `ca_file` makes every search fail with its reason.
    tls: Result<Option<Arc<ClientConfig>>, String>,
    slots: Vec<Mutex<Option<Pooled>>>,
    next_slot: Cell<usize>,
    generations: Cell<u64>,
    /// Searches in flight on this server: `LDAP_IN_FLIGHT_PER_CONNECTION`
    /// per connection, more wait their turn (at most the timeout).
    turns: Semaphore,
    /// User binds (SMTP AUTH) at once, each on a connection of its own.
    binds: Semaphore,
}

/// Why a search failed, and whether its connection is to be dropped.
struct Failure {
    reason: String,
    connection_broken: bool,
}

impl ServerPool {
    pub(super) fn new(spec: Arc<ServerSpec>) -> ServerPool {
        let connections = spec.connections.clamp(1, LDAP_CONNECTIONS_MAX);
        let tls = match needs_tls(&spec) {
            true => tls::client_config(spec.ca_file.as_deref()).map(Some),
            false => Ok(None),
        };
        ServerPool {
            tls,
            slots: (0..connections).map(|_| Mutex::new(None)).collect(),
            next_slot: Cell::new(0),
            generations: Cell::new(0),
            turns: Semaphore::new(connections * LDAP_IN_FLIGHT_PER_CONNECTION),
            binds: Semaphore::new(LDAP_AUTH_BINDS_PER_SERVER_MAX),
            spec,
        }
    }

    pub(super) fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// One search on the next connection in turn.
    pub(super) async fn search(&self, filter: &str, attributes: &[String]) -> Answer {
        let entries = self.search_entries(filter, attributes, ENTRIES_WANTED).await?;
        Ok(entries.into_iter().next().map(bounded_entry))
    }

    /// Up to `wanted` entries of one search on the next connection in turn.
    async fn search_entries(&self, filter: &str, attributes: &[String], wanted: i32) -> Result<Vec<SearchEntry>, String> {
        let name = &self.spec.name;
        let _turn = match timeout(self.spec.timeout, self.turns.acquire()).await {
            Ok(Ok(turn)) => turn,
            _ => return Err(format!("LDAP server {name}: too many searches in flight")),
        };
        let slot = self.next_slot.get();
        self.next_slot.set((slot + 1) % self.slots.len());
        let (generation, mut ldap) = self.connection(slot).await?;
        match search_first(&mut ldap, &self.spec, filter, attributes, wanted).await {
            Ok(entries) => Ok(entries),
            Err(failure) => {
                if failure.connection_broken {
                    self.discard(slot, generation);
                }
                Err(format!("LDAP server {name}: {}", failure.reason))
            }
        }
    }

    /// The slot's connection, made (and bound) first if it has none or
    /// the one it has was closed (the server went away).
    async fn connection(&self, slot: usize) -> Result<(u64, Ldap), String> {
        let name = &self.spec.name;
        let Ok(mut held) = timeout(self.spec.timeout, self.slots[slot].lock()).await else {
            return Err(format!(
                "LDAP server {name}: timed out waiting for a connection"
            ));
        };
        if let Some(pooled) = held.as_mut() {
            if !pooled.ldap.is_closed() {
                return Ok((pooled.generation, pooled.ldap.clone()));
            }
        }
        *held = None;
        let ldap = self.open().await?;
        let generation = self.generations.get() + 1;
        self.generations.set(generation);
        *held = Some(Pooled {
            generation,
            ldap: ldap.clone(),
        });
        Ok((generation, ldap))
    }

    /// Drops the slot's connection if it is still the one that failed. A
    /// slot being (re)connected right now is left to that.
    fn discard(&self, slot: usize, generation: u64) {
        if let Ok(mut held) = self.slots[slot].try_lock() {
            if held
                .as_ref()
                .is_some_and(|pooled| pooled.generation == generation)
            {
                *held = None;
            }
        }
    }

    /// A bound connection to the first of `urls` that takes one; every
    /// URL's reason when none does.
    async fn open(&self) -> Result<Ldap, String> {
        let tls = self
            .tls
            .clone()
            .map_err(|why| format!("LDAP server {}: {why}", self.spec.name))?;
        let mut reasons = Vec::new();
        for url in &self.spec.urls {
            match connect_and_bind(&self.spec, tls.clone(), url).await {
                Ok(ldap) => return Ok(ldap),
                Err(why) => reasons.push(format!("{url}: {why}")),
            }
        }
        if reasons.is_empty() {
            reasons.push("no urls configured".to_string());
        }
        Err(format!(
            "LDAP server {}: {}",
            self.spec.name,
            reasons.join("; ")
        ))
    }
}

fn is_ldaps(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("ldaps://"))
}

fn needs_tls(spec: &ServerSpec) -> bool {
    spec.starttls || spec.urls.iter().any(|url| is_ldaps(url))
}

/// Connects to `url` (TLS as the URL and `starttls` say; the whole of it
/// within the timeout) and binds as `bind_dn` unless anonymous.
async fn connect_and_bind(
    spec: &ServerSpec,
    tls: Option<Arc<ClientConfig>>,
    url: &str,
) -> Result<Ldap, String> {
    if !spec.bind_dn.is_empty() && spec.bind_password.is_empty() {
        // RFC 4513 §5.1.2, §6.3.1: a DN with an empty password is an
        // "unauthenticated bind" that servers may take as anonymous;
        // refuse it rather than silently search as nobody.
        return Err("bind_dn set but the password is empty".to_string());
    }
    let mut ldap = connect(spec, tls, url).await?;
    if spec.bind_dn.is_empty() {
        return Ok(ldap); // RFC 4511 §4.2: no bind means anonymous
    }
    let result = ldap
        .with_timeout(spec.timeout)
        .simple_bind(&spec.bind_dn, &spec.bind_password)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    if result.rc != RC_SUCCESS {
        return Err(format!("bind as {} refused: {result}", spec.bind_dn));
    }
    Ok(ldap)
}

/// Connects to `url`, TLS as the URL and `starttls` say, not bound yet.
async fn connect(spec: &ServerSpec, tls: Option<Arc<ClientConfig>>, url: &str) -> Result<Ldap, String> {
    // The URLs share one timeout for connecting: a first URL that never
    // answers must leave the second time to connect, bind and search
    // while the shard still waits (its wait is one timeout plus slack).
    let urls = u32::try_from(spec.urls.len().max(1)).unwrap_or(u32::MAX);
    let connect_timeout = (spec.timeout / urls).max(std::time::Duration::from_millis(500));
    let mut settings = LdapConnSettings::new().set_conn_timeout(connect_timeout);
    if let Some(config) = tls {
        settings = settings
            .set_config(config)
            .set_starttls(spec.starttls && !is_ldaps(url));
    }
    let (connection, ldap) = LdapConnAsync::with_settings(settings, url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    ldap3::drive!(connection);
    Ok(ldap)
}

/// The search itself: up to `wanted` entries, none for no match. Other
/// result codes (noSuchObject included: the base is missing) are failures
/// of the query, not of the connection.
async fn search_first(
    ldap: &mut Ldap,
    spec: &ServerSpec,
    filter: &str,
    attributes: &[String],
    wanted: i32,
) -> Result<Vec<SearchEntry>, Failure> {
    // RFC 4511 §4.5.1.5 timeLimit in whole seconds, at least one: the
    // server gives up too, not only us.
    let time_limit = spec.timeout.as_secs_f64().ceil().max(1.0) as i32;
    let options = SearchOptions::new()
        .sizelimit(wanted)
        .timelimit(time_limit);
    let searched = ldap
        .with_search_options(options)
        .with_timeout(spec.timeout)
        .search(&spec.base, Scope::Subtree, filter, attributes)
        .await;
    let ldap3::SearchResult(entries, result) = match searched {
        Ok(searched) => searched,
        Err(LdapError::FilterParsing) => {
            return Err(Failure::query(format!("filter does not parse: {filter}")))
        }
        Err(e) => return Err(Failure::connection(format!("search: {e}"))),
    };
    match result.rc {
        RC_SUCCESS | RC_SIZE_LIMIT_EXCEEDED => entries.into_iter().take(wanted.max(1) as usize).map(parse_entry).collect(),
        // The search base itself is missing or hidden (a typo in `base`, an
        // empty replica, an ACL): a directory that cannot answer, never "no
        // entry", which would refuse every recipient (accept) or route by
        // the domain (routing).
        RC_NO_SUCH_OBJECT => Err(Failure::query(format!("search base {:?} does not exist or cannot be read (noSuchObject): {result}", spec.base))),
        _ => Err(Failure::query(format!("search: {result}"))),
    }
}

/// ldap3 panics on an entry it cannot decode; that is the server talking
/// garbage, so it counts as a broken connection instead.
fn parse_entry(raw: ldap3::ResultEntry) -> Result<SearchEntry, Failure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(raw))) {
        Ok(entry) => Ok(entry),
        Err(_) => Err(Failure::connection("undecodable entry".to_string())),
    }
}

/// The entry's text attributes within the bounds of `limits` (the rest is
/// cut off, see there), names lower-cased. Values that are not UTF-8
/// (ldap3's `bin_attrs`) are left out: routing reads host names and
/// addresses, which are text.
pub(super) fn bounded_entry(entry: SearchEntry) -> Entry {
    let mut bounded = Entry::new();
    let mut cut = Vec::new();
    let mut attributes: Vec<_> = entry.attrs.into_iter().collect();
    attributes.sort_by(|a, b| a.0.cmp(&b.0)); // which are kept must not depend on hashing
    for (name, values) in attributes {
        let name = name.to_ascii_lowercase();
        if !bounded.contains_key(&name) && bounded.len() >= LDAP_ENTRY_ATTRIBUTES_MAX {
            cut.push(format!("attribute {name} dropped"));
            continue;
        }
        let kept = bounded.entry(name.clone()).or_default();
        for value in values {
            if kept.len() >= LDAP_ATTRIBUTE_VALUES_MAX {
                cut.push(format!("{name}: values past {LDAP_ATTRIBUTE_VALUES_MAX} dropped"));
                break;
            }
            if value.len() > LDAP_VALUE_BYTES_MAX {
                cut.push(format!("{name}: a value cut to {LDAP_VALUE_BYTES_MAX} bytes"));
            }
            kept.push(truncated(value, LDAP_VALUE_BYTES_MAX));
        }
    }
    // Said in the entry itself, so whoever reads a value knows it may be
    // partial (routing refuses such an entry rather than use half a list).
    if !cut.is_empty() {
        bounded.insert(super::CUT_MARK.to_string(), cut);
    }
    bounded
}

/// `value` cut to at most `max_bytes`, at a character boundary.
fn truncated(mut value: String, max_bytes: usize) -> String {
    if value.len() > max_bytes {
        let mut end = max_bytes;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

impl Failure {
    fn connection(reason: String) -> Failure {
        Failure {
            reason,
            connection_broken: true,
        }
    }

    fn query(reason: String) -> Failure {
        Failure {
            reason,
            connection_broken: false,
        }
    }
}

#[cfg(test)]
pub(super) fn truncated_for_test(value: &str, max_bytes: usize) -> String {
    truncated(value.to_string(), max_bytes)
}
