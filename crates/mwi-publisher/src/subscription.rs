//! The RFC 6665 notifier side of one `message-summary` subscription (one dialog), sans-IO,
//! and the admission check for an incoming SUBSCRIBE. The binary owns the dialog and the
//! NOTIFY transactions; this decides what to answer, what to notify and when it ends.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::summary::CONTENT_TYPE;

/// The event package (RFC 3842 §3.1).
pub const EVENT_PACKAGE: &str = "message-summary";

/// Subscription durations accepted by the notifier (config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// Shorter requests are refused with 423 and this Min-Expires.
    pub min_expires: u32,
    /// Longer requests are shortened to this (RFC 6665 §4.2.1.1 allows shortening).
    pub max_expires: u32,
    /// Used when SUBSCRIBE has no Expires: one hour (RFC 3842 §3.4).
    pub default_expires: u32,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 86_400,
            default_expires: 3600,
        }
    }
}

/// What the binary knows about an incoming SUBSCRIBE, for [`admit_subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeRequest<'a> {
    /// The Event header value (package and parameters), `None` when absent.
    pub event: Option<&'a str>,
    /// All Accept header values joined by commas; `None` when there is no Accept header.
    pub accept: Option<&'a str>,
    /// The subscriber's identity as asserted by a trusted proxy (RFC 3325), normalised AoR;
    /// `None` when the source is not a trusted proxy or asserted nothing.
    pub asserted_identity: Option<&'a str>,
    /// The mailbox the subscription is for, normalised AoR.
    pub mailbox: &'a str,
}

/// Why a SUBSCRIBE is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeRejection {
    /// Event is not `message-summary` (RFC 6665 §4.2.1.1): 489 with `Allow-Events`.
    #[error("bad event")]
    BadEvent,
    /// Accept does not include the summary type (RFC 3261 §21.4.7): 406.
    #[error("summary type not acceptable")]
    NotAcceptable,
    /// The subscriber is not the mailbox owner; nothing about the mailbox is revealed: 403.
    #[error("forbidden")]
    Forbidden,
    /// Expires below the minimum (RFC 6665 §4.2.1.1): 423 with Min-Expires.
    #[error("interval too brief, at least {min_expires} s")]
    IntervalTooBrief {
        /// Min-Expires to send.
        min_expires: u32,
    },
    /// A refresh for a subscription that has ended (RFC 6665 §4.2.1.2): 481.
    #[error("subscription does not exist")]
    DoesNotExist,
}

impl SubscribeRejection {
    /// The SIP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadEvent => 489,
            Self::NotAcceptable => 406,
            Self::Forbidden => 403,
            Self::IntervalTooBrief { .. } => 423,
            Self::DoesNotExist => 481,
        }
    }
}

/// Decides whether a SUBSCRIBE may create a subscription: the package first (489), then the
/// body type (406), then the owner check (403), so a stranger learns nothing about a mailbox.
pub fn admit_subscribe(request: &SubscribeRequest<'_>) -> Result<(), SubscribeRejection> {
    let package = request
        .event
        .and_then(|e| e.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if !package.eq_ignore_ascii_case(EVENT_PACKAGE) {
        return Err(SubscribeRejection::BadEvent);
    }
    if let Some(accept) = request.accept {
        let acceptable = accept.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case(CONTENT_TYPE)
                || media.eq_ignore_ascii_case("application/*")
                || media == "*/*"
        });
        if !acceptable {
            return Err(SubscribeRejection::NotAcceptable);
        }
    }
    match request.asserted_identity {
        Some(identity) if identity == request.mailbox => Ok(()),
        _ => Err(SubscribeRejection::Forbidden),
    }
}

/// Why a subscription ended (RFC 6665 §4.1.3 reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationReason {
    /// Expired, or the subscriber unsubscribed with `Expires: 0` (the subscription ran out
    /// of time either way; re-subscribing is allowed).
    Timeout,
    /// The notifier ended it (shutdown); the subscriber may re-subscribe at once.
    Deactivated,
    /// The resource no longer exists.
    Noresource,
}

impl TerminationReason {
    /// The reason code token.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Deactivated => "deactivated",
            Self::Noresource => "noresource",
        }
    }
}

/// The `Subscription-State` header of a NOTIFY (RFC 6665 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    /// `active;expires=N`.
    Active {
        /// Seconds left.
        expires: u32,
    },
    /// `terminated;reason=R`.
    Terminated {
        /// Reason code.
        reason: TerminationReason,
    },
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Active { expires } => write!(f, "active;expires={expires}"),
            Self::Terminated { reason } => write!(f, "terminated;reason={}", reason.as_str()),
        }
    }
}

