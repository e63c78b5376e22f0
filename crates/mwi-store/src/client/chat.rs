//! A chat call as a phone makes it: INVITE with an MSRP offer (RFC 4975 §8, `a=setup:actpass`),
//! ACK, the MSRP session in the role the answer gives us (RFC 6135), BYE either way.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use msrp_session::{
    build_offer, IncomingMessage, LocalMedia, MsrpEndpoint, MsrpOffer, MsrpSession, MsrpTransport,
    Negotiated, SessionEvent, Setup,
};

use super::sip_uac::{final_response, token, Message, SipUac};

/// What to call and as whom.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// From AoR.
    pub from: String,
    pub from_name: Option<String>,
    /// Request-URI and To.
    pub to: String,
    /// P-Asserted-Identity to add (as a trusted proxy would).
    pub asserted_identity: Option<String>,
    /// `a=accept-types` we offer.
    pub accept_types: Vec<String>,
    pub setup: Setup,
    /// Extra header lines for the INVITE.
    pub extra_headers: Vec<String>,
}

impl CallOptions {
    pub fn new(from: &str, to: &str) -> Self {
        Self {
            from: from.to_string(),
            from_name: None,
            to: to.to_string(),
            asserted_identity: None,
            accept_types: vec![
                "message/cpim".into(),
                "text/plain".into(),
                "application/im-iscomposing+xml".into(),
            ],
            setup: Setup::ActPass,
            extra_headers: Vec::new(),
        }
    }
}

/// The SIP side of an established call: what in-dialog requests need (RFC 3261 §12.2.1).
#[derive(Debug)]
pub struct Dialog {
    pub call_id: String,
    from_header: String,
    to_header: String,
    remote_target: String,
    route_set: Vec<String>,
    cseq: u32,
    /// The 200 OK to the INVITE.
    pub answer: Message,
}

/// An established chat.
#[derive(Debug)]
pub struct ChatCall {
    pub dialog: Dialog,
    pub session: MsrpSession,
}

/// The INVITE was answered with a final non-2xx.
#[derive(Debug)]
pub struct Rejected(pub Message);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call rejected: {}", self.0.start_line)
    }
}

impl std::error::Error for Rejected {}

fn strip_angle(v: &str) -> String {
    let v = v.trim();
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].to_string(),
        _ => v.split(';').next().unwrap_or(v).to_string(),
    }
}

/// Places a call; `Err` downcasts to [`Rejected`] for a non-2xx final answer.
pub async fn call(
    uac: &SipUac,
    msrp: &MsrpEndpoint,
    opts: &CallOptions,
    wait: Duration,
) -> anyhow::Result<ChatCall> {
    let session = msrp.create_session();
    let local = LocalMedia {
        path: session.local_path(),
        accept_types: opts.accept_types.clone(),
        accept_wrapped_types: vec!["text/plain".into(), "message/imdn+xml".into()],
        max_size: None,
    };
    // An msrps endpoint offers TCP/TLS/MSRP (RFC 4975 §8.1).
    let transport = if msrp.is_tls() {
        MsrpTransport::Tls
    } else {
        MsrpTransport::Tcp
    };
    let (dialog, negotiated) = invite(uac, opts, &local, transport, wait).await?;
    let call = ChatCall { dialog, session };
    call.session
        .start(negotiated.peer_path, negotiated.role)
        .await
        .map_err(|e| anyhow!("MSRP session did not start: {e}"))?;
    Ok(call)
}

/// The SIP half of [`call`]: INVITE offering `local`, ACK, and the negotiated MSRP media, for
/// a caller that runs its MSRP session itself.
pub async fn invite(
    uac: &SipUac,
    opts: &CallOptions,
    local: &LocalMedia,
    transport: MsrpTransport,
    wait: Duration,
) -> anyhow::Result<(Dialog, Negotiated)> {
    let sdp = build_offer(local, transport, opts.setup.clone());
    let call_id = format!("{}@mwi-client", token());
    let from_header = match &opts.from_name {
        Some(n) => format!("\"{n}\" <{}>;tag={}", opts.from, token()),
        None => format!("<{}>;tag={}", opts.from, token()),
    };
    let mut text = format!(
        "INVITE {to} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from_header}\r\n\
         To: <{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <{contact}>\r\nContent-Type: application/sdp\r\n",
        to = opts.to,
        via = uac.via(),
        contact = uac.contact_uri("client"),
    );
    if let Some(pai) = &opts.asserted_identity {
        text.push_str(&format!("P-Asserted-Identity: <{pai}>\r\n"));
    }
    for h in &opts.extra_headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()));
    let mut rx = uac.send_request(&text).await?;
    let answer = final_response(&mut rx, wait).await?;
    if answer.status() != 200 {
        return Err(Rejected(answer).into());
    }
    let to_header = answer
        .header("to")
        .ok_or_else(|| anyhow!("200 OK without To"))?
        .to_string();
    let remote_target = answer
        .header("contact")
        .map(strip_angle)
        .unwrap_or_else(|| opts.to.clone());
    let mut route_set: Vec<String> = answer
        .headers("record-route")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|r| r.trim().to_string())
        .collect();
    route_set.reverse();
    let dialog = Dialog {
        call_id,
        from_header,
        to_header,
        remote_target,
        route_set,
        cseq: 1,
        answer,
    };
    dialog.send_in_dialog(uac, "ACK", 1).await?;
    let offer = MsrpOffer::parse(&dialog.answer.body).context("SDP answer")?;
    let negotiated = offer.negotiate_as_offerer(local, &opts.setup)?;
    Ok((dialog, negotiated))
}

