//! Durable message store on SQLite (rusqlite, bundled): schema and migrations, group commit,
//! per-mailbox counts, fetch claims, quotas, retention and persisted PUBLISH state. It never
//! speaks SIP.
//!
//! One writer thread owns the write connection and commits the jobs of many callers in one
//! transaction (`synchronous=FULL` by default), answering each only after that commit; reads run
//! on a few read-only connections in tokio's blocking pool (WAL lets them run beside the writer).
//!
//! How the server uses it:
//! - Deposit: [`Store::insert`]; answer the sender (MSRP 200, SIP 202) only after it resolves.
//!   [`StoreError::Limit`] means refused and nothing written.
//! - MWI: [`Store::counts`] and [`Store::newest_headers`] build the RFC 3842 body;
//!   [`Store::publication`] / [`Store::save_publication`] keep the RFC 3903 entity-tag across
//!   restarts; [`Store::mailboxes_with_waiting`] lists what to publish at start-up.
//! - Fetch: [`Store::claim`] with a `fetch_id` unique among running fetches, then
//!   [`Store::delivered`] for each acknowledged message and [`Store::release`] when the fetch
//!   ends; a message claimed by one fetch is never handed to another until released.
//! - Operators: [`Store::mailboxes`], [`Store::messages`], [`Store::stats`], [`Store::purge`];
//!   a second process (the admin CLI) opens the same file with
//!   [`StoreConfig::release_claims_on_open`] off. [`Store::purge_expired`] runs periodically.
//! - Metrics: [`Store::writer_stats`] (commits, batch sizes, commit latency).

mod checkpoint;
mod claims;
mod config;
mod deposit;
mod error;
mod mailbox_index;
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
mod wal_sync;
mod writer;

pub use config::{Limits, StoreConfig, Synchronous};
pub use error::{LimitExceeded, StoreError};
pub use model::{
    Counts, MailboxSummary, MessageHeaders, MessageState, NewMessage, PublicationRecord, Purged,
    Source, StoreStats, StoredId, StoredMessage,
};
pub use schema::SCHEMA_VERSION;
pub use stats::{AtomicHistogram, Histogram, WriterStats, BATCH_SIZE_BOUNDS, COMMIT_MICROS_BOUNDS};
pub use store::Store;
