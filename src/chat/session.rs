//! One chat connection (TCP or Unix): lines in, events out.
//!
//! The session reads lines, decodes them from the connection's encoding, parses them (as text
//! commands, or JSON after `/json`) and hands each [`Command`](super::command::Command) to the
//! hub. At the same time it writes whatever the hub puts in its outbox, several lines per
//! write.
//!
//! Limits enforced here:
//! - `--max-line`: a longer line is refused with an error and skipped up to its newline; the
//!   session goes on.
//! - `--max-rate` / `--burst`: a token bucket. A client above the rate is told once, and its
//!   further lines are read only as fast as the rate allows: TCP pushes back on the sender and
//!   nothing it sent is dropped. Its outbox keeps draining meanwhile.
//! - `--idle-timeout`: a client that sends no complete line for that long is told and
//!   disconnected. Only a whole line (a message or command, newline included) is activity: bytes
//!   of a line still unfinished are not, so a client that sends half a line and then trickles a
//!   byte now and then (slowloris) is closed like a silent one. An over-long line, which is
//!   refused, is not activity either. Time the server spends holding the client back (the rate
//!   limit, a full hub queue) does not count as idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::command::{Command, parse_json, parse_line};
use super::event::Event;
use super::hub::{Format, MemberId, Request};
use super::outbox::{Inbox, Outgoing, outbox};
use crate::codec::{FrameCodec, FrameError, Framing, WireEncoding};
use crate::limits::CLOSE_TIMEOUT;
use crate::server;
use crate::transport::{Readiness, tls};

/// The first read buffer; it grows only for long lines.
const FIRST_READ: usize = 1024;

/// Settings of every chat session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The encoding a connection starts in.
    pub encoding: WireEncoding,
    /// Longest line accepted, in bytes.
    pub max_line: usize,
    /// Messages per second per connection (0: unlimited).
    pub max_rate: f64,
    /// Messages a connection may send at once before the rate applies.
    pub burst: f64,
    /// Disconnect after this long without input (zero: never).
    pub idle_timeout: Duration,
    /// Lines the hub may queue for a member before it is disconnected as too slow.
    pub outbox: usize,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A new member id, unique in this process.
