//! SDP `m=message` offer/answer for MSRP (RFC 4975 §8, RFC 6135 `a=setup`, RFC 3264) on
//! top of sdp-types.

use std::net::IpAddr;

use rand::Rng;
use sdp_types::{AddrType, Attribute, Connection, Media, NetType, Origin, Session, Time};

/// `a=setup` values (RFC 4145/6135), re-exported so callers need not depend on sdp-types.
pub use sdp_types::Setup;

use crate::uri::MsrpUri;

/// Why an SDP offer or answer cannot be used; the SIP layer answers 488.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not parseable SDP.
    #[error("unparseable SDP: {0}")]
    Parse(String),
    /// No `m=message` line with TCP/MSRP or TCP/TLS/MSRP, a non-zero port and an `a=path`.
    #[error("no usable MSRP media in SDP")]
    NoMsrpMedia,
    /// `a=path` present but not a list of MSRP URIs.
    #[error("bad a=path")]
    BadPath,
    /// No content type in common.
    #[error("no accept-types in common")]
    NoCommonTypes,
    /// Only MSRP media over a transport we do not serve (TLS without an msrps path).
    #[error("MSRP transport not supported")]
    TransportUnsupported,
    /// `a=setup:holdconn`: the peer does not want a connection now.
    #[error("a=setup:holdconn is not supported")]
    HoldConn,
}

/// Transport of the MSRP media line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrpTransport {
    /// `TCP/MSRP`.
    Tcp,
    /// `TCP/TLS/MSRP`.
    Tls,
}

impl MsrpTransport {
    /// The SDP proto token.
    pub fn as_str(self) -> &'static str {
        match self {
            MsrpTransport::Tcp => "TCP/MSRP",
            MsrpTransport::Tls => "TCP/TLS/MSRP",
        }
    }
}

/// Who opens the TCP connection (RFC 6135).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupRole {
    /// We connect to the peer's path.
    Active,
    /// We wait for the peer's connection.
    Passive,
}

/// The MSRP media description of an SDP body (offer or answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrpOffer {
    /// Index of the m= line in the body.
    pub media_index: usize,
    /// `a=path` URIs, first hop first.
    pub path: Vec<MsrpUri>,
    /// `a=accept-types`.
    pub accept_types: Vec<String>,
    /// `a=accept-wrapped-types`.
    pub accept_wrapped_types: Vec<String>,
    /// `a=max-size`.
    pub max_size: Option<u64>,
    /// `a=setup` (absent: the offerer is active, RFC 6135 §4.1).
    pub setup: Setup,
    /// TCP or TLS.
    pub transport: MsrpTransport,
    /// The c= address (media level, else session level).
    pub connection_address: Option<String>,
    /// The m= port.
    pub port: u16,
}

/// What we put in our media description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Our `a=path` (usually one URI from `MsrpSession::local_path`).
    pub path: Vec<MsrpUri>,
    /// Types we accept, in preference order.
    pub accept_types: Vec<String>,
    /// Types we accept inside message/cpim.
    pub accept_wrapped_types: Vec<String>,
    /// Largest message we take, if limited.
    pub max_size: Option<u64>,
}

impl LocalMedia {
    /// The server's defaults: `message/cpim text/plain application/im-iscomposing+xml`,
    /// wrapped `text/plain message/imdn+xml`.
    pub fn with_defaults(path: Vec<MsrpUri>, max_size: Option<u64>) -> Self {
        LocalMedia {
            path,
            accept_types: vec![
                "message/cpim".to_string(),
                "text/plain".to_string(),
                "application/im-iscomposing+xml".to_string(),
            ],
            accept_wrapped_types: vec!["text/plain".to_string(), "message/imdn+xml".to_string()],
            max_size,
        }
    }
}

/// The result of an offer/answer exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Our role.
    pub role: SetupRole,
    /// Types both sides accept (ours, filtered).
    pub accept_types: Vec<String>,
    /// Wrapped types both accept.
    pub accept_wrapped_types: Vec<String>,
    /// The peer's path.
    pub peer_path: Vec<MsrpUri>,
    /// The peer's max-size.
    pub peer_max_size: Option<u64>,
    /// Transport.
    pub transport: MsrpTransport,
}

