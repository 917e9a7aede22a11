//! A compiled mail flow policy: the parameters of `config::flow` turned into
//! what the decisions need (replies ready to send, exception sets, the
//! counter key of a client), shared by every connection admitted under it.

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashSet;

use crate::config::flow::{Behavior, FlowParams, RejectAt};
use crate::policy::hat::canonical_ip;
use crate::policy::rat::enhanced;
use crate::smtp::{Banner, ConnectionPolicy, Reply};

/// One mail flow policy, ready to decide.
#[derive(Debug)]
pub struct MailFlowPolicy {
    pub name: String,
    pub params: FlowParams,
    exempt: SenderRateExemptions,
}

/// Who the per-sender rate limit does not count: full addresses, domains
/// (the sender's domain equal to one), client IPs.
#[derive(Debug, Default)]
struct SenderRateExemptions {
    addresses: HashSet<String>,
    domains: HashSet<String>,
    ips: HashSet<IpAddr>,
}

/// What banner variables stand for on one connection.
pub struct BannerVars<'a> {
    /// The listener's host name, or the policy's `banner_hostname`.
    pub hostname: &'a str,
    pub remote_ip: IpAddr,
    /// The forward-confirmed PTR name, or "unknown".
    pub remote_host: &'a str,
    pub group: &'a str,
    pub local_ip: IpAddr,
}

impl MailFlowPolicy {
    pub fn compile(name: &str, params: FlowParams) -> Result<MailFlowPolicy, String> {
        let mut exempt = SenderRateExemptions::default();
        for entry in &params.sender_rate_limit_exceptions {
            let entry = entry.trim().to_ascii_lowercase();
            if let Ok(ip) = entry.parse::<IpAddr>() {
                exempt.ips.insert(ip);
            } else if entry.contains('@') {
                exempt.addresses.insert(entry);
            } else if crate::config::is_domain(&entry) {
                exempt.domains.insert(entry);
            } else {
                return Err(format!("sender_rate_limit_exceptions: {entry:?} is not an address, domain or IP"));
            }
        }
        Ok(MailFlowPolicy { name: name.to_string(), params, exempt })
    }

    pub fn behavior(&self) -> Behavior {
        self.params.behavior
    }

    /// REJECT with `reject_at = "rcpt"`: admitted, every RCPT refused.
    pub fn rejects_at_rcpt(&self) -> bool {
        self.params.behavior == Behavior::Reject && self.params.reject_at == RejectAt::Rcpt
    }

    /// What the session of an admitted connection may do, banner rendered.
    pub fn admission(&self, vars: &BannerVars) -> Arc<ConnectionPolicy> {
        let p = &self.params;
        Arc::new(ConnectionPolicy {
            banner: Banner { code: p.banner_code, text: self.render(&p.banner_text, vars) },
            message_bytes_max: p.max_message_size as usize,
            recipients_max: p.max_recipients_per_message as usize,
            messages_per_connection_max: p.max_messages_per_connection,
            tls: p.tls,
            auth: p.smtp_auth,
            auth_needs_tls: p.require_tls_for_auth,
        })
    }

    /// The REJECT banner (no enhanced code: nothing is negotiated yet, RFC 2034).
    pub fn reject_banner(&self, vars: &BannerVars) -> Reply {
        Reply::new(self.params.reject_banner_code, "", self.render(&self.params.reject_banner_text, vars))
    }

    /// The reply every RCPT gets under `reject_at = "rcpt"`.
    pub fn reject_rcpt(&self, vars: &BannerVars) -> Reply {
        let code = self.params.reject_banner_code;
        Reply::new(code, &enhanced(code, "7.1"), self.render(&self.params.reject_banner_text, vars))
    }

    pub fn recipients_per_hour_reply(&self) -> Reply {
        let p = &self.params;
        Reply::new(p.max_recipients_per_hour_code, &enhanced(p.max_recipients_per_hour_code, "2.2"), p.max_recipients_per_hour_text.clone())
    }

    pub fn sender_rate_reply(&self) -> Reply {
        let p = &self.params;
        Reply::new(p.sender_rate_limit_code, &enhanced(p.sender_rate_limit_code, "2.2"), p.sender_rate_limit_text.clone())
    }

    pub fn dhap_reply(&self) -> Reply {
        let p = &self.params;
        Reply::new(p.dhap_code, &enhanced(p.dhap_code, "7.1"), p.dhap_text.clone())
    }

    /// RFC 3463: X.1.7 bad sender mailbox syntax, X.1.8 bad sender system address.
    pub fn sender_malformed_reply(&self, sender: &str) -> Reply {
        let p = &self.params;
        Reply::new(p.sender_malformed_code, &enhanced(p.sender_malformed_code, "1.7"), p.sender_malformed_text.replace("$EnvelopeSender", sender))
    }

    pub fn sender_nxdomain_reply(&self, sender: &str) -> Reply {
        let p = &self.params;
        Reply::new(p.sender_nxdomain_code, &enhanced(p.sender_nxdomain_code, "1.8"), p.sender_nxdomain_text.replace("$EnvelopeSender", sender))
    }

    pub fn sender_servfail_reply(&self, sender: &str) -> Reply {
        let p = &self.params;
        Reply::new(p.sender_servfail_code, &enhanced(p.sender_servfail_code, "1.8"), p.sender_servfail_text.replace("$EnvelopeSender", sender))
    }

