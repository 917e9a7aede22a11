//! One TLSA record (RFC 6698 §2): what it says, whether SMTP may use it
//! (RFC 7672 §3.1), and whether a certificate matches it.
//!
//! Where it sits: `dns::secure` builds these from the wire; `policy`
//! keeps the usable ones; `verifier` matches them against the chain the
//! server presents. Pure: no I/O, no clock.

use std::fmt;

use ring::digest::{digest, SHA256, SHA512};

/// RFC 7218 §2.1: certificate usages.
pub const USAGE_PKIX_TA: u8 = 0;
pub const USAGE_PKIX_EE: u8 = 1;
pub const USAGE_DANE_TA: u8 = 2;
pub const USAGE_DANE_EE: u8 = 3;
/// RFC 7218 §2.2: selectors.
pub const SELECTOR_CERT: u8 = 0;
pub const SELECTOR_SPKI: u8 = 1;
/// RFC 7218 §2.3: matching types.
pub const MATCHING_FULL: u8 = 0;
pub const MATCHING_SHA256: u8 = 1;
pub const MATCHING_SHA512: u8 = 2;

/// A TLSA record as published: usage, selector, matching type and the
/// certificate association data (RFC 6698 §2.1).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching_type: u8,
    pub data: Vec<u8>,
}

/// Why SMTP cannot use a record (RFC 7672 §3.1); such records are
/// ignored, and a set of only these is "unusable" (§2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// PKIX-TA(0) or PKIX-EE(1): MX hosts have no agreed CA set (§3.1.3).
    PkixUsage,
    /// A usage, selector or matching type with no assigned meaning.
    Unknown,
    /// A digest of the wrong length, or empty full data: nothing can match.
    Malformed,
}

impl Tlsa {
    /// From the RDATA on the wire (RFC 6698 §2.1): three octets, then the
    /// association data.
    pub fn from_rdata(rdata: &[u8]) -> Result<Tlsa, String> {
        match rdata {
            [usage, selector, matching_type, data @ ..] => Ok(Tlsa {
                usage: *usage,
                selector: *selector,
                matching_type: *matching_type,
                data: data.to_vec(),
            }),
            _ => Err(format!(
                "TLSA RDATA of {} octets, at least 3 expected",
                rdata.len()
            )),
        }
    }

    /// From the presentation form (RFC 6698 §2.2): "3 1 1 ab12…", the
    /// data in hex, which may be split by white space.
    pub fn parse(text: &str) -> Result<Tlsa, String> {
        let mut fields = text.split_whitespace();
        let mut number = |what: &str| -> Result<u8, String> {
            let field = fields
                .next()
                .ok_or_else(|| format!("TLSA {what} missing in {text:?}"))?;
            field
                .parse()
                .map_err(|_| format!("TLSA {what} {field:?} is not 0-255"))
        };
        let (usage, selector, matching_type) = (
            number("usage")?,
            number("selector")?,
            number("matching type")?,
        );
        let hex: String = fields.collect();
        let data = decode_hex(&hex).ok_or_else(|| format!("TLSA data {hex:?} is not hex"))?;
        Ok(Tlsa {
            usage,
            selector,
            matching_type,
            data,
        })
    }

    /// The record that matches `certificate` (DER) by `usage`, `selector`
    /// and `matching_type`: for tests and for operators building records.
    pub fn for_certificate(
        usage: u8,
        selector: u8,
        matching_type: u8,
        certificate: &[u8],
    ) -> Result<Tlsa, String> {
        let selected = select(selector, certificate)?;
        let data = associate(matching_type, &selected)
            .ok_or_else(|| format!("matching type {matching_type} unknown"))?;
        Ok(Tlsa {
            usage,
            selector,
            matching_type,
            data,
        })
    }

    /// `Ok` when SMTP may use this record (RFC 7672 §3.1).
    pub fn usability(&self) -> Result<(), Unusable> {
        match self.usage {
            USAGE_DANE_TA | USAGE_DANE_EE => {}
            USAGE_PKIX_TA | USAGE_PKIX_EE => return Err(Unusable::PkixUsage),
            _ => return Err(Unusable::Unknown),
        }
        if !matches!(self.selector, SELECTOR_CERT | SELECTOR_SPKI) {
            return Err(Unusable::Unknown);
        }
        let length_fits = match self.matching_type {
            MATCHING_FULL => !self.data.is_empty(),
            MATCHING_SHA256 => self.data.len() == SHA256.output_len(),
            MATCHING_SHA512 => self.data.len() == SHA512.output_len(),
            _ => return Err(Unusable::Unknown),
        };
        if length_fits {
            Ok(())
        } else {
            Err(Unusable::Malformed)
        }
    }

    pub fn is_usable(&self) -> bool {
        self.usability().is_ok()
    }

    /// Whether `certificate` (DER) is the one this record names: the whole
    /// certificate or its SubjectPublicKeyInfo (selector), compared whole
    /// or by SHA-256 / SHA-512 (matching type), RFC 6698 §2.1.2–2.1.3. A
    /// certificate that does not parse matches nothing.
    pub fn matches(&self, certificate: &[u8]) -> bool {
        let Ok(selected) = select(self.selector, certificate) else {
            return false;
        };
        match associate(self.matching_type, &selected) {
            // Not secret data: a plain comparison leaks nothing.
            Some(data) => data == self.data,
            None => false,
        }
    }
}

/// The part of `certificate` the selector names (RFC 6698 §2.1.2).
fn select(selector: u8, certificate: &[u8]) -> Result<Vec<u8>, String> {
    match selector {
        SELECTOR_CERT => Ok(certificate.to_vec()),
        SELECTOR_SPKI => {
            let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
                .map_err(|e| format!("certificate does not parse: {e}"))?;
            Ok(parsed.tbs_certificate.subject_pki.raw.to_vec())
        }
        other => Err(format!("selector {other} unknown")),
    }
}

/// The association data of `selected` for a matching type (RFC 6698
/// §2.1.3); `None` for an unknown type.
fn associate(matching_type: u8, selected: &[u8]) -> Option<Vec<u8>> {
    match matching_type {
        MATCHING_FULL => Some(selected.to_vec()),
        MATCHING_SHA256 => Some(digest(&SHA256, selected).as_ref().to_vec()),
        MATCHING_SHA512 => Some(digest(&SHA512, selected).as_ref().to_vec()),
        _ => None,
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).ok())
        .collect()
}

/// The presentation form, as an operator would compare it with `dig`.
impl fmt::Display for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ",
            self.usage, self.selector, self.matching_type
        )?;
        self.data
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tlsa({self})")
    }
}
