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
        let (before_params, params_part) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => return Err(UriError::Transport),
        };
        let mut params = params_part.split(';');
        let transport = params.next().unwrap_or_default().to_string();
        if transport.is_empty() {
            return Err(UriError::Transport);
        }
        let params: Vec<String> = params.map(str::to_string).collect();
        let (authority, session_id) = match before_params.find('/') {
            Some(i) => (&before_params[..i], Some(&before_params[i + 1..])),
            None => (before_params, None),
        };
        let session_id = match session_id {
            Some("") | None => None,
            Some(id) => Some(id.to_string()),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(authority[..i].to_string()), &authority[i + 1..]),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(MsrpUri {
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

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), UriError> {
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
    Ok((host.to_string(), port))
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
