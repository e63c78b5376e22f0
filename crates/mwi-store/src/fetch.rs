//! Fetch (SPEC §3): the user calls the fetch URI; her mailbox (chosen by asserted identity)
//! goes out oldest first as MSRP SENDs with a window; each message leaves the store only after
//! its 200; then BYE and a last PUBLISH. Claims make two concurrent fetches of one mailbox
//! deliver disjoint messages: the second takes what the first has not claimed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fetch_endpoint::render::{accepts_cpim, render, RenderConfig, StoredView};
use fetch_endpoint::Delivery;
use message_store::{StoreError, StoredId, StoredMessage};
use msrp_session::{SendError, SessionEvent};
use sip_core::{AssertedIdentity, DialogEvent, ServerInvite};
use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use crate::chat::{self, ChatLeg};
use crate::server::{call_id_of, App};

/// How long the fetcher has to connect (or bind) its MSRP session after the 200.
const BIND_WAIT: Duration = Duration::from_secs(30);

/// Handles an INVITE to the fetch URI from a trusted proxy.
pub async fn handle_invite(
    app: Arc<App>,
    invite: ServerInvite,
    mailbox: String,
    identity: Option<AssertedIdentity>,
) {
    let call_id = call_id_of(invite.request());
    let peer = invite.source().addr;
    let Some(mut leg) = chat::answer(&app, invite, &call_id).await else {
        return;
    };
    let _active = crate::metrics::METRICS.fetch_session();
    tracing::info!(
        call_id,
        mailbox,
        peer = %peer,
        display_name = identity.and_then(|i| i.display_name).unwrap_or_default(),
        "fetch started"
    );
    if !wait_bound(&app, &mut leg).await {
        tracing::info!(call_id, mailbox, peer = %peer, "fetch ended before the MSRP session was bound");
        leg.hang_up().await;
        return;
    }
    let outcome = deliver(&app, &mut leg, &mailbox).await;
    match outcome {
        Outcome::Finished { delivered } => {
            if delivered == 0 {
                let text = app.config.fetch.no_messages_text.clone();
                let sent = tokio::time::timeout(
                    Duration::from_secs(5),
                    leg.session
                        .send("text/plain;charset=UTF-8", text.into_bytes().into()),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    tracing::debug!(call_id, "no-messages notice not acknowledged");
                }
            }
            leg.hang_up().await;
            tracing::info!(call_id, mailbox, peer = %peer, delivered, "fetch completed");
        }
        Outcome::Interrupted {
            delivered,
            released,
            reason,
            hang_up,
        } => {
            tracing::info!(call_id, mailbox, peer = %peer, delivered, left_waiting = released, reason, "fetch interrupted");
            // Republish before the BYE, which may wait for a peer that is gone.
            app.mailbox_changed(&mailbox);
            if hang_up {
                leg.hang_up().await;
            } else {
                leg.session.close();
            }
            return;
        }
    }
    app.mailbox_changed(&mailbox);
}

/// Waits for the fetcher's MSRP session to be bound.
async fn wait_bound(app: &App, leg: &mut ChatLeg) -> bool {
    let deadline = tokio::time::Instant::now() + BIND_WAIT;
    loop {
        tokio::select! {
            ev = leg.session.next_event() => match ev {
                Some(SessionEvent::Bound) => return true,
                Some(SessionEvent::Message(m)) => m.responder.accept(),
                Some(SessionEvent::Closed(_)) | None => return false,
            },
            ev = leg.dialog.next_event() => match ev {
                Some(DialogEvent::Ack) | Some(DialogEvent::ReInvite) => {}
                _ => return false,
            },
            () = tokio::time::sleep_until(deadline) => return false,
            () = app.shutdown.cancelled() => return false,
        }
    }
}

enum Outcome {
    Finished {
        delivered: u64,
    },
    Interrupted {
        delivered: u64,
        released: usize,
        reason: &'static str,
        /// We end the dialog (the fetcher did not).
        hang_up: bool,
    },
}

type Claim = JoinHandle<Result<Vec<StoredMessage>, StoreError>>;

