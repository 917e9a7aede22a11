//! STUB (replaced by the helper's): LDAP host lists.
use std::fmt;
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LdapHost {
    pub host: String,
    pub port: Option<u16>,
}
pub fn parse_hosts(values: &[String]) -> Result<Vec<LdapHost>, String> {
    let _ = values;
    Ok(Vec::new())
}
impl fmt::Display for LdapHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}
pub async fn resolve_hosts(_hosts: &[LdapHost], _routes: &crate::config::Routes, _resolver: &crate::dns::Resolver) -> Result<Vec<std::net::SocketAddr>, crate::routing::RouteError> {
    Err(crate::routing::RouteError::TempFail("stub".into()))
}
