//! The admin commands: `mwi-store mailbox list|show|purge` and `mwi-store stats`. Tables for
//! people, `--json` for scripts.
//!
//! They open the server's database beside the running server (SQLite WAL: reads never block it,
//! a purge is one short write transaction) without releasing its fetch claims. A purge also
//! queues the mailbox for republishing in the same transaction; the server picks that up within
//! a second (see [`crate::republish`]).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use message_store::{MailboxSummary, MessageState, Store, StoreStats, StoredMessage};
use msrp_session::cpim::CpimMessage;
use serde_json::{json, Value};

use crate::config::Config;

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The server's config file (its `store.path` is opened).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The SQLite database file; replaces `store.path`.
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// `mwi-store mailbox …`.
#[derive(Debug, Subcommand)]
pub enum MailboxCommand {
    /// Every mailbox holding messages: AoR, new, old, bytes, oldest.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The messages of one mailbox (waiting and kept): id, state, time, sender, size, type.
    Show {
        /// The mailbox AoR, e.g. sip:bob@example.com.
        aor: String,
        /// Also print each message body (CPIM: the text inside).
        #[arg(long)]
        body: bool,
        #[command(flatten)]
        store: StoreArgs,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Deletes the messages of one mailbox; the running server republishes its MWI.
    Purge {
        /// The mailbox AoR.
        aor: String,
        /// Only messages received longer ago than this: 90s, 30m, 12h, 30d or 2w.
        #[arg(long, value_parser = parse_age)]
        older_than: Option<Duration>,
        #[command(flatten)]
        store: StoreArgs,
        /// A JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

/// `mwi-store stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// An age such as `30d`: a whole number and a unit (`s`, `m`, `h`, `d`, `w`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` needs a unit: s, m, h, d or w (e.g. 30d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a whole number before the unit, e.g. 30d"))?;
    let seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => return Err(format!("`{other}` is not a unit: use s, m, h, d or w")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long ago"))
}

/// Runs a `mailbox` subcommand, writing to stdout.
pub fn run_mailbox(command: MailboxCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        MailboxCommand::List { store, json } => {
            let store = open(&store)?;
            let mailboxes = block_on(store.mailboxes())?.context("cannot list mailboxes")?;
            if json {
                writeln!(out, "{}", list_json(&mailboxes))?;
            } else {
                out.write_all(list_table(&mailboxes).as_bytes())?;
            }
        }
        MailboxCommand::Show {
            aor,
            body,
            store,
            json,
        } => {
            let aor = mailbox_key(&aor)?;
            let store = open(&store)?;
            let messages = block_on(store.messages(&aor, true))?
                .with_context(|| format!("cannot read the messages of {aor}"))?;
            if json {
                writeln!(out, "{}", show_json(&aor, &messages, body))?;
            } else {
                out.write_all(show_table(&messages, body).as_bytes())?;
            }
        }
        MailboxCommand::Purge {
            aor,
            older_than,
            store,
            json,
        } => {
            let aor = mailbox_key(&aor)?;
            let store = open(&store)?;
            let purged = block_on(store.purge(&aor, older_than))?
                .with_context(|| format!("cannot purge {aor}"))?;
            if json {
                writeln!(out, "{}", json!({ "mailbox": aor, "purged": purged }))?;
            } else if purged == 0 {
                writeln!(out, "{aor}: nothing to purge")?;
            } else {
                writeln!(
                    out,
                    "{aor}: purged {purged} message{}; a running server republishes its MWI within {} s",
                    if purged == 1 { "" } else { "s" },
                    crate::republish::POLL.as_secs()
                )?;
            }
        }
    }
    Ok(())
}

/// Runs `stats`, writing to stdout.
pub fn run_stats(args: StatsArgs) -> anyhow::Result<()> {
    let config = config_of(&args.store)?;
    let store = open_config(&config)?;
    let stats = block_on(store.stats())?.context("cannot read the store figures")?;
    let path = &config.store.path;
    let file_bytes = |suffix: &str| {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        std::fs::metadata(p).map_or(0, |m| m.len())
    };
    let files = FileSizes {
        db: file_bytes(""),
        wal: file_bytes("-wal"),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        writeln!(out, "{}", stats_json(&stats, &files))?;
    } else {
        out.write_all(stats_table(&stats, &files).as_bytes())?;
    }
    Ok(())
}

/// Sizes of the database files on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSizes {
    pub db: u64,
    pub wal: u64,
}

/// The store key of a mailbox: the normalised AoR, as the server stores it.
fn mailbox_key(aor: &str) -> anyhow::Result<String> {
    sip_core::Aor::parse(aor)
        .map(|a| a.to_string())
        .map_err(|e| anyhow::anyhow!("`{aor}` is not a SIP AoR such as sip:bob@example.com: {e}"))
}

fn config_of(args: &StoreArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(s) = &args.store {
        config.store.path = s.clone();
    }
    Ok(config)
}

fn open(args: &StoreArgs) -> anyhow::Result<Store> {
    open_config(&config_of(args)?)
}

/// Opens an existing database only: a typo must not create an empty store and report it.
fn open_config(config: &Config) -> anyhow::Result<Store> {
    let path = &config.store.path;
    if !path.exists() {
        bail!(
            "no store at {}: give the server's --config FILE or --store PATH",
            path.display()
        );
    }
    crate::server::open_store(config, false)
}

/// Runs one store call on a small runtime (the store's reads use tokio's blocking pool).
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn time_json(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Text from the network made safe for a terminal: control characters (escape sequences
/// could rewrite the operator's screen) shown escaped; newlines and tabs kept when `multiline`.
fn printable(text: &str, multiline: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' if multiline => out.push(c),
            '\r' if multiline => {}
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Left-aligned text columns, right-aligned numeric ones (`numeric[i]`), two spaces apart.
fn table(headers: &[&str], numeric: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
            if i > 0 {
                line.push_str("  ");
            }
            if numeric.get(i).copied().unwrap_or(false) {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        line.truncate(line.trim_end().len());
        line.push('\n');
        line
    };
    let mut out = render(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&render(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `mailbox list` for people.
pub fn list_table(mailboxes: &[MailboxSummary]) -> String {
    let rows: Vec<Vec<String>> = mailboxes
        .iter()
        .map(|m| {
            vec![
                printable(&m.aor, false),
                m.new.to_string(),
                m.old.to_string(),
                m.bytes.to_string(),
                m.oldest.map(time_text).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &["MAILBOX", "NEW", "OLD", "BYTES", "OLDEST"],
        &[false, true, true, true, false],
        &rows,
    )
}

/// `mailbox list --json`.
pub fn list_json(mailboxes: &[MailboxSummary]) -> Value {
    Value::Array(
        mailboxes
            .iter()
            .map(|m| {
                json!({
                    "aor": m.aor,
                    "new": m.new,
                    "old": m.old,
                    "bytes": m.bytes,
                    "oldest": m.oldest.map(time_json),
                })
            })
            .collect(),
    )
}

fn state_text(state: MessageState) -> &'static str {
    match state {
        MessageState::New => "new",
        MessageState::Delivered => "old",
    }
}

fn sender_text(m: &StoredMessage) -> String {
    let aor = &m.message.sender_aor;
    let mut s = match &m.message.sender_name {
        Some(name) => format!("\"{name}\" <{aor}>"),
        None => aor.clone(),
    };
    if !m.message.sender_verified {
        s.push_str(" (unverified)");
    }
    printable(&s, false)
}

fn type_text(m: &StoredMessage) -> String {
    let t = match &m.message.inner_content_type {
        Some(inner) => format!("{} ({inner})", m.message.content_type),
        None => m.message.content_type.clone(),
    };
    printable(&t, false)
}

/// The text a person wants to read: the content inside CPIM, when it parses.
fn readable_body(m: &StoredMessage) -> Vec<u8> {
    let raw = &m.message.body;
    if m.message.inner_content_type.is_some()
        || m.message
            .content_type
            .to_ascii_lowercase()
            .starts_with("message/cpim")
    {
        if let Ok(cpim) = CpimMessage::parse(raw) {
            return cpim.body.to_vec();
        }
    }
    raw.clone()
}

/// `mailbox show` for people: one row per message, oldest first; with `body`, each row is
/// followed by its text indented by four spaces.
pub fn show_table(messages: &[StoredMessage], body: bool) -> String {
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                state_text(m.state).to_string(),
                time_text(m.message.received_at),
                sender_text(m),
                m.message.body.len().to_string(),
                type_text(m),
            ]
        })
        .collect();
    let headers = ["ID", "STATE", "RECEIVED", "FROM", "BYTES", "TYPE"];
    let numeric = [true, false, false, false, true, false];
    if !body {
        return table(&headers, &numeric, &rows);
    }
    let text = table(&headers, &numeric, &rows);
    let mut lines = text.lines();
    let mut out = String::new();
    if let Some(header) = lines.next() {
        out.push_str(header);
        out.push('\n');
    }
    for (line, m) in lines.zip(messages) {
        out.push_str(line);
        out.push('\n');
        let content = readable_body(m);
        let shown = match std::str::from_utf8(&content) {
            Ok(t) => printable(t, true),
            Err(_) => format!(
                "({} bytes, not UTF-8; --json shows them in hex)",
                content.len()
            ),
        };
        for body_line in shown.lines() {
            out.push_str("    ");
            out.push_str(body_line);
            out.push('\n');
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
        s
    })
}

/// `mailbox show --json`: every stored field; with `body`, the body exactly as stored
/// (`body` when UTF-8, else `body_hex`).
pub fn show_json(aor: &str, messages: &[StoredMessage], body: bool) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            let n = &m.message;
            let mut v = json!({
                "id": m.id.0,
                "state": state_text(m.state),
                "received_at": time_json(n.received_at),
                "delivered_at": m.delivered_at.map(time_json),
                "sender": n.sender_aor,
                "sender_name": n.sender_name,
                "sender_verified": n.sender_verified,
                "recipient": n.recipient,
                "bytes": n.body.len(),
                "content_type": n.content_type,
                "inner_content_type": n.inner_content_type,
                "message_id": n.message_id,
                "sender_time": n.sender_time.map(time_json),
                "subject": n.subject,
                "urgent": n.urgent,
                "source": match n.source {
                    message_store::Source::Msrp => "msrp",
                    message_store::Source::SipMessage => "sip-message",
                },
            });
            if body {
                if let Value::Object(map) = &mut v {
                    match std::str::from_utf8(&n.body) {
                        Ok(t) => map.insert("body".into(), Value::String(t.to_string())),
                        Err(_) => map.insert("body_hex".into(), Value::String(hex(&n.body))),
                    };
                }
            }
            v
        })
        .collect();
    json!({ "mailbox": aor, "messages": messages })
}

/// `stats` for people.
pub fn stats_table(stats: &StoreStats, files: &FileSizes) -> String {
    let rows = [
        ("mailboxes", stats.mailboxes),
        ("new", stats.new),
        ("old", stats.old),
        ("bytes", stats.bytes),
        ("db_file_bytes", files.db),
        ("wal_file_bytes", files.wal),
    ]
    .iter()
    .map(|(k, v)| vec![(*k).to_string(), v.to_string()])
    .collect::<Vec<_>>();
    table(&["FIGURE", "VALUE"], &[false, true], &rows)
}

/// `stats --json`.
pub fn stats_json(stats: &StoreStats, files: &FileSizes) -> Value {
    json!({
        "mailboxes": stats.mailboxes,
        "new": stats.new,
        "old": stats.old,
        "bytes": stats.bytes,
        "db_file_bytes": files.db,
        "wal_file_bytes": files.wal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use message_store::{NewMessage, Source, StoredId};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("valid time")
    }

    fn stored(id: i64, body: &[u8]) -> StoredMessage {
        StoredMessage {
            id: StoredId(id),
            state: MessageState::New,
            delivered_at: None,
            message: NewMessage {
                mailbox: "sip:bob@example.com".into(),
                sender_aor: "sip:alice@example.com".into(),
                sender_name: Some("Alice".into()),
                sender_verified: true,
                recipient: "sip:bob@example.com".into(),
                content_type: "text/plain".into(),
                inner_content_type: None,
                body: body.to_vec(),
                message_id: None,
                sender_time: None,
                received_at: t(1_764_133_200),
                source: Source::SipMessage,
                urgent: false,
                subject: None,
            },
        }
    }

    #[test]
    fn ages_take_a_unit() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(1_209_600)));
        assert!(parse_age("30").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("3y").is_err());
        assert!(parse_age("-3d").is_err());
        assert!(parse_age("99999999999999999999d").is_err());
        assert!(parse_age("9999999999999999w").is_err());
    }

