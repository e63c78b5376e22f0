//! Issue 2 end to end: the real binary answers OPTIONS over UDP and TCP, answers malformed
//! requests with 400 (505 for a bad version), survives RFC 4475 torture messages, and stops
//! cleanly on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use e2e_tests::Server;
use mwi_store::client::sip_uac::{token, SipUac};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

fn options(uac_addr: SocketAddr, transport: &str, call_id: &str) -> String {
    format!(
        "OPTIONS sip:mwi@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {uac_addr};branch=z9hG4bK{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag={}\r\n\
         To: <sip:mwi@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        token(),
        token()
    )
}

fn torture(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/sip-core/tests/data/rfc4475")
        .join(format!("{name}.dat"));
    std::fs::read(&path).with_context(|| format!("read {}", path.display()))
}

/// Reads one SIP response from a TCP stream (headers plus Content-Length body).
async fn read_tcp_response(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .context("no TCP response")??;
        if n == 0 {
            bail!("TCP connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_malformed_torture_and_clean_stop() -> anyhow::Result<()> {
    let server = Server::start("")?;

    // OPTIONS over UDP: 200 with Allow and Accept (proxies' keep-alive).
    let uac = SipUac::bind("127.0.0.1:0".parse()?, server.sip_udp).await?;
    let resp = uac
        .transact(&options(uac.local_addr(), "UDP", &token()), WAIT)
        .await?;
    assert_eq!(resp.status(), 200, "{}", resp.start_line);
    assert!(resp.header("allow").is_some_and(|a| a.contains("INVITE")));
    assert!(resp.header("accept").is_some());

    // OPTIONS over TCP.
    let mut tcp = TcpStream::connect(server.sip_tcp).await?;
    let local = tcp.local_addr()?;
    tcp.write_all(options(local, "TCP", &token()).as_bytes())
        .await?;
    let head = read_tcp_response(&mut tcp).await?;
    assert!(head.starts_with("SIP/2.0 200"), "{head}");

    // A malformed request (CSeq method differs from the request method) gets 400.
    let bad =
        options(uac.local_addr(), "UDP", "bad-cseq").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    let resp = uac.transact(&bad, WAIT).await?;
    assert_eq!(resp.status(), 400, "{}", resp.start_line);

    // On TCP a bad request is answered and the connection stays usable.
    let bad = options(local, "TCP", "bad-tcp").replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
    tcp.write_all(bad.as_bytes()).await?;
    let head = read_tcp_response(&mut tcp).await?;
    assert!(head.starts_with("SIP/2.0 505"), "{head}");
    tcp.write_all(options(local, "TCP", &token()).as_bytes())
        .await?;
    let head = read_tcp_response(&mut tcp).await?;
    assert!(head.starts_with("SIP/2.0 200"), "{head}");

    // Five RFC 4475 invalid requests: each answered with its error code, never a crash.
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut answered = 0;
    for (name, want) in [
        ("badinv01", 400),
        ("ncl", 400),
        ("scalar02", 400),
        ("quotbal", 400),
        ("badvers", 505),
    ] {
        raw.send_to(&torture(name)?, server.sip_udp).await?;
        let mut buf = vec![0u8; 65535];
        let (n, _) = tokio::time::timeout(WAIT, raw.recv_from(&mut buf))
            .await
            .with_context(|| format!("{name}: no answer"))??;
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with(&format!("SIP/2.0 {want}")),
            "{name}: expected {want}, got {}",
            text.lines().next().unwrap_or("")
        );
        answered += 1;
    }
    assert_eq!(answered, 5);
    println!("torture: 5/5 invalid requests answered with their error code");

    // Still answering.
    let resp = uac
        .transact(&options(uac.local_addr(), "UDP", &token()), WAIT)
        .await?;
    assert_eq!(resp.status(), 200);

    let status = server.stop()?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

#[test]
fn check_config_reports_key_value_and_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[mwi]\nmode = \"publish\"\nexpires = 5\n")?;
    let out = std::process::Command::new(e2e_tests::binary()?)
        .args(["check-config"])
        .arg(&bad)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mwi.expires") && err.contains('5'), "{err}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[fetch]\nuri = \"sip:offline@example.org\"\n")?;
    let out = std::process::Command::new(e2e_tests::binary()?)
        .args(["check-config"])
        .arg(&good)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `--log-file` appends to a file that logrotate can move away: after SIGHUP the server
/// writes to a fresh file at the same path.
#[test]
fn log_file_is_reopened_on_sighup() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n[msrp]\nlisten = \"127.0.0.1:0\"\n\
             [store]\npath = {:?}\n[mwi]\nmode = \"notify\"\n",
            dir.path().join("s.db").display().to_string()
        ),
    )?;
    let log = dir.path().join("mwi.log");
    let mut child = std::process::Command::new(e2e_tests::binary()?)
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .arg("--log-file")
        .arg(&log)
        .env("RUST_LOG", "info")
        .spawn()?;
    let wait_for = |path: &std::path::Path, text: &str| -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + WAIT * 3;
        while std::time::Instant::now() < deadline {
            if std::fs::read_to_string(path).is_ok_and(|s| s.contains(text)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} never contained {text:?}", path.display())
    };
    let result = (|| -> anyhow::Result<()> {
        wait_for(&log, "mwi-store started")?;
        let rotated = dir.path().join("mwi.log.1");
        std::fs::rename(&log, &rotated)?;
        let pid = child.id().to_string();
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()?;
        wait_for(&log, "SIGHUP: log file reopened")?;
        assert!(!std::fs::read_to_string(&log)?.contains("mwi-store started"));
        assert!(std::fs::read_to_string(&rotated)?.contains("mwi-store started"));
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
