//! `portcullis callahead query ADDR` and `portcullis callahead purge
//! (ADDR | @DOMAIN | --all)`: the operator's commands for the call-ahead
//! verdict cache (issue 7 item 9). They ask the running appliance's admin
//! listener (`admin::callahead`) with a tiny blocking HTTP/1.1 client,
//! every step bounded by `limits::ADMIN_CLIENT_TIMEOUT_SECS`, print the
//! answer's body, and exit 0 on 200, 1 otherwise with the reason on stderr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::config::Config;
use crate::limits::{ADMIN_CLIENT_TIMEOUT_SECS, ADMIN_LISTEN};

#[derive(Args, Debug)]
pub struct CallaheadArgs {
    #[command(subcommand)]
    pub action: CallaheadAction,
    /// The admin listener to ask. Default: `admin_listen` of --config, else 127.0.0.1:9425.
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub admin: Option<String>,
    /// Take the admin listener's address from this config file (`admin_listen`).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum CallaheadAction {
    /// Show what is cached for ADDR: per profile the verdict, the downstream's reply, age, TTL and the owner shard.
    Query {
        /// The recipient address, local@domain.
        address: String,
    },
    /// Forget cached verdicts: of one address (ADDR), of a domain (@DOMAIN), or all (--all).
    Purge {
        /// ADDR or @DOMAIN.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        target: Option<String>,
        /// Every cached verdict, every profile, every shard.
        #[arg(long)]
        all: bool,
    },
}

/// Run the command; the process exit status.
pub fn run(args: CallaheadArgs) -> i32 {
    let outcome = admin_address(&args).and_then(|admin| {
        let (method, target) = request_target(&args.action);
        exchange(
            &admin,
            method,
            &target,
            Duration::from_secs(ADMIN_CLIENT_TIMEOUT_SECS),
        )
    });
    match outcome {
        Ok((200, body)) => {
            print!("{body}");
            0
        }
        Ok((status, body)) => {
            eprintln!(
                "portcullis: the admin listener answered {status}: {}",
                body.trim_end()
            );
            1
        }
        Err(why) => {
            eprintln!("portcullis: {why}");
            1
        }
    }
}

/// --admin, else the config file's `admin_listen`, else the default.
fn admin_address(args: &CallaheadArgs) -> Result<String, String> {
    if let Some(admin) = &args.admin {
        return Ok(admin.clone());
    }
    let Some(path) = &args.config else {
        return Ok(ADMIN_LISTEN.to_string());
    };
    let config = Config::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if config.admin_listen.is_empty() {
        return Err(format!(
            "{}: admin_listen is \"\" (off): nothing to ask",
            path.display()
        ));
    }
    Ok(config.admin_listen)
}

/// The method and request target of an action; values percent-encoded.
pub fn request_target(action: &CallaheadAction) -> (&'static str, String) {
    let encode = |value: &str| utf8_percent_encode(value, NON_ALPHANUMERIC).to_string();
    match action {
        CallaheadAction::Query { address } => (
            "GET",
            format!("/callahead/query?address={}", encode(address)),
        ),
        CallaheadAction::Purge { all: true, .. } => ("POST", "/callahead/purge?all=1".to_string()),
        CallaheadAction::Purge {
            target: Some(target),
            ..
        } => match target.strip_prefix('@') {
            Some(domain) => (
                "POST",
                format!("/callahead/purge?domain={}", encode(domain)),
            ),
            None => (
                "POST",
                format!("/callahead/purge?address={}", encode(target)),
            ),
        },
        // clap requires a target unless --all; an empty one is refused by the admin (400).
        CallaheadAction::Purge { target: None, .. } => {
            ("POST", "/callahead/purge?address=".to_string())
        }
    }
}

/// One request, one answer (`Connection: close`, so the body runs to EOF),
/// all within `timeout`: (status, body).
pub fn exchange(
    admin: &str,
    method: &str,
    target: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(admin, timeout)?;
    let request = format!("{method} {target} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let io = |e: std::io::Error| format!("admin listener {admin}: {e}");
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero());
        let left = left.ok_or_else(|| {
            format!(
                "admin listener {admin}: no whole answer within {}s",
                timeout.as_secs()
            )
        })?;
        stream.set_read_timeout(Some(left)).map_err(io)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    parse_answer(&answer).map_err(|why| format!("admin listener {admin}: {why}"))
}

