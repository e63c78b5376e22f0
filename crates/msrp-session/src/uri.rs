//! MSRP URIs (RFC 4975 §6): `msrp://host:port/session-id;tcp` and `msrps://…`.
//!
//! Comparison follows RFC 4975 §6.1: scheme, host and transport compare case-insensitively,
//! the port exactly, the session id case-sensitively; userinfo and parameters are ignored.

use std::fmt;
use std::str::FromStr;

/// Why a string is not an MSRP URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Scheme is neither `msrp` nor `msrps`.
    #[error("not an msrp/msrps URI")]
    Scheme,
    /// Host part empty or malformed.
    #[error("bad host in MSRP URI")]
    Host,
    /// Port not a number in 1..=65535.
    #[error("bad port in MSRP URI")]
    Port,
    /// The `;transport` part is missing (RFC 4975 §6 requires it).
    #[error("MSRP URI without transport")]
    Transport,
    /// A character that cannot appear in an MSRP URI.
    #[error("illegal character in MSRP URI")]
    Character,
}

/// One MSRP URI.
#[derive(Debug, Clone)]
pub struct MsrpUri {
    /// `msrps` (TLS) rather than `msrp`.
    pub secure: bool,
    /// Optional `userinfo@` part, kept verbatim.
    pub userinfo: Option<String>,
    /// Host as written; IPv6 references keep their brackets.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// The session id (path without the leading `/`).
    pub session_id: Option<String>,
    /// Transport token, e.g. `tcp`.
    pub transport: String,
    /// Further `;param` parts, verbatim without the `;`.
    pub params: Vec<String>,
}

impl MsrpUri {
    /// A `msrp://host:port/session-id;tcp` URI.
    pub fn new(
        secure: bool,
        host: impl Into<String>,
        port: u16,
        session_id: impl Into<String>,
    ) -> Self {
        Self {
            secure,
            userinfo: None,
            host: host.into(),
            port: Some(port),
            session_id: Some(session_id.into()),
            transport: "tcp".to_string(),
            params: Vec::new(),
        }
    }

    /// The host without IPv6 brackets, suitable for name resolution.
    pub fn host_unbracketed(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// `host:port` for connecting; MSRP has no default port (RFC 4975 §6), so 2855 is
    /// only used when none is given, as the IANA-registered port.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(2855))
    }

    /// Parse a whitespace-separated path header value (To-Path / From-Path / a=path).
    pub fn parse_path(value: &str) -> Result<Vec<MsrpUri>, UriError> {
        let uris = value
            .split_ascii_whitespace()
            .map(MsrpUri::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        if uris.is_empty() {
            return Err(UriError::Scheme);
        }
        Ok(uris)
    }

    /// Format a path as a header value.
    pub fn format_path(path: &[MsrpUri]) -> String {
        let mut out = String::new();
        for (i, uri) in path.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&uri.to_string());
        }
        out
    }
}

impl PartialEq for MsrpUri {
    fn eq(&self, other: &Self) -> bool {
        self.secure == other.secure
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
            && self.session_id == other.session_id
            && self.transport.eq_ignore_ascii_case(&other.transport)
    }
}

impl Eq for MsrpUri {}

impl FromStr for MsrpUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let p = UriParts::parse(s)?;
        Ok(MsrpUri {
            secure: p.secure,
            userinfo: p.userinfo.map(str::to_string),
            host: p.host.to_string(),
            port: p.port,
            session_id: p.session_id.map(str::to_string),
            transport: p.transport.to_string(),
            params: p
                .params
                .map(|ps| ps.split(';').map(str::to_string).collect())
                .unwrap_or_default(),
        })
    }
}

impl MsrpUri {
    /// The session id of the first URI of a path header value, every URI in it checked as
    /// [`MsrpUri::parse_path`] checks them, without building them: a connection reads it off
    /// every frame's To-Path to route the frame.
    pub fn first_session_id(path: &str) -> Result<Option<&str>, UriError> {
        let mut uris = path.split_ascii_whitespace();
        let first = UriParts::parse(uris.next().ok_or(UriError::Scheme)?)?;
        for uri in uris {
            UriParts::parse(uri)?;
        }
        Ok(first.session_id)
    }
}

/// The parts of an MSRP URI as slices of its text.
struct UriParts<'a> {
    secure: bool,
    userinfo: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
    session_id: Option<&'a str>,
    transport: &'a str,
    /// What follows the transport's `;`, if anything does: the `;`-separated parameters.
    params: Option<&'a str>,
}

