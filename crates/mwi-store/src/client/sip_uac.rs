//! A small SIP user agent over UDP (or one TLS connection, RFC 3261 §26.2.1) for the client
//! CLI and the end-to-end tests.
//!
//! It writes requests as text, the way a phone would, and reads what the server sends with
//! rsipstack's parser. One reader task routes responses to the transaction waiting for them
//! (by Call-ID, CSeq number and method) and hands requests from the server (BYE, NOTIFY,
//! PUBLISH when acting as a presence server) to [`SipUac::next_request`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rsipstack::sip::SipMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// A parsed SIP message with the header lookups the client needs.
#[derive(Debug, Clone)]
pub struct Message {
    pub start_line: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub source: SocketAddr,
}

/// RFC 3261 §7.3.3 compact forms the server might use.
fn expand_compact(name: &str) -> &str {
    match name {
        "i" => "call-id",
        "f" => "from",
        "t" => "to",
        "v" => "via",
        "l" => "content-length",
        "c" => "content-type",
        "m" => "contact",
        "o" => "event",
        "u" => "allow-events",
        "k" => "supported",
        "s" => "subject",
        _ => name,
    }
}

impl Message {
    fn parse(bytes: &[u8], source: SocketAddr) -> anyhow::Result<Self> {
        let parsed = SipMessage::try_from(bytes).map_err(|e| anyhow!("unparseable: {e}"))?;
        let start_line = parsed.start_line().trim_end().to_string();
        let headers = match &parsed {
            SipMessage::Request(r) => r.headers.iter(),
            SipMessage::Response(r) => r.headers.iter(),
        }
        .filter_map(|h| {
            let text = h.to_string();
            let (name, value) = text.split_once(':')?;
            Some((
                expand_compact(&name.trim().to_ascii_lowercase()).to_string(),
                value.trim().to_string(),
            ))
        })
        .collect();
        let body = match parsed {
            SipMessage::Request(r) => r.body,
            SipMessage::Response(r) => r.body,
        };
        Ok(Self {
            start_line,
            headers,
            body,
            source,
        })
    }

    /// The first value of a header, by its long name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn is_response(&self) -> bool {
        self.start_line.starts_with("SIP/")
    }

    /// Status code of a response, 0 for a request.
    pub fn status(&self) -> u16 {
        if !self.is_response() {
            return 0;
        }
        self.start_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Method of a request.
    pub fn method(&self) -> &str {
        self.start_line.split(' ').next().unwrap_or("")
    }

    pub fn call_id(&self) -> &str {
        self.header("call-id").unwrap_or("")
    }

    /// `(number, method)` of CSeq.
    pub fn cseq(&self) -> (u32, String) {
        let v = self.header("cseq").unwrap_or("");
        let mut it = v.split_whitespace();
        let n = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let m = it.next().unwrap_or("").to_ascii_uppercase();
        (n, m)
    }

    /// The `tag` parameter of To.
    pub fn to_tag(&self) -> Option<String> {
        tag_of(self.header("to")?)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(value: &str) -> Option<String> {
    let after = match value.rfind('>') {
        Some(i) => &value[i..],
        None => value,
    };
    after.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| v.trim().to_string())
    })
}

type TxKey = (String, u32, String);

/// The client transaction a response is for: where its responses go, and whether one came
/// (which stops retransmission over UDP).
#[derive(Debug)]
struct Waiter {
    responses: mpsc::UnboundedSender<Message>,
    answered: Arc<std::sync::atomic::AtomicBool>,
}

type Waiting = Arc<Mutex<HashMap<TxKey, Waiter>>>;

/// RFC 3261 §17.1.1.2 / §17.1.2.2 over UDP: T1 = 500 ms, doubling, capped at T2 = 4 s,
/// given up after 64*T1.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// Where the user agent's bytes go: a UDP socket, or a TLS connection to the server whose
/// writer task takes whole messages.
#[derive(Debug)]
enum Wire {
    Udp(Arc<UdpSocket>),
    Tls(mpsc::UnboundedSender<Vec<u8>>),
}

