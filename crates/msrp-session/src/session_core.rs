//! Sans-IO core of one MSRP session (RFC 4975 §7): takes inbound frames, application
//! commands and `now`, produces frames to write, completed messages, send results and the
//! next timer. The tokio task in `session.rs` only moves bytes and events around it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::chunking::{split, ChunkOutcome, Reassembler};
use crate::frame::{ByteRange, FailureReport, Frame, Method};
use crate::ids;
use crate::session::SendError;
use crate::uri::MsrpUri;

/// Send id of the empty bind SEND (RFC 4975 §5.4).
pub(crate) const BIND_SEND: u64 = 0;

/// Core settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreConfig {
    pub chunk_size: usize,
    pub transaction_timeout: Duration,
    pub max_message_bytes: u64,
}

/// A complete inbound message, with the request to answer.
#[derive(Debug)]
pub(crate) struct Received {
    pub message_id: String,
    pub content_type: String,
    pub body: Bytes,
    pub success_report: bool,
    /// Last chunk's request, body dropped.
    pub request: Frame,
}

/// What the core reports besides frames to write.
#[derive(Debug)]
pub(crate) enum CoreEvent {
    Message(Box<Received>),
    SendDone {
        send: u64,
        result: Result<(), SendError>,
    },
}

#[derive(Debug)]
struct Pending {
    send: u64,
    deadline: Instant,
}

#[derive(Debug)]
pub(crate) struct SessionCore {
    local: MsrpUri,
    /// `local` as text, the From-Path of every response (formatted once, not per answer).
    local_text: String,
    remote_path: Vec<MsrpUri>,
    config: CoreConfig,
    reassembler: Reassembler,
    /// Outgoing transactions by transaction id.
    pending: HashMap<String, Pending>,
    /// Chunks still unanswered per send.
    remaining: HashMap<u64, usize>,
    next_send: u64,
    out: VecDeque<Bytes>,
}

impl SessionCore {
    pub fn new(local: MsrpUri, config: CoreConfig) -> Self {
        SessionCore {
            local_text: local.to_string(),
            local,
            remote_path: Vec::new(),
            reassembler: Reassembler::new(config.max_message_bytes),
            config,
            pending: HashMap::new(),
            remaining: HashMap::new(),
            next_send: BIND_SEND + 1,
            out: VecDeque::new(),
        }
    }

    pub fn set_remote_path(&mut self, path: Vec<MsrpUri>) {
        self.remote_path = path;
    }

    pub fn has_remote_path(&self) -> bool {
        !self.remote_path.is_empty()
    }

