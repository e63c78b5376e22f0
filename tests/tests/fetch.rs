//! Issue 6 end to end: the fetch URI delivers bob's mailbox with original senders and times,
//! removes only what was acknowledged, respects the window, and never gives one message to two
//! concurrent fetches; MWI ends with `Messages-Waiting: no`.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use e2e_tests::{
    accept_publishes_until, client, deposit, open_store, start_with_presence, texts, Server,
};
use msrp_session::cpim::{CpimAddress, CpimMessage};
use msrp_session::{MsrpEndpoint, SessionEvent};
use mwi_store::client::chat::{call, CallOptions, Rejected};
use mwi_store::client::sip_uac::SipUac;

const WAIT: Duration = Duration::from_secs(10);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";
const CAROL: &str = "sip:carol@example.com";
const FETCH: &str = "sip:offline@example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_delivers_originals_then_bye_and_publishes_no() -> anyhow::Result<()> {
    let (server, mut presence) = start_with_presence("").await?;
    let (mut uac, msrp) = client("127.0.0.1", &server, 100).await?;

    let cpim = CpimMessage::new(
        &CpimAddress::new(Some("Alice"), ALICE),
        &CpimAddress::new(None, BOB),
        Some(chrono::DateTime::parse_from_rfc3339(
            "2026-11-20T08:30:00Z",
        )?),
        "text/plain;charset=UTF-8",
        Bytes::from_static(b"sent at half past eight"),
    );
    let long = Bytes::from("abcdefghij".repeat(30));
    let mut alice = CallOptions::new(ALICE, BOB);
    alice.from_name = Some("Alice".into());
    let bodies = [
        ("text/plain", Bytes::from_static(b"first")),
        ("message/cpim", cpim.to_bytes()),
        ("text/plain", long.clone()),
    ];
    deposit(&uac, &msrp, &alice, &bodies, WAIT).await?;
    let carol = CallOptions::new(CAROL, BOB);
    deposit(&uac, &msrp, &carol, &texts(2, "carol"), WAIT).await?;
    accept_publishes_until(&mut presence, WAIT, |p| {
        p.body.contains("Text-Message: 5/0")
    })
    .await?;

    let mut fetch = call(&uac, &msrp, &CallOptions::new(BOB, FETCH), WAIT).await?;
    let got = fetch.collect_until_bye(&mut uac, WAIT).await?;
    assert_eq!(got.len(), 5, "{got:?}");
    let parsed: Vec<CpimMessage> = got
        .iter()
        .map(|(ct, body)| {
            assert_eq!(ct, "message/cpim");
            CpimMessage::parse(body).expect("fetch delivers CPIM")
        })
        .collect();
    let senders: Vec<String> = parsed
        .iter()
        .map(|c| c.from().map(|a| a.uri).unwrap_or_default())
        .collect();
    assert_eq!(senders, [ALICE, ALICE, ALICE, CAROL, CAROL]);
    assert_eq!(
        parsed[0].from().and_then(|a| a.display_name).as_deref(),
        Some("Alice")
    );
    assert!(parsed
        .iter()
        .all(|c| c.to().first().map(|a| a.uri.as_str()) == Some(BOB)));
    let inner: Vec<Bytes> = parsed.iter().map(|c| c.body.clone()).collect();
    assert_eq!(inner[0], Bytes::from_static(b"first"));
    assert_eq!(inner[1], Bytes::from_static(b"sent at half past eight"));
    assert_eq!(inner[2], long);
    assert_eq!(inner[3], Bytes::from_static(b"carol 0"));
    assert_eq!(
        parsed[1].datetime().map(|d| d.to_rfc3339()),
        Some("2026-11-20T08:30:00+00:00".to_string()),
        "the sender's original time"
    );
    assert!(
        parsed[0].datetime().is_some(),
        "receive time when the sender gave none"
    );

    let (last, _) = accept_publishes_until(&mut presence, WAIT, |p| {
        p.body.contains("Messages-Waiting: no")
    })
    .await?;
    assert!(last.body.contains("Text-Message: 0/0"), "{}", last.body);
    assert_eq!(open_store(&server.db)?.counts(BOB).await?.new, 0);

    // A second fetch: "no new messages", then BYE.
    let mut fetch = call(&uac, &msrp, &CallOptions::new(BOB, FETCH), WAIT).await?;
    let got = fetch.collect_until_bye(&mut uac, WAIT).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, Bytes::from_static(b"You have no new messages"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_fetch_is_refused_and_pai_picks_the_mailbox() -> anyhow::Result<()> {
    let server = Server::start("[mwi]\nmode = \"notify\"\n[deposit]\naccept_untrusted = true\n")?;
    let (mut uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let alice = CallOptions::new(ALICE, BOB);
    deposit(&uac, &msrp, &alice, &texts(2, "hi"), WAIT).await?;
    let store = open_store(&server.db)?;

    // From an untrusted address, even claiming to be bob with a PAI: 403, nothing revealed.
    let (uac2, msrp2) = client("127.0.0.2", &server, 2048).await?;
    let mut opts = CallOptions::new(BOB, FETCH);
    opts.asserted_identity = Some(BOB.into());
    match call(&uac2, &msrp2, &opts, WAIT).await {
        Err(e) => assert_eq!(
            e.downcast_ref::<Rejected>().map(|r| r.0.status()),
            Some(403)
        ),
        Ok(_) => bail!("untrusted fetch was answered"),
    }
    assert_eq!(store.counts(BOB).await?.new, 2);

    // From an untrusted deposit source, PAI is ignored: the sender is From, unverified.
    let mut opts = CallOptions::new("sip:mallory@example.com", "sip:dave@example.com");
    opts.asserted_identity = Some(ALICE.into());
    let mut chat = call(&uac2, &msrp2, &opts, WAIT).await?;
    chat.next_message(WAIT).await?;
    chat.send("text/plain", Bytes::from_static(b"x")).await?;
    chat.bye(&uac2, WAIT).await?;
    let dave = store.messages("sip:dave@example.com", true).await?;
    assert_eq!(dave[0].message.sender_aor, "sip:mallory@example.com");
    assert!(!dave[0].message.sender_verified);

    // From the trusted proxy, P-Asserted-Identity wins over From.
    let mut opts = CallOptions::new("sip:eve@example.com", FETCH);
    opts.asserted_identity = Some(BOB.into());
    let mut fetch = call(&uac, &msrp, &opts, WAIT).await?;
    let got = fetch.collect_until_bye(&mut uac, WAIT).await?;
    assert_eq!(got.len(), 2);
    assert_eq!(store.counts(BOB).await?.new, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_fetch_leaves_the_unacknowledged_and_republishes() -> anyhow::Result<()> {
    let (server, mut presence) = start_with_presence("").await?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let alice = CallOptions::new(ALICE, BOB);
    deposit(&uac, &msrp, &alice, &texts(5, "m"), WAIT).await?;
    accept_publishes_until(&mut presence, WAIT, |p| {
        p.body.contains("Text-Message: 5/0")
    })
    .await?;

    let mut fetch = call(&uac, &msrp, &CallOptions::new(BOB, FETCH), WAIT).await?;
    for _ in 0..2 {
        fetch.next_message(WAIT).await?;
    }
    // The two 200s reach the server and their messages leave; then cut the connection with
    // the other three unanswered.
    let store = open_store(&server.db)?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.counts(BOB).await?.new > 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fetch.session.close();
    drop(fetch);
    let mut server = server;
    server.wait_log(|l| l["message"] == "fetch interrupted", WAIT)?;
    let left = store.counts(BOB).await?.new;
    assert_eq!(left, 3, "only the two acknowledged messages leave");
    accept_publishes_until(&mut presence, WAIT, |p| {
        p.body.contains("Text-Message: 3/0")
    })
    .await?;
    let bodies: Vec<Vec<u8>> = store
        .messages(BOB, false)
        .await?
        .into_iter()
        .map(|m| m.message.body)
        .collect();
    assert_eq!(bodies, [b"m 2".to_vec(), b"m 3".to_vec(), b"m 4".to_vec()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_fetcher_never_has_more_than_the_window_in_flight() -> anyhow::Result<()> {
    let server = Server::start("[mwi]\nmode = \"notify\"\n[fetch]\nwindow = 2\n")?;
    let (mut uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let alice = CallOptions::new(ALICE, BOB);
    deposit(&uac, &msrp, &alice, &texts(6, "w"), WAIT).await?;

    let mut fetch = call(&uac, &msrp, &CallOptions::new(BOB, FETCH), WAIT).await?;
    let mut held = Vec::new();
    let mut received = 0;
    let mut max_unanswered = 0;
    while received < 6 {
        // Take everything the server sends within 300 ms without answering.
        let ev = tokio::time::timeout(Duration::from_millis(300), fetch.session.next_event()).await;
        match ev {
            Ok(Some(SessionEvent::Message(m))) => {
                received += 1;
                held.push(m.responder);
                max_unanswered = max_unanswered.max(held.len());
            }
            Ok(Some(SessionEvent::Bound)) => {}
            Ok(other) => bail!("session ended early: {other:?}"),
            // Quiet: the window is full; answer the oldest.
            Err(_) => {
                if held.is_empty() {
                    bail!("nothing in flight and nothing sent");
                }
                held.remove(0).accept();
            }
        }
    }
    for r in held {
        r.accept();
    }
    fetch.collect_until_bye(&mut uac, WAIT).await?;
    assert_eq!(
        max_unanswered, 2,
        "the server kept exactly the window in flight"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_fetches_never_share_a_message() -> anyhow::Result<()> {
    let server = Server::start("[mwi]\nmode = \"notify\"\n[fetch]\nwindow = 4\n")?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let alice = CallOptions::new(ALICE, BOB);
    deposit(&uac, &msrp, &alice, &texts(40, "c"), WAIT).await?;

    let mut tasks = Vec::new();
    for _ in 0..2 {
        let sip_udp = server.sip_udp;
        tasks.push(tokio::spawn(async move {
            let mut uac = SipUac::bind("127.0.0.1:0".parse()?, sip_udp).await?;
            let msrp = MsrpEndpoint::bind("127.0.0.1:0".parse()?, Default::default()).await?;
            let mut fetch = call(&uac, &msrp, &CallOptions::new(BOB, FETCH), WAIT).await?;
            let got = fetch.collect_until_bye(&mut uac, WAIT).await?;
            anyhow::Ok(
                got.into_iter()
                    .filter_map(|(_, b)| CpimMessage::parse(&b).ok().map(|c| c.body))
                    .filter(|b| b.starts_with(b"c "))
                    .collect::<Vec<_>>(),
            )
        }));
    }
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    for t in tasks {
        let got = t.await??;
        sizes.push(got.len());
        all.extend(got);
    }
    let unique: HashSet<&Bytes> = all.iter().collect();
    assert_eq!(all.len(), 40, "union is everything: {sizes:?}");
    assert_eq!(unique.len(), 40, "intersection is empty: {sizes:?}");
    assert_eq!(open_store(&server.db)?.counts(BOB).await?.new, 0);
    Ok(())
}
