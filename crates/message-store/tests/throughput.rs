//! Durable deposit rate through the group-commit path (issue 4 note, issue 9 "limit" figure):
//! concurrent tasks inserting ~100-byte bodies with `synchronous=FULL`, each waiting for its
//! acknowledgement before the next insert: 100 tasks with one row per commit, 100 tasks with
//! group commit (batches then hold at most 100), and 1000 tasks (full 512-row batches). By hand,
//! in release:
//! `cargo test --release -p message-store --test throughput -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use message_store::{Store, StoreConfig};

async fn run(label: &str, tasks: usize, max_rows: usize, duration: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path().join("bench.db"));
    config.group_commit_max_rows = max_rows;
    config.limits.max_messages_per_mailbox = u64::MAX;
    config.limits.max_bytes_per_mailbox = u64::MAX;
    let store = Store::open(config).unwrap();
    let body = [b'x'; 100];
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..tasks)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mailbox = format!("sip:user{}@example.com", task % 1000);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    store
                        .insert(common::message(&mailbox, &body))
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = store.writer_stats();
    let rate = total as f64 / secs;
    let mean_batch = stats.jobs as f64 / stats.commits.max(1) as f64;
    let mean_commit = stats.commit_micros.sum as f64 / stats.commit_micros.count.max(1) as f64;
    println!(
        "{label}: {total} durable inserts in {secs:.2} s = {rate:.0}/s; {} commits, \
         mean batch {mean_batch:.1}, mean commit {mean_commit:.0} µs",
        stats.commits
    );
    assert_eq!(store.stats().await.unwrap().new, total);
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand in release"]
async fn durable_insert_rate() {
    let secs = Duration::from_secs(4);
    let single = run("100 tasks, one row per commit", 100, 1, secs).await;
    let grouped = run("100 tasks, group commit", 100, 512, secs).await;
    let wide = run("1000 tasks, group commit", 1000, 512, secs).await;
    assert!(
        grouped > 2.0 * single,
        "group commit must beat one row per commit"
    );
    assert!(
        wide > grouped,
        "more callers in flight make bigger, cheaper batches"
    );
}
