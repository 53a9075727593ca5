//! The browser side of the chat (B/S beside C/S): the page at `/` and a WebSocket at `/ws`.
//!
//! The page's three files are compiled into the binary, so serving it needs no build step and
//! no files on disk. A WebSocket member is an ordinary hub member in JSON mode from its first
//! frame: it starts as a guest in `#lobby`, sends the JSON requests of the line protocol (one per
//! text frame) and gets one event per text frame. The limits are those of a TCP member: the
//! longest message (`--max-line`), the rate (`--max-rate`), the bounded outbox for slow readers
//! and `--max-conns`, shared with the other listeners.
//!
//! Cross-site WebSocket hijacking is refused: a browser's `Origin` must name the host the page
//! was served from (or one given with `--allow-origin`). Clients that send no `Origin` (not
//! browsers) are let in.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::socket::Browser;

use crate::access::Admission;
use crate::chat::command::{Command, parse_json};
use crate::chat::event::Event;
use crate::chat::hub::{Format, Request};
use crate::chat::outbox::{Inbox, Outgoing, outbox};
use crate::chat::session::{RateLimit, SessionConfig, next_member_id};
use crate::codec::WireEncoding;
use crate::limits::{CLOSE_TIMEOUT, WS_DRAIN_TIMEOUT};
use crate::server::{self, Entry};
use crate::transport::deadline::WriteDeadline;
use crate::transport::tls::Conn;

mod socket;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");

/// The page may load only its own files and talk only to its own server.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// How long a closing connection's last frames may take to go out: a client that stopped
/// reading would otherwise hold its connection open.
const LAST_WORD_WAIT: Duration = Duration::from_millis(100);

/// Who may open the WebSocket.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Origins allowed besides the serving host (`http://example.org:8080`), or `*` for any.
    pub allowed: Vec<String>,
}

impl OriginPolicy {
    /// Whether a request with these headers may upgrade.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
            // Not a browser: no page could have been tricked into opening this.
            return true;
        };
        if self
            .allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        host.is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
    }
}

/// What every web request shares.
pub struct WebState {
    /// The hub.
    pub hub_tx: mpsc::Sender<Request>,
    /// Limits of a chat session.
    pub session: Arc<SessionConfig>,
    /// Server shutdown.
    pub shutdown: CancellationToken,
    /// Who may open the WebSocket.
    pub origins: OriginPolicy,
    /// How often each WebSocket is pinged (zero: never); one that answers nothing for two
    /// intervals is closed.
    pub ping: Duration,
    /// The WebSocket sessions, each in a task of its own once upgraded: at shutdown the web
    /// listener waits for them to say goodbye (at most [`WS_DRAIN_TIMEOUT`]).
    pub sessions: TaskTracker,
    /// How long a client has to send each request's head (`--tls-handshake-timeout`, which
    /// bounds the TLS handshake before it the same way): a slowloris is closed after it.
    pub head_timeout: Duration,
    /// WebSocket upgrades refused for their `Origin`, logged a line a second at most: any
    /// page can make a browser ask, and one connection can ask thousands of times a second.
    pub refused_origins: std::sync::Mutex<crate::server::Throttled>,
}

/// The routes: the page's files and the WebSocket.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/ws", get(upgrade))
        .fallback(not_found)
        .with_state(state)
}

/// Who a request came over: the connection's client and its place under `--max-conns`, which
/// a WebSocket keeps for as long as it is open.
#[derive(Clone)]
struct Visitor {
    peer: String,
    admission: Arc<Admission>,
}

