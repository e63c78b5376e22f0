//! Behaviour of the public `Store` API against a real SQLite file in a temp dir: round trips,
//! counts, limits, group commit, claims, purges and persisted PUBLISH state.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{config, message, message_at, open};
use message_store::{
    Counts, LimitExceeded, MessageState, NewMessage, PublicationRecord, Source, Store, StoreError,
    StoredId,
};

const BOB: &str = "sip:bob@example.com";
const CAROL: &str = "sip:carol@example.com";

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

#[tokio::test]
async fn a_message_round_trips_byte_exact_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cpim = NewMessage {
        sender_name: None,
        sender_verified: false,
        content_type: "message/cpim".to_owned(),
        inner_content_type: Some("text/plain;charset=UTF-8".to_owned()),
        body: b"From: <sip:alice@example.com>\r\n\r\nContent-Type: text/plain\r\n\r\n\xff\x00hi"
            .to_vec(),
        message_id: Some("abc123".to_owned()),
        sender_time: Some(DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap()),
        source: Source::SipMessage,
        urgent: true,
        subject: Some("lunch".to_owned()),
        ..message_at(BOB, b"", t(1_700_000_100))
    };
    let id = {
        let store = open(dir.path());
        let id = store.insert(cpim.clone()).await.unwrap();
        let got = store.messages(BOB, false).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, id);
        id
    };
    let store = open(dir.path());
    let got = store.messages(BOB, true).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].state, MessageState::New);
    assert_eq!(got[0].delivered_at, None);
    assert_eq!(got[0].message, cpim);
}

#[tokio::test]
async fn counts_split_new_old_and_urgent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.counts(BOB).await.unwrap(), Counts::default());
    let mut ids = Vec::new();
    for urgent in [false, false, true, true, false] {
        let m = NewMessage {
            urgent,
            ..message(BOB, b"hello")
        };
        ids.push(store.insert(m).await.unwrap());
    }
    store.insert(message(CAROL, b"x")).await.unwrap();
    // Deliver one plain and one urgent message, keeping them as "old".
    assert_eq!(
        store.delivered(vec![ids[0], ids[2]], true).await.unwrap(),
        2
    );
    assert_eq!(
        store.counts(BOB).await.unwrap(),
        Counts {
            new: 3,
            old: 2,
            urgent_new: 1,
            urgent_old: 1
        }
    );
    assert_eq!(store.counts(CAROL).await.unwrap().new, 1);
    let kept = store.messages(BOB, true).await.unwrap();
    assert_eq!(kept.len(), 5);
    assert!(kept[0].delivered_at.is_some());
    assert_eq!(store.messages(BOB, false).await.unwrap().len(), 3);
}

#[tokio::test]
async fn listings_headers_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .insert(message_at(BOB, b"one", t(1_000)))
        .await
        .unwrap();
    let second = NewMessage {
        sender_aor: "sip:dave@example.com".to_owned(),
        sender_name: None,
        sender_time: Some(t(500)),
        subject: Some("re: two".to_owned()),
        ..message_at(BOB, b"two!", t(2_000))
    };
    store.insert(second).await.unwrap();
    let c = store
        .insert(message_at(CAROL, b"c", t(3_000)))
        .await
        .unwrap();
    store.delivered(vec![c], true).await.unwrap();

    let list = store.mailboxes().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].aor, BOB);
    assert_eq!((list[0].new, list[0].old, list[0].bytes), (2, 0, 7));
    assert_eq!(list[0].oldest, Some(t(1_000)));
    assert_eq!((list[1].new, list[1].old), (0, 1));

    let headers = store.newest_headers(BOB, 5).await.unwrap();
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0].sender_aor, "sip:dave@example.com");
    assert_eq!(headers[0].date, t(500), "the sender's time wins");
    assert_eq!(headers[0].subject.as_deref(), Some("re: two"));
    assert_eq!(headers[1].date, t(1_000), "else the receive time");
    assert_eq!(store.newest_headers(BOB, 1).await.unwrap().len(), 1);

    assert_eq!(store.mailboxes_with_waiting().await.unwrap(), vec![BOB]);
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.mailboxes, stats.new, stats.old, stats.bytes),
        (2, 2, 1, 8)
    );
}

