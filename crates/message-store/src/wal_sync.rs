//! Durable commits with the WAL fsync off the writer's path.
//!
//! With `synchronous = FULL`, SQLite fsyncs the WAL inside every COMMIT, and the writer can
//! start the next batch only when the disk has answered. Instead the write connection runs
//! with `synchronous = NORMAL` (a COMMIT appends its frames to the WAL and returns; SQLite still
//! syncs the WAL before and the database after each checkpoint), and this thread makes the
//! commits durable: it takes every batch committed since its last round, `fdatasync`s the WAL
//! once, and only then answers their callers. Meanwhile the writer runs the next batch, so the
//! disk and the CPU work at the same time, and one fsync covers all the batches that queued
//! behind the previous one (PostgreSQL's WAL flush works the same way). An answer still means
//! what FULL means: the frames of its commit were on disk before it was sent, since they were
//! written before the fsync began.
//!
//! `fdatasync` rather than SQLite's `fsync`: once the WAL has reached its working size its
//! writes change no file metadata, so the sync need not wait for a journal commit of the file
//! system, which a checkpoint's fsync of the database file may be holding up.
//!
//! A failed fsync is final (as in PostgreSQL): the kernel may have dropped the pages it could
//! not write and report success next time, so every later durable answer is the error too,
//! until the process restarts and SQLite recovers the WAL from what reached the disk.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use crate::error::StoreError;
use crate::stats::WriterCounters;
use crate::writer::Answer;

/// What the thread syncs: the WAL file in the server, a controllable stand-in in tests.
pub(crate) trait WalFile: Send + 'static {
    /// Makes every write made to the file so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

impl WalFile for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// Opens the WAL of the database at `db` for syncing, and fsyncs its directory once so the
/// WAL's own directory entry survives power loss (SQLite would sync it on its first sync of a
/// new WAL, which it no longer does itself). The WAL exists: the write connection created it
/// when it entered WAL mode, and it stays (same file) while that connection is open.
pub(crate) fn open_wal(db: &Path) -> Result<File, StoreError> {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    let wal = File::options()
        .read(true)
        .write(true)
        .open(&name)
        .map_err(|e| StoreError::WalSync(Arc::new(e)))?;
    let dir = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::WalSync(Arc::new(e)))?;
    Ok(wal)
}

/// One committed batch waiting for its fsync.
pub(crate) struct Committed {
    /// One per job of the batch.
    pub(crate) answers: Vec<Box<dyn Answer>>,
    /// When the batch began, for the commit-latency histogram (which includes the fsync).
    pub(crate) started: Instant,
}

/// Handle to the sync thread. Dropping it lets the thread answer what is queued and end.
#[derive(Debug)]
pub(crate) struct WalSyncer {
    committed: Sender<Committed>,
}

