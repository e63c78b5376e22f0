//! Abuse limits (`[limits]`): concurrent chat sessions (global, and per source address for
//! sources outside `sip.trusted_proxies`), the deposit rate per caller (a token bucket keyed by
//! the asserted sender), and [`LimitLog`], which reports each limit at most once per interval
//! with the number of hits it did not log, so a flood cannot flood the log too.
//!
//! The size limits (SIP head and body, SIP TCP connections, MSRP chunk) are enforced where the
//! bytes are read, by sip-core and msrp-session; [`spawn_front_report`] logs what sip-core's
//! validation front refused, once per interval.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::LimitsSection;

/// Callers tracked by the rate limiter at most; idle (full) buckets are dropped first.
const MAX_TRACKED_CALLERS: usize = 100_000;

/// A limit that was hit, for [`LimitLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// `limits.max_sessions`.
    Sessions,
    /// `limits.max_sessions_per_source`.
    SessionsPerSource,
    /// `limits.deposit_rate_per_minute`.
    DepositRate,
}

impl LimitKind {
    /// The config key, named in the log line.
    pub fn key(self) -> &'static str {
        match self {
            LimitKind::Sessions => "limits.max_sessions",
            LimitKind::SessionsPerSource => "limits.max_sessions_per_source",
            LimitKind::DepositRate => "limits.deposit_rate_per_minute",
        }
    }
}

/// Logs each [`LimitKind`] at most once per interval (sans-IO: the caller passes `now`).
#[derive(Debug)]
pub struct LimitLog {
    interval: Duration,
    /// Per kind: when it was last logged and the hits since.
    state: Mutex<HashMap<LimitKind, (Instant, u64)>>,
}

