//! The password file: what parses, what is refused and where (file and
//! line), the hash `portcullis passwd` prints verifying on a shard's
//! blocking pool, unknown users verified against a dummy of the file's
//! cost, and the bound on verifications per shard.

use std::path::Path;

use super::*;
use crate::auth::{Credentials, Secret};
use crate::test_support::on_executor;

/// A cheap argon2id hash (tests only: m=8 MiB, one pass) of `password`.
fn cheap_hash(password: &str) -> String {
    let params = Params::new(8192, 1, 1, None).unwrap();
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap();
    format!("{SCHEME}{hash}")
}

fn parse(text: &str) -> Result<PasswdFile, String> {
    PasswdFile::parse(text, Path::new("/etc/portcullis/users"))
}

fn login(user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.into(),
        password: Secret::new(password),
    }
}

#[test]
fn users_comments_and_blank_lines() {
    let text = format!(
        "# users of the edge\n\nalice:{}\n   # indented comment\nbob@example.test:{}\r\n",
        cheap_hash("a"),
        cheap_hash("b")
    );
    let file = parse(&text).unwrap();
    assert_eq!(file.users(), 2);
    assert!(file.hash_of("alice").1 && file.hash_of("bob@example.test").1);
    assert!(
        !file.hash_of("carol").1 && !file.hash_of("Alice").1,
        "users match exactly"
    );
    assert!(
        !format!("{file:?}").contains("argon2id"),
        "Debug shows no hashes: {file:?}"
    );
}

#[test]
fn a_malformed_line_is_named_with_file_and_number() {
    let good = cheap_hash("a");
    for (bad, says) in [
        ("no colon here".to_string(), "expected USER:"),
        (format!("alice:{}", good.trim_start_matches(SCHEME)), "does not start with {ARGON2ID}"),
        ("alice:{ARGON2ID}$argon2i$v=19$m=8192,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(), "not argon2id"),
        ("alice:{ARGON2ID}$argon2id$v=16$m=8192,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(), "version 19"),
        ("alice:{ARGON2ID}$argon2id$v=19$m=4194304,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(), "cost above"),
        ("alice:{ARGON2ID}garbage".to_string(), "not a PHC string"),
        (format!(":{good}"), "the user is empty"),
        (format!("al ice:{good}"), "whitespace"),
    ] {
        let text = format!("# header\nbob:{good}\n{bad}\n");
        let err = parse(&text).err().unwrap_or_else(|| panic!("{bad:?} was taken"));
        assert!(err.starts_with("/etc/portcullis/users: line 3: "), "{err}");
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

#[test]
fn a_user_listed_twice_is_refused() {
    let text = format!(
        "alice:{}\nbob:{}\nalice:{}\n",
        cheap_hash("a"),
        cheap_hash("b"),
        cheap_hash("c")
    );
    let err = parse(&text).unwrap_err();
    assert!(
        err.contains("line 3") && err.contains("\"alice\" is listed twice"),
        "{err}"
    );
}

#[test]
fn a_missing_or_oversized_file_is_refused_by_name() {
    let err = PasswdFile::load(Path::new("/nonexistent/portcullis-users")).unwrap_err();
    assert!(err.starts_with("/nonexistent/portcullis-users: "), "{err}");
    let path = std::env::temp_dir().join(format!("portcullis-users-big-{}", std::process::id()));
    std::fs::write(&path, vec![b'#'; AUTH_PASSWD_FILE_BYTES_MAX as usize + 1]).unwrap();
    let err = PasswdFile::load(&path).unwrap_err();
    let _ = std::fs::remove_file(&path);
    assert!(err.contains("larger than"), "{err}");
}

#[test]
fn unknown_users_verify_against_a_dummy_of_the_files_cost() {
    let file = parse(&format!("alice:{}\n", cheap_hash("a"))).unwrap();
    let (dummy, known) = file.hash_of("nobody");
    assert!(!known);
    let cost = |phc: &str| {
        let parsed = PasswordHash::new(phc).unwrap();
        (
            Params::try_from(&parsed).unwrap(),
            parsed.hash.unwrap().len(),
        )
    };
    let (dummy_params, dummy_len) = cost(dummy);
    let (alice_params, alice_len) = cost(file.hash_of("alice").0);
    assert_eq!(
        (
            dummy_params.m_cost(),
            dummy_params.t_cost(),
            dummy_params.p_cost(),
            dummy_len
        ),
        (
            alice_params.m_cost(),
            alice_params.t_cost(),
            alice_params.p_cost(),
            alice_len
        )
    );
    assert!(!verify_hash(dummy, "a") && !verify_hash(dummy, ""));
    // An empty file still has one: the default cost.
    let empty = parse("# nobody yet\n").unwrap();
    assert!(empty
        .hash_of("x")
        .0
        .contains(&format!("m={}", Params::DEFAULT_M_COST)));
}

#[test]
fn the_hash_passwd_prints_verifies_and_nothing_else_does() {
    let line = format!("alice:{}", hash_password("correct horse").unwrap());
    assert!(
        line.starts_with("alice:{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$"),
        "{line}"
    );
    let other = hash_password("correct horse").unwrap();
    assert_ne!(
        line.split_once(':').unwrap().1,
        other,
        "a fresh salt each time"
    );
    let file = parse(&line).unwrap();
    let verdicts = on_executor(move || async move {
        {
            vec![
                file.verify(&login("alice", "correct horse")).await,
                file.verify(&login("alice", "correct horsE")).await,
                file.verify(&login("alice", "")).await,
                file.verify(&login("mallory", "correct horse")).await,
            ]
        }
    });
    assert_eq!(
        verdicts,
        [
            Verdict::Accepted,
            Verdict::Refused,
            Verdict::Refused,
            Verdict::Refused
        ]
    );
}

#[test]
fn past_the_bound_of_verifications_a_shard_answers_unavailable() {
    let file = parse(&format!("alice:{}\n", cheap_hash("a"))).unwrap();
    let verdicts = on_executor(move || async move {
        {
            let held: Vec<_> = (0..AUTH_VERIFICATIONS_PER_SHARD_MAX)
                .map(|_| Turn::take().expect("a turn"))
                .collect();
            let full = file.verify(&login("alice", "a")).await;
            drop(held);
            let free = file.verify(&login("alice", "a")).await;
            (full, free)
        }
    });
    assert!(
        matches!(verdicts.0, Verdict::Unavailable(ref why) if why.contains("already running")),
        "{:?}",
        verdicts.0
    );
    assert_eq!(verdicts.1, Verdict::Accepted);
}
