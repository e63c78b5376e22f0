//! One TCP or TLS connection: a reader task that frames the inbound stream and routes each frame
//! to the session named by its To-Path (binding a connection to a session on its first
//! request, RFC 4975 §5.4: unknown session 481, bound elsewhere 506), and a writer task
//! that owns the write half, so reading never waits for a slow write.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_channel::mpsc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::{Decoded, MsrpDecoder, Rejection};
use crate::endpoint::{Registry, RouteOutcome};
use crate::frame::{EndFlag, Frame, StartLine};
use crate::uri::MsrpUri;

/// First capacity of a connection's read buffer.
const READ_BUF_MIN: usize = 2 * 1024;
/// Largest capacity it grows to (one read syscall moves at most this much).
const READ_BUF_MAX: usize = 16 * 1024;

/// Frames queued to the writer task at most.
const WRITE_QUEUE: usize = 64;
/// Queued writes are joined up to about this many bytes per syscall.
const WRITE_BATCH_MAX: usize = 64 * 1024;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// What the writer task is told.
#[derive(Debug)]
pub(crate) enum WriterCmd {
    Data(Bytes),
    Close,
}

/// What the reader task is told.
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
    pub write_tx: mpsc::Sender<WriterCmd>,
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

/// The read half of a TCP or TLS stream.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a TCP or TLS stream.
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Start the tasks for an accepted or connected TCP stream (`msrp` URIs). `initial` sessions
/// are bound from the start (the active side's own session).
pub(crate) fn spawn(
    stream: TcpStream,
    registry: Arc<Registry>,
    initial: Option<String>,
) -> ConnHandle {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    spawn_halves(Box::new(rd), Box::new(wr), registry, initial)
}

/// Like [`spawn`] for a stream after its TLS handshake (`msrps` URIs, RFC 4975 §14.2).
pub(crate) fn spawn_tls<S>(
    stream: S,
    registry: Arc<Registry>,
    initial: Option<String>,
) -> ConnHandle
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    spawn_halves(Box::new(rd), Box::new(wr), registry, initial)
}

fn spawn_halves(
    rd: ReadHalf,
    wr: WriteHalf,
    registry: Arc<Registry>,
    initial: Option<String>,
) -> ConnHandle {
    let (write_tx, write_rx) = mpsc::channel(WRITE_QUEUE);
    let (ctl_tx, ctl_rx) = mpsc::unbounded();
    let handle = ConnHandle {
        id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
        write_tx,
        ctl_tx,
    };
    tokio::spawn(writer(wr, write_rx));
    tokio::spawn(reader(rd, registry, handle.clone(), ctl_rx, initial));
    handle
}

