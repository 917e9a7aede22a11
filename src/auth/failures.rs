//! Failed AUTHs per client IP, appliance-wide: a sliding hour on the owner
//! shard of the key `auth:{ip}` (the rate counters of `policy::rate`, as
//! DHAP counts invalid recipients), so a client that spreads its guesses
//! over connections on every shard is stopped all the same. Past
//! `auth_failures_max` in the hour, every AUTH of that client gets 421
//! 4.7.0 before its password is looked at (brute force stops at the edge).
//!
//! An IPv6 client is counted by its /64: one host usually holds a whole
//! /64, and counting each of its addresses apart would let it guess on.
//! A counter that cannot be consulted (its owner shard is stopping) counts
//! nothing and blocks nothing: it fails open, like DHAP.

use std::net::IpAddr;

use crate::limits::AUTH_FAILURES_WINDOW_SECS;
use crate::policy::rate::Counters;

/// The counter key of `ip`: the address, or an IPv6 address's /64.
pub fn key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("auth:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("auth:{v4}"),
            None => {
                let s = v6.segments();
                format!("auth:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Has `ip` failed `max` times or more in the last hour? Never with `max` 0.
pub async fn blocked(counters: &Counters, ip: IpAddr, max: u32) -> bool {
    if max == 0 {
        return false;
    }
    counters
        .count(&key(ip), AUTH_FAILURES_WINDOW_SECS)
        .await
        .is_ok_and(|count| count >= max)
}

/// Count one failed AUTH of `ip` (not when `max` is 0: nothing would read it).
pub async fn count(counters: &Counters, ip: IpAddr, max: u32) {
    if max > 0 {
        let _ = counters.add(&key(ip), AUTH_FAILURES_WINDOW_SECS).await;
    }
}

#[cfg(test)]
mod tests;
