//! The DSN fields of a spooled envelope (RFC 3461: RET, ENVID, and NOTIFY
//! and ORCPT per recipient) as the value of record extension tag 1
//! (`record::extensions_of` / `apply_extension`).
//!
//! Written only when some field is not at its default, so the envelopes of
//! clients that never say DSN stay as small as before. Value layout, all
//! integers little-endian:
//!
//! ```text
//! ret u8 (0 none, 1 FULL, 2 HDRS)
//! envid: present u8, then len u32 | bytes
//! n u32 (0 = every recipient at defaults, else = the recipient count)
//! n × { notify u8 (0 unspecified, 1 NEVER, 0x80 | 1 SUCCESS | 2 FAILURE | 4 DELAY),
//!       orcpt: present u8, then addr-type len u32 | bytes, address len u32 | bytes }
//! ```

use crate::message::Envelope;
use crate::smtp::dsn::{Dsn, Notify, RecipientDsn, Ret};

/// The extension tag of the DSN fields.
pub(super) const TAG_DSN: u8 = 1;

const NOTIFY_SET: u8 = 0x80;
const NOTIFY_SUCCESS: u8 = 1;
const NOTIFY_FAILURE: u8 = 2;
const NOTIFY_DELAY: u8 = 4;

/// The value of tag 1, or None when every DSN field is at its default.
pub(super) fn encode_dsn(envelope: &Envelope) -> Option<Vec<u8>> {
    if envelope.dsn.is_default() && envelope.recipient_dsn.iter().all(RecipientDsn::is_default) {
        return None;
    }
    let mut out = Vec::new();
    out.push(match envelope.dsn.ret {
        None => 0,
        Some(Ret::Full) => 1,
        Some(Ret::Headers) => 2,
    });
    put_optional(&mut out, envelope.dsn.envid.as_deref());
    out.extend_from_slice(&(envelope.recipient_dsn.len() as u32).to_le_bytes());
    for rcpt in &envelope.recipient_dsn {
        out.push(notify_byte(rcpt.notify));
        match &rcpt.orcpt {
            None => out.push(0),
            Some((addr_type, address)) => {
                out.push(1);
                put_str(&mut out, addr_type);
                put_str(&mut out, address);
            }
        }
    }
    Some(out)
}

/// Read tag 1 back into `envelope` (its recipients already read). Err:
/// the value does not fit the layout or the recipients (corruption).
pub(super) fn decode_dsn(envelope: &mut Envelope, value: &[u8]) -> Result<(), ()> {
    let mut cursor = Cursor(value);
    let ret = match cursor.byte()? {
        0 => None,
        1 => Some(Ret::Full),
        2 => Some(Ret::Headers),
        _ => return Err(()),
    };
    let envid = cursor.optional()?;
    let n = cursor.u32()? as usize;
    if n != 0 && n != envelope.recipients.len() {
        return Err(());
    }
    let mut recipient_dsn = Vec::with_capacity(n);
    for _ in 0..n {
        let notify = notify_of(cursor.byte()?)?;
        let orcpt = match cursor.byte()? {
            0 => None,
            1 => Some((cursor.string()?, cursor.string()?)),
            _ => return Err(()),
        };
        recipient_dsn.push(RecipientDsn { notify, orcpt });
    }
    if !cursor.0.is_empty() {
        return Err(());
    }
    envelope.dsn = Dsn { ret, envid };
    envelope.recipient_dsn = recipient_dsn;
    Ok(())
}

fn notify_byte(notify: Notify) -> u8 {
    match notify {
        Notify::Unspecified => 0,
        Notify::Never => 1,
        Notify::On {
            success,
            failure,
            delay,
        } => {
            NOTIFY_SET
                | if success { NOTIFY_SUCCESS } else { 0 }
                | if failure { NOTIFY_FAILURE } else { 0 }
                | if delay { NOTIFY_DELAY } else { 0 }
        }
    }
}

fn notify_of(byte: u8) -> Result<Notify, ()> {
    match byte {
        0 => Ok(Notify::Unspecified),
        1 => Ok(Notify::Never),
        b if b & NOTIFY_SET != 0 && b & !(NOTIFY_SET | 7) == 0 && b & 7 != 0 => Ok(Notify::On {
            success: b & NOTIFY_SUCCESS != 0,
            failure: b & NOTIFY_FAILURE != 0,
            delay: b & NOTIFY_DELAY != 0,
        }),
        _ => Err(()),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// Reads the value front to back; every read is bounds-checked (the
/// value's own length was checked by the record reader).
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ()> {
        if n > self.0.len() {
            return Err(());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, ()> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ()> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn string(&mut self) -> Result<String, ()> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| ())
    }
    fn optional(&mut self) -> Result<Option<String>, ()> {
        match self.byte()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            _ => Err(()),
        }
    }
}
