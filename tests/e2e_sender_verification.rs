//! End to end: envelope sender verification at MAIL FROM against a real
//! unbound (`Zone::standard()`, tests/common/dns.rs).
//!
//! One listener; the HAT puts each client source address under its own
//! mail flow policy (address entries only, so no HAT DNS is involved):
//!
//! | source      | policy   | sender_dns_verification | exceptions | replies  |
//! |-------------|----------|-------------------------|------------|----------|
//! | 127.0.0.30  | VERIFY   | true                    | used       | defaults |
//! | 127.0.0.31  | NODNS    | false                   | used       | defaults |
//! | 127.0.0.32  | NOEXC    | true                    | ignored    | defaults |
//! | 127.0.0.33  | CUSTOM   | true                    | used       | custom   |
//!
//! Under VERIFY: a domain with MX → 250; with only an A record → 250;
//! NXDOMAIN → 553 5.1.8 with `<$EnvelopeSender>` substituted in the
//! default text; NODATA (no MX, no A) → 553 too; SERVFAIL → 451 4.1.8;
//! timeout → 451 (each twice: a temporary failure is never remembered as
//! "does not exist"); `user@localhost` and `user@[127.0.0.1]` → 553 5.1.7;
//! `<>` → 250; a CNAME to a name with an A record, and a domain in upper
//! case, → 250. The exception table: an `accept` row (a full address, a
//! domain) lets an NXDOMAIN sender through; a `reject` row refuses with its
//! code and text even for a domain with MX (in any case; a `.subdomain`
//! row without code refuses with 553 5.7.1 and spares the domain itself),
//! and also under NODNS, where DNS
//! verification is off and an NXDOMAIN sender passes;
//! `use_sender_verification_exceptions = false` (NOEXC) ignores both rows.
//! CUSTOM's own codes and texts replace the defaults. A verified sender's
//! message goes all the way to the downstream (swaks from 127.0.0.30), and
//! each refusal is one `sender` mail log line naming its rule. A client
//! that pipelines MAIL, RCPT and DATA (RFC 2920) behind a sender whose
//! verdict takes a DNS timeout gets 451, 503, 5xx: nothing is accepted
//! while the verdict is pending.
//!
//! Timing: nothing sleeps. The resolver's per-attempt timeout is lowered to
//! 1 s (one attempt) so the timeout case takes about a second.

mod common;

use common::dns::*;
use common::*;
use std::net::{Ipv4Addr, SocketAddr};

const VERIFY: &str = "127.0.0.30";
const NODNS: &str = "127.0.0.31";
const NOEXC: &str = "127.0.0.32";
const CUSTOM: &str = "127.0.0.33";

/// A domain of the static example.test zone with no data: NXDOMAIN, and
/// the domain row of the exception table.
const EXCEPTED_DOMAIN: &str = "gone.example.test";
/// A full-address row of the exception table, in an NXDOMAIN domain.
const EXCEPTED_ADDRESS: &str = "friend@nxdomain.example.test";
/// The reject row: a sender whose domain has an MX.
const REFUSED_ADDRESS: &str = "bad@withmx.example.test";
/// A `.subdomain` reject row without code or text: its subdomains are
/// refused with the table's default reply, the domain itself is not.
const REFUSED_PARENT: &str = "spam.example.test";

fn config(port: u16) -> String {
    format!(
        r#"
[dns]
timeout_ms = 1000
attempts = 1

[[listener]]
name = "in"
address = "127.0.0.1:{port}"
type = "public"
hat = "in"
rat = "in"

[[hat.in]]
group = "VERIFY"
senders = ["{VERIFY}"]
policy = "VERIFY"

[[hat.in]]
group = "NODNS"
senders = ["{NODNS}"]
policy = "NODNS"

[[hat.in]]
group = "NOEXC"
senders = ["{NOEXC}"]
policy = "NOEXC"

[[hat.in]]
group = "CUSTOM"
senders = ["{CUSTOM}"]
policy = "CUSTOM"

[[rat.in]]
recipient = "example.test"
action = "accept"

[[rat.in]]
recipient = "ALL"
action = "reject"

[default_policy]
sender_dns_verification = true

[policy.VERIFY]

[policy.NODNS]
sender_dns_verification = false

[policy.NOEXC]
use_sender_verification_exceptions = false

[policy.CUSTOM]
sender_malformed_code = 501
sender_malformed_text = "Sender $EnvelopeSender has no usable domain"
sender_nxdomain_code = 550
sender_nxdomain_text = "No such sender domain for $EnvelopeSender"
sender_servfail_code = 450
sender_servfail_text = "Cannot check $EnvelopeSender now"

[[sender_verification_exception]]
match = "{EXCEPTED_ADDRESS}"
action = "accept"

[[sender_verification_exception]]
match = "{EXCEPTED_DOMAIN}"
action = "accept"

[[sender_verification_exception]]
match = "{REFUSED_ADDRESS}"
action = "reject"
code = 550
text = "Sender refused by policy"

[[sender_verification_exception]]
match = ".{REFUSED_PARENT}"
action = "reject"
"#
    )
}