/// Serves the web page and WebSocket on `listener` until `shutdown`, under the same access
/// rules, connection limits and TLS as the chat's other listeners (`entry`). HTTP/1.1 only: a
/// client must send each request head within [`WebState::head_timeout`]
/// (`--tls-handshake-timeout`), and a write the client leaves unread for `--idle-timeout` ends
/// its connection.
pub async fn serve(listener: tokio::net::TcpListener, entry: Entry, state: Arc<WebState>) {
    let shutdown = state.shutdown.clone();
    // A client that stops reading (pipelined requests, a WebSocket in a quiet room) is given
    // up after the chat's idle timeout, as on the line protocol.
    let stall = state.session.idle_timeout;
    let sessions = state.sessions.clone();
    let head_timeout = state.head_timeout;
    let router = router(state);
    server::run(
        listener,
        entry,
        shutdown,
        move |conn, peer, admission, shutdown| {
            let visitor = Visitor {
                peer: peer.name,
                admission,
            };
            let conn = WriteDeadline::new(conn, stall);
            serve_http(conn, visitor, router.clone(), head_timeout, shutdown)
        },
    )
    .await;
    // The WebSockets were handed over to tasks of their own: each closes with 1001 (going
    // away), and this waits for them, within bounds, before the server exits under them.
    sessions.close();
    server::drain(&sessions, WS_DRAIN_TIMEOUT).await;
}

async fn serve_http<S>(
    conn: WriteDeadline<Conn<S>>,
    visitor: Visitor,
    router: Router,
    head_timeout: Duration,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(visitor.clone());
        router.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // A client may end its side right after its request (`nc -N`, a script's
        // `shutdown(SHUT_WR)`) and still wait for the reply: without this, hyper takes the
        // end of input it finds before answering for a dropped client, and the reply is lost.
        .half_close(true)
        .header_read_timeout(head_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(err) = served {
                tracing::debug!("http connection ended: {err}");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(LAST_WORD_WAIT, connection).await;
        }
    }
}

/// Any other path: a browser shows a blank page for an empty 404, so this one says where the
/// chat is.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found; the chat is at /\n").into_response()
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `/ws`: checks the handshake and the `Origin`, answers 101 and hands the connection, once
/// hyper lets go of it, to a [`session`] of its own.
async fn upgrade(
    State(state): State<Arc<WebState>>,
    Extension(visitor): Extension<Visitor>,
    mut request: HttpRequest,
) -> Response {
    let key = match socket::handshake_key(request.method(), request.headers()) {
        Ok(key) => key,
        Err(refusal) => return refusal,
    };
    let peer = visitor.peer;
    if !state.origins.allows(request.headers()) {
        let logged = state
            .refused_origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .note(std::time::Instant::now());
        match logged {
            Some(0) => {
                tracing::warn!(%peer, "websocket refused: origin not allowed (--allow-origin)");
            }
            Some(held) => tracing::warn!(
                %peer,
                "websocket refused: origin not allowed (--allow-origin); and {held} more since the last line like this"
            ),
            None => {}
        }
        return (
            StatusCode::FORBIDDEN,
            "origin not allowed (the server's --allow-origin decides)\n",
        )
            .into_response();
    }
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return socket::not_upgradable();
    };
    // Messages a little over --max-line are read, to be refused with an error event while the
    // session goes on, as on TCP; only far bigger ones end the connection.
    let max = ws_message_limit(state.session.max_line);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER);
    let admission = visitor.admission;
    // Counted from the upgrade on, so that shutdown waits for the session to close.
    let tracked = state.sessions.token();
    tokio::spawn(async move {
        // Once the 101 has gone out, hyper gives the connection up.
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(%peer, "websocket upgrade failed: {err}");
                return;
            }
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        session(Browser::new(socket), peer, state, admission).await;
        drop(tracked);
    });
    socket::accepted(&key)
}

/// Why a WebSocket session ends on a read error, for its close frame: the code RFC 6455 gives
/// the error (1009 for a message too big, 1007 for text that is not UTF-8, 1002 for the rest)
/// and the reason. The library's words for a message over the limit name neither the limit nor
/// the flag that sets it.
fn close_reason(error: &str, max_line: usize) -> (CloseCode, String) {
    if error.contains("Message too long") {
        let max = ws_message_limit(max_line);
        (
            CloseCode::Size,
            format!("message too long: over {max} bytes (4 × --max-line)"),
        )
    } else if error.contains("UTF-8") {
        (CloseCode::Invalid, format!("websocket error: {error}"))
    } else {
        (CloseCode::Protocol, format!("websocket error: {error}"))
    }
}

