//! The example messages of RFC 4975 (§4, §5.1, §7) and the RFC 3862 §6 example: each parses
//! with the expected fields and re-serializes byte for byte, whole and fed one byte at a time.

use bytes::BytesMut;
use msrp_session::cpim::CpimMessage;
use msrp_session::{Decoded, EndFlag, Frame, Method, MsrpDecoder, StartLine};

/// RFC text uses bare newlines; MSRP puts CRLF at every line end.
fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn decode_all(wire: &[u8], step: usize) -> Vec<Frame> {
    let mut d = MsrpDecoder::default();
    let mut out = Vec::new();
    for piece in wire.chunks(step) {
        d.feed(piece);
        while let Some(x) = d.decode().expect("decodes") {
            match x {
                Decoded::Frame(f) => out.push(f),
                Decoded::Rejected(r) => panic!("rejected: {r:?}"),
            }
        }
    }
    assert_eq!(d.buffered(), 0, "all input consumed");
    out
}

fn round_trip(wire: &[u8]) -> Vec<Frame> {
    let frames = decode_all(wire, wire.len());
    let mut again = BytesMut::new();
    for f in &frames {
        f.encode(&mut again);
    }
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(wire)
    );
    for step in [1, 2, 7, 64] {
        assert_eq!(decode_all(wire, step), frames, "split every {step} bytes");
    }
    frames
}

const SEC4_SEND: &str = "MSRP a786hjs2 SEND
To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp
From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp
Message-ID: 87652491
Byte-Range: 1-25/25
Content-Type: text/plain

Hey Bob, are you there?
-------a786hjs2$
";

const SEC4_OK: &str = "MSRP a786hjs2 200 OK
To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp
From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp
-------a786hjs2$
";

#[test]
fn section_4_send_and_response() {
    let f = round_trip(&crlf(&format!("{SEC4_SEND}{SEC4_OK}")));
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].method(), Some(&Method::Send));
    assert_eq!(f[0].transaction_id, "a786hjs2");
    assert_eq!(f[0].message_id(), Some("87652491"));
    assert_eq!(
        f[0].byte_range()
            .expect("range")
            .map(|r| r.to_string())
            .as_deref(),
        Some("1-25/25")
    );
    assert_eq!(f[0].body_bytes(), b"Hey Bob, are you there?");
    assert_eq!(
        f[0].to_path().expect("to")[0].session_id.as_deref(),
        Some("kjhd37s2s20w2a")
    );
    assert_eq!(
        f[1].start,
        StartLine::Response {
            code: 200,
            comment: Some("OK".into())
        }
    );
    assert_eq!(f[1].body, None);
}

const SEC5_CHUNKS: &str = "MSRP dkei38sd SEND
Message-ID: 4564dpWd
Byte-Range: 1-*/8
Content-Type: text/plain

abcd
-------dkei38sd+

MSRP dkei38ia SEND
Message-ID: 4564dpWd
Byte-Range: 5-8/8
Content-Type: text/plain

EFGH
-------dkei38ia$
";

#[test]
fn section_5_1_chunks() {
    // The RFC separates the two chunks with a blank line for readability; on the wire they
    // are back to back, which the decoder tolerates either way.
    let wire = crlf(SEC5_CHUNKS);
    let frames = decode_all(&wire, 3);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].flag, EndFlag::Continuation);
    assert_eq!(frames[1].flag, EndFlag::Complete);
    assert_eq!(frames[0].body_bytes(), b"abcd");
    assert_eq!(frames[1].body_bytes(), b"EFGH");
    let tight = crlf(&SEC5_CHUNKS.replace("+\n\n", "+\n"));
    round_trip(&tight);
}

const SEC7_1: &str = "MSRP d93kswow SEND
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
Message-ID: 12339sdqwer
Byte-Range: 1-16/16
Content-Type: text/plain

Hi, I'm Alice!
-------d93kswow$
MSRP d93kswow 200 OK
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
-------d93kswow$
MSRP dkei38sd SEND
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
Message-ID: 456s9wlk3
Byte-Range: 1-21/21
Content-Type: text/plain

Hi, Alice! I'm Bob!
-------dkei38sd$
MSRP dkei38sd 200 OK
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
-------dkei38sd$
";

#[test]
fn section_7_1_basic_im_session() {
    let f = round_trip(&crlf(SEC7_1));
    assert_eq!(f.len(), 4);
    assert_eq!(f[0].body_bytes(), b"Hi, I'm Alice!");
    assert_eq!(f[1].status_code(), Some(200));
    assert_eq!(f[2].body_bytes(), b"Hi, Alice! I'm Bob!");
    assert_eq!(f[3].transaction_id, "dkei38sd");
}

