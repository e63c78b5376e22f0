//! MSRP sessions as the application sees them: `MsrpSession` (start, events, send, close),
//! `MsrpSender`, `IncomingMessage` with its `MessageResponder`, and the tokio task that runs
//! the sans-IO `SessionCore` against a connection, the application's commands and timers.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_channel::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::connection::{self, send_bounded, ConnCtl, ConnHandle};
use crate::endpoint::Registry;
use crate::frame::Frame;
use crate::sdp::SetupRole;
use crate::session_core::{CoreConfig, CoreEvent, Received, SessionCore, BIND_SEND};
use crate::uri::MsrpUri;

/// Inbound frames a session buffers before its connection waits (futures-channel adds one
/// slot per sender: the registry's and each connection routing to it at that moment).
pub(crate) const INBOX_CAPACITY: usize = 256;
const EVENT_CAPACITY: usize = 64;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The TCP connection closed or broke.
    ConnectionLost,
    /// Passive: nobody connected within the bind timeout.
    BindTimeout,
    /// `close()` was called.
    Local,
}

/// What a session reports to the application.
#[derive(Debug)]
pub enum SessionEvent {
    /// The connection is bound (passive: first request arrived; active: our bind SEND
    /// was answered 200).
    Bound,
    /// A complete message; answer it through `responder`. Boxed: each queued event is
    /// allocated at the size of the largest variant.
    Message(Box<IncomingMessage>),
    /// The session ended; no more events follow.
    Closed(CloseReason),
}

/// A complete received message.
#[derive(Debug)]
pub struct IncomingMessage {
    /// Message-ID.
    pub message_id: String,
    /// Content-Type of the message.
    pub content_type: String,
    /// All bytes, chunks joined.
    pub body: Bytes,
    /// Total size as announced in Byte-Range (equals `body.len()`).
    pub total_bytes: u64,
    /// The sender asked for a success REPORT.
    pub success_report: bool,
    /// When the connection read the bytes that completed the message: the start of the time
    /// its sender waits for the answer.
    pub received_at: std::time::Instant,
    /// Answers the last chunk's transaction.
    pub responder: MessageResponder,
}

impl IncomingMessage {
    /// The From-Path of the last chunk (sender last), parsed when asked for: a deposit never
    /// needs it. Empty once the message is answered.
    pub fn from_path(&self) -> Vec<MsrpUri> {
        self.responder
            .answer
            .as_ref()
            .and_then(|a| a.request.from_path().ok())
            .unwrap_or_default()
    }
}

/// Answers a received message once the application has dealt with it: `accept` sends 200
/// (and a REPORT `000 200` when Success-Report was yes), `reject` an error status. Dropped
/// unanswered, it answers 500.
#[derive(Debug)]
pub struct MessageResponder {
    cmd: mpsc::UnboundedSender<Command>,
    answer: Option<Box<Answer>>,
}

#[derive(Debug)]
struct Answer {
    request: Frame,
    message_id: String,
    total: u64,
}

impl MessageResponder {
    /// 200 OK (+ REPORT if asked).
    pub fn accept(mut self) {
        self.finish(200);
    }

    /// An error status: 413 too large, 415 unsupported type, 500 storage failed, …
    pub fn reject(mut self, status: u16) {
        self.finish(status);
    }

    fn finish(&mut self, status: u16) {
        if let Some(answer) = self.answer.take() {
            let _ = self.cmd.unbounded_send(Command::Respond { answer, status });
        }
    }
}

impl Drop for MessageResponder {
    fn drop(&mut self) {
        self.finish(500);
    }
}

/// Why an outgoing message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer answered with this status.
    #[error("peer answered {0}")]
    Status(u16),
    /// No response within the transaction timeout.
    #[error("no response in time")]
    Timeout,
    /// The session has no connection (not yet bound).
    #[error("session not connected")]
    NotConnected,
    /// The session or its connection ended.
    #[error("session closed")]
    Closed,
}

