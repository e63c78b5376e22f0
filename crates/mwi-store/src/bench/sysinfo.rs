//! What the benchmarks read from `/proc`: a process's resident memory (`VmRSS` in
//! `/proc/<pid>/status`), its CPU time (`/proc/<pid>/stat`), so that a result says what the
//! load generator itself took of the cores it shares with the server, and its open-file limit
//! (`/proc/<pid>/limits`), so a run of 10,000 sessions fails up front with the fix instead of
//! midway with EMFILE.

use anyhow::{anyhow, bail, Context};

/// `VmRSS` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_vm_rss(&text).ok_or_else(|| anyhow!("no VmRSS line in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `/proc` counts CPU time in USER_HZ ticks, which Linux fixes at 100 per second for user space
/// on x86 and ARM whatever the kernel's own tick rate (`sysconf(_SC_CLK_TCK)` returns it).
const USER_HZ: f64 = 100.0;

/// CPU time of `pid` (`self` for this process), user plus system, all threads, in seconds.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_cpu_ticks(&text)
        .map(|ticks| ticks as f64 / USER_HZ)
        .ok_or_else(|| anyhow!("no utime and stime in {path}"))
}

/// `utime + stime` from a `/proc/<pid>/stat` line: fields 14 and 15 (proc(5)), counted after
/// the command name's closing parenthesis, since the name itself may hold spaces.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Soft "Max open files" of `pid` (`self` for this process); `None` when unlimited.
pub fn open_files_limit(pid: &str) -> anyhow::Result<Option<u64>> {
    let path = format!("/proc/{pid}/limits");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_open_files(&text).ok_or_else(|| anyhow!("no Max open files line in {path}"))
}

fn parse_open_files(limits: &str) -> Option<Option<u64>> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    let soft = rest.split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

/// Fails unless `pid` may open at least `needed` files, naming the fix.
pub fn require_open_files(pid: &str, who: &str, needed: u64) -> anyhow::Result<()> {
    if let Some(limit) = open_files_limit(pid)? {
        if limit < needed {
            bail!(
                "{who} may open {limit} files but this run needs about {needed}: raise the \
                 limit first (`ulimit -n {needed}` in the shell that starts it; scripts/bench.sh \
                 does this)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tmwi-store\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_after_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime …; the name may hold spaces and parentheses.
        let stat = "4242 (mwi (bench) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 208 0 0 20 0";
        assert_eq!(parse_cpu_ticks(stat), Some(939));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
        assert!(cpu_seconds("self").expect("own CPU time") >= 0.0);
    }

    #[test]
    fn reads_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files(limits), Some(Some(20000)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files(unlimited), Some(None));
    }

    #[test]
    fn this_process_has_a_readable_rss_and_limit() {
        let rss = rss_kib(std::process::id()).expect("own RSS");
        assert!(rss > 0);
        assert!(open_files_limit("self").is_ok());
        assert!(require_open_files("self", "test", 1).is_ok());
        assert!(
            require_open_files("self", "test", u64::MAX).is_err() || {
                // An unlimited soft limit passes any request.
                open_files_limit("self").ok().flatten().is_none()
            }
        );
    }
}
