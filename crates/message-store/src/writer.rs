//! The one writer thread and its group commit.
//!
//! Async callers send a job over a channel and await a oneshot. The thread takes the first
//! queued job, collects more for up to `group_commit_max_rows` jobs or `group_commit_max_wait`,
//! runs them all in one `BEGIN IMMEDIATE … COMMIT`, and answers every caller once the commit is
//! as durable as configured: with `synchronous = FULL` (the default) after the WAL fsync, which
//! runs on its own thread while the next batch executes (`wal_sync.rs`).
//!
//! Collecting stops early once the queue has stayed empty for `IDLE_GAP`: when every caller is
//! already in the batch, waiting out `max_wait` would only add latency.
//!
//! A job that fails must leave nothing behind, so the rest of its batch can commit. Every job
//! makes its change in one statement, after its checks and reads (a deposit may first create
//! its empty mailbox row, which is harmless), and SQLite rolls back a failed statement alone.
//! A SAVEPOINT per job would give the same guarantee at the price of copying every page the
//! job touches into the statement journal (measured: the biggest single item in the writer's
//! profile). If SQLite instead abandons the whole transaction (it may on I/O errors or a full
//! disk), the batch stops and every job in it gets the error.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::checkpoint::{CheckpointCounters, Checkpointer};
use crate::config::{Limits, StoreConfig, Synchronous};
use crate::error::StoreError;
use crate::stats::WriterCounters;
use crate::wal_sync::{self, Committed, WalSyncer};

/// Stop collecting a batch when no job has arrived for this long.
const IDLE_GAP: Duration = Duration::from_micros(100);

/// What a job sees while it runs: the write connection inside the batch transaction and the
/// limits.
pub(crate) struct JobContext<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) limits: &'a Limits,
}

/// A job queued for the writer.
trait Job: Send {
    /// Runs the job inside the batch transaction; the answer is held until the commit.
    fn run(self: Box<Self>, cx: &JobContext<'_>) -> Box<dyn Answer>;
    /// Answers without running (the batch could not even begin).
    fn abort(self: Box<Self>, error: StoreError);
    /// Whether the caller relies on the result surviving power loss.
    fn durable(&self) -> bool;
    /// When the job was queued.
    fn queued_at(&self) -> Instant;
}

/// A job's result waiting for the commit of its batch.
pub(crate) trait Answer: Send {
    /// Sends the result if the commit succeeded, else the commit error.
    fn send(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct Call<F, T> {
    queued_at: Instant,
    work: F,
    durable: bool,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

struct Held<T> {
    result: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for Call<F, T>
where
    F: FnOnce(&JobContext<'_>) -> Result<T, StoreError> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, cx: &JobContext<'_>) -> Box<dyn Answer> {
        let result = (self.work)(cx);
        Box::new(Held {
            result,
            reply: self.reply,
        })
    }

    fn abort(self: Box<Self>, error: StoreError) {
        // The caller may have gone away; nothing to do then.
        let _ = self.reply.send(Err(error));
    }

    fn durable(&self) -> bool {
        self.durable
    }

    fn queued_at(&self) -> Instant {
        self.queued_at
    }
}

impl<T: Send> Answer for Held<T> {
    fn send(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match commit {
            Ok(()) => self.result,
            Err(e) => Err(e.clone()),
        };
        let _ = self.reply.send(result);
    }
}

/// Handle to the writer thread; cloning shares the thread. The thread ends when every handle
/// is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: Sender<Box<dyn Job>>,
    counters: Arc<WriterCounters>,
    checkpoints: Arc<CheckpointCounters>,
    _checkpointer: Arc<Checkpointer>,
}

impl Writer {
    /// Starts the thread that owns `conn`, and the thread that checkpoints its WAL.
    pub(crate) fn start(conn: Connection, config: &StoreConfig) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let counters = Arc::new(WriterCounters::new());
        let checkpoints = Arc::new(CheckpointCounters::default());
        let checkpointer =
            Checkpointer::start(config, Arc::clone(&counters), Arc::clone(&checkpoints))?;
        // Where SQLite refused WAL mode (some network file systems), there is no WAL to sync:
        // its own `synchronous = FULL` commits stay as they are.
        let journal: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let syncer = match config.synchronous {
            Synchronous::Full if journal.eq_ignore_ascii_case("wal") => {
                let wal = wal_sync::open_wal(&config.path)?;
                // The sync thread makes commits durable; SQLite's COMMIT only appends.
                conn.pragma_update(None, "synchronous", Synchronous::Normal.pragma_value())?;
                Some(WalSyncer::start(wal, Arc::clone(&counters))?)
            }
            Synchronous::Full | Synchronous::Normal | Synchronous::Off => None,
        };
        let batcher = Batcher {
            conn,
            queue,
            limits: config.limits.clone(),
            max_jobs: config.group_commit_max_rows.max(1),
            max_wait: config.group_commit_max_wait,
            syncer,
            counters: Arc::clone(&counters),
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || batcher.run())
            .map_err(|e| StoreError::Thread(Arc::new(e)))?;
        Ok(Writer {
            jobs,
            counters,
            checkpoints,
            _checkpointer: Arc::new(checkpointer),
        })
    }

    /// Queues `work` and resolves after the transaction containing it is durable.
    pub(crate) async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&JobContext<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.queue(work, true).await
    }

