//! Every bound in one place, unit last (TigerBeetle's constants.zig habit).
//!
//! Defaults here are what the CLI and config start from; anything an operator
//! may tune also appears in `config.rs`. Hitting a bound always has a defined
//! SMTP answer, noted next to it.

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets incl. CRLF → 500 5.5.2.
pub const COMMAND_LINE_BYTES_MAX: usize = 512;
/// Connections the kernel queues per listening socket (each shard has one
/// per listener) before they are accepted: glommio's own choice, kept.
pub const LISTEN_BACKLOG: i32 = 1024;
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
/// Message bytes delivery holds in memory per shard (the spool does not refuse on it).
pub const DELIVERY_QUEUE_BYTES_MAX: u64 = 1 << 30;
/// Undelivered message bytes on disk, all shards together → 452 4.3.1; 0 = no bound but the disk.
pub const SPOOL_BYTES_MAX: u64 = 0;

/// Spool: segment size before rotation, and records batched into one fdatasync.
pub const SPOOL_SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// A single larger message is written alone; the rest waits for the next commit.
pub const SPOOL_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// One read of a stored message body; a larger body takes several.
pub const SPOOL_READ_CHUNK_BYTES: usize = 1024 * 1024;
/// Letters one shard's channel to another holds before the sender waits
/// (back-pressure). See `shards.rs` for the memory this costs per shard count.
pub const MESH_CHANNEL_DEPTH: usize = 256;
/// Letters from one peer handled at once on a shard (each may await); past
/// it the peer's channel fills and the peer waits.
pub const MESH_HANDLERS_PER_PEER_MAX: usize = 256;
/// Default bound of one request between shards, queueing included; then
/// the asker gets `ShardGone::TimedOut` (subsystems may set their own).
pub const SHARD_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Once a process stops: how long a shard waits for its peers to stop
/// sending and for its own channels to drain before it exits anyway.
pub const SHUTDOWN_DRAIN_MS: u64 = 5_000;

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

/// Mail log: a shard hands its lines to its writer thread in batches of
/// about this size (or every 200 ms).
pub const MAILLOG_BATCH_BYTES: usize = 64 * 1024;
/// Batches queued for the writer thread before a shard keeps its lines.
pub const MAILLOG_BATCHES_QUEUED_MAX: usize = 64;
/// Lines a shard keeps while the writer is behind; past it lines are
/// dropped and counted (`maillog-dropped`).
pub const MAILLOG_BUFFER_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The longest an audit line (queued, delivered, failed) waits for the
/// writer before we act anyway (counted as a late audit write).
pub const MAILLOG_AUDIT_WAIT_MS: u64 = 1_000;

/// How often a shard looks for a newer policy snapshot (SIGHUP reload) and
/// for the stop flag: the longest a reload waits to reach a shard.
pub const RELOAD_POLL_MS: u64 = 100;

// ---- Connection policy (HAT, mail flow policies, RAT) ----------------------

/// Largest `max_message_size` a mail flow policy may set (1 GiB).
pub const MESSAGE_BYTES_CEILING: u64 = 1 << 30;
/// Text of a configured reply (banner, limit replies): one line well inside
/// RFC 5321 §4.5.3.1.5's 512 octets with the code.
pub const REPLY_TEXT_BYTES_MAX: usize = 400;
/// Longest DHAP tarpit delay per invalid-recipient reply (well inside the
/// client's 5-minute RCPT timeout, RFC 5321 §4.5.3.2.3).
pub const DHAP_TARPIT_MS_MAX: u64 = 30_000;
/// Entries one HAT, RAT or exception table may hold (check-config refuses more).
pub const ACCESS_TABLE_ENTRIES_MAX: usize = 1_000_000;
/// Listeners one appliance may define.
pub const LISTENERS_MAX: usize = 64;
/// Default admin listener (GET /metrics): loopback only.
pub const ADMIN_LISTEN: &str = "127.0.0.1:9425";
/// PTR names checked for a forward-confirming A/AAAA (FCrDNS) per client.
pub const PTR_NAMES_CHECKED_MAX: usize = 4;

// ---- Metrics and the admin listener (issue 6) ----------------------------