#[tokio::test]
async fn limits_refuse_and_leave_the_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_message_bytes = 10;
    cfg.limits.max_messages_per_mailbox = 2;
    cfg.limits.max_bytes_per_mailbox = 15;
    let store = Store::open(cfg).unwrap();

    let too_big = store.insert(message(CAROL, &[b'x'; 11])).await;
    assert!(matches!(
        too_big,
        Err(StoreError::Limit(LimitExceeded::MessageTooLarge {
            bytes: 11,
            max: 10
        }))
    ));
    // A refused first deposit does not even create the mailbox.
    assert!(store.mailboxes().await.unwrap().is_empty());

    store.insert(message(BOB, b"0123456789")).await.unwrap();
    let over_bytes = store.insert(message(BOB, b"012345")).await;
    assert!(matches!(
        over_bytes,
        Err(StoreError::Limit(LimitExceeded::MailboxBytes {
            bytes: 10,
            max: 15
        }))
    ));
    store.insert(message(BOB, b"01234")).await.unwrap();
    let full = store.insert(message(BOB, b"")).await;
    assert!(matches!(
        full,
        Err(StoreError::Limit(LimitExceeded::MailboxFull {
            messages: 2,
            max: 2
        }))
    ));
    let bodies: Vec<Vec<u8>> = store
        .messages(BOB, true)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message.body)
        .collect();
    assert_eq!(bodies, vec![b"0123456789".to_vec(), b"01234".to_vec()]);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.new, stats.bytes), (2, 15));
    // Deleting frees the quota again.
    let first = store.messages(BOB, false).await.unwrap()[0].id;
    store.delivered(vec![first], false).await.unwrap();
    store.insert(message(BOB, b"0123456789")).await.unwrap();
}

#[tokio::test]
async fn a_refused_row_does_not_fail_its_batch_and_earlier_rows_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_messages_per_mailbox = 3;
    // A long wait so all five inserts land in one batch.
    cfg.group_commit_max_wait = Duration::from_millis(300);
    let store = Store::open(cfg).unwrap();
    let results = futures_join(&store, (0..5).map(|i| message(BOB, &[i])).collect()).await;
    let stored = results.iter().filter(|r| r.is_ok()).count();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Limit(LimitExceeded::MailboxFull { .. }))))
        .count();
    assert_eq!((stored, full), (3, 2));
    let stats = store.writer_stats();
    assert_eq!(stats.commits, 1, "all five were one transaction");
    assert_eq!(stats.jobs, 5);
    assert_eq!(store.counts(BOB).await.unwrap().new, 3);
}

