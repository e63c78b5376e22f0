//! `mwi-store serve`: opens the store, binds SIP and MSRP, starts the MWI side and dispatches
//! every validated request to its handler (deposit, fetch, page mode, SUBSCRIBE). Stops cleanly
//! on SIGINT/SIGTERM: sessions hang up, in-flight work finishes, the store closes.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fetch_endpoint::{FetchDecision, FetchUri};
use message_store::{Limits, Store, StoreConfig, Synchronous};
use msrp_session::{EndpointConfig, MsrpEndpoint, MsrpTls};
use sip_core::{
    asserted_identity, Aor, AssertedIdentity, Credentials, IncomingRequest, ListenAddr, Method,
    ServerRequest, SipEndpoint, SipEndpointConfig, TrustedProxies,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, MwiMode, SynchronousMode, Transport};
use crate::logging::ReopenableLog;
use crate::mwi::{self, MwiHandle, MwiSettings};
use crate::{deposit, fetch, notifier, page, sip_publish};

/// Everything a request handler needs; shared by every task.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    pub msrp: MsrpEndpoint,
    /// The MSRP-over-TLS endpoint (`msrp.tls_listen`), for `TCP/TLS/MSRP` offers.
    pub msrps: Option<MsrpEndpoint>,
    pub sip: SipEndpoint,
    pub trusted: TrustedProxies,
    pub fetch_uri: FetchUri,
    /// Hosts that mean "this server" in a Request-URI (listen IPs and `sip.local_hosts`).
    local_hosts: Vec<String>,
    pub mwi: MwiHandle,
    /// Mailboxes that just received a message (running fetches pick them up).
    pub deposits: broadcast::Sender<String>,
    /// Cancelled on SIGINT/SIGTERM.
    pub shutdown: CancellationToken,
    next_fetch_id: AtomicU64,
    pub notifier: Option<notifier::Notifier>,
    /// Session and rate limits (`[limits]`).
    pub limits: crate::limits::Limiter,
}

impl App {
    /// True when `host` names this server.
    pub fn is_local_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.local_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// A token unique among the fetches of this process.
    pub fn next_fetch_id(&self) -> u64 {
        self.next_fetch_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The caller's identity (P-Asserted-Identity from a trusted proxy, else From).
    pub fn identity(
        &self,
        request: &sip_core::Request,
        source: std::net::SocketAddr,
    ) -> Option<AssertedIdentity> {
        asserted_identity(request, source, &self.trusted).ok()
    }

    /// A mailbox changed: republish / renotify it.
    pub fn mailbox_changed(&self, mailbox: &str) {
        self.mwi.changed(mailbox);
    }

    /// `Warning` value (RFC 3261 §20.43) with our agent name.
    pub fn warning(&self, text: &str) -> (String, String) {
        (
            "Warning".to_string(),
            format!("399 mwi-store \"{}\"", text.replace('"', "'")),
        )
    }
}

fn store_config(config: &Config) -> StoreConfig {
    let mut sc = StoreConfig::new(&config.store.path);
    sc.synchronous = match config.store.synchronous {
        SynchronousMode::Full => Synchronous::Full,
        SynchronousMode::Normal => Synchronous::Normal,
        SynchronousMode::Off => Synchronous::Off,
    };
    sc.group_commit_max_rows = config.store.group_commit_max_rows;
    sc.group_commit_max_wait = Duration::from_micros(config.store.group_commit_max_wait_us);
    sc.limits = Limits {
        max_message_bytes: config.store.max_message_bytes,
        max_messages_per_mailbox: config.store.max_messages_per_mailbox,
        max_bytes_per_mailbox: config.store.max_bytes_per_mailbox,
        retention_days: (config.store.retention_days > 0).then_some(config.store.retention_days),
        delivered_retention_days: (config.fetch.keep_delivered_days > 0)
            .then_some(config.fetch.keep_delivered_days),
    };
    sc
}

/// Opens the store as the server does (also used by the admin CLI with `release_claims=false`).
pub fn open_store(config: &Config, release_claims: bool) -> anyhow::Result<Store> {
    let mut sc = store_config(config);
    sc.release_claims_on_open = release_claims;
    Store::open(sc).with_context(|| format!("cannot open store {}", config.store.path.display()))
}

fn listen_addr(t: crate::config::TransportAddr) -> ListenAddr {
    match t.transport {
        Transport::Udp => ListenAddr::udp(t.addr),
        Transport::Tcp => ListenAddr::tcp(t.addr),
        Transport::Tls => ListenAddr::tls(t.addr),
    }
}

/// The `[tls]` certificate, key and trust anchors, loaded when a TLS listener needs them.
fn load_tls(config: &Config) -> anyhow::Result<Option<MsrpTls>> {
    if !config.needs_tls()? {
        return Ok(None);
    }
    let server = sip_core::tls::server_config_from_pem(&config.tls.cert, &config.tls.key)
        .context("keys `tls.cert` / `tls.key`")?;
    let client = if config.tls.ca.as_os_str().is_empty() {
        sip_core::tls::client_config(Vec::new())
    } else {
        sip_core::tls::client_config_from_pem(&config.tls.ca)
    }
    .context("key `tls.ca`")?;
    Ok(Some(MsrpTls { server, client }))
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(config: Config, log: Option<ReopenableLog>) -> anyhow::Result<()> {
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_store(&config, true)).await??
    };

