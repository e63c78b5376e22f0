//! WAL checkpoints on their own thread, so the writer's commits do not wait for them.
//!
//! In WAL mode a commit only appends to the WAL; a checkpoint copies the WAL's pages back into
//! the database file and fsyncs it. Left to SQLite's automatic checkpoint, that copy runs inside
//! the writer's COMMIT every `wal_autocheckpoint` pages: a stall of tens of milliseconds for
//! every caller in the batch and the batches queued behind it (the p99 of deposit latency).
//!
//! This thread runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection a few times a second
//! while commits happen. A passive checkpoint takes no lock the writer needs, so commits go on
//! while it copies. The writer keeps its automatic checkpoint: SQLite rewinds the WAL to its
//! start only when it has been checkpointed to its last frame at the moment a write transaction
//! begins, which under steady load only the writer's own checkpoint reaches; by then this
//! thread has copied nearly everything, so what is left to copy in the COMMIT is small.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::stats::WriterCounters;

/// How often the thread looks for new commits to checkpoint.
const INTERVAL: Duration = Duration::from_millis(200);

/// Handle to the checkpoint thread; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    _stop: Sender<()>,
}

/// What the checkpoint thread has done, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct CheckpointCounters {
    /// Passive checkpoints run.
    pub(crate) runs: AtomicU64,
}

impl Checkpointer {
    /// Opens a read-write connection to the (already migrated) database and starts the thread;
    /// it checkpoints whenever `writer` has committed since its last run.
    pub(crate) fn start(
        config: &StoreConfig,
        writer: Arc<WriterCounters>,
        counters: Arc<CheckpointCounters>,
    ) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(&config.path)?;
        conn.busy_timeout(config.busy_timeout)?;
        // The checkpoint fsyncs the database file before the WAL may be reused (unless OFF).
        conn.pragma_update(None, "synchronous", config.synchronous.pragma_value())?;
        let (stop, stopped) = mpsc::channel::<()>();
        // Read here, not in the thread: commits made before it first runs must count as new.
        let mut seen = writer.commits();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                let mut failing = false;
                // Ends when the handle is dropped (Disconnected), never on a message.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    let commits = writer.commits();
                    if commits == seen {
                        continue;
                    }
                    seen = commits;
                    match passive_checkpoint(&conn) {
                        Ok(()) => {
                            counters.runs.fetch_add(1, Ordering::Relaxed);
                            failing = false;
                        }
                        // The writer's own checkpoint still bounds the WAL: warn once per
                        // spell of failures, not five times a second.
                        Err(error) if !failing => {
                            failing = true;
                            tracing::warn!(%error, "store: background WAL checkpoint failed; \
                                the writer checkpoints on its own meanwhile");
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|e| StoreError::Thread(Arc::new(e)))?;
        Ok(Checkpointer { _stop: stop })
    }
}

/// Runs one passive checkpoint (its result row, busy flag and frame counts, is not needed).
fn passive_checkpoint(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schema;
    use std::time::Instant;

    #[test]
    fn commits_are_checkpointed_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(dir.path().join("c.db"));
        let writer_conn = schema::open_writer(&config).unwrap();
        // Only the thread may checkpoint here.
        writer_conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .unwrap();
        let writer = Arc::new(WriterCounters::new());
        let counters = Arc::new(CheckpointCounters::default());
        let db_len = || std::fs::metadata(&config.path).unwrap().len();
        let before = db_len();
        let _thread =
            Checkpointer::start(&config, Arc::clone(&writer), Arc::clone(&counters)).unwrap();
        for i in 0..200 {
            writer_conn
                .execute(
                    "INSERT INTO mailbox(aor) VALUES (?1)",
                    [format!("sip:u{i}@x")],
                )
                .unwrap();
        }
        writer.committed(200, Duration::from_millis(1));
        let deadline = Instant::now() + Duration::from_secs(10);
        // The file grows during the checkpoint, the count after it: wait for both.
        while (db_len() == before || counters.runs.load(Ordering::Relaxed) == 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(counters.runs.load(Ordering::Relaxed) >= 1);
        assert!(
            db_len() > before,
            "the WAL frames reached the database file without the writer checkpointing"
        );
        let runs = counters.runs.load(Ordering::Relaxed);
        std::thread::sleep(INTERVAL * 3);
        assert_eq!(
            counters.runs.load(Ordering::Relaxed),
            runs,
            "no run without a new commit"
        );
    }
}
