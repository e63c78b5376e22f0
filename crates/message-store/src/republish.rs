//! Republish requests between processes. `mwi-store mailbox purge` runs in its own process,
//! while the PUBLISH state (RFC 3903 entity-tags, in-flight requests) lives in the server, which
//! cannot see that process's writes. So a purge records its mailbox in `republish_request` in
//! the same transaction as the delete, and the server drains the table: a purge that commits
//! is always republished, even if the server was down at the time.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use crate::error::StoreError;
use crate::mailbox_index::messages_of;
use crate::row::to_micros;
use crate::writer::JobContext;

/// Schema step 2: the queue of mailboxes to republish.
pub(crate) const SCHEMA_V2: &str = r#"
CREATE TABLE republish_request (
    mailbox TEXT PRIMARY KEY,
    requested_at INTEGER NOT NULL
) STRICT;
"#;

/// Queues `mailbox` when it holds messages received before `cutoff` (any message when `None`),
/// i.e. when the purge about to run will change its counts. One statement, run before the delete: if the delete
/// then fails, the leftover request costs one needless PUBLISH, never a missed one.
pub(crate) fn request_if_purging(
    cx: &JobContext<'_>,
    mailbox: &str,
    cutoff: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let before = cutoff.map_or(i64::MAX, to_micros);
    cx.conn
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO republish_request(mailbox, requested_at)
             SELECT ?1, ?3 WHERE EXISTS ({})",
            messages_of("", "m.received_at < ?2", "", "LIMIT 1")
        ))?
        .execute(params![mailbox, before, to_micros(now)])?;
    Ok(())
}

/// Whether any request waits (a read, so the server's once-a-second poll costs no commit).
pub(crate) fn any_pending(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM republish_request)")?
        .query_row([], |r| r.get(0))?)
}

/// Removes and returns every waiting request, oldest first.
pub(crate) fn take(cx: &JobContext<'_>) -> Result<Vec<String>, StoreError> {
    let mut stmt = cx
        .conn
        .prepare_cached("DELETE FROM republish_request RETURNING mailbox, requested_at")?;
    let mut taken = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, String>(0)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    taken.sort_unstable();
    Ok(taken.into_iter().map(|(_, m)| m).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use crate::{NewMessage, Source, Store, StoreConfig};

    const BOB: &str = "sip:bob@example.com";

    fn message(mailbox: &str, age: chrono::TimeDelta) -> NewMessage {
        NewMessage {
            mailbox: mailbox.to_owned(),
            sender_aor: "sip:alice@example.com".to_owned(),
            sender_name: None,
            sender_verified: true,
            recipient: mailbox.to_owned(),
            content_type: "text/plain".to_owned(),
            inner_content_type: None,
            body: b"hi".to_vec(),
            message_id: None,
            sender_time: None,
            received_at: chrono::Utc::now() - age,
            source: Source::SipMessage,
            urgent: false,
            subject: None,
        }
    }

    #[tokio::test]
    async fn a_purge_in_one_handle_is_seen_and_drained_once_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let server = Store::open(StoreConfig::new(&path)).unwrap();
        let mut admin_config = StoreConfig::new(&path);
        admin_config.release_claims_on_open = false;
        let admin = Store::open(admin_config).unwrap();

        server
            .insert(message(BOB, chrono::TimeDelta::days(40)))
            .await
            .unwrap();
        server
            .insert(message(BOB, chrono::TimeDelta::zero()))
            .await
            .unwrap();
        assert!(server.take_republish_requests().await.unwrap().is_empty());

        // Nothing older than 60 days: no change, no request.
        let purged = admin
            .purge(BOB, Some(Duration::from_secs(60 * 86_400)))
            .await
            .unwrap();
        assert_eq!(purged, 0);
        assert!(server.take_republish_requests().await.unwrap().is_empty());

        // An unknown mailbox queues nothing either.
        assert_eq!(
            admin.purge("sip:nobody@example.com", None).await.unwrap(),
            0
        );
        assert!(server.take_republish_requests().await.unwrap().is_empty());

        let purged = admin
            .purge(BOB, Some(Duration::from_secs(30 * 86_400)))
            .await
            .unwrap();
        assert_eq!(purged, 1);
        assert_eq!(server.take_republish_requests().await.unwrap(), [BOB]);
        assert!(server.take_republish_requests().await.unwrap().is_empty());

        // Two purges before a drain give one request.
        server
            .insert(message(BOB, chrono::TimeDelta::zero()))
            .await
            .unwrap();
        assert_eq!(admin.purge(BOB, None).await.unwrap(), 2);
        assert_eq!(admin.purge(BOB, None).await.unwrap(), 0);
        assert_eq!(server.take_republish_requests().await.unwrap(), [BOB]);
        assert_eq!(server.counts(BOB).await.unwrap().new, 0);
    }
}