/// A user agent bound to one local address, talking to one server over UDP or TLS.
#[derive(Debug)]
pub struct SipUac {
    wire: Wire,
    local: SocketAddr,
    server: SocketAddr,
    waiting: Waiting,
    requests: mpsc::UnboundedReceiver<Message>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for SipUac {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A random token for tags, branches and Call-IDs.
pub fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl SipUac {
    /// Binds `local` (port 0 picks one) and sends everything to `server`.
    pub async fn bind(local: SocketAddr, server: SocketAddr) -> anyhow::Result<Self> {
        let socket = Arc::new(
            UdpSocket::bind(local)
                .await
                .context("bind SIP UDP socket")?,
        );
        let local = socket.local_addr()?;
        let waiting: Waiting = Arc::default();
        let (req_tx, requests) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(socket.clone(), waiting.clone(), req_tx));
        Ok(Self {
            wire: Wire::Udp(socket),
            local,
            server,
            waiting,
            requests,
            reader,
        })
    }

    /// Connects to `server` over TLS, checking its certificate against `server_name` with
    /// `tls`'s trust anchors; every request and reply then goes over that connection.
    pub async fn connect_tls(
        server: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(server)
            .await
            .with_context(|| format!("connect to {server}"))?;
        let local = tcp.local_addr()?;
        let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
            .with_context(|| format!("TLS server name {server_name:?}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {server}"))?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let waiting: Waiting = Arc::default();
        let (req_tx, requests) = mpsc::unbounded_channel();
        let routes = waiting.clone();
        let reader = tokio::spawn(async move {
            let writer = async move {
                while let Some(bytes) = out_rx.recv().await {
                    if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                        return;
                    }
                }
            };
            let reader = async move {
                let mut framer = StreamBuffer::default();
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    let n = match rd.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if !framer.push(chunk.get(..n).unwrap_or_default()) {
                        return;
                    }
                    while let Some(bytes) = framer.next_message() {
                        if let Ok(msg) = Message::parse(&bytes, server) {
                            if !route(msg, &routes, &req_tx) {
                                return;
                            }
                        }
                    }
                }
            };
            tokio::select! {
                () = writer => {}
                () = reader => {}
            }
        });
        Ok(Self {
            wire: Wire::Tls(out_tx),
            local,
            server,
            waiting,
            requests,
            reader,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Our Contact URI for `user`, naming TLS when the server must reach us over this
    /// connection (it never connects out over TLS).
    pub fn contact_uri(&self, user: &str) -> String {
        match self.wire {
            Wire::Udp(_) => format!("sip:{user}@{}", self.local),
            Wire::Tls(_) => format!("sip:{user}@{};transport=tls", self.local),
        }
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// A `Via` header value for a new transaction.
    pub fn via(&self) -> String {
        let transport = match self.wire {
            Wire::Udp(_) => "UDP",
            Wire::Tls(_) => "TLS",
        };
        format!(
            "SIP/2.0/{transport} {};branch=z9hG4bK{}",
            self.local,
            token()
        )
    }

    /// A page-mode MESSAGE (RFC 3428) from `from` to `to`, `text/plain`, with `extra_headers`
    /// (each line ending in CRLF) before the body.
    pub fn message_request(&self, from: &str, to: &str, extra_headers: &str, body: &str) -> String {
        format!(
            "MESSAGE {to} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: <{from}>;tag={tag}\r\nTo: <{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\n\
             {extra_headers}Content-Type: text/plain\r\nContent-Length: {len}\r\n\r\n{body}",
            via = self.via(),
            tag = token(),
            call_id = token(),
            len = body.len(),
        )
    }

    /// Sends raw bytes to the server.
    pub async fn send_raw(&self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send_to(bytes, self.server).await
    }

    /// UDP: a datagram to `to`; TLS: the bytes on the one connection.
    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> anyhow::Result<()> {
        match &self.wire {
            Wire::Udp(socket) => {
                socket.send_to(bytes, to).await?;
            }
            Wire::Tls(tx) => tx
                .send(bytes.to_vec())
                .map_err(|_| anyhow!("TLS connection to {} closed", self.server))?,
        }
        Ok(())
    }

    /// Sends a request and returns the receiver of its responses (provisional and final).
    pub async fn send_request(
        &self,
        text: &str,
    ) -> anyhow::Result<mpsc::UnboundedReceiver<Message>> {
        let head = Message::parse(text.as_bytes(), self.local)
            .context("the client built an unparseable request")?;
        let (n, m) = head.cseq();
        let (tx, rx) = mpsc::unbounded_channel();
        let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.waiting.lock().map_err(|_| anyhow!("lock"))?.insert(
            (head.call_id().to_string(), n, m),
            Waiter {
                responses: tx,
                answered: answered.clone(),
            },
        );
        self.send_raw(text.as_bytes()).await?;
        // Over UDP a request is sent again until a response arrives (Timers A/E), as a phone
        // does: a lost datagram must not fail the transaction.
        if let Wire::Udp(socket) = &self.wire {
            let socket = socket.clone();
            let bytes = text.as_bytes().to_vec();
            let server = self.server;
            tokio::spawn(async move {
                let mut interval = T1;
                let mut waited = Duration::ZERO;
                while waited < T1 * 64 {
                    tokio::time::sleep(interval).await;
                    waited += interval;
                    if answered.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    if socket.send_to(&bytes, server).await.is_err() {
                        return;
                    }
                    interval = (interval * 2).min(T2);
                }
            });
        }
        Ok(rx)
    }

    /// Sends a request and waits for its final response.
    pub async fn transact(&self, text: &str, wait: Duration) -> anyhow::Result<Message> {
        let mut rx = self.send_request(text).await?;
        final_response(&mut rx, wait).await
    }

    /// The next request the server sent to us.
    pub async fn next_request(&mut self, wait: Duration) -> anyhow::Result<Message> {
        tokio::time::timeout(wait, self.requests.recv())
            .await
            .map_err(|_| anyhow!("no request from the server within {wait:?}"))?
            .ok_or_else(|| anyhow!("socket reader stopped"))
    }

    /// Answers a request from the server.
    pub async fn reply(
        &self,
        req: &Message,
        status: u16,
        reason: &str,
        extra_headers: &[String],
        body: Option<(&str, &[u8])>,
    ) -> anyhow::Result<()> {
        let mut out = format!("SIP/2.0 {status} {reason}\r\n");
        for via in req.headers("via") {
            out.push_str(&format!("Via: {via}\r\n"));
        }
        let to = req.header("to").unwrap_or("");
        let to = if status > 100 && tag_of(to).is_none() {
            format!("{to};tag={}", token())
        } else {
            to.to_string()
        };
        let (n, m) = req.cseq();
        out.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {n} {m}\r\n",
            req.header("from").unwrap_or(""),
            req.call_id()
        ));
        for h in extra_headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        let mut bytes = out.into_bytes();
        match body {
            Some((ctype, b)) => {
                bytes.extend_from_slice(
                    format!(
                        "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                        b.len()
                    )
                    .as_bytes(),
                );
                bytes.extend_from_slice(b);
            }
            None => bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        self.send_to(&bytes, req.source).await
    }
}

/// Largest message the TLS reader buffers; a server message is far smaller.
const MAX_STREAM_MESSAGE: usize = 256 * 1024;

/// Splits a SIP byte stream into messages by the empty line and Content-Length
/// (RFC 3261 §18.3), for the TLS connection.
#[derive(Debug, Default)]
struct StreamBuffer {
    buf: Vec<u8>,
}

impl StreamBuffer {
    /// Appends bytes; false when the buffer would exceed [`MAX_STREAM_MESSAGE`].
    fn push(&mut self, bytes: &[u8]) -> bool {
        self.buf.extend_from_slice(bytes);
        self.buf.len() <= MAX_STREAM_MESSAGE
    }

    /// The next complete message, keep-alive CRLFs skipped.
    fn next_message(&mut self) -> Option<Vec<u8>> {
        let start = self.buf.iter().position(|b| *b != b'\r' && *b != b'\n')?;
        self.buf.drain(..start);
        let head_end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(self.buf.get(..head_end)?).into_owned();
        let body_len = head
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| {
                let name = name.trim();
                name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l")
            })
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let total = head_end.checked_add(body_len)?;
        if self.buf.len() < total {
            return None;
        }
        Some(self.buf.drain(..total).collect())
    }
}

/// Hands a message to the transaction waiting for it (responses) or to `next_request`;
/// false once nobody reads requests any more.
fn route(
    msg: Message,
    waiting: &Mutex<HashMap<TxKey, Waiter>>,
    requests: &mpsc::UnboundedSender<Message>,
) -> bool {
    if msg.is_response() {
        let (num, method) = msg.cseq();
        let key = (msg.call_id().to_string(), num, method);
        if let Ok(map) = waiting.lock() {
            if let Some(w) = map.get(&key) {
                w.answered.store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = w.responses.send(msg);
            }
        }
        true
    } else {
        requests.send(msg).is_ok()
    }
}

/// Waits for the final (≥200) response on a transaction's receiver.
pub async fn final_response(
    rx: &mut mpsc::UnboundedReceiver<Message>,
    wait: Duration,
) -> anyhow::Result<Message> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| anyhow!("no final response within {wait:?}"))?
            .ok_or_else(|| anyhow!("socket reader stopped"))?;
        if msg.status() >= 200 {
            return Ok(msg);
        }
    }
}

