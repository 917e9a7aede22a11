//! The on-disk record format of spool segments, pure encode/decode.
//!
//! A segment is a sequence of framed records: `len u32 LE | crc32 u32 LE |
//! payload`. The payload's first byte is its kind: a message (envelope and
//! the full message bytes) or a done marker (recipients finished). A record
//! whose length runs past the file or whose CRC does not match ends the
//! segment: that is a torn tail from a crash, written but never acknowledged.
//!
//! Reading streams: `RecordReader` takes one record at a time from a
//! buffered reader and checks a message's bytes (CRC) as they pass without
//! keeping them, so recovery holds envelopes, never bodies.

use std::io::{self, BufRead};
use std::net::SocketAddr;

use crate::limits;
use crate::message::{BodyType, Envelope, QueueId};

mod dsn;
use dsn::{decode_dsn, encode_dsn, TAG_DSN};

const KIND_MESSAGE: u8 = 1;
const KIND_DONE: u8 = 2;
const FRAME_BYTES: usize = 8;

/// One decoded record.
#[derive(Debug, PartialEq)]
pub enum Record {
    /// `accepted_secs`: Unix time we said 250 (the queue lifetime counts from it).
    /// The message bytes are `body_len` bytes at `body_offset` in the segment.
    Message { queue_id: QueueId, envelope: Envelope, accepted_secs: u64, body_offset: u64, body_len: u64 },
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
        // Appended after the body: a reader that predates it skips it (the
        // CRC covers it), so spools move between versions both ways.
        let extensions = extensions_of(envelope);
        if !envelope.ldap_routing.is_empty() || !extensions.is_empty() {
            put_str(p, &envelope.ldap_routing);
        }
        for (tag, value) in extensions {
            p.push(tag);
            put_bytes(p, &value);
        }
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

/// Envelope fields added after the first format, each `tag u8 | len u32 |
/// bytes` after the LDAP routing query: a reader skips tags it does not
/// know, so a spool written by a newer version still recovers (without
/// that field) and an older spool lacks them (defaults). One tag per field
/// group; a field at its default is not written.
fn extensions_of(envelope: &Envelope) -> Vec<(u8, Vec<u8>)> {
    let mut extensions = Vec::new();
    if let Some(value) = encode_dsn(envelope) {
        extensions.push((TAG_DSN, value));
    }
    extensions.extend(relayed_extension(envelope));
    extensions
}

/// Apply one extension read back; unknown tags are ignored (see `extensions_of`).
fn apply_extension(envelope: &mut Envelope, tag: u8, value: &[u8]) -> Result<(), Stop> {
    match tag {
        TAG_DSN => decode_dsn(envelope, value).map_err(|()| Stop::Corrupt),
        TAG_RELAYED => apply_relayed(envelope, value),
        _ => Ok(()),
    }
}

/// Extension 2: `Envelope::relayed` (received to be relayed outbound, so
/// delivery may tag its sender with BATV prvs), one byte 1; not written
/// when false.
const TAG_RELAYED: u8 = 2;

fn relayed_extension(envelope: &Envelope) -> Option<(u8, Vec<u8>)> {
    envelope.relayed.then(|| (TAG_RELAYED, vec![1]))
}

fn apply_relayed(envelope: &mut Envelope, value: &[u8]) -> Result<(), Stop> {
    match value {
        [flag @ (0 | 1)] => {
            envelope.relayed = *flag == 1;
            Ok(())
        }
        _ => Err(Stop::Corrupt),
    }
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

/// Reads the records of one segment in order, one at a time.
pub struct RecordReader<R> {
    input: R,
    /// Offset in the segment of the next record.
    at: u64,
    torn: bool,
}

/// Why a record could not be read: the segment ends here (torn or corrupt
/// record), or the disk failed (an error for the caller).
enum Stop {
    Corrupt,
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => Stop::Corrupt,
            _ => Stop::Io(e),
        }
    }
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(input: R) -> RecordReader<R> {
        RecordReader { input, at: 0, torn: false }
    }

