//! SMTP AUTH against the directory, on the LDAP thread: find the user's
//! entry over the pool's service connections (a search like any other,
//! asking for no attributes), then a simple bind (RFC 4513 §5.1.3) as the
//! entry's DN with the user's password on a connection of its own, closed
//! after it. A pooled connection is never rebound as a user: it would
//! search with that user's rights from then on.
//!
//! A login without an entry still costs a connection and a bind (as a DN
//! no entry has, the answer ignored), so the time an answer takes does
//! not tell which users exist, as the password file's dummy hash does.
//!
//! Only the bind's result decides: success, or a refusal of the
//! credentials (invalidCredentials and its kin), is the answer; anything
//! else — no server reachable, a timeout, busy, unavailable — is `Err`,
//! a temporary failure for the caller.

use super::{connect, ServerPool, RC_SUCCESS};
use crate::ldap::client::{BindAnswer, BindVerdict, ServerSpec};
use rustls::ClientConfig;
use std::sync::Arc;
use tokio::time::timeout;

/// RFC 4511 §4.1.9 result codes that refuse the credentials themselves.
const RC_INAPPROPRIATE_AUTHENTICATION: u32 = 48;
const RC_INVALID_CREDENTIALS: u32 = 49;
const RC_INSUFFICIENT_ACCESS_RIGHTS: u32 = 50;

/// Entries asked for: two tell "one" from "more than one".
const ENTRIES_TO_TELL_AMBIGUOUS: i32 = 2;

/// RFC 4511 §4.5.1.8: "1.1" asks for no attributes, only the DN.
const NO_ATTRIBUTES: &str = "1.1";

/// The RDN bound as when the login has no entry (under the search base).
const NO_SUCH_ENTRY: &str = "cn=portcullis-auth-no-such-entry-7f3a9c";

impl ServerPool {
    /// Find the entry `filter` matches, then bind as it with `password`.
    pub(in crate::ldap::client) async fn bind_entry(
        &self,
        filter: &str,
        password: &str,
    ) -> BindAnswer {
        if password.is_empty() {
            return Ok(BindVerdict::EmptyPassword); // RFC 4513 §5.1.2
        }
        let attributes = [NO_ATTRIBUTES.to_string()];
        let entries = self
            .search_entries(filter, &attributes, ENTRIES_TO_TELL_AMBIGUOUS)
            .await?;
        let dn = match entries.as_slice() {
            [] => None,
            [entry] => Some(entry.dn.clone()),
            more => {
                return Ok(BindVerdict::Ambiguous {
                    entries: more.len(),
                })
            }
        };
        let name = &self.spec.name;
        let Ok(_turn) = timeout(self.spec.timeout, self.binds.acquire()).await else {
            return Err(format!("LDAP server {name}: too many user binds in flight"));
        };
        let tls = self
            .tls
            .clone()
            .map_err(|why| format!("LDAP server {name}: {why}"))?;
        let Some(dn) = dn else {
            // The same round trips as for a user who exists; the answer says nothing.
            let nobody = match self.spec.base.is_empty() {
                true => NO_SUCH_ENTRY.to_string(),
                false => format!("{NO_SUCH_ENTRY},{}", self.spec.base),
            };
            let _ = bind_as(&self.spec, tls, &nobody, password).await;
            return Ok(BindVerdict::NoEntry);
        };
        match bind_as(&self.spec, tls, &dn, password).await {
            Ok(true) => Ok(BindVerdict::Bound { dn }),
            Ok(false) => Ok(BindVerdict::Refused { dn }),
            Err(why) => Err(format!("LDAP server {name}: bind as {dn}: {why}")),
        }
    }
}

/// A bind as `dn` on a new connection to the first of `urls` that takes
/// one: Ok(true) accepted, Ok(false) the credentials refused.
async fn bind_as(
    spec: &ServerSpec,
    tls: Option<Arc<ClientConfig>>,
    dn: &str,
    password: &str,
) -> Result<bool, String> {
    let mut reasons = Vec::new();
    for url in &spec.urls {
        let mut ldap = match connect(spec, tls.clone(), url).await {
            Ok(ldap) => ldap,
            Err(why) => {
                reasons.push(format!("{url}: {why}"));
                continue;
            }
        };
        let bound = ldap
            .with_timeout(spec.timeout)
            .simple_bind(dn, password)
            .await;
        // Closed whatever the answer: the connection served this one bind.
        let _ = timeout(spec.timeout, ldap.unbind()).await;
        let result = bound.map_err(|e| format!("{url}: bind: {e}"))?;
        return match result.rc {
            RC_SUCCESS => Ok(true),
            RC_INVALID_CREDENTIALS
            | RC_INAPPROPRIATE_AUTHENTICATION
            | RC_INSUFFICIENT_ACCESS_RIGHTS => Ok(false),
            _ => Err(format!("{url}: bind: {result}")),
        };
    }
    if reasons.is_empty() {
        reasons.push("no urls configured".to_string());
    }
    Err(reasons.join("; "))
}
