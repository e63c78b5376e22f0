//! The `application/simple-message-summary` body of RFC 3842 §5 with the message context classes
//! of RFC 3458 §4 (`Text-Message` for stored chat), built with CRLF line ends and parsed
//! tolerantly (unknown lines are skipped, never an error).

use std::fmt;

use chrono::{DateTime, Utc};

/// The media type of the body (RFC 3842 §3.5).
pub const CONTENT_TYPE: &str = "application/simple-message-summary";

/// Largest body [`MessageSummary::parse`] reads; a summary is a few lines, anything bigger is
/// not a summary and is refused before it is scanned.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// Most message-header blocks kept by the parser (RFC 3842 §5.2 lists "the newest few").
const MAX_HEADER_BLOCKS: usize = 64;
/// Most header lines kept per block.
const MAX_HEADERS_PER_BLOCK: usize = 64;

/// An RFC 3458 §4 message context class, as named in a summary line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageContextClass {
    /// `voice-message`
    Voice,
    /// `fax-message`
    Fax,
    /// `pager-message`
    Pager,
    /// `multimedia-message`
    Multimedia,
    /// `text-message` (what this server stores)
    Text,
    /// `none`
    None,
}

impl MessageContextClass {
    /// The summary-line name, in the capitalisation of the RFC 3842 examples.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Voice => "Voice-Message",
            Self::Fax => "Fax-Message",
            Self::Pager => "Pager-Message",
            Self::Multimedia => "Multimedia-Message",
            Self::Text => "Text-Message",
            Self::None => "None",
        }
    }

    /// Recognises a summary-line name; RFC 3842 §5 header names are case-insensitive.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Voice,
            Self::Fax,
            Self::Pager,
            Self::Multimedia,
            Self::Text,
            Self::None,
        ]
        .into_iter()
        .find(|class| class.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for MessageContextClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `new/old (urgent-new/urgent-old)` of one class (RFC 3842 §5 `msg-summary-line`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageCounts {
    /// Messages not yet fetched.
    pub new: u64,
    /// Messages fetched but kept.
    pub old: u64,
    /// Urgent new messages; written only together with `urgent_old` (missing one as 0).
    pub urgent_new: Option<u64>,
    /// Urgent old messages.
    pub urgent_old: Option<u64>,
}

impl MessageCounts {
    /// Counts without the urgent part.
    pub fn new(new: u64, old: u64) -> Self {
        Self {
            new,
            old,
            urgent_new: None,
            urgent_old: None,
        }
    }
}

impl fmt::Display for MessageCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.new, self.old)?;
        if self.urgent_new.is_some() || self.urgent_old.is_some() {
            write!(
                f,
                " ({}/{})",
                self.urgent_new.unwrap_or(0),
                self.urgent_old.unwrap_or(0)
            )?;
        }
        Ok(())
    }
}

/// One block of optional message headers (RFC 3842 §5.2: e.g. From, Date, Subject of one
/// message), written after the summary lines, blocks separated by an empty line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageHeaders {
    /// `(name, value)` in order.
    pub fields: Vec<(String, String)>,
}

impl MessageHeaders {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one header and returns the block (builder style).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// The block for one waiting message: `From` (with the display name quoted per RFC 3261
    /// §25.1), `Date` in RFC 5322 §3.3 form, and `Subject` when there is one.
    pub fn for_message(
        sender_aor: &str,
        sender_name: Option<&str>,
        date: DateTime<Utc>,
        subject: Option<&str>,
    ) -> Self {
        let from = match sender_name.filter(|n| !n.is_empty()) {
            Some(name) => format!("\"{}\" <{sender_aor}>", quote(name)),
            None => format!("<{sender_aor}>"),
        };
        let block = Self::new()
            .with("From", from)
            .with("Date", date.to_rfc2822());
        match subject {
            Some(subject) => block.with("Subject", subject),
            None => block,
        }
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the server builds its own summaries (config).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SummaryConfig {
    /// `Message-Account:` — the fetch URI.
    pub message_account: Option<String>,
    /// Also write `Voice-Message: 0/0`; some clients ignore a summary without it.
    pub emit_voice_message: bool,
}

/// An RFC 3842 message summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSummary {
    /// `Messages-Waiting: yes|no`.
    pub messages_waiting: bool,
    /// `Message-Account:`.
    pub message_account: Option<String>,
    /// The summary lines, in order.
    pub classes: Vec<(MessageContextClass, MessageCounts)>,
    /// Optional message-header blocks after the empty line.
    pub message_headers: Vec<MessageHeaders>,
}

/// Why a body is not a message summary at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryParseError {
    /// Larger than [`MAX_BODY_LEN`].
    #[error("message summary of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// No `Messages-Waiting: yes|no` line, the one line RFC 3842 §5 requires.
    #[error("no Messages-Waiting status line")]
    NoStatusLine,
}