impl LimitLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Records a hit; `Some(suppressed)` when this one is to be logged, with the number of
    /// hits of the same kind that were not logged since the last line.
    pub fn should_log(&self, kind: LimitKind, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().ok()?;
        match state.get_mut(&kind) {
            Some((last, suppressed)) if now.duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let n = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                state.insert(kind, (now, 0));
                Some(0)
            }
        }
    }

    /// Logs a hit (rate-limited) with where it came from and what was answered.
    pub fn report(&self, kind: LimitKind, peer: &str, subject: &str, answered: &str) {
        if let Some(suppressed) = self.should_log(kind, Instant::now()) {
            tracing::warn!(
                limit = kind.key(),
                peer,
                subject,
                answered,
                suppressed,
                "limit reached; further hits of this limit are counted, not logged, for the interval"
            );
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst` (sans-IO).
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst));
        self.last = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, rate: f64, burst: u32, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait(rate))
        }
    }

    /// Whether a token is there, without taking it.
    pub fn peek(&mut self, rate: f64, burst: u32, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(self.wait(rate))
        }
    }

    fn wait(&self, rate: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / rate).max(0.001))
    }

    /// Full again: nothing to remember.
    fn is_full(&mut self, rate: f64, burst: u32, now: Instant) -> bool {
        self.refill(rate, burst, now);
        self.tokens >= f64::from(burst)
    }
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    Global,
    PerSource,
}

#[derive(Debug, Default)]
struct SessionCounts {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// Holds one of the session slots; released on drop.
#[derive(Debug)]
pub struct SessionPermit {
    counts: Arc<Mutex<SessionCounts>>,
    /// Counted per source (untrusted sources only).
    source: Option<IpAddr>,
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let Ok(mut c) = self.counts.lock() else {
            return;
        };
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = self.source {
            if let Some(n) = c.per_source.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_source.remove(&ip);
                }
            }
        }
    }
}

/// The session and rate limits, shared by every request handler.
#[derive(Debug)]
pub struct Limiter {
    config: LimitsSection,
    counts: Arc<Mutex<SessionCounts>>,
    buckets: Mutex<HashMap<String, TokenBucket>>,
    pub log: LimitLog,
}

impl Limiter {
    pub fn new(config: &LimitsSection) -> Self {
        Self {
            config: config.clone(),
            counts: Arc::default(),
            buckets: Mutex::new(HashMap::new()),
            log: LimitLog::new(Duration::from_secs(config.log_interval_secs)),
        }
    }

    /// `Retry-After` for a 503 or 486 (RFC 3261 §20.33).
    pub fn retry_after(&self) -> (String, String) {
        (
            "Retry-After".to_string(),
            self.config.retry_after_secs.to_string(),
        )
    }

    /// A slot for a chat session (deposit or fetch) from `source`; trusted proxies carry
    /// everyone's calls, so only the global limit applies to them.
    pub fn session(&self, source: IpAddr, trusted: bool) -> Result<SessionPermit, SessionRefusal> {
        let mut c = self.counts.lock().map_err(|_| SessionRefusal::Global)?;
        if c.total >= self.config.max_sessions {
            return Err(SessionRefusal::Global);
        }
        let per_source = (!trusted).then_some(source);
        if let Some(ip) = per_source {
            let n = c.per_source.entry(ip).or_insert(0);
            if *n >= self.config.max_sessions_per_source {
                if *n == 0 {
                    c.per_source.remove(&ip);
                }
                return Err(SessionRefusal::PerSource);
            }
            *n += 1;
        }
        c.total += 1;
        Ok(SessionPermit {
            counts: self.counts.clone(),
            source: per_source,
        })
    }

    fn rate(&self) -> Option<(f64, u32)> {
        (self.config.deposit_rate_per_minute > 0).then(|| {
            (
                f64::from(self.config.deposit_rate_per_minute) / 60.0,
                self.config.deposit_burst.max(1),
            )
        })
    }

    fn with_bucket(
        &self,
        caller: &str,
        now: Instant,
        f: impl FnOnce(&mut TokenBucket, f64, u32) -> Result<(), Duration>,
    ) -> Result<(), Duration> {
        let Some((rate, burst)) = self.rate() else {
            return Ok(());
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if !buckets.contains_key(caller) && buckets.len() >= MAX_TRACKED_CALLERS {
            buckets.retain(|_, b| !b.is_full(rate, burst, now));
            if buckets.len() >= MAX_TRACKED_CALLERS {
                // Every tracked caller is active: let the newcomer through untracked rather
                // than grow without bound.
                return Ok(());
            }
        }
        let bucket = buckets
            .entry(caller.to_string())
            .or_insert_with(|| TokenBucket::full(burst, now));
        f(bucket, rate, burst)
    }

    /// One message deposited by `caller`: takes a token, or says when the next one is there.
    pub fn take_deposit(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        self.with_bucket(caller, now, |b, rate, burst| b.take(rate, burst, now))
    }

    /// Whether `caller` may deposit now (checked before answering a chat INVITE).
    pub fn may_deposit(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        self.with_bucket(caller, now, |b, rate, burst| b.peek(rate, burst, now))
    }
}

/// Answers a chat INVITE refused by a session limit: 503 Service Unavailable with Retry-After
/// (RFC 3261 §21.5.4: the caller, or the proxy, tries again later).
pub fn refuse_session(
    app: &crate::server::App,
    invite: sip_core::ServerInvite,
    why: SessionRefusal,
) {
    let kind = match why {
        SessionRefusal::Global => LimitKind::Sessions,
        SessionRefusal::PerSource => LimitKind::SessionsPerSource,
    };
    let peer = invite.source().addr;
    app.limits
        .log
        .report(kind, &peer.to_string(), "chat INVITE", "503");
    crate::chat::refuse(
        invite,
        503,
        vec![
            app.limits.retry_after(),
            app.warning("too many chat sessions; try again later"),
        ],
    );
}

/// The deposit rate of `caller` (the asserted sender): `take` spends a token (a message),
/// else only checks one is there (a new chat INVITE). `Err` carries the headers of the 486
/// Busy Here to send (Retry-After: when the next token is there; RFC 3261 §21.4.24 allows a
/// Retry-After on 486); the hit is logged at most once per interval.
pub fn check_deposit_rate(
    app: &crate::server::App,
    caller: &str,
    peer: std::net::SocketAddr,
    what: &str,
    take: bool,
) -> Result<(), Vec<(String, String)>> {
    let now = Instant::now();
    let checked = if take {
        app.limits.take_deposit(caller, now)
    } else {
        app.limits.may_deposit(caller, now)
    };
    checked.map_err(|wait| {
        app.limits
            .log
            .report(LimitKind::DepositRate, &peer.to_string(), caller, what);
        vec![
            (
                "Retry-After".to_string(),
                wait.as_secs().saturating_add(1).to_string(),
            ),
            app.warning("too many messages from this caller; try again later"),
        ]
    })
}

/// Logs, once per `interval`, how many SIP messages sip-core's validation front refused
/// (answered statelessly: 400, 513…) or dropped since the last line; silent when none were.
pub fn spawn_front_report(
    sip: sip_core::SipEndpoint,
    interval: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (_, mut rejected, mut dropped) = sip.front_stats();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let (_, r, d) = sip.front_stats();
            let (new_rejected, new_dropped) = (r - rejected, d - dropped);
            if new_rejected > 0 || new_dropped > 0 {
                tracing::warn!(
                    rejected = new_rejected,
                    dropped = new_dropped,
                    interval_s = interval.as_secs(),
                    "SIP messages refused by validation (malformed, too large: limits.max_sip_*)"
                );
            }
            (rejected, dropped) = (r, d);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> LimitsSection {
        LimitsSection {
            max_sessions: 3,
            max_sessions_per_source: 2,
            deposit_rate_per_minute: 60,
            deposit_burst: 2,
            ..LimitsSection::default()
        }
    }

    #[test]
    fn log_says_once_per_interval_with_the_suppressed_count() {
        let log = LimitLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.should_log(LimitKind::Sessions, t0), Some(0));
        for i in 1..=1000 {
            let now = t0 + Duration::from_millis(i);
            assert_eq!(log.should_log(LimitKind::Sessions, now), None);
        }
        // Another kind has its own interval.
        assert_eq!(log.should_log(LimitKind::DepositRate, t0), Some(0));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(log.should_log(LimitKind::Sessions, later), Some(1000));
        assert_eq!(log.should_log(LimitKind::Sessions, later), None);
    }

    #[test]
    fn sessions_global_and_per_untrusted_source() {
        let limiter = Limiter::new(&section());
        let a: IpAddr = [10, 0, 0, 1].into();
        let proxy: IpAddr = [10, 0, 0, 9].into();
        let p1 = limiter.session(a, false).expect("first");
        let _p2 = limiter.session(a, false).expect("second");
        assert_eq!(
            limiter.session(a, false).map(|_| ()),
            Err(SessionRefusal::PerSource)
        );
        // The proxy is not limited per source, only globally.
        let _p3 = limiter.session(proxy, true).expect("third");
        assert_eq!(
            limiter.session(proxy, true).map(|_| ()),
            Err(SessionRefusal::Global)
        );
        drop(p1);
        let _p4 = limiter.session(a, false).expect("a slot was released");
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let limiter = Limiter::new(&section());
        let t0 = Instant::now();
        assert!(limiter.may_deposit("sip:a@x", t0).is_ok());
        assert!(limiter.take_deposit("sip:a@x", t0).is_ok());
        assert!(limiter.take_deposit("sip:a@x", t0).is_ok());
        let wait = limiter.take_deposit("sip:a@x", t0).expect_err("burst used");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.may_deposit("sip:a@x", t0).is_err());
        // Someone else is not affected.
        assert!(limiter.take_deposit("sip:b@x", t0).is_ok());
        // One per second comes back.
        let t1 = t0 + Duration::from_millis(1001);
        assert!(limiter.take_deposit("sip:a@x", t1).is_ok());
        assert!(limiter.take_deposit("sip:a@x", t1).is_err());
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let limiter = Limiter::new(&LimitsSection {
            deposit_rate_per_minute: 0,
            ..section()
        });
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.take_deposit("sip:a@x", t0).is_ok());
        }
    }
}
