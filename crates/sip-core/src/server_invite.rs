//! Server INVITE handling: [`ServerInvite`] answers a new INVITE (provisional, accept with an
//! SDP answer, reject); after accept an [`InviteSession`] reports the dialog's events (ACK, BYE
//! answered 200, re-INVITE answered 200 with the same SDP, CANCEL answered 487) and can hang up.
//! rsipstack's dialog drives the transaction: 100 Trying, 2xx retransmission until ACK over UDP
//! (RFC 3261 §13.3.1.4), CANCEL → 487. Responses carry the dialog's own To-tag: we never use
//! `tx.reply` here, which would add a second, random one.

use crate::endpoint::{Shared, Source};
use crate::error::SipError;
use crate::headers::raw_headers;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::DialogId;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, Response, StatusCode};
use rsipstack::transaction::transaction::{TransactionEvent, TransactionEventSender};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What happens in an accepted INVITE dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// The ACK for our 2xx arrived: the session is established.
    Ack,
    /// A re-INVITE was answered 200 with the SDP of the original answer.
    ReInvite,
    /// The caller hung up; 200 was sent.
    Bye,
    /// CANCEL before the final response; 487 was sent.
    Cancelled,
    /// The dialog ended otherwise (no ACK within 64*T1, our BYE, an error).
    Terminated(String),
}

/// Events of one INVITE dialog plus the SDP answer used for re-INVITEs.
#[derive(Debug)]
pub(crate) struct InviteEvents {
    rx: mpsc::UnboundedReceiver<DialogEvent>,
    answer: Arc<Mutex<Option<Vec<u8>>>>,
}

/// What the state task keeps of one server INVITE dialog.
pub(crate) struct InviteEntry {
    events: mpsc::UnboundedSender<DialogEvent>,
    answer: Arc<Mutex<Option<Vec<u8>>>>,
    acked: bool,
    /// Held until the dialog terminates, as rsipstack expects of its user.
    _dialog: InviteDialog,
}

/// Every server INVITE dialog of the endpoint, by id. All of them report their states on one
/// channel to one task ([`run_invite_states`]), which turns them into each dialog's
/// [`DialogEvent`]s: a state channel and a task per dialog cost about 10 KiB per held session
/// (rsipstack's `DialogState` carries whole messages and a tokio channel allocates room for 32
/// of them up front).
pub(crate) type InviteEntries = Mutex<HashMap<DialogId, InviteEntry>>;

/// Registers a new server INVITE dialog (before its transaction runs, so no state is missed).
pub(crate) fn register_invite(shared: &Shared, dialog: InviteDialog) -> InviteEvents {
    let (tx, rx) = mpsc::unbounded_channel();
    let answer: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
    let entry = InviteEntry {
        events: tx,
        answer: answer.clone(),
        acked: false,
        _dialog: dialog.clone(),
    };
    if let Ok(mut entries) = shared.invite_dialogs.lock() {
        entries.insert(dialog.id(), entry);
    }
    InviteEvents { rx, answer }
}

/// Translates the states of every server INVITE dialog into [`DialogEvent`]s and answers
/// in-dialog requests; runs until the endpoint shuts down.
pub(crate) async fn run_invite_states(shared: Arc<Shared>, mut states: DialogStateReceiver) {
    loop {
        tokio::select! {
            state = states.recv() => match state {
                Some(state) => on_invite_state(&shared, state),
                None => break,
            },
            () = shared.cancel.cancelled() => break,
        }
    }
}

