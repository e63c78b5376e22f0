//! Read queries, run on the read-only connections: counts, listings, message headers, whole
//! store figures and persisted PUBLISH state.

use rusqlite::{Connection, OptionalExtension};

use crate::error::StoreError;
use crate::model::{
    Counts, MailboxSummary, MessageHeaders, PublicationRecord, StoreStats, StoredMessage,
};
use crate::row::{count, from_micros, stored_message, MESSAGE_COLUMNS};

/// RFC 3842 counts for one mailbox; an unknown mailbox has all zeros.
pub(crate) fn counts(conn: &Connection, mailbox: &str) -> Result<Counts, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.state, m.urgent, count(*) FROM message m JOIN mailbox b ON b.id = m.mailbox_id
         WHERE b.aor = ?1 GROUP BY m.state, m.urgent",
    )?;
    let mut rows = stmt.query([mailbox])?;
    let mut counts = Counts::default();
    while let Some(row) = rows.next()? {
        let state: String = row.get(0)?;
        let urgent: bool = row.get(1)?;
        let n = count(row.get(2)?);
        match (state.as_str(), urgent) {
            ("new", false) => counts.new += n,
            ("new", true) => {
                counts.new += n;
                counts.urgent_new += n;
            }
            ("delivered", false) => counts.old += n,
            ("delivered", true) => {
                counts.old += n;
                counts.urgent_old += n;
            }
            (other, _) => {
                return Err(StoreError::Corrupt {
                    row: 0,
                    what: format!("unknown state {other:?} in mailbox {mailbox}"),
                })
            }
        }
    }
    Ok(counts)
}

/// Every mailbox holding at least one message, by AoR.
pub(crate) fn mailboxes(conn: &Connection) -> Result<Vec<MailboxSummary>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT b.aor,
                sum(m.state = 'new'), sum(m.state = 'delivered'), b.total_bytes,
                min(m.received_at)
         FROM mailbox b JOIN message m ON m.mailbox_id = b.id
         GROUP BY b.id ORDER BY b.aor",
    )?;
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
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM message m JOIN mailbox b ON b.id = m.mailbox_id
         WHERE b.aor = ?1 AND (?2 OR m.state = 'new') ORDER BY m.id"
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
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.sender_aor, m.sender_name, coalesce(m.sender_time, m.received_at),
                m.subject
         FROM message m JOIN mailbox b ON b.id = m.mailbox_id
         WHERE b.aor = ?1 AND m.state = 'new' ORDER BY m.id DESC LIMIT ?2",
    )?;
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
    let mut stmt = conn.prepare_cached(
        "SELECT b.aor FROM mailbox b
         WHERE EXISTS (SELECT 1 FROM message m WHERE m.mailbox_id = b.id AND m.state = 'new')
         ORDER BY b.aor",
    )?;
    let aors = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(aors)
}

/// Whole-store figures.
pub(crate) fn stats(conn: &Connection) -> Result<StoreStats, StoreError> {
    let (new, old): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT sum(state = 'new'), sum(state = 'delivered') FROM message")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (mailboxes, bytes): (i64, Option<i64>) = conn
        .prepare_cached("SELECT count(*), sum(total_bytes) FROM mailbox WHERE message_count > 0")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(StoreStats {
        mailboxes: count(mailboxes),
        new: count(new.unwrap_or(0)),
        old: count(old.unwrap_or(0)),
        bytes: count(bytes.unwrap_or(0)),
    })
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
