//! SDP answer building (msrp-session `build_answer`, RFC 3264 / RFC 4975 §8) on an arbitrary
//! offer, for a TCP and a TLS local path. Properties: nothing panics, and an answer that is
//! built parses as SDP, has one m= line per offered one with exactly one accepted (ours, with
//! our path), and negotiates only types we accept.

use msrp_session::{build_answer, LocalMedia, MsrpOffer, MsrpUri};
use sdp_types::Session;

/// Run every property on one offer, once per local transport.
pub fn check(data: &[u8]) {
    for path in [
        "msrp://127.0.0.1:2855/fuzzsession;tcp",
        "msrps://[::1]:2856/fuzzsession;tcp",
    ] {
        let Ok(path) = MsrpUri::parse_path(path) else {
            panic!("fixed local path {path} does not parse");
        };
        answer(data, &LocalMedia::with_defaults(path, Some(1 << 20)));
    }
}

fn answer(offer: &[u8], local: &LocalMedia) {
    let Ok((answer, negotiated)) = build_answer(offer, local) else {
        return;
    };
    let Ok(offered) = Session::parse(offer) else {
        panic!("an answer was built for an offer that does not parse");
    };
    let parsed = match Session::parse(answer.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("answer does not parse as SDP: {e}\n{answer}"),
    };
    assert_eq!(parsed.medias.len(), offered.medias.len(), "m= line count");
    assert_eq!(
        parsed.medias.iter().filter(|m| m.port != 0).count(),
        1,
        "exactly one accepted m= line\n{answer}"
    );
    let ours = match MsrpOffer::parse(answer.as_bytes()) {
        Ok(o) => o,
        Err(e) => panic!("answer has no usable MSRP media: {e:?}\n{answer}"),
    };
    assert_eq!(ours.path, local.path, "answer carries our path");
    assert!(!negotiated.accept_types.is_empty());
    assert!(negotiated
        .accept_types
        .iter()
        .all(|t| local.accept_types.contains(t)));
    assert!(negotiated
        .accept_wrapped_types
        .iter()
        .all(|t| local.accept_wrapped_types.contains(t)));
}
