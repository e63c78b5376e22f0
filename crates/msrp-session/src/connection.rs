//! One TCP or TLS connection, run by one task: it frames the inbound stream and routes each
//! frame to the session named by its To-Path (binding a connection to a session on its first
//! request, RFC 4975 §5.4: unknown session 481, bound elsewhere 506), and it writes what the
//! sessions queue for it. Reading never waits for a slow write, and writing never waits for a
//! session slow to take its frames: a frame waiting for room in its session's inbox only
//! pauses reading. One task instead of a reader and a writer, and no read buffer while the
//! socket has nothing to read: most connections carry one idle session.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_channel::mpsc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::io::poll_read_buf;

use crate::codec::{Decoded, MsrpDecoder, Rejection};
use crate::endpoint::{Registry, RouteOutcome};
use crate::frame::{EndFlag, Frame, StartLine};
use crate::session::SessionInput;
use crate::uri::MsrpUri;

/// First size of a connection's read buffer.
const READ_BUF_MIN: usize = 2 * 1024;
/// Largest size it grows to (one read syscall moves at most this much).
const READ_BUF_MAX: usize = 16 * 1024;

/// Frames queued to a connection by its sessions at most (futures-channel adds one slot per
/// sender).
const WRITE_QUEUE: usize = 64;
/// Queued writes are joined up to about this many bytes per syscall.
const WRITE_BATCH_MAX: usize = 64 * 1024;
/// Responses the connection makes itself (400, 481, 506) waiting to be written; reading pauses
/// at this many.
const OWN_QUEUE: usize = 64;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// What a connection is told besides writing.
#[derive(Debug)]
pub(crate) enum ConnCtl {
    /// A session on this connection ended; close when none is left.
    Unbind(String),
}

/// A handle sessions keep to write on a connection and to leave it. The queues are
/// futures-channel's: they allocate per queued item, where tokio's allocate room for 32 items
/// (and a cache-padded header) per channel up front, and most connections sit idle.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub id: u64,
    pub write_tx: mpsc::Sender<Bytes>,
    pub ctl_tx: mpsc::UnboundedSender<ConnCtl>,
}

/// Waits for room in a bounded queue, then queues `item` (futures-channel's `send` without
/// pulling in futures-util). Fails when the receiver is gone.
pub(crate) async fn send_bounded<T>(
    tx: &mut mpsc::Sender<T>,
    item: T,
) -> Result<(), mpsc::SendError> {
    std::future::poll_fn(|cx| tx.poll_ready(cx)).await?;
    tx.start_send(item)
}

/// Inputs on their way to one bound session's inbox (a bind before its first frame), held by
/// the connection while that inbox is full.
#[derive(Debug)]
struct Delivery {
    session: String,
    items: [Option<SessionInput>; 2],
}

impl Delivery {
    fn new(session: String, first: SessionInput, then: Option<SessionInput>) -> Self {
        Delivery {
            session,
            items: [Some(first), then],
        }
    }

    /// Queues what the inbox takes now; true when nothing is left (or the session is gone).
    fn try_send(&mut self, inbox: &mut mpsc::Sender<SessionInput>) -> bool {
        for slot in &mut self.items {
            let Some(input) = slot.take() else { continue };
            match inbox.try_send(input) {
                Ok(()) => {}
                Err(e) if e.is_full() => {
                    *slot = Some(e.into_inner());
                    return false;
                }
                Err(_) => return true,
            }
        }
        true
    }

    /// Queues the inputs in order as room appears; ready when all are queued or the session
    /// is gone (they are then dropped).
    fn poll_send(
        &mut self,
        inbox: &mut mpsc::Sender<SessionInput>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        for slot in &mut self.items {
            if slot.is_none() {
                continue;
            }
            match inbox.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {
                    if let Some(input) = slot.take() {
                        let _ = inbox.start_send(input);
                    }
                }
            }
        }
        Poll::Ready(())
    }
}

/// The read half of a connection. Plain TCP waits for readiness before it takes a buffer, so an
/// idle connection holds none; a TLS stream reads into one (rustls buffers anyway).
enum ReadSide {
    Tcp(OwnedReadHalf),
    Stream(Box<dyn AsyncRead + Send + Unpin>),
}

