//! One compiled call-ahead profile (`[callahead.NAME]`): what the owner
//! shard (cache, single flight, server choice) and the probe pool (per
//! server cap, breaker, session length) need, with durations and replies
//! made once per policy snapshot. Shared by `Arc`: a validation request
//! carries its profile to the domain's owner shard.

use std::net::IpAddr;
use std::time::Duration;

use super::cache::Ttls;
use super::verdict::Verdict;
use crate::config::RouteHost;
use crate::config::callahead::{CallaheadConfig, FailureAction, Mode, ServerType};
use crate::policy::rat::enhanced;
use crate::smtp::Reply;

/// Where probes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Servers {
    /// The route of the recipient's domain.
    DeliveryHost,
    /// These hosts, round robin from the first.
    Static(Vec<RouteHost>),
}

#[derive(Debug)]
pub struct Profile {
    pub name: String,
    pub servers: Servers,
    /// MAIL FROM of probes ("" = `<>`).
    pub mail_from: String,
    /// One validation request, every server tried included.
    pub timeout: Duration,
    /// Timeout, connection error, garbage, refusal before RCPT: accept, or
    /// refuse with this reply.
    pub failure_accepts: bool,
    pub failure_reply: Reply,
    /// A 4xx at RCPT: accept, or refuse with this reply (None: the downstream's own).
    pub tempfail_accepts: bool,
    pub tempfail_reply: Option<Reply>,
    pub max_recipients_per_session: usize,
    pub max_connections_per_server: usize,
    pub cache_entries: usize,
    pub ttls: Ttls,
    /// Decide and log, but accept (mode = "warn").
    pub warn_only: bool,
    /// Consecutive server failures that open its breaker (0 = never).
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    /// Uncached probes one client IP may cause per minute (0 = no budget).
    pub probes_per_client_per_minute: u32,
    pub catch_all_detection: bool,
    pub source_address: Option<IpAddr>,
    /// STARTTLS to the servers (`[callahead.NAME] tls`).
    pub tls: crate::smtp::client::StartTls,
}

/// What the client is told, and why (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Refuse(Reply),
}

impl Profile {
    pub fn compile(name: &str, c: &CallaheadConfig) -> Profile {
        let secs = |s: u64| Duration::from_secs(s);
        Profile {
            name: name.to_string(),
            servers: match c.server_type {
                ServerType::DeliveryHost => Servers::DeliveryHost,
                ServerType::Static => Servers::Static(c.static_servers.clone()),
            },
            mail_from: c.mail_from.clone(),
            timeout: secs(c.validation_timeout_secs),
            failure_accepts: c.failure_action == FailureAction::Accept,
            // X.4.3: "directory server failure" (RFC 3463), the closest to "we could not ask".
            failure_reply: Reply::new(c.failure_code, &enhanced(c.failure_code, "4.3"), c.failure_text.clone()),
            tempfail_accepts: c.tempfail_action == FailureAction::Accept,
            tempfail_reply: (c.tempfail_code != 0).then(|| {
                Reply::new(c.tempfail_code, &enhanced(c.tempfail_code, "4.3"), c.tempfail_text.clone())
            }),
            max_recipients_per_session: c.max_recipients_per_session as usize,
            max_connections_per_server: c.max_connections_per_server as usize,
            cache_entries: c.cache_entries as usize,
            ttls: Ttls {
                positive_ms: c.cache_ttl_secs * 1000,
                negative_ms: c.negative_cache_ttl_secs * 1000,
                negative_recheck_ms: c.negative_recheck_secs * 1000,
            },
            warn_only: c.mode == Mode::Warn,
            breaker_failures: c.breaker_failures,
            breaker_open: secs(c.breaker_open_secs),
            probes_per_client_per_minute: c.probes_per_client_per_minute,
            catch_all_detection: c.catch_all_detection,
            source_address: c.source_address.parse().ok(),
            tls: match c.tls {
                crate::config::callahead::ProbeTls::Off => crate::smtp::client::StartTls::Off,
                crate::config::callahead::ProbeTls::Preferred => crate::smtp::client::StartTls::Preferred,
                crate::config::callahead::ProbeTls::Required => crate::smtp::client::StartTls::Required,
            },
        }
    }

    /// The answer enforce mode gives for `verdict` (warn mode logs it and accepts).
    pub fn answer(&self, verdict: &Verdict) -> Answer {
        match verdict {
            Verdict::Accepted(_) => Answer::Accept,
            Verdict::MailboxUnknown(reply) | Verdict::RecipientRefused(reply) => Answer::Refuse(reply.clone()),
            Verdict::TempFail(_) if self.tempfail_accepts => Answer::Accept,
            Verdict::TempFail(reply) => Answer::Refuse(self.tempfail_reply.clone().unwrap_or_else(|| reply.clone())),
            Verdict::DownstreamFailure { .. } if self.failure_accepts => Answer::Accept,
            Verdict::DownstreamFailure { .. } => Answer::Refuse(self.failure_reply.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callahead::verdict::{of_fault, of_rcpt, Stage};

    fn profile(text: &str) -> Profile {
        let c: CallaheadConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        Profile::compile("p", &c)
    }

    #[test]
    fn every_verdict_has_its_answer() {
        let p = profile("");
        let unknown = Reply::new(550, "5.1.1", "<x@d>: User unknown");
        assert_eq!(p.answer(&of_rcpt(Reply::new(250, "2.1.5", "Ok"))), Answer::Accept);
        assert_eq!(p.answer(&of_rcpt(unknown.clone())), Answer::Refuse(unknown));
        let busy = Reply::new(450, "4.2.1", "Mailbox busy");
        assert_eq!(p.answer(&of_rcpt(busy.clone())), Answer::Refuse(busy), "the downstream's 4xx passes through by default");
        let failed = p.answer(&of_fault(Stage::Connect, "refused"));
        assert_eq!(failed, Answer::Refuse(Reply::new(451, "4.4.3", "Recipient validation failed, try again later")));
    }

    #[test]
    fn custom_replies_and_accepting_actions() {
        let p = profile("tempfail_code = 452\ntempfail_text = \"Later\"\nfailure_code = 550\nfailure_text = \"No\"\n");
        assert_eq!(p.answer(&of_rcpt(Reply::new(450, "4.2.1", "busy"))), Answer::Refuse(Reply::new(452, "4.4.3", "Later")));
        assert_eq!(p.answer(&of_fault(Stage::Greeting, "x")), Answer::Refuse(Reply::new(550, "5.4.3", "No")));
        let p = profile("tempfail_action = \"accept\"\nfailure_action = \"accept\"\n");
        assert_eq!(p.answer(&of_rcpt(Reply::new(450, "4.2.1", "busy"))), Answer::Accept);
        assert_eq!(p.answer(&of_fault(Stage::Rcpt, "timeout")), Answer::Accept);
        assert_eq!(p.answer(&of_rcpt(Reply::new(550, "5.1.1", "unknown"))), Answer::Refuse(Reply::new(550, "5.1.1", "unknown")), "an unknown mailbox is never accepted");
    }
}
