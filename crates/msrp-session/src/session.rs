//! MSRP sessions: the application's handle (`MsrpSession`, `MsrpSender`) and the task that
//! runs one session's transactions (RFC 4975 §7): answering SENDs per Failure-Report,
//! reassembling chunks, REPORTs after the application accepted a message, 501 for unknown
//! methods, outgoing SENDs chunked and matched to their responses with a timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::chunking::{split, ChunkOutcome, Reassembler};
use crate::connection::{self, ConnCtl, ConnHandle, WriterCmd};
use crate::endpoint::Registry;
use crate::frame::{ByteRange, FailureReport, Frame, Method};
use crate::ids;
use crate::sdp::SetupRole;
use crate::uri::MsrpUri;

/// Inbound frames a session buffers before its connection waits.
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
    /// A complete message; answer it through `responder`.
    Message(IncomingMessage),
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
    /// The From-Path of the last chunk (sender last).
    pub from_path: Vec<MsrpUri>,
    /// Answers the last chunk's transaction.
    pub responder: MessageResponder,
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
            let _ = self.cmd.send(Command::Respond { answer, status });
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
    Frame(Frame),
    ConnectionLost(u64),
    Discard(String),
}

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
    pub async fn send(&self, content_type: &str, body: Bytes) -> Result<(), SendError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Send {
                content_type: content_type.to_string(),
                body,
                reply,
            })
            .map_err(|_| SendError::Closed)?;
        rx.await.unwrap_or(Err(SendError::Closed))
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
            .send(Command::Start {
                remote_path,
                role,
                reply,
            })
            .map_err(|_| StartError::State)?;
        rx.await.unwrap_or(Err(StartError::State))
    }

    /// The next event; `None` after `Closed` was delivered.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// See [`MsrpSender::send`].
    pub async fn send(&self, content_type: &str, body: Bytes) -> Result<(), SendError> {
        self.sender.send(content_type, body).await
    }

    /// A handle for sending from another task.
    pub fn sender(&self) -> MsrpSender {
        self.sender.clone()
    }

    /// End the session; its connection closes when no other session uses it.
    pub fn close(&self) {
        let _ = self.sender.cmd.send(Command::Close);
    }
}

impl Drop for MsrpSession {
    fn drop(&mut self) {
        let _ = self.sender.cmd.send(Command::Close);
    }
}

pub(crate) fn spawn(
    id: String,
    local: MsrpUri,
    registry: Arc<Registry>,
    inbox: mpsc::Receiver<SessionInput>,
) -> MsrpSession {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
    let task = SessionTask {
        id: id.clone(),
        local: local.clone(),
        remote_path: Vec::new(),
        started: false,
        bound: false,
        conn: None,
        reassembler: Reassembler::new(registry.config.max_message_bytes),
        registry,
        cmd_tx: cmd_tx.clone(),
        events: ev_tx,
        queue: VecDeque::new(),
        pending: HashMap::new(),
        sends: HashMap::new(),
        next_send: 1,
        bind_reply: None,
        created: Instant::now(),
    };
    tokio::spawn(task.run(inbox, cmd_rx));
    MsrpSession {
        id,
        local,
        sender: MsrpSender { cmd: cmd_tx },
        events: ev_rx,
    }
}

#[derive(Debug)]
struct Pending {
    send: u64,
    deadline: Instant,
}

#[derive(Debug)]
struct OutgoingSend {
    remaining: usize,
    reply: Option<oneshot::Sender<Result<(), SendError>>>,
}

/// Send id of the empty bind SEND.
const BIND_SEND: u64 = 0;

#[derive(Debug)]
struct SessionTask {
    id: String,
    local: MsrpUri,
    remote_path: Vec<MsrpUri>,
    started: bool,
    bound: bool,
    conn: Option<ConnHandle>,
    reassembler: Reassembler,
    registry: Arc<Registry>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    events: mpsc::Sender<SessionEvent>,
    /// Frames waiting for room in the connection's write queue.
    queue: VecDeque<Bytes>,
    pending: HashMap<String, Pending>,
    sends: HashMap<u64, OutgoingSend>,
    next_send: u64,
    bind_reply: Option<oneshot::Sender<Result<(), StartError>>>,
    created: Instant,
}

