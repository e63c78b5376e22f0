//! MSRP frames (RFC 4975 §6, §7): the request/response model, typed header access and the
//! byte-exact serializer.

use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::uri::{MsrpUri, UriError};

/// The seven dashes that open an end-line (RFC 4975 §6).
pub const END_LINE_DASHES: &[u8] = b"-------";

/// Continuation flag of an end-line (RFC 4975 §5.1, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndFlag {
    /// `$`: last chunk of the message.
    Complete,
    /// `+`: more chunks follow.
    Continuation,
    /// `#`: the sender aborted the message.
    Abort,
}

impl EndFlag {
    /// The flag byte on the wire.
    pub fn as_byte(self) -> u8 {
        match self {
            EndFlag::Complete => b'$',
            EndFlag::Continuation => b'+',
            EndFlag::Abort => b'#',
        }
    }

    /// Parse a flag byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'$' => Some(EndFlag::Complete),
            b'+' => Some(EndFlag::Continuation),
            b'#' => Some(EndFlag::Abort),
            _ => None,
        }
    }
}

/// Request method (RFC 4975 §7; AUTH from RFC 4976 is carried as `Other`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// SEND.
    Send,
    /// REPORT.
    Report,
    /// Any other method, kept verbatim (answered 501 by endpoints).
    Other(String),
}

impl Method {
    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Send => "SEND",
            Method::Report => "REPORT",
            Method::Other(m) => m,
        }
    }
}

/// The start line: request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `MSRP <transact-id> <method>`.
    Request(Method),
    /// `MSRP <transact-id> <code> [comment]`.
    Response {
        /// Three-digit status code.
        code: u16,
        /// Optional reason phrase.
        comment: Option<String>,
    },
}

/// `Byte-Range: start-end/total` (RFC 4975 §7.3.1); `None` stands for `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte, 1-based.
    pub start: u64,
    /// Last byte, or `*` when the sender did not know it.
    pub end: Option<u64>,
    /// Total message length, or `*` when unknown.
    pub total: Option<u64>,
}

/// Why a typed header value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A header the frame must carry is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header value is malformed.
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// A path URI is malformed.
    #[error("bad URI in path: {0}")]
    Uri(#[from] UriError),
}

impl FromStr for ByteRange {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = HeaderError::Malformed("Byte-Range");
        let (range, total) = s.trim().split_once('/').ok_or(bad.clone())?;
        let (start, end) = range.split_once('-').ok_or(bad.clone())?;
        let start: u64 = start.parse().map_err(|_| bad.clone())?;
        let end = star_or_number(end).ok_or(bad.clone())?;
        let total = star_or_number(total).ok_or(bad.clone())?;
        if start == 0 {
            return Err(bad);
        }
        // An empty SEND carries 1-0/0 (RFC 4975 §7.1.1), so end may be start-1.
        if let Some(e) = end {
            if e.saturating_add(1) < start {
                return Err(bad);
            }
            if total.is_some_and(|t| e > t) {
                return Err(bad);
            }
        }
        Ok(ByteRange { start, end, total })
    }
}

fn star_or_number(s: &str) -> Option<Option<u64>> {
    if s == "*" {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-", self.start)?;
        match self.end {
            Some(e) => write!(f, "{e}/")?,
            None => f.write_str("*/")?,
        }
        match self.total {
            Some(t) => write!(f, "{t}"),
            None => f.write_str("*"),
        }
    }
}

/// `Failure-Report` values (RFC 4975 §7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReport {
    /// Default: responses and failure REPORTs.
    Yes,
    /// No responses at all.
    No,
    /// Only negative responses.
    Partial,
}

/// One header line, name and value as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name as written (matching is case-insensitive).
    pub name: String,
    /// Value without the single space after the colon.
    pub value: String,
}

/// One MSRP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Transaction id from the start line, repeated in the end-line.
    pub transaction_id: String,
    /// Request method or response status.
    pub start: StartLine,
    /// All headers in order, extension headers included.
    pub headers: Vec<Header>,
    /// Body (`data` in the ABNF); `None` when the frame has no content-stuff.
    pub body: Option<Bytes>,
    /// End-line flag.
    pub flag: EndFlag,
}

impl Frame {
    /// A request with To-Path and From-Path.
    pub fn request(
        transaction_id: impl Into<String>,
        method: Method,
        to: &[MsrpUri],
        from: &[MsrpUri],
    ) -> Self {
        let mut f = Frame {
            transaction_id: transaction_id.into(),
            start: StartLine::Request(method),
            headers: Vec::new(),
            body: None,
            flag: EndFlag::Complete,
        };
        f.push_header("To-Path", MsrpUri::format_path(to));
        f.push_header("From-Path", MsrpUri::format_path(from));
        f
    }

