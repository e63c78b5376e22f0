//! The sockets. We own every socket and run the validation front on what arrives; rsipstack
//! only ever sees messages that passed it:
//! - UDP: our task reads the real socket; valid datagrams are handed to rsipstack through
//!   [`FrontUdpSocket`], an implementation of rsipstack's `platform::net::UdpSocket` whose
//!   `recv_from` yields only validated datagrams and whose `send_to` writes to the real socket.
//!   rsipstack's own `UdpConnection` therefore sends (Via, retransmissions, lookups unchanged).
//! - TCP: our task accepts and frames each connection; valid messages are parsed and injected
//!   through an rsipstack `ChannelConnection` (one per TCP connection, reliable, keyed by the
//!   peer address); what rsipstack sends on that channel is written to the socket.
//!   rsipstack's stream codec never runs on accepted connections, so a bad message cannot make
//!   it close the connection.
//! - TLS (RFC 3261 §26.2.1): like TCP, after a rustls server handshake on the accepted socket;
//!   the channel is keyed with transport TLS so Via `received` and our Contact say so.

use crate::framing::StreamItem;
use crate::validate::{ValidationFront, Verdict};
use rsipstack::transport::channel::ChannelConnection;
use rsipstack::transport::connection::TransportEvent;
use rsipstack::transport::{SipAddr, SipConnection};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// rsipstack's UDP receive buffer (`MAX_UDP_BUF_SIZE`): a normalised datagram must fit.
pub const RSIPSTACK_UDP_BUF: usize = 8192;

/// How many messages the fronts delivered, answered statelessly and dropped.
#[derive(Debug, Default)]
pub struct FrontStats {
    pub delivered: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
}

impl FrontStats {
    fn count(&self, verdict: &Verdict) {
        let counter = match verdict {
            Verdict::Deliver { .. } => &self.delivered,
            Verdict::Respond { .. } => &self.rejected,
            Verdict::Drop { .. } => &self.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (delivered, rejected, dropped) so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// The socket rsipstack's UDP transport reads from: validated datagrams only.
pub struct FrontUdpSocket {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    inbound: tokio::sync::Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
}

impl std::fmt::Debug for FrontUdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrontUdpSocket({})", self.local)
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for FrontUdpSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        let mut inbound = self.inbound.lock().await;
        loop {
            match inbound.recv().await {
                Some((bytes, src)) => match buf.get_mut(..bytes.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(&bytes);
                        return Ok((bytes.len(), src));
                    }
                    None => warn!(
                        len = bytes.len(),
                        "validated datagram exceeds rsipstack buffer"
                    ),
                },
                // The front has stopped: rsipstack retries on errors, so never return; its
                // cancellation token ends the loop.
                None => std::future::pending::<()>().await,
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Asks for `bytes` of socket receive buffer: a burst of INVITEs or PUBLISH answers larger
/// than the default (about 208 KiB on Linux) is otherwise dropped by the kernel, and a UDP
/// client only retransmits after 500 ms. Linux caps the request at `net.core.rmem_max`; what
/// was granted is logged when it is less than asked.
fn set_receive_buffer(socket: &UdpSocket, bytes: usize) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(bytes) {
        warn!(error = %e, bytes, "cannot set the UDP receive buffer; keeping the default");
        return;
    }
    // Linux reports twice the usable size (it counts its bookkeeping), so compare halves.
    match sock.recv_buffer_size() {
        Ok(got) if got / 2 < bytes => info!(
            asked = bytes,
            granted = got / 2,
            "UDP receive buffer capped by the system; raise net.core.rmem_max to allow more"
        ),
        Ok(_) => {}
        Err(e) => debug!(error = %e, "cannot read the UDP receive buffer size"),
    }
}

/// Bind `addr`, ask for a receive buffer of `receive_buffer` bytes (0: the system default),
/// start the UDP front task, and return the socket rsipstack should use.
pub async fn start_udp_front(
    addr: SocketAddr,
    front: Arc<ValidationFront>,
    stats: Arc<FrontStats>,
    cancel: CancellationToken,
    receive_buffer: usize,
) -> std::io::Result<Arc<FrontUdpSocket>> {
    let socket = Arc::new(UdpSocket::bind(addr).await?);
    if receive_buffer > 0 {
        set_receive_buffer(&socket, receive_buffer);
    }
    let local = socket.local_addr()?;
    let (tx, rx) = mpsc::channel(1024);
    let reader = socket.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, src) = tokio::select! {
                _ = cancel.cancelled() => break,
                r = reader.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(error = %e, "udp recv error");
                        continue;
                    }
                },
            };
            let data = buf.get(..n).unwrap_or_default();
            if data == b"\r\n\r\n" {
                // RFC 5626 §4.4.1 keep-alive.
                reader.send_to(b"\r\n", src).await.ok();
                continue;
            }
            if data.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let verdict = front.check_datagram(data);
            stats.count(&verdict);
            match verdict {
                Verdict::Deliver { bytes, .. } => {
                    if tx.try_send((bytes, src)).is_err() {
                        debug!(%src, "udp front queue full, datagram dropped");
                    }
                }
                Verdict::Respond {
                    status,
                    reason,
                    bytes,
                } => {
                    debug!(%src, status, %reason, "udp request refused by the validation front");
                    reader.send_to(&bytes, src).await.ok();
                }
                Verdict::Drop { reason } => debug!(%src, %reason, "udp message dropped"),
            }
        }
    });
    Ok(Arc::new(FrontUdpSocket {
        socket,
        local,
        inbound: tokio::sync::Mutex::new(rx),
    }))
}

