//! Schema, migrations and connection setup.
//!
//! The schema version lives in `PRAGMA user_version`. `MIGRATIONS[i]` takes the database from
//! version `i` to `i + 1`; a later schema is added as a new step at the end, never by editing a
//! step that has shipped. Each step runs in its own `BEGIN IMMEDIATE` transaction together with
//! the version bump, so a crash mid-migration leaves the previous version intact.

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::config::StoreConfig;
use crate::error::StoreError;

/// Version 1: mailboxes (with quota counters and persisted PUBLISH state) and messages.
///
/// Times are microseconds since the Unix epoch (UTC). `message.claim` holds the fetch id that
/// has claimed a waiting message; claims are only meaningful while one server process runs.
const V1: &str = r#"
CREATE TABLE mailbox (
    id INTEGER PRIMARY KEY,
    aor TEXT NOT NULL UNIQUE,
    -- RFC 3842 counts and body bytes, maintained by the triggers below: read by the quota
    -- check on every deposit and by every count query, without scanning messages
    new_count INTEGER NOT NULL DEFAULT 0,
    old_count INTEGER NOT NULL DEFAULT 0,
    urgent_new INTEGER NOT NULL DEFAULT 0,
    urgent_old INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER NOT NULL DEFAULT 0,
    publication_etag TEXT,
    publication_expires_at INTEGER
) STRICT;

CREATE TABLE message (
    -- AUTOINCREMENT: ids are never reused, so a late acknowledgement cannot hit a newer message
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox_id INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
    sender_aor TEXT NOT NULL,
    sender_name TEXT,
    sender_verified INTEGER NOT NULL CHECK (sender_verified IN (0, 1)),
    recipient TEXT NOT NULL,
    content_type TEXT NOT NULL,
    inner_content_type TEXT,
    body BLOB NOT NULL,
    message_id TEXT,
    sender_time INTEGER,
    received_at INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('msrp', 'sip-message')),
    state TEXT NOT NULL CHECK (state IN ('new', 'delivered')),
    delivered_at INTEGER,
    urgent INTEGER NOT NULL CHECK (urgent IN (0, 1)),
    subject TEXT,
    claim INTEGER
) STRICT;

CREATE INDEX message_by_mailbox ON message(mailbox_id, state, id);
CREATE INDEX message_by_received ON message(received_at);
CREATE INDEX message_by_delivered ON message(delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX message_by_claim ON message(claim) WHERE claim IS NOT NULL;

CREATE TRIGGER message_counted AFTER INSERT ON message BEGIN
    UPDATE mailbox
       SET new_count = new_count + (NEW.state = 'new'),
           old_count = old_count + (NEW.state = 'delivered'),
           urgent_new = urgent_new + (NEW.state = 'new' AND NEW.urgent),
           urgent_old = urgent_old + (NEW.state = 'delivered' AND NEW.urgent),
           total_bytes = total_bytes + length(NEW.body)
     WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER message_uncounted AFTER DELETE ON message BEGIN
    UPDATE mailbox
       SET new_count = new_count - (OLD.state = 'new'),
           old_count = old_count - (OLD.state = 'delivered'),
           urgent_new = urgent_new - (OLD.state = 'new' AND OLD.urgent),
           urgent_old = urgent_old - (OLD.state = 'delivered' AND OLD.urgent),
           total_bytes = total_bytes - length(OLD.body)
     WHERE id = OLD.mailbox_id;
END;

CREATE TRIGGER message_restated AFTER UPDATE OF state ON message
WHEN OLD.state <> NEW.state BEGIN
    UPDATE mailbox
       SET new_count = new_count - (OLD.state = 'new') + (NEW.state = 'new'),
           old_count = old_count - (OLD.state = 'delivered') + (NEW.state = 'delivered'),
           urgent_new = urgent_new - (OLD.state = 'new' AND OLD.urgent)
                                   + (NEW.state = 'new' AND NEW.urgent),
           urgent_old = urgent_old - (OLD.state = 'delivered' AND OLD.urgent)
                                   + (NEW.state = 'delivered' AND NEW.urgent)
     WHERE id = NEW.mailbox_id;
END;
"#;

/// Every migration step, in order.
const MIGRATIONS: &[&str] = &[
    V1,
    crate::republish::SCHEMA_V2,
    crate::mailbox_index::SCHEMA_V3,
    crate::mailbox_index::SCHEMA_V4,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// WAL pages between automatic checkpoints (SQLite's default is 1000).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Opens the write connection: WAL, foreign keys, busy timeout, the configured `synchronous`,
/// then brings the schema up to date.
pub(crate) fn open_writer(config: &StoreConfig) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(&config.path)?;
    conn.busy_timeout(config.busy_timeout)?;
    // Room for every statement the writer's jobs prepare (rusqlite's default is 16).
    conn.set_prepared_statement_cache_capacity(64);
    // journal_mode answers with the mode in force; WAL lets readers run beside the writer.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            mode,
            "store: SQLite refused WAL mode; readers will wait for writers"
        );
    }
    conn.pragma_update(None, "synchronous", config.synchronous.pragma_value())?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&mut conn)?;
    // SQLite checkpoints inside the COMMIT that crosses this many WAL pages. Every batch dirties
    // the same index leaves (one per active mailbox); checkpointing every ~40 MiB instead of
    // SQLite's 4 MiB copies each of them into the database once instead of ten times (measured:
    // 1.5-2x durable inserts/s with 1000 mailboxes). A restarted WAL is cut back to 64 MiB.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(conn)
}

