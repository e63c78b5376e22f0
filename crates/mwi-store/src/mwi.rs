//! The PUBLISH side of message-waiting indication: one task owns every mailbox's
//! [`Publication`] (RFC 3903, sans-IO), feeds it the store's counts after each change, sends
//! what it asks for through a [`PublishSender`], and persists the entity-tag so a restart
//! continues the same publication.
//!
//! Changes are coalesced twice: the task drains every pending change before reading counts
//! (1,000 deposits in a burst cost one read), and `Publication` keeps at most one PUBLISH in
//! flight per mailbox, sending the latest body next.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use message_store::{PublicationRecord, Store};
use mwi_publisher::{
    MessageCounts, MessageHeaders, MessageSummary, Publication, PublicationConfig,
    PublicationEvent, PublishOutcome, PublishRequest, SipEtag, SummaryConfig,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::timers::TimerQueue;

/// Sends one PUBLISH for a mailbox and returns its final outcome (after any digest retry);
/// `None` for a transaction timeout or an unreachable proxy.
pub trait PublishSender: Send + Sync + 'static {
    fn publish(
        &self,
        mailbox: &str,
        request: PublishRequest,
    ) -> Pin<Box<dyn Future<Output = Option<PublishOutcome>> + Send>>;
}

/// What the driver is configured with.
#[derive(Debug, Clone)]
pub struct MwiSettings {
    pub publication: PublicationConfig,
    pub summary: SummaryConfig,
    /// RFC 3842 §5.2 message headers of the newest N messages.
    pub message_headers: usize,
    /// Start-up republish rate, mailboxes per second.
    pub startup_rate: u32,
}

impl MwiSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            publication: PublicationConfig {
                expires: config.mwi.expires,
                backoff_initial: Duration::from_secs(config.mwi.backoff_initial_secs),
                backoff_max: Duration::from_secs(config.mwi.backoff_max_secs),
                min_interval: Duration::from_millis(config.mwi.min_publish_interval_ms),
            },
            summary: SummaryConfig {
                message_account: Some(config.fetch.uri.clone()),
                emit_voice_message: config.mwi.voice_message_line,
            },
            message_headers: config.mwi.message_headers,
            startup_rate: config.mwi.startup_publish_rate,
        }
    }
}

enum Command {
    Outcome {
        mailbox: String,
        outcome: Option<PublishOutcome>,
        sent: Instant,
    },
}

/// Tells the MWI side that a mailbox changed. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct MwiHandle {
    publish: Option<mpsc::UnboundedSender<String>>,
    notify: Option<mpsc::UnboundedSender<String>>,
}

impl MwiHandle {
    pub fn new(
        publish: Option<mpsc::UnboundedSender<String>>,
        notify: Option<mpsc::UnboundedSender<String>>,
    ) -> Self {
        Self { publish, notify }
    }

    /// A mailbox's counts changed (deposit, delivery, purge).
    pub fn changed(&self, mailbox: &str) {
        if let Some(tx) = &self.publish {
            let _ = tx.send(mailbox.to_string());
        }
        if let Some(tx) = &self.notify {
            let _ = tx.send(mailbox.to_string());
        }
    }
}

/// Converts a persisted wall-clock expiry to the monotonic clock the state machine uses.
fn instant_of(at: DateTime<Utc>, now: Instant) -> Instant {
    let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    now + left
}

fn datetime_of(at: Instant, now: Instant) -> DateTime<Utc> {
    let left = at.saturating_duration_since(now);
    DateTime::<Utc>::from(SystemTime::now() + left)
}

/// Reads a mailbox's summary from the store.
pub async fn summary_of(
    store: &Store,
    settings: &MwiSettings,
    mailbox: &str,
) -> Result<MessageSummary, message_store::StoreError> {
    let counts = store.counts(mailbox).await?;
    let mut text = MessageCounts::new(counts.new, counts.old);
    if counts.urgent_new > 0 || counts.urgent_old > 0 {
        text.urgent_new = Some(counts.urgent_new);
        text.urgent_old = Some(counts.urgent_old);
    }
    let mut headers = Vec::new();
    if settings.message_headers > 0 && counts.new > 0 {
        for h in store
            .newest_headers(mailbox, settings.message_headers)
            .await?
        {
            headers.push(MessageHeaders::for_message(
                &h.sender_aor,
                h.sender_name.as_deref(),
                h.date,
                h.subject.as_deref(),
            ));
        }
    }
    Ok(MessageSummary::text(&settings.summary, text, headers))
}

