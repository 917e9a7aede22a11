//! Where a stored message lives on disk, and reading it back from any shard.
//!
//! `Spool::store` returns a `BodyLocation` and recovery gives one for every
//! message still owed, so a delivery job can keep the envelope and the place
//! of the message instead of its bytes, and read them again when it sends.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use glommio::io::BufferedFile;

use crate::limits;

/// The stored message bytes (Received header + body) of one message: `len`
/// bytes at `offset` in the segment file `segment`.
///
/// A location stays valid while any recipient of its message is owed: a
/// segment file is deleted only once every message in it is finished (see
/// `segments.rs`), so a delivery job holding a location can always read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyLocation {
    pub segment: Arc<PathBuf>,
    pub offset: u64,
    pub len: u64,
}

/// Read the message bytes at `location`, on whichever shard calls it:
/// glommio's io_uring file API, never a blocking read on the executor.
pub async fn read_body(location: &BodyLocation) -> io::Result<Vec<u8>> {
    let file = BufferedFile::open(location.segment.as_path()).await?;
    let result = read_exact_at(&file, location.offset, location.len).await;
    let _ = file.close().await;
    result
}

/// `len` bytes at `offset`, in reads of at most `SPOOL_READ_CHUNK_BYTES`
/// (a read may return fewer bytes than asked; only end of file is an error).
pub(super) async fn read_exact_at(file: &BufferedFile, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "body larger than memory"))?;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let want = (len - out.len()).min(limits::SPOOL_READ_CHUNK_BYTES);
        let chunk = file.read_at(offset + out.len() as u64, want).await?;
        if chunk.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment ends inside the message"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
