//! SIGKILL crash test (issue 4): a child process deposits in a loop from many tasks and prints
//! each id once `insert` has resolved; the parent kills it with SIGKILL at a random moment,
//! reopens the database and checks that every acknowledged message is there, byte for byte.
//! Several rounds on the same file, a few seconds in all.
//!
//! The test binary is its own child: with `CRASH_CHILD_DB` set it runs the depositor.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use message_store::{Store, StoreConfig, StoredId};

const CHILD_ENV: &str = "CRASH_CHILD_DB";
const ROUNDS: u32 = 5;
const TASKS: u32 = 32;
/// How long the child may take to acknowledge its first message before the round fails.
const FIRST_ACK_DEADLINE: Duration = Duration::from_secs(30);

fn main() {
    if let Some(db) = std::env::var_os(CHILD_ENV) {
        depositor(Path::new(&db));
    } else {
        every_acknowledged_message_survives_sigkill();
        println!("crash: ok");
    }
}

/// The child: deposits forever; "id round task seq" on stdout after each acknowledgement.
fn depositor(db: &Path) {
    let round: u32 = std::env::var("CRASH_ROUND").unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = StoreConfig::new(db);
        config.limits.max_messages_per_mailbox = u64::MAX;
        config.limits.max_bytes_per_mailbox = u64::MAX;
        let store = Store::open(config).unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for seq in 0u64.. {
                        let body = body(round, task, seq);
                        let mailbox = format!("sip:user{}@example.com", task % 4);
                        let id = store
                            .insert(common::message(&mailbox, body.as_bytes()))
                            .await
                            .unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "{} {round} {task} {seq}", id.0).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn body(round: u32, task: u32, seq: u64) -> String {
    format!("round {round} task {task} message {seq}")
}

fn every_acknowledged_message_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let me = std::env::current_exe().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut total = 0usize;
    for round in 0..ROUNDS {
        let mut child = Command::new(&me)
            .env(CHILD_ENV, &db)
            .env("CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (first_ack, first_acked) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            if stdout.read_line(&mut text).unwrap() > 0 {
                let _ = first_ack.send(());
            }
            stdout.read_to_string(&mut text).unwrap();
            text
        });
        // The kill clock starts at the first acknowledgement, not at the spawn: a loaded CI
        // machine may take longer than the jitter to start the child and open the file.
        let started = first_acked.recv_timeout(FIRST_ACK_DEADLINE);
        if started.is_ok() {
            std::thread::sleep(Duration::from_millis(100 + jitter_ms(300)));
        }
        // Child::kill is SIGKILL on Unix: no destructor, no final commit, no flush.
        child.kill().unwrap();
        child.wait().unwrap();
        let text = reader.join().unwrap();
        // Only complete lines were acknowledged; a line cut by the kill is ignored.
        let acked: Vec<(StoredId, String)> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| {
                let f: Vec<u64> = l.split_whitespace().map(|n| n.parse().unwrap()).collect();
                let id = StoredId(i64::try_from(f[0]).unwrap());
                let (r, task, seq) = (f[1], f[2], f[3]);
                (
                    id,
                    body(u32::try_from(r).unwrap(), u32::try_from(task).unwrap(), seq),
                )
            })
            .collect();
        assert!(
            started.is_ok() && !acked.is_empty(),
            "round {round}: the child acknowledged nothing in {FIRST_ACK_DEADLINE:?}"
        );
        total += acked.len();

        let store = Store::open(StoreConfig::new(&db)).unwrap();
        let stored: std::collections::HashMap<StoredId, Vec<u8>> = runtime.block_on(async {
            let mut all = std::collections::HashMap::new();
            for user in 0..4 {
                let mailbox = format!("sip:user{user}@example.com");
                for m in store.messages(&mailbox, true).await.unwrap() {
                    all.insert(m.id, m.message.body);
                }
            }
            all
        });
        for (id, body) in &acked {
            assert_eq!(
                stored.get(id).map(Vec::as_slice),
                Some(body.as_bytes()),
                "round {round}: acknowledged message {id} lost after SIGKILL"
            );
        }
        eprintln!(
            "crash round {round}: {} acknowledged, {} stored in total",
            acked.len(),
            stored.len()
        );
    }
    assert!(total > 0);
}

/// A little randomness for the kill moment, without a dependency.
fn jitter_ms(max: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) % max
}
