//! SIP validation front (sip-core `ValidationFront`, `StreamFramer`): datagram mode and
//! stream mode with arbitrary read boundaries. Properties:
//! - nothing panics;
//! - what is delivered parses in rsipstack, and delivering it again gives the same bytes
//!   (normalisation is idempotent);
//! - a stateless answer is a well-formed status line with `Content-Length: 0` and no body;
//! - stream framing gives the same items however the bytes are cut, and the framer never
//!   holds more than one head plus one body after it has been drained.

use sip_core::framing::{StreamFramer, StreamItem};
use sip_core::{Limits, ValidationFront, Verdict};

use crate::split::StreamInput;

/// Small limits, so the size checks are reachable from short inputs.
const SMALL: Limits = Limits {
    max_head_bytes: 512,
    max_headers: 16,
    max_body_bytes: 256,
    max_connections: 8,
};

/// Limits loose enough that a normalised message (longer than its source: compact names
/// expanded, lists split) is checked on its content only.
const LOOSE: Limits = Limits {
    max_head_bytes: 1 << 20,
    max_headers: 1 << 16,
    max_body_bytes: 1 << 20,
    max_connections: 8,
};

/// Run every property on one input (see [`StreamInput`] for the format).
pub fn check(data: &[u8]) {
    let input = StreamInput::parse(data);
    let limits = if input.small_limits {
        SMALL
    } else {
        Limits::default()
    };
    let front = ValidationFront::new(limits, "fuzz");

    assert_sane(&front.check_datagram(input.payload));

    let whole = stream_items(&front, &[input.payload]);
    for item in &whole {
        if let Some(verdict) = front.check_stream_item(item) {
            assert_sane(&verdict);
        }
    }
    // Equal items get equal verdicts, so the cut stream's need no second check.
    let cut = stream_items(&front, &input.pieces());
    assert_eq!(whole, cut, "stream items depend on read boundaries");
}

/// A byte RFC 3261 §25.1 does not allow in a head outside CRLF line ends: a control character
/// other than HTAB, or a CR or LF that is not part of a CRLF — except the byte of a
/// quoted-pair inside a quoted string (RFC 4475 §3.1.1.2 puts NUL, BEL and DEL there), quote
/// state taken per line as the front does per header field.
/// Found by this target: the front used to deliver bare CRs, vertical tabs and NULs.
fn has_ctl_in_head(bytes: &[u8]) -> bool {
    let head_len = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = bytes.get(..head_len).unwrap_or(bytes);
    let mut in_quotes = false;
    let mut escaped = false;
    head.iter().enumerate().any(|(i, &b)| {
        if escaped {
            escaped = false;
            return b == b'\r' || b == b'\n';
        }
        match b {
            b'"' => {
                in_quotes = !in_quotes;
                false
            }
            b'\\' if in_quotes => {
                escaped = true;
                false
            }
            b'\r' => head.get(i + 1) != Some(&b'\n'),
            b'\n' => {
                // Each delivered header field is on one line: quotes do not span lines.
                in_quotes = false;
                i == 0 || head.get(i - 1) != Some(&b'\r')
            }
            b'\t' => false,
            _ => b < 0x20 || b == 0x7f,
        }
    })
}

fn assert_sane(verdict: &Verdict) {
    match verdict {
        Verdict::Deliver { bytes, summary } => {
            assert!(
                rsipstack::sip::SipMessage::try_from(bytes.as_slice()).is_ok(),
                "delivered message does not parse in rsipstack"
            );
            assert!(
                !has_ctl_in_head(bytes),
                "delivered head has a control character"
            );
            match ValidationFront::new(LOOSE, "fuzz").check_datagram(bytes) {
                Verdict::Deliver {
                    bytes: again,
                    summary: summary_again,
                } => {
                    assert_eq!(&again, bytes, "normalisation is not idempotent");
                    assert_eq!(&summary_again, summary, "summary changes on redelivery");
                }
                other => panic!("normalised message refused on redelivery: {other:?}"),
            }
        }
        Verdict::Respond { status, bytes, .. } => {
            let text = String::from_utf8_lossy(bytes);
            assert!(text.starts_with(&format!("SIP/2.0 {status} ")));
            assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
            assert_eq!(
                text.matches("\r\n\r\n").count(),
                1,
                "one empty line, no body"
            );
        }
        Verdict::Drop { .. } => {}
    }
}

/// Feed `pieces` in turn, draining after each.
fn stream_items(front: &ValidationFront, pieces: &[&[u8]]) -> Vec<StreamItem> {
    let mut framer = StreamFramer::new(front.limits);
    let mut items = Vec::new();
    for piece in pieces {
        framer.push(piece);
        while let Some(item) = framer.next_item() {
            items.push(item);
        }
        assert!(
            framer.buffered() <= front.limits.max_head_bytes + front.limits.max_body_bytes,
            "framer holds {} bytes after draining",
            framer.buffered()
        );
    }
    items
}
