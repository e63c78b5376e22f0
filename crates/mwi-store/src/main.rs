//! `mwi-store` command line: `serve` runs the server; `check-config` validates a file;
//! `mailbox` and `stats` are the admin commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use mwi_store::config::{Config, LogFormat};

/// jemalloc instead of glibc malloc: glibc's allocator took about a fifth of the server's CPU
/// under deposit load (consolidating and splitting chunks across worker threads); jemalloc
/// cut the server's CPU per deposited message by about a third (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "mwi-store",
    version,
    about = "Stores chat messages for offline SIP users and signals them with MWI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (embedded defaults when no config file is given).
    Serve(ServeArgs),
    /// Validate a config file without starting.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Look into and purge mailboxes (safe while the server runs).
    #[command(subcommand)]
    Mailbox(mwi_store::admin::MailboxCommand),
    /// Whole-store figures: mailboxes, messages, bytes, file sizes.
    Stats(mwi_store::admin::StatsArgs),
    /// Deposit, fetch or subscribe like a phone (demo and interop tests).
    #[command(subcommand)]
    Client(mwi_store::client::cli::ClientCommand),
    /// Load generator against a running server over loopback (docs/benchmarks.md).
    #[command(subcommand)]
    Bench(mwi_store::bench::BenchCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML config file; every key is optional.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// SIP listen address `transport:host:port`, repeatable; replaces `sip.listen`.
    #[arg(long = "listen")]
    listen: Vec<String>,
    /// MSRP listen address `host:port`; replaces `msrp.listen`.
    #[arg(long)]
    msrp_listen: Option<String>,
    /// SQLite database file; replaces `store.path`.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Log format; replaces `log.format`.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Append logs to this file (reopened on SIGHUP); replaces `log.file`.
    #[arg(long)]
    log_file: Option<PathBuf>,
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        config.sip.listen = args.listen.clone();
    }
    if let Some(m) = &args.msrp_listen {
        config.msrp.listen = m.clone();
    }
    if let Some(s) = &args.store {
        config.store.path = s.clone();
    }
    if let Some(f) = args.log_format {
        config.log.format = f;
    }
    if let Some(f) = &args.log_file {
        config.log.file = f.display().to_string();
    }
    config.validate().context("invalid command-line option")?;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = load_config(&args)?;
            let log_file = (!config.log.file.is_empty()).then(|| PathBuf::from(&config.log.file));
            // Held to the end: dropping it writes out the lines still queued.
            let logging = mwi_store::logging::init(
                config.log.format,
                log_file.as_deref(),
                &config.log.level,
            )?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(mwi_store::server::run(config, logging.file.clone()))
        }
        Command::Mailbox(command) => mwi_store::admin::run_mailbox(command),
        Command::Stats(args) => mwi_store::admin::run_stats(args),
        Command::Client(command) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(mwi_store::client::cli::run(command)),
        Command::Bench(command) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(mwi_store::bench::run(command)),
        Command::CheckConfig { file } => {
            Config::load(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
    }
}