/// The largest WebSocket message read at all: four times `--max-line`, so that one a little
/// over it (a JSON request escapes its text) is refused with an error event while the session
/// goes on; a bigger one closes the connection, saying why.
fn ws_message_limit(max_line: usize) -> usize {
    max_line.saturating_mul(4)
}

/// Each WebSocket's read buffer. The library's default, 128 KiB, is zero-filled up to its
/// full size before every read, including each poll that finds nothing (a member is polled
/// for requests after every batch of lines it is sent): a fifth of the server's CPU in a
/// fan-out to 100 browsers went to that `memset`, and every idle browser held the 128 KiB
/// (2,000 idle WebSockets: 136 KB of server memory each; 10 KB with 4 KiB, 6 KB with 1 KiB).
/// A browser's request is a line of chat; a longer message takes more reads.
const WS_READ_BUFFER: usize = 1024;

/// The library's write buffer, which now holds only control frames (pongs, pings, close
/// frames): the chat's lines are written by [`Browser::send_lines`] straight from the hub's
/// chunks. It keeps the largest capacity it ever reached, so it stays small: when the library
/// wrote the lines too, its default 128 KiB was kept by every browser once sent a burst
/// (2,000 idle browsers after a 2,000-line burst: 22 MB -> 194 MB of server memory).
const WS_WRITE_BUFFER: usize = 4 * 1024;

/// The shortest ping interval: `--ws-ping` is in seconds, and an interval must not be zero.
const MIN_PING: Duration = Duration::from_millis(10);

/// The most bytes a close frame's reason may have (125 for the payload, less the code).
const MAX_CLOSE_REASON: usize = 123;

