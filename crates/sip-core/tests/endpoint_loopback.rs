//! Endpoint over 127.0.0.1 with raw UDP/TCP sockets as the peer: OPTIONS, stateless 400 before
//! rsipstack, TCP connection kept after a bad message, INVITE/ACK/BYE, PUBLISH to a fake server,
//! Timer E retransmission and Timer F timeout with a shortened T1.
#![allow(clippy::unwrap_used)]

use sip_core::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

fn config() -> SipEndpointConfig {
    SipEndpointConfig {
        listen: vec![
            ListenAddr::udp("127.0.0.1:0".parse().unwrap()),
            ListenAddr::tcp("127.0.0.1:0".parse().unwrap()),
        ],
        timers: Timers {
            t1: Duration::from_millis(50),
            t2: Duration::from_millis(200),
            t4: Duration::from_millis(250),
        },
        ..SipEndpointConfig::default()
    }
}

fn addr_of(ep: &SipEndpoint, t: Transport) -> SocketAddr {
    ep.local_addrs()
        .into_iter()
        .find(|l| l.transport == t)
        .unwrap()
        .addr
}

fn options(branch: &str, extra: &str) -> String {
    format!(
        "OPTIONS sip:mwi@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:mwi@127.0.0.1>\r\n\
         Call-ID: {branch}@test\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

async fn udp_exchange(sock: &UdpSocket, to: SocketAddr, msg: &[u8]) -> String {
    sock.send_to(msg, to).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("a response in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn options_and_malformed_over_udp() {
    let (ep, _rx) = SipEndpoint::start(config()).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ok = udp_exchange(&sock, to, options("u1", "").as_bytes()).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("Allow: "), "{ok}");
    let bad = options("u2", "").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    let r = udp_exchange(&sock, to, bad.as_bytes()).await;
    assert!(r.starts_with("SIP/2.0 400 CSeq method does not match Request-Line\r\n"), "{r}");
    let r = udp_exchange(&sock, to, options("u3", "").replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia").as_bytes()).await;
    assert!(r.starts_with("SIP/2.0 505"), "{r}");
    let r = udp_exchange(&sock, to, options("u4", "").replace("OPTIONS sip", "FOO sip").as_bytes()).await;
    assert!(r.starts_with("SIP/2.0 501"), "{r}");
    let (delivered, rejected, _) = ep.front_stats();
    assert_eq!((delivered, rejected), (1, 3));
    ep.shutdown();
}

async fn tcp_read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            return head;
        }
        let n = timeout(Duration::from_secs(2), stream.read(&mut chunk))
            .await
            .expect("tcp response in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn tcp_connection_survives_a_bad_message() {
    let (ep, _rx) = SipEndpoint::start(config()).await.unwrap();
    let to = addr_of(&ep, Transport::Tcp);
    let mut s = TcpStream::connect(to).await.unwrap();
    let bad = options("t1", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP").replace("OPTIONS sip", "NEWMETHOD sip");
    s.write_all(bad.as_bytes()).await.unwrap();
    let r = tcp_read_response(&mut s).await;
    assert!(r.starts_with("SIP/2.0 501"), "{r}");
    let good = options("t2", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.write_all(good.as_bytes()).await.unwrap();
    let r = tcp_read_response(&mut s).await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    ep.shutdown();
}
