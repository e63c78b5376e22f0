//! Prometheus metrics: process-wide counters that the handlers bump with one call, rendered in
//! the text exposition format (version 0.0.4) by a small HTTP/1.1 responder at
//! `GET /metrics` on `metrics.listen` (off by default).
//!
//! The responder is hand-rolled rather than a web framework: it answers one route on a
//! management port, reads at most [`MAX_REQUEST_BYTES`] per request with a deadline, serves at
//! most [`MAX_CONNECTIONS`] scrapes at a time and closes every connection after its response,
//! so no client can hold memory or tasks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use message_store::{
    AtomicHistogram, Histogram, Source, StoreStats, WriterStats, COMMIT_MICROS_BOUNDS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::server::App;

/// A scrape request larger than this is refused (431).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Scrapes served at the same time; more connections are closed unanswered.
pub const MAX_CONNECTIONS: usize = 8;
/// A scraper must send its request head within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// After answering, at most this much further input is read and dropped, for at most this long.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// The process-wide counters.
pub static METRICS: Metrics = Metrics::new();

/// Counters and gauges kept by the handlers (the store's figures are read at scrape time).
#[derive(Debug)]
pub struct Metrics {
    deposit_sessions: AtomicU64,
    fetch_sessions: AtomicU64,
    active_sessions: AtomicI64,
    stored_msrp: AtomicU64,
    stored_sip_message: AtomicU64,
    stored_bytes: AtomicU64,
    /// PUBLISH final responses by status; `None` is a transaction timeout.
    publishes: Mutex<BTreeMap<Option<u16>, u64>>,
    notifies: AtomicU64,
    delivered: AtomicU64,
    /// Requests answered with a refusal, by what was refused and the status sent.
    refusals: Mutex<BTreeMap<(Refused, u16), u64>>,
    /// MSRP deposits, from the read that completed a message to its 200, in µs.
    msrp_answer_micros: LazyLock<AtomicHistogram>,
}

fn latency_histogram() -> AtomicHistogram {
    AtomicHistogram::new(COMMIT_MICROS_BOUNDS)
}

/// What a refusal turned away, the `what` label of `mwi_store_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refused {
    /// A chat INVITE (deposit or fetch): no usable From or offer, untrusted source, unknown
    /// mailbox, mailbox full, session limits, the caller's rate.
    ChatInvite,
    /// One message: an MSRP SEND in a deposit session or a SIP MESSAGE (type, size, quota,
    /// rate, malformed).
    Message,
    /// A SUBSCRIBE to message-summary.
    Subscribe,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::ChatInvite => "chat-invite",
            Refused::Message => "message",
            Refused::Subscribe => "subscribe",
        }
    }
}

/// An MSRP session (deposit or fetch) in progress; the active-sessions gauge drops when this
/// is dropped, however the handler ends.
#[derive(Debug)]
#[must_use = "the session counts as active only while this guard lives"]
pub struct ActiveSession {
    metrics: &'static Metrics,
}

