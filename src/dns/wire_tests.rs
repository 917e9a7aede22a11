//! Answer checking and reading: each way a reply can fail to be ours, each
//! answer class, CNAME chains, TTLs (RFC 2308 negative TTLs included).

use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TXT};

use super::*;

const ID: u16 = 0x5a5a;

fn name(text: &str) -> Name {
    Name::from_str(text).unwrap()
}

fn record(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name(owner), ttl, data)
}

fn soa(ttl: u32, minimum: u32) -> Record {
    let data = SOA::new(name("ns.example.test."), name("root.example.test."), 1, 3600, 600, 86400, minimum);
    record("example.test.", ttl, RData::SOA(data))
}

/// A response to `qname`/`qtype` with `id`, `code`, answers and authority.
fn reply(id: u16, qname: &str, qtype: RecordType, code: ResponseCode, answers: Vec<Record>, authority: Vec<Record>) -> Message {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_response_code(code);
    message.add_query(Query::query(name(qname), qtype));
    message.add_answers(answers);
    message.add_name_servers(authority);
    message
}

fn read(message: &Message, qtype: RecordType) -> Option<Reply> {
    read_reply(&message.to_vec().unwrap(), ID, &query_name("mail.example.test").unwrap(), qtype)
}

fn found(reply: Option<Reply>) -> (Vec<Rdata>, u32) {
    match reply {
        Some(Reply::Answer(Outcome {
            lookup: Lookup::Found(records),
            ttl_secs: Some(ttl),
            ..
        })) => (records.to_vec(), ttl),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    record(owner, ttl, RData::A(A::from(Ipv4Addr::from(ip))))
}

#[test]
fn query_names_are_normalised_and_checked() {
    assert_eq!(query_name("Mail.Example.TEST").unwrap().to_ascii(), "mail.example.test.");
    assert_eq!(query_name("mail.example.test.").unwrap(), query_name("mail.example.test").unwrap());
    assert_eq!(query_name("bücher.example").unwrap().to_ascii(), "xn--bcher-kva.example.");
    assert_eq!(query_name("_dmarc.example.test").unwrap().to_ascii(), "_dmarc.example.test.");
    for bad in ["", ".", "a..b", ".a", &"x".repeat(64), &["abcdefghij"; 26].join(".")] {
        assert_eq!(query_name(bad), None, "{bad:?}");
    }
}

#[test]
fn reverse_names() {
    assert_eq!(reverse_name("192.0.2.10".parse().unwrap()), "10.2.0.192.in-addr.arpa");
    let v6 = reverse_name("2001:db8::567:89ab".parse().unwrap());
    assert_eq!(v6, "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
}

#[test]
fn query_encodes_our_question_with_rd_and_edns() {
    let bytes = encode_query(ID, &query_name("mail.example.test").unwrap(), RecordType::MX);
    let message = Message::from_vec(&bytes).unwrap();
    assert_eq!(message.id(), ID);
    assert!(message.recursion_desired());
    assert_eq!(message.message_type(), MessageType::Query);
    assert_eq!(message.queries(), [Query::query(name("mail.example.test."), RecordType::MX)]);
    assert_eq!(message.max_payload(), DNS_UDP_PAYLOAD_BYTES);
}

#[test]
fn a_answer_is_read_with_its_ttl() {
    let message = reply(
        ID,
        "MAIL.example.test.",
        RecordType::A,
        ResponseCode::NoError,
        vec![
            a("mail.example.test.", 300, [192, 0, 2, 1]),
            a("mail.example.test.", 200, [192, 0, 2, 2]),
        ],
        vec![],
    );
    assert_eq!(
        found(read(&message, RecordType::A)),
        (vec![Rdata::V4([192, 0, 2, 1].into()), Rdata::V4([192, 0, 2, 2].into())], 200)
    );
}

#[test]
fn replies_that_are_not_ours_are_ignored() {
    let good = || {
        reply(
            ID,
            "mail.example.test.",
            RecordType::A,
            ResponseCode::NoError,
            vec![a("mail.example.test.", 300, [192, 0, 2, 1])],
            vec![],
        )
    };
    assert!(read(&good(), RecordType::A).is_some());
    let mut wrong_id = good();
    wrong_id.set_id(ID + 1);
    assert_eq!(read(&wrong_id, RecordType::A), None);
    let other_name = reply(
        ID,
        "evil.example.test.",
        RecordType::A,
        ResponseCode::NoError,
        vec![a("evil.example.test.", 300, [6, 6, 6, 6])],
        vec![],
    );
    assert_eq!(read(&other_name, RecordType::A), None);
    assert_eq!(read(&good(), RecordType::AAAA), None, "type differs");
    let mut query_not_response = good();
    query_not_response.set_message_type(MessageType::Query);
    assert_eq!(read(&query_not_response, RecordType::A), None);
    let mut other_class = good();
    other_class.queries_mut()[0].set_query_class(DNSClass::CH);
    assert_eq!(read(&other_class, RecordType::A), None);
    let mut two_questions = good();
    two_questions.add_query(Query::query(name("mail.example.test."), RecordType::A));
    assert_eq!(read(&two_questions, RecordType::A), None);
    let qname = query_name("mail.example.test").unwrap();
    assert_eq!(read_reply(b"", ID, &qname, RecordType::A), None);
    assert_eq!(
        read_reply(&[0x5a, 0x5a, 0x81, 0x80, 0, 1, 0, 1, 0xff], ID, &qname, RecordType::A),
        None
    );
    let bytes = good().to_vec().unwrap();
    assert_eq!(
        read_reply(&bytes[..bytes.len() - 3], ID, &qname, RecordType::A),
        None,
        "cut without TC"
    );
}

#[test]
fn truncated_reply_asks_for_tcp_even_when_cut_inside_a_record() {
    let mut message = reply(
        ID,
        "mail.example.test.",
        RecordType::TXT,
        ResponseCode::NoError,
        vec![record("mail.example.test.", 60, RData::TXT(TXT::new(vec!["x".repeat(200)])))],
        vec![],
    );
    message.set_truncated(true);
    assert_eq!(read(&message, RecordType::TXT), Some(Reply::Truncated));
    let bytes = message.to_vec().unwrap();
    let qname = query_name("mail.example.test").unwrap();
    assert_eq!(
        read_reply(&bytes[..bytes.len() - 50], ID, &qname, RecordType::TXT),
        Some(Reply::Truncated)
    );
    assert_eq!(read_reply(&bytes[..bytes.len() - 50], ID + 1, &qname, RecordType::TXT), None);
}

#[test]
fn nxdomain_and_nodata_are_not_found_with_the_soa_negative_ttl() {
    // RFC 2308 §5: min(SOA TTL, SOA MINIMUM).
    let nx = reply(
        ID,
        "mail.example.test.",
        RecordType::A,
        ResponseCode::NXDomain,
        vec![],
        vec![soa(900, 120)],
    );
    let expected = Some(Reply::Answer(Outcome {
        lookup: Lookup::NotFound,
        ttl_secs: Some(120),
        alias: None,
        authenticated: false,
        servfail: false,
    }));
    assert_eq!(read(&nx, RecordType::A), expected);
    let nodata = reply(
        ID,
        "mail.example.test.",
        RecordType::AAAA,
        ResponseCode::NoError,
        vec![],
        vec![soa(60, 3600)],
    );
    assert_eq!(
        read(&nodata, RecordType::AAAA),
        Some(Reply::Answer(Outcome {
            lookup: Lookup::NotFound,
            ttl_secs: Some(60),
            alias: None,
            authenticated: false,
            servfail: false,
        }))
    );
    // Records of another type only: still NODATA for the type asked.
    let other_type = reply(
        ID,
        "mail.example.test.",
        RecordType::MX,
        ResponseCode::NoError,
        vec![a("mail.example.test.", 300, [192, 0, 2, 1])],
        vec![],
    );
    let no_soa = Some(Reply::Answer(Outcome {
        lookup: Lookup::NotFound,
        ttl_secs: Some(DNS_TTL_MIN_SECS),
        alias: None,
        authenticated: false,
        servfail: false,
    }));
    assert_eq!(read(&other_type, RecordType::MX), no_soa);
    let huge = reply(
        ID,
        "mail.example.test.",
        RecordType::A,
        ResponseCode::NXDomain,
        vec![],
        vec![soa(999_999, 999_999)],
    );
    let capped = Some(Reply::Answer(Outcome {
        lookup: Lookup::NotFound,
        ttl_secs: Some(DNS_NEGATIVE_TTL_MAX_SECS),
        alias: None,
        authenticated: false,
        servfail: false,
    }));
    assert_eq!(read(&huge, RecordType::A), capped);
}

#[test]
fn server_failures_are_temporary_and_not_cached() {
    for code in [
        ResponseCode::ServFail,
        ResponseCode::Refused,
        ResponseCode::FormErr,
        ResponseCode::NotImp,
    ] {
        match read(&reply(ID, "mail.example.test.", RecordType::A, code, vec![], vec![]), RecordType::A) {
            Some(Reply::Answer(Outcome {
                lookup: Lookup::TempFail(_),
                ttl_secs: None,
                ..
            })) => {}
            other => panic!("{code:?}: {other:?}"),
        }
    }
}

#[test]
fn ttls_are_clamped() {
    let long = reply(
        ID,
        "mail.example.test.",
        RecordType::A,
        ResponseCode::NoError,
        vec![a("mail.example.test.", u32::MAX / 2, [192, 0, 2, 1])],
        vec![],
    );
    assert_eq!(found(read(&long, RecordType::A)).1, DNS_TTL_MAX_SECS);
    let zero = reply(
        ID,
        "mail.example.test.",
        RecordType::A,
        ResponseCode::NoError,
        vec![a("mail.example.test.", 0, [192, 0, 2, 1])],
        vec![],
    );
    assert_eq!(found(read(&zero, RecordType::A)).1, DNS_TTL_MIN_SECS);
}

#[test]
fn cname_chain_is_followed_and_its_smallest_ttl_kept() {
    let cname = |owner: &str, ttl, target: &str| record(owner, ttl, RData::CNAME(CNAME(name(target))));
    let answers = vec![
        cname("mail.example.test.", 100, "alias.example.test."),
        cname("Alias.example.test.", 50, "host.example.test."),
        a("host.example.test.", 300, [192, 0, 2, 7]),
        a("unrelated.example.test.", 300, [6, 6, 6, 6]),
    ];
    let message = reply(ID, "mail.example.test.", RecordType::A, ResponseCode::NoError, answers, vec![]);
    assert_eq!(found(read(&message, RecordType::A)), (vec![Rdata::V4([192, 0, 2, 7].into())], 50));
    // A chain the server did not chase (no SOA): ask again for its end.
    let dangling = reply(
        ID,
        "mail.example.test.",
        RecordType::A,
        ResponseCode::NoError,
        vec![cname("mail.example.test.", 100, "gone.example.test.")],
        vec![],
    );
    let again = Outcome {
        lookup: Lookup::NotFound,
        ttl_secs: Some(100),
        alias: Some(name("gone.example.test.")),
        authenticated: false,
        servfail: false,
    };
    assert_eq!(read(&dangling, RecordType::A), Some(Reply::Answer(again)));
    // The server chased it and the end has no such record: NODATA.
    let chased = reply(
        ID,
        "mail.example.test.",
        RecordType::A,
        ResponseCode::NoError,
        vec![cname("mail.example.test.", 100, "gone.example.test.")],
        vec![soa(60, 30)],
    );
    let nodata = Outcome {
        lookup: Lookup::NotFound,
        ttl_secs: Some(30),
        alias: None,
        authenticated: false,
        servfail: false,
    };
    assert_eq!(read(&chased, RecordType::A), Some(Reply::Answer(nodata)));
    // A loop is a broken zone: temporary, not cached.
    let looped = vec![
        cname("mail.example.test.", 100, "x.example.test."),
        cname("x.example.test.", 100, "mail.example.test."),
    ];
    let message = reply(ID, "mail.example.test.", RecordType::A, ResponseCode::NoError, looped, vec![]);
    assert!(matches!(
        read(&message, RecordType::A),
        Some(Reply::Answer(Outcome {
            lookup: Lookup::TempFail(_),
            ttl_secs: None,
            ..
        }))
    ));
}

#[test]
fn each_record_type_reads_into_its_form() {
    let mx = |pref, host: &str| record("mail.example.test.", 60, RData::MX(MX::new(pref, name(host))));
    let message = reply(
        ID,
        "mail.example.test.",
        RecordType::MX,
        ResponseCode::NoError,
        vec![mx(20, "MX2.Example.test."), mx(10, ".")],
        vec![],
    );
    let expected = vec![
        Rdata::Mx(Mx {
            preference: 20,
            exchange: "mx2.example.test".into(),
        }),
        Rdata::Mx(Mx {
            preference: 10,
            exchange: "".into(),
        }),
    ];
    assert_eq!(found(read(&message, RecordType::MX)).0, expected);

    let message = reply(
        ID,
        "mail.example.test.",
        RecordType::PTR,
        ResponseCode::NoError,
        vec![record("mail.example.test.", 60, RData::PTR(PTR(name("Host.Example.TEST."))))],
        vec![],
    );
    assert_eq!(
        found(read(&message, RecordType::PTR)).0,
        vec![Rdata::Ptr("host.example.test".into())]
    );

    let txt = TXT::new(vec!["v=spf1 ".into(), "-all".into()]);
    let message = reply(
        ID,
        "mail.example.test.",
        RecordType::TXT,
        ResponseCode::NoError,
        vec![record("mail.example.test.", 60, RData::TXT(txt))],
        vec![],
    );
    assert_eq!(found(read(&message, RecordType::TXT)).0, vec![Rdata::Txt("v=spf1 -all".into())]);

    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let message = reply(
        ID,
        "mail.example.test.",
        RecordType::AAAA,
        ResponseCode::NoError,
        vec![record("mail.example.test.", 60, RData::AAAA(AAAA::from(v6)))],
        vec![],
    );
    assert_eq!(found(read(&message, RecordType::AAAA)).0, vec![Rdata::V6(v6)]);
}
