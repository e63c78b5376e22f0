//! The summary of a benchmark run: named figures printed as a table or as one flat JSON
//! object (what scripts/bench.sh reads), plus the checks that make the run fail.

use std::fmt::Write as _;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Snake-case key, also the JSON key.
    pub key: String,
    pub value: f64,
    pub unit: &'static str,
}

/// A check the run must pass (stored counts match the database, nothing lost…).
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    pub passed: bool,
}

/// What a benchmark prints at the end.
#[derive(Debug, Clone)]
pub struct Report {
    pub bench: &'static str,
    pub figures: Vec<Figure>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(bench: &'static str) -> Self {
        Self {
            bench,
            figures: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn figure(&mut self, key: &str, value: f64, unit: &'static str) {
        self.figures.push(Figure {
            key: key.to_string(),
            value,
            unit,
        });
    }

    /// Adds a check.
    pub fn check(&mut self, what: impl Into<String>, passed: bool) {
        self.checks.push(Check {
            what: what.into(),
            passed,
        });
    }

    /// The value of a figure, by key.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.key == key).map(|f| f.value)
    }

    /// Aligned text table.
    pub fn to_table(&self) -> String {
        let width = self.figures.iter().map(|f| f.key.len()).max().unwrap_or(0);
        let mut out = format!("== bench {} ==\n", self.bench);
        for f in &self.figures {
            let _ = writeln!(
                out,
                "{:<width$}  {:>14}  {}",
                f.key,
                format_value(f.value),
                f.unit
            );
        }
        for c in &self.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "[{mark}] {}", c.what);
        }
        out
    }

    /// One flat JSON object: `bench`, every figure by key, `checks_passed`, `failed_checks`.
    pub fn to_json(&self) -> String {
        let mut map = serde_json::Map::new();
        map.insert("bench".into(), self.bench.into());
        for f in &self.figures {
            let v = serde_json::Number::from_f64(f.value)
                .map_or(serde_json::Value::Null, serde_json::Value::Number);
            map.insert(f.key.clone(), v);
        }
        let failed: Vec<serde_json::Value> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.what.clone().into())
            .collect();
        map.insert("checks_passed".into(), failed.is_empty().into());
        map.insert("failed_checks".into(), failed.into());
        serde_json::Value::Object(map).to_string()
    }

    /// `Err` naming the failed checks, so a smoke run fails loudly.
    pub fn verdict(&self) -> anyhow::Result<()> {
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.what.as_str())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("bench {}: failed checks: {}", self.bench, failed.join("; "))
        }
    }
}

/// Integers without decimals, small values with three.
fn format_value(v: f64) -> String {
    if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_flat_and_names_failed_checks() {
        let mut r = Report::new("deposit");
        r.figure("stored_per_sec", 1234.5, "msg/s");
        r.check("db rows match", false);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
        assert_eq!(v["bench"], "deposit");
        assert_eq!(v["stored_per_sec"], 1234.5);
        assert_eq!(v["checks_passed"], false);
        assert_eq!(v["failed_checks"][0], "db rows match");
        assert!(r.verdict().is_err());
    }

    #[test]
    fn table_aligns_and_formats() {
        let mut r = Report::new("fetch");
        r.figure("messages", 10000.0, "");
        r.figure("seconds", 0.4321, "s");
        r.check("mailbox empty", true);
        let t = r.to_table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[1].trim_end(),
            format!("messages  {:>14}", "10000"),
            "{t}"
        );
        assert_eq!(lines[2], format!("seconds   {:>14}  s", "0.432"), "{t}");
        assert!(t.contains("[ok  ] mailbox empty"), "{t}");
        assert!(r.verdict().is_ok());
        assert_eq!(r.get("seconds"), Some(0.4321));
    }
}