impl<'a> UriParts<'a> {
    fn parse(s: &'a str) -> Result<Self, UriError> {
        if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UriError::Character);
        }
        let (secure, rest) = if let Some(r) = strip_prefix_ci(s, "msrps://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(s, "msrp://") {
            (false, r)
        } else {
            return Err(UriError::Scheme);
        };
        // authority [ "/" session-id ] ";" transport *( ";" param )
        let (before_params, params_part) = rest.split_once(';').ok_or(UriError::Transport)?;
        let (transport, params) = match params_part.split_once(';') {
            Some((t, ps)) => (t, Some(ps)),
            None => (params_part, None),
        };
        if transport.is_empty() {
            return Err(UriError::Transport);
        }
        let (authority, session_id) = match before_params.split_once('/') {
            Some((a, "")) => (a, None),
            Some((a, id)) => (a, Some(id)),
            None => (before_params, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, hp)) => (Some(u), hp),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(UriParts {
            secure,
            userinfo,
            host,
            port,
            session_id,
            transport,
            params,
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port) = if hostport.starts_with('[') {
        let close = hostport.find(']').ok_or(UriError::Host)?;
        let host = &hostport[..=close];
        let rest = &hostport[close + 1..];
        match rest.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if rest.is_empty() => (host, None),
            None => return Err(UriError::Host),
        }
    } else {
        match hostport.rfind(':') {
            Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(UriError::Host);
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| UriError::Port)?),
        None => None,
    };
    if port == Some(0) {
        return Err(UriError::Port);
    }
    Ok((host, port))
}

impl fmt::Display for MsrpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "msrps://" } else { "msrp://" })?;
        if let Some(u) = &self.userinfo {
            write!(f, "{u}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(id) = &self.session_id {
            write!(f, "/{id}")?;
        }
        write!(f, ";{}", self.transport)?;
        for p in &self.params {
            write!(f, ";{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Routing reads the first session id as a full parse of the path would give it, and
        /// refuses what that parse refuses.
        #[test]
        fn the_first_session_id_is_that_of_the_parsed_path(
            path in "(( |\t)?(msrps?|MSRP|http)://([a-z]@)?(h|\\[::1\\]|)(:[0-9]{1,6})?(/[a-z]{0,3})?(;(tcp)?(;[a-z]{0,2}){0,2})?){0,3} ?",
        ) {
            let parsed = MsrpUri::parse_path(&path)
                .map(|uris| uris.into_iter().next().and_then(|u| u.session_id));
            prop_assert_eq!(
                MsrpUri::first_session_id(&path).map(|id| id.map(str::to_string)),
                parsed
            );
        }
    }

    #[test]
    fn parses_and_formats_rfc_uri() {
        let s = "msrp://atlanta.example.com:7654/jshA7weztas;tcp";
        let u: MsrpUri = s.parse().unwrap();
        assert!(!u.secure);
        assert_eq!(u.host, "atlanta.example.com");
        assert_eq!(u.port, Some(7654));
        assert_eq!(u.session_id.as_deref(), Some("jshA7weztas"));
        assert_eq!(u.transport, "tcp");
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn msrps_userinfo_ipv6_and_params() {
        let s = "msrps://alice@[2001:db8::1]:9892/98cjs;tcp;foo=bar";
        let u: MsrpUri = s.parse().unwrap();
        assert!(u.secure);
        assert_eq!(u.userinfo.as_deref(), Some("alice"));
        assert_eq!(u.host_unbracketed(), "2001:db8::1");
        assert_eq!(u.params, vec!["foo=bar".to_string()]);
        assert_eq!(u.to_string(), s);
        let relay: MsrpUri = "msrps://alice@intra.example.com;tcp".parse().unwrap();
        assert_eq!(relay.session_id, None);
        assert_eq!(relay.port, None);
    }

    #[test]
    fn comparison_rules() {
        let a: MsrpUri = "MSRP://Host.Example.com:1/abc;TCP".parse().unwrap();
        let b: MsrpUri = "msrp://host.example.com:1/abc;tcp".parse().unwrap();
        let c: MsrpUri = "msrp://host.example.com:1/ABC;tcp".parse().unwrap();
        assert_eq!(a, b);
        assert_ne!(b, c);
    }

    #[test]
    fn rejects_bad_uris() {
        assert_eq!("http://x/y;tcp".parse::<MsrpUri>(), Err(UriError::Scheme));
        assert_eq!("msrp://x:1/y".parse::<MsrpUri>(), Err(UriError::Transport));
        assert_eq!("msrp://x:0/y;tcp".parse::<MsrpUri>(), Err(UriError::Port));
        assert_eq!("msrp://:5/y;tcp".parse::<MsrpUri>(), Err(UriError::Host));
        assert!(MsrpUri::parse_path("").is_err());
        let p = MsrpUri::parse_path("msrp://a:1/x;tcp msrp://b:2/y;tcp").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            MsrpUri::format_path(&p),
            "msrp://a:1/x;tcp msrp://b:2/y;tcp"
        );
    }
}