impl ReadSide {
    /// One read into `buf`'s buffer; `Ok(0)` at end of stream. Cancel-safe.
    async fn read(&mut self, buf: &mut ReadBuffer) -> io::Result<usize> {
        match self {
            ReadSide::Tcp(rd) => loop {
                rd.readable().await?;
                // One poll of `poll_read`, not `try_read_buf`: on epoll tokio takes a short
                // read as proof that the socket is drained and clears its readiness, so the
                // next `readable()` waits, where `try_read_buf` keeps the readiness until a
                // `recv` fails with EAGAIN (one wasted syscall, and a buffer taken and let
                // go, per paced SEND).
                let polled = std::future::poll_fn(|cx| {
                    Poll::Ready(poll_read_buf(Pin::new(&mut *rd), cx, buf.for_read()))
                })
                .await;
                match polled {
                    Poll::Ready(r) => return r,
                    // The readiness was stale (now cleared): wait again without a buffer.
                    Poll::Pending => buf.release(),
                }
            },
            ReadSide::Stream(rd) => rd.read_buf(buf.for_read()).await,
        }
    }
}

/// The write half of a TCP or TLS stream.
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A read buffer that grows while reads fill it (up to `READ_BUF_MAX`) and is let go after a
/// read that did not fill it: the socket was drained, and an idle connection should not keep
/// kilobytes it may not need for minutes.
#[derive(Debug)]
struct ReadBuffer {
    buf: BytesMut,
    size: usize,
}

impl ReadBuffer {
    fn new() -> Self {
        ReadBuffer {
            buf: BytesMut::new(),
            size: READ_BUF_MIN,
        }
    }

    /// The buffer to read into, allocated at the current size when none is held.
    fn for_read(&mut self) -> &mut BytesMut {
        if self.buf.capacity() == 0 {
            self.buf = BytesMut::with_capacity(self.size);
        }
        &mut self.buf
    }

    /// Hands the bytes read to `take`, then grows or lets go of the buffer.
    fn consume(&mut self, take: impl FnOnce(&[u8])) {
        take(&self.buf);
        if self.buf.len() < self.buf.capacity() {
            self.release();
        } else {
            self.buf.clear();
            if self.size < READ_BUF_MAX {
                self.size = (self.size * 2).min(READ_BUF_MAX);
                self.release();
            }
        }
    }

    fn release(&mut self) {
        self.buf = BytesMut::new();
    }
}

/// Start the task for an accepted or connected TCP stream (`msrp` URIs). `initial` sessions
/// are bound from the start (the active side's own session).
pub(crate) fn spawn(
    stream: TcpStream,
    registry: Arc<Registry>,
    initial: Option<String>,
    inbound: Option<OwnedSemaphorePermit>,
) -> ConnHandle {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    spawn_halves(
        ReadSide::Tcp(rd),
        Box::new(wr),
        false,
        registry,
        initial,
        inbound,
    )
}

/// Like [`spawn`] for a stream after its TLS handshake (`msrps` URIs, RFC 4975 §14.2).
pub(crate) fn spawn_tls<S>(
    stream: S,
    registry: Arc<Registry>,
    initial: Option<String>,
    inbound: Option<OwnedSemaphorePermit>,
) -> ConnHandle
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    spawn_halves(
        ReadSide::Stream(Box::new(rd)),
        Box::new(wr),
        true,
        registry,
        initial,
        inbound,
    )
}

fn spawn_halves(
    rd: ReadSide,
    wr: WriteHalf,
    flush: bool,
    registry: Arc<Registry>,
    initial: Option<String>,
    inbound: Option<OwnedSemaphorePermit>,
) -> ConnHandle {
    let (write_tx, write_rx) = mpsc::channel(WRITE_QUEUE);
    let (ctl_tx, ctl_rx) = mpsc::unbounded();
    let handle = ConnHandle {
        id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
        write_tx,
        ctl_tx,
    };
    let conn = Box::new(Connection {
        decoder: MsrpDecoder::new(registry.config.limits),
        registry,
        me: handle.clone(),
        bound: initial.into_iter().map(|id| (id, None)).collect(),
        own: VecDeque::new(),
        delivery: None,
        closing: false,
        _inbound: inbound,
        read_at: Instant::now(),
    });
    tokio::spawn(conn.run(
        Io {
            rd,
            wr,
            flush_after_write: flush,
        },
        write_rx,
        ctl_rx,
    ));
    handle
}

