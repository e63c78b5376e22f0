//! Deposit (SPEC §1): answer a chat INVITE for an offline user, greet the caller, and commit
//! every storable message to the store before its MSRP 200 goes out.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use chrono::Utc;
use message_store::{LimitExceeded, NewMessage, Source, StoreError};
use msrp_session::cpim::{CpimAddress, CpimMessage};
use msrp_session::{IncomingMessage, SessionEvent};
use sip_core::{Aor, AssertedIdentity, DialogEvent, ServerInvite};
use tokio::time::Instant;

use crate::chat::{self, ChatLeg};
use crate::config::MailboxFullPolicy;
use crate::metrics::{Refused, METRICS};
use crate::server::{call_id_of, mailbox_of, App};

/// What a received body is, for the store.
#[derive(Debug)]
pub enum Classified {
    /// Keep it; CPIM parsed when the body is `message/cpim`.
    Store { cpim: Option<CpimMessage> },
    /// Answered but not kept (is-composing, IMDN).
    Ignore(&'static str),
    /// 415: a type we do not keep.
    Unsupported(String),
    /// 400: a body that claims to be CPIM but is not.
    Malformed(String),
}

/// `type/subtype` in lower case, parameters dropped.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_storable(media: &str, extra_types: &[String]) -> bool {
    media.starts_with("text/")
        || extra_types.iter().any(|t| {
            let t = t.to_ascii_lowercase();
            match t.strip_suffix("/*") {
                Some(prefix) => media.split('/').next() == Some(prefix),
                None => t == media,
            }
        })
}

fn is_notification(media: &str) -> Option<&'static str> {
    match media {
        "application/im-iscomposing+xml" => Some("is-composing"),
        "message/imdn+xml" => Some("IMDN"),
        _ => None,
    }
}

/// Decides whether a body is kept (SPEC §1: text/*, message/cpim wrapping text/*, others per
/// config; is-composing and IMDN are not stored).
pub fn classify(content_type: &str, body: &[u8], extra_types: &[String]) -> Classified {
    let media = media_type(content_type);
    if let Some(what) = is_notification(&media) {
        return Classified::Ignore(what);
    }
    if media == "message/cpim" {
        let cpim = match CpimMessage::parse(body) {
            Ok(c) => c,
            Err(e) => return Classified::Malformed(format!("bad CPIM: {e}")),
        };
        let inner = media_type(cpim.content_type().unwrap_or("text/plain"));
        if let Some(what) = is_notification(&inner) {
            return Classified::Ignore(what);
        }
        if !is_storable(&inner, extra_types) {
            return Classified::Unsupported(inner);
        }
        return Classified::Store { cpim: Some(cpim) };
    }
    if is_storable(&media, extra_types) {
        Classified::Store { cpim: None }
    } else {
        Classified::Unsupported(media)
    }
}

/// The mailbox and the sender of a deposit, with their AORs rendered once: a session stores
/// many messages, and rendering an AOR (escaping, parameters) per message showed in profiles.
#[derive(Debug)]
pub struct Parties<'a> {
    pub mailbox: String,
    pub sender: &'a AssertedIdentity,
    pub sender_aor: String,
}

impl<'a> Parties<'a> {
    pub fn new(mailbox: &Aor, sender: &'a AssertedIdentity) -> Self {
        Parties {
            mailbox: mailbox.to_string(),
            sender,
            sender_aor: sender.aor.to_string(),
        }
    }
}

