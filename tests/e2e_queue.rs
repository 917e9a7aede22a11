//! End-to-end: the queue commands (issue 10 item 6) through the CLI and
//! the admin listener, on two shards. dest.test routes to a port where
//! nothing listens (its mail is deferred, retried only every 300 s),
//! other.test to a second closed port, sender.test (the senders' domain)
//! to an smtp-sink that takes the bounces.
//!
//! - `queue list` counts messages and recipients per destination with the
//!   last error, and lists each message; `--destination` narrows the list.
//! - `queue show QID` prints one message's owed recipients.
//! - `queue delete QID`: the message is finished undelivered (`deleted`
//!   line, gone from the list).
//! - `queue bounce QID`: the sender gets a bounce now.
//! - `queue flush DOMAIN`: once the downstream is up, the deferred mail is
//!   delivered at once instead of at its next retry 300 s away.
//! - /metrics: deliveries by destination and result, jobs queued, bounces.

mod common;

use common::*;
use std::net::SocketAddr;

const DEST: &str = "dest.test";
const OTHER: &str = "other.test";
const SENDERS: &str = "sender.test";

fn queue(admin: SocketAddr, args: &[&str]) -> String {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    let admin = admin.to_string();
    all.extend_from_slice(&["--admin", &admin]);
    let out = run_portcullis(&all, WAIT);
    assert_eq!(out.code(), Some(0), "portcullis {all:?}: {}{}", out.stdout, out.stderr);
    out.stdout
}

fn send(server: &Portcullis, to: &str) -> String {
    let sent = Swaks::new(server.addr()).from(&format!("alice@{SENDERS}")).to(to).header("Subject: queued").run();
    assert_eq!(sent.final_code(), Some(250), "{}", sent.transcript());
    sent.queue_id().unwrap()
}

#[test]
fn list_show_delete_bounce_and_flush_through_the_admin_listener() {
    let senders = Sink::start();
    let (dest_port, other_port) = (free_port(), free_port());
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let text = format!(
        "relay_domains = [{DEST:?}, {OTHER:?}, {SENDERS:?}]\n\n[routes]\n{DEST:?} = [\"127.0.0.1:{dest_port}\"]\n{OTHER:?} = [\"127.0.0.1:{other_port}\"]\n{SENDERS:?} = [{:?}]\n",
        senders.host_port()
    );
    let file = ConfigFile::with_text(&text);
    let server = Portcullis::builder().config(file.path()).routes_from_config().cores(2).retry_secs(300, 300).admin_listen(&admin.to_string()).start();
    assert!(wait_until(WAIT, || is_listening(admin.port())), "{}", server.log());
    let kept = send(&server, &format!("bob@{DEST}"));
    let deleted = send(&server, &format!("carol@{DEST}"));
    let bounced = send(&server, &format!("dave@{OTHER}"));
    server.wait_for_log(" retry qid=", 3, WAIT);

    let list = queue(admin, &["list"]);
    assert!(list.contains(&format!("destination={DEST} messages=2 rcpts=2")), "{list}");
    assert!(list.contains(&format!("destination={OTHER} messages=1 rcpts=1")), "{list}");
    assert!(list.contains("last_error=\"cannot connect to 127.0.0.1:"), "the connection error is shown\n{list}");
    for qid in [&kept, &deleted, &bounced] {
        assert!(list.contains(&format!("qid={qid} ")), "{qid}\n{list}");
    }
    let only = queue(admin, &["list", "--destination", OTHER]);
    assert!(only.contains(&format!("qid={bounced} ")) && !only.contains(&format!("qid={kept} ")), "{only}");
    let show = queue(admin, &["show", &kept]);
    assert!(show.contains(&format!("to=<bob@{DEST}>")) && show.contains("attempts=1"), "{show}");

    assert_eq!(queue(admin, &["delete", &deleted]), "deleted=1\n");
    server.wait_for_log(&format!("deleted qid={deleted}"), 1, WAIT);
    assert!(wait_until(WAIT, || !queue(admin, &["list"]).contains(&format!("qid={deleted} "))));

    assert_eq!(queue(admin, &["bounce", &bounced]), "bounced=1\n");
    let got = senders.wait_for_messages(1, WAIT);
    assert!(got[0].text().contains(&format!("Final-Recipient: rfc822; dave@{OTHER}")), "{}", got[0].text());

    // The downstream comes up; without the flush the retry is 300 s away.
    let dest = Sink::builder().port(dest_port).start();
    assert_eq!(queue(admin, &["flush", DEST]), "flushed=1\n");
    let delivered = dest.wait_for_messages(1, WAIT);
    assert_eq!(delivered[0].recipients(), [format!("bob@{DEST}")]);
    assert!(wait_until(WAIT, || queue(admin, &["list"]).trim().is_empty()), "{}", queue(admin, &["list"]));
    assert_eq!(queue(admin, &["show", &kept]), format!("qid={kept} not queued\n"));

    // Per destination (all "default" here: no [destination] table).
    let page = scrape(admin);
    let series = |s: &str| sample(&page, s).unwrap_or_else(|| panic!("{s}\n{page}"));
    // bob, and the bounce to alice; dave was bounced (failed); every first try deferred.
    assert_eq!(series("portcullis_destination_deliveries_total{destination=\"default\",result=\"delivered\"}"), 2.0);
    assert_eq!(series("portcullis_destination_deliveries_total{destination=\"default\",result=\"failed\"}"), 1.0);
    assert!(series("portcullis_destination_deliveries_total{destination=\"default\",result=\"deferred\"}") >= 3.0);
    assert_eq!(series("portcullis_destination_queued{destination=\"default\"}"), 0.0);
    assert_eq!(series("portcullis_bounces_total{kind=\"failed\"}"), 1.0);
    // The pooled connections to the two sinks stay open (idle 30 s): 1 or 2,
    // depending on whether both deliveries ran on one shard.
    let open = series("portcullis_destination_connections{destination=\"default\"}");
    assert!((1.0..=2.0).contains(&open), "{open}\n{page}");
}
