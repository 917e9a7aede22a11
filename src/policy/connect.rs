//! Connect decision: the HAT (Host Access Table) matches the client against
//! the listener's sender groups and picks its mail flow policy; the policy's
//! behaviour and the concurrent-connection limit decide what happens.
//!
//! DNS is done lazily: the HAT says which facts a match could need before
//! the first group the address alone decides (`HatTable::needs`); only those
//! are looked up, the PTR (forward-confirmed) and the DNS lists in parallel,
//! all bounded by `[dns] hat_lookup_timeout_ms` so the banner is never held
//! longer. A PTR lookup that does not finish is "tempfail"; a DNS list that
//! does not answer is "not listed" (logged).

use std::cell::RefCell;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::config::flow::Behavior;
use crate::config::Policy;
use crate::dns::{Lookup, Resolver};
use crate::policy::access::ListenerPolicy;
use crate::policy::client::Client;
use crate::policy::flow::MailFlowPolicy;
use crate::policy::hat::{canonical_ip, classify_dnslist_answer, dnslist_query_name, DnsListFact, HatFacts, PtrFact};
use crate::shard::Shard;
use crate::smtp::{Decision, Peer, Reply};

/// What becomes of a new connection.
pub enum Admission {
    /// TCPREFUSE: close before any byte is sent (the driver resets it).
    TcpRefuse,
    /// Answer the session's Connect question; `client` is the context every
    /// later decision of this connection uses.
    Answer { decision: Decision, client: Client },
}

/// What the HAT said about one client, with the DNS facts it took.
struct Matched<'a> {
    group: &'a str,
    /// The sender entry that matched, as written ("" when none did).
    entry: String,
    flow: Arc<MailFlowPolicy>,
    facts: HatFacts,
}

/// Decide a new connection on `listener`.
pub async fn admit(shard: &Shard, policy: &Policy, listener: &Arc<ListenerPolicy>, peer: &Peer) -> Admission {
    let ip = canonical_ip(peer.addr.ip());
    let m = match_client(shard, policy, listener, ip).await;
    let remote_host = match &m.facts.ptr {
        PtrFact::Confirmed(name) => Some(name.clone()),
        _ => None,
    };
    let mut client = Client::new(peer.clone(), listener.clone(), m.group.to_string(), m.flow.clone(), remote_host);
    let conn = &peer.connection_id;
    let log_hat = |outcome: &str, extra: std::fmt::Arguments| {
        shard.metrics.connection(&listener.name, m.group, &m.flow.name, outcome);
        shard.log.event("hat", format_args!(
            "conn={conn} listener={} group={} entry=\"{}\" policy={} ptr={} outcome={outcome}{extra}",
            listener.name, m.group, m.entry, m.flow.name, ptr_label(&m.facts.ptr)
        ));
    };
    for (zone, fact) in &m.facts.dnslists {
        if matches!(fact, DnsListFact::Error | DnsListFact::TimedOut | DnsListFact::TempFail) {
            shard.log.event("dnslist", format_args!("conn={conn} zone={} result={fact:?} treated=\"not listed\"", listener.hat.zones()[*zone]));
        }
    }
    let flow = &m.flow;
    match flow.behavior() {
        Behavior::Tcprefuse => {
            log_hat("tcprefused", format_args!(""));
            return Admission::TcpRefuse;
        }
        Behavior::Reject if !flow.rejects_at_rcpt() => {
            log_hat("rejected", format_args!(""));
            let reply = flow.reject_banner(&client.banner_vars());
            let decision = if reply.code == 421 { Decision::Close(reply) } else { Decision::Refuse(reply) };
            return Admission::Answer { decision, client };
        }
        _ => {}
    }
    let max = flow.params.max_concurrent_connections_per_ip;
    if max > 0 {
        let key = format!("conn:{}", client.key);
        match shard.counters.open(&key, max).await {
            Ok(slot) => {
                crate::policy::limits::log_unchecked(shard, &client, &key, slot.unchecked());
                client.slot = Some(slot);
            }
            Err(refused) => {
                log_hat("limited", format_args!(" rule=max_concurrent_connections_per_ip key={} count={} max={max}", client.key, refused.count));
                shard.metrics.rate_limit_refusal("concurrent_connections");
                let reply = Reply::new(421, "4.7.0", format!("{} Too many concurrent connections from your address, try again later", listener.hostname));
                return Admission::Answer { decision: Decision::Close(reply), client };
            }
        }
    }
    let outcome = match flow.behavior() {
        Behavior::Relay => "relayed",
        Behavior::Reject => "rejected_at_rcpt",
        _ => "accepted",
    };
    log_hat(outcome, format_args!(""));
    Admission::Answer { decision: Decision::Admit(flow.admission(&client.banner_vars())), client }
}