/// The row for a deposited body. The sender is the SIP-asserted caller; a CPIM From naming
/// someone else is logged and not believed (SPEC §1).
pub fn new_message(
    parties: &Parties<'_>,
    recipient: &str,
    content_type: &str,
    body: Vec<u8>,
    cpim: Option<&CpimMessage>,
    source: Source,
) -> NewMessage {
    let sender = parties.sender;
    let mut message_id = None;
    let mut sender_time = None;
    let mut inner_content_type = None;
    let mut subject = None;
    if let Some(c) = cpim {
        if let Some(from) = c.from() {
            let claimed = Aor::parse(&from.uri).ok();
            if claimed.as_ref() != Some(&sender.aor) {
                tracing::warn!(
                    mailbox = parties.mailbox,
                    sender = parties.sender_aor,
                    cpim_from = %from.uri,
                    "CPIM From names someone else; storing the SIP-asserted sender"
                );
            }
        }
        message_id = c.imdn_message_id().map(str::to_string);
        sender_time = c.datetime().map(|d| d.with_timezone(&Utc));
        inner_content_type = c.content_type().map(str::to_string);
        subject = c.subjects().first().map(|(_, s)| s.to_string());
    }
    NewMessage {
        mailbox: parties.mailbox.clone(),
        sender_aor: parties.sender_aor.clone(),
        sender_name: sender.display_name.clone(),
        sender_verified: sender.trusted,
        recipient: recipient.to_string(),
        content_type: content_type.to_string(),
        inner_content_type,
        body,
        message_id,
        sender_time,
        received_at: Utc::now(),
        source,
        urgent: false,
        subject,
    }
}

/// Whether the mailbox can take another message at all (checked before answering).
async fn mailbox_is_full(app: &App, mailbox: &str) -> bool {
    match app.store.counts(mailbox).await {
        Ok(c) => c.new + c.old >= app.config.store.max_messages_per_mailbox,
        Err(_) => false,
    }
}

/// The MSRP status for a refused deposit (RFC 4975 §7.3 codes).
fn msrp_status_for(e: &StoreError) -> u16 {
    match e {
        StoreError::Limit(LimitExceeded::MessageTooLarge { .. }) => 413,
        StoreError::Limit(_) => 403,
        _ => 500,
    }
}

/// Handles a chat INVITE that is not to the fetch URI.
pub async fn handle_invite(
    app: Arc<App>,
    invite: ServerInvite,
    identity: Option<AssertedIdentity>,
) {
    let call_id = call_id_of(invite.request());
    let peer = invite.source().addr;
    let Some(identity) = identity else {
        tracing::info!(call_id, peer = %peer, "deposit refused: no usable From (400)");
        chat::refuse(invite, 400, Vec::new());
        return;
    };
    if !identity.trusted && !app.config.deposit.accept_untrusted {
        tracing::info!(call_id, peer = %peer, "deposit refused: source is not a trusted proxy (403)");
        chat::refuse(
            invite,
            403,
            vec![app.warning("deposits are accepted only through the proxy")],
        );
        return;
    }
    let Some(mailbox) = mailbox_of(&app, invite.request()) else {
        tracing::info!(call_id, peer = %peer, "deposit refused: no mailbox in the Request-URI (404)");
        chat::refuse(invite, 404, Vec::new());
        return;
    };
    let parties = Parties::new(&mailbox, &identity);
    let full = mailbox_is_full(&app, &parties.mailbox).await;
    if full && app.config.deposit.mailbox_full == MailboxFullPolicy::Reject {
        tracing::info!(call_id, mailbox = %mailbox, peer = %peer, "deposit refused: mailbox full (486)");
        chat::refuse(
            invite,
            486,
            vec![
                app.warning("mailbox full"),
                (
                    "Reason".into(),
                    "SIP;cause=486;text=\"mailbox full\"".into(),
                ),
            ],
        );
        return;
    }
    if let Err(headers) =
        crate::limits::check_deposit_rate(&app, &parties.sender_aor, peer, "chat INVITE", false)
    {
        chat::refuse(invite, 486, headers);
        return;
    }
    let recipient = sip_core::headers::header_value(&invite.request().headers, "To")
        .and_then(|t| Aor::parse(&t).ok())
        .map_or_else(|| parties.mailbox.clone(), |a| a.to_string());
    // Boxed: the answer's state (SDP, MSRP set-up) is freed once the session runs.
    let Some(leg) = Box::pin(chat::answer(&app, invite, &call_id)).await else {
        return;
    };
    let _active = METRICS.deposit_session();
    tracing::info!(
        call_id,
        mailbox = %mailbox,
        peer = %peer,
        sender = %identity.aor,
        verified = identity.trusted,
        "deposit session started"
    );
    let mut leg = leg;
    let (stored, reason) = run_session(&app, &mut leg, &parties, &recipient, full).await;
    leg.session.close();
    tracing::info!(call_id, mailbox = %mailbox, peer = %peer, stored, reason, "deposit session ended");
}

