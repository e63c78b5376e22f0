//! Property: any message, split into chunks of any size, serialized, and fed to the decoder
//! at arbitrary read boundaries, reassembles to the original bytes; interleaving two
//! messages' chunks changes nothing.

use bytes::{Bytes, BytesMut};
use msrp_session::chunking::{split, ChunkOutcome, Reassembler};
use msrp_session::{Decoded, Frame, Method, MsrpDecoder, MsrpUri};
use proptest::prelude::*;

fn frames_for(message_id: &str, body: &Bytes, chunk_size: usize, tid_prefix: &str) -> Vec<Frame> {
    let to: MsrpUri = "msrp://127.0.0.1:2855/tosession;tcp".parse().expect("uri");
    let from: MsrpUri = "msrp://127.0.0.1:2856/fromsession;tcp"
        .parse()
        .expect("uri");
    split(body, chunk_size)
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut f = Frame::request(
                format!("{tid_prefix}{i:04}"),
                Method::Send,
                std::slice::from_ref(&to),
                std::slice::from_ref(&from),
            );
            f.push_header("Message-ID", message_id);
            f.push_header("Byte-Range", c.range.to_string());
            f.push_header("Content-Type", "application/octet-stream");
            f.body = Some(c.data);
            f.flag = c.flag;
            f
        })
        .collect()
}

/// Bodies rich in the bytes that matter to framing.
fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b'-'),
            Just(b'\r'),
            Just(b'\n'),
            Just(b'$'),
            Just(b'+'),
            any::<u8>()
        ],
        0..3000,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn split_serialize_cut_decode_reassemble(
        a in body_strategy(),
        b in body_strategy(),
        chunk_a in 1usize..700,
        chunk_b in 1usize..700,
        cuts in prop::collection::vec(1usize..400, 1..50),
        interleave in any::<bool>(),
    ) {
        let (a, b) = (Bytes::from(a), Bytes::from(b));
        let fa = frames_for("msgA", &a, chunk_a, "tidA");
        let fb = frames_for("msgB", &b, chunk_b, "tidB");
        let mut order: Vec<&Frame> = Vec::new();
        if interleave {
            let n = fa.len().max(fb.len());
            for i in 0..n {
                order.extend(fa.get(i));
                order.extend(fb.get(i));
            }
        } else {
            order.extend(fa.iter());
            order.extend(fb.iter());
        }
        let mut wire = BytesMut::new();
        for f in &order {
            f.encode(&mut wire);
        }

        let mut dec = MsrpDecoder::default();
        let mut re = Reassembler::new(1 << 20);
        let mut done: Vec<(String, Bytes)> = Vec::new();
        let mut decoded = 0usize;
        let mut pos = 0usize;
        let mut i = 0usize;
        while pos < wire.len() {
            let step = cuts[i % cuts.len()];
            i += 1;
            let end = (pos + step).min(wire.len());
            dec.feed(&wire[pos..end]);
            pos = end;
            while let Some(d) = dec.decode().expect("no fatal error") {
                let Decoded::Frame(f) = d else { panic!("rejected {d:?}") };
                prop_assert_eq!(&f, order[decoded]);
                decoded += 1;
                let mid = f.message_id().expect("mid").to_string();
                let range = f.byte_range().expect("range");
                match re.accept(&mid, range, f.body.as_ref().expect("body"), f.flag).expect("accepted") {
                    ChunkOutcome::Complete(data) => done.push((mid, data)),
                    ChunkOutcome::Partial => {}
                    ChunkOutcome::Aborted => panic!("no aborts sent"),
                }
            }
        }
        prop_assert_eq!(decoded, order.len());
        prop_assert_eq!(dec.buffered(), 0);
        done.sort_by(|x, y| x.0.cmp(&y.0));
        prop_assert_eq!(done, vec![("msgA".to_string(), a), ("msgB".to_string(), b)]);
        prop_assert_eq!(re.held_bytes(), 0);
    }
}
