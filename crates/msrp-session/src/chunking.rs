//! Chunking of outgoing messages and reassembly of incoming ones (RFC 4975 §5.1, §7.1.1).
//!
//! `split` cuts a body into `Byte-Range`d pieces; `Reassembler` collects chunks of several
//! messages interleaved on one session, keyed by Message-ID, honours `+`/`$`/`#` and `*`
//! totals, and caps the bytes it holds for the session.

use std::collections::HashMap;

use bytes::Bytes;

use crate::frame::{ByteRange, EndFlag};

/// One outgoing chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its Byte-Range (total always known for our own messages).
    pub range: ByteRange,
    /// The bytes.
    pub data: Bytes,
    /// `+` for all but the last, `$` for the last.
    pub flag: EndFlag,
}

/// Cut `body` into chunks of at most `chunk_size` bytes (at least 1). An empty body gives
/// one empty chunk `1-0/0`.
pub fn split(body: &Bytes, chunk_size: usize) -> Vec<Chunk> {
    let size = chunk_size.max(1);
    let total = body.len() as u64;
    if body.is_empty() {
        return vec![Chunk {
            range: ByteRange {
                start: 1,
                end: Some(0),
                total: Some(0),
            },
            data: Bytes::new(),
            flag: EndFlag::Complete,
        }];
    }
    let mut out = Vec::with_capacity(body.len().div_ceil(size));
    let mut offset = 0usize;
    while offset < body.len() {
        let end = (offset + size).min(body.len());
        out.push(Chunk {
            range: ByteRange {
                start: offset as u64 + 1,
                end: Some(end as u64),
                total: Some(total),
            },
            data: body.slice(offset..end),
            flag: if end == body.len() {
                EndFlag::Complete
            } else {
                EndFlag::Continuation
            },
        });
        offset = end;
    }
    out
}

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// Holding this chunk would exceed the session's byte cap (answer 413).
    #[error("message larger than the session limit")]
    TooLarge,
    /// Byte-Range inconsistent with the body or with earlier chunks (answer 400).
    #[error("inconsistent Byte-Range")]
    BadRange,
}

impl ReassemblyError {
    /// The MSRP status to answer.
    pub fn status(&self) -> u16 {
        match self {
            ReassemblyError::TooLarge => 413,
            ReassemblyError::BadRange => 400,
        }
    }
}

/// What a chunk did to its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Stored; the message is not complete yet.
    Partial,
    /// The message is complete: its bytes in order.
    Complete(Bytes),
    /// `#`: the sender aborted; everything held for the message is dropped.
    Aborted,
}

#[derive(Debug, Default)]
struct InProgress {
    data: Vec<u8>,
    /// Sorted, merged, 0-based half-open intervals received.
    have: Vec<(u64, u64)>,
    /// Known total, from a Byte-Range total or the `$` chunk's end.
    total: Option<u64>,
    last_seen: bool,
}

impl InProgress {
    fn add_interval(&mut self, start: u64, end: u64) {
        self.have.push((start, end));
        self.have.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.have.len());
        for (s, e) in self.have.drain(..) {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
    }

    fn complete(&self) -> bool {
        let covered = |t: u64| t == 0 || self.have.first().is_some_and(|&(s, e)| s == 0 && e >= t);
        self.last_seen && self.total.is_some_and(covered)
    }
}

/// Reassembles interleaved chunked messages of one session.
#[derive(Debug)]
pub struct Reassembler {
    cap: u64,
    held: u64,
    messages: HashMap<String, InProgress>,
}

impl Reassembler {
    /// A reassembler holding at most `cap` bytes across all unfinished messages.
    pub fn new(cap: u64) -> Self {
        Reassembler {
            cap,
            held: 0,
            messages: HashMap::new(),
        }
    }

    /// Bytes currently held.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// Messages currently unfinished.
    pub fn in_progress(&self) -> usize {
        self.messages.len()
    }

    /// Drop a message (e.g. after refusing one of its chunks).
    pub fn discard(&mut self, message_id: &str) {
        if let Some(m) = self.messages.remove(message_id) {
            self.held = self.held.saturating_sub(m.data.len() as u64);
        }
    }

