//! JSON log lines, written straight into the line buffer.
//!
//! tracing-subscriber's JSON format serializes each event through serde_json into an adaptor
//! that checks every fragment for valid UTF-8 before appending it: under deposit load that was
//! about a tenth of the tokio workers' time for the one "message stored" line per message. This
//! formatter writes the same line (same keys in the same order, same escapes, `timestamp`,
//! `level`, the event's fields, `target`) with plain `write_str`s; the equivalence test below
//! holds it to tracing-subscriber's output.

use std::cell::Cell;
use std::fmt::{self, Write};

use chrono::{Datelike, Timelike, Utc};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The `--log-format json` event format: one flat JSON object per line.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records of the `log` crate (rustls, for one) arrive as events of one generic
        // callsite; their own target and level are in the normalized metadata.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        // The line is put together in a String of this thread's, then written once: through
        // `writer` each of its ~85 small pieces was a call through a `dyn Write`. Taken, not
        // borrowed, so that a value whose formatting logs gets a fresh one.
        let mut line = LINE.take();
        line.clear();
        line.push_str("{\"timestamp\":\"");
        line.push_str(Timestamp::now().as_str());
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        let mut fields = Fields {
            out: &mut line,
            result: Ok(()),
        };
        event.record(&mut fields);
        let recorded = fields.result;
        line.push_str(",\"target\":");
        let result = recorded
            .and_then(|()| write_str_value(&mut line, meta.target()))
            .and_then(|()| {
                line.push_str("}\n");
                writer.write_str(&line)
            });
        // An unusually long line's buffer is let go rather than kept for the thread's life.
        if line.capacity() <= LINE_KEPT {
            LINE.set(line);
        }
        result
    }
}

thread_local! {
    /// The line being put together, kept between events.
    static LINE: Cell<String> = const { Cell::new(String::new()) };
}

/// Largest line buffer a thread keeps.
const LINE_KEPT: usize = 4096;

/// `2026-11-26T15:47:03.679983Z`: RFC 3339 in UTC with microseconds, as tracing-subscriber
/// writes it, put together digit by digit (one line per stored message: `write!` with seven
/// padded numbers cost more than the rest of the line).
struct Timestamp([u8; 27]);

impl Timestamp {
    fn now() -> Self {
        let now = Utc::now();
        let mut t = *b"0000-00-00T00:00:00.000000Z";
        // Each field over the template's zeros, so shorter numbers come out zero-padded.
        let mut put = |at: usize, width: usize, n: u32| {
            if let Some(field) = t.get_mut(at..at + width) {
                put_digits(field, n.into());
            }
        };
        put(0, 4, u32::try_from(now.year()).unwrap_or(0));
        put(5, 2, now.month());
        put(8, 2, now.day());
        put(11, 2, now.hour());
        put(14, 2, now.minute());
        put(17, 2, now.second());
        // A leap second's nanoseconds run past 1e9; the microseconds stay six digits.
        put(20, 6, now.nanosecond() / 1_000 % 1_000_000);
        Timestamp(t)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Appends `,"name":value` for each field, as serde_json would write it.
struct Fields<'w, W: Write> {
    out: &'w mut W,
    result: fmt::Result,
}

impl<W: Write> Fields<'_, W> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self
                .out
                .write_str(",")
                .and_then(|()| write_str_value(self.out, field.name()))
                .and_then(|()| self.out.write_str(":"))
                .and_then(|()| value(self.out));
        }
    }
}

