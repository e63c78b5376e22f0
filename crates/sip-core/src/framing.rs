//! Message framing before any parsing by rsipstack: one SIP message per UDP datagram
//! (RFC 3261 §18.3: Content-Length optional, octets beyond it discarded, a body shorter than
//! it is an error) and Content-Length framing on TCP streams (mandatory there). Every buffer is
//! bounded by [`Limits`]. Sans-IO: bytes in, frames out.

use crate::message_head::{parse_head, HeadError, MessageHead};

/// Size bounds applied to every received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Start line plus header block, including the empty line.
    pub max_head_bytes: usize,
    /// Number of header fields (after unfolding).
    pub max_headers: usize,
    /// Body size announced by Content-Length.
    pub max_body_bytes: usize,
    /// Simultaneous accepted TCP connections; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 128,
            max_body_bytes: 64 * 1024,
            max_connections: 1024,
        }
    }
}

/// One framed message: its tokenised head and exactly its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub head: MessageHead,
    pub body: Vec<u8>,
}

/// A message that framing refuses; `head` is there when the header block could be read, so a
/// stateless response can still be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub head: Option<MessageHead>,
    pub status: u16,
    pub reason: &'static str,
}

/// The Content-Length header(s) of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentLength {
    Absent,
    Value(usize),
    /// Present but unusable: not a number, negative, several different values, too large.
    Invalid(&'static str),
}

/// Read the Content-Length of `head`, bounded by `limits.max_body_bytes`.
pub fn content_length(head: &MessageHead, limits: &Limits) -> ContentLength {
    let mut found: Option<usize> = None;
    for value in head.values("Content-Length") {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return ContentLength::Invalid("Invalid Content-Length");
        }
        let trimmed = value.trim_start_matches('0');
        let n = if trimmed.is_empty() {
            0
        } else if trimmed.len() > 9 {
            return ContentLength::Invalid("Content-Length too large");
        } else {
            match trimmed.parse::<usize>() {
                Ok(n) => n,
                Err(_) => return ContentLength::Invalid("Invalid Content-Length"),
            }
        };
        if n > limits.max_body_bytes {
            return ContentLength::Invalid("Content-Length too large");
        }
        match found {
            Some(prev) if prev != n => {
                return ContentLength::Invalid("Conflicting Content-Length headers")
            }
            _ => found = Some(n),
        }
    }
    found.map_or(ContentLength::Absent, ContentLength::Value)
}

/// Frame one UDP datagram. Leading CRLFs are skipped (keep-alives are handled by the caller).
pub fn frame_datagram(data: &[u8], limits: &Limits) -> Result<Frame, Refusal> {
    let start = data
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(data.len());
    let data = data.get(start..).unwrap_or_default();
    let head = parse_head(data, limits).map_err(|e| refusal_without_head(data, limits, e))?;
    let rest = data.get(head.head_len..).unwrap_or_default();
    let body = match content_length(&head, limits) {
        // §18.3: on UDP a missing Content-Length means the body runs to the datagram's end.
        ContentLength::Absent => rest.to_vec(),
        ContentLength::Value(n) => match rest.get(..n) {
            Some(body) => body.to_vec(),
            None => {
                return Err(Refusal {
                    head: Some(head),
                    status: 400,
                    reason: "Content-Length exceeds the datagram",
                })
            }
        },
        ContentLength::Invalid(reason) => {
            return Err(Refusal {
                head: Some(head),
                status: 400,
                reason,
            })
        }
    };
    Ok(Frame { head, body })
}

/// When the head cannot be tokenised, try once more without the bounds that failed so the
/// refusal can carry the headers needed for a stateless 400 (a message without the empty line
/// still has readable headers).
fn refusal_without_head(data: &[u8], limits: &Limits, error: HeadError) -> Refusal {
    let head = match error {
        HeadError::NoBlankLine if data.len() <= limits.max_head_bytes => {
            let mut owned = data.to_vec();
            owned.extend_from_slice(b"\r\n\r\n");
            parse_head(&owned, limits).ok()
        }
        _ => None,
    };
    Refusal {
        head,
        status: 400,
        reason: head_error_reason(error),
    }
}

fn head_error_reason(error: HeadError) -> &'static str {
    match error {
        HeadError::NoBlankLine => "Missing empty line after headers",
        HeadError::TooLarge => "Header block too large",
        HeadError::TooManyHeaders => "Too many header fields",
        HeadError::NotUtf8 => "Header field is not UTF-8",
        HeadError::MalformedHeader => "Malformed header field",
        HeadError::EmptyStartLine => "Empty start line",
    }
}

/// What a stream framer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// A complete message.
    Message(Frame),
    /// A message refused while the framing stays intact: answer and keep reading.
    Refused(Refusal),
    /// The framing is lost (bad Content-Length, oversized head): answer if possible, then
    /// close the connection.
    Fatal(Refusal),
    /// RFC 5626 §3.5.1 keep-alive ping (CRLFCRLF); answer with one CRLF.
    Ping,
}

