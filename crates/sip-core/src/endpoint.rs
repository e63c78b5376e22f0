//! The endpoint the binary drives: binds the listeners (UDP, TCP, TLS) behind the validation front, runs
//! rsipstack's transaction and dialog layers, and turns every new server transaction into an
//! [`IncomingRequest`] — except OPTIONS (answered here, RFC 3261 §11.2) and requests inside a
//! known dialog: rsipstack's dialogs (subscriptions, INVITE dialogs until their ACK) handle
//! theirs, and an ACKed INVITE dialog is answered from sip-core's own state
//! ([`crate::server_invite`]) before an unknown dialog gets 481.

use crate::error::StartError;
use crate::framing::Limits;
use crate::server_invite::{
    in_dialog_request, register_invite, run_invite_states, InviteEntries, ServerInvite,
};
use crate::server_request::ServerRequest;
use crate::transport::{
    start_tcp_front, start_tls_front, start_udp_front, FrontStats, RSIPSTACK_UDP_BUF,
};
use crate::validate::ValidationFront;
use rsipstack::dialog::dialog::Dialog;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::EndpointBuilder;
use rsipstack::transport::transport_layer::{DomainResolver, TransportLayer};
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The transports we listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over TLS (RFC 3261 §26.2.1); we accept it, we do not connect out with it.
    Tls,
}

