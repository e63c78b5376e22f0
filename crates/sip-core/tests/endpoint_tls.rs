//! The `tls` listener over 127.0.0.1 with a self-signed pair generated here: OPTIONS gets 200,
//! a malformed request gets the front's 400 and the TLS connection stays usable; an INVITE's
//! 200 carries a `transport=tls` Contact; clear text on the TLS port is never answered and
//! does not stop the listener; a `tls` listener without a certificate is refused.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use sip_core::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

struct Pair {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn pair() -> Pair {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = generated.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    Pair {
        server: sip_core::tls::server_config(vec![cert.clone()], key).unwrap(),
        client: sip_core::tls::client_config(vec![cert]).unwrap(),
    }
}

async fn start(pair: &Pair) -> (SipEndpoint, tokio::sync::mpsc::Receiver<IncomingRequest>) {
    let config = SipEndpointConfig {
        listen: vec![ListenAddr::tls("127.0.0.1:0".parse().unwrap())],
        tls: Some(pair.server.clone()),
        ..SipEndpointConfig::default()
    };
    SipEndpoint::start(config).await.unwrap()
}

fn tls_addr(ep: &SipEndpoint) -> SocketAddr {
    let l = ep.local_addrs().into_iter().next().unwrap();
    assert_eq!(l.transport, Transport::Tls);
    assert_eq!(l.to_string(), format!("tls:{}", l.addr));
    l.addr
}

async fn connect(pair: &Pair, to: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(to).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    timeout(
        Duration::from_secs(5),
        TlsConnector::from(pair.client.clone()).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .unwrap()
}

fn options(branch: &str) -> String {
    format!(
        "OPTIONS sip:mwi@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:mwi@127.0.0.1>\r\n\
         Call-ID: {branch}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// One response head (through the empty line) from the TLS stream.
async fn read_head(stream: &mut TlsStream<TcpStream>, buf: &mut Vec<u8>) -> String {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return head;
        }
        let n = timeout(Duration::from_secs(3), stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn options_and_malformed_over_tls_keep_the_connection() {
    let pair = pair();
    let (ep, _rx) = start(&pair).await;
    let mut s = connect(&pair, tls_addr(&ep)).await;
    let mut buf = Vec::new();

    s.write_all(options("tls1").as_bytes()).await.unwrap();
    let r = read_head(&mut s, &mut buf).await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("branch=z9hG4bKtls1"), "{r}");

    let bad = options("tls2").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    s.write_all(bad.as_bytes()).await.unwrap();
    let r = read_head(&mut s, &mut buf).await;
    assert!(
        r.starts_with("SIP/2.0 400 CSeq method does not match Request-Line\r\n"),
        "{r}"
    );

    s.write_all(options("tls3").as_bytes()).await.unwrap();
    let r = read_head(&mut s, &mut buf).await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("branch=z9hG4bKtls3"), "{r}");
    assert_eq!(ep.front_stats(), (2, 1, 0));
    ep.shutdown();
}

#[tokio::test]
async fn invite_over_tls_is_seen_as_tls_and_answered_with_a_tls_contact() {
    let pair = pair();
    let (ep, mut rx) = start(&pair).await;
    let mut s = connect(&pair, tls_addr(&ep)).await;
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=message 9 TCP/TLS/MSRP *\r\na=accept-types:text/plain\r\n\
               a=path:msrps://127.0.0.1:9/s1;tcp\r\n";
    let invite = format!(
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKinv1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al1\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: inv1@test\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:9;transport=tls>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    s.write_all(invite.as_bytes()).await.unwrap();
    let Some(IncomingRequest::Invite(inv)) = timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("the INVITE in time")
    else {
        panic!("expected an INVITE");
    };
    assert_eq!(inv.source().transport, Transport::Tls);
    let _dialog = inv.accept(b"v=0\r\n".to_vec()).unwrap();
    let mut buf = Vec::new();
    let r = loop {
        let r = read_head(&mut s, &mut buf).await;
        if !r.starts_with("SIP/2.0 100") {
            break r;
        }
    };
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.to_ascii_lowercase().contains(";transport=tls>"), "{r}");
    ep.shutdown();
}

#[tokio::test]
async fn plain_text_on_the_tls_port_is_dropped_and_the_listener_keeps_serving() {
    let pair = pair();
    let (ep, _rx) = start(&pair).await;
    let to = tls_addr(&ep);
    let mut plain = TcpStream::connect(to).await.unwrap();
    plain.write_all(options("plain").as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    // The handshake fails: the socket is closed (an alert at most), never a SIP answer.
    loop {
        let n = timeout(Duration::from_secs(3), plain.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        assert!(!buf[..n].starts_with(b"SIP/2.0"), "answered in clear");
    }
    let mut s = connect(&pair, to).await;
    let mut rbuf = Vec::new();
    s.write_all(options("after").as_bytes()).await.unwrap();
    let r = read_head(&mut s, &mut rbuf).await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert_eq!(
        ep.front_stats(),
        (1, 0, 0),
        "the clear-text request never reached the front"
    );
    ep.shutdown();
}

#[tokio::test]
async fn a_tls_listener_needs_a_certificate() {
    let config = SipEndpointConfig {
        listen: vec![ListenAddr::tls("127.0.0.1:0".parse().unwrap())],
        ..SipEndpointConfig::default()
    };
    let e = SipEndpoint::start(config).await.unwrap_err();
    assert!(matches!(e, StartError::NoTlsCertificate(_)), "{e}");
}
