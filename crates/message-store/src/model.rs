//! The values the store keeps and hands back: messages, counts, mailbox summaries, persisted
//! PUBLISH state.

use chrono::{DateTime, Utc};

/// Row id of a stored message. Never reused (the table is `AUTOINCREMENT`), so a late
/// acknowledgement can never touch a newer message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredId(pub i64);

impl std::fmt::Display for StoredId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How a message reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A SEND in an MSRP chat session (RFC 4975).
    Msrp,
    /// A SIP MESSAGE (page mode, RFC 3428).
    SipMessage,
}

impl Source {
    pub(crate) fn as_sql(self) -> &'static str {
        match self {
            Source::Msrp => "msrp",
            Source::SipMessage => "sip-message",
        }
    }

    pub(crate) fn from_sql(s: &str) -> Option<Self> {
        match s {
            "msrp" => Some(Source::Msrp),
            "sip-message" => Some(Source::SipMessage),
            _ => None,
        }
    }
}

/// Whether the user has had a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// Waiting to be fetched (RFC 3842 "new").
    New,
    /// Delivered and kept for the user (RFC 3842 "old").
    Delivered,
}

impl MessageState {
    pub(crate) fn as_sql(self) -> &'static str {
        match self {
            MessageState::New => "new",
            MessageState::Delivered => "delivered",
        }
    }

    pub(crate) fn from_sql(s: &str) -> Option<Self> {
        match s {
            "new" => Some(MessageState::New),
            "delivered" => Some(MessageState::Delivered),
            _ => None,
        }
    }
}

/// A message to deposit: everything needed to replay it faithfully later. Times are kept to
/// the microsecond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Normalised AoR of the mailbox (the offline user).
    pub mailbox: String,
    /// AoR of the sender as asserted by SIP.
    pub sender_aor: String,
    /// Display name of the sender, if any.
    pub sender_name: Option<String>,
    /// False when the deposit came from an untrusted source (`deposit.accept_untrusted`).
    pub sender_verified: bool,
    /// The recipient as addressed by the sender (To / CPIM To).
    pub recipient: String,
    /// Content type as received, e.g. `message/cpim` or `text/plain;charset=UTF-8`.
    pub content_type: String,
    /// Content type inside a CPIM wrapper, when there is one.
    pub inner_content_type: Option<String>,
    /// The body exactly as received (CPIM kept raw; encrypted payloads untouched).
    pub body: Vec<u8>,
    /// CPIM `imdn.Message-ID` or SIP Message-ID, if any.
    pub message_id: Option<String>,
    /// The sender's CPIM `DateTime`, if any.
    pub sender_time: Option<DateTime<Utc>>,
    /// When this server received the message.
    pub received_at: DateTime<Utc>,
    /// MSRP or SIP MESSAGE.
    pub source: Source,
    /// Marked urgent by the sender (counted in RFC 3842 `(urgent-new/urgent-old)`).
    pub urgent: bool,
    /// Subject, if the message carried one (shown in RFC 3842 §5.2 message headers).
    pub subject: Option<String>,
}

/// A message read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its row id.
    pub id: StoredId,
    /// New or delivered.
    pub state: MessageState,
    /// When it was delivered (only for `Delivered`).
    pub delivered_at: Option<DateTime<Utc>>,
    /// What was deposited.
    pub message: NewMessage,
}

/// RFC 3842 `Text-Message: new/old (urgent-new/urgent-old)` figures for one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Messages waiting (claimed by a running fetch or not).
    pub new: u64,
    /// Delivered messages kept for the user.
    pub old: u64,
    /// Urgent messages among `new`.
    pub urgent_new: u64,
    /// Urgent messages among `old`.
    pub urgent_old: u64,
}

/// One line of `mwi-store mailbox list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSummary {
    /// Mailbox AoR.
    pub aor: String,
    /// Waiting messages.
    pub new: u64,
    /// Delivered messages kept.
    pub old: u64,
    /// Body bytes held.
    pub bytes: u64,
    /// Receive time of the oldest message held.
    pub oldest: Option<DateTime<Utc>>,
}

/// From/Date/Subject of a waiting message, for RFC 3842 §5.2 message headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeaders {
    /// Sender AoR.
    pub sender_aor: String,
    /// Sender display name, if any.
    pub sender_name: Option<String>,
    /// The sender's time if it gave one, else the receive time.
    pub date: DateTime<Utc>,
    /// Subject, if any.
    pub subject: Option<String>,
}

/// RFC 3903 publication state kept across restarts: the entity-tag of the last 2xx and when
/// that publication expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationRecord {
    /// The `SIP-ETag` of the latest 200 (sent back as `SIP-If-Match`).
    pub etag: String,
    /// When the publication expires at the presence server.
    pub expires_at: DateTime<Utc>,
}

/// What a retention purge removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Purged {
    /// Messages removed.
    pub messages: usize,
    /// Mailboxes whose counts changed (to be republished), sorted.
    pub mailboxes: Vec<String>,
}

/// Whole-store figures for `mwi-store stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Mailboxes holding at least one message.
    pub mailboxes: u64,
    /// Waiting messages.
    pub new: u64,
    /// Delivered messages kept.
    pub old: u64,
    /// Body bytes held.
    pub bytes: u64,
}
