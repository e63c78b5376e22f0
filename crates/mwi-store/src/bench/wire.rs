//! A deposit caller's MSRP leg on a bare TCP connection, for `bench deposit`.
//!
//! Through msrp-session a caller's SEND passes three tasks on the way out (sender, session,
//! connection) and four on the way back (connection, session, the SEND's own task, the
//! caller); at 27,000 msg/s that cost the load generator ~20 µs of CPU per message on the two
//! cores it shares with the server, and every hop's wait for a core was counted as the server's
//! latency. Here the caller's one task writes each SEND and reads the 200s on the socket itself,
//! with msrp-session's frames and decoder: the latency it reports runs from the SEND's `write`
//! to the `read` that brought its 200.
//!
//! The leg is the active side (RFC 6135 `a=setup:active`): it connects to the server's path,
//! binds with an empty SEND (RFC 4975 §5.4) and answers the greeting SEND with 200.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use msrp_session::{ids, Decoded, DecoderLimits, Frame, Method, MsrpDecoder, MsrpUri, StartLine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes read from the socket at a time.
const READ_BYTES: usize = 16 * 1024;

/// What became of one SEND.
#[derive(Debug)]
pub enum Answer {
    /// 200, this long after the SEND was written.
    Stored(Duration),
    /// Another final status.
    Refused(String),
}

/// One caller's MSRP connection and the SENDs it has in flight.
#[derive(Debug)]
pub struct WireLeg {
    stream: TcpStream,
    local: MsrpUri,
    to: Vec<MsrpUri>,
    decoder: MsrpDecoder,
    read_buf: Vec<u8>,
    /// Transaction ids of unanswered SENDs, with when each was written.
    in_flight: VecDeque<(String, Instant)>,
    /// What is encoded and not written yet: our SENDs, and 200s owed to the server's own
    /// SENDs (the greeting).
    out: BytesMut,
}

impl WireLeg {
    /// The path to offer in SDP: the leg connects, so its port is never dialled.
    pub fn local_path(host: &str) -> MsrpUri {
        MsrpUri::new(false, host, 9, ids::session_id())
    }

    /// Connects to the first hop of the server's path.
    pub async fn connect(local: MsrpUri, to: Vec<MsrpUri>) -> anyhow::Result<Self> {
        let hop = to.first().context("the answer has no MSRP path")?;
        let stream = TcpStream::connect(hop.authority())
            .await
            .with_context(|| format!("connect to {}", hop.authority()))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            local,
            to,
            decoder: MsrpDecoder::new(DecoderLimits::default()),
            read_buf: vec![0; READ_BYTES],
            in_flight: VecDeque::new(),
            out: BytesMut::new(),
        })
    }

    /// Binds with an empty SEND and waits for its 200 and for the server's first SEND (the
    /// greeting, SPEC §1), which is answered.
    pub async fn bind(&mut self, wait: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        let bind = self.send_frame(ids::transaction_id(), None);
        bind.encode(&mut self.out);
        self.flush().await?;
        let (mut bound, mut greeted) = (false, false);
        while !(bound && greeted) {
            tokio::time::timeout_at(deadline, self.read_some())
                .await
                .map_err(|_| anyhow!("no bind 200 and greeting within {wait:?}"))??;
            while let Some(frame) = self.next_frame()? {
                match frame.start {
                    StartLine::Response { code: 200, .. }
                        if frame.transaction_id == bind.transaction_id =>
                    {
                        bound = true
                    }
                    StartLine::Response { code, .. } => bail!("bind SEND answered {code}"),
                    StartLine::Request(_) => {
                        greeted = true;
                        self.owe_reply(&frame);
                    }
                }
            }
            self.flush().await?;
        }
        Ok(())
    }

    /// SENDs written and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// When the oldest unanswered SEND was written.
    pub fn oldest_in_flight(&self) -> Option<Instant> {
        self.in_flight.front().map(|(_, written)| *written)
    }

    /// Encodes one complete message as a SEND, written by the next [`WireLeg::flush`].
    pub fn queue_send(&mut self, content_type: &str, body: Bytes) {
        let tid = ids::transaction_id();
        self.send_frame(tid.clone(), Some((content_type, body)))
            .encode(&mut self.out);
        self.in_flight.push_back((tid, Instant::now()));
    }

    /// Writes what is encoded in one `write`, as a client with several SENDs ready does.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.out.is_empty() {
            let out = self.out.split().freeze();
            self.stream.write_all(&out).await?;
        }
        Ok(())
    }

    /// A complete SEND on this leg; without a body it is the empty bind SEND (RFC 4975 §5.4).
    fn send_frame(&self, tid: String, body: Option<(&str, Bytes)>) -> Frame {
        let mut send = Frame::request(
            tid,
            Method::Send,
            &self.to,
            std::slice::from_ref(&self.local),
        );
        send.push_header("Message-ID", ids::message_id());
        match body {
            Some((content_type, body)) => {
                send.push_header("Byte-Range", format!("1-{n}/{n}", n = body.len()));
                send.push_header("Content-Type", content_type);
                send.body = Some(body);
            }
            None => send.push_header("Byte-Range", "1-0/0"),
        }
        send
    }

    /// Waits for what the server sends next and returns the answers it brought. Cancel-safe
    /// unless the server sent a request of its own: the `read` is the only other await.
    pub async fn answers(&mut self) -> anyhow::Result<Vec<Answer>> {
        self.read_some().await?;
        let read_at = Instant::now();
        let mut out = Vec::new();
        while let Some(frame) = self.next_frame()? {
            match frame.start {
                StartLine::Response { code, ref comment } => {
                    let Some(at) = self
                        .in_flight
                        .iter()
                        .position(|(tid, _)| *tid == frame.transaction_id)
                    else {
                        continue;
                    };
                    let Some((_, written)) = self.in_flight.remove(at) else {
                        continue;
                    };
                    out.push(if code == 200 {
                        Answer::Stored(read_at.duration_since(written))
                    } else {
                        Answer::Refused(format!("{code} {}", comment.as_deref().unwrap_or("")))
                    });
                }
                StartLine::Request(_) => self.owe_reply(&frame),
            }
        }
        self.flush().await?;
        Ok(out)
    }

    /// Reads once into the decoder; a closed connection is an error.
    async fn read_some(&mut self) -> anyhow::Result<()> {
        let n = self.stream.read(&mut self.read_buf).await?;
        if n == 0 {
            bail!("the server closed the MSRP connection");
        }
        self.decoder
            .feed(self.read_buf.get(..n).unwrap_or_default());
        Ok(())
    }

    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        match self.decoder.decode()? {
            Some(Decoded::Frame(f)) => Ok(Some(f)),
            Some(Decoded::Rejected(r)) => bail!("unreadable frame from the server: {}", r.reason),
            None => Ok(None),
        }
    }

    /// Queues the 200 for a request of the server's (RFC 4975 §7.2).
    fn owe_reply(&mut self, request: &Frame) {
        if request.method() == Some(&Method::Send) {
            request
                .response_to(200, None, &self.local)
                .encode(&mut self.out);
        }
    }
}