    /// Take one chunk of `message_id`. A chunk without Byte-Range is the whole message
    /// (RFC 4975 §7.1.1 default `1-*/*`, its flag decides).
    pub fn accept(
        &mut self,
        message_id: &str,
        range: Option<ByteRange>,
        data: &Bytes,
        flag: EndFlag,
    ) -> Result<ChunkOutcome, ReassemblyError> {
        if flag == EndFlag::Abort {
            self.discard(message_id);
            return Ok(ChunkOutcome::Aborted);
        }
        let range = range.unwrap_or(ByteRange {
            start: 1,
            end: None,
            total: None,
        });
        let len = data.len() as u64;
        let start = range.start.saturating_sub(1);
        let end = start + len;
        if let Some(e) = range.end {
            if e != end && !(len == 0 && e + 1 == range.start) {
                self.discard(message_id);
                return Err(ReassemblyError::BadRange);
            }
        }
        if range.total.is_some_and(|t| end > t) {
            self.discard(message_id);
            return Err(ReassemblyError::BadRange);
        }
        // Fast path: a whole message in one chunk.
        if start == 0 && flag == EndFlag::Complete && !self.messages.contains_key(message_id) {
            if range.total.is_some_and(|t| t != end) {
                return Err(ReassemblyError::BadRange);
            }
            if len > self.cap {
                return Err(ReassemblyError::TooLarge);
            }
            return Ok(ChunkOutcome::Complete(data.clone()));
        }
        let grow = {
            let current = self
                .messages
                .get(message_id)
                .map_or(0, |m| m.data.len() as u64);
            end.saturating_sub(current)
        };
        if self.held + grow > self.cap || range.total.is_some_and(|t| t > self.cap) {
            self.discard(message_id);
            return Err(ReassemblyError::TooLarge);
        }
        let m = self.messages.entry(message_id.to_string()).or_default();
        if let Some(t) = range.total {
            if m.total.is_some_and(|old| old != t) {
                self.discard(message_id);
                return Err(ReassemblyError::BadRange);
            }
            m.total = Some(t);
        }
        if flag == EndFlag::Complete {
            m.last_seen = true;
            if m.total.is_some_and(|t| t != end) {
                self.discard(message_id);
                return Err(ReassemblyError::BadRange);
            }
            m.total = Some(end);
        }
        let (s, e) = (start as usize, end as usize);
        if m.data.len() < e {
            m.data.resize(e, 0);
        }
        m.data[s..e].copy_from_slice(data);
        self.held += grow;
        if len > 0 {
            m.add_interval(start, end);
        }
        if m.complete() {
            let done = self.messages.remove(message_id).unwrap_or_default();
            self.held = self.held.saturating_sub(done.data.len() as u64);
            let mut data = done.data;
            data.truncate(done.total.unwrap_or(0) as usize);
            return Ok(ChunkOutcome::Complete(Bytes::from(data)));
        }
        Ok(ChunkOutcome::Partial)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn br(s: &str) -> Option<ByteRange> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn split_sets_ranges_and_flags() {
        let body = Bytes::from_static(b"abcdefghij");
        let chunks = split(&body, 4);
        let ranges: Vec<String> = chunks.iter().map(|c| c.range.to_string()).collect();
        assert_eq!(ranges, vec!["1-4/10", "5-8/10", "9-10/10"]);
        assert_eq!(chunks[0].flag, EndFlag::Continuation);
        assert_eq!(chunks[2].flag, EndFlag::Complete);
        assert_eq!(split(&Bytes::new(), 4)[0].range.to_string(), "1-0/0");
    }

    #[test]
    fn rfc4975_section_5_1_example_with_star_end() {
        let mut r = Reassembler::new(1000);
        let a = r.accept(
            "4564dpWd",
            br("1-*/8"),
            &Bytes::from_static(b"abcd"),
            EndFlag::Continuation,
        );
        assert_eq!(a, Ok(ChunkOutcome::Partial));
        let b = r.accept(
            "4564dpWd",
            br("5-8/8"),
            &Bytes::from_static(b"EFGH"),
            EndFlag::Complete,
        );
        assert_eq!(
            b,
            Ok(ChunkOutcome::Complete(Bytes::from_static(b"abcdEFGH")))
        );
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn interleaved_out_of_order_and_abort() {
        let mut r = Reassembler::new(1000);
        assert_eq!(
            r.accept(
                "m1",
                br("4-6/6"),
                &Bytes::from_static(b"def"),
                EndFlag::Complete
            ),
            Ok(ChunkOutcome::Partial)
        );
        assert_eq!(
            r.accept(
                "m2",
                br("1-2/*"),
                &Bytes::from_static(b"xy"),
                EndFlag::Continuation
            ),
            Ok(ChunkOutcome::Partial)
        );
        assert_eq!(
            r.accept(
                "m1",
                br("1-3/6"),
                &Bytes::from_static(b"abc"),
                EndFlag::Continuation
            ),
            Ok(ChunkOutcome::Complete(Bytes::from_static(b"abcdef")))
        );
        assert_eq!(
            r.accept("m2", br("3-3/*"), &Bytes::from_static(b"z"), EndFlag::Abort),
            Ok(ChunkOutcome::Aborted)
        );
        assert_eq!(r.in_progress(), 0);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn cap_and_bad_ranges() {
        let mut r = Reassembler::new(5);
        assert_eq!(
            r.accept(
                "m",
                br("1-3/*"),
                &Bytes::from_static(b"abc"),
                EndFlag::Continuation
            ),
            Ok(ChunkOutcome::Partial)
        );
        assert_eq!(
            r.accept(
                "m",
                br("4-6/*"),
                &Bytes::from_static(b"def"),
                EndFlag::Continuation
            ),
            Err(ReassemblyError::TooLarge)
        );
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(
            r.accept(
                "n",
                br("1-3/100"),
                &Bytes::from_static(b"abc"),
                EndFlag::Continuation
            ),
            Err(ReassemblyError::TooLarge)
        );
        assert_eq!(
            r.accept(
                "n",
                br("1-4/4"),
                &Bytes::from_static(b"abc"),
                EndFlag::Complete
            ),
            Err(ReassemblyError::BadRange)
        );
        assert_eq!(
            r.accept("n", None, &Bytes::from_static(b"abcdef"), EndFlag::Complete),
            Err(ReassemblyError::TooLarge)
        );
        assert_eq!(
            r.accept("e", br("1-0/0"), &Bytes::new(), EndFlag::Complete),
            Ok(ChunkOutcome::Complete(Bytes::new()))
        );
    }
}
