//! End to end: the HAT's DNS criteria against a real unbound
//! (`Zone::standard()`, tests/common/dns.rs), with clients bound to chosen
//! 127.0.0.x source addresses so the HAT sees the client of each zone row.
//!
//! - Names: `Good.Example.Test` (any case) and the `.example.test` suffix
//!   match on the forward-confirmed PTR name (127.0.0.10); a PTR name that does not
//!   resolve back (127.0.0.11 → mismatch.example.test → 127.0.0.99) matches
//!   neither its name nor the suffix but `ptr:mismatch`; no PTR (127.0.0.12)
//!   is `ptr:none`; a PTR that times out (127.0.0.13) or gets SERVFAIL
//!   (127.0.0.16) is `ptr:tempfail`; `$RemoteHost` in a banner is the
//!   confirmed name, also for a client its address decided (the PTR is then
//!   looked up for the banner alone), and "unknown" without one. With two
//!   PTR names the one that resolves back decides; a PTR name whose forward
//!   lookup times out is `ptr:tempfail`, one that does not exist is
//!   `ptr:mismatch` (a zone extended beyond the standard one).
//! - DNS lists: 127.0.0.2 listed in bl.example.test → BLOCKED (554, then
//!   503 to every command); an address not listed falls to the next group;
//!   127.0.0.14's answer 127.255.255.254 is an error answer, never a listing
//!   (the client falls through and a `dnslist` line is logged); a
//!   return-code entry `=127.0.0.10` matches 127.0.0.15 (listed with code
//!   .10) while `=127.0.0.3,127.0.0.4` does not; a list that answers
//!   SERVFAIL is not a listing and its `dnslist` line says `TempFail`.
//! - A DNS list that never answers (slowbl.example.test) with
//!   `hat_lookup_timeout_ms = 300`: the banner arrives within the bound
//!   (asserted loosely, bound + 2 s), the list counts as not listed (logged),
//!   a list queried in parallel that does answer still decides, and a PTR
//!   that never answers (127.0.0.13) is `ptr:tempfail` within the same bound.
//!   The PTR looked up only for `$RemoteHost` after such a match shares that
//!   one bound (the banner is not held twice as long).
//! - Lazy DNS: a client an address entry decides before any DNS group
//!   causes no DNS query (`ptr=-` in its `hat` line, and the DNS counters of
//!   GET /metrics stay at zero until a client that needs DNS connects).
//!
//! Every decision is checked twice: in what the client sees (banner code and
//! the `$Group` in the banner text) and in the `hat` mail log line.
//!
//! Timing: nothing sleeps. Log lines and metrics are polled with deadlines;
//! the one timing assertion is an upper bound with seconds of slack.

mod common;

use common::dns::*;
use common::*;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The listener section of a config with the server's port in it.
fn listener(name: &str, port: u16, hat: &str) -> String {
    format!(
        "[[listener]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\ntype = \"public\"\nhat = \"{hat}\"\nrat = \"in\"\n\n"
    )
}

/// A RAT accepting example.test, and a banner naming the group and policy.
const COMMON: &str = r#"
[[rat.in]]
recipient = "example.test"
action = "accept"

[[rat.in]]
recipient = "ALL"
action = "reject"

[default_policy]
banner_text = "$Hostname ESMTP group=$Group policy=$Policy"
"#;

fn start(dns: &TestDns, port: u16, config: &str) -> (ConfigFile, Portcullis) {
    let file = ConfigFile::with_text(config);
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .dns(dns.addr())
        .start();
    (file, server)
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Connects from `source`, returns the session and its greeting.
fn greet(server: SocketAddr, source: &str) -> (RawSmtp, Reply) {
    RawSmtp::connect_from(server, ip(source))
        .unwrap_or_else(|e| panic!("connect from {source} to {server}: {e}"))
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.split('"').next();
    }
    rest.split_whitespace().next()
}