struct Setup {
    _dns: TestDns,
    _file: ConfigFile,
    sink: Sink,
    server: Portcullis,
}

fn setup() -> Setup {
    let dns = TestDns::start(&Zone::standard());
    let sink = Sink::start();
    let port = free_port();
    let file = ConfigFile::with_text(&config(port));
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .dns(dns.addr())
        .route("*", &sink)
        .start();
    Setup { _dns: dns, _file: file, sink, server }
}

/// A session from `source`, greeted and past EHLO.
fn session(server: SocketAddr, source: &str) -> RawSmtp {
    let source: Ipv4Addr = source.parse().unwrap();
    let (mut client, banner) = RawSmtp::connect_from(server, source).unwrap();
    assert_eq!(banner.code, 220, "{source}: {banner:?}");
    assert_eq!(client.cmd("EHLO client.test").unwrap().code, 250);
    client
}

/// `MAIL FROM:<sender>`; after a 250 the transaction is reset so the next
/// MAIL may follow.
fn mail(client: &mut RawSmtp, sender: &str) -> Reply {
    let reply = client.cmd(&format!("MAIL FROM:<{sender}>")).unwrap();
    if reply.code == 250 {
        assert_eq!(client.cmd("RSET").unwrap().code, 250);
    }
    reply
}

/// `code enhanced text` exactly, e.g. "553 5.1.8 Domain of ...".
fn assert_reply(reply: &Reply, expected: &str, what: &str) {
    let got = format!("{} {}", reply.code, reply.text());
    assert_eq!(got, expected, "{what}");
}

fn assert_passes(client: &mut RawSmtp, sender: &str, what: &str) {
    let reply = mail(client, sender);
    assert_eq!(reply.code, 250, "{what}: <{sender}>: {reply:?}");
}

/// The `sender` mail log lines, once there are at least `n`.
fn sender_lines(server: &Portcullis, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let found = wait_until(WAIT, || {
        lines = server.event_lines("sender");
        lines.len() >= n
    });
    assert!(found, "{} of {n} sender lines:\n{}", lines.len(), server.log());
    lines
}