/// Why `start` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The remote path is empty.
    #[error("empty remote path")]
    EmptyPath,
    /// Connecting to the first hop failed.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The bind SEND failed.
    #[error("bind failed: {0}")]
    Bind(SendError),
    /// Already started, or closed.
    #[error("session already started or closed")]
    State,
}

/// Inputs from connections.
#[derive(Debug)]
pub(crate) enum SessionInput {
    Bind(ConnHandle),
    /// Boxed: each queued input is allocated at the size of the largest variant. With when
    /// the connection read the bytes that completed it.
    Frame(Box<Frame>, std::time::Instant),
    ConnectionLost(u64),
    Discard(String),
}

/// What the application asks of a session task.
#[derive(Debug)]
enum Command {
    Start {
        remote_path: Vec<MsrpUri>,
        role: SetupRole,
        reply: oneshot::Sender<Result<(), StartError>>,
    },
    Send {
        content_type: String,
        body: Bytes,
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    Respond {
        answer: Box<Answer>,
        status: u16,
    },
    Close,
}

/// A cloneable handle for sending on a session while another task reads its events.
#[derive(Debug, Clone)]
pub struct MsrpSender {
    cmd: mpsc::UnboundedSender<Command>,
}

impl MsrpSender {
    /// Send a message (chunked if larger than the chunk size); resolves when every chunk
    /// got its 200, on the first error status, or on timeout. Several may be in flight.
    ///
    /// The message is queued when this is called, not when the future is first polled, so
    /// messages go out in call order even when their futures are awaited on other tasks.
    pub fn send(
        &self,
        content_type: &str,
        body: Bytes,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let queued = self
            .cmd
            .unbounded_send(Command::Send {
                content_type: content_type.to_string(),
                body,
                reply,
            })
            .map_err(|_| SendError::Closed);
        async move {
            queued?;
            rx.await.unwrap_or(Err(SendError::Closed))
        }
    }
}

/// One MSRP session as the application sees it. Dropping it ends the session (clones of
/// its `MsrpSender` then fail with `SendError::Closed`).
#[derive(Debug)]
pub struct MsrpSession {
    id: String,
    local: MsrpUri,
    sender: MsrpSender,
    events: mpsc::Receiver<SessionEvent>,
}

impl MsrpSession {
    /// The session id (in our `a=path`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Our URI for `a=path`.
    pub fn local_uri(&self) -> &MsrpUri {
        &self.local
    }

    /// Our path (one URI) for `LocalMedia::path`.
    pub fn local_path(&self) -> Vec<MsrpUri> {
        vec![self.local.clone()]
    }

    /// After the SDP exchange: passive waits for the peer's connection (already accepted
    /// from creation on); active connects to the first hop of `remote_path` and binds with
    /// an empty SEND (RFC 4975 §5.4), returning once it is answered 200.
    pub async fn start(
        &self,
        remote_path: Vec<MsrpUri>,
        role: SetupRole,
    ) -> Result<(), StartError> {
        if remote_path.is_empty() {
            return Err(StartError::EmptyPath);
        }
        let (reply, rx) = oneshot::channel();
        self.sender
            .cmd
            .unbounded_send(Command::Start {
                remote_path,
                role,
                reply,
            })
            .map_err(|_| StartError::State)?;
        rx.await.unwrap_or(Err(StartError::State))
    }

    /// The next event; `None` after `Closed` was delivered.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await.ok()
    }

    /// See [`MsrpSender::send`] (queued at call time).
    pub fn send(
        &self,
        content_type: &str,
        body: Bytes,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send + 'static {
        self.sender.send(content_type, body)
    }

    /// A handle for sending from another task.
    pub fn sender(&self) -> MsrpSender {
        self.sender.clone()
    }

    /// End the session; its connection closes when no other session uses it.
    pub fn close(&self) {
        let _ = self.sender.cmd.unbounded_send(Command::Close);
    }
}