/// Waits for the `hat` line of the `nth` (1-based) connection and returns it.
fn nth_hat_line(server: &Portcullis, nth: usize) -> String {
    let mut lines = Vec::new();
    let found = wait_until(WAIT, || {
        lines = server.event_lines("hat");
        lines.len() >= nth
    });
    assert!(found, "no hat line #{nth}:\n{}", server.log());
    lines[nth - 1].clone()
}

/// Connects from `source`, expects a 220 banner naming `group`, checks the
/// connection's `hat` line (`nth` connection of the server) for the group,
/// entry and ptr fact, and quits.
fn expect_group(server: &Portcullis, port: u16, nth: usize, source: &str, group: &str, entry: &str, ptr: &str) -> Reply {
    let (mut client, banner) = greet(addr(port), source);
    assert_eq!(banner.code, 220, "{source}: {banner:?}");
    assert!(banner.text().contains(&format!("group={group} ")), "{source}: expected group {group}: {banner:?}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    let line = nth_hat_line(server, nth);
    assert_eq!(field(&line, "group"), Some(group), "{source}: {line}");
    assert_eq!(field(&line, "entry"), Some(entry), "{source}: {line}");
    assert_eq!(field(&line, "ptr"), Some(ptr), "{source}: {line}");
    assert_eq!(field(&line, "outcome"), Some("accepted"), "{source}: {line}");
    banner
}

#[test]
fn ptr_names_suffixes_and_ptr_facts_pick_the_sender_group() {
    let dns = TestDns::start(&Zone::standard());
    let (port, suffix_port, host_port) = (free_port(), free_port(), free_port());
    // The PTR timeout must end before the HAT bound for the fact to be
    // "tempfail" from the resolver; either way it is tempfail.
    let config = format!(
        r#"
[dns]
timeout_ms = 1000
attempts = 1
hat_lookup_timeout_ms = 5000

{}{}{}
[[hat.names]]
group = "NAMED"
senders = ["mismatch.example.test", "Good.Example.Test"]
policy = "NAMED"

[[hat.names]]
group = "MISMATCH"
senders = ["ptr:mismatch"]
policy = "ACCEPTED"

[[hat.names]]
group = "NOPTR"
senders = ["ptr:none"]
policy = "ACCEPTED"

[[hat.names]]
group = "TEMPFAIL"
senders = ["ptr:tempfail"]
policy = "ACCEPTED"

[[hat.names]]
group = "ALL"
senders = ["ALL"]
policy = "ACCEPTED"

[[hat.suffix]]
group = "DOMAIN"
senders = [".example.test"]
policy = "ACCEPTED"

[[hat.suffix]]
group = "ALL"
senders = ["ALL"]
policy = "ACCEPTED"

[[hat.hostvar]]
group = "BYADDRESS"
senders = ["127.0.0.10", "127.0.0.12"]
policy = "NAMED"
{COMMON}
[policy.NAMED]
banner_text = "$Hostname hello $RemoteHost [$RemoteIP] group=$Group policy=$Policy"
"#,
        listener("names", port, "names"),
        listener("suffix", suffix_port, "suffix"),
        listener("hostvar", host_port, "hostvar"),
    );
    let (_file, server) = start(&dns, port, &config);
    for extra in [suffix_port, host_port] {
        assert!(wait_until(WAIT, || is_listening(extra)), "listener on {extra} not up:\n{}", server.log());
    }

    // Forward-confirmed name: the exact name entry, and $RemoteHost.
    let banner = expect_group(&server, port, 1, GOOD_IP, "NAMED", "Good.Example.Test", GOOD_NAME);
    assert!(
        banner.text().contains(&format!("hello {GOOD_NAME} [{GOOD_IP}]")),
        "$RemoteHost / $RemoteIP not substituted: {banner:?}"
    );
    // Not confirmed: neither its own name (listed first) nor the suffix.
    expect_group(&server, port, 2, MISMATCH_IP, "MISMATCH", "ptr:mismatch", "mismatch");
    expect_group(&server, port, 3, NO_PTR_IP, "NOPTR", "ptr:none", "none");
    let started = Instant::now();
    expect_group(&server, port, 4, PTR_TIMEOUT_IP, "TEMPFAIL", "ptr:tempfail", "tempfail");
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(5000 + 2000), "PTR timeout held the banner {waited:?}");
    expect_group(&server, port, 5, PTR_SERVFAIL_IP, "TEMPFAIL", "ptr:tempfail", "tempfail");
    // The suffix listener: `.example.test` matches the confirmed name only.
    expect_group(&server, suffix_port, 6, GOOD_IP, "DOMAIN", ".example.test", GOOD_NAME);
    expect_group(&server, suffix_port, 7, MISMATCH_IP, "ALL", "ALL", "mismatch");
    expect_group(&server, suffix_port, 8, NO_PTR_IP, "ALL", "ALL", "none");
    // $RemoteHost for a client its address decided: the PTR is looked up
    // for the banner alone; no confirmed name is "unknown".
    let banner = expect_group(&server, host_port, 9, GOOD_IP, "BYADDRESS", "127.0.0.10", GOOD_NAME);
    assert!(banner.text().contains(&format!("hello {GOOD_NAME} [{GOOD_IP}]")), "{banner:?}");
    let banner = expect_group(&server, host_port, 10, NO_PTR_IP, "BYADDRESS", "127.0.0.12", "none");
    assert!(banner.text().contains(&format!("hello unknown [{NO_PTR_IP}]")), "{banner:?}");
    let lines = server.event_lines("hat");
    assert_eq!(field(&lines[5], "listener"), Some("suffix"), "{}", lines[5]);
    assert_eq!(field(&lines[8], "listener"), Some("hostvar"), "{}", lines[8]);
    assert_eq!(field(&lines[0], "listener"), Some("names"), "{}", lines[0]);
}