pub fn next_member_id() -> MemberId {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(rate: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// `None` if a message may be read now, else when the next one may.
    pub fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        if self.rate <= 0.0 {
            return None;
        }
        self.refill(now);
        (self.tokens < 1.0).then(|| now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    pub fn take(&mut self) {
        if self.rate > 0.0 {
            self.tokens -= 1.0;
        }
    }

    pub fn is_full(&self) -> bool {
        self.rate <= 0.0 || self.tokens >= self.burst
    }
}

/// Per-connection input state.
struct Input {
    encoding: WireEncoding,
    is_json: bool,
    codec: FrameCodec,
    max_line: usize,
    buf: BytesMut,
    /// Skipping the rest of an over-long line.
    is_discarding: bool,
}

impl Input {
    /// The next complete line, an error for an over-long one, or `None` for "need more bytes".
    fn next_line(&mut self) -> Option<Result<BytesMut, String>> {
        if self.is_discarding {
            match memchr::memchr(b'\n', &self.buf) {
                Some(at) => {
                    let _ = self.buf.split_to(at + 1);
                    self.is_discarding = false;
                }
                None => {
                    self.buf.clear();
                    return None;
                }
            }
        }
        let buffered = self.buf.len();
        match self.codec.decode(&mut self.buf) {
            Ok(line) => line.map(Ok),
            Err(FrameError::LineTooLong { max }) => {
                // The codec remembers how far it scanned; a fresh one starts over.
                self.codec = FrameCodec::new(Framing::Line, self.max_line);
                // A whole line, newline included, has been taken out of the buffer; only an
                // unfinished one leaves the rest of itself to skip (not the next line).
                self.is_discarding = self.buf.len() == buffered;
                Some(Err(format!(
                    "line longer than {max} bytes (--max-line); it was discarded"
                )))
            }
            Err(err) => Some(Err(err.to_string())),
        }
    }

    fn parse(&self, line: &[u8]) -> Result<Option<Command>, String> {
        // JSON is always utf-8, whatever the connection's text encoding.
        let encoding = if self.is_json {
            WireEncoding::default()
        } else {
            self.encoding
        };
        let text = encoding.decode_message(line);
        let parsed = if self.is_json {
            parse_json(&text)
        } else {
            parse_line(&text)
        };
        parsed.map_err(|e| e.0)
    }
}

/// Serves one connection until the client quits or leaves, the hub disconnects it, or the
/// server shuts down.
pub async fn serve<S>(
    mut stream: S,
    peer: String,
    hub: mpsc::Sender<Request>,
    config: Arc<SessionConfig>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Readiness + Unpin,
{
    let id = next_member_id();
    let (outbox, inbox) = outbox();
    let connect = Request::Connect {
        id,
        outbox,
        encoding: config.encoding,
        format: Format::Text,
    };
    if hub.send(connect).await.is_err() {
        return;
    }
    // Failed logins count per client address too.
    let _ = hub.send(Request::Address(id, peer.clone())).await;
    tracing::debug!(%peer, member = id, "joined the chat");

    let mut input = Input {
        encoding: config.encoding,
        is_json: false,
        codec: FrameCodec::new(Framing::Line, config.max_line),
        max_line: config.max_line,
        buf: BytesMut::new(),
        is_discarding: false,
    };
    let mut limit = RateLimit::new(config.max_rate, config.burst);
    let mut throttle: Option<Instant> = None;
    let mut is_told_to_slow_down = false;
    let mut is_reading = true;
    let mut is_cut_mid_line = false;
    // Only the first read is looked at for a TLS ClientHello (a client with --tls on a plain
    // port): what it brought, with no wait for more.
    let mut is_first_read = true;
    let mut last_word_here: Option<Vec<u8>> = None;
    // The hub's queue is full: lines wait (and so does the socket) until it has room, while the
    // outbox keeps draining. Waiting for the hub inside `send` instead would stop this
    // member's own reading, and a fast sender would be cut off as "not reading".
    let mut is_hub_full = false;
    // The place in the hub's queue that waiting won, kept for the next line: given back, it
    // could go to a busier session every time.
    let mut reserved: Option<mpsc::Permit<'_, Request>> = None;
    let idle = tokio::time::sleep_until(far_future(config.idle_timeout));
    tokio::pin!(idle);
    // One cancellation future for the whole connection: a fresh one every turn of the loop
    // took the token's lock to register and again to drop, once per member per fan-out.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);

    loop {
        // Handle every complete line the rate allows, while the hub has room for them.
        while is_reading && throttle.is_none() && !is_hub_full {
            if let Some(at) = limit.ready_at(Instant::now()) {
                throttle = Some(at);
                if !is_told_to_slow_down {
                    is_told_to_slow_down = true;
                    let text = format!(
                        "slow down: at most {} messages per second; reading you more slowly (nothing is lost)",
                        config.max_rate
                    );
                    let _ = hub.send(Request::Notice(id, Event::Warning { text })).await;
                }
                break;
            }
            let permit = match reserved.take().map_or_else(|| hub.try_reserve(), Ok) {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Full(())) => {
                    is_hub_full = true;
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(())) => return,
            };
            let Some(line) = input.next_line() else {
                break;
            };
            let line = match line {
                Ok(line) => {
                    // A whole line is what keeps a connection alive; bytes alone don't.
                    if !config.idle_timeout.is_zero() {
                        idle.as_mut().reset(Instant::now() + config.idle_timeout);
                    }
                    line
                }
                Err(text) => {
                    permit.send(Request::Refused(id, text));
                    continue;
                }
            };
            // A client back within its rate since the warning is warned again next time.
            if limit.is_full() {
                is_told_to_slow_down = false;
            }
            limit.take();
            let request = match input.parse(&line) {
                Ok(None) => continue,
                Err(text) => Request::Refused(id, text),
                Ok(Some(Command::Encoding(label))) => match WireEncoding::for_label(&label) {
                    Ok(encoding) => {
                        input.encoding = encoding;
                        Request::SetEncoding(id, encoding)
                    }
                    Err(err) => Request::Refused(id, err.to_string()),
                },
                Ok(Some(command)) => {
                    match command {
                        Command::Json => input.is_json = true,
                        Command::Quit(_) => is_reading = false,
                        _ => {}
                    }
                    Request::Command(id, command)
                }
            };
            permit.send(request);
        }

        if input.buf.is_empty() && input.buf.capacity() > 0 {
            // Nothing half-read: give the buffer back until bytes arrive again.
            input.buf = BytesMut::new();
        }

        let is_held_back = throttle.is_some() || is_hub_full;
        if is_held_back && !config.idle_timeout.is_zero() {
            idle.as_mut().reset(Instant::now() + config.idle_timeout);
        }

        tokio::select! {
            biased;
            out = inbox.take() => {
                let Some(mut out) = out else {
                    // The hub let us go: quit, kicked, or shutting down.
                    break;
                };
                // Let the other tasks woken with this one run first, then take what came
                // meanwhile: in a busy room the hub's next round often has, and it goes out in
                // this write instead of the next one (one write and one wake-up fewer, here and
                // at the client). On an idle server the yield is back at once.
                tokio::task::yield_now().await;
                inbox.take_more(&mut out);
                // Everything queued, in one write.
                let written =
                    write_unless_kicked(&mut stream, &mut out, &inbox, config.idle_timeout).await;
                if let Ok(false) = written {
                    tracing::debug!(%peer, member = id, "cut off with a write waiting; closing");
                    is_cut_mid_line = out.is_mid_line();
                    break;
                }
                if let Err(err) = written {
                    tracing::debug!(%peer, "write failed: {err}");
                    is_reading = false;
                    let _ = hub.send(Request::Leave(id, Some("connection lost".into()))).await;
                    // Keep draining until the hub closes the outbox.
                    continue;
                }
            }
            room = hub.reserve(), if is_hub_full => {
                let Ok(permit) = room else {
                    return;
                };
                reserved = Some(permit);
                is_hub_full = false;
            }
            () = async { tokio::time::sleep_until(throttle.unwrap_or_else(Instant::now)).await }, if throttle.is_some() => {
                throttle = None;
            }
            ready = stream.readable(), if is_reading && throttle.is_none() && !is_hub_full => {
                let read = ready.and_then(|()| read_some(&mut stream, &mut input.buf));
                match read {
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                    Ok(0) | Err(_) => {
                        // A clean EOF: a last line without its newline still counts. After a
                        // reset the client crashed mid-line, and half a line is not a message.
                        let is_clean_eof = read.is_ok();
                        if is_clean_eof && !input.buf.is_empty() && !input.is_discarding {
                            input.buf.extend_from_slice(b"\n");
                            continue_with_last_line(&mut input, id, &hub).await;
                        }
                        is_reading = false;
                        // The room hears the same short reason however the connection broke;
                        // the operating system's words are for the log.
                        let reason = read.err().map(|err| {
                            tracing::debug!(%peer, "read failed: {err}");
                            "connection lost".to_string()
                        });
                        let _ = hub.send(Request::Leave(id, reason)).await;
                    }
                    // Bytes alone are not activity: the idle clock waits for a whole line.
                    Ok(_) => {
                        if std::mem::take(&mut is_first_read) && tls::looks_like_client_hello(&input.buf) {
                            // Its handshake is not a message: nothing of it reaches a room.
                            tracing::info!(%peer, "a TLS handshake on a plain port; closing");
                            input.buf.clear();
                            last_word_here = Some(format!("{}\n", tls::TLS_ON_PLAIN).into_bytes());
                            let reason = "started TLS on a plain port".to_string();
                            let _ = hub.send(Request::Leave(id, Some(reason))).await;
                            break;
                        }
                    }
                }
            }
            // Idle means the client sent no whole line while we were waiting for it: time the
            // server spends holding it back (rate limit, full hub queue) does not count.
            () = &mut idle, if is_reading && throttle.is_none() && !is_hub_full => {
                is_reading = false;
                let text = format!("closing: idle for {:?} (--idle-timeout)", config.idle_timeout);
                let _ = hub.send(Request::Notice(id, Event::Error { text })).await;
                let _ = hub.send(Request::Leave(id, Some("idle".into()))).await;
            }
            () = &mut cancelled, if is_reading => {
                // Stop reading; the hub says goodbye and closes the outbox.
                is_reading = false;
            }
        }
    }
    let _ = hub.send(Request::Leave(id, None)).await;
    // The hub's last word to a member it cut off, on a line of its own.
    let mut last_word = match last_word_here {
        Some(word) => word,
        None => inbox.last_word().map(Vec::from).unwrap_or_default(),
    };
    if is_cut_mid_line && !last_word.is_empty() {
        last_word.insert(0, b'\n');
    }
    let _ =
        tokio::time::timeout(CLOSE_TIMEOUT, server::close_gently(&mut stream, &last_word)).await;
    tracing::debug!(%peer, member = id, "left the chat");
}

/// Writes `bytes`, unless the hub cuts the member off first (`Ok(false)`): a member cut off for
/// not reading is not reading this write either, and waiting for it would hold the connection
/// (and its `--max-conns` slot) for as long as the client likes.
/// A write that takes longer than `idle_timeout` (when set) is given up too: a member that
/// neither reads nor writes for that long is idle, even in a room too quiet to fill its outbox.
async fn write_unless_kicked<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Outgoing,
    inbox: &Inbox,
    idle_timeout: Duration,
) -> std::io::Result<bool> {
    let stuck = async {
        if idle_timeout.is_zero() {
            std::future::pending::<()>().await;
        } else {
            tokio::time::sleep(idle_timeout).await;
        }
    };
    tokio::select! {
        // A write that can finish does; only one left waiting is given up.
        biased;
        // The flush matters for TLS, whose last record may wait in its buffer otherwise.
        written = async { stream.write_all_buf(out).await?; stream.flush().await } => written.map(|()| true),
        // Its last word goes out as the connection closes.
        () = inbox.kicked() => Ok(false),
        () = stuck => {
            tracing::info!("closing: a write waited {idle_timeout:?} for the client to read (--idle-timeout)");
            Ok(false)
        }
    }
}

/// Handles the final unterminated line at EOF (ignoring the rate: the client is gone).
async fn continue_with_last_line(input: &mut Input, id: MemberId, hub: &mpsc::Sender<Request>) {
    while let Some(Ok(line)) = input.next_line() {
        if let Ok(Some(command)) = input.parse(&line) {
            if matches!(command, Command::Encoding(_) | Command::Json) {
                continue;
            }
            let _ = hub.send(Request::Command(id, command)).await;
        }
    }
}

/// Reads what is waiting into `buf`, which is allocated here, on the first byte, rather than
/// held through idle time.
fn read_some<S: Readiness>(stream: &mut S, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < FIRST_READ / 2 {
        buf.reserve(FIRST_READ.max(buf.len()));
    }
    stream.try_read_buf(buf)
}

/// The first idle deadline: `timeout` from now, or a century for "never".
pub fn far_future(timeout: Duration) -> Instant {
    let wait = if timeout.is_zero() {
        Duration::from_secs(100 * 365 * 86_400)
    } else {
        timeout
    };
    Instant::now() + wait
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_burst_then_the_rate() {
        let mut limit = RateLimit::new(10.0, 3.0);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(limit.ready_at(now).is_none());
            limit.take();
        }
        let at = limit.ready_at(now).expect("burst spent");
        let wait = at - now;
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(101),
            "{wait:?}"
        );
        assert!(limit.ready_at(now + Duration::from_millis(100)).is_none());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut limit = RateLimit::new(0.0, 0.0);
        for _ in 0..10_000 {
            assert!(limit.ready_at(Instant::now()).is_none());
            limit.take();
        }
        assert!(limit.is_full());
    }

    #[test]
    fn over_long_lines_are_skipped_to_their_newline() {
        let mut input = Input {
            encoding: WireEncoding::default(),
            is_json: false,
            codec: FrameCodec::new(Framing::Line, 8),
            max_line: 8,
            buf: BytesMut::from(&b"0123456789abc"[..]),
            is_discarding: false,
        };
        assert!(input.next_line().unwrap().is_err());
        assert!(input.next_line().is_none());
        input.buf.extend_from_slice(b"def\nok\n");
        assert_eq!(&input.next_line().unwrap().unwrap()[..], b"ok");
        assert!(input.next_line().is_none());

        // A whole over-long line in the buffer costs only itself, not the line after it.
        input.buf.extend_from_slice(b"0123456789abc\nnext\n");
        assert!(input.next_line().unwrap().is_err());
        assert_eq!(&input.next_line().unwrap().unwrap()[..], b"next");
        assert!(input.next_line().is_none());
    }
}
