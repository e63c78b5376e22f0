//! `Store`: the public handle. Writes (deposits, claims, acknowledgements, purges, PUBLISH
//! state) go through the group-commit writer thread and resolve once durable; reads run on the
//! read-only connection pool. Cheap to clone; every clone shares the same thread and pool.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::claims;
use crate::config::StoreConfig;
use crate::deposit;
use crate::error::StoreError;
use crate::model::{
    Counts, MailboxSummary, MessageHeaders, NewMessage, PublicationRecord, Purged, StoreStats,
    StoredId, StoredMessage,
};
use crate::publication;
use crate::queries;
use crate::reader::Readers;
use crate::republish;
use crate::retention;
use crate::schema;
use crate::stats::WriterStats;
use crate::writer::Writer;

/// Handle to an open store.
#[derive(Debug, Clone)]
pub struct Store {
    writer: Writer,
    readers: Readers,
    config: Arc<StoreConfig>,
}

impl Store {
    /// Opens (creating and migrating if needed) the database at `config.path`, frees leftover
    /// fetch claims if `config.release_claims_on_open`, starts the writer thread and opens the
    /// read connections. Blocking; call it before serving or from `spawn_blocking`.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let conn = schema::open_writer(&config)?;
        if config.release_claims_on_open {
            let freed = claims::release_all(&conn)?;
            if freed > 0 {
                tracing::info!(freed, "store: released fetch claims left by a previous run");
            }
        }
        let readers = Readers::open(&config)?;
        let writer = Writer::start(conn, &config)?;
        Ok(Store {
            writer,
            readers,
            config: Arc::new(config),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Stores `message`; resolves after the commit containing it is durable. Over a limit:
    /// `StoreError::Limit` and nothing is written.
    ///
    /// The row is queued when this is called, so a session may keep several inserts in flight
    /// and still have them stored (and numbered) in the order it received them.
    pub fn insert(
        &self,
        message: NewMessage,
    ) -> impl std::future::Future<Output = Result<StoredId, StoreError>> + Send + 'static {
        let queued = deposit::check_size(&self.config.limits, message.body.len()).map(|()| {
            self.writer
                .call_queued(move |cx| deposit::insert(cx, &message))
        });
        async move { queued?.await }
    }

    /// Atomically claims up to `limit` of the oldest waiting messages of `mailbox` that no
    /// other fetch holds, for `fetch_id` (a token unique among running fetches).
    pub async fn claim(
        &self,
        mailbox: &str,
        fetch_id: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mailbox = mailbox.to_owned();
        self.writer
            .call_volatile(move |cx| claims::claim(cx, &mailbox, fetch_id, limit))
            .await
    }

    /// Acknowledged delivery of `ids`: deleted, or kept as delivered ("old") when `keep`;
    /// durable when it resolves. Returns how many messages changed.
    pub async fn delivered(&self, ids: Vec<StoredId>, keep: bool) -> Result<usize, StoreError> {
        let at = Utc::now();
        self.writer
            .call(move |cx| claims::delivered(cx, &ids, keep, at))
            .await
    }

    /// Hands back every message still claimed by `fetch_id` (an interrupted fetch); returns how
    /// many.
    pub async fn release(&self, fetch_id: u64) -> Result<usize, StoreError> {
        self.writer
            .call_volatile(move |cx| claims::release(cx, fetch_id))
            .await
    }

    /// Saves the RFC 3903 publication of `mailbox` (`None` forgets it); resolves once durable.
    ///
    /// The save is queued when this is called, so saves made one after another and awaited
    /// afterwards share a commit (and its fsync) instead of waiting for one each.
    pub fn save_publication(
        &self,
        mailbox: &str,
        record: Option<PublicationRecord>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let mailbox = mailbox.to_owned();
        self.writer
            .call_queued(move |cx| publication::save(cx, &mailbox, record.as_ref()))
    }

    /// Deletes the messages of `mailbox` (only those received more than `older_than` ago when
    /// given); returns how many. When any were, the mailbox is queued in the same transaction
    /// for [`Store::take_republish_requests`], so the server republishes it even when another
    /// process (the admin CLI) purged.
    pub async fn purge(
        &self,
        mailbox: &str,
        older_than: Option<Duration>,
    ) -> Result<usize, StoreError> {
        let cutoff = older_than.map(|age| {
            TimeDelta::from_std(age)
                .ok()
                .and_then(|age| Utc::now().checked_sub_signed(age))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        });
        let mailbox = mailbox.to_owned();
        self.writer
            .call(move |cx| {
                republish::request_if_purging(cx, &mailbox, cutoff, Utc::now())?;
                retention::purge_mailbox(cx, &mailbox, cutoff)
            })
            .await
    }

    /// Mailboxes purged (by any process) since the last call, to republish; a read when there
    /// are none, so polling it every second is cheap.
    pub async fn take_republish_requests(&self) -> Result<Vec<String>, StoreError> {
        if !self.readers.read(republish::any_pending).await? {
            return Ok(Vec::new());
        }
        self.writer.call(republish::take).await
    }

    /// The retention purge, called periodically: removes messages older than
    /// `limits.retention_days` and delivered ones kept longer than
    /// `limits.delivered_retention_days`. Returns the count and the mailboxes to republish.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<Purged, StoreError> {
        self.writer
            .call(move |cx| retention::purge_expired(cx, now))
            .await
    }

    /// RFC 3842 counts of `mailbox` (zeros for an unknown one).
    pub async fn counts(&self, mailbox: &str) -> Result<Counts, StoreError> {
        let mailbox = mailbox.to_owned();
        self.readers
            .read(move |c| queries::counts(c, &mailbox))
            .await
    }

    /// Every mailbox holding messages, by AoR.
    pub async fn mailboxes(&self) -> Result<Vec<MailboxSummary>, StoreError> {
        self.readers.read(queries::mailboxes).await
    }

    /// Messages of `mailbox`, oldest first; delivered ones only with `include_delivered`.
    pub async fn messages(
        &self,
        mailbox: &str,
        include_delivered: bool,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mailbox = mailbox.to_owned();
        self.readers
            .read(move |c| queries::messages(c, &mailbox, include_delivered))
            .await
    }

    /// From/Date/Subject of the `n` newest waiting messages, newest first (RFC 3842 §5.2).
    pub async fn newest_headers(
        &self,
        mailbox: &str,
        n: usize,
    ) -> Result<Vec<MessageHeaders>, StoreError> {
        let mailbox = mailbox.to_owned();
        self.readers
            .read(move |c| queries::newest_headers(c, &mailbox, n))
            .await
    }

    /// AoRs of every mailbox with waiting messages (to publish at start-up).
    pub async fn mailboxes_with_waiting(&self) -> Result<Vec<String>, StoreError> {
        self.readers.read(queries::mailboxes_with_waiting).await
    }

    /// The persisted publication of `mailbox`, if any.
    pub async fn publication(
        &self,
        mailbox: &str,
    ) -> Result<Option<PublicationRecord>, StoreError> {
        let mailbox = mailbox.to_owned();
        self.readers
            .read(move |c| queries::publication(c, &mailbox))
            .await
    }

    /// Whole-store figures (mailboxes, new, old, bytes).
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.readers.read(queries::stats).await
    }

    /// Writer figures since open: commits, jobs, batch sizes, commit latency (for metrics).
    pub fn writer_stats(&self) -> WriterStats {
        let mut stats = self.writer.counters().snapshot();
        stats.background_checkpoints = self
            .writer
            .checkpoints()
            .runs
            .load(std::sync::atomic::Ordering::Relaxed);
        stats
    }
}