    /// The next intact record; None at the end of the segment or at the
    /// first torn or corrupt record (see `torn`). Err only for a read error.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        if self.torn {
            return Ok(None);
        }
        match self.read_record() {
            Ok(record) => Ok(record),
            Err(Stop::Corrupt) => {
                self.torn = true;
                Ok(None)
            }
            Err(Stop::Io(e)) => Err(e),
        }
    }

    /// The segment ended in a torn or corrupt record, not on a record boundary.
    pub fn torn(&self) -> bool {
        self.torn
    }

    /// Bytes of intact records read so far.
    pub fn intact_bytes(&self) -> u64 {
        self.at
    }

    fn read_record(&mut self) -> Result<Option<Record>, Stop> {
        if self.input.fill_buf()?.is_empty() {
            return Ok(None);
        }
        let mut frame = [0; FRAME_BYTES];
        self.input.read_exact(&mut frame)?;
        let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
        let start = self.at + FRAME_BYTES as u64;
        let mut payload = Payload { input: &mut self.input, start, len, remaining: len, crc: crc32fast::Hasher::new() };
        let record = decode_payload(&mut payload)?;
        // Bytes a newer writer may have added after the fields still count for the CRC.
        payload.skip(payload.remaining)?;
        if payload.crc.finalize() != crc {
            return Err(Stop::Corrupt);
        }
        self.at = start + len;
        Ok(Some(record))
    }
}

/// The payload of one record, read field by field, never past its length.
struct Payload<'a, R> {
    input: &'a mut R,
    /// Offset in the segment of the payload's first byte.
    start: u64,
    /// The payload's length from the frame, and what is left of it to read.
    len: u64,
    remaining: u64,
    crc: crc32fast::Hasher,
}

impl<R: BufRead> Payload<'_, R> {
    fn take(&mut self, n: usize) -> Result<Vec<u8>, Stop> {
        if n as u64 > self.remaining {
            return Err(Stop::Corrupt);
        }
        let mut out = vec![0; n];
        self.input.read_exact(&mut out)?;
        self.crc.update(&out);
        self.remaining -= n as u64;
        Ok(out)
    }

    /// Pass over `n` bytes, checksumming them, without keeping them.
    fn skip(&mut self, n: u64) -> Result<(), Stop> {
        if n > self.remaining {
            return Err(Stop::Corrupt);
        }
        let mut left = n;
        while left > 0 {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Err(Stop::Corrupt);
            }
            let k = buf.len().min(left as usize);
            self.crc.update(&buf[..k]);
            self.input.consume(k);
            left -= k as u64;
        }
        self.remaining -= n;
        Ok(())
    }

    /// Offset in the segment of the next unread byte.
    fn offset(&self) -> u64 {
        self.start + (self.len - self.remaining)
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// Every string in a record came from one command line (HELO, MAIL,
    /// RCPT) or is ours and shorter, so a longer one is corruption: checked
    /// before allocating, so a flipped length bit cannot ask for gigabytes.
    fn string(&mut self) -> Result<String, Stop> {
        let n = self.u32()? as usize;
        if n > limits::COMMAND_LINE_BYTES_MAX {
            return Err(Stop::Corrupt);
        }
        String::from_utf8(self.take(n)?).map_err(|_| Stop::Corrupt)
    }
}