/// Starts the driver; returns the sender of mailbox changes and the task.
pub fn spawn_publisher(
    store: Store,
    settings: MwiSettings,
    sender: Arc<dyn PublishSender>,
) -> (mpsc::UnboundedSender<String>, JoinHandle<()>) {
    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (persist_tx, persist_rx) = mpsc::unbounded_channel();
    tokio::spawn(persist_etags(store.clone(), persist_rx));
    let driver = Driver {
        persist: persist_tx,
        store,
        settings,
        sender,
        publications: HashMap::new(),
        stale: HashSet::new(),
        timers: TimerQueue::default(),
        commands: cmd_tx,
    };
    let task = tokio::spawn(driver.run(changes_rx, cmd_rx));
    (changes_tx, task)
}

/// Republishes every mailbox with waiting messages, at most `rate` per second, so a restart
/// fixes any drift between the store and the presence server.
pub fn spawn_startup_republish(
    store: Store,
    changes: mpsc::UnboundedSender<String>,
    rate: u32,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mailboxes = match store.mailboxes_with_waiting().await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot list mailboxes to republish at start-up; check the store");
                return;
            }
        };
        tracing::info!(
            mailboxes = mailboxes.len(),
            "republishing waiting mailboxes"
        );
        let gap = Duration::from_secs(1) / rate.max(1);
        let mut tick = tokio::time::interval(gap);
        for m in mailboxes {
            tick.tick().await;
            if changes.send(m).is_err() {
                return;
            }
        }
    })
}

struct Driver {
    store: Store,
    settings: MwiSettings,
    sender: Arc<dyn PublishSender>,
    publications: HashMap<String, Publication>,
    /// Mailboxes that changed while their publication held changes (a PUBLISH in flight, a
    /// backoff, the minimum interval): their counts are read when it can send again, so a burst
    /// of deposits costs one read of the store, not one per message.
    stale: HashSet<String>,
    timers: TimerQueue,
    commands: mpsc::UnboundedSender<Command>,
    /// Entity-tags to save, in order (see [`persist_etags`]).
    persist: mpsc::UnboundedSender<(String, Option<PublicationRecord>)>,
}

/// Saves entity-tags in the order they were taken; a burst keeps only each mailbox's latest.
/// The saves of a burst are queued together and share one durable commit: one after another,
/// each waiting for its own fsync, the last ETag of a burst over many mailboxes would reach
/// the disk many commits late, and a crash meanwhile would republish with an older one.
async fn persist_etags(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<(String, Option<PublicationRecord>)>,
) {
    while let Some(first) = rx.recv().await {
        let mut latest: HashMap<String, Option<PublicationRecord>> = HashMap::new();
        latest.insert(first.0, first.1);
        while let Ok((m, r)) = rx.try_recv() {
            latest.insert(m, r);
        }
        let saves: Vec<_> = latest
            .into_iter()
            .map(|(mailbox, record)| {
                let saved = store.save_publication(&mailbox, record);
                (mailbox, saved)
            })
            .collect();
        for (mailbox, saved) in saves {
            if let Err(e) = saved.await {
                tracing::warn!(mailbox, error = %e, "cannot persist the publication's ETag; a restart will publish afresh");
            }
        }
    }
}

impl Driver {
    async fn run(
        mut self,
        mut changes: mpsc::UnboundedReceiver<String>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut changes_open = true;
        loop {
            let sleep = crate::timers::sleep_until(self.timers.next());
            let mut dirty = HashSet::new();
            // Mailboxes whose publication got a response or a timer: a stale one may send now.
            let mut touched = Vec::new();
            tokio::select! {
                c = changes.recv(), if changes_open => match c {
                    Some(m) => { dirty.insert(m); }
                    None => changes_open = false,
                },
                Some(cmd) = commands.recv() => touched.push(self.on_command(cmd)),
                () = sleep => {}
            }
            // Coalesce: take everything already queued before touching the store.
            while let Ok(m) = changes.try_recv() {
                dirty.insert(m);
            }
            while let Ok(cmd) = commands.try_recv() {
                touched.push(self.on_command(cmd));
            }
            let now = Instant::now();
            for mailbox in dirty {
                if self.holds_changes(&mailbox, now) {
                    self.stale.insert(mailbox);
                } else {
                    self.stale.remove(&mailbox);
                    self.refresh_summary(&mailbox).await;
                }
            }
            touched.extend(self.fire_timers());
            let now = Instant::now();
            for mailbox in touched {
                if self.stale.contains(&mailbox) && !self.holds_changes(&mailbox, now) {
                    self.stale.remove(&mailbox);
                    self.refresh_summary(&mailbox).await;
                }
            }
            if !changes_open
                && self.stale.is_empty()
                && self
                    .publications
                    .values()
                    .all(|p| p.poll_timeout().is_none())
            {
                return;
            }
        }
    }

    fn holds_changes(&self, mailbox: &str, now: Instant) -> bool {
        self.publications
            .get(mailbox)
            .is_some_and(|p| p.holds_changes(now))
    }

