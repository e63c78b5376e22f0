//! Mapping between SQLite rows and the model: times as microseconds since the epoch, enums as
//! their names, and the one column list every message query selects.

use chrono::{DateTime, Utc};
use rusqlite::Row;

use crate::error::StoreError;
use crate::model::{MessageState, NewMessage, Source, StoredId, StoredMessage};

/// Columns of a full message read after its id, in the order `stored_message` expects; `m` is
/// `message`, `b` is `mailbox`. For [`crate::mailbox_index::messages_of`], which selects the id.
pub(crate) const MESSAGE_COLUMNS_AFTER_ID: &str = "b.aor, m.sender_aor, m.sender_name, \
     m.sender_verified, m.recipient, m.content_type, m.inner_content_type, m.body, \
     m.message_id, m.sender_time, m.received_at, m.source, m.state, m.delivered_at, m.urgent, \
     m.subject";

/// Microseconds since the Unix epoch: keeps CPIM's sub-second precision and fits i64.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(row: i64, micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Corrupt {
        row,
        what: format!("time {micros} µs out of range"),
    })
}

fn opt_from_micros(row: i64, micros: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    micros.map(|m| from_micros(row, m)).transpose()
}

/// Reads one message selected with `MESSAGE_COLUMNS`.
pub(crate) fn stored_message(row: &Row<'_>) -> Result<StoredMessage, StoreError> {
    let id: i64 = row.get(0)?;
    let source: String = row.get(12)?;
    let state: String = row.get(13)?;
    let message = NewMessage {
        mailbox: row.get(1)?,
        sender_aor: row.get(2)?,
        sender_name: row.get(3)?,
        sender_verified: row.get(4)?,
        recipient: row.get(5)?,
        content_type: row.get(6)?,
        inner_content_type: row.get(7)?,
        body: row.get(8)?,
        message_id: row.get(9)?,
        sender_time: opt_from_micros(id, row.get(10)?)?,
        received_at: from_micros(id, row.get(11)?)?,
        source: Source::from_sql(&source).ok_or_else(|| StoreError::Corrupt {
            row: id,
            what: format!("unknown source {source:?}"),
        })?,
        urgent: row.get(15)?,
        subject: row.get(16)?,
    };
    Ok(StoredMessage {
        id: StoredId(id),
        state: MessageState::from_sql(&state).ok_or_else(|| StoreError::Corrupt {
            row: id,
            what: format!("unknown state {state:?}"),
        })?,
        delivered_at: opt_from_micros(id, row.get(14)?)?,
        message,
    })
}

/// SQLite integers are signed; counts and sizes are never negative, a corrupt negative reads
/// as zero rather than wrapping.
pub(crate) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Fetch ids are opaque u64 tokens; SQLite stores them as the i64 with the same bits.
pub(crate) fn fetch_id_to_sql(fetch_id: u64) -> i64 {
    i64::from_ne_bytes(fetch_id.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_microseconds() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_000).expect("valid time");
        assert_eq!(from_micros(1, to_micros(t)).expect("in range"), t);
        assert!(from_micros(1, i64::MAX).is_err());
    }

    #[test]
    fn fetch_ids_keep_all_bits() {
        assert_eq!(fetch_id_to_sql(u64::MAX), -1);
        assert_eq!(fetch_id_to_sql(7), 7);
        assert_eq!(count(-3), 0);
    }
}
