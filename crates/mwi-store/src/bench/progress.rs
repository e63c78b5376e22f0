//! The progress line: shared counters that a background task prints to stderr once a second
//! (rewritten in place on a terminal, one line per second otherwise).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters the workers bump.
#[derive(Debug, Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub failed: AtomicU64,
}

impl Counters {
    pub fn done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running progress line; stops printing when dropped.
#[derive(Debug)]
pub struct Progress {
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
    terminal: bool,
}

impl Progress {
    /// Starts printing `label: done/total what, failed, elapsed, rate`.
    pub fn start(label: &str, what: &'static str, total: u64) -> Self {
        let counters = Arc::new(Counters::default());
        let terminal = std::io::stderr().is_terminal();
        let c = counters.clone();
        let label = label.to_string();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let line = line(&label, what, total, &c, started.elapsed());
                let mut err = std::io::stderr().lock();
                let _ = if terminal {
                    write!(err, "\r{line}\x1b[K")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
        });
        Self {
            counters,
            task,
            terminal,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        if self.terminal {
            eprintln!();
        }
    }
}

fn line(label: &str, what: &str, total: u64, c: &Counters, elapsed: Duration) -> String {
    let done = c.done.load(Ordering::Relaxed);
    let failed = c.failed.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "{label}: {done}/{total} {what}, {failed} failed, {secs:.0} s, {:.0}/s",
        done as f64 / secs
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_counts_and_rate() {
        let c = Counters::default();
        for _ in 0..50 {
            c.done();
        }
        c.failed();
        let l = line("deposit", "stored", 100, &c, Duration::from_secs(2));
        assert_eq!(l, "deposit: 50/100 stored, 1 failed, 2 s, 25/s");
    }
}
