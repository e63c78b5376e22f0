//! Sans-IO incremental MSRP decoder (RFC 4975 §6).
//!
//! Feed it byte slices cut at any point; it yields whole frames. The body end is found by
//! searching for `CRLF "-------" transact-id flag CRLF` (RFC 4975 §5.1), so a body full of
//! dashes or other transactions' end-lines cannot end it early. Header block and body are
//! bounded: an oversized body is skipped to its end-line and reported as 413 so the
//! connection survives; a malformed frame whose end is still findable is reported as 400;
//! a stream that can no longer be framed is a fatal error.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;

/// The CRLF searcher, built once: `memmem::find` would build one per header line.
fn crlf() -> &'static memmem::Finder<'static> {
    static CRLF: std::sync::LazyLock<memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memmem::Finder::new(b"\r\n"));
    &CRLF
}

/// The searcher for the start of an end-line, `CRLF "-------"`, built once: a searcher for
/// the whole end-line (with its transaction id) was built for every frame, and building one
/// cost more than the search.
fn end_line_start() -> &'static memmem::Finder<'static> {
    static START: std::sync::LazyLock<memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memmem::Finder::new(b"\r\n-------"));
    &START
}

/// Where the end-line `CRLF "-------" tid` first occurs wholly in `buf` at or after `from`
/// (what `memmem::find` with that needle finds).
fn find_end_line(buf: &[u8], from: usize, tid: &[u8]) -> Option<usize> {
    let start = end_line_start();
    let prefix = start.needle().len();
    let mut from = from;
    while let Some(rel) = buf.get(from..).and_then(|rest| start.find(rest)) {
        let at = from + rel;
        let id_at = at + prefix;
        if buf.get(id_at..id_at + tid.len()) == Some(tid) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

use crate::frame::{EndFlag, Frame, Header, Method, StartLine, END_LINE_DASHES};

/// Size limits of the decoder.
#[derive(Debug, Clone, Copy)]
pub struct DecoderLimits {
    /// Start line and header fields with their CRLFs, bytes (the blank line ending the head
    /// is not counted).
    pub max_header_bytes: usize,
    /// Body of one chunk, bytes.
    pub max_body_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// A frame the decoder had to refuse while keeping the stream in sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Start line and headers of the refused frame (body dropped), for building the response.
    pub frame: Frame,
    /// Status to answer: 400 or 413.
    pub status: u16,
    /// Why.
    pub reason: &'static str,
}

/// What one decode step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete, well-formed frame.
    Frame(Frame),
    /// A frame that must be answered with an error status; the stream continues.
    Rejected(Rejection),
}

/// The stream cannot be framed any more; answer 400 if the transaction id is known, then
/// close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MSRP stream broken: {reason}")]
pub struct FatalError {
    /// Transaction id of the frame being parsed, if the start line was readable.
    pub transaction_id: Option<String>,
    /// Status to answer when a transaction id is known.
    pub status: u16,
    /// Why.
    pub reason: &'static str,
}

#[derive(Debug)]
enum State {
    /// Reading the start line and headers; `scan` is where the next unparsed line starts.
    Head {
        scan: usize,
        parsed: Option<Partial>,
    },
    /// Headers done; looking for the end-line from `search_from`.
    Body {
        partial: Partial,
        body_start: usize,
        search_from: usize,
    },
    /// Skipping an unusable frame up to its end-line; skipped bytes are already dropped.
    Discard {
        partial: Partial,
        status: u16,
        reason: &'static str,
    },
}

impl State {
    fn fresh() -> Self {
        State::Head {
            scan: 0,
            parsed: None,
        }
    }
}

enum Outcome {
    NeedMore(State),
    Next(State),
    Done(Decoded),
}

#[derive(Debug)]
struct Partial {
    transaction_id: String,
    start: StartLine,
    headers: Vec<Header>,
    /// First malformation seen; the frame is still read to its end, then rejected with 400.
    malformed: Option<&'static str>,
}

impl Partial {
    fn finish(self, body: Option<Bytes>, flag: EndFlag) -> Decoded {
        let malformed = self.malformed;
        let frame = Frame {
            transaction_id: self.transaction_id,
            start: self.start,
            headers: self.headers,
            body: if malformed.is_some() { None } else { body },
            flag,
        };
        match malformed {
            Some(reason) => Decoded::Rejected(Rejection {
                frame,
                status: 400,
                reason,
            }),
            None => Decoded::Frame(frame),
        }
    }

    /// Length of this frame's end-line up to its flag: `CRLF "-------" tid`.
    fn end_line_len(&self) -> usize {
        2 + END_LINE_DASHES.len() + self.transaction_id.len()
    }
}

/// Incremental decoder for one connection's inbound byte stream.
#[derive(Debug)]
pub struct MsrpDecoder {
    buf: BytesMut,
    state: State,
    limits: DecoderLimits,
    broken: bool,
}

impl Default for MsrpDecoder {
    fn default() -> Self {
        Self::new(DecoderLimits::default())
    }
}

impl MsrpDecoder {
    /// A decoder with these limits.
    pub fn new(limits: DecoderLimits) -> Self {
        MsrpDecoder {
            buf: BytesMut::new(),
            state: State::fresh(),
            limits,
            broken: false,
        }
    }

    /// Append received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, if any. Call until `Ok(None)`. After a `FatalError` the
    /// decoder stays broken and the connection should be closed.
    pub fn decode(&mut self) -> Result<Option<Decoded>, FatalError> {
        if self.broken {
            return Err(fatal(None, "stream already broken"));
        }
        let r = self.step();
        if r.is_err() {
            self.broken = true;
            self.buf.clear();
        }
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            // Let go of an emptied buffer: it shares its allocation with the frames cut from
            // it and would keep the last read's bytes alive while the connection idles.
            self.buf = BytesMut::new();
        }
        r
    }

    fn step(&mut self) -> Result<Option<Decoded>, FatalError> {
        loop {
            let outcome = match std::mem::replace(&mut self.state, State::fresh()) {
                State::Head { scan, parsed } => self.head(scan, parsed)?,
                State::Body {
                    partial,
                    body_start,
                    search_from,
                } => self.body(partial, body_start, search_from),
                State::Discard {
                    partial,
                    status,
                    reason,
                } => self.discard(partial, status, reason),
            };
            match outcome {
                Outcome::NeedMore(s) => {
                    self.state = s;
                    return Ok(None);
                }
                Outcome::Next(s) => self.state = s,
                Outcome::Done(d) => return Ok(Some(d)),
            }
        }
    }

    fn head(
        &mut self,
        mut scan: usize,
        mut parsed: Option<Partial>,
    ) -> Result<Outcome, FatalError> {
        if parsed.is_none() {
            // Tolerate stray CRLFs between frames.
            while self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
            }
            if self.buf[..] == b"\r"[..] {
                return Ok(Outcome::NeedMore(State::Head { scan, parsed }));
            }
            let check = self.buf.len().min(5);
            if self.buf[..check] != b"MSRP "[..check] {
                return Err(fatal(None, "not an MSRP start line"));
            }
        }
        loop {
            let Some(rel) = crlf().find(&self.buf[scan..]) else {
                // The next line ends at the next CRLF, whose CR may be the last byte read: only
                // past that is the limit surely broken, whatever the next read brings.
                let earliest_end = self.buf.len() - usize::from(self.buf.ends_with(b"\r"));
                if earliest_end > self.limits.max_header_bytes {
                    return Err(fatal(
                        parsed.map(|p| p.transaction_id),
                        "header block too large",
                    ));
                }
                return Ok(Outcome::NeedMore(State::Head { scan, parsed }));
            };
            let line_end = scan + rel;
            if line_end > self.limits.max_header_bytes {
                return Err(fatal(
                    parsed.map(|p| p.transaction_id),
                    "header block too large",
                ));
            }
            let next = line_end + 2;
            let Some(mut p) = parsed.take() else {
                parsed = Some(parse_start_line(&self.buf[..line_end])?);
                scan = next;
                continue;
            };
            let line = &self.buf[scan..line_end];
            if line.is_empty() {
                // Blank line: content-stuff follows (RFC 4975 §6). The end-line search starts
                // at this blank line's CRLF, so an end-line right after it is an empty body.
                return Ok(Outcome::Next(State::Body {
                    partial: p,
                    body_start: next,
                    search_from: scan.saturating_sub(2),
                }));
            }
            if let Some(flag) = end_line_flag(line, &p.transaction_id) {
                self.buf.advance(next);
                return Ok(Outcome::Done(p.finish(None, flag)));
            }
            match parse_header(line) {
                Some(h) => p.headers.push(h),
                None => {
                    p.malformed.get_or_insert("malformed header line");
                }
            }
            parsed = Some(p);
            scan = next;
        }
    }

    fn body(&mut self, p: Partial, body_start: usize, search_from: usize) -> Outcome {
        let needle_len = p.end_line_len();
        // The last offset at which the end-line of a chunk within the limit can start. The
        // checks below depend only on the bytes, never on where a read ended.
        let max_end = body_start.saturating_add(self.limits.max_body_bytes);
        let mut from = search_from;
        while let Some(at) = find_end_line(&self.buf, from, p.transaction_id.as_bytes()) {
            if at > max_end {
                // Whatever follows, the body is over the limit: skip to this candidate and
                // answer 413 (RFC 4975 §7.1.1 lets the receiver refuse a chunk; the stream
                // stays framed).
                self.buf.advance(at);
                return Outcome::Next(State::Discard {
                    partial: p,
                    status: 413,
                    reason: "chunk larger than the limit",
                });
            }
            let after = at + needle_len;
            let Some(tail) = self.buf.get(after..after + 3) else {
                return Outcome::NeedMore(State::Body {
                    partial: p,
                    body_start,
                    search_from: at,
                });
            };
            if let (Some(flag), b"\r\n") = (EndFlag::from_byte(tail[0]), &tail[1..]) {
                let frame_bytes = self.buf.split_to(after + 3).freeze();
                let body = if at >= body_start {
                    frame_bytes.slice(body_start..at)
                } else {
                    Bytes::new()
                };
                return Outcome::Done(p.finish(Some(body), flag));
            }
            from = at + 1;
        }
        // An end-line starting at or before `max_end` would be wholly in the buffer by now, and
        // none is: the chunk is too large.
        if self.buf.len() > max_end.saturating_add(needle_len + 2) {
            let keep = needle_len + 2;
            let drop = self.buf.len().saturating_sub(keep);
            self.buf.advance(drop);
            return Outcome::Next(State::Discard {
                partial: p,
                status: 413,
                reason: "chunk larger than the limit",
            });
        }
        let resume = self
            .buf
            .len()
            .saturating_sub(needle_len + 2)
            .max(search_from);
        Outcome::NeedMore(State::Body {
            partial: p,
            body_start,
            search_from: resume,
        })
    }

    fn discard(&mut self, p: Partial, status: u16, reason: &'static str) -> Outcome {
        let needle_len = p.end_line_len();
        let mut from = 0;
        while let Some(at) = find_end_line(&self.buf, from, p.transaction_id.as_bytes()) {
            let after = at + needle_len;
            let Some(tail) = self.buf.get(after..after + 3) else {
                self.buf.advance(at);
                return Outcome::NeedMore(State::Discard {
                    partial: p,
                    status,
                    reason,
                });
            };
            if let (Some(flag), b"\r\n") = (EndFlag::from_byte(tail[0]), &tail[1..]) {
                self.buf.advance(after + 3);
                let frame = Frame {
                    transaction_id: p.transaction_id,
                    start: p.start,
                    headers: p.headers,
                    body: None,
                    flag,
                };
                return Outcome::Done(Decoded::Rejected(Rejection {
                    frame,
                    status,
                    reason,
                }));
            }
            from = at + 1;
        }
        let keep = needle_len + 2;
        let drop = self.buf.len().saturating_sub(keep);
        self.buf.advance(drop);
        Outcome::NeedMore(State::Discard {
            partial: p,
            status,
            reason,
        })
    }
}

