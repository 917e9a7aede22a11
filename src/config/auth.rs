//! `[auth]`: where SMTP AUTH (RFC 4954) checks a login — a password file
//! of argon2id hashes or an LDAP bind — and how many failed AUTHs a client
//! IP may have per hour before it gets 421 4.7.0. `auth::Backend::load`
//! turns it into the backend of the compiled policy (`Policy::auth`); with
//! no backend, AUTH cannot be offered, and check-config refuses a mail
//! flow policy with `smtp_auth` other than "off".

use serde::{Deserialize, Serialize};

use super::ldap::{LdapConfig, QueryKind};
use crate::limits::AUTH_FAILURES_MAX_MAX;

/// Which backend checks logins.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthBackendKind {
    /// No backend: AUTH is not offered.
    #[default]
    #[serde(rename = "", alias = "off")]
    Off,
    /// `passwd_file`: `user:{ARGON2ID}$argon2id$…` lines.
    PasswdFile,
    /// `ldap_query`: find the user's entry, then bind as it.
    Ldap,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub backend: AuthBackendKind,
    /// The password file (`portcullis passwd USER` prints its lines).
    pub passwd_file: String,
    /// `[ldap.query."NAME"]` of `kind = "auth"`.
    pub ldap_query: String,
    /// Failed AUTHs per client IP per hour, then 421 4.7.0; 0 = no limit.
    pub auth_failures_max: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            backend: AuthBackendKind::Off,
            passwd_file: String::new(),
            ldap_query: String::new(),
            auth_failures_max: 5,
        }
    }
}

impl AuthConfig {
    /// Is a backend configured (so AUTH may be offered)?
    pub fn enabled(&self) -> bool {
        self.backend != AuthBackendKind::Off
    }

    /// Keys and ranges, then the backend itself (the password file is read
    /// and parsed, so check-config and a reload refuse a bad one). Returns
    /// the offending key and why.
    pub fn validate(&self, ldap: &LdapConfig) -> Result<(), (String, String)> {
        let bad = |key: &str, why: String| Err((key.to_string(), format!("auth: {why}")));
        if self.auth_failures_max > AUTH_FAILURES_MAX_MAX {
            return bad(
                "auth_failures_max",
                format!(
                    "{} is out of range 0–{AUTH_FAILURES_MAX_MAX}",
                    self.auth_failures_max
                ),
            );
        }
        match self.backend {
            AuthBackendKind::Off => {
                // A file or query named without a backend is a forgotten `backend` line.
                for (key, value) in [
                    ("passwd_file", &self.passwd_file),
                    ("ldap_query", &self.ldap_query),
                ] {
                    if !value.is_empty() {
                        return bad("backend", format!("{key} is set but no backend is chosen (backend = \"passwd_file\" or \"ldap\")"));
                    }
                }
                return Ok(());
            }
            AuthBackendKind::PasswdFile if self.passwd_file.is_empty() => {
                return bad(
                    "passwd_file",
                    "backend \"passwd_file\" needs passwd_file".into(),
                );
            }
            AuthBackendKind::Ldap => match ldap.query.get(&self.ldap_query) {
                _ if self.ldap_query.is_empty() => {
                    return bad("ldap_query", "backend \"ldap\" needs ldap_query".into())
                }
                None => {
                    return bad(
                        "ldap_query",
                        format!("no [ldap.query.\"{}\"]", self.ldap_query),
                    )
                }
                Some(query) if query.kind != QueryKind::Auth => {
                    return bad(
                        "ldap_query",
                        format!(
                            "[ldap.query.\"{}\"] is not kind = \"auth\"",
                            self.ldap_query
                        ),
                    );
                }
                Some(_) => {}
            },
            AuthBackendKind::PasswdFile => {}
        }
        match crate::auth::Backend::load(self, ldap) {
            Ok(_) => Ok(()),
            Err(why) => {
                let key = if self.backend == AuthBackendKind::Ldap {
                    "ldap_query"
                } else {
                    "passwd_file"
                };
                bad(key, why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn absent_section_is_valid_and_offers_no_auth() {
        let c = Config::from_toml("").unwrap();
        assert!(!c.auth.enabled());
        assert_eq!(c.auth.auth_failures_max, 5);
    }

    #[test]
    fn keys_are_checked_and_named() {
        for (toml, key) in [
            ("[auth]\nauth_failures_max = 100001\n", "auth_failures_max"),
            ("[auth]\nbackend = \"passwd_file\"\n", "passwd_file"),
            ("[auth]\nbackend = \"ldap\"\n", "ldap_query"),
            (
                "[auth]\nbackend = \"ldap\"\nldap_query = \"nope\"\n",
                "ldap_query",
            ),
            ("[auth]\npasswd_file = \"/etc/users\"\n", "backend"),
            (
                "[auth]\nbackend = \"passwd_file\"\npasswd_file = \"/nonexistent/users\"\n",
                "passwd_file",
            ),
        ] {
            let err = Config::from_toml(toml).unwrap_err();
            assert!(
                err.0.contains(&format!("{key}: auth:")),
                "{toml:?}: {}",
                err.0
            );
        }
        let err = Config::from_toml("[auth]\nbackend = \"kerberos\"\n").unwrap_err();
        assert!(
            err.0.contains("backend") || err.0.contains("kerberos"),
            "{}",
            err.0
        );
    }

    #[test]
    fn the_printed_section_reads_back_the_same() {
        let ldap = "[ldap.server.L]\nurls = [\"ldap://127.0.0.1:1\"]\n[ldap.query.\"L.auth\"]\nserver = \"L\"\nkind = \"auth\"\nfilter = \"(uid={u})\"\n";
        for text in ["".to_string(), format!("{ldap}[auth]\nbackend = \"ldap\"\nldap_query = \"L.auth\"\nauth_failures_max = 0\n")] {
            let config = Config::from_toml(&text).unwrap();
            let again = Config::from_toml(&config.to_toml()).unwrap_or_else(|e| panic!("{e}\n{}", config.to_toml()));
            assert_eq!(again.auth, config.auth);
        }
    }

    #[test]
    fn an_ldap_backend_needs_a_query_of_kind_auth() {
        let ldap = "[ldap.server.L]\nurls = [\"ldap://127.0.0.1:1\"]\n[ldap.query.\"L.accept\"]\nserver = \"L\"\nkind = \"accept\"\nfilter = \"(mail={a})\"\n\
                    [ldap.query.\"L.auth\"]\nserver = \"L\"\nkind = \"auth\"\nfilter = \"(uid={u})\"\n";
        let err = Config::from_toml(&format!(
            "{ldap}[auth]\nbackend = \"ldap\"\nldap_query = \"L.accept\"\n"
        ))
        .unwrap_err();
        assert!(
            err.0.contains("not kind = \\\"auth\\\"") || err.0.contains("not kind = \"auth\""),
            "{}",
            err.0
        );
        let c = Config::from_toml(&format!(
            "{ldap}[auth]\nbackend = \"ldap\"\nldap_query = \"L.auth\"\n"
        ))
        .unwrap();
        assert!(c.auth.enabled());
        let (_, policy) = c.split();
        assert!(policy.auth.is_some());
    }
}
