//! Deposit: the quota check and the insert, run by the writer inside the batch transaction.
//!
//! The check reads the mailbox's counters, which the insert trigger keeps current inside the
//! transaction, so rows earlier in the same batch count. A refused deposit returns before
//! anything is written; the message row and its counter update are one statement (the trigger
//! runs inside it), so a failed insert leaves nothing either.

use rusqlite::{params, OptionalExtension};

use crate::config::Limits;
use crate::error::{LimitExceeded, StoreError};
use crate::model::{MessageState, NewMessage, StoredId};
use crate::row::{count, to_micros};
use crate::writer::JobContext;

/// Refuses a body larger than `max_message_bytes`; cheap, so callers run it before queueing.
pub(crate) fn check_size(limits: &Limits, body_len: usize) -> Result<(), LimitExceeded> {
    let bytes = u64::try_from(body_len).unwrap_or(u64::MAX);
    if bytes > limits.max_message_bytes {
        return Err(LimitExceeded::MessageTooLarge {
            bytes,
            max: limits.max_message_bytes,
        });
    }
    Ok(())
}

/// Checks the limits for `message` and inserts it.
pub(crate) fn insert(cx: &JobContext<'_>, message: &NewMessage) -> Result<StoredId, StoreError> {
    check_size(cx.limits, message.body.len())?;
    let existing: Option<(i64, i64, i64)> = cx
        .conn
        .prepare_cached(
            "SELECT id, new_count + old_count, total_bytes FROM mailbox WHERE aor = ?1",
        )?
        .query_row([&message.mailbox], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let (messages, bytes) = existing.map_or((0, 0), |(_, m, b)| (count(m), count(b)));
    if messages >= cx.limits.max_messages_per_mailbox {
        return Err(LimitExceeded::MailboxFull {
            messages,
            max: cx.limits.max_messages_per_mailbox,
        }
        .into());
    }
    let body_len = u64::try_from(message.body.len()).unwrap_or(u64::MAX);
    if bytes.saturating_add(body_len) > cx.limits.max_bytes_per_mailbox {
        return Err(LimitExceeded::MailboxBytes {
            bytes,
            max: cx.limits.max_bytes_per_mailbox,
        }
        .into());
    }
    let mailbox_id = match existing {
        Some((id, _, _)) => id,
        None => cx
            .conn
            .prepare_cached("INSERT INTO mailbox(aor) VALUES (?1) RETURNING id")?
            .query_row([&message.mailbox], |r| r.get(0))?,
    };
    cx.conn
        .prepare_cached(
            "INSERT INTO message(mailbox_id, sender_aor, sender_name, sender_verified, recipient,
                 content_type, inner_content_type, body, message_id, sender_time, received_at,
                 source, state, urgent, subject)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            mailbox_id,
            message.sender_aor,
            message.sender_name,
            message.sender_verified,
            message.recipient,
            message.content_type,
            message.inner_content_type,
            message.body,
            message.message_id,
            message.sender_time.map(to_micros),
            to_micros(message.received_at),
            message.source.as_sql(),
            MessageState::New.as_sql(),
            message.urgent,
            message.subject,
        ])?;
    Ok(StoredId(cx.conn.last_insert_rowid()))
}
