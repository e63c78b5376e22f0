//! The RFC 3903 event publication of one mailbox's message summary, sans-IO: inputs are
//! summaries, PUBLISH outcomes and `now`; outputs are the next PUBLISH, the next timer and
//! events for the log. The binary owns the SIP transaction (and digest retry).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::summary::MessageSummary;

/// The entity-tag a presence server assigns to a publication (RFC 3903 §11.3 `SIP-ETag`),
/// sent back in `SIP-If-Match` (§11.4) to refresh or modify it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipEtag(String);

impl SipEtag {
    /// Wraps an entity-tag as received or as persisted.
    pub fn new(tag: impl Into<String>) -> Self {
        Self(tag.into())
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SipEtag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Configuration of every publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationConfig {
    /// `Expires` asked for, in seconds (RFC 3903 §4.1; config `mwi.expires`, default 3600).
    pub expires: u32,
    /// First retry delay after a timeout, 408 or 5xx.
    pub backoff_initial: Duration,
    /// Cap of the doubling retry delay.
    pub backoff_max: Duration,
    /// Least time between sending one PUBLISH and sending the next for a change (config
    /// `mwi.min_publish_interval_ms`); changes meanwhile coalesce into it. Zero: only the
    /// one-in-flight rule of RFC 3903 usage applies. Retries answering a 412 or 423 are not held.
    pub min_interval: Duration,
}

impl Default for PublicationConfig {
    fn default() -> Self {
        Self {
            expires: 3600,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            min_interval: Duration::from_secs(1),
        }
    }
}

/// A PUBLISH to send (the binary adds Request-URI, To, From, `Event: message-summary`,
/// `Content-Type: application/simple-message-summary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// `SIP-If-Match`: absent on an initial publication (RFC 3903 §4.2).
    pub sip_if_match: Option<SipEtag>,
    /// `Expires` in seconds.
    pub expires: u32,
    /// The full body, also on refreshes: a body-less refresh makes some presence servers
    /// (Kamailio presence_mwi) send watchers an empty NOTIFY.
    pub body: Vec<u8>,
}

/// The final response to a PUBLISH (after the binary's one digest retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Status code.
    pub status: u16,
    /// `SIP-ETag` of a 2xx.
    pub sip_etag: Option<SipEtag>,
    /// `Expires` of a 2xx (the granted duration).
    pub expires: Option<u32>,
    /// `Min-Expires` of a 423.
    pub min_expires: Option<u32>,
}

impl PublishOutcome {
    /// An outcome with only a status code.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            sip_etag: None,
            expires: None,
            min_expires: None,
        }
    }

    /// A 200 with its SIP-ETag and granted Expires.
    pub fn ok(sip_etag: SipEtag, expires: u32) -> Self {
        Self {
            status: 200,
            sip_etag: Some(sip_etag),
            expires: Some(expires),
            min_expires: None,
        }
    }
}

/// What happened, for the log (SPEC §6: one line per publish with status and ETag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicationEvent {
    /// A 2xx arrived; `etag` is now the publication's entity-tag.
    Published {
        /// New entity-tag (persist it).
        etag: Option<SipEtag>,
        /// Granted seconds.
        expires: u32,
    },
    /// A request failed; `status` is `None` for a timeout or refused connection.
    /// `retry_in` is the backoff before the next attempt, `None` when it is retried at once.
    Failed {
        /// Final status, if any.
        status: Option<u16>,
        /// Delay before the retry.
        retry_in: Option<Duration>,
    },
    /// Publishing stopped until the next change (403, 404, 489, final 401/407, other
    /// non-retryable errors). The binary logs this as an error.
    Stopped {
        /// The status that stopped it.
        status: u16,
    },
}