/// Content-Length framing of a byte stream (RFC 3261 §18.3). Feed bytes with [`push`], take
/// items with [`next_item`]; the buffer never grows beyond one head plus one body.
///
/// [`push`]: StreamFramer::push
/// [`next_item`]: StreamFramer::next_item
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    limits: Limits,
    failed: bool,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            buf: Vec::new(),
            limits,
            failed: false,
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete item, or `None` when more bytes are needed (or after a fatal item).
    pub fn next_item(&mut self) -> Option<StreamItem> {
        if self.failed {
            return None;
        }
        // Keep-alives between messages: CRLFCRLF is a ping, a lone CRLF a pong (ignored).
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.drain(..4);
                return Some(StreamItem::Ping);
            }
            if self.buf.starts_with(b"\r\n") && self.buf.len() >= 4 {
                self.buf.drain(..2);
                continue;
            }
            if self.buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
                if self.buf == b"\r\n" || self.buf == b"\r" || self.buf == b"\r\n\r" {
                    return None;
                }
                self.buf.drain(..1);
                continue;
            }
            break;
        }
        if self.buf.is_empty() {
            return None;
        }
        let head = match parse_head(&self.buf, &self.limits) {
            Ok(head) => head,
            Err(HeadError::NoBlankLine) => return None,
            Err(e) => return Some(self.fail(None, head_error_reason(e))),
        };
        let body_len = match content_length(&head, &self.limits) {
            ContentLength::Value(n) => n,
            // §18.3: mandatory on streams. Without it assume no body: the framing holds as long
            // as the sender really sent none, so answer 400 and go on.
            ContentLength::Absent => {
                self.buf.drain(..head.head_len);
                return Some(StreamItem::Refused(Refusal {
                    head: Some(head),
                    status: 400,
                    reason: "Missing Content-Length",
                }));
            }
            ContentLength::Invalid(reason) => return Some(self.fail(Some(head), reason)),
        };
        let total = head.head_len + body_len;
        if self.buf.len() < total {
            return None;
        }
        let body = self
            .buf
            .get(head.head_len..total)
            .unwrap_or_default()
            .to_vec();
        self.buf.drain(..total);
        Some(StreamItem::Message(Frame { head, body }))
    }

    fn fail(&mut self, head: Option<MessageHead>, reason: &'static str) -> StreamItem {
        self.failed = true;
        self.buf = Vec::new();
        StreamItem::Fatal(Refusal {
            head,
            status: 400,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";

    #[test]
    fn datagram_body_is_cut_at_content_length_and_short_body_refused() {
        let mut d = OPTIONS.to_vec();
        d.extend_from_slice(b"INVITE noise");
        let frame = frame_datagram(&d, &Limits::default()).expect("framed");
        assert_eq!(frame.body, b"abc");
        let short = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 9\r\n\r\nabc";
        let refusal = frame_datagram(short, &Limits::default()).expect_err("short body");
        assert_eq!(refusal.reason, "Content-Length exceeds the datagram");
        assert!(refusal.head.is_some());
    }

    #[test]
    fn stream_frames_split_input_and_keeps_going_after_refusal() {
        let mut f = StreamFramer::new(Limits::default());
        let mut input = OPTIONS.to_vec();
        input.extend_from_slice(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nX: y\r\n\r\n");
        input.extend_from_slice(OPTIONS);
        let (a, b) = input.split_at(10);
        f.push(a);
        assert_eq!(f.next_item(), None);
        f.push(b);
        assert!(matches!(f.next_item(), Some(StreamItem::Message(m)) if m.body == b"abc"));
        assert_eq!(f.next_item(), Some(StreamItem::Ping));
        assert!(
            matches!(f.next_item(), Some(StreamItem::Refused(r)) if r.reason == "Missing Content-Length")
        );
        assert!(matches!(f.next_item(), Some(StreamItem::Message(_))));
        assert_eq!(f.next_item(), None);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn negative_or_conflicting_content_length_is_fatal_on_a_stream() {
        for cl in ["Content-Length: -999", "Content-Length: 13\r\nl: 5"] {
            let mut f = StreamFramer::new(Limits::default());
            f.push(format!("OPTIONS sip:a@b SIP/2.0\r\n{cl}\r\n\r\n").as_bytes());
            assert!(matches!(f.next_item(), Some(StreamItem::Fatal(r)) if r.head.is_some()));
            assert_eq!(f.next_item(), None);
        }
    }

    #[test]
    fn an_endless_header_block_is_bounded() {
        let limits = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        let mut f = StreamFramer::new(limits);
        f.push(&[b'a'; 100]);
        assert!(matches!(f.next_item(), Some(StreamItem::Fatal(_))));
        f.push(&[b'a'; 100]);
        assert_eq!(f.buffered(), 0);
    }
}
