//! Helpers shared by the store's integration tests.

#![allow(dead_code)]

use std::path::Path;

use chrono::{DateTime, Utc};
use message_store::{NewMessage, Source, Store, StoreConfig};

/// A plain-text MSRP deposit for `mailbox`.
pub fn message(mailbox: &str, body: &[u8]) -> NewMessage {
    NewMessage {
        mailbox: mailbox.to_owned(),
        sender_aor: "sip:alice@example.com".to_owned(),
        sender_name: Some("Alice".to_owned()),
        sender_verified: true,
        recipient: mailbox.to_owned(),
        content_type: "text/plain;charset=UTF-8".to_owned(),
        inner_content_type: None,
        body: body.to_vec(),
        message_id: None,
        sender_time: None,
        received_at: Utc::now(),
        source: Source::Msrp,
        urgent: false,
        subject: None,
    }
}

/// The same, received at `at`.
pub fn message_at(mailbox: &str, body: &[u8], at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        received_at: at,
        ..message(mailbox, body)
    }
}

/// Default config for a database in `dir`.
pub fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir.join("store.db"))
}

/// Opens the store with the default config in `dir`.
pub fn open(dir: &Path) -> Store {
    Store::open(config(dir)).expect("store opens")
}