impl Drop for MsrpSession {
    fn drop(&mut self) {
        let _ = self.sender.cmd.unbounded_send(Command::Close);
    }
}

pub(crate) fn spawn(
    id: String,
    local: MsrpUri,
    registry: Arc<Registry>,
    inbox: mpsc::Receiver<SessionInput>,
) -> MsrpSession {
    let (cmd_tx, cmd_rx) = mpsc::unbounded();
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
    let cfg = &registry.config;
    let core = SessionCore::new(
        local.clone(),
        CoreConfig {
            chunk_size: cfg.chunk_size,
            transaction_timeout: cfg.transaction_timeout,
            max_message_bytes: cfg.max_message_bytes,
        },
    );
    // Boxed: the task's state then lives once on the heap; by value, an async fn's future
    // holds `self` twice (argument and local) and `shutdown` a third copy.
    let task = Box::new(SessionTask {
        id: id.clone(),
        core,
        started: false,
        bound: false,
        conn: None,
        bind_deadline: Instant::now() + cfg.bind_timeout,
        registry,
        cmd_tx: cmd_tx.clone(),
        events: ev_tx,
        replies: HashMap::new(),
        bind_reply: None,
        read_at: std::time::Instant::now(),
    });
    tokio::spawn(task.run(inbox, cmd_rx));
    MsrpSession {
        id,
        local,
        sender: MsrpSender { cmd: cmd_tx },
        events: ev_rx,
    }
}

/// The I/O shell around `SessionCore`: connection, channels and timers.
#[derive(Debug)]
struct SessionTask {
    id: String,
    core: SessionCore,
    started: bool,
    bound: bool,
    conn: Option<ConnHandle>,
    /// Passive sessions close when no connection binds them by then.
    bind_deadline: Instant,
    registry: Arc<Registry>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    events: mpsc::Sender<SessionEvent>,
    replies: HashMap<u64, oneshot::Sender<Result<(), SendError>>>,
    bind_reply: Option<oneshot::Sender<Result<(), StartError>>>,
    /// When the frame being handled was read (see [`IncomingMessage::received_at`]).
    read_at: std::time::Instant,
}

enum Flow {
    Continue,
    End(CloseReason),
}

fn now_std() -> std::time::Instant {
    Instant::now().into_std()
}

/// What woke a session task; handled after the `select!` so that its branch futures are
/// gone by then (the task's future is then sized by the largest handler, not by the sum).
enum Wake {
    Input(Option<SessionInput>),
    Command(Option<Command>),
    /// The connection's write queue has room (or is gone).
    Writable(bool),
    Timer,
}