const SEC7_XHTML: &str = r#"MSRP dsdfoe38sd SEND
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
Message-ID: 456
Byte-Range: 1-374/374
Content-Type: application/xhtml+xml

<?xml version="1.0"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"
 "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
  <head>
     <title>FY2005 Results</title>
  </head>
  <body>
    <p>See the results in <a
    href="http://sales.example.com/2005_results.html">
    sales.example.com</a>.</p>
  </body>
</html>
-------dsdfoe38sd$
"#;

#[test]
fn section_7_xhtml_message() {
    let f = round_trip(&crlf(SEC7_XHTML));
    assert_eq!(f[0].content_type(), Some("application/xhtml+xml"));
    assert!(f[0].body_bytes().ends_with(b"</html>"));
}

const SEC7_REPORT: &str = r#"MSRP d93kswow SEND
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
Message-ID: 12339sdqwer
Byte-Range: 1-106/106
Success-Report: yes
Failure-Report: no
Content-Type: text/html

<html><body>
<p>See the <a href="http://www.example.com/foobar">foobar</a> page!</p>
</body></html>
-------d93kswow$
MSRP dkei38sd REPORT
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
Message-ID: 12339sdqwer
Byte-Range: 1-106/106
Status: 000 200 OK
-------dkei38sd$
"#;

#[test]
fn section_7_positive_report() {
    let f = round_trip(&crlf(SEC7_REPORT));
    assert!(f[0].success_report());
    assert_eq!(f[0].failure_report(), msrp_session::FailureReport::No);
    assert_eq!(f[1].method(), Some(&Method::Report));
    assert_eq!(f[1].status_header(), Some((0, 200)));
    assert_eq!(f[1].body, None);
}

const ABORT_AND_AUTH: &str = "MSRP d93kswow SEND
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
Message-ID: 12339sdqwer
Byte-Range: 1-137/148
Content-Type: message/cpim

To: Bob <sip:bob@example.com>
From: Alice <sip:alice@example.com>
DateTime: 2006-05-15T15:02:31-03:00
Content-Type: text/plain

ABCD
-------d93kswow#
MSRP 49fh AUTH
To-Path: msrps://alice@intra.example.com;tcp
From-Path: msrps://alice.example.com:9892/98cjs;tcp
-------49fh$
";

#[test]
fn abort_flag_and_relay_auth() {
    let f = round_trip(&crlf(ABORT_AND_AUTH));
    assert_eq!(f[0].flag, EndFlag::Abort);
    assert_eq!(f[1].method(), Some(&Method::Other("AUTH".into())));
    assert!(f[1].to_path().expect("to")[0].secure);
}

/// RFC 3862 §6.3 example, the `m:`/`s:`/`e:` prefixes removed.
const RFC3862: &str = "From: MR SANDERS <im:piglet@100akerwood.com>
To: Depressed Donkey <im:eeyore@100akerwood.com>
DateTime: 2000-12-13T13:40:00-08:00
Subject: the weather will be fine today
Subject:;lang=fr beau temps prevu pour aujourd'hui
NS: MyFeatures <mid:MessageFeatures@id.foo.com>
Require: MyFeatures.VitalMessageOption
MyFeatures.VitalMessageOption: Confirmation-requested
MyFeatures.WackyMessageOption: Use-silly-font

Content-type: text/xml; charset=utf-8
Content-ID: <1234567890@foo.com>

<body>
Here is the text of my message.
</body>
";

#[test]
fn rfc3862_example_parses_and_reserializes() {
    let wire = crlf(RFC3862);
    let m = CpimMessage::parse(&wire).expect("parses");
    assert_eq!(&m.to_bytes()[..], &wire[..]);
    let from = m.from().expect("from");
    assert_eq!(from.display_name.as_deref(), Some("MR SANDERS"));
    assert_eq!(from.uri, "im:piglet@100akerwood.com");
    assert_eq!(m.to()[0].uri, "im:eeyore@100akerwood.com");
    assert_eq!(
        m.datetime().expect("datetime").to_rfc3339(),
        "2000-12-13T13:40:00-08:00"
    );
    assert_eq!(
        m.subjects(),
        vec![
            ("", "the weather will be fine today"),
            (";lang=fr", "beau temps prevu pour aujourd'hui")
        ]
    );
    assert_eq!(m.require(), vec!["MyFeatures.VitalMessageOption"]);
    assert_eq!(
        m.namespaced("mid:MessageFeatures@id.foo.com", "WackyMessageOption"),
        Some("Use-silly-font")
    );
    assert_eq!(m.content_type(), Some("text/xml; charset=utf-8"));
    assert_eq!(
        &m.body[..],
        &crlf("<body>\nHere is the text of my message.\n</body>\n")[..]
    );
}
