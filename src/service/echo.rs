//! The echo and upper-case services, over streams (TCP, Unix) and UDP.
//!
//! A stream connection is read, split into frames by its [`FrameCodec`], and each frame's reply
//! is framed the same way. Replies to everything one read produced are written together, so a
//! client that pipelines many small messages costs one `write` per batch, not per message.
//! With `raw` framing and plain echo the bytes go straight back without any per-message work.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

use crate::codec::{FrameCodec, Framing, TextDecoder, TextEncoder, WireEncoding};
use crate::limits::{CLOSE_TIMEOUT, MAX_DATAGRAM_V6, READ_CHUNK};
use crate::server;
use crate::transport::deadline::IdleClock;
use crate::transport::udp::{self, DatagramServer, WildcardSocket};

/// The first read buffer of a connection; it doubles, up to [`READ_CHUNK`], while reads fill it.
const FIRST_READ: usize = 4 * 1024;

/// What the service does to each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Send it back unchanged.
    Echo,
    /// Send it back upper-cased as text in the wire encoding (the classic upper-case server).
    Upper,
}

/// Settings of one echo server.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// Echo or upper-case.
    pub transform: Transform,
    /// How messages are delimited on streams.
    pub framing: Framing,
    /// Largest `line`/`len` frame accepted.
    pub max_frame: usize,
    /// The wire's text encoding (used by `--upper` and `--greet`).
    pub encoding: WireEncoding,
    /// Sent to each stream client when it connects.
    pub greet: Option<String>,
    /// Close a stream connection after this long without input (zero: never).
    pub idle_timeout: Duration,
    /// Which senders UDP answers (streams are checked at accept by [`crate::access::Gate`]).
    pub access: crate::access::AccessPolicy,
}

/// Turns each received message into its reply, keeping the per-connection text state that
/// `raw` framing needs (a character may be split across reads).
pub struct Responder {
    transform: Transform,
    encoding: WireEncoding,
    /// Messages are complete (framed streams, datagrams), so each is decoded on its own.
    is_framed: bool,
    decoder: TextDecoder,
    encoder: TextEncoder,
    /// For `raw` utf-8: whether the previous chunk ended on a character boundary, which makes
    /// the ASCII fast path safe.
    at_boundary: bool,
    text: String,
    bytes: Vec<u8>,
}

impl Responder {
    /// A responder for one connection (or one UDP socket, with `is_framed` set).
    pub fn new(transform: Transform, encoding: WireEncoding, is_framed: bool) -> Self {
        Self {
            transform,
            encoding,
            is_framed,
            decoder: encoding.decoder(),
            encoder: encoding.encoder(),
            at_boundary: true,
            text: String::new(),
            bytes: Vec::new(),
        }
    }

    /// The reply to `msg`. Upper-casing ASCII is done in place; anything else is decoded,
    /// upper-cased by Unicode's rules (as Python's `str.upper`) and encoded back.
    pub fn reply<'a>(&'a mut self, msg: &'a mut [u8]) -> &'a [u8] {
        if self.transform == Transform::Echo {
            return msg;
        }
        let is_ascii_safe = self.encoding.is_utf8() && (self.is_framed || self.at_boundary);
        if is_ascii_safe && msg.is_ascii() {
            msg.make_ascii_uppercase();
            return msg;
        }
        self.text.clear();
        self.bytes.clear();
        if self.is_framed {
            self.encoding.decoder().decode(msg, true, &mut self.text);
            let upper = self.text.to_uppercase();
            self.encoding
                .encoder()
                .encode(&upper, true, &mut self.bytes);
        } else {
            self.decoder.decode(msg, false, &mut self.text);
            let upper = self.text.to_uppercase();
            self.encoder.encode(&upper, false, &mut self.bytes);
            // An ASCII byte never belongs to a multi-byte UTF-8 sequence.
            self.at_boundary = msg.last().is_none_or(|b| b.is_ascii());
        }
        &self.bytes
    }

    /// At the end of a `raw` stream, the reply to a character left unfinished by the last
    /// read: U+FFFD, as invalid bytes anywhere else become (empty for plain echo).
    pub fn finish(&mut self) -> &[u8] {
        self.text.clear();
        self.bytes.clear();
        if self.transform == Transform::Upper && !self.is_framed {
            self.decoder.decode(b"", true, &mut self.text);
            let upper = self.text.to_uppercase();
            self.encoder.encode(&upper, true, &mut self.bytes);
        }
        &self.bytes
    }
}