    let tls = load_tls(&config)?;
    let msrp_addr = config.msrp_listen()?;
    let msrp_config = EndpointConfig {
        chunk_size: config.msrp.chunk_size,
        max_message_bytes: config.msrp.max_message_bytes,
        transaction_timeout: Duration::from_secs(config.msrp.send_timeout_secs),
        listen_backlog: config.sip.tcp_backlog,
        max_inbound_connections: config.limits.max_msrp_connections,
        limits: msrp_session::DecoderLimits {
            max_body_bytes: config.limits.max_msrp_chunk_bytes,
            ..msrp_session::DecoderLimits::default()
        },
        ..EndpointConfig::default()
    };
    let msrp = MsrpEndpoint::bind(msrp_addr, msrp_config.clone())
        .await
        .with_context(|| format!("cannot listen for MSRP on {msrp_addr}"))?;
    let msrps = match (config.msrp_tls_listen()?, &tls) {
        (Some(addr), Some(tls)) => Some(
            MsrpEndpoint::bind(
                addr,
                EndpointConfig {
                    tls: Some(tls.clone()),
                    ..msrp_config
                },
            )
            .await
            .with_context(|| format!("cannot listen for MSRP over TLS on {addr}"))?,
        ),
        _ => None,
    };

    let publish = config.mwi.mode != MwiMode::Notify;
    let sip_config = SipEndpointConfig {
        listen: config.sip_listen()?.into_iter().map(listen_addr).collect(),
        outbound_proxy: if publish {
            Some(listen_addr(config.mwi_proxy()?))
        } else {
            None
        },
        user_agent: config.sip.user_agent.clone(),
        credentials: (!config.mwi.auth_user.is_empty()).then(|| Credentials {
            username: config.mwi.auth_user.clone(),
            password: config.mwi.auth_password.clone(),
            realm: None,
        }),
        tls: tls.as_ref().map(|t| t.server.clone()),
        udp_receive_buffer: config.sip.udp_receive_buffer_bytes,
        limits: sip_core::Limits {
            max_head_bytes: config.limits.max_sip_head_bytes,
            max_body_bytes: config.limits.max_sip_body_bytes,
            max_connections: config.limits.max_sip_tcp_connections,
            ..sip_core::Limits::default()
        },
        ..SipEndpointConfig::default()
    };
    let (sip, mut incoming) = SipEndpoint::start(sip_config)
        .await
        .context("cannot start SIP")?;

    let mut local_hosts: Vec<String> = sip
        .local_addrs()
        .iter()
        .map(|l| l.addr.ip().to_string())
        .collect();
    local_hosts.extend(config.sip.local_hosts.iter().cloned());
    if sip
        .local_addrs()
        .iter()
        .any(|l| l.addr.ip() == IpAddr::from([127, 0, 0, 1]))
    {
        local_hosts.push("localhost".into());
    }

    let settings = MwiSettings::from_config(&config);
    let tracker = TaskTracker::new();
    let mut publish_tx = None;
    if publish {
        let sender = Arc::new(sip_publish::SipPublishSender::new(sip.clone(), &config));
        let (tx, task) = mwi::spawn_publisher(store.clone(), settings.clone(), sender);
        mwi::spawn_startup_republish(store.clone(), tx.clone(), settings.startup_rate);
        drop(task);
        publish_tx = Some(tx);
    }
    let (notifier, notify_tx) = if config.mwi.mode != MwiMode::Publish {
        let (n, tx) = notifier::Notifier::spawn(store.clone(), settings.clone(), &config);
        (Some(n), Some(tx))
    } else {
        (None, None)
    };

    let (deposits, _) = broadcast::channel(1024);
    let app = Arc::new(App {
        trusted: TrustedProxies::parse(config.sip.trusted_proxies.iter())
            .map_err(|e| anyhow::anyhow!("key `sip.trusted_proxies`: {e}"))?,
        fetch_uri: FetchUri::parse(&config.fetch.uri)
            .map_err(|e| anyhow::anyhow!("key `fetch.uri`: {e}"))?,
        limits: crate::limits::Limiter::new(&config.limits),
        mwi: MwiHandle::new(publish_tx, notify_tx),
        config,
        store,
        msrp,
        msrps,
        sip,
        local_hosts,
        deposits,
        shutdown: CancellationToken::new(),
        next_fetch_id: AtomicU64::new(1),
        notifier,
    });

    spawn_retention(app.clone(), &tracker);
    crate::republish::spawn(app.clone(), &tracker);
    crate::metrics::spawn(app.clone(), &tracker).await?;
    crate::limits::spawn_front_report(
        app.sip.clone(),
        Duration::from_secs(app.config.limits.log_interval_secs),
        app.shutdown.clone(),
    );