/// Where the publication stands, in RFC 3903 terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationState {
    /// No entity-tag: the next PUBLISH is an initial one.
    Unpublished,
    /// A PUBLISH is in flight.
    Publishing,
    /// The presence server holds our latest summary under an entity-tag.
    Published,
    /// Waiting for the retry timer after a failure.
    BackingOff,
    /// Stopped by an error until the next change.
    Stopped,
}

#[derive(Debug, Clone)]
struct Document {
    body: Vec<u8>,
    messages_waiting: bool,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    with_etag: bool,
    expires: u32,
    messages_waiting: bool,
}

/// One mailbox's publication.
#[derive(Debug)]
pub struct Publication {
    config: PublicationConfig,
    /// `Expires` to ask for; raised by a 423's Min-Expires.
    expires: u32,
    /// The latest summary the binary gave us.
    document: Option<Document>,
    /// `document` still has to be sent (a change, a retry, or a due refresh).
    unsent: bool,
    /// The entity-tag and when the server forgets it.
    etag: Option<(SipEtag, Instant)>,
    in_flight: Option<InFlight>,
    retry_at: Option<Instant>,
    backoff: Duration,
    refresh_at: Option<Instant>,
    /// No PUBLISH for a change before this (the minimum interval after the last one sent).
    held_until: Option<Instant>,
    stopped: bool,
    events: VecDeque<PublicationEvent>,
}

impl Publication {
    /// A new publication with no entity-tag.
    pub fn new(config: PublicationConfig) -> Self {
        Self {
            expires: config.expires,
            backoff: config.backoff_initial,
            config,
            document: None,
            unsent: false,
            etag: None,
            in_flight: None,
            retry_at: None,
            refresh_at: None,
            held_until: None,
            stopped: false,
            events: VecDeque::new(),
        }
    }

    /// Continues a publication persisted before a restart: the next PUBLISH carries
    /// `SIP-If-Match: etag` unless `expires_at` has passed (then the server has forgotten it,
    /// RFC 3903 §6, and an initial PUBLISH is sent). Call [`Self::set_summary`] next.
    pub fn resume(
        config: PublicationConfig,
        etag: SipEtag,
        expires_at: Instant,
        now: Instant,
    ) -> Self {
        let mut publication = Self::new(config);
        if expires_at > now {
            publication.etag = Some((etag, expires_at));
        }
        publication
    }

    /// A change: `summary` is the mailbox's state now. Coalesces with any change not yet sent;
    /// clears a stop.
    pub fn set_summary(&mut self, summary: &MessageSummary, now: Instant) {
        self.forget_expired_etag(now);
        self.document = Some(Document {
            body: summary.to_body(),
            messages_waiting: summary.messages_waiting,
        });
        self.unsent = true;
        self.stopped = false;
        self.refresh_at = None;
    }

