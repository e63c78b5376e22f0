//! How a stored message goes back out: `message/cpim` (RFC 3862) naming the original sender,
//! the mailbox and the original time, with the original inner content byte-exact; or, for a
//! fetcher that does not accept CPIM, the text with a short "sender, time: " prefix.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use msrp_session::cpim::{CpimAddress, CpimMessage};

/// The media type of CPIM.
pub const CPIM: &str = "message/cpim";

/// The parts of a stored message that rendering needs (the binary fills it from the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredView<'a> {
    /// The sender's AoR as asserted by SIP at deposit time.
    pub sender_aor: &'a str,
    /// The sender's display name, if any.
    pub sender_name: Option<&'a str>,
    /// The mailbox AoR (the fetcher).
    pub mailbox: &'a str,
    /// Content type as stored: `message/cpim` or the plain type.
    pub content_type: &'a str,
    /// Body as stored (a CPIM wrapper kept raw).
    pub body: &'a [u8],
    /// `imdn.Message-ID` (or SIP Message-ID) of the original.
    pub message_id: Option<&'a str>,
    /// The sender's CPIM DateTime, if it gave one.
    pub sender_time: Option<DateTime<Utc>>,
    /// When the server received it.
    pub received_at: DateTime<Utc>,
}

/// Rendering options (config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// Prefix for fetchers without CPIM; `{sender}` is the display name (else the AoR) and
    /// `{time}` the original time as `YYYY-MM-DD HH:MM UTC`.
    pub plain_prefix: String,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            plain_prefix: "{sender}, {time}: ".to_owned(),
        }
    }
}

/// A SEND body and its Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `Content-Type` of the SEND.
    pub content_type: String,
    /// The SEND body.
    pub body: Bytes,
}

/// Whether an `a=accept-types` list admits `message/cpim` (RFC 4975 §8.6: `*` admits all).
pub fn accepts_cpim<S: AsRef<str>>(accept_types: &[S]) -> bool {
    accept_types.iter().any(|t| {
        let t = t.as_ref().trim();
        t == "*" || t.eq_ignore_ascii_case(CPIM) || t.eq_ignore_ascii_case("message/*")
    })
}

/// Renders one stored message for the fetcher.
pub fn render(message: &StoredView<'_>, accepts_cpim: bool, config: &RenderConfig) -> Rendered {
    let inner = Inner::of(message);
    if accepts_cpim {
        render_cpim(message, inner)
    } else {
        render_plain(message, inner, config)
    }
}

/// The original content: unwrapped from a stored CPIM, else the stored body itself.
struct Inner {
    content_headers: Vec<(String, String)>,
    content_type: String,
    body: Bytes,
}

impl Inner {
    fn of(message: &StoredView<'_>) -> Self {
        if is_cpim(message.content_type) {
            if let Ok(cpim) = CpimMessage::parse(message.body) {
                let content_type = cpim.content_type().unwrap_or("text/plain").to_owned();
                let mut content_headers = cpim.content_headers;
                if !content_headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
                {
                    content_headers.insert(0, ("Content-Type".to_owned(), content_type.clone()));
                }
                return Self {
                    content_headers,
                    content_type,
                    body: cpim.body,
                };
            }
        }
        Self {
            content_headers: vec![("Content-Type".to_owned(), message.content_type.to_owned())],
            content_type: message.content_type.to_owned(),
            body: Bytes::copy_from_slice(message.body),
        }
    }
}

fn render_cpim(message: &StoredView<'_>, inner: Inner) -> Rendered {
    // From is the sender SIP asserted, never the CPIM From the sender wrote (SPEC §1).
    let from = CpimAddress::new(message.sender_name, message.sender_aor);
    let to = CpimAddress::new(None, message.mailbox);
    let time = message.sender_time.unwrap_or(message.received_at);
    let mut cpim = CpimMessage::new(
        &from,
        &to,
        Some(time.fixed_offset()),
        &inner.content_type,
        inner.body,
    );
    // Keep every original content header (Content-ID, Content-Disposition…) in order.
    cpim.content_headers = inner.content_headers;
    if let Some(id) = message.message_id.filter(|id| !id.is_empty()) {
        cpim.set_imdn(id, None);
    }
    Rendered {
        content_type: CPIM.to_owned(),
        body: cpim.to_bytes(),
    }
}

fn render_plain(message: &StoredView<'_>, inner: Inner, config: &RenderConfig) -> Rendered {
    // Only text can carry a prefix; anything else goes out unchanged.
    if !media_type(&inner.content_type).starts_with("text/") {
        return Rendered {
            content_type: inner.content_type,
            body: inner.body,
        };
    }
    let sender = message
        .sender_name
        .filter(|n| !n.is_empty())
        .unwrap_or(message.sender_aor);
    let time = message
        .sender_time
        .unwrap_or(message.received_at)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string();
    let prefix = config
        .plain_prefix
        .replace("{sender}", sender)
        .replace("{time}", &time);
    let mut body = Vec::with_capacity(prefix.len() + inner.body.len());
    body.extend_from_slice(prefix.as_bytes());
    body.extend_from_slice(&inner.body);
    Rendered {
        content_type: inner.content_type,
        body: Bytes::from(body),
    }
}