impl Drop for ActiveSession {
    fn drop(&mut self) {
        self.metrics.active_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub const fn new() -> Self {
        Self {
            deposit_sessions: AtomicU64::new(0),
            fetch_sessions: AtomicU64::new(0),
            active_sessions: AtomicI64::new(0),
            stored_msrp: AtomicU64::new(0),
            stored_sip_message: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            publishes: Mutex::new(BTreeMap::new()),
            refusals: Mutex::new(BTreeMap::new()),
            notifies: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            msrp_answer_micros: LazyLock::new(latency_histogram),
        }
    }

    fn enter(&'static self, counter: &AtomicU64) -> ActiveSession {
        counter.fetch_add(1, Ordering::Relaxed);
        self.active_sessions.fetch_add(1, Ordering::Relaxed);
        ActiveSession { metrics: self }
    }

    /// A deposit chat session was answered.
    pub fn deposit_session(&'static self) -> ActiveSession {
        self.enter(&self.deposit_sessions)
    }

    /// A fetch session was answered.
    pub fn fetch_session(&'static self) -> ActiveSession {
        self.enter(&self.fetch_sessions)
    }

    /// An MSRP message was answered 200 after its commit, `took` after its last byte was read:
    /// the latency its sender saw, less the network.
    pub fn msrp_answered(&self, took: Duration) {
        self.msrp_answer_micros.observe_micros(took);
    }

    /// A message of `bytes` was committed to the store.
    pub fn stored(&self, source: Source, bytes: usize) {
        let counter = match source {
            Source::Msrp => &self.stored_msrp,
            Source::SipMessage => &self.stored_sip_message,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.stored_bytes
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// A PUBLISH ended with `status`, or timed out (`None`).
    pub fn publish_outcome(&self, status: Option<u16>) {
        bump(&self.publishes, status);
    }

    /// A request of kind `what` was refused with `status` (SIP, or MSRP for a SEND).
    pub fn refused(&self, what: Refused, status: u16) {
        bump(&self.refusals, (what, status));
    }

    /// A NOTIFY was sent.
    pub fn notify_sent(&self) {
        self.notifies.fetch_add(1, Ordering::Relaxed);
    }

    /// A fetch delivered `n` messages (acknowledged by the fetcher).
    pub fn delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text: these counters, the store writer's figures, the MSRP listeners'
    /// connections and, when readable, the store's current contents.
    pub fn render(
        &self,
        writer: &WriterStats,
        held: Option<&StoreStats>,
        msrp: MsrpConnections,
    ) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        gauge(
            o,
            "mwi_store_msrp_connections",
            "MSRP connections accepted and open now (every MSRP listener).",
            msrp.open,
        );
        counter(
            o,
            "mwi_store_msrp_connections_refused_total",
            "MSRP connections closed at accept: limits.max_msrp_connections were open.",
            msrp.refused,
        );
        family(
            o,
            "mwi_store_build_info",
            "gauge",
            "Version of the running server.",
        );
        line(
            o,
            "mwi_store_build_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
            1,
        );
        counter(
            o,
            "mwi_store_deposit_sessions_total",
            "Deposit chat sessions answered.",
            load(&self.deposit_sessions),
        );
        counter(
            o,
            "mwi_store_fetch_sessions_total",
            "Fetch sessions answered.",
            load(&self.fetch_sessions),
        );
        family(
            o,
            "mwi_store_active_sessions",
            "gauge",
            "MSRP sessions (deposit and fetch) in progress.",
        );
        line(
            o,
            "mwi_store_active_sessions",
            "",
            self.active_sessions.load(Ordering::Relaxed),
        );
        family(
            o,
            "mwi_store_stored_messages_total",
            "counter",
            "Messages committed to the store, by how they arrived.",
        );
        line(
            o,
            "mwi_store_stored_messages_total",
            "source=\"msrp\"",
            load(&self.stored_msrp),
        );
        line(
            o,
            "mwi_store_stored_messages_total",
            "source=\"sip-message\"",
            load(&self.stored_sip_message),
        );
        counter(
            o,
            "mwi_store_stored_bytes_total",
            "Body bytes committed to the store.",
            load(&self.stored_bytes),
        );
        counter(
            o,
            "mwi_store_delivered_messages_total",
            "Messages delivered to a fetcher and acknowledged.",
            load(&self.delivered),
        );
        counter(
            o,
            "mwi_store_notifies_total",
            "NOTIFY requests sent to subscribers.",
            load(&self.notifies),
        );
        labelled_counter(
            o,
            "mwi_store_publishes_total",
            "PUBLISH transactions by final status (timeout: no answer).",
            &self.publishes,
            |status| match status {
                Some(s) => format!("status=\"{s}\""),
                None => "status=\"timeout\"".to_string(),
            },
        );
        labelled_counter(
            o,
            "mwi_store_refusals_total",
            "Requests refused, by what (chat-invite, message, subscribe) and the status sent.",
            &self.refusals,
            |(what, status)| format!("what=\"{}\",status=\"{status}\"", what.label()),
        );
        counter(
            o,
            "mwi_store_store_commits_total",
            "Store transactions committed.",
            writer.commits,
        );
        counter(
            o,
            "mwi_store_store_failed_commits_total",
            "Store transactions that failed to commit.",
            writer.failed_commits,
        );
        counter(
            o,
            "mwi_store_store_wal_checkpoints_total",
            "WAL checkpoints run beside the writer (its commits do not wait for them).",
            writer.background_checkpoints,
        );
        counter(
            o,
            "mwi_store_log_lines_dropped_total",
            "Log lines dropped because the log writer fell behind (queue full).",
            crate::logging::dropped_lines(),
        );
        histogram(
            o,
            "mwi_store_msrp_answer_seconds",
            "MSRP deposits: from the read that completed a message to its 200, sent after the \
             durable commit.",
            &self.msrp_answer_micros.snapshot(),
            1e6,
        );
        histogram(
            o,
            "mwi_store_store_commit_duration_seconds",
            "Store commit latency, BEGIN to durable COMMIT.",
            &writer.commit_micros,
            1e6,
        );
        histogram(
            o,
            "mwi_store_store_queue_wait_seconds",
            "Time a store job waited for the writer before its transaction began.",
            &writer.queue_wait_micros,
            1e6,
        );
        histogram(
            o,
            "mwi_store_store_wal_fsync_seconds",
            "Duration of each WAL fdatasync that makes commits durable.",
            &writer.wal_sync_micros,
            1e6,
        );
        histogram(
            o,
            "mwi_store_store_commit_batch_size",
            "Jobs (deposits, acknowledgements, ...) per group commit.",
            &writer.batch_sizes,
            1.0,
        );
        if let Some(held) = held {
            gauge(
                o,
                "mwi_store_mailboxes",
                "Mailboxes holding messages.",
                held.mailboxes,
            );
            family(
                o,
                "mwi_store_held_messages",
                "gauge",
                "Messages in the store (new: waiting; old: delivered and kept).",
            );
            line(o, "mwi_store_held_messages", "state=\"new\"", held.new);
            line(o, "mwi_store_held_messages", "state=\"old\"", held.old);
            gauge(
                o,
                "mwi_store_held_bytes",
                "Body bytes in the store.",
                held.bytes,
            );
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn line(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Adds one to the count of `key`.
fn bump<K: Ord>(counts: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut map = counts.lock().unwrap_or_else(PoisonError::into_inner);
    *map.entry(key).or_insert(0) += 1;
}

/// A counter family with one line per key of `counts`, labelled by `labels`.
fn labelled_counter<K: Clone>(
    out: &mut String,
    name: &str,
    help: &str,
    counts: &Mutex<BTreeMap<K, u64>>,
    labels: impl Fn(&K) -> String,
) {
    family(out, name, "counter", help);
    let counts = counts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for (key, n) in counts {
        line(out, name, &labels(&key), n);
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "counter", help);
    line(out, name, "", value);
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "gauge", help);
    line(out, name, "", value);
}

/// A store histogram (per-bucket counts) as Prometheus cumulative buckets, bounds and sum
/// divided by `per_unit` (1e6 turns µs into seconds; dividing by an exact power of ten prints
/// `0.0001`, where multiplying by 1e-6 would not).
fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram, per_unit: f64) {
    family(out, name, "histogram", help);
    let mut cumulative = 0u64;
    for (i, bound) in h.bounds.iter().enumerate() {
        cumulative += h.counts.get(i).copied().unwrap_or(0);
        let le = *bound as f64 / per_unit;
        line(
            out,
            &format!("{name}_bucket"),
            &format!("le=\"{le}\""),
            cumulative,
        );
    }
    line(out, &format!("{name}_bucket"), "le=\"+Inf\"", h.count);
    line(out, &format!("{name}_sum"), "", h.sum as f64 / per_unit);
    line(out, &format!("{name}_count"), "", h.count);
}

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (any query string).
    Metrics,
    /// Another path.
    NotFound,
    /// Another method on `/metrics`.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line.
    BadRequest,
}

/// Routes a request head (the bytes before the blank line).
pub fn route(head: &[u8]) -> Route {
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(first) = std::str::from_utf8(first) else {
        return Route::BadRequest;
    };
    let mut parts = first.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics,
        (_, "/metrics") => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// How reading a request head ended.
enum Head {
    /// The bytes before the blank line.
    Complete(Vec<u8>),
    /// More than [`MAX_REQUEST_BYTES`] without a blank line.
    TooLarge,
    /// The peer closed or the connection failed first.
    Gone,
}

async fn read_head(stream: &mut TcpStream) -> Head {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Head::Gone,
            Ok(n) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = head_end(&buf) {
            buf.truncate(end);
            return Head::Complete(buf);
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Head::TooLarge;
        }
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Read what the client still sends (bounded) before closing: closing a socket with unread
    // input sends RST, which can destroy the response before the client reads it.
    let mut sink = [0u8; 1024];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

async fn serve_one(app: &App, mut stream: TcpStream) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Head::Complete(head)) => head,
        Ok(Head::Gone) | Err(_) => return,
        Ok(Head::TooLarge) => {
            respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
            return;
        }
    };
    match route(&head) {
        Route::Metrics => {
            let held = match app.store.stats().await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: cannot read store figures; serving the counters without them");
                    None
                }
            };
            let msrp = MsrpConnections::of(std::iter::once(&app.msrp).chain(app.msrps.as_ref()));
            let body = METRICS.render(&app.store.writer_stats(), held.as_ref(), msrp);
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await;
        }
        Route::NotFound => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "metrics are at /metrics\n",
            )
            .await;
        }
        Route::MethodNotAllowed => {
            respond(&mut stream, "405 Method Not Allowed", "text/plain", "").await;
        }
        Route::BadRequest => respond(&mut stream, "400 Bad Request", "text/plain", "").await,
    }
}

