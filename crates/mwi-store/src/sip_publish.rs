//! Sends the publications of [`crate::mwi`] as SIP PUBLISH requests through sip-core (to
//! `mwi.proxy`, digest retry inside sip-core).

use std::future::Future;
use std::pin::Pin;

use mwi_publisher::{PublishOutcome, PublishRequest, SipEtag};
use sip_core::{Aor, Body, Event, SipEndpoint};

use crate::config::Config;
use crate::mwi::PublishSender;

/// PUBLISH over sip-core.
#[derive(Debug)]
pub struct SipPublishSender {
    sip: SipEndpoint,
    /// `mwi.from`, when set; else each mailbox publishes as itself.
    from: Option<Aor>,
}

impl SipPublishSender {
    pub fn new(sip: SipEndpoint, config: &Config) -> Self {
        let from = if config.mwi.from.is_empty() {
            None
        } else {
            Aor::parse(&config.mwi.from).ok()
        };
        Self { sip, from }
    }
}

impl PublishSender for SipPublishSender {
    fn publish(
        &self,
        mailbox: &str,
        request: PublishRequest,
    ) -> Pin<Box<dyn Future<Output = Option<PublishOutcome>> + Send>> {
        let sip = self.sip.clone();
        let aor = Aor::parse(mailbox);
        let from = self.from.clone();
        Box::pin(async move {
            let aor = match aor {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "mailbox is not a SIP AoR; cannot publish");
                    return Some(PublishOutcome::status(400));
                }
            };
            let req = sip_core::PublishRequest {
                from: from.unwrap_or_else(|| aor.clone()),
                aor,
                event: Event::new("message-summary"),
                body: Some(Body {
                    content_type: mwi_publisher::CONTENT_TYPE.to_string(),
                    bytes: request.body,
                }),
                expires: request.expires,
                sip_if_match: request
                    .sip_if_match
                    .and_then(|e| sip_core::SipEtag::parse(e.as_str()).ok()),
            };
            match sip.publish(&req).await {
                Ok(r) => Some(PublishOutcome {
                    status: r.status,
                    sip_etag: r.sip_etag.map(|e| SipEtag::new(e.as_str())),
                    expires: r.expires,
                    min_expires: r.min_expires,
                }),
                Err(e) => {
                    tracing::debug!(error = %e, "PUBLISH transaction failed");
                    None
                }
            }
        })
    }
}