/// The greeting as the called user (CPIM when the caller takes it).
fn greeting(leg: &ChatLeg, parties: &Parties<'_>, text: &str) -> (String, Bytes) {
    let plain = "text/plain;charset=UTF-8";
    if leg.accepts_cpim() {
        let cpim = CpimMessage::new(
            &CpimAddress::new(None, parties.mailbox.clone()),
            &CpimAddress::new(
                parties.sender.display_name.as_deref(),
                parties.sender_aor.clone(),
            ),
            Some(Utc::now().fixed_offset()),
            plain,
            Bytes::copy_from_slice(text.as_bytes()),
        );
        ("message/cpim".to_string(), cpim.to_bytes())
    } else {
        (plain.to_string(), Bytes::copy_from_slice(text.as_bytes()))
    }
}

async fn run_session(
    app: &Arc<App>,
    leg: &mut ChatLeg,
    parties: &Parties<'_>,
    recipient: &str,
    full: bool,
) -> (u64, &'static str) {
    let idle = app.config.idle_timeout();
    let mut deadline = Instant::now() + idle;
    let mut stored = 0u64;
    let mut greeted = false;
    // Commits in flight, oldest first, polled by this task: the store commits a session's rows
    // in the order they were queued, so the oldest is always the next to finish and the 200s
    // leave in order (no task per message).
    let mut committing: VecDeque<Commit> = VecDeque::new();
    // What every "message stored" line of this session repeats, formatted once.
    let about = Arc::new(StoredLine {
        call_id: leg.call_id.clone(),
        mailbox: parties.mailbox.clone(),
        peer: leg.peer.to_string(),
        sender: parties.sender_aor.clone(),
    });
    let reason = loop {
        tokio::select! {
            ev = leg.dialog.next_event() => match ev {
                Some(DialogEvent::Ack) | Some(DialogEvent::ReInvite) => {}
                Some(DialogEvent::Bye) => break "caller hung up",
                Some(DialogEvent::Cancelled) => break "cancelled",
                Some(DialogEvent::Terminated(_)) | None => break "dialog ended",
            },
            done = oldest(&mut committing), if !committing.is_empty() => {
                committing.pop_front();
                if done {
                    stored += 1;
                }
            }
            ev = leg.session.next_event() => match ev {
                Some(SessionEvent::Bound) => {
                    if !greeted {
                        greeted = true;
                        let text = if full {
                            format!("{} (the mailbox is full: nothing can be kept)", app.config.deposit.greeting)
                        } else {
                            app.config.deposit.greeting.clone()
                        };
                        let (ct, body) = greeting(leg, parties, &text);
                        let sender = leg.session.sender();
                        let call_id = leg.call_id.clone();
                        tokio::spawn(async move {
                            if let Err(e) = sender.send(&ct, body).await {
                                tracing::debug!(call_id, error = %e, "greeting not delivered");
                            }
                        });
                    }
                }
                Some(SessionEvent::Message(m)) => {
                    deadline = Instant::now() + idle;
                    // Bounded pipeline (`limits.max_pending_sends`): past the limit, wait for
                    // the oldest commit first; meanwhile the session stops reading its
                    // connection (back-pressure).
                    if committing.len() >= app.config.limits.max_pending_sends {
                        if oldest(&mut committing).await {
                            stored += 1;
                        }
                        committing.pop_front();
                    }
                    if let Some(work) = store_message(app, leg, parties, recipient, &about, *m) {
                        committing.push_back(Box::pin(work));
                    }
                }
                Some(SessionEvent::Closed(_)) | None => {
                    leg.hang_up().await;
                    break "MSRP connection closed";
                }
            },
            // A fresh timer per turn of the loop: one kept for the whole session (moved when
            // it fires early) cost 2 KiB more RSS per held session, measured.
            () = tokio::time::sleep_until(deadline) => {
                leg.hang_up().await;
                break "idle timeout";
            }
            () = app.shutdown.cancelled() => {
                leg.hang_up().await;
                break "server shutting down";
            }
        }
    };
    // Every message taken in is answered before the session is reported ended.
    while let Some(mut work) = committing.pop_front() {
        if work.as_mut().await {
            stored += 1;
        }
    }
    (stored, reason)
}

