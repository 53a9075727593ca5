//! `socktalk connect`: a netcat-class client. Standard input goes to the socket and the socket
//! to standard output, both at once.
//!
//! Streams (TCP, Unix): on stdin EOF the write side is shut down (a half-close, so the peer
//! sees EOF and can still answer); the client exits when the peer closes. With `--frame line`
//! or `--frame len`, each stdin line is sent as one frame and each received frame is printed as
//! one line. With `--idle-timeout`, a connection that carries nothing either way for that long
//! is closed, and the client exits with [`Error::TimedOut`] (exit code 3).
//!
//! UDP: each stdin read (`raw`, up to the largest datagram) or line (`line`) is one datagram;
//! each reply datagram is printed. After stdin ends the client waits until every datagram it
//! sent has had a reply, or for `--linger` without any, then exits.
//!
//! [`listen`] is the other end, `connect -l`: it waits for a peer, then runs the same pump.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Stdout};
use tokio::net::UdpSocket;
use tokio_util::codec::{Encoder, FramedRead};

use crate::codec::{
    FrameBatches, FrameCodec, FrameError, Framing, Transcoder, WireEncoding, terminal_safe,
};
use crate::endpoint::{Proto, display_addr};
use crate::error::{Error, Result, named, stdout_error};
use crate::limits::MAX_DATAGRAM_V6;
use crate::transport::deadline::{Idle, IdleClock};
use crate::transport::{tls, udp};

pub mod listen;
mod stdio;

use stdio::{StdinThread, StdoutThread};

/// Settings of the `connect` client.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// How messages are delimited on the wire.
    pub framing: Framing,
    /// Largest frame accepted from the peer (and from one stdin line).
    pub max_frame: usize,
    /// The wire's text encoding; the terminal side is utf-8.
    pub encoding: WireEncoding,
    /// UDP: how long to wait for outstanding replies after stdin ends.
    pub linger: Duration,
    /// Streams: close the connection when nothing is sent or received for this long (zero:
    /// never).
    pub idle_timeout: Duration,
    /// The peer called us (`connect -l`): what it sends first is judged as a client's, not a
    /// server's.
    pub is_listening: bool,
}

impl ConnectConfig {
    /// Stdin is cut into chunks (`raw`) or lines (`line`, `len`).
    fn stdin_codec(&self) -> FrameCodec {
        let framing = match self.framing {
            Framing::Raw => Framing::Raw,
            Framing::Line | Framing::Len => Framing::Line,
        };
        FrameCodec::new(framing, self.max_frame)
    }

    /// What to say when the peer's first bytes are TLS on a plain connection.
    fn tls_hint(&self) -> &'static str {
        if self.is_listening {
            tls::TLS_CLIENT_HINT
        } else {
            tls::TLS_HINT
        }
    }
}

/// Standard input as the stream pump reads it: cut into chunks or lines, read in batches, and
/// transcoded to the wire's encoding. One lives as long as the process, so that `connect -l -k`
/// hands each peer in turn what stdin has left: bytes read but not yet sent when a peer ended,
/// a read still in flight, are the next peer's, not lost with the first one's session.
pub struct Input {
    batches: FrameBatches<StdinThread>,
    /// Raw text is a stream: a character may be split between two reads.
    to_wire: Transcoder,
    /// Stdin has ended: later sessions send nothing and half-close at once.
    is_ended: bool,
    /// Stdin failed or broke its framing: nothing more can be read from it.
    is_broken: bool,
    /// Taken from stdin, ready for the wire, not yet written: what a session that ended
    /// mid-write (its peer gone, `-i`) leaves for the next.
    unsent: BytesMut,
}

impl Input {
    /// Standard input, for sessions with `config`.
    pub fn new(config: &ConnectConfig) -> Self {
        Self {
            // Every line a read brings goes out in one write, not one write each.
            batches: FrameBatches::new(StdinThread::spawn(), config.stdin_codec()),
            to_wire: Transcoder::new(WireEncoding::default(), config.encoding),
            is_ended: false,
            is_broken: false,
            unsent: BytesMut::new(),
        }
    }

