//! The one writer thread and its group commit.
//!
//! Async callers send a job over a channel and await a oneshot. The thread takes the first
//! queued job, collects more for up to `group_commit_max_rows` jobs or `group_commit_max_wait`,
//! runs them all in one `BEGIN IMMEDIATE … COMMIT` (with the configured `synchronous`, FULL by
//! default, so the COMMIT returns after the WAL fsync), and only then answers every caller.
//!
//! Collecting stops early once the queue has stayed empty for `IDLE_GAP`: when every caller is
//! already in the batch, waiting out `max_wait` would only add latency.
//!
//! A job that fails must leave nothing behind, so the rest of its batch can commit. Every job
//! is written to make at most one data-changing statement that matters (checks and reads come
//! first), and SQLite rolls back a failed statement alone. Savepoints would give the same
//! guarantee but copy every page a job touches into the statement journal, which measured as
//! the largest CPU cost of a deposit. If SQLite instead abandons the whole transaction (it may
//! on I/O errors or a full disk), the batch stops and every job in it gets the error.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::config::{Limits, StoreConfig};
use crate::error::StoreError;
use crate::stats::WriterCounters;

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
}

/// A job's result waiting for the commit of its batch.
trait Answer: Send {
    /// Sends the result if the commit succeeded, else the commit error.
    fn send(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct Call<F, T> {
    work: F,
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
}

impl Writer {
    /// Starts the thread that owns `conn`.
    pub(crate) fn start(conn: Connection, config: &StoreConfig) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let counters = Arc::new(WriterCounters::new());
        let batcher = Batcher {
            conn,
            queue,
            limits: config.limits.clone(),
            max_jobs: config.group_commit_max_rows.max(1),
            max_wait: config.group_commit_max_wait,
            counters: Arc::clone(&counters),
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || batcher.run())
            .map_err(|e| StoreError::Thread(Arc::new(e)))?;
        Ok(Writer { jobs, counters })
    }

    /// Queues `work` and resolves after the transaction containing it has committed.
    pub(crate) async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&JobContext<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(Call { work, reply }))
            .map_err(|_| StoreError::WorkerGone)?;
        answer.await.map_err(|_| StoreError::WorkerGone)?
    }

    pub(crate) fn counters(&self) -> &WriterCounters {
        &self.counters
    }
}

struct Batcher {
    conn: Connection,
    queue: Receiver<Box<dyn Job>>,
    limits: Limits,
    max_jobs: usize,
    max_wait: Duration,
    counters: Arc<WriterCounters>,
}

impl Batcher {
    fn run(self) {
        let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(self.max_jobs);
        while let Ok(first) = self.queue.recv() {
            batch.push(first);
            self.collect(&mut batch);
            self.commit(&mut batch);
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

    /// Runs the batch in one transaction and answers every job.
    fn commit(&self, batch: &mut Vec<Box<dyn Job>>) {
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
        let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(jobs);
        let mut lost = None;
        for job in batch.drain(..) {
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
            Ok(()) => self.counters.committed(jobs, started.elapsed()),
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
