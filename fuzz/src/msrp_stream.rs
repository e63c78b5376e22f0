//! MSRP stream decoding (msrp-session `MsrpDecoder`) at arbitrary read boundaries, and the
//! chunks it yields fed to a `Reassembler`. Properties:
//! - nothing panics;
//! - the decoded items (frames, 400/413 rejections, the fatal error) do not depend on how the
//!   bytes are cut;
//! - no frame carries a body above the limit, and the decoder holds at most one head plus one
//!   body plus an end-line after it has been drained;
//! - every decoded frame encodes to bytes that decode to the same frame;
//! - the reassembler never holds more than its cap, and never completes a larger message.

use bytes::{Bytes, BytesMut};
use msrp_session::chunking::{ChunkOutcome, Reassembler};
use msrp_session::{Decoded, DecoderLimits, FatalError, Frame, Method, MsrpDecoder};

use crate::split::StreamInput;

/// Small limits, so the 413 and fatal paths are reachable from short inputs.
const SMALL: DecoderLimits = DecoderLimits {
    max_header_bytes: 512,
    max_body_bytes: 256,
};

/// Bytes of reassembly buffer per session in this target.
const REASSEMBLY_CAP: u64 = 1024;

/// `CRLF "-------" transact-id flag CRLF` with the longest transaction id (RFC 4975 §9).
const MAX_END_LINE: usize = 2 + 7 + 32 + 1 + 2;

/// Run every property on one input (see [`StreamInput`] for the format).
pub fn check(data: &[u8]) {
    let input = StreamInput::parse(data);
    let limits = if input.small_limits {
        SMALL
    } else {
        DecoderLimits::default()
    };
    let whole = decode(limits, &[input.payload]);
    let cut = decode(limits, &input.pieces());
    assert_eq!(whole, cut, "decoded items depend on read boundaries");

    let mut reassembler = Reassembler::new(REASSEMBLY_CAP);
    for item in whole.iter().chain(&cut) {
        if let Ok(Decoded::Frame(frame)) = item {
            assert!(
                frame.body_bytes().len() <= limits.max_body_bytes,
                "frame body of {} bytes above the limit",
                frame.body_bytes().len()
            );
            assert_round_trip(frame);
            reassemble(&mut reassembler, frame);
        }
    }
}

/// Feed `pieces` in turn, decoding after each until the decoder needs more or breaks.
fn decode(limits: DecoderLimits, pieces: &[&[u8]]) -> Vec<Result<Decoded, FatalError>> {
    let mut decoder = MsrpDecoder::new(limits);
    let mut items = Vec::new();
    for piece in pieces {
        decoder.feed(piece);
        loop {
            match decoder.decode() {
                Ok(Some(item)) => items.push(Ok(item)),
                Ok(None) => break,
                Err(fatal) => {
                    items.push(Err(fatal));
                    return items;
                }
            }
        }
        // The head's blank line (CRLF) is not counted in `max_header_bytes`.
        assert!(
            decoder.buffered()
                <= limits.max_header_bytes + 2 + limits.max_body_bytes + MAX_END_LINE,
            "decoder holds {} bytes after draining",
            decoder.buffered()
        );
    }
    items
}

fn assert_round_trip(frame: &Frame) {
    let mut wire = BytesMut::new();
    frame.encode(&mut wire);
    let mut decoder = MsrpDecoder::new(DecoderLimits {
        max_header_bytes: usize::MAX / 4,
        max_body_bytes: usize::MAX / 4,
    });
    decoder.feed(&wire);
    let again = decoder.decode();
    assert_eq!(
        again,
        Ok(Some(Decoded::Frame(frame.clone()))),
        "encoded frame decodes differently"
    );
    assert_eq!(decoder.buffered(), 0, "encoded frame leaves bytes behind");
}

fn reassemble(reassembler: &mut Reassembler, frame: &Frame) {
    if frame.method() != Some(&Method::Send) {
        return;
    }
    let (Some(message_id), Ok(range)) = (frame.message_id(), frame.byte_range()) else {
        return;
    };
    let body = Bytes::copy_from_slice(frame.body_bytes());
    if let Ok(ChunkOutcome::Complete(message)) =
        reassembler.accept(message_id, range, &body, frame.flag)
    {
        assert!(
            message.len() as u64 <= REASSEMBLY_CAP,
            "completed a message above the cap"
        );
    }
    assert!(
        reassembler.held_bytes() <= REASSEMBLY_CAP,
        "reassembler holds {} bytes",
        reassembler.held_bytes()
    );
}
