//! Typed header fields MWI and fetch need: Event and Allow-Events (RFC 6665 §8.2), Subscription-
//! State (RFC 6665 §8.2.3), Expires and Min-Expires (RFC 3261 §20.19/§20.23), SIP-ETag and
//! SIP-If-Match (RFC 3903 §11.3), P-Asserted-Identity (RFC 3325 §9.1), Record-Route and Route
//! (RFC 3261 §20.30/§20.34). Each parses from the field value and displays its wire value;
//! [`header_values`] reads every value of a named field from an rsipstack message.

use crate::error::SipError;
use crate::message_head::{canonical_name, is_token_byte};
use crate::params::{addr_spec, display_name, header_params, split_top_level};
use rsipstack::sip::Header;
use std::fmt;

/// A header value failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {0} header")]
pub struct HeaderError(pub &'static str);

/// Every value of header `name` (long or compact form), in order, split at top-level commas
/// for list-valued fields.
pub fn header_values(headers: &rsipstack::sip::Headers, name: &str) -> Vec<String> {
    let wanted = canonical_name(name);
    headers
        .iter()
        .filter(|h| canonical_name(h.name()).eq_ignore_ascii_case(&wanted))
        .map(|h| h.value().trim().to_string())
        .collect()
}

/// The first value of header `name`.
pub fn header_value(headers: &rsipstack::sip::Headers, name: &str) -> Option<String> {
    header_values(headers, name).into_iter().next()
}

/// Turn `(name, value)` pairs into rsipstack header fields, refusing names that are not
/// tokens and values with line breaks (header injection).
pub fn raw_headers(pairs: &[(String, String)]) -> Result<Vec<Header>, SipError> {
    pairs
        .iter()
        .map(|(n, v)| {
            if n.is_empty() || !n.bytes().all(is_token_byte) || v.contains(['\r', '\n']) {
                return Err(SipError::InvalidHeader(n.clone()));
            }
            Ok(rsipstack::sip::headers::make_header(
                &canonical_name(n),
                v.clone(),
            ))
        })
        .collect()
}

fn parse_u32(value: &str, what: &'static str) -> Result<u32, HeaderError> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError(what));
    }
    v.parse::<u32>().map_err(|_| HeaderError(what))
}

/// Event: `package[.template][;id=..][;params]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub package: String,
    pub id: Option<String>,
}

impl Event {
    pub fn new(package: impl Into<String>) -> Self {
        Event {
            package: package.into(),
            id: None,
        }
    }

    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let mut parts = split_top_level(value, ';').into_iter();
        let package = parts.next().unwrap_or("").trim();
        if package.is_empty() || !package.bytes().all(is_token_byte) {
            return Err(HeaderError("Event"));
        }
        let id = parts
            .filter_map(|p| p.split_once('='))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("id"))
            .map(|(_, v)| v.trim().to_string());
        // Event packages compare case-insensitively (RFC 6665 §8.2.1).
        Ok(Event {
            package: package.to_ascii_lowercase(),
            id,
        })
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.package)?;
        if let Some(id) = &self.id {
            write!(f, ";id={id}")?;
        }
        Ok(())
    }
}

/// Allow-Events: a list of event packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEvents(pub Vec<String>);

impl AllowEvents {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let list: Vec<String> = value
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        if list.iter().any(|p| !p.bytes().all(is_token_byte)) {
            return Err(HeaderError("Allow-Events"));
        }
        Ok(AllowEvents(list))
    }
}

impl fmt::Display for AllowEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// The substate of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    Active,
    Pending,
    Terminated,
    Other(String),
}

/// Subscription-State: `substate [;expires=n] [;reason=r] [;retry-after=n]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub state: SubState,
    pub expires: Option<u32>,
    pub reason: Option<String>,
    pub retry_after: Option<u32>,
}

impl SubscriptionState {
    pub fn active(expires: u32) -> Self {
        SubscriptionState {
            state: SubState::Active,
            expires: Some(expires),
            reason: None,
            retry_after: None,
        }
    }

    pub fn terminated(reason: impl Into<String>) -> Self {
        SubscriptionState {
            state: SubState::Terminated,
            expires: None,
            reason: Some(reason.into()),
            retry_after: None,
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == SubState::Terminated
    }

    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let mut parts = split_top_level(value, ';').into_iter();
        let state = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let state = match state.as_str() {
            "active" => SubState::Active,
            "pending" => SubState::Pending,
            "terminated" => SubState::Terminated,
            s if !s.is_empty() && s.bytes().all(is_token_byte) => SubState::Other(s.to_string()),
            _ => return Err(HeaderError("Subscription-State")),
        };
        let mut out = SubscriptionState {
            state,
            expires: None,
            reason: None,
            retry_after: None,
        };
        for p in parts {
            let Some((n, v)) = p.split_once('=') else {
                continue;
            };
            match n.trim().to_ascii_lowercase().as_str() {
                "expires" => out.expires = Some(parse_u32(v, "Subscription-State")?),
                "retry-after" => out.retry_after = Some(parse_u32(v, "Subscription-State")?),
                "reason" => out.reason = Some(v.trim().to_ascii_lowercase()),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            SubState::Active => f.write_str("active")?,
            SubState::Pending => f.write_str("pending")?,
            SubState::Terminated => f.write_str("terminated")?,
            SubState::Other(s) => f.write_str(s)?,
        }
        if let Some(e) = self.expires {
            write!(f, ";expires={e}")?;
        }
        if let Some(r) = &self.reason {
            write!(f, ";reason={r}")?;
        }
        if let Some(r) = self.retry_after {
            write!(f, ";retry-after={r}")?;
        }
        Ok(())
    }
}

/// Expires: delta-seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expires(pub u32);

impl Expires {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        parse_u32(value, "Expires").map(Expires)
    }
}