/// Registers accepted TCP/TLS connections with rsipstack (its `TransportLayer::add_connection`).
pub type AddConnection = Arc<dyn Fn(SipConnection) + Send + Sync>;

/// Bind a TCP listener on `addr` and serve it with the front; returns the bound address.
pub async fn start_tcp_front(
    addr: SocketAddr,
    front: Arc<ValidationFront>,
    stats: Arc<FrontStats>,
    add_connection: AddConnection,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    start_stream_front(addr, front, stats, add_connection, None, cancel).await
}

/// Bind a TLS listener on `addr` (rustls server handshake on each accepted socket, then the
/// same front as TCP); returns the bound address.
pub async fn start_tls_front(
    addr: SocketAddr,
    front: Arc<ValidationFront>,
    stats: Arc<FrontStats>,
    add_connection: AddConnection,
    tls: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let acceptor = TlsAcceptor::from(tls);
    start_stream_front(addr, front, stats, add_connection, Some(acceptor), cancel).await
}

/// Longest a TLS handshake may take before the socket is closed (a peer that opens a socket
/// and says nothing must not hold a connection slot).
const TLS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

async fn start_stream_front(
    addr: SocketAddr,
    front: Arc<ValidationFront>,
    stats: Arc<FrontStats>,
    add_connection: AddConnection,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(front.limits.max_connections));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        debug!(error = %e, "sip stream accept error");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!(%peer, "too many sip stream connections, closing the new one");
                continue;
            };
            let conn_cancel = cancel.child_token();
            let (front, stats, add) = (front.clone(), stats.clone(), add_connection.clone());
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => {
                        let (reader, writer) = stream.into_split();
                        let conn = StreamConn {
                            peer,
                            transport: rsipstack::sip::Transport::Tcp,
                        };
                        serve_stream(reader, writer, conn, front, stats, add, conn_cancel).await;
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => {
                                let (reader, writer) = tokio::io::split(tls_stream);
                                let conn = StreamConn {
                                    peer,
                                    transport: rsipstack::sip::Transport::Tls,
                                };
                                serve_stream(reader, writer, conn, front, stats, add, conn_cancel)
                                    .await;
                            }
                            Ok(Err(e)) => debug!(%peer, error = %e, "tls handshake failed"),
                            Err(_) => debug!(%peer, "tls handshake timed out"),
                        }
                    }
                }
                drop(permit);
            });
        }
    });
    Ok(local)
}

/// Longest a TCP/TLS connection may stay silent between messages before we close it.
const TCP_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// Longest a connection may hold an unfinished message, or stay silent before its first
/// message: a half-open or trickling peer gives its slot back quickly (64*T1, RFC 3261 Timer B),
/// instead of holding one of the connection slots for `TCP_IDLE`.
const TCP_UNFINISHED: std::time::Duration = std::time::Duration::from_secs(32);

/// How long the next read may wait: short while nothing complete has arrived yet or a message
/// is half received, long between complete messages.
fn read_wait(delivered_any: bool, buffered: usize) -> std::time::Duration {
    if delivered_any && buffered == 0 {
        TCP_IDLE
    } else {
        TCP_UNFINISHED
    }
}

/// The peer of one accepted stream and the SIP transport it carries (TCP or TLS).
#[derive(Debug, Clone, Copy)]
struct StreamConn {
    peer: SocketAddr,
    transport: rsipstack::sip::Transport,
}

