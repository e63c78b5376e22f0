//! `bench deposit`: C concurrent callers deposit M messages each over chat sessions (INVITE,
//! MSRP bind, greeting, SENDs, BYE) into K mailboxes. Caller `w` calls mailboxes w, w+C,
//! w+2C, … in turn, so with C=100, M=1000, K=1000 each caller makes 10 sessions of 100
//! messages and every mailbox ends with 100. A message counts as stored when its MSRP 200
//! arrives (the server answers only after the commit, SPEC §1); with `--db` the rows are
//! counted too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use msrp_session::{LocalMedia, MsrpTransport, Setup};
use tokio::time::Instant;

use super::latency::Latencies;
use super::pager::mailbox_aors;
use super::presence::PublishCounter;
use super::progress::{Counters, Progress};
use super::report::Report;
use super::wire::{Answer, WireLeg};
use super::Target;
use crate::client::chat::{invite, CallOptions, Dialog};
use crate::client::sip_uac::SipUac;

/// How long one SIP or MSRP exchange may take before it counts as failed.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Args)]
pub struct DepositArgs {
    #[command(flatten)]
    pub target: Target,
    /// Concurrent callers (C).
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Messages each caller deposits (M).
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Mailboxes `sip:<user-prefix><n>@<domain>` (K).
    #[arg(long, default_value_t = 1000)]
    pub mailboxes: u64,
    #[arg(long, default_value = "user")]
    pub user_prefix: String,
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// Messages per session; 0 spreads each caller's M over its share of the mailboxes.
    #[arg(long, default_value_t = 0)]
    pub per_session: u64,
    /// SENDs in flight per session (1: each waits for the previous 200).
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Body size in bytes (text/plain).
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Total SENDs per second over all callers (0: as fast as the 200s come back); for
    /// latency at a given load.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Callers sharing one client SIP socket.
    #[arg(long, default_value_t = 50)]
    pub callers_per_socket: usize,
    /// Bind a presence stand-in here and count the server's PUBLISHes (point the server's
    /// `mwi.proxy` at it).
    #[arg(long)]
    pub presence: Option<SocketAddr>,
    /// How long the presence stand-in takes to answer each PUBLISH, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub publish_delay_ms: u64,
    /// Write each answered SEND to this file as a line `<sent> <latency>`, both in µs, sent
    /// counted from the run's start (a first `#` line gives the start as Unix time), in the
    /// order they were sent: to see when a tail happens and with what period.
    #[arg(long)]
    pub latency_trace: Option<PathBuf>,
}

/// One caller's results.
#[derive(Debug, Default)]
struct CallerOutcome {
    stored: u64,
    failed: u64,
    sessions: u64,
    sessions_failed: u64,
    /// Sessions whose BYE was not answered 200.
    byes_failed: u64,
    msrp_200: Latencies,
    setup: Latencies,
    unsent: u64,
    first_error: Option<String>,
    /// `(sent, latency)` in µs per answered SEND, with `--latency-trace`.
    trace: Vec<(u64, u64)>,
}

