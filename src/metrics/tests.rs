//! Metrics: updates on two shards, summed on read, rendered as Prometheus
//! text whose lines are checked against the exposition format.

use super::*;
use crate::limits::METRICS_LABEL_SETS_MAX;

const MS: Duration = Duration::from_millis(1);

/// Two shards' worth of traffic, different on each so a sum is visible.
fn two_busy_shards() -> MetricsBoard {
    let (shards, board) = MetricsBoard::for_shards(2);
    for _ in 0..2 {
        shards[0].connection("InboundMail", "ALL", "ACCEPTED", "accepted");
    }
    shards[1].connection("InboundMail", "ALL", "ACCEPTED", "accepted");
    shards[1].connection("InboundMail", "BLACKLIST", "BLOCKED", "rejected");
    shards[0].rate_limit_refusal("recipients_per_hour");
    shards[1].rate_limit_refusal("recipients_per_hour");
    shards[1].rate_limit_refusal("sender_rate");
    shards[0].dhap_refusal();
    shards[1].dhap_refusal();
    shards[1].dhap_refusal();
    shards[0].dns_query("MX", "answer", Duration::from_micros(400));
    shards[1].dns_query("MX", "answer", 3 * MS);
    shards[1].dns_query("PTR", "tempfail", Duration::from_secs(7));
    shards[0].dns_cache_hit("A");
    shards[1].dns_cache_hit("A");
    shards[0].message_accepted();
    shards[1].message_delivered();
    shards[0].connection_opened();
    shards[0].connection_opened();
    shards[1].connection_closed();
    shards[0].coalesced_sleep(Duration::from_micros(250));
    shards[1].coalesced_sleep(Duration::from_millis(2));
    board
}

#[test]
fn values_are_summed_over_shards() {
    let sum = two_busy_shards().summed();
    let accepted = ConnectionLabels {
        listener: "InboundMail".into(),
        group: "ALL".into(),
        policy: "ACCEPTED".into(),
        outcome: "accepted",
    };
    assert_eq!(sum.connections.get(&accepted), Some(&3));
    assert_eq!(sum.connections.len(), 2);
    assert_eq!(sum.rate_limit_refusals, [2, 1, 0, 0]);
    assert_eq!(sum.dhap_refusals, 3);
    assert_eq!(sum.dns_queries[2], [2, 0, 0, 0], "MX");
    assert_eq!(sum.dns_queries[3], [0, 0, 1, 0], "PTR");
    assert_eq!(sum.dns_query_count(), 3);
    assert_eq!(sum.dns_cache_hits[0], 2, "A");
    assert_eq!(sum.dns_latency_nanos_sum, 7_003_400_000);
    assert_eq!((sum.messages_accepted, sum.messages_delivered), (1, 1));
    assert_eq!(sum.coalesced_sleep_micros, 2_250);
    assert_eq!(
        sum.open_connections, 1,
        "2 opened on one shard, 1 closed on the other"
    );
}

