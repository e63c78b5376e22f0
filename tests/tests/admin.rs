//! Issue 8 end to end, the operator's side: the admin CLI prints a prepared store as tables and
//! JSON, a purge with the CLI makes the running server republish MWI, and the metrics endpoint
//! serves counters that move after a deposit.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use e2e_tests::{
    binary, client, deposit, deposit_message, open_store, start_with_presence, texts, Server,
};
use message_store::{NewMessage, Source};
use mwi_store::client::chat::CallOptions;
use mwi_store::client::sip_uac::{final_response, SipUac};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";
const CAROL_CPIM: &str = "From: <sip:carol@example.com>\r\nTo: <sip:bob@example.com>\r\n\r\n\
                          Content-Type: text/plain\r\n\r\nare you there?";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time parses")
        .with_timezone(&Utc)
}

fn message(mailbox: &str, sender: &str, body: &[u8], received_at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        mailbox: mailbox.into(),
        sender_aor: sender.into(),
        sender_name: None,
        sender_verified: true,
        recipient: mailbox.into(),
        content_type: "text/plain;charset=UTF-8".into(),
        inner_content_type: None,
        body: body.to_vec(),
        message_id: None,
        sender_time: None,
        received_at,
        source: Source::SipMessage,
        urgent: false,
        subject: None,
    }
}

/// Runs `mwi-store ARGS` and returns its output (any exit status).
fn admin(args: &[&str]) -> anyhow::Result<Output> {
    let out = std::process::Command::new(binary()?)
        .args(args)
        .output()
        .context("run mwi-store")?;
    Ok(out)
}

/// Runs `mwi-store ARGS`, which must succeed, and returns its stdout.
fn admin_ok(args: &[&str]) -> anyhow::Result<String> {
    let out = admin(args)?;
    if !out.status.success() {
        bail!(
            "mwi-store {args:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn admin_json(args: &[&str]) -> anyhow::Result<Value> {
    let text = admin_ok(args)?;
    serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))
}

