//! The LDAP bind backend (`[auth] backend = "ldap"`): the `kind = "auth"`
//! query's filter (`{a}` the login as given, `{u}`/`{d}` its parts when it
//! holds an `@`) finds the user's entry with the server's service bind;
//! then a simple bind (RFC 4513 §5.1.3) as that entry's DN with the given
//! password, on a connection of its own, decides. Both run on the LDAP
//! thread (`ldap::client::Directory::bind_entry`); nothing is cached, so
//! a changed password or a removed entry counts at once.
//!
//! No entry or a refused bind is a failure; a directory that cannot answer
//! (down, timeout, queue full) is a temporary failure, as is a login that
//! matches several entries (a directory problem for the operator, never a
//! guess at which one is meant).

use std::time::Duration;

use super::{Credentials, Verdict};
use crate::ldap::client::{BindVerdict, Directory};
use crate::ldap::Query;
use crate::limits::LDAP_ANSWER_SLACK_MS;

/// Find the login's entry and bind as it with the password.
pub async fn verify(directory: &Directory, query: &Query, credentials: &Credentials) -> Verdict {
    let password = credentials.password.expose();
    if password.is_empty() {
        // RFC 4513 §5.1.2: a DN with an empty password is an
        // "unauthenticated bind", which servers answer with success.
        return Verdict::Refused;
    }
    let filter = query.template.fill(&credentials.user);
    // The LDAP thread's own bounds: a turn, the search, then connect and bind.
    let wait = query.server.timeout * 3 + Duration::from_millis(LDAP_ANSWER_SLACK_MS);
    let bound = directory.bind_entry(&query.server, filter, password.to_string());
    match glommio::timer::timeout(wait, async { Ok(bound.await) }).await {
        Ok(Ok(BindVerdict::Bound { .. })) => Verdict::Accepted,
        Ok(Ok(BindVerdict::NoEntry | BindVerdict::Refused { .. } | BindVerdict::EmptyPassword)) => {
            Verdict::Refused
        }
        Ok(Ok(BindVerdict::Ambiguous { entries })) => Verdict::Unavailable(format!(
            "query {:?}: the login matches {entries} or more entries",
            query.name
        )),
        Ok(Err(why)) => Verdict::Unavailable(why),
        Err(_) => Verdict::Unavailable(format!(
            "LDAP server {} did not answer within {} ms",
            query.server.name,
            wait.as_millis()
        )),
    }
}
