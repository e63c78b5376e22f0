//! Logs for operators: `tracing` events as text or JSON lines, to stderr or appended to a file
//! that is reopened on SIGHUP so logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

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

    /// Opens the path again and swaps the handle; lines written meanwhile go to the old file.
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

/// One writer per event; the lock keeps lines whole.
#[derive(Debug)]
pub struct LogWriter(Arc<Mutex<File>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.lock() {
            Ok(mut f) => f.write(buf),
            Err(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0.lock() {
            Ok(mut f) => f.flush(),
            Err(_) => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for ReopenableLog {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(self.file.clone())
    }
}

/// Installs the global subscriber. `RUST_LOG` wins over `level`; rsipstack logs every packet
/// in full at info, so it is held at warn unless named explicitly.
pub fn init(
    format: LogFormat,
    file: Option<&Path>,
    level: &str,
) -> anyhow::Result<Option<ReopenableLog>> {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let mut filter = EnvFilter::try_new(&directives)
        .with_context(|| format!("bad log filter {directives:?}"))?;
    if !directives.contains("rsipstack") {
        filter = filter.add_directive("rsipstack=warn".parse()?);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let log = match file {
        Some(path) => Some(ReopenableLog::open(path)?),
        None => None,
    };
    let result = match (format, log.clone()) {
        (LogFormat::Text, None) => builder
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(io::stderr)
            .try_init(),
        (LogFormat::Json, None) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(io::stderr)
            .try_init(),
        (LogFormat::Text, Some(w)) => builder.with_ansi(false).with_writer(w).try_init(),
        (LogFormat::Json, Some(w)) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(w)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install logger: {e}"))?;
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_a_rotated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mwi.log");
        let log = ReopenableLog::open(&path).expect("open");
        log.make_writer().write_all(b"one\n").expect("write");
        std::fs::rename(&path, dir.path().join("mwi.log.1")).expect("rotate");
        log.reopen().expect("reopen");
        log.make_writer().write_all(b"two\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("new"), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("mwi.log.1")).expect("old"),
            "one\n"
        );
    }
}