    /// The transaction response to this request (RFC 4975 §7.2): To-Path is the first URI
    /// of the request's From-Path (responses are hop-by-hop), From-Path is our URI.
    pub fn response_to(&self, code: u16, comment: Option<&str>, local: &MsrpUri) -> Self {
        let to = self.response_path().to_string();
        let comment = comment.or_else(|| reason_phrase(code)).map(str::to_string);
        let mut f = Frame {
            transaction_id: self.transaction_id.clone(),
            start: StartLine::Response { code, comment },
            headers: Vec::new(),
            body: None,
            flag: EndFlag::Complete,
        };
        f.push_header("To-Path", to);
        f.push_header("From-Path", local.to_string());
        f
    }

    /// Where a response to this request goes: the first URI of its From-Path, as written
    /// (responses are hop-by-hop, RFC 4975 §7.2); empty without one.
    fn response_path(&self) -> &str {
        self.header("From-Path")
            .and_then(|v| v.split_ascii_whitespace().next())
            .unwrap_or_default()
    }

    /// The encoded response to this request, byte for byte what
    /// `response_to(code, None, local).to_bytes()` gives (To-Path the first URI of the
    /// request's From-Path, From-Path ours, RFC 4975 §7.2), written straight into one buffer:
    /// every stored message is answered with one.
    pub fn response_bytes(&self, code: u16, local: &str) -> Bytes {
        let to = self.response_path();
        let reason = reason_phrase(code);
        let tid = self.transaction_id.as_bytes();
        let mut out = BytesMut::with_capacity(
            48 + 2 * tid.len() + to.len() + local.len() + reason.map_or(0, str::len),
        );
        out.put_slice(b"MSRP ");
        out.put_slice(tid);
        out.put_u8(b' ');
        put_status_code(&mut out, code);
        if let Some(reason) = reason {
            out.put_u8(b' ');
            out.put_slice(reason.as_bytes());
        }
        out.put_slice(b"\r\nTo-Path: ");
        out.put_slice(to.as_bytes());
        out.put_slice(b"\r\nFrom-Path: ");
        out.put_slice(local.as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(END_LINE_DASHES);
        out.put_slice(tid);
        out.put_slice(b"$\r\n");
        out.freeze()
    }

    /// Append a header.
    pub fn push_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Values of all headers with this name (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// First value of a header (case-insensitive name).
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// Method, if a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request(m) => Some(m),
            StartLine::Response { .. } => None,
        }
    }

