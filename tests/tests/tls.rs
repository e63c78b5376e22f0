//! TLS end to end (issue 10, Trust): the real binary with a `tls:` SIP listener and an MSRP TLS
//! listener, using a self-signed certificate generated here. A caller deposits over SIP/TLS with
//! a `TCP/TLS/MSRP` offer; the answer carries an `msrps` path, the message travels over MSRP/TLS
//! and is stored; a fetch over the same TLS connection delivers it and the server's BYE comes
//! back on that connection. A server without the MSRP TLS listener refuses such an offer
//! with 488.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use e2e_tests::{open_store, Server};
use msrp_session::{EndpointConfig, MsrpEndpoint, MsrpTls};
use mwi_store::client::chat::{call, CallOptions, Rejected};
use mwi_store::client::sip_uac::SipUac;

const WAIT: Duration = Duration::from_secs(5);
const BOB: &str = "sip:bob@example.com";
const ALICE: &str = "sip:alice@example.com";
const FETCH: &str = "sip:offline@example.com";

/// Writes a fresh self-signed pair for 127.0.0.1 as `cert.pem` / `key.pem` in `dir`.
fn write_pair(dir: &Path) -> anyhow::Result<()> {
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
    std::fs::write(dir.join("cert.pem"), pair.cert.pem())?;
    std::fs::write(dir.join("key.pem"), pair.signing_key.serialize_pem())?;
    Ok(())
}

/// The client's TLS settings: it trusts the server's certificate (and presents the same pair
/// should the server ever connect to it).
fn client_tls(dir: &Path) -> anyhow::Result<MsrpTls> {
    Ok(MsrpTls {
        server: sip_core::tls::server_config_from_pem(&dir.join("cert.pem"), &dir.join("key.pem"))?,
        client: sip_core::tls::client_config_from_pem(&dir.join("cert.pem"))?,
    })
}

async fn tls_msrp_endpoint(tls: MsrpTls) -> anyhow::Result<MsrpEndpoint> {
    Ok(MsrpEndpoint::bind(
        "127.0.0.1:0".parse()?,
        EndpointConfig {
            transaction_timeout: WAIT,
            tls: Some(tls),
            ..EndpointConfig::default()
        },
    )
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_over_sip_tls_and_msrps_is_stored() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    write_pair(certs.path())?;
    let server = Server::start(&format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tls:127.0.0.1:0\"]\n\
         [msrp]\ntls_listen = \"127.0.0.1:0\"\n\
         [tls]\ncert = {:?}\nkey = {:?}\n\
         [mwi]\nmode = \"notify\"\n",
        certs.path().join("cert.pem").display().to_string(),
        certs.path().join("key.pem").display().to_string(),
    ))?;
    let sip_tls = server
        .sip_tls
        .context("start-up line lists a tls: address")?;
    let msrps = server
        .msrps
        .context("start-up line lists the msrps address")?;
    assert_ne!(msrps, server.msrp);

    let tls = client_tls(certs.path())?;
    let mut uac = SipUac::connect_tls(sip_tls, "127.0.0.1", tls.client.clone()).await?;
    assert!(uac.via().starts_with("SIP/2.0/TLS "));
    let msrp = tls_msrp_endpoint(tls).await?;

    let mut chat = call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await?;
    let answer = String::from_utf8_lossy(&chat.dialog.answer.body).into_owned();
    assert!(answer.contains("m=message"), "{answer}");
    assert!(answer.contains(" TCP/TLS/MSRP "), "{answer}");
    assert!(
        answer.contains(&format!("a=path:msrps://127.0.0.1:{}/", msrps.port())),
        "our path is on the TLS listener: {answer}"
    );
    // The greeting came over MSRP/TLS.
    chat.next_message(WAIT).await?;
    chat.send("text/plain", b"hello over tls".to_vec()).await?;
    let bye = chat.bye(&uac, WAIT).await?;
    assert_eq!(bye.status(), 200);

    let store = open_store(&server.db)?;
    let stored = store.messages(BOB, true).await?;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0].message.body, b"hello over tls");
    assert_eq!(stored[0].message.sender_aor, ALICE);
    assert!(stored[0].message.sender_verified, "127.0.0.1 is trusted");

    // Fetch over TLS: the message arrives over MSRP/TLS and the server's BYE reaches us over
    // the SIP/TLS connection (it never connects out).
    let mut fetch = call(&uac, &msrp, &CallOptions::new(BOB, FETCH), WAIT).await?;
    let got = fetch.collect_until_bye(&mut uac, WAIT).await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].1.windows(14).any(|w| w == b"hello over tls"),
        "{got:?}"
    );
    assert!(store.messages(BOB, true).await?.is_empty(), "delivered");
    server.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_msrp_offer_without_the_tls_listener_gets_488() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    write_pair(certs.path())?;
    let server = Server::start("[mwi]\nmode = \"notify\"\n")?;
    assert_eq!(server.msrps, None);
    let uac = SipUac::bind("127.0.0.1:0".parse()?, server.sip_udp).await?;
    let msrp = tls_msrp_endpoint(client_tls(certs.path())?).await?;
    let status = match call(&uac, &msrp, &CallOptions::new(ALICE, BOB), WAIT).await {
        Ok(_) => 200,
        Err(e) => e.downcast_ref::<Rejected>().map_or(0, |r| r.0.status()),
    };
    assert_eq!(status, 488);
    let store = open_store(&server.db)?;
    assert!(store.messages(BOB, true).await?.is_empty());
    server.stop()?;
    Ok(())
}
