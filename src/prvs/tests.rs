//! prvs tags against known answers (HMAC-SHA1 computed independently with
//! Python's hmac module) and the edges of the day window and key rotation.

use super::*;

fn keys(secrets: &[&str]) -> Keys {
    let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    Keys::new(&secrets, 7)
}

/// Day 116 + 7 = 123: DDD "123".
const TODAY: u64 = 20_116;

#[test]
fn a_tag_matches_the_draft_construction() {
    // hmac.new(b"current-secret", b"0123bob@example.test", sha1).hexdigest()[:6]
    let tagged = tag("bob@example.test", &keys(&["current-secret"]), TODAY, 7);
    assert_eq!(tagged, "prvs=0123b59994=bob@example.test");
}

#[test]
fn a_tag_made_with_a_previous_key_verifies_and_names_it() {
    // hmac.new(b"previous-secret", b"1123bob@example.test", sha1).hexdigest()[:6]
    let verdict = verify(
        "prvs=1123fe6e79=bob@example.test",
        &keys(&["current-secret", "previous-secret"]),
        TODAY,
    );
    assert_eq!(
        verdict,
        Verdict::Valid {
            stripped: "bob@example.test".into()
        }
    );
}

#[test]
fn a_tag_round_trips_and_strips_to_the_mailbox() {
    let k = keys(&["k1", "k0"]);
    let tagged = tag("Bob.Smith@Example.Test", &k, TODAY, 7);
    assert!(tagged.starts_with("prvs=0"), "{tagged}");
    assert_eq!(
        verify(&tagged, &k, TODAY),
        Verdict::Valid {
            stripped: "Bob.Smith@Example.Test".into()
        }
    );
}

#[test]
fn the_prefix_and_hex_digits_compare_case_insensitively_and_the_domain_too() {
    let k = keys(&["current-secret"]);
    let valid = Verdict::Valid {
        stripped: "bob@EXAMPLE.test".into(),
    };
    assert_eq!(verify("PRVS=0123B59994=bob@EXAMPLE.test", &k, TODAY), valid);
    // The local part is hashed as written: another case is another mailbox.
    assert_eq!(
        verify("prvs=0123b59994=Bob@example.test", &k, TODAY),
        Verdict::BadTag
    );
}

#[test]
fn a_wrong_hash_a_missing_key_and_malformed_tags_are_bad() {
    let k = keys(&["current-secret", "previous-secret"]);
    for address in [
        "prvs=0123b59995=bob@example.test",   // hash off by one
        "prvs=2123b59994=bob@example.test",   // key 2 does not exist
        "prvs=0123b59994=alice@example.test", // another mailbox
        "prvs=0124b59994=bob@example.test",   // another day
        "prvs=012b59994=bob@example.test",    // too short
        "prvs=0123b5999g=bob@example.test",   // not hex
        "prvs=0123b59994bob@example.test",    // no second '='
        "prvs=0123b59994=@example.test",      // no local part
        "prvs=0123b59994=bob",                // no domain
        "prvs=",
    ] {
        assert_eq!(verify(address, &k, TODAY), Verdict::BadTag, "{address}");
    }
}

#[test]
fn a_tag_keeps_verifying_while_a_rotation_moves_its_key_and_not_once_it_is_removed() {
    // Made while "old" was the only key (key number 0) ...
    let made = tag("bob@example.test", &keys(&["old"]), TODAY, 7);
    assert!(made.starts_with("prvs=0"), "{made}");
    // ... still ours after "new" went in front of it (now key 1) ...
    assert!(matches!(
        verify(&made, &keys(&["new", "old"]), TODAY),
        Verdict::Valid { .. }
    ));
    // ... and not once "old" is rotated out.
    assert_eq!(verify(&made, &keys(&["new"]), TODAY), Verdict::BadTag);
    // The key digit is hashed: changed, the tag is no longer ours.
    let other_digit = made.replacen("prvs=0", "prvs=1", 1);
    assert_eq!(
        verify(&other_digit, &keys(&["new", "old"]), TODAY),
        Verdict::BadTag
    );
}

