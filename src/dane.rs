//! DANE for SMTP (RFC 7672, on RFC 6698/7671): outbound TLS authenticated
//! by the TLSA records a DNSSEC-signed zone publishes for the MX host.
//!
//! Where it sits: between delivery's routing (MX, then A/AAAA) and the
//! outbound STARTTLS. `dns::secure` asks the TLSA, MX and address records
//! with their DNSSEC verdict; `tlsa` reads a record and says whether SMTP
//! may use it (§3.1); `policy` decides per delivery host (§2.2): not
//! applied, authenticate, encrypt only, or defer; `verifier` is the rustls
//! `ServerCertVerifier` that matches the server's chain against the
//! records (§3.1.1 DANE-EE, §3.1.2 DANE-TA) and `policy::client_config`
//! wraps it for `tls::Stream::connect`. Nothing here does I/O but
//! `lookup_tlsa`, which only asks the shard's resolver.

pub mod policy;
pub mod tlsa;
pub mod verifier;

#[cfg(test)]
mod tests;

pub use policy::{client_config, lookup_tlsa, policy, DaneDecision, DaneMode};
pub use tlsa::{Tlsa, Unusable};
pub use verifier::{DaneMatch, Verifier};