#[test]
fn the_page_has_help_type_and_summed_values() {
    let page = two_busy_shards().render();
    for line in [
        "# HELP portcullis_connections_total Connections decided, by listener, sender group, mail flow policy and outcome",
        "# TYPE portcullis_connections_total counter",
        r#"portcullis_connections_total{listener="InboundMail",group="ALL",policy="ACCEPTED",outcome="accepted"} 3"#,
        r#"portcullis_connections_total{listener="InboundMail",group="BLACKLIST",policy="BLOCKED",outcome="rejected"} 1"#,
        "# TYPE portcullis_rate_limit_refusals_total counter",
        r#"portcullis_rate_limit_refusals_total{kind="recipients_per_hour"} 2"#,
        r#"portcullis_rate_limit_refusals_total{kind="sender_rate"} 1"#,
        r#"portcullis_rate_limit_refusals_total{kind="concurrent_connections"} 0"#,
        "# TYPE portcullis_dhap_refusals_total counter",
        "portcullis_dhap_refusals_total 3",
        "# TYPE portcullis_coalesced_sleep_microseconds_total counter",
        "portcullis_coalesced_sleep_microseconds_total 2250",
        "# TYPE portcullis_dns_queries_total counter",
        r#"portcullis_dns_queries_total{type="MX",result="answer"} 2"#,
        r#"portcullis_dns_queries_total{type="PTR",result="tempfail"} 1"#,
        r#"portcullis_dns_queries_total{type="TXT",result="not_found"} 0"#,
        "# TYPE portcullis_dns_query_seconds histogram",
        r#"portcullis_dns_query_seconds_bucket{le="0.0005"} 1"#,
        r#"portcullis_dns_query_seconds_bucket{le="0.0025"} 1"#,
        r#"portcullis_dns_query_seconds_bucket{le="0.005"} 2"#,
        r#"portcullis_dns_query_seconds_bucket{le="5"} 2"#,
        r#"portcullis_dns_query_seconds_bucket{le="+Inf"} 3"#,
        "portcullis_dns_query_seconds_sum 7.0034",
        "portcullis_dns_query_seconds_count 3",
        "# TYPE portcullis_dns_cache_hits_total counter",
        r#"portcullis_dns_cache_hits_total{type="A"} 2"#,
        "portcullis_messages_accepted_total 1",
        "portcullis_messages_delivered_total 1",
        "# TYPE portcullis_open_connections gauge",
        "portcullis_open_connections 1",
    ] {
        assert!(page.lines().any(|l| l == line), "missing {line:?} in\n{page}");
    }
    assert!(
        !page.contains("shard=\""),
        "no shard label: values are summed\n{page}"
    );
    assert!(
        !page.contains(r#""other""#),
        "no catch-all series while nothing fell into it"
    );
    assert_eq!(page.matches(r#"le="+Inf""#).count(), 3, "one +Inf bucket per histogram (DNS, call-ahead probes, LDAP searches)");
    check_exposition_format(&page);
}

#[test]
fn an_empty_board_still_renders_every_family() {
    let (_, board) = MetricsBoard::for_shards(3);
    let page = board.render();
    check_exposition_format(&page);
    // + portcullis_tls_handshakes, _outbound_tls, _auth, _dane, _bounce_verification; + _bounces, _destination_deliveries, _destination_queued, _destination_connections; + _coalesced_sleep_microseconds
    assert_eq!(page.matches("# TYPE ").count(), 9 + 10 + 4 + 5 + 1 + 3 + 1, "{page}");
    for (result, version) in [("ok", "TLSv1.3"), ("ok", "TLSv1.2"), ("failed", "none"), ("timeout", "none")] {
        let line = format!(r#"portcullis_tls_handshakes_total{{result="{result}",version="{version}"}} 0"#);
        assert!(page.lines().any(|l| l == line), "missing {line}\n{page}");
    }
    assert!(!page.contains(r#"portcullis_tls_handshakes_total{result="ok",version="none"}"#));
    assert!(page.lines().any(|l| l == "portcullis_callahead_cache_entries 0"));
    assert!(page.lines().any(|l| l == r#"portcullis_callahead_verdicts_total{source="cache",result="accepted"} 0"#));
    assert!(page.lines().any(|l| l == "portcullis_open_connections 0"));
}

#[test]
fn unknown_label_values_count_as_other() {
    let metrics = Metrics::default();
    metrics.rate_limit_refusal("bogus_limit");
    metrics.dns_query("SRV", "weird", MS);
    metrics.dns_cache_hit("SRV");
    metrics.connection("L", "G", "P", "exploded");
    let page = MetricsBoard::new(vec![Arc::new(metrics)]).render();
    for line in [
        r#"portcullis_rate_limit_refusals_total{kind="other"} 1"#,
        r#"portcullis_dns_queries_total{type="other",result="other"} 1"#,
        r#"portcullis_dns_cache_hits_total{type="other"} 1"#,
        r#"portcullis_connections_total{listener="L",group="G",policy="P",outcome="other"} 1"#,
    ] {
        assert!(
            page.lines().any(|l| l == line),
            "missing {line:?} in\n{page}"
        );
    }
    check_exposition_format(&page);
}

#[test]
fn label_sets_past_the_bound_are_counted_under_other() {
    let metrics = Metrics::default();
    let extra = 5;
    for i in 0..METRICS_LABEL_SETS_MAX + extra {
        metrics.connection("InboundMail", "ALL", &format!("POLICY{i}"), "accepted");
    }
    metrics.connection("InboundMail", "ALL", "POLICY0", "accepted");
    metrics.connection("InboundMail", "ALL", "ONE_MORE", "rejected");
    let snapshot = metrics.snapshot();
    let other = |outcome| ConnectionLabels {
        listener: "other".into(),
        group: "other".into(),
        policy: "other".into(),
        outcome,
    };
    assert_eq!(snapshot.connections.len(), METRICS_LABEL_SETS_MAX + 2);
    assert_eq!(
        snapshot.connections.get(&other("accepted")),
        Some(&(extra as u64))
    );
    assert_eq!(snapshot.connections.get(&other("rejected")), Some(&1));
    let total: u64 = snapshot.connections.values().sum();
    assert_eq!(
        total,
        (METRICS_LABEL_SETS_MAX + extra + 2) as u64,
        "nothing lost"
    );
    let first = snapshot
        .connections
        .iter()
        .find(|(l, _)| &*l.policy == "POLICY0");
    assert_eq!(
        first.map(|(_, n)| *n),
        Some(2),
        "known sets still count past the bound"
    );
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::default();
    metrics.connection("quote\"back\\slash", "new\nline", "P", "accepted");
    let page = MetricsBoard::new(vec![Arc::new(metrics)]).render();
    let expected = r#"portcullis_connections_total{listener="quote\"back\\slash",group="new\nline",policy="P",outcome="accepted"} 1"#;
    assert!(page.lines().any(|l| l == expected), "{page}");
    check_exposition_format(&page);
}

#[test]
fn latency_buckets_are_upper_bound_inclusive() {
    assert_eq!(latency_slot(&DNS_LATENCY_BUCKETS_SECONDS, Duration::ZERO), 0);
    assert_eq!(
        latency_slot(&DNS_LATENCY_BUCKETS_SECONDS, Duration::from_micros(500)),
        0,
        "le=0.0005 includes 0.5 ms"
    );
    assert_eq!(latency_slot(&DNS_LATENCY_BUCKETS_SECONDS, Duration::from_micros(501)), 1);
    assert_eq!(
        latency_slot(&DNS_LATENCY_BUCKETS_SECONDS, Duration::from_secs(5)),
        DNS_LATENCY_BUCKETS_SECONDS.len() - 1
    );
    assert_eq!(
        latency_slot(&DNS_LATENCY_BUCKETS_SECONDS, Duration::from_secs(6)),
        DNS_LATENCY_BUCKETS_SECONDS.len()
    );
}

#[test]
fn an_open_connection_guard_counts_until_dropped() {
    let metrics = Arc::new(Metrics::default());
    let first = metrics.open_connection();
    let second = metrics.open_connection();
    assert_eq!(metrics.snapshot().open_connections, 2);
    drop(first);
    let panicked = std::panic::catch_unwind(move || {
        let _held = second;
        panic!("the connection task fails");
    });
    assert!(panicked.is_err());
    assert_eq!(
        metrics.snapshot().open_connections,
        0,
        "released however it ends"
    );
}

/// A scrape of two shards with 100 connection label sets each: prints how
/// long it took (for the report; no timing assertion) and checks the lines.
#[test]
fn a_scrape_of_many_label_sets() {
    let (shards, board) = MetricsBoard::for_shards(2);
    for (n, shard) in shards.iter().enumerate() {
        for i in 0..100 {
            shard.connection("InboundMail", &format!("GROUP{i}"), "ACCEPTED", "accepted");
            shard.dns_query(DNS_RECORD_TYPES[i % 5], DNS_RESULTS[n], MS * i as u32);
        }
    }
    let started = std::time::Instant::now();
    let page = board.render();
    eprintln!(
        "scrape of 2 shards x 100 label sets: {:?}, {} bytes",
        started.elapsed(),
        page.len()
    );
    let series = page
        .lines()
        .filter(|l| l.starts_with("portcullis_connections_total{"));
    assert_eq!(
        series.count(),
        100,
        "the same label sets on both shards are one series"
    );
    assert!(page.contains(r#"group="GROUP42",policy="ACCEPTED",outcome="accepted"} 2"#));
    assert!(page
        .lines()
        .any(|l| l == "portcullis_dns_query_seconds_count 200"));
    check_exposition_format(&page);
}

/// Call-ahead on two shards: the verdict of each RCPT on the session's
/// shard, lookups and gauges on the owner, probes at the server's owner.
#[test]
fn callahead_families_are_summed_and_encoded() {
    let (shards, board) = MetricsBoard::for_shards(2);
    shards[0].callahead_verdict("probe", "accepted");
    shards[1].callahead_verdict("cache", "accepted");
    shards[1].callahead_verdict("cache", "accepted");
    shards[0].callahead_verdict("cache", "mailbox-unknown");
    shards[0].callahead_verdict("breaker", "failure");
    shards[1].callahead_verdict("nonsense", "accepted");
    shards[1].callahead_verdict("rat", "refused");
    shards[1].callahead_verdict("catch-all", "weird");
    shards[0].callahead_cache_lookup(false);
    shards[1].callahead_cache_lookup(true);
    shards[1].callahead_cache_lookup(true);
    shards[0].callahead_probes_sent(3);
    shards[1].callahead_probes_sent(1);
    shards[0].callahead_connection_opened();
    shards[0].callahead_probe_latency(Duration::from_micros(300));
    shards[1].callahead_probe_latency(20 * MS);
    shards[1].callahead_probe_latency(Duration::from_secs(40));
    shards[0].set_callahead_gauges(3, 2, 1);
    shards[1].set_callahead_gauges(4, 0, 0);
    shards[1].set_callahead_gauges(5, 1, 0);
    let sum = board.summed().callahead;
    assert_eq!(sum.verdicts[1][..2], [2, 1], "cache: accepted, mailbox-unknown");
    assert_eq!(sum.cache_lookups, [2, 1], "hit, miss");
    assert_eq!((sum.probes, sum.connections_opened), (4, 1));
    assert_eq!((sum.cache_entries, sum.probe_connections, sum.breakers_open), (8, 3, 1), "the last value each shard set, summed");
    let page = board.render();
    for line in [
        "# TYPE portcullis_callahead_verdicts_total counter",
        r#"portcullis_callahead_verdicts_total{source="cache",result="accepted"} 2"#,
        r#"portcullis_callahead_verdicts_total{source="cache",result="mailbox-unknown"} 1"#,
        r#"portcullis_callahead_verdicts_total{source="probe",result="accepted"} 1"#,
        r#"portcullis_callahead_verdicts_total{source="breaker",result="failure"} 1"#,
        r#"portcullis_callahead_verdicts_total{source="rat",result="refused"} 1"#,
        r#"portcullis_callahead_verdicts_total{source="bypass",result="tempfail"} 0"#,
        r#"portcullis_callahead_verdicts_total{source="other",result="accepted"} 1"#,
        r#"portcullis_callahead_verdicts_total{source="catch-all",result="other"} 1"#,
        "# TYPE portcullis_callahead_probe_seconds histogram",
        r#"portcullis_callahead_probe_seconds_bucket{le="0.0005"} 1"#,
        r#"portcullis_callahead_probe_seconds_bucket{le="0.025"} 2"#,
        r#"portcullis_callahead_probe_seconds_bucket{le="30"} 2"#,
        r#"portcullis_callahead_probe_seconds_bucket{le="+Inf"} 3"#,
        "portcullis_callahead_probe_seconds_sum 40.0203",
        "portcullis_callahead_probe_seconds_count 3",
        "# TYPE portcullis_callahead_probes_total counter",
        "portcullis_callahead_probes_total 4",
        "portcullis_callahead_probe_connections_opened_total 1",
        r#"portcullis_callahead_cache_lookups_total{result="hit"} 2"#,
        r#"portcullis_callahead_cache_lookups_total{result="miss"} 1"#,
        "# TYPE portcullis_callahead_cache_entries gauge",
        "portcullis_callahead_cache_entries 8",
        "# TYPE portcullis_callahead_probe_connections gauge",
        "portcullis_callahead_probe_connections 3",
        "# TYPE portcullis_callahead_breakers_open gauge",
        "portcullis_callahead_breakers_open 1",
    ] {
        assert!(page.lines().any(|l| l == line), "missing {line:?} in\n{page}");
    }
    assert!(!page.contains(r#"source="other",result="other""#), "an other pair only once counted\n{page}");
    check_exposition_format(&page);
}

/// The Prometheus text format 0.0.4, line by line: `# HELP name text`,
/// `# TYPE name type` once per family before its samples, and samples
/// `name{label="value",...} number` whose name belongs to the declared family.
pub(super) fn check_exposition_format(page: &str) {
    assert!(page.ends_with('\n'), "the last line ends with a line feed");
    let mut family: Option<(String, String)> = None;
    let mut seen = Vec::new();
    for line in page.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, _) = help.split_once(' ').expect("HELP has a name and a text");
            assert!(valid_name(name), "{line}");
        } else if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared
                .split_once(' ')
                .expect("TYPE has a name and a type");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                !seen.contains(&name.to_string()),
                "TYPE once per family: {line}"
            );
            seen.push(name.to_string());
            family = Some((name.to_string(), kind.to_string()));
        } else {
            let (name, kind) = family.as_ref().expect("a sample after its TYPE line");
            check_sample(line, name, kind);
        }
    }
}

fn check_sample(line: &str, family: &str, kind: &str) {
    let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
    let value_ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
    assert!(value_ok, "value of {line}");
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels close")),
        None => (series, ""),
    };
    let allowed: &[&str] = match kind {
        "histogram" => &["_bucket", "_sum", "_count"],
        _ => &[""],
    };
    let suffix = name
        .strip_prefix(family)
        .unwrap_or_else(|| panic!("{line} not in {family}"));
    assert!(allowed.contains(&suffix), "{line} in {family} ({kind})");
    assert_eq!(kind == "counter", family.ends_with("_total"), "{family}");
    check_labels(labels, line);
}

/// `name="value"` pairs separated by commas; values escape `\`, `"` and line feeds.
fn check_labels(mut labels: &str, line: &str) {
    while !labels.is_empty() {
        let (name, rest) = labels
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label in {line}"));
        assert!(valid_name(name), "label name {name:?} in {line}");
        let mut chars = rest.char_indices();
        let end = loop {
            match chars
                .next()
                .unwrap_or_else(|| panic!("unterminated value in {line}"))
            {
                (_, '\\') => assert!(matches!(chars.next(), Some((_, '\\' | '"' | 'n')))),
                (i, '"') => break i,
                (_, '\n') => panic!("raw line feed in {line}"),
                _ => {}
            }
        };
        labels = &rest[end + 1..];
        labels = labels.strip_prefix(',').unwrap_or(labels);
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
