//! Logs for operators: `tracing` events as text or JSON lines, to stderr or appended to a file
//! that is reopened on SIGHUP so logrotate can move it away.
//!
//! Lines are formatted where the event happens but written by one thread of their own
//! (tracing-appender's non-blocking writer): a slow disk or a full terminal never stalls the
//! SIP and MSRP tasks, and the lines queued while the thread writes go out in one `write`
//! (one line per deposit is one syscall per message otherwise). When more than
//! [`QUEUED_LINES`] wait, new lines are dropped and counted
//! (`mwi_store_log_lines_dropped_total`), as syslog does, rather than blocking the server.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines waiting for the writer thread before new ones are dropped.
pub const QUEUED_LINES: usize = 100_000;

/// Bytes the writer thread gathers before a `write` (it also writes whenever its queue is
/// empty, so a quiet server's lines are not held back).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Lines dropped because the queue was full, once logging is installed.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because the writer thread fell behind.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
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
    _writer: WorkerGuard,
}

/// Starts the writer thread over `sink`, dropping lines beyond `queued` waiting ones.
fn spawn_writer(sink: Box<dyn Write + Send>, queued: usize) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(queued)
        .thread_name("log-writer")
        .finish(sink)
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
    let sink: Box<dyn Write + Send> = match log.clone() {
        Some(file) => Box::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
        None => Box::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, io::stderr())),
    };
    let (writer, guard) = spawn_writer(sink, QUEUED_LINES);
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer);
    let result = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install logger: {e}"))?;
    // Only the first install succeeds, so only its counter is recorded.
    let _ = DROPPED.set(dropped);
    Ok(Logging {
        file: log,
        _writer: guard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use tracing_subscriber::fmt::MakeWriter;

    /// A sink that blocks its first write until released, then records what it gets.
    struct Stalled {
        release: mpsc::Receiver<()>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.release.recv();
            if let Ok(mut got) = self.got.lock() {
                got.extend_from_slice(buf);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_sink_drops_and_counts_lines_instead_of_blocking_the_logger() {
        let (release, released) = mpsc::channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Stalled {
            release: released,
            got: got.clone(),
        };
        let (writer, guard) = spawn_writer(Box::new(sink), 8);
        // The thread takes the first line and blocks in the sink; 8 more fill the queue.
        for i in 0..40 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .expect("a full queue drops, it does not fail");
        }
        let dropped = writer.error_counter().dropped_lines();
        assert!(dropped >= 40 - 8 - 1, "dropped {dropped}");
        for _ in 0..64 {
            release.send(()).ok();
        }
        drop(guard);
        let got = String::from_utf8(got.lock().expect("lock").clone()).expect("utf-8");
        assert!(got.starts_with("line 0\n"), "{got}");
        assert_eq!(got.lines().count(), 40 - dropped, "{got}");
    }

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
