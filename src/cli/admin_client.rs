//! The admin commands' one client (`portcullis callahead …`, `portcullis
//! ldap purge`): which admin listener to ask (`--admin`, else `admin_listen`
//! of `--config`, else the default), one blocking HTTP/1.1 exchange with it,
//! every step bounded by `limits::ADMIN_CLIENT_TIMEOUT_SECS`, and the
//! answer's body printed: exit 0 on 200, 1 otherwise with the reason on
//! stderr. The endpoints themselves are `admin::callahead` and `admin::ldap`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use crate::config::Config;
use crate::limits::{ADMIN_CLIENT_TIMEOUT_SECS, ADMIN_LISTEN};

/// Which admin listener to ask, as a command flattens it in.
#[derive(Args, Debug, Clone, Default)]
pub struct AdminArgs {
    /// The admin listener to ask. Default: `admin_listen` of --config, else 127.0.0.1:9425.
    #[arg(long, value_name = "HOST:PORT")]
    pub admin: Option<String>,
    /// Take the admin listener's address from this config file (`admin_listen`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl AdminArgs {
    /// The address these flags name (`admin_address`).
    pub fn address(&self) -> Result<String, String> {
        admin_address(self.admin.as_deref(), self.config.as_deref())
    }
}

/// --admin, else the config file's `admin_listen`, else the default.
pub fn admin_address(admin: Option<&str>, config: Option<&Path>) -> Result<String, String> {
    if let Some(admin) = admin {
        return Ok(admin.to_string());
    }
    let Some(path) = config else {
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

/// Send `method target` to the admin listener `admin` names and print the
/// answer: the process exit status (0 on 200, else 1 with the reason).
pub fn ask_and_print(admin: Result<String, String>, method: &str, target: &str) -> i32 {
    let timeout = Duration::from_secs(ADMIN_CLIENT_TIMEOUT_SECS);
    match admin.and_then(|admin| exchange(&admin, method, target, timeout)) {
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

    #[test]
    fn the_admin_address_comes_from_the_flag_then_the_config_file() {
        let dir =
            std::env::temp_dir().join(format!("portcullis-admin-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.toml");
        std::fs::write(&file, "admin_listen = \"127.0.0.1:19425\"\n").unwrap();
        assert_eq!(
            admin_address(None, Some(&file)),
            Ok("127.0.0.1:19425".into())
        );
        assert_eq!(
            admin_address(Some("h:1"), Some(&file)),
            Ok("h:1".into()),
            "--admin wins"
        );
        assert_eq!(
            admin_address(None, None),
            Ok(ADMIN_LISTEN.to_string()),
            "the default"
        );
        std::fs::write(&file, "admin_listen = \"\"\n").unwrap();
        assert!(admin_address(None, Some(&file))
            .unwrap_err()
            .contains("off"));
        std::fs::write(&file, "admin_listen = 7\n").unwrap();
        assert!(
            admin_address(None, Some(&file))
                .unwrap_err()
                .contains("p.toml"),
            "a bad file is named"
        );
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
        assert_eq!(ask_and_print(Ok(addr), "POST", "/ldap/purge?all=1"), 1);
    }
}
