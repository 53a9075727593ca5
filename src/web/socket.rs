//! A browser's WebSocket: the opening handshake, done here rather than by axum's extractor, and
//! the chat's lines written as text frames the way a TCP member's lines are written.
//!
//! Why not axum's `WebSocket`: it takes one `Message` per frame, and the library copies each
//! into its write buffer behind a `Sink`. A burst of 1,000 lines to 100 browsers cost the server
//! about four times the CPU of the same burst to TCP members (per-frame work in the library, a
//! `Bytes` clone and a UTF-8 check per member per line, a copy of every line for every member),
//! and a bigger write buffer would have been kept by every browser once sent a burst. Opened
//! here, the connection is ours: tungstenite still reads every frame (masking, pings, close,
//! UTF-8, the size limits) and writes the control frames (pongs, pings, close), while
//! [`Browser::send_lines`] writes the data frames itself. A frame from server to browser is not
//! masked (RFC 6455 §5.1), so it is the same bytes for every member: a header of 2 to 10 bytes
//! and the line exactly as the hub rendered it, shared by every member. A batch of lines goes
//! out as header and payload slices in a few vectored writes, nothing copied.
//!
//! The two writers never interleave within a frame: socktalk's frames are written only after
//! tungstenite's pending bytes are flushed, and tungstenite writes only between socktalk's
//! batches. A batch cut short (a member kicked for not reading) may have left half a frame on
//! the wire: [`Browser::finish_frame`] completes it before anything else is written, and a
//! session that cannot finish it closes the connection without a close frame rather than send
//! one inside a frame.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWrite;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::chat::outbox::Outgoing;

/// The upgraded connection, with tungstenite on it.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The most slices one vectored write is given (Linux takes at most 1,024): 512 frames, a
/// burst of 1,000 lines in two or three system calls.
const MAX_SLICES: usize = 1024;

/// The `Sec-WebSocket-Key` of a request that asks properly for a WebSocket (RFC 6455 §4.2.1),
/// or the refusal to answer it with: the statuses axum's extractor gave, with words that say
/// what was missing.
#[allow(clippy::result_large_err)] // a refusal is the response itself, built once per request
pub fn handshake_key(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, Response> {
    let refuse = |status: StatusCode, why: &str| {
        Err((status, format!("not a websocket handshake: {why}\n")).into_response())
    };
    if method != Method::GET {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "the method must be GET");
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the Connection header must include 'upgrade'",
        );
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the Upgrade header must be 'websocket'",
        );
    }
    let is_version_13 = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"13");
    if !is_version_13 {
        let mut refusal = (
            StatusCode::BAD_REQUEST,
            "not a websocket handshake: Sec-WebSocket-Version must be 13\n",
        )
            .into_response();
        // The version this server speaks (RFC 6455 §4.4).
        refusal.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(refusal);
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() => Ok(key.clone()),
        _ => refuse(
            StatusCode::BAD_REQUEST,
            "the Sec-WebSocket-Key header is missing",
        ),
    }
}

/// Whether the comma-separated list in header `name` holds `token` (case-insensitively):
/// `Connection: keep-alive, Upgrade` asks for an upgrade.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The refusal for a request that asked properly but whose connection cannot be taken over
/// (HTTP/1.0).
pub fn not_upgradable() -> Response {
    (
        StatusCode::UPGRADE_REQUIRED,
        "not a websocket handshake: this connection cannot be upgraded (HTTP/1.1 is needed)\n",
    )
        .into_response()
}