#[test]
fn dns_list_listings_return_codes_and_error_answers() {
    let dns = TestDns::start(&Zone::standard());
    let port = free_port();
    let config = format!(
        r#"
[dns]
hat_lookup_timeout_ms = 5000

{}
[[hat.lists]]
group = "CODE3OR4"
senders = ["dnslist[bl.example.test]=127.0.0.3,127.0.0.4"]
policy = "ACCEPTED"

[[hat.lists]]
group = "CODE10"
senders = ["dnslist[bl.example.test]=127.0.0.10"]
policy = "ACCEPTED"

[[hat.lists]]
group = "BLACKLIST"
senders = ["dnslist[bl.example.test]"]
policy = "BLOCKED"

[[hat.lists]]
group = "ALL"
senders = ["ALL"]
policy = "ACCEPTED"
{COMMON}
"#,
        listener("lists", port, "lists"),
    );
    let (_file, server) = start(&dns, port, &config);

    // Listed (code 127.0.0.2): not the code groups, the plain one: BLOCKED.
    let (mut blocked, banner) = greet(addr(port), DNSLIST_LISTED_IP);
    assert_eq!(banner.code, 554, "{banner:?}");
    assert!(banner.text().contains("Access denied"), "{banner:?}");
    let mail = blocked.cmd("MAIL FROM:<a@client.test>").unwrap();
    assert_eq!(mail.code, 503, "a rejected client may not start mail: {mail:?}");
    assert_eq!(blocked.cmd("QUIT").unwrap().code, 221);
    let line = nth_hat_line(&server, 1);
    assert_eq!(field(&line, "group"), Some("BLACKLIST"), "{line}");
    assert_eq!(field(&line, "entry"), Some("dnslist[bl.example.test]"), "{line}");
    assert_eq!(field(&line, "policy"), Some("BLOCKED"), "{line}");
    assert_eq!(field(&line, "outcome"), Some("rejected"), "{line}");

    // Listed with code 127.0.0.10: the return-code entry for .10 matches,
    // the one for .3/.4 before it does not.
    expect_group(&server, port, 2, DNSLIST_CODE10_IP, "CODE10", "dnslist[bl.example.test]=127.0.0.10", "-");

    // Not listed (NXDOMAIN): falls through every list group.
    expect_group(&server, port, 3, "127.0.0.3", "ALL", "ALL", "-");
    assert!(server.event_lines("dnslist").is_empty(), "a clean NXDOMAIN is no error:\n{}", server.log());

    // 127.255.255.254 is an error answer: not a listing, logged.
    expect_group(&server, port, 4, DNSLIST_ERROR_IP, "ALL", "ALL", "-");
    let mut dnslist = Vec::new();
    assert!(
        wait_until(WAIT, || {
            dnslist = server.event_lines("dnslist");
            !dnslist.is_empty()
        }),
        "no dnslist line for the error answer:\n{}",
        server.log()
    );
    assert_eq!(dnslist.len(), 1, "{dnslist:#?}");
    assert_eq!(field(&dnslist[0], "zone"), Some(DNSLIST_ZONE), "{}", dnslist[0]);
    assert_eq!(field(&dnslist[0], "result"), Some("Error"), "{}", dnslist[0]);
    let conn = field(&nth_hat_line(&server, 4), "conn").unwrap().to_owned();
    assert_eq!(field(&dnslist[0], "conn"), Some(conn.as_str()), "{}", dnslist[0]);
}