/// What one stream connection does with the bytes it reads, apart from reading and writing
/// them: the frames it splits, their replies, the greeting. [`serve_stream`] does the I/O.
struct EchoConn {
    codec: FrameCodec,
    responder: Responder,
    is_passthrough: bool,
    /// How much the next read asks for: it doubles, up to [`READ_CHUNK`], while reads fill it.
    chunk: usize,
}

impl EchoConn {
    /// The state of a new connection of a server set up as `config`.
    fn new(config: &EchoConfig) -> Self {
        Self {
            codec: FrameCodec::new(config.framing, config.max_frame),
            responder: Responder::new(
                config.transform,
                config.encoding,
                config.framing != Framing::Raw,
            ),
            is_passthrough: config.framing == Framing::Raw && config.transform == Transform::Echo,
            chunk: FIRST_READ,
        }
    }

    /// Plain echo with `raw` framing: what is read goes back as it is, with no work per message.
    fn is_passthrough(&self) -> bool {
        self.is_passthrough
    }

    /// Appends the greeting `config` asks for, framed, to `output`.
    fn greet(&mut self, config: &EchoConfig, output: &mut BytesMut) {
        if let Some(greet) = &config.greet {
            let text = match config.framing {
                // Raw, a greeting is a line of text: it gets its newline, unless it has one.
                Framing::Raw if greet.is_empty() => return,
                Framing::Raw if !greet.ends_with('\n') => format!("{greet}\n"),
                // In line framing the newline is the frame's: one typed in is not a second line.
                Framing::Line => greet
                    .strip_suffix('\n')
                    .map_or(greet.as_str(), |text| {
                        text.strip_suffix('\r').unwrap_or(text)
                    })
                    .to_string(),
                _ => greet.clone(),
            };
            let bytes = config.encoding.encode_message(&text);
            // Only a greeting longer than --max-frame fails, and then none is sent.
            let _ = self.codec.encode(&bytes, output);
        }
    }

    /// Makes room in `input` for the next read and returns how much it asks for.
    fn reserve(&self, input: &mut BytesMut) -> usize {
        if input.capacity() - input.len() < self.chunk / 2 {
            input.reserve(self.chunk);
        }
        input.capacity() - input.len()
    }

    /// Notes that a read asking for `asked` bytes got `got`: reads that fill their buffer
    /// make the next ones bigger.
    fn read(&mut self, asked: usize, got: usize) {
        if got == asked && self.chunk < READ_CHUNK {
            self.chunk *= 2;
        }
    }

    /// Decodes every complete frame in `input` and appends each reply, framed, to `output`;
    /// at EOF, the last frame too. An error (an oversized frame) ends the connection once
    /// `output` is written.
    fn respond(
        &mut self,
        input: &mut BytesMut,
        output: &mut BytesMut,
        is_eof: bool,
    ) -> Result<(), crate::codec::FrameError> {
        loop {
            let frame = if is_eof {
                self.codec.decode_eof(input)?
            } else {
                self.codec.decode(input)?
            };
            let Some(mut frame) = frame else {
                let tail = if is_eof { self.responder.finish() } else { &[] };
                if !tail.is_empty() {
                    self.codec.encode(tail, output)?;
                }
                return Ok(());
            };
            let reply = self.responder.reply(&mut frame);
            self.codec.encode(reply, output)?;
        }
    }
}

