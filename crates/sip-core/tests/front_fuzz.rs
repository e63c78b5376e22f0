//! Property tests of the validation front: arbitrary and mutated input never panics, whatever is
//! delivered parses in rsipstack, and stream framing does not depend on how bytes are split.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sip_core::framing::{StreamFramer, StreamItem};
use sip_core::{Limits, ValidationFront, Verdict};
use std::path::PathBuf;

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn front() -> ValidationFront {
    ValidationFront::new(Limits::default(), "fuzz")
}

fn assert_sane(v: &Verdict) {
    match v {
        Verdict::Deliver { bytes, .. } => {
            assert!(rsipstack::sip::SipMessage::try_from(bytes.as_slice()).is_ok());
        }
        Verdict::Respond { bytes, status, .. } => {
            let text = String::from_utf8_lossy(bytes);
            assert!(text.starts_with(&format!("SIP/2.0 {status} ")));
            assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        }
        Verdict::Drop { .. } => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        assert_sane(&front().check_datagram(&data));
        let mut f = StreamFramer::new(Limits::default());
        f.push(&data);
        while let Some(item) = f.next_item() {
            if let Some(v) = front().check_stream_item(&item) {
                assert_sane(&v);
            }
        }
    }

    #[test]
    fn mutated_torture_messages_never_panic(
        pick in 0usize..49,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let corpus = corpus();
        let mut msg = corpus[pick % corpus.len()].clone();
        for (at, byte) in edits {
            let i = at.index(msg.len());
            msg[i] = byte;
        }
        let keep = cut.index(msg.len() + 1);
        assert_sane(&front().check_datagram(&msg));
        assert_sane(&front().check_datagram(&msg[..keep]));
    }

    #[test]
    fn stream_framing_ignores_split_points(splits in proptest::collection::vec(1usize..64, 1..40)) {
        let one = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";
        let mut input = Vec::new();
        for _ in 0..3 {
            input.extend_from_slice(one);
            input.extend_from_slice(b"\r\n\r\n");
        }
        let mut f = StreamFramer::new(Limits::default());
        let mut items = Vec::new();
        let mut pos = 0;
        for s in splits.iter().cycle() {
            if pos >= input.len() {
                break;
            }
            let end = (pos + s).min(input.len());
            f.push(&input[pos..end]);
            pos = end;
            while let Some(item) = f.next_item() {
                items.push(item);
            }
        }
        let messages = items.iter().filter(|i| matches!(i, StreamItem::Message(m) if m.body == b"body")).count();
        let pings = items.iter().filter(|i| matches!(i, StreamItem::Ping)).count();
        prop_assert_eq!((messages, pings, items.len()), (3, 3, 6));
    }
}