#[test]
fn a_dns_list_that_never_answers_holds_the_banner_no_longer_than_the_bound() {
    const BOUND_MS: u64 = 300;
    let dns = TestDns::start(&Zone::standard());
    let port = free_port();
    let config = format!(
        r#"
[dns]
hat_lookup_timeout_ms = {BOUND_MS}

{}
[[hat.slow]]
group = "LISTED"
senders = ["dnslist[slowbl.example.test]", "dnslist[bl.example.test]"]
policy = "BLOCKED"

[[hat.slow]]
group = "TEMPFAIL"
senders = ["ptr:tempfail"]
policy = "ACCEPTED"

[[hat.slow]]
group = "ALL"
senders = ["ALL"]
policy = "ACCEPTED"
{COMMON}
"#,
        listener("slow", port, "slow"),
    );
    let (_file, server) = start(&dns, port, &config);
    let bound = Duration::from_millis(BOUND_MS) + Duration::from_secs(2);

    // Not in bl, no answer from slowbl: not listed, 220 within the bound.
    let started = Instant::now();
    let (mut client, banner) = greet(addr(port), "127.0.0.3");
    let waited = started.elapsed();
    assert_eq!(banner.code, 220, "{banner:?}");
    assert!(waited < bound, "banner held {waited:?} with hat_lookup_timeout_ms = {BOUND_MS}");
    assert!(banner.text().contains("group=ALL "), "{banner:?}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    let line = nth_hat_line(&server, 1);
    assert_eq!(field(&line, "group"), Some("ALL"), "{line}");
    let lines = server.wait_for_log("slowbl.example.test", 1, WAIT);
    let timed_out = lines.iter().find(|l| l.split_whitespace().nth(2) == Some("dnslist")).expect("a dnslist line");
    assert_eq!(field(timed_out, "result"), Some("TimedOut"), "{timed_out}");

    // Listed in bl, queried in parallel with the silent slowbl: BLOCKED,
    // also within the bound.
    let started = Instant::now();
    let (mut client, banner) = greet(addr(port), DNSLIST_LISTED_IP);
    let waited = started.elapsed();
    assert_eq!(banner.code, 554, "{banner:?}");
    assert!(waited < bound, "banner held {waited:?} with hat_lookup_timeout_ms = {BOUND_MS}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    let line = nth_hat_line(&server, 2);
    assert_eq!(field(&line, "group"), Some("LISTED"), "{line}");
    assert_eq!(field(&line, "entry"), Some("dnslist[bl.example.test]"), "{line}");

    // A PTR that never answers is held to the same bound: tempfail.
    let started = Instant::now();
    let (mut client, banner) = greet(addr(port), PTR_TIMEOUT_IP);
    let waited = started.elapsed();
    assert_eq!(banner.code, 220, "{banner:?}");
    assert!(waited < bound, "banner held {waited:?} with hat_lookup_timeout_ms = {BOUND_MS}");
    assert!(banner.text().contains("group=TEMPFAIL "), "{banner:?}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    let line = nth_hat_line(&server, 3);
    assert_eq!(field(&line, "ptr"), Some("tempfail"), "{line}");
}

/// DNS queries sent plus cache hits, all types: every lookup the resolver
/// was asked for.
fn dns_lookups(admin: SocketAddr) -> u64 {
    scrape(admin)
        .lines()
        .filter(|l| l.starts_with("portcullis_dns_queries_total{") || l.starts_with("portcullis_dns_cache_hits_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap_or_else(|_| panic!("{l}")))
        .sum()
}

#[test]
fn a_client_decided_by_its_address_causes_no_dns_query() {
    let dns = TestDns::start(&Zone::standard());
    let (port, admin_port) = (free_port(), free_port());
    let admin = addr(admin_port);
    let config = format!(
        r#"
[dns]
hat_lookup_timeout_ms = 5000

{}
[[hat.lazy]]
group = "BYADDRESS"
senders = ["127.0.0.20", "127.0.0.40-49"]
policy = "ACCEPTED"

[[hat.lazy]]
group = "BLACKLIST"
senders = ["dnslist[bl.example.test]", "ptr:none"]
policy = "BLOCKED"

[[hat.lazy]]
group = "ALL"
senders = ["ALL"]
policy = "ACCEPTED"
{COMMON}
"#,
        listener("lazy", port, "lazy"),
    );
    let file = ConfigFile::with_text(&config);
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .dns(dns.addr())
        .admin_listen(&admin.to_string())
        .start();
    assert!(wait_until(WAIT, || is_listening(admin_port)), "admin listener not up:\n{}", server.log());

    for (nth, source, entry) in [(1, "127.0.0.20", "127.0.0.20"), (2, "127.0.0.45", "127.0.0.40-49"), (3, "127.0.0.49", "127.0.0.40-49")] {
        expect_group(&server, port, nth, source, "BYADDRESS", entry, "-");
    }
    assert_eq!(dns_lookups(admin), 0, "DNS asked for clients the address decided:\n{}", scrape(admin));

    // The control: a client the address does not decide needs the DNS
    // list and the PTR, and the counters see it (so the zero above means
    // something).
    let (mut client, banner) = greet(addr(port), NO_PTR_IP);
    assert_eq!(banner.code, 554, "ptr:none is BLACKLIST: {banner:?}");
    let _ = client.cmd("QUIT");
    let line = nth_hat_line(&server, 4);
    assert_eq!(field(&line, "ptr"), Some("none"), "{line}");
    assert_eq!(field(&line, "entry"), Some("ptr:none"), "{line}");
    let mut seen = 0;
    assert!(
        wait_until(WAIT, || {
            seen = dns_lookups(admin);
            seen > 0
        }),
        "no DNS lookup counted for a client that needed one:\n{}",
        scrape(admin)
    );
}

#[test]
fn remote_host_in_the_banner_stays_within_the_same_bound() {
    // The DNS list times out at the HAT bound; the policy it falls to shows
    // $RemoteHost, whose PTR (127.0.0.13) never answers either. Both
    // lookups share the one bound: the banner is not held twice as long.
    // The resolver's own timeout is far beyond the bound so only the bound
    // can end the wait.
    const BOUND_MS: u64 = 2500;
    let dns = TestDns::start(&Zone::standard());
    let port = free_port();
    let config = format!(
        r#"
[dns]
timeout_ms = 20000
attempts = 1
hat_lookup_timeout_ms = {BOUND_MS}

{}
[[hat.host]]
group = "LISTED"
senders = ["dnslist[slowbl.example.test]"]
policy = "BLOCKED"

[[hat.host]]
group = "ALL"
senders = ["ALL"]
policy = "NAMED"
{COMMON}
[policy.NAMED]
banner_text = "$Hostname hello $RemoteHost [$RemoteIP] group=$Group policy=$Policy"
"#,
        listener("host", port, "host"),
    );
    let (_file, server) = start(&dns, port, &config);
    let bound = Duration::from_millis(BOUND_MS) + Duration::from_secs(2);
    let started = Instant::now();
    let (mut client, banner) = greet(addr(port), PTR_TIMEOUT_IP);
    let waited = started.elapsed();
    assert_eq!(banner.code, 220, "{banner:?}");
    assert!(banner.text().contains(&format!("hello unknown [{PTR_TIMEOUT_IP}]")), "{banner:?}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    assert!(waited < bound, "banner held {waited:?} with hat_lookup_timeout_ms = {BOUND_MS}");
    let line = nth_hat_line(&server, 1);
    assert_eq!(field(&line, "group"), Some("ALL"), "{line}");
    assert_eq!(field(&line, "ptr"), Some("tempfail"), "{line}");
}

#[test]
fn forward_confirmation_tries_every_ptr_name_and_keeps_its_failures_apart() {
    // Beyond the standard zone: 127.0.0.17 has two PTR names, only the
    // second resolving back to it; 127.0.0.18's PTR name does not answer
    // its forward query (tempfail, not mismatch); 127.0.0.19's PTR name
    // does not exist (mismatch).
    let zone = Zone::standard()
        .ptr("127.0.0.17", MISMATCH_NAME)
        .ptr("127.0.0.17", "second.example.test")
        .a("second.example.test", "127.0.0.17")
        .ptr("127.0.0.18", TIMEOUT_DOMAIN)
        .ptr("127.0.0.19", NXDOMAIN_DOMAIN);
    let dns = TestDns::start(&zone);
    let port = free_port();
    let config = format!(
        r#"
[dns]
timeout_ms = 1000
attempts = 1
hat_lookup_timeout_ms = 5000

{}
[[hat.multi]]
group = "SECOND"
senders = ["second.example.test"]
policy = "ACCEPTED"

[[hat.multi]]
group = "TEMPFAIL"
senders = ["ptr:tempfail"]
policy = "ACCEPTED"

[[hat.multi]]
group = "MISMATCH"
senders = ["ptr:mismatch"]
policy = "ACCEPTED"
{COMMON}
"#,
        listener("multi", port, "multi"),
    );
    let (_file, server) = start(&dns, port, &config);
    expect_group(&server, port, 1, "127.0.0.17", "SECOND", "second.example.test", "second.example.test");
    expect_group(&server, port, 2, "127.0.0.18", "TEMPFAIL", "ptr:tempfail", "tempfail");
    expect_group(&server, port, 3, "127.0.0.19", "MISMATCH", "ptr:mismatch", "mismatch");
}

#[test]
fn a_dns_list_that_fails_is_not_a_listing_and_says_why() {
    // sfbl.example.test answers SERVFAIL (well within the bound): never a
    // listing; the `dnslist` line says it failed, not that it timed out.
    let dns = TestDns::start(&Zone::standard().servfail("sfbl.example.test"));
    let port = free_port();
    let config = format!(
        r#"
[dns]
timeout_ms = 3000
attempts = 1
hat_lookup_timeout_ms = 5000

{}
[[hat.sf]]
group = "LISTED"
senders = ["dnslist[sfbl.example.test]"]
policy = "BLOCKED"

[[hat.sf]]
group = "ALL"
senders = ["ALL"]
policy = "ACCEPTED"
{COMMON}
"#,
        listener("sf", port, "sf"),
    );
    let (_file, server) = start(&dns, port, &config);
    expect_group(&server, port, 1, DNSLIST_LISTED_IP, "ALL", "ALL", "-");
    let mut lines = Vec::new();
    assert!(
        wait_until(WAIT, || {
            lines = server.event_lines("dnslist");
            !lines.is_empty()
        }),
        "no dnslist line for a failing list:\n{}",
        server.log()
    );
    assert_eq!(field(&lines[0], "zone"), Some("sfbl.example.test"), "{}", lines[0]);
    assert_eq!(field(&lines[0], "result"), Some("TempFail"), "{}", lines[0]);
    assert_eq!(field(&lines[0], "treated"), Some("not listed"), "{}", lines[0]);
}