fn split_list(v: Option<&str>) -> Vec<String> {
    v.map(|s| s.split_ascii_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

impl MsrpOffer {
    /// The first usable MSRP media line in an SDP body.
    pub fn parse(sdp: &[u8]) -> Result<MsrpOffer, SdpError> {
        let session = Session::parse(sdp).map_err(|e| SdpError::Parse(e.to_string()))?;
        Self::from_session(&session)?
            .into_iter()
            .next()
            .ok_or(SdpError::NoMsrpMedia)
    }

    /// The transports of the usable MSRP media lines of an SDP body, in order (empty when it
    /// does not parse or has none): lets the answerer pick its TCP or TLS endpoint before
    /// creating a session.
    pub fn offered_transports(sdp: &[u8]) -> Vec<MsrpTransport> {
        Session::parse(sdp)
            .ok()
            .and_then(|s| Self::from_session(&s).ok())
            .map(|offers| offers.into_iter().map(|o| o.transport).collect())
            .unwrap_or_default()
    }

    /// Every usable MSRP media line (non-empty on success).
    fn from_session(session: &Session) -> Result<Vec<MsrpOffer>, SdpError> {
        let mut found = Vec::new();
        let mut saw_bad_path = false;
        for (i, m) in session.medias.iter().enumerate() {
            if !m.media.eq_ignore_ascii_case("message") || m.port == 0 {
                continue;
            }
            let transport = if m.proto.eq_ignore_ascii_case("TCP/MSRP") {
                MsrpTransport::Tcp
            } else if m.proto.eq_ignore_ascii_case("TCP/TLS/MSRP") {
                MsrpTransport::Tls
            } else {
                continue;
            };
            let Some(Some(path)) = m.get_first_attribute_value("path") else {
                continue;
            };
            let Ok(path) = MsrpUri::parse_path(path) else {
                saw_bad_path = true;
                continue;
            };
            let setup = match m.get_first_attribute_value("setup") {
                Some(Some(v)) => v.trim().parse::<Setup>().unwrap_or(Setup::Active),
                _ => Setup::Active,
            };
            let connection_address = m
                .connections
                .first()
                .or(session.connection.as_ref())
                .map(|c| c.connection_address.clone());
            found.push(MsrpOffer {
                media_index: i,
                path,
                accept_types: split_list(m.get_first_attribute_value("accept-types").flatten()),
                accept_wrapped_types: split_list(
                    m.get_first_attribute_value("accept-wrapped-types")
                        .flatten(),
                ),
                max_size: m
                    .get_first_attribute_value("max-size")
                    .flatten()
                    .and_then(|v| v.trim().parse().ok()),
                setup,
                transport,
                connection_address,
                port: m.port,
            });
        }
        match (found.is_empty(), saw_bad_path) {
            (false, _) => Ok(found),
            (true, true) => Err(SdpError::BadPath),
            (true, false) => Err(SdpError::NoMsrpMedia),
        }
    }

    /// The negotiation result when this is the peer's answer to our offer made with
    /// `our_setup`.
    pub fn negotiate_as_offerer(
        &self,
        our: &LocalMedia,
        our_setup: &Setup,
    ) -> Result<Negotiated, SdpError> {
        let role = match (our_setup, &self.setup) {
            (_, Setup::HoldConn) => return Err(SdpError::HoldConn),
            (Setup::Active, _) => SetupRole::Active,
            (Setup::Passive, _) => SetupRole::Passive,
            // We offered actpass: the answerer picks; its answer active means we are passive.
            (_, Setup::Active) => SetupRole::Passive,
            (_, _) => SetupRole::Active,
        };
        let accept_types = intersect(&our.accept_types, &self.accept_types);
        if accept_types.is_empty() {
            return Err(SdpError::NoCommonTypes);
        }
        Ok(Negotiated {
            role,
            accept_types,
            accept_wrapped_types: intersect(&our.accept_wrapped_types, &self.accept_wrapped_types),
            peer_path: self.path.clone(),
            peer_max_size: self.max_size,
            transport: self.transport,
        })
    }
}

/// Our types that the peer's list allows (`*` allows all; `type/*` a whole type).
fn intersect(ours: &[String], theirs: &[String]) -> Vec<String> {
    ours.iter()
        .filter(|o| theirs.iter().any(|t| media_type_matches(t, o)))
        .cloned()
        .collect()
}

fn media_type_matches(pattern: &str, ty: &str) -> bool {
    if pattern == "*" || pattern.eq_ignore_ascii_case(ty) {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(major) => ty
            .split_once('/')
            .is_some_and(|(m, _)| m.eq_ignore_ascii_case(major)),
        None => false,
    }
}

fn connection_for(path: &[MsrpUri]) -> Connection {
    let host = path
        .last()
        .map(|u| u.host_unbracketed().to_string())
        .unwrap_or_default();
    match host.parse::<IpAddr>() {
        Ok(ip) => Connection::from_ip_addr(ip),
        Err(_) => Connection::new(NetType::In, AddrType::Ip4, host),
    }
}

fn msrp_media(
    local: &LocalMedia,
    transport: MsrpTransport,
    setup: &Setup,
    types: &[String],
    wrapped: &[String],
) -> Media {
    let port = local.path.last().and_then(|u| u.port).unwrap_or(2855);
    let mut m = Media {
        media: "message".to_string(),
        port,
        num_ports: None,
        proto: transport.as_str().to_string(),
        fmt: "*".to_string(),
        media_title: None,
        connections: vec![connection_for(&local.path)],
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    };
    m.attributes
        .push(Attribute::with_value("accept-types", types.join(" ")));
    if !wrapped.is_empty() {
        m.attributes.push(Attribute::with_value(
            "accept-wrapped-types",
            wrapped.join(" "),
        ));
    }
    if let Some(max) = local.max_size {
        m.attributes.push(Attribute::with_value("max-size", max));
    }
    m.attributes.push(Attribute::with_value("setup", setup));
    m.attributes.push(Attribute::with_value(
        "path",
        MsrpUri::format_path(&local.path),
    ));
    m
}

fn new_session(local: &LocalMedia) -> Session {
    let conn = connection_for(&local.path);
    let sess_id: u32 = rand::rng().random_range(1..u32::MAX);
    let origin = Origin {
        username: Some("-".to_string()),
        sess_id: sess_id.to_string(),
        sess_version: 1,
        nettype: NetType::In,
        addrtype: conn.addrtype.clone(),
        unicast_address: conn.connection_address.clone(),
    };
    let mut s = Session::new(origin, "-");
    s.times.push(Time::new(0, 0));
    s
}

fn write(session: &Session) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = session.write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Answer an offer (RFC 3264): our MSRP media in place of the offered one, every other
/// m= line rejected with port 0. `actpass`/`active` offers make us passive, `passive`
/// makes us active (RFC 6135).
pub fn build_answer(
    offer_sdp: &[u8],
    local: &LocalMedia,
) -> Result<(String, Negotiated), SdpError> {
    let offered = Session::parse(offer_sdp).map_err(|e| SdpError::Parse(e.to_string()))?;
    // TCP/TLS/MSRP needs an msrps path of ours (RFC 4975 §8.1); without TLS only TCP/MSRP
    // media can be accepted.
    let secure = local.path.last().is_some_and(|u| u.secure);
    let want = if secure {
        MsrpTransport::Tls
    } else {
        MsrpTransport::Tcp
    };
    let offer = MsrpOffer::from_session(&offered)?
        .into_iter()
        .find(|o| o.transport == want)
        .ok_or(SdpError::TransportUnsupported)?;
    let (role, our_setup) = match offer.setup {
        Setup::ActPass | Setup::Active => (SetupRole::Passive, Setup::Passive),
        Setup::Passive => (SetupRole::Active, Setup::Active),
        Setup::HoldConn => return Err(SdpError::HoldConn),
    };
    let accept_types = intersect(&local.accept_types, &offer.accept_types);
    if accept_types.is_empty() {
        return Err(SdpError::NoCommonTypes);
    }
    let wrapped = if accept_types
        .iter()
        .any(|t| t.eq_ignore_ascii_case("message/cpim"))
    {
        intersect(&local.accept_wrapped_types, &offer.accept_wrapped_types)
    } else {
        Vec::new()
    };
    let mut answer = new_session(local);
    for (i, m) in offered.medias.iter().enumerate() {
        if i == offer.media_index {
            answer.medias.push(msrp_media(
                local,
                offer.transport,
                &our_setup,
                &accept_types,
                &wrapped,
            ));
        } else {
            answer.medias.push(Media {
                port: 0,
                connections: Vec::new(),
                bandwidths: Vec::new(),
                key: None,
                attributes: Vec::new(),
                media_title: None,
                num_ports: None,
                ..m.clone()
            });
        }
    }
    let negotiated = Negotiated {
        role,
        accept_types,
        accept_wrapped_types: wrapped,
        peer_path: offer.path,
        peer_max_size: offer.max_size,
        transport: offer.transport,
    };
    Ok((write(&answer), negotiated))
}

/// An offer with one MSRP media line (RFC 4975 §8). Use `Setup::ActPass` unless the
/// caller must be active or passive.
pub fn build_offer(local: &LocalMedia, transport: MsrpTransport, setup: Setup) -> String {
    let mut offer = new_session(local);
    offer.medias.push(msrp_media(
        local,
        transport,
        &setup,
        &local.accept_types,
        &local.accept_wrapped_types,
    ));
    write(&offer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 2890844526 2890844527 IN IP4 atlanta.example.com\r\ns=-\r\nc=IN IP4 atlanta.example.com\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:text/plain message/cpim\r\na=accept-wrapped-types:*\r\na=max-size:131072\r\na=path:msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n";

    fn local() -> LocalMedia {
        LocalMedia::with_defaults(
            vec!["msrp://127.0.0.1:2855/abcdefghijklmnop;tcp"
                .parse()
                .unwrap()],
            Some(1_048_576),
        )
    }

    #[test]
    fn parses_offer() {
        let o = MsrpOffer::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(o.media_index, 1);
        assert_eq!(
            o.path[0].to_string(),
            "msrp://atlanta.example.com:7654/jshA7weztas;tcp"
        );
        assert_eq!(o.accept_types, vec!["text/plain", "message/cpim"]);
        assert_eq!(o.accept_wrapped_types, vec!["*"]);
        assert_eq!(o.max_size, Some(131072));
        assert_eq!(o.setup, Setup::Active);
        assert_eq!(o.transport, MsrpTransport::Tcp);
        assert_eq!(o.connection_address.as_deref(), Some("atlanta.example.com"));
    }

    #[test]
    fn answer_is_passive_with_intersection_and_rejects_audio() {
        let (sdp, neg) = build_answer(OFFER.as_bytes(), &local()).unwrap();
        assert_eq!(neg.role, SetupRole::Passive);
        assert_eq!(neg.accept_types, vec!["message/cpim", "text/plain"]);
        assert_eq!(
            neg.accept_wrapped_types,
            vec!["text/plain", "message/imdn+xml"]
        );
        assert!(sdp.contains("m=audio 0 RTP/AVP 0\r\n"), "{sdp}");
        assert!(sdp.contains("m=message 2855 TCP/MSRP *\r\n"), "{sdp}");
        assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=accept-types:message/cpim text/plain\r\n"),
            "{sdp}"
        );
        assert!(
            sdp.contains("a=accept-wrapped-types:text/plain message/imdn+xml\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("a=max-size:1048576\r\n"), "{sdp}");
        assert!(sdp.contains("a=setup:passive\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=path:msrp://127.0.0.1:2855/abcdefghijklmnop;tcp\r\n"),
            "{sdp}"
        );
        // The answer parses back as MSRP media.
        let back = MsrpOffer::parse(sdp.as_bytes()).unwrap();
        assert_eq!(back.path, local().path);
        assert_eq!(back.setup, Setup::Passive);
    }

    #[test]
    fn passive_offer_makes_us_active_and_tls_needs_msrps() {
        let offer = OFFER
            .replace("TCP/MSRP", "TCP/TLS/MSRP")
            .replace("a=max-size", "a=setup:passive\r\na=max-size");
        assert_eq!(
            build_answer(offer.as_bytes(), &local()).unwrap_err(),
            SdpError::TransportUnsupported
        );
        let tls_path = "msrps://127.0.0.1:2855/abcdefghijklmnop;tcp"
            .parse()
            .unwrap();
        let tls_local = LocalMedia::with_defaults(vec![tls_path], None);
        let (sdp, neg) = build_answer(offer.as_bytes(), &tls_local).unwrap();
        assert_eq!(neg.role, SetupRole::Active);
        assert_eq!(neg.transport, MsrpTransport::Tls);
        assert!(sdp.contains("a=setup:active\r\n"));
        assert!(sdp.contains("TCP/TLS/MSRP"));
    }

    #[test]
    fn offered_transports_lists_tcp_and_tls_media_in_order() {
        assert_eq!(
            MsrpOffer::offered_transports(OFFER.as_bytes()),
            [MsrpTransport::Tcp]
        );
        let tls = OFFER.replace("TCP/MSRP", "TCP/TLS/MSRP");
        assert_eq!(
            MsrpOffer::offered_transports(tls.as_bytes()),
            [MsrpTransport::Tls]
        );
        assert!(MsrpOffer::offered_transports(b"not sdp").is_empty());
    }

    #[test]
    fn star_accepts_everything_we_support() {
        let offer = OFFER.replace("a=accept-types:text/plain message/cpim", "a=accept-types:*");
        let (_, neg) = build_answer(offer.as_bytes(), &local()).unwrap();
        assert_eq!(neg.accept_types.len(), 3);
    }

    #[test]
    fn unusable_offers_are_errors() {
        let no_msrp = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n";
        assert_eq!(
            build_answer(no_msrp.as_bytes(), &local()).unwrap_err(),
            SdpError::NoMsrpMedia
        );
        let rejected = OFFER.replace("m=message 7654", "m=message 0");
        assert_eq!(
            build_answer(rejected.as_bytes(), &local()).unwrap_err(),
            SdpError::NoMsrpMedia
        );
        let bad_types = OFFER.replace(
            "a=accept-types:text/plain message/cpim",
            "a=accept-types:image/png",
        );
        assert_eq!(
            build_answer(bad_types.as_bytes(), &local()).unwrap_err(),
            SdpError::NoCommonTypes
        );
        let hold = OFFER.replace("a=max-size", "a=setup:holdconn\r\na=max-size");
        assert_eq!(
            build_answer(hold.as_bytes(), &local()).unwrap_err(),
            SdpError::HoldConn
        );
        assert!(matches!(
            build_answer(b"garbage", &local()),
            Err(SdpError::Parse(_))
        ));
        let bad_path = OFFER.replace("a=path:msrp://", "a=path:http://");
        assert_eq!(
            build_answer(bad_path.as_bytes(), &local()).unwrap_err(),
            SdpError::BadPath
        );
    }

    #[test]
    fn offer_round_trip_and_offerer_negotiation() {
        let sdp = build_offer(&local(), MsrpTransport::Tcp, Setup::ActPass);
        assert!(sdp.contains("a=setup:actpass\r\n"));
        let o = MsrpOffer::parse(sdp.as_bytes()).unwrap();
        assert_eq!(o.setup, Setup::ActPass);
        // Peer answers passive (RFC 6135): we connect.
        let (answer, _) = build_answer(sdp.as_bytes(), &local()).unwrap();
        let a = MsrpOffer::parse(answer.as_bytes()).unwrap();
        let n = a.negotiate_as_offerer(&local(), &Setup::ActPass).unwrap();
        assert_eq!(n.role, SetupRole::Active);
    }
}