    /// Like [`Self::call`], but the job is queued now, not when the future is first polled:
    /// jobs queued one after another from one task commit in that order even when their
    /// futures are awaited concurrently.
    pub(crate) fn call_queued<T, F>(
        &self,
        work: F,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static
    where
        F: FnOnce(&JobContext<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.queue(work, true)
    }

    /// Queues `work` whose result need not survive power loss (fetch claims, which are cleared
    /// on open anyway). A batch made only of such jobs is answered without waiting for an
    /// fsync; a later durable commit's fsync covers its WAL frames too, as they precede it in
    /// the file.
    pub(crate) async fn call_volatile<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&JobContext<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.queue(work, false).await
    }

    /// Sends the job to the writer at once; the future resolves with its committed result.
    fn queue<T, F>(
        &self,
        work: F,
        durable: bool,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static
    where
        F: FnOnce(&JobContext<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = self
            .jobs
            .send(Box::new(Call {
                queued_at: Instant::now(),
                work,
                durable,
                reply,
            }))
            .map_err(|_| StoreError::WorkerGone);
        async move {
            queued?;
            answer.await.map_err(|_| StoreError::WorkerGone)?
        }
    }

    pub(crate) fn counters(&self) -> &WriterCounters {
        &self.counters
    }

    pub(crate) fn checkpoints(&self) -> &CheckpointCounters {
        &self.checkpoints
    }
}

struct Batcher {
    conn: Connection,
    queue: Receiver<Box<dyn Job>>,
    limits: Limits,
    max_jobs: usize,
    max_wait: Duration,
    /// Makes durable batches durable before their callers hear back (`synchronous = FULL`).
    syncer: Option<WalSyncer>,
    counters: Arc<WriterCounters>,
}

impl Batcher {
    /// Runs batches until every handle to the writer is dropped.
    fn run(self) {
        let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(self.max_jobs);
        while let Ok(first) = self.queue.recv() {
            batch.push(first);
            self.collect(&mut batch);
            self.run_batch(&mut batch);
        }
    }

