//! `portcullis callahead query ADDR` and `portcullis callahead purge
//! (ADDR | @DOMAIN | --all)`: the operator's commands for the call-ahead
//! verdict cache (issue 7 item 9). They ask the running appliance's admin
//! listener (`admin::callahead`) through `admin_client` (a tiny blocking
//! HTTP/1.1 client, every step bounded), print the answer's body, and exit
//! 0 on 200, 1 otherwise with the reason on stderr.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::admin_client::{admin_address, ask_and_print};

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
    let admin = admin_address(args.admin.as_deref(), args.config.as_deref());
    let (method, target) = request_target(&args.action);
    ask_and_print(admin, method, &target)
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
            admin_address(all.admin.as_deref(), all.config.as_deref()),
            Ok(crate::limits::ADMIN_LISTEN.to_string()),
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
}
