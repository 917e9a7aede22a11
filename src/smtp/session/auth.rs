//! SMTP AUTH (RFC 4954) in the session: when AUTH is offered, the SASL
//! exchange of PLAIN and LOGIN (`smtp::sasl`), and `Question::Auth`, whose
//! answer is 235 or the policy's refusal. Credentials never reach the
//! events (the mail log): the AUTH command is logged with its mechanism
//! only, and the client's responses are not logged at all.

use super::commands::Outcome;
use super::{AuthTier, Pending, Session, State, Step};
use crate::smtp::reply::Reply;
use crate::smtp::sasl::{self, Mechanism, Secret};

/// Where a SASL exchange stands after a 334.
#[derive(Debug)]
pub(super) enum AuthStep {
    /// PLAIN without an initial response: the response is the credentials.
    Plain,
    /// LOGIN: the user name comes next.
    LoginUser,
    /// LOGIN: the password comes next.
    LoginPassword { user: String },
}

impl Session {
    /// May AUTH be advertised now? (RFC 4954 §4: not after a success.)
    pub(super) fn auth_offered(&self) -> bool {
        let p = self.policy();
        p.auth != AuthTier::Off && self.authenticated.is_none() && (self.tls.is_some() || !p.auth_needs_tls)
    }

    /// `AUTH mechanism [initial-response]`.
    pub(super) fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Outcome {
        let p = self.policy();
        if p.auth == AuthTier::Off {
            return Outcome::Reply(Reply::new(503, "5.5.1", "Error: authentication not enabled"));
        }
        if !self.esmtp {
            return Outcome::Reply(Reply::new(503, "5.5.1", "Error: send EHLO first"));
        }
        if self.authenticated.is_some() {
            return Outcome::Reply(Reply::new(503, "5.5.1", "Error: already authenticated"));
        }
        if self.tx.is_some() {
            return Outcome::Reply(Reply::new(503, "5.5.1", "Error: MAIL transaction in progress"));
        }
        if p.auth_needs_tls && self.tls.is_none() {
            return Outcome::Reply(Reply::new(538, "5.7.11", "Encryption required for requested authentication mechanism"));
        }
        let Some(mechanism) = Mechanism::parse(mechanism) else {
            return Outcome::Reply(Reply::new(504, "5.5.4", "Error: unsupported authentication mechanism"));
        };
        match (mechanism, initial) {
            (Mechanism::Plain, None) => challenge("", AuthStep::Plain),
            (Mechanism::Login, None) => challenge(sasl::LOGIN_USER_PROMPT, AuthStep::LoginUser),
            (Mechanism::Plain, Some(response)) => self.respond(AuthStep::Plain, response),
            (Mechanism::Login, Some(response)) => self.respond(AuthStep::LoginUser, response),
        }
    }

    /// The client's response line in `State::Auth` (CRLF only, bounded
    /// like a command line; a longer one is refused with 500 by `no_line`).
    pub(super) fn step_auth(&mut self) -> Step {
        let Some(lf) = self.find_line() else { return self.no_line() };
        let line = self.input[self.consumed..=self.consumed + lf].to_vec();
        self.consumed += lf + 1;
        let State::Auth(step) = std::mem::replace(&mut self.state, State::Command) else {
            unreachable!("step_auth runs in State::Auth")
        };
        let response = match line.strip_suffix(b"\r\n").filter(|t| !t.contains(&b'\r') && !t.contains(&b'\n')) {
            Some(text) => String::from_utf8_lossy(text).into_owned(),
            None => {
                self.send("AUTH", String::new(), Reply::new(500, "5.5.2", "Error: bare CR or LF not allowed"));
                return Step::Continue;
            }
        };
        if sasl::cancelled(&response) {
            self.send("AUTH", String::new(), Reply::new(501, "5.0.0", "Authentication cancelled"));
            return Step::Continue;
        }
        match self.respond(step, &response) {
            Outcome::Reply(reply) => self.send("AUTH", String::new(), reply),
            Outcome::Challenge(reply, step) => {
                self.send("AUTH", String::new(), reply);
                self.state = State::Auth(step);
            }
            Outcome::Ask(pending) => return Step::Act(self.ask("AUTH", String::new(), pending)),
            _ => unreachable!("respond answers with a reply, a challenge or a question"),
        }
        Step::Continue
    }

    /// One response of the exchange: the next challenge, the question, or
    /// the refusal of a malformed response (501 5.5.2).
    fn respond(&mut self, step: AuthStep, response: &str) -> Outcome {
        let parsed = match step {
            AuthStep::Plain => sasl::plain(response),
            AuthStep::LoginUser => match sasl::login_field(response) {
                Ok(user) => return challenge(sasl::LOGIN_PASSWORD_PROMPT, AuthStep::LoginPassword { user }),
                Err(reply) => Err(reply),
            },
            AuthStep::LoginPassword { user } => sasl::login_field(response).map(|password| (user, password)),
        };
        match parsed {
            Ok((user, password)) => Outcome::Ask(Pending::Auth { user, password: Secret::new(password) }),
            Err(reply) => Outcome::Reply(reply),
        }
    }

    /// The answer was yes: this session may now relay as `user`.
    pub(super) fn authenticated_as(&mut self, user: String) -> Reply {
        self.authenticated = Some(user);
        Reply::new(235, "2.7.0", "Authentication successful")
    }

    /// The user who authenticated, if any.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// RFC 4954 §6: a policy that requires AUTH refuses MAIL before it.
    pub(super) fn auth_refusal(&self) -> Option<Reply> {
        (self.policy().auth == AuthTier::Required && self.authenticated.is_none())
            .then(|| Reply::new(530, "5.7.0", "Authentication required"))
    }
}

/// A 334 challenge (RFC 4954 §4: the text is base64, or empty).
fn challenge(text: &str, step: AuthStep) -> Outcome {
    Outcome::Challenge(Reply::new(334, "", text), step)
}