enum Flow {
    Continue,
    End(CloseReason),
}

impl SessionTask {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<SessionInput>,
        mut cmds: mpsc::UnboundedReceiver<Command>,
    ) {
        let reason = loop {
            let writer = self.conn.as_ref().map(|c| c.write_tx.clone());
            let want_write = writer.is_some() && !self.queue.is_empty();
            let deadline = self.next_deadline();
            let flow = tokio::select! {
                input = inbox.recv() => match input {
                    Some(i) => self.on_input(i).await,
                    None => Flow::End(CloseReason::Local),
                },
                cmd = cmds.recv() => match cmd {
                    Some(c) => self.on_command(c).await,
                    // Every handle dropped (responders hold senders too, so this means
                    // nothing can answer or send any more).
                    None => Flow::End(CloseReason::Local),
                },
                permit = reserve(writer.as_ref()), if want_write => match permit {
                    Some(p) => {
                        if let Some(b) = self.queue.pop_front() {
                            p.send(WriterCmd::Data(b));
                        }
                        Flow::Continue
                    }
                    None => Flow::End(CloseReason::ConnectionLost),
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.on_timer(Instant::now())
                }
            };
            if let Flow::End(reason) = flow {
                break reason;
            }
        };
        self.shutdown(reason).await;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let tx = self.pending.values().map(|p| p.deadline).min();
        let bind = (!self.bound && self.conn.is_none())
            .then(|| self.created + self.registry.config.bind_timeout);
        match (tx, bind) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timer(&mut self, now: Instant) -> Flow {
        if !self.bound
            && now >= self.created + self.registry.config.bind_timeout
            && self.conn.is_none()
        {
            return Flow::End(CloseReason::BindTimeout);
        }
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for tid in expired {
            if let Some(p) = self.pending.remove(&tid) {
                self.fail_send(p.send, SendError::Timeout);
            }
        }
        Flow::Continue
    }

    async fn emit(&mut self, ev: SessionEvent) {
        let _ = self.events.send(ev).await;
    }

    async fn on_input(&mut self, input: SessionInput) -> Flow {
        match input {
            SessionInput::Bind(conn) => {
                self.conn = Some(conn);
                self.bound = true;
                self.emit(SessionEvent::Bound).await;
                Flow::Continue
            }
            SessionInput::Frame(frame) => self.on_frame(frame).await,
            SessionInput::ConnectionLost(id) => {
                if self.conn.as_ref().is_some_and(|c| c.id == id) {
                    Flow::End(CloseReason::ConnectionLost)
                } else {
                    Flow::Continue
                }
            }
            SessionInput::Discard(mid) => {
                self.reassembler.discard(&mid);
                Flow::Continue
            }
        }
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
                self.remote_path = remote_path;
                match role {
                    SetupRole::Passive => {
                        let _ = reply.send(Ok(()));
                    }
                    SetupRole::Active => self.connect(reply).await,
                }
                Flow::Continue
            }
            Command::Send {
                content_type,
                body,
                reply,
            } => {
                self.send_message(&content_type, body, reply);
                Flow::Continue
            }
            Command::Respond { answer, status } => {
                self.answer(*answer, status);
                Flow::Continue
            }
            Command::Close => Flow::End(CloseReason::Local),
        }
    }

    async fn connect(&mut self, reply: oneshot::Sender<Result<(), StartError>>) {
        let Some(first) = self.remote_path.first() else {
            let _ = reply.send(Err(StartError::EmptyPath));
            return;
        };
        let target = format!(
            "{}:{}",
            first.host_unbracketed(),
            first.port.unwrap_or(2855)
        );
        let timeout = self.registry.config.connect_timeout;
        let stream =
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let _ = reply.send(Err(StartError::Connect(e.to_string())));
                    return;
                }
                Err(_) => {
                    let _ = reply.send(Err(StartError::Connect("timed out".into())));
                    return;
                }
            };
        let conn = connection::spawn(stream, self.registry.clone(), Some(self.id.clone()));
        if !self.registry.bind_active(&self.id, conn.id) {
            let _ = conn.ctl_tx.send(ConnCtl::Unbind(self.id.clone()));
            let _ = reply.send(Err(StartError::State));
            return;
        }
        self.conn = Some(conn);
        // Bind with an empty SEND (RFC 4975 §5.4); its 200 completes start().
        let tid = ids::transaction_id();
        let mut f = Frame::request(
            tid.clone(),
            Method::Send,
            &self.remote_path,
            std::slice::from_ref(&self.local),
        );
        f.push_header("Message-ID", ids::message_id());
        f.push_header("Byte-Range", "1-0/0");
        self.queue.push_back(f.to_bytes());
        self.pending.insert(
            tid,
            Pending {
                send: BIND_SEND,
                deadline: Instant::now() + self.registry.config.transaction_timeout,
            },
        );
        self.bind_reply = Some(reply);
    }

    fn send_message(
        &mut self,
        content_type: &str,
        body: Bytes,
        reply: oneshot::Sender<Result<(), SendError>>,
    ) {
        if self.conn.is_none() || self.remote_path.is_empty() {
            let _ = reply.send(Err(SendError::NotConnected));
            return;
        }
        let send = self.next_send;
        self.next_send += 1;
        let message_id = ids::message_id();
        let chunks = split(&body, self.registry.config.chunk_size);
        let deadline = Instant::now() + self.registry.config.transaction_timeout;
        for chunk in &chunks {
            let tid = ids::transaction_id();
            let mut f = Frame::request(
                tid.clone(),
                Method::Send,
                &self.remote_path,
                std::slice::from_ref(&self.local),
            );
            f.push_header("Message-ID", message_id.clone());
            f.push_header("Byte-Range", chunk.range.to_string());
            f.push_header("Content-Type", content_type);
            f.body = Some(chunk.data.clone());
            f.flag = chunk.flag;
            self.queue.push_back(f.to_bytes());
            self.pending.insert(tid, Pending { send, deadline });
        }
        self.sends.insert(
            send,
            OutgoingSend {
                remaining: chunks.len(),
                reply: Some(reply),
            },
        );
    }

    fn fail_send(&mut self, send: u64, err: SendError) {
        if send == BIND_SEND {
            if let Some(r) = self.bind_reply.take() {
                let _ = r.send(Err(StartError::Bind(err)));
            }
            return;
        }
        if let Some(mut s) = self.sends.remove(&send) {
            if let Some(r) = s.reply.take() {
                let _ = r.send(Err(err));
            }
            self.pending.retain(|_, p| p.send != send);
        }
    }

    async fn on_frame(&mut self, frame: Frame) -> Flow {
        let Some(method) = frame.method().cloned() else {
            self.on_response(&frame).await;
            return Flow::Continue;
        };
        match method {
            Method::Send => self.on_send(frame).await,
            // REPORTs are never answered (RFC 4975 §7.1.2); we do not track delivery.
            Method::Report => {}
            Method::Other(_) => self.respond(&frame, 501),
        }
        Flow::Continue
    }

    async fn on_response(&mut self, frame: &Frame) {
        let Some(p) = self.pending.remove(&frame.transaction_id) else {
            return;
        };
        let code = frame.status_code().unwrap_or(0);
        if p.send == BIND_SEND {
            if code == 200 {
                self.bound = true;
                if let Some(r) = self.bind_reply.take() {
                    let _ = r.send(Ok(()));
                }
                self.emit(SessionEvent::Bound).await;
            } else {
                self.fail_send(BIND_SEND, SendError::Status(code));
            }
            return;
        }
        if code != 200 {
            self.fail_send(p.send, SendError::Status(code));
            return;
        }
        if let Some(s) = self.sends.get_mut(&p.send) {
            s.remaining = s.remaining.saturating_sub(1);
            if s.remaining == 0 {
                if let Some(r) = s.reply.take() {
                    let _ = r.send(Ok(()));
                }
                self.sends.remove(&p.send);
            }
        }
    }

    /// Queue a response unless Failure-Report forbids it (RFC 4975 §7.1.2).
    fn respond(&mut self, request: &Frame, code: u16) {
        let send = match request.failure_report() {
            FailureReport::Yes => true,
            FailureReport::Partial => code != 200,
            FailureReport::No => false,
        };
        if send {
            self.queue
                .push_back(request.response_to(code, None, &self.local).to_bytes());
        }
    }

    async fn on_send(&mut self, frame: Frame) {
        let range = match frame.byte_range() {
            Ok(r) => r,
            Err(_) => return self.respond(&frame, 400),
        };
        let Some(message_id) = frame.message_id().map(str::to_string) else {
            return self.respond(&frame, 400);
        };
        let body = frame.body.clone().unwrap_or_default();
        let Some(content_type) = frame.content_type().map(str::to_string) else {
            // Empty SEND: bind or keep-alive (RFC 4975 §5.4, §7.1): answered, not a message.
            // A body without Content-Type is malformed (RFC 4975 §7.1.1).
            let code = if body.is_empty() { 200 } else { 400 };
            return self.respond(&frame, code);
        };
        match self
            .reassembler
            .accept(&message_id, range, &body, frame.flag)
        {
            Ok(ChunkOutcome::Partial) | Ok(ChunkOutcome::Aborted) => self.respond(&frame, 200),
            Ok(ChunkOutcome::Complete(data)) => {
                let from_path = frame.from_path().unwrap_or_default();
                let total = data.len() as u64;
                let msg = IncomingMessage {
                    message_id: message_id.clone(),
                    content_type,
                    body: data,
                    total_bytes: total,
                    success_report: frame.success_report(),
                    from_path,
                    responder: MessageResponder {
                        cmd: self.cmd_tx.clone(),
                        answer: Some(Box::new(Answer {
                            request: Frame {
                                body: None,
                                ..frame
                            },
                            message_id,
                            total,
                        })),
                    },
                };
                self.emit(SessionEvent::Message(msg)).await;
            }
            Err(e) => self.respond(&frame, e.status()),
        }
    }

    /// The application's verdict on a complete message; a REPORT follows a 200 when the
    /// sender asked for one (RFC 4975 §7.1.2).
    fn answer(&mut self, answer: Answer, status: u16) {
        self.respond(&answer.request, status);
        if status == 200 && answer.request.success_report() {
            let to = answer.request.from_path().unwrap_or_default();
            let mut report = Frame::request(
                ids::transaction_id(),
                Method::Report,
                &to,
                std::slice::from_ref(&self.local),
            );
            report.push_header("Message-ID", answer.message_id);
            report.push_header(
                "Byte-Range",
                ByteRange {
                    start: 1,
                    end: Some(answer.total),
                    total: Some(answer.total),
                }
                .to_string(),
            );
            report.push_header("Status", "000 200 OK");
            self.queue.push_back(report.to_bytes());
        }
    }

    async fn shutdown(mut self, reason: CloseReason) {
        // Flush what is queued (final responses) on a clean local close.
        if reason == CloseReason::Local {
            if let Some(c) = &self.conn {
                for b in self.queue.drain(..) {
                    if c.write_tx.send(WriterCmd::Data(b)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let pending: Vec<u64> = self.pending.values().map(|p| p.send).collect();
        for s in pending {
            self.fail_send(s, SendError::Closed);
        }
        self.registry.remove(&self.id);
        if let Some(c) = &self.conn {
            let _ = c.ctl_tx.send(ConnCtl::Unbind(self.id.clone()));
        }
        let _ = self.events.send(SessionEvent::Closed(reason)).await;
    }
}

async fn reserve(w: Option<&mpsc::Sender<WriterCmd>>) -> Option<mpsc::Permit<'_, WriterCmd>> {
    match w {
        Some(w) => w.reserve().await.ok(),
        None => std::future::pending().await,
    }
}
