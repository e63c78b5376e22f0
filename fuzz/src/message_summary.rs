//! `application/simple-message-summary` (RFC 3842) parsing in mwi-publisher. Properties:
//! - nothing panics;
//! - the body written for a parsed summary has CRLF line ends only (the writer turns CR and LF
//!   inside values into spaces, so no value can inject a line), and parses back;
//! - writing is a fixed point after one round: the re-parsed summary writes the same body.

use mwi_publisher::MessageSummary;

/// Run every property on one summary body.
pub fn check(data: &[u8]) {
    let Ok(summary) = MessageSummary::parse(data) else {
        return;
    };
    let body = summary.to_body();
    assert_crlf_only(&body);
    let Ok(again) = MessageSummary::parse(&body) else {
        panic!("written summary does not parse");
    };
    assert_eq!(
        again.messages_waiting, summary.messages_waiting,
        "status line changed"
    );
    assert_eq!(again.classes, summary.classes, "summary lines changed");
    assert_eq!(again.to_body(), body, "writing is not a fixed point");
}

/// Every CR is followed by LF and every LF preceded by CR.
fn assert_crlf_only(body: &[u8]) {
    for (i, b) in body.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(body.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert_eq!(
                i.checked_sub(1).and_then(|p| body.get(p)),
                Some(&b'\r'),
                "bare LF at {i}"
            ),
            _ => {}
        }
    }
}
