//! A WebSocket seen as lines, so `fanout --ws` measures a chat server's browser path with the
//! same receivers, sender and checks as its line protocol.
//!
//! - Reading: each text or binary message arrives as its payload and a `\n`; one read takes
//!   every message already received that fits (a receiver's read is a batch, as over TCP).
//!   Pings are answered (by tungstenite) and not shown; the server's close frame ends the
//!   stream (without waiting for its TCP connection to close).
//! - Writing: each line written (up to its `\n`) goes out as one text message holding
//!   `{"type":"say","text":LINE}`: socktalk's JSON-mode request to speak in the current room.
//!   A relay that does not read JSON (`websocat … broadcast:mirror:`) passes it on as it is,
//!   and the mark in the text is found either way. Each message is written at once, as a
//!   browser sends it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::error::{Error, Result};

/// The most a WebSocket read takes from the socket: about a hundred chat messages.
const READ_BUFFER: usize = 16 * 1024;

/// A WebSocket connection as a stream of lines (see the module's documentation).
pub struct Lines<S> {
    ws: WebSocketStream<S>,
    /// What is left of the message being read, then its `\n`.
    unread: Bytes,
    newline_owed: bool,
    /// An error met after some bytes were read: returned by the next read.
    failed: Option<io::Error>,
    /// The server's close frame came: nothing more is read (the end of the stream).
    closed: bool,
    /// The answer to the server's close frame, which tungstenite queued, is still to be sent:
    /// without it the server waits out its close timeout before it lets the connection go.
    close_answer_owed: bool,
    /// The line being written, until its `\n`.
    line: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Lines<S> {
    /// Upgrades `stream` to a WebSocket at `url` (`ws://HOST:PORT/PATH`, or `wss://…` over a
    /// TLS stream: the URL names the server in the `Host` header, and in errors; no `Origin`
    /// is sent, as from a program rather than a page), giving up after `wait` (zero: never).
    ///
    /// # Errors
    /// The server refused the upgrade (its HTTP status and the first line of its answer are
    /// named) or closed the connection; [`Error::TimedOut`] past `wait`.
    pub async fn connect(stream: S, url: &str, wait: Duration) -> Result<Self> {
        // Zero: every message goes to the socket as it is sent, not gathered up to 128 KiB.
        // The read buffer is zero-filled to its size before every read: the default 128 KiB
        // would cost a receiver a 128 KiB memset per read, and `hold` 128 KiB per connection.
        let config = WebSocketConfig::default()
            .write_buffer_size(0)
            .read_buffer_size(READ_BUFFER);
        let upgrade = tokio_tungstenite::client_async_with_config(url, stream, Some(config));
        let upgraded = if wait.is_zero() {
            upgrade.await
        } else {
            tokio::time::timeout(wait, upgrade).await.map_err(|_| {
                Error::TimedOut(format!(
                    "no answer to the WebSocket upgrade at {url} within {}s (-w)",
                    wait.as_secs_f64()
                ))
            })?
        };
        let (ws, _) = upgraded.map_err(|err| upgrade_error(url, err))?;
        Ok(Self {
            ws,
            unread: Bytes::new(),
            newline_owed: false,
            failed: None,
            closed: false,
            close_answer_owed: false,
            line: BytesMut::new(),
        })
    }

    /// Sends the line gathered so far as one message (the socket being ready for it).
    fn send_line(&mut self) -> io::Result<()> {
        let message = Message::text(say(&self.line));
        self.line.clear();
        Pin::new(&mut self.ws).start_send(message).map_err(io_error)
    }
}

/// Why an upgrade to `url` failed, in words.
fn upgrade_error(url: &str, err: tungstenite::Error) -> Error {
    let why = match err {
        // A refusal's body says why (`serve` names the limit: --max-conns-per-ip, --max-conns).
        tungstenite::Error::Http(response) => match response.body().as_deref().map(first_line) {
            Some(said) if !said.is_empty() => {
                format!("the server answered {}: '{said}'", response.status())
            }
            _ => format!("the server answered {}", response.status()),
        },
        tungstenite::Error::Io(err) => err.to_string(),
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::HttparseError(_))
        | tungstenite::Error::HttpFormat(_) => {
            "the server does not answer in HTTP there (`serve --http` names its web port)".into()
        }
        other => other.to_string(),
    };
    Error::Io(io::Error::other(format!(
        "cannot open a WebSocket at {url}: {why}"
    )))
}

