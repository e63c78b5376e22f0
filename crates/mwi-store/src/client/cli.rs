//! `mwi-store client …`: deposit, fetch and subscribe from a terminal, through a proxy or
//! straight to the server — the README demo and the Kamailio interop script use these.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use msrp_session::cpim::CpimMessage;
use msrp_session::{EndpointConfig, MsrpEndpoint};

use super::chat::{call, CallOptions};
use super::sip_uac::SipUac;
use super::subscribe::subscribe;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Chat to a user (offline: mwi-store answers) and send each TEXT as a message.
    Deposit {
        #[command(flatten)]
        common: Common,
        /// Our AoR.
        #[arg(long)]
        from: String,
        /// The user to write to.
        #[arg(long)]
        to: String,
        /// The messages.
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Call the fetch URI as AOR and print every message received, until the server hangs up.
    Fetch {
        #[command(flatten)]
        common: Common,
        /// Whose mailbox (From of the INVITE).
        #[arg(long = "as")]
        as_aor: String,
        #[arg(long, default_value = "sip:offline@example.com")]
        fetch_uri: String,
    },
    /// SUBSCRIBE to message-summary as AOR and print each NOTIFY body.
    Subscribe {
        #[command(flatten)]
        common: Common,
        #[arg(long = "as")]
        as_aor: String,
        /// Stop after this many NOTIFYs.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Stop after this long in any case.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        /// Subscription duration asked for.
        #[arg(long, default_value_t = 600)]
        expires: u32,
    },
}

#[derive(Debug, Args)]
pub struct Common {
    /// Where requests go: `udp:host:port` (a proxy, or mwi-store itself).
    #[arg(long, default_value = "udp:127.0.0.1:5070")]
    proxy: String,
    /// Local address for SIP and MSRP (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    local: SocketAddr,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10)]
    wait_secs: u64,
}

impl Common {
    fn server(&self) -> anyhow::Result<SocketAddr> {
        let addr = match self.proxy.split_once(':') {
            Some(("udp", rest)) => rest,
            Some(("tcp", _)) => bail!("the client speaks SIP over UDP only: use udp:host:port"),
            _ => self.proxy.as_str(),
        };
        addr.parse()
            .with_context(|| format!("--proxy {:?}: expected udp:host:port", self.proxy))
    }

    fn wait(&self) -> Duration {
        Duration::from_secs(self.wait_secs)
    }

    async fn endpoints(&self) -> anyhow::Result<(SipUac, MsrpEndpoint)> {
        let uac = SipUac::bind(self.local, self.server()?).await?;
        let msrp = MsrpEndpoint::bind(
            SocketAddr::new(self.local.ip(), 0),
            EndpointConfig {
                transaction_timeout: self.wait(),
                ..EndpointConfig::default()
            },
        )
        .await?;
        Ok((uac, msrp))
    }
}

/// One received message as a line: `FROM <sender> AT <time>: <text>`.
fn describe(content_type: &str, body: &Bytes) -> String {
    if content_type.eq_ignore_ascii_case("message/cpim") {
        if let Ok(c) = CpimMessage::parse(body) {
            let from = c.from().map(|a| a.to_string()).unwrap_or_default();
            let at = c.datetime().map(|d| d.to_rfc3339()).unwrap_or_default();
            return format!("FROM {from} AT {at}: {}", String::from_utf8_lossy(&c.body));
        }
    }
    format!("{}", String::from_utf8_lossy(body))
}

/// Runs a client command.
pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Deposit {
            common,
            from,
            to,
            text,
        } => {
            let (uac, msrp) = common.endpoints().await?;
            let mut chat = call(&uac, &msrp, &CallOptions::new(&from, &to), common.wait()).await?;
            if let Ok((ct, body)) = chat.next_message(common.wait()).await {
                println!("{}", describe(&ct, &body));
            }
            for t in &text {
                chat.send("text/plain;charset=UTF-8", t.clone().into_bytes())
                    .await?;
                println!("sent: {t}");
            }
            let bye = chat.bye(&uac, common.wait()).await?;
            if bye.status() != 200 {
                return Err(anyhow!("BYE answered `{}`", bye.start_line));
            }
            Ok(())
        }
        ClientCommand::Fetch {
            common,
            as_aor,
            fetch_uri,
        } => {
            let (mut uac, msrp) = common.endpoints().await?;
            let mut chat = call(
                &uac,
                &msrp,
                &CallOptions::new(&as_aor, &fetch_uri),
                common.wait(),
            )
            .await?;
            let got = chat.collect_until_bye(&mut uac, common.wait() * 6).await?;
            for (ct, body) in &got {
                println!("{}", describe(ct, body));
            }
            Ok(())
        }
        ClientCommand::Subscribe {
            common,
            as_aor,
            count,
            timeout_secs,
            expires,
        } => {
            let mut uac = SipUac::bind(common.local, common.server()?).await?;
            let (sub, _) = subscribe(&uac, &as_aor, &as_aor, expires, common.wait()).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
            for _ in 0..count {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let n = sub.next_notify(&mut uac, left).await?;
                println!(
                    "NOTIFY Subscription-State: {}",
                    n.header("subscription-state").unwrap_or("")
                );
                println!("{}", n.body_text().trim_end());
                println!();
            }
            Ok(())
        }
    }
}
