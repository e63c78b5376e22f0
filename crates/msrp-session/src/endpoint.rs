//! The MSRP endpoint: one TCP listener (or TLS listener, `msrps`, RFC 4975 §14.2), the table
//! of live sessions, and session creation.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_channel::mpsc;
use tokio::net::TcpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::codec::DecoderLimits;
use crate::connection::{self, ConnHandle};
use crate::frame::Frame;
use crate::ids;
use crate::session::{self, MsrpSession, SessionInput};
use crate::uri::MsrpUri;

/// Endpoint settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Host put in `a=path` URIs; default: the bound IP address.
    pub advertised_host: Option<String>,
    /// Size of the chunks outgoing messages are cut into.
    pub chunk_size: usize,
    /// Decoder limits (header block, one chunk's body).
    pub limits: DecoderLimits,
    /// Bytes of unfinished incoming messages a session may hold (answer 413 beyond).
    pub max_message_bytes: u64,
    /// How long an outgoing SEND waits for its response.
    pub transaction_timeout: Duration,
    /// How long a connection may stay without a bound session, and a passive session
    /// without a connection.
    pub bind_timeout: Duration,
    /// Timeout for connecting out (active role).
    pub connect_timeout: Duration,
    /// TCP listen backlog (bursts of callers, see SPEC §5).
    pub listen_backlog: u32,
    /// Accepted connections open at once (TLS handshakes included). Beyond it a new one is
    /// closed as soon as it is accepted: a flood of idle sockets cannot take every file
    /// descriptor (each also waits `bind_timeout` for a session). Our own outgoing
    /// connections (active role) are not counted.
    pub max_inbound_connections: usize,
    /// TLS: the endpoint then listens with TLS and its paths are `msrps` URIs.
    pub tls: Option<MsrpTls>,
}

/// TLS settings of an `msrps` endpoint (see `sip_core::tls` in the binary for PEM loading).
#[derive(Debug, Clone)]
pub struct MsrpTls {
    /// Certificate and key presented to peers that connect to us (passive role).
    pub server: Arc<rustls::ServerConfig>,
    /// Trust anchors for peers we connect to (active role); their certificate must match
    /// the host of their `msrps` URI (RFC 4975 §14.2).
    pub client: Arc<rustls::ClientConfig>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            advertised_host: None,
            chunk_size: 2048,
            limits: DecoderLimits::default(),
            max_message_bytes: 4 * 1024 * 1024,
            transaction_timeout: Duration::from_secs(30),
            bind_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            listen_backlog: 4096,
            max_inbound_connections: 16_384,
            tls: None,
        }
    }
}

#[derive(Debug)]
struct Entry {
    inbox: mpsc::Sender<SessionInput>,
    bound: Option<u64>,
}

/// Result of routing one inbound frame.
#[derive(Debug)]
pub(crate) enum RouteOutcome {
    /// For the session's inbox (after a bind when `newly_bound`); `inbox` is a handle to it
    /// when the connection asked for one.
    Deliver {
        frame: Frame,
        newly_bound: bool,
        inbox: Option<mpsc::Sender<SessionInput>>,
    },
    /// A response on a connection the session does not use: nobody waits for it.
    Dropped,
    UnknownSession(Frame),
    BoundElsewhere(Frame),
}

/// Live sessions by id, shared by the listener, connections and session tasks.
#[derive(Debug)]
pub(crate) struct Registry {
    pub config: EndpointConfig,
    sessions: Mutex<HashMap<String, Entry>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `frame` goes (binding the session to `conn` on its first request).
    pub(crate) fn route(
        &self,
        session_id: &str,
        conn: &ConnHandle,
        frame: Frame,
        need_inbox: bool,
    ) -> RouteOutcome {
        let is_request = frame.method().is_some();
        let mut map = self.lock();
        let Some(entry) = map.get_mut(session_id) else {
            return RouteOutcome::UnknownSession(frame);
        };
        let newly_bound = match entry.bound {
            Some(c) if c == conn.id => false,
            Some(_) => return RouteOutcome::BoundElsewhere(frame),
            None if is_request => {
                entry.bound = Some(conn.id);
                true
            }
            None => return RouteOutcome::Dropped,
        };
        RouteOutcome::Deliver {
            frame,
            newly_bound,
            inbox: need_inbox.then(|| entry.inbox.clone()),
        }
    }

