//! Writer figures for metrics: commits, jobs, group-commit batch sizes, commit latency and its
//! two parts that can stall (the wait for the writer, the WAL fsync), kept in lock-free
//! counters and read as a snapshot (Prometheus histogram shape).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the batch-size buckets (jobs per commit).
pub const BATCH_SIZE_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// Upper bounds of the commit-latency buckets, in microseconds.
pub const COMMIT_MICROS_BOUNDS: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A snapshot of a histogram: `counts[i]` observations were `<= bounds[i]` and above the
/// previous bound (not cumulative); the last entry counts those above every bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Bucket upper bounds, ascending.
    pub bounds: &'static [u64],
    /// Observations per bucket; one longer than `bounds` (the `+Inf` bucket).
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: u64,
    /// Number of observations.
    pub count: u64,
}

/// A histogram bumped lock-free by many threads and read as a [`Histogram`] snapshot; the
/// store's figures use it, and so may its embedder for its own latencies.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [u64],
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl AtomicHistogram {
    /// An empty histogram over `bounds` (ascending upper bounds).
    pub fn new(bounds: &'static [u64]) -> Self {
        AtomicHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts `value` in the first bucket whose bound holds it.
    pub fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|&b| b < value);
        if let Some(b) = self.buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `d` in microseconds (the unit of [`COMMIT_MICROS_BOUNDS`]).
    pub fn observe_micros(&self, d: Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Histogram {
        Histogram {
            bounds: self.bounds,
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// What the writer has done since this process opened the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions that failed to commit (every job in them was answered with the error).
    pub failed_commits: u64,
    /// WAL checkpoints run by the checkpoint thread beside the writer.
    pub background_checkpoints: u64,
    /// Jobs (inserts, claims, acknowledgements, ...) in committed transactions.
    pub jobs: u64,
    /// Jobs per committed transaction.
    pub batch_sizes: Histogram,
    /// Time from `BEGIN` to the end of `COMMIT` (fsync included), µs.
    pub commit_micros: Histogram,
    /// Time a job waited in the writer's queue before its batch began, µs: long when the
    /// writer is saturated or stalled.
    pub queue_wait_micros: Histogram,
    /// Duration of each WAL `fdatasync` (`synchronous = FULL` in WAL mode), µs: long when the
    /// disk is slow or busy (a checkpoint's writes, another process).
    pub wal_sync_micros: Histogram,
}

#[derive(Debug)]
pub(crate) struct WriterCounters {
    pub(crate) failed_commits: AtomicU64,
    batch_sizes: AtomicHistogram,
    commit_micros: AtomicHistogram,
    queue_wait_micros: AtomicHistogram,
    wal_sync_micros: AtomicHistogram,
}

impl WriterCounters {
    pub(crate) fn new() -> Self {
        WriterCounters {
            failed_commits: AtomicU64::new(0),
            batch_sizes: AtomicHistogram::new(BATCH_SIZE_BOUNDS),
            commit_micros: AtomicHistogram::new(COMMIT_MICROS_BOUNDS),
            queue_wait_micros: AtomicHistogram::new(COMMIT_MICROS_BOUNDS),
            wal_sync_micros: AtomicHistogram::new(COMMIT_MICROS_BOUNDS),
        }
    }

    /// A job waited `waited` between its queueing and the start of its batch.
    pub(crate) fn dequeued(&self, waited: Duration) {
        self.queue_wait_micros.observe_micros(waited);
    }

    /// One WAL fsync took `took`.
    pub(crate) fn wal_synced(&self, took: Duration) {
        self.wal_sync_micros.observe_micros(took);
    }

    pub(crate) fn committed(&self, jobs: usize, took: Duration) {
        self.batch_sizes
            .observe(u64::try_from(jobs).unwrap_or(u64::MAX));
        self.commit_micros.observe_micros(took);
    }

    /// Transactions committed so far.
    pub(crate) fn commits(&self) -> u64 {
        self.batch_sizes.count.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> WriterStats {
        let batch_sizes = self.batch_sizes.snapshot();
        WriterStats {
            commits: batch_sizes.count,
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
            background_checkpoints: 0,
            jobs: batch_sizes.sum,
            batch_sizes,
            commit_micros: self.commit_micros.snapshot(),
            queue_wait_micros: self.queue_wait_micros.snapshot(),
            wal_sync_micros: self.wal_sync_micros.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_puts_values_in_the_first_bucket_that_holds_them() {
        let h = AtomicHistogram::new(&[1, 10]);
        for v in [0, 1, 2, 10, 11, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 2, 2]);
        assert_eq!(s.sum, 1024);
        assert_eq!(s.count, 6);
    }
}