/// Opens one read-only connection (after `open_writer` has created and migrated the file).
pub(crate) fn open_reader(config: &StoreConfig) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        &config.path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(config.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Applies every missing step. Safe against a second process migrating at the same time: the
/// version is re-read inside the write transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_with(conn, MIGRATIONS)
}

fn migrate_with(conn: &mut Connection, steps: &[&str]) -> Result<(), StoreError> {
    let latest = i64::try_from(steps.len()).unwrap_or(i64::MAX);
    // The common case, up to date, takes no write lock (the admin CLI opens beside the server).
    if user_version(conn)? == latest {
        return Ok(());
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = user_version(&tx)?;
        if version > latest {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported: latest,
            });
        }
        let Some(step) = usize::try_from(version).ok().and_then(|v| steps.get(v)) else {
            // Up to date (or a negative version, which no build ever writes).
            return Ok(());
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "store: schema migrated");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mailbox_index::tests::{filed_and_recent, insert_body, with_mailboxes};

    /// A database file brought to schema `version` only, holding the mailboxes `aors` (ids 1,
    /// 2, …), to test the steps after it.
    fn file_at_version(version: usize, aors: &[&str]) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("s.db")).unwrap();
        migrate_with(&mut conn, &MIGRATIONS[..version]).unwrap();
        for aor in aors {
            conn.execute("INSERT INTO mailbox(aor) VALUES (?1)", [aor])
                .unwrap();
        }
        (dir, conn)
    }

    #[test]
    fn migrates_an_empty_file_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(dir.path().join("s.db"));
        let conn = open_writer(&config).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ('mailbox','message')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 2);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL is 2");
        let checkpoint: i64 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(checkpoint, WAL_AUTOCHECKPOINT_PAGES);
        drop(conn);
        // Reopening runs no step again (a second CREATE TABLE would fail).
        let conn = open_writer(&config).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_later_step_upgrades_an_existing_file_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(dir.path().join("s.db"));
        let mut conn = open_writer(&config).unwrap();
        conn.execute(
            "INSERT INTO mailbox(aor) VALUES ('sip:bob@example.com')",
            [],
        )
        .unwrap();
        let v2 = "ALTER TABLE mailbox ADD COLUMN note TEXT NOT NULL DEFAULT 'v2';";
        let mut steps = MIGRATIONS.to_vec();
        steps.push(v2);
        migrate_with(&mut conn, &steps).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION + 1);
        let (aor, note): (String, String) = conn
            .query_row("SELECT aor, note FROM mailbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((aor.as_str(), note.as_str()), ("sip:bob@example.com", "v2"));
        // A failing step rolls back with its version bump: the file stays where it was.
        let bad = "CREATE TABLE extra (x INTEGER); SELECT no_such_function();";
        steps.push(bad);
        assert!(migrate_with(&mut conn, &steps).is_err());
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION + 1);
        let extra: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'extra'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(extra, 0);
    }

    #[test]
    fn version_3_files_the_messages_of_a_version_2_file() {
        let (_dir, mut conn) =
            file_at_version(2, &["sip:bob@example.com", "sip:carol@example.com"]);
        for i in 0..40 {
            insert_body(&conn, 1 + i % 2, b"x");
        }
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        insert_body(&conn, 1, b"x");
        let sql = crate::mailbox_index::messages_of("", "1", "ASC", "");
        let bob: Vec<i64> = conn
            .prepare(&sql)
            .unwrap()
            .query_map(["sip:bob@example.com"], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut expected: Vec<i64> = (0..20).map(|i| 2 * i + 1).collect();
        expected.push(41);
        assert_eq!(bob, expected, "20 filed by the migration, 1 recent");
        let index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'message_by_mailbox'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 0, "the per-row index is gone");
    }

    #[test]
    fn version_4_files_a_version_3_mailbox_at_its_own_run_length() {
        let (_dir, mut conn) = file_at_version(3, &["sip:bob@example.com"]);
        // Twenty recent ids: under version 3's run of 32, over mailbox 1's run of 17.
        for _ in 0..20 {
            insert_body(&conn, 1, b"x");
        }
        assert_eq!(filed_and_recent(&conn, 1), (0, 20));
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        insert_body(&conn, 1, b"x");
        assert_eq!(
            filed_and_recent(&conn, 1),
            (21, 0),
            "the next deposit files the whole run"
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(dir.path().join("s.db"));
        let conn = open_writer(&config).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        match open_writer(&config) {
            Err(StoreError::SchemaTooNew { found, supported }) => {
                assert_eq!(found, SCHEMA_VERSION + 1);
                assert_eq!(supported, SCHEMA_VERSION);
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn quota_counters_follow_inserts_and_deletes() {
        let (_dir, conn) = with_mailboxes(&["sip:bob@example.com"]);
        for body in [&b"abc"[..], &b"defgh"[..]] {
            insert_body(&conn, 1, body);
        }
        let counters = |c: &Connection| -> (i64, i64, i64) {
            c.query_row(
                "SELECT new_count, old_count, total_bytes FROM mailbox WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
        };
        assert_eq!(counters(&conn), (2, 0, 8));
        conn.execute(
            "UPDATE message SET state = 'delivered' WHERE length(body) = 5",
            [],
        )
        .unwrap();
        assert_eq!(counters(&conn), (1, 1, 8));
        conn.execute("DELETE FROM message WHERE length(body) = 3", [])
            .unwrap();
        assert_eq!(counters(&conn), (0, 1, 5));
    }
}
