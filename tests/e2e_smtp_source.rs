//! Postfix's `smtp-source` as the client: concurrent sessions, several
//! messages per connection, 3 recipients each, through `--cores 2` to
//! smtp-sink. Every recipient of every message arrives once per message,
//! each with one Received header of ours, and the mail log queued them all.

mod common;

use std::time::Duration;

use common::*;

const MESSAGES: usize = 400;
const RECIPIENTS: usize = 3;

#[test]
fn smtp_source_load_is_relayed_completely() {
    let sink = Sink::start();
    let server = Portcullis::builder().cores(2).route("*", &sink).start();
    let out = run_smtp_source(
        server.addr(),
        &[
            "-s", "10", // 10 concurrent sessions
            "-m", &MESSAGES.to_string(),
            "-r", &RECIPIENTS.to_string(),
            "-l", "2048",
            "-d", // several messages per connection (RSET-free reuse on our side)
            "-f", "load@client.test",
            "-t", "r@example.test",
            "-M", "client.test",
        ],
        Duration::from_secs(120),
    );
    assert!(out.success(), "smtp-source saw an unexpected reply: {out:?}\n{}", server.log());
    let messages = sink.wait_for_recipients(MESSAGES * RECIPIENTS, WAIT);
    assert_eq!(messages.len(), MESSAGES, "one message at the sink per message sent");
    for m in &messages {
        assert_eq!(m.rcpt_args.len(), RECIPIENTS, "all recipients in one downstream transaction");
        // smtp-sink prepends its own Received; ours is the one below it.
        let ours = m.headers().into_iter().filter(|(n, v)| n.eq_ignore_ascii_case("Received") && v.contains("(Portcullis)")).count();
        assert_eq!(ours, 1, "exactly one Received header of ours: {:?}", m.headers());
    }
    assert_eq!(server.event_lines("queued").len(), MESSAGES);
    // Every queued message was also removed from the spool once delivered.
    assert!(wait_until(WAIT, || server.event_lines("removed").len() == MESSAGES), "{}", server.log());
}