/// Distinct label sets one open-ended family (connections by listener,
/// group, policy) keeps per shard; past it new ones are counted under
/// listener/group/policy = "other" (the outcome is kept), so a config with
/// thousands of policy names cannot grow a shard's table without bound.
pub const METRICS_LABEL_SETS_MAX: usize = 1000;
/// An admin request head (request line + headers) longer than this gets
/// 431 Request Header Fields Too Large (RFC 6585 §5) and the connection closes.
pub const ADMIN_REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Header lines in one admin request before 431.
pub const ADMIN_REQUEST_HEADERS_MAX: usize = 32;
/// An admin client has this long to send its request head (else 408), and
/// as long again to take the answer (else dropped): a slow client cannot
/// wedge the admin thread, which serves one connection at a time.
pub const ADMIN_IO_TIMEOUT_SECS: u64 = 5;
/// After answering, the admin reads and discards what the client still sends
/// (at most this many bytes) before closing, so the answer is not lost to a
/// reset (a lingering close).
pub const ADMIN_LINGER_BYTES_MAX: usize = 64 * 1024;

// ---- DNS resolver (src/dns/) ----------------------------------------------
/// `[dns] timeout_ms` range: one attempt waits at least this long, at most that.
pub const DNS_TIMEOUT_MS_MIN: u64 = 50;
pub const DNS_TIMEOUT_MS_MAX: u64 = 30_000;
/// `[dns] attempts` at most (each one waits up to `timeout_ms`).
pub const DNS_ATTEMPTS_MAX: u32 = 10;
/// `[dns] cache_entries` per shard at most; past the configured bound the
/// cache evicts (clock), it never refuses.
pub const DNS_CACHE_ENTRIES_MAX: usize = 10_000_000;
/// `[dns] hat_lookup_timeout_ms` range: the most PTR + DNS-list lookups may
/// hold a banner.
pub const DNS_HAT_LOOKUP_TIMEOUT_MS_MIN: u64 = 50;
pub const DNS_HAT_LOOKUP_TIMEOUT_MS_MAX: u64 = 60_000;
/// Nameservers used at most (glibc's MAXNS is 3; extra resolv.conf lines
/// are ignored, extra `[dns] servers` refused by check-config).
pub const DNS_SERVERS_MAX: usize = 8;
/// CNAMEs followed in one answer before it counts as a TempFail (a loop or
/// a broken zone; RFC 1034 §3.6.2 says chains should not exist at all).
pub const DNS_CNAME_CHAIN_MAX: usize = 8;
/// Cached TTLs are clamped into this range: a day at most (a record that
/// changes is seen within a day), a few seconds at least (a TTL of 0 would
/// send every connection's lookup to the network).
pub const DNS_TTL_MAX_SECS: u32 = 86_400;
pub const DNS_TTL_MIN_SECS: u32 = 5;
/// Negative answers (NXDOMAIN, NODATA) are cached for min(SOA TTL, SOA
/// MINIMUM) (RFC 2308 §5), at most this long (RFC 2308 §5 suggests 1-3
/// hours); without an SOA for `DNS_TTL_MIN_SECS` only.
pub const DNS_NEGATIVE_TTL_MAX_SECS: u32 = 3_600;
/// EDNS0 UDP payload we advertise and receive (RFC 6891 §6.2.5; 1232 is the
/// DNS flag day 2020 value that avoids IP fragmentation). Larger answers
/// come truncated and are fetched over TCP.
pub const DNS_UDP_PAYLOAD_BYTES: u16 = 1232;
/// A DNS message over TCP (RFC 7766 §8: 2-byte length prefix) at most;
/// a longer one is a TempFail.
pub const DNS_TCP_MESSAGE_BYTES_MAX: usize = 65_535;
/// Distinct (name, type) queries in flight on one shard; one more asker
/// gets TempFail at once (the policy's 4xx) instead of queueing.
pub const DNS_INFLIGHT_MAX: usize = 4_096;
// ---- HAT (Host Access Table): compile-time bounds; a table past them is
// refused by check-config and at reload (the old snapshot stays).
/// Sender entries in one HAT, all groups together (ESA tables reach a few
/// thousand; the index stays in microseconds far past this).
pub const HAT_ENTRIES_MAX: usize = 100_000;
/// Distinct DNS lists one HAT names: each can be one lookup per connection.
pub const HAT_DNSLIST_ZONES_MAX: usize = 16;
/// Return codes one `dnslist[zone]=…` entry lists.
pub const HAT_DNSLIST_CODES_MAX: usize = 32;
/// RFC 1035 §2.3.4: a host name or DNS-list zone, without the trailing dot.
pub const HAT_NAME_BYTES_MAX: usize = 253;
// ---- Rate counters (policy::rate): exact across shards --------------------
/// Buckets of one sliding window ("per hour" = 60 one-minute buckets).
pub const RATE_WINDOW_BUCKETS: u64 = 60;
/// Tokens a shard leases from a key's owner at once by default (`lease_tokens`).
pub const RATE_LEASE_TOKENS_DEFAULT: u32 = 8;
/// Most tokens `lease_tokens` may set: larger leases mean fewer mesh round
/// trips on a busy key, and a larger overshoot bound should a shard stop
/// while holding one ((lease − 1) × (shards − 1)).
pub const RATE_LEASE_TOKENS_MAX: u32 = 64;
/// Counter keys one shard's table holds (`table_entries`); past it the least
/// recently used idle key is forgotten (it starts empty next time).
pub const RATE_TABLE_ENTRIES: usize = 100_000;
/// Least recently used keys looked at for an idle one to evict; if all are
/// busy (open slots, outstanding leases) the request is answered unchecked.
pub const RATE_EVICTION_SCAN_MAX: usize = 16;
/// How long the owner waits for a holder to give back a lease before it
/// counts the lease as returned (the holder is stopping) and decides.
pub const RATE_RECALL_TIMEOUT_MS: u64 = 1_000;
/// A shard looks this often for expired leases to give back to their owners.
pub const RATE_LEASE_SWEEP_MS: u64 = 1_000;
/// How long a closed connection's slot release may wait for room in the
/// owner's channel; past it the owner is gone or stuck (shutdown).
pub const RATE_RELEASE_TIMEOUT_MS: u64 = 60_000;
/// Range an operator may set `table_entries` in.
pub const RATE_TABLE_ENTRIES_MIN: usize = 100;
pub const RATE_TABLE_ENTRIES_MAX: usize = 10_000_000;
/// Times a take waits for the lease of its key being asked for before it
/// asks the owner itself (the lease may be spent by earlier waiters).
pub const RATE_LEASE_WAITS_MAX: u32 = 2;
// ---- SMTP call-ahead (callahead) -------------------------------------------
/// Longest `validation_timeout_secs` a profile may set: a client session
/// waits this long at most for one RCPT (RFC 5321 §4.5.3.2.7 gives the
/// client 5 minutes per reply; we stay inside it).
pub const CALLAHEAD_TIMEOUT_SECS_MAX: u64 = 240;
/// RCPTs one pipelined probe batch carries (RFC 2920 lets the client send
/// a whole group; this keeps a batch within a few KiB of socket buffer).
pub const CALLAHEAD_BATCH_RCPTS_MAX: usize = 100;
/// A probe connection idle this long gets QUIT (servers time idle sessions
/// out too: Postfix's smtpd after 300 s).
pub const CALLAHEAD_IDLE_SECS: u64 = 30;
/// Probes waiting for one server's connections; past it a probe gets the
/// failure action at once (the server is far behind).
pub const CALLAHEAD_QUEUE_MAX: usize = 10_000;
/// Refused RCPTs one probe connection may collect before it is closed and
/// a fresh one takes over: servers count a session's errors, RSET or not,
/// and punish them (Postfix's smtpd, by default, delays every reply after
/// 10 errors, `smtpd_soft_error_limit`, and hangs up after 20). A batch
/// never carries more RCPTs than the connection has left of this.
pub const CALLAHEAD_REFUSALS_PER_CONNECTION_MAX: usize = 9;
/// RSETs one probe connection may send before it is closed (Postfix counts
/// RSETs as junk commands past `smtpd_junk_command_limit`, 100).
pub const CALLAHEAD_RESETS_PER_CONNECTION_MAX: usize = 50;
/// Distinct addresses one shard is validating at once (single flight
/// table); past it a validation gets the failure action at once.
pub const CALLAHEAD_IN_FLIGHT_MAX: usize = 10_000;
// ---- Call-ahead probe connections (callahead::connection) -----------------
/// QUIT on a probe connection we close: written, and the server's close
/// awaited, within this long; then the socket is closed regardless.
pub const CALLAHEAD_QUIT_TIMEOUT_MS: u64 = 1_000;
/// Commands in one pipelined group (RFC 2920) of a probe batch: a batch
/// larger than this goes out in groups, the next once the replies to the
/// previous are in, so neither side ever blocks on a full socket buffer
/// (~128 × 80 bytes of commands, ~128 × 100 bytes of replies).
pub const CALLAHEAD_PIPELINED_COMMANDS_MAX: usize = 128;
// ---- Routing (config::routes, routing): SMTP routes → MX → A/AAAA ----------
/// The well-known SMTP port (IANA): entries without a port, and every
/// address found by MX or A/AAAA for a recipient domain.
pub const SMTP_PORT: u16 = 25;
/// Entries one route may list (check-config refuses more): each can cost
/// two lookups per delivery round.
pub const ROUTE_HOSTS_MAX: usize = 32;
/// Exchanges of one MX answer whose addresses are looked up, best first
/// (Postfix's smtp_mx_address_limit is 5 addresses; exchanges past this
/// are never tried).
pub const ROUTE_MX_HOSTS_MAX: usize = 10;
/// Addresses one resolution hands to delivery or call-ahead, in order,
/// duplicates removed; the rest are dropped (a round never tries more).
pub const ROUTE_ADDRESSES_MAX: usize = 16;
// ---- Operating call-ahead (callahead::operate, admin::bridge) --------------
/// A shard publishes its call-ahead gauges (cache entries, open probe
/// connections, open breakers) this often: a scrape sees values this old.
pub const CALLAHEAD_GAUGES_MS: u64 = 1_000;
/// A cache query or purge between shards: a map lookup on the owner, so
/// anything longer means the owner is stuck or its channel full.
pub const CALLAHEAD_OPERATION_TIMEOUT_MS: u64 = 2_000;
/// Admin requests waiting for a shard (admin thread → shards); past it the
/// admin answers 503 at once instead of queueing.
pub const ADMIN_BRIDGE_QUEUE_MAX: usize = 16;
/// How often a shard looks for admin requests (glommio cannot block on a
/// crossbeam channel, so it polls; idle cost: one try_recv per tick).
pub const ADMIN_BRIDGE_POLL_MS: u64 = 20;
/// The longest the admin thread waits for a shard's answer before 503:
/// above `CALLAHEAD_OPERATION_TIMEOUT_MS` plus a poll tick, below
/// `ADMIN_IO_TIMEOUT_SECS` so a slow answer still fits the exchange.
pub const ADMIN_BRIDGE_TIMEOUT_MS: u64 = 3_000;
/// `portcullis callahead …`: connecting to the admin listener and reading
/// its whole answer (above the admin's own bridge and I/O bounds).
pub const ADMIN_CLIENT_TIMEOUT_SECS: u64 = 10;
/// How long a stopping shard waits for its mail log writer thread to write
/// the last lines and end (a stuck stderr pipe must not hold the exit).
pub const MAILLOG_CLOSE_WAIT_MS: u64 = 2_000;
// ---- LDAP queries (ldap, config::ldap) ---------------------------------------
/// The longest an operator may let one LDAP connect, bind or search take.
pub const LDAP_TIMEOUT_SECS_MAX: u64 = 60;
/// Bound connections kept per LDAP server, at most (config refuses more;
/// the client clamps to it too).
pub const LDAP_CONNECTIONS_MAX: usize = 64;
/// Cached LDAP answers per shard, all queries together (least recently
/// used evicted): a bound, not a goal; answers are small.
pub const LDAP_CACHE_ENTRIES: usize = 100_000;
/// Lookups waiting on one shard for the directory at once (single flight
/// per key); past it a lookup is a temporary failure, not a queue.
pub const LDAP_IN_FLIGHT_MAX: usize = 10_000;
/// Slack over a query's timeout for the answer to cross the mesh.
pub const LDAP_ANSWER_SLACK_MS: u64 = 500;
// ---- LDAP client (ldap::client): ldap3 on its own thread -------------------
/// Searches waiting for the LDAP thread (shards → thread, crossbeam); past
/// it a search answers "temporary failure" at once instead of queueing
/// behind a thread that is far behind or stuck.
pub const LDAP_QUEUE_MAX: usize = 4_096;
/// Searches the LDAP thread works on at once, all servers; past it a
/// search answers "temporary failure" at once.
pub const LDAP_JOBS_MAX: usize = 4_096;
/// Searches in flight on one server per pooled connection (ldap3
/// multiplexes operations over one connection, RFC 4511 §3.1 message
/// IDs); more wait for a turn, at most the server's timeout.
pub const LDAP_IN_FLIGHT_PER_CONNECTION: usize = 16;
/// Attributes kept from one entry; the rest are dropped (a query names
/// the few it reads, so only a server ignoring the list sends more).
pub const LDAP_ENTRY_ATTRIBUTES_MAX: usize = 32;
/// Values kept per attribute, in the order the server sent them; the rest
/// are dropped (a callAhead or mailHost list longer than this is a
/// mistake in the directory, ROUTE_HOSTS_MAX bounds what routing uses).
pub const LDAP_ATTRIBUTE_VALUES_MAX: usize = 64;
/// Bytes kept per value, cut at a character boundary: a host list or an
/// address is far shorter (RFC 5321 §4.5.3.1.3: paths are 256 octets).
pub const LDAP_VALUE_BYTES_MAX: usize = 4_096;
// ---- Operating LDAP (ldap test, ldap purge, admin::ldap) ---------------------
/// The longest `[ldap.query."NAME"]` name the admin's `/ldap/purge?query=`
/// takes: a name an operator typed, not data; anything longer is a 400.
pub const LDAP_QUERY_NAME_BYTES_MAX: usize = 256;
// ---- SMTP AUTH backends (auth, config::auth, cli::passwd) -------------------
/// The password file (`[auth] passwd_file`) is read whole at start and on
/// every reload: 10 000 users of ~120-byte lines fit in well under this.
pub const AUTH_PASSWD_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Users in the password file; a larger site belongs in a directory (LDAP).
pub const AUTH_PASSWD_USERS_MAX: usize = 10_000;
/// A login name, bytes (RFC 4954 §4 sets none; an address is at most 256
/// octets, RFC 5321 §4.5.3.1.3): longer ones fail without a lookup.
pub const AUTH_USER_BYTES_MAX: usize = 256;
/// A password, bytes: bounds what one verification hashes (argon2 takes
/// any length) and what a bind sends; longer ones fail without a lookup.
pub const AUTH_PASSWORD_BYTES_MAX: usize = 1_024;
/// argon2id memory cost a password file may ask for per verification, KiB
/// (the argon2 crate's default is 19 456 KiB): a typo of m= must not make
/// every AUTH allocate gigabytes.
pub const AUTH_ARGON2_MEMORY_KIB_MAX: u32 = 262_144;
/// argon2id time cost (passes) a password file may ask for (default 2).
pub const AUTH_ARGON2_PASSES_MAX: u32 = 16;
/// argon2id verifications waiting for or running on one shard's blocking
/// pool at once (each costs milliseconds of CPU); past it an AUTH is a
/// temporary failure (454 4.7.0), not a queue without end.
pub const AUTH_VERIFICATIONS_PER_SHARD_MAX: usize = 8;
/// The window failed AUTHs are counted in, per client IP (`auth_failures_max`).
pub const AUTH_FAILURES_WINDOW_SECS: u64 = 3_600;
/// The largest `auth_failures_max` an operator may set (0 = no limit).
pub const AUTH_FAILURES_MAX_MAX: u32 = 100_000;
/// User binds (AUTH against LDAP) on one server at once, each on a
/// connection of its own; more wait for a turn, at most the server's timeout.
pub const LDAP_AUTH_BINDS_PER_SERVER_MAX: usize = 64;
// ---- TLS (tls::server) --------------------------------------------------------
/// TLS sessions one shard remembers for resumption (rustls's stateful
/// cache, one per shard: no lock shared between shards); the oldest go.
pub const TLS_SESSION_CACHE_ENTRIES: usize = 4_096;
/// Policy snapshots whose server configs a shard keeps its own copies of
/// (the newest and the one before: sessions keep the snapshot they began
/// with, so both may handshake right after a reload).
pub const TLS_SHARD_CONFIGS_MAX: usize = 2;