/// The stream and how to finish a write on it.
struct Io {
    rd: ReadSide,
    wr: WriteHalf,
    /// TLS holds records until flushed; for TCP a flush is a no-op and is skipped.
    flush_after_write: bool,
}

/// The state of one connection's task (boxed: by value an async fn holds it twice).
struct Connection {
    registry: Arc<Registry>,
    /// Given to sessions this connection binds.
    me: ConnHandle,
    decoder: MsrpDecoder,
    /// Sessions bound to this connection, with our handle to each one's inbox (taken on the
    /// first frame routed to it). One handle kept per session, not one per frame: each
    /// futures-channel sender has a slot of its own, so a fresh one per frame would never
    /// wait for room and the inbox would not bound what a fast peer sends.
    bound: HashMap<String, Option<mpsc::Sender<SessionInput>>>,
    /// Our own responses, written before what sessions queue.
    own: VecDeque<Bytes>,
    /// Inputs waiting for room in a session's inbox; reading pauses meanwhile.
    delivery: Option<Delivery>,
    /// The stream is broken or the connection is done: stop reading and routing.
    closing: bool,
    /// An accepted connection's place under `max_inbound_connections`, given back when the
    /// task ends.
    _inbound: Option<OwnedSemaphorePermit>,
    /// When the bytes being decoded were read; given with each frame routed.
    read_at: Instant,
}

/// What woke the connection's task.
enum Wake {
    Ctl(Option<ConnCtl>),
    Queued(Option<Bytes>),
    Wrote(io::Result<usize>),
    Delivered,
    Read(io::Result<usize>),
    BindTimeout,
}