    #[test]
    fn tables_align_numbers_right_and_text_left() {
        let rows = vec![
            MailboxSummary {
                aor: "sip:bob@example.com".into(),
                new: 12,
                old: 0,
                bytes: 3_456,
                oldest: Some(t(1_764_133_200)),
            },
            MailboxSummary {
                aor: "sip:al@x.org".into(),
                new: 1,
                old: 2,
                bytes: 7,
                oldest: None,
            },
        ];
        assert_eq!(
            list_table(&rows),
            "MAILBOX              NEW  OLD  BYTES  OLDEST\n\
             sip:bob@example.com   12    0   3456  2025-11-26T05:00:00Z\n\
             sip:al@x.org           1    2      7  -\n"
        );
    }

    #[test]
    fn bodies_cannot_drive_the_terminal() {
        let m = stored(1, b"hi\x1b[2Jthere\r\nsecond\tline");
        let text = show_table(&[m], true);
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(
            text.contains("    hi\\u{1b}[2Jthere\n    second\tline\n"),
            "{text:?}"
        );
        let mut m = stored(2, b"x");
        m.message.sender_name = Some("Eve\x1b]0;pwned\x07".into());
        let text = show_table(&[m], false);
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    }

    #[test]
    fn cpim_shows_the_inner_text_and_binary_is_not_printed() {
        let mut m = stored(
            3,
            b"From: <sip:alice@example.com>\r\n\r\nContent-Type: text/plain\r\n\r\nhello inside",
        );
        m.message.content_type = "message/cpim".into();
        m.message.inner_content_type = Some("text/plain".into());
        let text = show_table(std::slice::from_ref(&m), true);
        assert!(text.contains("message/cpim (text/plain)"), "{text}");
        assert!(text.contains("\n    hello inside\n"), "{text}");
        assert!(!text.contains("Content-Type: text/plain\n"), "{text}");
        // JSON keeps the stored bytes exactly.
        let v = show_json("sip:bob@example.com", &[m], true);
        assert_eq!(
            v["messages"][0]["body"],
            "From: <sip:alice@example.com>\r\n\r\nContent-Type: text/plain\r\n\r\nhello inside"
        );

        let bin = stored(4, &[0xff, 0x00, 0x41]);
        let text = show_table(std::slice::from_ref(&bin), true);
        assert!(text.contains("(3 bytes, not UTF-8"), "{text}");
        let v = show_json("sip:bob@example.com", &[bin], true);
        assert_eq!(v["messages"][0]["body_hex"], "ff0041");
        assert!(v["messages"][0].get("body").is_none());
    }

    #[test]
    fn mailbox_arguments_are_normalised_like_the_server() {
        assert_eq!(
            mailbox_key("sip:Bob@Example.COM;transport=tcp").expect("valid"),
            mailbox_key("sip:Bob@example.com").expect("valid")
        );
        assert!(mailbox_key("bob").is_err());
    }
}
