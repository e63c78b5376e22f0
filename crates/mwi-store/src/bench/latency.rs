//! Latency samples and their percentiles (nearest rank on the sorted samples).

use std::time::Duration;

/// Recorded latencies, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    micros: Vec<u64>,
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.micros
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds another task's samples.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The `q` quantile (0.0..=1.0) in milliseconds; 0 with no samples.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        self.micros.sort_unstable();
        let last = self.micros.len() - 1;
        // Nearest rank: the smallest sample with at least q of the samples at or below it.
        let rank = ((q.clamp(0.0, 1.0) * self.micros.len() as f64).ceil() as usize)
            .saturating_sub(1)
            .min(last);
        self.micros.get(rank).copied().unwrap_or(0) as f64 / 1000.0
    }

    /// Adds `<prefix>_p50_ms`, `_p99_ms` and `_max_ms` to a report.
    pub fn report(&mut self, report: &mut super::report::Report, prefix: &str) {
        let p50 = self.quantile_ms(0.5);
        let p99 = self.quantile_ms(0.99);
        let max = self.quantile_ms(1.0);
        report.figure(&format!("{prefix}_p50_ms"), p50, "ms");
        report.figure(&format!("{prefix}_p99_ms"), p99, "ms");
        report.figure(&format!("{prefix}_max_ms"), max, "ms");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for ms in (1..=100).rev() {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.quantile_ms(0.5), 50.0);
        assert_eq!(l.quantile_ms(0.99), 99.0);
        assert_eq!(l.quantile_ms(1.0), 100.0);
        assert_eq!(l.quantile_ms(0.0), 1.0);
        assert_eq!(Latencies::default().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn merge_keeps_every_sample() {
        let mut a = Latencies::default();
        a.record(Duration::from_micros(1500));
        let mut b = Latencies::default();
        b.record(Duration::from_micros(500));
        a.merge(b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.quantile_ms(0.5), 0.5);
        assert_eq!(a.quantile_ms(1.0), 1.5);
    }
}
