//! SMTP clients for tests: `swaks` (one scripted message, full transcript),
//! `smtp-source` (load), and [`RawSmtp`], a tiny client over `TcpStream`
//! that sends exactly the bytes a test gives it (bare CR/LF, smuggling,
//! pipelined commands, commands after STARTTLS).

use super::process::{program, run_with_timeout, CmdOutput};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// Deadline for one swaks run; swaks' own `--timeout` is set below it so
/// swaks reports the timeout itself.
const SWAKS_TIMEOUT: Duration = Duration::from_secs(60);

/// One swaks invocation. Defaults: `--helo client.test`, `--from
/// sender@client.test`, `--to rcpt@example.test`, `--timeout 30`,
/// `--suppress-data` (the transcript shows "N lines sent" instead of the
/// body, but still the reply to the final dot).
pub struct Swaks {
    server: SocketAddr,
    from: String,
    to: Vec<String>,
    args: Vec<String>,
}

impl Swaks {
    pub fn new(server: SocketAddr) -> Swaks {
        Swaks {
            server,
            from: "sender@client.test".to_owned(),
            to: Vec::new(),
            args: Vec::new(),
        }
    }
    pub fn from(mut self, sender: &str) -> Self {
        self.from = sender.to_owned();
        self
    }
    /// Adds a recipient (repeatable; default rcpt@example.test if none).
    pub fn to(mut self, rcpt: &str) -> Self {
        self.to.push(rcpt.to_owned());
        self
    }
    /// Message body (swaks adds its default headers).
    pub fn body(self, body: &str) -> Self {
        self.arg("--body").arg(body)
    }
    /// Sets a header, replacing the one of swaks' template if present,
    /// e.g. `.header("Subject: hi")` (`--header`; use `.arg("--add-header")`
    /// to add a second one).
    pub fn header(self, header: &str) -> Self {
        self.arg("--header").arg(header)
    }
    /// Complete message data (headers and body) instead of swaks' template.
    pub fn data(self, data: &str) -> Self {
        self.arg("--data").arg(data)
    }
    /// Any other swaks option, verbatim (`--pipeline`, `--tls`,
    /// `--quit-after RCPT`, `--helo x`, ...). Later options win.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn run(self) -> SwaksResult {
        let to = if self.to.is_empty() {
            "rcpt@example.test".to_owned()
        } else {
            self.to.join(",")
        };
        let mut cmd = Command::new(program("swaks"));
        cmd.arg("--server")
            .arg(self.server.to_string())
            .args([
                "--helo",
                "client.test",
                "--timeout",
                "30",
                "--suppress-data",
            ])
            .args(["--from", &self.from, "--to", &to])
            .args(&self.args);
        let out = run_with_timeout(&mut cmd, SWAKS_TIMEOUT);
        SwaksResult::parse(out)
    }
}

/// What swaks did: exit code, transcript, and the server replies in order.
#[derive(Debug)]
pub struct SwaksResult {
    pub output: CmdOutput,
    /// (command the reply answers, reply code, last reply line) in order.
    /// The command is the first word swaks sent before the reply ("" for
    /// the greeting, "." or "N" for the end of data).
    pub replies: Vec<(String, u16, String)>,
}

impl SwaksResult {
    fn parse(output: CmdOutput) -> SwaksResult {
        let mut replies = Vec::new();
        let mut last_cmd = String::new();
        for line in output.stdout.lines() {
            let trimmed = line.trim_start();
            // Sent lines: " -> CMD" (plain) or " ~> CMD" (inside TLS).
            if let Some(sent) = trimmed
                .strip_prefix("-> ")
                .or_else(|| trimmed.strip_prefix("~> "))
            {
                last_cmd = sent.split_whitespace().next().unwrap_or("").to_owned();
                continue;
            }
            // Replies: "<-  250 ..", "<** 450 .." (error), "<~  " / "<~* " (TLS).
            if !(trimmed.starts_with("<-")
                || trimmed.starts_with("<*")
                || trimmed.starts_with("<~"))
            {
                continue;
            }
            let text = trimmed.get(4..).unwrap_or("").to_owned();
            let Some(code) = text.get(..3).and_then(|c| c.parse::<u16>().ok()) else {
                continue;
            };
            // Only the last line of a multi-line reply ("250-" continues).
            if text.as_bytes().get(3) == Some(&b'-') {
                continue;
            }
            replies.push((last_cmd.clone(), code, text));
        }
        SwaksResult { output, replies }
    }

    /// swaks' exit code: 0 delivered; 21 connect, 23 MAIL, 24 every RCPT,
    /// 25 DATA, 26 end of data, 28 a TLS/auth failure, 29 usage error.
    pub fn exit_code(&self) -> Option<i32> {
        self.output.code()
    }

    /// The reply that decided the transaction: the last reply that does not
    /// answer QUIT (so 250 after the dot, or the 4xx/5xx that ended it).
    pub fn final_code(&self) -> Option<u16> {
        self.replies
            .iter()
            .rev()
            .find(|(cmd, _, _)| cmd != "QUIT")
            .map(|r| r.1)
    }

    /// Reply code to the first command named `cmd` (e.g. "RCPT", "MAIL").
    pub fn code_for(&self, cmd: &str) -> Option<u16> {
        self.replies
            .iter()
            .find(|(c, _, _)| c.eq_ignore_ascii_case(cmd))
            .map(|r| r.1)
    }

    /// Queue id from "250 2.0.0 Ok: queued as ID", if the server said so.
    pub fn queue_id(&self) -> Option<String> {
        self.replies
            .iter()
            .rev()
            .find_map(|(_, _, text)| text.split("queued as ").nth(1))
            .map(|id| id.trim().to_owned())
    }

