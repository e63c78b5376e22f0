//! `bench fetch`: fills one mailbox with N page-mode MESSAGEs (the fastest way in), then
//! calls the fetch URI as its owner and times the whole fetch, from INVITE to the server's
//! BYE, with every message answered 200 (SPEC §2). With `--db` the mailbox must be empty after.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use msrp_session::{EndpointConfig, MsrpEndpoint};
use tokio::time::Instant;

use super::pager::{run_load, PageLoad};
use super::progress::Progress;
use super::report::Report;
use super::Target;
use crate::client::chat::{call, CallOptions};
use crate::client::sip_uac::SipUac;

#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub target: Target,
    /// Messages to put in the mailbox and fetch (N); the server's
    /// `store.max_messages_per_mailbox` must allow them.
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// The mailbox.
    #[arg(long, default_value = "sip:fetcher@example.com")]
    pub mailbox: String,
    /// The server's `fetch.uri`.
    #[arg(long, default_value = "sip:offline@example.com")]
    pub fetch_uri: String,
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
}

/// `bench fetch`.
pub async fn run(args: FetchArgs) -> anyhow::Result<Report> {
    let server = args.target.server()?;
    let db = args.target.open_db()?;
    let deadline = Instant::now() + args.target.time_limit();
    let mut report = Report::new("fetch");

    let progress = Progress::start("fetch: pre-fill", "stored", args.messages);
    let fill_started = Instant::now();
    let fill = run_load(
        PageLoad {
            server,
            local_ip: args.target.local_ip,
            rate: 0,
            duration: args.target.time_limit() / 2,
            count: args.messages,
            mailboxes: Arc::new(vec![args.mailbox.clone()]),
            from: "sip:filler@example.com".into(),
            body_bytes: args.body_bytes,
            window: 256,
            sockets: 1,
            drain: Duration::from_secs(5),
        },
        progress.counters.clone(),
    )
    .await?;
    drop(progress);
    let fill_secs = fill_started.elapsed().as_secs_f64();
    report.figure("prefilled", fill.accepted as f64, "MESSAGE 2xx");
    report.figure("prefill_per_sec", fill.accepted as f64 / fill_secs, "msg/s");
    if let Some(db) = &db {
        let waiting = db.counts(&args.mailbox).await?.new;
        report.figure("waiting_before_fetch", waiting as f64, "messages");
    }

    let uac = SipUac::bind(args.target.local(), server).await?;
    let msrp = MsrpEndpoint::bind(
        args.target.local(),
        EndpointConfig {
            transaction_timeout: Duration::from_secs(10),
            ..EndpointConfig::default()
        },
    )
    .await?;
    let mut uac = uac;
    let wait = deadline.saturating_duration_since(Instant::now());
    let started = Instant::now();
    let mut opts = CallOptions::new(&args.mailbox, &args.fetch_uri);
    opts.asserted_identity = Some(args.mailbox.clone());
    let mut chat = call(&uac, &msrp, &opts, Duration::from_secs(10)).await?;
    let got = chat.collect_until_bye(&mut uac, wait).await?;
    let secs = started.elapsed().as_secs_f64();
    // The "no messages" text or a summary may come besides the stored ones.
    let received = got.len() as u64;
    report.figure("received", received as f64, "messages");
    report.figure("fetch_seconds", secs, "s");
    report.figure("fetch_per_sec", received as f64 / secs, "msg/s");
    report.check(
        format!(
            "the fetch delivered every stored message ({received} received, {} stored)",
            fill.accepted
        ),
        received >= fill.accepted,
    );
    if let Some(db) = &db {
        let left = db.counts(&args.mailbox).await?.new;
        report.figure("waiting_after_fetch", left as f64, "messages");
        report.check(
            format!("the mailbox is empty after the fetch ({left} left)"),
            left == 0,
        );
    }
    Ok(report)
}
