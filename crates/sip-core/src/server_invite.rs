//! Server INVITE handling: [`ServerInvite`] answers a new INVITE (provisional, accept with an
//! SDP answer, reject); after accept an [`InviteSession`] reports the dialog's events (ACK, BYE
//! answered 200, re-INVITE answered 200 with the same SDP, CANCEL answered 487) and can hang up.
//! Until the ACK, rsipstack's dialog drives the transaction: 100 Trying, 2xx retransmission
//! until ACK over UDP (RFC 3261 §13.3.1.4), CANCEL → 487. Responses to the INVITE carry the
//! dialog's own To-tag: `tx.reply` would add a second, random one to a request without one.
//! Once the ACK is in, rsipstack's dialog is let go and the dialog lives on as our own
//! [`UasDialog`]: requests in it are answered here ([`in_dialog_request`]) and our BYE is sent
//! from it.

use crate::client::{host_port, NextHop};
use crate::endpoint::{ListenAddr, Shared, SipEndpoint, Source, Transport};
use crate::error::{ClientError, SipError};
use crate::headers::raw_headers;
use crate::tag::new_branch;
use crate::uas_dialog::{InDialogAnswer, UasDialog};
use futures_channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::DialogId;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, Response, SipMessage, StatusCode};
use rsipstack::transaction::transaction::{Transaction, TransactionEvent, TransactionEventSender};
use rsipstack::transport::SipConnection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::debug;

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

/// What the endpoint keeps of one server INVITE dialog.
pub(crate) struct InviteEntry {
    events: UnboundedSender<DialogEvent>,
    stage: InviteStage,
    /// The TCP/TLS connection the INVITE came over: our requests in the dialog go back on it
    /// (a TLS peer cannot be reached otherwise: we never connect out over TLS).
    flow: Option<SipConnection>,
}

enum InviteStage {
    /// Until the ACK, rsipstack's dialog drives the INVITE transaction (100, 2xx
    /// retransmission of RFC 3261 §13.3.1.4, CANCEL → 487, BYE when no ACK comes); it is held
    /// here until then, as rsipstack expects of its user. `established` is our own dialog
    /// state, made when the application accepts.
    Answering {
        dialog: InviteDialog,
        established: Option<Box<UasDialog>>,
    },
    /// After the ACK only our own dialog state is kept ([`crate::uas_dialog`]): rsipstack's
    /// dialog holds its transaction's event channel for its whole life; letting it go took the
    /// server's RSS per held deposit session from 40 to 30 KiB.
    /// Boxed: entries sit in a hash map sized in powers of two.
    Established(Box<UasDialog>),
}

/// Every server INVITE dialog of the endpoint, by id. All of them report their states on one
/// channel to one task ([`run_invite_states`]), which turns them into each dialog's
/// [`DialogEvent`]s: a state channel and a task per dialog cost about 10 KiB per held session
/// (rsipstack's `DialogState` carries whole messages and a tokio channel allocates room for 32
/// of them up front). Each dialog's events go through a futures-channel queue, which allocates
/// per message: tokio's preallocates 32 slots (about 1.3 KiB a held session). Established
/// dialogs are answered from here ([`in_dialog_request`]).
pub(crate) type InviteEntries = Mutex<HashMap<DialogId, InviteEntry>>;

