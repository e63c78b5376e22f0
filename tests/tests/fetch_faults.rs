//! Issue 10, fetch faults: a fetch is cut at a random point (after k of the messages, k random,
//! plus a random few milliseconds so the cut also lands inside a chunked SEND) either by the
//! client dropping its MSRP connection or by SIGKILL of the server (then restarted on the same
//! database). Whatever the cut, every message the client did not answer 200 is still in the
//! store, and at the end one clean fetch delivers the rest: nothing is lost.
//!
//! `MWI_FETCH_ROUNDS` sets the number of cuts (CI runs 6, alternating client cut and SIGKILL).

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use e2e_tests::{client, deposit, open_store, wait_until, Server};
use msrp_session::cpim::CpimMessage;
use mwi_store::client::chat::{call, CallOptions};
use rand::Rng;

const WAIT: Duration = Duration::from_secs(10);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";
const FETCH: &str = "sip:offline@example.com";

fn rounds() -> usize {
    std::env::var("MWI_FETCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6)
}

/// The original body of a fetched message (CPIM-wrapped since the client accepts CPIM).
fn inner(body: &Bytes) -> String {
    let text = CpimMessage::parse(body)
        .map(|c| c.body)
        .unwrap_or_else(|_| body.clone());
    String::from_utf8_lossy(&text).into_owned()
}

async fn bodies_in_store(db: &std::path::Path) -> anyhow::Result<HashSet<String>> {
    Ok(open_store(db)?
        .messages(BOB, true)
        .await?
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m.message.body).into_owned())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_fetches_and_killed_servers_delete_only_what_was_acknowledged() -> anyhow::Result<()> {
    // Small chunks: a cut can land between the chunks of one SEND.
    let config = "[mwi]\nmode = \"notify\"\n[fetch]\nwindow = 4\n[msrp]\nchunk_size = 64\n";
    let mut server = Server::start(config)?;
    let rounds = rounds();
    // Enough that every round finds messages waiting (at most 6 are taken per round).
    let deposited = 40.max(rounds * 4);
    let all: Vec<String> = (0..deposited)
        .map(|i| format!("fault test message {i:03}"))
        .collect();
    {
        let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
        let bodies: Vec<(&str, Bytes)> = all
            .iter()
            .map(|b| ("text/plain", Bytes::from(b.clone())))
            .collect();
        deposit(&uac, &msrp, &CallOptions::new(ALICE, BOB), &bodies, WAIT).await?;
    }

    let mut rng = rand::rng();
    let mut acked: HashSet<String> = HashSet::new();
    let mut kills = 0;
    let mut cuts = 0;
    for round in 0..rounds {
        let waiting = bodies_in_store(&server.db).await?.len();
        if waiting == 0 {
            break;
        }
        let k = rng.random_range(0..=waiting.min(6));
        let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
        let mut fetch = call(&uac, &msrp, &CallOptions::new(BOB, FETCH), WAIT).await?;
        for _ in 0..k {
            let (_, body) = fetch.next_message(WAIT).await?;
            acked.insert(inner(&body));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
        let kill = round % 2 == 1;
        if kill {
            kills += 1;
            let (dir, db) = server.kill()?;
            drop(fetch);
            server = Server::start_in(dir, db, config)?;
        } else {
            cuts += 1;
            let interrupted = |s: &Server| {
                s.log_lines()
                    .iter()
                    .filter(|l| l["message"] == "fetch interrupted")
                    .count()
            };
            let before = interrupted(&server);
            fetch.session.close();
            drop(fetch);
            // The server notices, finishes its deletions and releases its claims.
            let what = format!("round {round}: the server did not log the interrupted fetch");
            wait_until(WAIT, &what, async || Ok(interrupted(&server) != before)).await?;
        }
        let stored = bodies_in_store(&server.db).await?;
        let lost: Vec<&String> = all
            .iter()
            .filter(|b| !acked.contains(*b) && !stored.contains(*b))
            .collect();
        if !lost.is_empty() {
            bail!(
                "round {round} ({}): deleted without a 200: {lost:?}",
                if kill { "SIGKILL" } else { "client cut" }
            );
        }
        println!(
            "round {round}: {} after {k} acknowledged; {} waiting",
            if kill { "SIGKILL" } else { "client cut" },
            stored.len()
        );
    }

    // One clean fetch delivers everything left; with what was acknowledged, that is all.
    let (mut uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let mut fetch = call(&uac, &msrp, &CallOptions::new(BOB, FETCH), WAIT).await?;
    let rest = fetch
        .collect_until_bye(&mut uac, WAIT)
        .await
        .context("final fetch")?;
    let mut delivered: HashSet<String> = rest.iter().map(|(_, b)| inner(b)).collect();
    delivered.extend(acked.iter().cloned());
    let missing: Vec<&String> = all.iter().filter(|b| !delivered.contains(*b)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert!(
        bodies_in_store(&server.db).await?.is_empty(),
        "the clean fetch empties the mailbox"
    );
    println!(
        "FETCH FAULT SUMMARY: {rounds} rounds ({cuts} client cuts, {kills} SIGKILLs), \
         {} acknowledged before cuts, {} delivered by the final fetch, none lost",
        acked.len(),
        rest.len()
    );
    Ok(())
}
