//! Issue 5 end to end: PUBLISH to a presence server (initial, modify with SIP-If-Match, 412
//! recovery, restart continuing the persisted publication) and direct SUBSCRIBE/NOTIFY.

use std::time::{Duration, Instant};

use e2e_tests::{client, deposit, open_store, start_with_presence, texts, wait_until, Server};
use mwi_store::client::chat::CallOptions;
use mwi_store::client::presence::PresenceServer;
use mwi_store::client::sip_uac::SipUac;
use mwi_store::client::subscribe::subscribe;

const WAIT: Duration = Duration::from_secs(10);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_lifecycle_412_recovery_and_restart() -> anyhow::Result<()> {
    let mut presence = PresenceServer::bind("127.0.0.1:0".parse()?).await?;
    let config = format!("[mwi]\nproxy = \"udp:{}\"\n", presence.local_addr());
    let server = Server::start(&config)?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let alice = CallOptions::new(ALICE, BOB);

    // Three deposits: the first PUBLISH is initial (no SIP-If-Match), later ones modify.
    deposit(&uac, &msrp, &alice, &texts(3, "msg"), WAIT).await?;
    let first = presence.next_publish(WAIT).await?;
    assert_eq!(first.sip_if_match, None, "initial PUBLISH");
    assert_eq!(first.aor, BOB);
    assert_eq!(
        first.request.header("event").map(str::trim),
        Some("message-summary")
    );
    assert_eq!(
        first.request.header("content-type"),
        Some("application/simple-message-summary")
    );
    assert_eq!(first.expires, Some(3600));
    let mut etag = presence.accept(&first).await?;
    let mut body = first.body.clone();
    while !body.contains("Text-Message: 3/0") {
        let p = presence.next_publish(WAIT).await?;
        assert_eq!(
            p.sip_if_match.as_deref(),
            Some(etag.as_str()),
            "modify uses the last ETag"
        );
        etag = presence.accept(&p).await?;
        body = p.body;
    }
    assert!(body.contains("Messages-Waiting: yes"), "{body}");
    assert!(
        body.contains("Message-Account: sip:offline@example.com"),
        "{body}"
    );

    // The presence server lost the publication: 412, and the server publishes afresh.
    deposit(&uac, &msrp, &alice, &texts(1, "msg"), WAIT).await?;
    let p = presence.next_publish(WAIT).await?;
    assert_eq!(p.sip_if_match.as_deref(), Some(etag.as_str()));
    presence
        .answer(&p, 412, "Conditional Request Failed", &[])
        .await?;
    let p = presence.next_publish(WAIT).await?;
    assert_eq!(p.sip_if_match, None, "after 412 the PUBLISH is initial");
    assert!(p.body.contains("Text-Message: 4/0"), "{}", p.body);
    let etag = presence.accept(&p).await?;

    // Crash and restart on the same store: the start-up republish continues the persisted
    // publication (SIP-If-Match), so the proxy does not get a second one.
    // The ETag is saved after the 200 arrives; kill only once it is on disk.
    let store = open_store(&server.db)?;
    wait_until(
        WAIT,
        &format!("the ETag {etag} was not saved"),
        async || Ok(store.publication(BOB).await?.map(|r| r.etag) == Some(etag.clone())),
    )
    .await?;
    drop(store);
    let (dir, db) = server.kill()?;
    let _server = Server::start_in(dir, db, &config)?;
    let p = presence.next_publish(WAIT).await?;
    assert_eq!(p.sip_if_match.as_deref(), Some(etag.as_str()));
    assert!(p.body.contains("Text-Message: 4/0"), "{}", p.body);
    presence.accept(&p).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_publishes_end_with_the_exact_count() -> anyhow::Result<()> {
    let (server, mut presence) = start_with_presence("").await?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let depositing = tokio::spawn(async move {
        let alice = CallOptions::new(ALICE, BOB);
        deposit(&uac, &msrp, &alice, &texts(200, "msg"), WAIT).await
    });
    // Answer slowly: changes pile up behind the one PUBLISH in flight and coalesce.
    let mut publishes = 0;
    let mut last = String::new();
    while !last.contains("Text-Message: 200/0") {
        let p = presence.next_publish(WAIT).await?;
        publishes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        presence.accept(&p).await?;
        last = p.body;
    }
    depositing.await??;
    assert!(publishes < 100, "{publishes} PUBLISHes for 200 deposits");
    // Nothing more is sent once the count is right.
    assert!(presence
        .next_publish(Duration::from_millis(500))
        .await
        .is_err());
    Ok(())
}

/// `mwi.min_publish_interval_ms`: a burst of deposits into one mailbox is published at most
/// once per interval (the first change at once), and the last PUBLISH carries the exact count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_of_a_busy_mailbox_keep_the_minimum_interval() -> anyhow::Result<()> {
    const INTERVAL: Duration = Duration::from_millis(400);
    let (server, mut presence) =
        start_with_presence("[mwi]\nmin_publish_interval_ms = 400\n").await?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let started = Instant::now();
    let depositing = tokio::spawn(async move {
        let alice = CallOptions::new(ALICE, BOB);
        deposit(&uac, &msrp, &alice, &texts(150, "msg"), WAIT).await
    });
    // Answered at once: only the interval spaces them.
    let mut arrivals = Vec::new();
    let mut last = String::new();
    while !last.contains("Text-Message: 150/0") {
        let p = presence.next_publish(WAIT).await?;
        arrivals.push(Instant::now());
        presence.accept(&p).await?;
        last = p.body;
    }
    depositing.await??;
    let took = started.elapsed();
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        // Half the interval: slack for the UDP hop and scheduling on a busy CI machine (without
        // the interval they arrive milliseconds apart).
        assert!(
            gap >= INTERVAL / 2,
            "PUBLISHes {gap:?} apart, interval {INTERVAL:?}"
        );
    }
    let most = took.as_millis() / INTERVAL.as_millis() + 2;
    assert!(
        (arrivals.len() as u128) <= most,
        "{} PUBLISHes in {took:?}",
        arrivals.len()
    );
    assert!(
        presence.next_publish(INTERVAL * 3).await.is_err(),
        "nothing after the exact count"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_subscribe_notifies_counts_and_refuses_strangers() -> anyhow::Result<()> {
    let server = Server::start("[mwi]\nmode = \"notify\"\n")?;
    let (mut uac, msrp) = client("127.0.0.1", &server, 2048).await?;

    // Someone else's mailbox: 403.
    let err = subscribe(&uac, "sip:eve@example.com", BOB, 600, WAIT)
        .await
        .expect_err("stranger refused");
    assert!(err.to_string().contains("403"), "{err}");

    // The owner, from the trusted proxy: 200, then a NOTIFY with the state.
    let (mut sub, ok) = subscribe(&uac, BOB, BOB, 600, WAIT).await?;
    assert_eq!(ok.header("expires"), Some("600"));
    let n = sub.next_notify(&mut uac, WAIT).await?;
    assert!(
        n.header("subscription-state")
            .is_some_and(|s| s.starts_with("active")),
        "{:?}",
        n.header("subscription-state")
    );
    assert!(
        n.body_text().contains("Messages-Waiting: no"),
        "{}",
        n.body_text()
    );

    let depositor = SipUac::bind("127.0.0.1:0".parse()?, server.sip_udp).await?;
    let alice = CallOptions::new(ALICE, BOB);
    deposit(&depositor, &msrp, &alice, &texts(3, "msg"), WAIT).await?;
    let mut body = String::new();
    while !body.contains("Text-Message: 3/0") {
        body = sub.next_notify(&mut uac, WAIT).await?.body_text();
    }
    assert!(body.contains("Messages-Waiting: yes"), "{body}");

    // Expires: 0 ends it with a terminated NOTIFY.
    let resp = sub.refresh(&uac, 0, WAIT).await?;
    assert_eq!(resp.status(), 200);
    let n = sub.next_notify(&mut uac, WAIT).await?;
    assert!(
        n.header("subscription-state")
            .is_some_and(|s| s.starts_with("terminated")),
        "{:?}",
        n.header("subscription-state")
    );

    // From an untrusted source, even the owner's AoR gets 403.
    let (stranger, _) = client("127.0.0.2", &server, 2048).await?;
    let err = subscribe(&stranger, BOB, BOB, 600, WAIT)
        .await
        .expect_err("untrusted refused");
    assert!(err.to_string().contains("403"), "{err}");
    Ok(())
}
