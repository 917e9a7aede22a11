//! DNSSEC-aware lookups for DANE (RFC 7672 §2.1): TLSA, MX and A/AAAA
//! answers that say whether the resolver authenticated them.
//!
//! Where it sits: delivery (through `dane::lookup_tlsa`) asks these on
//! its own shard's `Resolver`, beside the plain lookups the rest of the
//! appliance uses. The queries set DO and AD (`wire::encode_dnssec_query`)
//! and are cached apart from plain ones (`resolver::Key`). Portcullis does
//! not validate signatures itself: it believes the AD bit only when the
//! operator says the servers validate and the path to them is trusted
//! (`[dns] trust_ad`, RFC 7672 §2.1.3; RFC 6698 §4.1: a stub resolver
//! must trust its validating resolver and the channel to it). Without
//! that every answer is `Insecure` and a SERVFAIL is a plain failure.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::resolver::Answer;
use super::wire::Rdata;
use super::{Lookup, Mx, Resolver};
use crate::dane::Tlsa;

/// One DNSSEC-aware lookup. The value of `Secure` and `Insecure` may be
/// empty: the name or the type does not exist (NXDOMAIN, NODATA), and
/// `Secure` then means that the denial itself was authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secured<T> {
    /// Authenticated by a trusted validating resolver (AD set).
    Secure(T),
    /// Not authenticated: an unsigned zone, or a resolver we do not trust.
    Insecure(T),
    /// SERVFAIL from a trusted validating resolver: the signatures did
    /// not check out (RFC 4035 §5.5), or the zone is broken; RFC 7672
    /// §2.1.1 treats both alike.
    Bogus,
    /// No answer (timeout, REFUSED, network error, or SERVFAIL from a
    /// resolver we do not trust): try again later. The text says why.
    Failed(String),
}

impl<T> Secured<T> {
    /// Converts the value, keeping the verdict.
    pub fn map<U>(self, convert: impl FnOnce(T) -> U) -> Secured<U> {
        match self {
            Secured::Secure(value) => Secured::Secure(convert(value)),
            Secured::Insecure(value) => Secured::Insecure(convert(value)),
            Secured::Bogus => Secured::Bogus,
            Secured::Failed(why) => Secured::Failed(why),
        }
    }

    pub fn is_secure(&self) -> bool {
        matches!(self, Secured::Secure(_))
    }

    /// The records, whatever their verdict; `None` on Bogus or Failed.
    pub fn value(&self) -> Option<&T> {
        match self {
            Secured::Secure(value) | Secured::Insecure(value) => Some(value),
            Secured::Bogus | Secured::Failed(_) => None,
        }
    }
}

impl Resolver {
    /// TLSA records of `_PORT._tcp.HOST` (RFC 6698 §3, RFC 7672 §2.2.3:
    /// the TLSA base domain of an MX host is its name).
    pub async fn tlsa(&self, host: &str, port: u16) -> Secured<Vec<Tlsa>> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let name = format!("_{port}._tcp.{host}");
        let answer = self.answer(&name, RecordType::TLSA, true).await;
        self.secured(answer, |r| {
            if let Rdata::Tlsa(tlsa) = r {
                Some(tlsa.clone())
            } else {
                None
            }
        })
    }

    /// Mail exchangers of `domain` by preference, with their verdict (RFC
    /// 7672 §2.2.1: TLSA records are looked up only for the hosts of a
    /// secure MX RRset). Empty: no MX (NXDOMAIN or NODATA).
    pub async fn secure_mx(&self, domain: &str) -> Secured<Vec<Mx>> {
        let answer = self.answer(domain, RecordType::MX, true).await;
        let mut mxs = self.secured(answer, |r| {
            if let Rdata::Mx(mx) = r {
                Some(mx.clone())
            } else {
                None
            }
        });
        if let Secured::Secure(mxs) | Secured::Insecure(mxs) = &mut mxs {
            mxs.sort_by_key(|mx| mx.preference);
        }
        mxs
    }

    /// A and AAAA of `host` (IPv4 first), asked in parallel, with their
    /// verdict (RFC 7672 §2.2.2: no TLSA lookup for a host whose address
    /// records are insecure). Secure only when both RRsets are; Bogus when
    /// either is; one that failed leaves the other's records.
    pub async fn secure_addresses(&self, host: &str) -> Secured<Vec<IpAddr>> {
        let (v4, v6) = futures_lite::future::zip(
            self.answer(host, RecordType::A, true),
            self.answer(host, RecordType::AAAA, true),
        )
        .await;
        let address = |r: &Rdata| match r {
            Rdata::V4(ip) => Some(IpAddr::V4(*ip)),
            Rdata::V6(ip) => Some(IpAddr::V6(*ip)),
            _ => None,
        };
        combine(self.secured(v4, address), self.secured(v6, address))
    }

    /// The verdict of one answer: AD counts only from trusted servers, and
    /// SERVFAIL from them is Bogus.
    fn secured<T>(&self, answer: Answer, pick: impl Fn(&Rdata) -> Option<T>) -> Secured<Vec<T>> {
        let trusted = self.trusts_ad();
        let records = match answer.lookup {
            Lookup::Found(records) => records.iter().filter_map(pick).collect(),
            Lookup::NotFound => Vec::new(),
            Lookup::TempFail(_) if trusted && answer.servfail => return Secured::Bogus,
            Lookup::TempFail(why) => return Secured::Failed(why),
        };
        if trusted && answer.authenticated {
            Secured::Secure(records)
        } else {
            Secured::Insecure(records)
        }
    }
}

