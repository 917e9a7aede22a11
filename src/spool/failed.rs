//! The failed area: messages a downstream refused permanently (5xx).
//!
//! Bounces come in a later issue; until then a refused message is kept whole
//! in `spool/failed/QUEUEID.eml`, headed by what went wrong, and only after
//! that file is durable is the recipient marked done in the spool log.

use std::io::Write;
use std::path::Path;

use crate::message::{Envelope, QueueId};

/// Write the failed copy and make it durable (file and directory entry).
/// Rare path: plain blocking I/O on the shard is acceptable here.
pub fn keep(spool_dir: &Path, queue_id: &QueueId, envelope: &Envelope, failures: &[(String, String)], data: &[u8]) -> std::io::Result<()> {
    let dir = spool_dir.join("failed");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{queue_id}.eml"));
    let mut head = String::new();
    head.push_str(&format!("X-Portcullis-Queue-Id: {queue_id}\r\n"));
    head.push_str(&format!("X-Portcullis-Mail-From: <{}>\r\n", envelope.mail_from));
    for (rcpt, reason) in failures {
        head.push_str(&format!("X-Portcullis-Failed: <{rcpt}> {}\r\n", reason.replace(['\r', '\n'], " ")));
    }
    // A second failure of the same message (other recipients) appends.
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    f.write_all(head.as_bytes())?;
    f.write_all(data)?;
    f.sync_data()?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}