fn connect(admin: &str, timeout: Duration) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = admin
        .to_socket_addrs()
        .map_err(|e| format!("admin address {admin:?}: {e}"))?
        .collect();
    let mut last = format!("admin address {admin:?} resolves to nothing");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("admin listener {addr}: {e} (is portcullis running with admin_listen = \"{addr}\"?)"),
        }
    }
    Err(last)
}

/// The status and body of a whole HTTP/1.1 answer.
pub fn parse_answer(bytes: &[u8]) -> Result<(u16, String), String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(head_len)) => {
            let status = response.code.ok_or("no status")?;
            Ok((
                status,
                String::from_utf8_lossy(&bytes[head_len..]).into_owned(),
            ))
        }
        Ok(httparse::Status::Partial) => Err("the answer ended inside its head".into()),
        Err(e) => Err(format!("not an HTTP answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> CallaheadArgs {
        match Cli::try_parse_from(args).expect("parses").command {
            Some(Command::Callahead(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_become_requests() {
        let query = parse(&[
            "portcullis",
            "callahead",
            "query",
            "Jörg+x@example.test",
            "--admin",
            "127.0.0.1:1",
        ]);
        assert_eq!(query.admin.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(
            request_target(&query.action),
            (
                "GET",
                "/callahead/query?address=J%C3%B6rg%2Bx%40example%2Etest".into()
            )
        );
        let domain = parse(&["portcullis", "callahead", "purge", "@example.test"]);
        assert_eq!(
            request_target(&domain.action),
            ("POST", "/callahead/purge?domain=example%2Etest".into())
        );
        let address = parse(&[
            "portcullis",
            "callahead",
            "--admin",
            "h:2",
            "purge",
            "a@example.test",
        ]);
        assert_eq!(
            request_target(&address.action).1,
            "/callahead/purge?address=a%40example%2Etest"
        );
        assert_eq!(
            address.admin.as_deref(),
            Some("h:2"),
            "--admin before the action too"
        );
        let all = parse(&["portcullis", "callahead", "purge", "--all"]);
        assert_eq!(
            request_target(&all.action),
            ("POST", "/callahead/purge?all=1".into())
        );
        assert_eq!(
            admin_address(&all),
            Ok(ADMIN_LISTEN.to_string()),
            "the default admin_listen"
        );
        assert!(
            Cli::try_parse_from(["portcullis", "callahead", "purge"]).is_err(),
            "a target or --all"
        );
        assert!(
            Cli::try_parse_from(["portcullis", "callahead", "purge", "a@x.test", "--all"]).is_err(),
            "not both"
        );
    }

    #[test]
    fn the_admin_address_comes_from_the_config_file() {
        let dir = std::env::temp_dir().join(format!("portcullis-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.toml");
        std::fs::write(&file, "admin_listen = \"127.0.0.1:19425\"\n").unwrap();
        let args = parse(&[
            "portcullis",
            "callahead",
            "query",
            "a@x.test",
            "--config",
            file.to_str().unwrap(),
        ]);
        assert_eq!(admin_address(&args), Ok("127.0.0.1:19425".into()));
        std::fs::write(&file, "admin_listen = \"\"\n").unwrap();
        assert!(admin_address(&args).unwrap_err().contains("off"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn answers_are_read_to_their_status_and_body() {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n";
        assert_eq!(parse_answer(answer), Ok((503, "busy\n".into())));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-").is_err());
        assert!(parse_answer(b"SMTP 220 hello\r\n\r\n").is_err());
    }

    #[test]
    fn nobody_listening_is_an_error_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let refused = exchange(
            &addr,
            "GET",
            "/callahead/query?address=a%40x",
            Duration::from_secs(5),
        );
        assert!(refused.unwrap_err().contains("is portcullis running"));
    }
}
