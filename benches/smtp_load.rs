//! smtp_load: a small TLS-capable SMTP load client for the benchmarks (not
//! part of the appliance). It plays the sending MTA in front of the edge:
//! `smtp_load → portcullis | Postfix smtpd → smtp-sink`, where Postfix's
//! own `smtp-source` cannot go because it does not speak STARTTLS.
//!
//! N threads, each running S sessions one after another, each session
//! carrying M messages: banner, EHLO, optionally STARTTLS (RFC 3207) and
//! EHLO again (§4.2: the session starts over), then M × (MAIL, RCPT, DATA
//! with a 1 KiB message), QUIT. One command at a time (no PIPELINING), as
//! smtp-source does by default. Blocking std `TcpStream`s and rustls (ring)
//! driven by hand: no async runtime, no new dependency.
//!
//! Every TLS handshake is a full one unless `--resume` (a sending MTA with a
//! session cache would resume; the full handshake is the cost an edge must
//! plan for). Its time is taken on the client's clock from the STARTTLS
//! 220 to the end of the handshake, so it includes both sides' CPU and the
//! scheduler of a shared box: a latency figure, not a CPU cost (the script,
//! benches/tls.sh, takes the server's CPU from /proc).
//!
//! Built as an `[[example]]` rather than a `[[bench]]`: `cargo bench` would
//! run it with no server to talk to, and the script wants a plain binary at
//! a fixed path (`target/release/examples/smtp_load`).
//!
//!     cargo build --release --example smtp_load
//!     target/release/examples/smtp_load --threads 50 --sessions 100 \
//!         --messages 1 --starttls --ca ca.pem 127.0.0.1:2525
//!
//! Output: a human summary on stderr and one `smtp_load key=value …` line
//! on stdout for scripts. Exit status 1 when any session failed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use portcullis::tls::client::AnyCertificate;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// A reply longer than this is a broken server, not a slow one.
const REPLY_BYTES_MAX: usize = 64 * 1024;
/// Failed sessions printed in full on stderr (the rest are only counted).
const ERRORS_SHOWN_MAX: usize = 5;

#[derive(Parser, Debug, Clone)]
#[command(about = "SMTP load client with optional STARTTLS (benchmarks only)")]
struct Options {
    /// The server, ADDR:PORT.
    target: SocketAddr,
    /// Parallel client threads (connections open at once).
    #[arg(long, default_value_t = 10)]
    threads: usize,
    /// Sessions per thread, run one after another.
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Messages per session.
    #[arg(long, default_value_t = 1)]
    messages: usize,
    /// STARTTLS on every session (a server not offering it is an error).
    #[arg(long)]
    starttls: bool,
    /// Verify the server's certificate against this PEM CA file.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (signatures are still checked).
    #[arg(long)]
    insecure: bool,
    /// The name the certificate must carry; default: the target's IP.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Let TLS sessions resume (rustls's in-memory client cache, shared by
    /// all threads); default: a full handshake every session.
    #[arg(long)]
    resume: bool,
    /// Size of each message (headers and body), bytes.
    #[arg(long, default_value_t = 1024)]
    bytes: usize,
    #[arg(long, default_value = "bench@client.test")]
    from: String,
    #[arg(long, default_value = "rcpt@example.test")]
    to: String,
    #[arg(long, default_value = "client.test")]
    helo: String,
    /// Longest wait for one reply or one write, seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

fn main() {
    let options = Options::parse();
    if options.starttls && options.ca.is_none() && !options.insecure {
        eprintln!("smtp_load: --starttls needs --ca FILE or --insecure");
        std::process::exit(2);
    }
    let tls = match options.starttls.then(|| client_config(&options)).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("smtp_load: {e}");
            std::process::exit(2);
        }
    };
    let plan = Arc::new(Plan::new(&options, tls));
    let started = Instant::now();
    let workers: Vec<_> = (0..options.threads)
        .map(|n| {
            let plan = plan.clone();
            std::thread::Builder::new()
                .name(format!("load-{n}"))
                .spawn(move || run_thread(&plan))
                .expect("spawn a client thread")
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        total.merge(worker.join().expect("a client thread panicked"));
    }
    let report = Report::new(&options, total, started.elapsed());
    report.print();
    if report.tally.failed > 0 {
        std::process::exit(1);
    }
}

// ---- TLS ------------------------------------------------------------------

/// The client side of the handshake: ring, TLS 1.2 and 1.3, rustls's
/// default suites and groups (what a current sending MTA offers).
fn client_config(options: &Options) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = match &options.ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(path).map_err(|e| format!("--ca {}: {e}", path.display()))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| format!("--ca {}: {e}", path.display()))?;
                roots.add(certificate).map_err(|e| format!("--ca {}: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            // `--insecure`: any certificate chain is taken, but the handshake
            // signatures are still verified, so the server does all the
            // work a verified handshake costs it.
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)))
            .with_no_client_auth(),
    };
    if !options.resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

// ---- what every thread does ---------------------------------------------

/// Everything the threads share, read-only.
struct Plan {
    options: Options,
    tls: Option<Arc<ClientConfig>>,
    server_name: ServerName<'static>,
    /// The DATA payload with its terminating dot, ready to write.
    message: Vec<u8>,
}