/// The delivery loop: claim, send within the window, delete on 200.
async fn deliver(app: &App, leg: &mut ChatLeg, mailbox: &str) -> Outcome {
    let fetch_id = app.next_fetch_id();
    let window = app.config.fetch.window;
    let keep = app.config.fetch.keep_delivered_days > 0;
    let cpim = accepts_cpim(&leg.negotiated.accept_types);
    let render_config = RenderConfig {
        plain_prefix: app.config.fetch.plain_prefix.clone(),
    };
    let mut deposits = app.deposits.subscribe();
    let mut delivery: Delivery<StoredId> = Delivery::new(window);
    let mut claimed: HashMap<StoredId, StoredMessage> = HashMap::new();
    let mut claim: Option<Claim> = None;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(StoredId, Result<(), SendError>)>();
    let mut deletions: JoinSet<Result<usize, StoreError>> = JoinSet::new();
    let mut interrupted: Option<(&'static str, bool)> = None;

    loop {
        if claim.is_none() && delivery.needs_more() {
            delivery.claim_started();
            let store = app.store.clone();
            let mailbox = mailbox.to_string();
            claim = Some(tokio::spawn(async move {
                store.claim(&mailbox, fetch_id, window * 2).await
            }));
        }
        while let Some(id) = delivery.poll_send() {
            let Some(message) = claimed.remove(&id) else {
                continue;
            };
            let m = &message.message;
            let unverified_name;
            let sender_name = if m.sender_verified {
                m.sender_name.as_deref()
            } else {
                unverified_name = format!(
                    "{} (unverified)",
                    m.sender_name.as_deref().unwrap_or(&m.sender_aor)
                );
                Some(unverified_name.as_str())
            };
            let view = StoredView {
                sender_aor: &m.sender_aor,
                sender_name,
                mailbox,
                content_type: &m.content_type,
                body: &m.body,
                message_id: m.message_id.as_deref(),
                sender_time: m.sender_time,
                received_at: m.received_at,
            };
            let out = render(&view, cpim, &render_config);
            // Queued now, so SENDs leave oldest first; awaited on its own task.
            let sent = leg.session.send(&out.content_type, out.body);
            let done = done_tx.clone();
            tokio::spawn(async move {
                let _ = done.send((id, sent.await));
            });
        }
        if delivery.is_finished() {
            break;
        }
        if delivery.is_failed() {
            interrupted.get_or_insert(("a SEND failed", true));
            break;
        }
        tokio::select! {
            r = async { claim.as_mut().expect("guarded by the branch condition").await }, if claim.is_some() => {
                claim = None;
                match r {
                    Ok(Ok(batch)) => {
                        let ids: Vec<StoredId> = batch.iter().map(|m| m.id).collect();
                        for m in batch {
                            claimed.insert(m.id, m);
                        }
                        delivery.on_claimed(ids);
                    }
                    Ok(Err(e)) => {
                        tracing::error!(call_id = %leg.call_id, mailbox, error = %e, "cannot read the mailbox; stopping the fetch. Check the store");
                        delivery.abort();
                    }
                    Err(_) => delivery.abort(),
                }
            }
            Some((id, result)) = done_rx.recv() => {
                let mut acked = Vec::new();
                let mut next = Some((id, result));
                while let Some((id, result)) = next.take() {
                    match result {
                        Ok(()) => {
                            if delivery.on_delivered(&id) {
                                acked.push(id);
                            }
                        }
                        Err(SendError::Closed) => {
                            interrupted.get_or_insert(("MSRP connection lost", true));
                            delivery.on_failed(&id);
                        }
                        Err(e) => {
                            tracing::info!(call_id = %leg.call_id, mailbox, id = id.0, error = %e, "SEND not acknowledged; the rest stays waiting");
                            delivery.on_failed(&id);
                        }
                    }
                    next = done_rx.try_recv().ok();
                }
                if !acked.is_empty() {
                    let store = app.store.clone();
                    deletions.spawn(async move { store.delivered(acked, keep).await });
                }
            }
            r = deposits.recv() => match r {
                Ok(m) if m == mailbox => delivery.on_deposit(),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => delivery.on_deposit(),
                Err(broadcast::error::RecvError::Closed) => {}
            },
            ev = leg.dialog.next_event() => match ev {
                Some(DialogEvent::Ack) | Some(DialogEvent::ReInvite) => {}
                _ => {
                    interrupted = Some(("fetcher hung up", false));
                    delivery.abort();
                }
            },
            ev = leg.session.next_event() => match ev {
                // The fetcher typed something: answered, not stored (it is not a deposit).
                Some(SessionEvent::Message(m)) => m.responder.accept(),
                Some(SessionEvent::Bound) => {}
                Some(SessionEvent::Closed(_)) | None => {
                    interrupted = Some(("MSRP connection lost", true));
                    delivery.abort();
                }
            },
            () = app.shutdown.cancelled() => {
                interrupted = Some(("server shutting down", true));
                delivery.abort();
            }
        }
    }

    if let Some(c) = claim.take() {
        let _ = c.await;
    }
    // Deletions of acknowledged messages finish before the count is published.
    while let Some(r) = deletions.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::error!(call_id = %leg.call_id, mailbox, error = %e, "cannot delete a delivered message; it may be delivered again");
        }
    }
    let delivered = delivery.delivered();
    crate::metrics::METRICS.delivered(delivered);
    match interrupted {
        None => Outcome::Finished { delivered },
        Some((reason, hang_up)) => {
            let released = match app.store.release(fetch_id).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(mailbox, error = %e, "cannot release fetch claims; they are freed at the next start");
                    0
                }
            };
            Outcome::Interrupted {
                delivered,
                released,
                reason,
                hang_up,
            }
        }
    }
}
