//! Durable message store on SQLite (rusqlite, bundled): schema and migrations, group commit,
//! per-mailbox counts, fetch claims, quotas, retention and persisted PUBLISH state. It never
//! speaks SIP.
//!
//! One writer thread owns the write connection and commits the jobs of many callers in one
//! transaction (`synchronous=FULL` by default), answering each only after that commit; reads run
//! on a few read-only connections in tokio's blocking pool (WAL lets them run beside the writer).

mod claims;
mod config;
mod deposit;
mod error;
mod model;
mod publication;
mod queries;
mod reader;
mod republish;
mod retention;
mod row;
mod schema;
mod stats;
mod store;
mod writer;

pub use config::{Limits, StoreConfig, Synchronous};
pub use error::{LimitExceeded, StoreError};
pub use model::{
    Counts, MailboxSummary, MessageHeaders, MessageState, NewMessage, PublicationRecord, Purged,
    Source, StoreStats, StoredId, StoredMessage,
};
pub use schema::SCHEMA_VERSION;
pub use stats::{Histogram, WriterStats, BATCH_SIZE_BOUNDS, COMMIT_MICROS_BOUNDS};
pub use store::Store;