#[test]
fn sender_domains_are_verified_per_class_with_the_default_replies() {
    let s = setup();
    let mut client = session(s.server.addr(), VERIFY);

    assert_passes(&mut client, &format!("user@{MX_DOMAIN}"), "a domain with MX");
    assert_passes(&mut client, &format!("user@{A_ONLY_DOMAIN}"), "a domain with only A");
    assert_passes(&mut client, &format!("user@{CNAME_ALIAS}"), "a CNAME to a name with A");
    assert_passes(&mut client, &format!("User@{}", MX_DOMAIN.to_ascii_uppercase()), "a domain in upper case");
    assert_passes(&mut client, "", "the null sender");

    let sender = format!("user@{NXDOMAIN_DOMAIN}");
    assert_reply(
        &mail(&mut client, &sender),
        &format!("553 5.1.8 Domain of sender address <{sender}> does not exist"),
        "NXDOMAIN",
    );
    let sender = format!("user@{NODATA_DOMAIN}");
    assert_reply(
        &mail(&mut client, &sender),
        &format!("553 5.1.8 Domain of sender address <{sender}> does not exist"),
        "NODATA: no MX, no A",
    );
    // Twice each: a temporary failure is not remembered as "does not
    // exist" (the shard's DNS cache keeps the classes apart).
    for attempt in 1..=2 {
        let sender = format!("user@{SERVFAIL_DOMAIN}");
        assert_reply(
            &mail(&mut client, &sender),
            &format!("451 4.1.8 Domain of sender address <{sender}> does not resolve"),
            &format!("SERVFAIL, attempt {attempt}"),
        );
        let sender = format!("user@{TIMEOUT_DOMAIN}");
        assert_reply(
            &mail(&mut client, &sender),
            &format!("451 4.1.8 Domain of sender address <{sender}> does not resolve"),
            &format!("timeout, attempt {attempt}"),
        );
    }
    for malformed in ["user@localhost", "user@[127.0.0.1]"] {
        assert_reply(
            &mail(&mut client, malformed),
            "553 5.1.7 Domain required for sender address",
            malformed,
        );
    }
    // Refused senders leave the session usable: a good one still passes
    // and its message is delivered.
    assert_eq!(client.cmd(&format!("MAIL FROM:<user@{MX_DOMAIN}>")).unwrap().code, 250);
    assert_eq!(client.cmd("RCPT TO:<rcpt@example.test>").unwrap().code, 250);
    assert_eq!(client.cmd("DATA").unwrap().code, 354);
    client.send(b"Subject: verified\r\n\r\nhi\r\n.\r\n").unwrap();
    let reply = client.read_reply().unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    let messages = s.sink.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1, "{messages:#?}");

    // One `sender` line per refusal, naming the rule.
    let lines = sender_lines(&s.server, 8);
    let rules: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split(" rule=").nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(
        rules,
        ["nxdomain", "nxdomain", "servfail", "servfail", "servfail", "servfail", "malformed", "malformed"],
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| l.contains("group=VERIFY policy=VERIFY")), "{lines:#?}");
}

#[test]
fn a_verified_sender_goes_through_with_swaks() {
    let s = setup();
    let result = Swaks::new(s.server.addr())
        .from(&format!("someone@{A_ONLY_DOMAIN}"))
        .to("rcpt@example.test")
        .arg("--local-interface")
        .arg(VERIFY)
        .run();
    assert_eq!(result.code_for("MAIL"), Some(250), "{}", result.transcript());
    assert_eq!(result.final_code(), Some(250), "{}", result.transcript());
    let messages = s.sink.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1, "{messages:#?}");

    let result = Swaks::new(s.server.addr())
        .from(&format!("someone@{NXDOMAIN_DOMAIN}"))
        .to("rcpt@example.test")
        .arg("--local-interface")
        .arg(VERIFY)
        .run();
    assert_eq!(result.code_for("MAIL"), Some(553), "{}", result.transcript());
    assert_eq!(result.exit_code(), Some(23), "{}", result.transcript());
}

#[test]
fn the_exception_table_accepts_and_rejects_before_dns() {
    let s = setup();
    let refused = "550 5.7.1 Sender refused by policy";

    // VERIFY uses the table: accept rows beat NXDOMAIN, the reject row
    // beats an MX.
    let mut client = session(s.server.addr(), VERIFY);
    assert_passes(&mut client, EXCEPTED_ADDRESS, "accept row (address) for an NXDOMAIN domain");
    assert_passes(&mut client, &format!("anyone@{EXCEPTED_DOMAIN}"), "accept row (domain) for an NXDOMAIN domain");
    let other = format!("other@{NXDOMAIN_DOMAIN}");
    assert_eq!(mail(&mut client, &other).code, 553, "only the address row's sender is excepted");
    assert_reply(&mail(&mut client, REFUSED_ADDRESS), refused, "reject row under VERIFY");
    let shouted = REFUSED_ADDRESS.to_ascii_uppercase();
    assert_reply(&mail(&mut client, &shouted), refused, "rows match in any case");
    assert_passes(&mut client, "", "the null sender is never refused by the table");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);

    // NODNS: no DNS verification, but the reject row still refuses.
    let mut client = session(s.server.addr(), NODNS);
    assert_reply(&mail(&mut client, REFUSED_ADDRESS), refused, "reject row with sender_dns_verification = false");
    assert_passes(&mut client, &format!("user@{NXDOMAIN_DOMAIN}"), "no DNS verification");
    assert_passes(&mut client, "user@localhost", "no DNS verification: no malformed check either");
    let sub = format!("x@mail.{REFUSED_PARENT}");
    let reply = mail(&mut client, &sub);
    assert_eq!(reply.code, 553, "the .subdomain reject row, default code: {reply:?}");
    assert!(reply.text().starts_with("5.7.1 "), "{reply:?}");
    assert_passes(&mut client, &format!("x@{REFUSED_PARENT}"), "a .subdomain row does not match the domain itself");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);

    // NOEXC: the table is ignored both ways.
    let mut client = session(s.server.addr(), NOEXC);
    assert_passes(&mut client, REFUSED_ADDRESS, "reject row ignored (the domain has an MX)");
    assert_eq!(mail(&mut client, EXCEPTED_ADDRESS).code, 553, "accept row ignored (NXDOMAIN)");
    assert_eq!(mail(&mut client, &format!("anyone@{EXCEPTED_DOMAIN}")).code, 553, "domain row ignored (NXDOMAIN)");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);

    // Refusals: VERIFY 3 (nxdomain, exception ×2), NODNS 2 (exception ×2),
    // NOEXC 2 (nxdomain ×2).
    let lines = sender_lines(&s.server, 7);
    assert_eq!(lines.len(), 7, "{lines:#?}");
    let by_row: Vec<&String> = lines.iter().filter(|l| l.contains(" rule=exception ")).collect();
    assert_eq!(by_row.len(), 4, "{lines:#?}");
    assert_eq!(by_row.iter().filter(|l| l.contains(&format!("detail=\"{REFUSED_ADDRESS}\""))).count(), 3, "{lines:#?}");
    assert_eq!(by_row.iter().filter(|l| l.contains(&format!("detail=\".{REFUSED_PARENT}\""))).count(), 1, "{lines:#?}");
}

