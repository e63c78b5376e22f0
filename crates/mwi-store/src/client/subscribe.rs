//! A message-summary subscriber (RFC 6665, RFC 3842) as a phone runs it: SUBSCRIBE, then
//! answer each NOTIFY with 200 and read its body.

use std::time::Duration;

use anyhow::{anyhow, bail};

use super::sip_uac::{token, Message, SipUac};

/// An accepted subscription dialog.
#[derive(Debug)]
pub struct SummarySubscription {
    pub call_id: String,
    from_header: String,
    to_header: String,
    request_uri: String,
    cseq: u32,
}

fn subscribe_text(
    uac: &SipUac,
    request_uri: &str,
    from_header: &str,
    to_header: &str,
    call_id: &str,
    cseq: u32,
    expires: u32,
) -> String {
    format!(
        "SUBSCRIBE {request_uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
         From: {from_header}\r\nTo: {to_header}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\n\
         Contact: <sip:client@{local}>\r\nEvent: message-summary\r\n\
         Accept: application/simple-message-summary\r\nExpires: {expires}\r\n\
         Content-Length: 0\r\n\r\n",
        via = uac.via(),
        local = uac.local_addr(),
    )
}

/// Subscribes `as_aor` to `request_uri` (her own AoR, or the fetch URI). Returns the
/// subscription on 2xx, else the final response as an error.
pub async fn subscribe(
    uac: &SipUac,
    as_aor: &str,
    request_uri: &str,
    expires: u32,
    wait: Duration,
) -> anyhow::Result<(SummarySubscription, Message)> {
    let call_id = format!("{}@mwi-client", token());
    let from_header = format!("<{as_aor}>;tag={}", token());
    let text = subscribe_text(
        uac,
        request_uri,
        &from_header,
        &format!("<{request_uri}>"),
        &call_id,
        1,
        expires,
    );
    let resp = uac.transact(&text, wait).await?;
    if !(200..300).contains(&resp.status()) {
        bail!("SUBSCRIBE answered `{}`", resp.start_line);
    }
    let to_header = resp
        .header("to")
        .ok_or_else(|| anyhow!("2xx without To"))?
        .to_string();
    Ok((
        SummarySubscription {
            call_id,
            from_header,
            to_header,
            request_uri: request_uri.to_string(),
            cseq: 1,
        },
        resp,
    ))
}

impl SummarySubscription {
    /// Refreshes (or with 0, ends) the subscription; returns the final response.
    pub async fn refresh(
        &mut self,
        uac: &SipUac,
        expires: u32,
        wait: Duration,
    ) -> anyhow::Result<Message> {
        self.cseq += 1;
        let text = subscribe_text(
            uac,
            &self.request_uri,
            &self.from_header,
            &self.to_header,
            &self.call_id,
            self.cseq,
            expires,
        );
        uac.transact(&text, wait).await
    }

    /// The next NOTIFY of this subscription, answered 200.
    pub async fn next_notify(&self, uac: &mut SipUac, wait: Duration) -> anyhow::Result<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!("no NOTIFY within {wait:?}");
            }
            let req = uac.next_request(left).await?;
            if req.method() == "NOTIFY" && req.call_id() == self.call_id {
                uac.reply(&req, 200, "OK", &[], None).await?;
                return Ok(req);
            }
            uac.reply(&req, 481, "Call/Transaction Does Not Exist", &[], None)
                .await?;
        }
    }
}