fn on_invite_state(shared: &Shared, state: DialogState) {
    // Answers are sent from their own task: one slow peer must not hold up every dialog.
    match state {
        DialogState::Confirmed(id, _) => {
            if let Ok(mut entries) = shared.invite_dialogs.lock() {
                if let Some(entry) = entries.get_mut(&id) {
                    if !entry.acked {
                        entry.acked = true;
                        entry.events.send(DialogEvent::Ack).ok();
                    }
                }
            }
        }
        DialogState::Updated(id, req, handle) => {
            let found = shared.invite_dialogs.lock().ok().and_then(|entries| {
                entries
                    .get(&id)
                    .map(|e| (e.events.clone(), e.answer.clone()))
            });
            tokio::spawn(async move {
                if req.method != Method::Invite {
                    handle.reply(StatusCode::OK).await.ok();
                    return;
                }
                // Keep the session (RFC 3264 §8: an unchanged answer is allowed).
                let body = found
                    .as_ref()
                    .and_then(|(_, sdp)| sdp.lock().ok().and_then(|s| s.clone()));
                let headers = body
                    .as_ref()
                    .map(|_| vec![Header::ContentType("application/sdp".into())]);
                handle.respond(StatusCode::OK, headers, body).await.ok();
                if let Some((events, _)) = found {
                    events.send(DialogEvent::ReInvite).ok();
                }
            });
        }
        DialogState::Info(_, _, h)
        | DialogState::Options(_, _, h)
        | DialogState::Message(_, _, h)
        | DialogState::Notify(_, _, h)
        | DialogState::Publish(_, _, h) => {
            tokio::spawn(async move { h.reply(StatusCode::OK).await.ok() });
        }
        DialogState::Refer(_, _, h) => {
            tokio::spawn(async move { h.reply(StatusCode::Decline).await.ok() });
        }
        DialogState::Terminated(id, reason) => {
            let entry = shared
                .invite_dialogs
                .lock()
                .ok()
                .and_then(|mut entries| entries.remove(&id));
            if let Some(entry) = entry {
                let event = match reason {
                    TerminatedReason::UacCancel => DialogEvent::Cancelled,
                    TerminatedReason::UacBye => DialogEvent::Bye,
                    other => DialogEvent::Terminated(format!("{other:?}")),
                };
                entry.events.send(event).ok();
            }
            shared.dialogs.remove_dialog(&id);
        }
        _ => {}
    }
}

/// A new INVITE waiting for the application's answer. Dropping it unanswered sends 500.
pub struct ServerInvite {
    request: Request,
    source: Source,
    dialog: InviteDialog,
    tu_sender: TransactionEventSender,
    events: Option<InviteEvents>,
    shared: Arc<Shared>,
    answered: bool,
}

impl std::fmt::Debug for ServerInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerInvite")
            .field("dialog", &self.dialog.id().to_string())
            .field("source", &self.source)
            .field("answered", &self.answered)
            .finish()
    }
}

impl ServerInvite {
    pub(crate) fn new(
        request: Request,
        source: Source,
        dialog: InviteDialog,
        tu_sender: TransactionEventSender,
        events: InviteEvents,
        shared: Arc<Shared>,
    ) -> Self {
        ServerInvite {
            request,
            source,
            dialog,
            tu_sender,
            events: Some(events),
            shared,
            answered: false,
        }
    }

    /// The INVITE as received (after validation).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Where it came from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The SDP offer (the body).
    pub fn body(&self) -> &[u8] {
        &self.request.body
    }

    /// The dialog identifier (Call-ID, local and remote tags).
    pub fn dialog_id(&self) -> String {
        self.dialog.id().to_string()
    }