fn decode_payload<R: BufRead>(p: &mut Payload<'_, R>) -> Result<Record, Stop> {
    match p.byte()? {
        KIND_MESSAGE => {
            let queue_id = QueueId(p.string()?);
            let accepted_secs = p.u64()?;
            let connection_id = p.string()?;
            let peer: SocketAddr = p.string()?.parse().map_err(|_| Stop::Corrupt)?;
            let helo = p.string()?;
            let esmtp = p.byte()? != 0;
            let mail_from = p.string()?;
            let body_type = match p.byte()? {
                0 => BodyType::SevenBit,
                1 => BodyType::EightBitMime,
                2 => BodyType::BinaryMime,
                _ => return Err(Stop::Corrupt),
            };
            let smtputf8 = p.byte()? != 0;
            let n = p.u32()? as usize;
            let mut recipients = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                recipients.push(p.string()?);
            }
            let body_len = p.u32()? as u64;
            let body_offset = p.offset();
            p.skip(body_len)?;
            // The LDAP routing query, if the writer appended one.
            let ldap_routing = if p.remaining > 0 { p.string()? } else { String::new() };
            let secured = Default::default(); // not spooled (message.rs)
            let mut envelope = Envelope { connection_id, peer, helo, esmtp, mail_from, body_type, smtputf8, recipients, ldap_routing, secured, ..Default::default() };
            while p.remaining > 0 {
                let tag = p.byte()?;
                let n = p.u32()? as usize;
                if n > limits::COMMAND_LINE_BYTES_MAX * (envelope.recipients.len() + 1) {
                    return Err(Stop::Corrupt);
                }
                let value = p.take(n)?;
                apply_extension(&mut envelope, tag, &value)?;
            }
            Ok(Record::Message { queue_id, envelope, accepted_secs, body_offset, body_len })
        }
        KIND_DONE => {
            let queue_id = QueueId(p.string()?);
            let n = p.u32()? as usize;
            let mut recipients = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                recipients.push(p.u32()?);
            }
            Ok(Record::Done { queue_id, recipients })
        }
        _ => Err(Stop::Corrupt),
    }
}

