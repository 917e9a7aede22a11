//! SMTP AUTH backends (RFC 4954): whether a login and password are right,
//! and whether this client may still try.
//!
//! Where it sits: the session decodes AUTH PLAIN/LOGIN and asks its
//! question; the connection driver calls [`authenticate`] with the
//! session's policy snapshot, which (1) refuses a client IP past
//! `auth_failures_max` failures this hour before it looks at the password
//! (`failures`, on the IP's owner shard), (2) asks the policy's backend —
//! `passwd` (argon2id hashes, verified on the shard's blocking pool) or
//! `ldap` (find the entry with the service bind, then bind as it on a
//! connection of its own, on the LDAP thread) — (3) counts a failure,
//! writes one `auth` mail log line and counts `portcullis_auth_total`.
//!
//! Credentials never reach a log line or a Debug print: the password is a
//! [`Secret`], which prints `<redacted>`.

pub mod failures;
pub mod ldap;
pub mod passwd;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::auth::{AuthBackendKind, AuthConfig};
use crate::config::ldap::LdapConfig;
use crate::config::Policy;
use crate::ldap::client::Directory;
use crate::limits::{AUTH_PASSWORD_BYTES_MAX, AUTH_USER_BYTES_MAX};
use crate::maillog::MailLog;
use crate::metrics::Metrics;
use crate::policy::rate::Counters;
use crate::shard::Shard;

/// A password: shown to nobody but the backend that checks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The clear text, for the verifier or the bind, never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What AUTH PLAIN or LOGIN carried: the login as given (RFC 4616 authcid)
/// and the password.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

/// The answer to the session's AUTH question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// 235 2.7.0; the session is authenticated as `user`.
    Success { user: String },
    /// 535 5.7.8: wrong login or password (counted against the client IP).
    Failure,
    /// 454 4.7.0: the backend could not answer; the reason is for the log.
    TemporaryFailure(String),
    /// 421 4.7.0: past `auth_failures_max` this hour, decided before the
    /// password was looked at; the session closes.
    Blocked,
}

impl AuthOutcome {
    /// The `result` of the log line and of `portcullis_auth_total`.
    pub fn name(&self) -> &'static str {
        match self {
            AuthOutcome::Success { .. } => "success",
            AuthOutcome::Failure => "failure",
            AuthOutcome::TemporaryFailure(_) => "tempfail",
            AuthOutcome::Blocked => "blocked",
        }
    }
}

/// What a backend says of one login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Unknown user or wrong password (the backend does not say which).
    Refused,
    /// The backend cannot answer now (why, for the log).
    Unavailable(String),
}

/// The backend of one policy snapshot, loaded at start and on every reload.
#[derive(Debug)]
pub struct Backend {
    /// Failed AUTHs per client IP per hour, then `Blocked`; 0 = no limit.
    pub failures_max: u32,
    pub verifier: Verifier,
}

#[derive(Debug)]
pub enum Verifier {
    PasswdFile(passwd::PasswdFile),
    Ldap(Arc<crate::ldap::Query>),
    /// The backend validated but could not be loaded when the policy was
    /// compiled (the file changed in between): every AUTH is a temporary
    /// failure naming why, rather than a crash or a silent "no AUTH".
    Broken(String),
}

impl Backend {
    /// The backend `config` names, loaded; `Ok(None)` when there is none.
    pub fn load(config: &AuthConfig, ldap: &LdapConfig) -> Result<Option<Backend>, String> {
        let verifier = match config.backend {
            AuthBackendKind::Off => return Ok(None),
            AuthBackendKind::PasswdFile => Verifier::PasswdFile(passwd::PasswdFile::load(
                std::path::Path::new(&config.passwd_file),
            )?),
            AuthBackendKind::Ldap => Verifier::Ldap(Arc::new(crate::ldap::Query::compile(
                &config.ldap_query,
                ldap,
            )?)),
        };
        Ok(Some(Backend {
            failures_max: config.auth_failures_max,
            verifier,
        }))
    }

    /// For `Policy::compile`, which takes a validated config and cannot fail.
    pub fn compile(config: &AuthConfig, ldap: &LdapConfig) -> Option<Arc<Backend>> {
        match Backend::load(config, ldap) {
            Ok(backend) => backend.map(Arc::new),
            Err(why) => Some(Arc::new(Backend {
                failures_max: config.auth_failures_max,
                verifier: Verifier::Broken(why),
            })),
        }
    }

