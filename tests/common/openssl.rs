//! `openssl s_client` as a TLS client for tests: STARTTLS (RFC 3207) or
//! implicit TLS, optional client certificate, the verification verdict and
//! the negotiated version in its `-brief` output.

use super::process::{program, run_with_stdin, CmdOutput};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const S_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// One `s_client` run. `starttls`: speak SMTP and STARTTLS first (else
/// TLS from the first octet). `input`: lines sent inside TLS (CRLF added);
/// the session must end by itself (send QUIT).
pub fn s_client(server: SocketAddr, starttls: bool, ca: &Path, client: Option<(&Path, &Path)>, input: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(program("openssl"));
    cmd.args(["s_client", "-connect", &server.to_string(), "-brief", "-ign_eof", "-crlf"]);
    cmd.args(["-CAfile", &ca.display().to_string(), "-verify_hostname", "localhost", "-verify_return_error"]);
    if starttls {
        cmd.args(["-starttls", "smtp", "-name", "client.test"]);
    }
    if let Some((cert, key)) = client {
        cmd.args(["-cert", &cert.display().to_string(), "-key", &key.display().to_string()]);
    }
    let stdin = input.iter().map(|l| format!("{l}\n")).collect::<String>();
    let file = tempfile_with(&stdin);
    let stdin = Stdio::from(std::fs::File::open(&file).expect("open stdin file"));
    let out = run_with_stdin(&mut cmd, stdin, S_CLIENT_TIMEOUT);
    let _ = std::fs::remove_file(&file);
    out
}

fn tempfile_with(text: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("portcullis-s_client-{}-{n}.in", std::process::id()));
    std::fs::File::create(&path).and_then(|mut f| f.write_all(text.as_bytes())).expect("write stdin file");
    path
}