#[test]
fn a_policy_s_own_codes_and_texts_replace_the_defaults() {
    let s = setup();
    let mut client = session(s.server.addr(), CUSTOM);
    let sender = format!("user@{NXDOMAIN_DOMAIN}");
    assert_reply(&mail(&mut client, &sender), &format!("550 5.1.8 No such sender domain for {sender}"), "custom NXDOMAIN");
    let sender = format!("user@{SERVFAIL_DOMAIN}");
    assert_reply(&mail(&mut client, &sender), &format!("450 4.1.8 Cannot check {sender} now"), "custom SERVFAIL");
    assert_reply(
        &mail(&mut client, "user@localhost"),
        "501 5.1.7 Sender user@localhost has no usable domain",
        "custom malformed",
    );
    assert_passes(&mut client, &format!("user@{MX_DOMAIN}"), "a domain with MX");
    assert_passes(&mut client, "", "the null sender");
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
}

#[test]
fn pipelined_commands_wait_for_a_slow_sender_verdict() {
    // RFC 2920: MAIL, RCPT and DATA in one write. The MAIL verdict takes
    // the resolver's timeout (about 1 s) and is a refusal: the RCPT and
    // DATA after it must not be accepted meanwhile nor after.
    let s = setup();
    let mut client = session(s.server.addr(), VERIFY);
    let sender = format!("user@{TIMEOUT_DOMAIN}");
    client
        .send(format!("MAIL FROM:<{sender}>\r\nRCPT TO:<rcpt@example.test>\r\nDATA\r\n").as_bytes())
        .unwrap();
    let replies = client.read_replies(3).unwrap();
    assert_reply(
        &replies[0],
        &format!("451 4.1.8 Domain of sender address <{sender}> does not resolve"),
        "pipelined MAIL",
    );
    assert_eq!(replies[1].code, 503, "RCPT after a refused MAIL: {replies:?}");
    assert!(replies[2].code >= 500, "DATA without a transaction: {replies:?}");
    // The same pipeline with a sender that verifies goes through.
    client
        .send(format!("MAIL FROM:<user@{MX_DOMAIN}>\r\nRCPT TO:<rcpt@example.test>\r\nDATA\r\n").as_bytes())
        .unwrap();
    let replies = client.read_replies(3).unwrap();
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 354], "{replies:?}");
    client.send(b"Subject: pipelined\r\n\r\nhi\r\n.\r\n").unwrap();
    assert_eq!(client.read_reply().unwrap().code, 250);
    assert_eq!(client.cmd("QUIT").unwrap().code, 221);
    assert_eq!(s.sink.wait_for_messages(1, WAIT).len(), 1);
}
