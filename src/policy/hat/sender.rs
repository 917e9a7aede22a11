//! One HAT sender entry, parsed: the text an operator writes in
//! `[[hat.NAME]] senders = [...]` becomes a `SenderCriterion`, or an error
//! that says why (check-config shows it with the key's line).
//!
//! Sits at the start of the HAT flow: `parse_sender` → `HatTable::compile`
//! indexes the criteria → `needs` / `first_match` per connection.
//!
//! Forms accepted (Cisco ESA's sender syntax):
//! - `192.0.2.7`, `2001:db8::7`: one address;
//! - `10.0.0.0/8`, `2001:db8::/48`: a CIDR block; host bits set are refused
//!   (`10.1.2.3/8` is more likely a typo than a wish for 10.0.0.0/8);
//! - `10.`, `10.2.3.`: a partial address, the prefix it names (/8, /24);
//! - `192.0.2.10-20`: a range of the last octet;
//! - `10.1.1-5.`: a range in a partial address (10.1.1.0–10.1.5.255);
//! - `192.0.2.10-192.0.2.20`, `2001:db8::1-2001:db8::ff`: two full addresses;
//! - `mail.partner.example`: that host name exactly, `.trusted.example`: its
//!   subdomains (not the domain itself), both against the forward-confirmed
//!   PTR name, case-insensitive, trailing dot ignored;
//! - `dnslist[zone]`, `dnslist[zone]=127.0.0.2,127.0.0.4`;
//! - `ptr:none`, `ptr:tempfail`, `ptr:mismatch`; `ALL` (any case).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::limits::{HAT_DNSLIST_CODES_MAX, HAT_NAME_BYTES_MAX};

/// What one sender entry matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderCriterion {
    /// A CIDR block, a single address (/32, /128) or a partial address.
    Net(IpNet),
    /// All addresses from `first` to `last`, both included, same family.
    Range { first: IpAddr, last: IpAddr },
    /// The forward-confirmed PTR name is exactly this (lower case, no trailing dot).
    Host(String),
    /// The forward-confirmed PTR name is a subdomain of this (stored without the dot).
    Suffix(String),
    /// The client is listed in this DNS list; with `codes`, only for those answers.
    DnsList { zone: String, codes: Vec<Ipv4Addr> },
    /// The client's address has no PTR record.
    PtrNone,
    /// The PTR lookup (or its forward confirmation) failed temporarily or timed out.
    PtrTempFail,
    /// The PTR name does not resolve back to the client's address.
    PtrMismatch,
    /// Every client.
    All,
}

impl SenderCriterion {
    /// True when this criterion needs the client's PTR facts.
    pub fn needs_ptr(&self) -> bool {
        matches!(self, Self::Host(_) | Self::Suffix(_) | Self::PtrNone | Self::PtrTempFail | Self::PtrMismatch)
    }
}

/// Parses one sender entry; the error says what is wrong with it.
pub fn parse_sender(text: &str) -> Result<SenderCriterion, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty sender entry".into());
    }
    if s.eq_ignore_ascii_case("ALL") {
        return Ok(SenderCriterion::All);
    }
    if let Some(rest) = strip_prefix_ignore_case(s, "ptr:") {
        return parse_ptr(rest);
    }
    if let Some(rest) = strip_prefix_ignore_case(s, "dnslist[") {
        return parse_dnslist(rest);
    }
    if s.contains('/') {
        return parse_cidr(s);
    }
    if let Some(colon) = s.find(':') {
        let head = &s[..colon];
        if !head.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("unknown prefix `{head}:` (known: ptr:none, ptr:tempfail, ptr:mismatch, dnslist[zone])"));
        }
        return parse_ipv6_form(s);
    }
    if let Some(domain) = s.strip_prefix('.') {
        return Ok(SenderCriterion::Suffix(parse_host_name(domain)?));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') {
        return parse_ipv4_form(s);
    }
    if s.starts_with("*.") {
        return Err(format!("wildcards are not a sender form: write `{}` for the subdomains", &s[1..]));
    }
    Ok(SenderCriterion::Host(parse_host_name(s)?))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn parse_ptr(rest: &str) -> Result<SenderCriterion, String> {
    match rest.to_ascii_lowercase().as_str() {
        "none" => Ok(SenderCriterion::PtrNone),
        "tempfail" => Ok(SenderCriterion::PtrTempFail),
        "mismatch" => Ok(SenderCriterion::PtrMismatch),
        _ => Err(format!("unknown `ptr:{rest}` (known: ptr:none, ptr:tempfail, ptr:mismatch)")),
    }
}