/// The first sender group matching `ip` (or the unmatched policy), looking
/// up only what the match needs, all within one `hat_lookup_timeout_ms`.
async fn match_client<'a>(shard: &Shard, policy: &Policy, listener: &'a ListenerPolicy, ip: IpAddr) -> Matched<'a> {
    let timeout = Duration::from_millis(policy.dns.hat_lookup_timeout_ms);
    let started = std::time::Instant::now();
    let needs = listener.hat.needs(ip);
    let mut facts = gather(&shard.resolver, ip, needs.ptr, &needs.dnslists, listener.hat.zones(), timeout).await;
    let (group, entry, flow) = match listener.hat.first_match(ip, &facts) {
        Some(m) => (listener.groups[m.group].name.as_str(), m.entry, listener.groups[m.group].policy.clone()),
        None => ("(unmatched)", String::new(), listener.unmatched.clone()),
    };
    debug_assert!(flow.behavior() != Behavior::Continue, "CONTINUE groups never match");
    // $RemoteHost in a banner needs the PTR even when the match did not.
    // It gets what the match left of the one bound, so the banner is never
    // held longer than `hat_lookup_timeout_ms` in all.
    if matches!(facts.ptr, PtrFact::Unknown) && uses_remote_host(&flow) {
        let left = timeout.saturating_sub(started.elapsed());
        facts.ptr = gather(&shard.resolver, ip, true, &[], &[], left).await.ptr;
    }
    Matched { group, entry, flow, facts }
}

fn uses_remote_host(flow: &MailFlowPolicy) -> bool {
    flow.params.banner_text.contains("$RemoteHost") || flow.params.reject_banner_text.contains("$RemoteHost")
}

fn ptr_label(ptr: &PtrFact) -> String {
    match ptr {
        PtrFact::Unknown => "-".into(),
        PtrFact::Confirmed(name) => name.clone(),
        PtrFact::None => "none".into(),
        PtrFact::TempFail => "tempfail".into(),
        PtrFact::Mismatch => "mismatch".into(),
    }
}

/// Look up what the HAT needs, in parallel, within `timeout`. Facts whose
/// lookup did not finish stay at their timeout value.
async fn gather(resolver: &Resolver, ip: IpAddr, ptr: bool, dnslists: &[usize], zones: &[String], timeout: Duration) -> HatFacts {
    let facts = RefCell::new(HatFacts {
        ptr: if ptr { PtrFact::TempFail } else { PtrFact::Unknown },
        dnslists: dnslists.iter().map(|&z| (z, DnsListFact::TimedOut)).collect(),
    });
    let mut lookups: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> = Vec::new();
    if ptr {
        lookups.push(Box::pin(async {
            let fact = confirmed_ptr(resolver, ip).await;
            facts.borrow_mut().ptr = fact;
        }));
    }
    for (i, &zone) in dnslists.iter().enumerate() {
        let facts = &facts;
        lookups.push(Box::pin(async move {
            let fact = match resolver.ipv4(&dnslist_query_name(ip, &zones[zone])).await {
                Lookup::Found(answer) => classify_dnslist_answer(&answer),
                Lookup::NotFound => DnsListFact::NotListed,
                Lookup::TempFail(_) => DnsListFact::TempFail,
            };
            facts.borrow_mut().dnslists[i].1 = fact;
        }));
    }
    if !lookups.is_empty() {
        let all = join_all(lookups);
        let _ = glommio::timer::timeout(timeout, async {
            all.await;
            Ok(())
        })
        .await;
    }
    let gathered = std::mem::replace(&mut *facts.borrow_mut(), HatFacts { ptr: PtrFact::Unknown, dnslists: Vec::new() });
    gathered
}

/// Forward-confirmed reverse DNS: a PTR name whose A/AAAA records include `ip`.
async fn confirmed_ptr(resolver: &Resolver, ip: IpAddr) -> PtrFact {
    let names = match resolver.ptr(ip).await {
        Lookup::Found(names) => names,
        Lookup::NotFound => return PtrFact::None,
        Lookup::TempFail(_) => return PtrFact::TempFail,
    };
    let mut temp_failed = false;
    for name in names.iter().take(crate::limits::PTR_NAMES_CHECKED_MAX) {
        match resolver.addresses(name).await {
            Lookup::Found(addresses) if addresses.iter().any(|a| canonical_ip(*a) == ip) => return PtrFact::Confirmed(name.clone()),
            Lookup::TempFail(_) => temp_failed = true,
            _ => {}
        }
    }
    if temp_failed {
        PtrFact::TempFail
    } else {
        PtrFact::Mismatch
    }
}

/// Run every future to completion, concurrently, on this task.
async fn join_all(mut futures: Vec<Pin<Box<dyn Future<Output = ()> + '_>>>) {
    std::future::poll_fn(|cx| {
        futures.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futures.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