    let sip_addrs: Vec<String> = app
        .sip
        .local_addrs()
        .iter()
        .map(|l| l.to_string())
        .collect();
    tracing::info!(
        sip = sip_addrs.join(" "),
        msrp = %app.msrp.local_addr(),
        msrps = app.msrps.as_ref().map(|e| e.local_addr().to_string()).unwrap_or_default(),
        store = %app.config.store.path.display(),
        fetch_uri = %app.config.fetch.uri,
        mwi_mode = ?app.config.mwi.mode,
        mwi_proxy = %app.config.mwi.proxy,
        version = env!("CARGO_PKG_VERSION"),
        "mwi-store started"
    );

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            req = incoming.recv() => match req {
                Some(req) => {
                    let app = app.clone();
                    tracker.spawn(dispatch(app, req));
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT: shutting down");
                break;
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: shutting down");
                break;
            }
            _ = sighup.recv() => {
                match &log {
                    Some(l) => match l.reopen() {
                        Ok(()) => tracing::info!("SIGHUP: log file reopened"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: cannot reopen the log file; still writing to the old one"),
                    },
                    None => tracing::info!("SIGHUP: logging to stderr, nothing to reopen"),
                }
            }
        }
    }

    // Sessions see the token, hang up and release their fetch claims; in-flight store writes
    // complete before their tasks end.
    app.shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some sessions did not end within 5 s of shutdown");
    }
    app.sip.shutdown();
    tracing::info!("mwi-store stopped");
    Ok(())
}

/// Hourly retention purge; the mailboxes it changed are republished.
fn spawn_retention(app: Arc<App>, tracker: &TaskTracker) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = app.shutdown.cancelled() => return,
            }
            match app.store.purge_expired(chrono::Utc::now()).await {
                Ok(p) => {
                    if p.messages > 0 {
                        tracing::info!(
                            purged = p.messages,
                            mailboxes = p.mailboxes.len(),
                            "retention purge"
                        );
                    }
                    for m in &p.mailboxes {
                        app.mailbox_changed(m);
                    }
                }
                Err(e) => tracing::error!(error = %e, "retention purge failed; check the store"),
            }
        }
    });
}

/// The mailbox a request for a user is addressed to (SPEC §1): the Request-URI, unless it
/// names this server — then the RFC 4458 `target` parameter, else the To URI.
pub fn mailbox_of(app: &App, request: &sip_core::Request) -> Option<Aor> {
    let ruri = Aor::from_uri(&request.uri).ok();
    let names_us = ruri
        .as_ref()
        .map_or(true, |a| app.is_local_host(a.host()) || a.user().is_none());
    if !names_us {
        return ruri;
    }
    if let Some(target) = Aor::target_of(&request.uri) {
        return Some(target);
    }
    let to = sip_core::headers::header_value(&request.headers, "To")?;
    let to = Aor::parse(&to).ok()?;
    (!app.is_local_host(to.host())).then_some(to)
}

async fn dispatch(app: Arc<App>, req: IncomingRequest) {
    match req {
        IncomingRequest::Invite(invite) => {
            let request = invite.request();
            let source = invite.source();
            let identity = app.identity(request, source.addr);
            let trusted = app.trusted.contains(source.addr.ip());
            let _session = match app.limits.session(source.addr.ip(), trusted) {
                Ok(permit) => permit,
                Err(why) => return crate::limits::refuse_session(&app, invite, why),
            };
            let decision = fetch_endpoint::decide(
                &sip_core::uri_text(&request.uri),
                &app.fetch_uri,
                trusted,
                identity.as_ref().map(|i| i.aor.to_string()).as_deref(),
            );
            // Each branch boxed: a tokio task is as large as its future's largest state, and a
            // held deposit session would otherwise carry the fetch's and the page mode's too.
            match decision {
                FetchDecision::NotFetch => {
                    Box::pin(deposit::handle_invite(app, invite, identity)).await;
                }
                FetchDecision::Fetch { mailbox } => {
                    Box::pin(fetch::handle_invite(app, invite, mailbox, identity)).await;
                }
                FetchDecision::Forbidden => {
                    let call_id = call_id_of(invite.request());
                    tracing::info!(call_id, peer = %source.addr, "fetch refused: source is not a trusted proxy");
                    crate::chat::refuse(invite, 403, Vec::new());
                }
            }
        }
        IncomingRequest::NonInvite(req) => Box::pin(dispatch_non_invite(app, req)).await,
    }
}

async fn dispatch_non_invite(app: Arc<App>, req: ServerRequest) {
    match req.method() {
        Method::Message => page::handle_message(app, req).await,
        Method::Subscribe => match &app.notifier {
            Some(n) => n.handle_subscribe(&app, req).await,
            None => {
                let _ = req
                    .reply(489, vec![("Allow-Events".into(), String::new())], None)
                    .await;
            }
        },
        _ => {
            let _ = req
                .reply(405, vec![("Allow".into(), sip_core::ALLOW.into())], None)
                .await;
        }
    }
}

/// Call-ID of a request, for logs.
pub fn call_id_of(request: &sip_core::Request) -> String {
    sip_core::headers::header_value(&request.headers, "Call-ID").unwrap_or_default()
}