/// Registers a new server INVITE dialog (before its transaction runs, so no state is missed);
/// `connection` is the one the INVITE came over.
pub(crate) fn register_invite(
    shared: &Shared,
    dialog: InviteDialog,
    connection: Option<&SipConnection>,
) -> UnboundedReceiver<DialogEvent> {
    let (tx, rx) = unbounded();
    let id = dialog.id();
    let entry = InviteEntry {
        events: tx,
        stage: InviteStage::Answering {
            dialog,
            established: None,
        },
        flow: connection.filter(|c| c.is_reliable()).cloned(),
    };
    if let Ok(mut entries) = shared.invite_dialogs.lock() {
        entries.insert(id, entry);
    }
    rx
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
            // The ACK arrived: keep our own state and let rsipstack's dialog go. A request it
            // matched before this point is still reported here (Updated, Terminated) and
            // finds the entry established.
            let established = shared
                .invite_dialogs
                .lock()
                .ok()
                .is_some_and(|mut entries| {
                    let Some(entry) = entries.get_mut(&id) else {
                        return false;
                    };
                    let InviteStage::Answering { established, .. } = &mut entry.stage else {
                        return false;
                    };
                    let Some(state) = established.take() else {
                        return false;
                    };
                    entry.stage = InviteStage::Established(state);
                    entry.events.unbounded_send(DialogEvent::Ack).ok();
                    true
                });
            if established {
                shared.dialogs.remove_dialog(&id);
            }
        }
        DialogState::Updated(id, req, handle) => {
            let found = shared.invite_dialogs.lock().ok().and_then(|entries| {
                let entry = entries.get(&id)?;
                let answer = match &entry.stage {
                    InviteStage::Established(d) => Some(d.answer.clone()),
                    InviteStage::Answering { established, .. } => {
                        established.as_ref().map(|d| d.answer.clone())
                    }
                };
                Some((entry.events.clone(), answer))
            });
            tokio::spawn(async move {
                if req.method != Method::Invite {
                    handle.reply(StatusCode::OK).await.ok();
                    return;
                }
                // Keep the session (RFC 3264 §8: an unchanged answer is allowed).
                let body = found.as_ref().and_then(|(_, sdp)| sdp.clone());
                let headers = body
                    .as_ref()
                    .map(|_| vec![Header::ContentType("application/sdp".into())]);
                handle.respond(StatusCode::OK, headers, body).await.ok();
                if let Some((events, _)) = found {
                    events.unbounded_send(DialogEvent::ReInvite).ok();
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
                entry.events.unbounded_send(terminated_event(reason)).ok();
            }
            shared.dialogs.remove_dialog(&id);
        }
        _ => {}
    }
}

fn terminated_event(reason: TerminatedReason) -> DialogEvent {
    match reason {
        TerminatedReason::UacCancel => DialogEvent::Cancelled,
        TerminatedReason::UacBye => DialogEvent::Bye,
        other => DialogEvent::Terminated(format!("{other:?}")),
    }
}

/// Answers `tx` when it is a request inside an established dialog we keep (RFC 3261 §12.2.2:
/// Call-ID, To-tag ours, From-tag theirs); hands it back otherwise.
pub(crate) fn in_dialog_request(shared: &Arc<Shared>, tx: Transaction) -> Option<Transaction> {
    let Ok(id) = DialogId::try_from(&tx) else {
        return Some(tx);
    };
    let Ok(cseq) = tx.original.cseq_header().and_then(|c| c.seq()) else {
        return Some(tx);
    };
    let decided = shared.invite_dialogs.lock().ok().and_then(|mut entries| {
        let entry = entries.get_mut(&id)?;
        let InviteStage::Established(dialog) = &mut entry.stage else {
            return None;
        };
        let answer = dialog.on_request(tx.original.method, cseq);
        let reinvite = ReInviteAnswer {
            sdp: if answer == InDialogAnswer::ReInvite {
                dialog.answer.clone()
            } else {
                Vec::new()
            },
            transport: dialog.source.transport,
        };
        let events = entry.events.clone();
        if answer == InDialogAnswer::Bye {
            // §15.1.2: the dialog ends with this BYE.
            entries.remove(&id);
        }
        Some((answer, events, reinvite))
    });
    let Some((answer, events, reinvite)) = decided else {
        return Some(tx);
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        answer_in_dialog(&shared, tx, answer, events, reinvite).await;
    });
    None
}

/// The 2xx to a re-INVITE: our SDP answer again and our Contact for the INVITE's transport.
struct ReInviteAnswer {
    sdp: Vec<u8>,
    transport: Transport,
}

