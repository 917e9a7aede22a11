//! TEMP STUB (not committed)
use std::net::{IpAddr, Ipv4Addr};
pub struct HatGroupSpec<'a> { pub name: &'a str, pub senders: &'a [String], pub skip: bool }
#[derive(Debug)]
pub struct HatTable { n: usize }
#[derive(Debug)]
pub struct HatError(pub String);
impl std::fmt::Display for HatError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) } }
#[derive(Default, Debug, Clone)]
pub struct Needs { pub ptr: bool, pub dnslists: Vec<usize> }
pub struct Match { pub group: usize, pub entry: String }
pub struct HatFacts { pub ptr: PtrFact, pub dnslists: Vec<(usize, DnsListFact)> }
#[derive(Clone, Debug, PartialEq)]
pub enum PtrFact { Unknown, Confirmed(String), None, TempFail, Mismatch }
#[derive(Clone, Debug, PartialEq)]
pub enum DnsListFact { Listed(Vec<Ipv4Addr>), NotListed, Error, TimedOut }
impl HatTable {
    pub fn compile(g: &[HatGroupSpec]) -> Result<HatTable, HatError> { Ok(HatTable { n: g.len() }) }
    pub fn needs(&self, _ip: IpAddr) -> Needs { Needs::default() }
    pub fn zones(&self) -> &[String] { &[] }
    pub fn first_match(&self, _ip: IpAddr, _f: &HatFacts) -> Option<Match> { if self.n > 0 { Some(Match { group: 0, entry: "ALL".into() }) } else { None } }
}
pub fn dnslist_query_name(_ip: IpAddr, zone: &str) -> String { zone.to_string() }
pub fn classify_dnslist_answer(_a: &[Ipv4Addr]) -> DnsListFact { DnsListFact::NotListed }