async fn serve_stream<R, W>(
    mut reader: R,
    mut writer: W,
    conn: StreamConn,
    front: Arc<ValidationFront>,
    stats: Arc<FrontStats>,
    add_connection: AddConnection,
    cancel: CancellationToken,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let peer_addr = SipAddr {
        r#type: Some(conn.transport),
        addr: peer.into(),
    };
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel::<TransportEvent>();
    let (outgoing_tx, mut outgoing_rx) = mpsc::unbounded_channel::<TransportEvent>();
    let channel = match ChannelConnection::create_connection(
        incoming_rx,
        outgoing_tx,
        peer_addr.clone(),
        // rsipstack cancels this token when it retires the connection; it must not stop our
        // writer before a final 400 is flushed.
        Some(cancel.child_token()),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot create channel connection");
            return;
        }
    };
    add_connection(SipConnection::Channel(channel.clone()));
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer_cancel = cancel.clone();
    let writer_task = tokio::spawn(async move {
        loop {
            let bytes = tokio::select! {
                biased;
                raw = raw_rx.recv() => match raw {
                    Some(b) => b,
                    None => break,
                },
                _ = writer_cancel.cancelled() => break,
                ev = outgoing_rx.recv() => match ev {
                    Some(TransportEvent::Incoming(msg, _, _)) => msg.to_bytes(),
                    Some(_) => continue,
                    None => break,
                },
            };
            // TLS keeps records in its own buffer until flushed; for TCP this is a no-op.
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        writer.shutdown().await.ok();
    });
    let mut framer = crate::framing::StreamFramer::new(front.limits);
    let mut buf = vec![0u8; 16 * 1024];
    let mut complete_seen = false;
    'read: loop {
        let wait = read_wait(complete_seen, framer.buffered());
        let n = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(wait, reader.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
        };
        framer.push(buf.get(..n).unwrap_or_default());
        while let Some(item) = framer.next_item() {
            complete_seen = true;
            let fatal = matches!(item, StreamItem::Fatal(_));
            match front.check_stream_item(&item) {
                None => {
                    raw_tx.send(b"\r\n".to_vec()).ok();
                }
                Some(verdict) => {
                    stats.count(&verdict);
                    match verdict {
                        Verdict::Deliver { bytes, .. } => {
                            deliver_stream(&bytes, conn, &peer_addr, &channel, &incoming_tx);
                        }
                        Verdict::Respond {
                            status,
                            reason,
                            bytes,
                        } => {
                            debug!(%peer, status, %reason, "stream request refused by the validation front");
                            raw_tx.send(bytes).ok();
                        }
                        Verdict::Drop { reason } => {
                            debug!(%peer, %reason, "stream message dropped")
                        }
                    }
                }
            }
            if fatal {
                debug!(%peer, "stream framing lost, closing");
                break 'read;
            }
        }
    }
    // Let the writer flush what is queued (the 400 before a close), then stop everything.
    drop(raw_tx);
    tokio::time::timeout(std::time::Duration::from_secs(1), writer_task)
        .await
        .ok();
    drop(incoming_tx);
    cancel.cancel();
}

fn deliver_stream(
    bytes: &[u8],
    conn: StreamConn,
    peer_addr: &SipAddr,
    channel: &ChannelConnection,
    incoming: &mpsc::UnboundedSender<TransportEvent>,
) {
    let msg = match rsipstack::sip::SipMessage::try_from(bytes) {
        Ok(m) => m,
        Err(e) => {
            debug!(peer = %conn.peer, error = %e, "validated message did not parse");
            return;
        }
    };
    let peer = conn.peer;
    let msg = match SipConnection::update_msg_received(msg, peer, conn.transport) {
        Ok(m) => m,
        Err(e) => {
            debug!(%peer, error = %e, "cannot stamp Via received");
            return;
        }
    };
    incoming
        .send(TransportEvent::Incoming(
            msg,
            SipConnection::Channel(channel.clone()),
            peer_addr.clone(),
        ))
        .ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_or_silent_new_connections_get_the_short_wait() {
        assert_eq!(read_wait(false, 0), TCP_UNFINISHED, "nothing received yet");
        assert_eq!(
            read_wait(true, 17),
            TCP_UNFINISHED,
            "a message half received"
        );
        assert_eq!(read_wait(true, 0), TCP_IDLE, "between complete messages");
        assert!(TCP_UNFINISHED < TCP_IDLE);
    }

    /// Linux grants min(asked, rmem_max) and reports twice that: a request below the default
    /// shows that the size was set (without the call it would read the larger default).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_udp_receive_buffer_is_set_as_asked() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let default = socket2::SockRef::from(&socket)
            .recv_buffer_size()
            .expect("read");
        let asked = (default / 4).max(4096);
        set_receive_buffer(&socket, asked);
        let got = socket2::SockRef::from(&socket)
            .recv_buffer_size()
            .expect("read");
        assert_eq!(got, asked * 2, "default was {default}");
    }
}
