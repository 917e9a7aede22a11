//! Every bound in one place, unit last (TigerBeetle's constants.zig habit).
//!
//! Defaults here are what the CLI and config start from; anything an operator
//! may tune also appears in `config.rs`. Hitting a bound always has a defined
//! SMTP answer, noted next to it.

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets incl. CRLF → 500 5.5.2.
pub const COMMAND_LINE_BYTES_MAX: usize = 512;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets incl. the angle brackets → 501 5.1.3.
pub const PATH_BYTES_MAX: usize = 256;
/// RFC 5321 §4.5.3.1.1: local part at most 64 octets.
pub const LOCAL_PART_BYTES_MAX: usize = 64;
/// RFC 5321 §4.5.3.1.2: domain at most 255 octets.
pub const DOMAIN_BYTES_MAX: usize = 255;
/// RFC 5321 §4.5.3.1.6: text lines are at most 1000 octets; we do not refuse longer
/// ones (real mail has them), only the message size is bounded.
pub const DATA_LINE_BYTES_MAX: usize = 1000;
/// RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted; the 101st gets 452 4.5.3.
pub const RECIPIENTS_PER_MESSAGE_MAX: usize = 100;
/// Default SIZE (RFC 1870) → 552 5.3.4 when exceeded.
pub const MESSAGE_BYTES_MAX: usize = 10 * 1024 * 1024;
/// Unprocessed client input a session keeps before it stops reading (back-pressure, not an error).
pub const SESSION_INPUT_BYTES_MAX: usize = 64 * 1024;
/// Replies held back behind unanswered policy questions (pipelined RCPTs in
/// flight); past it the session waits for answers before taking more commands.
pub const SESSION_REPLIES_HELD_MAX: usize = 256;
/// Replies waiting to be written; a client that never reads is cut off past this.
pub const SESSION_OUTPUT_BYTES_MAX: usize = 64 * 1024;
/// Errors in a row before the session answers 421 4.7.0 and closes.
pub const SESSION_ERRORS_MAX: u32 = 20;
/// Messages in one connection before 421 4.7.0 (HAT will make this a policy value).
pub const MESSAGES_PER_CONNECTION_MAX: u32 = 10_000;

/// Concurrent inbound connections, all shards together → 421 4.7.0.
pub const CONNECTIONS_MAX: usize = 1024;

/// RFC 5321 §4.5.3.2 server timeouts.
pub const TIMEOUT_COMMAND_SECS: u64 = 300; // §4.5.3.2.7: server waiting for the next command
pub const TIMEOUT_DATA_BLOCK_SECS: u64 = 180; // §4.5.3.2.5: waiting for each DATA block
/// Bytes per second a client must average in DATA/BDAT, measured over a window,
/// so a client trickling one byte at a time is cut off (421 4.4.2).
pub const DATA_RATE_BYTES_PER_SEC_MIN: u64 = 1024;
pub const DATA_RATE_WINDOW_SECS: u64 = 30;
pub const SHUTDOWN_GRACE_SECS: u64 = 30;

/// RFC 5321 §4.5.3.2 client timeouts (delivery).
pub const CLIENT_CONNECT_TIMEOUT_SECS: u64 = 30;
pub const CLIENT_GREETING_TIMEOUT_SECS: u64 = 300; // §4.5.3.2.1
pub const CLIENT_COMMAND_TIMEOUT_SECS: u64 = 300; // MAIL/RCPT §4.5.3.2.2-3
pub const CLIENT_DATA_BLOCK_TIMEOUT_SECS: u64 = 180; // §4.5.3.2.5
pub const CLIENT_DATA_TERMINATION_TIMEOUT_SECS: u64 = 600; // §4.5.3.2.6
/// Idle pooled connection kept this long for reuse.
pub const POOL_IDLE_SECS: u64 = 30;
/// Open connections per downstream host per shard.
pub const POOL_CONNECTIONS_PER_HOST_MAX: usize = 16;
/// Messages sent over one pooled connection before it is replaced.
pub const POOL_MESSAGES_PER_CONNECTION_MAX: u32 = 1000;

/// Delivery retry: first delay, doubled each attempt, capped.
pub const RETRY_FIRST_SECS: u64 = 1;
pub const RETRY_MAX_SECS: u64 = 600;
/// Give up and move to the failed area after this long (bounces come later).
pub const QUEUE_LIFETIME_SECS: u64 = 5 * 24 * 3600;
/// Messages queued for delivery on one shard; above it new mail gets 452 4.3.1.
pub const DELIVERY_QUEUE_MESSAGES_MAX: usize = 100_000;
/// Bytes of undelivered mail per shard (held in memory by delivery); above it 452 4.3.1.
pub const DELIVERY_QUEUE_BYTES_MAX: u64 = 1 << 30;

/// Spool: segment size before rotation, and records batched into one fdatasync.
pub const SPOOL_SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
pub const SPOOL_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Cross-shard mesh channel depth.
pub const MESH_CHANNEL_DEPTH: usize = 1024;

/// Delivery client replies. RFC 5321 §4.5.3.1.5 allows 512 octets per reply
/// line; we accept four times that from sloppy servers, and past it the
/// downstream is broken (TransportError, the connection is dropped).
pub const CLIENT_REPLY_LINE_BYTES_MAX: usize = 2048;
/// Lines in one reply (an EHLO reply lists one extension per line).
pub const CLIENT_REPLY_LINES_MAX: usize = 100;
/// Bytes of one reply, all lines together; a downstream sending endless
/// continuation lines is cut off here.
pub const CLIENT_REPLY_BYTES_MAX: usize = 16 * 1024;
/// Read buffer of one pooled connection.
pub const CLIENT_READ_BUFFER_BYTES: usize = 4096;
/// Body pieces shorter than this are copied into the write buffer so a small
/// message goes out in one write; longer pieces are written from the spooled
/// body in place (no copy).
pub const CLIENT_BODY_COPY_BYTES_MAX: usize = 16 * 1024;