    /// Adds queued jobs to `batch` until it is full or `max_wait` has passed since the first.
    fn collect(&self, batch: &mut Vec<Box<dyn Job>>) {
        let deadline = Instant::now() + self.max_wait;
        while batch.len() < self.max_jobs {
            match self.queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    match self.queue.recv_timeout(left.min(IDLE_GAP)) {
                        Ok(job) => batch.push(job),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        }
    }

    /// Runs and commits the batch. A batch with a durable job goes to the sync thread, which
    /// answers its callers after the WAL fsync; a batch of volatile jobs only (claims) is
    /// answered at once.
    fn run_batch(&self, batch: &mut Vec<Box<dyn Job>>) {
        let started = Instant::now();
        if let Err(e) = self
            .conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
        {
            let error = StoreError::from(e);
            tracing::error!(%error, jobs = batch.len(), "store: cannot begin a transaction");
            self.counters
                .failed_commits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for job in batch.drain(..) {
                job.abort(error.clone());
            }
            return;
        }
        let cx = JobContext {
            conn: &self.conn,
            limits: &self.limits,
        };
        let jobs = batch.len();
        let durable = batch.iter().any(|job| job.durable());
        let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(jobs);
        let mut lost = None;
        for job in batch.drain(..) {
            self.counters
                .dequeued(started.saturating_duration_since(job.queued_at()));
            if let Some(error) = &lost {
                job.abort(StoreError::clone(error));
                continue;
            }
            answers.push(job.run(&cx));
            if self.conn.is_autocommit() {
                // SQLite rolled the whole transaction back (I/O error, disk full).
                lost = Some(StoreError::TransactionLost);
            }
        }
        let commit = match lost {
            Some(error) => Err(error),
            None => self
                .conn
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]))
                .map(|_| ())
                .map_err(StoreError::from),
        };
        match &commit {
            Ok(()) => match &self.syncer {
                Some(syncer) if durable => {
                    syncer.submit(Committed { answers, started });
                    return;
                }
                _ => self.counters.committed(jobs, started.elapsed()),
            },
            Err(error) => {
                tracing::error!(%error, jobs, "store: commit failed; every job in it fails");
                self.counters
                    .failed_commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !self.conn.is_autocommit() {
                    if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                        tracing::error!(error = %e, "store: rollback after a failed commit failed");
                    }
                }
            }
        }
        for answer in answers {
            answer.send(commit.as_ref().map(|_| ()));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schema;
    use crate::wal_sync::tests::{Gate, GatedWal};

    /// A batcher whose WAL syncs wait for the test (`GatedWal`).
    fn batcher(dir: &std::path::Path) -> (Batcher, Sender<Box<dyn Job>>, Gate) {
        let config = StoreConfig::new(dir.join("w.db"));
        let (jobs, queue) = mpsc::channel();
        let counters = Arc::new(WriterCounters::new());
        let conn = schema::open_writer(&config).unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        let (wal, gate) = GatedWal::new();
        let batcher = Batcher {
            conn,
            queue,
            limits: config.limits.clone(),
            max_jobs: 8,
            max_wait: Duration::ZERO,
            syncer: Some(WalSyncer::start(wal, Arc::clone(&counters)).unwrap()),
            counters,
        };
        (batcher, jobs, gate)
    }

    type Probe = (Box<dyn Job>, oneshot::Receiver<Result<i64, StoreError>>);

    /// A job that reports the `PRAGMA synchronous` it ran under.
    fn probe(durable: bool) -> Probe {
        let (reply, answer) = oneshot::channel();
        let work = |cx: &JobContext<'_>| -> Result<i64, StoreError> {
            Ok(cx
                .conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))?)
        };
        (
            Box::new(Call {
                queued_at: Instant::now(),
                work,
                durable,
                reply,
            }),
            answer,
        )
    }

    #[test]
    fn claim_only_batches_are_answered_at_commit_and_durable_ones_after_the_wal_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let (batcher, _jobs, gate) = batcher(dir.path());
        let run = |jobs: Vec<Probe>| {
            let (mut batch, answers): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
            batcher.run_batch(&mut batch);
            answers
        };
        // SQLite itself never syncs a commit (1 = NORMAL): the sync thread does.
        for mut a in run(vec![probe(false), probe(false)]) {
            assert_eq!(a.try_recv().unwrap().unwrap(), 1, "answered at commit");
        }
        assert!(gate.syncs.try_recv().is_err(), "no fsync for claims");
        for durable in [vec![probe(false), probe(true)], vec![probe(true)]] {
            let mut answers = run(durable);
            gate.syncs.recv_timeout(Duration::from_secs(10)).unwrap();
            for a in answers.iter_mut() {
                assert!(a.try_recv().is_err(), "answered before the fsync");
            }
            gate.go.send(Ok(())).unwrap();
            for a in answers {
                assert_eq!(a.blocking_recv().unwrap().unwrap(), 1);
            }
        }
        assert_eq!(batcher.counters.snapshot().commits, 3);
    }

    #[test]
    fn without_wal_mode_sqlite_keeps_syncing_its_own_commits() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(dir.path().join("j.db"));
        let conn = schema::open_writer(&config).unwrap();
        // As if SQLite had refused WAL mode: no WAL file to sync.
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        assert!(!dir.path().join("j.db-wal").exists());
        let writer = Writer::start(conn, &config).unwrap();
        let level = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(writer.call(|cx| {
                Ok(cx
                    .conn
                    .pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))?)
            }))
            .unwrap();
        assert_eq!(level, 2, "FULL: SQLite fsyncs each commit itself");
    }

    #[test]
    fn the_wait_of_every_job_for_its_batch_is_timed() {
        let dir = tempfile::tempdir().unwrap();
        let (batcher, _jobs, _gate) = batcher(dir.path());
        let (early, _a) = probe(false);
        // The writer is busy elsewhere for 20 ms while the first job waits.
        std::thread::sleep(Duration::from_millis(20));
        let (late, _b) = probe(false);
        batcher.run_batch(&mut vec![early, late]);
        let waited = batcher.counters.snapshot().queue_wait_micros;
        assert_eq!(waited.count, 2, "one observation per job");
        assert!(waited.sum >= 20_000, "{waited:?}");
        assert_eq!(waited.counts[0], 1, "the late job waited under 100 µs");
    }

    #[test]
    fn by_default_a_batch_takes_what_is_queued_and_does_not_wait_for_more() {
        let dir = tempfile::tempdir().unwrap();
        let (mut batcher, jobs, _gate) = batcher(dir.path());
        batcher.max_wait = StoreConfig::new(dir.path().join("w.db")).group_commit_max_wait;
        batcher.max_jobs = 512;
        for _ in 0..3 {
            jobs.send(probe(true).0).unwrap();
        }
        // A steady stream, a job every 30 µs for 5 ms: waiting for more would take them in.
        let feeder = std::thread::spawn(move || {
            let start = Instant::now();
            let mut next = Duration::ZERO;
            while next < Duration::from_millis(5) {
                while start.elapsed() < next {
                    std::hint::spin_loop();
                }
                let _ = jobs.send(probe(true).0);
                next += Duration::from_micros(30);
            }
        });
        let mut batch = Vec::new();
        batcher.collect(&mut batch);
        assert!(batch.len() < 10, "waited for more: {} jobs", batch.len());
        feeder.join().unwrap();
    }

    #[test]
    fn collect_stops_at_max_jobs_and_when_the_queue_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let (batcher, jobs, _gate) = batcher(dir.path());
        let mut answers = Vec::new();
        for _ in 0..10 {
            let (job, answer) = probe(true);
            jobs.send(job).unwrap();
            answers.push(answer);
        }
        let mut batch = Vec::new();
        batcher.collect(&mut batch);
        assert_eq!(batch.len(), 8, "capped at max_jobs");
        batch.clear();
        batcher.collect(&mut batch);
        assert_eq!(batch.len(), 2, "took what was queued without waiting");
    }
}