/// `zone]` or `zone]=127.0.0.2,127.0.0.4` (after `dnslist[`).
fn parse_dnslist(rest: &str) -> Result<SenderCriterion, String> {
    let Some((zone, after)) = rest.split_once(']') else {
        return Err("`dnslist[` without its closing `]`".into());
    };
    let zone = parse_host_name(zone).map_err(|why| format!("DNS list zone: {why}"))?;
    let codes = match after {
        "" => Vec::new(),
        _ => match after.strip_prefix('=') {
            Some(list) => parse_return_codes(list)?,
            None => return Err(format!("unexpected `{after}` after `dnslist[{zone}]` (codes follow `=`)")),
        },
    };
    Ok(SenderCriterion::DnsList { zone, codes })
}

/// RFC 5782 §2.1: listings are A records in 127.0.0.0/8, and 127.255.255.0/24
/// are error answers, so a code outside that could never match.
fn parse_return_codes(list: &str) -> Result<Vec<Ipv4Addr>, String> {
    let mut codes = Vec::new();
    for item in list.split(',').map(str::trim) {
        let code: Ipv4Addr = item.parse().map_err(|_| format!("`{item}` is not an IPv4 return code"))?;
        if !super::dnslist::is_listing_code(code) {
            return Err(format!("return code {code} is not a listing (RFC 5782 §2.1: 127.0.0.0/8 but not 127.255.255.0/24)"));
        }
        codes.push(code);
    }
    if codes.len() > HAT_DNSLIST_CODES_MAX {
        return Err(format!("more than {HAT_DNSLIST_CODES_MAX} return codes"));
    }
    Ok(codes)
}

/// `addr/len`, v4 or v6; host bits set are refused.
fn parse_cidr(s: &str) -> Result<SenderCriterion, String> {
    let (addr, len_text) = s.split_once('/').expect("caller saw a slash");
    let addr: IpAddr = addr.parse().map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text.parse::<u8>() {
        Ok(len) if len <= max && len_text.bytes().all(|b| b.is_ascii_digit()) => len,
        _ => return Err(format!("prefix length `/{len_text}` is not 0–{max}")),
    };
    let net = IpNet::new(addr, len).expect("length checked");
    if net.trunc() != net {
        return Err(format!("host bits set in `{s}`: did you mean `{}`?", net.trunc()));
    }
    Ok(SenderCriterion::Net(net))
}

/// `2001:db8::7` or `2001:db8::1-2001:db8::ff`.
fn parse_ipv6_form(s: &str) -> Result<SenderCriterion, String> {
    let v6 = |t: &str| t.parse::<Ipv6Addr>().map_err(|_| format!("`{t}` is not an IPv6 address"));
    match s.split_once('-') {
        None => Ok(SenderCriterion::Net(IpNet::new(IpAddr::V6(v6(s)?), 128).expect("128 is valid"))),
        Some((first, last)) => {
            if !last.contains(':') {
                return Err(format!("`{s}`: an IPv6 range names two full IPv6 addresses"));
            }
            range(IpAddr::V6(v6(first)?), IpAddr::V6(v6(last)?))
        }
    }
}

fn range(first: IpAddr, last: IpAddr) -> Result<SenderCriterion, String> {
    if first > last {
        return Err(format!("reversed range: {first} comes after {last}"));
    }
    Ok(SenderCriterion::Range { first, last })
}

