//! Wireshark's MSRP dissector (tshark) decodes an exchange between two of our endpoints
//! with no malformed packets. The bytes of both directions are recorded by a forwarding
//! proxy on 127.0.0.1 and written as a pcap (synthesised Ethernet/IPv4/TCP framing, one MSRP
//! frame per segment), so no capture privileges are needed. Prints SKIPPED when tshark is not installed.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use msrp_session::cpim::{CpimAddress, CpimMessage};
use msrp_session::{
    Decoded, EndpointConfig, MsrpDecoder, MsrpEndpoint, MsrpUri, SessionEvent, SetupRole,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

/// (client to server?, bytes) in the order they were read.
type Log = Arc<Mutex<Vec<(bool, Vec<u8>)>>>;

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    up: bool,
    log: Log,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        log.lock().expect("log").push((up, buf[..n].to_vec()));
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

struct Pcap {
    out: Vec<u8>,
    seq: [u32; 2],
    usec: u32,
}

impl Pcap {
    fn new() -> Self {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
        Pcap {
            out,
            seq: [1000, 5000],
            usec: 0,
        }
    }

    /// One TCP segment; `up` is client (10.0.0.1:40000) to server (10.0.0.2:2855).
    fn segment(&mut self, up: bool, flags: u8, payload: &[u8]) {
        let (d, o) = if up { (0, 1) } else { (1, 0) };
        let (sport, dport, src, dst) = if up {
            (40000u16, 2855u16, [10, 0, 0, 1], [10, 0, 0, 2])
        } else {
            (2855, 40000, [10, 0, 0, 2], [10, 0, 0, 1])
        };
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&self.seq[d].to_be_bytes());
        tcp.extend_from_slice(&self.seq[o].to_be_bytes());
        tcp.push(5 << 4);
        tcp.push(flags);
        tcp.extend_from_slice(&65535u16.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&tcp);
        let c = checksum(&pseudo);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let consumed = payload.len() as u32 + u32::from(flags & 0x03 != 0); // SYN/FIN take one
        self.seq[d] = self.seq[d].wrapping_add(consumed);

        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());

        let mut frame = vec![
            2,
            0,
            0,
            0,
            0,
            if up { 2 } else { 1 },
            2,
            0,
            0,
            0,
            0,
            if up { 1 } else { 2 },
            8,
            0,
        ];
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&tcp);
        self.usec += 100;
        self.out.extend_from_slice(&1u32.to_le_bytes());
        self.out.extend_from_slice(&self.usec.to_le_bytes());
        self.out
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&frame);
    }
}

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn tshark_decodes_an_exchange_without_malformed_packets() {
    if !tshark_available() {
        println!("SKIPPED: tshark not installed (apt-get install -y tshark)");
        return;
    }
    let cfg = EndpointConfig {
        chunk_size: 2048,
        ..EndpointConfig::default()
    };
    let addr = "127.0.0.1:0".parse().expect("addr");
    let server = MsrpEndpoint::bind(addr, cfg.clone()).await.expect("bind");
    let client = MsrpEndpoint::bind(addr, cfg).await.expect("bind");

    // Recording proxy in front of the server.
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("proxy");
    let proxy_port = proxy.local_addr().expect("addr").port();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let server_addr = server.local_addr();
    let plog = log.clone();
    tokio::spawn(async move {
        if let Ok((inbound, _)) = proxy.accept().await {
            let Ok(outbound) = TcpStream::connect(server_addr).await else {
                return;
            };
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::spawn(pump(ir, ow, true, plog.clone()));
            tokio::spawn(pump(or, iw, false, plog));
        }
    });

    let mut a = server.create_session();
    let mut b = client.create_session();
    let mut via_proxy: MsrpUri = a.local_uri().clone();
    via_proxy.port = Some(proxy_port);
    a.start(b.local_path(), SetupRole::Passive)
        .await
        .expect("start");
    timeout(T, b.start(vec![via_proxy], SetupRole::Active))
        .await
        .expect("in time")
        .expect("active start");

    let cpim = CpimMessage::new(
        &CpimAddress::new(Some("Alice"), "sip:alice@example.com"),
        &CpimAddress::new(None, "sip:bob@example.com"),
        None,
        "text/plain;charset=UTF-8",
        Bytes::from_static(b"stored for later\r\nsecond line"),
    );
    // Wireshark's dissector takes the first "-------" as the end-line, so bodies here hold no
    // dashes (our decoder's handling of those is tested elsewhere).
    let big = Bytes::from(vec![b'x'; 5000]);
    let (r1, r2, ()) = tokio::join!(
        b.send("message/cpim", cpim.to_bytes()),
        b.send("text/plain", big),
        async {
            for _ in 0..2 {
                loop {
                    match timeout(T, a.next_event())
                        .await
                        .expect("in time")
                        .expect("event")
                    {
                        SessionEvent::Message(m) => {
                            m.responder.accept();
                            break;
                        }
                        SessionEvent::Bound => {}
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
    );
    r1.expect("cpim sent");
    r2.expect("big sent");
    let (r3, ()) = tokio::join!(a.send("text/plain", Bytes::from_static(b"thanks")), async {
        loop {
            match timeout(T, b.next_event())
                .await
                .expect("in time")
                .expect("event")
            {
                SessionEvent::Message(m) => {
                    m.responder.accept();
                    break;
                }
                SessionEvent::Bound => {}
                other => panic!("{other:?}"),
            }
        }
    });
    r3.expect("reply sent");
    b.close();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut pcap = Pcap::new();
    pcap.segment(true, 0x02, &[]); // SYN
    pcap.segment(false, 0x12, &[]); // SYN-ACK
    pcap.segment(true, 0x10, &[]); // ACK
                                   // Wireshark's MSRP dissector does not reassemble TCP segments, so each MSRP frame goes
                                   // in one segment of its own (frames cut at end-lines; the bytes are the recorded ones).
    let records = log.lock().expect("log").clone();
    let mut total = 0usize;
    let mut decoders = [MsrpDecoder::default(), MsrpDecoder::default()];
    let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    for (up, data) in &records {
        total += data.len();
        let d = usize::from(!*up);
        pending[d].extend_from_slice(data);
        decoders[d].feed(data);
        while let Some(frame) = decoders[d].decode().expect("recorded stream decodes") {
            assert!(matches!(frame, Decoded::Frame(_)));
            let len = pending[d].len() - decoders[d].buffered();
            let bytes: Vec<u8> = pending[d].drain(..len).collect();
            pcap.segment(*up, 0x18, &bytes);
        }
    }
    assert!(pending.iter().all(Vec::is_empty), "whole frames only");
    assert!(total > 5000, "exchange recorded ({total} bytes)");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("msrp.pcap");
    std::fs::write(&path, &pcap.out).expect("write pcap");

    let run = |args: &[&str]| {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-d", "tcp.port==2855,msrp"])
            .args(args)
            .output()
            .expect("tshark runs");
        assert!(
            o.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let verbose = run(&["-V"]);
    assert!(
        !verbose.contains("Malformed"),
        "malformed packet:\n{verbose}"
    );
    let lines = run(&[
        "-Y",
        "msrp",
        "-T",
        "fields",
        "-e",
        "msrp.request.line",
        "-e",
        "msrp.response.line",
    ]);
    let requests = lines.matches(" SEND").count();
    let responses = lines.matches(" 200 OK").count();
    // Bind SEND + 1 CPIM + 3 chunks of 5000 bytes + 1 reply, each answered 200.
    assert!(requests >= 6, "SENDs decoded:\n{lines}");
    assert!(responses >= 6, "200s decoded:\n{lines}");
    let ends = run(&["-Y", "msrp", "-T", "fields", "-e", "msrp.end.line"]);
    assert!(
        ends.contains('+') && ends.contains('$'),
        "end-lines decoded:\n{ends}"
    );
}
