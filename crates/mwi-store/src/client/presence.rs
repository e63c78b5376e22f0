//! A stand-in presence server for tests and demos: receives PUBLISH (RFC 3903) and answers
//! with a fresh SIP-ETag on every 200, as Kamailio's presence module does.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;

use super::sip_uac::{token, Message, SipUac};

/// One received PUBLISH.
#[derive(Debug, Clone)]
pub struct Publish {
    pub request: Message,
    pub aor: String,
    pub sip_if_match: Option<String>,
    pub expires: Option<u32>,
    pub body: String,
}

/// Listens on a UDP address for PUBLISH.
#[derive(Debug)]
pub struct PresenceServer {
    uac: SipUac,
}

impl PresenceServer {
    /// Binds `local`; `peer` is where the server under test sends from (only used for
    /// requests this side originates, which it does not).
    pub async fn bind(local: SocketAddr) -> anyhow::Result<Self> {
        let uac = SipUac::bind(local, SocketAddr::from(([127, 0, 0, 1], 9))).await?;
        Ok(Self { uac })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.uac.local_addr()
    }

    /// The next PUBLISH (other requests are answered 405).
    pub async fn next_publish(&mut self, wait: Duration) -> anyhow::Result<Publish> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!("no PUBLISH within {wait:?}");
            }
            let req = self.uac.next_request(left).await?;
            if req.method() != "PUBLISH" {
                self.uac
                    .reply(&req, 405, "Method Not Allowed", &[], None)
                    .await?;
                continue;
            }
            let aor = req
                .start_line
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_string();
            return Ok(Publish {
                aor,
                sip_if_match: req.header("sip-if-match").map(str::to_string),
                expires: req.header("expires").and_then(|e| e.trim().parse().ok()),
                body: req.body_text(),
                request: req,
            });
        }
    }

    /// Answers 200 with a new SIP-ETag (returned) and the requested Expires.
    pub async fn accept(&self, publish: &Publish) -> anyhow::Result<String> {
        let etag = token();
        let expires = publish.expires.unwrap_or(3600);
        self.uac
            .reply(
                &publish.request,
                200,
                "OK",
                &[format!("SIP-ETag: {etag}"), format!("Expires: {expires}")],
                None,
            )
            .await?;
        Ok(etag)
    }

    /// Answers with an error status (412, 423 with Min-Expires, 500…).
    pub async fn answer(
        &self,
        publish: &Publish,
        status: u16,
        reason: &str,
        headers: &[String],
    ) -> anyhow::Result<()> {
        self.uac
            .reply(&publish.request, status, reason, headers, None)
            .await
    }
}
