//! Page mode (RFC 3428): a SIP MESSAGE to an offline user's AoR is stored in the same mailbox
//! as chat deposits and answered 202 Accepted only after the commit.

use std::sync::Arc;

use message_store::{LimitExceeded, Source, StoreError};
use sip_core::headers::header_value;
use sip_core::{Aor, ServerRequest};

use crate::deposit::{classify, new_message, Classified, Parties};
use crate::metrics::{Refused, METRICS};
use crate::server::{call_id_of, mailbox_of, App};

/// Handles a MESSAGE.
pub async fn handle_message(app: Arc<App>, req: ServerRequest) {
    let call_id = call_id_of(req.request());
    let peer = req.source().addr;
    let Some(identity) = app.identity(req.request(), peer) else {
        refuse(req, 400, Vec::new()).await;
        return;
    };
    if !identity.trusted && !app.config.deposit.accept_untrusted {
        tracing::info!(call_id, peer = %peer, "MESSAGE refused: source is not a trusted proxy (403)");
        let warning = app.warning("deposits are accepted only through the proxy");
        refuse(req, 403, vec![warning]).await;
        return;
    }
    if app
        .fetch_uri
        .matches(&sip_core::uri_text(&req.request().uri))
    {
        let warning = app.warning("the fetch URI takes chat sessions (INVITE), not MESSAGE");
        refuse(req, 405, vec![warning, ("Allow".into(), "INVITE".into())]).await;
        return;
    }
    let Some(mailbox) = mailbox_of(&app, req.request()) else {
        refuse(req, 404, Vec::new()).await;
        return;
    };
    let headers = &req.request().headers;
    let content_type =
        header_value(headers, "Content-Type").unwrap_or_else(|| "text/plain".to_string());
    let body = req.body().to_vec();
    if body.is_empty() {
        let warning = app.warning("empty MESSAGE body: nothing to store");
        refuse(req, 400, vec![warning]).await;
        return;
    }
    let cpim = match classify(&content_type, &body, &app.config.deposit.extra_types) {
        Classified::Store { cpim } => cpim,
        Classified::Ignore(_) => {
            let _ = req.reply(202, Vec::new(), None).await;
            return;
        }
        Classified::Unsupported(t) => {
            tracing::info!(call_id, mailbox = %mailbox, peer = %peer, content_type = t, "MESSAGE refused: type not stored (415)");
            let accept = ("Accept".to_string(), "text/plain, message/cpim".to_string());
            refuse(req, 415, vec![accept]).await;
            return;
        }
        Classified::Malformed(why) => {
            let warning = app.warning(&why);
            refuse(req, 400, vec![warning]).await;
            return;
        }
    };
    let recipient = header_value(headers, "To")
        .and_then(|t| Aor::parse(&t).ok())
        .map_or_else(|| mailbox.to_string(), |a| a.to_string());
    let parties = Parties::new(&mailbox, &identity);
    if let Err(headers) =
        crate::limits::check_deposit_rate(&app, &parties.sender_aor, peer, "MESSAGE", true)
    {
        refuse(req, 486, headers).await;
        return;
    }
    let bytes = body.len();
    let mut row = new_message(
        &parties,
        &recipient,
        &content_type,
        body,
        cpim.as_ref(),
        Source::SipMessage,
    );
    if row.message_id.is_none() {
        row.message_id = header_value(headers, "Message-ID");
    }
    match app.store.insert(row).await {
        Ok(id) => {
            METRICS.stored(Source::SipMessage, bytes);
            let _ = req.reply(202, Vec::new(), None).await;
            tracing::info!(call_id, mailbox = %mailbox, peer = %peer, sender = %identity.aor, bytes, id = id.0, "message stored (MESSAGE)");
            let m = mailbox.to_string();
            app.mailbox_changed(&m);
            let _ = app.deposits.send(m);
        }
        Err(StoreError::Limit(limit)) => {
            let status = match limit {
                LimitExceeded::MessageTooLarge { .. } => 413,
                _ => 486,
            };
            tracing::info!(call_id, mailbox = %mailbox, peer = %peer, why = %limit, status, "MESSAGE refused by a limit");
            let warning = app.warning(&limit.to_string());
            refuse(req, status, vec![warning]).await;
        }
        Err(e) => {
            tracing::error!(call_id, mailbox = %mailbox, error = %e, "store failed; answered 500. Check disk space and the database file");
            let _ = req.reply(500, Vec::new(), None).await;
        }
    }
}

/// Refuses a MESSAGE with `status` and counts the refusal (`mwi_store_refusals_total`).
async fn refuse(req: ServerRequest, status: u16, headers: Vec<(String, String)>) {
    METRICS.refused(Refused::Message, status);
    let _ = req.reply(status, headers, None).await;
}
