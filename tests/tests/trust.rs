//! Issue 10, trust: the identity paths not covered by deposit.rs, fetch.rs and mwi.rs — page
//! mode from a trusted and an untrusted source, a forged CPIM From from an untrusted source as
//! the fetcher sees it, and MSRP session ids in our `a=path` (≥ 80 bits, never repeated).

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use e2e_tests::{client, deposit, open_store, Server};
use msrp_session::cpim::{CpimAddress, CpimMessage};
use mwi_store::client::chat::{call, CallOptions};
use mwi_store::client::sip_uac::{Message, SipUac};

const WAIT: Duration = Duration::from_secs(10);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";
const MALLORY: &str = "sip:mallory@example.com";
const FETCH: &str = "sip:offline@example.com";

async fn page(uac: &SipUac, from: &str, pai: Option<&str>, body: &str) -> anyhow::Result<Message> {
    let pai = pai
        .map(|p| format!("P-Asserted-Identity: <{p}>\r\n"))
        .unwrap_or_default();
    let message = uac.message_request(from, BOB, &pai, body);
    uac.transact(&message, WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_mode_from_untrusted_sources_is_refused() -> anyhow::Result<()> {
    let server = Server::start("[mwi]\nmode = \"notify\"\n")?;
    let proxy = SipUac::bind("127.0.0.1:0".parse()?, server.sip_udp).await?;
    let stranger = SipUac::bind("127.0.0.2:0".parse()?, server.sip_udp).await?;

    let r = page(&stranger, ALICE, Some(ALICE), "let me in").await?;
    assert_eq!(r.status(), 403, "{}", r.start_line);
    // Through the proxy, P-Asserted-Identity names the sender (RFC 3325 §9.1).
    let r = page(
        &proxy,
        "sip:anonymous@anonymous.invalid",
        Some(ALICE),
        "via proxy",
    )
    .await?;
    assert_eq!(r.status(), 202, "{}", r.start_line);
    let stored = open_store(&server.db)?.messages(BOB, true).await?;
    assert_eq!(stored.len(), 1, "the untrusted MESSAGE left nothing");
    assert_eq!(stored[0].message.sender_aor, ALICE);
    assert!(stored[0].message.sender_verified);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_senders_stay_unverified_up_to_the_fetcher() -> anyhow::Result<()> {
    let server = Server::start("[mwi]\nmode = \"notify\"\n[deposit]\naccept_untrusted = true\n")?;
    let (mut proxy, proxy_msrp) = client("127.0.0.1", &server, 2048).await?;
    let (stranger, stranger_msrp) = client("127.0.0.2", &server, 2048).await?;

    // Page mode from an untrusted source: its PAI is ignored, From is kept, unverified.
    let r = page(&stranger, MALLORY, Some(ALICE), "page from mallory").await?;
    assert_eq!(r.status(), 202, "{}", r.start_line);

    // A chat deposit from an untrusted source whose CPIM From claims to be alice.
    let mut opts = CallOptions::new(MALLORY, BOB);
    opts.from_name = Some("Mallory".into());
    opts.asserted_identity = Some(ALICE.into());
    let forged = CpimMessage::new(
        &CpimAddress::new(Some("Alice"), ALICE),
        &CpimAddress::new(None, BOB),
        None,
        "text/plain",
        Bytes::from_static(b"it is really me"),
    );
    let bodies = [("message/cpim", forged.to_bytes())];
    deposit(&stranger, &stranger_msrp, &opts, &bodies, WAIT).await?;

    let stored = open_store(&server.db)?.messages(BOB, true).await?;
    assert_eq!(stored.len(), 2);
    for m in &stored {
        assert_eq!(m.message.sender_aor, MALLORY, "{:?}", m.message.body);
        assert!(!m.message.sender_verified);
    }

    // Bob fetches through the proxy: both arrive from mallory, marked unverified.
    let mut fetch = call(&proxy, &proxy_msrp, &CallOptions::new(BOB, FETCH), WAIT).await?;
    let got = fetch.collect_until_bye(&mut proxy, WAIT).await?;
    assert_eq!(got.len(), 2);
    for (_, body) in &got {
        let cpim = CpimMessage::parse(body)?;
        let from = cpim.from().expect("CPIM From");
        assert_eq!(from.uri, MALLORY);
        assert!(
            from.display_name
                .as_deref()
                .is_some_and(|n| n.contains("unverified")),
            "{:?}",
            from.display_name
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msrp_session_ids_in_our_answers_are_long_and_fresh() -> anyhow::Result<()> {
    let server = Server::start("[mwi]\nmode = \"notify\"\n")?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let mut ids = HashSet::new();
    for _ in 0..5 {
        let chat = call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await?;
        let sdp = String::from_utf8_lossy(&chat.dialog.answer.body).into_owned();
        let path = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=path:"))
            .expect("a=path in the answer");
        let id = path
            .rsplit('/')
            .next()
            .and_then(|tail| tail.split(';').next())
            .expect("session id")
            .to_string();
        // RFC 4975 §14.1: at least 80 bits of randomness; 20 alphanumerics carry ~119.
        assert!(id.len() >= 20, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        ids.insert(id);
        chat.bye(&uac, WAIT).await?;
    }
    assert_eq!(ids.len(), 5, "every session has its own id");
    Ok(())
}
