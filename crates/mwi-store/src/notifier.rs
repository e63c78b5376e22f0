//! Direct mode (SPEC §2): answer `SUBSCRIBE Event: message-summary` for a mailbox and NOTIFY
//! its summary (RFC 6665). Only the owner may subscribe (asserted identity from a trusted
//! proxy). One task owns every [`Subscription`] state machine; dispatch tasks hand it new
//! subscriptions and refreshes, the deposit and fetch paths hand it mailbox changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use message_store::Store;
use mwi_publisher::{
    admit_subscribe, SubscribeRejection, SubscribeRequest, Subscription, SubscriptionConfig,
    SubscriptionEvent, SubscriptionState,
};
use sip_core::headers::{header_value, header_values};
use sip_core::{Body, ClientError, Event, ServerRequest, ServerSubscription};
use tokio::sync::mpsc;

use crate::mwi::{summary_of, MwiSettings};
use crate::server::{call_id_of, mailbox_of, App};
use crate::timers::TimerQueue;

enum Command {
    Add {
        mailbox: String,
        subscription: Subscription,
        handle: ServerSubscription,
    },
    Refresh {
        dialog_id: String,
        expires: Option<u32>,
        request: ServerRequest,
    },
    NotifyDone {
        dialog_id: String,
        result: Result<u16, ClientError>,
    },
}

/// The notifier's handle: cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    commands: mpsc::UnboundedSender<Command>,
    config: SubscriptionConfig,
    store: Store,
    settings: Arc<MwiSettings>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("notifier command")
    }
}

struct Entry {
    mailbox: String,
    subscription: Subscription,
    handle: ServerSubscription,
}

fn sip_state(state: SubscriptionState) -> sip_core::SubscriptionState {
    match state {
        SubscriptionState::Active { expires } => sip_core::SubscriptionState::active(expires),
        SubscriptionState::Terminated { reason } => {
            sip_core::SubscriptionState::terminated(reason.as_str())
        }
    }
}

fn expires_of(req: &ServerRequest) -> Option<u32> {
    header_value(&req.request().headers, "Expires").and_then(|v| v.trim().parse().ok())
}

async fn reject(req: ServerRequest, why: SubscribeRejection, call_id: &str) {
    let mut headers = Vec::new();
    match why {
        SubscribeRejection::BadEvent => {
            headers.push(("Allow-Events".to_string(), "message-summary".to_string()));
        }
        SubscribeRejection::IntervalTooBrief { min_expires } => {
            headers.push(("Min-Expires".to_string(), min_expires.to_string()));
        }
        _ => {}
    }
    tracing::info!(call_id, status = why.status(), why = %why, "SUBSCRIBE refused");
    crate::metrics::METRICS.refused(crate::metrics::Refused::Subscribe, why.status());
    let _ = req.reply(why.status(), headers, None).await;
}

impl Notifier {
    /// Starts the notifier task; returns its handle and the sender of mailbox changes.
    pub fn spawn(
        store: Store,
        settings: MwiSettings,
        config: &crate::config::Config,
    ) -> (Self, mpsc::UnboundedSender<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        let settings = Arc::new(settings);
        let notifier = Self {
            commands: tx.clone(),
            config: SubscriptionConfig {
                min_expires: config.mwi.subscribe_min_expires,
                max_expires: config.mwi.subscribe_max_expires,
                ..SubscriptionConfig::default()
            },
            store: store.clone(),
            settings: settings.clone(),
        };
        let task = Task {
            store,
            settings,
            entries: HashMap::new(),
            by_mailbox: HashMap::new(),
            timers: TimerQueue::default(),
            commands: tx,
        };
        tokio::spawn(task.run(rx, changes_rx));
        (notifier, changes_tx)
    }

    /// Handles a SUBSCRIBE (new or in-dialog).
    pub async fn handle_subscribe(&self, app: &App, req: ServerRequest) {
        let call_id = call_id_of(req.request());
        if let Some(existing) = req.subscription() {
            let _ = self.commands.send(Command::Refresh {
                dialog_id: existing.dialog_id(),
                expires: expires_of(&req),
                request: req,
            });
            return;
        }
        let source = req.source().addr;
        let identity = app
            .identity(req.request(), source)
            .filter(|i| i.trusted)
            .map(|i| i.aor.to_string());
        let to_fetch_uri = app
            .fetch_uri
            .matches(&sip_core::uri_text(&req.request().uri));
        let mailbox = if to_fetch_uri {
            identity.clone()
        } else {
            mailbox_of(app, req.request()).map(|a| a.to_string())
        };
        let event = header_value(&req.request().headers, "Event");
        let accept = header_values(&req.request().headers, "Accept");
        let accept = (!accept.is_empty()).then(|| accept.join(","));
        let mailbox_str = mailbox.clone().unwrap_or_default();
        let admission = admit_subscribe(&SubscribeRequest {
            event: event.as_deref(),
            accept: accept.as_deref(),
            asserted_identity: identity.as_deref(),
            mailbox: &mailbox_str,
        });
        if let Err(why) = admission {
            return reject(req, why, &call_id).await;
        }
        let summary = match summary_of(&self.store, &self.settings, &mailbox_str).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(call_id, error = %e, "cannot read counts for SUBSCRIBE; check the store");
                let _ = req.reply(500, Vec::new(), None).await;
                return;
            }
        };
        let (subscription, granted) = match Subscription::accept(
            self.config.clone(),
            expires_of(&req),
            summary.to_body(),
            Instant::now(),
        ) {
            Ok(s) => s,
            Err(why) => return reject(req, why, &call_id).await,
        };
        let handle = match req
            .accept_subscription(vec![("Expires".into(), granted.to_string())])
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(call_id, error = %e, "cannot accept SUBSCRIBE");
                return;
            }
        };
        tracing::info!(call_id, mailbox = %mailbox_str, peer = %source, expires = granted, "subscription accepted");
        let _ = self.commands.send(Command::Add {
            mailbox: mailbox_str,
            subscription,
            handle,
        });
    }
}

