//! DNS messages in and out: the query we send and the checks an answer
//! must pass before it is believed (hickory-proto encodes and decodes;
//! nothing here touches a socket or a clock).
//!
//! `transport` calls [`encode_query`] before it sends and [`read_reply`]
//! on every datagram or TCP message that arrives. A reply that is not the
//! answer to our question (wrong id, another name, type or class, not a
//! response, garbage) is `None`: the caller ignores it and keeps waiting,
//! so a spoofed or stray packet can at worst delay a query into its
//! timeout, never answer it (RFC 5452 §9.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::{Lookup, Mx};
use crate::dane::Tlsa;
use crate::limits::{DNS_CNAME_CHAIN_MAX, DNS_NEGATIVE_TTL_MAX_SECS, DNS_TTL_MAX_SECS, DNS_TTL_MIN_SECS, DNS_UDP_PAYLOAD_BYTES};

/// One record of an answer, already in the form callers use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rdata {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Mx(Mx),
    /// A PTR target: lower case, no trailing dot.
    Ptr(String),
    /// One TXT record, its strings joined (RFC 7208 §3.3).
    Txt(String),
    /// One TLSA record (RFC 6698 §2.1), asked for by DANE.
    Tlsa(Tlsa),
}

/// The records of one answer, shared between the cache and every asker.
pub(crate) type Records = Rc<[Rdata]>;

/// What one exchange produced, and how long it may be cached (`None`:
/// not at all).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outcome {
    pub lookup: Lookup<Records>,
    pub ttl_secs: Option<u32>,
    /// The answer ended in a CNAME whose target the server did not chase
    /// (no records, no SOA: unbound's local data does this): ask again for
    /// the target (RFC 1034 §5.3.3 step 3). `lookup` is NotFound meanwhile
    /// and `ttl_secs` the chain's.
    pub alias: Option<Name>,
    /// The reply's AD bit (RFC 4035 §3.2.3): its resolver says it
    /// validated every record of the answer, or the proof that there is
    /// none. Worth only as much as the resolver and the path to it.
    pub authenticated: bool,
    /// The server answered SERVFAIL: from a validating resolver that is
    /// how a bogus answer shows (RFC 4035 §5.5).
    pub servfail: bool,
}

impl Outcome {
    pub(crate) fn temp_fail(why: impl Into<String>) -> Outcome {
        Outcome {
            lookup: Lookup::TempFail(why.into()),
            ttl_secs: None,
            alias: None,
            authenticated: false,
            servfail: false,
        }
    }
}

/// A reply that answers our question.
#[derive(Debug, PartialEq)]
pub(crate) enum Reply {
    Answer(Outcome),
    /// TC bit set (RFC 1035 §4.1.1): ask again over TCP (RFC 7766 §5).
    Truncated,
}

/// The wire name for `name` ("example.test" or "example.test."), lower
/// case and fully qualified; `None` when it is not a valid domain name
/// (empty label, label over 63 or name over 255 octets). Non-ASCII names
/// become their A-labels (IDNA).
pub(crate) fn query_name(name: &str) -> Option<Name> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.starts_with('.') || name.contains("..") {
        return None;
    }
    let parsed = if name.is_ascii() {
        Name::from_ascii(name)
    } else {
        Name::from_utf8(name)
    };
    let mut parsed = parsed.ok()?.to_lowercase();
    parsed.set_fqdn(true);
    Some(parsed)
}

/// "example.test" from a wire name: lower case, no trailing dot.
pub(crate) fn display_name(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    text.strip_suffix('.').unwrap_or(&text).to_owned()
}

/// The reverse-lookup name of `ip`: RFC 1035 §3.5 (in-addr.arpa), RFC 3596
/// §2.5 (ip6.arpa, one label per nibble).
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            name + "ip6.arpa"
        }
    }
}

