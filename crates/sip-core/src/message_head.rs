//! Lenient tokenisation of a SIP message head (RFC 3261 §7): the start line and the header
//! fields, unfolded (§7.3.1: a continuation line starting with SP/HT is joined with one SP) and
//! with compact names expanded to their long form (§7.3.3). Nothing here judges validity beyond
//! what is needed to find the header fields; `validate` does that.

use crate::framing::Limits;

/// One header field as received, after unfolding; `name` is the long form when the name is
/// known (compact forms and case differences are mapped), else the name as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    pub name: String,
    pub value: String,
}

/// The start line and header fields of one message; `head_len` counts the bytes up to and
/// including the empty line that ends the header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHead {
    pub start_line: String,
    pub headers: Vec<RawHeader>,
    pub head_len: usize,
}

/// Why a header block could not be tokenised at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("Missing empty line after headers")]
    NoBlankLine,
    #[error("Header block too large")]
    TooLarge,
    #[error("Too many header fields")]
    TooManyHeaders,
    #[error("Header field is not UTF-8")]
    NotUtf8,
    #[error("Malformed header field")]
    MalformedHeader,
    #[error("Empty start line")]
    EmptyStartLine,
}

impl MessageHead {
    /// Every value of the header named `name` (long form, case-insensitive), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The first value of the header named `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// How many header fields named `name` there are.
    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    }

    /// True when the start line is a Status-Line (a response).
    pub fn is_response(&self) -> bool {
        self.start_line.starts_with("SIP/") || self.start_line.starts_with("sip/")
    }
}

/// Position just after the empty line ending the header block, or `None` when there is none
/// within `data`. Accepts CRLF and bare LF line ends.
pub fn find_head_end(data: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < data.len() {
        let rest = data.get(pos..)?;
        let lf = memchr::memchr(b'\n', rest)?;
        let line = rest.get(..lf)?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() && pos > 0 {
            return Some(pos + lf + 1);
        }
        pos += lf + 1;
    }
    None
}

/// Tokenise the head of `data` (which must start at the start line).
pub fn parse_head(data: &[u8], limits: &Limits) -> Result<MessageHead, HeadError> {
    let head_len = match find_head_end(data) {
        Some(end) => end,
        None if data.len() > limits.max_head_bytes => return Err(HeadError::TooLarge),
        None => return Err(HeadError::NoBlankLine),
    };
    if head_len > limits.max_head_bytes {
        return Err(HeadError::TooLarge);
    }
    let block = data.get(..head_len).ok_or(HeadError::NoBlankLine)?;
    let mut lines = block
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next().ok_or(HeadError::EmptyStartLine)?;
    let start_line = std::str::from_utf8(start).map_err(|_| HeadError::NotUtf8)?;
    if start_line.trim().is_empty() {
        return Err(HeadError::EmptyStartLine);
    }
    let mut headers: Vec<RawHeader> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let text = std::str::from_utf8(line).map_err(|_| HeadError::NotUtf8)?;
        if text.starts_with([' ', '\t']) {
            // §7.3.1 folding: replace the line break and leading LWS with one SP.
            let last = headers.last_mut().ok_or(HeadError::MalformedHeader)?;
            let more = text.trim();
            if !more.is_empty() {
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(more);
            }
            continue;
        }
        let colon = text.find(':').ok_or(HeadError::MalformedHeader)?;
        let (name, value) = text.split_at(colon);
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HeadError::MalformedHeader);
        }
        if headers.len() >= limits.max_headers {
            return Err(HeadError::TooManyHeaders);
        }
        headers.push(RawHeader {
            name: canonical_name(name),
            value: value.get(1..).unwrap_or("").trim().to_string(),
        });
    }
    Ok(MessageHead {
        start_line: start_line.to_string(),
        headers,
        head_len,
    })
}

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Long names of the header fields we know, used to expand compact forms and fix case.
const KNOWN: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Allow",
    "Allow-Events",
    "Authorization",
    "Call-ID",
    "Contact",
    "Content-Encoding",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Max-Forwards",
    "Min-Expires",
    "P-Asserted-Identity",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Request-Disposition",
    "Require",
    "Route",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "To",
    "Unsupported",
    "Via",
    "WWW-Authenticate",
];

/// Expand a compact form (RFC 3261 §7.3.3 and the IANA registry) and normalise the case of
/// known names; unknown names are kept as received.
pub fn canonical_name(name: &str) -> String {
    let long = match name {
        "a" | "A" => Some("Accept-Contact"),
        "b" | "B" => Some("Referred-By"),
        "c" | "C" => Some("Content-Type"),
        "d" | "D" => Some("Request-Disposition"),
        "e" | "E" => Some("Content-Encoding"),
        "f" | "F" => Some("From"),
        "i" | "I" => Some("Call-ID"),
        "j" | "J" => Some("Reject-Contact"),
        "k" | "K" => Some("Supported"),
        "l" | "L" => Some("Content-Length"),
        "m" | "M" => Some("Contact"),
        "o" | "O" => Some("Event"),
        "r" | "R" => Some("Refer-To"),
        "s" | "S" => Some("Subject"),
        "t" | "T" => Some("To"),
        "u" | "U" => Some("Allow-Events"),
        "v" | "V" => Some("Via"),
        "x" | "X" => Some("Session-Expires"),
        "y" | "Y" => Some("Identity"),
        _ => KNOWN.iter().copied().find(|k| k.eq_ignore_ascii_case(name)),
    };
    long.map_or_else(|| name.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_compact_forms_are_normalised() {
        let raw = b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\nl:0\r\nmAx-FoRwArDs: 70\r\n\r\nrest";
        let head = parse_head(raw, &Limits::default()).expect("head parses");
        assert_eq!(head.first("Via"), Some("SIP/2.0/UDP h ;branch=z9hG4bK1"));
        assert_eq!(head.first("Content-Length"), Some("0"));
        assert_eq!(head.count("Max-Forwards"), 1);
        assert_eq!(head.head_len, raw.len() - 4);
    }

    #[test]
    fn limits_and_missing_blank_line_are_reported() {
        let limits = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let raw = b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(parse_head(raw, &limits), Err(HeadError::TooManyHeaders));
        assert_eq!(
            parse_head(b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\n", &limits),
            Err(HeadError::NoBlankLine)
        );
        assert_eq!(
            parse_head(b"OPTIONS sip:a@b SIP/2.0\r\n no-name\r\n\r\n", &limits),
            Err(HeadError::MalformedHeader)
        );
    }
}
