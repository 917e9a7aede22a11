//! The password file backend (`[auth] backend = "passwd_file"`): one
//! `user:{ARGON2ID}$argon2id$v=19$m=…,t=…,p=…$salt$hash` line per user
//! (RFC 9106 argon2id in the PHC string format; `portcullis passwd USER`
//! prints such lines), `#` comments and blank lines allowed.
//!
//! Read whole at start and on every reload (part of the policy snapshot);
//! a malformed line is an error naming the file and the line number, a
//! user listed twice is refused, and the file's size, its users and the
//! cost a hash may ask for are bounded (`limits`). Verifying costs
//! milliseconds of CPU, so it runs on the shard's blocking pool, at most
//! `AUTH_VERIFICATIONS_PER_SHARD_MAX` at once per shard. An unknown user
//! is verified against a dummy hash of the same cost, so the time an
//! answer takes does not tell which users exist.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::{Credentials, Verdict};
use crate::limits::{
    AUTH_ARGON2_MEMORY_KIB_MAX, AUTH_ARGON2_PASSES_MAX, AUTH_PASSWD_FILE_BYTES_MAX,
    AUTH_PASSWD_USERS_MAX, AUTH_USER_BYTES_MAX, AUTH_VERIFICATIONS_PER_SHARD_MAX,
};

/// What every hash in the file starts with (the scheme, as Dovecot writes it).
pub const SCHEME: &str = "{ARGON2ID}";

/// The loaded file: users and their PHC strings.
pub struct PasswdFile {
    path: PathBuf,
    users: HashMap<String, String>,
    /// Verified for unknown users: the first user's cost (the default
    /// cost for an empty file), a salt and hash nobody's password has.
    dummy: String,
}

/// Hashes are not secrets like passwords, but nobody needs them in a log.
impl fmt::Debug for PasswdFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswdFile")
            .field("path", &self.path)
            .field("users", &self.users.len())
            .finish()
    }
}

impl PasswdFile {
    /// Read and parse `path`; Err names the file (and the line).
    pub fn load(path: &Path) -> Result<PasswdFile, String> {
        let shown = path.display();
        let file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
        let mut text = String::new();
        // One byte past the bound tells a file at the bound from a larger one.
        file.take(AUTH_PASSWD_FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("{shown}: {e}"))?;
        if text.len() as u64 > AUTH_PASSWD_FILE_BYTES_MAX {
            return Err(format!(
                "{shown}: larger than {AUTH_PASSWD_FILE_BYTES_MAX} bytes"
            ));
        }
        PasswdFile::parse(&text, path)
    }

    /// Parse the text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<PasswdFile, String> {
        let mut users = HashMap::new();
        let mut first_params = None;
        for (number, line) in text.lines().enumerate() {
            let at = |why: String| format!("{}: line {}: {why}", path.display(), number + 1);
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (user, hash, params) = parse_line(line).map_err(at)?;
            if users.contains_key(user) {
                return Err(at(format!("user {user:?} is listed twice")));
            }
            if users.len() == AUTH_PASSWD_USERS_MAX {
                return Err(at(format!("more than {AUTH_PASSWD_USERS_MAX} users")));
            }
            first_params.get_or_insert(params);
            users.insert(user.to_string(), hash.to_string());
        }
        let dummy =
            dummy_hash(first_params.unwrap_or((Params::default(), Params::DEFAULT_OUTPUT_LEN)));
        Ok(PasswdFile {
            path: path.to_path_buf(),
            users,
            dummy,
        })
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The hash to verify `user`'s password against, and whether the user exists.
    fn hash_of(&self, user: &str) -> (&str, bool) {
        match self.users.get(user) {
            Some(hash) => (hash, true),
            None => (&self.dummy, false),
        }
    }

    /// Verify on this shard's blocking pool (the user is matched exactly,
    /// as written in the file). A shard already running its bound of
    /// verifications answers `Unavailable` at once.
    pub async fn verify(&self, credentials: &Credentials) -> Verdict {
        let Some(_turn) = Turn::take() else {
            return Verdict::Unavailable(format!("{AUTH_VERIFICATIONS_PER_SHARD_MAX} password verifications already running on this shard"));
        };
        let (hash, known) = self.hash_of(&credentials.user);
        let (hash, password) = (hash.to_string(), credentials.password.clone());
        let matches = glommio::executor()
            .spawn_blocking(move || verify_hash(&hash, password.expose()))
            .await;
        match known && matches {
            true => Verdict::Accepted,
            false => Verdict::Refused,
        }
    }
}