impl MessageSummary {
    /// The server's summary of a text mailbox: waiting when `counts.new > 0`.
    pub fn text(
        config: &SummaryConfig,
        counts: MessageCounts,
        message_headers: Vec<MessageHeaders>,
    ) -> Self {
        let mut classes = Vec::with_capacity(2);
        if config.emit_voice_message {
            classes.push((MessageContextClass::Voice, MessageCounts::new(0, 0)));
        }
        classes.push((MessageContextClass::Text, counts));
        Self {
            messages_waiting: counts.new > 0,
            message_account: config.message_account.clone(),
            classes,
            message_headers,
        }
    }

    /// The counts of one class, if the summary has a line for it.
    pub fn counts(&self, class: &MessageContextClass) -> Option<MessageCounts> {
        self.classes
            .iter()
            .find(|(c, _)| c == class)
            .map(|(_, counts)| *counts)
    }

    /// The body bytes (CRLF line ends).
    pub fn to_body(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Parses a summary. Unknown or malformed lines are skipped (RFC 3842 §5 allows extension
    /// headers, and a voicemail server's body must not make us fail); only a missing status
    /// line or an oversized body is an error. Bare LF line ends are accepted too.
    pub fn parse(body: &[u8]) -> Result<Self, SummaryParseError> {
        if body.len() > MAX_BODY_LEN {
            return Err(SummaryParseError::TooLarge(body.len()));
        }
        let text = String::from_utf8_lossy(body);
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));

        let mut messages_waiting = None;
        let mut message_account = None;
        let mut classes = Vec::new();
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                if messages_waiting.is_some() {
                    break;
                }
                continue;
            }
            let Some((name, value)) = split_header(line) else {
                continue;
            };
            if name.eq_ignore_ascii_case("Messages-Waiting") {
                if value.eq_ignore_ascii_case("yes") {
                    messages_waiting = Some(true);
                } else if value.eq_ignore_ascii_case("no") {
                    messages_waiting = Some(false);
                }
            } else if name.eq_ignore_ascii_case("Message-Account") {
                if !value.is_empty() {
                    message_account = Some(value.to_owned());
                }
            } else if let Some(class) = MessageContextClass::from_name(name) {
                if let Some(counts) = parse_counts(value) {
                    classes.push((class, counts));
                }
            }
        }
        let messages_waiting = messages_waiting.ok_or(SummaryParseError::NoStatusLine)?;

        let mut message_headers = Vec::new();
        let mut block = MessageHeaders::new();
        for line in lines {
            if line.trim().is_empty() {
                if !block.fields.is_empty() && message_headers.len() < MAX_HEADER_BLOCKS {
                    message_headers.push(std::mem::take(&mut block));
                }
                continue;
            }
            if let Some((name, value)) = split_header(line) {
                if block.fields.len() < MAX_HEADERS_PER_BLOCK {
                    block.fields.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        if !block.fields.is_empty() && message_headers.len() < MAX_HEADER_BLOCKS {
            message_headers.push(block);
        }

        Ok(Self {
            messages_waiting,
            message_account,
            classes,
            message_headers,
        })
    }
}

impl fmt::Display for MessageSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.messages_waiting { "yes" } else { "no" };
        write!(f, "Messages-Waiting: {status}\r\n")?;
        if let Some(account) = &self.message_account {
            write!(f, "Message-Account: {}\r\n", OneLine(account))?;
        }
        for (class, counts) in &self.classes {
            write!(f, "{class}: {counts}\r\n")?;
        }
        for block in &self.message_headers {
            if block.fields.is_empty() {
                continue;
            }
            f.write_str("\r\n")?;
            for (name, value) in &block.fields {
                write!(f, "{}: {}\r\n", OneLine(name), OneLine(value))?;
            }
        }
        Ok(())
    }
}

/// Writes text with CR and LF replaced by spaces, so a Subject taken from a stored message
/// cannot end a header line or inject lines into the body.
struct OneLine<'a>(&'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in self.0.split(['\r', '\n']).enumerate() {
            if part.0 > 0 {
                f.write_str(" ")?;
            }
            f.write_str(part.1)?;
        }
        Ok(())
    }
}