/// Runs every insert concurrently on the runtime and returns the results in order.
async fn futures_join(
    store: &Store,
    messages: Vec<NewMessage>,
) -> Vec<Result<StoredId, StoreError>> {
    let tasks: Vec<_> = messages
        .into_iter()
        .map(|m| {
            let store = store.clone();
            tokio::spawn(async move { store.insert(m).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_groups_concurrent_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let results = futures_join(
        &store,
        (0..1000u32)
            .map(|i| message(&format!("sip:u{}@example.com", i % 10), &i.to_be_bytes()))
            .collect(),
    )
    .await;
    let ids: HashSet<StoredId> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(ids.len(), 1000);
    let stats = store.writer_stats();
    assert_eq!(stats.jobs, 1000);
    assert!(
        stats.commits <= 100,
        "1000 concurrent inserts took {} commits",
        stats.commits
    );
    assert_eq!(stats.batch_sizes.count, stats.commits);
    assert_eq!(stats.commit_micros.count, stats.commits);
    assert_eq!(store.stats().await.unwrap().new, 1000);
}

#[tokio::test]
async fn claims_deliver_release_and_are_freed_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut ids = Vec::new();
    for i in 0..5u8 {
        ids.push(store.insert(message(BOB, &[i])).await.unwrap());
    }
    let first = store.claim(BOB, 1, 2).await.unwrap();
    assert_eq!(first.iter().map(|m| m.id).collect::<Vec<_>>(), ids[..2]);
    // Another fetch gets only the unclaimed ones, oldest first.
    let second = store.claim(BOB, 2, 10).await.unwrap();
    assert_eq!(second.iter().map(|m| m.id).collect::<Vec<_>>(), ids[2..]);
    assert!(store.claim(BOB, 3, 10).await.unwrap().is_empty());
    // Claimed messages still count as waiting.
    assert_eq!(store.counts(BOB).await.unwrap().new, 5);

    // Fetch 1 got a 200 for its first message only, then was interrupted.
    assert_eq!(store.delivered(vec![ids[0]], false).await.unwrap(), 1);
    assert_eq!(store.release(1).await.unwrap(), 1);
    assert_eq!(store.counts(BOB).await.unwrap().new, 4);
    let again = store.claim(BOB, 3, 10).await.unwrap();
    assert_eq!(again.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[1]]);
    // Acknowledging an id twice changes nothing.
    assert_eq!(store.delivered(vec![ids[0]], false).await.unwrap(), 0);

    // An admin opening the same file beside the server does not steal claims...
    let mut admin_cfg = config(dir.path());
    admin_cfg.release_claims_on_open = false;
    let admin = Store::open(admin_cfg).unwrap();
    assert!(admin.claim(BOB, 9, 10).await.unwrap().is_empty());
    drop(admin);
    drop(store);
    // ...but a restarted server frees claims a dead process left.
    let store = open(dir.path());
    assert_eq!(store.claim(BOB, 4, 10).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_fetches_never_get_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let all: HashSet<StoredId> = futures_join(
        &store,
        (0..300u32)
            .map(|i| message(BOB, &i.to_be_bytes()))
            .collect(),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let fetch = |fetch_id: u64| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store.claim(BOB, fetch_id, 7).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                let ids: Vec<StoredId> = batch.iter().map(|m| m.id).collect();
                store.delivered(ids.clone(), false).await.unwrap();
                got.extend(ids);
            }
        })
    };
    let (a, b) = (fetch(1), fetch(2));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let a: HashSet<StoredId> = a.into_iter().collect();
    let b: HashSet<StoredId> = b.into_iter().collect();
    assert!(a.is_disjoint(&b), "a message was delivered twice");
    assert_eq!(a.union(&b).copied().collect::<HashSet<_>>(), all);
    assert_eq!(store.counts(BOB).await.unwrap(), Counts::default());
}

#[tokio::test]
async fn purge_removes_a_mailbox_or_its_older_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = Utc::now();
    store
        .insert(message_at(BOB, b"old", now - TimeDelta::days(40)))
        .await
        .unwrap();
    store.insert(message_at(BOB, b"new", now)).await.unwrap();
    store.insert(message(CAROL, b"c")).await.unwrap();
    let purged = store
        .purge(BOB, Some(Duration::from_secs(30 * 86_400)))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    let left = store.messages(BOB, true).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message.body, b"new");
    assert_eq!(store.purge(BOB, None).await.unwrap(), 1);
    assert_eq!(store.counts(BOB).await.unwrap(), Counts::default());
    assert_eq!(
        store.counts(CAROL).await.unwrap().new,
        1,
        "other mailboxes untouched"
    );
    assert_eq!(
        store.purge("sip:nobody@example.com", None).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn retention_purge_removes_expired_and_long_delivered_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.retention_days = Some(30);
    cfg.limits.delivered_retention_days = Some(7);
    let store = Store::open(cfg).unwrap();
    let now = Utc::now();
    store
        .insert(message_at(BOB, b"expired", now - TimeDelta::days(31)))
        .await
        .unwrap();
    store.insert(message_at(BOB, b"fresh", now)).await.unwrap();
    let kept = store.insert(message_at(CAROL, b"read", now)).await.unwrap();
    store.delivered(vec![kept], true).await.unwrap();
    store
        .insert(message_at(CAROL, b"unread", now))
        .await
        .unwrap();

    // Today nothing delivered is older than 7 days: only the 31-day-old message goes.
    let purged = store.purge_expired(now).await.unwrap();
    assert_eq!(purged.messages, 1);
    assert_eq!(purged.mailboxes, vec![BOB.to_owned()]);
    // Eight days on, the delivered message goes too; the unread ones stay.
    let purged = store.purge_expired(now + TimeDelta::days(8)).await.unwrap();
    assert_eq!(purged.messages, 1);
    assert_eq!(purged.mailboxes, vec![CAROL.to_owned()]);
    assert_eq!(store.stats().await.unwrap().new, 2);
    assert_eq!(store.stats().await.unwrap().old, 0);
}

