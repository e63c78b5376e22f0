//! The state of an established server INVITE dialog (RFC 3261 §12.1.1), kept by sip-core itself
//! once our 2xx is ACKed: rsipstack's dialog (with its transaction's event channel, about
//! 10 KiB of RSS per held session) is then let go. Sans-IO: built from the INVITE, it decides
//! what a request inside the dialog gets (§12.2.2) and builds our BYE (§12.2.1.1, §15.1.1);
//! the caller sends and receives.

use crate::endpoint::{ListenAddr, Source, Transport};
use crate::error::SipError;
use crate::headers::{header_value, header_values, NameAddr, RouteSet};
use crate::params::header_param;
use rsipstack::sip::uri::ParamsExt;
use rsipstack::sip::{Method, Request};
use std::net::SocketAddr;

/// What a request inside an established dialog gets (RFC 3261 §12.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InDialogAnswer {
    /// An ACK (of a re-INVITE's 2xx, when its transaction is gone): nothing is sent.
    Absorb,
    /// 500: the CSeq is lower than the remote sequence number, out of order (§12.2.2).
    OutOfOrder,
    /// 200, the dialog ends (§15.1.2).
    Bye,
    /// 200 with the SDP answer we gave and our Contact: the session stays as it is (RFC 3264
    /// §8 allows an unchanged answer).
    ReInvite,
    /// Answered with this status; the dialog is unchanged.
    Status(u16),
}

/// RFC 3261 §12 dialog state of a server INVITE dialog, after the ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UasDialog {
    pub(crate) call_id: String,
    /// Local URI with our tag: the INVITE's To field value plus the tag we put in the 2xx
    /// (text as received: never re-escaped).
    local: String,
    /// Remote URI with the remote tag: the INVITE's From field value.
    remote: String,
    /// The INVITE's Contact URI (§12.1.1).
    remote_target: String,
    /// The INVITE's Record-Route, in order (§12.1.1).
    route_set: RouteSet,
    /// The CSeq number of the last request we sent in the dialog.
    local_cseq: u32,
    /// The highest CSeq number received in the dialog.
    remote_cseq: u32,
    /// Where and over what the INVITE came: our Contact's transport, and where a BYE goes
    /// when the next hop is not an IP address.
    pub(crate) source: Source,
    /// The SDP answer of our 2xx, repeated for re-INVITEs.
    pub(crate) answer: Vec<u8>,
}