/// bob: a plain message from alice and an unverified CPIM one from Carol; dave: one delivered
/// message kept as old.
async fn prepare(db: &Path) -> anyhow::Result<()> {
    let store = open_store(db)?;
    store
        .insert(message(
            BOB,
            ALICE,
            b"hello bob",
            at("2021-03-01T10:00:00Z"),
        ))
        .await?;
    store
        .insert(NewMessage {
            sender_name: Some("Carol".into()),
            sender_verified: false,
            content_type: "message/cpim".into(),
            inner_content_type: Some("text/plain".into()),
            message_id: Some("m-2".into()),
            source: Source::Msrp,
            ..message(
                BOB,
                "sip:carol@example.com",
                CAROL_CPIM.as_bytes(),
                at("2021-03-02T11:30:00.25Z"),
            )
        })
        .await?;
    let dave = "sip:dave@example.com";
    let id = store
        .insert(message(
            dave,
            ALICE,
            b"old news",
            at("2021-02-01T00:00:00Z"),
        ))
        .await?;
    assert_eq!(store.delivered(vec![id], true).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_prints_a_prepared_store_as_tables_and_json() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("prepared.db");
    prepare(&db).await?;
    let db_arg = db.to_str().context("utf-8 temp path")?;

    assert_eq!(
        admin_ok(&["mailbox", "list", "--store", db_arg])?,
        "MAILBOX               NEW  OLD  BYTES  OLDEST\n\
         sip:bob@example.com     2    0    111  2021-03-01T10:00:00Z\n\
         sip:dave@example.com    0    1      8  2021-02-01T00:00:00Z\n"
    );
    assert_eq!(
        admin_json(&["mailbox", "list", "--json", "--store", db_arg])?,
        json!([
            {"aor": BOB, "new": 2, "old": 0, "bytes": 111, "oldest": "2021-03-01T10:00:00Z"},
            {"aor": "sip:dave@example.com", "new": 0, "old": 1, "bytes": 8,
             "oldest": "2021-02-01T00:00:00Z"},
        ])
    );

    // The AoR is normalised as the server does (host case).
    assert_eq!(
        admin_ok(&["mailbox", "show", "sip:bob@EXAMPLE.com", "--store", db_arg])?,
        "ID  STATE  RECEIVED              FROM                                          BYTES  TYPE\n \
         1  new    2021-03-01T10:00:00Z  sip:alice@example.com                             9  text/plain;charset=UTF-8\n \
         2  new    2021-03-02T11:30:00Z  \"Carol\" <sip:carol@example.com> (unverified)    102  message/cpim (text/plain)\n"
    );
    let with_bodies = admin_ok(&["mailbox", "show", BOB, "--body", "--store", db_arg])?;
    let lines: Vec<&str> = with_bodies.lines().collect();
    assert_eq!(lines.len(), 5, "{with_bodies}");
    assert_eq!(lines[2], "    hello bob");
    assert_eq!(lines[4], "    are you there?", "the text inside CPIM");

    let shown = admin_json(&[
        "mailbox", "show", BOB, "--json", "--body", "--store", db_arg,
    ])?;
    assert_eq!(shown["mailbox"], BOB);
    let messages = shown["messages"].as_array().context("messages array")?;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["sender"], ALICE);
    assert_eq!(messages[0]["body"], "hello bob");
    assert_eq!(messages[0]["source"], "sip-message");
    assert_eq!(messages[1]["received_at"], "2021-03-02T11:30:00.250Z");
    assert_eq!(messages[1]["sender_name"], "Carol");
    assert_eq!(messages[1]["sender_verified"], false);
    assert_eq!(messages[1]["content_type"], "message/cpim");
    assert_eq!(messages[1]["inner_content_type"], "text/plain");
    assert_eq!(messages[1]["message_id"], "m-2");
    assert_eq!(messages[1]["bytes"], 102);
    assert_eq!(
        messages[1]["body"], CAROL_CPIM,
        "JSON keeps the stored bytes"
    );
    let without = admin_json(&["mailbox", "show", BOB, "--json", "--store", db_arg])?;
    assert!(without["messages"][0].get("body").is_none());
    let dave = admin_json(&[
        "mailbox",
        "show",
        "sip:dave@example.com",
        "--json",
        "--store",
        db_arg,
    ])?;
    assert_eq!(dave["messages"][0]["state"], "old");
    assert!(dave["messages"][0]["delivered_at"].is_string());

    let stats = admin_ok(&["stats", "--store", db_arg])?;
    let figure = |name: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    assert_eq!(figure("mailboxes ").as_deref(), Some("2"), "{stats}");
    assert_eq!(figure("new ").as_deref(), Some("2"), "{stats}");
    assert_eq!(figure("old ").as_deref(), Some("1"), "{stats}");
    assert_eq!(figure("bytes ").as_deref(), Some("119"), "{stats}");
    let stats = admin_json(&["stats", "--json", "--store", db_arg])?;
    assert_eq!(
        (
            &stats["mailboxes"],
            &stats["new"],
            &stats["old"],
            &stats["bytes"]
        ),
        (&json!(2), &json!(2), &json!(1), &json!(119))
    );
    assert!(stats["db_file_bytes"].as_u64().is_some_and(|n| n > 0));

    // Purge by age: a fresh message survives `--older-than 30d`.
    {
        let store = open_store(&db)?;
        store
            .insert(message(BOB, ALICE, b"fresh", Utc::now()))
            .await?;
    }
    let purged = admin_json(&[
        "mailbox",
        "purge",
        BOB,
        "--older-than",
        "30d",
        "--json",
        "--store",
        db_arg,
    ])?;
    assert_eq!(purged, json!({"mailbox": BOB, "purged": 2}));
    let left = admin_json(&[
        "mailbox", "show", BOB, "--json", "--body", "--store", db_arg,
    ])?;
    assert_eq!(left["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(left["messages"][0]["body"], "fresh");
    assert_eq!(
        admin_ok(&["mailbox", "purge", BOB, "--store", db_arg])?,
        format!("{BOB}: purged 1 message; a running server republishes its MWI within 1 s\n")
    );
    assert_eq!(
        admin_ok(&["mailbox", "purge", BOB, "--store", db_arg])?,
        format!("{BOB}: nothing to purge\n")
    );

    // Mistakes are refused with the reason, and create no database.
    let missing = dir.path().join("typo.db");
    let out = admin(&[
        "mailbox",
        "list",
        "--store",
        missing.to_str().context("utf-8")?,
    ])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store at"));
    assert!(!missing.exists());
    let out = admin(&[
        "mailbox",
        "purge",
        BOB,
        "--older-than",
        "30 days",
        "--store",
        db_arg,
    ])?;
    assert!(!out.status.success());
    let out = admin(&["mailbox", "show", "bob", "--store", db_arg])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a SIP AoR"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_with_the_cli_makes_the_running_server_republish() -> anyhow::Result<()> {
    let (mut server, mut presence) = start_with_presence("").await?;
    let uac = SipUac::bind("127.0.0.1:0".parse()?, server.sip_udp).await?;
    deposit_message(&uac, ALICE, BOB, "ping", WAIT).await?;
    let first = presence.next_publish(WAIT).await?;
    assert!(
        first.body.contains("Messages-Waiting: yes"),
        "{}",
        first.body
    );
    let etag = presence.accept(&first).await?;

    let config = server
        .config
        .to_str()
        .context("utf-8 config path")?
        .to_string();
    let out = admin_ok(&["mailbox", "purge", BOB, "--config", &config])?;
    assert!(out.contains("purged 1 message"), "{out}");

    // Within about a second the server publishes the empty mailbox, as a modification of the
    // same publication (RFC 3903 §4.4: SIP-If-Match carries the entity-tag).
    let second = presence.next_publish(WAIT).await?;
    assert_eq!(second.aor, BOB);
    assert!(
        second.body.contains("Messages-Waiting: no"),
        "{}",
        second.body
    );
    assert!(second.body.contains("Text-Message: 0/0"), "{}", second.body);
    assert_eq!(second.sip_if_match.as_deref(), Some(etag.as_str()));
    presence.accept(&second).await?;
    server.wait_log(
        |l| l["message"] == "mailbox changed by the admin CLI: republishing" && l["mailbox"] == BOB,
        WAIT,
    )?;
    Ok(())
}

/// One HTTP exchange: sends `request`, returns the status line and the body.
async fn http(addr: SocketAddr, request: &[u8]) -> anyhow::Result<(String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .context("the metrics endpoint did not close the connection")??;
    let text = String::from_utf8(response)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no header end in {text:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .context("no Content-Length")?
        .parse()?;
    assert_eq!(length, body.len(), "Content-Length matches the body");
    Ok((status, body.to_string()))
}

async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let (status, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    Ok(body)
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_after_a_message_deposit() -> anyhow::Result<()> {
    let mut server =
        Server::start("[mwi]\nmode = \"notify\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n")?;
    let line = server.wait_log(|l| l["message"] == "metrics listening", WAIT)?;
    let addr: SocketAddr = line["addr"]
        .as_str()
        .context("addr in the metrics log line")?
        .parse()?;

    let before = scrape(addr).await?;
    let stored = "mwi_store_stored_messages_total{source=\"sip-message\"}";
    let commits = "mwi_store_store_commit_duration_seconds_count";
    let batches = "mwi_store_store_commit_batch_size_count";
    assert_eq!(sample(&before, stored), 0.0, "{before}");
    assert_eq!(sample(&before, "mwi_store_stored_bytes_total"), 0.0);
    assert_eq!(
        sample(&before, "mwi_store_held_messages{state=\"new\"}"),
        0.0
    );
    assert_eq!(sample(&before, "mwi_store_active_sessions"), 0.0);

    let uac = SipUac::bind("127.0.0.1:0".parse()?, server.sip_udp).await?;
    deposit_message(&uac, ALICE, BOB, "hello", WAIT).await?;
    let after = scrape(addr).await?;
    assert_eq!(sample(&after, stored), 1.0, "{after}");
    assert_eq!(sample(&after, "mwi_store_stored_bytes_total"), 5.0);
    assert_eq!(
        sample(&after, "mwi_store_held_messages{state=\"new\"}"),
        1.0
    );
    assert_eq!(sample(&after, "mwi_store_mailboxes"), 1.0);
    assert!(
        sample(&after, commits) > sample(&before, commits),
        "{after}"
    );
    assert!(
        sample(&after, batches) > sample(&before, batches),
        "{after}"
    );
    assert_eq!(
        sample(&after, commits),
        sample(
            &after,
            "mwi_store_store_commit_duration_seconds_bucket{le=\"+Inf\"}"
        )
    );

    // MSRP deposits are timed from the read that completed each message to its 200; the
    // MESSAGE above is not one.
    let answered = "mwi_store_msrp_answer_seconds_count";
    assert_eq!(sample(&after, answered), 0.0, "{after}");
    let (chat_uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let alice = CallOptions::new(ALICE, BOB);
    deposit(&chat_uac, &msrp, &alice, &texts(3, "timed"), WAIT).await?;
    let timed = scrape(addr).await?;
    assert_eq!(sample(&timed, answered), 3.0, "{timed}");
    assert!(sample(&timed, "mwi_store_msrp_answer_seconds_sum") > 0.0);
    assert_eq!(
        sample(&timed, "mwi_store_msrp_answer_seconds_bucket{le=\"+Inf\"}"),
        3.0
    );

    // A refused MESSAGE (an empty body: 400) is counted by what was refused and the status.
    let refused = "mwi_store_refusals_total{what=\"message\",status=\"400\"}";
    assert!(sample(&after, refused).is_nan(), "no refusal yet: {after}");
    let mut rx = uac
        .send_request(&uac.message_request(ALICE, BOB, "", ""))
        .await?;
    let answer = final_response(&mut rx, WAIT).await?;
    assert_eq!(answer.status(), 400, "{}", answer.start_line);
    let later = scrape(addr).await?;
    assert_eq!(sample(&later, refused), 1.0, "{later}");

    // Only GET /metrics; a request head over 8 KiB is refused.
    let (status, _) = http(addr, b"GET / HTTP/1.1\r\n\r\n").await?;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await?;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    huge.resize(20_000, b'a');
    let (status, _) = http(addr, &huge).await?;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    Ok(())
}