/// A NOTIFY to send in the subscription's dialog (the binary adds `Event: message-summary` and
/// `Content-Type: application/simple-message-summary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRequest {
    /// `Subscription-State`.
    pub subscription_state: SubscriptionState,
    /// The current summary body.
    pub body: Vec<u8>,
}

/// What happened, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionEvent {
    /// The subscription is over; drop it.
    Terminated {
        /// The reason sent in the final NOTIFY, or `None` when a NOTIFY failed.
        reason: Option<TerminationReason>,
        /// The failing NOTIFY's status (`None` for a timeout or no failure).
        notify_status: Option<u16>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Active,
    /// The final NOTIFY is to be sent (or in flight when `final_sent`).
    Terminating {
        reason: TerminationReason,
        final_sent: bool,
    },
    Terminated,
}

/// One subscription (one dialog) to a mailbox's summary.
#[derive(Debug)]
pub struct Subscription {
    config: SubscriptionConfig,
    expires_at: Instant,
    body: Vec<u8>,
    /// The body changed (or the subscription was accepted or refreshed) since the last NOTIFY.
    dirty: bool,
    in_flight: bool,
    phase: Phase,
    events: VecDeque<SubscriptionEvent>,
}

impl Subscription {
    /// Accepts an admitted SUBSCRIBE (see [`admit_subscribe`]) with its `Expires` and the
    /// current summary body; returns the subscription and the Expires for the 200. An
    /// `Expires: 0` is a fetch (RFC 6665 §4.2.1.1): one NOTIFY with the state, then the end.
    pub fn accept(
        config: SubscriptionConfig,
        requested_expires: Option<u32>,
        body: Vec<u8>,
        now: Instant,
    ) -> Result<(Self, u32), SubscribeRejection> {
        let granted = grant(&config, requested_expires)?;
        let phase = if granted == 0 {
            Phase::Terminating {
                reason: TerminationReason::Timeout,
                final_sent: false,
            }
        } else {
            Phase::Active
        };
        let subscription = Self {
            config,
            expires_at: now + Duration::from_secs(granted.into()),
            body,
            // RFC 6665 §4.2.1.1: NOTIFY immediately after accepting.
            dirty: true,
            in_flight: false,
            phase,
            events: VecDeque::new(),
        };
        Ok((subscription, granted))
    }

    /// A refresh SUBSCRIBE in the dialog; returns the Expires for the 200. `Expires: 0`
    /// unsubscribes: a final NOTIFY `terminated` follows.
    pub fn on_refresh(
        &mut self,
        requested_expires: Option<u32>,
        now: Instant,
    ) -> Result<u32, SubscribeRejection> {
        self.handle_timeout(now);
        if self.phase != Phase::Active {
            return Err(SubscribeRejection::DoesNotExist);
        }
        let granted = grant(&self.config, requested_expires)?;
        if granted == 0 {
            self.phase = Phase::Terminating {
                reason: TerminationReason::Timeout,
                final_sent: false,
            };
        } else {
            self.expires_at = now + Duration::from_secs(granted.into());
            // RFC 6665 §4.2.1.2: a refresh is answered with a NOTIFY of the current state.
            self.dirty = true;
        }
        Ok(granted)
    }

    /// The mailbox changed: NOTIFY the new body (coalesced with any change not yet sent).
    pub fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
        if self.phase == Phase::Active {
            self.dirty = true;
        }
    }

    /// Ends the subscription from the notifier's side (shutdown, mailbox removed).
    pub fn terminate(&mut self, reason: TerminationReason) {
        if self.phase == Phase::Active {
            self.phase = Phase::Terminating {
                reason,
                final_sent: false,
            };
        }
    }

    /// The next NOTIFY, if one is due; at most one is in flight.
    pub fn poll_notify(&mut self, now: Instant) -> Option<NotifyRequest> {
        self.handle_timeout(now);
        if self.in_flight {
            return None;
        }
        let subscription_state = match self.phase {
            Phase::Active if self.dirty => {
                let left = self.expires_at.saturating_duration_since(now);
                // Round up so a NOTIFY never claims less time than the 200 granted.
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                SubscriptionState::Active {
                    expires: u32::try_from(secs).unwrap_or(u32::MAX),
                }
            }
            Phase::Terminating {
                reason,
                final_sent: false,
            } => {
                self.phase = Phase::Terminating {
                    reason,
                    final_sent: true,
                };
                SubscriptionState::Terminated { reason }
            }
            _ => return None,
        };
        self.dirty = false;
        self.in_flight = true;
        Some(NotifyRequest {
            subscription_state,
            body: self.body.clone(),
        })
    }

    /// The final response to the NOTIFY in flight. Any non-2xx (481 included) ends the
    /// subscription (RFC 6665 §4.2.2).
    pub fn on_notify_response(&mut self, status: u16, now: Instant) {
        if !self.in_flight || status < 200 {
            return;
        }
        self.in_flight = false;
        if !(200..300).contains(&status) {
            self.finish(None, Some(status));
            return;
        }
        if let Phase::Terminating {
            reason,
            final_sent: true,
        } = self.phase
        {
            self.finish(Some(reason), None);
        }
        self.handle_timeout(now);
    }

    /// The NOTIFY in flight timed out: the subscription ends (RFC 6665 §4.2.2).
    pub fn on_notify_timeout(&mut self) {
        if self.in_flight {
            self.in_flight = false;
            self.finish(None, None);
        }
    }

    /// Runs the expiry timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Active && now >= self.expires_at {
            self.phase = Phase::Terminating {
                reason: TerminationReason::Timeout,
                final_sent: false,
            };
        }
    }

    /// When the subscription expires, while it is active.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.phase == Phase::Active).then_some(self.expires_at)
    }

    /// The next event for the log.
    pub fn poll_event(&mut self) -> Option<SubscriptionEvent> {
        self.events.pop_front()
    }

    /// The subscription is over and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.phase == Phase::Terminated
    }

    fn finish(&mut self, reason: Option<TerminationReason>, notify_status: Option<u16>) {
        if self.phase != Phase::Terminated {
            self.phase = Phase::Terminated;
            self.events.push_back(SubscriptionEvent::Terminated {
                reason,
                notify_status,
            });
        }
    }
}