    /// Whether stdin failed or broke its framing: a session it ended cannot be followed by
    /// another.
    pub fn is_broken(&self) -> bool {
        self.is_broken
    }
}

/// Pumps stdin to `stream` and `stream` to stdout until the peer closes (and, for piped stdin,
/// until all of it is sent), or until the connection has been idle for `--idle-timeout`.
///
/// # Errors
/// A broken framing from the peer, an I/O error on the socket or stdout, or
/// [`Error::TimedOut`] for an idle connection.
pub async fn stream<S>(stream: S, config: &ConnectConfig) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    stream_from(stream, config, &mut Input::new(config)).await
}

/// As [`stream`], with stdin read from `input`, which may have served sessions before this one
/// and may serve more after it.
///
/// # Errors
/// As [`stream`].
pub async fn stream_from<S>(stream: S, config: &ConnectConfig, input: &mut Input) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let clock = IdleClock::new(config.idle_timeout);
    tokio::select! {
        result = pump(Idle::new(stream, clock.clone()), config, input, &clock) => result,
        // Dropping the pump closes the connection.
        () = clock.expired() => Err(Error::TimedOut(format!(
            "nothing sent or received for {:?} (--idle-timeout): closed the connection",
            clock.limit()
        ))),
    }
}

/// Runs both directions; `clock` is the connection's idle clock, which output reaching stdout
/// touches too: a peer whose bytes are still being printed is not idle.
async fn pump<S>(
    stream: S,
    config: &ConnectConfig,
    input: &mut Input,
    clock: &IdleClock,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send,
{
    let (reader, writer) = tokio::io::split(stream);
    let progress = Progress::default();
    let upload = upload(writer, config, input, &progress);
    let download = download(reader, config, clock);
    tokio::pin!(upload, download);
    let mut is_uploading = true;
    // The peer aborted while we were sending. Only one of the two directions is told of a
    // reset; if it was this one, the download ends as if the peer had closed, and the session
    // must not end as if all went well.
    let mut reset = None;
    // Both directions run at once: waiting on one while the other is blocked could deadlock
    // against an echo server whose replies fill our receive buffer.
    loop {
        tokio::select! {
            result = &mut upload, if is_uploading => {
                is_uploading = false;
                match result {
                    Ok(()) => {}
                    // A stdin line over --max-frame (or a failing stdin) ends the session: going
                    // on would leave the write side open and wait forever for the peer to close.
                    Err(Upload::Stdin(err)) => return Err(err),
                    Err(Upload::Socket(err)) => {
                        // The peer may have closed its read side; keep printing what it sends.
                        tracing::info!("sending stopped: {err}");
                        if is_reset(&err) {
                            reset = Some(err);
                        }
                    }
                }
            }
            result = &mut download => {
                result?;
                if let Some(err) = reset {
                    return Err(err);
                }
                // The peer has finished sending. Piped stdin still goes out, while it flows: a
                // server may half-close first and read on to the end. A person at a terminal
                // is done, and so is a pipe silent for --linger (the peer may be gone for good);
                // a peer slow to read is waited for.
                if !is_uploading || std::io::stdin().is_terminal() {
                    return Ok(());
                }
                // A write blocked on a slow reader is progress to come, not silence.
                let tick = config.linger.max(crate::limits::LINGER_TICK_MIN);
                loop {
                    let before = progress.sent.load(Ordering::Relaxed);
                    tokio::select! {
                        result = &mut upload => {
                            return match result {
                                Ok(()) => Ok(()),
                                Err(Upload::Stdin(err)) => Err(err),
                                Err(Upload::Socket(err)) => {
                                    tracing::info!("sending stopped: {err}");
                                    Ok(())
                                }
                            };
                        }
                        () = tokio::time::sleep(tick) => {
                            let is_stalled = progress.sent.load(Ordering::Relaxed) == before;
                            if is_stalled && progress.is_waiting_for_stdin.load(Ordering::Relaxed) {
                                tracing::info!("the peer is done and stdin was silent for {:?}", config.linger);
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether `err` is the peer's reset (`connection reset by peer`), which only one direction
/// hears of.
fn is_reset(err: &Error) -> bool {
    matches!(err, Error::Io(err) if err.kind() == std::io::ErrorKind::ConnectionReset)
}

/// Why [`upload`] stopped before stdin's end.
enum Upload {
    /// Standard input failed or broke its framing: fatal.
    Stdin(Error),
    /// The socket refused more bytes: the peer may still be sending.
    Socket(Error),
}

/// How far [`upload`] has got, for deciding whether a pipe has gone quiet.
#[derive(Default)]
struct Progress {
    /// Bytes written to the socket.
    sent: AtomicU64,
    /// Waiting for stdin (rather than for the socket to take more).
    is_waiting_for_stdin: AtomicBool,
}

/// Sends stdin (what `input` has left of it) to `writer`, noting its `progress`, then shuts
/// its write side down.
async fn upload<W: AsyncWrite>(
    writer: W,
    config: &ConnectConfig,
    input: &mut Input,
    progress: &Progress,
) -> Result<(), Upload> {
    let socket = |err: std::io::Error| Upload::Socket(err.into());
    tokio::pin!(writer);
    let mut wire_codec = FrameCodec::new(config.framing, usize::MAX);
    // What a session before this one could not send goes first.
    send_unsent(writer.as_mut(), &mut input.unsent, progress)
        .await
        .map_err(socket)?;
    while !input.is_ended {
        progress.is_waiting_for_stdin.store(true, Ordering::Relaxed);
        // Cancel-safe: a batch is taken from stdin only by the call that returns it.
        let batch = input.batches.next().await;
        progress
            .is_waiting_for_stdin
            .store(false, Ordering::Relaxed);
        let Some(batch) = batch else {
            input.is_ended = true;
            input
                .unsent
                .extend_from_slice(input.to_wire.feed(b"", true));
            break;
        };
        // What came before a broken line is still sent.
        let mut broken = None;
        for chunk in batch {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => {
                    broken = Some(stdin_error(err));
                    break;
                }
            };
            if config.framing == Framing::Raw {
                input
                    .unsent
                    .extend_from_slice(input.to_wire.feed(&chunk, false));
            } else if let Err(err) =
                wire_codec.encode(&config.encoding.to_wire(&chunk), &mut input.unsent)
            {
                broken = Some(frame_error(err));
                break;
            }
        }
        send_unsent(writer.as_mut(), &mut input.unsent, progress)
            .await
            .map_err(socket)?;
        if let Some(err) = broken {
            input.is_broken = true;
            return Err(Upload::Stdin(err));
        }
    }
    send_unsent(writer.as_mut(), &mut input.unsent, progress)
        .await
        .map_err(socket)?;
    writer.flush().await.map_err(socket)?;
    writer.shutdown().await.map_err(socket)?;
    Ok(())
}

/// Writes out `unsent`, removing from it what the socket takes. Cancel-safe, unlike
/// `write_all`: a session that ends mid-write (`connect -l -k`) leaves the rest in `unsent`,
/// for the next peer, instead of losing it.
async fn send_unsent<W: AsyncWrite>(
    mut writer: std::pin::Pin<&mut W>,
    unsent: &mut BytesMut,
    progress: &Progress,
) -> std::io::Result<()> {
    while !unsent.is_empty() {
        let written = writer.write(unsent).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        unsent.advance(written);
        progress.sent.fetch_add(written as u64, Ordering::Relaxed);
    }
    Ok(())
}

async fn download<R: AsyncRead + Unpin>(
    reader: R,
    config: &ConnectConfig,
    clock: &IdleClock,
) -> Result<()> {
    // Every message already received is printed with one write, not one write each.
    let codec = FrameCodec::new(config.framing, config.max_frame);
    let mut batches = FrameBatches::new(reader, codec);
    let mut from_wire = Transcoder::new(config.encoding, WireEncoding::default());
    let mut stdout = StdoutThread::spawn(clock.clone()).map_err(stdout_error)?;
    let mut out = Vec::new();
    let mut is_first = true;
    loop {
        // A failed write to stdout ends the session at once, not at the peer's next message.
        let batch = tokio::select! {
            batch = batches.next() => batch,
            err = stdout.failed() => return Err(stdout_error(err)),
        };
        let Some(batch) = batch else { break };
        // What came before a broken frame is still printed.
        let mut broken = None;
        for frame in batch {
            let frame = match frame {
                Ok(frame) => frame,
                Err(err) => {
                    let received = batches.read_buffer();
                    let foreign = is_first.then(|| not_a_frame(received, config)).flatten();
                    broken = Some(foreign.unwrap_or_else(|| frame_error(err)));
                    break;
                }
            };
            if std::mem::take(&mut is_first) && tls::looks_like_tls(&frame) {
                tracing::warn!("{}", config.tls_hint());
            }
            if config.framing == Framing::Raw {
                out.extend_from_slice(from_wire.feed(&frame, false));
            } else {
                out.extend_from_slice(&config.encoding.from_wire(&frame));
                out.push(b'\n');
            }
        }
        let next = Vec::with_capacity(out.len());
        stdout
            .write(std::mem::replace(&mut out, next))
            .await
            .map_err(stdout_error)?;
        if let Some(err) = broken {
            stdout.finish().await.map_err(stdout_error)?;
            return Err(err);
        }
    }
    let rest = from_wire.feed(b"", true).to_vec();
    stdout.write(rest).await.map_err(stdout_error)?;
    stdout.finish().await.map_err(stdout_error)
}

/// What broke the framing at the start of the stream, if it was no frame at all: a TLS
/// server's alert to a plain client (a TLS client's handshake, to `connect -l`), or the one
/// line of text a socktalk server turns a client away with (`refused: server full (--max-conns
/// 10)`). Read as a `len` prefix, either announces hundreds of megabytes.
fn not_a_frame(received: &[u8], config: &ConnectConfig) -> Option<Error> {
    let error = |kind, text: String| Some(Error::Io(std::io::Error::new(kind, text)));
    if tls::looks_like_tls(received) {
        return error(
            std::io::ErrorKind::InvalidData,
            config.tls_hint().to_string(),
        );
    }
    if config.is_listening {
        return None;
    }
    let line = received.strip_prefix(b"refused: ")?;
    let reason = line.split(|&byte| byte == b'\n').next().unwrap_or(line);
    error(
        std::io::ErrorKind::ConnectionRefused,
        format!(
            "the server refused the connection: {}",
            terminal_safe(&String::from_utf8_lossy(reason))
        ),
    )
}

/// Writes one received message to stdout, with a newline after it when `is_line`.
async fn print_message(stdout: &mut Stdout, message: &[u8], is_line: bool) -> Result<()> {
    stdout.write_all(message).await.map_err(stdout_error)?;
    if is_line {
        stdout.write_all(b"\n").await.map_err(stdout_error)?;
    }
    stdout.flush().await.map_err(stdout_error)?;
    Ok(())
}

/// Sends stdin to `peer` as datagrams and prints each reply.
///
/// # Errors
/// [`Error::Connect`] when the peer's port is closed (ICMP port unreachable), or an I/O error.
pub async fn udp(peer: SocketAddr, config: &ConnectConfig) -> Result<()> {
    let socket = udp::connect(peer).await?;
    let mut lines = StdinDatagrams::new(config, udp::max_payload(peer));
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; MAX_DATAGRAM_V6];
    let mut is_stdin_open = true;
    let (mut sent, mut received) = (0u64, 0u64);
    let linger = tokio::time::sleep(config.linger);
    tokio::pin!(linger);
    loop {
        tokio::select! {
            chunk = lines.next(), if is_stdin_open => match chunk {
                Some(chunk) => {
                    let chunk = chunk.map_err(stdin_error)?;
                    send_datagram(&socket, &config.encoding.to_wire(&chunk), peer).await?;
                    sent += 1;
                }
                None => {
                    is_stdin_open = false;
                    linger.as_mut().reset(tokio::time::Instant::now() + config.linger);
                }
            },
            got = socket.recv(&mut buf) => {
                let len = got.map_err(|source| Error::Connect {
                    endpoint: display_addr(Proto::Udp, peer),
                    source,
                })?;
                received += 1;
                let message = config.encoding.from_wire(&buf[..len]);
                print_message(&mut stdout, &message, config.framing != Framing::Raw).await?;
                linger.as_mut().reset(tokio::time::Instant::now() + config.linger);
            }
            () = &mut linger, if !is_stdin_open => break,
        }
        if !is_stdin_open && received >= sent {
            break;
        }
    }
    if received < sent {
        tracing::warn!(
            "{} of {sent} datagrams got no reply within --linger {:?} (UDP does not resend lost ones)",
            sent - received,
            config.linger
        );
    }
    Ok(())
}

/// Standard input cut into datagrams: each read (`raw`), of up to what one datagram holds, or
/// each line.
enum StdinDatagrams {
    /// A buffer as big as the largest datagram: a read into a smaller one (a stream decoder's
    /// leftover capacity) would split a line typed or written at once into two datagrams.
    Raw(tokio::io::Stdin, Vec<u8>),
    /// Each line, without its newline.
    Lines(FramedRead<tokio::io::Stdin, FrameCodec>),
}

impl StdinDatagrams {
    fn new(config: &ConnectConfig, max_payload: usize) -> Self {
        match config.framing {
            Framing::Raw => Self::Raw(tokio::io::stdin(), vec![0; max_payload]),
            Framing::Line | Framing::Len => {
                Self::Lines(FramedRead::new(tokio::io::stdin(), config.stdin_codec()))
            }
        }
    }

    /// The next datagram, `None` at EOF. Cancel-safe, for `select!`.
    async fn next(&mut self) -> Option<Result<BytesMut, FrameError>> {
        match self {
            Self::Raw(stdin, buf) => match stdin.read(buf).await {
                Ok(0) => None,
                Ok(len) => Some(Ok(BytesMut::from(&buf[..len]))),
                Err(err) => Some(Err(FrameError::Io(err))),
            },
            Self::Lines(lines) => lines.next().await,
        }
    }
}

async fn send_datagram(socket: &UdpSocket, datagram: &[u8], peer: SocketAddr) -> Result<()> {
    check_fits(datagram, peer)?;
    socket
        .send(datagram)
        .await
        .map(drop)
        .map_err(|source| Error::Connect {
            endpoint: display_addr(Proto::Udp, peer),
            source,
        })
}

/// Whether `datagram` (from stdin) fits in one datagram to `peer`. The kernel would refuse it
/// with a bare "message too long"; this says what was too long.
///
/// # Errors
/// A runtime error naming both sizes.
fn check_fits(datagram: &[u8], peer: SocketAddr) -> Result<()> {
    let max = udp::max_payload(peer);
    if datagram.len() > max {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "standard input: a {}-byte message does not fit in one UDP datagram (at most {max} bytes to {peer})",
                datagram.len()
            ),
        )));
    }
    Ok(())
}

/// Input that breaks the framing is a runtime error (exit 1), like a peer that does: the
/// command line was right.
fn stdin_error(err: FrameError) -> Error {
    match err {
        FrameError::Io(err) => Error::Io(named("standard input", &err)),
        other => Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("standard input: {other}"),
        )),
    }
}

fn frame_error(err: FrameError) -> Error {
    match err {
        FrameError::Io(err) => tls::explain(err),
        other => Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("peer broke the framing: {other}"),
        )),
    }
}