/// The answer that opens the WebSocket (RFC 6455 §4.2.2).
pub fn accepted(key: &HeaderValue) -> Response {
    let accept = derive_accept_key(key.as_bytes());
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// One browser's WebSocket: tungstenite for what it reads and its control frames, socktalk's
/// own writes for the chat's lines.
pub struct Browser {
    socket: Socket,
    /// The batch of frames being written, kept here so that a write cut short can be finished
    /// (`None` between batches: an idle browser holds nothing).
    pending: Option<Frames>,
}

impl Browser {
    pub fn new(socket: Socket) -> Self {
        Self {
            socket,
            pending: None,
        }
    }

    /// The next message the browser sent (tungstenite answers pings and close frames itself);
    /// `None` once the connection is closed. Cancel-safe. Never called with a frame of ours
    /// half written: tungstenite may write its answers here.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        debug_assert!(!self.is_mid_frame());
        self.socket.next().await
    }

    /// Sends a control frame (a ping, a close) through tungstenite. Refused while a frame of
    /// ours is half written: it would land inside it.
    pub async fn send_control(&mut self, message: Message) -> Result<(), WsError> {
        if self.is_mid_frame() {
            return Err(cut_short());
        }
        self.socket.send(message).await
    }

    /// Writes out what tungstenite has queued (its answer to the browser's close frame).
    pub async fn flush_control(&mut self) -> Result<(), WsError> {
        if self.is_mid_frame() {
            return Err(cut_short());
        }
        self.socket.flush().await
    }

    /// Whether a frame of ours was cut short: part of it is on the wire, the rest is not.
    pub fn is_mid_frame(&self) -> bool {
        self.pending.as_ref().is_some_and(Frames::is_mid_frame)
    }

    /// Sends each non-empty line of `out` as a text frame, all in a few vectored writes.
    ///
    /// Cancelling it leaves what was not written in the browser's hands: if that ends inside a
    /// frame, [`finish_frame`](Self::finish_frame) must complete it before anything else is
    /// written, and nothing else is (see [`send_control`](Self::send_control)).
    pub async fn send_lines(&mut self, out: Outgoing) -> Result<(), WsError> {
        debug_assert!(!self.is_mid_frame(), "a new batch after one cut mid-frame");
        // tungstenite's own bytes first (a pong, or a ping the browser was slow to take): ours
        // then start on a frame boundary.
        self.socket.flush().await?;
        self.pending = Some(Frames::new(out.into_chunks()));
        std::future::poll_fn(|cx| self.poll_write_pending(cx, false)).await?;
        self.pending = None;
        // A TLS connection's last record may wait in its buffer otherwise.
        std::future::poll_fn(|cx| Pin::new(self.socket.get_mut()).poll_flush(cx)).await?;
        Ok(())
    }

    /// Completes a frame cut short, if any, and forgets the frames after it: after it, the
    /// connection is on a frame boundary again.
    pub async fn finish_frame(&mut self) -> Result<(), WsError> {
        std::future::poll_fn(|cx| self.poll_write_pending(cx, true)).await?;
        self.pending = None;
        std::future::poll_fn(|cx| Pin::new(self.socket.get_mut()).poll_flush(cx)).await?;
        Ok(())
    }

    /// Writes the pending frames (only up to the end of the one begun, with `to_frame_end`),
    /// as many slices a write as the stream takes. The slices live on this poll's stack, not in
    /// the session's future, which every idle browser keeps.
    fn poll_write_pending(
        &mut self,
        cx: &mut Context<'_>,
        to_frame_end: bool,
    ) -> Poll<io::Result<()>> {
        let Some(frames) = self.pending.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let stream = self.socket.get_mut();
        loop {
            if frames.is_done() || (to_frame_end && !frames.is_mid_frame()) {
                return Poll::Ready(Ok(()));
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = frames.slices(&mut slices, to_frame_end);
            let written = ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            frames.advance(written);
        }
    }
}

fn cut_short() -> WsError {
    WsError::Io(io::Error::other("a data frame was cut short"))
}

/// A text frame's header for a payload of `len` bytes: FIN and the text opcode, then the length
/// in 7 bits, or 126 and 16 bits, or 127 and 64 bits (RFC 6455 §5.2). Never masked: the server
/// does not mask.
#[derive(Debug, Clone, Copy)]
struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    /// FIN set, opcode 1 (text).
    const FIN_TEXT: u8 = 0x81;

    fn text(len: usize) -> Self {
        let mut bytes = [0; 10];
        bytes[0] = Self::FIN_TEXT;
        let header_len = if len < 126 {
            bytes[1] = len as u8;
            2
        } else if let Ok(len) = u16::try_from(len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        Self {
            bytes,
            len: header_len,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// One line as a frame: its header, and where its payload is in the batch's chunks.
#[derive(Debug, Clone, Copy)]
struct Span {
    header: Header,
    chunk: usize,
    start: usize,
    end: usize,
}

impl Span {
    fn len(&self) -> usize {
        usize::from(self.header.len) + self.end - self.start
    }
}

/// A batch of lines as text frames, written a vectored write at a time: each line's payload is
/// borrowed from the hub's chunk (shared by every member), only the headers are this member's.
#[derive(Debug)]
struct Frames {
    chunks: VecDeque<Bytes>,
    spans: Vec<Span>,
    /// Frames written whole.
    done: usize,
    /// Bytes of frame `done` written.
    partial: usize,
}

impl Frames {
    /// Each non-empty `\n`-terminated line of `chunks` (the last may lack its newline) as a
    /// text frame. The hub renders a browser's lines as JSON, UTF-8 by construction; a newline
    /// never falls inside a UTF-8 sequence, so every line is a valid text payload.
    fn new(chunks: VecDeque<Bytes>) -> Self {
        let mut spans = Vec::new();
        for (index, chunk) in chunks.iter().enumerate() {
            debug_assert!(std::str::from_utf8(chunk).is_ok(), "{chunk:?}");
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', chunk).chain([chunk.len()]) {
                if end > start {
                    spans.push(Span {
                        header: Header::text(end - start),
                        chunk: index,
                        start,
                        end,
                    });
                }
                start = end + 1;
            }
        }
        Self {
            chunks,
            spans,
            done: 0,
            partial: 0,
        }
    }

    fn is_done(&self) -> bool {
        self.done == self.spans.len()
    }

    fn is_mid_frame(&self) -> bool {
        self.partial > 0
    }

    /// Fills `dst` with what is left to write, in order (only the rest of the frame begun, with
    /// `to_frame_end`); returns how many slices it filled.
    fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>], to_frame_end: bool) -> usize {
        let mut filled = 0;
        let mut skip = self.partial;
        for span in &self.spans[self.done..] {
            if filled + 2 > dst.len() {
                break;
            }
            let header = span.header.as_bytes();
            let payload = &self.chunks[span.chunk][span.start..span.end];
            if skip < header.len() {
                dst[filled] = IoSlice::new(&header[skip..]);
                dst[filled + 1] = IoSlice::new(payload);
                filled += 2;
            } else {
                dst[filled] = IoSlice::new(&payload[skip - header.len()..]);
                filled += 1;
            }
            skip = 0;
            if to_frame_end {
                break;
            }
        }
        filled
    }

    /// Notes `written` more bytes as written.
    fn advance(&mut self, mut written: usize) {
        while written > 0 && !self.is_done() {
            let left = self.spans[self.done].len() - self.partial;
            if written < left {
                self.partial += written;
                return;
            }
            written -= left;
            self.done += 1;
            self.partial = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_frame_header_carries_its_length_in_the_shortest_form() {
        let header = |len: usize| Header::text(len).as_bytes().to_vec();
        assert_eq!(header(0), [0x81, 0]);
        assert_eq!(header(125), [0x81, 125]);
        assert_eq!(header(126), [0x81, 126, 0, 126]);
        assert_eq!(header(65_535), [0x81, 126, 0xff, 0xff]);
        assert_eq!(header(65_536), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    /// What writing `frames` puts on the wire, taking at most `step` bytes per write.
    fn wire(frames: &mut Frames, step: usize, to_frame_end: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        loop {
            if frames.is_done() || (to_frame_end && !frames.is_mid_frame()) {
                return wire;
            }
            let mut slices = [IoSlice::new(&[]); 5];
            let count = frames.slices(&mut slices, to_frame_end);
            let all: Vec<u8> = slices[..count].iter().flat_map(|s| s.to_vec()).collect();
            let taken = all.len().min(step);
            wire.extend_from_slice(&all[..taken]);
            frames.advance(taken);
        }
    }

    fn frames(chunks: &[&'static [u8]]) -> Frames {
        Frames::new(chunks.iter().map(|c| Bytes::from_static(c)).collect())
    }

    #[test]
    fn each_line_becomes_a_frame_whatever_the_writes_take() {
        let expected = b"\x81\x01a\x81\x02bc\x81\x03def\x81\x01g".to_vec();
        for step in [1, 2, 3, 5, 7, 100] {
            let mut batch = frames(&[b"a\nbc\n", b"\n", b"def\ng\n"]);
            assert_eq!(wire(&mut batch, step, false), expected, "step {step}");
        }
        let long = "x".repeat(300);
        let mut batch = Frames::new(VecDeque::from([Bytes::from(format!("{long}\n"))]));
        let mut expected = vec![0x81, 126, 1, 44];
        expected.extend_from_slice(long.as_bytes());
        assert_eq!(wire(&mut batch, 64, false), expected);
    }

    #[test]
    fn a_frame_cut_short_is_finished_and_the_rest_forgotten() {
        let mut batch = frames(&[b"abc\ndef\n"]);
        // The header and "a" written.
        batch.advance(3);
        assert!(batch.is_mid_frame());
        // The rest of "abc"'s frame only, then a frame boundary.
        assert_eq!(wire(&mut batch, 1, true), b"bc");
        assert!(!batch.is_mid_frame() && !batch.is_done());
        // Cut in its header.
        let mut batch = frames(&[b"abc\ndef\n"]);
        batch.advance(1);
        assert_eq!(wire(&mut batch, 100, true), b"\x03abc");
    }
}
