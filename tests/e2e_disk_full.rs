//! Disk full: with the spool on a small tmpfs, a message that does not fit
//! gets 452 4.3.1 (never 250), the ones that fit are delivered, and once
//! delivery frees their segment, new mail is accepted again.
//!
//! Needs root for `mount -t tmpfs` (CI runs as root); fails, not skips, without it.

mod common;

use std::process::Command;

use common::*;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new("tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(status.success(), "mount -t tmpfs failed (this test needs root)");
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn message(n: usize, size: usize) -> Vec<u8> {
    let mut m = format!("Subject: fill {n}\r\n\r\n").into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxy\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

#[test]
fn full_disk_answers_452_and_recovers_after_delivery() {
    let fs = Tmpfs::mount("2m");
    let sink_port = free_port();
    // Downstream down at first: accepted mail stays in the spool and fills it.
    let mut server = Portcullis::builder()
        .spool_dir(&fs.dir.path().join("spool"))
        .route_hosts("*", &[&format!("127.0.0.1:{sink_port}")])
        .cores(1)
        .retry_secs(1, 1)
        .start();

    let mut accepted = Vec::new();
    let mut refusal = None;
    for n in 0..20 {
        let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
        let reply = client.send_mail("s@sender.test", &["user@example.test"], &message(n, 300 * 1024)).unwrap();
        if reply.code == 250 {
            accepted.push(n);
        } else {
            refusal = Some(reply);
            break;
        }
    }
    let refusal = refusal.expect("a 2 MiB spool cannot take 20 messages of 300 KiB");
    assert_eq!(refusal.code, 452, "disk full must be 452: {:?}", refusal.lines);
    assert!(refusal.contains("4.3.1"), "{:?}", refusal.lines);
    assert!(!accepted.is_empty(), "some messages fit before the disk filled");

    // Downstream comes up: every accepted message is delivered, none refused.
    let sink = Sink::builder().port(sink_port).start();
    let got = sink.wait_for_messages(accepted.len(), WAIT);
    assert_eq!(got.len(), accepted.len());
    for n in &accepted {
        assert!(got.iter().any(|m| m.header("Subject").as_deref() == Some(&format!("fill {n}"))), "message {n} lost");
    }
    // Their segment is deleted once finished, so there is room again.
    let ok = wait_until(WAIT, || {
        let (mut client, _) = RawSmtp::connect(server.addr()).unwrap();
        client.send_mail("s@sender.test", &["user@example.test"], &message(99, 300 * 1024)).unwrap().code == 250
    });
    assert!(ok, "space was not reclaimed after delivery\n{}", server.log());
    assert!(server.log().contains("store-error"), "the refusal is in the mail log");
    server.stop(std::time::Duration::from_secs(5));
}
