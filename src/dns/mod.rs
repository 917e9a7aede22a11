//! DNS resolver on the shards: A, AAAA, MX, PTR and TXT lookups for the
//! connection policy (HAT PTR and DNS-list criteria, sender verification)
//! and for delivery (MX, then A/AAAA).
//!
//! Where it sits: each shard owns one [`Resolver`] (no locks, `Rc` inside);
//! `policy` awaits it while a connection or a RCPT waits for a decision.
//! hickory-proto only encodes and decodes messages (`wire`); the packets
//! travel over glommio sockets (`transport`: UDP, then TCP when the answer
//! is truncated), so a shard never makes a blocking call.
//!
//! The flow of one question: `resolver` normalises the name and looks in
//! the shard's `cache`; on a miss it joins the query already in flight for
//! the same (name, type) or starts one, which tries `attempts` times over
//! the nameservers from `settings` and publishes the outcome to every
//! asker and to the cache.
//!
//! Three failure classes stay apart in [`Lookup`]: the name or record does
//! not exist (`NotFound`: NXDOMAIN or NODATA, cached for the negative TTL
//! of RFC 2308), a temporary failure (`TempFail`: SERVFAIL, REFUSED,
//! timeout, garbage, network error; never cached), and an answer.
//!
//! DANE asks its questions through `secure` (TLSA, MX, A/AAAA with DO and
//! AD set, cached apart): [`Secured`] adds whether a trusted validating
//! resolver authenticated the answer (`[dns] trust_ad`).

mod cache;
mod resolver;
mod secure;
mod settings;
mod transport;
mod wire;

#[cfg(test)]
mod tests;

pub use resolver::Resolver;
pub use secure::Secured;
pub use settings::{parse_resolv_conf, DnsSettings};

/// The outcome of one lookup, with the three classes a policy must tell
/// apart: a refused sender domain (`NotFound`) gets a 5xx, a DNS outage
/// (`TempFail`) a 4xx.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    /// The records asked for (never empty).
    Found(T),
    /// NXDOMAIN, or NODATA (NOERROR without a record of the type asked).
    NotFound,
    /// SERVFAIL, REFUSED, timeout, garbage, network error: try again later.
    /// The text says why, for logs.
    TempFail(String),
}

impl<T> Lookup<T> {
    /// Converts the found value, keeping the failure class.
    pub fn map<U>(self, convert: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Found(value) => Lookup::Found(convert(value)),
            Lookup::NotFound => Lookup::NotFound,
            Lookup::TempFail(why) => Lookup::TempFail(why),
        }
    }

    pub fn is_found(&self) -> bool {
        matches!(self, Lookup::Found(_))
    }

    /// The label used in metrics and logs: answer | not_found | tempfail.
    pub fn class(&self) -> &'static str {
        match self {
            Lookup::Found(_) => "answer",
            Lookup::NotFound => "not_found",
            Lookup::TempFail(_) => "tempfail",
        }
    }
}

/// One mail exchanger (RFC 5321 §5.1). A null MX (RFC 7505, "0 .") shows
/// as an empty `exchange`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mx {
    pub preference: u16,
    /// Lower case, without the trailing dot.
    pub exchange: String,
}