    /// Status code, if a response.
    pub fn status_code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request(_) => None,
        }
    }

    /// To-Path URIs.
    pub fn to_path(&self) -> Result<Vec<MsrpUri>, HeaderError> {
        let v = self
            .header("To-Path")
            .ok_or(HeaderError::Missing("To-Path"))?;
        Ok(MsrpUri::parse_path(v)?)
    }

    /// From-Path URIs.
    pub fn from_path(&self) -> Result<Vec<MsrpUri>, HeaderError> {
        let v = self
            .header("From-Path")
            .ok_or(HeaderError::Missing("From-Path"))?;
        Ok(MsrpUri::parse_path(v)?)
    }

    /// Message-ID value.
    pub fn message_id(&self) -> Option<&str> {
        self.header("Message-ID").map(str::trim)
    }

    /// Byte-Range, if present.
    pub fn byte_range(&self) -> Result<Option<ByteRange>, HeaderError> {
        self.header("Byte-Range").map(str::parse).transpose()
    }

    /// Content-Type value.
    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type").map(str::trim)
    }

    /// `Success-Report: yes` (default no, RFC 4975 §7.1.2).
    pub fn success_report(&self) -> bool {
        self.header("Success-Report")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"))
    }

    /// Failure-Report (default yes, RFC 4975 §7.1.2).
    pub fn failure_report(&self) -> FailureReport {
        match self.header("Failure-Report").map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("no") => FailureReport::No,
            Some(v) if v.eq_ignore_ascii_case("partial") => FailureReport::Partial,
            _ => FailureReport::Yes,
        }
    }

    /// `Status: 000 200 OK` as (namespace, code) (RFC 4975 §7.1.2, §9).
    pub fn status_header(&self) -> Option<(u16, u16)> {
        let mut it = self.header("Status")?.split_ascii_whitespace();
        let ns = it.next()?.parse().ok()?;
        let code = it.next()?.parse().ok()?;
        Some((ns, code))
    }

    /// Body bytes, empty if none.
    pub fn body_bytes(&self) -> &[u8] {
        self.body.as_deref().unwrap_or_default()
    }

    /// Serialize into `out`, byte-exact for frames produced by the decoder.
    pub fn encode(&self, out: &mut BytesMut) {
        let body_len = self.body.as_ref().map_or(0, |b| b.len() + 4);
        out.reserve(
            64 + self
                .headers
                .iter()
                .map(|h| h.name.len() + h.value.len() + 4)
                .sum::<usize>()
                + body_len
                + 2 * self.transaction_id.len(),
        );
        out.put_slice(b"MSRP ");
        out.put_slice(self.transaction_id.as_bytes());
        out.put_u8(b' ');
        match &self.start {
            StartLine::Request(m) => out.put_slice(m.as_str().as_bytes()),
            StartLine::Response { code, comment } => {
                put_status_code(out, *code);
                if let Some(c) = comment {
                    out.put_u8(b' ');
                    out.put_slice(c.as_bytes());
                }
            }
        }
        out.put_slice(b"\r\n");
        for h in &self.headers {
            out.put_slice(h.name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(h.value.as_bytes());
            out.put_slice(b"\r\n");
        }
        if let Some(body) = &self.body {
            out.put_slice(b"\r\n");
            out.put_slice(body);
            out.put_slice(b"\r\n");
        }
        out.put_slice(END_LINE_DASHES);
        out.put_slice(self.transaction_id.as_bytes());
        out.put_u8(self.flag.as_byte());
        out.put_slice(b"\r\n");
    }

    /// Serialize to a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// A status code as `{code:03}` would write it, without formatting machinery.
fn put_status_code(out: &mut BytesMut, code: u16) {
    if code < 1000 {
        // Each digit is below 10, so the casts cannot truncate.
        let digit = |d: u16| b'0' + (d % 10) as u8;
        out.put_slice(&[digit(code / 100), digit(code / 10), digit(code)]);
    } else {
        out.put_slice(code.to_string().as_bytes());
    }
}

/// Reason phrases for the status codes of RFC 4975 §10.
pub fn reason_phrase(code: u16) -> Option<&'static str> {
    Some(match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        413 => "Message Too Large",
        415 => "Unsupported Media Type",
        423 => "Interval Out-of-Bounds",
        481 => "Session Does Not Exist",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        506 => "Session Already Bound",
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn byte_range_parse_and_display() {
        let r: ByteRange = "1-*/8".parse().unwrap();
        assert_eq!(
            r,
            ByteRange {
                start: 1,
                end: None,
                total: Some(8)
            }
        );
        assert_eq!(r.to_string(), "1-*/8");
        let r: ByteRange = "5-8/*".parse().unwrap();
        assert_eq!(r.to_string(), "5-8/*");
        let empty: ByteRange = "1-0/0".parse().unwrap();
        assert_eq!(empty.end, Some(0));
        assert!("0-1/1".parse::<ByteRange>().is_err());
        assert!("5-3/8".parse::<ByteRange>().is_err());
        assert!("1-9/8".parse::<ByteRange>().is_err());
        assert!("1-x/8".parse::<ByteRange>().is_err());
    }

    #[test]
    fn response_goes_to_previous_hop() {
        let relay: MsrpUri = "msrp://relay:1/r;tcp".parse().unwrap();
        let peer: MsrpUri = "msrp://peer:2/p;tcp".parse().unwrap();
        let us: MsrpUri = "msrp://us:3/u;tcp".parse().unwrap();
        let req = Frame::request(
            "abcd1234",
            Method::Send,
            std::slice::from_ref(&us),
            &[relay, peer],
        );
        let resp = req.response_to(200, None, &us);
        assert_eq!(resp.header("To-Path"), Some("msrp://relay:1/r;tcp"));
        assert_eq!(resp.header("From-Path"), Some("msrp://us:3/u;tcp"));
        assert_eq!(
            resp.to_bytes(),
            Bytes::from_static(
                b"MSRP abcd1234 200 OK\r\nTo-Path: msrp://relay:1/r;tcp\r\nFrom-Path: msrp://us:3/u;tcp\r\n-------abcd1234$\r\n"
            )
        );
    }

    #[test]
    fn report_options() {
        let us: MsrpUri = "msrp://us:3/u;tcp".parse().unwrap();
        let mut f = Frame::request(
            "t1t1",
            Method::Send,
            std::slice::from_ref(&us),
            std::slice::from_ref(&us),
        );
        assert!(!f.success_report());
        assert_eq!(f.failure_report(), FailureReport::Yes);
        f.push_header("Success-Report", "yes");
        f.push_header("Failure-Report", "partial");
        assert!(f.success_report());
        assert_eq!(f.failure_report(), FailureReport::Partial);
        f.push_header("Status", "000 200 OK");
        assert_eq!(f.status_header(), Some((0, 200)));
    }

    #[test]
    fn response_bytes_are_the_encoded_response_frame() {
        let local: MsrpUri = "msrp://127.0.0.1:2855/us;tcp".parse().unwrap();
        let mut req = Frame::request(
            "tid42",
            Method::Send,
            &["msrp://127.0.0.1:2855/us;tcp".parse().unwrap()],
            &[
                "msrp://relay:1/r;tcp".parse().unwrap(),
                "msrp://peer:2/p;tcp".parse().unwrap(),
            ],
        );
        let no_from_path = Frame {
            headers: Vec::new(),
            ..req.clone()
        };
        req.push_header("Byte-Range", "1-3/3");
        for code in [200, 400, 413, 481, 299, 7, 1234] {
            for r in [&req, &no_from_path] {
                assert_eq!(
                    r.response_bytes(code, &local.to_string()),
                    r.response_to(code, None, &local).to_bytes(),
                    "code {code}"
                );
            }
        }
    }
}