impl Dialog {
    async fn send_in_dialog(&self, uac: &SipUac, method: &str, cseq: u32) -> anyhow::Result<()> {
        let text = self.in_dialog(uac, method, cseq);
        uac.send_raw(text.as_bytes()).await
    }

    fn in_dialog(&self, uac: &SipUac, method: &str, cseq: u32) -> String {
        let route = if self.route_set.is_empty() {
            String::new()
        } else {
            format!("Route: {}\r\n", self.route_set.join(", "))
        };
        format!(
            "{method} {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n{route}From: {from}\r\n\
             To: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            target = self.remote_target,
            via = uac.via(),
            from = self.from_header,
            to = self.to_header,
            cid = self.call_id,
        )
    }

    /// Sends BYE and waits for its final response.
    pub async fn bye(&mut self, uac: &SipUac, wait: Duration) -> anyhow::Result<Message> {
        self.cseq += 1;
        let text = self.in_dialog(uac, "BYE", self.cseq);
        uac.transact(&text, wait).await
    }
}

impl ChatCall {
    /// Sends a message and waits for its MSRP 200.
    pub async fn send(&self, content_type: &str, body: impl Into<Bytes>) -> anyhow::Result<()> {
        self.session
            .send(content_type, body.into())
            .await
            .map_err(|e| anyhow!("SEND failed: {e}"))
    }

    /// The next complete message from the server, accepted with 200.
    pub async fn next_message(&mut self, wait: Duration) -> anyhow::Result<(String, Bytes)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.session.next_event())
                .await
                .map_err(|_| anyhow!("no message within {wait:?}"))?;
            match ev {
                Some(SessionEvent::Message(m)) => {
                    let IncomingMessage {
                        content_type,
                        body,
                        responder,
                        ..
                    } = *m;
                    responder.accept();
                    return Ok((content_type, body));
                }
                Some(SessionEvent::Bound) => {}
                Some(SessionEvent::Closed(r)) => bail!("MSRP session closed: {r:?}"),
                None => bail!("MSRP session closed"),
            }
        }
    }

    /// Hangs up (BYE) and waits for the 200.
    pub async fn bye(mut self, uac: &SipUac, wait: Duration) -> anyhow::Result<Message> {
        let resp = self.dialog.bye(uac, wait).await?;
        self.session.close();
        Ok(resp)
    }

    /// Receives messages (each accepted with 200) until the server's BYE.
    pub async fn collect_until_bye(
        &mut self,
        uac: &mut SipUac,
        wait: Duration,
    ) -> anyhow::Result<Vec<(String, Bytes)>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut got = Vec::new();
        let mut session_open = true;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!("no BYE within {wait:?} ({} messages so far)", got.len());
            }
            tokio::select! {
                ev = self.session.next_event(), if session_open => match ev {
                    Some(SessionEvent::Message(m)) => {
                        got.push((m.content_type.clone(), m.body.clone()));
                        m.responder.accept();
                    }
                    Some(SessionEvent::Bound) => {}
                    Some(SessionEvent::Closed(_)) | None => session_open = false,
                },
                req = uac.next_request(left) => {
                    let req = req?;
                    if req.call_id() != self.dialog.call_id {
                        continue;
                    }
                    uac.reply(&req, 200, "OK", &[], None).await?;
                    if req.method() == "BYE" {
                        self.session.close();
                        return Ok(got);
                    }
                }
            }
        }
    }

    /// Waits for the server's BYE (answering other requests of this call with 200).
    pub async fn wait_bye(&self, uac: &mut SipUac, wait: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let req = uac.next_request(left).await?;
            if req.call_id() != self.dialog.call_id {
                continue;
            }
            uac.reply(&req, 200, "OK", &[], None).await?;
            if req.method() == "BYE" {
                self.session.close();
                return Ok(());
            }
        }
    }
}