async fn writer(mut wr: WriteHalf, mut rx: mpsc::Receiver<WriterCmd>) {
    let mut batch = BytesMut::new();
    while let Ok(cmd) = rx.recv().await {
        let WriterCmd::Data(first) = cmd else {
            break;
        };
        // Everything already queued goes out in one write: a pipelining sender gets its 200s
        // (or a fetch its SENDs) with one syscall instead of one each.
        let mut close = false;
        let data = match rx.try_recv() {
            Err(_) => first,
            Ok(second) => {
                batch.extend_from_slice(&first);
                let mut next = Some(second);
                while let Some(cmd) = next.take() {
                    match cmd {
                        WriterCmd::Data(b) => batch.extend_from_slice(&b),
                        WriterCmd::Close => {
                            close = true;
                            break;
                        }
                    }
                    if batch.len() < WRITE_BATCH_MAX {
                        next = rx.try_recv().ok();
                    }
                }
                batch.split().freeze()
            }
        };
        // TLS holds records until flushed; for TCP the flush is a no-op.
        if let Err(e) = async {
            wr.write_all(&data).await?;
            wr.flush().await
        }
        .await
        {
            tracing::debug!(error = %e, "MSRP write failed");
            break;
        }
        if close {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn reader(
    mut rd: ReadHalf,
    registry: Arc<Registry>,
    mut me: ConnHandle,
    mut ctl_rx: mpsc::UnboundedReceiver<ConnCtl>,
    initial: Option<String>,
) {
    let mut decoder = MsrpDecoder::new(registry.config.limits);
    let mut bound: HashSet<String> = initial.into_iter().collect();
    // Starts small (most connections carry one idle session) and doubles while reads fill it.
    let mut buf = BytesMut::with_capacity(READ_BUF_MIN);
    // A connection that binds no session in time is dropped (RFC 4975 §5.4 binds on the
    // first request; an idle socket binds nothing).
    let bind_deadline = tokio::time::Instant::now() + registry.config.bind_timeout;
    'conn: loop {
        tokio::select! {
            ctl = ctl_rx.recv() => match ctl {
                Ok(ConnCtl::Unbind(id)) => {
                    bound.remove(&id);
                    if bound.is_empty() {
                        break 'conn;
                    }
                }
                Err(_) => break 'conn,
            },
            _ = tokio::time::sleep_until(bind_deadline), if bound.is_empty() => break 'conn,
            n = rd.read_buf(&mut buf) => {
                match n {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => {}
                }
                decoder.feed(&buf);
                let filled = buf.len() == buf.capacity();
                buf.clear();
                if filled && buf.capacity() < READ_BUF_MAX {
                    buf.reserve(buf.capacity() * 2);
                }
                loop {
                    match decoder.decode() {
                        Ok(None) => break,
                        Ok(Some(Decoded::Frame(frame))) => {
                            route(&registry, &mut me, &mut bound, frame).await;
                        }
                        Ok(Some(Decoded::Rejected(r))) => reject(&registry, &mut me, &bound, r).await,
                        Err(fatal) => {
                            tracing::debug!(reason = fatal.reason, "MSRP stream broken, closing");
                            if let Some(tid) = fatal.transaction_id {
                                let f = Frame {
                                    transaction_id: tid,
                                    start: StartLine::Response { code: fatal.status, comment: Some("Bad Request".into()) },
                                    headers: Vec::new(),
                                    body: None,
                                    flag: EndFlag::Complete,
                                };
                                let _ = send_bounded(&mut me.write_tx, WriterCmd::Data(f.to_bytes())).await;
                            }
                            break 'conn;
                        }
                    }
                }
            }
        }
    }
    let _ = send_bounded(&mut me.write_tx, WriterCmd::Close).await;
    for id in bound {
        registry.connection_lost(&id, me.id).await;
    }
}

/// Our URI as the peer addressed it (first To-Path URI), for the From-Path of responses we
/// make here.
fn addressed_uri(frame: &Frame) -> Option<MsrpUri> {
    frame.to_path().ok().and_then(|p| p.into_iter().next())
}

async fn respond(me: &mut ConnHandle, request: &Frame, code: u16) {
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
        let _ = send_bounded(&mut me.write_tx, WriterCmd::Data(f.to_bytes())).await;
        return;
    };
    let resp = request.response_to(code, None, &local);
    let _ = send_bounded(&mut me.write_tx, WriterCmd::Data(resp.to_bytes())).await;
}

async fn route(
    registry: &Registry,
    me: &mut ConnHandle,
    bound: &mut HashSet<String>,
    frame: Frame,
) {
    let session_id = match frame.to_path() {
        Ok(p) => p.into_iter().next().and_then(|u| u.session_id),
        Err(_) => None,
    };
    let (Some(session_id), true) = (session_id, frame.header("From-Path").is_some()) else {
        respond(me, &frame, 400).await;
        return;
    };
    match registry.route(&session_id, me, frame).await {
        RouteOutcome::Delivered { newly_bound } => {
            if newly_bound {
                bound.insert(session_id);
            }
        }
        RouteOutcome::UnknownSession(frame) => respond(me, &frame, 481).await,
        RouteOutcome::BoundElsewhere(frame) => respond(me, &frame, 506).await,
    }
}

async fn reject(registry: &Registry, me: &mut ConnHandle, bound: &HashSet<String>, r: Rejection) {
    tracing::debug!(status = r.status, reason = r.reason, "MSRP frame rejected");
    // Let the session drop what it held of that message.
    if let (Some(sid), Some(mid)) = (
        addressed_uri(&r.frame).and_then(|u| u.session_id),
        r.frame.message_id(),
    ) {
        if bound.contains(&sid) {
            registry.discard_message(&sid, mid.to_string()).await;
        }
    }
    if r.frame.failure_report() != crate::frame::FailureReport::No {
        respond(me, &r.frame, r.status).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    /// Records each `poll_write` call's bytes.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.0.lock().unwrap().push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn queued_writes_leave_in_one_write_in_order_and_close_ends_after_them() {
        let rec = Recorder::default();
        let (mut tx, rx) = mpsc::channel(WRITE_QUEUE);
        for part in [
            "MSRP a 200 OK\r\n",
            "MSRP b 200 OK\r\n",
            "MSRP c 200 OK\r\n",
        ] {
            tx.try_send(WriterCmd::Data(Bytes::from(part))).unwrap();
        }
        tx.try_send(WriterCmd::Close).unwrap();
        tx.try_send(WriterCmd::Data(Bytes::from_static(b"after close")))
            .unwrap();
        writer(Box::new(rec.clone()), rx).await;
        let writes = rec.0.lock().unwrap().clone();
        assert_eq!(
            writes,
            vec![b"MSRP a 200 OK\r\nMSRP b 200 OK\r\nMSRP c 200 OK\r\n".to_vec()],
            "one write, in queue order, nothing after Close"
        );
    }

    #[tokio::test]
    async fn a_lone_write_is_sent_as_it_is() {
        let rec = Recorder::default();
        let (mut tx, rx) = mpsc::channel(WRITE_QUEUE);
        tx.try_send(WriterCmd::Data(Bytes::from_static(b"one")))
            .unwrap();
        drop(tx);
        writer(Box::new(rec.clone()), rx).await;
        assert_eq!(rec.0.lock().unwrap().clone(), vec![b"one".to_vec()]);
    }
}
