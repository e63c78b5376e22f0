//! Removing messages without delivery: the admin purge of one mailbox and the periodic
//! retention purge (`retention_days`, `delivered_retention_days`).

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::params;

use crate::error::StoreError;
use crate::mailbox_index::messages_of;
use crate::model::Purged;
use crate::row::to_micros;
use crate::writer::JobContext;

/// Deletes the messages of `mailbox` received before `cutoff` (all of them when `None`),
/// claimed or not, waiting or delivered. Returns how many.
pub(crate) fn purge_mailbox(
    cx: &JobContext<'_>,
    mailbox: &str,
    cutoff: Option<DateTime<Utc>>,
) -> Result<usize, StoreError> {
    let before = cutoff.map_or(i64::MAX, to_micros);
    Ok(cx
        .conn
        .prepare_cached(&format!(
            "DELETE FROM message WHERE id IN ({})",
            messages_of("", "m.received_at < ?2", "", "")
        ))?
        .execute(params![mailbox, before])?)
}

/// `now - days`, or `None` when the limit is off or out of range.
fn days_before(now: DateTime<Utc>, days: Option<u32>) -> Option<i64> {
    let days = days?;
    let cutoff = now.checked_sub_signed(TimeDelta::try_days(i64::from(days))?)?;
    Some(to_micros(cutoff))
}

/// Deletes messages received more than `retention_days` ago and delivered messages kept
/// more than `delivered_retention_days`.
pub(crate) fn purge_expired(cx: &JobContext<'_>, now: DateTime<Utc>) -> Result<Purged, StoreError> {
    let received_before = days_before(now, cx.limits.retention_days).unwrap_or(i64::MIN);
    let delivered_before = days_before(now, cx.limits.delivered_retention_days).unwrap_or(i64::MIN);
    let mut stmt = cx.conn.prepare_cached(
        "DELETE FROM message
         WHERE received_at < ?1 OR (delivered_at IS NOT NULL AND delivered_at < ?2)
         RETURNING (SELECT aor FROM mailbox WHERE id = message.mailbox_id)",
    )?;
    let mut mailboxes = stmt
        .query_map(params![received_before, delivered_before], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let messages = mailboxes.len();
    mailboxes.sort_unstable();
    mailboxes.dedup();
    Ok(Purged {
        messages,
        mailboxes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_before_handles_off_and_overflow() {
        let now = DateTime::from_timestamp(1_000_000, 0).expect("valid time");
        assert_eq!(days_before(now, None), None);
        assert_eq!(
            days_before(now, Some(1)),
            Some((1_000_000 - 86_400) * 1_000_000)
        );
        assert_eq!(days_before(DateTime::<Utc>::MIN_UTC, Some(1)), None);
    }
}
