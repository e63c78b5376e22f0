//! Errors of the store. `StoreError` is `Clone` because one failed group commit answers every
//! caller in its batch with the same error.

use std::sync::Arc;

/// A deposit refused by a configured limit; nothing was written. The `Display` text is meant
/// for a SIP `Warning`/`Reason` or an MSRP status comment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The body is larger than `max_message_bytes`.
    #[error("message of {bytes} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Size of the refused body.
        bytes: u64,
        /// The configured limit.
        max: u64,
    },
    /// The mailbox already holds `max_messages_per_mailbox` messages.
    #[error("mailbox full: it holds {messages} messages, the limit is {max}")]
    MailboxFull {
        /// Messages the mailbox holds.
        messages: u64,
        /// The configured limit.
        max: u64,
    },
    /// Storing the body would take the mailbox over `max_bytes_per_mailbox`.
    #[error(
        "mailbox full: {bytes} bytes stored plus this message exceed the limit of {max} bytes"
    )]
    MailboxBytes {
        /// Bytes the mailbox holds before this message.
        bytes: u64,
        /// The configured limit.
        max: u64,
    },
}

/// Everything that can go wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A deposit over a limit was refused.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// SQLite failed (I/O error, disk full, corrupt file, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// The database was written by a newer build; refusing to touch it.
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// Newest version this build migrates to.
        supported: i64,
    },
    /// A stored value could not be read back (e.g. an unknown state name).
    #[error("stored row {row}: {what}")]
    Corrupt {
        /// Row id.
        row: i64,
        /// What was wrong.
        what: String,
    },
    /// SQLite abandoned the batch transaction after an error in another job; nothing of the
    /// batch was written.
    #[error("store transaction rolled back by SQLite after an I/O error")]
    TransactionLost,
    /// The writer thread could not be started.
    #[error("cannot start the store writer thread: {0}")]
    Thread(#[source] Arc<std::io::Error>),
    /// The WAL could not be made durable (fsync failed, or the WAL could not be opened for it);
    /// after a failed fsync no commit is acknowledged until the process restarts.
    #[error("cannot make the store's WAL durable: {0}")]
    WalSync(#[source] Arc<std::io::Error>),
    /// The writer thread or a read task has stopped; the store is unusable.
    #[error("store worker stopped")]
    WorkerGone,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(e))
    }
}