impl SessionTask {
    async fn run(
        mut self: Box<Self>,
        mut inbox: mpsc::Receiver<SessionInput>,
        mut cmds: mpsc::UnboundedReceiver<Command>,
    ) {
        let reason = loop {
            let want_write = self.conn.is_some() && self.core.has_output();
            let deadline = self.next_deadline();
            let writer = self.conn.as_mut().map(|c| &mut c.write_tx);
            let wake = tokio::select! {
                input = inbox.recv() => Wake::Input(input.ok()),
                cmd = cmds.recv() => Wake::Command(cmd.ok()),
                ready = write_room(writer), if want_write => Wake::Writable(ready),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Wake::Timer,
            };
            let flow = match wake {
                Wake::Input(Some(i)) => self.on_input(i).await,
                Wake::Command(Some(c)) => self.on_command(c).await,
                Wake::Input(None) | Wake::Command(None) => Flow::End(CloseReason::Local),
                Wake::Writable(true) => {
                    if let (Some(c), Some(b)) = (self.conn.as_mut(), self.core.pop_output()) {
                        // Room was just reported for this sender: this cannot fail for lack
                        // of it, only when the connection is gone.
                        if c.write_tx.start_send(b).is_err() {
                            Flow::End(CloseReason::ConnectionLost)
                        } else {
                            Flow::Continue
                        }
                    } else {
                        Flow::Continue
                    }
                }
                Wake::Writable(false) => Flow::End(CloseReason::ConnectionLost),
                Wake::Timer => self.on_timer().await,
            };
            if let Flow::End(reason) = flow {
                break reason;
            }
        };
        self.shutdown(reason).await;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let tx = self.core.next_timer().map(Instant::from_std);
        let bind = (!self.bound && self.conn.is_none()).then_some(self.bind_deadline);
        match (tx, bind) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn on_timer(&mut self) -> Flow {
        if !self.bound && self.conn.is_none() && Instant::now() >= self.bind_deadline {
            return Flow::End(CloseReason::BindTimeout);
        }
        for ev in self.core.on_timer(now_std()) {
            self.on_core_event(ev).await;
        }
        Flow::Continue
    }

    async fn emit(&mut self, ev: SessionEvent) {
        let _ = send_bounded(&mut self.events, ev).await;
    }

    async fn on_core_event(&mut self, ev: CoreEvent) {
        match ev {
            CoreEvent::SendDone {
                send: BIND_SEND,
                result,
            } => {
                let ok = result.is_ok();
                if let Some(r) = self.bind_reply.take() {
                    let _ = r.send(result.map_err(StartError::Bind));
                }
                if ok {
                    self.bound = true;
                    self.emit(SessionEvent::Bound).await;
                }
            }
            CoreEvent::SendDone { send, result } => {
                if let Some(r) = self.replies.remove(&send) {
                    let _ = r.send(result);
                }
            }
            CoreEvent::Message(m) => {
                let msg = self.incoming(m);
                self.emit(SessionEvent::Message(Box::new(msg))).await;
            }
        }
    }

    fn incoming(&self, m: Box<Received>) -> IncomingMessage {
        let m = *m;
        let total = m.body.len() as u64;
        IncomingMessage {
            message_id: m.message_id.clone(),
            content_type: m.content_type,
            body: m.body,
            total_bytes: total,
            success_report: m.success_report,
            received_at: self.read_at,
            responder: MessageResponder {
                cmd: self.cmd_tx.clone(),
                answer: Some(Box::new(Answer {
                    request: m.request,
                    message_id: m.message_id,
                    total,
                })),
            },
        }
    }

    async fn on_input(&mut self, input: SessionInput) -> Flow {
        match input {
            SessionInput::Bind(conn) => {
                self.conn = Some(conn);
                self.bound = true;
                self.emit(SessionEvent::Bound).await;
            }
            SessionInput::Frame(frame, read_at) => {
                // Only a frame completes a message, so this stamps the messages it yields.
                self.read_at = read_at;
                if let Some(ev) = self.core.on_frame(*frame) {
                    self.on_core_event(ev).await;
                }
            }
            SessionInput::ConnectionLost(id) => {
                if self.conn.as_ref().is_some_and(|c| c.id == id) {
                    return Flow::End(CloseReason::ConnectionLost);
                }
            }
            SessionInput::Discard(mid) => self.core.discard(&mid),
        }
        Flow::Continue
    }

    async fn on_command(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Start {
                remote_path,
                role,
                reply,
            } => {
                if self.started {
                    let _ = reply.send(Err(StartError::State));
                    return Flow::Continue;
                }
                self.started = true;
                self.core.set_remote_path(remote_path.clone());
                match role {
                    SetupRole::Passive => {
                        let _ = reply.send(Ok(()));
                    }
                    // Boxed: connecting (TCP, TLS handshake) is the largest state of the task
                    // and only active sessions take it; the rest should not carry its size.
                    SetupRole::Active => Box::pin(self.connect(&remote_path, reply)).await,
                }
            }
            Command::Send {
                content_type,
                body,
                reply,
            } => {
                if self.conn.is_none() || !self.core.has_remote_path() {
                    let _ = reply.send(Err(SendError::NotConnected));
                } else {
                    let send = self.core.send_message(&content_type, &body, now_std());
                    self.replies.insert(send, reply);
                }
            }
            Command::Respond { answer, status } => {
                self.core
                    .answer(&answer.request, &answer.message_id, answer.total, status);
            }
            Command::Close => return Flow::End(CloseReason::Local),
        }
        Flow::Continue
    }

