//! Identity of a request's originator (RFC 3325): P-Asserted-Identity is believed only when
//! the request came from a trusted proxy (a configured IP or CIDR); otherwise the From URI is
//! used and the identity is marked untrusted.

use crate::aor::{Aor, AorError};
use crate::headers::{header_value, header_values, PAssertedIdentity};
use ipnet::IpNet;
use rsipstack::sip::Request;
use std::net::{IpAddr, SocketAddr};

/// Errors of trust configuration and identity extraction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid trusted proxy address {0:?} (IP or CIDR expected)")]
    InvalidProxy(String),
    #[error("no usable identity: {0}")]
    NoIdentity(#[from] AorError),
    #[error("request has no From header")]
    NoFrom,
}

/// The set of proxies whose P-Asserted-Identity we believe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parse IPs (`192.0.2.1`, `::1`) and CIDRs (`10.0.0.0/8`).
    pub fn parse<I, S>(list: I) -> Result<Self, IdentityError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        list.into_iter()
            .map(|s| {
                let s = s.as_ref().trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| IdentityError::InvalidProxy(s.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// True when `ip` (IPv4-mapped IPv6 seen as IPv4) is in one of the trusted networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Who sent a request, and whether a trusted proxy vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertedIdentity {
    pub aor: Aor,
    pub display_name: Option<String>,
    /// The request came from a trusted proxy (and `aor` is its P-Asserted-Identity when it
    /// carried one).
    pub trusted: bool,
}

/// The asserted identity of `request` received from `source`.
pub fn asserted_identity(
    request: &Request,
    source: SocketAddr,
    trusted: &TrustedProxies,
) -> Result<AssertedIdentity, IdentityError> {
    let is_trusted = trusted.contains(source.ip());
    if is_trusted {
        let values = header_values(&request.headers, "P-Asserted-Identity");
        if let Ok(pai) = PAssertedIdentity::parse_all(values.iter().map(String::as_str)) {
            if let Some(id) = pai.sip_identity() {
                return Ok(AssertedIdentity {
                    aor: Aor::parse(&id.uri)?,
                    display_name: id.display_name.clone(),
                    trusted: true,
                });
            }
        }
    }
    let from = header_value(&request.headers, "From").ok_or(IdentityError::NoFrom)?;
    Ok(AssertedIdentity {
        aor: Aor::parse(&from)?,
        display_name: crate::params::display_name(&from),
        trusted: is_trusted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &str) -> Request {
        Request::try_from(
            format!(
                "INVITE sip:fetch@ms.example.com SIP/2.0\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK1\r\n\
                 From: \"Eve\" <sip:eve@example.com>;tag=1\r\nTo: <sip:fetch@ms.example.com>\r\n\
                 Call-ID: c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
            )
            .as_str(),
        )
        .expect("request parses")
    }

    #[test]
    fn pai_is_believed_only_from_trusted_sources() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8", "::1"]).expect("valid");
        let req = request("P-Asserted-Identity: \"Bob\" <sip:Bob@Example.com>\r\n");
        let from_proxy = asserted_identity(&req, "10.1.2.3:5060".parse().expect("addr"), &trusted)
            .expect("identity");
        assert_eq!(from_proxy.aor.to_string(), "sip:Bob@example.com");
        assert_eq!(from_proxy.display_name.as_deref(), Some("Bob"));
        assert!(from_proxy.trusted);
        let mapped = asserted_identity(
            &req,
            "[::ffff:10.0.0.1]:5060".parse().expect("addr"),
            &trusted,
        )
        .expect("identity");
        assert!(mapped.trusted);
        let outsider = asserted_identity(&req, "192.0.2.1:5060".parse().expect("addr"), &trusted)
            .expect("identity");
        assert_eq!(outsider.aor.to_string(), "sip:eve@example.com");
        assert_eq!(outsider.display_name.as_deref(), Some("Eve"));
        assert!(!outsider.trusted);
        let no_pai = asserted_identity(
            &request(""),
            "10.0.0.1:5060".parse().expect("addr"),
            &trusted,
        )
        .expect("identity");
        assert_eq!(no_pai.aor.to_string(), "sip:eve@example.com");
        assert!(no_pai.trusted);
        assert!(TrustedProxies::parse(["nonsense"]).is_err());
    }
}