impl<W: Write> Visit for Fields<'_, W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.write_str("\"")?;
            write!(Escaped(out), "{value:?}")?;
            out.write_str("\"")
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| write_str_value(out, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| {
            if value < 0 {
                out.write_str("-")?;
            }
            write_decimal(out, value.unsigned_abs())
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| write_decimal(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's number format (ryu), and null for NaN and infinities.
        self.entry(field, |out| match serde_json::Number::from_f64(value) {
            Some(n) => write!(out, "{n}"),
            None => out.write_str("null"),
        });
    }
}

/// `n` in decimal, as `{n}` writes it, without the formatting machinery (ids and sizes are on
/// every "message stored" line).
fn write_decimal(out: &mut impl Write, n: u64) -> fmt::Result {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let at = put_digits(&mut digits, n);
    out.write_str(std::str::from_utf8(&digits[at..]).unwrap_or_default())
}

/// Writes `n`'s decimal digits at the end of `buf` (those that do not fit are dropped) and
/// returns where they start; what lies before is left as it was.
fn put_digits(buf: &mut [u8], mut n: u64) -> usize {
    let mut at = buf.len();
    while at > 0 {
        at -= 1;
        // A digit is below 10, so the cast cannot truncate.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    at
}

/// A JSON string literal.
fn write_str_value(out: &mut impl Write, value: &str) -> fmt::Result {
    out.write_str("\"")?;
    Escaped(out).write_str(value)?;
    out.write_str("\"")
}

/// Writes through with JSON string escapes (RFC 8259 §7), as serde_json does: `"`, `\` and
/// control characters; everything else, non-ASCII included, as is.
struct Escaped<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Most values need no escape: one pass that the compiler turns into vector compares
        // (no early exit), then the whole value at once.
        let plain_only = !s.bytes().fold(false, |any, b| {
            any | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if plain_only {
            return self.0.write_str(s);
        }
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(s.get(plain..i).unwrap_or_default())?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(s.get(plain..).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    fn events() {
        let peer: std::net::SocketAddr = "127.0.0.1:5060".parse().expect("addr");
        tracing::info!(
            call_id = %"a1b2@host",
            mailbox = "sip:bob@example.com",
            peer = %peer,
            bytes = 100u64,
            id = 7i64,
            ok = true,
            commit_ms = %format_args!("{:.2}", 4.125),
            ratio = 0.1f64,
            "message stored"
        );
        tracing::warn!(
            why = "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} é ✓",
            big = 1.0e21f64,
            nan = f64::NAN,
            "odd: \"{}\"",
            "x\ny"
        );
        tracing::error!(
            error = &io::Error::other("disk full") as &dyn std::error::Error,
            "plain"
        );
        tracing::debug!(
            huge = u128::MAX,
            neg = -5i64,
            min = i64::MIN,
            max = u64::MAX,
            zero = 0u64,
            "numbers"
        );
        log::warn!(target: "rustls::conn", "from the log crate: {}", 42);
    }

    /// Each line without its timestamp (the two formatters read the clock apart).
    fn render(json: bool) -> Vec<String> {
        // As `try_init` does in the server; a second install in this process is refused.
        let _ = tracing_log::LogTracer::init();
        let lines = Lines::default();
        let builder = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(lines.clone());
        if json {
            let subscriber = builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish();
            tracing::subscriber::with_default(subscriber, events);
        } else {
            let subscriber = builder.event_format(JsonLines).finish();
            tracing::subscriber::with_default(subscriber, events);
        }
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        text.lines()
            .map(|l| {
                let (head, rest) = l.split_at(l.find("\",\"level\"").expect("level"));
                assert_eq!(
                    head.len(),
                    "{\"timestamp\":\"2026-11-26T15:47:03.679983Z".len()
                );
                rest.to_string()
            })
            .collect()
    }

    #[test]
    fn lines_are_those_of_tracing_subscribers_json_format() {
        let ours = render(false);
        let theirs = render(true);
        assert_eq!(ours.len(), 5);
        assert!(
            ours[4].contains("\"target\":\"rustls::conn\""),
            "{}",
            ours[4]
        );
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_timestamp_is_rfc_3339_utc_with_microseconds() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(lines.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || tracing::info!("x"));
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        let line: serde_json::Value = serde_json::from_str(&text).expect("json");
        let ts = line["timestamp"].as_str().expect("timestamp");
        let parsed = chrono::DateTime::parse_from_rfc3339(ts).expect("rfc 3339");
        assert!(
            (Utc::now() - parsed.with_timezone(&Utc))
                .num_seconds()
                .abs()
                < 5
        );
        assert!(ts.ends_with('Z') && ts.len() == 27, "{ts}");
    }
}