/// Escapes `"` and `\` for a quoted-string (RFC 3261 §25.1 quoted-pair).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `name: value` with optional whitespace around the colon (RFC 3261 HCOLON).
fn split_header(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some((name, value.trim()))
}

/// `new/old [(urgent-new/urgent-old)]`, whitespace tolerated around every token.
fn parse_counts(value: &str) -> Option<MessageCounts> {
    let (main, urgent) = match value.split_once('(') {
        Some((main, rest)) => (main, Some(rest.split_once(')')?.0)),
        None => (value, None),
    };
    let (new, old) = parse_pair(main)?;
    let (urgent_new, urgent_old) = match urgent {
        Some(text) => {
            let (n, o) = parse_pair(text)?;
            (Some(n), Some(o))
        }
        None => (None, None),
    };
    Some(MessageCounts {
        new,
        old,
        urgent_new,
        urgent_old,
    })
}

fn parse_pair(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once('/')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SummaryConfig {
        SummaryConfig {
            message_account: Some("sip:offline@example.com".into()),
            emit_voice_message: false,
        }
    }

    #[test]
    fn text_summary_is_the_spec_body() {
        let s = MessageSummary::text(&config(), MessageCounts::new(3, 0), vec![]);
        assert_eq!(
            s.to_body(),
            b"Messages-Waiting: yes\r\nMessage-Account: sip:offline@example.com\r\nText-Message: 3/0\r\n"
        );
    }

    #[test]
    fn empty_mailbox_says_no() {
        let s = MessageSummary::text(&config(), MessageCounts::new(0, 0), vec![]);
        assert!(!s.messages_waiting);
        assert_eq!(
            s.to_string(),
            "Messages-Waiting: no\r\nMessage-Account: sip:offline@example.com\r\nText-Message: 0/0\r\n"
        );
    }

    #[test]
    fn urgent_and_voice_flag() {
        let cfg = SummaryConfig {
            emit_voice_message: true,
            ..config()
        };
        let counts = MessageCounts {
            new: 4,
            old: 1,
            urgent_new: Some(1),
            urgent_old: None,
        };
        let s = MessageSummary::text(&cfg, counts, vec![]);
        assert_eq!(
            s.to_string(),
            "Messages-Waiting: yes\r\nMessage-Account: sip:offline@example.com\r\n\
             Voice-Message: 0/0\r\nText-Message: 4/1 (1/0)\r\n"
        );
    }

    #[test]
    fn message_headers_follow_a_blank_line_and_cannot_inject_lines() {
        let headers = vec![
            MessageHeaders::new()
                .with("From", "<sip:alice@example.com>")
                .with("Subject", "hi\r\nMessages-Waiting: no"),
            MessageHeaders::new().with("From", "<sip:carol@example.com>"),
        ];
        let s = MessageSummary::text(&config(), MessageCounts::new(2, 0), headers);
        let body = s.to_string();
        assert_eq!(
            body,
            "Messages-Waiting: yes\r\nMessage-Account: sip:offline@example.com\r\nText-Message: 2/0\r\n\
             \r\nFrom: <sip:alice@example.com>\r\nSubject: hi  Messages-Waiting: no\r\n\
             \r\nFrom: <sip:carol@example.com>\r\n"
        );
        let back = MessageSummary::parse(body.as_bytes()).expect("parses");
        assert_eq!(back.classes, s.classes);
        assert_eq!(
            back.message_headers[0].get("Subject"),
            Some("hi  Messages-Waiting: no")
        );
        assert_eq!(back.message_headers[1], s.message_headers[1]);
    }

    #[test]
    fn headers_for_a_stored_message() {
        let date = DateTime::parse_from_rfc3339("2026-11-26T05:00:00Z")
            .expect("valid date")
            .with_timezone(&Utc);
        let block = MessageHeaders::for_message(
            "sip:alice@example.com",
            Some("Alice \"A\" Liddell"),
            date,
            Some("lunch?"),
        );
        assert_eq!(
            block.fields,
            vec![
                (
                    "From".to_owned(),
                    "\"Alice \\\"A\\\" Liddell\" <sip:alice@example.com>".to_owned()
                ),
                (
                    "Date".to_owned(),
                    "Thu, 26 Nov 2026 05:00:00 +0000".to_owned()
                ),
                ("Subject".to_owned(), "lunch?".to_owned()),
            ]
        );
        let bare = MessageHeaders::for_message("sip:carol@example.com", None, date, None);
        assert_eq!(bare.get("from"), Some("<sip:carol@example.com>"));
        assert_eq!(bare.fields.len(), 2);
    }

    /// RFC 3842 §3.5 / §4 example bodies.
    #[test]
    fn parses_rfc3842_examples() {
        let simple = b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/8 (0/2)\r\n";
        let s = MessageSummary::parse(simple).expect("parses");
        assert!(s.messages_waiting);
        assert_eq!(
            s.message_account.as_deref(),
            Some("sip:alice@vmail.example.com")
        );
        assert_eq!(
            s.counts(&MessageContextClass::Voice),
            Some(MessageCounts {
                new: 2,
                old: 8,
                urgent_new: Some(0),
                urgent_old: Some(2)
            })
        );
        assert_eq!(s.to_body(), simple.to_vec());

        let with_headers = "Messages-Waiting: yes\r\n\
            Message-Account: sip:alice@vmail.example.com\r\n\
            Voice-Message: 4/8 (1/2)\r\n\
            \r\n\
            To: <alice@atlanta.example.com>\r\n\
            From: <bob@biloxi.example.com>\r\n\
            Subject: carpool tomorrow?\r\n\
            Priority: normal\r\n\
            Message-ID: 13784434989@vmail.example.com\r\n\
            \r\n\
            To: <alice@atlanta.example.com>\r\n\
            From: <sip:voicemail-system@example.com>\r\n\
            Subject: New voice mail\r\n\
            Priority: urgent\r\n\
            Message-ID: 3847298734@vmail.example.com\r\n";
        let s = MessageSummary::parse(with_headers.as_bytes()).expect("parses");
        assert_eq!(
            s.counts(&MessageContextClass::Voice)
                .map(|c| (c.new, c.old)),
            Some((4, 8))
        );
        assert_eq!(s.message_headers.len(), 2);
        assert_eq!(
            s.message_headers[0].get("subject"),
            Some("carpool tomorrow?")
        );
        assert_eq!(s.message_headers[1].get("Priority"), Some("urgent"));
        assert_eq!(s.to_string(), with_headers);
    }

    #[test]
    fn every_rfc3458_class_and_unknown_lines_are_accepted() {
        let body = "messages-waiting:no\n\
            X-Vendor-Thing: whatever\n\
            garbage line without colon\n\
            Voice-Message: 1/2\n\
            FAX-MESSAGE: 3/4 (1/1)\n\
            Pager-Message: 5/6\n\
            Multimedia-Message: 7/8\n\
            text-message : 9 / 10 ( 2 / 3 )\n\
            None: 0/0\n\
            Text-Message: not/numbers\n";
        let s = MessageSummary::parse(body.as_bytes()).expect("parses");
        assert!(!s.messages_waiting);
        let names: Vec<_> = s.classes.iter().map(|(c, _)| c.clone()).collect();
        assert_eq!(
            names,
            vec![
                MessageContextClass::Voice,
                MessageContextClass::Fax,
                MessageContextClass::Pager,
                MessageContextClass::Multimedia,
                MessageContextClass::Text,
                MessageContextClass::None,
            ]
        );
        assert_eq!(
            s.counts(&MessageContextClass::Text),
            Some(MessageCounts {
                new: 9,
                old: 10,
                urgent_new: Some(2),
                urgent_old: Some(3)
            })
        );
    }

    #[test]
    fn status_line_is_required_and_size_is_bounded() {
        assert_eq!(
            MessageSummary::parse(b"Text-Message: 1/0\r\n"),
            Err(SummaryParseError::NoStatusLine)
        );
        assert_eq!(
            MessageSummary::parse(b""),
            Err(SummaryParseError::NoStatusLine)
        );
        let big = vec![b'a'; MAX_BODY_LEN + 1];
        assert_eq!(
            MessageSummary::parse(&big),
            Err(SummaryParseError::TooLarge(MAX_BODY_LEN + 1))
        );
        assert!(MessageSummary::parse(&[0xff, 0xfe, b'\n']).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = MessageSummary::parse(&bytes);
        }

        #[test]
        fn build_parse_round_trip(new in 0u64..100_000, old in 0u64..100_000, urgent in proptest::option::of((0u64..10, 0u64..10)), voice: bool) {
            let cfg = SummaryConfig { emit_voice_message: voice, ..config() };
            let counts = MessageCounts { new, old, urgent_new: urgent.map(|u| u.0), urgent_old: urgent.map(|u| u.1) };
            let s = MessageSummary::text(&cfg, counts, vec![]);
            proptest::prop_assert_eq!(MessageSummary::parse(&s.to_body()), Ok(s));
        }
    }
}
