//! Persisted RFC 3903 publication state per mailbox, so a restart continues the same
//! publication with `SIP-If-Match` instead of creating a second one (issue 5).

use rusqlite::params;

use crate::error::StoreError;
use crate::model::PublicationRecord;
use crate::row::to_micros;
use crate::writer::JobContext;

/// Stores (or with `None` forgets) the publication of `mailbox`, creating the mailbox row if
/// needed: a publication may outlive every message of the mailbox.
pub(crate) fn save(
    cx: &JobContext<'_>,
    mailbox: &str,
    record: Option<&PublicationRecord>,
) -> Result<(), StoreError> {
    let etag = record.map(|r| r.etag.as_str());
    let expires = record.map(|r| to_micros(r.expires_at));
    cx.conn
        .prepare_cached(
            "INSERT INTO mailbox(aor, publication_etag, publication_expires_at)
             VALUES (?1, ?2, ?3)
             ON CONFLICT(aor) DO UPDATE
                SET publication_etag = excluded.publication_etag,
                    publication_expires_at = excluded.publication_expires_at",
        )?
        .execute(params![mailbox, etag, expires])?;
    Ok(())
}
