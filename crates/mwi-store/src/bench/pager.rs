//! `bench page`: SIP MESSAGE deposits (RFC 3428) over UDP at a ramp of target rates, with
//! RFC 3261 §17.1.2.2 retransmissions (Timer E from T1 = 500 ms doubling to T2 = 4 s) so a
//! datagram dropped under overload is retried as a real proxy would. The same generator
//! pre-fills the mailbox for `bench fetch` and drives Kamailio msilo in scripts/bench.sh, so
//! both servers see identical load.
//!
//! One task per UDP socket ("lane") sends on a 1 ms tick, keeps at most `window` MESSAGEs
//! unanswered, and matches each response to its request by the Call-ID's leading index.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};

use super::latency::Latencies;
use super::presence::PublishCounter;
use super::progress::{Counters, Progress};
use super::report::Report;
use super::Target;
use crate::client::sip_uac::token;

/// RFC 3261 timer T1.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 timer T2: the cap of the non-INVITE retransmission interval.
const T2: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    #[command(flatten)]
    pub target: Target,
    /// Target rates in MESSAGE/s, one step each, comma-separated (0: as fast as `--window`
    /// allows).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub rate: Vec<u32>,
    /// Seconds of sending per rate step.
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    /// MESSAGEs per step at most (0: only the time bounds the step).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Distinct mailboxes `sip:<user-prefix><n>@<domain>` the MESSAGEs go to.
    #[arg(long, default_value_t = 1000)]
    pub mailboxes: u64,
    #[arg(long, default_value = "user")]
    pub user_prefix: String,
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// Body size in bytes (text/plain).
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// MESSAGEs awaiting an answer at most; the sender pauses beyond.
    #[arg(long, default_value_t = 4000)]
    pub window: usize,
    /// UDP sockets spreading the load.
    #[arg(long, default_value_t = 2)]
    pub sockets: usize,
    /// Seconds to wait for the last answers after a step stops sending.
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,
    /// Bind a presence stand-in here and count the server's PUBLISHes (point the server's
    /// `mwi.proxy` at it).
    #[arg(long)]
    pub presence: Option<SocketAddr>,
    /// How long the presence stand-in takes to answer each PUBLISH, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub publish_delay_ms: u64,
}

/// `sip:<prefix><n>@<domain>` for n in 0..count (at least one).
pub fn mailbox_aors(prefix: &str, domain: &str, count: u64) -> Vec<String> {
    (0..count.max(1))
        .map(|n| format!("sip:{prefix}{n}@{domain}"))
        .collect()
}

/// One page-mode load: what to send and how fast.
#[derive(Debug, Clone)]
pub struct PageLoad {
    pub server: SocketAddr,
    pub local_ip: IpAddr,
    /// MESSAGE/s over all lanes; 0 for window-bound.
    pub rate: u32,
    /// How long to keep sending.
    pub duration: Duration,
    /// MESSAGEs to send at most; 0 for no cap.
    pub count: u64,
    pub mailboxes: Arc<Vec<String>>,
    pub from: String,
    pub body_bytes: usize,
    pub window: usize,
    pub sockets: usize,
    /// Wait for answers this long after sending stops.
    pub drain: Duration,
}

/// What a load achieved.
#[derive(Debug, Default)]
pub struct PageOutcome {
    pub sent: u64,
    /// 2xx final responses (202 from both servers).
    pub accepted: u64,
    /// Final responses ≥ 300.
    pub rejected: u64,
    /// Never answered (Timer F or the end of the drain).
    pub lost: u64,
    pub retransmissions: u64,
    /// Request to 2xx, first transmission to answer.
    pub latencies: Latencies,
    /// First send to the last answer.
    pub elapsed: Duration,
    /// One rejection status seen, for the message.
    pub a_rejection: Option<u16>,
}

impl PageOutcome {
    /// 2xx per second over the whole step.
    pub fn accepted_per_sec(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: PageOutcome) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.lost += other.lost;
        self.retransmissions += other.retransmissions;
        self.latencies.merge(other.latencies);
        self.elapsed = self.elapsed.max(other.elapsed);
        self.a_rejection = self.a_rejection.or(other.a_rejection);
    }
}

