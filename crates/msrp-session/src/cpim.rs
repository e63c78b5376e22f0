//! CPIM messages (RFC 3862): parse and build, byte-exact for what was parsed.
//!
//! A CPIM message is a block of message headers, a blank line, a block of MIME content
//! headers, a blank line and the body. Header names are case-sensitive (RFC 3862 §3.1);
//! `Name.Header` is a header in the namespace whose prefix `NS: Name <uri>` declares.

use bytes::Bytes;
use chrono::{DateTime, FixedOffset};

/// Why a CPIM message does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpimError {
    /// No blank line after the message headers or the content headers.
    #[error("CPIM header block not terminated")]
    Unterminated,
    /// A header line is not `Name: value`.
    #[error("malformed CPIM header line")]
    BadHeader,
    /// Header block not UTF-8.
    #[error("CPIM headers not UTF-8")]
    NotUtf8,
}

/// One message header: `Name:` + optional `;params` + ` ` + value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpimHeader {
    /// Name, possibly `prefix.Name`.
    pub name: String,
    /// `;lang=fr`-style parameters right after the colon, verbatim.
    pub params: String,
    /// The value.
    pub value: String,
}

/// `Display Name <uri>` of From/To/cc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpimAddress {
    /// Formal name, if any (quotes kept off).
    pub display_name: Option<String>,
    /// The URI inside the angle brackets.
    pub uri: String,
}

impl CpimAddress {
    /// An address with an optional display name.
    pub fn new(display_name: Option<&str>, uri: impl Into<String>) -> Self {
        CpimAddress {
            display_name: display_name.map(str::to_string),
            uri: uri.into(),
        }
    }

    /// Parse `Name <uri>`, `"Name" <uri>` or `<uri>`.
    pub fn parse(v: &str) -> Option<Self> {
        let v = v.trim();
        let open = v.rfind('<')?;
        let close = v[open..].find('>')? + open;
        let name = v[..open].trim().trim_matches('"').trim();
        Some(CpimAddress {
            display_name: (!name.is_empty()).then(|| name.to_string()),
            uri: v[open + 1..close].to_string(),
        })
    }
}

impl std::fmt::Display for CpimAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.display_name {
            Some(n)
                if n.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b" -_.!%*+`'~".contains(&c)) =>
            {
                write!(f, "{n} <{}>", self.uri)
            }
            Some(n) => write!(f, "\"{}\" <{}>", n.replace(['"', '\\'], ""), self.uri),
            None => write!(f, "<{}>", self.uri),
        }
    }
}

/// A CPIM message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpimMessage {
    /// Message headers in order.
    pub headers: Vec<CpimHeader>,
    /// MIME content headers (`Content-Type`, `Content-ID`, …) as (name, value) in order.
    pub content_headers: Vec<(String, String)>,
    /// The encapsulated body, byte-exact.
    pub body: Bytes,
}

/// The IMDN namespace URI (RFC 5438 §6.1).
pub const IMDN_NS: &str = "urn:ietf:params:imdn";

impl CpimMessage {
    /// A message `From`/`To`/`DateTime` carrying `content_type` and `body`.
    pub fn new(
        from: &CpimAddress,
        to: &CpimAddress,
        datetime: Option<DateTime<FixedOffset>>,
        content_type: &str,
        body: Bytes,
    ) -> Self {
        let mut m = CpimMessage {
            headers: Vec::new(),
            content_headers: vec![("Content-Type".to_string(), content_type.to_string())],
            body,
        };
        m.push("From", from.to_string());
        m.push("To", to.to_string());
        if let Some(dt) = datetime {
            m.push("DateTime", dt.to_rfc3339());
        }
        m
    }

