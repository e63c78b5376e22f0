//! Issue 4 end to end: a caller deposits chat messages for offline bob through the real
//! binary; the store then holds exactly what was sent, with the SIP-asserted sender; bad
//! input gets the promised protocol errors and leaves the store unchanged.

use std::time::Duration;

use bytes::Bytes;
use e2e_tests::{
    accept_publishes_until, client, deposit_message, open_store, start_with_presence, Server,
};
use message_store::Source;
use msrp_session::cpim::{CpimAddress, CpimMessage};
use mwi_store::client::chat::{call, CallOptions, Rejected};
use mwi_store::client::sip_uac::token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";

fn is_composing() -> &'static str {
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
     <isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\">\
     <state>active</state><contenttype>text/plain</contenttype></isComposing>"
}

async fn rejected_status(r: anyhow::Result<mwi_store::client::chat::ChatCall>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e
            .downcast_ref::<Rejected>()
            .map(|r| r.0.status())
            .unwrap_or(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_stores_exactly_what_was_sent() -> anyhow::Result<()> {
    let (server, mut presence) = start_with_presence("").await?;
    let (uac, msrp) = client("127.0.0.1", &server, 100).await?;

    let mut opts = CallOptions::new(ALICE, BOB);
    opts.from_name = Some("Alice".into());
    let mut chat = call(&uac, &msrp, &opts, WAIT).await?;

    // The greeting arrives as the called user, CPIM-wrapped since we accept CPIM.
    let (ct, body) = chat.next_message(WAIT).await?;
    assert_eq!(ct, "message/cpim");
    let greeting = CpimMessage::parse(&body)?;
    assert_eq!(greeting.from().map(|a| a.uri), Some(BOB.to_string()));
    assert_eq!(
        greeting.body,
        Bytes::from_static(b"I am offline but you can type a message")
    );

    for text in ["hello bob", "are you there?", "call me"] {
        chat.send("text/plain;charset=UTF-8", text.as_bytes().to_vec())
            .await?;
    }
    let mut cpim = CpimMessage::new(
        &CpimAddress::new(Some("Alice"), ALICE),
        &CpimAddress::new(None, BOB),
        Some(chrono::DateTime::parse_from_rfc3339(
            "2026-11-26T10:00:00+01:00",
        )?),
        "text/plain;charset=UTF-8",
        Bytes::from_static(b"wrapped in CPIM"),
    );
    cpim.set_imdn("imdn-42", None);
    let cpim_bytes = cpim.to_bytes();
    chat.send("message/cpim", cpim_bytes.clone()).await?;
    // 250 bytes in chunks of 100: three chunks (+, +, $).
    let long: String = "0123456789".repeat(25);
    chat.send("text/plain", long.clone().into_bytes()).await?;
    // Answered, not stored.
    chat.send(
        "application/im-iscomposing+xml",
        is_composing().as_bytes().to_vec(),
    )
    .await?;
    let bye = chat.bye(&uac, WAIT).await?;
    assert_eq!(bye.status(), 200);

    let store = open_store(&server.db)?;
    let stored = store.messages(BOB, true).await?;
    assert_eq!(stored.len(), 5, "{stored:#?}");
    for m in &stored {
        assert_eq!(m.message.sender_aor, ALICE);
        assert_eq!(m.message.sender_name.as_deref(), Some("Alice"));
        assert!(m.message.sender_verified);
        assert_eq!(m.message.source, Source::Msrp);
        assert_eq!(m.message.mailbox, BOB);
    }
    let bodies: Vec<&[u8]> = stored.iter().map(|m| m.message.body.as_slice()).collect();
    assert_eq!(bodies[0], b"hello bob");
    assert_eq!(bodies[1], b"are you there?");
    assert_eq!(bodies[2], b"call me");
    assert_eq!(bodies[3], &cpim_bytes[..], "CPIM kept byte-exact");
    assert_eq!(bodies[4], long.as_bytes(), "chunks reassembled");
    assert_eq!(stored[3].message.content_type, "message/cpim");
    assert_eq!(
        stored[3].message.inner_content_type.as_deref(),
        Some("text/plain;charset=UTF-8")
    );
    assert_eq!(stored[3].message.message_id.as_deref(), Some("imdn-42"));
    assert_eq!(
        stored[3].message.sender_time.map(|t| t.to_rfc3339()),
        Some("2026-11-26T09:00:00+00:00".to_string())
    );

    // Page mode: a MESSAGE adds a sixth, answered 202 after the commit.
    deposit_message(&uac, ALICE, BOB, "pager", WAIT).await?;
    let stored = store.messages(BOB, true).await?;
    assert_eq!(stored.len(), 6);
    assert_eq!(stored[5].message.source, Source::SipMessage);
    assert_eq!(stored[5].message.body, b"pager");

    // MWI: the presence server hears about bob; the last PUBLISH carries 6/0.
    let (last, _) = accept_publishes_until(&mut presence, WAIT, |p| {
        assert_eq!(p.aor, BOB);
        p.body.contains("Text-Message: 6/0")
    })
    .await?;
    let last = last.body;
    assert!(last.contains("Messages-Waiting: yes"), "{last}");
    assert!(
        last.contains("Message-Account: sip:offline@example.com"),
        "{last}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asserted_identity_wins_and_cpim_from_is_not_believed() -> anyhow::Result<()> {
    let server = Server::start("[mwi]\nmode = \"notify\"\n")?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let mut opts = CallOptions::new(ALICE, BOB);
    opts.asserted_identity = Some("sip:carol@example.com".into());
    let mut chat = call(&uac, &msrp, &opts, WAIT).await?;
    chat.next_message(WAIT).await?;
    // A CPIM From naming someone else.
    let forged = CpimMessage::new(
        &CpimAddress::new(Some("The Boss"), "sip:boss@example.com"),
        &CpimAddress::new(None, BOB),
        None,
        "text/plain",
        Bytes::from_static(b"trust me"),
    );
    chat.send("message/cpim", forged.to_bytes()).await?;
    chat.bye(&uac, WAIT).await?;
    let stored = open_store(&server.db)?.messages(BOB, true).await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].message.sender_aor, "sip:carol@example.com");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_protocol_errors_and_stores_nothing() -> anyhow::Result<()> {
    let server = Server::start(
        "[mwi]\nmode = \"notify\"\n[store]\nmax_message_bytes = 1000\nmax_messages_per_mailbox = 2\n",
    )?;
    let (uac, msrp) = client("127.0.0.1", &server, 4096).await?;
    let store = open_store(&server.db)?;

    // 488: an audio offer.
    let audio = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE {BOB} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <{ALICE}>;tag={}\r\n\
         To: <{BOB}>\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{audio}",
        uac.via(),
        token(),
        token(),
        uac.local_addr(),
        audio.len()
    );
    let resp = uac.transact(&invite, WAIT).await?;
    assert_eq!(resp.status(), 488, "{}", resp.start_line);

    // 413 and 415 inside a session.
    let mut chat = call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await?;
    chat.next_message(WAIT).await?;
    let big = chat.send("text/plain", vec![b'x'; 2000]).await;
    assert!(format!("{big:?}").contains("413"), "{big:?}");
    let png = chat.send("image/png", vec![0x89, b'P', b'N', b'G']).await;
    assert!(format!("{png:?}").contains("415"), "{png:?}");
    assert_eq!(store.counts(BOB).await?.new, 0);

    // 481: a SEND for a session id nobody was given.
    let mut tcp = tokio::net::TcpStream::connect(server.msrp).await?;
    let send = format!(
        "MSRP tx0001 SEND\r\nTo-Path: msrp://{}/notarealsession;tcp\r\n\
         From-Path: msrp://127.0.0.1:9/x;tcp\r\nMessage-ID: msg0001\r\nByte-Range: 1-2/2\r\n\
         Content-Type: text/plain\r\n\r\nhi\r\n-------tx0001$\r\n",
        server.msrp
    );
    tcp.write_all(send.as_bytes()).await?;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await??;
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("MSRP tx0001 481"), "{head}");

    // Fill the mailbox to its limit of 2, then a new call gets 486 and the store is unchanged.
    chat.send("text/plain", b"one".to_vec()).await?;
    chat.send("text/plain", b"two".to_vec()).await?;
    let third = chat.send("text/plain", b"three".to_vec()).await;
    assert!(format!("{third:?}").contains("403"), "{third:?}");
    chat.bye(&uac, WAIT).await?;
    let status =
        rejected_status(call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await).await;
    assert_eq!(status, 486);
    let stored = store.messages(BOB, true).await?;
    assert_eq!(
        stored
            .iter()
            .map(|m| m.message.body.clone())
            .collect::<Vec<_>>(),
        vec![b"one".to_vec(), b"two".to_vec()]
    );

    // 403: a deposit from a source that is not a trusted proxy.
    let (uac2, msrp2) = client("127.0.0.2", &server, 4096).await?;
    let status = rejected_status(
        call(
            &uac2,
            &msrp2,
            &CallOptions::new(ALICE, "sip:carol@example.com"),
            WAIT,
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(store.counts("sip:carol@example.com").await?.new, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_hung_up_and_log_lines_carry_their_fields() -> anyhow::Result<()> {
    let mut server = Server::start("[mwi]\nmode = \"notify\"\n[deposit]\nidle_timeout_secs = 1\n")?;
    let (mut uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let mut chat = call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await?;
    chat.next_message(WAIT).await?;
    // Each message moves the idle deadline on: 2 s of messages 400 ms apart outlive the 1 s.
    for _ in 0..5 {
        chat.send("text/plain", b"secret words".to_vec()).await?;
        let hung_up = chat
            .wait_bye(&mut uac, std::time::Duration::from_millis(400))
            .await;
        assert!(hung_up.is_err(), "hung up while messages were coming in");
    }
    // No more messages: the server hangs up after the idle time.
    chat.wait_bye(&mut uac, WAIT).await?;
    let ended = server.wait_log(|l| l["message"] == "deposit session ended", WAIT)?;
    assert_eq!(ended["reason"], "idle timeout");
    assert_eq!(ended["stored"], 5);

    // One INFO line per stored message with call-id, mailbox, peer, sender, size and id;
    // never the body.
    let stored = server.wait_log(|l| l["message"] == "message stored", WAIT)?;
    assert_eq!(stored["call_id"], chat.dialog.call_id.as_str());
    assert_eq!(stored["mailbox"], BOB);
    assert_eq!(stored["sender"], ALICE);
    assert_eq!(stored["bytes"], 12);
    assert!(stored["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    assert!(stored["id"].as_i64().is_some());
    assert!(
        !server.raw_logs().contains("secret words"),
        "bodies stay out of the log"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mailbox_with_accept_policy_tells_the_caller() -> anyhow::Result<()> {
    let server = Server::start(
        "[mwi]\nmode = \"notify\"\n[store]\nmax_messages_per_mailbox = 1\n[deposit]\nmailbox_full = \"accept\"\n",
    )?;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let mut chat = call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await?;
    chat.next_message(WAIT).await?;
    chat.send("text/plain", b"fills it".to_vec()).await?;
    chat.bye(&uac, WAIT).await?;

    let mut chat = call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await?;
    let (_, greeting) = chat.next_message(WAIT).await?;
    let greeting = CpimMessage::parse(&greeting)?;
    assert!(
        String::from_utf8_lossy(&greeting.body).contains("mailbox is full"),
        "{:?}",
        greeting.body
    );
    let refused = chat.send("text/plain", b"lost".to_vec()).await;
    assert!(format!("{refused:?}").contains("403"), "{refused:?}");
    chat.bye(&uac, WAIT).await?;
    assert_eq!(open_store(&server.db)?.counts(BOB).await?.new, 1);
    Ok(())
}