/// Digits, dots and at most one dash: an address, a partial address or a range.
fn parse_ipv4_form(s: &str) -> Result<SenderCriterion, String> {
    let Some((left, right)) = s.split_once('-') else {
        let (octets, partial) = octets(s)?;
        return Ok(SenderCriterion::Net(prefix_net(&octets, partial)));
    };
    if right.contains('-') {
        return Err(format!("`{s}`: a range has one dash"));
    }
    if left.ends_with('.') {
        return Err(format!("`{s}`: write a partial range as `10.1.1-5.`"));
    }
    let left_octets = raw_octets(left)?;
    if left_octets.len() > 4 {
        return Err(format!("`{left}` has more than 4 octets"));
    }
    if right.matches('.').count() >= 3 {
        // Two full addresses: 192.0.2.10-192.0.2.20.
        let (right_octets, right_partial) = octets(right)?;
        if left_octets.len() != 4 || right_partial {
            return Err(format!("`{s}`: a range of full addresses names two full addresses"));
        }
        return range(IpAddr::V4(to_addr(&left_octets)), IpAddr::V4(to_addr(&right_octets)));
    }
    // The last octet written is a range: 192.0.2.10-20 or 10.1.1-5. (partial).
    let (last, partial) = match right.strip_suffix('.') {
        Some(last) => (last, true),
        None => (right, false),
    };
    let last = octet(last)?;
    match (partial, left_octets.len()) {
        (false, 4) | (true, 1..=3) => {}
        (false, _) => return Err(format!("`{s}`: a range of a partial address ends with a dot (`10.1.1-5.`)")),
        (true, _) => return Err(format!("`{s}`: a partial range has 1 to 3 octets (`10.1.1-5.`)")),
    }
    let mut first_octets = left_octets.clone();
    let mut last_octets = left_octets;
    *last_octets.last_mut().expect("at least one octet") = last;
    first_octets.resize(4, 0);
    last_octets.resize(4, 255);
    range(IpAddr::V4(to_addr(&first_octets)), IpAddr::V4(to_addr(&last_octets)))
}

/// `10.2.3.` → ([10, 2, 3], partial); `10.2.3.4` → ([10, 2, 3, 4], full).
fn octets(s: &str) -> Result<(Vec<u8>, bool), String> {
    let (body, partial) = match s.strip_suffix('.') {
        Some(body) => (body, true),
        None => (s, false),
    };
    let octets = raw_octets(body)?;
    match (partial, octets.len()) {
        (true, 1..=3) | (false, 4) => Ok((octets, partial)),
        (true, _) => Err(format!("`{s}`: a partial address has 1 to 3 octets and ends with a dot")),
        (false, _) => Err(format!("`{s}`: not an IPv4 address (a partial address ends with a dot: `10.2.3.`)")),
    }
}

fn raw_octets(s: &str) -> Result<Vec<u8>, String> {
    s.split('.').map(octet).collect()
}

/// One decimal octet; leading zeros are refused (some tools read them as octal).
fn octet(s: &str) -> Result<u8, String> {
    if s.is_empty() {
        return Err("empty octet (two dots in a row?)".into());
    }
    let plain = !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    match s.parse::<u8>() {
        Ok(value) if plain => Ok(value),
        _ => Err(format!("`{s}` is not an octet (0–255, no leading zeros)")),
    }
}

fn to_addr(octets: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])
}

/// The block a partial or full address names: 8 bits per octet written.
fn prefix_net(octets: &[u8], partial: bool) -> IpNet {
    let mut full = octets.to_vec();
    full.resize(4, 0);
    let len = if partial { 8 * octets.len() as u8 } else { 32 };
    IpNet::new(IpAddr::V4(to_addr(&full)), len).expect("length at most 32")
}

/// A host name or domain, lower-cased, trailing dot removed. RFC 1035 §2.3.4:
/// labels of 1–63 octets, 253 for the name; RFC 3696 §2: the top-level label
/// is not all-numeric (so a mistyped address is not taken for a name).
pub(crate) fn parse_host_name(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty name".into());
    }
    if !name.is_ascii() {
        return Err(format!("`{s}` is not ASCII: write the A-label (xn--…) form"));
    }
    if name.len() > HAT_NAME_BYTES_MAX {
        return Err(format!("name longer than {HAT_NAME_BYTES_MAX} octets"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{s}`: every label has 1 to 63 characters"));
        }
        if let Some(bad) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Err(format!("`{s}`: `{bad}` is not allowed in a host name"));
        }
    }
    if name.rsplit('.').next().is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("`{s}` is neither an address nor a host name (partial addresses end with a dot: `10.2.3.`)"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests;
