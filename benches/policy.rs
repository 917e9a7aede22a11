//! Criterion benches of one policy decision without I/O: what a connection
//! and a RCPT cost in the pure parts of the connection policy, on a policy
//! compiled from a config with a 1,000-entry HAT (100 groups of 10 CIDRs,
//! ranges, names) and a 1,000-row RAT.
//!
//! - per connection: HAT `needs` + `first_match` for an address matching
//!   late, the client's counter key, the banner rendered with variables;
//! - per RCPT: the RAT lookup, the route, the sender-rate exemption check
//!   and the two counter keys the rate limits use.
//!
//! The counters themselves (a mesh round trip when the key's owner is
//! another shard, amortised by leases) are measured end to end by the HAT
//! leg of `benches/load.sh`.
//!
//! Run: `cargo bench --bench policy` (about 15 s).

use std::net::IpAddr;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::config::{Config, Policy};
use portcullis::policy::flow::BannerVars;
use portcullis::policy::hat::{HatFacts, PtrFact};

fn config_text() -> String {
    let mut text = String::from(
        "hostname = \"mx.bench.test\"\n\
         [[listener]]\nname = \"in\"\naddress = \"127.0.0.1:2525\"\ntype = \"public\"\nhat = \"in\"\nrat = \"in\"\n\
         [default_policy]\nmax_recipients_per_hour = 1000000\nsender_rate_limit = 1000000\n\
         sender_rate_limit_exceptions = [\"ceo@example.com\", \"partner.example\", \"192.0.2.7\"]\n\
         banner_text = \"$Hostname ESMTP ready for $RemoteIP in $Group\"\n",
    );
    for g in 0..100 {
        let senders: Vec<String> = (0..10)
            .map(|k| {
                let i = g * 10 + k;
                match k % 3 {
                    0 => format!("\"10.{}.{}.0/24\"", i / 256, i % 256),
                    1 => format!("\"12.{}.{}.1-100\"", i / 256, i % 256),
                    _ => format!("\"mx{i}.partner{g}.example\""),
                }
            })
            .collect();
        text.push_str(&format!("[[hat.in]]\ngroup = \"G{g}\"\nsenders = [{}]\npolicy = \"ACCEPTED\"\n", senders.join(", ")));
    }
    text.push_str("[[hat.in]]\ngroup = \"ALL\"\nsenders = [\"ALL\"]\npolicy = \"ACCEPTED\"\n");
    for i in 0..999 {
        text.push_str(&format!("[[rat.in]]\nrecipient = \"d{i}.example.com\"\naction = \"accept\"\n"));
    }
    text.push_str("[[rat.in]]\nrecipient = \"ALL\"\naction = \"reject\"\n[routes]\n\"*\" = [\"127.0.0.1:2526\"]\n");
    text
}

fn bench_policy(c: &mut Criterion) {
    let config = Config::from_toml(&config_text()).expect("the bench config is valid");
    let policy = Policy::compile(&config, 0);
    let listener = policy.access.listener("in").expect("listener in").clone();
    let late: IpAddr = "12.3.231.50".parse().unwrap(); // group 99, a range
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let facts = HatFacts { ptr: PtrFact::None, dnslists: Vec::new() };
    let no_dns = HatFacts::default();

    c.bench_function("policy: connect decision (1,000-entry HAT, late match)", |b| {
        b.iter(|| {
            let ip = black_box(late);
            let needs = listener.hat.needs(ip);
            // The names before group 99 need the PTR: the facts say it was looked up and had none.
            let m = listener.hat.first_match(ip, if needs.ptr { &facts } else { &no_dns });
            let group = m.map_or(&listener.unmatched, |m| &listener.groups[m.group].policy);
            let vars = BannerVars { hostname: &listener.hostname, remote_ip: ip, remote_host: "unknown", group: "G99", local_ip: local };
            (group.client_key(ip), group.admission(&vars))
        })
    });

    let rat = listener.rat.as_ref().expect("public listener has a RAT");
    let flow = &listener.groups[0].policy;
    c.bench_function("policy: RCPT decision (1,000-row RAT, limits keys)", |b| {
        b.iter(|| {
            let mailbox = black_box("user@d998.example.com");
            let verdict = rat.check(mailbox);
            let routed = policy.route_for("d998.example.com").is_some();
            let exempt = flow.sender_rate_exempt(black_box("someone@sender.example"), late);
            let keys = (format!("rcpt:{}", flow.client_key(late)), format!("sender:3600:{}", "someone@sender.example"));
            (verdict.refusal.is_none(), routed, exempt, keys)
        })
    });
}

fn config() -> Criterion {
    Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = bench_policy }
criterion_main!(benches);
