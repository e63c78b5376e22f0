//! Loopback tests of the session/connection driver on 127.0.0.1: two endpoints exchanging a
//! 1 MiB message in 2 KiB chunks, a peer behind a relay-style two-hop path, 481 and 506,
//! garbage answered 400 while another session keeps working, report and response options, the
//! cap on accepted connections.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use msrp_session::{
    CloseReason, Decoded, EndpointConfig, Frame, MsrpDecoder, MsrpEndpoint, MsrpSession, MsrpUri,
    SendError, SessionEvent, SetupRole,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

async fn endpoint(cfg: EndpointConfig) -> MsrpEndpoint {
    MsrpEndpoint::bind("127.0.0.1:0".parse().expect("addr"), cfg)
        .await
        .expect("bind")
}

async fn event(s: &mut MsrpSession) -> SessionEvent {
    timeout(T, s.next_event())
        .await
        .expect("event in time")
        .expect("event")
}

/// A hand-driven MSRP peer over a raw socket.
struct RawPeer {
    sock: TcpStream,
    dec: MsrpDecoder,
}

impl RawPeer {
    async fn connect(ep: &MsrpEndpoint) -> RawPeer {
        RawPeer {
            sock: TcpStream::connect(ep.local_addr()).await.expect("connect"),
            dec: MsrpDecoder::default(),
        }
    }

    async fn write(&mut self, b: &[u8]) {
        self.sock.write_all(b).await.expect("write");
    }

    /// Next frame, or None on EOF.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(d) = self.dec.decode().expect("peer decodes") {
                match d {
                    Decoded::Frame(f) => return Some(f),
                    Decoded::Rejected(r) => panic!("peer got bad frame {r:?}"),
                }
            }
            let mut buf = vec![0u8; 65536];
            let n = timeout(T, self.sock.read(&mut buf))
                .await
                .expect("read in time")
                .expect("read");
            if n == 0 {
                return None;
            }
            self.dec.feed(&buf[..n]);
        }
    }

    async fn expect_frame(&mut self) -> Frame {
        self.frame().await.expect("a frame before EOF")
    }

    async fn expect_no_frame(&mut self, wait: Duration) {
        let mut buf = [0u8; 1024];
        match timeout(wait, self.sock.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) => {}
            Ok(r) => panic!("unexpected data: {r:?} {:?}", String::from_utf8_lossy(&buf)),
        }
    }
}

fn send_frame(tid: &str, to: &str, from: &str, extra: &str, body: Option<&str>) -> Vec<u8> {
    let mut s = format!(
        "MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m{tid}\r\n{extra}"
    );
    match body {
        Some(b) => s.push_str(&format!(
            "Byte-Range: 1-{0}/{0}\r\nContent-Type: text/plain\r\n\r\n{b}\r\n",
            b.len()
        )),
        None => s.push_str("Byte-Range: 1-0/0\r\n"),
    }
    s.push_str(&format!("-------{tid}$\r\n"));
    s.into_bytes()
}