/// The MSRP listeners' connection figures, read at each scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsrpConnections {
    /// Accepted connections open now.
    pub open: u64,
    /// Connections closed at accept because the cap was reached.
    pub refused: u64,
}

impl MsrpConnections {
    /// Sums the figures of `endpoints`.
    pub fn of<'a>(endpoints: impl IntoIterator<Item = &'a msrp_session::MsrpEndpoint>) -> Self {
        endpoints
            .into_iter()
            .fold(MsrpConnections::default(), |sum, ep| MsrpConnections {
                open: sum.open + u64::try_from(ep.inbound_connections()).unwrap_or(u64::MAX),
                refused: sum.refused + ep.refused_connections(),
            })
    }
}

/// Binds `metrics.listen` (if set) and serves scrapes until shutdown. Logs the bound address
/// ("metrics listening"); returns it, or `None` when metrics are off.
pub async fn spawn(app: Arc<App>, tracker: &TaskTracker) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = app.config.metrics_listen()? else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (key `metrics.listen`)"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "metrics listening");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let inner = tracker.clone();
    tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = app.shutdown.cancelled() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, typically: pause instead of spinning.
                    tracing::debug!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(peer = %peer, "metrics: too many scrapes at once; closed");
                continue;
            };
            let app = app.clone();
            inner.spawn(async move {
                serve_one(&app, stream).await;
                drop(slot);
            });
        }
    });
    Ok(Some(local))
}

