//! The on-disk record format of spool segments, pure encode/decode.
//!
//! A segment is a sequence of framed records: `len u32 LE | crc32 u32 LE |
//! payload`. The payload's first byte is its kind: a message (envelope and
//! the full message bytes) or a done marker (recipients finished). A record
//! whose length runs past the file or whose CRC does not match ends the
//! segment: that is a torn tail from a crash, written but never acknowledged.

use std::net::SocketAddr;

use crate::message::{BodyType, Envelope, QueueId};

const KIND_MESSAGE: u8 = 1;
const KIND_DONE: u8 = 2;
const FRAME_BYTES: usize = 8;

/// One decoded record.
#[derive(Debug, PartialEq)]
pub enum Record {
    /// `accepted_secs`: Unix time we said 250 (the queue lifetime counts from it).
    Message { queue_id: QueueId, envelope: Envelope, accepted_secs: u64, data: Vec<u8> },
    /// These recipient indices of `queue_id` are finished (delivered or failed).
    Done { queue_id: QueueId, recipients: Vec<u32> },
}

/// Append a framed message record to `out`. Returns where `data` starts,
/// counted from the start of the record (for the message's `BodyLocation`).
pub fn encode_message(out: &mut Vec<u8>, queue_id: &QueueId, envelope: &Envelope, accepted_secs: u64, data: &[u8]) -> usize {
    let start = out.len();
    let mut data_at = 0;
    frame(out, |p| {
        p.push(KIND_MESSAGE);
        put_str(p, &queue_id.0);
        p.extend_from_slice(&accepted_secs.to_le_bytes());
        put_str(p, &envelope.connection_id);
        put_str(p, &envelope.peer.to_string());
        put_str(p, &envelope.helo);
        p.push(envelope.esmtp as u8);
        put_str(p, &envelope.mail_from);
        p.push(match envelope.body_type {
            BodyType::SevenBit => 0,
            BodyType::EightBitMime => 1,
            BodyType::BinaryMime => 2,
        });
        p.push(envelope.smtputf8 as u8);
        p.extend_from_slice(&(envelope.recipients.len() as u32).to_le_bytes());
        for r in &envelope.recipients {
            put_str(p, r);
        }
        data_at = p.len() + 4 - start;
        put_bytes(p, data);
    });
    data_at
}

/// Append a framed done marker to `out`.
pub fn encode_done(out: &mut Vec<u8>, queue_id: &QueueId, recipients: &[u32]) {
    frame(out, |p| {
        p.push(KIND_DONE);
        put_str(p, &queue_id.0);
        p.extend_from_slice(&(recipients.len() as u32).to_le_bytes());
        for r in recipients {
            p.extend_from_slice(&r.to_le_bytes());
        }
    });
}

fn frame(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_BYTES]);
    fill(out);
    let payload = &out[start + FRAME_BYTES..];
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
}

fn put_bytes(p: &mut Vec<u8>, b: &[u8]) {
    p.extend_from_slice(&(b.len() as u32).to_le_bytes());
    p.extend_from_slice(b);
}

fn put_str(p: &mut Vec<u8>, s: &str) {
    put_bytes(p, s.as_bytes());
}

/// Decode every intact record of a segment, stopping at the first torn or
/// corrupt one. Returns the records and the byte length of the intact prefix.
pub fn decode_all(segment: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while segment.len() - at >= FRAME_BYTES {
        let len = u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(segment[at + 4..at + 8].try_into().unwrap());
        let Some(payload) = segment.get(at + FRAME_BYTES..at + FRAME_BYTES + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match decode_payload(payload) {
            Some(r) => records.push(r),
            None => break,
        }
        at += FRAME_BYTES + len;
    }
    (records, at)
}

fn decode_payload(p: &[u8]) -> Option<Record> {
    let mut r = Reader { p, at: 1 };
    match *p.first()? {
        KIND_MESSAGE => {
            let queue_id = QueueId(r.string()?);
            let accepted_secs = r.u64()?;
            let connection_id = r.string()?;
            let peer: SocketAddr = r.string()?.parse().ok()?;
            let helo = r.string()?;
            let esmtp = r.byte()? != 0;
            let mail_from = r.string()?;
            let body_type = match r.byte()? {
                0 => BodyType::SevenBit,
                1 => BodyType::EightBitMime,
                2 => BodyType::BinaryMime,
                _ => return None,
            };
            let smtputf8 = r.byte()? != 0;
            let n = r.u32()? as usize;
            let mut recipients = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                recipients.push(r.string()?);
            }
            let data = r.bytes()?.to_vec();
            let envelope = Envelope { connection_id, peer, helo, esmtp, mail_from, body_type, smtputf8, recipients };
            Some(Record::Message { queue_id, envelope, accepted_secs, data })
        }
        KIND_DONE => {
            let queue_id = QueueId(r.string()?);
            let n = r.u32()? as usize;
            let mut recipients = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                recipients.push(r.u32()?);
            }
            Some(Record::Done { queue_id, recipients })
        }
        _ => None,
    }
}

struct Reader<'a> {
    p: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.p.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            connection_id: "C1".into(),
            peer: "127.0.0.1:5000".parse().unwrap(),
            helo: "client.test".into(),
            esmtp: true,
            mail_from: "".into(),
            body_type: BodyType::EightBitMime,
            smtputf8: true,
            recipients: vec!["a@example.test".into(), "b@example.test".into()],
        }
    }

    #[test]
    fn records_round_trip() {
        let mut seg = Vec::new();
        encode_message(&mut seg, &QueueId("Q1".into()), &envelope(), 1_795_330_800, b"Subject: x\r\n\r\nhi\r\n");
        encode_done(&mut seg, &QueueId("Q1".into()), &[1]);
        let (records, len) = decode_all(&seg);
        assert_eq!(len, seg.len());
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0],
            Record::Message {
                queue_id: QueueId("Q1".into()),
                envelope: envelope(),
                accepted_secs: 1_795_330_800,
                data: b"Subject: x\r\n\r\nhi\r\n".to_vec()
            }
        );
        assert_eq!(records[1], Record::Done { queue_id: QueueId("Q1".into()), recipients: vec![1] });
    }

    #[test]
    fn torn_tail_and_corruption_end_the_segment() {
        let mut seg = Vec::new();
        encode_message(&mut seg, &QueueId("Q1".into()), &envelope(), 1, b"one");
        let first = seg.len();
        encode_message(&mut seg, &QueueId("Q2".into()), &envelope(), 2, b"two");
        // A crash in the middle of the second record.
        let (records, len) = decode_all(&seg[..seg.len() - 3]);
        assert_eq!((records.len(), len), (1, first));
        // A flipped bit in the second record.
        let mut bad = seg.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decode_all(&bad).0.len(), 1);
    }
}