/// A recursive query (RD set) for `name`/`rtype` in class IN, with an EDNS0
/// OPT record advertising `DNS_UDP_PAYLOAD_BYTES` (RFC 6891 §6.2.5).
pub(crate) fn encode_query(id: u16, name: &Name, rtype: RecordType) -> Vec<u8> {
    build_query(id, name, rtype, false)
}

/// The same query asking for the resolver's DNSSEC verdict: the DO bit
/// (RFC 3225, RFC 4035 §3.2.1) and AD set (RFC 6840 §5.7: a resolver
/// then says in AD whether it validated the answer). CD stays clear: the
/// resolver must validate, not pass bogus data on (RFC 4035 §3.2.2).
pub(crate) fn encode_dnssec_query(id: u16, name: &Name, rtype: RecordType) -> Vec<u8> {
    build_query(id, name, rtype, true)
}

fn build_query(id: u16, name: &Name, rtype: RecordType, dnssec: bool) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_authentic_data(dnssec);
    message.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(DNS_UDP_PAYLOAD_BYTES);
    edns.set_dnssec_ok(dnssec);
    message.set_edns(edns);
    message.to_vec().expect("a query for a validated name always encodes")
}

/// Checks `bytes` against our question and reads it. `None`: not our
/// answer (ignore it and keep waiting).
pub(crate) fn read_reply(bytes: &[u8], id: u16, name: &Name, rtype: RecordType) -> Option<Reply> {
    let message = match Message::from_vec(bytes) {
        Ok(message) => message,
        // A truncated answer may be cut inside a record: its header and
        // question still say whether it is ours.
        Err(_) => return read_truncated(bytes, id, name, rtype),
    };
    if !answers(message.header(), message.queries(), id, name, rtype) {
        return None;
    }
    if message.truncated() {
        return Some(Reply::Truncated);
    }
    let mut outcome = outcome(&message, name, rtype);
    outcome.authenticated = message.authentic_data();
    Some(Reply::Answer(outcome))
}

/// A reply that does not parse whole, but whose header has TC and whose
/// question is ours.
fn read_truncated(bytes: &[u8], id: u16, name: &Name, rtype: RecordType) -> Option<Reply> {
    let mut decoder = BinDecoder::new(bytes);
    let header = Header::read(&mut decoder).ok()?;
    let queries = Message::read_queries(&mut decoder, usize::from(header.query_count())).ok()?;
    (header.truncated() && answers(&header, &queries, id, name, rtype)).then_some(Reply::Truncated)
}

/// RFC 5452 §9.1: a response to our id, with exactly our question
/// (name compared case-insensitively, RFC 4343 §3), type and class.
fn answers(header: &Header, queries: &[Query], id: u16, name: &Name, rtype: RecordType) -> bool {
    let [query] = queries else { return false };
    header.id() == id
        && header.message_type() == MessageType::Response
        && header.op_code() == OpCode::Query
        && query.query_type() == rtype
        && query.query_class() == DNSClass::IN
        && same_name(query.name(), name)
}

/// Names from the wire are fully qualified; ours too: compare the labels.
fn same_name(a: &Name, b: &Name) -> bool {
    a.eq_ignore_root(b)
}

/// The lookup a checked reply means, with its cache TTL.
fn outcome(message: &Message, name: &Name, rtype: RecordType) -> Outcome {
    match message.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return not_found(message),
        ResponseCode::ServFail => {
            let mut failed = Outcome::temp_fail("server answered SERVFAIL");
            failed.servfail = true;
            return failed;
        }
        code => return Outcome::temp_fail(format!("server answered {code}")),
    }
    let Some((records, ttl, end)) = follow_chain(message.answers(), name, rtype) else {
        return Outcome::temp_fail(format!("CNAME chain longer than {DNS_CNAME_CHAIN_MAX}"));
    };
    let ttl = ttl.clamp(DNS_TTL_MIN_SECS, DNS_TTL_MAX_SECS);
    if !records.is_empty() {
        return Outcome {
            lookup: Lookup::Found(records.into()),
            ttl_secs: Some(ttl),
            alias: None,
            authenticated: false,
            servfail: false,
        };
    }
    if !same_name(&end, name) && soa_negative_ttl(message).is_none() {
        return Outcome {
            lookup: Lookup::NotFound,
            ttl_secs: Some(ttl),
            alias: Some(end),
            authenticated: false,
            servfail: false,
        };
    }
    // NODATA (RFC 2308 §2.2): the name exists, the type does not.
    not_found(message)
}