    /// The backend's name in the log line.
    pub fn name(&self) -> &'static str {
        match self.verifier {
            Verifier::PasswdFile(_) => "passwd_file",
            Verifier::Ldap(_) => "ldap",
            Verifier::Broken(_) => "broken",
        }
    }

    /// Check one login. `directory` is the LDAP thread (the LDAP backend
    /// needs it). Logins and passwords past their bounds, and empty ones,
    /// are refused without asking anything.
    pub async fn verify(
        &self,
        directory: Option<&Directory>,
        credentials: &Credentials,
    ) -> Verdict {
        let (user, password) = (&credentials.user, credentials.password.expose());
        if user.is_empty()
            || user.len() > AUTH_USER_BYTES_MAX
            || password.len() > AUTH_PASSWORD_BYTES_MAX
        {
            return Verdict::Refused;
        }
        match &self.verifier {
            Verifier::PasswdFile(file) => file.verify(credentials).await,
            Verifier::Ldap(query) => match directory {
                Some(directory) => ldap::verify(directory, query, credentials).await,
                None => Verdict::Unavailable("the LDAP thread is not running".into()),
            },
            Verifier::Broken(why) => Verdict::Unavailable(why.clone()),
        }
    }
}

/// What deciding an AUTH needs of a shard, apart from it so that tests
/// can build one without a whole shard.
pub struct Authenticator<'a> {
    pub counters: &'a Counters,
    pub metrics: &'a Metrics,
    pub log: &'a MailLog,
    /// The LDAP thread, for the LDAP backend.
    pub directory: Option<Directory>,
}

impl<'a> Authenticator<'a> {
    pub fn of(shard: &'a Shard) -> Authenticator<'a> {
        Authenticator {
            counters: &shard.counters,
            metrics: &shard.metrics,
            log: &shard.log,
            directory: Directory::running(),
        }
    }

    /// See [`authenticate`]. `conn` is the connection id (`C…`) the
    /// session's other log lines carry, so the `auth` line joins them.
    pub async fn authenticate(
        &self,
        policy: &Policy,
        conn: &str,
        ip: IpAddr,
        credentials: Credentials,
    ) -> AuthOutcome {
        let started = Instant::now();
        let (outcome, backend) = match &policy.auth {
            None => (
                AuthOutcome::TemporaryFailure("no [auth] backend is configured".into()),
                "none",
            ),
            Some(backend) => (self.decide(backend, ip, &credentials).await, backend.name()),
        };
        self.metrics.auth_attempt(outcome.name());
        let why = match &outcome {
            AuthOutcome::TemporaryFailure(why) => why.as_str(),
            _ => "",
        };
        self.log.event(
            "auth",
            format_args!(
                "conn={conn} ip={ip} user=\"{}\" backend={backend} result={} why=\"{}\" ms={:.3}",
                credentials.user.escape_debug(),
                outcome.name(),
                why.escape_debug(),
                started.elapsed().as_secs_f64() * 1000.0
            ),
        );
        outcome
    }

    async fn decide(
        &self,
        backend: &Backend,
        ip: IpAddr,
        credentials: &Credentials,
    ) -> AuthOutcome {
        let max = backend.failures_max;
        if failures::blocked(self.counters, ip, max).await {
            return AuthOutcome::Blocked;
        }
        match backend.verify(self.directory.as_ref(), credentials).await {
            Verdict::Accepted => AuthOutcome::Success {
                user: credentials.user.clone(),
            },
            Verdict::Refused => {
                failures::count(self.counters, ip, max).await;
                AuthOutcome::Failure
            }
            Verdict::Unavailable(why) => AuthOutcome::TemporaryFailure(why),
        }
    }
}

/// The one entry point the session's driver calls for an AUTH question
/// (RFC 4954 §4): Blocked (421 4.7.0) past `auth_failures_max` failures of
/// this IP this hour, before the password is looked at; else the policy's
/// backend decides: Success (235 2.7.0), Failure (535 5.7.8, counted),
/// TemporaryFailure (454 4.7.0). One `auth` log line and one
/// `portcullis_auth_total` count per call, never the password; the line
/// carries `conn` (the connection id) to join it with the session's lines.
pub async fn authenticate(
    shard: &Shard,
    policy: &Policy,
    conn: &str,
    ip: IpAddr,
    credentials: Credentials,
) -> AuthOutcome {
    Authenticator::of(shard)
        .authenticate(policy, conn, ip, credentials)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_prints() {
        let credentials = Credentials {
            user: "alice".into(),
            password: Secret::new("hunter2-correct-horse"),
        };
        for shown in [
            format!("{credentials:?}"),
            format!("{:#?}", credentials),
            format!("{}", credentials.password),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        assert!(format!("{credentials:?}").contains("alice"));
        assert_eq!(credentials.password.expose(), "hunter2-correct-horse");
    }

    #[test]
    fn outcomes_name_their_metric_label() {
        let names: Vec<_> = [
            AuthOutcome::Success { user: "u".into() },
            AuthOutcome::Failure,
            AuthOutcome::TemporaryFailure("x".into()),
            AuthOutcome::Blocked,
        ]
        .iter()
        .map(AuthOutcome::name)
        .collect();
        assert_eq!(names, crate::metrics::AUTH_RESULTS[..4]);
    }
}
