//! Address-of-record normalisation for mailbox keys: scheme sip/sips, user (case-sensitive,
//! `%HH` escapes of unreserved characters decoded, other escapes kept with upper-case hex, RFC
//! 3261 §19.1.4) and host (case-insensitive → lower-case); port, password, URI parameters and
//! headers dropped. Shown as `sip:user@host` (a sips: AoR names the same mailbox). Also the RFC
//! 4458 `target` parameter of a voicemail-style Request-URI. Parsing works on the received
//! text; we never round-trip escaped text through rsipstack's Display, which re-escapes `%`.

use crate::params::split_top_level;
use std::fmt;

/// Why a URI is not usable as an AoR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AorError {
    #[error("not a sip: or sips: URI")]
    NotSip,
    #[error("malformed URI")]
    Malformed,
}

/// sip or sips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
}

/// A normalised address-of-record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Aor {
    scheme: Scheme,
    user: Option<String>,
    host: String,
}

impl Aor {
    /// Normalise a SIP/SIPS URI given as addr-spec (`sip:bob@Example.COM;transport=tcp`) or
    /// name-addr (`"Bob" <sip:bob@example.com>;tag=1`).
    pub fn parse(text: &str) -> Result<Aor, AorError> {
        let text = text.trim();
        // A bare addr-spec is taken whole: its user part may contain ';' (RFC 4475 §3.1.1.9)
        // and whatever follows the host is dropped anyway.
        let uri = if text.contains('<') {
            crate::params::addr_spec(text)
        } else {
            text
        };
        let (scheme, rest) = uri.split_once(':').ok_or(AorError::NotSip)?;
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else {
            return Err(AorError::NotSip);
        };
        // Headers follow '?'; userinfo ends at the last '@' before them (a user part may hold
        // ';', RFC 4475 §3.1.1.9).
        let rest = rest.split('?').next().unwrap_or("");
        let (userinfo, hostpart) = match rest.rfind('@') {
            Some(at) => (rest.get(..at), rest.get(at + 1..).unwrap_or("")),
            None => (None, rest),
        };
        let user = match userinfo {
            Some(u) => {
                let user = u.split(':').next().unwrap_or("");
                if user.is_empty() {
                    return Err(AorError::Malformed);
                }
                Some(normalise_escapes(user)?)
            }
            None => None,
        };
        let hostport = split_top_level(hostpart, ';')
            .first()
            .copied()
            .unwrap_or("")
            .trim();
        let host = if let Some(v6) = hostport.strip_prefix('[') {
            let end = v6.find(']').ok_or(AorError::Malformed)?;
            format!("[{}]", v6.get(..end).unwrap_or("").to_ascii_lowercase())
        } else {
            hostport
                .split(':')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
        {
            return Err(AorError::Malformed);
        }
        Ok(Aor { scheme, user, host })
    }

    /// RFC 4458 §2: the `target` URI parameter of a Request-URI, unescaped once, as an AoR
    /// (`sip:as.example.com;target=sip:bob%40example.com;cause=486` → `sip:bob@example.com`).
    pub fn from_target_param(request_uri: &str) -> Option<Aor> {
        let uri = request_uri.trim();
        let uri = uri.split('?').next().unwrap_or("");
        let after_host = match uri.rfind('@') {
            Some(at) => uri.get(at + 1..)?,
            None => uri,
        };
        split_top_level(after_host, ';')
            .into_iter()
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("target"))
            .and_then(|(_, v)| {
                let decoded = percent_encoding::percent_decode_str(v.trim())
                    .decode_utf8()
                    .ok()?;
                Aor::parse(&decoded).ok()
            })
    }