fn fatal(transaction_id: Option<String>, reason: &'static str) -> FatalError {
    FatalError {
        transaction_id,
        status: 400,
        reason,
    }
}

/// `transact-id = ident`, `ident = ALPHANUM 3*31ident-char` (RFC 4975 §9).
pub fn is_valid_transaction_id(tid: &str) -> bool {
    let b = tid.as_bytes();
    (4..=32).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'%' | b'='))
}

fn parse_start_line(line: &[u8]) -> Result<Partial, FatalError> {
    let s = std::str::from_utf8(line).map_err(|_| fatal(None, "start line not UTF-8"))?;
    let rest = s
        .strip_prefix("MSRP ")
        .ok_or_else(|| fatal(None, "not an MSRP start line"))?;
    let (tid, rest) = rest
        .split_once(' ')
        .ok_or_else(|| fatal(None, "start line too short"))?;
    if !is_valid_transaction_id(tid) {
        return Err(fatal(None, "bad transaction id"));
    }
    let (first, comment) = match rest.split_once(' ') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let mut malformed = None;
    let start = if first.len() == 3 && first.bytes().all(|c| c.is_ascii_digit()) {
        let code = first.parse().unwrap_or(0);
        StartLine::Response {
            code,
            comment: comment.map(str::to_string),
        }
    } else {
        // method = 1*UPALPHA (RFC 4975 §9).
        if comment.is_some() || first.is_empty() || !first.bytes().all(|c| c.is_ascii_uppercase()) {
            malformed = Some("malformed start line");
        }
        StartLine::Request(match first {
            "SEND" => Method::Send,
            "REPORT" => Method::Report,
            other => Method::Other(other.to_string()),
        })
    };
    Ok(Partial {
        transaction_id: tid.to_string(),
        start,
        headers: Vec::new(),
        malformed,
    })
}

