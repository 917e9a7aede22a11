//! The DSN parameters of RFC 3461 §4 and their xtext, good and bad forms.

use super::*;

fn code(reply: Reply) -> String {
    format!("{} {}", reply.code, reply.enhanced)
}

#[test]
fn xtext_round_trips_and_encodes_only_what_it_must() {
    assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
    assert_eq!(xtext_decode("a+2Bb+3Dc+20d").as_deref(), Some("a+b=c d"));
    // An encoded xchar is allowed on input and comes back plain.
    assert_eq!(xtext_decode("+41bc").as_deref(), Some("Abc"));
    assert_eq!(xtext_encode("Abc"), "Abc");
    for value in ["", "plain@example.test", "+=+=", "tab\there", "ümlaut"] {
        assert_eq!(xtext_decode(&xtext_encode(value)).as_deref(), Some(value), "{value:?}");
    }
}

#[test]
fn malformed_xtext_is_refused() {
    // Lower-case hex, a short escape, a bare "=", a space, non-UTF-8 octets.
    for bad in ["+2b", "+2", "+", "a=b", "a b", "+FF", "+G0"] {
        assert_eq!(xtext_decode(bad), None, "{bad:?}");
    }
}

#[test]
fn ret_is_full_or_hdrs() {
    assert_eq!(parse_ret(Some("FULL")), Ok(Ret::Full));
    assert_eq!(parse_ret(Some("hdrs")), Ok(Ret::Headers));
    for bad in [None, Some(""), Some("HEADERS"), Some("FULL,HDRS")] {
        assert_eq!(code(parse_ret(bad).unwrap_err()), "501 5.5.4", "{bad:?}");
    }
}

#[test]
fn envid_is_decoded_bounded_and_printable() {
    assert_eq!(parse_envid(Some("QQ314159+2Bx")).as_deref(), Ok("QQ314159+x"));
    assert_eq!(parse_envid(Some(&"e".repeat(100))).map(|e| e.len()), Ok(100));
    let long = parse_envid(Some(&"e".repeat(101))).unwrap_err();
    assert_eq!(
        long.to_string(),
        "501 5.5.4 Bad ENVID parameter syntax: longer than 100 characters"
    );
    for bad in [None, Some(""), Some("a=b"), Some("+0D+0A"), Some("+C3+BC")] {
        assert_eq!(code(parse_envid(bad).unwrap_err()), "501 5.5.4", "{bad:?}");
    }
}

#[test]
fn notify_is_never_alone_or_a_set_without_repeats() {
    assert_eq!(parse_notify(Some("NEVER")), Ok(Notify::Never));
    assert_eq!(
        parse_notify(Some("delay,Success")),
        Ok(Notify::On {
            success: true,
            failure: false,
            delay: true
        })
    );
    let never = parse_notify(Some("NEVER,FAILURE")).unwrap_err();
    assert_eq!(
        never.to_string(),
        "501 5.5.4 Bad NOTIFY parameter syntax: NEVER must stand alone"
    );
    let twice = parse_notify(Some("FAILURE,FAILURE")).unwrap_err();
    assert_eq!(
        twice.to_string(),
        "501 5.5.4 Bad NOTIFY parameter syntax: a keyword is repeated"
    );
    for bad in [
        None,
        Some(""),
        Some("FAILURE,"),
        Some(",DELAY"),
        Some("SOMETIMES"),
        Some("FAILURE DELAY"),
    ] {
        assert_eq!(code(parse_notify(bad).unwrap_err()), "501 5.5.4", "{bad:?}");
    }
}

#[test]
fn notify_says_which_reports_are_wanted() {
    let default = Notify::default();
    assert!(default.wants_failure() && default.wants_delay() && !default.wants_success());
    assert!(!Notify::Never.wants_failure() && !Notify::Never.wants_delay() && !Notify::Never.wants_success());
    let success = Notify::On {
        success: true,
        failure: false,
        delay: false,
    };
    assert!(success.wants_success() && !success.wants_failure() && !success.wants_delay());
}

#[test]
fn orcpt_is_an_atom_and_an_xtext_address() {
    assert_eq!(
        parse_orcpt(Some("rfc822;a+2Bb@c.test")),
        Ok(("rfc822".into(), "a+b@c.test".into()))
    );
    assert_eq!(parse_orcpt(Some("RFC822;x@y")), Ok(("RFC822".into(), "x@y".into())));
    // RFC 6533 §3: utf-8 addresses escape with \x{HEX}.
    assert_eq!(
        parse_orcpt(Some("utf-8;j\\x{F6}rg@b.test")),
        Ok(("utf-8".into(), "jörg@b.test".into()))
    );
    for bad in [
        None,
        Some("rfc822"),
        Some(";a@b"),
        Some("rfc822;"),
        Some("rfc 822;a@b"),
        Some("rfc822;a=b"),
        Some("rfc822;a+0D+0Ab"),
        Some("utf-8;j\\x{f6}rg"),
        Some("utf-8;a+b"),
        Some("utf-8;\\x{D800}"),
    ] {
        assert_eq!(code(parse_orcpt(bad).unwrap_err()), "501 5.5.4", "{bad:?}");
    }
    let long = format!("rfc822;{}", "a".repeat(500));
    assert_eq!(code(parse_orcpt(Some(&long)).unwrap_err()), "501 5.5.4");
}

#[test]
fn a_rewritten_recipient_is_relayed_with_its_original_address() {
    let none = RecipientDsn::default();
    assert_eq!(
        none.relayed("a@b.test", "a@b.test"),
        none,
        "not rewritten: nothing added"
    );
    let added = none.relayed("a@b.test", "a@mailhost.b.test");
    assert_eq!(added.orcpt, Some(("rfc822".into(), "a@b.test".into())));
    assert_eq!(
        none.relayed("jörg@b.test", "j@b.test").orcpt,
        Some(("utf-8".into(), "jörg@b.test".into()))
    );
    let given = RecipientDsn {
        notify: Notify::Never,
        orcpt: Some(("rfc822".into(), "first@x.test".into())),
    };
    assert_eq!(given.relayed("a@b.test", "c@d.test"), given, "the client's ORCPT wins");
}

#[test]
fn parameters_render_encoded_for_a_downstream() {
    assert_eq!(Dsn::default().mail_params(), "");
    let dsn = Dsn {
        ret: Some(Ret::Headers),
        envid: Some("id 1+x".into()),
    };
    assert_eq!(dsn.mail_params(), " RET=HDRS ENVID=id+201+2Bx");
    assert_eq!(RecipientDsn::default().rcpt_params(), "");
    let rcpt = RecipientDsn {
        notify: Notify::On {
            success: true,
            failure: true,
            delay: false,
        },
        orcpt: Some(("rfc822".into(), "a+b@c.test".into())),
    };
    assert_eq!(rcpt.rcpt_params(), " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c.test");
    assert_eq!(rcpt.original_recipient().as_deref(), Some("rfc822;a+b@c.test"));
    assert_eq!(RecipientDsn::default().original_recipient(), None);
    let never = RecipientDsn {
        notify: Notify::Never,
        orcpt: Some(("utf-8".into(), "jörg@b.test".into())),
    };
    assert_eq!(never.rcpt_params(), " NOTIFY=NEVER ORCPT=utf-8;j\\x{F6}rg@b.test");
    // What we render parses back to the same values.
    assert_eq!(parse_orcpt(Some("utf-8;j\\x{F6}rg@b.test")).unwrap().1, "jörg@b.test");
    assert_eq!(parse_envid(Some("id+201+2Bx")).unwrap(), "id 1+x");
}
