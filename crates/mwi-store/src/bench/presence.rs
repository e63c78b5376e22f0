//! A counting presence stand-in for the benchmarks: answers every PUBLISH (RFC 3903) 200
//! after a fixed delay, as a presence server under load would, and records how many arrived,
//! how many were in flight at once for one mailbox (the server must coalesce: at most one) and
//! the last body of each mailbox (its `Text-Message` count must be the exact final count,
//! RFC 3842 §5.2).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::report::Report;
use crate::client::presence::{PresenceServer, Publish};

/// Stop waiting for the server's last PUBLISHes after this long without one.
const QUIET: Duration = Duration::from_secs(3);
/// And after this long in any case.
const GRACE_MAX: Duration = Duration::from_secs(30);

/// What the stand-in saw.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub publishes: u64,
    /// PUBLISHes received again while their answer was pending (not counted above).
    pub retransmissions: u64,
    /// Most PUBLISHes for one mailbox that had arrived and were not yet answered.
    pub max_in_flight: usize,
    /// The last body per mailbox AoR.
    pub last_body: HashMap<String, String>,
}

/// The running stand-in.
#[derive(Debug)]
pub struct PublishCounter {
    local: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<PublishStats>>,
}

/// The new-message count of an RFC 3842 body: `Text-Message: new/old`, or 0 for
/// `Messages-Waiting: no` without a count.
pub fn text_message_new(body: &str) -> Option<u64> {
    let count = body
        .lines()
        .find_map(|l| l.strip_prefix("Text-Message:"))
        .and_then(|v| v.trim().split('/').next())
        .and_then(|n| n.trim().parse().ok());
    count.or_else(|| body.contains("Messages-Waiting: no").then_some(0))
}

/// The mailbox a PUBLISH is about (its Request-URI, without `<>` or parameters).
fn aor_of(p: &Publish) -> String {
    p.aor
        .trim_matches(|c| c == '<' || c == '>')
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string()
}

impl PublishCounter {
    /// Binds `addr` and starts answering.
    pub async fn spawn(addr: SocketAddr, delay: Duration) -> anyhow::Result<Self> {
        let server = PresenceServer::bind(addr).await?;
        let local = server.local_addr();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(server, delay, stopped));
        Ok(Self { local, stop, task })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the server's last PUBLISHes (until none came for a few seconds), then adds
    /// the figures and, with the database, the exact-count check.
    pub async fn finish(
        self,
        db: Option<&message_store::Store>,
        report: &mut Report,
    ) -> anyhow::Result<PublishStats> {
        let _ = self.stop.send(());
        let stats = self.task.await??;
        report.figure("publishes", stats.publishes as f64, "PUBLISH");
        report.figure(
            "publish_retransmissions",
            stats.retransmissions as f64,
            "PUBLISH",
        );
        report.figure(
            "mailboxes_published",
            stats.last_body.len() as f64,
            "mailboxes",
        );
        report.figure(
            "max_publishes_in_flight_per_mailbox",
            stats.max_in_flight as f64,
            "",
        );
        report.check(
            format!(
                "PUBLISHes coalesce: at most 1 in flight per mailbox (saw {})",
                stats.max_in_flight
            ),
            stats.max_in_flight <= 1,
        );
        if let Some(db) = db {
            let mut wrong = 0usize;
            for (aor, body) in &stats.last_body {
                let counts = db.counts(aor).await?;
                if text_message_new(body) != Some(counts.new) {
                    wrong += 1;
                }
            }
            report.check(
                format!(
                    "the last PUBLISH of each of {} mailboxes carries its exact count ({wrong} wrong)",
                    stats.last_body.len()
                ),
                wrong == 0,
            );
        }
        Ok(stats)
    }
}