/// `type/subtype` lowercased, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_cpim(content_type: &str) -> bool {
    media_type(content_type) == CPIM
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn plain<'a>() -> StoredView<'a> {
        StoredView {
            sender_aor: "sip:alice@example.com",
            sender_name: Some("Alice Liddell"),
            mailbox: "sip:bob@example.com",
            content_type: "text/plain;charset=UTF-8",
            body: b"hello\r\n\r\nbob",
            message_id: None,
            sender_time: None,
            received_at: at("2026-11-26T05:00:00Z"),
        }
    }

    const STORED_CPIM: &[u8] = b"From: Mallory <sip:mallory@example.com>\r\n\
To: <sip:bob@example.com>\r\n\
DateTime: 2026-11-25T22:10:05+01:00\r\n\
NS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: orig-42\r\n\
\r\n\
Content-Type: text/plain;charset=utf-8\r\n\
Content-ID: <part1@example.com>\r\n\
\r\n\
caf\xc3\xa9 \x00\xff bytes\r\n";

    #[test]
    fn plain_text_in_cpim_with_receive_time() {
        let r = render(&plain(), true, &RenderConfig::default());
        assert_eq!(r.content_type, "message/cpim");
        assert_eq!(
            &r.body[..],
            &b"From: Alice Liddell <sip:alice@example.com>\r\n\
To: <sip:bob@example.com>\r\n\
DateTime: 2026-11-26T05:00:00+00:00\r\n\
\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\
\r\n\
hello\r\n\r\nbob"[..]
        );
    }

    #[test]
    fn stored_cpim_keeps_inner_bytes_and_sender_time_but_not_its_from() {
        let stored = StoredView {
            content_type: "Message/CPIM",
            body: STORED_CPIM,
            message_id: Some("orig-42"),
            sender_time: Some(at("2026-11-25T21:10:05Z")),
            ..plain()
        };
        let r = render(&stored, true, &RenderConfig::default());
        let cpim = CpimMessage::parse(&r.body).unwrap();
        let from = cpim.from().unwrap();
        assert_eq!(from.uri, "sip:alice@example.com");
        assert_eq!(from.display_name.as_deref(), Some("Alice Liddell"));
        assert_eq!(cpim.to()[0].uri, "sip:bob@example.com");
        assert_eq!(
            cpim.datetime(),
            Some(at("2026-11-25T21:10:05Z").fixed_offset())
        );
        assert_eq!(cpim.imdn_message_id(), Some("orig-42"));
        assert_eq!(cpim.content_type(), Some("text/plain;charset=utf-8"));
        assert_eq!(
            cpim.content_headers[1],
            ("Content-ID".to_owned(), "<part1@example.com>".to_owned())
        );
        assert_eq!(&cpim.body[..], b"caf\xc3\xa9 \x00\xff bytes\r\n");
        assert!(!r.body.windows(7).any(|w| w == b"mallory"));
    }

    #[test]
    fn plain_fetcher_gets_a_prefix_on_text_only() {
        let stored = StoredView {
            content_type: "message/cpim",
            body: STORED_CPIM,
            sender_time: Some(at("2026-11-25T21:10:05Z")),
            ..plain()
        };
        let r = render(&stored, false, &RenderConfig::default());
        assert_eq!(r.content_type, "text/plain;charset=utf-8");
        assert_eq!(
            &r.body[..],
            &b"Alice Liddell, 2026-11-25 21:10 UTC: caf\xc3\xa9 \x00\xff bytes\r\n"[..]
        );

        let anonymous = StoredView {
            sender_name: None,
            ..plain()
        };
        let cfg = RenderConfig {
            plain_prefix: "[{time}] {sender} wrote: ".to_owned(),
        };
        let r = render(&anonymous, false, &cfg);
        assert_eq!(
            &r.body[..],
            &b"[2026-11-26 05:00 UTC] sip:alice@example.com wrote: hello\r\n\r\nbob"[..]
        );

        let image = StoredView {
            content_type: "image/png",
            body: b"\x89PNG",
            ..plain()
        };
        let r = render(&image, false, &RenderConfig::default());
        assert_eq!(
            (r.content_type.as_str(), &r.body[..]),
            ("image/png", &b"\x89PNG"[..])
        );
    }

    #[test]
    fn unparsable_stored_cpim_is_wrapped_whole() {
        let stored = StoredView {
            content_type: "message/cpim",
            body: b"not cpim at all",
            ..plain()
        };
        let r = render(&stored, true, &RenderConfig::default());
        let cpim = CpimMessage::parse(&r.body).unwrap();
        assert_eq!(cpim.content_type(), Some("message/cpim"));
        assert_eq!(&cpim.body[..], b"not cpim at all");
    }

    #[test]
    fn accept_types() {
        assert!(accepts_cpim(&["text/plain", "message/cpim"]));
        assert!(accepts_cpim(&["*"]));
        assert!(accepts_cpim(&[String::from("Message/CPIM")]));
        assert!(!accepts_cpim(&["text/plain"]));
        assert!(!accepts_cpim::<&str>(&[]));
    }
}
