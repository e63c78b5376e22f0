//! Durable message store on SQLite (rusqlite, bundled): schema and migrations, group commit,
//! per-mailbox counts, quotas and retention. It never speaks SIP.
