//! Control characters in a SIP head are refused, never delivered (found by fuzz/sip_front):
//! a bare CR or vertical tab in a Via list and a raw NUL in the Request-URI get 400, while
//! RFC 4475's quoted-pairs of NUL/BEL/DEL inside a display name stay accepted.

use sip_core::{Limits, ValidationFront, Verdict};

fn options(ruri: &str, via: &str) -> Vec<u8> {
    format!(
        "OPTIONS {ruri} SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n\
         Call-ID: x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn control_characters_in_the_head_are_refused() {
    for m in [
        options(
            "sip:a@b",
            "SIP/2.0/UDP h;branch=z9hG4bK1 \r, SIP/2.0/UDP h2;branch=z9hG4bK2",
        ),
        options(
            "sip:a@b",
            "SIP/2.0/UDP h;branch=z9hG4bK1 \x0b\x0b, SIP/2.0/UDP h2;branch=z9hG4bK2",
        ),
        options("sip:a\0b@example.com", "SIP/2.0/UDP h;branch=z9hG4bK1"),
    ] {
        let v = ValidationFront::new(Limits::default(), "t").check_datagram(&m);
        assert!(matches!(v, Verdict::Respond { status: 400, .. }), "{v:?}");
    }
}

#[test]
fn quoted_pairs_of_control_characters_stay_accepted() {
    let mut m = options("sip:a@b", "SIP/2.0/UDP h;branch=z9hG4bK1");
    let at = m
        .windows(14)
        .position(|w| w == b"To: <sip:a@b>\r")
        .expect("To header");
    m.splice(at + 4..at + 4, b"\"x\\\x00\\\x07\\\x7f\" ".iter().copied());
    let v = ValidationFront::new(Limits::default(), "t").check_datagram(&m);
    assert!(matches!(v, Verdict::Deliver { .. }), "{v:?}");
}