    /// Next frame to write.
    pub fn pop_output(&mut self) -> Option<Bytes> {
        let next = self.out.pop_front();
        if self.out.is_empty() {
            // Let go of the queue's room: most sessions sit idle after a burst.
            self.out = VecDeque::new();
        }
        next
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Earliest transaction deadline.
    pub fn next_timer(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    fn new_request(&self, tid: &str, message_id: &str) -> Frame {
        let mut f = Frame::request(
            tid,
            Method::Send,
            &self.remote_path,
            std::slice::from_ref(&self.local),
        );
        f.push_header("Message-ID", message_id);
        f
    }

    /// Queue the empty SEND that binds an active connection; completes as `BIND_SEND`.
    pub fn send_bind(&mut self, now: Instant) {
        let tid = ids::transaction_id();
        let mut f = self.new_request(&tid, &ids::message_id());
        f.push_header("Byte-Range", "1-0/0");
        self.out.push_back(f.to_bytes());
        self.pending.insert(
            tid,
            Pending {
                send: BIND_SEND,
                deadline: now + self.config.transaction_timeout,
            },
        );
        self.remaining.insert(BIND_SEND, 1);
    }

    /// Queue a message cut into chunks; returns its send id.
    pub fn send_message(&mut self, content_type: &str, body: &Bytes, now: Instant) -> u64 {
        let send = self.next_send;
        self.next_send += 1;
        let message_id = ids::message_id();
        let chunks = split(body, self.config.chunk_size);
        let deadline = now + self.config.transaction_timeout;
        self.remaining.insert(send, chunks.len());
        for chunk in chunks {
            let tid = ids::transaction_id();
            let mut f = self.new_request(&tid, &message_id);
            f.push_header("Byte-Range", chunk.range.to_string());
            f.push_header("Content-Type", content_type);
            f.body = Some(chunk.data);
            f.flag = chunk.flag;
            self.out.push_back(f.to_bytes());
            self.pending.insert(tid, Pending { send, deadline });
        }
        send
    }

    fn finish_send(&mut self, send: u64, result: Result<(), SendError>) -> CoreEvent {
        self.remaining.remove(&send);
        self.pending.retain(|_, p| p.send != send);
        if self.remaining.is_empty() {
            // Nothing in flight: let go of the tables' room (a map keeps it once grown, and
            // an idle session may be held for minutes).
            self.remaining = HashMap::new();
            self.pending = HashMap::new();
        }
        CoreEvent::SendDone { send, result }
    }

    /// Fail every unfinished send (session ending).
    pub fn fail_all(&mut self, err: &SendError) -> Vec<CoreEvent> {
        let sends: Vec<u64> = self.remaining.keys().copied().collect();
        sends
            .into_iter()
            .map(|s| self.finish_send(s, Err(err.clone())))
            .collect()
    }

    /// Expire transactions whose deadline passed.
    pub fn on_timer(&mut self, now: Instant) -> Vec<CoreEvent> {
        let mut expired: Vec<u64> = self
            .pending
            .values()
            .filter(|p| p.deadline <= now)
            .map(|p| p.send)
            .collect();
        expired.sort_unstable();
        expired.dedup();
        expired
            .into_iter()
            .map(|s| self.finish_send(s, Err(SendError::Timeout)))
            .collect()
    }

    /// Drop what is held of a message whose chunk the connection refused.
    pub fn discard(&mut self, message_id: &str) {
        self.reassembler.discard(message_id);
    }

    /// An inbound frame addressed to this session.
    pub fn on_frame(&mut self, frame: Frame) -> Option<CoreEvent> {
        match frame.method() {
            None => self.on_response(&frame),
            Some(Method::Send) => self.on_send(frame),
            // REPORTs are never answered (RFC 4975 §7.1.2); delivery is not tracked.
            Some(Method::Report) => None,
            Some(Method::Other(_)) => {
                self.respond(&frame, 501);
                None
            }
        }
    }

    fn on_response(&mut self, frame: &Frame) -> Option<CoreEvent> {
        let p = self.pending.remove(&frame.transaction_id)?;
        let code = frame.status_code().unwrap_or(0);
        if code != 200 {
            return Some(self.finish_send(p.send, Err(SendError::Status(code))));
        }
        let left = self.remaining.get_mut(&p.send)?;
        *left = left.saturating_sub(1);
        (*left == 0).then(|| self.finish_send(p.send, Ok(())))
    }

    /// Queue a response unless Failure-Report forbids it (RFC 4975 §7.1.2).
    fn respond(&mut self, request: &Frame, code: u16) {
        let send = match request.failure_report() {
            FailureReport::Yes => true,
            FailureReport::Partial => code != 200,
            FailureReport::No => false,
        };
        if send {
            self.out
                .push_back(request.response_bytes(code, &self.local_text));
        }
    }

    fn on_send(&mut self, frame: Frame) -> Option<CoreEvent> {
        let Ok(range) = frame.byte_range() else {
            self.respond(&frame, 400);
            return None;
        };
        let Some(message_id) = frame.message_id().map(str::to_string) else {
            self.respond(&frame, 400);
            return None;
        };
        let body = frame.body.clone().unwrap_or_default();
        let Some(content_type) = frame.content_type().map(str::to_string) else {
            // Empty SEND: bind or keep-alive (RFC 4975 §5.4, §7.1): answered, not a message.
            // A body without Content-Type is malformed (RFC 4975 §7.1.1).
            let code = if body.is_empty() { 200 } else { 400 };
            self.respond(&frame, code);
            return None;
        };
        match self
            .reassembler
            .accept(&message_id, range, &body, frame.flag)
        {
            Ok(ChunkOutcome::Partial) | Ok(ChunkOutcome::Aborted) => {
                self.respond(&frame, 200);
                None
            }
            Ok(ChunkOutcome::Complete(data)) => Some(CoreEvent::Message(Box::new(Received {
                message_id,
                content_type,
                body: data,
                success_report: frame.success_report(),
                request: Frame {
                    body: None,
                    ..frame
                },
            }))),
            Err(e) => {
                self.respond(&frame, e.status());
                None
            }
        }
    }

    /// The application's verdict on a complete message; a REPORT `000 200` follows a 200
    /// when the sender asked for one (RFC 4975 §7.1.2), along the full reverse path.
    pub fn answer(&mut self, request: &Frame, message_id: &str, total: u64, status: u16) {
        self.respond(request, status);
        if status == 200 && request.success_report() {
            let to = request.from_path().unwrap_or_default();
            let mut report = Frame::request(
                ids::transaction_id(),
                Method::Report,
                &to,
                std::slice::from_ref(&self.local),
            );
            report.push_header("Message-ID", message_id);
            let range = ByteRange {
                start: 1,
                end: Some(total),
                total: Some(total),
            };
            report.push_header("Byte-Range", range.to_string());
            report.push_header("Status", "000 200 OK");
            self.out.push_back(report.to_bytes());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::codec::{Decoded, MsrpDecoder};

    fn core() -> SessionCore {
        let mut c = SessionCore::new(
            "msrp://127.0.0.1:2855/local123;tcp".parse().unwrap(),
            CoreConfig {
                chunk_size: 4,
                transaction_timeout: Duration::from_secs(30),
                max_message_bytes: 100,
            },
        );
        c.set_remote_path(MsrpUri::parse_path("msrp://relay:1/r;tcp msrp://peer:2/p;tcp").unwrap());
        c
    }

    fn outputs(c: &mut SessionCore) -> Vec<Frame> {
        let mut d = MsrpDecoder::default();
        while let Some(b) = c.pop_output() {
            d.feed(&b);
        }
        let mut v = Vec::new();
        while let Some(Decoded::Frame(f)) = d.decode().unwrap() {
            v.push(f);
        }
        v
    }

    fn inbound(
        tid: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
        flag: crate::EndFlag,
    ) -> Frame {
        let mut f = Frame::request(
            tid,
            Method::Send,
            &MsrpUri::parse_path("msrp://127.0.0.1:2855/local123;tcp").unwrap(),
            &MsrpUri::parse_path("msrp://relay:1/r;tcp msrp://peer:2/p;tcp").unwrap(),
        );
        for (n, v) in extra {
            f.push_header(*n, *v);
        }
        f.body = body.map(|b| Bytes::copy_from_slice(b.as_bytes()));
        f.flag = flag;
        f
    }

    #[test]
    fn an_idle_core_holds_no_room_from_its_last_send() {
        let mut c = core();
        c.send_message(
            "text/plain",
            &Bytes::from_static(b"0123456789"),
            Instant::now(),
        );
        let frames = outputs(&mut c);
        assert_eq!(c.out.capacity(), 0, "output queue let go once drained");
        assert!(c.pending.capacity() > 0 && c.remaining.capacity() > 0);
        let me: MsrpUri = "msrp://relay:1/r;tcp".parse().unwrap();
        for f in &frames {
            c.on_frame(f.response_to(200, None, &me));
        }
        assert_eq!(c.pending.capacity(), 0, "transaction table let go");
        assert_eq!(c.remaining.capacity(), 0);
    }

    #[test]
    fn chunked_send_completes_on_last_200_and_times_out_with_fake_time() {
        let mut c = core();
        let t0 = Instant::now();
        let send = c.send_message("text/plain", &Bytes::from_static(b"0123456789"), t0);
        let frames = outputs(&mut c);
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[0].header("To-Path"),
            Some("msrp://relay:1/r;tcp msrp://peer:2/p;tcp")
        );
        assert_eq!(frames[2].header("Byte-Range"), Some("9-10/10"));
        let me: MsrpUri = "msrp://relay:1/r;tcp".parse().unwrap();
        assert!(c.on_frame(frames[0].response_to(200, None, &me)).is_none());
        assert!(c.on_frame(frames[1].response_to(200, None, &me)).is_none());
        assert_eq!(c.next_timer(), Some(t0 + Duration::from_secs(30)));
        match c.on_frame(frames[2].response_to(200, None, &me)) {
            Some(CoreEvent::SendDone {
                send: s,
                result: Ok(()),
            }) => assert_eq!(s, send),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.next_timer(), None);

        let second = c.send_message("text/plain", &Bytes::from_static(b"ab"), t0);
        outputs(&mut c);
        assert!(c.on_timer(t0 + Duration::from_secs(29)).is_empty());
        let done = c.on_timer(t0 + Duration::from_secs(30));
        assert!(
            matches!(&done[..], [CoreEvent::SendDone { send, result: Err(SendError::Timeout) }] if *send == second)
        );
        assert_eq!(c.next_timer(), None);
    }

    #[test]
    fn error_status_fails_the_whole_send_once() {
        let mut c = core();
        let t0 = Instant::now();
        c.send_message("text/plain", &Bytes::from_static(b"0123456789"), t0);
        let frames = outputs(&mut c);
        let me: MsrpUri = "msrp://relay:1/r;tcp".parse().unwrap();
        assert!(matches!(
            c.on_frame(frames[1].response_to(413, None, &me)),
            Some(CoreEvent::SendDone {
                result: Err(SendError::Status(413)),
                ..
            })
        ));
        assert!(c.on_frame(frames[2].response_to(200, None, &me)).is_none());
        assert!(c.fail_all(&SendError::Closed).is_empty());
    }

    #[test]
    fn inbound_rules() {
        use crate::EndFlag::*;
        let mut c = core();
        // Keep-alive: 200, no event; response to the previous hop.
        assert!(c
            .on_frame(inbound("ka000001", &[("Message-ID", "k")], None, Complete))
            .is_none());
        let r = outputs(&mut c);
        assert_eq!(
            (r[0].status_code(), r[0].header("To-Path")),
            (Some(200), Some("msrp://relay:1/r;tcp"))
        );
        // Failure-Report: no → nothing; partial → nothing for 200.
        let chunk = [
            ("Message-ID", "m1"),
            ("Byte-Range", "1-3/6"),
            ("Content-Type", "text/plain"),
            ("Failure-Report", "no"),
        ];
        assert!(c
            .on_frame(inbound("ch000001", &chunk, Some("abc"), Continuation))
            .is_none());
        assert!(outputs(&mut c).is_empty());
        let last = [
            ("Message-ID", "m1"),
            ("Byte-Range", "4-6/6"),
            ("Content-Type", "text/plain"),
            ("Success-Report", "yes"),
        ];
        let Some(CoreEvent::Message(m)) =
            c.on_frame(inbound("ch000002", &last, Some("def"), Complete))
        else {
            panic!("message expected");
        };
        assert_eq!(&m.body[..], b"abcdef");
        assert!(
            outputs(&mut c).is_empty(),
            "no answer before the application decides"
        );
        c.answer(&m.request, &m.message_id, 6, 200);
        let r = outputs(&mut c);
        assert_eq!(r[0].status_code(), Some(200));
        assert_eq!(r[1].method(), Some(&Method::Report));
        assert_eq!(r[1].header("Byte-Range"), Some("1-6/6"));
        assert_eq!(
            r[1].header("To-Path"),
            Some("msrp://relay:1/r;tcp msrp://peer:2/p;tcp")
        );
        // Unknown method → 501; REPORT → nothing; too large → 413; no Content-Type → 400.
        let mut other = inbound("oth00001", &[], None, Complete);
        other.start = crate::StartLine::Request(Method::Other("NICKNAME".into()));
        c.on_frame(other);
        let mut report = inbound("rep00001", &[], None, Complete);
        report.start = crate::StartLine::Request(Method::Report);
        c.on_frame(report);
        let big = [
            ("Message-ID", "m2"),
            ("Byte-Range", "1-3/500"),
            ("Content-Type", "text/plain"),
        ];
        c.on_frame(inbound("big00001", &big, Some("abc"), Continuation));
        c.on_frame(inbound(
            "noct0001",
            &[("Message-ID", "m3")],
            Some("abc"),
            Complete,
        ));
        let codes: Vec<_> = outputs(&mut c).iter().map(|f| f.status_code()).collect();
        assert_eq!(codes, vec![Some(501), Some(413), Some(400)]);
    }
}