struct Task {
    store: Store,
    settings: Arc<MwiSettings>,
    entries: HashMap<String, Entry>,
    by_mailbox: HashMap<String, HashSet<String>>,
    timers: TimerQueue,
    commands: mpsc::UnboundedSender<Command>,
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut changes: mpsc::UnboundedReceiver<String>,
    ) {
        loop {
            let sleep = crate::timers::sleep_until(self.timers.next());
            let mut dirty = HashSet::new();
            tokio::select! {
                Some(cmd) = commands.recv() => self.on_command(cmd).await,
                c = changes.recv() => match c {
                    Some(m) => { dirty.insert(m); }
                    None => return,
                },
                () = sleep => {}
            }
            while let Ok(m) = changes.try_recv() {
                dirty.insert(m);
            }
            for mailbox in dirty {
                self.on_change(&mailbox).await;
            }
            self.fire_timers();
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Add {
                mailbox,
                subscription,
                handle,
            } => {
                let id = handle.dialog_id();
                self.by_mailbox
                    .entry(mailbox.clone())
                    .or_default()
                    .insert(id.clone());
                self.entries.insert(
                    id.clone(),
                    Entry {
                        mailbox,
                        subscription,
                        handle,
                    },
                );
                self.drive(&id);
            }
            Command::Refresh {
                dialog_id,
                expires,
                request,
            } => {
                let result = match self.entries.get_mut(&dialog_id) {
                    Some(e) => e.subscription.on_refresh(expires, Instant::now()),
                    None => Err(SubscribeRejection::DoesNotExist),
                };
                let call_id = call_id_of(request.request());
                match result {
                    Ok(granted) => {
                        tracing::info!(call_id, expires = granted, "subscription refreshed");
                        tokio::spawn(async move {
                            let _ = request
                                .reply(200, vec![("Expires".into(), granted.to_string())], None)
                                .await;
                        });
                    }
                    Err(why) => {
                        tokio::spawn(async move { reject(request, why, &call_id).await });
                    }
                }
                self.drive(&dialog_id);
            }
            Command::NotifyDone { dialog_id, result } => {
                if let Some(e) = self.entries.get_mut(&dialog_id) {
                    match result {
                        Ok(status) => e.subscription.on_notify_response(status, Instant::now()),
                        Err(ClientError::NoSuchSubscription) => {
                            e.subscription.on_notify_response(481, Instant::now())
                        }
                        Err(_) => e.subscription.on_notify_timeout(),
                    }
                }
                self.drive(&dialog_id);
            }
        }
    }

    async fn on_change(&mut self, mailbox: &str) {
        let Some(ids) = self.by_mailbox.get(mailbox).cloned() else {
            return;
        };
        let body = match summary_of(&self.store, &self.settings, mailbox).await {
            Ok(s) => s.to_body(),
            Err(e) => {
                tracing::error!(mailbox, error = %e, "cannot read counts to notify; check the store");
                return;
            }
        };
        for id in ids {
            if let Some(e) = self.entries.get_mut(&id) {
                e.subscription.set_body(body.clone());
            }
            self.drive(&id);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        for id in self.timers.pop_due(now) {
            if let Some(e) = self.entries.get_mut(&id) {
                e.subscription.handle_timeout(now);
            }
            self.drive(&id);
        }
    }

    /// Sends a due NOTIFY, logs events, drops a finished subscription, re-arms its timer.
    fn drive(&mut self, id: &str) {
        let now = Instant::now();
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        if let Some(n) = e.subscription.poll_notify(now) {
            let handle = e.handle.clone();
            let commands = self.commands.clone();
            let dialog_id = id.to_string();
            tracing::info!(mailbox = %e.mailbox, state = %n.subscription_state, "NOTIFY sent");
            crate::metrics::METRICS.notify_sent();
            tokio::spawn(async move {
                let result = handle
                    .notify(
                        &Event::new("message-summary"),
                        &sip_state(n.subscription_state),
                        Some(Body {
                            content_type: mwi_publisher::CONTENT_TYPE.to_string(),
                            bytes: n.body,
                        }),
                    )
                    .await;
                let _ = commands.send(Command::NotifyDone { dialog_id, result });
            });
        }
        while let Some(ev) = e.subscription.poll_event() {
            let SubscriptionEvent::Terminated {
                reason,
                notify_status,
            } = ev;
            tracing::info!(mailbox = %e.mailbox, reason = reason.map(|r| r.as_str()), notify_status, "subscription ended");
        }
        if e.subscription.is_terminated() {
            e.handle.remove();
            let mailbox = e.mailbox.clone();
            self.entries.remove(id);
            self.timers.set(id, None);
            if let Some(set) = self.by_mailbox.get_mut(&mailbox) {
                set.remove(id);
                if set.is_empty() {
                    self.by_mailbox.remove(&mailbox);
                }
            }
            return;
        }
        let at = e.subscription.poll_timeout();
        self.timers.set(id, at);
    }
}