/// One browser: JSON requests in, JSON events out, one per text frame.
async fn session(
    mut socket: Browser,
    peer: String,
    state: Arc<WebState>,
    admission: Arc<Admission>,
) {
    let id = next_member_id();
    let (outbox, inbox) = outbox();
    let connect = Request::Connect {
        id,
        outbox,
        encoding: WireEncoding::default(),
        format: Format::Json,
    };
    if state.hub_tx.send(connect).await.is_err() {
        return;
    }
    // Failed logins are limited per client address too.
    let _ = state.hub_tx.send(Request::Address(id, peer.clone())).await;
    tracing::info!(%peer, member = id, "websocket connected");
    let config = &state.session;
    let mut limit = RateLimit::new(config.max_rate, config.burst);
    let mut throttle: Option<Instant> = None;
    let mut is_reading = true;
    let mut is_told_to_slow_down = false;
    let idle = tokio::time::sleep_until(idle_deadline(config.idle_timeout));
    tokio::pin!(idle);
    // A browser gone without a word (a laptop asleep, a dropped network) sends nothing, not
    // even a close: pinged, it does not answer, and it is closed instead of holding its nick
    // until --idle-timeout.
    let ping = state.ping;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + ping, ping.max(MIN_PING));
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // Why the server ends the session, for its close frame; `None` while it does not know.
    let mut ending: Option<Ending> = None;
    // Lines may still be written: not once the client has closed (its close frame read) or the
    // connection broke, when a frame would break the protocol or be lost anyway.
    let mut is_open = true;
    loop {
        tokio::select! {
            biased;
            out = inbox.take() => {
                let Some(mut out) = out else {
                    break;
                };
                // As on TCP: let the other tasks woken with this one run first, then take what
                // came meanwhile, to go out in the same writes.
                tokio::task::yield_now().await;
                inbox.take_more(&mut out);
                if !is_open {
                    // Closed, or broken: what is left is drained and dropped.
                    continue;
                }
                let sent = send_unless_kicked(&mut socket, out, &inbox).await;
                match sent {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(%peer, member = id, "cut off with a send waiting; closing");
                        if !state.shutdown.is_cancelled() {
                            ending = Some(Ending::NotReading);
                        }
                        break;
                    }
                    Err(err) => {
                        tracing::debug!(%peer, "send failed: {err}");
                        ending = Some(Ending::Gone);
                        is_open = false;
                        if is_reading {
                            is_reading = false;
                            let _ = state.hub_tx.send(Request::Leave(id, Some("connection lost".into()))).await;
                        }
                    }
                }
            }
            () = async { tokio::time::sleep_until(throttle.unwrap_or_else(Instant::now)).await }, if throttle.is_some() => {
                throttle = None;
            }
            received = socket.next(), if is_reading && throttle.is_none() => {
                if let Some(Ok(_)) = received {
                    last_heard = Instant::now();
                }
                // Every message within --max-line counts against --max-rate, as every line does
                // on TCP: a binary one too, or a flood of them would cost the hub an error each,
                // as fast as the client can send them.
                let is_counted = match &received {
                    Some(Ok(Message::Text(text))) => text.len() <= config.max_line,
                    Some(Ok(Message::Binary(_))) => true,
                    _ => false,
                };
                if is_counted {
                    let ready_at = limit.ready_at(Instant::now());
                    // Back within its rate since the warning: warned again next time.
                    if limit.is_full() {
                        is_told_to_slow_down = false;
                    }
                    if let Some(at) = ready_at {
                        throttle = Some(at);
                        if !is_told_to_slow_down {
                            is_told_to_slow_down = true;
                            let text = format!("slow down: at most {} messages per second; reading you more slowly (nothing is lost)", config.max_rate);
                            let _ = state.hub_tx.send(Request::Notice(id, Event::Warning { text })).await;
                        }
                    }
                    limit.take();
                }
                let request = match received {
                    Some(Ok(Message::Text(text))) if text.len() > config.max_line => {
                        idle.as_mut().reset(idle_deadline(config.idle_timeout));
                        let text = format!(
                            "message longer than {} bytes (--max-line); it was discarded",
                            config.max_line
                        );
                        Request::Refused(id, text)
                    }
                    Some(Ok(Message::Text(text))) => {
                        idle.as_mut().reset(idle_deadline(config.idle_timeout));
                        match parse_json(&text) {
                            Ok(None) => continue,
                            Err(err) => Request::Refused(id, err.0),
                            Ok(Some(Command::Encoding(_))) => {
                                Request::Refused(id, "a web connection is always utf-8".into())
                            }
                            Ok(Some(command)) => {
                                if matches!(command, Command::Quit(_)) {
                                    is_reading = false;
                                    ending = Some(Ending::Quit);
                                }
                                Request::Command(id, command)
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        Request::Refused(id, "send JSON text frames, not binary".into())
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => {
                        // The client closed: the library answers its close frame.
                        is_reading = false;
                        is_open = false;
                        ending = Some(Ending::ClientClosed);
                        Request::Leave(id, None)
                    }
                    Some(Err(err)) => {
                        is_reading = false;
                        is_open = false;
                        tracing::info!(%peer, "websocket error: {err}");
                        // Say why in the close frame (a message far over --max-line, a
                        // protocol error), if the socket takes it soon: a client that does not
                        // read must not hold the session here.
                        let (code, mut reason) = close_reason(&err.to_string(), state.session.max_line);
                        reason.truncate(reason.floor_char_boundary(MAX_CLOSE_REASON));
                        let frame = CloseFrame { code, reason: reason.into() };
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send_control(Message::Close(Some(frame)))).await;
                        ending = Some(Ending::Gone);
                        Request::Leave(id, Some("connection lost".into()))
                    }
                };
                if state.hub_tx.send(request).await.is_err() {
                    break;
                }
            }
            _ = heartbeat.tick(), if is_reading && !ping.is_zero() => {
                // Held back under --max-rate, its pongs wait unread: that is not silence.
                if throttle.is_none() && last_heard.elapsed() >= ping * 2 {
                    is_reading = false;
                    ending = Some(Ending::NoPong);
                    tracing::info!(%peer, member = id, "websocket: no answer to ping; closing");
                    let _ = state.hub_tx.send(Request::Leave(id, Some("no answer to ping".into()))).await;
                } else {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send_control(Message::Ping(Default::default()))).await;
                }
            }
            () = &mut idle, if is_reading => {
                is_reading = false;
                ending = Some(Ending::Idle(config.idle_timeout));
                let text = format!("closing: idle for {:?} (--idle-timeout)", config.idle_timeout);
                let _ = state.hub_tx.send(Request::Notice(id, Event::Error { text })).await;
                let _ = state.hub_tx.send(Request::Leave(id, Some("idle".into()))).await;
            }
            () = state.shutdown.cancelled(), if is_reading => {
                is_reading = false;
            }
        }
    }
    let _ = state.hub_tx.send(Request::Leave(id, None)).await;
    // Nothing said why: the server is shutting down, or else the hub cut the member off, which
    // it does only to one too far behind in reading (it ends the others at their request).
    let ending = ending.unwrap_or(if state.shutdown.is_cancelled() {
        Ending::Shutdown
    } else {
        Ending::NotReading
    });
    if let Some((code, reason)) = ending.close_frame() {
        // The close handshake: our frame, then the client's answer, within CLOSE_TIMEOUT (a
        // client that does not read does not read this either). A frame of ours cut short is
        // finished first, and the member's last word (from a hub that cut it off) goes out
        // if the socket takes it at once; a frame still unfinished then closes the connection
        // without a close frame, which would otherwise land inside it.
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let last_word = inbox.last_word();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            socket.finish_frame().await?;
            if let Some(word) = last_word {
                let _ = tokio::time::timeout(LAST_WORD_WAIT, socket.send_lines(word.into())).await;
            }
            socket.send_control(Message::Close(Some(frame))).await?;
            while let Some(Ok(message)) = socket.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
            Ok::<_, tokio_tungstenite::tungstenite::Error>(())
        })
        .await;
    } else if ending == Ending::ClientClosed {
        // Our answer to its close frame, queued by the library, goes out now.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.flush_control()).await;
    }
    tracing::info!(%peer, member = id, "websocket closed");
    drop(admission);
}