impl WalSyncer {
    /// Starts the thread over `wal`.
    pub(crate) fn start(
        wal: impl WalFile,
        counters: Arc<WriterCounters>,
    ) -> Result<WalSyncer, StoreError> {
        let (committed, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("store-walsync".into())
            .spawn(move || run(wal, &queue, &counters))
            .map_err(|e| StoreError::Thread(Arc::new(e)))?;
        Ok(WalSyncer { committed })
    }

    /// Hands over a committed batch; its callers are answered after the next fsync. If the
    /// thread is gone (it never stops while a handle lives), they are answered with the error.
    pub(crate) fn submit(&self, batch: Committed) {
        if let Err(mpsc::SendError(batch)) = self.committed.send(batch) {
            for answer in batch.answers {
                answer.send(Err(&StoreError::WorkerGone));
            }
        }
    }
}

fn run(mut wal: impl WalFile, queue: &Receiver<Committed>, counters: &WriterCounters) {
    let mut failed: Option<StoreError> = None;
    let mut round = Vec::new();
    while let Ok(first) = queue.recv() {
        round.push(first);
        round.extend(queue.try_iter());
        if failed.is_none() {
            let syncing = Instant::now();
            let synced = wal.sync();
            counters.wal_synced(syncing.elapsed());
            if let Err(e) = synced {
                tracing::error!(
                    error = %e,
                    "store: fsync of the WAL failed; no commit can be acknowledged from now on. \
                     Check the disk, then restart the server"
                );
                failed = Some(StoreError::WalSync(Arc::new(e)));
            }
        }
        for batch in round.drain(..) {
            match &failed {
                None => counters.committed(batch.answers.len(), batch.started.elapsed()),
                Some(_) => {
                    counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                }
            }
            let outcome = failed.as_ref().map_or(Ok(()), Err);
            for answer in batch.answers {
                answer.send(outcome);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// A WAL whose syncs wait for the test's go-ahead and then succeed or fail as told.
    pub(crate) struct GatedWal {
        go: Receiver<io::Result<()>>,
        syncs: Sender<()>,
    }

    /// The test's side of a [`GatedWal`]: a message on `syncs` per fsync begun; each waits for
    /// one on `go`.
    pub(crate) struct Gate {
        pub(crate) go: Sender<io::Result<()>>,
        pub(crate) syncs: Receiver<()>,
    }

    impl GatedWal {
        pub(crate) fn new() -> (GatedWal, Gate) {
            let (go, gate) = mpsc::channel();
            let (synced, syncs) = mpsc::channel();
            (
                GatedWal {
                    go: gate,
                    syncs: synced,
                },
                Gate { go, syncs },
            )
        }
    }

    impl WalFile for GatedWal {
        fn sync(&mut self) -> io::Result<()> {
            self.syncs.send(()).ok();
            self.go.recv().unwrap_or(Ok(()))
        }
    }

    struct Reply(oneshot::Sender<Result<(), StoreError>>);

    impl Answer for Reply {
        fn send(self: Box<Self>, commit: Result<(), &StoreError>) {
            let _ = self.0.send(commit.map_err(StoreError::clone));
        }
    }

    fn batch(n: usize) -> (Committed, Vec<oneshot::Receiver<Result<(), StoreError>>>) {
        let (answers, receivers): (Vec<Box<dyn Answer>>, Vec<_>) = (0..n)
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                (Box::new(Reply(tx)) as Box<dyn Answer>, rx)
            })
            .unzip();
        let committed = Committed {
            answers,
            started: Instant::now(),
        };
        (committed, receivers)
    }

    fn syncer() -> (WalSyncer, Gate, Arc<WriterCounters>) {
        let counters = Arc::new(WriterCounters::new());
        let (wal, gate) = GatedWal::new();
        let syncer = WalSyncer::start(wal, Arc::clone(&counters)).unwrap();
        (syncer, gate, counters)
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn callers_are_answered_only_after_the_fsync_and_batches_queued_meanwhile_share_one() {
        let (syncer, Gate { go, syncs }, counters) = syncer();
        let (first, mut first_rx) = batch(2);
        syncer.submit(first);
        syncs.recv_timeout(WAIT).unwrap();
        // The fsync is running: nobody is answered yet, and two more batches queue behind it.
        assert!(first_rx.iter_mut().all(|rx| rx.try_recv().is_err()));
        let (second, mut second_rx) = batch(1);
        let (third, third_rx) = batch(3);
        syncer.submit(second);
        syncer.submit(third);
        go.send(Ok(())).unwrap();
        for rx in first_rx {
            rx.blocking_recv().unwrap().unwrap();
        }
        // One more fsync for the two batches that queued during the first.
        syncs.recv_timeout(WAIT).unwrap();
        assert!(second_rx[0].try_recv().is_err());
        go.send(Ok(())).unwrap();
        for rx in second_rx.into_iter().chain(third_rx) {
            rx.blocking_recv().unwrap().unwrap();
        }
        assert!(
            syncs.recv_timeout(Duration::from_millis(50)).is_err(),
            "two fsyncs for three batches"
        );
        let stats = counters.snapshot();
        assert_eq!((stats.commits, stats.jobs), (3, 6));
    }

    #[test]
    fn every_fsync_is_timed() {
        let (syncer, Gate { go, syncs }, counters) = syncer();
        let (first, first_rx) = batch(1);
        syncer.submit(first);
        syncs.recv_timeout(WAIT).unwrap();
        // A slow disk: this fsync takes at least 30 ms.
        std::thread::sleep(Duration::from_millis(30));
        go.send(Ok(())).unwrap();
        for rx in first_rx {
            rx.blocking_recv().unwrap().unwrap();
        }
        let synced = counters.snapshot().wal_sync_micros;
        assert_eq!(synced.count, 1);
        assert!(synced.sum >= 30_000, "{synced:?}");
        assert_eq!(
            synced.counts.iter().take(7).sum::<u64>(),
            0,
            "not under 10 ms"
        );
    }

    #[test]
    fn a_failed_fsync_fails_its_batches_and_every_later_one() {
        let (syncer, Gate { go, syncs }, counters) = syncer();
        let (first, first_rx) = batch(1);
        syncer.submit(first);
        syncs.recv_timeout(WAIT).unwrap();
        go.send(Err(io::Error::other("EIO"))).unwrap();
        for rx in first_rx {
            assert!(matches!(
                rx.blocking_recv().unwrap(),
                Err(StoreError::WalSync(_))
            ));
        }
        // The next sync would "succeed": it is not even tried.
        let (later, later_rx) = batch(2);
        syncer.submit(later);
        for rx in later_rx {
            assert!(matches!(
                rx.blocking_recv().unwrap(),
                Err(StoreError::WalSync(_))
            ));
        }
        assert!(syncs.try_recv().is_err(), "no fsync after the failure");
        let stats = counters.snapshot();
        assert_eq!((stats.commits, stats.failed_commits), (0, 2));
    }

    #[test]
    fn the_wal_of_a_database_is_opened_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        assert!(matches!(open_wal(&db), Err(StoreError::WalSync(_))));
        std::fs::write(dir.path().join("s.db-wal"), b"").unwrap();
        open_wal(&db).unwrap().sync().unwrap();
    }
}