impl Plan {
    fn new(options: &Options, tls: Option<Arc<ClientConfig>>) -> Plan {
        let server_name = match &options.server_name {
            Some(name) => ServerName::try_from(name.clone()).unwrap_or_else(|e| {
                eprintln!("smtp_load: --server-name {name}: {e}");
                std::process::exit(2);
            }),
            None => ServerName::IpAddress(options.target.ip().into()),
        };
        let message = message_text(options);
        Plan {
            options: options.clone(),
            tls,
            server_name,
            message,
        }
    }
}

/// A message of `bytes` octets (headers included) plus the final dot
/// (RFC 5321 §4.1.1.4). Body lines are letters only, so none needs
/// dot-stuffing.
fn message_text(options: &Options) -> Vec<u8> {
    let mut text = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: smtp_load\r\nMessage-ID: <smtp-load@{helo}>\r\n\r\n",
        from = options.from,
        to = options.to,
        helo = options.helo
    )
    .into_bytes();
    const LINE: &[u8] = b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv\r\n";
    while text.len() + LINE.len() <= options.bytes {
        text.extend_from_slice(LINE);
    }
    let rest = options.bytes.saturating_sub(text.len() + 2);
    if rest > 0 {
        text.extend_from_slice(&LINE[..rest.min(LINE.len() - 2)]);
        text.extend_from_slice(b"\r\n");
    }
    text.extend_from_slice(b".\r\n");
    text
}

/// What one thread (or all of them) did.
#[derive(Default)]
struct Tally {
    sessions: usize,
    messages: usize,
    failed: usize,
    /// Client-side handshake times, microseconds.
    handshakes_us: Vec<u64>,
    /// "TLSv1_3/TLS13_AES_256_GCM_SHA384" of the last handshake seen.
    negotiated: Option<String>,
    resumed: usize,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.sessions += other.sessions;
        self.messages += other.messages;
        self.failed += other.failed;
        self.handshakes_us.extend(other.handshakes_us);
        self.negotiated = self.negotiated.take().or(other.negotiated);
        self.resumed += other.resumed;
    }
}

fn run_thread(plan: &Plan) -> Tally {
    let mut tally = Tally::default();
    for _ in 0..plan.options.sessions {
        match run_session(plan, &mut tally) {
            Ok(()) => tally.sessions += 1,
            Err(e) => {
                tally.failed += 1;
                if tally.failed <= ERRORS_SHOWN_MAX {
                    eprintln!("smtp_load: session failed: {e}");
                }
            }
        }
    }
    tally
}

/// One session, start to QUIT. Messages count as sent at their 250.
fn run_session(plan: &Plan, tally: &mut Tally) -> Result<(), String> {
    let options = &plan.options;
    let timeout = Some(Duration::from_secs(options.timeout_secs));
    let tcp = TcpStream::connect(options.target).map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(timeout).map_err(|e| e.to_string())?;
    let mut smtp = Smtp {
        transport: Transport::Plain(tcp),
        buffer: Vec::new(),
    };
    smtp.expect("banner", 220)?;
    let ehlo = format!("EHLO {}\r\n", options.helo);
    let capabilities = smtp.command(&ehlo, 250)?;
    if let Some(tls) = &plan.tls {
        if !capabilities
            .lines()
            .any(|line| line.get(4..).is_some_and(|c| c.eq_ignore_ascii_case("STARTTLS")))
        {
            return Err(format!("STARTTLS not offered: {capabilities}"));
        }
        smtp.command("STARTTLS\r\n", 220)?;
        smtp.start_tls(tls.clone(), plan.server_name.clone(), tally)?;
        smtp.command(&ehlo, 250)?;
    }
    let mail = format!("MAIL FROM:<{}>\r\n", options.from);
    let rcpt = format!("RCPT TO:<{}>\r\n", options.to);
    for _ in 0..options.messages {
        smtp.command(&mail, 250)?;
        smtp.command(&rcpt, 250)?;
        smtp.command("DATA\r\n", 354)?;
        smtp.send(&plan.message)?;
        smtp.expect("end of data", 250)?;
        tally.messages += 1;
    }
    smtp.command("QUIT\r\n", 221)?;
    Ok(())
}

// ---- the SMTP conversation ----------------------------------------------

enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
    /// Only while switching from one to the other.
    Switching,
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(tls) => tls.read(buf),
            Transport::Switching => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(buf),
            Transport::Tls(tls) => tls.write(buf),
            Transport::Switching => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.flush(),
            Transport::Tls(tls) => tls.flush(),
            Transport::Switching => Ok(()),
        }
    }
}

struct Smtp {
    transport: Transport,
    /// Bytes read past the last complete reply.
    buffer: Vec<u8>,
}