async fn read_loop(
    socket: Arc<UdpSocket>,
    waiting: Waiting,
    requests: mpsc::UnboundedSender<Message>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Some(data) = buf.get(..n) else { continue };
        let Ok(msg) = Message::parse(data, from) else {
            continue;
        };
        if !route(msg, &waiting, &requests) {
            return;
        }
    }
}

/// Fails with the response's start line unless it has `status`.
pub fn expect_status(msg: &Message, status: u16) -> anyhow::Result<()> {
    if msg.status() != status {
        bail!("expected {status}, got `{}`", msg.start_line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_buffer_frames_by_content_length_and_skips_keepalives() {
        let mut b = StreamBuffer::default();
        assert!(b.push(b"\r\n\r\nSIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nab"));
        assert_eq!(b.next_message(), None, "body incomplete");
        assert!(b.push(b"cSIP/2.0 100 Trying\r\nl: 0\r\n\r\n"));
        let first = b.next_message().expect("first message");
        assert!(first.ends_with(b"\r\n\r\nabc"));
        let second = b.next_message().expect("second message");
        assert!(second.starts_with(b"SIP/2.0 100"));
        assert_eq!(b.next_message(), None);
        assert!(!b.push(&vec![b'x'; MAX_STREAM_MESSAGE + 1]));
    }
}