    /// Feeds a PUBLISH outcome to its publication; returns the mailbox.
    fn on_command(&mut self, cmd: Command) -> String {
        match cmd {
            Command::Outcome {
                mailbox,
                outcome,
                sent,
            } => {
                let now = Instant::now();
                let latency_ms = now.duration_since(sent).as_secs_f64() * 1000.0;
                let Some(p) = self.publications.get_mut(&mailbox) else {
                    return mailbox;
                };
                crate::metrics::METRICS.publish_outcome(outcome.as_ref().map(|o| o.status));
                match outcome {
                    Some(o) => {
                        tracing::info!(
                            mailbox = %mailbox,
                            status = o.status,
                            etag = o.sip_etag.as_ref().map(|e| e.as_str()).unwrap_or(""),
                            latency_ms = format!("{latency_ms:.1}"),
                            "PUBLISH answered"
                        );
                        p.on_response(o, now);
                    }
                    None => {
                        tracing::warn!(
                            mailbox = %mailbox,
                            latency_ms = format!("{latency_ms:.1}"),
                            "PUBLISH got no answer; is the presence server at mwi.proxy up? retrying with backoff"
                        );
                        p.on_timeout_failure(now);
                    }
                }
                self.after_input(&mailbox);
                mailbox
            }
        }
    }

    /// Reads the latest counts and hands them to the mailbox's publication.
    async fn refresh_summary(&mut self, mailbox: &str) {
        let summary = match summary_of(&self.store, &self.settings, mailbox).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(mailbox, error = %e, "cannot read counts to publish; check the store");
                return;
            }
        };
        if !self.publications.contains_key(mailbox) {
            let publication = self.restore(mailbox).await;
            self.publications.insert(mailbox.to_string(), publication);
        }
        if let Some(p) = self.publications.get_mut(mailbox) {
            p.set_summary(&summary, Instant::now());
        }
        self.after_input(mailbox);
    }

    /// A publication persisted before a restart continues under its entity-tag.
    async fn restore(&self, mailbox: &str) -> Publication {
        let config = self.settings.publication.clone();
        match self.store.publication(mailbox).await {
            Ok(Some(rec)) => {
                let now = Instant::now();
                Publication::resume(
                    config,
                    SipEtag::new(rec.etag),
                    instant_of(rec.expires_at, now),
                    now,
                )
            }
            Ok(None) => Publication::new(config),
            Err(e) => {
                tracing::warn!(mailbox, error = %e, "cannot read the persisted ETag; publishing afresh");
                Publication::new(config)
            }
        }
    }

    /// Runs the due timers; returns their mailboxes.
    fn fire_timers(&mut self) -> Vec<String> {
        let now = Instant::now();
        let due = self.timers.pop_due(now);
        for mailbox in &due {
            if let Some(p) = self.publications.get_mut(mailbox) {
                p.handle_timeout(now);
            }
            self.after_input(mailbox);
        }
        due
    }

    /// Sends what the publication wants, logs and persists its events, re-arms its timer.
    fn after_input(&mut self, mailbox: &str) {
        let now = Instant::now();
        let Some(p) = self.publications.get_mut(mailbox) else {
            return;
        };
        let mut persist = None;
        while let Some(ev) = p.poll_event() {
            match ev {
                PublicationEvent::Published { etag, expires } => {
                    tracing::debug!(mailbox, etag = ?etag, expires, "publication refreshed");
                    persist = Some(p.etag_record());
                }
                PublicationEvent::Failed { status, retry_in } => {
                    tracing::warn!(mailbox, status = ?status, retry_in_s = retry_in.map(|d| d.as_secs()), "PUBLISH failed; will retry");
                    persist = Some(p.etag_record());
                }
                PublicationEvent::Stopped { status } => {
                    tracing::error!(mailbox, status, "PUBLISH refused; publishing stops until the mailbox changes. Check the presence server's config for message-summary");
                    persist = Some(p.etag_record());
                }
            }
        }
        while let Some(req) = p.poll_transmit(now) {
            tracing::info!(
                mailbox,
                sip_if_match = req.sip_if_match.as_ref().map(|e| e.as_str()).unwrap_or(""),
                expires = req.expires,
                "PUBLISH sent"
            );
            let sender = self.sender.clone();
            let commands = self.commands.clone();
            let mailbox = mailbox.to_string();
            tokio::spawn(async move {
                let sent = Instant::now();
                let outcome = sender.publish(&mailbox, req).await;
                let _ = commands.send(Command::Outcome {
                    mailbox,
                    outcome,
                    sent,
                });
            });
        }
        self.timers.set(mailbox, p.poll_timeout());
        if let Some(record) = persist {
            let record = record.map(|(etag, at)| PublicationRecord {
                etag: etag.as_str().to_string(),
                expires_at: datetime_of(at, now),
            });
            let _ = self.persist.send((mailbox.to_string(), record));
        }
    }
}