#[tokio::test]
async fn two_endpoints_exchange_one_mib_in_2k_chunks() {
    let cfg = EndpointConfig {
        chunk_size: 2048,
        ..EndpointConfig::default()
    };
    let server = endpoint(cfg.clone()).await;
    let client = endpoint(cfg).await;
    let mut a = server.create_session();
    let mut b = client.create_session();
    assert!(a.id().len() >= 16, "session id carries >= 80 bits");
    a.start(b.local_path(), SetupRole::Passive)
        .await
        .expect("passive start");
    timeout(T, b.start(a.local_path(), SetupRole::Active))
        .await
        .expect("in time")
        .expect("active start");
    assert!(matches!(event(&mut a).await, SessionEvent::Bound));
    assert!(matches!(event(&mut b).await, SessionEvent::Bound));

    let big: Bytes = (0..1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let sender = b.sender();
    let body = big.clone();
    let sent_at = std::time::Instant::now();
    let send = tokio::spawn(async move { sender.send("application/octet-stream", body).await });
    match event(&mut a).await {
        SessionEvent::Message(m) => {
            // Stamped when the last chunk's bytes were read, before the event was handed over.
            assert!(m.received_at > sent_at, "{:?}", m.received_at - sent_at);
            assert!(m.received_at <= std::time::Instant::now());
            assert_eq!(m.body.len(), big.len());
            assert!(m.body == big, "1 MiB arrives byte-exact");
            assert_eq!(m.total_bytes, 1024 * 1024);
            assert_eq!(m.content_type, "application/octet-stream");
            m.responder.accept();
        }
        other => panic!("expected message, got {other:?}"),
    }
    timeout(T, send)
        .await
        .expect("in time")
        .expect("join")
        .expect("send ok");

    // And back, several in flight at once.
    let s1 = a.sender();
    let s2 = a.sender();
    let (r1, r2, got) = tokio::join!(
        s1.send("text/plain", Bytes::from_static(b"one")),
        s2.send("text/plain", Bytes::from_static(b"two")),
        async {
            let mut got = Vec::new();
            for _ in 0..2 {
                match event(&mut b).await {
                    SessionEvent::Message(m) => {
                        got.push(m.body.clone());
                        m.responder.accept();
                    }
                    other => panic!("{other:?}"),
                }
            }
            got
        }
    );
    r1.expect("first");
    r2.expect("second");
    assert_eq!(got.len(), 2);

    // Closing the last session on the connection closes it; the peer sees the loss.
    b.close();
    assert!(matches!(
        event(&mut b).await,
        SessionEvent::Closed(CloseReason::Local)
    ));
    assert!(matches!(
        event(&mut a).await,
        SessionEvent::Closed(CloseReason::ConnectionLost)
    ));
    assert_eq!(client.session_count(), 0);
    assert_eq!(server.session_count(), 0);
}

#[tokio::test]
async fn relay_style_two_hop_path_and_reports() {
    let server = endpoint(EndpointConfig::default()).await;
    let mut s = server.create_session();
    let us = s.local_uri().to_string();
    let relay = "msrp://relay.example.com:2855/r3lay;tcp";
    let peer = "msrp://client.example.com:7777/cl13nt;tcp";
    let remote: Vec<MsrpUri> = MsrpUri::parse_path(&format!("{relay} {peer}")).expect("path");
    s.start(remote, SetupRole::Passive).await.expect("start");

    // The relay's connection carries the client's SEND with the two-hop From-Path.
    let mut r = RawPeer::connect(&server).await;
    let from = format!("{relay} {peer}");
    r.write(&send_frame(
        "rly00001",
        &us,
        &from,
        "Success-Report: yes\r\n",
        Some("hello via relay"),
    ))
    .await;
    assert!(matches!(event(&mut s).await, SessionEvent::Bound));
    let m = match event(&mut s).await {
        SessionEvent::Message(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(&m.body[..], b"hello via relay");
    assert_eq!(m.from_path().len(), 2);
    // Nothing is answered before the application decides.
    r.expect_no_frame(Duration::from_millis(200)).await;
    m.responder.accept();
    let resp = r.expect_frame().await;
    assert_eq!(resp.status_code(), Some(200));
    assert_eq!(
        resp.header("To-Path"),
        Some(relay),
        "response goes to the previous hop"
    );
    assert_eq!(resp.header("From-Path"), Some(us.as_str()));
    let report = r.expect_frame().await;
    assert_eq!(report.method().map(|m| m.as_str()), Some("REPORT"));
    assert_eq!(
        report.header("To-Path"),
        Some(from.as_str()),
        "REPORT goes end to end"
    );
    assert_eq!(report.header("Status"), Some("000 200 OK"));
    assert_eq!(report.header("Byte-Range"), Some("1-15/15"));

    // Our own SEND goes along the reverse path, on the relay's connection.
    let sender = s.sender();
    let send = tokio::spawn(async move {
        sender
            .send("text/plain", Bytes::from_static(b"hi back"))
            .await
    });
    let out = r.expect_frame().await;
    assert_eq!(out.header("To-Path"), Some(from.as_str()));
    assert_eq!(out.body_bytes(), b"hi back");
    let mut ok = BytesMut::new();
    out.response_to(200, None, &MsrpUri::parse_path(relay).expect("relay")[0])
        .encode(&mut ok);
    r.write(&ok).await;
    timeout(T, send)
        .await
        .expect("in time")
        .expect("join")
        .expect("200");

    // Failure-Report: no → no response at all; partial → no 200; unknown method → 501;
    // keep-alive (empty SEND) → 200 and no event; an error status fails a send.
    r.write(&send_frame(
        "fr000001",
        &us,
        &from,
        "Failure-Report: no\r\n",
        Some("quiet"),
    ))
    .await;
    match event(&mut s).await {
        SessionEvent::Message(m) => m.responder.accept(),
        other => panic!("{other:?}"),
    }
    r.write(&send_frame(
        "fr000002",
        &us,
        &from,
        "Failure-Report: partial\r\n",
        Some("partial"),
    ))
    .await;
    match event(&mut s).await {
        SessionEvent::Message(m) => m.responder.accept(),
        other => panic!("{other:?}"),
    }
    r.write(
        format!(
            "MSRP unk00001 FETCH\r\nTo-Path: {us}\r\nFrom-Path: {from}\r\n-------unk00001$\r\n"
        )
        .as_bytes(),
    )
    .await;
    let f = r.expect_frame().await;
    assert_eq!(
        (f.transaction_id.as_str(), f.status_code()),
        ("unk00001", Some(501))
    );
    r.write(&send_frame("kal00001", &us, &from, "", None)).await;
    let f = r.expect_frame().await;
    assert_eq!(
        (f.transaction_id.as_str(), f.status_code()),
        ("kal00001", Some(200))
    );
    r.write(&send_frame(
        "rej00001",
        &us,
        &from,
        "",
        Some("rejected one"),
    ))
    .await;
    match event(&mut s).await {
        SessionEvent::Message(m) => m.responder.reject(415),
        other => panic!("{other:?}"),
    }
    let f = r.expect_frame().await;
    assert_eq!(
        (f.transaction_id.as_str(), f.status_code()),
        ("rej00001", Some(415))
    );

    let sender = s.sender();
    let send = tokio::spawn(async move {
        sender
            .send("text/plain", Bytes::from_static(b"refused"))
            .await
    });
    let out = r.expect_frame().await;
    let mut no = BytesMut::new();
    out.response_to(413, None, &MsrpUri::parse_path(relay).expect("relay")[0])
        .encode(&mut no);
    r.write(&no).await;
    assert_eq!(
        timeout(T, send).await.expect("in time").expect("join"),
        Err(SendError::Status(413))
    );
}

#[tokio::test]
async fn unknown_session_481_and_already_bound_506() {
    let server = endpoint(EndpointConfig::default()).await;
    let mut s = server.create_session();
    let us = s.local_uri().to_string();
    let peer = "msrp://127.0.0.1:9/peer1;tcp";

    let mut stranger = RawPeer::connect(&server).await;
    let unknown = us.replace(s.id(), "NoSuchSession0000000");
    stranger
        .write(&send_frame("u4810001", &unknown, peer, "", Some("x")))
        .await;
    let f = stranger.expect_frame().await;
    assert_eq!(f.status_code(), Some(481));
    assert_eq!(f.header("To-Path"), Some(peer));

    let mut first = RawPeer::connect(&server).await;
    first
        .write(&send_frame("bnd00001", &us, peer, "", None))
        .await;
    assert_eq!(first.expect_frame().await.status_code(), Some(200));
    assert!(matches!(event(&mut s).await, SessionEvent::Bound));

    let mut second = RawPeer::connect(&server).await;
    second
        .write(&send_frame("dup00001", &us, peer, "", Some("hijack")))
        .await;
    assert_eq!(second.expect_frame().await.status_code(), Some(506));

    // The bound connection still works.
    first
        .write(&send_frame("ok000001", &us, peer, "", Some("still here")))
        .await;
    match event(&mut s).await {
        SessionEvent::Message(m) => {
            assert_eq!(&m.body[..], b"still here");
            m.responder.accept();
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(first.expect_frame().await.status_code(), Some(200));
}

#[tokio::test]
async fn garbage_gets_400_while_other_sessions_keep_working() {
    let server = endpoint(EndpointConfig::default()).await;
    let mut good = server.create_session();
    let good_uri = good.local_uri().to_string();
    let victim = server.create_session();
    let victim_uri = victim.local_uri().to_string();
    let peer = "msrp://127.0.0.1:9/peer2;tcp";

    let mut ok = RawPeer::connect(&server).await;
    ok.write(&send_frame("gd000001", &good_uri, peer, "", None))
        .await;
    assert_eq!(ok.expect_frame().await.status_code(), Some(200));
    assert!(matches!(event(&mut good).await, SessionEvent::Bound));

    // A malformed frame on another connection: 400, that connection goes on.
    let mut bad = RawPeer::connect(&server).await;
    bad.write(format!("MSRP bad00001 SEND\r\nTo-Path: {victim_uri}\r\nthis is not a header\r\n-------bad00001$\r\n").as_bytes())
        .await;
    let f = bad.expect_frame().await;
    assert_eq!(
        (f.transaction_id.as_str(), f.status_code()),
        ("bad00001", Some(400))
    );
    bad.write(
        format!(
            "MSRP bad00002 SEND\r\nTo-Path: nonsense\r\nFrom-Path: {peer}\r\n-------bad00002$\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(bad.expect_frame().await.status_code(), Some(400));
    // Then plain garbage: the connection is closed.
    bad.write(b"\x00\x01GET / HTTP/1.1\r\n\r\n").await;
    assert!(bad.frame().await.is_none(), "garbage stream closed");

    // An oversized header block with a known transaction id: 400, then closed.
    let mut big = RawPeer::connect(&server).await;
    big.write(b"MSRP big00001 SEND\r\nX-Junk: ").await;
    big.write(&vec![b'a'; 40 * 1024]).await;
    let f = big.expect_frame().await;
    assert_eq!(f.status_code(), Some(400));
    assert!(big.frame().await.is_none());

    ok.write(&send_frame(
        "gd000002",
        &good_uri,
        peer,
        "",
        Some("unharmed"),
    ))
    .await;
    match event(&mut good).await {
        SessionEvent::Message(m) => {
            assert_eq!(&m.body[..], b"unharmed");
            m.responder.accept();
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ok.expect_frame().await.status_code(), Some(200));
}

#[tokio::test]
async fn send_timeout_and_oversized_message_413() {
    let cfg = EndpointConfig {
        transaction_timeout: Duration::from_millis(300),
        max_message_bytes: 10_000,
        chunk_size: 4096,
        ..EndpointConfig::default()
    };
    let server = endpoint(cfg.clone()).await;
    let mut s = server.create_session();
    let us = s.local_uri().to_string();
    let peer = "msrp://127.0.0.1:9/peer3;tcp";
    s.start(MsrpUri::parse_path(peer).expect("path"), SetupRole::Passive)
        .await
        .expect("start");
    let mut p = RawPeer::connect(&server).await;
    p.write(&send_frame("to000001", &us, peer, "", None)).await;
    assert_eq!(p.expect_frame().await.status_code(), Some(200));
    assert!(matches!(event(&mut s).await, SessionEvent::Bound));

    // The peer never answers: the send times out.
    let r = timeout(T, s.send("text/plain", Bytes::from_static(b"anyone?")))
        .await
        .expect("in time");
    assert_eq!(r, Err(SendError::Timeout));

    // Chunks beyond the session's reassembly cap: 413 and the message is dropped.
    let chunk = "x".repeat(6000);
    for (i, range) in ["1-6000/*", "6001-12000/*"].iter().enumerate() {
        let tid = format!("cap0000{i}");
        let f = format!(
            "MSRP {tid} SEND\r\nTo-Path: {us}\r\nFrom-Path: {peer}\r\nMessage-ID: capped\r\nByte-Range: {range}\r\nContent-Type: text/plain\r\n\r\n{chunk}\r\n-------{tid}+\r\n"
        );
        p.write(f.as_bytes()).await;
    }
    // Skip the timed-out SEND that arrived first; collect the two responses.
    let mut codes = Vec::new();
    while codes.len() < 2 {
        let f = p.expect_frame().await;
        if f.method().is_none() {
            codes.push(f.status_code());
        }
    }
    assert_eq!(codes, vec![Some(200), Some(413)]);
}

#[tokio::test]
async fn passive_session_without_connection_times_out() {
    let cfg = EndpointConfig {
        bind_timeout: Duration::from_millis(200),
        ..EndpointConfig::default()
    };
    let server = endpoint(cfg).await;
    let mut s = server.create_session();
    assert!(matches!(
        event(&mut s).await,
        SessionEvent::Closed(CloseReason::BindTimeout)
    ));
    assert_eq!(server.session_count(), 0);
}

#[tokio::test]
async fn body_without_content_type_is_400_and_dropping_the_session_closes_the_connection() {
    let server = endpoint(EndpointConfig::default()).await;
    let mut s = server.create_session();
    let us = s.local_uri().to_string();
    let peer = "msrp://127.0.0.1:9/peer4;tcp";
    let mut p = RawPeer::connect(&server).await;
    p.write(&send_frame("ct000001", &us, peer, "", None)).await;
    assert_eq!(p.expect_frame().await.status_code(), Some(200));
    assert!(matches!(event(&mut s).await, SessionEvent::Bound));
    p.write(
        format!("MSRP ct000002 SEND\r\nTo-Path: {us}\r\nFrom-Path: {peer}\r\nMessage-ID: x\r\n\r\nbody\r\n-------ct000002$\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(p.expect_frame().await.status_code(), Some(400));
    drop(s);
    assert!(
        p.frame().await.is_none(),
        "connection closed with its last session"
    );
    assert_eq!(server.session_count(), 0);
}

/// Reads until the server closes the socket; fails if it stays open for `T`.
async fn closed_by_server(sock: &mut TcpStream) {
    let mut rest = Vec::new();
    timeout(T, sock.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_a_closed_one_frees_its_place() {
    let cfg = EndpointConfig {
        max_inbound_connections: 2,
        ..EndpointConfig::default()
    };
    let ep = endpoint(cfg).await;
    let first = TcpStream::connect(ep.local_addr()).await.expect("connect");
    let _second = TcpStream::connect(ep.local_addr()).await.expect("connect");
    let wait_for = |n: usize| {
        let ep = ep.clone();
        async move {
            timeout(T, async {
                while ep.inbound_connections() != n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("connection count in time");
        }
    };
    wait_for(2).await;
    // The third is accepted and closed at once: the server's side reads as EOF.
    let mut third = TcpStream::connect(ep.local_addr()).await.expect("connect");
    closed_by_server(&mut third).await;
    assert_eq!(ep.refused_connections(), 1);
    assert_eq!(ep.inbound_connections(), 2);
    // A closed connection gives its place back: the next one is served (a bind to a session).
    drop(first);
    wait_for(1).await;
    let mut s = ep.create_session();
    let us = s.local_uri().to_string();
    let mut peer = RawPeer::connect(&ep).await;
    peer.write(&send_frame(
        "bnd00001",
        &us,
        "msrp://127.0.0.1:9/peer1;tcp",
        "",
        None,
    ))
    .await;
    assert_eq!(peer.expect_frame().await.status_code(), Some(200));
    assert!(matches!(event(&mut s).await, SessionEvent::Bound));
    assert_eq!(ep.refused_connections(), 1);
}
