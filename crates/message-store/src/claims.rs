//! Fetch claims: how two fetches of one mailbox never deliver the same message (issue 6).
//!
//! A fetch claims a run of the oldest unclaimed waiting messages under its `fetch_id`
//! (`message.claim`); another fetch of the same mailbox gets only what nobody has claimed.
//! Claims go through the single writer, so "select unclaimed, mark claimed" is atomic. A
//! delivered message is deleted (or kept as delivered); `release` hands back whatever a fetch
//! did not get acknowledged; claims left by a crashed process are cleared on open.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use crate::error::StoreError;
use crate::mailbox_index::{messages_of, LIMIT_2};
use crate::model::{MessageState, StoredId, StoredMessage};
use crate::row::{fetch_id_to_sql, stored_message, to_micros, MESSAGE_COLUMNS_AFTER_ID};
use crate::writer::JobContext;

/// Claims up to `limit` of the oldest unclaimed waiting messages of `mailbox` for `fetch_id`.
pub(crate) fn claim(
    cx: &JobContext<'_>,
    mailbox: &str,
    fetch_id: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Built once: every claim of every fetch runs it.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        messages_of(
            MESSAGE_COLUMNS_AFTER_ID,
            "m.state = 'new' AND m.claim IS NULL",
            "ASC",
            LIMIT_2,
        )
    });
    let mut select = cx.conn.prepare_cached(&SQL)?;
    let mut rows = select.query(params![mailbox, limit])?;
    let mut claimed = Vec::new();
    while let Some(row) = rows.next()? {
        claimed.push(stored_message(row)?);
    }
    if !claimed.is_empty() {
        let ids: Vec<StoredId> = claimed.iter().map(|m| m.id).collect();
        cx.conn
            .prepare_cached(
                "UPDATE message SET claim = ?1 WHERE id IN (SELECT value FROM json_each(?2))",
            )?
            .execute(params![fetch_id_to_sql(fetch_id), id_list(&ids)])?;
    }
    Ok(claimed)
}

/// Acknowledged messages: deleted, or kept as delivered (stamped `at`) when `keep`.
/// Returns how many rows changed (ids already gone are skipped).
pub(crate) fn delivered(
    cx: &JobContext<'_>,
    ids: &[StoredId],
    keep: bool,
    at: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut changed = 0;
    if keep {
        let mut stmt = cx.conn.prepare_cached(
            "UPDATE message SET state = ?1, delivered_at = ?2, claim = NULL
             WHERE id = ?3 AND state = 'new'",
        )?;
        for id in ids {
            changed += stmt.execute(params![
                MessageState::Delivered.as_sql(),
                to_micros(at),
                id.0
            ])?;
        }
    } else {
        let mut stmt = cx
            .conn
            .prepare_cached("DELETE FROM message WHERE id = ?1")?;
        for id in ids {
            changed += stmt.execute([id.0])?;
        }
    }
    Ok(changed)
}

/// Ids as a JSON array for `json_each`, so a list is bound as one parameter of one statement.
fn id_list(ids: &[StoredId]) -> String {
    let mut out = String::with_capacity(ids.len() * 8 + 2);
    out.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.0.to_string());
    }
    out.push(']');
    out
}

/// Frees every message still claimed by `fetch_id`; returns how many.
pub(crate) fn release(cx: &JobContext<'_>, fetch_id: u64) -> Result<usize, StoreError> {
    Ok(cx
        .conn
        .prepare_cached("UPDATE message SET claim = NULL WHERE claim = ?1")?
        .execute([fetch_id_to_sql(fetch_id)])?)
}

/// Frees every claim (on open: claims of a previous process are worthless).
pub(crate) fn release_all(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE message SET claim = NULL WHERE claim IS NOT NULL",
        [],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_list_is_a_json_array() {
        assert_eq!(id_list(&[]), "[]");
        assert_eq!(
            id_list(&[StoredId(1), StoredId(-2), StoredId(30)]),
            "[1,-2,30]"
        );
    }
}
