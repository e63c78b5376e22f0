//! Client non-INVITE transactions we originate outside dialogs: PUBLISH (RFC 3903 §4). The
//! request is built as text from our own normalised URIs (never re-serialised escaped text),
//! sent to the outbound proxy (or an IP-literal target; never DNS), retransmitted by rsipstack
//! with Timer E and abandoned at Timer F (RFC 3261 §17.1.2.2); a 401/407 is answered once with
//! digest credentials.

use crate::aor::Aor;
use crate::endpoint::{ListenAddr, SipEndpoint};
use crate::error::ClientError;
use crate::headers::{header_value, Event, Expires, MinExpires, SipEtag};
use crate::server_request::Body;
use crate::tag::{new_branch, new_tag};
use rsipstack::dialog::authenticate::{handle_client_authenticate, Credential};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Request, Response, SipMessage};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::SipConnection;
use std::net::SocketAddr;

/// Where a client transaction's request goes.
#[derive(Debug)]
pub(crate) enum NextHop {
    /// An address; rsipstack opens or reuses a connection to it.
    Address(ListenAddr),
    /// A TCP/TLS connection the peer opened, reused for requests in its dialog (a TLS peer
    /// cannot be reached otherwise: we never connect out over TLS).
    Flow(SipConnection),
}

/// A PUBLISH to send (RFC 3903 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// Request-URI and To: the resource whose state is published.
    pub aor: Aor,
    /// From: the publisher.
    pub from: Aor,
    pub event: Event,
    /// `None` for a refresh (RFC 3903 §4.1: a refresh has no body).
    pub body: Option<Body>,
    pub expires: u32,
    pub sip_if_match: Option<SipEtag>,
}

/// The final answer to a PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishResponse {
    pub status: u16,
    pub sip_etag: Option<SipEtag>,
    /// From a 423 Interval Too Brief.
    pub min_expires: Option<u32>,
    /// The expiry the server granted (2xx).
    pub expires: Option<u32>,
}

impl SipEndpoint {
    /// Send a PUBLISH and wait for its final response.
    pub async fn publish(&self, req: &PublishRequest) -> Result<PublishResponse, ClientError> {
        let dest = self.route_for(&req.aor)?;
        let local = self
            .shared
            .local_for(dest.transport)
            .or_else(|| self.shared.local.first().copied())
            .ok_or_else(|| ClientError::NoRoute("no local address".to_string()))?;
        let call_id = format!("{}@mwi-store", new_tag());
        let mut text = format!(
            "PUBLISH {aor} SIP/2.0\r\nVia: SIP/2.0/{t} {via};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <{from}>;tag={tag}\r\nTo: <{aor}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 PUBLISH\r\nEvent: {event}\r\nExpires: {expires}\r\n\
             User-Agent: {ua}\r\n",
            aor = req.aor,
            t = local.transport.via_name(),
            via = host_port(local.addr),
            branch = new_branch(),
            from = req.from,
            tag = new_tag(),
            event = req.event,
            expires = req.expires,
            ua = self.shared.config.user_agent,
        );
        if let Some(etag) = &req.sip_if_match {
            text.push_str(&format!("SIP-If-Match: {etag}\r\n"));
        }
        let body = match &req.body {
            Some(b) => {
                if b.content_type.contains(['\r', '\n']) {
                    return Err(ClientError::InvalidRequest("content type".to_string()));
                }
                text.push_str(&format!("Content-Type: {}\r\n", b.content_type));
                b.bytes.clone()
            }
            None => Vec::new(),
        };
        text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&body);
        let request = match SipMessage::try_from(bytes.as_slice()) {
            Ok(SipMessage::Request(r)) => r,
            _ => {
                return Err(ClientError::InvalidRequest(
                    "PUBLISH did not parse".to_string(),
                ))
            }
        };
        let resp = self.run_client(request, NextHop::Address(dest)).await?;
        let header = |name: &str| header_value(&resp.headers, name);
        Ok(PublishResponse {
            status: resp.status_code.code(),
            sip_etag: header("SIP-ETag").and_then(|v| SipEtag::parse(&v).ok()),
            min_expires: header("Min-Expires")
                .and_then(|v| MinExpires::parse(&v).ok())
                .map(|m| m.0),
            expires: header("Expires")
                .and_then(|v| Expires::parse(&v).ok())
                .map(|e| e.0),
        })
    }

    /// Where a request for `target` goes: the outbound proxy, or the target itself when its
    /// host is an IP literal. Never DNS.
    fn route_for(&self, target: &Aor) -> Result<ListenAddr, ClientError> {
        if let Some(proxy) = self.shared.config.outbound_proxy {
            return Ok(proxy);
        }
        let host = target.host().trim_start_matches('[').trim_end_matches(']');
        host.parse::<std::net::IpAddr>()
            .map(|ip| ListenAddr::udp(SocketAddr::new(ip, 5060)))
            .map_err(|_| ClientError::NoRoute(target.to_string()))
    }

    /// Run one client transaction to its final response, answering one digest challenge.
    pub(crate) async fn run_client(
        &self,
        request: Request,
        hop: NextHop,
    ) -> Result<Response, ClientError> {
        let inner = self.shared.endpoint.inner.clone();
        let key = TransactionKey::from_request(&request, TransactionRole::Client)?;
        let mut tx = match hop {
            NextHop::Address(dest) => {
                let mut tx = Transaction::new_client(key, request, inner, None);
                tx.destination = Some(dest.sip_addr());
                tx
            }
            NextHop::Flow(connection) => {
                Transaction::new_client(key, request, inner, Some(connection))
            }
        };
        tx.send().await?;
        let mut challenged = false;
        loop {
            let resp = match tx.receive().await {
                Some(SipMessage::Response(r)) => r,
                Some(SipMessage::Request(_)) => continue,
                None => return Err(ClientError::Timeout),
            };
            let code = resp.status_code.code();
            if code < 200 {
                continue;
            }
            let has_to_tag = resp
                .to_header()
                .ok()
                .and_then(|t| t.tag().ok().flatten())
                .is_some();
            if code == 408 && !has_to_tag {
                // rsipstack reports Timer F as a locally made 408 without a To-tag; a real
                // final response always carries one (RFC 3261 §8.2.6.2).
                return Err(ClientError::Timeout);
            }
            if (code == 401 || code == 407) && !challenged {
                if let Some(c) = &self.shared.config.credentials {
                    challenged = true;
                    let cred = Credential {
                        username: c.username.clone(),
                        password: c.password.clone(),
                        realm: c.realm.clone(),
                        ..Default::default()
                    };
                    let seq = tx.original.cseq_header()?.seq()? + 1;
                    // The new transaction keeps the destination or connection.
                    tx = handle_client_authenticate(seq, &tx, resp, &cred).await?;
                    tx.send().await?;
                    continue;
                }
            }
            return Ok(resp);
        }
    }
}

/// `host:port` for a Via sent-by, IPv6 in brackets.
pub(crate) fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}
