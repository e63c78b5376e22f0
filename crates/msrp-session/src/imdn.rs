//! `message/imdn+xml` disposition notifications (RFC 5438 §7): delivery, display and
//! processing notifications with their status.

use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use quick_xml::events::BytesText;

use crate::xml::{document, elements, XmlError};

/// The XML namespace of RFC 5438.
pub const IMDN_XML_NS: &str = "urn:ietf:params:xml:ns:imdn";

/// The media type.
pub const IMDN_CONTENT_TYPE: &str = "message/imdn+xml";

/// Which notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    /// `<delivery-notification>`.
    Delivery,
    /// `<display-notification>`.
    Display,
    /// `<processing-notification>`.
    Processing,
}

impl NotificationKind {
    fn element(self) -> &'static str {
        match self {
            NotificationKind::Delivery => "delivery-notification",
            NotificationKind::Display => "display-notification",
            NotificationKind::Processing => "processing-notification",
        }
    }
}

/// `<status>` child (RFC 5438 §7.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdnStatus {
    /// `<delivered/>`.
    Delivered,
    /// `<failed/>`.
    Failed,
    /// `<forbidden/>`.
    Forbidden,
    /// `<error/>`.
    Error,
    /// `<displayed/>`.
    Displayed,
    /// `<processed/>`.
    Processed,
    /// `<stored/>`.
    Stored,
}

impl ImdnStatus {
    fn name(self) -> &'static str {
        match self {
            ImdnStatus::Delivered => "delivered",
            ImdnStatus::Failed => "failed",
            ImdnStatus::Forbidden => "forbidden",
            ImdnStatus::Error => "error",
            ImdnStatus::Displayed => "displayed",
            ImdnStatus::Processed => "processed",
            ImdnStatus::Stored => "stored",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "delivered" => ImdnStatus::Delivered,
            "failed" => ImdnStatus::Failed,
            "forbidden" => ImdnStatus::Forbidden,
            "error" => ImdnStatus::Error,
            "displayed" => ImdnStatus::Displayed,
            "processed" => ImdnStatus::Processed,
            "stored" => ImdnStatus::Stored,
            _ => return None,
        })
    }
}

/// An IMDN document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imdn {
    /// `<message-id>` of the message notified about (its `imdn.Message-ID`).
    pub message_id: String,
    /// `<datetime>` of the original message.
    pub datetime: DateTime<FixedOffset>,
    /// `<recipient-uri>`.
    pub recipient_uri: Option<String>,
    /// `<original-recipient-uri>`.
    pub original_recipient_uri: Option<String>,
    /// `<subject>`.
    pub subject: Option<String>,
    /// Which notification.
    pub kind: NotificationKind,
    /// Its status.
    pub status: ImdnStatus,
}

impl Imdn {
    /// Parse a body.
    pub fn parse(data: &[u8]) -> Result<Self, XmlError> {
        let els = elements(data)?;
        if !els.first().is_some_and(|e| e.is(&["imdn"])) {
            return Err(XmlError::Content("root is not imdn"));
        }
        let text = |name: &str| {
            els.iter()
                .find(|e| e.is(&["imdn", name]))
                .map(|e| e.text.clone())
        };
        let message_id = text("message-id").ok_or(XmlError::Content("message-id missing"))?;
        let datetime = text("datetime")
            .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
            .ok_or(XmlError::Content("datetime missing or bad"))?;
        let (kind, status) = [
            NotificationKind::Delivery,
            NotificationKind::Display,
            NotificationKind::Processing,
        ]
        .into_iter()
        .find_map(|k| {
            els.iter()
                .filter(|e| e.path.len() == 4 && e.path[1] == k.element() && e.path[2] == "status")
                .find_map(|e| ImdnStatus::from_name(&e.path[3]))
                .map(|s| (k, s))
        })
        .ok_or(XmlError::Content("no notification with a known status"))?;
        Ok(Imdn {
            message_id,
            datetime,
            recipient_uri: text("recipient-uri"),
            original_recipient_uri: text("original-recipient-uri"),
            subject: text("subject"),
            kind,
            status,
        })
    }

    /// Serialize.
    pub fn to_bytes(&self) -> Bytes {
        let mut w = document();
        let _ = w
            .create_element("imdn")
            .with_attribute(("xmlns", IMDN_XML_NS))
            .write_inner_content(|w| {
                w.create_element("message-id")
                    .write_text_content(BytesText::new(&self.message_id))?;
                w.create_element("datetime")
                    .write_text_content(BytesText::new(&self.datetime.to_rfc3339()))?;
                if let Some(u) = &self.recipient_uri {
                    w.create_element("recipient-uri")
                        .write_text_content(BytesText::new(u))?;
                }
                if let Some(u) = &self.original_recipient_uri {
                    w.create_element("original-recipient-uri")
                        .write_text_content(BytesText::new(u))?;
                }
                if let Some(s) = &self.subject {
                    w.create_element("subject")
                        .write_text_content(BytesText::new(s))?;
                }
                w.create_element(self.kind.element())
                    .write_inner_content(|w| {
                        w.create_element("status").write_inner_content(|w| {
                            w.create_element(self.status.name()).write_empty()?;
                            Ok(())
                        })?;
                        Ok(())
                    })?;
                Ok(())
            });
        Bytes::from(w.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 5438 §7.2.1.1 delivery notification example.
    const RFC_DELIVERY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
   <imdn xmlns="urn:ietf:params:xml:ns:imdn">
      <message-id>34jk324j</message-id>
      <datetime>2008-04-04T12:16:49-05:00</datetime>
      <recipient-uri>im:bob@example.com</recipient-uri>
      <original-recipient-uri
         >im:bob@example.com</original-recipient-uri>
      <delivery-notification>
         <status>
            <delivered/>
         </status>
      </delivery-notification>
   </imdn>"#;

    #[test]
    fn parses_rfc_example() {
        let n = Imdn::parse(RFC_DELIVERY.as_bytes()).unwrap();
        assert_eq!(n.message_id, "34jk324j");
        assert_eq!(n.datetime.to_rfc3339(), "2008-04-04T12:16:49-05:00");
        assert_eq!(n.recipient_uri.as_deref(), Some("im:bob@example.com"));
        assert_eq!(
            n.original_recipient_uri.as_deref(),
            Some("im:bob@example.com")
        );
        assert_eq!(n.kind, NotificationKind::Delivery);
        assert_eq!(n.status, ImdnStatus::Delivered);
    }

    #[test]
    fn build_round_trips() {
        let n = Imdn {
            message_id: "abc&123".into(),
            datetime: DateTime::parse_from_rfc3339("2026-11-26T05:00:00+01:00").unwrap(),
            recipient_uri: Some("sip:bob@example.com".into()),
            original_recipient_uri: None,
            subject: Some("hi <there>".into()),
            kind: NotificationKind::Display,
            status: ImdnStatus::Displayed,
        };
        let b = n.to_bytes();
        let s = std::str::from_utf8(&b).unwrap();
        assert!(
            s.contains(
                "<display-notification><status><displayed/></status></display-notification>"
            ),
            "{s}"
        );
        assert!(s.contains("<message-id>abc&amp;123</message-id>"));
        assert_eq!(Imdn::parse(&b).unwrap(), n);
    }

    #[test]
    fn rejects_incomplete() {
        assert!(Imdn::parse(b"<imdn><message-id>x</message-id></imdn>").is_err());
        assert!(Imdn::parse(b"<imdn><message-id>x</message-id><datetime>2008-04-04T12:16:49-05:00</datetime><delivery-notification><status><bogus/></status></delivery-notification></imdn>").is_err());
    }
}
