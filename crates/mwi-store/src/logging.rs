//! Logs for operators: `tracing` events as text or JSON lines, to stderr or appended to a file
//! that is reopened on SIGHUP so logrotate can move it away.
//!
//! Lines are formatted where the event happens but written by one thread of their own
//! ([`crate::log_queue`]): a slow disk or a full terminal never stalls the SIP and MSRP tasks,
//! and the lines of each few milliseconds go out in one `write` (one line per deposit is one
//! syscall per message otherwise). When more than [`QUEUED_BYTES`] wait, new lines are dropped
//! and counted (`mwi_store_log_lines_dropped_total`), as syslog does, rather than blocking the
//! server.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::log_json::JsonLines;
use crate::log_queue::{self, LogQueue, LogThread};

/// Bytes of lines waiting for the writer thread before new ones are dropped (some 100,000
/// deposit lines).
pub const QUEUED_BYTES: usize = 32 * 1024 * 1024;

/// The installed queue, for its count of dropped lines.
static QUEUE: OnceLock<LogQueue> = OnceLock::new();

/// Log lines dropped so far because the writer thread fell behind.
pub fn dropped_lines() -> u64 {
    QUEUE.get().map_or(0, LogQueue::dropped_lines)
}

/// A log file that can be reopened in place (after logrotate renamed it).
#[derive(Debug, Clone)]
pub struct ReopenableLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl ReopenableLog {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = open_append(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Opens the path again and swaps the handle; lines not yet written go to the new file.
    pub fn reopen(&self) -> anyhow::Result<()> {
        let file = open_append(&self.path)?;
        let mut guard = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("log file lock poisoned"))?;
        *guard = file;
        Ok(())
    }
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))
}

/// Writes to whichever file is current; the writer thread's buffer keeps lines whole.
impl Write for ReopenableLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.lock() {
            Ok(mut f) => f.write(buf),
            Err(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.lock() {
            Ok(mut f) => f.flush(),
            Err(_) => Ok(()),
        }
    }
}

/// Installed logging: the file to reopen on SIGHUP, and the writer thread, which writes out
/// every queued line when this is dropped (keep it until the process exits).
#[derive(Debug)]
pub struct Logging {
    pub file: Option<ReopenableLog>,
    _writer: LogThread,
}

/// Installs the global subscriber. `RUST_LOG` wins over `level`; rsipstack logs every packet
/// in full at info, so it is held at warn unless named explicitly.
pub fn init(format: LogFormat, file: Option<&Path>, level: &str) -> anyhow::Result<Logging> {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let mut filter = EnvFilter::try_new(&directives)
        .with_context(|| format!("bad log filter {directives:?}"))?;
    if !directives.contains("rsipstack") {
        filter = filter.add_directive("rsipstack=warn".parse()?);
    }
    let log = match file {
        Some(path) => Some(ReopenableLog::open(path)?),
        None => None,
    };
    let ansi = log.is_none() && io::IsTerminal::is_terminal(&io::stderr());
    // The thread writes a whole batch at once, so the sink needs no buffer of its own.
    let sink: Box<dyn Write + Send> = match log.clone() {
        Some(file) => Box::new(file),
        None => Box::new(io::stderr()),
    };
    let (writer, guard) = log_queue::spawn("log-writer", sink, QUEUED_BYTES)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer.clone());
    let result = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install logger: {e}"))?;
    // Only the first install succeeds, so only its queue is recorded.
    let _ = QUEUE.set(writer);
    Ok(Logging {
        file: log,
        _writer: guard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_a_rotated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mwi.log");
        let log = ReopenableLog::open(&path).expect("open");
        let mut writer = log.clone();
        writer.write_all(b"one\n").expect("write");
        std::fs::rename(&path, dir.path().join("mwi.log.1")).expect("rotate");
        log.reopen().expect("reopen");
        writer.write_all(b"two\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("new"), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("mwi.log.1")).expect("old"),
            "one\n"
        );
    }
}