    /// The next PUBLISH, if one is due; at most one is in flight, and one for a change waits
    /// out the minimum interval after the previous one.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<PublishRequest> {
        self.handle_timeout(now);
        if self.in_flight.is_some()
            || self.stopped
            || !self.unsent
            || self.retry_at.is_some()
            || self.held_until.is_some()
        {
            return None;
        }
        self.forget_expired_etag(now);
        let document = self.document.as_ref()?;
        let sip_if_match = self.etag.as_ref().map(|(tag, _)| tag.clone());
        self.in_flight = Some(InFlight {
            with_etag: sip_if_match.is_some(),
            expires: self.expires,
            messages_waiting: document.messages_waiting,
        });
        self.unsent = false;
        if !self.config.min_interval.is_zero() {
            self.held_until = Some(now + self.config.min_interval);
        }
        Some(PublishRequest {
            sip_if_match,
            expires: self.expires,
            body: document.body.clone(),
        })
    }

    /// The final response to the PUBLISH in flight (responses without one are ignored).
    pub fn on_response(&mut self, outcome: PublishOutcome, now: Instant) {
        let Some(sent) = self.in_flight.take() else {
            return;
        };
        match outcome.status {
            200..=299 => self.on_success(sent, outcome, now),
            // RFC 3903 §6: the server no longer knows the entity-tag; publish afresh.
            412 if sent.with_etag => {
                self.etag = None;
                self.unsent = true;
                self.held_until = None;
                self.events.push_back(PublicationEvent::Failed {
                    status: Some(412),
                    retry_in: None,
                });
            }
            // RFC 3903 §6 / RFC 3261 §21.4.17: retry with at least Min-Expires.
            423 => match outcome.min_expires {
                Some(min) if min > sent.expires => {
                    self.expires = min;
                    self.unsent = true;
                    self.held_until = None;
                    self.events.push_back(PublicationEvent::Failed {
                        status: Some(423),
                        retry_in: None,
                    });
                }
                _ => self.stop(423),
            },
            408 | 412 | 500..=599 => self.back_off(Some(outcome.status), now),
            // 3xx, other 4xx (403, 404, 489, final 401/407), 6xx: retrying will not help.
            status @ 300..=699 => self.stop(status),
            // A provisional response is not an outcome; keep waiting.
            _ => self.in_flight = Some(sent),
        }
    }

    /// The PUBLISH in flight timed out or its connection was refused.
    pub fn on_timeout_failure(&mut self, now: Instant) {
        if self.in_flight.take().is_some() {
            self.back_off(None, now);
        }
    }

    /// Runs timers that are due: ends a backoff or the minimum interval, makes a refresh due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
        }
        if self.held_until.is_some_and(|at| at <= now) {
            self.held_until = None;
        }
        if self.refresh_at.is_some_and(|at| at <= now) {
            self.refresh_at = None;
            self.unsent = true;
        }
    }

    /// When to call [`Self::handle_timeout`] / [`Self::poll_transmit`] next: the end of a
    /// backoff or of the minimum interval, or the refresh time. `None` while a PUBLISH is in
    /// flight (its transaction has its own timer) or when nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_some() || self.stopped {
            return None;
        }
        [self.retry_at, self.refresh_at, self.held_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a change given now would wait (a PUBLISH in flight, a backoff, or the minimum
    /// interval): the binary may then put off reading the mailbox's counts until
    /// [`Self::poll_timeout`] or the response, and coalesce every change meanwhile into one read.
    /// A stopped publication holds nothing: the change restarts it (and the minimum interval
    /// then only delays its PUBLISH, with a timer).
    pub fn holds_changes(&self, now: Instant) -> bool {
        !self.stopped
            && (self.in_flight.is_some()
                || self.retry_at.is_some_and(|at| at > now)
                || self.held_until.is_some_and(|at| at > now))
    }

    /// The next event for the log.
    pub fn poll_event(&mut self) -> Option<PublicationEvent> {
        self.events.pop_front()
    }

    /// The entity-tag and its expiry, to persist after every change (`None`: delete it).
    pub fn etag_record(&self) -> Option<(SipEtag, Instant)> {
        self.etag.clone()
    }

    /// Where the publication stands.
    pub fn state(&self) -> PublicationState {
        if self.in_flight.is_some() {
            PublicationState::Publishing
        } else if self.stopped {
            PublicationState::Stopped
        } else if self.retry_at.is_some() {
            PublicationState::BackingOff
        } else if self.etag.is_some() {
            PublicationState::Published
        } else {
            PublicationState::Unpublished
        }
    }

    /// RFC 3903 §6: past its expiry the server has discarded the publication.
    fn forget_expired_etag(&mut self, now: Instant) {
        if self.etag.as_ref().is_some_and(|(_, at)| *at <= now) {
            self.etag = None;
        }
    }

    fn on_success(&mut self, sent: InFlight, outcome: PublishOutcome, now: Instant) {
        let granted = outcome.expires.unwrap_or(sent.expires);
        // RFC 3903 §11.3: every 2xx carries the entity-tag to use from now on.
        self.etag = match outcome.sip_etag.clone() {
            Some(tag) if granted > 0 => Some((tag, now + Duration::from_secs(granted.into()))),
            _ => None,
        };
        self.backoff = self.config.backoff_initial;
        self.retry_at = None;
        self.events.push_back(PublicationEvent::Published {
            etag: outcome.sip_etag,
            expires: granted,
        });
        // Refresh only what is current and only while messages wait: "no" is left to expire.
        self.refresh_at = if !self.unsent && sent.messages_waiting && self.etag.is_some() {
            Some(now + refresh_delay(granted))
        } else {
            None
        };
    }

    fn back_off(&mut self, status: Option<u16>, now: Instant) {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.backoff_max);
        self.retry_at = Some(now + delay);
        self.unsent = true;
        self.events.push_back(PublicationEvent::Failed {
            status,
            retry_in: Some(delay),
        });
    }

    fn stop(&mut self, status: u16) {
        self.stopped = true;
        self.unsent = false;
        self.refresh_at = None;
        self.events.push_back(PublicationEvent::Failed {
            status: Some(status),
            retry_in: None,
        });
        self.events.push_back(PublicationEvent::Stopped { status });
    }
}

