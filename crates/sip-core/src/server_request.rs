//! Server non-INVITE transactions (MESSAGE, SUBSCRIBE, PUBLISH, NOTIFY, …): the application
//! answers with a status, extra header fields and an optional body. A SUBSCRIBE can instead be
//! accepted into a [`ServerSubscription`] (RFC 6665 §4.2.1) so NOTIFYs can be sent in it.
//! Dropping a request unanswered sends 500 (or 503 when the application queue was full).

use crate::endpoint::{Shared, Source};
use crate::error::{ClientError, SipError};
use crate::headers::{raw_headers, Event, SubscriptionState};
use rsipstack::dialog::dialog::Dialog;
use rsipstack::dialog::subscription::ServerSubscriptionDialog;
use rsipstack::sip::{Header, Method, Request, StatusCode};
use rsipstack::transaction::transaction::{Transaction, TransactionEvent};
use std::sync::Arc;
use std::time::Instant;

/// A body with its media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A received non-INVITE request waiting for its answer.
pub struct ServerRequest {
    /// Boxed: a transaction is large and this travels through channels.
    tx: Option<Box<Transaction>>,
    request: Request,
    source: Source,
    shared: Arc<Shared>,
    subscription: Option<ServerSubscriptionDialog>,
    drop_status: u16,
}

impl std::fmt::Debug for ServerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRequest")
            .field("method", &self.request.method)
            .field("source", &self.source)
            .field("answered", &self.tx.is_none())
            .finish()
    }
}

impl ServerRequest {
    pub(crate) fn new(
        tx: Transaction,
        source: Source,
        shared: Arc<Shared>,
        subscription: Option<ServerSubscriptionDialog>,
    ) -> Self {
        ServerRequest {
            request: tx.original.clone(),
            tx: Some(Box::new(tx)),
            source,
            shared,
            subscription,
            drop_status: 500,
        }
    }

    /// The request as received (after validation).
    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn method(&self) -> Method {
        self.request.method
    }

    pub fn source(&self) -> Source {
        self.source
    }

    pub fn body(&self) -> &[u8] {
        &self.request.body
    }

    /// For a SUBSCRIBE inside an existing subscription (refresh or Expires: 0): that
    /// subscription.
    pub fn subscription(&self) -> Option<ServerSubscription> {
        self.subscription.clone().map(|dialog| ServerSubscription {
            dialog,
            shared: self.shared.clone(),
        })
    }

    /// Answer with `status`, extra header fields and an optional body.
    pub async fn reply(
        mut self,
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<Body>,
    ) -> Result<(), SipError> {
        let mut tx = self
            .tx
            .take()
            .ok_or(SipError::WrongRequest("already answered"))?;
        let mut headers = raw_headers(&headers)?;
        if self.request.method == Method::Subscribe
            && (200..300).contains(&status)
            && !headers.iter().any(|h| matches!(h, Header::Contact(_)))
        {
            // RFC 6665 §4.2.1.1 / RFC 3261 §12.1.1: a 2xx to SUBSCRIBE carries a Contact.
            let contact = self.shared.contact_uri(self.source.transport);
            headers.push(Header::Contact(format!("<{contact}>").into()));
        }
        let body = body.map(|b| {
            headers.push(Header::ContentType(b.content_type.into()));
            b.bytes
        });
        let result = tx.reply_with(StatusCode::from(status), headers, body).await;
        drive(tx, &self.shared);
        result.map_err(SipError::from)
    }

