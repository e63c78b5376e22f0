//! Issue 10, flood: 10,000 garbage UDP datagrams and 1,000 half-open TCP connections (half to
//! SIP, half to MSRP; fewer when `ulimit -n` is low) hit the server on loopback while a normal
//! chat deposit and a MESSAGE still succeed; the refusals are logged as one summary line per
//! interval, not one per packet. MSRP connections beyond `limits.max_msrp_connections` are
//! closed at accept, and a closed one frees its place for a caller.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use e2e_tests::{client, deposit, open_store, Server};
use mwi_store::client::chat::CallOptions;
use mwi_store::client::sip_uac::final_response;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(10);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";
const DATAGRAMS: usize = 10_000;
const HALF_OPEN: usize = 1_000;

/// The soft `RLIMIT_NOFILE` of this process (the server inherits it).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// One garbage datagram: random bytes, a truncated request, a request with a bad header, or
/// an oversized one.
fn garbage(i: usize, rng: &mut impl Rng) -> Vec<u8> {
    match i % 4 {
        0 => (0..rng.random_range(1..1400)).map(|_| rng.random()).collect(),
        1 => b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK"
            .to_vec(),
        2 => format!(
            "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
             Call-ID: flood{i}\r\nCSeq: one MESSAGE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
        _ => {
            let mut v = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9\r\nX: ".to_vec();
            v.resize(60_000, b'a');
            v
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_half_open_connections_do_not_stop_a_deposit() -> anyhow::Result<()> {
    let mut server = Server::start("[mwi]\nmode = \"notify\"\n[limits]\nlog_interval_secs = 1\n")?;
    let limit = open_files_limit();
    // Each side holds one descriptor per connection; keep 300 spare for everything else.
    let half_open = HALF_OPEN.min(limit.saturating_sub(300));
    let logs_before = server.log_lines().len();
    let started = Instant::now();

    // Half-open connections: a request head that never ends, then silence.
    let mut held = Vec::with_capacity(half_open);
    for i in 0..half_open {
        let (addr, partial): (_, &[u8]) = if i % 2 == 0 {
            (
                server.sip_tcp,
                b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0",
            )
        } else {
            (
                server.msrp,
                b"MSRP a1b2c3d4 SEND\r\nTo-Path: msrp://127.0.0.1:9/x;tcp\r\n",
            )
        };
        let mut s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connection {i}"))?;
        s.write_all(partial).await?;
        held.push(s);
    }

    // Garbage datagrams, sent while the deposit runs.
    let sip_udp = server.sip_udp;
    let flood = tokio::spawn(async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let mut rng = rand::rngs::StdRng::from_os_rng();
        for i in 0..DATAGRAMS {
            let d = garbage(i, &mut rng);
            socket.send_to(&d, sip_udp).await?;
            if i % 500 == 0 {
                tokio::task::yield_now().await;
            }
        }
        anyhow::Ok(())
    });

    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let alice = CallOptions::new(ALICE, BOB);
    let still_here = [("text/plain", Bytes::from_static(b"still here"))];
    deposit(&uac, &msrp, &alice, &still_here, WAIT)
        .await
        .context("chat deposit during the flood")?;
    flood.await??;
    let message = uac.message_request(ALICE, BOB, "", "pager");
    // Sent as a UA does over UDP (RFC 3261 §17.1.2.2, Timer E): the same request again until
    // answered, since the server's socket may still be full of garbage.
    let mut resp = None;
    for _ in 0..10 {
        let mut rx = uac.send_request(&message).await?;
        if let Ok(r) = final_response(&mut rx, Duration::from_secs(1)).await {
            resp = Some(r);
            break;
        }
    }
    let resp = resp.context("MESSAGE after the flood never answered")?;
    assert_eq!(resp.status(), 202, "{}", resp.start_line);
    let elapsed = started.elapsed();

    let stored: Vec<Vec<u8>> = open_store(&server.db)?
        .messages(BOB, true)
        .await?
        .into_iter()
        .map(|m| m.message.body)
        .collect();
    assert_eq!(stored, [b"still here".to_vec(), b"pager".to_vec()]);

    // Refusals are summed once per interval (1 s here), never logged per packet.
    server.wait_log(
        |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIP messages refused"))
        },
        Duration::from_secs(3),
    )?;
    let lines = server.log_lines();
    let new_lines = lines.len() - logs_before;
    let summaries: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIP messages refused"))
        })
        .collect();
    let refused: u64 = summaries
        .iter()
        .map(|l| l["rejected"].as_u64().unwrap_or(0) + l["dropped"].as_u64().unwrap_or(0))
        .sum();
    let interval_bound = elapsed.as_secs() as usize + 3;
    assert!(
        summaries.len() <= interval_bound,
        "{} summary lines in {elapsed:?}",
        summaries.len()
    );
    assert!(
        new_lines < 200,
        "{new_lines} log lines for {DATAGRAMS} datagrams and {half_open} connections"
    );
    assert!(server.is_running(), "the server survived");
    println!(
        "FLOOD SUMMARY: {DATAGRAMS} garbage datagrams and {half_open} half-open TCP connections \
         (ulimit -n {limit}) in {elapsed:?}; deposit and MESSAGE stored; {refused} refusals \
         reported in {} summary lines; {new_lines} log lines in all",
        summaries.len()
    );
    drop(held);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msrp_connections_beyond_the_cap_are_closed_and_a_freed_place_serves_a_caller(
) -> anyhow::Result<()> {
    let mut server = Server::start(
        "[mwi]\nmode = \"notify\"\n[limits]\nmax_sessions = 2\nmax_msrp_connections = 2\n",
    )?;
    // Two idle sockets take every place; the server would drop them only after 30 s.
    let first = TcpStream::connect(server.msrp).await?;
    let _second = TcpStream::connect(server.msrp).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(server.msrp).await?;
    let mut rest = Vec::new();
    // Closed at accept (EOF or a reset), long before the 30 s an idle socket gets.
    let closed = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection beyond the cap stayed open");
    server.wait_log(
        |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("MSRP connection refused"))
        },
        Duration::from_secs(3),
    )?;

    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (uac, msrp) = client("127.0.0.1", &server, 2048).await?;
    let alice = CallOptions::new(ALICE, BOB);
    deposit(
        &uac,
        &msrp,
        &alice,
        &[("text/plain", Bytes::from_static(b"room"))],
        WAIT,
    )
    .await
    .context("a deposit in the freed place")?;
    let stored = open_store(&server.db)?.messages(BOB, true).await?;
    assert_eq!(stored.len(), 1);
    Ok(())
}