impl UasDialog {
    /// The dialog state a 2xx with our `local_tag` creates for `invite` (§12.1.1).
    pub(crate) fn from_invite(
        invite: &Request,
        local_tag: &str,
        source: Source,
        answer: Vec<u8>,
    ) -> Result<UasDialog, SipError> {
        let field = |name: &'static str| {
            header_value(&invite.headers, name).ok_or(SipError::WrongRequest(name))
        };
        let call_id = field("Call-ID")?;
        let remote = field("From")?;
        if !matches!(header_param(&remote, "tag"), Some(t) if !t.is_empty()) {
            return Err(SipError::InvalidHeader("From".to_string()));
        }
        let mut local = field("To")?;
        if header_param(&local, "tag").is_none() {
            local.push_str(";tag=");
            local.push_str(local_tag);
        }
        let remote_target = NameAddr::parse_list(&field("Contact")?)
            .ok()
            .and_then(|list| list.into_iter().next())
            .ok_or_else(|| SipError::InvalidHeader("Contact".to_string()))?
            .uri;
        let record_route = header_values(&invite.headers, "Record-Route");
        let route_set = RouteSet::parse_all(record_route.iter().map(String::as_str))
            .map_err(|_| SipError::InvalidHeader("Record-Route".to_string()))?;
        let remote_cseq = field("CSeq")?
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| SipError::InvalidHeader("CSeq".to_string()))?;
        Ok(UasDialog {
            call_id,
            local,
            remote,
            remote_target,
            route_set,
            // Our numbering continues from the INVITE's, as rsipstack's dialog did; it must
            // start below 2^31 (§8.1.1.5).
            local_cseq: remote_cseq.min(i32::MAX as u32 - 1),
            remote_cseq,
            source,
            answer,
        })
    }

    /// Decide on a request inside the dialog with CSeq number `cseq`, and record that number
    /// (§12.2.2).
    pub(crate) fn on_request(&mut self, method: Method, cseq: u32) -> InDialogAnswer {
        // An ACK carries its INVITE's number; it is never out of order and never answered.
        if method == Method::Ack {
            return InDialogAnswer::Absorb;
        }
        if cseq < self.remote_cseq {
            return InDialogAnswer::OutOfOrder;
        }
        self.remote_cseq = cseq;
        match method {
            Method::Bye => InDialogAnswer::Bye,
            Method::Invite => InDialogAnswer::ReInvite,
            Method::Options | Method::Info | Method::Message | Method::Notify | Method::Update => {
                InDialogAnswer::Status(200)
            }
            // We take no transfer.
            Method::Refer => InDialogAnswer::Status(603),
            // We never send reliable provisionals, so nothing can be PRACKed (RFC 3262 §3);
            // a CANCEL with no transaction left matches nothing (§9.2).
            Method::PRack | Method::Cancel => InDialogAnswer::Status(481),
            _ => InDialogAnswer::Status(405),
        }
    }

    /// Our BYE, as text (§12.2.1.1, §15.1.1): Request-URI the remote target and the route set
    /// as Route (loose routing; for a strict first hop, that hop is the Request-URI and the
    /// remote target the last Route), From our URI and tag, To theirs, CSeq one more than our
    /// last. `via` is the whole Via value (transport, sent-by, branch).
    pub(crate) fn bye_request(&mut self, via: &str, user_agent: &str) -> String {
        self.local_cseq = self.local_cseq.wrapping_add(1);
        let mut routes: Vec<String> = self.route_set.0.iter().map(|r| r.to_string()).collect();
        let request_uri = match self.route_set.0.first() {
            Some(first) if !is_loose_router(&first.uri) => {
                routes.remove(0);
                routes.push(format!("<{}>", self.remote_target));
                // §12.2.1.1: parameters not allowed in a Request-URI are stripped (headers).
                first.uri.split('?').next().unwrap_or_default().to_string()
            }
            _ => self.remote_target.clone(),
        };
        let mut text = format!(
            "BYE {request_uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {}\r\n\
             To: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\n",
            self.local, self.remote, self.call_id, self.local_cseq
        );
        for route in routes {
            text.push_str(&format!("Route: {route}\r\n"));
        }
        text.push_str(&format!(
            "User-Agent: {user_agent}\r\nContent-Length: 0\r\n\r\n"
        ));
        text
    }

    /// Where our requests go when there is no connection to reuse: the first route (or the
    /// remote target) when its host is an IP address (§8.1.2), over the transport it names.
    /// `None` for a domain name (we never use DNS) or a TLS hop (we never connect out over
    /// TLS).
    pub(crate) fn next_hop(&self) -> Option<ListenAddr> {
        let uri_text = self
            .route_set
            .0
            .first()
            .map_or(self.remote_target.as_str(), |r| r.uri.as_str());
        let uri = rsipstack::sip::Uri::try_from(uri_text).ok()?;
        let ip = match uri.host_with_port.host {
            rsipstack::sip::Host::IpAddr(ip) => ip,
            rsipstack::sip::Host::Domain(_) => return None,
        };
        let transport = match uri.transport() {
            Some(rsipstack::sip::Transport::Udp) => Transport::Udp,
            Some(rsipstack::sip::Transport::Tcp) => Transport::Tcp,
            Some(_) => return None,
            None if uri.scheme == Some(rsipstack::sip::Scheme::Sips) => return None,
            None => Transport::Udp,
        };
        let port = uri
            .host_with_port
            .port
            .map_or(5060, |p| p.value().to_owned());
        Some(ListenAddr {
            transport,
            addr: SocketAddr::new(ip, port),
        })
    }
}

