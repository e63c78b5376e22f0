//! Property tests of the validation front: arbitrary and mutated input never panics, whatever is
//! delivered parses in rsipstack and is delivered unchanged when checked again (normalisation is
//! idempotent, the property fuzz/sip_front checks), and stream framing does not depend on how
//! bytes are split.
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

/// Limits loose enough that a normalised message (longer than its source: compact names
/// expanded, lists split) is judged on its content only.
const LOOSE: Limits = Limits {
    max_head_bytes: 1 << 20,
    max_headers: 1 << 16,
    max_body_bytes: 1 << 20,
    max_connections: 8,
};

fn assert_sane(v: &Verdict) {
    match v {
        Verdict::Deliver { bytes, summary } => {
            assert!(rsipstack::sip::SipMessage::try_from(bytes.as_slice()).is_ok());
            match ValidationFront::new(LOOSE, "fuzz").check_datagram(bytes) {
                Verdict::Deliver {
                    bytes: again,
                    summary: summary_again,
                } => {
                    assert_eq!(&again, bytes, "normalisation is not idempotent");
                    assert_eq!(&summary_again, summary, "summary changes on redelivery");
                }
                other => panic!(
                    "normalised message refused on redelivery: {other:?}\n{}",
                    String::from_utf8_lossy(bytes)
                ),
            }
        }
        Verdict::Respond { bytes, status, .. } => {
            let text = String::from_utf8_lossy(bytes);
            assert!(text.starts_with(&format!("SIP/2.0 {status} ")));
            assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        }
        Verdict::Drop { .. } => {}
    }
}

/// A header parameter, well-formed or not: LWS around `;` and `=`, empty, a name split by
/// LWS, a URI header, a quoted value.
fn param() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        ";tag=1",
        " ; q = 0.5",
        ";lr",
        ";;",
        ";=x",
        ";tag x",
        ";t ag=1",
        "?h=v",
        ";p=\"a;b, c\"",
        " ;\texpires= 60",
    ])
    .prop_map(str::to_string)
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

    /// Address lists mixing name-addrs and bare addr-specs with well-formed and malformed
    /// parameters (fuzz finding 4 was `<…>, addr-spec;;…` in one Contact value).
    #[test]
    fn address_lists_normalise_idempotently(
        items in proptest::collection::vec((any::<bool>(), proptest::collection::vec(param(), 0..4)), 1..4),
        header in prop::sample::select(vec!["Contact", "Route", "P-Asserted-Identity", "To"]),
    ) {
        let list: Vec<String> = items
            .iter()
            .enumerate()
            .map(|(i, (name_addr, params))| {
                let uri = format!("sip:u{i}@h");
                let uri = if *name_addr { format!("\"U {i}\" <{uri}>") } else { uri };
                format!("{uri}{}", params.concat())
            })
            .collect();
        let value = if header == "To" { list[0].clone() } else { list.join(" , ") };
        let msg = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n{header}: {value}\r\nCall-ID: x\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .replacen("To: <sip:a@b>\r\nTo:", "To:", 1);
        assert_sane(&front().check_datagram(msg.as_bytes()));
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
