//! SASL for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN
//! mechanisms, pure. Base64 in, a user name and password out; the session
//! asks the policy whether they are right.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::smtp::reply::Reply;

/// The password type: never printed, not even by `{:?}` (a Question is Debug).
pub use crate::auth::Secret;

/// The mechanisms we offer, in the EHLO reply's order.
pub const MECHANISMS: &str = "PLAIN LOGIN";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name {
            _ if name.eq_ignore_ascii_case("PLAIN") => Some(Mechanism::Plain),
            _ if name.eq_ignore_ascii_case("LOGIN") => Some(Mechanism::Login),
            _ => None,
        }
    }
}

/// The LOGIN prompts (draft-murchison-sasl-login): "Username:" and
/// "Password:" in base64.
pub const LOGIN_USER_PROMPT: &str = "VXNlcm5hbWU6";
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// RFC 4954 §4: a client response of "*" cancels the exchange.
pub fn cancelled(line: &str) -> bool {
    line == "*"
}

/// 501 5.5.2 for a response that is not base64 (RFC 4954 §4).
pub fn malformed() -> Reply {
    Reply::new(501, "5.5.2", "Error: cannot decode the response")
}

/// One base64 response. "=" is the empty initial response (§4).
pub fn decode(text: &str) -> Result<Vec<u8>, Reply> {
    if text == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(text).map_err(|_| malformed())
}

/// A decoded LOGIN field (user name or password): UTF-8, no NUL.
pub fn login_field(text: &str) -> Result<String, Reply> {
    let bytes = decode(text)?;
    String::from_utf8(bytes).ok().filter(|s| !s.contains('\0')).ok_or_else(malformed)
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`, UTF-8. An authzid
/// other than the authcid would be acting for someone else, which we do not
/// offer: refused like a wrong password (535 5.7.8), not a syntax error.
pub fn plain(text: &str) -> Result<(String, String), Reply> {
    let bytes = decode(text)?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let mut fields = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(malformed());
    };
    if !authzid.is_empty() && authzid != authcid {
        return Err(Reply::new(535, "5.7.8", "Error: authentication credentials invalid"));
    }
    Ok((authcid.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn plain_splits_authcid_and_password() {
        assert_eq!(plain(&b64(b"\0alice\0s3cret")).unwrap(), ("alice".into(), "s3cret".into()));
        assert_eq!(plain(&b64(b"alice\0alice\0pw")).unwrap(), ("alice".into(), "pw".into()));
        assert_eq!(plain(&b64(b"bob\0alice\0pw")).unwrap_err().code, 535, "acting for another user");
        for bad in ["!!!", &b64(b"alice\0pw"), &b64(b"\0a\0b\0c"), &b64(&[0, 0xff, 0, b'x'])] {
            assert_eq!(plain(bad).unwrap_err().to_string(), "501 5.5.2 Error: cannot decode the response", "{bad}");
        }
    }

    #[test]
    fn login_fields_and_the_empty_response() {
        assert_eq!(login_field(&b64(b"alice")).unwrap(), "alice");
        assert_eq!(login_field("=").unwrap(), "");
        assert_eq!(login_field("%%%").unwrap_err().code, 501);
        assert_eq!(decode(LOGIN_USER_PROMPT).unwrap(), b"Username:");
        assert_eq!(decode(LOGIN_PASSWORD_PROMPT).unwrap(), b"Password:");
        assert!(cancelled("*"));
        assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
    }
}