impl Connection {
    async fn run(
        mut self: Box<Self>,
        mut io: Io,
        mut write_rx: mpsc::Receiver<Bytes>,
        mut ctl_rx: mpsc::UnboundedReceiver<ConnCtl>,
    ) {
        let mut buf = ReadBuffer::new();
        // What is being written: our own responses or queued frames, joined.
        let mut out = Bytes::new();
        let mut flushing = false;
        // A connection that binds no session in time is dropped (RFC 4975 §5.4 binds on the
        // first request; an idle socket binds nothing).
        // Boxed and dropped at the first bind: a bound connection carries no timer.
        let mut bind_timer = self
            .bound
            .is_empty()
            .then(|| Box::pin(tokio::time::sleep(self.registry.config.bind_timeout)));
        while !self.closing {
            if !self.bound.is_empty() {
                bind_timer = None;
            }
            if out.is_empty() && !flushing {
                out = next_write(&mut self.own, &mut write_rx, None);
            }
            let can_read = self.delivery.is_none() && self.own.len() < OWN_QUEUE;
            let writing = !out.is_empty() || flushing;
            let wake = tokio::select! {
                ctl = ctl_rx.recv() => Wake::Ctl(ctl.ok()),
                cmd = write_rx.recv(), if !writing => Wake::Queued(cmd.ok()),
                r = write_some(&mut io.wr, &out), if writing => Wake::Wrote(r),
                () = deliver(&mut self.delivery, &mut self.bound), if self.delivery.is_some() => Wake::Delivered,
                r = io.rd.read(&mut buf), if can_read => Wake::Read(r),
                () = expiry(&mut bind_timer), if self.bound.is_empty() => Wake::BindTimeout,
            };
            match wake {
                Wake::Ctl(Some(ConnCtl::Unbind(id))) => {
                    self.bound.remove(&id);
                    self.closing = self.bound.is_empty();
                }
                Wake::Ctl(None) | Wake::BindTimeout => self.closing = true,
                // Every handle is gone (never while a session or this task holds one).
                Wake::Queued(None) => self.closing = true,
                Wake::Queued(Some(first)) => {
                    out = next_write(&mut self.own, &mut write_rx, Some(first));
                }
                Wake::Wrote(Ok(n)) if n > 0 || out.is_empty() => {
                    if out.is_empty() {
                        flushing = false;
                    } else {
                        out.advance(n);
                        flushing = out.is_empty() && io.flush_after_write;
                    }
                }
                Wake::Wrote(r) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "MSRP write failed");
                    }
                    out.clear();
                    self.closing = true;
                }
                Wake::Delivered => {
                    self.delivery = None;
                    self.decode();
                }
                Wake::Read(Ok(n)) if n > 0 => {
                    self.read_at = Instant::now();
                    buf.consume(|bytes| self.decoder.feed(bytes));
                    self.decode();
                }
                Wake::Read(_) => self.closing = true,
            }
        }
        Box::pin(self.finish(io, out, write_rx)).await;
    }

    /// Frames decoded and routed until the decoder needs more bytes or a frame waits for
    /// room in its session's inbox.
    fn decode(&mut self) {
        while !self.closing {
            if let Some(d) = &mut self.delivery {
                // Most inputs fit at once; only a full inbox waits for the task's next turn.
                let done = match self.bound.get_mut(&d.session).and_then(Option::as_mut) {
                    Some(inbox) => d.try_send(inbox),
                    None => true,
                };
                if !done {
                    return;
                }
                self.delivery = None;
            }
            match self.decoder.decode() {
                Ok(None) => return,
                Ok(Some(Decoded::Frame(frame))) => self.route(frame),
                Ok(Some(Decoded::Rejected(r))) => self.reject(r),
                Err(fatal) => {
                    tracing::debug!(reason = fatal.reason, "MSRP stream broken, closing");
                    if let Some(tid) = fatal.transaction_id {
                        let f = Frame {
                            transaction_id: tid,
                            start: StartLine::Response {
                                code: fatal.status,
                                comment: Some("Bad Request".into()),
                            },
                            headers: Vec::new(),
                            body: None,
                            flag: EndFlag::Complete,
                        };
                        self.own.push_back(f.to_bytes());
                    }
                    self.closing = true;
                }
            }
        }
    }

    fn route(&mut self, frame: Frame) {
        let session_id = frame
            .header("To-Path")
            .and_then(|path| MsrpUri::first_session_id(path).ok().flatten())
            .map(str::to_string);
        let (Some(session_id), true) = (session_id, frame.header("From-Path").is_some()) else {
            self.respond(&frame, 400);
            return;
        };
        let need_inbox = !matches!(self.bound.get(&session_id), Some(Some(_)));
        match self
            .registry
            .route(&session_id, &self.me, frame, need_inbox)
        {
            RouteOutcome::Deliver {
                frame,
                newly_bound,
                inbox,
            } => {
                let held = self.bound.entry(session_id.clone()).or_insert(None);
                if inbox.is_some() {
                    *held = inbox;
                }
                let frame = SessionInput::Frame(Box::new(frame), self.read_at);
                self.delivery = Some(if newly_bound {
                    Delivery::new(session_id, SessionInput::Bind(self.me.clone()), Some(frame))
                } else {
                    Delivery::new(session_id, frame, None)
                });
            }
            RouteOutcome::Dropped => {}
            RouteOutcome::UnknownSession(frame) => self.respond(&frame, 481),
            RouteOutcome::BoundElsewhere(frame) => self.respond(&frame, 506),
        }
    }

    fn reject(&mut self, r: Rejection) {
        tracing::debug!(status = r.status, reason = r.reason, "MSRP frame rejected");
        // Let the session drop what it held of that message.
        if let (Some(sid), Some(mid)) = (
            addressed_uri(&r.frame).and_then(|u| u.session_id),
            r.frame.message_id(),
        ) {
            if self.bound.contains_key(&sid) {
                let discard = SessionInput::Discard(mid.to_string());
                self.delivery = Some(Delivery::new(sid, discard, None));
            }
        }
        if r.frame.failure_report() != crate::frame::FailureReport::No {
            self.respond(&r.frame, r.status);
        }
    }

    fn respond(&mut self, request: &Frame, code: u16) {
        if request.method().is_none() {
            return; // Responses and broken responses are never answered.
        }
        let Some(local) = addressed_uri(request) else {
            let f = Frame {
                transaction_id: request.transaction_id.clone(),
                start: StartLine::Response {
                    code,
                    comment: crate::frame::reason_phrase(code).map(str::to_string),
                },
                headers: Vec::new(),
                body: None,
                flag: EndFlag::Complete,
            };
            self.own.push_back(f.to_bytes());
            return;
        };
        let resp = request.response_to(code, None, &local);
        self.own.push_back(resp.to_bytes());
    }

    /// The connection is done: sessions learn it (their later writes fail at once), then what
    /// was queued before goes out and the stream is shut down.
    async fn finish(
        mut self: Box<Self>,
        mut io: Io,
        mut out: Bytes,
        mut write_rx: mpsc::Receiver<Bytes>,
    ) {
        write_rx.close();
        self.delivery = None;
        let id = self.me.id;
        for (session, inbox) in std::mem::take(&mut self.bound) {
            if !self.registry.is_bound_to(&session, id) {
                continue;
            }
            if let Some(mut inbox) = inbox.or_else(|| self.registry.inbox(&session)) {
                let _ = send_bounded(&mut inbox, SessionInput::ConnectionLost(id)).await;
            }
        }
        loop {
            if !out.is_empty() {
                if io.wr.write_all(&out).await.is_err() {
                    break;
                }
                if io.flush_after_write && io.wr.flush().await.is_err() {
                    break;
                }
            }
            out = next_write(&mut self.own, &mut write_rx, None);
            if out.is_empty() {
                let _ = io.wr.shutdown().await;
                break;
            }
        }
    }
}