/// How long after a 2xx to refresh: early enough that a UDP transaction timing out
/// (RFC 3261 Timer F, 32 s) still leaves time, i.e. a margin of a tenth of the duration but at
/// least 32 s (or half of very short durations).
fn refresh_delay(granted: u32) -> Duration {
    let granted = Duration::from_secs(granted.into());
    let margin = (granted / 10).max(Duration::from_secs(32).min(granted / 2));
    granted - margin
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::summary::{MessageCounts, SummaryConfig};

    fn summary(new: u64) -> MessageSummary {
        let cfg = SummaryConfig {
            message_account: Some("sip:offline@example.com".into()),
            emit_voice_message: false,
        };
        MessageSummary::text(&cfg, MessageCounts::new(new, 0), vec![])
    }

    fn body_of(new: u64) -> Vec<u8> {
        summary(new).to_body()
    }

    fn config() -> PublicationConfig {
        PublicationConfig {
            expires: 3600,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(16),
            min_interval: Duration::ZERO,
        }
    }

    fn config_with_interval() -> PublicationConfig {
        PublicationConfig {
            min_interval: Duration::from_secs(1),
            ..config()
        }
    }

    fn tag(s: &str) -> SipEtag {
        SipEtag::new(s)
    }

    fn events(p: &mut Publication) -> Vec<PublicationEvent> {
        std::iter::from_fn(|| p.poll_event()).collect()
    }

    #[test]
    fn initial_then_modify_with_if_match_and_full_body() {
        let t0 = Instant::now();
        let mut p = Publication::new(config());
        assert_eq!(p.poll_transmit(t0), None);
        p.set_summary(&summary(1), t0);
        let first = p.poll_transmit(t0).unwrap();
        assert_eq!(first.sip_if_match, None);
        assert_eq!(first.expires, 3600);
        assert_eq!(first.body, body_of(1));
        assert_eq!(p.state(), PublicationState::Publishing);
        assert_eq!(p.poll_transmit(t0), None, "one in flight");

        p.on_response(PublishOutcome::ok(tag("a"), 3600), t0);
        assert_eq!(
            events(&mut p),
            vec![PublicationEvent::Published {
                etag: Some(tag("a")),
                expires: 3600
            }]
        );
        assert_eq!(p.state(), PublicationState::Published);
        let t1 = t0 + Duration::from_secs(5);
        p.set_summary(&summary(2), t1);
        let second = p.poll_transmit(t1).unwrap();
        assert_eq!(second.sip_if_match, Some(tag("a")));
        assert_eq!(second.body, body_of(2));
        p.on_response(PublishOutcome::ok(tag("b"), 3600), t1);
        assert_eq!(
            p.etag_record(),
            Some((tag("b"), t1 + Duration::from_secs(3600)))
        );
    }

    #[test]
    fn refresh_before_expiry_with_full_body_and_latest_etag() {
        let t0 = Instant::now();
        let mut p = Publication::new(config());
        p.set_summary(&summary(3), t0);
        p.poll_transmit(t0).unwrap();
        p.on_response(PublishOutcome::ok(tag("a"), 3600), t0);
        let refresh_at = p.poll_timeout().unwrap();
        assert_eq!(refresh_at, t0 + Duration::from_secs(3240));
        assert_eq!(p.poll_transmit(refresh_at - Duration::from_millis(1)), None);
        let refresh = p.poll_transmit(refresh_at).unwrap();
        assert_eq!(refresh.sip_if_match, Some(tag("a")));
        assert_eq!(refresh.body, body_of(3), "refresh carries the full body");
        p.on_response(PublishOutcome::ok(tag("c"), 120), refresh_at);
        // Short grant: margin is 32 s, not 12 s, so a UDP timeout still fits.
        assert_eq!(p.poll_timeout(), Some(refresh_at + Duration::from_secs(88)));
        let again = p
            .poll_transmit(refresh_at + Duration::from_secs(88))
            .unwrap();
        assert_eq!(again.sip_if_match, Some(tag("c")));
    }

    #[test]
    fn messages_waiting_no_is_not_refreshed() {
        let t0 = Instant::now();
        let mut p = Publication::new(config());
        p.set_summary(&summary(1), t0);
        p.poll_transmit(t0).unwrap();
        p.on_response(PublishOutcome::ok(tag("a"), 3600), t0);
        p.set_summary(&summary(0), t0);
        let no = p.poll_transmit(t0).unwrap();
        assert_eq!(no.sip_if_match, Some(tag("a")));
        assert!(no.body.starts_with(b"Messages-Waiting: no\r\n"));
        p.on_response(PublishOutcome::ok(tag("b"), 3600), t0);
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(p.poll_transmit(t0 + Duration::from_secs(7200)), None);
        // A new message after expiry starts a fresh publication.
        let later = t0 + Duration::from_secs(7200);
        p.set_summary(&summary(1), later);
        assert_eq!(p.poll_transmit(later).unwrap().sip_if_match, None);
    }

    #[test]
    fn precondition_failed_forgets_etag_and_publishes_initially() {
        let t0 = Instant::now();
        let mut p = Publication::resume(config(), tag("stale"), t0 + Duration::from_secs(100), t0);
        p.set_summary(&summary(4), t0);
        assert_eq!(
            p.poll_transmit(t0).unwrap().sip_if_match,
            Some(tag("stale"))
        );
        p.on_response(PublishOutcome::status(412), t0);
        assert_eq!(p.etag_record(), None);
        let initial = p.poll_transmit(t0).unwrap();
        assert_eq!(initial.sip_if_match, None);
        assert_eq!(initial.body, body_of(4));
        p.on_response(PublishOutcome::ok(tag("fresh"), 3600), t0);
        assert_eq!(p.etag_record().map(|r| r.0), Some(tag("fresh")));
    }

    #[test]
    fn changes_within_the_minimum_interval_wait_for_it_and_coalesce() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Publication::new(config_with_interval());
        p.set_summary(&summary(1), t0);
        assert_eq!(p.poll_transmit(t0).unwrap().body, body_of(1));
        assert!(p.holds_changes(t0), "in flight");
        p.on_response(PublishOutcome::ok(tag("a"), 3600), t0 + ms(10));
        p.set_summary(&summary(2), t0 + ms(20));
        assert!(p.holds_changes(t0 + ms(20)));
        assert_eq!(p.poll_transmit(t0 + ms(20)), None, "held by the interval");
        assert_eq!(p.poll_timeout(), Some(t0 + ms(1000)));
        p.set_summary(&summary(3), t0 + ms(500));
        assert_eq!(p.poll_transmit(t0 + ms(999)), None);
        let next = p.poll_transmit(t0 + ms(1000)).unwrap();
        assert_eq!(
            next.body,
            body_of(3),
            "one PUBLISH for both changes, the latest"
        );
        assert_eq!(next.sip_if_match, Some(tag("a")));
        // Measured from the send: a slow answer does not add to the wait.
        p.on_response(PublishOutcome::ok(tag("b"), 3600), t0 + ms(1900));
        p.set_summary(&summary(4), t0 + ms(1950));
        assert!(!p.holds_changes(t0 + ms(2000)));
        assert_eq!(p.poll_transmit(t0 + ms(2000)).unwrap().body, body_of(4));
    }

    #[test]
    fn a_change_after_a_stop_within_the_interval_is_sent_when_it_ends() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Publication::new(config_with_interval());
        p.set_summary(&summary(1), t0);
        assert!(p.poll_transmit(t0).is_some());
        p.on_response(PublishOutcome::status(403), t0 + ms(10));
        assert_eq!(p.state(), PublicationState::Stopped);
        assert!(
            !p.holds_changes(t0 + ms(20)),
            "a stopped publication takes the change"
        );
        p.set_summary(&summary(2), t0 + ms(20));
        assert_eq!(
            p.poll_transmit(t0 + ms(20)),
            None,
            "still inside the interval"
        );
        assert_eq!(p.poll_timeout(), Some(t0 + ms(1000)), "a timer for its end");
        assert_eq!(p.poll_transmit(t0 + ms(1000)).unwrap().body, body_of(2));
    }

    #[test]
    fn a_quiet_mailbox_publishes_its_first_change_at_once_and_412_is_not_held() {
        let t0 = Instant::now();
        let mut p = Publication::resume(
            config_with_interval(),
            tag("stale"),
            t0 + Duration::from_secs(100),
            t0,
        );
        assert!(!p.holds_changes(t0));
        p.set_summary(&summary(4), t0);
        assert!(p.poll_transmit(t0).is_some(), "first change goes at once");
        p.on_response(PublishOutcome::status(412), t0);
        let fresh = p.poll_transmit(t0).unwrap();
        assert_eq!(
            fresh.sip_if_match, None,
            "the fresh publication is not held"
        );
    }

    #[test]
    fn precondition_failed_on_an_initial_publish_backs_off_instead_of_looping() {
        let t0 = Instant::now();
        let mut p = Publication::new(config());
        p.set_summary(&summary(1), t0);
        p.poll_transmit(t0).unwrap();
        p.on_response(PublishOutcome::status(412), t0);
        assert_eq!(p.poll_transmit(t0), None);
        assert_eq!(p.state(), PublicationState::BackingOff);
    }

    #[test]
    fn interval_too_brief_retries_with_min_expires() {
        let t0 = Instant::now();
        let mut p = Publication::new(PublicationConfig {
            expires: 60,
            ..config()
        });
        p.set_summary(&summary(1), t0);
        assert_eq!(p.poll_transmit(t0).unwrap().expires, 60);
        p.on_response(
            PublishOutcome {
                min_expires: Some(600),
                ..PublishOutcome::status(423)
            },
            t0,
        );
        let retry = p.poll_transmit(t0).unwrap();
        assert_eq!(retry.expires, 600);
        assert_eq!(retry.body, body_of(1));
        // A 423 that does not raise the interval would loop: stop instead.
        p.on_response(
            PublishOutcome {
                min_expires: Some(600),
                ..PublishOutcome::status(423)
            },
            t0,
        );
        assert_eq!(p.state(), PublicationState::Stopped);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_resets() {
        let mut now = Instant::now();
        let mut p = Publication::new(config());
        p.set_summary(&summary(1), now);
        let mut delays = Vec::new();
        for round in 0..7 {
            let req = p.poll_transmit(now).unwrap();
            assert_eq!(req.body, body_of(1));
            if round % 2 == 0 {
                p.on_response(PublishOutcome::status(503), now);
            } else {
                p.on_timeout_failure(now);
            }
            let at = p.poll_timeout().unwrap();
            delays.push((at - now).as_secs());
            assert_eq!(p.poll_transmit(at - Duration::from_millis(1)), None);
            now = at;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 16, 16]);
        // A change during backoff waits for the timer, then goes out with the latest body.
        p.poll_transmit(now).unwrap();
        p.on_response(PublishOutcome::status(408), now);
        p.set_summary(&summary(9), now);
        assert_eq!(p.poll_transmit(now), None);
        let retry = p.poll_transmit(now + Duration::from_secs(16)).unwrap();
        assert_eq!(retry.body, body_of(9));
        p.on_response(PublishOutcome::ok(tag("x"), 3600), now);
        p.set_summary(&summary(10), now);
        p.poll_transmit(now).unwrap();
        p.on_response(PublishOutcome::status(500), now);
        assert_eq!(
            p.poll_timeout(),
            Some(now + Duration::from_secs(1)),
            "reset"
        );
    }

    #[test]
    fn fatal_statuses_stop_until_the_next_change() {
        for status in [403u16, 404, 489, 401, 407, 400, 603] {
            let t0 = Instant::now();
            let mut p = Publication::new(config());
            p.set_summary(&summary(1), t0);
            p.poll_transmit(t0).unwrap();
            p.on_response(PublishOutcome::status(status), t0);
            assert_eq!(
                events(&mut p),
                vec![
                    PublicationEvent::Failed {
                        status: Some(status),
                        retry_in: None
                    },
                    PublicationEvent::Stopped { status }
                ]
            );
            assert_eq!(p.state(), PublicationState::Stopped);
            assert_eq!(p.poll_timeout(), None);
            assert_eq!(p.poll_transmit(t0 + Duration::from_secs(10_000)), None);
            p.set_summary(&summary(2), t0);
            assert_eq!(p.poll_transmit(t0).unwrap().body, body_of(2));
        }
    }

    #[test]
    fn thousand_changes_coalesce_and_the_last_body_wins() {
        let mut now = Instant::now();
        let mut p = Publication::new(config());
        let mut sent = Vec::new();
        for n in 1..=1000u64 {
            p.set_summary(&summary(n), now);
            if let Some(req) = p.poll_transmit(now) {
                sent.push(req);
            }
            // The presence server answers every 250 changes.
            if n % 250 == 0 {
                now += Duration::from_millis(10);
                p.on_response(PublishOutcome::ok(tag(&format!("e{n}")), 3600), now);
                if let Some(req) = p.poll_transmit(now) {
                    sent.push(req);
                }
            }
        }
        p.on_response(PublishOutcome::ok(tag("last"), 3600), now);
        assert_eq!(p.poll_transmit(now), None);
        assert!(sent.len() <= 5, "{} PUBLISHes", sent.len());
        assert_eq!(sent.last().map(|r| r.body.clone()), Some(body_of(1000)));
        assert_eq!(sent[0].sip_if_match, None);
        assert!(sent[1..].iter().all(|r| r.sip_if_match.is_some()));
    }

    #[test]
    fn resume_continues_with_if_match_unless_expired() {
        let t0 = Instant::now();
        let mut p = Publication::resume(
            config(),
            tag("persisted"),
            t0 + Duration::from_secs(1000),
            t0,
        );
        assert_eq!(p.state(), PublicationState::Published);
        p.set_summary(&summary(2), t0);
        assert_eq!(
            p.poll_transmit(t0).unwrap().sip_if_match,
            Some(tag("persisted"))
        );

        let mut expired = Publication::resume(config(), tag("old"), t0, t0);
        assert_eq!(expired.etag_record(), None);
        expired.set_summary(&summary(2), t0);
        assert_eq!(expired.poll_transmit(t0).unwrap().sip_if_match, None);
    }

    #[test]
    fn change_in_flight_is_sent_after_the_response_not_refreshed() {
        let t0 = Instant::now();
        let mut p = Publication::new(config());
        p.set_summary(&summary(1), t0);
        p.poll_transmit(t0).unwrap();
        p.set_summary(&summary(2), t0);
        p.on_response(PublishOutcome::ok(tag("a"), 3600), t0);
        assert_eq!(p.poll_timeout(), None, "no refresh for a superseded body");
        let next = p.poll_transmit(t0).unwrap();
        assert_eq!(next.body, body_of(2));
        assert_eq!(next.sip_if_match, Some(tag("a")));
    }

    #[test]
    fn stray_and_provisional_responses_change_nothing() {
        let t0 = Instant::now();
        let mut p = Publication::new(config());
        p.on_response(PublishOutcome::ok(tag("x"), 10), t0);
        assert_eq!(p.etag_record(), None);
        p.set_summary(&summary(1), t0);
        p.poll_transmit(t0).unwrap();
        p.on_response(PublishOutcome::status(100), t0);
        assert_eq!(p.state(), PublicationState::Publishing);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Change(u64),
        Respond(u16),
        TimeoutFailure,
        Advance(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u64..50).prop_map(Op::Change),
            proptest::sample::select(vec![200u16, 200, 200, 412, 423, 408, 500, 503])
                .prop_map(Op::Respond),
            Just(Op::TimeoutFailure),
            (0u64..4000).prop_map(Op::Advance),
        ]
    }

    proptest::proptest! {
        /// Whatever happens on the way, once the server answers 200 again the last body it
        /// acknowledged is the latest summary: the count at the proxy ends equal to the store's.
        #[test]
        fn the_proxy_ends_with_the_latest_summary(ops in proptest::collection::vec(op(), 1..60)) {
            let mut now = Instant::now();
            let mut p = Publication::new(config_with_interval());
            let mut latest = None;
            let mut in_flight_body: Option<Vec<u8>> = None;
            let mut etag_n = 0;
            let mut acknowledged = None;
            for op in ops {
                if in_flight_body.is_none() {
                    in_flight_body = p.poll_transmit(now).map(|r| r.body);
                }
                match op {
                    Op::Change(n) => {
                        p.set_summary(&summary(n), now);
                        latest = Some(body_of(n));
                    }
                    Op::Respond(status) if in_flight_body.is_some() => {
                        if status == 200 {
                            acknowledged = in_flight_body.take();
                        }
                        in_flight_body = None;
                        etag_n += 1;
                        let outcome = match status {
                            200 => PublishOutcome::ok(tag(&format!("e{etag_n}")), 3600),
                            423 => PublishOutcome { min_expires: Some(3600 + etag_n), ..PublishOutcome::status(423) },
                            s => PublishOutcome::status(s),
                        };
                        p.on_response(outcome, now);
                    }
                    Op::TimeoutFailure if in_flight_body.is_some() => {
                        in_flight_body = None;
                        p.on_timeout_failure(now);
                    }
                    Op::Advance(secs) => now += Duration::from_secs(secs),
                    _ => {}
                }
            }
            for _ in 0..10 {
                // Let the timers run (a backoff, then the minimum interval) until it sends.
                for _ in 0..4 {
                    if in_flight_body.is_some() {
                        break;
                    }
                    in_flight_body = p.poll_transmit(now).map(|r| r.body);
                    match p.poll_timeout() {
                        Some(at) if in_flight_body.is_none() && at > now => now = at,
                        _ => {}
                    }
                }
                let Some(body) = in_flight_body.take() else {
                    break;
                };
                etag_n += 1;
                p.on_response(PublishOutcome::ok(tag(&format!("e{etag_n}")), 3600), now);
                acknowledged = Some(body);
            }
            if latest.is_some() {
                proptest::prop_assert_eq!(acknowledged, latest);
            }
        }
    }
}