/// The A and AAAA verdicts as one (see `secure_addresses`).
fn combine<T>(first: Secured<Vec<T>>, second: Secured<Vec<T>>) -> Secured<Vec<T>> {
    use Secured::*;
    match (first, second) {
        (Bogus, _) | (_, Bogus) => Bogus,
        (Secure(mut a), Secure(b)) => {
            a.extend(b);
            Secure(a)
        }
        (Secure(mut a) | Insecure(mut a), Secure(b) | Insecure(b)) => {
            a.extend(b);
            Insecure(a)
        }
        (Failed(why), Failed(_)) => Failed(why),
        (Failed(why), Secure(answered) | Insecure(answered))
        | (Secure(answered) | Insecure(answered), Failed(why))
            if answered.is_empty() =>
        {
            Failed(why)
        }
        (Failed(_), answered) | (answered, Failed(_)) => answered,
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{encode_dnssec_query, encode_query, query_name};
    use super::*;
    use hickory_proto::op::Message;

    #[test]
    fn dnssec_queries_ask_for_the_verdict_and_plain_ones_do_not() {
        let name = query_name("_25._tcp.mx.example.test").expect("underscore labels are names");
        let secure = Message::from_vec(&encode_dnssec_query(7, &name, RecordType::TLSA)).unwrap();
        assert!(secure.authentic_data(), "AD set (RFC 6840 §5.7)");
        assert!(
            !secure.checking_disabled(),
            "CD clear: the resolver validates"
        );
        assert!(
            secure.extensions().as_ref().unwrap().flags().dnssec_ok,
            "DO set (RFC 3225)"
        );
        let plain = Message::from_vec(&encode_query(7, &name, RecordType::A)).unwrap();
        assert!(!plain.authentic_data());
        assert!(!plain.extensions().as_ref().unwrap().flags().dnssec_ok);
    }

    #[test]
    fn address_verdicts_combine_to_the_weakest() {
        let secure = || Secured::Secure(vec![1]);
        assert_eq!(
            combine(secure(), Secured::Secure(vec![2])),
            Secured::Secure(vec![1, 2])
        );
        assert_eq!(
            combine(secure(), Secured::Insecure(vec![])),
            Secured::Insecure(vec![1])
        );
        assert_eq!(combine(secure(), Secured::Bogus), Secured::Bogus);
        assert_eq!(
            combine(Secured::Bogus, Secured::Failed("x".into())),
            Secured::<Vec<i32>>::Bogus
        );
        assert_eq!(combine(Secured::Failed("x".into()), secure()), secure());
        let none: Secured<Vec<i32>> = Secured::Secure(vec![]);
        assert_eq!(
            combine(Secured::Failed("x".into()), none),
            Secured::Failed("x".into())
        );
    }
}