/// A MESSAGE waiting for its final response.
#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    first_sent: Instant,
    interval: Duration,
}

/// The status code and Call-ID of a SIP response; `None` for requests and garbage.
fn parse_response(data: &[u8]) -> Option<(u16, &str)> {
    let text = std::str::from_utf8(data.get(..data.len().min(4096))?)
        .ok()
        .or_else(|| {
            // A body cut mid-character: the head alone is enough.
            let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
            std::str::from_utf8(data.get(..end)?).ok()
        })?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()?
        .strip_prefix("SIP/2.0 ")?
        .get(..3)?
        .parse()
        .ok()?;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i") {
            return Some((status, value.trim()));
        }
    }
    None
}

/// The index we put in front of the Call-ID.
fn index_of(call_id: &str) -> Option<u64> {
    call_id.split('-').next()?.parse().ok()
}

fn message_text(load: &PageLoad, local: SocketAddr, run: &str, idx: u64) -> Vec<u8> {
    let len = load.mailboxes.len().max(1) as u64;
    let to = usize::try_from(idx % len)
        .ok()
        .and_then(|i| load.mailboxes.get(i))
        .map_or("sip:nobody@example.com", String::as_str);
    let mut body = format!("bench message {idx} ");
    while body.len() < load.body_bytes {
        body.push('x');
    }
    format!(
        "MESSAGE {to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{run}x{idx}\r\n\
         Max-Forwards: 70\r\nFrom: <{from}>;tag={run}\r\nTo: <{to}>\r\n\
         Call-ID: {idx}-{run}@bench\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n\
         Content-Length: {n}\r\n\r\n{body}",
        from = load.from,
        n = body.len(),
    )
    .into_bytes()
}

/// One lane's share of the load: `lane` of `lanes` sends indices lane, lane+lanes, …
async fn run_lane(
    load: Arc<PageLoad>,
    lane: u64,
    lanes: u64,
    counters: Arc<Counters>,
) -> anyhow::Result<PageOutcome> {
    let socket = UdpSocket::bind(SocketAddr::new(load.local_ip, 0))
        .await
        .context("bind UDP for MESSAGE load")?;
    let local = socket.local_addr()?;
    let run = token();
    let lane_rate = f64::from(load.rate) / lanes as f64;
    let lane_count = if load.count == 0 {
        u64::MAX
    } else {
        load.count / lanes + u64::from(lane < load.count % lanes)
    };
    let window = (load.window / lanes as usize).max(1);
    let started = Instant::now();
    let send_end = started + load.duration;
    let give_up = send_end + load.drain;
    let mut out = PageOutcome::default();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut timers: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut next = 0u64; // lane-local sequence
    let mut last_answer = started;
    let mut buf = vec![0u8; 65_535];
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let now = Instant::now();
        let sending = next < lane_count && now < send_end;
        if !sending && pending.is_empty() {
            break;
        }
        if now >= give_up {
            break;
        }
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, _) = r.context("receive on the MESSAGE socket")?;
                let Some((status, call_id)) = buf.get(..n).and_then(parse_response) else {
                    continue;
                };
                if status < 200 {
                    continue;
                }
                let Some(p) = index_of(call_id).and_then(|i| pending.remove(&i)) else {
                    continue; // an answer to a retransmission already answered
                };
                last_answer = Instant::now();
                if (200..300).contains(&status) {
                    out.accepted += 1;
                    out.latencies.record(last_answer - p.first_sent);
                    counters.done();
                } else {
                    out.rejected += 1;
                    out.a_rejection.get_or_insert(status);
                    counters.failed();
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                // Retransmissions that are due (Timer E), and give-ups (Timer F = 64·T1).
                while let Some(Reverse((due, idx))) = timers.peek().copied() {
                    if due > now {
                        break;
                    }
                    timers.pop();
                    let Some(p) = pending.get_mut(&idx) else { continue };
                    if now - p.first_sent >= 64 * T1 {
                        pending.remove(&idx);
                        out.lost += 1;
                        counters.failed();
                        continue;
                    }
                    socket.send_to(&p.bytes, load.server).await?;
                    out.retransmissions += 1;
                    p.interval = (p.interval * 2).min(T2);
                    timers.push(Reverse((now + p.interval, idx)));
                }
                // New MESSAGEs up to the schedule, the count and the window.
                let due = if load.rate == 0 {
                    u64::MAX
                } else {
                    ((now - started).as_secs_f64() * lane_rate) as u64
                };
                while next < lane_count && next < due && now < send_end && pending.len() < window {
                    let idx = next * lanes + lane;
                    let bytes = message_text(&load, local, &run, idx);
                    socket.send_to(&bytes, load.server).await?;
                    let sent = Instant::now();
                    pending.insert(idx, Pending { bytes, first_sent: sent, interval: T1 });
                    timers.push(Reverse((sent + T1, idx)));
                    next += 1;
                    out.sent += 1;
                }
            }
        }
    }
    out.lost += pending.len() as u64;
    out.elapsed = last_answer - started;
    Ok(out)
}