/// The duration to grant: default when absent, 0 kept (unsubscribe/fetch), below the minimum
/// refused, above the maximum shortened.
fn grant(config: &SubscriptionConfig, requested: Option<u32>) -> Result<u32, SubscribeRejection> {
    match requested.unwrap_or(config.default_expires) {
        0 => Ok(0),
        n if n < config.min_expires => Err(SubscribeRejection::IntervalTooBrief {
            min_expires: config.min_expires,
        }),
        n => Ok(n.min(config.max_expires)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BOB: &str = "sip:bob@example.com";

    fn request<'a>() -> SubscribeRequest<'a> {
        SubscribeRequest {
            event: Some("message-summary"),
            accept: None,
            asserted_identity: Some(BOB),
            mailbox: BOB,
        }
    }

    fn config() -> SubscriptionConfig {
        SubscriptionConfig {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
        }
    }

    #[test]
    fn admission() {
        assert_eq!(admit_subscribe(&request()), Ok(()));
        let ok_accept = SubscribeRequest {
            accept: Some("application/pidf+xml, Application/Simple-Message-Summary;q=0.5"),
            event: Some("message-summary;id=7"),
            ..request()
        };
        assert_eq!(admit_subscribe(&ok_accept), Ok(()));
        let wildcard = SubscribeRequest {
            accept: Some("*/*"),
            ..request()
        };
        assert_eq!(admit_subscribe(&wildcard), Ok(()));

        for event in [None, Some("presence"), Some("message-summary-x")] {
            let r = SubscribeRequest { event, ..request() };
            assert_eq!(admit_subscribe(&r).map_err(|e| e.status()), Err(489));
        }
        for accept in ["application/pidf+xml", ""] {
            let r = SubscribeRequest {
                accept: Some(accept),
                ..request()
            };
            assert_eq!(admit_subscribe(&r).map_err(|e| e.status()), Err(406));
        }
        for identity in [None, Some("sip:mallory@example.com")] {
            let r = SubscribeRequest {
                asserted_identity: identity,
                ..request()
            };
            assert_eq!(admit_subscribe(&r).map_err(|e| e.status()), Err(403));
        }
    }

    #[test]
    fn expires_is_bounded() {
        let t0 = Instant::now();
        let body = b"Messages-Waiting: no\r\n".to_vec();
        let short = Subscription::accept(config(), Some(30), body.clone(), t0);
        assert_eq!(
            short.err(),
            Some(SubscribeRejection::IntervalTooBrief { min_expires: 60 })
        );
        let (_, granted) = Subscription::accept(config(), Some(100_000), body.clone(), t0).unwrap();
        assert_eq!(granted, 7200);
        let (_, granted) = Subscription::accept(config(), None, body, t0).unwrap();
        assert_eq!(granted, 3600);
    }

    #[test]
    fn lifecycle_notify_change_refresh_unsubscribe() {
        let t0 = Instant::now();
        let (mut s, granted) =
            Subscription::accept(config(), Some(600), b"one".to_vec(), t0).unwrap();
        assert_eq!(granted, 600);
        let first = s.poll_notify(t0).unwrap();
        assert_eq!(first.subscription_state.to_string(), "active;expires=600");
        assert_eq!(first.body, b"one");
        assert_eq!(s.poll_notify(t0), None);

        // Changes while a NOTIFY is in flight coalesce into one with the latest body.
        for n in 0..100 {
            s.set_body(format!("change {n}").into_bytes());
            assert_eq!(s.poll_notify(t0), None, "one NOTIFY in flight");
        }
        let t1 = t0 + Duration::from_secs(100);
        s.on_notify_response(200, t1);
        let second = s.poll_notify(t1).unwrap();
        assert_eq!(second.body, b"change 99");
        assert_eq!(second.subscription_state.to_string(), "active;expires=500");
        s.on_notify_response(200, t1);
        assert_eq!(s.poll_notify(t1), None);

        // Refresh extends and triggers a NOTIFY.
        let t2 = t0 + Duration::from_secs(550);
        assert_eq!(s.on_refresh(Some(600), t2), Ok(600));
        assert_eq!(s.poll_timeout(), Some(t2 + Duration::from_secs(600)));
        let third = s.poll_notify(t2).unwrap();
        assert_eq!(third.subscription_state.to_string(), "active;expires=600");
        s.on_notify_response(200, t2);
        assert_eq!(
            s.on_refresh(Some(10), t2),
            Err(SubscribeRejection::IntervalTooBrief { min_expires: 60 })
        );

        // Unsubscribe: final NOTIFY terminated, then the end.
        assert_eq!(s.on_refresh(Some(0), t2), Ok(0));
        assert_eq!(s.poll_timeout(), None);
        let last = s.poll_notify(t2).unwrap();
        assert_eq!(
            last.subscription_state.to_string(),
            "terminated;reason=timeout"
        );
        assert!(!s.is_terminated());
        s.on_notify_response(200, t2);
        assert!(s.is_terminated());
        assert_eq!(
            s.poll_event(),
            Some(SubscriptionEvent::Terminated {
                reason: Some(TerminationReason::Timeout),
                notify_status: None
            })
        );
        assert_eq!(s.poll_notify(t2), None);
        assert_eq!(
            s.on_refresh(Some(600), t2),
            Err(SubscribeRejection::DoesNotExist)
        );
    }

    #[test]
    fn expiry_sends_terminated_timeout_after_the_notify_in_flight() {
        let t0 = Instant::now();
        let (mut s, _) = Subscription::accept(config(), Some(60), b"x".to_vec(), t0).unwrap();
        s.poll_notify(t0).unwrap();
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(s.poll_timeout(), Some(t1));
        s.handle_timeout(t1);
        assert_eq!(s.poll_notify(t1), None, "waits for the NOTIFY in flight");
        s.on_notify_response(200, t1);
        let last = s.poll_notify(t1).unwrap();
        assert_eq!(
            last.subscription_state,
            SubscriptionState::Terminated {
                reason: TerminationReason::Timeout
            }
        );
        s.on_notify_response(200, t1);
        assert!(s.is_terminated());
    }

    #[test]
    fn notify_481_or_timeout_ends_it() {
        let t0 = Instant::now();
        let (mut s, _) = Subscription::accept(config(), None, b"x".to_vec(), t0).unwrap();
        s.poll_notify(t0).unwrap();
        s.on_notify_response(481, t0);
        assert!(s.is_terminated());
        assert_eq!(
            s.poll_event(),
            Some(SubscriptionEvent::Terminated {
                reason: None,
                notify_status: Some(481)
            })
        );
        s.set_body(b"y".to_vec());
        assert_eq!(s.poll_notify(t0), None);

        let (mut s, _) = Subscription::accept(config(), None, b"x".to_vec(), t0).unwrap();
        s.poll_notify(t0).unwrap();
        s.on_notify_response(180, t0);
        assert!(!s.is_terminated(), "provisional is not an outcome");
        s.on_notify_timeout();
        assert!(s.is_terminated());
    }

    #[test]
    fn expires_zero_on_accept_is_a_fetch() {
        let t0 = Instant::now();
        let (mut s, granted) = Subscription::accept(config(), Some(0), b"x".to_vec(), t0).unwrap();
        assert_eq!(granted, 0);
        let only = s.poll_notify(t0).unwrap();
        assert_eq!(
            only.subscription_state.to_string(),
            "terminated;reason=timeout"
        );
        assert_eq!(only.body, b"x");
        s.on_notify_response(200, t0);
        assert!(s.is_terminated());
    }

    #[test]
    fn notifier_can_deactivate() {
        let t0 = Instant::now();
        let (mut s, _) = Subscription::accept(config(), None, b"x".to_vec(), t0).unwrap();
        s.terminate(TerminationReason::Deactivated);
        let last = s.poll_notify(t0).unwrap();
        assert_eq!(
            last.subscription_state.to_string(),
            "terminated;reason=deactivated"
        );
    }
}