impl fmt::Display for Expires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Min-Expires: delta-seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinExpires(pub u32);

impl MinExpires {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        parse_u32(value, "Min-Expires").map(MinExpires)
    }
}

impl fmt::Display for MinExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// SIP-ETag: an entity-tag, a token (RFC 3903 §11.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipEtag(String);

impl SipEtag {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let v = value.trim();
        if v.is_empty() || !v.bytes().all(is_token_byte) {
            return Err(HeaderError("SIP-ETag"));
        }
        Ok(SipEtag(v.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SipEtag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SIP-If-Match: the entity-tag a PUBLISH refreshes or modifies (RFC 3903 §11.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipIfMatch(pub SipEtag);

impl SipIfMatch {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        SipEtag::parse(value)
            .map(SipIfMatch)
            .map_err(|_| HeaderError("SIP-If-Match"))
    }
}

impl fmt::Display for SipIfMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `[display-name] <URI>` or a bare addr-spec, URI kept as received text (never through
/// rsipstack's Display, which re-escapes `%`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display_name: Option<String>,
    pub uri: String,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let uri = addr_spec(value);
        if uri.is_empty() || !uri.contains(':') {
            return Err(HeaderError("name-addr"));
        }
        Ok(NameAddr {
            display_name: display_name(value),
            uri: uri.to_string(),
            params: header_params(value),
        })
    }

    /// Parse a comma-separated list of name-addrs.
    pub fn parse_list(value: &str) -> Result<Vec<Self>, HeaderError> {
        split_top_level(value, ',')
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .map(NameAddr::parse)
            .collect()
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display_name {
            write!(f, "\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        write!(f, "<{}>", self.uri)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// P-Asserted-Identity: one or two identities (a SIP/SIPS URI and/or a tel URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PAssertedIdentity(pub Vec<NameAddr>);

impl PAssertedIdentity {
    /// Parse every P-Asserted-Identity field value of a message, in order.
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, HeaderError> {
        let mut all = Vec::new();
        for v in values {
            all.extend(NameAddr::parse_list(v).map_err(|_| HeaderError("P-Asserted-Identity"))?);
        }
        if all.is_empty() {
            return Err(HeaderError("P-Asserted-Identity"));
        }
        Ok(PAssertedIdentity(all))
    }

    /// The first sip:/sips: identity (RFC 3325 §9.1 allows one of each scheme).
    pub fn sip_identity(&self) -> Option<&NameAddr> {
        self.0.iter().find(|n| {
            let lower = n.uri.to_ascii_lowercase();
            lower.starts_with("sip:") || lower.starts_with("sips:")
        })
    }
}

/// A route set from Record-Route or Route fields, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSet(pub Vec<NameAddr>);

impl RouteSet {
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, HeaderError> {
        let mut all = Vec::new();
        for v in values {
            all.extend(NameAddr::parse_list(v).map_err(|_| HeaderError("Route"))?);
        }
        Ok(RouteSet(all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_state_and_event_round_trip() {
        let s = SubscriptionState::parse("Active ; expires = 3600").expect("parses");
        assert_eq!(s, SubscriptionState::active(3600));
        assert_eq!(s.to_string(), "active;expires=3600");
        let t = SubscriptionState::parse("terminated;reason=timeout").expect("parses");
        assert!(t.is_terminated());
        assert_eq!(t.reason.as_deref(), Some("timeout"));
        assert!(SubscriptionState::parse("active;expires=99999999999").is_err());
        let e = Event::parse("Message-Summary;id=7").expect("parses");
        assert_eq!(e.package, "message-summary");
        assert_eq!(e.to_string(), "message-summary;id=7");
        assert_eq!(
            AllowEvents::parse("presence, message-summary")
                .expect("parses")
                .0
                .len(),
            2
        );
    }

    #[test]
    fn etag_expires_and_identities() {
        assert_eq!(
            SipEtag::parse(" abc123 ").expect("token").as_str(),
            "abc123"
        );
        assert!(SipEtag::parse("a b").is_err());
        assert_eq!(SipIfMatch::parse("x1").expect("token").to_string(), "x1");
        assert_eq!(Expires::parse("3600"), Ok(Expires(3600)));
        assert!(MinExpires::parse("-1").is_err());
        let pai = PAssertedIdentity::parse_all([r#""Bob" <sip:bob@example.com>, <tel:+15551234>"#])
            .expect("parses");
        assert_eq!(pai.0.len(), 2);
        assert_eq!(
            pai.sip_identity().map(|n| n.uri.as_str()),
            Some("sip:bob@example.com")
        );
        let rr = RouteSet::parse_all(["<sip:p1.example.com;lr>", "<sip:p2;lr>,<sip:p3;lr>"])
            .expect("parses");
        assert_eq!(rr.0.len(), 3);
        assert_eq!(rr.0[0].to_string(), "<sip:p1.example.com;lr>");
    }

    #[test]
    fn raw_headers_refuse_injection() {
        assert!(raw_headers(&[("X".into(), "a\r\nVia: x".into())]).is_err());
        assert!(raw_headers(&[("Bad Name".into(), "v".into())]).is_err());
        let h = raw_headers(&[("SIP-ETag".into(), "e1".into())]).expect("ok");
        assert_eq!(h[0].value(), "e1");
    }
}