/// The commit-and-answer of one message (true when stored).
type Commit = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Resolves when the oldest commit in flight has finished (pending forever when none is).
fn oldest(committing: &mut VecDeque<Commit>) -> impl Future<Output = bool> + '_ {
    std::future::poll_fn(move |cx| match committing.front_mut() {
        Some(work) => work.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

/// The session's part of its "message stored" log lines.
struct StoredLine {
    call_id: String,
    mailbox: String,
    peer: String,
    sender: String,
}

/// Classifies one complete message and queues its insert at once (so a session's messages
/// are stored in arrival order while several commits are in flight). Returns the rest of the
/// work — wait for the commit, then answer 200 — or `None` when it was answered already
/// (not storable).
fn store_message(
    app: &Arc<App>,
    leg: &ChatLeg,
    parties: &Parties<'_>,
    recipient: &str,
    about: &Arc<StoredLine>,
    m: IncomingMessage,
) -> Option<impl std::future::Future<Output = bool> + Send + 'static> {
    let IncomingMessage {
        content_type,
        body,
        responder,
        received_at,
        ..
    } = m;
    let cpim = match classify(&content_type, &body, &app.config.deposit.extra_types) {
        Classified::Store { cpim } => cpim,
        Classified::Ignore(what) => {
            tracing::debug!(call_id = %leg.call_id, what, "notification answered, not stored");
            responder.accept();
            return None;
        }
        Classified::Unsupported(t) => {
            tracing::info!(call_id = %leg.call_id, mailbox = parties.mailbox, peer = %leg.peer, content_type = t, "message refused: type not stored (415)");
            METRICS.refused(Refused::Message, 415);
            responder.reject(415);
            return None;
        }
        Classified::Malformed(why) => {
            tracing::info!(call_id = %leg.call_id, mailbox = parties.mailbox, peer = %leg.peer, why, "message refused (400)");
            METRICS.refused(Refused::Message, 400);
            responder.reject(400);
            return None;
        }
    };
    // RFC 4975 §7.3.2: 403, the action is not allowed (for now: the caller's rate).
    if crate::limits::check_deposit_rate(app, &parties.sender_aor, leg.peer, "MSRP SEND", true)
        .is_err()
    {
        METRICS.refused(Refused::Message, 403);
        responder.reject(403);
        return None;
    }
    let bytes = body.len();
    let row = new_message(
        parties,
        recipient,
        &content_type,
        body.to_vec(),
        cpim.as_ref(),
        Source::Msrp,
    );
    let started = std::time::Instant::now();
    let committed = app.store.insert(row);
    let app = app.clone();
    let about = about.clone();
    Some(async move {
        let StoredLine {
            call_id,
            mailbox,
            peer,
            sender,
        } = &*about;
        match committed.await {
            Ok(id) => {
                METRICS.stored(Source::Msrp, bytes);
                responder.accept();
                METRICS.msrp_answered(received_at.elapsed());
                tracing::info!(
                    call_id = call_id.as_str(),
                    mailbox = mailbox.as_str(),
                    peer = peer.as_str(),
                    sender = sender.as_str(),
                    bytes,
                    id = id.0,
                    commit_ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
                    "message stored"
                );
                app.mailbox_changed(mailbox);
                let _ = app.deposits.send(mailbox.clone());
                true
            }
            Err(e) => {
                let status = msrp_status_for(&e);
                if status == 500 {
                    tracing::error!(call_id, mailbox, error = %e, "store failed; answered MSRP 500. Check disk space and the database file");
                } else {
                    tracing::info!(call_id, mailbox, peer = %peer, why = %e, status, "message refused by a limit");
                    METRICS.refused(Refused::Message, status);
                }
                responder.reject(status);
                false
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<Fut>(
        _: impl FnOnce(Arc<App>, ServerInvite, Option<AssertedIdentity>) -> Fut,
    ) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn a_held_deposit_session_task_stays_small() {
        // The task of every held deposit session is at least this big for the session's whole
        // life (it was 14.9 KB while BYE's client transaction was inlined: 12 KiB of RSS per
        // held session). Box the large futures of rarely taken awaits.
        let size = future_size(handle_invite);
        assert!(
            size <= 4096,
            "deposit::handle_invite future is {size} bytes"
        );
    }
}
