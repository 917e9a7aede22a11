//! `portcullis ldap test QUERY ADDR` and `portcullis ldap purge (--query
//! NAME | --all)`: the operator's LDAP commands (issue 8 items 5 and 6).
//!
//! `test` is offline (`test.rs`: the config, the directory and DNS asked
//! directly, the answer explained step by step by `report.rs`); `purge`
//! asks the running appliance's admin listener (`admin::ldap`) through
//! `admin_client`, like `portcullis callahead purge`.

mod report;
mod test;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::admin_client::{ask_and_print, AdminArgs};

#[derive(Args, Debug)]
pub struct LdapArgs {
    #[command(subcommand)]
    pub action: LdapAction,
}

#[derive(Subcommand, Debug)]
pub enum LdapAction {
    /// Run QUERY for ADDR against its directory server and print, step by step, the filter, the answer and what delivery and call-ahead (or the accept query) would do with it. Offline: no running appliance needed.
    Test {
        /// The `[ldap.query."NAME"]` to run.
        query: String,
        /// The recipient address, local@domain.
        address: String,
        /// TOML config file with the query and its server. Default: the built-in config, which has none.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Nameserver for the routing lookups (repeatable); default the `[dns] servers` of the file, else /etc/resolv.conf.
        #[arg(long = "dns", value_name = "ADDR:PORT")]
        dns: Vec<SocketAddr>,
    },
    /// Forget the cached LDAP answers of one query (--query NAME) or of every query (--all), on every shard of the running appliance.
    Purge {
        /// The `[ldap.query."NAME"]` whose answers to forget.
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        query: Option<String>,
        /// Every query's cached answers.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Run the command; the process exit status.
pub fn run(args: LdapArgs) -> i32 {
    match &args.action {
        LdapAction::Test {
            query,
            address,
            config,
            dns,
        } => test::run(query, address, config.as_deref(), dns),
        LdapAction::Purge { admin, .. } => {
            let (method, target) = request_target(&args.action);
            ask_and_print(admin.address(), method, &target)
        }
    }
}

/// The admin request of `purge`, the query name percent-encoded; None for
/// `test`, which asks no admin.
pub fn request_target(action: &LdapAction) -> (&'static str, String) {
    match action {
        LdapAction::Purge { all: true, .. } => ("POST", "/ldap/purge?all=1".to_string()),
        LdapAction::Purge { query, .. } => {
            // clap requires a name unless --all; an empty one is refused by the admin (400).
            let name = query.as_deref().unwrap_or_default();
            (
                "POST",
                format!(
                    "/ldap/purge?query={}",
                    utf8_percent_encode(name, NON_ALPHANUMERIC)
                ),
            )
        }
        LdapAction::Test { .. } => unreachable!("ldap test asks no admin listener"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> LdapAction {
        match Cli::try_parse_from(args).expect("parses").command {
            Some(Command::Ldap(args)) => args.action,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn purge_becomes_its_admin_request() {
        let one = parse(&[
            "portcullis",
            "ldap",
            "purge",
            "--query",
            "LDAP1.routing",
            "--admin",
            "127.0.0.1:1",
        ]);
        assert_eq!(
            request_target(&one),
            ("POST", "/ldap/purge?query=LDAP1%2Erouting".into())
        );
        let LdapAction::Purge { admin, .. } = &one else {
            panic!("{one:?}")
        };
        assert_eq!(admin.address(), Ok("127.0.0.1:1".into()));
        let spaced = parse(&["portcullis", "ldap", "purge", "--query", "My Query&x=1"]);
        assert_eq!(
            request_target(&spaced).1,
            "/ldap/purge?query=My%20Query%26x%3D1",
            "a name cannot add parameters"
        );
        let all = parse(&["portcullis", "ldap", "purge", "--all"]);
        assert_eq!(request_target(&all), ("POST", "/ldap/purge?all=1".into()));
        let LdapAction::Purge { admin, .. } = &all else {
            panic!("{all:?}")
        };
        assert_eq!(
            admin.address(),
            Ok(crate::limits::ADMIN_LISTEN.to_string()),
            "the default admin_listen"
        );
        assert!(
            Cli::try_parse_from(["portcullis", "ldap", "purge"]).is_err(),
            "--query or --all"
        );
        assert!(
            Cli::try_parse_from(["portcullis", "ldap", "purge", "--query", "q", "--all"]).is_err(),
            "not both"
        );
    }

    #[test]
    fn test_takes_a_query_an_address_a_config_and_nameservers() {
        let action = parse(&[
            "portcullis",
            "ldap",
            "test",
            "LDAP1.routing",
            "a@example.test",
            "--config",
            "/etc/p.toml",
            "--dns",
            "127.0.0.1:5353",
        ]);
        let LdapAction::Test {
            query,
            address,
            config,
            dns,
        } = action
        else {
            panic!()
        };
        assert_eq!(
            (query.as_str(), address.as_str()),
            ("LDAP1.routing", "a@example.test")
        );
        assert_eq!(config, Some(PathBuf::from("/etc/p.toml")));
        assert_eq!(dns, vec!["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]);
        assert!(
            Cli::try_parse_from(["portcullis", "ldap", "test", "LDAP1.routing"]).is_err(),
            "an address"
        );
        assert!(
            Cli::try_parse_from([
                "portcullis",
                "ldap",
                "test",
                "q",
                "a@x",
                "--dns",
                "localhost"
            ])
            .is_err(),
            "ADDR:PORT"
        );
    }

    #[test]
    fn test_without_a_query_in_the_config_is_a_config_error() {
        assert_eq!(
            test::run("LDAP1.routing", "a@example.test", None, &[]),
            2,
            "the built-in config has no queries"
        );
        let dir = std::env::temp_dir().join(format!("portcullis-ldap-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.toml");
        std::fs::write(&file, "[ldap.server.S]\nurls = [\"ldap://127.0.0.1:1\"]\n\n[ldap.query.\"S.routing\"]\nserver = \"S\"\nfilter = \"(mail={d})\"\nmailhost_attribute = \"mailHost\"\n").unwrap();
        assert_eq!(
            test::run("S.other", "a@example.test", Some(&file), &[]),
            2,
            "a query the file does not have"
        );
        std::fs::write(
            &file,
            "[ldap.query.\"S.routing\"]\nserver = \"nowhere\"\nfilter = \"(mail={d})\"\n",
        )
        .unwrap();
        assert_eq!(
            test::run("S.routing", "a@example.test", Some(&file), &[]),
            2,
            "a file check-config refuses"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