    async fn connect(
        &mut self,
        remote_path: &[MsrpUri],
        reply: oneshot::Sender<Result<(), StartError>>,
    ) {
        let Some(first) = remote_path.first() else {
            let _ = reply.send(Err(StartError::EmptyPath));
            return;
        };
        let timeout = self.registry.config.connect_timeout;
        let conn = match tokio::time::timeout(timeout, self.open_connection(first)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                let _ = reply.send(Err(StartError::Connect(e)));
                return;
            }
            Err(_) => {
                let _ = reply.send(Err(StartError::Connect("timed out".into())));
                return;
            }
        };
        if !self.registry.bind_active(&self.id, conn.id) {
            let _ = conn.ctl_tx.unbounded_send(ConnCtl::Unbind(self.id.clone()));
            let _ = reply.send(Err(StartError::State));
            return;
        }
        self.conn = Some(conn);
        // Bind with an empty SEND (RFC 4975 §5.4); its 200 completes start().
        self.core.send_bind(now_std());
        self.bind_reply = Some(reply);
    }

    /// TCP to the first hop, then a TLS handshake when its URI is `msrps` (RFC 4975 §14.2:
    /// the certificate must match the URI's host).
    async fn open_connection(&self, first: &MsrpUri) -> Result<ConnHandle, String> {
        let host = first.host_unbracketed();
        let target = format!("{host}:{}", first.port.unwrap_or(2855));
        let stream = tokio::net::TcpStream::connect(target)
            .await
            .map_err(|e| e.to_string())?;
        if !first.secure {
            return Ok(connection::spawn(
                stream,
                self.registry.clone(),
                Some(self.id.clone()),
                None,
            ));
        }
        let Some(tls) = &self.registry.config.tls else {
            return Err("msrps path but this endpoint has no TLS settings".into());
        };
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let stream = tokio_rustls::TlsConnector::from(tls.client.clone())
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(connection::spawn_tls(
            stream,
            self.registry.clone(),
            Some(self.id.clone()),
            None,
        ))
    }

    async fn shutdown(mut self: Box<Self>, reason: CloseReason) {
        // Flush what is queued (final responses) on a clean local close.
        if reason == CloseReason::Local {
            if let Some(c) = &mut self.conn {
                while let Some(b) = self.core.pop_output() {
                    if send_bounded(&mut c.write_tx, b).await.is_err() {
                        break;
                    }
                }
            }
        }
        for ev in self.core.fail_all(&SendError::Closed) {
            if let CoreEvent::SendDone { send, result } = ev {
                if send == BIND_SEND {
                    if let Some(r) = self.bind_reply.take() {
                        let _ = r.send(result.map_err(StartError::Bind));
                    }
                } else if let Some(r) = self.replies.remove(&send) {
                    let _ = r.send(result);
                }
            }
        }
        self.registry.remove(&self.id);
        if let Some(c) = &self.conn {
            let _ = c.ctl_tx.unbounded_send(ConnCtl::Unbind(self.id.clone()));
        }
        let _ = send_bounded(&mut self.events, SessionEvent::Closed(reason)).await;
    }
}

/// Resolves when the connection's write queue has room for one more frame (true) or the
/// connection is gone (false); pending forever without a connection.
async fn write_room(w: Option<&mut mpsc::Sender<Bytes>>) -> bool {
    match w {
        Some(w) => std::future::poll_fn(|cx| w.poll_ready(cx)).await.is_ok(),
        None => std::future::pending().await,
    }
}
