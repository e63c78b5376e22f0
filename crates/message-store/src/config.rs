//! Store configuration: where the database lives, how durable a commit is, how commits are
//! grouped, and the per-mailbox limits (issue 4, SPEC §4).

use std::path::PathBuf;
use std::time::Duration;

/// SQLite `PRAGMA synchronous` for the write connection.
///
/// `Full` (the default) is what makes an acknowledged message survive power loss: in WAL mode
/// every commit waits for the WAL fsync. `Normal` survives a process kill but may lose the last
/// commits on power loss; `Off` may lose them on an OS crash too. Lower only with intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Fsync the WAL on every commit (durable against power loss).
    #[default]
    Full,
    /// Fsync only at checkpoints (durable against process crash, not power loss).
    Normal,
    /// Never fsync (the OS decides).
    Off,
}

impl Synchronous {
    /// The value as SQLite spells it in `PRAGMA synchronous`.
    pub fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

/// Limits applied to every deposit and by the retention purge.
///
/// Per-mailbox limits count every row the mailbox holds (waiting and delivered-but-kept), so
/// they bound disk use; kept rows leave through `delivered_retention_days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest body (bytes as received) a deposit may carry.
    pub max_message_bytes: u64,
    /// Most messages one mailbox may hold.
    pub max_messages_per_mailbox: u64,
    /// Most body bytes one mailbox may hold.
    pub max_bytes_per_mailbox: u64,
    /// Messages received longer ago than this are removed by the retention purge; `None` keeps
    /// them until they are fetched.
    pub retention_days: Option<u32>,
    /// Delivered messages kept for the user (`keep` in `Store::delivered`) are removed this many
    /// days after delivery; `None` keeps them until the general retention removes them.
    pub delivered_retention_days: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 1024 * 1024,
            max_messages_per_mailbox: 10_000,
            max_bytes_per_mailbox: 64 * 1024 * 1024,
            retention_days: None,
            delivered_retention_days: Some(30),
        }
    }
}

/// Everything `Store::open` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Database file; created with its directory entry if missing (the directory must exist).
    pub path: PathBuf,
    /// Durability of each commit.
    pub synchronous: Synchronous,
    /// Group commit: most jobs (inserts, claims, ...) committed in one transaction.
    pub group_commit_max_rows: usize,
    /// Group commit: how long the writer waits for more jobs after the first one of a batch.
    /// It stops sooner once no job has arrived for 100 µs (everyone waiting is in the batch);
    /// zero (the default, as PostgreSQL's `commit_delay`) commits whatever is queued at once:
    /// batches still grow with the load, from the jobs that queue while a batch runs.
    pub group_commit_max_wait: Duration,
    /// Read-only connections for counts and listings (at least one is opened).
    pub read_connections: usize,
    /// How long a connection waits for a lock held by another process (e.g. the admin CLI).
    pub busy_timeout: Duration,
    /// Free every fetch claim on open. The server sets this (claims of a crashed process are
    /// worthless); the admin CLI clears it so it never steals a running server's claims.
    pub release_claims_on_open: bool,
    /// Deposit limits and retention.
    pub limits: Limits,
}

impl StoreConfig {
    /// Defaults for everything but the path: `synchronous=FULL`, batches of up to 512 jobs or
    /// 1 ms, 4 read connections.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            synchronous: Synchronous::Full,
            group_commit_max_rows: 512,
            group_commit_max_wait: Duration::ZERO,
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            release_claims_on_open: true,
            limits: Limits::default(),
        }
    }
}