impl Transport {
    /// The transport token of a Via (RFC 3261 §20.42).
    pub(crate) fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    fn rsip(self) -> rsipstack::sip::Transport {
        match self {
            Transport::Udp => rsipstack::sip::Transport::Udp,
            Transport::Tcp => rsipstack::sip::Transport::Tcp,
            Transport::Tls => rsipstack::sip::Transport::Tls,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// A transport and socket address (IPv4 or IPv6; port 0 picks a free port when listening).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl ListenAddr {
    pub fn udp(addr: SocketAddr) -> Self {
        ListenAddr {
            transport: Transport::Udp,
            addr,
        }
    }

    pub fn tcp(addr: SocketAddr) -> Self {
        ListenAddr {
            transport: Transport::Tcp,
            addr,
        }
    }

    pub fn tls(addr: SocketAddr) -> Self {
        ListenAddr {
            transport: Transport::Tls,
            addr,
        }
    }

    pub(crate) fn sip_addr(&self) -> SipAddr {
        SipAddr {
            r#type: Some(self.transport.rsip()),
            addr: self.addr.into(),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// RFC 3261 timers; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Digest credentials used once when a PUBLISH/NOTIFY is challenged with 401/407.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub realm: Option<String>,
}

/// Everything [`SipEndpoint::start`] needs.
#[derive(Debug, Clone)]
pub struct SipEndpointConfig {
    pub listen: Vec<ListenAddr>,
    /// Every out-of-dialog request we send, and every in-dialog request to a domain name,
    /// goes here; we never use DNS.
    pub outbound_proxy: Option<ListenAddr>,
    /// User-Agent / Server header value.
    pub user_agent: String,
    /// User part of our Contact URIs.
    pub contact_user: String,
    pub timers: Timers,
    pub limits: Limits,
    pub credentials: Option<Credentials>,
    /// Capacity of the incoming-request channel; when full, new requests get 503.
    pub incoming_capacity: usize,
    /// Certificate and key for `tls` listeners (see [`crate::tls`]); required when one is
    /// configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Receive buffer asked for on each UDP socket, bytes (0: the system default).
    pub udp_receive_buffer: usize,
}

impl Default for SipEndpointConfig {
    fn default() -> Self {
        SipEndpointConfig {
            listen: Vec::new(),
            outbound_proxy: None,
            user_agent: concat!("mwi-store/", env!("CARGO_PKG_VERSION")).to_string(),
            contact_user: "mwi-store".to_string(),
            timers: Timers::default(),
            limits: Limits::default(),
            credentials: None,
            incoming_capacity: 1024,
            tls: None,
            udp_receive_buffer: 4 * 1024 * 1024,
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A new request for the application.
#[derive(Debug)]
pub enum IncomingRequest {
    Invite(ServerInvite),
    /// Any other method (MESSAGE, SUBSCRIBE, PUBLISH, NOTIFY, REGISTER, INFO, …), including
    /// SUBSCRIBE refreshes inside an existing subscription.
    NonInvite(ServerRequest),
}

/// Shared state of one endpoint.
pub(crate) struct Shared {
    pub(crate) endpoint: rsipstack::transaction::Endpoint,
    pub(crate) dialogs: DialogLayer,
    pub(crate) local: Vec<ListenAddr>,
    pub(crate) config: SipEndpointConfig,
    pub(crate) stats: Arc<FrontStats>,
    pub(crate) cancel: CancellationToken,
    /// Where every server INVITE dialog reports its states (see [`run_invite_states`]).
    pub(crate) invite_states: rsipstack::dialog::dialog::DialogStateSender,
    pub(crate) invite_dialogs: InviteEntries,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("local", &self.local)
            .finish()
    }
}

impl Shared {
    /// Our Contact URI for requests that arrived over `transport`.
    pub(crate) fn contact_uri(&self, transport: Transport) -> String {
        let local = self
            .local
            .iter()
            .find(|l| l.transport == transport)
            .or_else(|| self.local.first());
        let (addr, transport) = match local {
            Some(l) => (l.addr, l.transport),
            None => return format!("sip:{}@127.0.0.1", self.config.contact_user),
        };
        let host = match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        };
        let suffix = match transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        };
        format!(
            "sip:{}@{host}:{}{suffix}",
            self.config.contact_user,
            addr.port()
        )
    }

    pub(crate) fn local_for(&self, transport: Transport) -> Option<ListenAddr> {
        self.local
            .iter()
            .find(|l| l.transport == transport)
            .copied()
    }
}

/// The running endpoint. Cheap to clone; dropping the last clone does not stop it — call
/// [`SipEndpoint::shutdown`].
#[derive(Clone)]
pub struct SipEndpoint {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for SipEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipEndpoint")
            .field("local", &self.shared.local)
            .finish()
    }
}

/// Maps every domain target to the outbound proxy; never DNS (rsipstack would otherwise
/// resolve, and a Route header cannot be added to its requests).
struct ProxyResolver {
    proxy: Option<SipAddr>,
}

#[async_trait::async_trait]
impl DomainResolver for ProxyResolver {
    async fn resolve(&self, target: &SipAddr) -> rsipstack::Result<SipAddr> {
        match &self.proxy {
            Some(p) => Ok(p.clone()),
            None => Err(rsipstack::Error::DnsResolutionError(format!(
                "no outbound proxy configured for {target}"
            ))),
        }
    }
}

impl SipEndpoint {
    /// Bind every listen address, start the fronts and the stack; returns the endpoint and the
    /// stream of validated new requests.
    pub async fn start(
        config: SipEndpointConfig,
    ) -> Result<(SipEndpoint, mpsc::Receiver<IncomingRequest>), StartError> {
        if config.listen.is_empty() {
            return Err(StartError::NoListener);
        }
        if let Some(l) = config.listen.iter().find(|l| l.transport == Transport::Tls) {
            if config.tls.is_none() {
                return Err(StartError::NoTlsCertificate(*l));
            }
        }
        let cancel = CancellationToken::new();
        let stats = Arc::new(FrontStats::default());
        let server = config.user_agent.clone();
        let udp_front = Arc::new(
            ValidationFront::new(config.limits, server.clone()).with_max_message(RSIPSTACK_UDP_BUF),
        );
        let tcp_front = Arc::new(ValidationFront::new(config.limits, server));
        let resolver = ProxyResolver {
            proxy: config.outbound_proxy.map(|p| p.sip_addr()),
        };
        let transport_layer =
            TransportLayer::new_with_domain_resolver(cancel.child_token(), Box::new(resolver));
        let mut local = Vec::new();
        for l in &config.listen {
            if l.transport == Transport::Udp {
                let socket = start_udp_front(
                    l.addr,
                    udp_front.clone(),
                    stats.clone(),
                    cancel.child_token(),
                    config.udp_receive_buffer,
                )
                .await
                .map_err(|e| StartError::Bind(*l, e))?;
                let conn = UdpConnection::from_socket(socket, None, Some(cancel.child_token()))
                    .await
                    .map_err(|e| StartError::Bind(*l, std::io::Error::other(e.to_string())))?;
                let bound = conn
                    .get_addr()
                    .get_socketaddr()
                    .map_err(|e| StartError::Bind(*l, std::io::Error::other(e.to_string())))?;
                transport_layer.add_transport(SipConnection::Udp(conn));
                local.push(ListenAddr::udp(bound));
            }
        }
        let option = EndpointOption {
            t1: config.timers.t1,
            t2: config.timers.t2,
            t4: config.timers.t4,
            t1x64: config.timers.t1 * 64,
            ..EndpointOption::default()
        };
        let endpoint = EndpointBuilder::new()
            .with_user_agent(&config.user_agent)
            .with_option(option)
            .with_cancel_token(cancel.child_token())
            .with_transport_layer(transport_layer)
            .build();
        for l in &config.listen {
            let inner = endpoint.inner.clone();
            let add: crate::transport::AddConnection =
                Arc::new(move |c| inner.transport_layer.add_connection(c));
            let bound = match (l.transport, &config.tls) {
                (Transport::Udp, _) => continue,
                (Transport::Tcp, _) => {
                    start_tcp_front(
                        l.addr,
                        tcp_front.clone(),
                        stats.clone(),
                        add,
                        cancel.child_token(),
                    )
                    .await
                }
                (Transport::Tls, Some(tls)) => {
                    start_tls_front(
                        l.addr,
                        tcp_front.clone(),
                        stats.clone(),
                        add,
                        tls.clone(),
                        cancel.child_token(),
                    )
                    .await
                }
                (Transport::Tls, None) => return Err(StartError::NoTlsCertificate(*l)),
            }
            .map_err(|e| StartError::Bind(*l, e))?;
            local.push(ListenAddr {
                transport: l.transport,
                addr: bound,
            });
        }
        let incoming = endpoint.incoming_transactions().map_err(|e| {
            StartError::Bind(
                config
                    .listen
                    .first()
                    .copied()
                    .unwrap_or(ListenAddr::udp(SocketAddr::from(([0, 0, 0, 0], 0)))),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let dialogs = DialogLayer::new(endpoint.inner.clone());
        let (app_tx, app_rx) = mpsc::channel(config.incoming_capacity.max(1));
        let (invite_states, invite_states_rx) = dialogs.new_dialog_state_channel();
        let shared = Arc::new(Shared {
            endpoint,
            dialogs,
            local,
            config,
            stats,
            cancel,
            invite_states,
            invite_dialogs: InviteEntries::default(),
        });
        tokio::spawn(run_invite_states(shared.clone(), invite_states_rx));
        let inner = shared.endpoint.inner.clone();
        tokio::spawn(async move {
            inner.serve().await.ok();
        });
        tokio::spawn(dispatch(shared.clone(), incoming, app_tx));
        Ok((SipEndpoint { shared }, app_rx))
    }

    /// The bound addresses (ports resolved when 0 was configured).
    pub fn local_addrs(&self) -> Vec<ListenAddr> {
        self.shared.local.clone()
    }

    /// (delivered, rejected statelessly, dropped) counts of the validation front.
    pub fn front_stats(&self) -> (u64, u64, u64) {
        self.shared.stats.snapshot()
    }

    /// Stop listening and stop every transaction.
    pub fn shutdown(&self) {
        self.shared.endpoint.shutdown();
        self.shared.cancel.cancel();
    }
}

fn source_of(tx: &Transaction) -> Source {
    let remote = tx.connection.as_ref().and_then(|c| {
        let transport = match c {
            SipConnection::Udp(_) => Transport::Udp,
            SipConnection::Channel(ch)
                if ch.get_addr().r#type == Some(rsipstack::sip::Transport::Tls) =>
            {
                Transport::Tls
            }
            _ => Transport::Tcp,
        };
        c.get_remote_addr()
            .and_then(|a| a.get_socketaddr().ok())
            .map(|addr| Source { transport, addr })
    });
    remote.unwrap_or(Source {
        transport: Transport::Udp,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
    })
}

async fn dispatch(
    shared: Arc<Shared>,
    mut incoming: rsipstack::transaction::TransactionReceiver,
    app: mpsc::Sender<IncomingRequest>,
) {
    while let Some(tx) = incoming.recv().await {
        handle_transaction(&shared, tx, &app).await;
    }
}

async fn handle_transaction(
    shared: &Arc<Shared>,
    mut tx: Transaction,
    app: &mpsc::Sender<IncomingRequest>,
) {
    let source = source_of(&tx);
    let method = tx.original.method;
    if let Some(dialog) = shared.dialogs.match_dialog(&tx) {
        match dialog {
            Dialog::ServerSubscription(sub) if method == Method::Subscribe => {
                let request = ServerRequest::new(tx, source, shared.clone(), Some(sub));
                offer(app, IncomingRequest::NonInvite(request)).await;
            }
            Dialog::ServerSubscription(_) => {
                // Only SUBSCRIBE refreshes belong in a subscription we serve (RFC 6665 §4.2).
                if method != Method::Ack {
                    tx.reply_with(
                        StatusCode::MethodNotAllowed,
                        vec![Header::Allow("SUBSCRIBE".into())],
                        None,
                    )
                    .await
                    .ok();
                }
            }
            mut other => {
                tokio::spawn(async move {
                    if let Err(e) = other.handle(&mut tx).await {
                        debug!(error = %e, "in-dialog request failed");
                    }
                });
            }
        }
        return;
    }
    // Established INVITE dialogs are ours alone once ACKed (see `server_invite`).
    let Some(mut tx) = in_dialog_request(shared, tx) else {
        return;
    };
    let has_to_tag = tx
        .original
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .is_some();
    match method {
        Method::Ack => {}
        _ if has_to_tag => {
            // RFC 3261 §12.2.2: an unknown dialog.
            tx.reply(StatusCode::CallTransactionDoesNotExist).await.ok();
        }
        Method::Options => {
            let headers = vec![
                Header::Allow(crate::ALLOW.into()),
                Header::Accept("application/sdp".into()),
                Header::Other("Allow-Events".into(), "message-summary".into()),
            ];
            tx.reply_with(StatusCode::OK, headers, None).await.ok();
        }
        Method::Invite => {
            let contact = shared.contact_uri(source.transport);
            let contact_uri = match rsipstack::sip::Uri::try_from(contact.as_str()) {
                Ok(u) => u,
                Err(_) => {
                    tx.reply(StatusCode::ServerInternalError).await.ok();
                    return;
                }
            };
            let dialog = match shared.dialogs.get_or_create_server_invite(
                &tx,
                shared.invite_states.clone(),
                None,
                Some(contact_uri),
            ) {
                Ok(d) => d,
                Err(e) => {
                    debug!(error = %e, "cannot create INVITE dialog");
                    tx.reply(StatusCode::BadRequest).await.ok();
                    return;
                }
            };
            let events = register_invite(shared, dialog.clone(), tx.connection.as_ref());
            let request = tx.original.clone();
            let tu_sender = tx.tu_sender.clone();
            let mut handler = dialog.clone();
            tokio::spawn(async move {
                if let Err(e) = handler.handle(&mut tx).await {
                    debug!(error = %e, "INVITE transaction ended with an error");
                }
            });
            let invite =
                ServerInvite::new(request, source, dialog, tu_sender, events, shared.clone());
            offer(app, IncomingRequest::Invite(invite)).await;
        }
        _ => {
            let request = ServerRequest::new(tx, source, shared.clone(), None);
            offer(app, IncomingRequest::NonInvite(request)).await;
        }
    }
}

/// Hand a request to the application; when it cannot take more, the request is dropped here
/// and its `Drop` answers 503 (RFC 3261 §21.5.4).
async fn offer(app: &mpsc::Sender<IncomingRequest>, request: IncomingRequest) {
    if let Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) =
        app.try_send(request)
    {
        debug!("application queue full or closed; answering 503");
        match r {
            IncomingRequest::Invite(i) => i.overloaded(),
            IncomingRequest::NonInvite(n) => n.overloaded(),
        }
    }
}