fn end_line_flag(line: &[u8], tid: &str) -> Option<EndFlag> {
    let rest = line.strip_prefix(END_LINE_DASHES)?;
    let rest = rest.strip_prefix(tid.as_bytes())?;
    match rest {
        [f] => EndFlag::from_byte(*f),
        _ => None,
    }
}

fn parse_header(line: &[u8]) -> Option<Header> {
    let s = std::str::from_utf8(line).ok()?;
    let (name, value) = s.split_once(':')?;
    let token = |c: u8| c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c);
    if name.is_empty()
        || !name.bytes().all(token)
        // Folded without an early exit, so the check runs as vector compares.
        || value
            .bytes()
            .fold(false, |bad, c| bad | ((c < 0x20 && c != b'\t') | (c == 0x7f)))
    {
        return None;
    }
    let value = value.strip_prefix(' ').unwrap_or(value);
    Some(Header {
        name: name.to_string(),
        value: value.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The end-line search finds what a search for the whole end-line finds, whatever
        /// dashes, CRLFs and other transactions' ids surround it.
        #[test]
        fn the_end_line_search_is_a_search_for_the_whole_end_line(
            pieces in prop::collection::vec(
                prop_oneof![
                    Just(&b"\r\n-------"[..]),
                    Just(&b"\r\n------"[..]),
                    Just(&b"-"[..]),
                    Just(&b"\r\n"[..]),
                    Just(&b"ab"[..]),
                    Just(&b"a"[..]),
                    Just(&b"b$"[..]),
                ],
                0..40,
            ),
            from in 0usize..120,
            tid in "[ab]{1,3}",
        ) {
            let buf = pieces.concat();
            let from = from.min(buf.len());
            let needle = [&b"\r\n-------"[..], tid.as_bytes()].concat();
            prop_assert_eq!(
                find_end_line(&buf, from, tid.as_bytes()),
                memmem::find(&buf[from..], &needle).map(|r| r + from)
            );
        }
    }

    fn frames(d: &mut MsrpDecoder) -> Vec<Decoded> {
        let mut out = Vec::new();
        while let Some(x) = d.decode().unwrap() {
            out.push(x);
        }
        out
    }

    fn send(tid: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "MSRP {tid} SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\nMessage-ID: m1\r\nContent-Type: text/plain\r\n\r\n"
        )
        .into_bytes();
        v.extend_from_slice(body);
        v.extend_from_slice(format!("\r\n-------{tid}$\r\n").as_bytes());
        v
    }

    #[test]
    fn body_with_dashes_and_foreign_end_lines() {
        let body =
            b"-------\r\n-------abcd1234$\r\n\r\n-------tid12345x$\r\n-------tid12345\r\n---";
        let wire = send("tid12345", body);
        for step in [1, 5, wire.len()] {
            let mut d = MsrpDecoder::default();
            let mut got = Vec::new();
            for p in wire.chunks(step) {
                d.feed(p);
                got.extend(frames(&mut d));
            }
            match got.as_slice() {
                [Decoded::Frame(f)] => assert_eq!(f.body_bytes(), body),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn oversized_body_in_one_read_is_413_too() {
        let mut d = MsrpDecoder::new(DecoderLimits {
            max_header_bytes: 1024,
            max_body_bytes: 100,
        });
        let mut wire = send("big12345", &[b'x'; 300]);
        wire.extend(send("next1234", b"ok"));
        d.feed(&wire);
        let got = frames(&mut d);
        assert_eq!(got.len(), 2, "{got:?}");
        match &got[0] {
            Decoded::Rejected(r) => {
                assert_eq!(r.status, 413);
                assert_eq!(r.frame.transaction_id, "big12345");
            }
            other => panic!("expected a 413 rejection, got {other:?}"),
        }
        match &got[1] {
            Decoded::Frame(f) => assert_eq!(f.transaction_id, "next1234"),
            other => panic!("expected the next frame, got {other:?}"),
        }
    }

    #[test]
    fn a_head_at_the_limit_read_up_to_its_last_cr_is_not_too_large() {
        // Found by fuzz/msrp_stream: the blank line ending the head starts exactly at the limit,
        // and a read ends on its CR. The head is within the limit whatever the cut.
        let frame = send("edge1234", b"hi");
        let blank = frame
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("blank line")
            + 2;
        let limits = DecoderLimits {
            max_header_bytes: blank,
            max_body_bytes: 64,
        };
        for cut in [blank + 1, blank, blank + 2] {
            let mut d = MsrpDecoder::new(limits);
            d.feed(&frame[..cut]);
            assert!(frames(&mut d).is_empty(), "cut at {cut}");
            d.feed(&frame[cut..]);
            let got = frames(&mut d);
            assert!(
                matches!(got.as_slice(), [Decoded::Frame(f)] if f.body_bytes() == b"hi"),
                "cut at {cut}: {got:?}"
            );
        }
        // One byte less of room: the head is too large, however it is read.
        let mut d = MsrpDecoder::new(DecoderLimits {
            max_header_bytes: blank - 1,
            max_body_bytes: 64,
        });
        d.feed(&frame[..blank + 1]);
        assert!(d.decode().is_err());
    }

    #[test]
    fn partial_end_lines_do_not_skip_the_size_check() {
        let limit = 100;
        let mut d = MsrpDecoder::new(DecoderLimits {
            max_header_bytes: 1024,
            max_body_bytes: limit,
        });
        let mut head = send("grow1234", b"");
        head.truncate(head.len() - "\r\n-------grow1234$\r\n".len());
        d.feed(&head);
        assert!(frames(&mut d).is_empty());
        // Every read ends like the start of this transaction's end-line.
        let mut rejected = false;
        for _ in 0..50 {
            let mut piece = vec![b'x'; 60];
            piece.extend_from_slice(b"\r\n-------grow1234");
            d.feed(&piece);
            for x in frames(&mut d) {
                rejected |= matches!(x, Decoded::Rejected(ref r) if r.status == 413);
            }
            assert!(d.buffered() < 1024 + limit + 64, "buffer stays bounded");
        }
        d.feed(b"$\r\n");
        for x in frames(&mut d) {
            rejected |= matches!(x, Decoded::Rejected(ref r) if r.status == 413);
        }
        assert!(rejected, "the oversized chunk is refused 413");
    }

    #[test]
    fn chunk_at_the_limit_with_a_split_end_line_is_delivered() {
        let mut d = MsrpDecoder::new(DecoderLimits {
            max_header_bytes: 1024,
            max_body_bytes: 100,
        });
        let wire = send("edge1234", &[b'y'; 100]);
        let (a, b) = wire.split_at(wire.len() - 8);
        d.feed(a);
        assert!(frames(&mut d).is_empty());
        d.feed(b);
        match frames(&mut d).as_slice() {
            [Decoded::Frame(f)] => assert_eq!(f.body.as_ref().map(|b| b.len()), Some(100)),
            other => panic!("expected the frame, got {other:?}"),
        }
    }

    #[test]
    fn oversized_body_is_413_and_stream_survives() {
        let mut d = MsrpDecoder::new(DecoderLimits {
            max_header_bytes: 1024,
            max_body_bytes: 100,
        });
        let mut wire = send("big12345", &[b'x'; 5000]);
        wire.extend(send("next1234", b"ok"));
        for p in wire.chunks(64) {
            d.feed(p);
            assert!(d.buffered() < 400, "buffer stays bounded");
            for x in frames(&mut d) {
                match x {
                    Decoded::Rejected(r) => {
                        assert_eq!(r.status, 413);
                        assert_eq!(r.frame.transaction_id, "big12345");
                        assert_eq!(r.frame.header("From-Path"), Some("msrp://b:2/y;tcp"));
                    }
                    Decoded::Frame(f) => assert_eq!(f.body_bytes(), b"ok"),
                }
            }
        }
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn an_emptied_buffer_is_let_go_while_a_frame_cut_from_it_lives() {
        let mut d = MsrpDecoder::default();
        d.feed(&send("keep1234", b"body"));
        let frame = match d.decode() {
            Ok(Some(Decoded::Frame(f))) => f,
            other => panic!("expected the frame, got {other:?}"),
        };
        assert!(d.decode().expect("no error").is_none());
        assert_eq!(d.buf.capacity(), 0, "no allocation held while idle");
        assert_eq!(frame.body_bytes(), b"body", "the frame's bytes are its own");
        d.feed(&send("next1234", b"more"));
        assert!(matches!(d.decode(), Ok(Some(Decoded::Frame(f))) if f.body_bytes() == b"more"));
    }

    #[test]
    fn malformed_header_is_400_and_stream_survives() {
        let mut wire = b"MSRP bad12345 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nno colon here\r\n\r\nbody\r\n-------bad12345$\r\n".to_vec();
        wire.extend(send("good1234", b"fine"));
        let mut d = MsrpDecoder::default();
        d.feed(&wire);
        let got = frames(&mut d);
        assert!(
            matches!(&got[0], Decoded::Rejected(r) if r.status == 400 && r.frame.transaction_id == "bad12345")
        );
        assert!(matches!(&got[1], Decoded::Frame(f) if f.body_bytes() == b"fine"));
    }

    #[test]
    fn garbage_and_oversized_headers_are_fatal() {
        let mut d = MsrpDecoder::default();
        d.feed(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(d.decode().unwrap_err().transaction_id, None);
        assert!(d.decode().is_err(), "stays broken");

        let mut d = MsrpDecoder::new(DecoderLimits {
            max_header_bytes: 64,
            max_body_bytes: 100,
        });
        d.feed(b"MSRP abcd1234 SEND\r\nX-Long: ");
        d.feed(&[b'a'; 100]);
        let e = d.decode().unwrap_err();
        assert_eq!(e.transaction_id.as_deref(), Some("abcd1234"));
        assert_eq!(e.status, 400);

        let mut d = MsrpDecoder::default();
        d.feed(b"MSRP a SEND\r\n");
        assert!(d.decode().is_err(), "transaction id too short");
    }

    #[test]
    fn bad_method_line_is_rejected_not_fatal() {
        let mut d = MsrpDecoder::default();
        d.feed(b"MSRP abcd1234 send me\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\n-------abcd1234$\r\n");
        let got = frames(&mut d);
        assert!(matches!(&got[..], [Decoded::Rejected(r)] if r.status == 400));
    }

    #[test]
    fn empty_body_forms() {
        let mut d = MsrpDecoder::default();
        // Blank line directly followed by the end-line (seen in the wild).
        d.feed(b"MSRP abcd1234 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\n\r\n-------abcd1234$\r\n");
        // ABNF form: blank line, empty data, CRLF, end-line.
        d.feed(b"MSRP abcd1235 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\nContent-Type: text/plain\r\n\r\n\r\n-------abcd1235$\r\n");
        let got = frames(&mut d);
        assert_eq!(got.len(), 2);
        for g in got {
            match g {
                Decoded::Frame(f) => assert_eq!(f.body.as_deref(), Some(&b""[..])),
                other => panic!("{other:?}"),
            }
        }
    }
}
