//! Is an INVITE a fetch, and whose mailbox does it open? The one fetch URI (config) is matched on
//! user part and host (SPEC §3; any parameters, port or headers ignored); the mailbox is the
//! caller's asserted identity, believed only from a trusted proxy (RFC 3325 §5).

/// Why the configured fetch URI is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchUriError {
    /// Not `sip:` / `sips:` with a user part and a host.
    #[error("fetch URI {0:?} is not sip:user@host")]
    Invalid(String),
}

/// The configured fetch URI, reduced to what is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUri {
    user: String,
    host: String,
}

impl FetchUri {
    /// Parses `sip:offline@example.com` (parameters allowed, ignored).
    pub fn parse(uri: &str) -> Result<Self, FetchUriError> {
        let (user, host) =
            user_and_host(uri).ok_or_else(|| FetchUriError::Invalid(uri.to_owned()))?;
        Ok(Self {
            user: user.to_owned(),
            host: host.to_owned(),
        })
    }

    /// Whether a Request-URI names the fetch URI: user part and host equal ignoring case,
    /// anything else (scheme sip/sips, port, parameters, headers) ignored.
    pub fn matches(&self, request_uri: &str) -> bool {
        user_and_host(request_uri).is_some_and(|(user, host)| {
            user.eq_ignore_ascii_case(&self.user) && host.eq_ignore_ascii_case(&self.host)
        })
    }
}

/// What to do with an INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchDecision {
    /// A fetch of this mailbox (the asserted identity, as given).
    Fetch {
        /// Normalised AoR of the caller.
        mailbox: String,
    },
    /// A fetch from a source that is not a trusted proxy, or with no identity: answer 403 and
    /// reveal nothing, not even whether the mailbox exists.
    Forbidden,
    /// Not to the fetch URI: a deposit.
    NotFetch,
}

/// Decides fetch or deposit. `asserted_identity` is the caller's normalised AoR as the binary
/// took it (P-Asserted-Identity from a trusted proxy, else From); it is used only when
/// `source_trusted`.
pub fn decide(
    request_uri: &str,
    fetch_uri: &FetchUri,
    source_trusted: bool,
    asserted_identity: Option<&str>,
) -> FetchDecision {
    if !fetch_uri.matches(request_uri) {
        return FetchDecision::NotFetch;
    }
    match asserted_identity {
        Some(identity) if source_trusted && !identity.is_empty() => FetchDecision::Fetch {
            mailbox: identity.to_owned(),
        },
        _ => FetchDecision::Forbidden,
    }
}

/// User part and host of a `sip:`/`sips:` URI, optionally in `<>` (RFC 3261 §19.1.1).
fn user_and_host(uri: &str) -> Option<(&str, &str)> {
    let uri = uri.trim();
    let uri = uri
        .strip_prefix('<')
        .and_then(|u| u.strip_suffix('>'))
        .unwrap_or(uri);
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    // Headers end the URI proper; the userinfo ends at the last '@' before them.
    let rest = rest.split('?').next().unwrap_or_default();
    let (userinfo, hostport) = rest.rsplit_once('@')?;
    // RFC 3261 §19.1.1: a password may follow the user; a user may carry ;params (RFC 4694).
    let user = userinfo.split([':', ';']).next().unwrap_or_default();
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split_once(']').map(|(h, _)| h)?
    } else {
        hostport.split([':', ';']).next().unwrap_or_default()
    };
    if user.is_empty() || host.is_empty() {
        return None;
    }
    Some((user, host))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fetch_uri() -> FetchUri {
        FetchUri::parse("sip:offline@example.com").unwrap()
    }

    #[test]
    fn matches_user_and_host_any_params() {
        let f = fetch_uri();
        for uri in [
            "sip:offline@example.com",
            "SIP:Offline@EXAMPLE.com",
            "sips:offline@example.com:5061;transport=tcp",
            "<sip:offline@example.com;peek>",
            "sip:offline;x=y@example.com?Subject=hi",
        ] {
            assert!(f.matches(uri), "{uri}");
        }
        for uri in [
            "sip:bob@example.com",
            "sip:offline@example.org",
            "sip:example.com",
            "tel:+4312345",
            "sip:offline@",
            "",
        ] {
            assert!(!f.matches(uri), "{uri}");
        }
        let v6 = FetchUri::parse("sip:offline@[2001:db8::1]").unwrap();
        assert!(v6.matches("sip:offline@[2001:DB8::1]:5060"));
        assert!(FetchUri::parse("sip:example.com").is_err());
    }

    #[test]
    fn decision() {
        let f = fetch_uri();
        assert_eq!(
            decide(
                "sip:offline@example.com",
                &f,
                true,
                Some("sip:bob@example.com")
            ),
            FetchDecision::Fetch {
                mailbox: "sip:bob@example.com".into()
            }
        );
        assert_eq!(
            decide(
                "sip:offline@example.com",
                &f,
                false,
                Some("sip:bob@example.com")
            ),
            FetchDecision::Forbidden
        );
        assert_eq!(
            decide("sip:offline@example.com", &f, true, None),
            FetchDecision::Forbidden
        );
        assert_eq!(
            decide("sip:bob@example.com", &f, false, None),
            FetchDecision::NotFetch
        );
    }
}