// ---- Destination controls (issue 10) ----------------------------------------

/// `[destination.*] max_connections` when unset (CONFIG.md).
pub const DESTINATION_CONNECTIONS_DEFAULT: u32 = 50;
/// The largest `max_connections` accepted (0 = unlimited).
pub const DESTINATION_CONNECTIONS_MAX: u32 = 100_000;
/// `max_messages_per_connection` when unset (CONFIG.md).
pub const DESTINATION_MESSAGES_PER_CONNECTION_DEFAULT: u32 = 50;
/// The largest `max_messages_per_connection` accepted.
pub const DESTINATION_MESSAGES_PER_CONNECTION_MAX: u32 = 100_000;
/// `recipients_period_secs` when unset (CONFIG.md).
pub const DESTINATION_RECIPIENTS_PERIOD_SECS_DEFAULT: u64 = 60;
/// The longest `recipients_period_secs` accepted (one day).
pub const DESTINATION_RECIPIENTS_PERIOD_SECS_MAX: u64 = 86_400;
/// A delivery refused a destination connection lease asks the owner again
/// after this long, doubling up to `DESTINATION_LEASE_RETRY_MAX_MS`.
pub const DESTINATION_LEASE_RETRY_MIN_MS: u64 = 10;
pub const DESTINATION_LEASE_RETRY_MAX_MS: u64 = 250;
/// A destination over its recipient rate asks again after this many
/// milliseconds at least (else after one bucket of its window, period/60).
pub const DESTINATION_RATE_RETRY_MIN_MS: u64 = 50;
// ---- Bounce profiles and bounces (config::bounce, delivery::retry, delivery::bounce)
/// `[bounce_profile.*]` tables in one file.
pub const BOUNCE_PROFILES_MAX: usize = 256;
/// A profile's name, bytes (letters, digits, '-', '_', '.').
pub const BOUNCE_PROFILE_NAME_BYTES_MAX: usize = 64;
/// The largest `max_retries` (ESA's range).
pub const BOUNCE_RETRIES_MAX: u32 = 10_000;
/// The shortest `max_queue_lifetime_secs`: one minute.
pub const BOUNCE_QUEUE_LIFETIME_SECS_MIN: u64 = 60;
/// The longest `max_queue_lifetime_secs` (and `delay_warning_secs`): 30 days.
pub const BOUNCE_QUEUE_LIFETIME_SECS_MAX: u64 = 30 * 86_400;
/// The largest `max_retry_secs`: one day between attempts.
pub const BOUNCE_RETRY_SECS_MAX: u64 = 86_400;
/// The shortest `delay_warning_secs`: a warning a minute is already noise.
pub const BOUNCE_DELAY_WARNING_SECS_MIN: u64 = 60;
/// Retry waits are spread by up to this much either way, percent, so
/// messages deferred together do not retry together (`delivery::retry`).
pub const BOUNCE_RETRY_JITTER_PERCENT: u64 = 20;
/// The largest original a bounce returns whole (RET=FULL, RFC 3461 §4.3);
/// a larger one is returned as its headers only.
pub const BOUNCE_ORIGINAL_BYTES_MAX: usize = 1024 * 1024;
/// The original's header block returned as text/rfc822-headers, bytes; cut
/// before the first header field that does not fit.
pub const BOUNCE_HEADERS_BYTES_MAX: usize = 64 * 1024;
/// Any one value a bounce writes from outside data (a diagnostic, an
/// address, ENVID, a host), bytes: a header line stays under RFC 5322
/// §2.1.1's 998 octets even unfolded.
pub const BOUNCE_FIELD_BYTES_MAX: usize = 900;
/// The original's header block `should_send` reads, bytes.
pub const BOUNCE_SCAN_HEADER_BYTES_MAX: usize = 256 * 1024;
// ---- DSN parameters (smtp::dsn, RFC 3461) -------------------------------------
/// ENVID= on MAIL, characters as sent (RFC 3461 §4.4: at most 100).
pub const DSN_ENVID_CHARS_MAX: usize = 100;
/// ORCPT= on RCPT, characters as sent (RFC 3461 §4.2: at most 500).
pub const DSN_ORCPT_CHARS_MAX: usize = 500;
// ---- Bounce verification (prvs, config::bounce_verification) ---------------
/// Keys `[bounce_verification] keys` may list: the prvs tag names its key
/// with one decimal digit (draft-levine-smtp-batv-01 §4.1).
pub const BATV_KEYS_MAX: usize = 10;
/// How long a tag stays valid unless `tag_lifetime_days` says otherwise.
pub const BATV_TAG_LIFETIME_DAYS_DEFAULT: u64 = 7;
/// The longest `tag_lifetime_days`: a tag's day is kept mod 1000, and a
/// day further ahead than this is read as one that has passed (expired).
pub const BATV_TAG_LIFETIME_DAYS_MAX: u64 = 30;
/// A key's length, bytes: an HMAC key longer than SHA-1's 64-byte block is
/// hashed first (RFC 2104 §3), so more only costs config space.
pub const BATV_KEY_BYTES_MAX: usize = 1_024;
// ---- Spool compaction (spool::compact) ----------------------------------------
/// How often a shard looks for sealed segments worth compacting.
pub const SPOOL_COMPACT_INTERVAL_SECS: u64 = 30;
/// A sealed segment whose owed records fill less than this share of it is
/// compacted at once: at most 100/25 = 4 times the owed bytes stay pinned.
pub const SPOOL_COMPACT_LIVE_PERCENT: u64 = 25;
/// A sealed segment whose owed records were all written there at least
/// this long ago (mail deferred for long)...
pub const SPOOL_COMPACT_OLD_SECS: u64 = 3_600;
/// ...is compacted too once they fill less than this share of it (so it
/// frees at least a quarter of itself), or whatever their share when other
/// segments are kept only for the done markers they hold for it. A copy is
/// young again: a message is copied at most once per
/// `SPOOL_COMPACT_OLD_SECS` by this rule.
pub const SPOOL_COMPACT_OLD_LIVE_PERCENT: u64 = 75;
/// Record bytes one pass copies at most (a larger single message still
/// goes, alone): one default segment's worth per interval.
pub const SPOOL_COMPACT_PASS_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Copies a pass keeps queued for the group commit before awaiting them:
/// bounds the memory a pass holds (one batch's worth).
pub const SPOOL_COMPACT_IN_FLIGHT_BYTES_MAX: u64 = 8 * 1024 * 1024;

// ---- Queue commands (issue 10 item 6) ---------------------------------------

/// Jobs one shard lists for `portcullis queue list` (the per-destination
/// counts cover every job).
pub const QUEUE_LIST_ENTRIES_MAX: usize = 1000;

// ---- Executor parking (issue 10 item 1) -------------------------------------

/// Default `spin_before_park_us`: how long an idle shard polls before it
/// parks its executor, microseconds (0 = park at once, glommio's default).
pub const SPIN_BEFORE_PARK_US: u64 = 0;
/// Bound on `spin_before_park_us`: 10 ms. A spinning shard burns its CPU,
/// so more than this is a busy loop, not a saved park.
pub const SPIN_BEFORE_PARK_US_MAX: u64 = 10_000;
/// Default `coalesce_us`: how long a shard whose CPU is contended sleeps
/// in place of parking when a yield found nobody else waiting for the CPU,
/// gathering the events of that time into one wake-up (`coalesce.rs`).
pub const COALESCE_US: u64 = 100;
/// Bound on `coalesce_us`: 1 ms of added latency per event at most.
pub const COALESCE_US_MAX: u64 = 1_000;