#[cfg(test)]
mod tests {
    use super::*;
    use message_store::{BATCH_SIZE_BOUNDS, COMMIT_MICROS_BOUNDS};

    fn writer_stats() -> WriterStats {
        let mut commit = vec![0; COMMIT_MICROS_BOUNDS.len() + 1];
        commit[0] = 1; // 50 µs
        commit[3] = 2; // two of 1 ms
        let mut batch = vec![0; BATCH_SIZE_BOUNDS.len() + 1];
        batch[0] = 1;
        batch[1] = 2;
        WriterStats {
            commits: 3,
            failed_commits: 0,
            background_checkpoints: 4,
            jobs: 5,
            batch_sizes: Histogram {
                bounds: BATCH_SIZE_BOUNDS,
                counts: batch,
                sum: 5,
                count: 3,
            },
            commit_micros: Histogram {
                bounds: COMMIT_MICROS_BOUNDS,
                counts: commit.clone(),
                sum: 2_050,
                count: 3,
            },
            queue_wait_micros: Histogram {
                bounds: COMMIT_MICROS_BOUNDS,
                counts: commit.clone(),
                sum: 2_050,
                count: 3,
            },
            wal_sync_micros: Histogram {
                bounds: COMMIT_MICROS_BOUNDS,
                counts: commit,
                sum: 2_050,
                count: 3,
            },
        }
    }

    /// The value of one sample line, e.g. `name{label="x"}`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counters_move_and_render_in_exposition_format() {
        static M: Metrics = Metrics::new();
        let guard = M.deposit_session();
        let fetch = M.fetch_session();
        M.stored(Source::Msrp, 10);
        M.stored(Source::SipMessage, 5);
        M.stored(Source::SipMessage, 7);
        M.publish_outcome(Some(200));
        M.publish_outcome(Some(200));
        M.publish_outcome(Some(412));
        M.publish_outcome(None);
        M.notify_sent();
        M.delivered(4);
        drop(fetch);
        let held = StoreStats {
            mailboxes: 2,
            new: 3,
            old: 1,
            bytes: 22,
        };
        M.refused(Refused::Message, 415);
        M.refused(Refused::Message, 415);
        M.refused(Refused::ChatInvite, 503);
        let msrp = MsrpConnections {
            open: 7,
            refused: 3,
        };
        let text = M.render(&writer_stats(), Some(&held), msrp);
        let v = |s: &str| sample(&text, s).unwrap_or(f64::NAN);
        assert_eq!(v("mwi_store_deposit_sessions_total"), 1.0);
        assert_eq!(v("mwi_store_fetch_sessions_total"), 1.0);
        assert_eq!(
            v("mwi_store_active_sessions"),
            1.0,
            "the fetch guard dropped"
        );
        drop(guard);
        let after = M.render(&writer_stats(), None, msrp);
        assert_eq!(sample(&after, "mwi_store_active_sessions"), Some(0.0));
        assert!(!after.contains("mwi_store_held_bytes"), "no store figures");

