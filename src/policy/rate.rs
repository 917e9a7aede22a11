//! TEMP STUB (not committed)
use std::rc::Rc;
use serde::{Deserialize, Serialize};
use crate::shards::Mesh;
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateSettings { pub lease_tokens: u32, pub table_entries: usize }
impl Default for RateSettings { fn default() -> Self { RateSettings { lease_tokens: 8, table_entries: 100000 } } }
impl RateSettings { pub fn validate(&self) -> Result<(), (String, String)> { Ok(()) } }
#[derive(Debug, Clone, Copy)]
pub struct Refused { pub count: u32 }
pub struct Slot;
pub struct Counters;
impl Counters {
    pub fn new(_mesh: Rc<Mesh>, _s: &RateSettings) -> Rc<Counters> { Rc::new(Counters) }
    pub fn serve(self: &Rc<Self>, _mesh: &Mesh) {}
    pub async fn take(&self, _key: &str, _limit: u32, _w: u64) -> Result<u32, Refused> { Ok(1) }
    pub async fn add(&self, _key: &str, _w: u64) -> u32 { 1 }
    pub async fn count(&self, _key: &str, _w: u64) -> u32 { 0 }
    pub async fn open(&self, _key: &str, _max: u32) -> Result<Slot, Refused> { Ok(Slot) }
}