impl Smtp {
    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.transport
            .write_all(bytes)
            .and_then(|()| self.transport.flush())
            .map_err(|e| format!("write: {e}"))
    }

    /// Send a command and want `code` back; returns the reply's text.
    fn command(&mut self, line: &str, code: u16) -> Result<String, String> {
        self.send(line.as_bytes())?;
        self.expect(line.trim_end(), code)
    }

    fn expect(&mut self, after: &str, code: u16) -> Result<String, String> {
        let (got, text) = self.reply().map_err(|e| format!("after {after}: {e}"))?;
        if got != code {
            return Err(format!("after {after}: wanted {code}, got {}", text.trim_end()));
        }
        Ok(text)
    }

    /// One whole reply, multi-line or not (RFC 5321 §4.2.1: "NNN-" lines
    /// continue it, the "NNN " line ends it).
    fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut start = 0;
        loop {
            while let Some(end) = self.buffer[start..].windows(2).position(|w| w == b"\r\n").map(|i| start + i + 2) {
                let line = &self.buffer[start..end];
                if line.len() < 5 || !line[..3].iter().all(u8::is_ascii_digit) {
                    return Err(io::Error::other(format!(
                        "malformed reply line {:?}",
                        String::from_utf8_lossy(line)
                    )));
                }
                if line[3] == b' ' {
                    let code = std::str::from_utf8(&line[..3]).ok().and_then(|c| c.parse().ok()).unwrap_or(0);
                    let text = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                    self.buffer.drain(..end);
                    return Ok((code, text));
                }
                start = end;
            }
            if self.buffer.len() > REPLY_BYTES_MAX {
                return Err(io::Error::other("reply too long"));
            }
            let mut chunk = [0u8; 4096];
            let n = self.transport.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The handshake after the STARTTLS 220, timed. Bytes the server sent
    /// after its 220 would be an injection (RFC 3207 §4.2): refuse them.
    fn start_tls(&mut self, config: Arc<ClientConfig>, name: ServerName<'static>, tally: &mut Tally) -> Result<(), String> {
        if !self.buffer.is_empty() {
            return Err("bytes after the STARTTLS reply".into());
        }
        let Transport::Plain(mut tcp) = std::mem::replace(&mut self.transport, Transport::Switching) else {
            return Err("STARTTLS twice".into());
        };
        let started = Instant::now();
        let mut tls = ClientConnection::new(config, name).map_err(|e| format!("tls: {e}"))?;
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).map_err(|e| format!("tls handshake: {e}"))?;
        }
        tally.handshakes_us.push(started.elapsed().as_micros() as u64);
        if matches!(tls.handshake_kind(), Some(rustls::HandshakeKind::Resumed)) {
            tally.resumed += 1;
        }
        if let (Some(version), Some(suite)) = (tls.protocol_version(), tls.negotiated_cipher_suite()) {
            tally.negotiated = Some(format!("{version:?}/{:?}", suite.suite()));
        }
        self.transport = Transport::Tls(Box::new(rustls::StreamOwned::new(tls, tcp)));
        Ok(())
    }
}

// ---- the summary ---------------------------------------------------------

struct Report {
    tally: Tally,
    seconds: f64,
    target: SocketAddr,
    starttls: bool,
}

impl Report {
    fn new(options: &Options, mut tally: Tally, elapsed: Duration) -> Report {
        tally.handshakes_us.sort_unstable();
        Report {
            tally,
            seconds: elapsed.as_secs_f64(),
            target: options.target,
            starttls: options.starttls,
        }
    }

    /// Nearest-rank percentile of the handshake times, milliseconds.
    fn handshake_ms(&self, percent: usize) -> String {
        let times = &self.tally.handshakes_us;
        if times.is_empty() {
            return "-".into();
        }
        let rank = (times.len() * percent).div_ceil(100).max(1);
        format!("{:.3}", times[rank - 1] as f64 / 1000.0)
    }

    fn print(&self) {
        let t = &self.tally;
        let rate = t.messages as f64 / self.seconds.max(f64::EPSILON);
        let (p50, p90, p99, max) = (
            self.handshake_ms(50),
            self.handshake_ms(90),
            self.handshake_ms(99),
            self.handshake_ms(100),
        );
        let negotiated = t.negotiated.as_deref().unwrap_or("-");
        eprintln!(
            "smtp_load {target} starttls={starttls}: {sessions} sessions ({failed} failed), {messages} messages in {secs:.2} s = {rate:.0} msgs/s",
            target = self.target,
            starttls = self.starttls,
            sessions = t.sessions,
            failed = t.failed,
            messages = t.messages,
            secs = self.seconds,
        );
        if self.starttls {
            eprintln!(
                "smtp_load handshakes: {n} ({resumed} resumed), {negotiated}, ms p50 {p50} p90 {p90} p99 {p99} max {max}",
                n = t.handshakes_us.len(),
                resumed = t.resumed,
            );
        }
        println!(
            "smtp_load sessions={} failed={} messages={} seconds={:.3} msgs_per_sec={rate:.1} handshakes={} resumed={} \
             handshake_ms_p50={p50} handshake_ms_p90={p90} handshake_ms_p99={p99} handshake_ms_max={max} tls={negotiated}",
            t.sessions,
            t.failed,
            t.messages,
            self.seconds,
            t.handshakes_us.len(),
            t.resumed,
        );
    }
}

#[cfg(test)]
#[path = "smtp_load/tests.rs"]
mod tests;
