//! Issue 10, abuse limits end to end: each `[limits]` key is answered with its status (503 with
//! Retry-After for sessions, 486 with Retry-After / MSRP 403 for the deposit rate, 400 for a SIP
//! body over the limit (a head over the limit is dropped unanswered), 413 for an MSRP chunk)
//! and each limit is logged once per interval, not per hit.

use std::time::Duration;

use bytes::Bytes;
use e2e_tests::{client, open_store, Server};
use mwi_store::client::chat::{call, CallOptions, ChatCall, Rejected};
use mwi_store::client::sip_uac::{Message, SipUac};

const WAIT: Duration = Duration::from_secs(10);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";

/// The final response of a refused INVITE.
fn refusal(r: anyhow::Result<ChatCall>) -> Option<Message> {
    match r {
        Ok(_) => None,
        Err(e) => e.downcast::<Rejected>().ok().map(|r| r.0),
    }
}

async fn page(uac: &SipUac, from: &str, extra: &str, body: &str) -> anyhow::Result<Message> {
    let message = uac.message_request(from, BOB, extra, body);
    uac.transact(&message, Duration::from_secs(3)).await
}

/// Lines of the limit `key` logged before the end of the deposit session `call_id`.
fn limit_lines(server: &mut Server, key: &str, call_id: &str) -> anyhow::Result<usize> {
    let lines = server.log_lines_through(
        |l| l["message"] == "deposit session ended" && l["call_id"] == call_id,
        WAIT,
    )?;
    Ok(lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("limit reached"))
        })
        .filter(|l| l["limit"] == key)
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limits_answer_503_with_retry_after() -> anyhow::Result<()> {
    let mut server = Server::start(
        "[mwi]\nmode = \"notify\"\n[deposit]\naccept_untrusted = true\n\
         [limits]\nmax_sessions = 2\nmax_sessions_per_source = 1\nretry_after_secs = 7\n",
    )?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let (stranger, stranger_msrp) = client("127.0.0.2", &server, 2048).await?;

    // An address outside trusted_proxies: one session, the second is 503.
    let first = call(
        &stranger,
        &stranger_msrp,
        &CallOptions::new(ALICE, BOB),
        WAIT,
    )
    .await?;
    let refused = refusal(
        call(
            &stranger,
            &stranger_msrp,
            &CallOptions::new(ALICE, BOB),
            WAIT,
        )
        .await,
    )
    .expect("second session from one untrusted source is refused");
    assert_eq!(refused.status(), 503, "{}", refused.start_line);
    assert_eq!(refused.header("retry-after"), Some("7"));

    // The proxy is limited only globally: one more fits (2 in all), the next is 503.
    let second = call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await?;
    let refused = refusal(call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await)
        .expect("third session is refused");
    assert_eq!(refused.status(), 503, "{}", refused.start_line);
    assert_eq!(refused.header("retry-after"), Some("7"));
    for _ in 0..5 {
        let _ = refusal(call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await);
    }

    // A session ends: its slot is free again.
    first.bye(&stranger, WAIT).await?;
    let mut again = None;
    for _ in 0..50 {
        match call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let again = again.expect("a freed slot is reused");
    again.bye(&uac, WAIT).await?;
    let last = second.dialog.call_id.clone();
    second.bye(&uac, WAIT).await?;

    // Six hits of the global limit, one of the per-source one: one line each.
    assert_eq!(
        limit_lines(&mut server, "limits.max_sessions_per_source", &last)?,
        1
    );
    assert_eq!(limit_lines(&mut server, "limits.max_sessions", &last)?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_rate_per_caller_answers_486_and_msrp_403() -> anyhow::Result<()> {
    let mut server = Server::start(
        "[mwi]\nmode = \"notify\"\n[limits]\ndeposit_rate_per_minute = 6\ndeposit_burst = 3\n",
    )?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    for i in 0..3 {
        let r = page(&uac, ALICE, "", &format!("burst {i}")).await?;
        assert_eq!(r.status(), 202, "{}", r.start_line);
    }
    let r = page(&uac, ALICE, "", "one too many").await?;
    assert_eq!(r.status(), 486, "{}", r.start_line);
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.trim().parse().ok())
        .expect("Retry-After on the 486");
    assert!((1..=11).contains(&retry), "Retry-After {retry}");
    for _ in 0..20 {
        assert_eq!(page(&uac, ALICE, "", "flood").await?.status(), 486);
    }
    // The bucket is the asserted sender's: someone else is not affected.
    let r = page(&uac, "sip:carol@example.com", "", "hello").await?;
    assert_eq!(r.status(), 202);

    // In a chat: the fourth SEND gets MSRP 403; a new INVITE then gets 486 (the chat is
    // still up: its end is the last line of this test's traffic).
    let dave = "sip:dave@example.com";
    let chat = call(&uac, &msrp, &CallOptions::new(dave, BOB), WAIT).await?;
    for i in 0..3 {
        chat.send("text/plain", Bytes::from(format!("dave {i}")))
            .await?;
    }
    let over = chat.send("text/plain", Bytes::from_static(b"dave 3")).await;
    assert!(format!("{over:?}").contains("403"), "{over:?}");
    let refused = refusal(call(&uac, &msrp, &CallOptions::new(dave, BOB), WAIT).await)
        .expect("INVITE over the rate is refused");
    assert_eq!(refused.status(), 486, "{}", refused.start_line);
    assert!(refused.header("retry-after").is_some());
    let last = chat.dialog.call_id.clone();
    chat.bye(&uac, WAIT).await?;

    let stored = open_store(&server.db)?.messages(BOB, true).await?;
    assert_eq!(
        stored.len(),
        3 + 1 + 3,
        "3 from alice, 1 from carol, 3 from dave"
    );
    // 23 refusals, one log line (the interval is 10 s).
    assert_eq!(
        limit_lines(&mut server, "limits.deposit_rate_per_minute", &last)?,
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_sip_and_msrp_chunks_are_refused() -> anyhow::Result<()> {
    let server = Server::start(
        "[mwi]\nmode = \"notify\"\n[limits]\nmax_sip_body_bytes = 2048\n\
         max_sip_head_bytes = 2048\nmax_msrp_chunk_bytes = 1024\n",
    )?;
    let (uac, _) = client("127.0.0.1", &server, 2048).await?;
    let big_body = "b".repeat(3000);
    let r = page(&uac, ALICE, "", &big_body).await?;
    assert_eq!(r.status(), 400, "oversized body: {}", r.start_line);
    // A head over the limit cannot be read far enough to answer: dropped (sip-core framing).
    let big_header = format!("X-Padding: {}\r\n", "h".repeat(3000));
    let r = page(&uac, ALICE, &big_header, "small").await;
    assert!(r.is_err(), "an oversized head is not answered: {r:?}");
    let r = page(&uac, ALICE, "", &"c".repeat(1500)).await?;
    assert_eq!(r.status(), 202, "under the limits: {}", r.start_line);

    // A 3000-byte chunk is refused 413; the same message in 1000-byte chunks is stored.
    let (uac_big, msrp_big) = client("127.0.0.1", &server, 4096).await?;
    let chat = call(&uac_big, &msrp_big, &CallOptions::new(ALICE, BOB), WAIT).await?;
    let over = chat.send("text/plain", Bytes::from("x".repeat(3000))).await;
    assert!(format!("{over:?}").contains("413"), "{over:?}");
    let _ = chat.bye(&uac_big, WAIT).await;
    let (uac_small, msrp_small) = client("127.0.0.1", &server, 1000).await?;
    let chat = call(&uac_small, &msrp_small, &CallOptions::new(ALICE, BOB), WAIT).await?;
    chat.send("text/plain", Bytes::from("y".repeat(3000)))
        .await?;
    chat.bye(&uac_small, WAIT).await?;
    let stored = open_store(&server.db)?.messages(BOB, true).await?;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].message.body.len(), 3000);
    Ok(())
}
