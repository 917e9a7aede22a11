//! `portcullis passwd USER`: the line for `[auth] passwd_file` (issue 9
//! item 3). Reads the password from standard input — its first line —
//! asking twice without echo when standard input is a terminal, refuses
//! an empty one, and prints `USER:{ARGON2ID}$argon2id$v=19$…` (the argon2
//! crate's default cost, a random salt from the OS) on standard output;
//! prompts and errors go to standard error, so `>> users` takes only the
//! line. Exit 0, 1 when the password cannot be read or is refused, 2 for
//! a USER the file cannot hold.
//!
//! The terminal's echo is turned off with termios and turned back on on
//! every path: returns and panics (a guard that restores on drop), and
//! SIGINT, SIGTERM, SIGHUP and SIGQUIT (a handler that restores, then
//! dies of the signal as it would have).

use std::io::{BufRead, Read, Write};
use std::sync::OnceLock;

use clap::Args;

use crate::auth::passwd::{check_user, hash_password};
use crate::auth::Secret;
use crate::limits::AUTH_PASSWORD_BYTES_MAX;

#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// The login, as clients give it to AUTH (no ':' and no whitespace).
    pub user: String,
}

/// Run the command; the process exit status.
pub fn run(args: PasswdArgs) -> i32 {
    if let Err(why) = check_user(&args.user) {
        eprintln!("portcullis passwd: {why}");
        return 2;
    }
    let password = match read_password(&args.user) {
        Ok(password) => password,
        Err(why) => {
            eprintln!("portcullis passwd: {why}");
            return 1;
        }
    };
    match hash_password(password.expose()) {
        Ok(hash) => {
            println!("{}:{hash}", args.user);
            0
        }
        Err(why) => {
            eprintln!("portcullis passwd: cannot hash: {why}");
            1
        }
    }
}

/// The password: typed twice without echo on a terminal, else the first line.
fn read_password(user: &str) -> Result<Secret, String> {
    let stdin = std::io::stdin();
    let password = match is_terminal() {
        false => read_line(&mut stdin.lock())?,
        true => {
            let first = prompt(&format!("Password for {user}: "))?;
            let again = prompt("Again: ")?;
            if first != again {
                return Err("the passwords differ".into());
            }
            first
        }
    };
    if password.expose().is_empty() {
        return Err("an empty password is refused".into());
    }
    Ok(password)
}

/// One line typed with the echo off.
fn prompt(text: &str) -> Result<Secret, String> {
    let line = {
        // Echo off before the prompt shows: nothing typed after it echoes.
        let _quiet = EchoOff::new()?;
        eprint!("{text}");
        let _ = std::io::stderr().flush();
        read_line(&mut std::io::stdin().lock())
    };
    eprintln!(); // the Enter the user typed was not echoed
    line
}

/// The first line of `input` without its line end, within the bound.
fn read_line(input: &mut impl BufRead) -> Result<Secret, String> {
    let mut line = Vec::new();
    let bound = AUTH_PASSWORD_BYTES_MAX as u64 + 2; // room for "\r\n"
    input
        .take(bound + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > AUTH_PASSWORD_BYTES_MAX {
        return Err(format!(
            "the password is longer than {AUTH_PASSWORD_BYTES_MAX} bytes"
        ));
    }
    String::from_utf8(line)
        .map(Secret::from)
        .map_err(|_| "the password is not UTF-8".into())
}

fn is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// The terminal settings before the echo was turned off, for the signal
/// handler (set once, before the handler is installed; read lock-free).
static SAVED: OnceLock<libc::termios> = OnceLock::new();

/// The echo of standard input off while it lives.
struct EchoOff {
    saved: libc::termios,
}

impl EchoOff {
    fn new() -> Result<EchoOff, String> {
        // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid pointer.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Err(format!(
                "cannot read the terminal's settings: {}",
                std::io::Error::last_os_error()
            ));
        }
        let _ = SAVED.set(saved);
        restore_on_signals();
        let mut quiet = saved;
        // ECHONL stays off too: nothing of the line shows, not even its end.
        quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
        // SAFETY: fd 0 and a valid termios.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(format!(
                "cannot turn the echo off: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: fd 0 and the settings read from it.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
    }
}

/// Signals that end the process while it waits for the password.
const FATAL_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

fn restore_on_signals() {
    for signal in FATAL_SIGNALS {
        // SAFETY: installs a handler that only calls async-signal-safe
        // functions (tcsetattr, signal, raise).
        unsafe { libc::signal(signal, restore_and_die as *const () as libc::sighandler_t) };
    }
}

extern "C" fn restore_and_die(signal: libc::c_int) {
    if let Some(saved) = SAVED.get() {
        // SAFETY: async-signal-safe calls on fd 0 with the saved settings;
        // then the default action, so the exit status says the signal.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_password_without_its_end() {
        for (input, password) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\nmore\n", "s3cret"),
            ("no newline", "no newline"),
            ("\n", ""),
        ] {
            assert_eq!(
                read_line(&mut input.as_bytes()).unwrap().expose(),
                password,
                "{input:?}"
            );
        }
    }

    #[test]
    fn an_overlong_or_binary_password_is_refused() {
        let long = "x".repeat(AUTH_PASSWORD_BYTES_MAX + 1);
        assert!(read_line(&mut long.as_bytes())
            .unwrap_err()
            .contains("longer"));
        let exact = "x".repeat(AUTH_PASSWORD_BYTES_MAX) + "\r\n";
        assert_eq!(
            read_line(&mut exact.as_bytes()).unwrap().expose().len(),
            AUTH_PASSWORD_BYTES_MAX
        );
        assert!(read_line(&mut &b"\xff\xfe\n"[..])
            .unwrap_err()
            .contains("UTF-8"));
    }
}