impl CallerOutcome {
    fn merge(&mut self, o: CallerOutcome) {
        self.stored += o.stored;
        self.failed += o.failed;
        self.sessions += o.sessions;
        self.sessions_failed += o.sessions_failed;
        self.byes_failed += o.byes_failed;
        self.msrp_200.merge(o.msrp_200);
        self.setup.merge(o.setup);
        self.unsent += o.unsent;
        self.trace.extend(o.trace);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn error(&mut self, e: impl std::fmt::Display) {
        self.first_error.get_or_insert_with(|| e.to_string());
    }
}

/// The client side one group of callers shares: a SIP socket (each caller's MSRP leg has its
/// own connection, see [`super::wire`]).
#[derive(Debug)]
struct Endpoints {
    uac: SipUac,
    /// Host of the callers' MSRP paths.
    local_ip: String,
}

async fn endpoints(target: &Target) -> anyhow::Result<Arc<Endpoints>> {
    let uac = SipUac::bind(target.local(), target.server()?).await?;
    Ok(Arc::new(Endpoints {
        uac,
        local_ip: target.local_ip.to_string(),
    }))
}

/// The mailboxes caller `w` of `c` calls, in order.
fn caller_mailboxes(w: usize, c: usize, k: usize) -> Vec<usize> {
    if k <= c {
        return vec![w % k.max(1)];
    }
    (w..k).step_by(c.max(1)).collect()
}

/// A text body of `size` bytes naming the caller and message.
fn body(w: usize, n: u64, size: usize) -> Bytes {
    let mut b = format!("deposit {w} {n} ");
    while b.len() < size {
        b.push('x');
    }
    Bytes::from(b)
}

struct CallerPlan {
    w: usize,
    mailboxes: Vec<String>,
    messages: u64,
    per_session: u64,
    window: usize,
    body_bytes: usize,
    from: String,
    deadline: Instant,
    /// Seconds between this caller's SENDs when paced.
    interval: Option<Duration>,
    /// Callers in the run; a paced caller starts `w / callers` of an interval late.
    callers: usize,
    /// How long a SEND may wait for its answer before its session fails.
    answer_timeout: Duration,
    /// The run's start, when answers are traced (`--latency-trace`).
    trace_from: Option<Instant>,
}

async fn run_caller(
    ep: Arc<Endpoints>,
    plan: CallerPlan,
    counters: Arc<Counters>,
) -> CallerOutcome {
    let mut out = CallerOutcome::default();
    let mut sent = 0u64;
    let mut turn = 0usize;
    // Paced callers are spread over one interval, as independent phones would be; started
    // together they would send in bursts of C every interval and measure the burst instead.
    let offset = plan.interval.map_or(Duration::ZERO, |every| {
        every.mul_f64(plan.w as f64 / plan.callers.max(1) as f64)
    });
    // The schedule starts once the first session is up. Started before its INVITE, every SEND
    // due during the set-up would go out at once when it ends: with C callers setting up
    // together that is C × window SENDs in a few milliseconds, a burst no steady rate has
    // (docs/benchmarks.md, Fix 23).
    let mut paced_from: Option<Instant> = None;
    while sent < plan.messages && Instant::now() < plan.deadline {
        let Some(to) = plan.mailboxes.get(turn % plan.mailboxes.len().max(1)) else {
            break;
        };
        turn += 1;
        let n = session_length(&plan, sent);
        let started = Instant::now();
        let (mut dialog, mut leg) = match open_leg(&ep, &plan.from, to).await {
            Ok(opened) => opened,
            Err(e) => {
                out.sessions_failed += 1;
                out.error(format!("call: {e:#}"));
                // Count the session's messages as failed so the totals add up.
                out.failed += n;
                sent += n;
                for _ in 0..n {
                    counters.failed();
                }
                continue;
            }
        };
        out.setup.record(started.elapsed());
        out.sessions += 1;
        let slots = Slots {
            from: *paced_from.get_or_insert_with(|| Instant::now() + offset),
            every: plan.interval,
            first: sent,
        };
        let written = deposit_session(&mut leg, &plan, &slots, n, &mut out, &counters).await;
        out.unsent += n - written;
        sent += n;
        // BYE first: a closed MSRP connection would end the call from the server's side.
        match dialog.bye(&ep.uac, WAIT).await {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => {
                out.byes_failed += 1;
                out.error(format!("BYE answered `{}`", r.start_line));
            }
            Err(e) => {
                out.byes_failed += 1;
                out.error(format!("BYE: {e:#}"));
            }
        }
        drop(leg);
    }
    out.unsent += plan.messages.saturating_sub(sent);
    out
}

/// How many SENDs the caller's next session carries, `sent` having gone before it.
///
/// Paced callers whose sessions all had `per_session` SENDs would hang up and call again at
/// the same moment, session after session: C INVITEs, binds and catch-up SENDs in a few
/// milliseconds, every session's length. So, as with the start of their schedules, the turns
/// are spread as independent phones' would be: caller `w` of C makes its first session
/// `(w + 1) / C` of the others. A caller with a single session keeps it whole.
fn session_length(plan: &CallerPlan, sent: u64) -> u64 {
    let left = plan.messages - sent;
    let full = plan.per_session.min(left);
    if sent > 0 || plan.interval.is_none() || full == left {
        return full;
    }
    let callers = plan.callers.max(1) as u64;
    (full * (plan.w as u64 + 1))
        .div_ceil(callers)
        .clamp(1, full)
}

/// When a paced caller's SENDs are due: the `k`-th of the run at `from + k × every`.
struct Slots {
    from: Instant,
    every: Option<Duration>,
    /// SENDs of this caller before the session.
    first: u64,
}

impl Slots {
    fn due(&self, i: u64) -> Instant {
        self.every.map_or(self.from, |every| {
            let nth = u32::try_from(self.first + i).unwrap_or(u32::MAX);
            self.from + every * nth
        })
    }
}

/// INVITE with an MSRP offer, then the MSRP leg bound and greeted.
async fn open_leg(ep: &Endpoints, from: &str, to: &str) -> anyhow::Result<(Dialog, WireLeg)> {
    let local_path = WireLeg::local_path(&ep.local_ip);
    let local = LocalMedia::with_defaults(vec![local_path.clone()], None);
    let opts = CallOptions {
        setup: Setup::Active,
        ..CallOptions::new(from, to)
    };
    let (dialog, negotiated) = invite(&ep.uac, &opts, &local, MsrpTransport::Tcp, WAIT).await?;
    let mut leg = WireLeg::connect(local_path, negotiated.peer_path).await?;
    leg.bind(WAIT).await?;
    Ok((dialog, leg))
}

/// Writes `n` SENDs (paced, at most `window` unanswered) and reads their answers as they come;
/// returns how many were written before the deadline.
async fn deposit_session(
    leg: &mut WireLeg,
    plan: &CallerPlan,
    slots: &Slots,
    n: u64,
    out: &mut CallerOutcome,
    counters: &Counters,
) -> u64 {
    let mut written = 0u64;
    loop {
        let may_write = written < n && leg.in_flight() < plan.window.max(1);
        if !may_write && leg.in_flight() == 0 {
            return written;
        }
        if written < n && Instant::now() >= plan.deadline {
            // Unwritten SENDs are counted by the caller; wait only for those in flight.
            if leg.in_flight() == 0 {
                return written;
            }
        }
        // An unanswered SEND fails its session, as msrp-session's transaction timeout did for
        // these callers before: a run never hangs on a server that stopped answering.
        let give_up = leg
            .oldest_in_flight()
            .map(|written| written + plan.answer_timeout);
        tokio::select! {
            biased;
            answers = leg.answers(), if leg.in_flight() > 0 => match answers {
                Ok(answers) => {
                    for a in answers {
                        match a {
                            Answer::Stored(latency) => {
                                out.stored += 1;
                                out.msrp_200.record(latency);
                                if let Some(from) = plan.trace_from {
                                    let sent = Instant::now().checked_sub(latency).unwrap_or(from);
                                    out.trace.push((
                                        micros(sent.saturating_duration_since(from)),
                                        micros(latency),
                                    ));
                                }
                                counters.done();
                            }
                            Answer::Refused(status) => {
                                out.failed += 1;
                                out.error(format!("SEND answered {status}"));
                                counters.failed();
                            }
                        }
                    }
                }
                Err(e) => {
                    lose(leg.in_flight() as u64 + (n - written), out, counters, &e);
                    return n;
                }
            },
            () = tokio::time::sleep_until(slots.due(written)),
                if may_write && Instant::now() < plan.deadline =>
            {
                // Every SEND due by now that the window allows goes out in one write.
                let now = Instant::now();
                while written < n
                    && leg.in_flight() < plan.window.max(1)
                    && slots.due(written) <= now
                {
                    leg.queue_send(
                        "text/plain;charset=UTF-8",
                        body(plan.w, slots.first + written, plan.body_bytes),
                    );
                    written += 1;
                }
                if let Err(e) = leg.flush().await {
                    lose(leg.in_flight() as u64 + (n - written), out, counters, &e);
                    return n;
                }
            }
            () = tokio::time::sleep_until(give_up.unwrap_or(plan.deadline)), if give_up.is_some() => {
                let e = anyhow::anyhow!("no answer to a SEND within {:?}", plan.answer_timeout);
                lose(leg.in_flight() as u64 + (n - written), out, counters, &e);
                return n;
            }
            else => return written,
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `--latency-trace`'s file: the run's start, then `(sent, latency)` in the order sent.
fn trace_text(started_unix: Duration, trace: &mut [(u64, u64)]) -> String {
    use std::fmt::Write;
    trace.sort_unstable();
    let mut text = format!(
        "# started {} µs after the Unix epoch; per answered SEND: sent (µs from the start) latency (µs)\n",
        started_unix.as_micros()
    );
    for (sent, latency) in trace.iter() {
        let _ = writeln!(text, "{sent} {latency}");
    }
    text
}

/// The connection broke: the SENDs in flight get no answer and the rest of the session
/// cannot be written.
fn lose(count: u64, out: &mut CallerOutcome, counters: &Counters, e: &anyhow::Error) {
    out.failed += count;
    out.error(format!("SEND: {e:#}"));
    for _ in 0..count {
        counters.failed();
    }
}

/// `bench deposit`.
pub async fn run(args: DepositArgs) -> anyhow::Result<Report> {
    let c = args.concurrency.max(1);
    let k = usize::try_from(args.mailboxes.max(1)).context("--mailboxes")?;
    super::sysinfo::require_open_files("self", "the load generator", (c as u64) * 2 + 64)?;
    let db = super::StoreProbe::open(&args.target).await?;
    let presence = match args.presence {
        Some(addr) => {
            Some(PublishCounter::spawn(addr, Duration::from_millis(args.publish_delay_ms)).await?)
        }
        None => None,
    };
    let aors = mailbox_aors(&args.user_prefix, &args.domain, args.mailboxes);
    let mut groups = Vec::new();
    for _ in 0..c.div_ceil(args.callers_per_socket.max(1)) {
        groups.push(endpoints(&args.target).await?);
    }
    let total = args.messages * c as u64;
    let progress = Progress::start("deposit", "stored", total);
    let started = Instant::now();
    let cpu_at_start = super::sysinfo::cpu_seconds("self")?;
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let deadline = started + args.target.time_limit();
    let tasks: Vec<_> = (0..c)
        .map(|w| {
            let mailboxes: Vec<String> = caller_mailboxes(w, c, k)
                .into_iter()
                .filter_map(|i| aors.get(i).cloned())
                .collect();
            let per_session = if args.per_session > 0 {
                args.per_session
            } else {
                args.messages.div_ceil(mailboxes.len().max(1) as u64).max(1)
            };
            let plan = CallerPlan {
                w,
                mailboxes,
                messages: args.messages,
                per_session,
                window: args.window,
                body_bytes: args.body_bytes,
                from: format!("sip:caller{w}@{}", args.domain),
                deadline,
                interval: (args.rate > 0.0).then(|| Duration::from_secs_f64(c as f64 / args.rate)),
                callers: c,
                answer_timeout: WAIT,
                trace_from: args.latency_trace.is_some().then_some(started),
            };
            let ep = groups
                .get(w / args.callers_per_socket.max(1))
                .cloned()
                .context("endpoint group")?;
            Ok(tokio::spawn(run_caller(
                ep,
                plan,
                progress.counters.clone(),
            )))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut out = CallerOutcome::default();
    for t in tasks {
        out.merge(t.await.context("caller task")?);
    }
    let secs = started.elapsed().as_secs_f64();
    drop(progress);
    if let Some(path) = &args.latency_trace {
        std::fs::write(path, trace_text(started_unix, &mut out.trace))
            .with_context(|| format!("--latency-trace {}", path.display()))?;
    }

    let mut report = Report::new("deposit");
    report.figure("callers", c as f64, "");
    report.figure("mailboxes", k as f64, "");
    report.figure("window", args.window as f64, "SENDs/session");
    report.figure("target_rate", args.rate, "SEND/s (0: unpaced)");
    report.figure("messages_stored", out.stored as f64, "MSRP 200");
    report.figure("messages_failed", out.failed as f64, "");
    report.figure("seconds", secs, "s");
    report.figure("stored_per_sec", out.stored as f64 / secs, "msg/s");
    out.msrp_200.report(&mut report, "msrp_200");
    report.figure("sessions", out.sessions as f64, "");
    report.figure("sessions_failed", out.sessions_failed as f64, "");
    report.figure("sessions_per_sec", out.sessions as f64 / secs, "sessions/s");
    out.setup.report(&mut report, "setup");
    // The generator shares the machine's cores with the server: what it took of them during
    // the run is part of reading any latency figure (docs/benchmarks.md, "Where we stand").
    report.figure(
        "generator_cpu_seconds",
        super::sysinfo::cpu_seconds("self")? - cpu_at_start,
        "s",
    );
    if let Some(e) = &out.first_error {
        eprintln!("deposit: first error: {e}");
    }
    report.check(
        format!(
            "every message answered 200 within the time limit ({} failed, {} not sent)",
            out.failed, out.unsent
        ),
        out.failed == 0 && out.unsent == 0,
    );
    report.check(
        format!(
            "every session ended with BYE answered 200 ({} not)",
            out.byes_failed
        ),
        out.byes_failed == 0,
    );
    if let Some(db) = &db {
        let added = db.rows_added(&mut report).await?;
        report.check(
            format!(
                "the database holds every 200 ({} answered 200, {added} rows added)",
                out.stored
            ),
            added >= out.stored,
        );
    }
    if let Some(p) = presence {
        p.finish(db.as_ref().map(|d| &d.store), &mut report).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_share_the_mailboxes_evenly() {
        assert_eq!(caller_mailboxes(3, 100, 1000).len(), 10);
        assert_eq!(caller_mailboxes(3, 100, 1000)[..3], [3, 103, 203]);
        let all: std::collections::BTreeSet<usize> = (0..100)
            .flat_map(|w| caller_mailboxes(w, 100, 1000))
            .collect();
        assert_eq!(all.len(), 1000);
        assert_eq!(caller_mailboxes(7, 10, 4), vec![3]);
        assert_eq!(caller_mailboxes(0, 1, 1), vec![0]);
    }

    fn paced_plan(w: usize, callers: usize, messages: u64, per_session: u64) -> CallerPlan {
        CallerPlan {
            w,
            mailboxes: vec!["sip:user0@example.com".into()],
            messages,
            per_session,
            window: 16,
            body_bytes: 10,
            from: "sip:caller0@example.com".into(),
            deadline: Instant::now() + Duration::from_secs(3600),
            interval: Some(Duration::from_millis(3)),
            callers,
            answer_timeout: Duration::from_millis(300),
            trace_from: None,
        }
    }

    /// The sessions a caller makes, `sent` advancing by each one's length.
    fn sessions(plan: &CallerPlan) -> Vec<u64> {
        let mut sent = 0;
        std::iter::from_fn(|| {
            (sent < plan.messages).then(|| {
                let n = session_length(plan, sent);
                sent += n;
                n
            })
        })
        .collect()
    }

    #[test]
    fn the_latency_trace_lists_answers_in_the_order_sent() {
        let mut trace = vec![(300, 7), (100, 2_500), (200, 40)];
        let text = trace_text(Duration::from_micros(1_795_000_000_000_000), &mut trace);
        let mut lines = text.lines();
        assert!(lines
            .next()
            .is_some_and(|l| l.starts_with("# started 1795000000000000 µs")));
        assert_eq!(lines.collect::<Vec<_>>(), ["100 2500", "200 40", "300 7"]);
    }

    #[test]
    fn paced_callers_turn_their_sessions_over_at_spread_moments() {
        // Caller w of 100 first makes a session of (w + 1)% of the others, then whole ones.
        assert_eq!(sessions(&paced_plan(0, 100, 300, 100)), [1, 100, 100, 99]);
        assert_eq!(sessions(&paced_plan(49, 100, 300, 100)), [50, 100, 100, 50]);
        assert_eq!(sessions(&paced_plan(99, 100, 300, 100)), [100, 100, 100]);
        let firsts: std::collections::BTreeSet<u64> = (0..100)
            .map(|w| session_length(&paced_plan(w, 100, 1000, 100), 0))
            .collect();
        assert_eq!(firsts.len(), 100, "every caller turns at its own moment");
        // One long session stays one; unpaced callers are not staggered.
        assert_eq!(sessions(&paced_plan(0, 100, 500, 500)), [500]);
        let unpaced = CallerPlan {
            interval: None,
            ..paced_plan(0, 100, 300, 100)
        };
        assert_eq!(sessions(&unpaced), [100, 100, 100]);
    }

    /// A session whose server reads the SENDs and never answers fails after the answer timeout
    /// instead of holding the run.
    #[tokio::test]
    async fn unanswered_sends_fail_their_session_after_the_wait() -> anyhow::Result<()> {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = silent.local_addr()?.port();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut conn, _) = silent.accept().await?;
            let mut sink = Vec::new();
            conn.read_to_end(&mut sink).await?;
            anyhow::Ok(sink)
        });
        let to = vec![msrp_session::MsrpUri::new(false, "127.0.0.1", port, "s1")];
        let mut leg = WireLeg::connect(WireLeg::local_path("127.0.0.1"), to).await?;
        let plan = CallerPlan {
            w: 0,
            mailboxes: vec!["sip:user0@example.com".into()],
            messages: 3,
            per_session: 3,
            window: 3,
            body_bytes: 10,
            from: "sip:caller0@example.com".into(),
            deadline: Instant::now() + Duration::from_secs(3600),
            interval: None,
            callers: 1,
            answer_timeout: Duration::from_millis(300),
            trace_from: None,
        };
        let slots = Slots {
            from: Instant::now(),
            every: None,
            first: 0,
        };
        let (mut out, counters) = (CallerOutcome::default(), Counters::default());
        let started = Instant::now();
        let written = tokio::time::timeout(
            Duration::from_secs(5),
            deposit_session(&mut leg, &plan, &slots, 3, &mut out, &counters),
        )
        .await
        .context("the session did not give up by itself")?;
        assert_eq!(written, 3);
        assert_eq!((out.stored, out.failed), (0, 3));
        let waited = started.elapsed();
        assert!(waited >= plan.answer_timeout && waited < WAIT, "{waited:?}");
        let error = out.first_error.unwrap_or_default();
        assert!(error.contains("no answer to a SEND"), "{error}");
        drop(leg);
        let sent = String::from_utf8(reader.await??)?;
        assert_eq!(sent.matches(" SEND\r\n").count(), 3, "{sent}");
        Ok(())
    }

    #[test]
    fn bodies_have_the_requested_size() {
        assert_eq!(body(1, 2, 100).len(), 100);
        assert!(body(1, 2, 100).starts_with(b"deposit 1 2 "));
        assert_eq!(body(1, 2, 3), Bytes::from_static(b"deposit 1 2 "));
    }
}