/// Why the server ends a WebSocket session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The member sent `/quit`.
    Quit,
    /// No whole message for `--idle-timeout`.
    Idle(Duration),
    /// No answer to pings for two `--ws-ping` intervals.
    NoPong,
    /// The server is shutting down.
    Shutdown,
    /// Cut off by the hub for falling too far behind in reading (`--outbox`).
    NotReading,
    /// The client closed: the library has queued the answer to its close frame.
    ClientClosed,
    /// The connection broke (a close frame went out already, if any).
    Gone,
}

impl Ending {
    /// The close frame's code and reason (RFC 6455 §7.4.1): 1000 for an ending the member
    /// chose or earned by silence, 1001 for the server or the client's network going away,
    /// 1008 for breaking the server's rule that a member keeps reading.
    fn close_frame(self) -> Option<(CloseCode, String)> {
        match self {
            Ending::Quit => Some((CloseCode::Normal, "bye".into())),
            Ending::Idle(after) => Some((
                CloseCode::Normal,
                format!("idle for {after:?} (--idle-timeout)"),
            )),
            Ending::NoPong => Some((CloseCode::Away, "no answer to ping".into())),
            Ending::Shutdown => Some((CloseCode::Away, "server shutting down".into())),
            Ending::NotReading => Some((
                CloseCode::Policy,
                "disconnected for not reading (--outbox)".into(),
            )),
            Ending::ClientClosed | Ending::Gone => None,
        }
    }
}