/// `user:{ARGON2ID}PHC` → the user, the PHC string and its cost.
fn parse_line(line: &str) -> Result<(&str, &str, (Params, usize)), String> {
    let (user, hash) = line
        .split_once(':')
        .ok_or("expected USER:{ARGON2ID}$argon2id$…")?;
    check_user(user)?;
    let hash = hash.trim_end();
    let phc = hash
        .strip_prefix(SCHEME)
        .ok_or_else(|| format!("the hash of {user:?} does not start with {SCHEME}"))?;
    let cost = check_hash(phc).map_err(|why| format!("the hash of {user:?}: {why}"))?;
    Ok((user, phc, cost))
}

/// A login as the file and `portcullis passwd` take it: not empty, no `:`
/// (the separator), no whitespace or control characters, within the bound.
pub fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user is empty".into());
    }
    if user.len() > AUTH_USER_BYTES_MAX {
        return Err(format!(
            "the user is longer than {AUTH_USER_BYTES_MAX} bytes"
        ));
    }
    if user
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the user {:?} holds ':', whitespace or a control character",
            user.escape_debug().to_string()
        ));
    }
    Ok(())
}

/// An argon2id v19 PHC string with a salt and a hash, within the cost
/// bounds: its parameters and output length.
fn check_hash(phc: &str) -> Result<(Params, usize), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!("{} is not argon2id", parsed.algorithm));
    }
    if parsed.version != Some(Version::V0x13.into()) {
        return Err("only argon2 version 19 (v=19) is taken".into());
    }
    let (Some(_), Some(output)) = (parsed.salt, parsed.hash) else {
        return Err("no salt or no hash".into());
    };
    let params = Params::try_from(&parsed).map_err(|e| format!("bad parameters: {e}"))?;
    if params.m_cost() > AUTH_ARGON2_MEMORY_KIB_MAX || params.t_cost() > AUTH_ARGON2_PASSES_MAX {
        return Err(format!(
            "cost above m={AUTH_ARGON2_MEMORY_KIB_MAX},t={AUTH_ARGON2_PASSES_MAX}"
        ));
    }
    Ok((params, output.len()))
}

/// A hash of the given cost that no password verifies against (its
/// output is all zeros: finding a password for it is a preimage).
fn dummy_hash((params, output_len): (Params, usize)) -> String {
    let salt = SaltString::encode_b64(b"portcullis-dummy").expect("16 bytes make a salt");
    let output = Output::new(&vec![0u8; output_len]).expect("the length came from a parsed hash");
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${output}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        salt.as_str()
    )
}

/// The CPU-heavy part, for the blocking pool: does `password` match?
pub fn verify_hash(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// `{ARGON2ID}$argon2id$…` for `password`: the argon2 crate's default cost,
/// a random salt from the OS. What `portcullis passwd` prints after `USER:`.
pub fn hash_password(password: &str) -> Result<String, String> {
    use rand::TryRngCore;
    let mut salt = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| format!("no randomness from the OS: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default());
    let hash = argon2
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?;
    Ok(format!("{SCHEME}{hash}"))
}

thread_local! {
    /// Verifications this shard (thread) has handed to its blocking pool.
    static VERIFYING: Cell<usize> = const { Cell::new(0) };
}

/// One of this shard's verification turns, given back when dropped. A
/// session that goes away mid-verification gives its turn back while the
/// blocking pool still finishes that one hash: the bound is on what
/// sessions wait for, which is what could grow without end.
struct Turn;

impl Turn {
    fn take() -> Option<Turn> {
        VERIFYING.with(|running| {
            (running.get() < AUTH_VERIFICATIONS_PER_SHARD_MAX).then(|| {
                running.set(running.get() + 1);
                Turn
            })
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        VERIFYING.with(|running| running.set(running.get() - 1));
    }
}

#[cfg(test)]
mod tests;
