//! Codec throughput for 1 KiB SENDs. Run in release:
//! `cargo test --release -p msrp-session --test codec_bench -- --ignored --nocapture`

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use msrp_session::{Decoded, Frame, Method, MsrpDecoder, MsrpUri};

#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn codec_throughput_1k_sends() {
    const N: usize = 200_000;
    let to: MsrpUri = "msrp://192.0.2.1:2855/kjhd37s2s20w2aabcdef;tcp"
        .parse()
        .expect("uri");
    let from: MsrpUri = "msrp://192.0.2.2:2855/jshA7weztasabcdefghi;tcp"
        .parse()
        .expect("uri");
    let body = Bytes::from(vec![b'x'; 1024]);
    let mut frame = Frame::request("aaaaaaaaaaaaaaaa", Method::Send, &[to], &[from]);
    frame.push_header("Message-ID", "0123456789abcdef");
    frame.push_header("Byte-Range", "1-1024/1024");
    frame.push_header("Content-Type", "text/plain");
    frame.body = Some(body);

    let t = Instant::now();
    let mut wire = BytesMut::with_capacity(N * 1300);
    for _ in 0..N {
        frame.encode(&mut wire);
    }
    let enc = t.elapsed().as_secs_f64();
    let bytes = wire.len() as f64;

    let t = Instant::now();
    let mut dec = MsrpDecoder::default();
    let mut count = 0usize;
    for piece in wire.chunks(64 * 1024) {
        dec.feed(piece);
        while let Some(d) = dec.decode().expect("decodes") {
            assert!(matches!(d, Decoded::Frame(_)));
            count += 1;
        }
    }
    let dec_s = t.elapsed().as_secs_f64();
    assert_eq!(count, N);
    println!(
        "encode: {:.0} MB/s, {:.0} frames/s; decode: {:.0} MB/s, {:.0} frames/s ({} frames of {} bytes)",
        bytes / enc / 1e6,
        N as f64 / enc,
        bytes / dec_s / 1e6,
        N as f64 / dec_s,
        N,
        bytes as usize / N
    );
}