#[test]
fn the_day_window_expires_past_days_and_refuses_far_future_ones() {
    let k = keys(&["s"]);
    let tagged = tag("bob@example.test", &k, TODAY, 7);
    // Valid from the day it was made to its expiry day.
    for day in TODAY..=TODAY + 7 {
        assert!(
            matches!(verify(&tagged, &k, day), Verdict::Valid { .. }),
            "day {day}"
        );
    }
    // The day after expiry and long after: expired.
    for day in [TODAY + 8, TODAY + 100, TODAY + 900] {
        assert_eq!(verify(&tagged, &k, day), Verdict::Expired, "day {day}");
    }
    // Verified before it was made (a day further ahead than the lifetime):
    // a tag we could not have made.
    assert_eq!(verify(&tagged, &k, TODAY - 1), Verdict::BadTag);
    assert_eq!(verify(&tagged, &k, TODAY - 20), Verdict::BadTag);
}

#[test]
fn the_day_wraps_at_one_thousand() {
    let k = keys(&["s"]);
    let today = 20_997; // 997 + 7 = 1004 → DDD "004"
    let tagged = tag("bob@example.test", &k, today, 7);
    assert!(tagged.starts_with("prvs=0004"), "{tagged}");
    assert!(matches!(verify(&tagged, &k, today), Verdict::Valid { .. }));
    assert!(matches!(verify(&tagged, &k, 21_004), Verdict::Valid { .. }));
    assert_eq!(verify(&tagged, &k, 21_005), Verdict::Expired);
}

#[test]
fn untagged_addresses_are_untagged() {
    let k = keys(&["s"]);
    assert_eq!(verify("bob@example.test", &k, TODAY), Verdict::Untagged);
    assert_eq!(
        verify("prv=0123b59994=bob@example.test", &k, TODAY),
        Verdict::Untagged
    );
}

#[test]
fn what_cannot_carry_a_tag_stays_as_it_is() {
    let k = keys(&["s"]);
    let long = format!("{}@example.test", "a".repeat(49)); // 49 + 16 > 64
    for sender in ["", "postmaster", "\"a b\"@example.test", long.as_str()] {
        assert_eq!(tag(sender, &k, TODAY, 7), sender);
    }
    let once = tag("bob@example.test", &k, TODAY, 7);
    assert_eq!(tag(&once, &k, TODAY + 1, 7), once, "already tagged");
    assert_eq!(
        tag("bob@example.test", &keys(&[]), TODAY, 7),
        "bob@example.test",
        "no keys"
    );
    let fits = format!("{}@example.test", "a".repeat(48));
    assert_ne!(tag(&fits, &k, TODAY, 7), fits);
}

#[test]
fn outbound_sender_tags_only_relayed_mail_to_destinations_that_want_it() {
    let k = keys(&["current-secret"]);
    let tagged = "prvs=0123b59994=bob@example.test";
    let cases = [
        (true, true, Some(&k), tagged),
        (false, true, Some(&k), "bob@example.test"),
        (true, false, Some(&k), "bob@example.test"),
        (true, true, None, "bob@example.test"),
    ];
    for (relayed, wants, keys, expected) in cases {
        assert_eq!(
            outbound_sender("bob@example.test", relayed, wants, keys, TODAY, 7),
            expected,
            "relayed={relayed} wants={wants}"
        );
    }
    assert!(matches!(
        outbound_sender("", true, true, Some(&k), TODAY, 7),
        Cow::Borrowed("")
    ));
}

#[test]
fn debug_never_shows_a_secret() {
    let shown = format!("{:?}", keys(&["hunter2"]));
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn day_of_counts_utc_days() {
    assert_eq!(day_of(0), 0);
    assert_eq!(day_of(86_399), 0);
    assert_eq!(day_of(1_795_330_800), 20_779);
}

#[test]
fn odd_input_is_bad_or_untagged_never_a_panic() {
    let k = keys(&["s"]);
    for address in ["prvs", "prvsé", "prvs=é", "prvs=0123b5999é=a@b", "prvs=0123b59994=ü@bücher.test", "prvs=é123b59994=a@b", "prvs==", "prvs=0123b59994==@", "@", ""] {
        let verdict = verify(address, &k, TODAY);
        assert!(matches!(verdict, Verdict::BadTag | Verdict::Untagged), "{address}: {verdict:?}");
    }
    // UTF-8 mailboxes (RFC 6531) tag and verify like any other.
    let tagged = tag("jörg@bücher.test", &k, TODAY, 7);
    assert_eq!(verify(&tagged, &k, TODAY), Verdict::Valid { stripped: "jörg@bücher.test".into() });
}