async fn answer_in_dialog(
    shared: &Shared,
    mut tx: Transaction,
    answer: InDialogAnswer,
    events: UnboundedSender<DialogEvent>,
    reinvite: ReInviteAnswer,
) {
    let sent = match answer {
        InDialogAnswer::Absorb => return,
        InDialogAnswer::OutOfOrder => tx.reply(StatusCode::ServerInternalError).await,
        InDialogAnswer::Bye => {
            let sent = tx.reply(StatusCode::OK).await;
            events.unbounded_send(DialogEvent::Bye).ok();
            sent
        }
        InDialogAnswer::ReInvite => {
            let contact = shared.contact_uri(reinvite.transport);
            let headers = vec![
                Header::Contact(format!("<{contact}>").into()),
                Header::ContentType("application/sdp".into()),
            ];
            let sent = tx
                .reply_with(StatusCode::OK, headers, Some(reinvite.sdp))
                .await;
            events.unbounded_send(DialogEvent::ReInvite).ok();
            // The transaction retransmits the 2xx until its ACK (RFC 3261 §13.3.1.4) while
            // it is driven; the ACK ends it.
            while let Some(msg) = tx.receive().await {
                if matches!(msg, SipMessage::Request(r) if r.method == Method::Ack) {
                    break;
                }
            }
            sent
        }
        InDialogAnswer::Status(405) => {
            let allow = vec![Header::Allow(crate::ALLOW.into())];
            tx.reply_with(StatusCode::MethodNotAllowed, allow, None)
                .await
        }
        InDialogAnswer::Status(status) => tx.reply(StatusCode::from(status)).await,
    };
    if let Err(e) = sent {
        debug!(error = %e, "in-dialog answer not sent");
    }
}