/// Serves one stream connection until the peer closes, the framing breaks, the idle timeout
/// passes or `shutdown` is cancelled. Errors are logged with the peer; none escapes.
pub async fn serve_stream<S>(
    mut stream: S,
    peer: String,
    config: Arc<EchoConfig>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = EchoConn::new(&config);
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    // Made once per connection, not per message: each new `cancelled()` future registers with
    // the token (a lock) and deregisters when dropped, which showed on the echo hot path.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    // Input restarts the clock; what the server writes does not.
    let idle = IdleClock::new(config.idle_timeout);
    let expired = idle.expired();
    tokio::pin!(expired);

    conn.greet(&config, &mut output);
    if write(&mut stream, &mut output, &peer, &mut cancelled)
        .await
        .is_err()
    {
        return leave_if_stopping(&mut stream, &shutdown).await;
    }

    loop {
        let spare = conn.reserve(&mut input);
        let read = tokio::select! {
            biased;
            read = stream.read_buf(&mut input) => read,
            () = &mut cancelled => return leave_if_stopping(&mut stream, &shutdown).await,
            () = &mut expired, if idle.is_on() => {
                tracing::info!(%peer, "closing: idle for {:?} (--idle-timeout)", config.idle_timeout);
                return;
            }
        };
        idle.touch();
        let is_eof = match read {
            Ok(0) => true,
            Ok(n) => {
                conn.read(spare, n);
                false
            }
            Err(err) => {
                tracing::info!(%peer, "connection lost: {err}");
                return;
            }
        };
        if conn.is_passthrough() {
            if is_eof {
                break;
            }
            if write(&mut stream, &mut input, &peer, &mut cancelled)
                .await
                .is_err()
            {
                return leave_if_stopping(&mut stream, &shutdown).await;
            }
            continue;
        }
        let verdict = conn.respond(&mut input, &mut output, is_eof);
        if write(&mut stream, &mut output, &peer, &mut cancelled)
            .await
            .is_err()
        {
            return leave_if_stopping(&mut stream, &shutdown).await;
        }
        if let Err(err) = verdict {
            tracing::warn!(%peer, "closing: {err}");
            // Gently: a close with the client's input unread would be a reset, and the client
            // could lose the replies it has not read yet.
            let _ =
                tokio::time::timeout(CLOSE_TIMEOUT, server::close_gently(&mut stream, &[])).await;
            return;
        }
        if is_eof {
            break;
        }
    }
    // The peer half-closed: everything owed has been written, so finish our side too.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
}

/// When the server is stopping (Ctrl-C, SIGTERM), ends the connection gently, within
/// [`CLOSE_TIMEOUT`]: closed with input unread, a socket sends a reset, and the client reads an
/// error instead of the end of the stream. Whether input is waiting cannot be asked of the
/// socket without a read the runtime may not have been told is ready yet, so every connection
/// is ended this way; a client that closes on the end of the stream is gone at once.
async fn leave_if_stopping<S>(stream: &mut S, shutdown: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if shutdown.is_cancelled() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, server::close_gently(stream, &[])).await;
    }
}

/// Writes and empties `buf`, logging a failure with the peer. Gives up when `shutdown` is
/// cancelled, so a client that stops reading cannot hold the server's shutdown hostage.
async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    peer: &str,
    cancelled: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Result<(), ()> {
    if buf.is_empty() {
        return Ok(());
    }
    let result = tokio::select! {
        biased;
        // The flush matters for TLS, whose last record may wait in its buffer otherwise.
        result = async { stream.write_all(buf).await?; stream.flush().await } => result,
        () = cancelled => {
            buf.clear();
            return Err(());
        }
    };
    buf.clear();
    result.map_err(|err| tracing::info!(%peer, "connection lost while writing: {err}"))
}

/// Answers each datagram on `socket` to its sender, from the address it was sent to, until
/// `shutdown` is cancelled. An empty datagram is a message too and gets an empty reply.
pub async fn serve_udp(socket: UdpSocket, config: Arc<EchoConfig>, shutdown: CancellationToken) {
    // Bound to one address, a reply can leave from nowhere else: the plain socket does.
    let is_wildcard = socket.local_addr().is_ok_and(udp::is_wildcard);
    if !is_wildcard {
        return serve_datagrams(socket, config, shutdown).await;
    }
    let socket = match WildcardSocket::new(socket) {
        Ok(socket) => socket,
        Err((err, socket)) => {
            tracing::warn!(
                "replies will leave from the address the kernel picks, not always the one a client sent to: {err}"
            );
            return serve_datagrams(socket, config, shutdown).await;
        }
    };
    serve_datagrams(socket, config, shutdown).await;
}