/// Every intact record of an in-memory segment and the intact length (tests).
#[cfg(test)]
pub fn decode_all(segment: &[u8]) -> (Vec<Record>, u64) {
    let mut reader = RecordReader::new(segment);
    let mut records = Vec::new();
    while let Some(r) = reader.next_record().expect("reading memory cannot fail") {
        records.push(r);
    }
    (records, reader.intact_bytes())
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
            ldap_routing: String::new(),
            relayed: false,
            secured: Default::default(),
            ..Default::default()
        }
    }

    #[test]
    fn a_relayed_envelope_round_trips_and_an_inbound_one_writes_nothing_more() {
        let mut seg = Vec::new();
        let inbound_at = encode_message(&mut seg, &QueueId("Q1".into()), &envelope(), 7, b"x");
        assert_eq!(seg.len(), inbound_at + 1, "nothing after an inbound message's body");
        let relayed = Envelope { relayed: true, ..envelope() };
        let routed_relayed = Envelope { relayed: true, ldap_routing: "LDAP1.routing".into(), ..envelope() };
        for e in [&relayed, &routed_relayed] {
            encode_message(&mut seg, &QueueId("Q2".into()), e, 7, b"y");
        }
        let (records, _) = decode_all(&seg);
        let envelopes: Vec<&Envelope> = records
            .iter()
            .map(|r| match r {
                Record::Message { envelope, .. } => envelope,
                Record::Done { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(envelopes, [&envelope(), &relayed, &routed_relayed]);
    }

    #[test]
    fn a_relayed_flag_that_is_not_one_byte_is_corrupt() {
        let mut e = envelope();
        assert!(apply_extension(&mut e, TAG_RELAYED, &[1]).is_ok() && e.relayed);
        assert!(apply_extension(&mut e, TAG_RELAYED, &[0]).is_ok() && !e.relayed);
        assert!(matches!(apply_extension(&mut e, TAG_RELAYED, &[1, 1]), Err(Stop::Corrupt)));
        assert!(matches!(apply_extension(&mut e, TAG_RELAYED, &[7]), Err(Stop::Corrupt)));
    }

    #[test]
    fn a_routed_envelope_keeps_its_query_after_the_body_and_a_plain_one_keeps_the_old_layout() {
        let routed = Envelope { ldap_routing: "LDAP1.routing".into(), ..envelope() };
        let mut seg = Vec::new();
        let data_at = encode_message(&mut seg, &QueueId("Q1".into()), &routed, 7, b"x");
        // The query's name comes last: an older reader skips it as trailing bytes.
        assert_eq!(&seg[data_at..data_at + 1], b"x");
        assert!(seg.ends_with(b"LDAP1.routing"));
        let plain_at = seg.len();
        let plain_data_at = encode_message(&mut seg, &QueueId("Q2".into()), &envelope(), 7, b"y");
        assert_eq!(seg.len(), plain_at + plain_data_at + 1, "nothing after a plain message's body");
        let (records, _) = decode_all(&seg);
        let queries: Vec<String> = records
            .iter()
            .map(|r| match r {
                Record::Message { envelope, .. } => envelope.ldap_routing.clone(),
                Record::Done { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(queries, ["LDAP1.routing", ""]);
    }

    fn message_envelope(records: &[Record], i: usize) -> &Envelope {
        match &records[i] {
            Record::Message { envelope, .. } => envelope,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dsn_fields_round_trip_and_defaults_write_nothing() {
        use crate::smtp::dsn::{Dsn, Notify, RecipientDsn, Ret};
        let mut with_dsn = envelope();
        with_dsn.dsn = Dsn { ret: Some(Ret::Full), envid: Some("QQ 1".into()) };
        with_dsn.recipient_dsn = vec![
            RecipientDsn { notify: Notify::On { success: true, failure: false, delay: true }, orcpt: Some(("utf-8".into(), "jörg@b.test".into())) },
            RecipientDsn { notify: Notify::Never, orcpt: None },
        ];
        let only_envid = Envelope { dsn: Dsn { ret: None, envid: Some("E".into()) }, ..envelope() };
        let mut seg = Vec::new();
        encode_message(&mut seg, &QueueId("Q1".into()), &with_dsn, 1, b"x");
        encode_message(&mut seg, &QueueId("Q2".into()), &only_envid, 1, b"y");
        let plain_at = seg.len();
        let data_at = encode_message(&mut seg, &QueueId("Q3".into()), &envelope(), 1, b"z");
        assert_eq!(seg.len(), plain_at + data_at + 1, "no extension when every DSN field is at its default");
        let (records, _) = decode_all(&seg);
        assert_eq!(records.len(), 3);
        assert_eq!(message_envelope(&records, 0), &with_dsn);
        assert_eq!(message_envelope(&records, 1), &only_envid);
        assert_eq!(message_envelope(&records, 2), &envelope());
    }

    /// The largest DSN values the parser lets through (ENVID 100, ORCPT
    /// 500 characters) on every recipient stay under the reader's bound.
    #[test]
    fn the_largest_dsn_values_are_read_back() {
        use crate::smtp::command::parse_rcpt_params;
        use crate::smtp::dsn::{parse_envid, Dsn};
        let envid = parse_envid(Some(&"e".repeat(crate::limits::DSN_ENVID_CHARS_MAX))).unwrap();
        let orcpt = format!("ORCPT=rfc822;{}", "o".repeat(crate::limits::DSN_ORCPT_CHARS_MAX - "rfc822;".len()));
        let rcpt = parse_rcpt_params(&format!("NOTIFY=SUCCESS,FAILURE,DELAY {orcpt}")).unwrap();
        let mut big = Envelope { dsn: Dsn { ret: None, envid: Some(envid) }, ..envelope() };
        big.recipient_dsn = vec![rcpt; big.recipients.len()];
        let mut seg = Vec::new();
        encode_message(&mut seg, &QueueId("Q1".into()), &big, 1, b"x");
        assert_eq!(message_envelope(&decode_all(&seg).0, 0), &big);
    }

    /// A record of a newer writer with a tag we do not know (here 200)
    /// around ours: it is skipped and ours still applies.
    #[test]
    fn an_unknown_extension_tag_is_skipped() {
        use crate::smtp::dsn::{Dsn, Ret};
        let with_dsn = Envelope { dsn: Dsn { ret: Some(Ret::Headers), envid: None }, ..envelope() };
        let mut expected = Vec::new();
        encode_message(&mut expected, &QueueId("Q1".into()), &with_dsn, 1, b"x");
        // The same payload with an extra extension appended, framed again.
        let mut payload = expected[FRAME_BYTES..].to_vec();
        payload.push(200);
        put_bytes(&mut payload, b"from the future");
        let mut seg = Vec::new();
        frame(&mut seg, |p| p.extend_from_slice(&payload));
        let (records, _) = decode_all(&seg);
        assert_eq!(message_envelope(&records, 0), &with_dsn);
    }

    #[test]
    fn a_dsn_value_that_does_not_fit_its_recipients_is_corruption() {
        use crate::smtp::dsn::RecipientDsn;
        // Three recipient entries for an envelope of two.
        let wrong = Envelope { recipient_dsn: vec![RecipientDsn { notify: crate::smtp::dsn::Notify::Never, orcpt: None }; 3], ..envelope() };
        let mut seg = Vec::new();
        encode_message(&mut seg, &QueueId("Q1".into()), &wrong, 1, b"x");
        let mut reader = RecordReader::new(&seg[..]);
        assert!(reader.next_record().unwrap().is_none());
        assert!(reader.torn());
    }

    #[test]
    fn records_round_trip() {
        let data = b"Subject: x\r\n\r\nhi\r\n";
        let mut seg = vec![0; 5]; // as if an earlier record ended here
        encode_done(&mut seg, &QueueId("Q0".into()), &[0]);
        let record_at = seg.len();
        let data_at = encode_message(&mut seg, &QueueId("Q1".into()), &envelope(), 1_795_330_800, data);
        encode_done(&mut seg, &QueueId("Q1".into()), &[1]);
        let (records, len) = decode_all(&seg[5..]);
        assert_eq!(len as usize, seg.len() - 5);
        assert_eq!(records.len(), 3);
        let Record::Message { body_offset, body_len, .. } = records[1] else { panic!("{:?}", records[1]) };
        assert_eq!(body_offset as usize + 5, record_at + data_at, "encode and decode agree where the body is");
        assert_eq!(&seg[5 + body_offset as usize..][..body_len as usize], data);
        assert_eq!(
            records[1],
            Record::Message { queue_id: QueueId("Q1".into()), envelope: envelope(), accepted_secs: 1_795_330_800, body_offset, body_len }
        );
        assert_eq!(records[2], Record::Done { queue_id: QueueId("Q1".into()), recipients: vec![1] });
    }

    #[test]
    fn a_body_streams_past_in_pieces_smaller_than_it() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut seg = Vec::new();
        encode_message(&mut seg, &QueueId("Q1".into()), &envelope(), 1, &data);
        encode_done(&mut seg, &QueueId("Q1".into()), &[0]);
        // A 4 KiB buffer: the body passes through it, checksummed, never whole.
        let mut reader = RecordReader::new(std::io::BufReader::with_capacity(4096, &seg[..]));
        let Some(Record::Message { body_offset, body_len, .. }) = reader.next_record().unwrap() else { panic!("no message") };
        assert_eq!(&seg[body_offset as usize..][..body_len as usize], &data[..]);
        assert!(matches!(reader.next_record().unwrap(), Some(Record::Done { .. })));
        // One flipped byte in the middle of the body is caught by the CRC.
        let mut bad = seg.clone();
        bad[body_offset as usize + 50_000] ^= 0x40;
        let mut reader = RecordReader::new(std::io::BufReader::with_capacity(4096, &bad[..]));
        assert!(reader.next_record().unwrap().is_none());
        assert!(reader.torn());
    }

    #[test]
    fn torn_tail_and_corruption_end_the_segment() {
        let mut seg = Vec::new();
        encode_message(&mut seg, &QueueId("Q1".into()), &envelope(), 1, b"one");
        let first = seg.len();
        encode_message(&mut seg, &QueueId("Q2".into()), &envelope(), 2, b"two");
        // A crash in the middle of the second record.
        let (records, len) = decode_all(&seg[..seg.len() - 3]);
        assert_eq!((records.len(), len as usize), (1, first));
        // A flipped bit in the second record.
        let mut bad = seg.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decode_all(&bad).0.len(), 1);
        // Fewer bytes than a frame header after the first record; and a clean end.
        for (end, torn) in [(first + 3, true), (first, false), (seg.len(), false)] {
            let mut reader = RecordReader::new(&seg[..end]);
            while reader.next_record().unwrap().is_some() {}
            assert_eq!(reader.torn(), torn, "segment cut at {end}");
        }
    }
}
