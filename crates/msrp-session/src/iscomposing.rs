//! `application/im-iscomposing+xml` (RFC 3994 §3): the composer's state, when it was last
//! active, what is being composed and how long the state holds.

use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use quick_xml::events::BytesText;

use crate::xml::{document, elements, XmlError};

/// The XML namespace of RFC 3994.
pub const ISCOMPOSING_NS: &str = "urn:ietf:params:xml:ns:im-iscomposing";

/// The media type.
pub const ISCOMPOSING_CONTENT_TYPE: &str = "application/im-iscomposing+xml";

/// `<state>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposingState {
    /// Typing.
    Active,
    /// Stopped typing.
    Idle,
}

/// An is-composing indication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsComposing {
    /// `<state>`.
    pub state: ComposingState,
    /// `<lastactive>`.
    pub last_active: Option<DateTime<FixedOffset>>,
    /// `<contenttype>`.
    pub content_type: Option<String>,
    /// `<refresh>` seconds (only with state active).
    pub refresh: Option<u32>,
}

impl IsComposing {
    /// Parse a body.
    pub fn parse(data: &[u8]) -> Result<Self, XmlError> {
        let els = elements(data)?;
        if !els.first().is_some_and(|e| e.is(&["isComposing"])) {
            return Err(XmlError::Content("root is not isComposing"));
        }
        let text = |name: &str| {
            els.iter()
                .find(|e| e.is(&["isComposing", name]))
                .map(|e| e.text.as_str())
        };
        let state = match text("state") {
            Some("active") => ComposingState::Active,
            Some("idle") => ComposingState::Idle,
            _ => return Err(XmlError::Content("state must be active or idle")),
        };
        let last_active = match text("lastactive") {
            Some(v) => Some(
                DateTime::parse_from_rfc3339(v).map_err(|_| XmlError::Content("bad lastactive"))?,
            ),
            None => None,
        };
        let refresh = match text("refresh") {
            Some(v) => Some(v.parse().map_err(|_| XmlError::Content("bad refresh"))?),
            None => None,
        };
        Ok(IsComposing {
            state,
            last_active,
            content_type: text("contenttype").map(str::to_string),
            refresh,
        })
    }

    /// Serialize.
    pub fn to_bytes(&self) -> Bytes {
        let mut w = document();
        let state = match self.state {
            ComposingState::Active => "active",
            ComposingState::Idle => "idle",
        };
        let _ = w
            .create_element("isComposing")
            .with_attribute(("xmlns", ISCOMPOSING_NS))
            .write_inner_content(|w| {
                w.create_element("state")
                    .write_text_content(BytesText::new(state))?;
                if let Some(t) = self.last_active {
                    w.create_element("lastactive")
                        .write_text_content(BytesText::new(&t.to_rfc3339()))?;
                }
                if let Some(c) = &self.content_type {
                    w.create_element("contenttype")
                        .write_text_content(BytesText::new(c))?;
                }
                if let Some(r) = self.refresh {
                    w.create_element("refresh")
                        .write_text_content(BytesText::new(&r.to_string()))?;
                }
                Ok(())
            });
        Bytes::from(w.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 3994 §6 example (idle).
    const RFC_IDLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
   <isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:schemaLocation="urn:ietf:params:xml:ns:im-composing
     iscomposing.xsd">
     <state>idle</state>
     <lastactive>2003-01-27T10:43:00Z</lastactive>
     <contenttype>audio</contenttype>
   </isComposing>"#;

    #[test]
    fn parses_rfc_example() {
        let c = IsComposing::parse(RFC_IDLE.as_bytes()).unwrap();
        assert_eq!(c.state, ComposingState::Idle);
        assert_eq!(
            c.last_active.unwrap().to_rfc3339(),
            "2003-01-27T10:43:00+00:00"
        );
        assert_eq!(c.content_type.as_deref(), Some("audio"));
        assert_eq!(c.refresh, None);
    }

    #[test]
    fn build_round_trips_with_escaping() {
        let c = IsComposing {
            state: ComposingState::Active,
            last_active: None,
            content_type: Some("text/plain&<x>".into()),
            refresh: Some(60),
        };
        let b = c.to_bytes();
        let s = std::str::from_utf8(&b).unwrap();
        assert!(s.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>active</state>"), "{s}");
        assert!(s.contains("text/plain&amp;&lt;x&gt;"));
        assert_eq!(IsComposing::parse(&b).unwrap(), c);
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(IsComposing::parse(b"<foo/>").is_err());
        assert!(IsComposing::parse(b"<isComposing><state>typing</state></isComposing>").is_err());
        assert!(IsComposing::parse(b"<isComposing><state>active</state>").is_err());
        assert!(IsComposing::parse(b"\xff\xfe").is_err());
    }
}
