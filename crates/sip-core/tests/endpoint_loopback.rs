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
    assert!(
        r.starts_with("SIP/2.0 400 CSeq method does not match Request-Line\r\n"),
        "{r}"
    );
    let r = udp_exchange(
        &sock,
        to,
        options("u3", "")
            .replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia")
            .as_bytes(),
    )
    .await;
    assert!(r.starts_with("SIP/2.0 505"), "{r}");
    let r = udp_exchange(
        &sock,
        to,
        options("u4", "")
            .replace("OPTIONS sip", "FOO sip")
            .as_bytes(),
    )
    .await;
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
    let bad = options("t1", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("OPTIONS sip", "NEWMETHOD sip");
    s.write_all(bad.as_bytes()).await.unwrap();
    let r = tcp_read_response(&mut s).await;
    assert!(r.starts_with("SIP/2.0 501"), "{r}");
    let good = options("t2", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.write_all(good.as_bytes()).await.unwrap();
    let r = tcp_read_response(&mut s).await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    ep.shutdown();
}

/// Value of header `name` in a raw message.
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn recv_udp(sock: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65535];
    let (n, _) = timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("a datagram in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Receive until a message whose first line starts with `prefix`.
async fn recv_until(sock: &UdpSocket, prefix: &str) -> String {
    loop {
        let m = recv_udp(sock).await;
        if m.starts_with(prefix) {
            return m;
        }
    }
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 9 TCP/MSRP *\r\na=accept-types:message/cpim\r\na=path:msrp://127.0.0.1:9/s1;tcp\r\n";

fn invite(peer: SocketAddr, call: &str, to_tag: Option<&str>, cseq: u32, branch: &str) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al1\r\nTo: <sip:bob@127.0.0.1>{to_tag}\r\n\
         Call-ID: {call}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:alice@{peer}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

fn in_dialog(
    method: &str,
    peer: SocketAddr,
    call: &str,
    to_tag: &str,
    cseq: u32,
    branch: &str,
) -> String {
    format!(
        "{method} sip:mwi-store@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al1\r\nTo: <sip:bob@127.0.0.1>;tag={to_tag}\r\n\
         Call-ID: {call}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn to_tag_of(msg: &str) -> String {
    let to = header(msg, "To").expect("To header");
    to.split(";tag=")
        .nth(1)
        .expect("To-tag")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn invite_accept_retransmits_until_ack_then_reinvite_and_bye() {
    let (ep, mut rx) = SipEndpoint::start(config()).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer = sock.local_addr().unwrap();
    sock.send_to(invite(peer, "inv1@test", None, 1, "i1").as_bytes(), to)
        .await
        .unwrap();
    let trying = recv_udp(&sock).await;
    assert!(trying.starts_with("SIP/2.0 100"), "{trying}");
    let Some(IncomingRequest::Invite(inv)) =
        timeout(Duration::from_secs(2), rx.recv()).await.unwrap()
    else {
        panic!("expected an INVITE");
    };
    assert_eq!(inv.source().addr, peer);
    assert_eq!(inv.body(), SDP.as_bytes());
    let mut session = inv.accept(b"v=0\r\nanswer\r\n".to_vec()).unwrap();
    let ok = recv_until(&sock, "SIP/2.0 200").await;
    assert!(
        header(&ok, "Contact").is_some_and(|c| c.contains("sip:mwi-store@127.0.0.1:")),
        "{ok}"
    );
    assert_eq!(header(&ok, "Content-Type"), Some("application/sdp"));
    assert!(ok.ends_with("v=0\r\nanswer\r\n"), "{ok}");
    let tag = to_tag_of(&ok);
    // RFC 3261 §13.3.1.4: the 2xx is retransmitted (T1 = 50 ms here) until the ACK arrives.
    let again = recv_until(&sock, "SIP/2.0 200").await;
    assert_eq!(to_tag_of(&again), tag);
    sock.send_to(
        in_dialog("ACK", peer, "inv1@test", &tag, 1, "a1").as_bytes(),
        to,
    )
    .await
    .unwrap();
    assert_eq!(
        timeout(Duration::from_secs(2), session.next_event())
            .await
            .unwrap(),
        Some(DialogEvent::Ack)
    );
    // re-INVITE keeps the session: 200 with the same SDP.
    sock.send_to(
        invite(peer, "inv1@test", Some(&tag), 2, "r2").as_bytes(),
        to,
    )
    .await
    .unwrap();
    let re = recv_until(&sock, "SIP/2.0 200").await;
    assert!(re.ends_with("v=0\r\nanswer\r\n"), "{re}");
    assert_eq!(header(&re, "CSeq"), Some("2 INVITE"));
    sock.send_to(
        in_dialog("ACK", peer, "inv1@test", &tag, 2, "a2").as_bytes(),
        to,
    )
    .await
    .unwrap();
    assert_eq!(
        timeout(Duration::from_secs(2), session.next_event())
            .await
            .unwrap(),
        Some(DialogEvent::ReInvite)
    );
    sock.send_to(
        in_dialog("BYE", peer, "inv1@test", &tag, 3, "b3").as_bytes(),
        to,
    )
    .await
    .unwrap();
    let bye_ok = recv_until(&sock, "SIP/2.0 200").await;
    assert_eq!(header(&bye_ok, "CSeq"), Some("3 BYE"));
    let mut saw_bye = false;
    while let Ok(Some(ev)) = timeout(Duration::from_secs(2), session.next_event()).await {
        if ev == DialogEvent::Bye {
            saw_bye = true;
            break;
        }
    }
    assert!(saw_bye);
    ep.shutdown();
}

#[tokio::test]
async fn cancel_before_answer_gets_487() {
    let (ep, mut rx) = SipEndpoint::start(config()).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer = sock.local_addr().unwrap();
    sock.send_to(invite(peer, "c1@test", None, 1, "c1").as_bytes(), to)
        .await
        .unwrap();
    let Some(IncomingRequest::Invite(mut inv)) =
        timeout(Duration::from_secs(2), rx.recv()).await.unwrap()
    else {
        panic!("expected an INVITE");
    };
    let cancel = format!(
        "CANCEL sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bKc1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=al1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c1@test\r\n\
         CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(cancel.as_bytes(), to).await.unwrap();
    let terminated = recv_until(&sock, "SIP/2.0 487").await;
    assert_eq!(header(&terminated, "CSeq"), Some("1 INVITE"));
    timeout(Duration::from_secs(2), inv.cancelled())
        .await
        .expect("cancel seen");
    assert!(inv.is_cancelled());
    assert!(matches!(inv.accept(Vec::new()), Err(SipError::Cancelled)));
    ep.shutdown();
}

async fn fake_proxy() -> (UdpSocket, SipEndpointConfig) {
    let proxy = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config();
    cfg.outbound_proxy = Some(ListenAddr::udp(proxy.local_addr().unwrap()));
    (proxy, cfg)
}

fn publish_request() -> PublishRequest {
    PublishRequest {
        aor: Aor::parse("sip:bob@example.com").unwrap(),
        from: Aor::parse("sip:mwi@ms.example.com").unwrap(),
        event: Event::new("message-summary"),
        body: Some(Body {
            content_type: "application/simple-message-summary".into(),
            bytes: b"Messages-Waiting: yes\r\n".to_vec(),
        }),
        expires: 3600,
        sip_if_match: None,
    }
}

/// Answer `req` from the fake proxy with `status` and extra header lines.
async fn answer(proxy: &UdpSocket, to: SocketAddr, req: &str, status: &str, extra: &str) {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        out.push_str(&format!("{name}: {}\r\n", header(req, name).unwrap()));
    }
    out.push_str(&format!(
        "To: {};tag=px\r\n{extra}Content-Length: 0\r\n\r\n",
        header(req, "To").unwrap()
    ));
    proxy.send_to(out.as_bytes(), to).await.unwrap();
}

#[tokio::test]
async fn publish_retransmits_and_reads_sip_etag() {
    let (proxy, cfg) = fake_proxy().await;
    let (ep, _rx) = SipEndpoint::start(cfg).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let client = tokio::spawn({
        let ep = ep.clone();
        async move { ep.publish(&publish_request()).await }
    });
    let first = recv_udp(&proxy).await;
    assert!(
        first.starts_with("PUBLISH sip:bob@example.com SIP/2.0\r\n"),
        "{first}"
    );
    assert_eq!(header(&first, "Event"), Some("message-summary"));
    assert_eq!(header(&first, "Expires"), Some("3600"));
    assert!(first.ends_with("Messages-Waiting: yes\r\n"));
    // Timer E: the same request again after T1 (50 ms), unanswered.
    let second = recv_udp(&proxy).await;
    assert_eq!(first, second);
    answer(
        &proxy,
        to,
        &second,
        "200 OK",
        "SIP-ETag: etag-1\r\nExpires: 1800\r\n",
    )
    .await;
    let resp = timeout(Duration::from_secs(2), client)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.sip_etag, Some(SipEtag::parse("etag-1").unwrap()));
    assert_eq!(resp.expires, Some(1800));
    // Refresh with SIP-If-Match.
    let mut refresh = publish_request();
    refresh.body = None;
    refresh.sip_if_match = resp.sip_etag.clone();
    let client = tokio::spawn({
        let ep = ep.clone();
        async move { ep.publish(&refresh).await }
    });
    let r = recv_udp(&proxy).await;
    assert_eq!(header(&r, "SIP-If-Match"), Some("etag-1"));
    answer(
        &proxy,
        to,
        &r,
        "423 Interval Too Brief",
        "Min-Expires: 7200\r\n",
    )
    .await;
    let resp = timeout(Duration::from_secs(2), client)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((resp.status, resp.min_expires), (423, Some(7200)));
    ep.shutdown();
}

#[tokio::test]
async fn publish_times_out_at_timer_f() {
    let (proxy, cfg) = fake_proxy().await;
    let (ep, _rx) = SipEndpoint::start(cfg).await.unwrap();
    let started = std::time::Instant::now();
    let result = timeout(Duration::from_secs(10), ep.publish(&publish_request()))
        .await
        .unwrap();
    assert!(matches!(result, Err(ClientError::Timeout)), "{result:?}");
    // 64*T1 = 3.2 s with T1 = 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "{:?}",
        started.elapsed()
    );
    let mut copies = 0;
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok(_)) = timeout(Duration::from_millis(10), proxy.recv_from(&mut buf)).await {
        copies += 1;
    }
    assert!(copies >= 5, "Timer E retransmissions: {copies}");
    ep.shutdown();
}

fn subscribe(peer: SocketAddr) -> String {
    format!(
        "SUBSCRIBE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bKs1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@127.0.0.1>;tag=sub1\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: sub1@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@{peer}>\r\n\
         Event: message-summary\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Answer a request received by the raw peer.
async fn peer_answer(sock: &UdpSocket, to: SocketAddr, req: &str, status: &str) {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        out.push_str(&format!("{name}: {}\r\n", header(req, name).unwrap()));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    sock.send_to(out.as_bytes(), to).await.unwrap();
}

#[tokio::test]
async fn subscribe_accepted_then_notify_200_and_481() {
    let (ep, mut rx) = SipEndpoint::start(config()).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer = sock.local_addr().unwrap();
    sock.send_to(subscribe(peer).as_bytes(), to).await.unwrap();
    let Some(IncomingRequest::NonInvite(req)) =
        timeout(Duration::from_secs(2), rx.recv()).await.unwrap()
    else {
        panic!("expected SUBSCRIBE");
    };
    assert_eq!(req.method(), Method::Subscribe);
    let sub = req
        .accept_subscription(vec![("Expires".into(), "3600".into())])
        .await
        .unwrap();
    let ok = recv_until(&sock, "SIP/2.0 200").await;
    assert_eq!(header(&ok, "Expires"), Some("3600"));
    assert!(header(&ok, "Contact").is_some(), "{ok}");
    let our_tag = to_tag_of(&ok);
    let event = Event::new("message-summary");
    let n = tokio::spawn({
        let sub = sub.clone();
        let event = event.clone();
        async move {
            let body = Body {
                content_type: "application/simple-message-summary".into(),
                bytes: b"Messages-Waiting: yes\r\n".to_vec(),
            };
            sub.notify(&event, &SubscriptionState::active(3600), Some(body))
                .await
        }
    });
    let notify = recv_until(&sock, "NOTIFY ").await;
    assert!(
        notify.starts_with(&format!("NOTIFY sip:bob@{peer}")),
        "{notify}"
    );
    assert_eq!(
        header(&notify, "Subscription-State"),
        Some("active;expires=3600")
    );
    assert_eq!(header(&notify, "Event"), Some("message-summary"));
    assert!(header(&notify, "From").unwrap().contains(&our_tag));
    assert!(notify.ends_with("Messages-Waiting: yes\r\n"));
    peer_answer(&sock, to, &notify, "200 OK").await;
    assert_eq!(
        timeout(Duration::from_secs(2), n)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        200
    );
    let n = tokio::spawn({
        let sub = sub.clone();
        async move {
            sub.notify(&event, &SubscriptionState::active(100), None)
                .await
        }
    });
    let notify = recv_until(&sock, "NOTIFY ").await;
    peer_answer(&sock, to, &notify, "481 Subscription Does Not Exist").await;
    let r = timeout(Duration::from_secs(2), n).await.unwrap().unwrap();
    assert!(matches!(r, Err(ClientError::NoSuchSubscription)), "{r:?}");
    assert!(!sub.is_active());
    ep.shutdown();
}

#[tokio::test]
async fn message_reply_and_unanswered_drop_gets_500() {
    let (ep, mut rx) = SipEndpoint::start(config()).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let msg = |branch: &str| {
        options(branch, "Content-Type: text/plain\r\n").replace("OPTIONS", "MESSAGE")
    };
    sock.send_to(msg("m1").as_bytes(), to).await.unwrap();
    let Some(IncomingRequest::NonInvite(req)) =
        timeout(Duration::from_secs(2), rx.recv()).await.unwrap()
    else {
        panic!("expected MESSAGE");
    };
    req.reply(202, vec![("X-Reason".into(), "stored".into())], None)
        .await
        .unwrap();
    let r = recv_udp(&sock).await;
    assert!(r.starts_with("SIP/2.0 202"), "{r}");
    assert_eq!(header(&r, "X-Reason"), Some("stored"));
    sock.send_to(msg("m2").as_bytes(), to).await.unwrap();
    let req = timeout(Duration::from_secs(2), rx.recv()).await.unwrap();
    drop(req);
    let r = recv_udp(&sock).await;
    assert!(r.starts_with("SIP/2.0 500"), "{r}");
    ep.shutdown();
}

#[tokio::test]
async fn publish_answers_one_digest_challenge() {
    let (proxy, mut cfg) = fake_proxy().await;
    cfg.credentials = Some(Credentials {
        username: "mwi".into(),
        password: "secret".into(),
        realm: None,
    });
    let (ep, _rx) = SipEndpoint::start(cfg).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let client = tokio::spawn({
        let ep = ep.clone();
        async move { ep.publish(&publish_request()).await }
    });
    let first = recv_udp(&proxy).await;
    answer(&proxy, to, &first, "401 Unauthorized", "WWW-Authenticate: Digest realm=\"example.com\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"\r\n").await;
    let second = recv_until(&proxy, "PUBLISH").await;
    let auth = header(&second, "Authorization").expect("Authorization");
    assert!(
        auth.starts_with("Digest ") && auth.contains("username=\"mwi\""),
        "{auth}"
    );
    assert_eq!(header(&second, "CSeq"), Some("2 PUBLISH"));
    answer(&proxy, to, &second, "200 OK", "SIP-ETag: e2\r\n").await;
    let resp = timeout(Duration::from_secs(2), client)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status, 200);
    ep.shutdown();
}

#[tokio::test]
async fn ipv6_loopback_and_fatal_tcp_framing() {
    let cfg = SipEndpointConfig {
        listen: vec![
            ListenAddr::udp("[::1]:0".parse().unwrap()),
            ListenAddr::tcp("[::1]:0".parse().unwrap()),
        ],
        ..config()
    };
    let (ep, _rx) = SipEndpoint::start(cfg).await.unwrap();
    let udp = addr_of(&ep, Transport::Udp);
    assert!(udp.is_ipv6() && udp.port() != 0);
    let sock = UdpSocket::bind("[::1]:0").await.unwrap();
    let r = udp_exchange(
        &sock,
        udp,
        options("v6", "")
            .replace("127.0.0.1:9", "[::1]:9")
            .as_bytes(),
    )
    .await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    // A negative Content-Length loses the framing: 400, then the connection is closed.
    let mut s = TcpStream::connect(addr_of(&ep, Transport::Tcp))
        .await
        .unwrap();
    let bad = options("n1", "").replace("Content-Length: 0", "Content-Length: -999");
    s.write_all(bad.as_bytes()).await.unwrap();
    let r = tcp_read_response(&mut s).await;
    assert!(r.starts_with("SIP/2.0 400 Invalid Content-Length"), "{r}");
    let mut rest = Vec::new();
    let n = timeout(Duration::from_secs(2), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "connection closed after the 400");
    ep.shutdown();
}

async fn tcp_read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let len: usize = header(&head, "Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg = String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
                buf.drain(..end + 4 + len);
                return msg;
            }
        }
        let n = timeout(Duration::from_secs(3), stream.read(&mut chunk))
            .await
            .expect("tcp message in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn invite_over_tcp_and_bye_from_our_side() {
    let (ep, mut rx) = SipEndpoint::start(config()).await.unwrap();
    let mut s = TcpStream::connect(addr_of(&ep, Transport::Tcp))
        .await
        .unwrap();
    let peer = s.local_addr().unwrap();
    let inv = invite(peer, "tcp1@test", None, 1, "ti1")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace(
            &format!("<sip:alice@{peer}>"),
            &format!("<sip:alice@{peer};transport=tcp>"),
        );
    s.write_all(inv.as_bytes()).await.unwrap();
    let Some(IncomingRequest::Invite(inv)) =
        timeout(Duration::from_secs(2), rx.recv()).await.unwrap()
    else {
        panic!("expected an INVITE");
    };
    assert_eq!(inv.source().transport, Transport::Tcp);
    let mut session = inv.accept(b"v=0\r\n".to_vec()).unwrap();
    let mut buf = Vec::new();
    let ok = loop {
        let m = tcp_read_message(&mut s, &mut buf).await;
        if m.starts_with("SIP/2.0 200") {
            break m;
        }
    };
    assert!(
        header(&ok, "Contact").is_some_and(|c| c.to_ascii_lowercase().contains("transport=tcp")),
        "{ok}"
    );
    let tag = to_tag_of(&ok);
    let ack =
        in_dialog("ACK", peer, "tcp1@test", &tag, 1, "ta1").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.write_all(ack.as_bytes()).await.unwrap();
    assert_eq!(
        timeout(Duration::from_secs(2), session.next_event())
            .await
            .unwrap(),
        Some(DialogEvent::Ack)
    );
    let bye = tokio::spawn(async move {
        let r = session.bye().await;
        (r, session)
    });
    let req = tcp_read_message(&mut s, &mut buf).await;
    assert!(req.starts_with("BYE sip:alice@"), "{req}");
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        resp.push_str(&format!("{name}: {}\r\n", header(&req, name).unwrap()));
    }
    resp.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(resp.as_bytes()).await.unwrap();
    let (r, _session) = timeout(Duration::from_secs(3), bye).await.unwrap().unwrap();
    r.unwrap();
    ep.shutdown();
}

#[tokio::test]
async fn notify_times_out_at_timer_f() {
    let (ep, mut rx) = SipEndpoint::start(config()).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer = sock.local_addr().unwrap();
    sock.send_to(subscribe(peer).as_bytes(), to).await.unwrap();
    let Some(IncomingRequest::NonInvite(req)) =
        timeout(Duration::from_secs(2), rx.recv()).await.unwrap()
    else {
        panic!("expected SUBSCRIBE");
    };
    let sub = req.accept_subscription(Vec::new()).await.unwrap();
    let r = timeout(
        Duration::from_secs(10),
        sub.notify(
            &Event::new("message-summary"),
            &SubscriptionState::active(60),
            None,
        ),
    )
    .await
    .unwrap();
    assert!(matches!(r, Err(ClientError::Timeout)), "{r:?}");
    ep.shutdown();
}

#[tokio::test]
async fn missing_ack_terminates_the_session() {
    let (ep, mut rx) = SipEndpoint::start(config()).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer = sock.local_addr().unwrap();
    sock.send_to(invite(peer, "noack@test", None, 1, "na1").as_bytes(), to)
        .await
        .unwrap();
    let Some(IncomingRequest::Invite(inv)) =
        timeout(Duration::from_secs(2), rx.recv()).await.unwrap()
    else {
        panic!("expected an INVITE");
    };
    let mut session = inv.accept(b"v=0\r\n".to_vec()).unwrap();
    // No ACK: after 64*T1 (3.2 s here) the dialog ends.
    let ev = timeout(Duration::from_secs(10), session.next_event())
        .await
        .unwrap();
    assert!(matches!(ev, Some(DialogEvent::Terminated(_))), "{ev:?}");
    ep.shutdown();
}

#[tokio::test]
async fn full_application_queue_answers_503() {
    let cfg = SipEndpointConfig {
        incoming_capacity: 1,
        ..config()
    };
    let (ep, _rx) = SipEndpoint::start(cfg).await.unwrap();
    let to = addr_of(&ep, Transport::Udp);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let msg = |branch: &str| options(branch, "").replace("OPTIONS", "MESSAGE");
    sock.send_to(msg("q1").as_bytes(), to).await.unwrap();
    sock.send_to(msg("q2").as_bytes(), to).await.unwrap();
    let r = recv_udp(&sock).await;
    assert!(r.starts_with("SIP/2.0 503"), "{r}");
    assert!(
        r.contains("z9hG4bKq2"),
        "the second request is refused: {r}"
    );
    ep.shutdown();
}

#[tokio::test]
async fn publish_over_tcp_to_the_outbound_proxy() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config();
    cfg.outbound_proxy = Some(ListenAddr::tcp(proxy.local_addr().unwrap()));
    let (ep, _rx) = SipEndpoint::start(cfg).await.unwrap();
    let client = tokio::spawn({
        let ep = ep.clone();
        async move { ep.publish(&publish_request()).await }
    });
    let (mut s, _) = timeout(Duration::from_secs(2), proxy.accept())
        .await
        .unwrap()
        .unwrap();
    let mut buf = Vec::new();
    let req = tcp_read_message(&mut s, &mut buf).await;
    assert!(
        req.starts_with("PUBLISH sip:bob@example.com SIP/2.0\r\n"),
        "{req}"
    );
    assert!(
        header(&req, "Via").unwrap().starts_with("SIP/2.0/TCP "),
        "{req}"
    );
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        resp.push_str(&format!("{name}: {}\r\n", header(&req, name).unwrap()));
    }
    resp.push_str(&format!(
        "To: {};tag=p\r\nSIP-ETag: tcp-1\r\nContent-Length: 0\r\n\r\n",
        header(&req, "To").unwrap()
    ));
    s.write_all(resp.as_bytes()).await.unwrap();
    let resp = timeout(Duration::from_secs(2), client)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (resp.status, resp.sip_etag.map(|e| e.to_string())),
        (200, Some("tcp-1".to_string()))
    );
    ep.shutdown();
}