        assert_eq!(v("mwi_store_stored_messages_total{source=\"msrp\"}"), 1.0);
        assert_eq!(
            v("mwi_store_stored_messages_total{source=\"sip-message\"}"),
            2.0
        );
        assert_eq!(v("mwi_store_stored_bytes_total"), 22.0);
        assert_eq!(v("mwi_store_publishes_total{status=\"200\"}"), 2.0);
        assert_eq!(v("mwi_store_publishes_total{status=\"412\"}"), 1.0);
        assert_eq!(v("mwi_store_publishes_total{status=\"timeout\"}"), 1.0);
        assert_eq!(v("mwi_store_notifies_total"), 1.0);
        assert_eq!(v("mwi_store_delivered_messages_total"), 4.0);
        assert_eq!(v("mwi_store_held_messages{state=\"new\"}"), 3.0);
        assert_eq!(v("mwi_store_mailboxes"), 2.0);
        assert_eq!(v("mwi_store_msrp_connections"), 7.0);
        assert_eq!(
            v("mwi_store_refusals_total{what=\"message\",status=\"415\"}"),
            2.0
        );
        assert_eq!(
            v("mwi_store_refusals_total{what=\"chat-invite\",status=\"503\"}"),
            1.0
        );
        assert_eq!(v("mwi_store_msrp_connections_refused_total"), 3.0);

        // Buckets are cumulative, in seconds; +Inf equals the count.
        let h = "mwi_store_store_commit_duration_seconds";
        assert_eq!(v(&format!("{h}_bucket{{le=\"0.0001\"}}")), 1.0);
        assert_eq!(v(&format!("{h}_bucket{{le=\"0.0005\"}}")), 1.0);
        assert_eq!(v(&format!("{h}_bucket{{le=\"0.001\"}}")), 3.0);
        assert_eq!(v(&format!("{h}_bucket{{le=\"1\"}}")), 3.0);
        assert_eq!(v(&format!("{h}_bucket{{le=\"+Inf\"}}")), 3.0);
        assert!((v(&format!("{h}_sum")) - 0.00205).abs() < 1e-12);
        assert_eq!(v(&format!("{h}_count")), 3.0);
        for h in [
            "mwi_store_store_queue_wait_seconds",
            "mwi_store_store_wal_fsync_seconds",
        ] {
            assert_eq!(v(&format!("{h}_bucket{{le=\"0.001\"}}")), 3.0);
            assert_eq!(v(&format!("{h}_count")), 3.0);
        }
        let b = "mwi_store_store_commit_batch_size";
        assert_eq!(v(&format!("{b}_bucket{{le=\"1\"}}")), 1.0);
        assert_eq!(v(&format!("{b}_bucket{{le=\"2\"}}")), 3.0);
        assert_eq!(v(&format!("{b}_sum")), 5.0);

        // Every family is announced once, before its samples.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap_or_default();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            let announced = format!("# TYPE {base} ");
            let declared = text.contains(&announced) || text.contains(&format!("# TYPE {name} "));
            assert!(declared, "no TYPE line for {l}");
        }
    }

    #[test]
    fn routes_only_get_metrics() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x"), Route::Metrics);
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0"), Route::Metrics);
        assert_eq!(route(b"POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(route(b"GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(route(b"GET /metrics"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SIP/2.0"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe"), Route::BadRequest);
        assert_eq!(route(b""), Route::BadRequest);
    }

    #[test]
    fn listen_key_is_off_by_default_and_checked() {
        let c = crate::config::Config::parse("").expect("defaults");
        assert_eq!(c.metrics_listen().expect("valid"), None);
        let c = crate::config::Config::parse("[metrics]\nlisten = \"127.0.0.1:9090\"\n")
            .expect("valid");
        assert_eq!(
            c.metrics_listen().expect("valid"),
            Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
        );
        let err =
            crate::config::Config::parse("[metrics]\nlisten = \"everywhere\"\n").expect_err("bad");
        assert!(err.to_string().contains("metrics.listen"), "{err}");
    }
}