/// The records of `rtype` at the end of the CNAME chain that starts at
/// `name` (RFC 1034 §3.6.2), the smallest TTL along the way and the name
/// the chain ends at. `None` when the chain is longer than
/// `DNS_CNAME_CHAIN_MAX` (or loops).
fn follow_chain(answers: &[Record], name: &Name, rtype: RecordType) -> Option<(Vec<Rdata>, u32, Name)> {
    let mut owner = name.clone();
    let mut ttl = u32::MAX;
    for _ in 0..=DNS_CNAME_CHAIN_MAX {
        let at_owner = || {
            answers
                .iter()
                .filter(|r| r.dns_class() == DNSClass::IN && same_name(r.name(), &owner))
        };
        let records: Vec<Rdata> = at_owner()
            .filter(|r| r.record_type() == rtype)
            .filter_map(|r| convert(r.data()))
            .collect();
        if !records.is_empty() {
            let min_ttl = at_owner()
                .filter(|r| r.record_type() == rtype)
                .map(Record::ttl)
                .min()
                .unwrap_or(ttl);
            return Some((records, ttl.min(min_ttl), owner));
        }
        let Some(alias) = at_owner().find_map(|r| match r.data() {
            RData::CNAME(target) => Some((target.0.clone(), r.ttl())),
            _ => None,
        }) else {
            return Some((Vec::new(), ttl, owner));
        };
        owner = alias.0;
        ttl = ttl.min(alias.1);
    }
    None
}

fn convert(data: &RData) -> Option<Rdata> {
    Some(match data {
        RData::A(a) => Rdata::V4(a.0),
        RData::AAAA(aaaa) => Rdata::V6(aaaa.0),
        RData::MX(mx) => Rdata::Mx(Mx {
            preference: mx.preference(),
            exchange: display_name(mx.exchange()),
        }),
        RData::PTR(ptr) => Rdata::Ptr(display_name(&ptr.0)),
        RData::TXT(txt) => Rdata::Txt(txt.iter().map(|part| String::from_utf8_lossy(part)).collect()),
        RData::TLSA(tlsa) => Rdata::Tlsa(Tlsa {
            usage: tlsa.cert_usage().into(),
            selector: tlsa.selector().into(),
            matching_type: tlsa.matching().into(),
            data: tlsa.cert_data().to_vec(),
        }),
        _ => return None,
    })
}

/// NXDOMAIN or NODATA, cached for min(SOA TTL, SOA MINIMUM) of the SOA in
/// the authority section (RFC 2308 §5); without one, briefly.
fn not_found(message: &Message) -> Outcome {
    let ttl = soa_negative_ttl(message)
        .unwrap_or(DNS_TTL_MIN_SECS)
        .clamp(DNS_TTL_MIN_SECS, DNS_NEGATIVE_TTL_MAX_SECS);
    Outcome {
        lookup: Lookup::NotFound,
        ttl_secs: Some(ttl),
        alias: None,
        authenticated: false,
        servfail: false,
    }
}

/// min(SOA TTL, SOA MINIMUM) of the SOA in the authority section.
fn soa_negative_ttl(message: &Message) -> Option<u32> {
    message.name_servers().iter().find_map(|r| match r.data() {
        RData::SOA(soa) => Some(r.ttl().min(soa.minimum())),
        _ => None,
    })
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
