//! `bench sessions`: sets up S deposit sessions (INVITE, MSRP bind, greeting) and holds them
//! idle, reads the server's resident memory from `/proc/<pid>/status` before and while they
//! are held, then hangs them all up. Reports setups and teardowns per second and the RSS
//! each idle session costs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use msrp_session::{EndpointConfig, MsrpEndpoint};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::latency::Latencies;
use super::pager::mailbox_aors;
use super::progress::Progress;
use super::report::Report;
use super::sysinfo::{require_open_files, rss_kib};
use super::Target;
use crate::client::chat::{call, CallOptions, ChatCall};
use crate::client::sip_uac::SipUac;

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Sessions to hold (S).
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,
    /// The server's process id, for its RSS.
    #[arg(long)]
    pub server_pid: u32,
    /// Setups (and teardowns) in flight at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Seconds to hold every session idle before measuring (below the server's
    /// `deposit.idle_timeout_secs`).
    #[arg(long, default_value_t = 3)]
    pub hold_secs: u64,
    /// Sessions sharing one client SIP socket and MSRP listener.
    #[arg(long, default_value_t = 500)]
    pub sessions_per_socket: usize,
    /// Mailboxes the sessions call.
    #[arg(long, default_value_t = 1000)]
    pub mailboxes: u64,
}

struct Held {
    chat: ChatCall,
    group: usize,
}

/// `bench sessions`.
pub async fn run(args: SessionsArgs) -> anyhow::Result<Report> {
    let server = args.target.server()?;
    let s = args.sessions.max(1);
    // One TCP connection per session on each side, plus sockets and files.
    let needed = s as u64 + 256;
    require_open_files("self", "the load generator", needed)?;
    require_open_files(&args.server_pid.to_string(), "the server", needed)?;
    let deadline = Instant::now() + args.target.time_limit();
    let aors = Arc::new(mailbox_aors("user", "example.com", args.mailboxes));

    let per = args.sessions_per_socket.max(1);
    let mut groups = Vec::new();
    for _ in 0..s.div_ceil(per) {
        let uac = SipUac::bind(args.target.local(), server).await?;
        let msrp = MsrpEndpoint::bind(
            SocketAddr::new(args.target.local_ip, 0),
            EndpointConfig {
                transaction_timeout: WAIT,
                ..EndpointConfig::default()
            },
        )
        .await
        .context("bind the client MSRP listener")?;
        groups.push(Arc::new((uac, msrp)));
    }

    // Let the server settle, then the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(args.server_pid)?;

    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let progress = Progress::start("sessions: setting up", "sessions", s as u64);
    let started = Instant::now();
    let tasks: Vec<_> = (0..s)
        .map(|i| {
            let group = i / per;
            let ep = groups.get(group).cloned();
            let limit = limit.clone();
            let counters = progress.counters.clone();
            let to = aors.get(i % aors.len().max(1)).cloned().unwrap_or_default();
            tokio::spawn(async move {
                let Some(ep) = ep else {
                    bail!("no endpoint group {group}");
                };
                let _permit = limit.acquire().await?;
                let t0 = Instant::now();
                let opts = CallOptions::new(&format!("sip:idle{i}@example.com"), &to);
                let r = async {
                    let mut chat = call(&ep.0, &ep.1, &opts, WAIT).await?;
                    chat.next_message(WAIT).await?;
                    anyhow::Ok(chat)
                }
                .await;
                match r {
                    Ok(chat) => {
                        counters.done();
                        Ok((Held { chat, group }, t0.elapsed()))
                    }
                    Err(e) => {
                        counters.failed();
                        Err(e)
                    }
                }
            })
        })
        .collect();
    let mut held = Vec::with_capacity(s);
    let mut setup = Latencies::default();
    let mut failed = 0usize;
    let mut first_error = None;
    for t in tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, t).await {
            Ok(Ok(Ok((h, d)))) => {
                setup.record(d);
                held.push(h);
            }
            Ok(Ok(Err(e))) => {
                failed += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(_) => {
                failed += 1;
                first_error.get_or_insert("time limit".to_string());
            }
        }
    }
    let setup_secs = started.elapsed().as_secs_f64();
    drop(progress);

    let hold_left = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(Duration::from_secs(args.hold_secs).min(hold_left)).await;
    let rss_held = rss_kib(args.server_pid)?;

    let progress = Progress::start("sessions: hanging up", "BYEs", held.len() as u64);
    let torn_started = Instant::now();
    let byes: Vec<_> = held
        .into_iter()
        .map(|h| {
            let ep = groups.get(h.group).cloned();
            let limit = limit.clone();
            let counters = progress.counters.clone();
            tokio::spawn(async move {
                let ep = ep.context("endpoint group")?;
                let _permit = limit.acquire().await?;
                let r = h.chat.bye(&ep.0, WAIT).await;
                match &r {
                    Ok(m) if m.status() == 200 => counters.done(),
                    _ => counters.failed(),
                }
                anyhow::Ok(r?.status() == 200)
            })
        })
        .collect();
    let mut torn = 0usize;
    for b in byes {
        if let Ok(Ok(true)) = b.await {
            torn += 1;
        }
    }
    let torn_secs = torn_started.elapsed().as_secs_f64();
    drop(progress);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(args.server_pid)?;

    let mut report = Report::new("sessions");
    let ok = setup.len();
    report.figure("sessions_held", ok as f64, "");
    report.figure("sessions_failed", failed as f64, "");
    report.figure("setup_seconds", setup_secs, "s");
    report.figure("setups_per_sec", ok as f64 / setup_secs, "sessions/s");
    setup.report(&mut report, "setup");
    report.figure("teardowns_per_sec", torn as f64 / torn_secs, "BYE/s");
    report.figure("rss_before_kib", rss_before as f64, "KiB");
    report.figure("rss_held_kib", rss_held as f64, "KiB");
    report.figure("rss_after_kib", rss_after as f64, "KiB");
    let per_session = rss_held.saturating_sub(rss_before) as f64 / ok.max(1) as f64;
    report.figure("rss_per_session_kib", per_session, "KiB");
    if let Some(e) = &first_error {
        eprintln!("sessions: first error: {e}");
    }
    report.check(
        format!("every session set up ({failed} failed)"),
        failed == 0,
    );
    report.check(
        format!("every session hung up with 200 ({torn} of {ok})"),
        torn == ok,
    );
    Ok(report)
}