/// Runs one load on all its lanes.
pub async fn run_load(load: PageLoad, counters: Arc<Counters>) -> anyhow::Result<PageOutcome> {
    let lanes = load.sockets.max(1) as u64;
    let load = Arc::new(load);
    let tasks: Vec<_> = (0..lanes)
        .map(|lane| tokio::spawn(run_lane(load.clone(), lane, lanes, counters.clone())))
        .collect();
    let mut total = PageOutcome::default();
    for t in tasks {
        total.merge(t.await.context("MESSAGE lane task")??);
    }
    Ok(total)
}

/// `bench page`.
pub async fn run(args: PageArgs) -> anyhow::Result<Report> {
    let server = args.target.server()?;
    let db = super::StoreProbe::open(&args.target).await?;
    let presence = match args.presence {
        Some(addr) => {
            Some(PublishCounter::spawn(addr, Duration::from_millis(args.publish_delay_ms)).await?)
        }
        None => None,
    };
    let mailboxes = Arc::new(mailbox_aors(
        &args.user_prefix,
        &args.domain,
        args.mailboxes,
    ));
    let deadline = Instant::now() + args.target.time_limit();
    let mut report = Report::new("page");
    let mut total = PageOutcome::default();
    let mut best = 0.0f64;
    let mut best_rate = 0u32;
    for (step, &rate) in args.rate.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let drain = Duration::from_secs_f64(args.drain_secs);
        let duration = Duration::from_secs_f64(args.step_secs)
            .min(left.saturating_sub(drain))
            .max(Duration::from_millis(100));
        let label = if rate == 0 {
            format!("page step {step} (window-bound)")
        } else {
            format!("page step {step} at {rate}/s")
        };
        let expected = if args.count > 0 {
            args.count
        } else if rate > 0 {
            (f64::from(rate) * duration.as_secs_f64()) as u64
        } else {
            0
        };
        let progress = Progress::start(&label, "answered 2xx", expected);
        let load = PageLoad {
            server,
            local_ip: args.target.local_ip,
            rate,
            duration,
            count: args.count,
            mailboxes: mailboxes.clone(),
            from: format!("sip:bench@{}", args.domain),
            body_bytes: args.body_bytes,
            window: args.window,
            sockets: args.sockets,
            drain,
        };
        let out = run_load(load, progress.counters.clone()).await?;
        drop(progress);
        let per_sec = out.accepted_per_sec();
        let offered = out.sent as f64 / duration.as_secs_f64();
        report.figure(&format!("step{step}_offered_per_sec"), offered, "MESSAGE/s");
        report.figure(&format!("step{step}_accepted_per_sec"), per_sec, "2xx/s");
        report.figure(
            &format!("step{step}_unanswered"),
            out.lost as f64,
            "MESSAGE",
        );
        if per_sec > best {
            best = per_sec;
            best_rate = rate;
        }
        total.merge(out);
    }
    report.figure("sent", total.sent as f64, "MESSAGE");
    report.figure("accepted", total.accepted as f64, "2xx");
    report.figure("rejected", total.rejected as f64, "≥300");
    report.figure("unanswered", total.lost as f64, "MESSAGE");
    report.figure("retransmissions", total.retransmissions as f64, "");
    report.figure("max_accepted_per_sec", best, "2xx/s");
    report.figure("best_step_rate", f64::from(best_rate), "offered/s");
    total.latencies.report(&mut report, "answer");
    if let Some(status) = total.a_rejection {
        report.figure("a_rejection_status", f64::from(status), "");
    }
    if let Some(db) = &db {
        let added = db.rows_added(&mut report).await?;
        report.check(
            format!(
                "every 2xx has its row ({} answered 2xx, {added} rows added)",
                total.accepted
            ),
            added >= total.accepted,
        );
        report.check(
            format!(
                "no row without a MESSAGE ({added} rows for {} sent)",
                total.sent
            ),
            added <= total.sent,
        );
    }
    if let Some(p) = presence {
        p.finish(db.as_ref().map(|d| &d.store), &mut report).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_call_id() {
        let r = b"SIP/2.0 202 Accepted\r\nVia: SIP/2.0/UDP x\r\ni: 42-abc@bench\r\n\r\n";
        assert_eq!(parse_response(r), Some((202, "42-abc@bench")));
        let r = b"SIP/2.0 500 Server Error\r\nCALL-ID:  7-x@bench \r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_response(r), Some((500, "7-x@bench")));
        assert_eq!(
            parse_response(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: 1\r\n\r\n"),
            None
        );
        assert_eq!(parse_response(b"SIP/2.0 20"), None);
        assert_eq!(index_of("42-abc@bench"), Some(42));
        assert_eq!(index_of("abc@bench"), None);
    }

    #[test]
    fn message_is_a_request_the_server_parses() {
        let load = PageLoad {
            server: "127.0.0.1:5070".parse().expect("addr"),
            local_ip: "127.0.0.1".parse().expect("ip"),
            rate: 0,
            duration: Duration::from_secs(1),
            count: 1,
            mailboxes: Arc::new(mailbox_aors("user", "example.com", 3)),
            from: "sip:bench@example.com".into(),
            body_bytes: 100,
            window: 1,
            sockets: 1,
            drain: Duration::from_secs(1),
        };
        let local: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let text = message_text(&load, local, "run1", 4);
        let parsed = rsipstack::sip::SipMessage::try_from(text.as_slice()).expect("parses");
        let rsipstack::sip::SipMessage::Request(req) = parsed else {
            panic!("not a request")
        };
        assert_eq!(req.body.len(), 100);
        let text = String::from_utf8(text).expect("utf8");
        assert!(
            text.starts_with("MESSAGE sip:user1@example.com SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("Call-ID: 4-run1@bench\r\n"), "{text}");
    }

    #[tokio::test]
    async fn answered_retransmitted_and_lost_messages_are_counted() {
        // A fake server that answers the first MESSAGE 202, drops the first copy of the
        // second (so it is retransmitted after T1) and rejects the third with 486.
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let server_addr = server.local_addr().expect("addr");
        let fake = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            let mut seen_second = false;
            for _ in 0..4 {
                let (n, from) = server.recv_from(&mut buf).await.expect("recv");
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let call_id = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Call-ID: "))
                    .expect("Call-ID")
                    .to_string();
                let status = match index_of(&call_id) {
                    Some(1) if !seen_second => {
                        seen_second = true;
                        continue;
                    }
                    Some(2) => "486 Busy Here",
                    _ => "202 Accepted",
                };
                let resp = format!("SIP/2.0 {status}\r\nCall-ID: {call_id}\r\n\r\n");
                server.send_to(resp.as_bytes(), from).await.expect("send");
            }
        });
        let load = PageLoad {
            server: server_addr,
            local_ip: "127.0.0.1".parse().expect("ip"),
            rate: 0,
            duration: Duration::from_secs(5),
            count: 3,
            mailboxes: Arc::new(mailbox_aors("user", "example.com", 1)),
            from: "sip:bench@example.com".into(),
            body_bytes: 10,
            window: 10,
            sockets: 1,
            drain: Duration::from_secs(3),
        };
        let out = run_load(load, Arc::new(Counters::default()))
            .await
            .expect("load runs");
        fake.await.expect("fake server");
        assert_eq!(out.sent, 3);
        assert_eq!(out.accepted, 2);
        assert_eq!(out.rejected, 1);
        assert_eq!(out.a_rejection, Some(486));
        assert_eq!(out.lost, 0);
        assert!(out.retransmissions >= 1);
    }
}
