//! Connections over several shards: which shard serves a connection, and
//! sessions placed on a chosen shard.
//!
//! The kernel spreads connections over the shards (SO_REUSEPORT, by the
//! hash of the addresses and ports), so a test cannot choose the shard; it
//! can see it: each shard logs `TS shard=N connect conn=CN-M peer=IP:PORT
//! ...` with the client's source address and port. `session_on` connects
//! until a connection lands on the wanted shard (each try is one coin flip
//! with two shards) and closes the others with QUIT.

use super::clients::{RawSmtp, Reply};
use super::server::Portcullis;
use super::WAIT;
use std::net::{Ipv4Addr, SocketAddr};

/// Tries `session_on` makes before it gives up (1 in 2^40 with two shards).
const PLACEMENT_TRIES: usize = 40;

/// Where the server put one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub shard: usize,
    /// The connection id of the mail log (`C0-17`).
    pub conn: String,
}

impl Portcullis {
    /// The shard and connection id of `client`'s connection, from its
    /// `connect` line (waits for the mail log, which is written on a timer).
    pub fn placement(&self, client: &RawSmtp) -> Placement {
        let local = client.stream().local_addr().expect("a connected socket");
        let needle = format!(" peer={local} ");
        let line = self
            .wait_for_log(&needle, 1, WAIT)
            .into_iter()
            .find(|l| l.split_whitespace().nth(2) == Some("connect"))
            .unwrap_or_else(|| panic!("no connect line for {local}\n{}", self.log()));
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .to_owned()
        };
        Placement {
            shard: field("shard=").parse().expect("shard=N"),
            conn: field("conn="),
        }
    }

    /// A session from `source` to `addr` served by shard `shard`, with its
    /// greeting; connections that land elsewhere are closed with QUIT.
    pub fn session_on(&self, addr: SocketAddr, source: Ipv4Addr, shard: usize) -> (RawSmtp, Reply) {
        for _ in 0..PLACEMENT_TRIES {
            let (mut client, greeting) = RawSmtp::connect_from(addr, source)
                .unwrap_or_else(|e| panic!("connect from {source} to {addr}: {e}"));
            if self.placement(&client).shard == shard {
                return (client, greeting);
            }
            let _ = client.cmd("QUIT");
        }
        panic!(
            "no connection from {source} landed on shard {shard} in {PLACEMENT_TRIES} tries\n{}",
            self.log()
        );
    }

    /// The shards that logged a `connect` from `source` so far.
    pub fn shards_serving(&self, source: Ipv4Addr) -> std::collections::BTreeSet<usize> {
        let needle = format!(" peer={source}:");
        self.event_lines("connect")
            .iter()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)?
                    .strip_prefix("shard=")?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

/// The shard that owns counter `key` with `shards` shards: the same
/// function as the binary's `shards::owner` (SipHash-1-3 with zero keys of
/// the lower-cased key, std's `DefaultHasher::new()`), so a test can place
/// a session on the owner or off it. Keys as the policy builds them:
/// `rcpt:IP`, `rcpt:PREFIX/BITS`, `sender:SECS:ADDRESS`, `dhap:IP`, `conn:IP`.
pub fn owner_of(key: &str, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.to_ascii_lowercase().hash(&mut h);
    (h.finish() % shards as u64) as usize
}