/// Sends each line of `out` as a text frame, unless the hub cuts the member off first
/// (`Ok(false)`): a member cut off for not reading is not reading these frames either, and
/// waiting for them would hold the connection (and its `--max-conns` slot) for as long as the
/// client likes. A send given up may have left a frame half written (see
/// [`Browser::finish_frame`]).
async fn send_unless_kicked(
    socket: &mut Browser,
    out: Outgoing,
    inbox: &Inbox,
) -> Result<bool, tokio_tungstenite::tungstenite::Error> {
    tokio::select! {
        // Frames that can go out do; only a send left waiting is given up.
        biased;
        sent = socket.send_lines(out) => sent.map(|()| true),
        () = inbox.kicked() => Ok(false),
    }
}

fn idle_deadline(timeout: Duration) -> Instant {
    crate::chat::session::far_future(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_error_closes_with_its_rfc_code_and_says_why() {
        // The WebSocket library's own words, as axum passes them on.
        let error = "Space limit exceeded: Message too long: 401 > 400";
        assert_eq!(
            close_reason(error, 100),
            (
                CloseCode::Size,
                "message too long: over 400 bytes (4 × --max-line)".to_string()
            )
        );
        assert_eq!(
            close_reason("Protocol error: bad opcode", 100),
            (
                CloseCode::Protocol,
                "websocket error: Protocol error: bad opcode".to_string()
            )
        );
        let not_utf8 = "UTF-8 encoding error: invalid utf-8 sequence of 1 bytes from index 0";
        assert_eq!(close_reason(not_utf8, 100).0, CloseCode::Invalid);
    }

    #[test]
    fn each_ending_closes_with_its_rfc_code() {
        let code = |ending: Ending| ending.close_frame().map(|(code, _)| code);
        assert_eq!(code(Ending::Quit), Some(CloseCode::Normal));
        assert_eq!(
            code(Ending::Idle(Duration::from_secs(60))),
            Some(CloseCode::Normal)
        );
        assert_eq!(code(Ending::NoPong), Some(CloseCode::Away));
        assert_eq!(code(Ending::Shutdown), Some(CloseCode::Away));
        assert_eq!(code(Ending::NotReading), Some(CloseCode::Policy));
        assert_eq!(code(Ending::ClientClosed), None);
        assert_eq!(code(Ending::Gone), None);
        for ending in [
            Ending::Idle(Duration::from_secs(86_400 * 365)),
            Ending::NotReading,
        ] {
            let (_, reason) = ending.close_frame().unwrap();
            assert!(reason.len() <= MAX_CLOSE_REASON, "{reason}");
        }
    }

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn origins_must_match_the_serving_host() {
        let policy = OriginPolicy::default();
        assert!(policy.allows(&headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080")));
        assert!(policy.allows(&headers(None, "127.0.0.1:8080")));
        assert!(!policy.allows(&headers(Some("http://evil.example"), "127.0.0.1:8080")));
        assert!(!policy.allows(&headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8080")));
        let wide = OriginPolicy {
            allowed: vec!["http://chat.example.org".into()],
        };
        assert!(wide.allows(&headers(Some("http://chat.example.org"), "127.0.0.1:8080")));
        let any = OriginPolicy {
            allowed: vec!["*".into()],
        };
        assert!(any.allows(&headers(Some("http://anything"), "127.0.0.1:8080")));
    }

    #[test]
    fn the_page_is_embedded() {
        assert!(INDEX_HTML.contains("/app.js"));
        assert!(APP_JS.contains("textContent"));
        assert!(
            !APP_JS.contains("innerHTML"),
            "all text must go through textContent"
        );
        assert!(STYLE_CSS.contains("@media"));
    }
}
