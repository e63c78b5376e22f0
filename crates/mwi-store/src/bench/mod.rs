//! `mwi-store bench …`: a load generator that drives a running server over loopback the way
//! phones and proxies would (issue 9). Every run is bounded in count and in time, prints a
//! progress line while it runs and a summary table (or `--json`) at the end.
//!
//! - `deposit`: C concurrent callers, each depositing M messages over INVITE + MSRP into K
//!   mailboxes; MSRP 200s counted and checked against the database.
//! - `fetch`: pre-fills one mailbox with page-mode MESSAGEs, then times one fetch of it.
//! - `sessions`: holds S idle deposit sessions and reads the server's RSS from `/proc`.
//! - `page`: SIP MESSAGE deposits over UDP at a ramp of target rates (also against Kamailio
//!   msilo, for the comparison in docs/benchmarks.md).

pub mod deposit;
pub mod fetch;
pub mod latency;
pub mod pager;
pub mod presence;
pub mod progress;
pub mod report;
pub mod sessions;
pub mod sysinfo;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::server::open_store;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Chat deposits: C concurrent callers × M messages into K mailboxes.
    Deposit(deposit::DepositArgs),
    /// Pre-fill one mailbox with N messages, then time one fetch of it.
    Fetch(fetch::FetchArgs),
    /// Hold S idle deposit sessions; the server's RSS per session.
    Sessions(sessions::SessionsArgs),
    /// Page-mode MESSAGE deposits over UDP at a ramp of target rates.
    Page(pager::PageArgs),
}

/// Where the server is and how long a run may take; shared by every benchmark.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The server's SIP address, `udp:host:port` (loopback only).
    #[arg(long, default_value = "udp:127.0.0.1:5070")]
    pub sip: String,
    /// Local IP for our SIP and MSRP sockets (loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: IpAddr,
    /// Hard stop for the whole run, in seconds, whatever is left to do.
    #[arg(long, default_value_t = 120)]
    pub time_limit_secs: u64,
    /// The server's database: stored counts are checked against it (opened read-only).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Target {
    /// The server's UDP address; anything off the loopback range is refused, so a typo can
    /// never aim a load test at another host.
    pub fn server(&self) -> anyhow::Result<SocketAddr> {
        let addr = self.sip.strip_prefix("udp:").unwrap_or(&self.sip);
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--sip {:?}: expected udp:host:port", self.sip))?;
        if !addr.ip().is_loopback() || !self.local_ip.is_loopback() {
            bail!(
                "benchmarks run over loopback only: {addr} / {}",
                self.local_ip
            );
        }
        Ok(addr)
    }

    /// Local address with port 0.
    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(self.local_ip, 0)
    }

    pub fn time_limit(&self) -> Duration {
        Duration::from_secs(self.time_limit_secs)
    }

    /// Opens the server's store read-only (fetch claims untouched), when `--db` was given.
    pub fn open_db(&self) -> anyhow::Result<Option<message_store::Store>> {
        let Some(path) = &self.db else {
            return Ok(None);
        };
        let mut config = crate::config::Config::default();
        config.store.path = path.clone();
        open_store(&config, false).map(Some)
    }
}

/// The server's store opened for a run (`--db`), with the messages it held before the run.
#[derive(Debug)]
pub struct StoreProbe {
    pub store: message_store::Store,
    before: u64,
}

impl StoreProbe {
    /// Opens the store when `--db` was given and counts what it holds.
    pub async fn open(target: &Target) -> anyhow::Result<Option<Self>> {
        let Some(store) = target.open_db()? else {
            return Ok(None);
        };
        let before = store.stats().await?.new;
        Ok(Some(Self { store, before }))
    }

    /// Rows added since [`Self::open`]; also reported as the `db_rows_added` figure.
    pub async fn rows_added(&self, report: &mut report::Report) -> anyhow::Result<u64> {
        let added = self.store.stats().await?.new.saturating_sub(self.before);
        report.figure("db_rows_added", added as f64, "rows");
        Ok(added)
    }
}

/// Runs a benchmark and prints its summary.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    let (report, json) = match command {
        BenchCommand::Deposit(a) => {
            let json = a.target.json;
            (deposit::run(a).await?, json)
        }
        BenchCommand::Fetch(a) => {
            let json = a.target.json;
            (fetch::run(a).await?, json)
        }
        BenchCommand::Sessions(a) => {
            let json = a.target.json;
            (sessions::run(a).await?, json)
        }
        BenchCommand::Page(a) => {
            let json = a.target.json;
            (pager::run(a).await?, json)
        }
    };
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    report.verdict()
}