/// A route URI with the `lr` parameter (RFC 3261 §19.1.1) routes loosely.
fn is_loose_router(uri: &str) -> bool {
    let without_headers = uri.split('?').next().unwrap_or_default();
    // Parameters follow the host; a user part may hold `;` of its own.
    let host_part = without_headers
        .rsplit_once('@')
        .map_or(without_headers, |(_, h)| h);
    host_part.split(';').skip(1).any(|p| {
        p.split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("lr")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::sip::SipMessage;

    fn request(text: &str) -> Request {
        match SipMessage::try_from(text) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn invite(extra: &str) -> Request {
        request(&format!(
            "INVITE sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKi1\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=al1\r\n\
             To: <sip:bob@example.com>\r\nCall-ID: c1@test\r\nCSeq: 7 INVITE\r\n\
             Contact: <sip:alice@192.0.2.9:5080;transport=tcp>\r\n{extra}Content-Length: 0\r\n\r\n"
        ))
    }

    fn source() -> Source {
        Source {
            transport: Transport::Udp,
            addr: "192.0.2.7:5070".parse().expect("address"),
        }
    }

    fn dialog(extra: &str) -> UasDialog {
        UasDialog::from_invite(&invite(extra), "ours1", source(), b"v=0\r\n".to_vec())
            .expect("dialog state")
    }

    fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
        msg.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }

    #[test]
    fn state_comes_from_the_invite() {
        let d = dialog("Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n");
        assert_eq!(d.call_id, "c1@test");
        assert_eq!(header_param(&d.local, "tag").as_deref(), Some("ours1"));
        assert_eq!(header_param(&d.remote, "tag").as_deref(), Some("al1"));
        assert_eq!(d.remote_target, "sip:alice@192.0.2.9:5080;transport=tcp");
        assert_eq!(d.route_set.0.len(), 2);
        assert_eq!((d.local_cseq, d.remote_cseq), (7, 7));
        let text = invite("").to_string();
        let without =
            request(&text.replace("Contact: <sip:alice@192.0.2.9:5080;transport=tcp>\r\n", ""));
        assert!(UasDialog::from_invite(&without, "t", source(), Vec::new()).is_err());
    }

    #[test]
    fn in_dialog_requests_by_method_and_cseq() {
        let mut d = dialog("");
        assert_eq!(
            d.on_request(Method::Options, 8),
            InDialogAnswer::Status(200)
        );
        assert_eq!(d.on_request(Method::Refer, 9), InDialogAnswer::Status(603));
        assert_eq!(d.on_request(Method::Invite, 10), InDialogAnswer::ReInvite);
        // The ACK of that re-INVITE, and one of the initial INVITE, are absorbed.
        assert_eq!(d.on_request(Method::Ack, 10), InDialogAnswer::Absorb);
        assert_eq!(d.on_request(Method::Ack, 7), InDialogAnswer::Absorb);
        // §12.2.2: lower than the remote sequence number → 500, and it is not recorded.
        assert_eq!(d.on_request(Method::Bye, 9), InDialogAnswer::OutOfOrder);
        assert_eq!(d.remote_cseq, 10);
        assert_eq!(
            d.on_request(Method::Subscribe, 11),
            InDialogAnswer::Status(405)
        );
        assert_eq!(d.on_request(Method::Bye, 12), InDialogAnswer::Bye);
    }

    #[test]
    fn bye_follows_the_route_set_with_the_next_cseq_and_both_tags() {
        let mut d = dialog(
            "Record-Route: <sip:p1.example.com;lr>\r\nRecord-Route: <sip:192.0.2.1:5062;lr>\r\n",
        );
        let bye = d.bye_request("SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKb1;rport", "ua/1");
        assert!(
            bye.starts_with("BYE sip:alice@192.0.2.9:5080;transport=tcp SIP/2.0\r\n"),
            "{bye}"
        );
        assert_eq!(
            header(&bye, "Route"),
            ["<sip:p1.example.com;lr>", "<sip:192.0.2.1:5062;lr>"]
        );
        assert_eq!(header(&bye, "CSeq"), ["8 BYE"]);
        assert_eq!(header(&bye, "From"), ["<sip:bob@example.com>;tag=ours1"]);
        assert_eq!(
            header(&bye, "To"),
            ["\"Alice\" <sip:alice@example.com>;tag=al1"]
        );
        assert_eq!(header(&bye, "Call-ID"), ["c1@test"]);
        // It parses, and the next request counts on.
        assert!(matches!(
            SipMessage::try_from(bye.as_str()),
            Ok(SipMessage::Request(_))
        ));
        let again = d.bye_request("SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKb2", "ua/1");
        assert_eq!(header(&again, "CSeq"), ["9 BYE"]);
        // The first route is a domain: no next hop of its own (never DNS).
        assert_eq!(d.next_hop(), None);
    }

    #[test]
    fn strict_first_hop_becomes_the_request_uri() {
        let mut d = dialog("Record-Route: <sip:192.0.2.1:5062>, <sip:p2.example.com;lr>\r\n");
        let bye = d.bye_request("SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKb1", "ua/1");
        assert!(
            bye.starts_with("BYE sip:192.0.2.1:5062 SIP/2.0\r\n"),
            "{bye}"
        );
        assert_eq!(
            header(&bye, "Route"),
            [
                "<sip:p2.example.com;lr>",
                "<sip:alice@192.0.2.9:5080;transport=tcp>"
            ]
        );
        assert_eq!(
            d.next_hop(),
            Some(ListenAddr::udp("192.0.2.1:5062".parse().expect("address")))
        );
    }

    #[test]
    fn next_hop_is_the_remote_target_without_routes() {
        let d = dialog("");
        assert_eq!(
            d.next_hop(),
            Some(ListenAddr::tcp("192.0.2.9:5080".parse().expect("address")))
        );
        assert!(is_loose_router("sip:p;x=1;LR"));
        assert!(!is_loose_router("sip:u;lr@p"));
    }
}