    /// True once a CANCEL (answered 487) or an early BYE ended the INVITE.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.dialog.state(), DialogState::Terminated(..))
    }

    /// Send a provisional response (180, 183, …; 100 was already sent).
    pub fn provisional(&self, status: u16, headers: Vec<(String, String)>) -> Result<(), SipError> {
        if !(101..=199).contains(&status) {
            return Err(SipError::WrongRequest(
                "provisional status must be 101..=199",
            ));
        }
        let resp = self.response(status, raw_headers(&headers)?, None);
        self.tu_sender
            .send(TransactionEvent::Respond(resp))
            .map_err(|e| SipError::Stack(e.to_string()))
    }

    /// Answer 200 OK with `sdp_answer` (Content-Type application/sdp) and our Contact; the
    /// 2xx is retransmitted until the ACK arrives (UDP).
    pub fn accept(mut self, sdp_answer: Vec<u8>) -> Result<InviteSession, SipError> {
        if self.is_cancelled() {
            self.answered = true;
            return Err(SipError::Cancelled);
        }
        let mut events = self
            .events
            .take()
            .ok_or(SipError::WrongRequest("already answered"))?;
        if let Ok(mut slot) = events.answer.lock() {
            *slot = Some(sdp_answer.clone());
        }
        self.dialog.accept(
            Some(vec![Header::ContentType("application/sdp".into())]),
            Some(sdp_answer),
        )?;
        self.answered = true;
        // Drain nothing: events so far can only be a racing Cancelled, which accept() lost.
        while let Ok(ev) = events.rx.try_recv() {
            if ev == DialogEvent::Cancelled {
                return Err(SipError::Cancelled);
            }
        }
        Ok(InviteSession {
            dialog: self.dialog.clone(),
            events,
        })
    }

    /// Answer with a final non-2xx `status` (e.g. 403, 486, 488) and extra header fields
    /// (Warning, Retry-After, …).
    pub fn reject(mut self, status: u16, headers: Vec<(String, String)>) -> Result<(), SipError> {
        self.answered = true;
        self.final_failure(status, headers)
    }

    /// Wait until a CANCEL ends this INVITE (use in `select!` beside your own work).
    pub async fn cancelled(&mut self) {
        if let Some(events) = self.events.as_mut() {
            while let Some(ev) = events.rx.recv().await {
                if matches!(ev, DialogEvent::Cancelled | DialogEvent::Terminated(_)) {
                    return;
                }
            }
        }
        std::future::pending::<()>().await;
    }

    pub(crate) fn overloaded(mut self) {
        self.answered = true;
        self.final_failure(503, vec![("Retry-After".to_string(), "5".to_string())])
            .ok();
    }

    fn final_failure(&self, status: u16, headers: Vec<(String, String)>) -> Result<(), SipError> {
        if !(300..=699).contains(&status) {
            return Err(SipError::WrongRequest("reject status must be 300..=699"));
        }
        if self.is_cancelled() {
            return Err(SipError::Cancelled);
        }
        let resp = self.response(status, raw_headers(&headers)?, None);
        self.tu_sender
            .send(TransactionEvent::Respond(resp))
            .map_err(|e| SipError::Stack(e.to_string()))?;
        self.shared.dialogs.remove_dialog(&self.dialog.id());
        Ok(())
    }

    fn response(&self, status: u16, headers: Vec<Header>, body: Option<Vec<u8>>) -> Response {
        let mut resp =
            self.shared
                .endpoint
                .inner
                .make_response(&self.request, StatusCode::from(status), body);
        let tag = self.dialog.id().local_tag;
        if let Ok(to) = resp.to_header_mut() {
            if to.tag().ok().flatten().is_none() {
                to.mut_tag(rsipstack::sip::param::Tag::new(tag)).ok();
            }
        }
        resp.headers.extend(headers);
        resp
    }
}

impl Drop for ServerInvite {
    fn drop(&mut self) {
        if !self.answered {
            self.final_failure(500, Vec::new()).ok();
        }
    }
}

/// An accepted INVITE dialog.
pub struct InviteSession {
    dialog: InviteDialog,
    events: InviteEvents,
}

impl std::fmt::Debug for InviteSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InviteSession({})", self.dialog.id())
    }
}

impl InviteSession {
    /// The next dialog event; `None` after the dialog is gone.
    pub async fn next_event(&mut self) -> Option<DialogEvent> {
        self.events.rx.recv().await
    }

    /// Hang up from our side (BYE, following the route set).
    pub async fn bye(&self) -> Result<(), SipError> {
        self.dialog.bye().await?;
        Ok(())
    }

    /// The dialog identifier.
    pub fn dialog_id(&self) -> String {
        self.dialog.id().to_string()
    }
}