/// The next bytes to write: `first` (when given) or our own responses, then what the sessions
/// queued, joined up to about `WRITE_BATCH_MAX` so that a pipelining sender gets its 200s (or
/// a fetch its SENDs) with one syscall instead of one each. Empty when nothing waits.
fn next_write(
    own: &mut VecDeque<Bytes>,
    queue: &mut mpsc::Receiver<Bytes>,
    first: Option<Bytes>,
) -> Bytes {
    let mut pull = || own.pop_front().or_else(|| queue.try_recv().ok());
    let Some(head) = first.or_else(&mut pull) else {
        return Bytes::new();
    };
    // A lone item is written as it is; more are copied into one buffer.
    let mut batch: Option<BytesMut> = None;
    while batch.as_ref().map_or(head.len(), BytesMut::len) < WRITE_BATCH_MAX {
        let Some(more) = pull() else { break };
        batch
            .get_or_insert_with(|| BytesMut::from(&head[..]))
            .extend_from_slice(&more);
    }
    batch.map_or(head, BytesMut::freeze)
}

/// One write of `out` (cancel-safe), or a flush when it is empty.
async fn write_some(wr: &mut WriteHalf, out: &[u8]) -> io::Result<usize> {
    if out.is_empty() {
        wr.flush().await.map(|()| 0)
    } else {
        wr.write(out).await
    }
}