    /// The transcript (stdout) and stderr, for assertion messages.
    pub fn transcript(&self) -> String {
        format!("{}{}", self.output.stdout, self.output.stderr)
    }
}

/// Runs `/usr/sbin/smtp-source ARGS 127.0.0.1:PORT` to completion (killed
/// at `timeout`). Typical args: `-s 10 -m 500 -r 2 -l 1024 -f s@client.test
/// -t r@example.test -M client.test` (`-M` keeps it from using the machine
/// host name). It exits non-zero at the first unexpected reply unless `-A`.
pub fn run_smtp_source(server: SocketAddr, args: &[&str], timeout: Duration) -> CmdOutput {
    run_with_timeout(
        Command::new(program("smtp-source"))
            .args(args)
            .arg(server.to_string()),
        timeout,
    )
}

/// One SMTP reply: code and the text of each line (without "250-").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined by "\n".
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    /// Queue id from "250 2.0.0 Ok: queued as ID", if the reply says so.
    pub fn queue_id(&self) -> Option<String> {
        self.lines
            .iter()
            .find_map(|l| l.split("queued as ").nth(1))
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
    }
    /// Whether a line of the reply (e.g. an EHLO keyword) contains `s`.
    pub fn contains(&self, s: &str) -> bool {
        self.lines.iter().any(|l| l.contains(s))
    }
}

/// Raw SMTP over a blocking `TcpStream` with read timeouts: sends exactly
/// the bytes given, reads replies line by line.
pub struct RawSmtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// Deadline for one reply; a server that says nothing for this long fails
/// the read with `WouldBlock`/`TimedOut`.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl RawSmtp {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> io::Result<(RawSmtp, Reply)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        RawSmtp::greeted(stream)
    }

    /// Connects from a chosen loopback source address (127.0.0.x: the HAT
    /// sees that client) and reads the greeting.
    pub fn connect_from(
        addr: SocketAddr,
        source: std::net::Ipv4Addr,
    ) -> io::Result<(RawSmtp, Reply)> {
        RawSmtp::greeted(tcp_from(addr, source)?)
    }

    fn greeted(stream: TcpStream) -> io::Result<(RawSmtp, Reply)> {
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut client = RawSmtp {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        };
        let greeting = client.read_reply()?;
        Ok((client, greeting))
    }

    /// Writes `bytes` as they are (no CRLF added).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Sends `line` + CRLF and reads one reply.
    pub fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    /// EHLO, MAIL, RCPT..., DATA, `data` (must end in CRLF; the harness
    /// appends ".\r\n"). Returns the reply to the final dot, or the first
    /// negative reply before it.
    pub fn send_mail(&mut self, from: &str, to: &[&str], data: &[u8]) -> io::Result<Reply> {
        let ehlo = self.cmd("EHLO client.test")?;
        if !ehlo.is_positive() {
            return Ok(ehlo);
        }
        let mail = self.cmd(&format!("MAIL FROM:<{from}>"))?;
        if !mail.is_positive() {
            return Ok(mail);
        }
        for rcpt in to {
            let reply = self.cmd(&format!("RCPT TO:<{rcpt}>"))?;
            if !reply.is_positive() {
                return Ok(reply);
            }
        }
        let data_reply = self.cmd("DATA")?;
        if data_reply.code != 354 {
            return Ok(data_reply);
        }
        self.send(data)?;
        self.send(b".\r\n")?;
        self.read_reply()
    }

    /// Reads one (possibly multi-line) reply. Lines must end in CRLF; a
    /// line that ends in bare LF is reported as an error, because a server
    /// that does that is broken and the test should say so.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        // Bounded: no sane reply has more lines than this.
        for _ in 0..1000 {
            let mut raw = Vec::new();
            let n = self.reader.read_until(b'\n', &mut raw)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            let line = String::from_utf8_lossy(&raw).into_owned();
            let Some(line) = line.strip_suffix("\r\n") else {
                return Err(bad_reply(&line));
            };
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| bad_reply(line))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if !more {
                return Ok(Reply { code, lines });
            }
        }
        Err(bad_reply("more than 1000 reply lines"))
    }

    /// Reads exactly `n` replies (for pipelined commands).
    pub fn read_replies(&mut self, n: usize) -> io::Result<Vec<Reply>> {
        (0..n).map(|_| self.read_reply()).collect()
    }

    /// Whether the server closes the connection within `timeout` (reads
    /// and discards anything it still sends). A reset counts as closed.
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut line = Vec::new();
        let closed = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break false;
            }
            let _ = self.reader.get_ref().set_read_timeout(Some(left));
            line.clear();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        let _ = self.reader.get_ref().set_read_timeout(Some(REPLY_TIMEOUT));
        closed
    }

    /// The bytes the server still sends before it closes the connection
    /// within `timeout` (a reset counts as closed); None if it stays open.
    pub fn rest_until_closed(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut rest = Vec::new();
        let closed = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break false;
            }
            let _ = self.reader.get_ref().set_read_timeout(Some(left));
            match self.reader.read_until(b'\n', &mut rest) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        let _ = self.reader.get_ref().set_read_timeout(Some(REPLY_TIMEOUT));
        closed.then_some(rest)
    }

    /// Half-closes our side (the server sees EOF).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.writer.shutdown(std::net::Shutdown::Write)
    }

    /// The underlying stream, e.g. to set other socket options.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }
}

fn bad_reply(line: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed SMTP reply line: {line:?}"),
    )
}

/// A TCP connection to `addr` from `source` (port chosen by the kernel).
pub fn tcp_from(addr: SocketAddr, source: std::net::Ipv4Addr) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(target) = addr else {
        return Err(io::Error::other("IPv4 only"));
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a fd we own; the TcpStream takes it over.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(source, 0);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr(*target.ip(), target.port());
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}
