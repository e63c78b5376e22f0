//! Answering a chat INVITE (RFC 4975 §8 offer/answer, RFC 6135 roles): the part deposit and
//! fetch share. It creates the MSRP session, answers 200 OK with our SDP (or 488 when the offer
//! has no usable MSRP media) and starts the session in the negotiated role. A `TCP/TLS/MSRP`
//! offer gets a session on the TLS endpoint (`msrps` path, RFC 4975 §14.2) when one is
//! configured; otherwise the TCP endpoint answers and such an offer gets 488.

use std::net::SocketAddr;

use msrp_session::{build_answer, LocalMedia, MsrpOffer, MsrpSession, MsrpTransport, Negotiated};
use sip_core::{InviteSession, ServerInvite};

use crate::metrics::{Refused, METRICS};
use crate::server::App;

/// Refuses a chat INVITE (deposit or fetch) with `status` and counts the refusal
/// (`mwi_store_refusals_total`).
pub fn refuse(invite: ServerInvite, status: u16, headers: Vec<(String, String)>) {
    METRICS.refused(Refused::ChatInvite, status);
    let _ = invite.reject(status, headers);
}
/// An answered chat: the SIP dialog and its MSRP session.
#[derive(Debug)]
pub struct ChatLeg {
    pub dialog: InviteSession,
    pub session: MsrpSession,
    pub negotiated: Negotiated,
    pub call_id: String,
    pub peer: SocketAddr,
}

impl ChatLeg {
    /// The peer takes `message/cpim` (so the original sender can travel in CPIM From).
    pub fn accepts_cpim(&self) -> bool {
        self.negotiated
            .accept_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case("message/cpim") || t == "*")
    }

    /// Hangs up from our side and ends the MSRP session.
    pub async fn hang_up(&self) {
        if let Err(e) = self.dialog.bye().await {
            tracing::debug!(call_id = %self.call_id, error = %e, "BYE failed");
        }
        self.session.close();
    }
}

/// Answers `invite` with an MSRP session; `None` after a rejection (488) or failure.
pub async fn answer(app: &App, invite: ServerInvite, call_id: &str) -> Option<ChatLeg> {
    let peer = invite.source().addr;
    let offers_tls = MsrpOffer::offered_transports(invite.body()).contains(&MsrpTransport::Tls);
    let endpoint = match &app.msrps {
        Some(msrps) if offers_tls => msrps,
        _ => &app.msrp,
    };
    let session = endpoint.create_session();
    let local = LocalMedia::with_defaults(
        session.local_path(),
        Some(app.config.msrp.max_message_bytes),
    );
    let (answer, mut negotiated) = match build_answer(invite.body(), &local) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(call_id, peer = %peer, reason = %e, "INVITE refused: no usable MSRP offer (488)");
            refuse(
                invite,
                488,
                vec![(
                    "Warning".into(),
                    format!("304 mwi-store \"no usable MSRP media: {e}\""),
                )],
            );
            return None;
        }
    };
    let dialog = match invite.accept(answer.into_bytes()) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(call_id, peer = %peer, error = %e, "cannot answer INVITE");
            return None;
        }
    };
    // The session keeps the peer's path; the leg needs no second copy for the whole call.
    let peer_path = std::mem::take(&mut negotiated.peer_path);
    let leg = ChatLeg {
        dialog,
        session,
        negotiated,
        call_id: call_id.to_string(),
        peer,
    };
    if let Err(e) = leg.session.start(peer_path, leg.negotiated.role).await {
        tracing::info!(call_id, peer = %peer, error = %e, "MSRP session did not start; hanging up");
        leg.hang_up().await;
        return None;
    }
    Some(leg)
}