    /// Accept a SUBSCRIBE that creates a subscription: answer `status` (200 or 202) with our
    /// Contact, the dialog's To-tag and `headers` (Expires, …), and return the subscription
    /// for NOTIFYs. The 200 is on the wire before this returns, so a NOTIFY sent right after
    /// follows it.
    pub async fn accept_subscription(
        mut self,
        headers: Vec<(String, String)>,
    ) -> Result<ServerSubscription, SipError> {
        if self.request.method != Method::Subscribe || self.subscription.is_some() {
            return Err(SipError::WrongRequest("not a dialog-creating SUBSCRIBE"));
        }
        let mut tx = self
            .tx
            .take()
            .ok_or(SipError::WrongRequest("already answered"))?;
        let headers = raw_headers(&headers)?;
        let contact = self.shared.contact_uri(self.source.transport);
        let contact = rsipstack::sip::Uri::try_from(contact.as_str())
            .map_err(|e| SipError::Stack(e.to_string()))?;
        let (state_tx, _state_rx) = self.shared.dialogs.new_dialog_state_channel();
        let dialog = match self.shared.dialogs.get_or_create_server_subscription(
            &tx,
            state_tx,
            None,
            Some(contact),
        ) {
            Ok(d) => d,
            Err(e) => {
                tx.reply(StatusCode::ServerInternalError).await.ok();
                drive(tx, &self.shared);
                return Err(e.into());
            }
        };
        dialog.accept(Some(headers), None)?;
        // accept() queued the 200 on the transaction; send it now so it precedes any NOTIFY.
        while let Ok(event) = tx.tu_receiver.try_recv() {
            if let TransactionEvent::Respond(resp) = event {
                tx.respond(resp).await?;
                break;
            }
        }
        drive(tx, &self.shared);
        Ok(ServerSubscription {
            dialog,
            shared: self.shared.clone(),
        })
    }

    pub(crate) fn overloaded(mut self) {
        self.drop_status = 503;
    }
}

impl Drop for ServerRequest {
    fn drop(&mut self) {
        if let Some(mut tx) = self.tx.take() {
            let status = self.drop_status;
            let shared = self.shared.clone();
            tokio::spawn(async move {
                tx.reply(StatusCode::from(status)).await.ok();
                drive(tx, &shared);
            });
        }
    }
}

/// Keep a server transaction running after its final response so retransmitted requests are
/// answered and its timers fire, bounded by 64*T1 plus slack.
fn drive(mut tx: Box<Transaction>, shared: &Shared) {
    let limit = shared.config.timers.t1 * 64 + std::time::Duration::from_secs(1);
    tokio::spawn(async move {
        tokio::time::timeout(limit, async { while tx.receive().await.is_some() {} })
            .await
            .ok();
    });
}

/// A subscription we accepted (we are the notifier).
#[derive(Clone)]
pub struct ServerSubscription {
    dialog: ServerSubscriptionDialog,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerSubscription({})", self.dialog.id())
    }
}

impl ServerSubscription {
    /// The dialog identifier (Call-ID, local and remote tags).
    pub fn dialog_id(&self) -> String {
        self.dialog.id().to_string()
    }

    /// Send a NOTIFY in this subscription (RFC 6665 §4.2.2) and wait for its final response.
    /// 481 → [`ClientError::NoSuchSubscription`]; no answer within 64*T1 →
    /// [`ClientError::Timeout`]. Returns the final status otherwise.
    pub async fn notify(
        &self,
        event: &Event,
        state: &SubscriptionState,
        body: Option<Body>,
    ) -> Result<u16, ClientError> {
        let mut headers = vec![
            Header::Event(event.to_string().into()),
            Header::SubscriptionState(state.to_string().into()),
        ];
        let body = body.map(|b| {
            headers.push(Header::ContentType(b.content_type.into()));
            b.bytes
        });
        let started = Instant::now();
        let resp = self
            .dialog
            .notify(Some(headers), body)
            .await?
            .ok_or(ClientError::NotActive)?;
        let status = resp.status_code.code();
        if state.is_terminated() {
            self.shared.dialogs.remove_dialog(&self.dialog.id());
        }
        match status {
            481 => {
                self.shared.dialogs.remove_dialog(&self.dialog.id());
                Err(ClientError::NoSuchSubscription)
            }
            // rsipstack reports Timer F as a locally made 408.
            408 if started.elapsed() >= self.shared.config.timers.t1 * 64 => {
                Err(ClientError::Timeout)
            }
            s => Ok(s),
        }
    }

    /// Forget the subscription locally (after a terminated NOTIFY or expiry).
    pub fn remove(&self) {
        self.shared.dialogs.remove_dialog(&self.dialog.id());
    }

    /// True while the dialog is known to the stack.
    pub fn is_active(&self) -> bool {
        matches!(
            self.shared.dialogs.get_dialog(&self.dialog.id()),
            Some(Dialog::ServerSubscription(_))
        )
    }
}