/// The loop of [`serve_udp`], over either kind of socket.
async fn serve_datagrams<S: DatagramServer>(
    socket: S,
    config: Arc<EchoConfig>,
    shutdown: CancellationToken,
) {
    let mut responder = Responder::new(config.transform, config.encoding, true);
    let mut buf = vec![0u8; MAX_DATAGRAM_V6];
    let mut too_big = server::Throttled::default();
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            () = shutdown.cancelled() => return,
        };
        let (len, peer, reply_from) = match received {
            Ok(received) => received,
            Err(err) => {
                // On Linux an ICMP error from an earlier reply can surface here; it concerns
                // one peer, not the server.
                tracing::debug!("udp receive error: {err}");
                continue;
            }
        };
        if !config.access.permits(peer.ip()) {
            tracing::debug!(%peer, "datagram ignored: sender not allowed (--allow/--deny)");
            continue;
        }
        tracing::debug!(%peer, len, "datagram");
        let reply = responder.reply(&mut buf[..len]);
        if let Err(err) = socket.send_to(reply, peer, reply_from).await {
            let max = udp::max_payload(peer);
            if reply.len() > max {
                // Upper-casing can lengthen text (ŉ is 2 bytes, ʼN 3): a user's problem, said
                // at the default level.
                // Each is one datagram's doing, from any address (UDP has no handshake): a
                // flood of them is logged a line a second, not a line a datagram.
                match too_big.note(std::time::Instant::now()) {
                    Some(0) => {
                        tracing::warn!(%peer, "reply not sent: upper-cased, a {len}-byte message grew to {} bytes, more than one datagram holds ({max})", reply.len())
                    }
                    Some(held) => {
                        tracing::warn!(%peer, "reply not sent: upper-cased, a {len}-byte message grew to {} bytes, more than one datagram holds ({max}); and {held} more such replies since the last line like this", reply.len())
                    }
                    None => {}
                }
            } else {
                tracing::info!(%peer, "reply not sent: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_handles_ascii_unicode_and_gbk() {
        let utf8 = WireEncoding::default();
        let mut r = Responder::new(Transform::Upper, utf8, true);
        assert_eq!(r.reply(&mut b"hello".to_vec()), b"HELLO");
        assert_eq!(
            r.reply(&mut "straße é".as_bytes().to_vec()),
            "STRASSE É".as_bytes()
        );
        let gbk = WireEncoding::for_label("gbk").unwrap();
        let mut r = Responder::new(Transform::Upper, gbk, true);
        let mut msg = gbk.encode_message("abc你好");
        assert_eq!(r.reply(&mut msg), &gbk.encode_message("ABC你好")[..]);
        // 0x81 0x61 is one gbk character whose trail byte is ASCII 'a': a byte-wise upper-caser
        // would turn it into 0x81 0x41, a different character.
        let mut msg = vec![0x81, 0x61, b'z'];
        assert_eq!(r.reply(&mut msg), &[0x81, 0x61, b'Z']);
    }

    #[test]
    fn raw_upper_keeps_characters_split_across_reads() {
        let mut r = Responder::new(Transform::Upper, WireEncoding::default(), false);
        let bytes = "é".as_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(r.reply(&mut bytes[..1].to_vec()));
        out.extend_from_slice(r.reply(&mut bytes[1..].to_vec()));
        out.extend_from_slice(r.reply(&mut b"x".to_vec()));
        assert_eq!(out, "ÉX".as_bytes());
        // A character cut off by the end of the stream is invalid, like any other.
        out.extend_from_slice(r.reply(&mut b"abc\xe2\x82".to_vec()));
        out.extend_from_slice(r.finish());
        assert_eq!(out, "ÉXABC\u{fffd}".as_bytes());
        let mut r = Responder::new(
            Transform::Upper,
            WireEncoding::for_label("gbk").unwrap(),
            false,
        );
        let mut out = r.reply(&mut b"x\x81".to_vec()).to_vec();
        out.extend_from_slice(r.finish());
        assert_eq!(out, b"X?");
    }

    #[test]
    fn echo_is_identity_even_for_invalid_text() {
        let mut r = Responder::new(Transform::Echo, WireEncoding::default(), false);
        assert_eq!(r.reply(&mut [0xff, 0, 1]), &[0xff, 0, 1]);
        let mut r = Responder::new(Transform::Upper, WireEncoding::default(), true);
        assert_eq!(r.reply(&mut [b'a', 0xff]), "A\u{fffd}".as_bytes());
    }
}
