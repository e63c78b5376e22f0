//! Read queries, run on the read-only connections: counts, listings, message headers, whole
//! store figures and persisted PUBLISH state.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension};

use crate::error::StoreError;
use crate::mailbox_index::{ids_of, messages_of, LIMIT_2};
use crate::model::{
    Counts, MailboxSummary, MessageHeaders, PublicationRecord, StoreStats, StoredMessage,
};
use crate::row::{count, from_micros, stored_message, MESSAGE_COLUMNS_AFTER_ID};

/// RFC 3842 counts for one mailbox (kept current by triggers); an unknown mailbox has zeros.
pub(crate) fn counts(conn: &Connection, mailbox: &str) -> Result<Counts, StoreError> {
    let counts = conn
        .prepare_cached(
            "SELECT new_count, old_count, urgent_new, urgent_old FROM mailbox WHERE aor = ?1",
        )?
        .query_row([mailbox], |r| {
            Ok(Counts {
                new: count(r.get(0)?),
                old: count(r.get(1)?),
                urgent_new: count(r.get(2)?),
                urgent_old: count(r.get(3)?),
            })
        })
        .optional()?;
    Ok(counts.unwrap_or_default())
}

/// Every mailbox holding at least one message, by AoR; the oldest is the first to arrive (the
/// lowest id), read off the mailbox's ids without reading its messages.
pub(crate) fn mailboxes(conn: &Connection) -> Result<Vec<MailboxSummary>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT b.aor, b.new_count, b.old_count, b.total_bytes,
                (SELECT received_at FROM message WHERE id = (SELECT min(id) FROM ({})))
         FROM mailbox b WHERE b.new_count + b.old_count > 0 ORDER BY b.aor",
        ids_of("b")
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let oldest: Option<i64> = row.get(4)?;
        out.push(MailboxSummary {
            aor: row.get(0)?,
            new: count(row.get(1)?),
            old: count(row.get(2)?),
            bytes: count(row.get(3)?),
            oldest: oldest.map(|t| from_micros(0, t)).transpose()?,
        });
    }
    Ok(out)
}

/// Messages of one mailbox, oldest first; delivered ones only when asked.
pub(crate) fn messages(
    conn: &Connection,
    mailbox: &str,
    include_delivered: bool,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut stmt = conn.prepare_cached(&messages_of(
        MESSAGE_COLUMNS_AFTER_ID,
        "?2 OR m.state = 'new'",
        "ASC",
        "",
    ))?;
    let mut rows = stmt.query(rusqlite::params![mailbox, include_delivered])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(stored_message(row)?);
    }
    Ok(out)
}

/// From/Date/Subject of the `n` newest waiting messages, newest first (RFC 3842 §5.2).
pub(crate) fn newest_headers(
    conn: &Connection,
    mailbox: &str,
    n: usize,
) -> Result<Vec<MessageHeaders>, StoreError> {
    // Built once: every message-summary body runs it.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        messages_of(
            "m.sender_aor, m.sender_name, coalesce(m.sender_time, m.received_at), m.subject",
            "m.state = 'new'",
            "DESC",
            LIMIT_2,
        )
    });
    let mut stmt = conn.prepare_cached(&SQL)?;
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    let mut rows = stmt.query(rusqlite::params![mailbox, limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        out.push(MessageHeaders {
            sender_aor: row.get(1)?,
            sender_name: row.get(2)?,
            date: from_micros(id, row.get(3)?)?,
            subject: row.get(4)?,
        });
    }
    Ok(out)
}

/// AoRs of mailboxes with waiting messages (published at start-up).
pub(crate) fn mailboxes_with_waiting(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT aor FROM mailbox WHERE new_count > 0 ORDER BY aor")?;
    let aors = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(aors)
}

/// Whole-store figures.
pub(crate) fn stats(conn: &Connection) -> Result<StoreStats, StoreError> {
    // sum() over no rows is NULL, hence coalesce.
    let stats = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(new_count), 0), coalesce(sum(old_count), 0),
                    coalesce(sum(total_bytes), 0)
             FROM mailbox WHERE new_count + old_count > 0",
        )?
        .query_row([], |r| {
            Ok(StoreStats {
                mailboxes: count(r.get(0)?),
                new: count(r.get(1)?),
                old: count(r.get(2)?),
                bytes: count(r.get(3)?),
            })
        })?;
    Ok(stats)
}

/// The persisted RFC 3903 publication of a mailbox, if any.
pub(crate) fn publication(
    conn: &Connection,
    mailbox: &str,
) -> Result<Option<PublicationRecord>, StoreError> {
    let row: Option<(Option<String>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT publication_etag, publication_expires_at FROM mailbox WHERE aor = ?1",
        )?
        .query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((Some(etag), Some(expires))) => Ok(Some(PublicationRecord {
            etag,
            expires_at: from_micros(0, expires)?,
        })),
        _ => Ok(None),
    }
}
