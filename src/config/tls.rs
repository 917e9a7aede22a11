//! `[tls]`: the certificate and key inbound TLS presents (STARTTLS on every
//! listener whose policy offers it, implicit TLS listeners, and the client
//! certificate of call-ahead probes), and the CA that client certificates
//! are checked against under the `*-verify` policies. Read at start and at
//! every reload (`tls::ServerTls::load`), so a renewed certificate takes
//! effect on SIGHUP without dropping a session.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM chain, leaf first; "" = no TLS (policies must keep `tls = "off"`).
    pub certificate: String,
    /// PEM private key of the leaf.
    pub private_key: String,
    /// PEM trust anchors for client certificates; needed by `*-verify` policies.
    pub client_ca: String,
}

impl TlsConfig {
    /// Is a certificate configured (so STARTTLS can be offered)?
    pub fn enabled(&self) -> bool {
        !self.certificate.is_empty()
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        match (self.certificate.is_empty(), self.private_key.is_empty()) {
            (false, true) => Err(("private_key".into(), "tls: a certificate needs its private_key".into())),
            (true, false) => Err(("certificate".into(), "tls: a private_key needs its certificate".into())),
            (true, true) if !self.client_ca.is_empty() => Err(("client_ca".into(), "tls: client_ca needs a certificate and private_key".into())),
            _ => Ok(()),
        }
    }
}