    /// Append a message header.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.push(CpimHeader {
            name: name.into(),
            params: String::new(),
            value: value.into(),
        });
    }

    /// Declare `NS: imdn <urn:ietf:params:imdn>` and add `imdn.Message-ID` and, if given,
    /// `imdn.Disposition-Notification` (RFC 5438 §6.3).
    pub fn set_imdn(&mut self, message_id: &str, disposition: Option<&str>) {
        self.push("NS", format!("imdn <{IMDN_NS}>"));
        self.push("imdn.Message-ID", message_id);
        if let Some(d) = disposition {
            self.push("imdn.Disposition-Notification", d);
        }
    }

    /// Parse a CPIM body.
    pub fn parse(data: &[u8]) -> Result<Self, CpimError> {
        let (headers, rest) = split_block(data)?;
        let (content, body) = split_block(rest)?;
        let headers = headers
            .iter()
            .map(|l| parse_message_header(l))
            .collect::<Result<Vec<_>, _>>()?;
        let content_headers = content
            .iter()
            .map(|l| {
                let (n, v) = l.split_once(':').ok_or(CpimError::BadHeader)?;
                Ok((n.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()))
            })
            .collect::<Result<Vec<_>, CpimError>>()?;
        Ok(CpimMessage {
            headers,
            content_headers,
            body: Bytes::copy_from_slice(body),
        })
    }

    /// Serialize.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        for h in &self.headers {
            out.extend_from_slice(h.name.as_bytes());
            out.push(b':');
            out.extend_from_slice(h.params.as_bytes());
            out.push(b' ');
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.content_headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        Bytes::from(out)
    }

    /// First value of a message header (exact, case-sensitive name).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_str())
    }

    /// `From`.
    pub fn from(&self) -> Option<CpimAddress> {
        self.get("From").and_then(CpimAddress::parse)
    }

    /// All `To` addresses.
    pub fn to(&self) -> Vec<CpimAddress> {
        self.headers
            .iter()
            .filter(|h| h.name == "To")
            .filter_map(|h| CpimAddress::parse(&h.value))
            .collect()
    }

    /// `DateTime` (RFC 3339).
    pub fn datetime(&self) -> Option<DateTime<FixedOffset>> {
        self.get("DateTime")
            .and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok())
    }

    /// `Subject` values with their `;lang=` parameters.
    pub fn subjects(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .filter(|h| h.name == "Subject")
            .map(|h| (h.params.as_str(), h.value.as_str()))
            .collect()
    }

    /// `NS` declarations as (prefix, uri).
    pub fn namespaces(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|h| h.name == "NS")
            .filter_map(|h| {
                let a = CpimAddress::parse(&h.value)?;
                Some((a.display_name.unwrap_or_default(), a.uri))
            })
            .collect()
    }

    /// `Require` values.
    pub fn require(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|h| h.name == "Require")
            .map(|h| h.value.as_str())
            .collect()
    }

    /// A header in the namespace `ns_uri`, whatever prefix the sender declared for it.
    pub fn namespaced(&self, ns_uri: &str, name: &str) -> Option<&str> {
        self.namespaces()
            .into_iter()
            .filter(|(_, uri)| uri == ns_uri)
            .find_map(|(prefix, _)| {
                self.headers
                    .iter()
                    .find(|h| {
                        h.name
                            .strip_prefix(prefix.as_str())
                            .and_then(|r| r.strip_prefix('.'))
                            == Some(name)
                    })
                    .map(|h| h.value.as_str())
            })
    }

    /// `imdn.Message-ID`.
    pub fn imdn_message_id(&self) -> Option<&str> {
        self.namespaced(IMDN_NS, "Message-ID")
    }

    /// `imdn.Disposition-Notification`.
    pub fn disposition_notification(&self) -> Option<&str> {
        self.namespaced(IMDN_NS, "Disposition-Notification")
    }

    /// Inner Content-Type (case-insensitive name, MIME rules).
    pub fn content_type(&self) -> Option<&str> {
        self.content_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
            .map(|(_, v)| v.trim())
    }
}

/// Split at the first CRLF CRLF (or an immediate CRLF for an empty block); lines of the
/// block and the rest.
fn split_block(data: &[u8]) -> Result<(Vec<&str>, &[u8]), CpimError> {
    if let Some(rest) = data.strip_prefix(b"\r\n") {
        return Ok((Vec::new(), rest));
    }
    // Built once: `memmem::find` builds a searcher per call (one per stored message here).
    static BLANK_LINE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    let end = BLANK_LINE.find(data).ok_or(CpimError::Unterminated)?;
    let block = std::str::from_utf8(&data[..end]).map_err(|_| CpimError::NotUtf8)?;
    Ok((block.split("\r\n").collect(), &data[end + 4..]))
}

fn parse_message_header(line: &str) -> Result<CpimHeader, CpimError> {
    let (name, rest) = line.split_once(':').ok_or(CpimError::BadHeader)?;
    if name.is_empty() || name.contains(' ') {
        return Err(CpimError::BadHeader);
    }
    let (params, value) = if rest.starts_with(';') {
        match rest.split_once(' ') {
            Some((p, v)) => (p, v),
            None => (rest, ""),
        }
    } else {
        ("", rest.strip_prefix(' ').unwrap_or(rest))
    };
    Ok(CpimHeader {
        name: name.to_string(),
        params: params.to_string(),
        value: value.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse_with_imdn() {
        let dt = DateTime::parse_from_rfc3339("2026-11-26T05:00:00+00:00").unwrap();
        let mut m = CpimMessage::new(
            &CpimAddress::new(Some("Alice Liddell"), "sip:alice@example.com"),
            &CpimAddress::new(None, "sip:bob@example.com"),
            Some(dt),
            "text/plain;charset=UTF-8",
            Bytes::from_static(b"hello\r\n\r\nworld"),
        );
        m.set_imdn("abc123", Some("positive-delivery, display"));
        let wire = m.to_bytes();
        assert!(wire.starts_with(b"From: Alice Liddell <sip:alice@example.com>\r\nTo: <sip:bob@example.com>\r\nDateTime: 2026-11-26T05:00:00+00:00\r\nNS: imdn <urn:ietf:params:imdn>\r\n"));
        let back = CpimMessage::parse(&wire).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            back.from().unwrap().display_name.as_deref(),
            Some("Alice Liddell")
        );
        assert_eq!(back.to()[0].uri, "sip:bob@example.com");
        assert_eq!(back.datetime(), Some(dt));
        assert_eq!(back.imdn_message_id(), Some("abc123"));
        assert_eq!(
            back.disposition_notification(),
            Some("positive-delivery, display")
        );
        assert_eq!(back.content_type(), Some("text/plain;charset=UTF-8"));
        assert_eq!(&back.body[..], b"hello\r\n\r\nworld");
    }

    #[test]
    fn quoted_display_names_and_errors() {
        let a = CpimAddress::parse("\"Bob, Jr.\" <im:bob@example.com>").unwrap();
        assert_eq!(a.display_name.as_deref(), Some("Bob, Jr."));
        assert_eq!(a.to_string(), "\"Bob, Jr.\" <im:bob@example.com>");
        assert_eq!(
            CpimMessage::parse(b"From: <a>\r\nno end"),
            Err(CpimError::Unterminated)
        );
        assert_eq!(
            CpimMessage::parse(b"garbage\r\n\r\nContent-Type: x\r\n\r\n"),
            Err(CpimError::BadHeader)
        );
    }
}
