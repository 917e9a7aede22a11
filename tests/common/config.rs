//! A `portcullis` config file that a test writes, rewrites and reloads.
//!
//! `ConfigFile::new(&policy)` writes `TMP/portcullis.toml`; the test passes
//! it with `.config(file.path())` and, to change the policy under a running
//! server, calls `file.write(...)` and then `server.sighup()`. A write
//! replaces the file by rename, so a reload never reads half a file.
//!
//! [`PolicyToml`] renders the keys reload tests change (relay domains,
//! routes) plus any raw lines; flags override the file, so a test that
//! reloads these keys must not pass them as flags too
//! (`PortcullisBuilder::routes_from_config`).

use super::process::TempDir;
use super::sink::Sink;
use std::path::{Path, PathBuf};

/// The relay domains and routes of a config file, and raw extra lines.
#[derive(Clone, Default)]
pub struct PolicyToml {
    relay_domains: Vec<String>,
    routes: Vec<(String, String)>,
    top_level: Vec<String>,
}

impl PolicyToml {
    pub fn new() -> Self {
        PolicyToml::default()
    }
    /// Adds `domain` to `relay_domains`.
    pub fn relay(mut self, domain: &str) -> Self {
        self.relay_domains.push(domain.to_owned());
        self
    }
    /// `[routes] "DOMAIN" = ["127.0.0.1:SINKPORT"]`.
    pub fn route(self, domain: &str, sink: &Sink) -> Self {
        let host = sink.host_port();
        self.route_host(domain, &host)
    }
    /// `[routes] "DOMAIN" = ["HOST:PORT"]`.
    pub fn route_host(mut self, domain: &str, host: &str) -> Self {
        self.routes.push((domain.to_owned(), host.to_owned()));
        self
    }
    /// A top-level line, verbatim, e.g. `max_connections = 1`.
    pub fn line(mut self, line: &str) -> Self {
        self.top_level.push(line.to_owned());
        self
    }

    pub fn render(&self) -> String {
        let quoted: Vec<String> = self
            .relay_domains
            .iter()
            .map(|d| format!("{d:?}"))
            .collect();
        let mut text = format!("relay_domains = [{}]\n", quoted.join(", "));
        for line in &self.top_level {
            text.push_str(line);
            text.push('\n');
        }
        // A table comes after every top-level key.
        text.push_str("\n[routes]\n");
        for (domain, host) in &self.routes {
            text.push_str(&format!("{domain:?} = [{host:?}]\n"));
        }
        text
    }
}

/// A config file in its own temp dir.
pub struct ConfigFile {
    dir: TempDir,
    path: PathBuf,
}

impl ConfigFile {
    pub fn new(policy: &PolicyToml) -> ConfigFile {
        let dir = TempDir::new("config");
        let path = dir.path().join("portcullis.toml");
        let file = ConfigFile { dir, path };
        file.write(policy);
        file
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn write(&self, policy: &PolicyToml) {
        self.write_text(&policy.render());
    }
    /// A file holding `text` as it is (`[[listener]]` configs and the like).
    pub fn with_text(text: &str) -> ConfigFile {
        let file = ConfigFile::new(&PolicyToml::new());
        file.write_text(text);
        file
    }

    /// Replaces the file with `text` (which may be invalid on purpose).
    pub fn write_text(&self, text: &str) {
        let tmp = self.dir.path().join("portcullis.toml.new");
        std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &self.path)
            .unwrap_or_else(|e| panic!("rename to {}: {e}", self.path.display()));
    }
}