/// Resolves when `timer` fires; never without one.
async fn expiry(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the held inputs are in their session's inbox (or the session is gone).
async fn deliver(
    delivery: &mut Option<Delivery>,
    bound: &mut HashMap<String, Option<mpsc::Sender<SessionInput>>>,
) {
    std::future::poll_fn(|cx| {
        let Some(d) = delivery.as_mut() else {
            return Poll::Pending;
        };
        match bound.get_mut(&d.session).and_then(Option::as_mut) {
            Some(inbox) => d.poll_send(inbox, cx),
            None => Poll::Ready(()),
        }
    })
    .await;
}

/// Our URI as the peer addressed it (first To-Path URI), for the From-Path of responses we
/// make here.
fn addressed_uri(frame: &Frame) -> Option<MsrpUri> {
    frame.to_path().ok().and_then(|p| p.into_iter().next())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::frame::Method;
    use std::time::Duration;
    use tokio::io::DuplexStream;
    use tokio::net::TcpListener;
    use tokio::time::timeout;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn a_lone_write_goes_out_as_it_is_and_more_are_joined_in_order() {
        let (mut tx, mut rx) = mpsc::channel(WRITE_QUEUE);
        let mut own = VecDeque::new();
        let one = Bytes::from_static(b"one");
        tx.try_send(one.clone()).unwrap();
        let got = next_write(&mut own, &mut rx, None);
        assert_eq!(got.as_ptr(), one.as_ptr(), "not copied");
        assert!(next_write(&mut own, &mut rx, None).is_empty());

        own.push_back(Bytes::from_static(b"MSRP own 481\r\n"));
        tx.try_send(Bytes::from_static(b"MSRP b 200 OK\r\n"))
            .unwrap();
        tx.try_send(Bytes::from_static(b"MSRP c 200 OK\r\n"))
            .unwrap();
        let got = next_write(
            &mut own,
            &mut rx,
            Some(Bytes::from_static(b"MSRP a 200 OK\r\n")),
        );
        assert_eq!(
            &got[..],
            b"MSRP a 200 OK\r\nMSRP own 481\r\nMSRP b 200 OK\r\nMSRP c 200 OK\r\n"
        );
    }

    #[test]
    fn a_batch_stops_near_its_limit_and_loses_nothing() {
        let (mut tx, mut rx) = mpsc::channel(WRITE_QUEUE);
        let mut own = VecDeque::new();
        let big = Bytes::from(vec![b'x'; WRITE_BATCH_MAX - 10]);
        tx.try_send(big).unwrap();
        tx.try_send(Bytes::from_static(b"0123456789ab")).unwrap();
        tx.try_send(Bytes::from_static(b"after")).unwrap();
        let first = next_write(&mut own, &mut rx, None);
        assert_eq!(first.len(), WRITE_BATCH_MAX + 2);
        assert_eq!(&next_write(&mut own, &mut rx, None)[..], b"after");
    }

    #[test]
    fn the_read_buffer_grows_while_filled_and_is_let_go_after_a_short_read() {
        let mut b = ReadBuffer::new();
        assert_eq!(b.buf.capacity(), 0, "no buffer before a read");
        let size = b.for_read().capacity();
        assert_eq!(size, READ_BUF_MIN);
        b.buf.extend_from_slice(&vec![1u8; size]);
        let mut seen = 0;
        b.consume(|bytes| seen = bytes.len());
        assert_eq!(seen, READ_BUF_MIN);
        assert_eq!(b.for_read().capacity(), 2 * READ_BUF_MIN, "filled: doubles");
        for _ in 0..8 {
            let cap = b.for_read().capacity();
            b.buf.extend_from_slice(&vec![1u8; cap]);
            b.consume(|_| {});
        }
        assert_eq!(b.for_read().capacity(), READ_BUF_MAX, "bounded");
        b.buf.extend_from_slice(b"short");
        b.consume(|bytes| assert_eq!(bytes, b"short"));
        assert_eq!(b.buf.capacity(), 0, "let go after a short read");
    }

    #[tokio::test]
    async fn an_idle_tcp_connection_waits_without_a_read_buffer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (rd, _wr) = server.into_split();
        let mut side = ReadSide::Tcp(rd);
        let mut buf = ReadBuffer::new();
        assert!(
            timeout(Duration::from_millis(50), side.read(&mut buf))
                .await
                .is_err(),
            "nothing to read"
        );
        assert_eq!(buf.buf.capacity(), 0, "waited without a buffer");
        client.write_all(b"hello").await.unwrap();
        let n = timeout(T, side.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(n, 5);
        buf.consume(|bytes| assert_eq!(bytes, b"hello"));
        assert_eq!(buf.buf.capacity(), 0, "idle again: no buffer");
    }

    fn send_to(session: &str, tid: &str) -> Bytes {
        let to = MsrpUri::new(false, "127.0.0.1", 2855, session);
        let from = MsrpUri::new(false, "127.0.0.1", 2856, "peer");
        let mut f = Frame::request(tid, Method::Send, &[to], &[from]);
        f.push_header("Message-ID", "m1");
        f.push_header("Byte-Range", "1-2/2");
        f.push_header("Content-Type", "text/plain");
        f.body = Some(Bytes::from_static(b"hi"));
        f.to_bytes()
    }

    async fn read_some(peer: &mut DuplexStream, want: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        while !got.windows(want.len()).any(|w| w == want) {
            let mut b = [0u8; 4096];
            let n = timeout(T, peer.read(&mut b)).await.unwrap().unwrap();
            assert!(n > 0, "connection closed early; got {got:?}");
            got.extend_from_slice(&b[..n]);
        }
        got
    }

    #[tokio::test]
    async fn writes_go_out_while_a_frame_waits_for_a_full_session_inbox() {
        // An inbox with room for one input per sender, already full.
        let (mut inbox, mut session_rx) = mpsc::channel(0);
        inbox
            .try_send(SessionInput::Discard("filler".into()))
            .unwrap();
        let registry = Arc::new(Registry::with_session("s1", inbox));
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let mut handle = spawn_tls(ours, registry, None, None);
        peer.write_all(&send_to("s1", "tid00001")).await.unwrap();
        peer.write_all(&send_to("s1", "tid00002")).await.unwrap();
        // The session is stuck; its connection still writes what is queued for it.
        send_bounded(
            &mut handle.write_tx,
            Bytes::from_static(b"MSRP x 200 OK\r\n"),
        )
        .await
        .unwrap();
        read_some(&mut peer, b"MSRP x 200 OK\r\n").await;
        // Room again: the bind and both frames arrive, in order.
        let mut got = Vec::new();
        while got.len() < 4 {
            got.push(timeout(T, session_rx.recv()).await.unwrap().unwrap());
        }
        assert!(matches!(&got[0], SessionInput::Discard(_)));
        assert!(matches!(&got[1], SessionInput::Bind(c) if c.id == handle.id));
        assert!(matches!(&got[2], SessionInput::Frame(f, _) if f.transaction_id == "tid00001"));
        assert!(matches!(&got[3], SessionInput::Frame(f, _) if f.transaction_id == "tid00002"));
    }

    #[tokio::test]
    async fn a_fast_peer_cannot_overfill_a_slow_session_inbox() {
        const BUFFER: usize = 2;
        let (inbox, mut session_rx) = mpsc::channel(BUFFER);
        let registry = Arc::new(Registry::with_session("s1", inbox));
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let _handle = spawn_tls(ours, registry, None, None);
        for i in 0..10 {
            peer.write_all(&send_to("s1", &format!("tid0000{i}")))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut queued = 0;
        while session_rx.try_recv().is_ok() {
            queued += 1;
        }
        // The connection's one handle may pass the buffer by one input, then waits.
        assert_eq!(queued, BUFFER + 1, "bind and the first frames only");
        let mut rest = 0;
        while queued + rest < 11 {
            timeout(T, session_rx.recv()).await.unwrap().unwrap();
            rest += 1;
        }
    }

    #[tokio::test]
    async fn the_last_unbind_closes_after_what_was_queued_is_written() {
        let (inbox, _session_rx) = mpsc::channel(8);
        let registry = Arc::new(Registry::with_session("s1", inbox));
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let mut handle = spawn_tls(ours, registry, Some("s1".into()), None);
        for part in ["MSRP a 200 OK\r\n", "MSRP b 200 OK\r\n"] {
            send_bounded(&mut handle.write_tx, Bytes::from(part))
                .await
                .unwrap();
        }
        handle
            .ctl_tx
            .unbounded_send(ConnCtl::Unbind("s1".into()))
            .unwrap();
        let mut all = Vec::new();
        timeout(T, peer.read_to_end(&mut all))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all, b"MSRP a 200 OK\r\nMSRP b 200 OK\r\n");
        assert!(
            send_bounded(&mut handle.write_tx, Bytes::from_static(b"late"))
                .await
                .is_err(),
            "the connection is gone"
        );
    }

    #[tokio::test]
    async fn a_connection_that_binds_nothing_in_time_is_closed_and_a_bound_one_stays() {
        let (inbox, _session_rx) = mpsc::channel(8);
        let mut registry = Registry::with_session("s1", inbox);
        let bind_timeout = Duration::from_millis(100);
        registry.config.bind_timeout = bind_timeout;
        let registry = Arc::new(registry);
        let (mut idle, ours) = tokio::io::duplex(1024);
        let _idle = spawn_tls(ours, registry.clone(), None, None);
        let (mut bound, ours) = tokio::io::duplex(1024);
        let _bound = spawn_tls(ours, registry, Some("s1".into()), None);
        let mut rest = Vec::new();
        timeout(bind_timeout * 20, idle.read_to_end(&mut rest))
            .await
            .expect("closed by the bind timeout")
            .unwrap();
        assert!(
            timeout(bind_timeout * 3, bound.read(&mut [0u8; 16]))
                .await
                .is_err(),
            "a bound connection has no bind timeout"
        );
    }

    #[tokio::test]
    async fn an_unknown_session_is_answered_481_by_the_connection() {
        let (inbox, _session_rx) = mpsc::channel(8);
        let registry = Arc::new(Registry::with_session("s1", inbox));
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let _handle = spawn_tls(ours, registry, None, None);
        peer.write_all(&send_to("nope", "tid00009")).await.unwrap();
        read_some(&mut peer, b"MSRP tid00009 481").await;
    }
}