/// The first line of a refusal's body, as text (a page's worth at most).
fn first_line(body: &[u8]) -> String {
    let line = body.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = &line[..line.len().min(200)];
    String::from_utf8_lossy(line).trim().to_string()
}

/// A WebSocket error as an I/O error: a connection reset stays one.
fn io_error(err: tungstenite::Error) -> io::Error {
    match err {
        tungstenite::Error::Io(err) => err,
        other => io::Error::other(other),
    }
}

/// `{"type":"say","text":LINE}`.
fn say(line: &[u8]) -> String {
    let text = serde_json::Value::from(String::from_utf8_lossy(line));
    format!(r#"{{"type":"say","text":{text}}}"#)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Lines<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(err) = this.failed.take() {
            return Poll::Ready(Err(err));
        }
        let start = buf.filled().len();
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !this.unread.is_empty() {
                let take = this.unread.len().min(buf.remaining());
                buf.put_slice(&this.unread[..take]);
                this.unread.advance(take);
                continue;
            }
            if this.newline_owed {
                buf.put_slice(b"\n");
                this.newline_owed = false;
                continue;
            }
            let read_some = buf.filled().len() > start;
            if this.closed {
                if this.close_answer_owed {
                    // Done when written, or when the connection is gone anyway.
                    match Pin::new(&mut this.ws).poll_flush(cx) {
                        Poll::Pending if !read_some => return Poll::Pending,
                        Poll::Pending => return Poll::Ready(Ok(())),
                        Poll::Ready(_) => this.close_answer_owed = false,
                    }
                }
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut this.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(Message::Text(text)))) => {
                    (this.unread, this.newline_owed) = (Bytes::from(text), true);
                }
                Poll::Ready(Some(Ok(Message::Binary(data)))) => {
                    (this.unread, this.newline_owed) = (data, true);
                }
                Poll::Ready(Some(Ok(Message::Close(_)))) => {
                    (this.closed, this.close_answer_owed) = (true, true);
                }
                // Pings are answered by tungstenite.
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(err))) if read_some => {
                    this.failed = Some(io_error(err));
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(io_error(err))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending if read_some => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lines<S> {
    /// Takes bytes up to and including the next `\n` (sending that line as a message), or all
    /// of `data` when it holds none (kept for the line's end).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(end) = memchr::memchr(b'\n', data) else {
            this.line.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        };
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        this.line.extend_from_slice(&data[..end]);
        this.send_line()?;
        Poll::Ready(Ok(end + 1))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_error)
    }

    /// Sends a line left without its `\n`, then a close frame, and waits until they are
    /// written.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.line.is_empty() {
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
            this.send_line()?;
        }
        match Pin::new(&mut this.ws).poll_close(cx) {
            Poll::Ready(Err(tungstenite::Error::ConnectionClosed)) => Poll::Ready(Ok(())),
            poll => poll.map_err(io_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A WebSocket server on one end of a pipe, `Lines` on the other.
    async fn pair() -> (
        Lines<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(tokio_tungstenite::accept_async(server));
        let lines = Lines::connect(client, "ws://localhost/ws", Duration::ZERO)
            .await
            .unwrap();
        (lines, server.await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn messages_read_as_lines_and_lines_go_out_as_say_requests() {
        let (mut lines, mut server) = pair().await;
        for text in ["first", "", "third"] {
            server.send(Message::text(text)).await.unwrap();
        }
        server.send(Message::binary(&b"bytes"[..])).await.unwrap();
        server.send(Message::Ping(Bytes::new())).await.unwrap();
        server.flush().await.unwrap();
        let mut read = Vec::new();
        while read.len() < "first\n\nthird\nbytes\n".len() {
            let mut buf = [0u8; 64];
            let n = lines.read(&mut buf).await.unwrap();
            read.extend_from_slice(&buf[..n]);
        }
        assert_eq!(read, b"first\n\nthird\nbytes\n");

        // A line written in pieces is one message; two lines in one write are two.
        lines.write_all(b"hel").await.unwrap();
        lines.write_all(b"lo \"you\"\nsecond\n").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            match server.next().await.unwrap().unwrap() {
                Message::Text(text) => got.push(text.to_string()),
                // The answer to the ping.
                Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            got,
            [
                r#"{"type":"say","text":"hello \"you\""}"#,
                r#"{"type":"say","text":"second"}"#
            ]
        );
    }

    #[tokio::test]
    async fn a_message_longer_than_a_read_is_read_in_pieces() {
        let (mut lines, mut server) = pair().await;
        server.send(Message::text("x".repeat(1000))).await.unwrap();
        let mut read = Vec::new();
        while !read.ends_with(b"\n") {
            let mut buf = [0u8; 300];
            let n = lines.read(&mut buf).await.unwrap();
            assert!(n > 0);
            read.extend_from_slice(&buf[..n]);
        }
        assert_eq!(read.len(), 1001);
    }

    #[tokio::test]
    async fn a_close_ends_the_stream_and_shutdown_sends_one() {
        let (mut lines, mut server) = pair().await;
        server.send(Message::text("last")).await.unwrap();
        server.close(None).await.unwrap();
        let mut read = Vec::new();
        lines.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"last\n");
        // Its close frame ends the stream, though the server has not closed the connection,
        // and is answered: the server need not wait out a close timeout.
        assert_eq!(lines.read(&mut [0u8; 16]).await.unwrap(), 0);
        let answer = tokio::time::timeout(Duration::from_secs(10), server.next()).await;
        assert!(
            matches!(answer, Ok(Some(Ok(Message::Close(_))) | None)),
            "{answer:?}"
        );

        // A line left without its end goes out before the close.
        let (mut lines, mut server) = pair().await;
        lines.write_all(b"no end").await.unwrap();
        lines.shutdown().await.unwrap();
        let said = server.next().await.unwrap().unwrap();
        assert_eq!(said.to_text().unwrap(), r#"{"type":"say","text":"no end"}"#);
        assert!(matches!(server.next().await, Some(Ok(Message::Close(_)))));
    }

    /// The error `Lines::connect` to `url` gives when the server answers `answer`.
    async fn refused(url: &str, answer: String) -> String {
        let (client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = server.read(&mut request).await;
            let _ = server.write_all(answer.as_bytes()).await;
        });
        let err = Lines::connect(client, url, Duration::ZERO)
            .await
            .err()
            .expect("refused");
        err.to_string()
    }

    #[tokio::test]
    async fn a_refused_upgrade_names_the_status() {
        let answer = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_string();
        let text = refused("ws://localhost/nope", answer).await;
        assert!(text.contains("ws://localhost/nope"), "{text}");
        assert!(text.contains("404"), "{text}");
    }

    #[tokio::test]
    async fn a_refused_upgrade_quotes_the_reason_the_server_gave() {
        let reason = "refused: too many connections from 127.0.0.1 (--max-conns-per-ip 64)\n";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{reason}",
            reason.len()
        );
        let text = refused("ws://localhost/ws", answer).await;
        assert!(text.contains("503"), "{text}");
        assert!(text.contains("--max-conns-per-ip 64)'"), "{text}");
    }
}