async fn serve(
    mut server: PresenceServer,
    delay: Duration,
    mut stopped: oneshot::Receiver<()>,
) -> anyhow::Result<PublishStats> {
    let mut stats = PublishStats::default();
    // Received and not yet answered, oldest first (the delay is fixed, so also by due time).
    let mut waiting: VecDeque<(Instant, Publish)> = VecDeque::new();
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    let mut stopping: Option<Instant> = None;
    let mut last_seen = Instant::now();
    loop {
        if let Some(since) = stopping {
            let now = Instant::now();
            if waiting.is_empty() && (now - last_seen >= QUIET || now - since >= GRACE_MAX) {
                return Ok(stats);
            }
        }
        let next_due = waiting.front().map(|(due, _)| *due);
        tokio::select! {
            p = server.next_publish(Duration::from_millis(500)) => {
                let Ok(p) = p else { continue };
                last_seen = Instant::now();
                // A retransmission of a PUBLISH still waiting for our answer (RFC 3261 Timer E)
                // is the same request, not a second one in flight.
                let key = (p.request.call_id().to_string(), p.request.cseq());
                if waiting
                    .iter()
                    .any(|(_, w)| (w.request.call_id(), w.request.cseq()) == (key.0.as_str(), key.1.clone()))
                {
                    stats.retransmissions += 1;
                    continue;
                }
                stats.publishes += 1;
                let aor = aor_of(&p);
                let n = in_flight.entry(aor.clone()).or_default();
                *n += 1;
                stats.max_in_flight = stats.max_in_flight.max(*n);
                stats.last_body.insert(aor, p.body.clone());
                waiting.push_back((last_seen + delay, p));
            }
            () = async {
                match next_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((_, p)) = waiting.pop_front() {
                    if let Some(n) = in_flight.get_mut(&aor_of(&p)) {
                        *n = n.saturating_sub(1);
                    }
                    server.accept(&p).await?;
                }
            }
            _ = &mut stopped, if stopping.is_none() => {
                stopping = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(local: SocketAddr, call_id: &str, body: &str) -> String {
        format!(
            "PUBLISH sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}\r\n\
             From: <sip:bob@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 PUBLISH\r\nEvent: message-summary\r\nExpires: 3600\r\n\
             Content-Type: application/simple-message-summary\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn counts_publishes_in_flight_and_not_retransmissions() {
        let counter = PublishCounter::spawn(
            "127.0.0.1:0".parse().expect("addr"),
            Duration::from_millis(300),
        )
        .await
        .expect("bind");
        let to = counter.local_addr();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let local = socket.local_addr().expect("addr");
        let first = publish(
            local,
            "a1",
            "Messages-Waiting: yes\r\nText-Message: 1/0\r\n",
        );
        let second = publish(
            local,
            "b2",
            "Messages-Waiting: yes\r\nText-Message: 2/0\r\n",
        );
        // The first twice (a retransmission), then a second PUBLISH before the first is
        // answered: two in flight for one mailbox, which the check must flag.
        for text in [&first, &first, &second] {
            socket.send_to(text.as_bytes(), to).await.expect("send");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut report = Report::new("test");
        let stats = counter.finish(None, &mut report).await.expect("finish");
        assert_eq!(stats.publishes, 2);
        assert_eq!(stats.retransmissions, 1);
        assert_eq!(stats.max_in_flight, 2);
        let last = stats
            .last_body
            .get("sip:bob@example.com")
            .expect("bob's body");
        assert_eq!(text_message_new(last), Some(2));
        assert!(report.verdict().is_err());
        // Both were answered 200.
        let mut buf = vec![0u8; 4096];
        for _ in 0..2 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
                .await
                .expect("an answer")
                .expect("recv");
            assert!(buf[..n].starts_with(b"SIP/2.0 200"));
        }
    }

    #[test]
    fn reads_the_new_count() {
        let body = "Messages-Waiting: yes\r\nMessage-Account: sip:offline@example.com\r\n\
                    Text-Message: 12/0\r\n";
        assert_eq!(text_message_new(body), Some(12));
        assert_eq!(text_message_new("Messages-Waiting: no\r\n"), Some(0));
        assert_eq!(text_message_new("garbage"), None);
    }
}