    /// Is this envelope sender (or the client's IP) exempt from the sender rate limit?
    pub fn sender_rate_exempt(&self, sender: &str, client: IpAddr) -> bool {
        let sender = sender.to_ascii_lowercase();
        let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
        self.exempt.ips.contains(&client) || self.exempt.addresses.contains(&sender) || self.exempt.domains.contains(domain)
    }

    /// The key a client's per-IP counters are held under: its address, or
    /// its similarity group (`group_by_similarity_bits_v4`/`_v6`) as a prefix.
    pub fn client_key(&self, ip: IpAddr) -> String {
        similarity_key(ip, self.params.group_by_similarity_bits_v4, self.params.group_by_similarity_bits_v6)
    }

    /// Replace `$Hostname`, `$RemoteIP`, `$RemoteHost`, `$Group`, `$Policy`, `$LocalIP`.
    fn render(&self, template: &str, vars: &BannerVars) -> String {
        if !template.contains('$') {
            return template.to_string();
        }
        let hostname = if self.params.banner_hostname.is_empty() { vars.hostname } else { &self.params.banner_hostname };
        template
            .replace("$Hostname", hostname)
            .replace("$RemoteIP", &vars.remote_ip.to_string())
            .replace("$RemoteHost", vars.remote_host)
            .replace("$Group", vars.group)
            .replace("$Policy", &self.name)
            .replace("$LocalIP", &vars.local_ip.to_string())
    }
}

/// `ip` itself at full length, else `network/bits` (IPv4-mapped IPv6 as IPv4).
pub fn similarity_key(ip: IpAddr, bits_v4: u8, bits_v6: u8) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) if bits_v4 >= 32 => v4.to_string(),
        IpAddr::V4(v4) => {
            let mask = if bits_v4 == 0 { 0 } else { u32::MAX << (32 - bits_v4) };
            format!("{}/{bits_v4}", std::net::Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) if bits_v6 >= 128 => v6.to_string(),
        IpAddr::V6(v6) => {
            let mask = if bits_v6 == 0 { 0 } else { u128::MAX << (128 - bits_v6) };
            format!("{}/{bits_v6}", std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(edit: impl FnOnce(&mut FlowParams)) -> MailFlowPolicy {
        let mut params = FlowParams::default();
        edit(&mut params);
        MailFlowPolicy::compile("THROTTLED", params).unwrap()
    }

    #[test]
    fn banner_variables_are_replaced() {
        let p = policy(|p| p.banner_text = "$Hostname ESMTP for $RemoteIP ($RemoteHost) in $Group/$Policy at $LocalIP".into());
        let vars = BannerVars { hostname: "mx.test", remote_ip: "192.0.2.7".parse().unwrap(), remote_host: "unknown", group: "SUSPECT", local_ip: "192.0.2.1".parse().unwrap() };
        let banner = p.admission(&vars).banner.reply().to_string();
        assert_eq!(banner, "220 mx.test ESMTP for 192.0.2.7 (unknown) in SUSPECT/THROTTLED at 192.0.2.1");
        let p = policy(|p| p.banner_hostname = "edge.example".into());
        assert_eq!(p.admission(&vars).banner.text, "edge.example ESMTP");
    }

    #[test]
    fn similarity_groups_are_prefixes() {
        let v4: IpAddr = "192.0.2.77".parse().unwrap();
        assert_eq!(similarity_key(v4, 32, 64), "192.0.2.77");
        assert_eq!(similarity_key(v4, 24, 64), "192.0.2.0/24");
        assert_eq!(similarity_key(v4, 0, 64), "0.0.0.0/0");
        let v6: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        assert_eq!(similarity_key(v6, 32, 64), "2001:db8:1:2::/64");
        assert_eq!(similarity_key(v6, 32, 128), "2001:db8:1:2:aaaa::1");
        let mapped: IpAddr = "::ffff:192.0.2.77".parse().unwrap();
        assert_eq!(similarity_key(mapped, 24, 64), "192.0.2.0/24");
    }

    #[test]
    fn sender_rate_exemptions() {
        let p = policy(|p| p.sender_rate_limit_exceptions = vec!["CEO@example.com".into(), "partner.example".into(), "192.0.2.7".into()]);
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(p.sender_rate_exempt("ceo@EXAMPLE.com", other));
        assert!(p.sender_rate_exempt("anyone@partner.example", other));
        assert!(!p.sender_rate_exempt("anyone@sub.partner.example", other));
        assert!(p.sender_rate_exempt("x@y.test", "192.0.2.7".parse().unwrap()));
        assert!(!p.sender_rate_exempt("x@y.test", other));
        assert!(MailFlowPolicy::compile("X", FlowParams { sender_rate_limit_exceptions: vec!["not valid".into()], ..FlowParams::default() }).is_err());
    }

    #[test]
    fn configured_replies_get_enhanced_codes() {
        let p = policy(|_| {});
        assert_eq!(p.recipients_per_hour_reply().to_string(), "452 4.2.2 Too many recipients received this hour");
        assert_eq!(p.dhap_reply().to_string(), "550 5.7.1 Too many invalid recipients");
        assert_eq!(p.sender_nxdomain_reply("a@b.test").to_string(), "553 5.1.8 Domain of sender address <a@b.test> does not exist");
        assert_eq!(p.sender_servfail_reply("a@b.test").code, 451);
    }
}
