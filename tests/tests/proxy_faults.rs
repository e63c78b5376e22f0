//! Issue 10, proxy faults: the presence server answers 500, 412, 423 (with Min-Expires), does
//! not answer at all, or is down (its port not bound) while 1000 mailbox changes happen. Each
//! time PUBLISH backs off or adapts as RFC 3903 says, and once the presence server is back the
//! published counts converge to the store's; the server's memory stays flat through the outage
//! (changes coalesce per mailbox, nothing queues per change).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use e2e_tests::{accept_publishes_until, deposit_message, new_count, open_store, Server};
use mwi_store::client::presence::{PresenceServer, Publish};
use mwi_store::client::sip_uac::SipUac;

const WAIT: Duration = Duration::from_secs(10);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";
/// Mailboxes that change during the outage.
const OUTAGE_MAILBOXES: usize = 50;
/// Changes during the outage.
const OUTAGE_CHANGES: usize = 1000;

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

/// The next PUBLISH that is not a retransmission of one already seen (same Call-ID/CSeq).
async fn next_new(
    presence: &mut PresenceServer,
    seen: &mut Vec<(String, String)>,
) -> anyhow::Result<Publish> {
    loop {
        let p = presence.next_publish(WAIT).await?;
        let key = (
            p.request.call_id().to_string(),
            p.request.header("cseq").unwrap_or_default().to_string(),
        );
        if !seen.contains(&key) {
            seen.push(key);
            return Ok(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_backs_off_adapts_and_converges_with_flat_memory() -> anyhow::Result<()> {
    let mut presence = PresenceServer::bind("127.0.0.1:0".parse()?).await?;
    let presence_addr: SocketAddr = presence.local_addr();
    let config = format!(
        "[mwi]\nproxy = \"udp:{presence_addr}\"\nbackoff_initial_secs = 1\nbackoff_max_secs = 2\n\
         [limits]\ndeposit_rate_per_minute = 0\n"
    );
    let server = Server::start(&config)?;
    let uac = SipUac::bind("127.0.0.1:0".parse()?, server.sip_udp).await?;
    let mut keys = Vec::new();

    // 500 three times: retries wait 1 s, then 2 s, then 2 s (backoff_max).
    deposit_message(&uac, ALICE, BOB, "one", WAIT).await?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let p = next_new(&mut presence, &mut keys).await?;
        times.push(Instant::now());
        presence
            .answer(&p, 500, "Server Internal Error", &[])
            .await?;
    }
    let p = next_new(&mut presence, &mut keys).await?;
    times.push(Instant::now());
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(900) && gaps[0] < Duration::from_millis(1900),
        "first retry after ~1 s: {gaps:?}"
    );
    for g in &gaps[1..] {
        assert!(
            *g >= Duration::from_millis(1900) && *g < Duration::from_millis(3500),
            "later retries after ~2 s (backoff_max): {gaps:?}"
        );
    }
    assert!(p.body.contains("Text-Message: 1/0"), "{}", p.body);
    let etag = presence.accept(&p).await?;

    // 412 to a modify: the next PUBLISH is initial, at once.
    deposit_message(&uac, ALICE, BOB, "two", WAIT).await?;
    let p = next_new(&mut presence, &mut keys).await?;
    assert_eq!(p.sip_if_match.as_deref(), Some(etag.as_str()));
    let at = Instant::now();
    presence
        .answer(&p, 412, "Conditional Request Failed", &[])
        .await?;
    let p = next_new(&mut presence, &mut keys).await?;
    assert!(
        at.elapsed() < Duration::from_millis(900),
        "no backoff after 412"
    );
    assert_eq!(p.sip_if_match, None, "after 412 the PUBLISH is initial");

    // 423 Interval Too Brief with Min-Expires: the retry asks for at least that.
    presence
        .answer(
            &p,
            423,
            "Interval Too Brief",
            &["Min-Expires: 7200".to_string()],
        )
        .await?;
    let p = next_new(&mut presence, &mut keys).await?;
    assert!(p.expires.is_some_and(|e| e >= 7200), "{:?}", p.expires);
    assert!(p.body.contains("Text-Message: 2/0"), "{}", p.body);
    presence.accept(&p).await?;

    // Not answering for 3 s: the transaction retransmits (a handful, RFC 3261 Timer E), then
    // the first answer ends it and the count converges.
    deposit_message(&uac, ALICE, BOB, "three", WAIT).await?;
    let silent_until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut ignored = 0;
    while let Ok(Ok(_)) = tokio::time::timeout_at(silent_until, presence.next_publish(WAIT)).await {
        ignored += 1;
    }
    assert!(
        (1..=8).contains(&ignored),
        "{ignored} PUBLISH transmissions in 3 s of silence"
    );
    accept_publishes_until(&mut presence, WAIT, |p| {
        p.aor == BOB && new_count(&p.body) == Some(3)
    })
    .await?;

    // Down: nothing listens on the port while 1000 changes happen in 50 mailboxes.
    drop(presence);
    let mailboxes: Vec<String> = (0..OUTAGE_MAILBOXES)
        .map(|i| format!("sip:user{i:02}@example.com"))
        .collect();
    for (i, m) in mailboxes.iter().enumerate().take(10) {
        deposit_message(&uac, ALICE, m, &format!("warm-up {i}"), WAIT).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(server.pid())?;
    let started = Instant::now();
    for i in 0..OUTAGE_CHANGES {
        let m = &mailboxes[i % OUTAGE_MAILBOXES];
        deposit_message(&uac, ALICE, m, &format!("outage {i}"), WAIT).await?;
    }
    let outage = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(server.pid())?;
    let growth = rss_after.saturating_sub(rss_before);
    println!(
        "outage: {OUTAGE_CHANGES} changes in {outage:?}; RSS {rss_before} KiB -> {rss_after} KiB (+{growth} KiB)"
    );
    assert!(
        growth < 16 * 1024,
        "RSS grew {growth} KiB during the outage ({rss_before} -> {rss_after})"
    );

    // Back up on the same port: every mailbox converges to the store's count.
    let presence = PresenceServer::bind(presence_addr).await?;
    let last: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let sink = last.clone();
    let answering = tokio::spawn(async move {
        let mut presence = presence;
        while let Ok(p) = presence.next_publish(Duration::from_secs(60)).await {
            if presence.accept(&p).await.is_err() {
                return;
            }
            if let (Some(n), Ok(mut l)) = (new_count(&p.body), sink.lock()) {
                l.insert(p.aor.clone(), n);
            }
        }
    });
    let store = open_store(&server.db)?;
    let recovered = Instant::now();
    let deadline = recovered + Duration::from_secs(20);
    loop {
        let mut behind = Vec::new();
        for m in &mailboxes {
            let want = store.counts(m).await?.new;
            let got = last.lock().ok().and_then(|l| l.get(m).copied());
            if got != Some(want) {
                behind.push(format!("{m}: store {want}, published {got:?}"));
            }
        }
        if behind.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{} mailboxes did not converge within 20 s: {behind:?}",
                behind.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "PROXY FAULT SUMMARY: 500 retry gaps {gaps:?}; {ignored} transmissions ignored in 3 s \
         of silence; outage of {OUTAGE_CHANGES} changes in {OUTAGE_MAILBOXES} mailboxes: RSS \
         +{growth} KiB; converged {:?} after the presence server came back",
        recovered.elapsed()
    );
    answering.abort();
    Ok(())
}
