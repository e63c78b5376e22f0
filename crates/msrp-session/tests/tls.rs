//! MSRP over TLS (`msrps`, RFC 4975 §14.2) on 127.0.0.1 with self-signed pairs generated here:
//! two endpoints exchange messages both ways; an active side that does not trust the peer's
//! certificate, or has no TLS settings at all, fails to start instead of talking in clear.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use msrp_session::{
    EndpointConfig, MsrpEndpoint, MsrpSession, MsrpTls, SessionEvent, SetupRole, StartError,
};
use rustls::crypto::ring::default_provider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

/// Server and client settings from a fresh self-signed pair for 127.0.0.1; the client trusts
/// `trusted` (the pair's own certificate when `None`).
fn tls(trusted: Option<CertificateDer<'static>>) -> (MsrpTls, CertificateDer<'static>) {
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = pair.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(pair.signing_key.serialize_der().into());
    let server = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(trusted.unwrap_or_else(|| cert.clone())).unwrap();
    let client = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        MsrpTls {
            server: Arc::new(server),
            client: Arc::new(client),
        },
        cert,
    )
}

async fn endpoint(tls: Option<MsrpTls>) -> MsrpEndpoint {
    let cfg = EndpointConfig {
        tls,
        ..EndpointConfig::default()
    };
    MsrpEndpoint::bind("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

async fn event(s: &mut MsrpSession) -> SessionEvent {
    timeout(T, s.next_event())
        .await
        .expect("event in time")
        .expect("event")
}

async fn expect_message(s: &mut MsrpSession, body: &[u8]) {
    match event(s).await {
        SessionEvent::Message(m) => {
            assert_eq!(&m.body[..], body);
            m.responder.accept();
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn two_endpoints_exchange_messages_over_msrps() {
    let (server_tls, cert) = tls(None);
    let (mut client_tls, _) = tls(None);
    // The client side trusts the server's certificate.
    client_tls.client = tls(Some(cert)).0.client;
    let server = endpoint(Some(server_tls)).await;
    let client = endpoint(Some(client_tls)).await;
    assert!(server.is_tls());
    let mut a = server.create_session();
    let mut b = client.create_session();
    assert!(a.local_uri().secure);
    assert!(a.local_uri().to_string().starts_with("msrps://127.0.0.1:"));

    a.start(b.local_path(), SetupRole::Passive).await.unwrap();
    timeout(T, b.start(a.local_path(), SetupRole::Active))
        .await
        .expect("in time")
        .expect("active start over TLS");
    assert!(matches!(event(&mut a).await, SessionEvent::Bound));
    assert!(matches!(event(&mut b).await, SessionEvent::Bound));

    let sent = b.send("text/plain", Bytes::from_static(b"over tls"));
    expect_message(&mut a, b"over tls").await;
    timeout(T, sent).await.expect("in time").expect("200");

    // A message larger than one chunk, back the other way.
    let big: Bytes = (0..10_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let sent = a.send("application/octet-stream", big.clone());
    expect_message(&mut b, &big).await;
    timeout(T, sent).await.expect("in time").expect("200");
}

#[tokio::test]
async fn an_untrusted_certificate_or_missing_tls_fails_the_active_start() {
    let (server_tls, _) = tls(None);
    // This client trusts a different self-signed certificate.
    let (_, other) = tls(None);
    let (client_tls, _) = tls(Some(other));
    let server = endpoint(Some(server_tls)).await;
    let untrusting = endpoint(Some(client_tls)).await;
    let plain = endpoint(None).await;
    let a = server.create_session();

    let b = untrusting.create_session();
    let e = timeout(T, b.start(a.local_path(), SetupRole::Active))
        .await
        .expect("in time")
        .unwrap_err();
    assert!(
        matches!(&e, StartError::Connect(m) if m.starts_with("TLS:")),
        "{e}"
    );

    let c = plain.create_session();
    let e = timeout(T, c.start(a.local_path(), SetupRole::Active))
        .await
        .expect("in time")
        .unwrap_err();
    assert!(
        matches!(&e, StartError::Connect(m) if m.contains("no TLS settings")),
        "{e}"
    );
    assert_eq!(
        server.session_count(),
        1,
        "nothing bound the passive session"
    );
}
