//! The shorthand's relay rules as `[[listener]]` tables with SMTP call-ahead
//! on: issue 2's open-relay and smuggling batteries run again through a
//! listener that validates every recipient at `sink`, so call-ahead can
//! neither open a relay (a RAT reject is never probed) nor change what the
//! session accepts as data.

use super::{free_port, ConfigFile, Portcullis, Sink};

/// Portcullis accepting mail for example.test (RAT; everything else 550
/// 5.7.1), every recipient called ahead at `sink`, which is also the route.
/// Keep the `ConfigFile` alive as long as the server.
pub fn portcullis_with_callahead(sink: &Sink) -> (Portcullis, ConfigFile) {
    let port = free_port();
    let file = ConfigFile::with_text(&format!(
        r#"
[routes]
"*" = ["{sink}"]

[[listener]]
name = "in"
address = "127.0.0.1:{port}"
type = "public"
rat = "in"
unmatched_policy = "OPEN"
callahead = "guard"

[[rat.in]]
recipient = "example.test"
action = "accept"

[[rat.in]]
recipient = "ALL"
action = "reject"
code = 550
text = "Relay access denied"

[policy.OPEN]
dhap_max_invalid_per_hour = 0
max_concurrent_connections_per_ip = 0

[callahead.guard]
validation_timeout_secs = 5
"#,
        sink = sink.host_port()
    ));
    let server = Portcullis::builder()
        .listeners_file(&file, port)
        .routes_from_config()
        .start();
    (server, file)
}