    /// Bind a session to a connection it opened itself.
    pub(crate) fn bind_active(&self, session_id: &str, conn_id: u64) -> bool {
        match self.lock().get_mut(session_id) {
            Some(e) if e.bound.is_none() => {
                e.bound = Some(conn_id);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn remove(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the session is (still) bound to this connection.
    pub(crate) fn is_bound_to(&self, session_id: &str, conn_id: u64) -> bool {
        self.lock()
            .get(session_id)
            .is_some_and(|e| e.bound == Some(conn_id))
    }

    /// A handle to a session's inbox.
    pub(crate) fn inbox(&self, session_id: &str) -> Option<mpsc::Sender<SessionInput>> {
        self.lock().get(session_id).map(|e| e.inbox.clone())
    }
}

#[derive(Debug)]
struct EndpointInner {
    registry: Arc<Registry>,
    local_addr: SocketAddr,
    host: String,
    accept_task: JoinHandle<()>,
    /// One permit per accepted connection open now, `max_inbound` in all.
    inbound: Arc<Semaphore>,
    max_inbound: usize,
    /// Connections closed at accept because `max_inbound_connections` were open.
    refused: Arc<AtomicU64>,
}

impl Drop for EndpointInner {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// An MSRP listener and session factory. Cheap to clone; the listener stops when the last
/// clone is dropped (live sessions keep their connections).
#[derive(Debug, Clone)]
pub struct MsrpEndpoint {
    inner: Arc<EndpointInner>,
}

impl MsrpEndpoint {
    /// Listen on `addr` (port 0 picks one).
    pub async fn bind(addr: SocketAddr, config: EndpointConfig) -> io::Result<MsrpEndpoint> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(config.listen_backlog)?;
        let local_addr = listener.local_addr()?;
        let host = match &config.advertised_host {
            Some(h) => h.clone(),
            None if local_addr.is_ipv6() => format!("[{}]", local_addr.ip()),
            None => local_addr.ip().to_string(),
        };
        let registry = Arc::new(Registry {
            config,
            sessions: Mutex::new(HashMap::new()),
        });
        let reg = registry.clone();
        let acceptor = reg
            .config
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server.clone()));
        let max_inbound = reg.config.max_inbound_connections.max(1);
        let inbound = Arc::new(Semaphore::new(max_inbound));
        let refused = Arc::new(AtomicU64::new(0));
        let (slots, refusals) = (inbound.clone(), refused.clone());
        let accept_task = tokio::spawn(async move {
            // Warn once per spell of refusals, not once per connection of a flood.
            let mut refusing = false;
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            refusals.fetch_add(1, Ordering::Relaxed);
                            if !refusing {
                                refusing = true;
                                tracing::warn!(%peer, max = max_inbound, "MSRP connection refused: \
                                    max_inbound_connections are open (raise msrp.max_connections \
                                    if they are real callers)");
                            }
                            drop(stream);
                            continue;
                        };
                        refusing = false;
                        tracing::debug!(%peer, "MSRP connection accepted");
                        match &acceptor {
                            None => {
                                connection::spawn(stream, reg.clone(), None, Some(slot));
                            }
                            Some(acceptor) => {
                                tokio::spawn(accept_tls(
                                    acceptor.clone(),
                                    stream,
                                    peer,
                                    reg.clone(),
                                    slot,
                                ));
                            }
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "MSRP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(MsrpEndpoint {
            inner: Arc::new(EndpointInner {
                registry,
                local_addr,
                host,
                accept_task,
                inbound,
                max_inbound,
                refused,
            }),
        })
    }

    /// Accepted connections open now.
    pub fn inbound_connections(&self) -> usize {
        self.inner
            .max_inbound
            .saturating_sub(self.inner.inbound.available_permits())
    }

    /// Connections closed at accept so far because `max_inbound_connections` were open.
    pub fn refused_connections(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// True when this endpoint speaks TLS (its paths are `msrps`).
    pub fn is_tls(&self) -> bool {
        self.inner.registry.config.tls.is_some()
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// A new session with a fresh id; its `local_path()` goes into `a=path`. It accepts a
    /// binding connection from now on, even before `start`.
    pub fn create_session(&self) -> MsrpSession {
        let id = ids::session_id();
        let local = MsrpUri::new(
            self.is_tls(),
            self.inner.host.clone(),
            self.inner.local_addr.port(),
            id.clone(),
        );
        let (inbox_tx, inbox_rx) = mpsc::channel(session::INBOX_CAPACITY);
        self.inner.registry.lock().insert(
            id.clone(),
            Entry {
                inbox: inbox_tx,
                bound: None,
            },
        );
        session::spawn(id, local, self.inner.registry.clone(), inbox_rx)
    }
}

/// The server side of the TLS handshake, off the accept loop, bounded by the connect timeout
/// so a silent socket cannot hold a task.
async fn accept_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    registry: Arc<Registry>,
    slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let timeout = registry.config.connect_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            connection::spawn_tls(tls, registry, None, Some(slot));
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "MSRP TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "MSRP TLS handshake timed out"),
    }
}

#[cfg(test)]
impl Registry {
    /// A registry with one session whose inbox is `inbox` (tests drive it by hand).
    pub(crate) fn with_session(session_id: &str, inbox: mpsc::Sender<SessionInput>) -> Registry {
        let registry = Registry {
            config: EndpointConfig::default(),
            sessions: Mutex::new(HashMap::new()),
        };
        registry
            .lock()
            .insert(session_id.to_string(), Entry { inbox, bound: None });
        registry
    }
}
