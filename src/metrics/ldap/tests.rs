//! LDAP metrics: lookups and accept decisions under their labels, unknown
//! labels under `other`, the search-latency histogram cumulative on the
//! page, and two shards' values summed.

use super::*;
use crate::metrics::tests::check_exposition_format;
use crate::metrics::{Metrics, MetricsBoard};
use std::sync::Arc;

const MS: Duration = Duration::from_millis(1);

fn has_line(page: &str, line: &str) -> bool {
    page.lines().any(|l| l == line)
}

#[test]
fn lookups_and_accept_decisions_land_under_their_labels() {
    let metrics = Metrics::default();
    metrics.ldap_lookup("hit");
    metrics.ldap_lookup("hit");
    metrics.ldap_lookup("hit");
    metrics.ldap_lookup("entry");
    metrics.ldap_lookup("no-entry");
    metrics.ldap_lookup("no-entry");
    metrics.ldap_lookup("error");
    metrics.ldap_accept("accepted");
    metrics.ldap_accept("rejected");
    metrics.ldap_accept("rejected");
    metrics.ldap_accept("failure-rejected");
    metrics.ldap_accept("failure-accepted");
    metrics.ldap_accept("failure-accepted");
    metrics.ldap_accept("failure-accepted");
    let ldap = metrics.snapshot().ldap;
    assert_eq!(
        ldap.lookups,
        [3, 0, 1, 2, 1, 0],
        "hit, shared, entry, no-entry, error, other"
    );
    assert_eq!(
        ldap.accepts,
        [1, 2, 1, 3, 0],
        "accepted, rejected, failure-rejected, failure-accepted, other"
    );
    let page = MetricsBoard::new(vec![Arc::new(metrics)]).render();
    for line in [
        "# TYPE portcullis_ldap_lookups_total counter",
        r#"portcullis_ldap_lookups_total{result="hit"} 3"#,
        r#"portcullis_ldap_lookups_total{result="entry"} 1"#,
        r#"portcullis_ldap_lookups_total{result="no-entry"} 2"#,
        r#"portcullis_ldap_lookups_total{result="error"} 1"#,
        "# TYPE portcullis_ldap_accept_total counter",
        r#"portcullis_ldap_accept_total{result="accepted"} 1"#,
        r#"portcullis_ldap_accept_total{result="rejected"} 2"#,
        r#"portcullis_ldap_accept_total{result="failure-rejected"} 1"#,
        r#"portcullis_ldap_accept_total{result="failure-accepted"} 3"#,
    ] {
        assert!(has_line(&page, line), "missing {line:?} in\n{page}");
    }
    assert!(
        !page.contains(r#"result="other""#),
        "no catch-all series while nothing fell into it\n{page}"
    );
    check_exposition_format(&page);
}

#[test]
fn unknown_results_count_as_other() {
    let metrics = Metrics::default();
    metrics.ldap_lookup("miss");
    metrics.ldap_lookup("HIT");
    metrics.ldap_accept("tempfail");
    let ldap = metrics.snapshot().ldap;
    assert_eq!(ldap.lookups, [0, 0, 0, 0, 0, 2], "labels are matched exactly");
    assert_eq!(ldap.accepts, [0, 0, 0, 0, 1]);
    let page = MetricsBoard::new(vec![Arc::new(metrics)]).render();
    assert!(
        has_line(&page, r#"portcullis_ldap_lookups_total{result="other"} 2"#),
        "{page}"
    );
    assert!(
        has_line(&page, r#"portcullis_ldap_accept_total{result="other"} 1"#),
        "{page}"
    );
    assert!(
        has_line(&page, r#"portcullis_ldap_lookups_total{result="hit"} 0"#),
        "known labels stay shown at zero\n{page}"
    );
    check_exposition_format(&page);
}

#[test]
fn query_latency_buckets_are_upper_bound_inclusive() {
    let slot = |latency| latency_slot(&LDAP_QUERY_LATENCY_BUCKETS_SECONDS, latency);
    assert_eq!(slot(Duration::ZERO), 0);
    assert_eq!(
        slot(Duration::from_micros(250)),
        0,
        "le=0.00025 includes 0.25 ms"
    );
    assert_eq!(slot(Duration::from_micros(251)), 1);
    assert_eq!(
        slot(Duration::from_secs(30)),
        LDAP_QUERY_LATENCY_BUCKETS_SECONDS.len() - 1
    );
    assert_eq!(
        slot(Duration::from_secs(31)),
        LDAP_QUERY_LATENCY_BUCKETS_SECONDS.len(),
        "+Inf"
    );
}

#[test]
fn the_query_histogram_is_cumulative_on_the_page() {
    let (shards, board) = MetricsBoard::for_shards(2);
    shards[0].ldap_query_latency(Duration::from_micros(200));
    shards[1].ldap_query_latency(Duration::from_micros(250));
    shards[0].ldap_query_latency(3 * MS);
    shards[1].ldap_query_latency(3 * MS);
    shards[1].ldap_query_latency(Duration::from_secs(40));
    let sum = board.summed().ldap;
    assert_eq!(sum.query_count(), 5);
    assert_eq!(
        sum.query_latency_slots[0], 2,
        "not cumulative in the snapshot"
    );
    assert_eq!(sum.query_latency_slots[4], 2, "(2.5 ms, 5 ms]");
    assert_eq!(sum.query_latency_nanos_sum, 40_006_450_000);
    let page = board.render();
    for line in [
        "# TYPE portcullis_ldap_query_seconds histogram",
        r#"portcullis_ldap_query_seconds_bucket{le="0.00025"} 2"#,
        r#"portcullis_ldap_query_seconds_bucket{le="0.0025"} 2"#,
        r#"portcullis_ldap_query_seconds_bucket{le="0.005"} 4"#,
        r#"portcullis_ldap_query_seconds_bucket{le="30"} 4"#,
        r#"portcullis_ldap_query_seconds_bucket{le="+Inf"} 5"#,
        "portcullis_ldap_query_seconds_count 5",
    ] {
        assert!(has_line(&page, line), "missing {line:?} in\n{page}");
    }
    let sum_line = page
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_ldap_query_seconds_sum "))
        .unwrap_or_else(|| panic!("no _sum in\n{page}"));
    let seconds: f64 = sum_line.parse().expect("a number");
    assert!((seconds - 40.00645).abs() < 1e-9, "{sum_line}");
    let buckets = bucket_counts(&page, "portcullis_ldap_query_seconds_bucket{");
    assert_eq!(
        buckets.len(),
        LDAP_QUERY_LATENCY_BUCKETS_SECONDS.len() + 1,
        "every bound, then +Inf"
    );
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );
    check_exposition_format(&page);
}

#[test]
fn two_shards_snapshots_add_up() {
    let (shards, board) = MetricsBoard::for_shards(2);
    shards[0].ldap_lookup("hit");
    shards[1].ldap_lookup("hit");
    shards[1].ldap_lookup("entry");
    shards[0].ldap_lookup("error");
    shards[1].ldap_lookup("bogus");
    shards[0].ldap_accept("rejected");
    shards[1].ldap_accept("rejected");
    shards[1].ldap_accept("failure-accepted");
    shards[0].ldap_query_latency(MS);
    shards[1].ldap_query_latency(2 * MS);
    shards[0].set_ldap_cache_entries(7);
    shards[1].set_ldap_cache_entries(100);
    shards[1].set_ldap_cache_entries(5);
    let (first, second) = (shards[0].snapshot().ldap, shards[1].snapshot().ldap);
    let mut expected = first.clone();
    expected.add(&second);
    let sum = board.summed().ldap;
    assert_eq!(sum, expected);
    assert_eq!(sum.lookups, [2, 0, 1, 0, 1, 1]);
    assert_eq!(sum.accepts, [0, 2, 0, 1, 0]);
    assert_eq!(sum.query_latency_nanos_sum, 3_000_000);
    assert_eq!(
        sum.cache_entries, 12,
        "the last value each shard set, summed"
    );
    let page = board.render();
    for line in [
        r#"portcullis_ldap_lookups_total{result="hit"} 2"#,
        r#"portcullis_ldap_lookups_total{result="other"} 1"#,
        r#"portcullis_ldap_accept_total{result="rejected"} 2"#,
        "portcullis_ldap_query_seconds_count 2",
        "# TYPE portcullis_ldap_cache_entries gauge",
        "portcullis_ldap_cache_entries 12",
    ] {
        assert!(has_line(&page, line), "missing {line:?} in\n{page}");
    }
    assert!(
        !page.contains("shard=\""),
        "no shard label: values are summed"
    );
    check_exposition_format(&page);
}

#[test]
fn an_idle_board_shows_every_ldap_family_at_zero() {
    let (_, board) = MetricsBoard::for_shards(3);
    let page = board.render();
    for line in [
        r#"portcullis_ldap_lookups_total{result="error"} 0"#,
        r#"portcullis_ldap_query_seconds_bucket{le="+Inf"} 0"#,
        "portcullis_ldap_query_seconds_count 0",
        "portcullis_ldap_cache_entries 0",
        r#"portcullis_ldap_accept_total{result="failure-rejected"} 0"#,
    ] {
        assert!(has_line(&page, line), "missing {line:?} in\n{page}");
    }
    assert_eq!(page.matches("# TYPE portcullis_ldap_").count(), 4, "{page}");
    check_exposition_format(&page);
}

/// The counts of a histogram's bucket lines, in page order.
fn bucket_counts(page: &str, prefix: &str) -> Vec<u64> {
    page.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            l.rsplit_once(' ')
                .and_then(|(_, n)| n.parse().ok())
                .expect("a count")
        })
        .collect()
}