#[tokio::test]
async fn publication_state_persists_and_can_be_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let record = PublicationRecord {
        etag: "a.1234".to_owned(),
        expires_at: t(1_700_003_600),
    };
    {
        let store = open(dir.path());
        assert_eq!(store.publication(BOB).await.unwrap(), None);
        store
            .save_publication(BOB, Some(record.clone()))
            .await
            .unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.publication(BOB).await.unwrap(), Some(record));
    // A publication does not make the mailbox show up as holding messages.
    assert!(store.mailboxes().await.unwrap().is_empty());
    store.save_publication(BOB, None).await.unwrap();
    assert_eq!(store.publication(BOB).await.unwrap(), None);
}

#[tokio::test]
async fn publication_saves_made_together_share_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let before = store.writer_stats().commits;
    // Queued when called: twenty saves made before any is awaited.
    let saves: Vec<_> = (0..20)
        .map(|i| {
            store.save_publication(
                &format!("sip:user{i}@example.com"),
                Some(PublicationRecord {
                    etag: format!("e.{i}"),
                    expires_at: t(1_700_003_600),
                }),
            )
        })
        .collect();
    for saved in saves {
        saved.await.unwrap();
    }
    let commits = store.writer_stats().commits - before;
    // Usually one or two commits (the writer may wake after the first is queued); one at a
    // time they would take twenty. The bound leaves room for a preempted test thread.
    assert!(commits < 10, "{commits} commits for 20 saves");
    for i in [0, 19] {
        let record = store
            .publication(&format!("sip:user{i}@example.com"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.etag, format!("e.{i}"));
    }
}

#[tokio::test]
async fn counters_always_match_a_recount() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let boxes = [BOB, CAROL, "sip:dave@example.com"];
    // A fixed pseudo-random mix of deposits, kept and deleted deliveries, and purges.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for step in 0..400u64 {
        let mailbox = boxes[usize::try_from(next(3)).unwrap()];
        match next(10) {
            0..=5 => {
                let m = NewMessage {
                    urgent: next(3) == 0,
                    ..message(mailbox, &vec![b'x'; usize::try_from(next(50)).unwrap()])
                };
                store.insert(m).await.unwrap();
            }
            6 | 7 => {
                let batch = store.claim(mailbox, step, 3).await.unwrap();
                let ids = batch.iter().map(|m| m.id).collect();
                store.delivered(ids, next(2) == 0).await.unwrap();
            }
            8 => {
                store.claim(mailbox, step, 2).await.unwrap();
                store.release(step).await.unwrap();
            }
            _ => {
                if next(4) == 0 {
                    store.purge(mailbox, None).await.unwrap();
                }
            }
        }
    }
    let mut total_bytes = 0;
    for mailbox in boxes {
        let all = store.messages(mailbox, true).await.unwrap();
        let is = |state: MessageState, urgent: bool| {
            all.iter()
                .filter(|m| m.state == state && (!urgent || m.message.urgent))
                .count() as u64
        };
        let recount = Counts {
            new: is(MessageState::New, false),
            old: is(MessageState::Delivered, false),
            urgent_new: is(MessageState::New, true),
            urgent_old: is(MessageState::Delivered, true),
        };
        assert_eq!(store.counts(mailbox).await.unwrap(), recount, "{mailbox}");
        total_bytes += all.iter().map(|m| m.message.body.len() as u64).sum::<u64>();
    }
    assert_eq!(store.stats().await.unwrap().bytes, total_bytes);
}

#[test]
fn the_handle_can_be_shared_across_tasks_and_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Store>();
    shareable::<StoreError>();
}