    /// The AoR of a URI parsed by rsipstack (e.g. a Request-URI), rebuilt from its parts: the
    /// user text is taken as received (still escaped) instead of through `Uri`'s Display, which
    /// would escape `%` a second time (`a%40b` → `a%2540b`).
    pub fn from_uri(uri: &rsipstack::sip::Uri) -> Result<Aor, AorError> {
        let scheme = match &uri.scheme {
            None | Some(rsipstack::sip::Scheme::Sip) => "sip",
            Some(rsipstack::sip::Scheme::Sips) => "sips",
            Some(rsipstack::sip::Scheme::Other(_)) => return Err(AorError::NotSip),
        };
        let host = match &uri.host_with_port.host {
            rsipstack::sip::Host::IpAddr(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            other => other.to_string(),
        };
        let text = match &uri.auth {
            Some(auth) => format!("{scheme}:{}@{host}", auth.user),
            None => format!("{scheme}:{host}"),
        };
        Aor::parse(&text)
    }

    /// RFC 4458 `target` of a URI parsed by rsipstack, read from its raw parameter value.
    pub fn target_of(uri: &rsipstack::sip::Uri) -> Option<Aor> {
        uri.params.iter().find_map(|p| match p {
            rsipstack::sip::Param::Other(name, Some(value))
                if name.value().eq_ignore_ascii_case("target") =>
            {
                let decoded = percent_encoding::percent_decode_str(value.value())
                    .decode_utf8()
                    .ok()?;
                Aor::parse(&decoded).ok()
            }
            _ => None,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The user part, escapes normalised (unreserved characters decoded).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The host, lower-case, without port.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Build an AoR from parts (user as plain text; characters outside RFC 3261 `user` are
    /// escaped).
    pub fn new(user: Option<&str>, host: &str) -> Result<Aor, AorError> {
        let user = user.map(escape_user);
        let text = match &user {
            Some(u) => format!("sip:{u}@{host}"),
            None => format!("sip:{host}"),
        };
        Aor::parse(&text)
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(u) => write!(f, "sip:{u}@{}", self.host),
            None => write!(f, "sip:{}", self.host),
        }
    }
}

/// The text of a URI parsed by rsipstack, as received: like its Display, but the user and
/// password are written as stored (still escaped) instead of being escaped a second time.
pub fn uri_text(uri: &rsipstack::sip::Uri) -> String {
    let mut out = String::new();
    if let Some(scheme) = &uri.scheme {
        out.push_str(&format!("{scheme}:"));
    }
    if let Some(auth) = &uri.auth {
        out.push_str(&auth.user);
        if let Some(password) = &auth.password {
            out.push(':');
            out.push_str(password);
        }
        out.push('@');
    }
    out.push_str(&uri.host_with_port.to_string());
    for param in &uri.params {
        out.push_str(&param.to_string());
    }
    if !uri.headers.is_empty() {
        let parts: Vec<String> = uri
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

/// RFC 3986 unreserved plus RFC 3261 `mark`: what never needs escaping in a user part.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// RFC 3261 §25.1 user-unreserved characters, allowed unescaped in a user part.
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

/// Decode `%HH` of unreserved characters, keep the others escaped with upper-case hex.
fn normalise_escapes(user: &str) -> Result<String, AorError> {
    let bytes = user.as_bytes();
    let mut out = String::with_capacity(user.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(AorError::Malformed)?;
            let s = std::str::from_utf8(hex).map_err(|_| AorError::Malformed)?;
            let v = u8::from_str_radix(s, 16).map_err(|_| AorError::Malformed)?;
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else if is_user_char(b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(AorError::Malformed);
        }
    }
    Ok(out)
}

fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if is_user_char(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aor(s: &str) -> String {
        Aor::parse(s).expect("valid AoR").to_string()
    }

    #[test]
    fn normalises_case_escapes_params_and_headers() {
        assert_eq!(
            aor("sip:Bob@Example.COM:5060;transport=tcp?Subject=x"),
            "sip:Bob@example.com"
        );
        assert_eq!(aor("<sips:bob@example.com>;tag=1"), "sip:bob@example.com");
        assert_eq!(aor("sip:%75se%72@example.com"), "sip:user@example.com");
        assert_eq!(aor("sip:a%40b@example.com"), "sip:a%40b@example.com");
        assert_eq!(aor("sip:a%2fb@example.com"), "sip:a%2Fb@example.com");
        assert_eq!(
            aor("sip:user;par=u%40example.net@example.com"),
            "sip:user;par=u%40example.net@example.com"
        );
        assert_eq!(
            aor("sip:alice:secret@[2001:DB8::1]:5060"),
            "sip:alice@[2001:db8::1]"
        );
        assert_ne!(aor("sip:Bob@example.com"), aor("sip:bob@example.com"));
        assert_eq!(Aor::parse("tel:+1555"), Err(AorError::NotSip));
        assert_eq!(Aor::parse("sip:bad user@x"), Err(AorError::Malformed));
        assert_eq!(Aor::parse("sip:a%4@x"), Err(AorError::Malformed));
    }

    #[test]
    fn rfc4458_target_parameter() {
        let t = Aor::from_target_param("sip:as.example.com;target=sip:bob%40example.com;cause=486")
            .expect("target present");
        assert_eq!(t.to_string(), "sip:bob@example.com");
        assert_eq!(
            Aor::from_target_param("sip:voicemail@as.example.com;cause=486"),
            None
        );
    }

    #[test]
    fn from_rsipstack_uri_without_double_escaping() {
        let uri =
            rsipstack::sip::Uri::try_from("sip:a%40b@Example.com;transport=udp").expect("uri");
        // rsipstack's own Display escapes the '%' again.
        assert!(uri.to_string().contains("%2540"));
        assert_eq!(
            Aor::from_uri(&uri).expect("aor").to_string(),
            "sip:a%40b@example.com"
        );
        let ruri = rsipstack::sip::Uri::try_from(
            "sip:as.example.com;target=sip:bob%40example.com;cause=486",
        )
        .expect("uri");
        assert_eq!(
            Aor::target_of(&ruri).map(|a| a.to_string()).as_deref(),
            Some("sip:bob@example.com")
        );
        // rsipstack writes the transport token upper-case; it compares case-insensitively.
        assert_eq!(uri_text(&uri), "sip:a%40b@Example.com;transport=UDP");
        assert_eq!(
            uri_text(&ruri),
            "sip:as.example.com;target=sip:bob%40example.com;cause=486"
        );
        let v6 = rsipstack::sip::Uri::try_from("sip:bob@[::1]:5060").expect("uri");
        assert_eq!(
            Aor::from_uri(&v6).expect("aor").to_string(),
            "sip:bob@[::1]"
        );
    }

    #[test]
    fn new_escapes_what_it_must() {
        assert_eq!(
            Aor::new(Some("a b"), "Example.com")
                .expect("ok")
                .to_string(),
            "sip:a%20b@example.com"
        );
    }
}
