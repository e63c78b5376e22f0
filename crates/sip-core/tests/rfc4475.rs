//! RFC 4475 torture messages through the validation front (and rsipstack's parser for what the
//! front delivers). Valid messages: Call-ID, From tag, CSeq and top Via branch are read right
//! (by our tokenizer and, when delivered, by rsipstack) and the outcome is delivery or the
//! answer RFC 4475 asks of a UAS. Invalid messages: never delivered; answered 400 (505 badvers,
//! 501 for an unknown method) or dropped (bad responses).
#![allow(clippy::unwrap_used)]

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::SipMessage;
use sip_core::framing::{StreamFramer, StreamItem};
use sip_core::{Limits, ValidationFront, Verdict};
use std::path::PathBuf;

fn data(name: &str) -> Vec<u8> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/rfc4475/{name}.dat"));
    std::fs::read(&p).unwrap()
}

fn expected_verdicts() -> Vec<(String, String)> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475/EXPECTED.tsv");
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

/// What the front must do with a message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Deliver,
    Respond(u16),
    Drop,
}
use Outcome::*;

struct Valid {
    name: &'static str,
    call_id: Option<&'static str>,
    from_tag: Option<String>,
    cseq: Option<(u32, &'static str)>,
    branch: Option<String>,
    outcome: Outcome,
}

fn v(
    name: &'static str,
    call_id: Option<&'static str>,
    from_tag: Option<&str>,
    cseq: Option<(u32, &'static str)>,
    branch: Option<&str>,
    outcome: Outcome,
) -> Valid {
    Valid {
        name,
        call_id,
        from_tag: from_tag.map(str::to_string),
        cseq,
        branch: branch.map(str::to_string),
        outcome,
    }
}

fn valid_table() -> Vec<Valid> {
    let long_tag = format!("1{}2424", "298".repeat(50));
    vec![
        v("wsinv", Some("wsinv.ndaksdj@192.0.2.1"), Some("98asjd8"), Some((9, "INVITE")), Some("390skdjuw"), Deliver),
        v("intmeth", Some("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"), Some("_token~1'+`*%!-."), Some((139122385, "!interesting-Method0123456789_*+`.%indeed'~")), Some("z9hG4bK-.!%66*_+`'~"), Respond(501)),
        v("esc01", Some("esc01.239409asdfakjkn23onasd0-3234"), Some("938"), Some((234234, "INVITE")), Some("z9hG4bKkdjuw"), Deliver),
        v("escnull", Some("escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd"), Some("839923423"), Some((14398234, "REGISTER")), Some("z9hG4bKkdjuw"), Deliver),
        v("esc02", Some("esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf"), Some("f232jadfj23"), Some((29344, "RE%47IST%45R")), Some("z9hG4bK209%fzsnel234"), Respond(501)),
        v("lwsdisp", Some("lwsdisp.1234abcd@funky.example.com"), Some("323"), Some((60, "OPTIONS")), Some("z9hG4bKkdjuw"), Deliver),
        v("longreq", Some("longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid"), Some(&long_tag), Some((3882340, "INVITE")), None, Deliver),
        v("dblreq", Some("dblreq.0ha0isndaksdj99sdfafnl3lk233412"), Some("43251j3j324"), Some((8, "REGISTER")), Some("z9hG4bKkdjuw23492"), Deliver),
        v("semiuri", Some("semiuri.0ha0isndaksdj"), Some("33242"), Some((8, "OPTIONS")), Some("z9hG4bKkdjuw"), Deliver),
        v("transports", Some("transports.kijh4akdnaqjkwendsasfdj"), Some("323"), Some((60, "OPTIONS")), Some("z9hG4bKkdjuw"), Deliver),
        v("mpart01", Some("3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA.."), Some("2fb0dcc9"), Some((1, "MESSAGE")), Some("z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"), Deliver),
        v("unreason", Some("unreason.1234ksdfak3j2erwedfsASdf"), Some("11141343"), Some((35, "INVITE")), Some("z9hG4bK1324923"), Deliver),
        v("noreason", Some("noreason.asndj203insdf99223ndf"), Some("39ansfi3"), Some((35, "INVITE")), Some("z9hG4bK2398ndaoe"), Deliver),
        v("badbranch", Some("badbranch.sadonfo23i420jv0as0derf3j3n"), Some("33242"), Some((8, "OPTIONS")), Some("z9hG4bK"), Deliver),
        v("insuf", None, None, Some((193942, "INVITE")), Some("z9hG4bKkdj.insuf"), Respond(400)),
        v("unkscm", Some("unkscm.nasdfasser0q239nwsdfasdkl34"), Some("384"), Some((3923423, "OPTIONS")), Some("z9hG4bKkdjuw39234"), Respond(416)),
        v("novelsc", Some("novelsc.asdfasser0q239nwsdfasdkl34"), Some("384"), Some((3923423, "OPTIONS")), Some("z9hG4bKkdjuw39234"), Respond(416)),
        v("unksm2", Some("unksm2.daksdj@hyphenated-host.example.com"), Some("3234233"), Some((234902, "REGISTER")), Some("z9hG4bKkdjuw"), Deliver),
        v("bext01", Some("bext01.0ha0isndaksdj"), Some("242etr"), Some((8, "OPTIONS")), Some("z9hG4bKkdjuw"), Respond(420)),
        v("invut", Some("invut.0ha0isndaksdjadsfij34n23d"), Some("8392034"), Some((235448, "INVITE")), Some("z9hG4bKkdjuw"), Deliver),
        v("regaut01", Some("regaut01.0ha0isndaksdj"), Some("87321hj23128"), Some((9338, "REGISTER")), Some("z9hG4bKkdjuw"), Deliver),
        v("multi01", Some("multi01.98asdh@192.0.2.1"), Some("3413415"), Some((5, "INVITE")), Some("z9hG4bKkdjuw"), Respond(400)),
        v("mcl01", Some("mcl01.fhn2323orihawfdoa3o4r52o3irsdf"), Some("3923942"), Some((15932, "OPTIONS")), Some("z9hG4bK293423"), Respond(400)),
        v("bcast", Some("bcast.0384840201234ksdfak3j2erwedfsASdf"), Some("11141343"), Some((35, "INVITE")), Some("z9hG4bK1324923"), Deliver),
        v("zeromf", Some("zeromf.jfasdlfnm2o2l43r5u0asdfas"), Some("3ghsd41"), Some((39234321, "OPTIONS")), Some("z9hG4bKkdjuw2349i"), Respond(483)),
        v("cparam01", Some("cparam01.70710@saturn.example.com"), Some("DkfVgjkrtMwaerKKpe"), Some((2, "REGISTER")), Some("z9hG4bKkdjuw"), Deliver),
        v("cparam02", Some("cparam02.70710@saturn.example.com"), Some("838293"), Some((3, "REGISTER")), Some("z9hG4bKkdjuw"), Deliver),
        v("regescrt", Some("regescrt.k345asrl3fdbv@192.0.2.1"), Some("8"), Some((14398234, "REGISTER")), Some("z9hG4bKkdjuw"), Deliver),
        v("sdp01", Some("sdp01.ndaksdj9342dasdd"), Some("234"), Some((8, "INVITE")), Some("z9hG4bKkdjuw"), Deliver),
        v("inv2543", Some("inv2543.1717@ift.client.example.com"), None, Some((56, "INVITE")), None, Deliver),
    ]
}

fn invalid_table() -> Vec<(&'static str, Outcome)> {
    vec![
        ("badinv01", Respond(400)),
        ("clerr", Respond(400)),
        ("ncl", Respond(400)),
        ("scalar02", Respond(400)),
        ("scalarlg", Drop),
        ("quotbal", Respond(400)),
        ("ltgtruri", Respond(400)),
        ("lwsruri", Respond(400)),
        ("lwsstart", Respond(400)),
        ("trws", Respond(400)),
        ("escruri", Respond(400)),
        ("baddate", Respond(400)),
        ("regbadct", Respond(400)),
        ("badaspec", Respond(400)),
        ("baddn", Respond(400)),
        ("badvers", Respond(505)),
        ("mismatch01", Respond(400)),
        ("mismatch02", Respond(501)),
        ("bigcode", Drop),
    ]
}

fn outcome(v: &Verdict) -> Outcome {
    match v {
        Verdict::Deliver { .. } => Deliver,
        Verdict::Respond { status, .. } => Respond(*status),
        Verdict::Drop { .. } => Drop,
    }
}

fn front() -> ValidationFront {
    ValidationFront::new(Limits::default(), "rfc4475-test")
}

#[test]
fn tables_cover_every_message_of_expected_tsv() {
    let expected = expected_verdicts();
    assert_eq!(expected.len(), 49);
    let valid: Vec<&str> = valid_table().iter().map(|v| v.name).collect();
    let invalid: Vec<&str> = invalid_table().iter().map(|(n, _)| *n).collect();
    for (name, verdict) in &expected {
        match verdict.as_str() {
            "valid" => assert!(valid.contains(&name.as_str()), "{name} missing"),
            _ => assert!(invalid.contains(&name.as_str()), "{name} missing"),
        }
    }
    assert_eq!(valid.len() + invalid.len(), 49);
}

#[test]
fn valid_messages_are_read_right_and_handled() {
    let front = front();
    let table = valid_table();
    let mut handled = 0;
    for case in &table {
        let raw = data(case.name);
        // mcl01 is refused by framing (conflicting Content-Length) but its head is still read.
        let head = match sip_core::framing::frame_datagram(&raw, &Limits::default()) {
            Ok(frame) => frame.head,
            Err(r) => r
                .head
                .unwrap_or_else(|| panic!("{}: head unreadable", case.name)),
        };
        let s = sip_core::validate::summarise(&head);
        assert_eq!(s.call_id.as_deref(), case.call_id, "{} Call-ID", case.name);
        assert_eq!(s.from_tag, case.from_tag, "{} From tag", case.name);
        assert_eq!(
            s.cseq.as_ref().map(|(n, m)| (*n, m.as_str())),
            case.cseq,
            "{} CSeq",
            case.name
        );
        assert_eq!(s.top_via_branch, case.branch, "{} Via branch", case.name);
        let verdict = front.check_datagram(&raw);
        assert_eq!(
            outcome(&verdict),
            case.outcome,
            "{}: {verdict:?}",
            case.name
        );
        if let Verdict::Deliver { bytes, .. } = &verdict {
            // What rsipstack gets must parse to the same identifiers.
            let msg = SipMessage::try_from(bytes.as_slice()).unwrap();
            assert_eq!(
                Some(msg.call_id_header().unwrap().value()),
                case.call_id,
                "{} rsipstack Call-ID",
                case.name
            );
            let from_tag = msg
                .from_header()
                .unwrap()
                .tag()
                .unwrap()
                .map(|t| t.value().to_string());
            assert_eq!(from_tag, case.from_tag, "{} rsipstack From tag", case.name);
            let cseq = msg.cseq_header().unwrap();
            assert_eq!(
                Some(cseq.seq().unwrap()),
                case.cseq.map(|c| c.0),
                "{} rsipstack CSeq",
                case.name
            );
            let via = msg.via_header().unwrap().typed().unwrap();
            let branch = via.branch().map(|b| b.to_string());
            assert_eq!(branch, case.branch, "{} rsipstack branch", case.name);
            if case.name == "dblreq" {
                assert!(
                    bytes.ends_with(b"Content-Length: 0\r\n\r\n"),
                    "dblreq body must be empty"
                );
            }
            if case.name == "mpart01" {
                assert!(
                    bytes.ends_with(&raw[raw.len() - 553..]),
                    "mpart01 body kept byte-exact"
                );
            }
        }
        handled += 1;
    }
    println!("RFC 4475 valid handled {handled}/{}", table.len());
    assert_eq!(handled, table.len());
}

#[test]
fn invalid_messages_are_rejected_over_udp_and_tcp() {
    let front = front();
    let table = invalid_table();
    let mut rejected = 0;
    for (name, expected) in &table {
        let raw = data(name);
        let verdict = front.check_datagram(&raw);
        assert_eq!(outcome(&verdict), *expected, "{name}: {verdict:?}");
        if let Verdict::Respond { bytes, reason, .. } = &verdict {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                text.starts_with(&format!(
                    "SIP/2.0 {} {reason}\r\n",
                    match expected {
                        Respond(s) => *s,
                        _ => 0,
                    }
                )),
                "{name}: {text}"
            );
            assert!(!reason.is_empty());
        }
        // Over a stream: never delivered (clerr waits for more bytes, ncl closes).
        let mut framer = StreamFramer::new(Limits::default());
        framer.push(&raw);
        while let Some(item) = framer.next_item() {
            if let StreamItem::Message(_) = &item {
                let v = front.check_stream_item(&item).unwrap();
                assert!(
                    !matches!(v, Verdict::Deliver { .. }),
                    "{name} delivered over TCP"
                );
            }
        }
        rejected += 1;
    }
    println!("RFC 4475 invalid rejected {rejected}/{}", table.len());
    assert_eq!(rejected, table.len());
}