/// A new INVITE waiting for the application's answer. Dropping it unanswered sends 500.
pub struct ServerInvite {
    request: Request,
    source: Source,
    dialog: InviteDialog,
    tu_sender: TransactionEventSender,
    events: Option<UnboundedReceiver<DialogEvent>>,
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
        events: UnboundedReceiver<DialogEvent>,
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
        let id = self.dialog.id();
        // Our dialog state is ready before the 2xx leaves, so the ACK always finds it.
        let state = UasDialog::from_invite(
            &self.request,
            &id.local_tag,
            self.source,
            sdp_answer.clone(),
        )?;
        self.set_established(Some(Box::new(state)));
        if let Err(e) = self.dialog.accept(
            Some(vec![Header::ContentType("application/sdp".into())]),
            Some(sdp_answer),
        ) {
            self.set_established(None);
            return Err(e.into());
        }
        self.answered = true;
        // Drain nothing: events so far can only be a racing Cancelled, which accept() lost.
        while let Ok(ev) = events.try_recv() {
            if ev == DialogEvent::Cancelled {
                return Err(SipError::Cancelled);
            }
        }
        Ok(InviteSession {
            id,
            events,
            shared: self.shared.clone(),
        })
    }

    fn set_established(&self, state: Option<Box<UasDialog>>) {
        let id = self.dialog.id();
        if let Ok(mut entries) = self.shared.invite_dialogs.lock() {
            if let Some(InviteEntry {
                stage: InviteStage::Answering { established, .. },
                ..
            }) = entries.get_mut(&id)
            {
                *established = state;
            }
        }
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
            while let Ok(ev) = events.recv().await {
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

/// An accepted INVITE dialog. Dropping it forgets the dialog: later requests in it get 481.
pub struct InviteSession {
    id: DialogId,
    events: UnboundedReceiver<DialogEvent>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for InviteSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InviteSession({})", self.id)
    }
}

/// What `bye` finds of its dialog.
enum ByeFrom {
    /// Not yet ACKed: rsipstack's dialog sends the BYE and reports the end itself.
    Answering(InviteDialog),
    Established(Box<UasDialog>, Option<SipConnection>),
    /// Already over (their BYE, or ours).
    Gone,
}

impl InviteSession {
    /// The next dialog event; `None` after the dialog is gone.
    pub async fn next_event(&mut self) -> Option<DialogEvent> {
        self.events.recv().await.ok()
    }

    /// Hang up from our side (BYE, following the route set). The dialog is over once the BYE
    /// is sent (RFC 3261 §15.1.1); a 2xx, 481, 408 or no answer at all is a normal end.
    pub async fn bye(&self) -> Result<(), SipError> {
        let found = match self.shared.invite_dialogs.lock() {
            Ok(mut entries) => match entries.get(&self.id).map(|e| &e.stage) {
                Some(InviteStage::Answering { dialog, .. }) => ByeFrom::Answering(dialog.clone()),
                Some(InviteStage::Established(_)) => match entries.remove(&self.id) {
                    Some(InviteEntry {
                        stage: InviteStage::Established(state),
                        events,
                        flow,
                    }) => {
                        events
                            .unbounded_send(DialogEvent::Terminated("UasBye".into()))
                            .ok();
                        ByeFrom::Established(state, flow)
                    }
                    _ => ByeFrom::Gone,
                },
                None => ByeFrom::Gone,
            },
            Err(_) => ByeFrom::Gone,
        };
        // Boxed: a client transaction's future is ~6 KiB, and every caller's future (the task
        // holding a session for its whole life) would otherwise reserve room for it.
        match found {
            ByeFrom::Answering(dialog) => Ok(Box::pin(dialog.bye()).await?),
            ByeFrom::Established(state, flow) => {
                Box::pin(send_bye(&self.shared, *state, flow)).await
            }
            ByeFrom::Gone => Ok(()),
        }
    }

    /// The dialog identifier.
    pub fn dialog_id(&self) -> String {
        self.id.to_string()
    }
}

impl Drop for InviteSession {
    fn drop(&mut self) {
        let entry = self
            .shared
            .invite_dialogs
            .lock()
            .ok()
            .and_then(|mut entries| entries.remove(&self.id));
        if let Some(InviteEntry {
            stage: InviteStage::Answering { .. },
            ..
        }) = entry
        {
            self.shared.dialogs.remove_dialog(&self.id);
        }
    }
}

/// Sends our BYE from the stored dialog state through a client non-INVITE transaction: on the
/// INVITE's TCP/TLS connection while it is open, else to the next hop (an IP address), the
/// outbound proxy, or where the INVITE came from.
async fn send_bye(
    shared: &Arc<Shared>,
    mut state: UasDialog,
    flow: Option<SipConnection>,
) -> Result<(), SipError> {
    let flow = flow.filter(|c| !matches!(c.cancel_token(), Some(t) if t.is_cancelled()));
    let hop = match flow {
        Some(connection) => NextHop::Flow(connection),
        None => NextHop::Address(
            state
                .next_hop()
                .or(shared.config.outbound_proxy)
                .or_else(|| {
                    (state.source.transport != Transport::Tls).then_some(ListenAddr {
                        transport: state.source.transport,
                        addr: state.source.addr,
                    })
                })
                .ok_or_else(|| {
                    SipError::Client(ClientError::NoRoute("the TLS flow is closed".into()))
                })?,
        ),
    };
    let transport = match &hop {
        NextHop::Flow(_) => state.source.transport,
        NextHop::Address(a) => a.transport,
    };
    let local = shared
        .local_for(transport)
        .or_else(|| shared.local.first().copied())
        .ok_or(SipError::WrongRequest("no local address"))?;
    let via = format!(
        "SIP/2.0/{} {};branch={};rport",
        transport.via_name(),
        host_port(local.addr),
        new_branch()
    );
    let text = state.bye_request(&via, &shared.config.user_agent);
    let request = match SipMessage::try_from(text.as_str()) {
        Ok(SipMessage::Request(r)) => r,
        _ => return Err(SipError::WrongRequest("BYE did not parse")),
    };
    let endpoint = SipEndpoint {
        shared: shared.clone(),
    };
    match endpoint.run_client(request, hop).await {
        Ok(resp) => match resp.status_code.code() {
            200..=299 | 408 | 481 => Ok(()),
            other => Err(SipError::Answered(other)),
        },
        Err(ClientError::Timeout) => Ok(()),
        Err(e) => Err(SipError::Client(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::endpoint::{IncomingRequest, SipEndpointConfig, Timers};
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::net::UdpSocket;
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    /// The size of the future `f` returns, without calling it.
    fn future_size<'a, Fut>(_: impl FnOnce(&'a InviteSession) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn the_bye_future_stays_small() {
        // Every task holding a session reserves room for `bye()`'s future for the session's
        // whole life; the client transaction inside it (~6 KiB) must stay boxed.
        let size = future_size(InviteSession::bye);
        assert!(size <= 512, "InviteSession::bye() future is {size} bytes");
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n";
    const ANSWER: &[u8] = b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=answer\r\n";

    async fn start() -> (SipEndpoint, mpsc::Receiver<IncomingRequest>, SocketAddr) {
        let config = SipEndpointConfig {
            listen: vec![ListenAddr::udp("127.0.0.1:0".parse().unwrap())],
            timers: Timers {
                t1: Duration::from_millis(50),
                t2: Duration::from_millis(200),
                t4: Duration::from_millis(250),
            },
            ..SipEndpointConfig::default()
        };
        let (ep, rx) = SipEndpoint::start(config).await.unwrap();
        let addr = ep.local_addrs()[0].addr;
        (ep, rx, addr)
    }

    /// A request from the peer `peer` in call `call`; `to_tag` makes it in-dialog.
    fn request(
        method: &str,
        peer: SocketAddr,
        call: &str,
        to_tag: Option<&str>,
        cseq: u32,
        extra: &str,
        body: &str,
    ) -> String {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        format!(
            "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bK{call}{method}{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al1\r\nTo: <sip:bob@127.0.0.1>{to_tag}\r\n\
             Call-ID: {call}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
        msg.split("\r\n")
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }

    fn tag_in(value: &str) -> &str {
        value
            .split(";tag=")
            .nth(1)
            .and_then(|t| t.split(';').next())
            .unwrap()
    }

    /// Receive until a message starting with `prefix` (2xx retransmissions are skipped).
    async fn recv_until(sock: &UdpSocket, prefix: &str) -> String {
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, _) = timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
                .await
                .expect("a datagram in time")
                .unwrap();
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with(prefix) {
                return m;
            }
        }
    }

    /// INVITE (Contact `contact`, `extra` header lines), accept, ACK: the established session
    /// and our tag.
    async fn establish(
        ep: &SipEndpoint,
        rx: &mut mpsc::Receiver<IncomingRequest>,
        to: SocketAddr,
        sock: &UdpSocket,
        call: &str,
        contact: &str,
        extra: &str,
    ) -> (InviteSession, String) {
        let peer = sock.local_addr().unwrap();
        let contact = format!("Contact: <{contact}>\r\nContent-Type: application/sdp\r\n");
        let invite = request(
            "INVITE",
            peer,
            call,
            None,
            1,
            &format!("{contact}{extra}"),
            OFFER,
        );
        sock.send_to(invite.as_bytes(), to).await.unwrap();
        let Some(IncomingRequest::Invite(inv)) =
            timeout(Duration::from_secs(2), rx.recv()).await.unwrap()
        else {
            panic!("expected an INVITE");
        };
        let mut session = inv.accept(ANSWER.to_vec()).unwrap();
        let ok = recv_until(sock, "SIP/2.0 200").await;
        let tag = tag_in(header(&ok, "To")[0]).to_string();
        let ack = request("ACK", peer, call, Some(&tag), 1, "", "");
        sock.send_to(ack.as_bytes(), to).await.unwrap();
        let ev = timeout(Duration::from_secs(2), session.next_event())
            .await
            .unwrap();
        assert_eq!(ev, Some(DialogEvent::Ack));
        // The ACK is in: rsipstack holds nothing of the dialog any more, our state does.
        timeout(Duration::from_secs(2), async {
            while !ep.shared.dialogs.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("rsipstack's dialog is let go after the ACK");
        let id = DialogId {
            call_id: call.to_string(),
            local_tag: tag.clone(),
            remote_tag: "al1".to_string(),
        };
        let entries = ep.shared.invite_dialogs.lock().unwrap();
        assert!(matches!(
            entries.get(&id).map(|e| &e.stage),
            Some(InviteStage::Established(_))
        ));
        drop(entries);
        (session, tag)
    }

    #[tokio::test]
    async fn established_dialog_answers_bye_reinvite_order_and_unknown_tags() {
        let (ep, mut rx, to) = start().await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer = sock.local_addr().unwrap();
        let (mut session, tag) = establish(
            &ep,
            &mut rx,
            to,
            &sock,
            "est1",
            &format!("sip:alice@{peer}"),
            "",
        )
        .await;
        let send = |text: String| {
            let sock = &sock;
            async move { sock.send_to(text.as_bytes(), to).await.unwrap() }
        };

        send(request("OPTIONS", peer, "est1", Some(&tag), 5, "", "")).await;
        let r = recv_until(&sock, "SIP/2.0").await;
        assert!(r.starts_with("SIP/2.0 200"), "{r}");
        // RFC 3261 §12.2.2: a CSeq below the last one is out of order.
        send(request("INFO", peer, "est1", Some(&tag), 3, "", "")).await;
        let r = recv_until(&sock, "SIP/2.0").await;
        assert!(r.starts_with("SIP/2.0 500"), "{r}");
        assert_eq!(header(&r, "CSeq"), ["3 INFO"]);

        // re-INVITE: 200 with the stored SDP answer and our Contact; its ACK is absorbed.
        let sdp = "Content-Type: application/sdp\r\n";
        send(request("INVITE", peer, "est1", Some(&tag), 6, sdp, OFFER)).await;
        let r = recv_until(&sock, "SIP/2.0 200").await;
        assert_eq!(header(&r, "CSeq"), ["6 INVITE"]);
        assert_eq!(tag_in(header(&r, "To")[0]), tag);
        assert!(
            header(&r, "Contact")[0].contains("sip:mwi-store@127.0.0.1:"),
            "{r}"
        );
        assert_eq!(header(&r, "Content-Type"), ["application/sdp"]);
        assert!(r.as_bytes().ends_with(ANSWER), "{r}");
        send(request("ACK", peer, "est1", Some(&tag), 6, "", "")).await;
        let ev = timeout(Duration::from_secs(2), session.next_event())
            .await
            .unwrap();
        assert_eq!(ev, Some(DialogEvent::ReInvite));

        // Tags that match no dialog: 481.
        send(request("BYE", peer, "est1", Some("other"), 7, "", "")).await;
        let r = recv_until(&sock, "SIP/2.0").await;
        assert!(r.starts_with("SIP/2.0 481"), "{r}");

        // BYE: 200, the Bye event, and the dialog is forgotten.
        send(request("BYE", peer, "est1", Some(&tag), 8, "", "")).await;
        let r = recv_until(&sock, "SIP/2.0").await;
        assert!(r.starts_with("SIP/2.0 200"), "{r}");
        assert_eq!(header(&r, "CSeq"), ["8 BYE"]);
        let ev = timeout(Duration::from_secs(2), session.next_event())
            .await
            .unwrap();
        assert_eq!(ev, Some(DialogEvent::Bye));
        assert_eq!(session.next_event().await, None);
        assert!(ep.shared.invite_dialogs.lock().unwrap().is_empty());
        send(request("BYE", peer, "est1", Some(&tag), 9, "", "")).await;
        let r = recv_until(&sock, "SIP/2.0").await;
        assert!(r.starts_with("SIP/2.0 481"), "{r}");
        ep.shutdown();
    }

    #[tokio::test]
    async fn our_bye_is_built_from_the_stored_dialog_state() {
        let (ep, mut rx, to) = start().await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer = sock.local_addr().unwrap();
        // The remote target is elsewhere (a documentation address); the route set's first
        // hop (a loose router: this socket) is where the BYE must go (RFC 3261 §12.2.1.1).
        let extra = format!("Record-Route: <sip:{peer};lr>, <sip:p2.example.com;lr>\r\n");
        let target = "sip:alice@192.0.2.9:5080";
        let (session, tag) = establish(&ep, &mut rx, to, &sock, "own1", target, &extra).await;
        let bye = tokio::spawn(async move {
            let r = session.bye().await;
            (r, session)
        });
        let req = recv_until(&sock, "BYE ").await;
        assert!(
            req.starts_with("BYE sip:alice@192.0.2.9:5080 SIP/2.0\r\n"),
            "{req}"
        );
        assert_eq!(
            header(&req, "Route"),
            [
                format!("<sip:{peer};lr>").as_str(),
                "<sip:p2.example.com;lr>"
            ]
        );
        assert_eq!(header(&req, "CSeq"), ["2 BYE"]);
        assert_eq!(tag_in(header(&req, "From")[0]), tag);
        assert_eq!(tag_in(header(&req, "To")[0]), "al1");
        assert_eq!(header(&req, "Call-ID"), ["own1"]);
        // A 481 ends the dialog as well as a 200 would (§15.1.1).
        let mut resp = String::from("SIP/2.0 481 Call Leg/Transaction Does Not Exist\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            resp.push_str(&format!("{name}: {}\r\n", header(&req, name)[0]));
        }
        resp.push_str("Content-Length: 0\r\n\r\n");
        sock.send_to(resp.as_bytes(), to).await.unwrap();
        let (r, mut session) = timeout(Duration::from_secs(3), bye).await.unwrap().unwrap();
        r.unwrap();
        assert_eq!(
            session.next_event().await,
            Some(DialogEvent::Terminated("UasBye".into()))
        );
        assert_eq!(session.next_event().await, None);
        assert!(ep.shared.invite_dialogs.lock().unwrap().is_empty());
        ep.shutdown();
    }
}
