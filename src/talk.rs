//! `socktalk talk`: one-to-one chat, full duplex.
//!
//! Both sides type whenever they like. Each line typed is sent as text in the wire encoding
//! followed by `\n` (over UDP: one datagram, no newline, as the classic `sendto(msg.encode())`).
//! Each message received is printed as `<peer> text`. A line that is just `bye` ends the
//! conversation on both sides; so does the peer closing the connection.
//!
//! Messages are what the peer sent: a line, or, for peers that send text without a newline (a
//! Python exercise's `conn.send(input().encode())`), whatever one read delivered.
//!
//! Status lines (`* connected to …`, `* … said bye`) go to stderr, the conversation to stdout.

use std::net::SocketAddr;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use crate::access::{AccessPolicy, Admission, Refusal};
use crate::codec::{FrameCodec, Framing, TextDecoder, WireEncoding, terminal_safe};
use crate::endpoint::{Proto, display_addr};
use crate::error::{Error, Result};
use crate::limits::{
    CLOSE_TIMEOUT, HANDSHAKES_AT_ONCE, MAX_DATAGRAM_V6, PARTIAL_LINE_WAIT, READ_CHUNK,
    REFUSAL_LINGER,
};
use crate::server::{self, Entry, RefusalStyle};
use crate::transport::tls::{self, Conn};
use crate::transport::udp::{self, DatagramServer};
use crate::transport::{Peer, StreamListener};

/// The word that ends a conversation when it is a whole line.
pub const BYE: &str = "bye";

/// Settings of a `talk` session.
#[derive(Debug, Clone)]
pub struct TalkConfig {
    /// The wire's text encoding.
    pub encoding: WireEncoding,
    /// After a conversation ends, wait for the next peer instead of exiting (`-k`).
    pub keep_listening: bool,
    /// Print status lines (`-q` turns them off).
    pub is_chatty: bool,
    /// End each line sent over a stream with `\n` (`--no-newline` turns it off).
    pub newline: bool,
}

impl TalkConfig {
    fn status(&self, text: &str) {
        if self.is_chatty {
            eprintln!("* {text}");
        }
    }
}

/// Whether a line or message is the conversation-ending word.
pub fn is_bye(text: &str) -> bool {
    text.trim().eq_ignore_ascii_case(BYE)
}

/// Lines typed on stdin, read by one task for the whole session so `-k` can hand them to each
/// conversation in turn. The channel closes at stdin EOF.
pub fn stdin_lines() -> mpsc::Receiver<String> {
    let (lines_tx, lines_rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut lines = FramedRead::new(
            tokio::io::stdin(),
            FrameCodec::new(Framing::Line, usize::MAX),
        );
        while let Some(Ok(line)) = lines.next().await {
            let line = String::from_utf8_lossy(&line).into_owned();
            if lines_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    lines_rx
}

/// How a conversation ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// We said bye.
    WeSaidBye,
    /// The peer said bye or closed the connection.
    PeerLeft,
}

/// Waits for peers on `listener` and talks with each in turn (one at a time; others are told
/// the line is busy).
///
/// # Errors
/// Only accept errors that persist; a conversation's errors end that conversation.
pub async fn listen<L: StreamListener>(
    listener: L,
    entry: &Entry,
    lines: &mut mpsc::Receiver<String>,
    config: &TalkConfig,
) -> Result<()> {
    server::reload_on_sighup(entry.tls.as_ref());
    server::announce(&listener.local_display());
    server::announce_tls(entry.tls.as_ref());
    loop {
        let (stream, peer, _admission) = next_peer(&listener, entry, config).await?;
        config.status(&format!("connected with {peer}"));
        let ending = converse(stream, &peer.name, Some((&listener, entry)), lines, config).await;
        if !config.keep_listening || ending == Ending::WeSaidBye && lines.is_closed() {
            return Ok(());
        }
        config.status("waiting for the next peer");
    }
}

/// What a caller hears while the listener is in a conversation.
const BUSY: &str = "* busy: in a conversation already; try later\n";

/// The next caller to talk with, admitted, and past its TLS handshake if TLS is on. Handshakes
/// run side by side (at most [`HANDSHAKES_AT_ONCE`]; callers beyond are closed at once), and
/// the first to finish wins: a caller that stalls in its handshake holds up nobody else.
///
/// # Errors
/// An accept error.
async fn next_peer<L: StreamListener>(
    listener: &L,
    entry: &Entry,
    config: &TalkConfig,
) -> Result<(Conn<L::Stream>, Peer, Admission)> {
    let mut handshakes = tokio::task::JoinSet::new();
    let refuse = |stream, peer: &Peer, refusal: Refusal| {
        tracing::info!(%peer, "{refusal}");
        let text = format!("{refusal}\n").into_bytes();
        tokio::spawn(server::turn_away(
            stream,
            entry.tls.clone(),
            RefusalStyle::Line,
            text,
        ));
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = accepted?;
                if let Err(refusal) = entry.gate.check(peer.ip) {
                    refuse(stream, &peer, refusal);
                    continue;
                }
                match &entry.tls {
                    None => match entry.gate.admit(peer.ip) {
                        Ok(admission) => return Ok((Conn::Plain(stream), peer, admission)),
                        Err(refusal) => refuse(stream, &peer, refusal),
                    },
                    Some(_) if handshakes.len() >= HANDSHAKES_AT_ONCE => {
                        tracing::info!(%peer, "closed: {HANDSHAKES_AT_ONCE} TLS handshakes going on");
                    }
                    Some(tls) => {
                        tracing::info!(%peer, "TLS handshake started");
                        let tls = tls.clone();
                        handshakes.spawn(async move { (tls.accept(stream, RefusalStyle::Line).await, peer) });
                    }
                }
            }
            Some(Ok((handshake, peer))) = handshakes.join_next() => {
                let conn = match handshake {
                    Ok(conn) => conn,
                    Err(err) => {
                        config.status(&format!("TLS handshake with {peer} failed: {err}"));
                        continue;
                    }
                };
                // Nobody holds the one place while we wait for a caller: this never fails.
                match entry.gate.admit(peer.ip) {
                    Ok(admission) => {
                        // The callers still in their handshakes, or past them, get the line
                        // busy, as those who call during the conversation do.
                        let busy = config.encoding.encode_message(BUSY);
                        tokio::spawn(async move {
                            while let Some(done) = handshakes.join_next().await {
                                if let Ok((Ok(mut conn), _)) = done {
                                    let farewell = server::close_gently(&mut conn, &busy);
                                    let _ = tokio::time::timeout(REFUSAL_LINGER, farewell).await;
                                }
                            }
                        });
                        return Ok((conn, peer, admission));
                    }
                    Err(refusal) => tracing::info!(%peer, "{refusal}"),
                }
            }
        }
    }
}

/// Talks with the server at the other end of `stream`.
///
/// # Errors
/// None today: a conversation's I/O errors end it and are reported as status lines.
pub async fn dial<S>(stream: S, peer: &str, config: &TalkConfig) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    config.status(&format!("connected to {peer}"));
    let mut lines = stdin_lines();
    converse::<S, NoListener>(stream, peer, None, &mut lines, config).await;
    Ok(())
}

/// One conversation over a stream, until either side says bye or the peer leaves.
async fn converse<S, L>(
    stream: S,
    peer: &str,
    listener: Option<(&L, &Entry)>,
    lines: &mut mpsc::Receiver<String>,
    config: &TalkConfig,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
    L: StreamListener,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut decoder = config.encoding.decoder();
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut pending = String::new();
    // A peer that ends its lines with a newline gets a line sent in pieces shown whole; one
    // that never does (`conn.send(input().encode())`) gets each read shown as it comes.
    let mut uses_newlines = false;
    let mut is_first_read = true;
    // Stdin may have ended before this peer came, leaving lines typed (or piped) for it.
    let mut is_stdin_open = !lines.is_closed() || !lines.is_empty();
    let ending = loop {
        tokio::select! {
            line = lines.recv(), if is_stdin_open => {
                let Some(line) = line else {
                    // Stdin ended: we have nothing more to say, but keep listening.
                    is_stdin_open = false;
                    let _ = writer.shutdown().await;
                    continue;
                };
                let mut wire = config.encoding.encode_message(&line);
                if config.newline {
                    wire.push(b'\n');
                }
                let written = async { writer.write_all(&wire).await?; writer.flush().await };
                if let Err(err) = written.await {
                    config.status(&format!("{peer} is gone: {err}"));
                    break Ending::PeerLeft;
                }
                if is_bye(&line) {
                    config.status("you said bye; conversation over");
                    break Ending::WeSaidBye;
                }
            }
            read = reader.read_buf(&mut input) => {
                let is_eof = !matches!(read, Ok(n) if n > 0);
                let is_plain_listener = listener.is_some_and(|(_, entry)| entry.tls.is_none());
                if std::mem::take(&mut is_first_read) {
                    if is_plain_listener && tls::looks_like_client_hello(&input) {
                        // A caller with --tls on a plain port: its handshake is not a message.
                        config.status(&format!("{peer} started a TLS handshake on this plain port; hung up"));
                        let line = format!("{}\n", tls::TLS_ON_PLAIN);
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer.write_all(line.as_bytes())).await;
                        break Ending::PeerLeft;
                    }
                    if !is_plain_listener && tls::looks_like_tls(&input) {
                        config.status(tls::TLS_HINT);
                    }
                }
                decoder.decode(&input, is_eof, &mut pending);
                input.clear();
                uses_newlines |= pending.contains('\n');
                let hold_piece = uses_newlines && !is_eof;
                if let Some(ending) = show_messages(&mut pending, hold_piece, peer, config) {
                    break ending;
                }
                if is_eof {
                    match read {
                        Err(err) => config.status(&format!("{peer} is gone: {err}")),
                        Ok(_) => config.status(&format!("{peer} left")),
                    }
                    break Ending::PeerLeft;
                }
            }
            () = tokio::time::sleep(PARTIAL_LINE_WAIT), if !pending.is_empty() => {
                // The rest of the line is not coming soon: show what came.
                if let Some(ending) = show_messages(&mut pending, false, peer, config) {
                    break ending;
                }
            }
            accepted = accept_extra(listener.map(|(l, _)| l)) => {
                if let (Ok((extra, who)), Some((_, entry))) = (accepted, listener) {
                    tracing::info!(peer = %who, "turned away: already talking");
                    // Who we talk with is nobody else's business.
                    let busy = config.encoding.encode_message(BUSY);
                    tokio::spawn(server::turn_away(extra, entry.tls.clone(), RefusalStyle::Line, busy));
                }
            }
        }
    };
    // However it ended, the peer reads a clean end: over TLS a close_notify, without which
    // its TLS library reports a truncated connection. A peer that reads nothing more cannot
    // hold us past CLOSE_TIMEOUT.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer.shutdown()).await;
    ending
}

/// Prints every message in `pending` (a whole line, or a final piece without a newline, as
/// the peer sent it) and reports a bye. With `hold_piece`, a final piece stays in `pending`
/// to wait for the rest of its line, unless it is [`READ_CHUNK`] long already: a line longer
/// than that is shown in pieces of about that size.
fn show_messages(
    pending: &mut String,
    hold_piece: bool,
    peer: &str,
    config: &TalkConfig,
) -> Option<Ending> {
    let text = std::mem::take(pending);
    for message in text.split_inclusive('\n') {
        if hold_piece && !message.ends_with('\n') && message.len() < READ_CHUNK {
            pending.push_str(message);
            break;
        }
        let message = message.trim_end_matches(['\n', '\r']);
        show(peer, message);
        if is_bye(message) {
            config.status(&format!("{peer} said bye; conversation over"));
            return Some(Ending::PeerLeft);
        }
    }
    None
}

/// Prints one received message, its control characters shown as U+FFFD: a peer must not be
/// able to redraw our terminal, or fake a status line. A closed stdout is not worth a panic:
/// the conversation goes on and ends the usual way.
fn show(peer: &str, message: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "<{peer}> {}", terminal_safe(message));
    let _ = out.flush();
}

/// Accepts on the listener if there is one; never completes otherwise.
async fn accept_extra<L: StreamListener>(
    listener: Option<&L>,
) -> std::io::Result<(L::Stream, Peer)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Stands in for "no listener" when dialling out.
struct NoListener;

impl StreamListener for NoListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(Self::Stream, Peer)> {
        std::future::pending().await
    }

    fn local_display(&self) -> String {
        String::new()
    }
}

/// Talks over UDP. With `peer` set, datagrams go there at once (either side may speak first)
/// and datagrams from anyone else are ignored. Without it, the first sender `access` permits
/// becomes the peer; datagrams from senders it does not permit are ignored. On a socket bound
/// to a wildcard address, what we send the peer leaves from the address its last datagram was
/// sent to. A `socket` already connected (a caller's, from an ephemeral port) is used as it is.
/// A message to a port nobody listens on is reported, whatever the socket.
///
/// # Errors
/// An I/O error on the socket.
pub async fn udp(
    socket: UdpSocket,
    peer: Option<SocketAddr>,
    access: &AccessPolicy,
    config: &TalkConfig,
) -> Result<()> {
    // Compared with what a dual-stack socket reports (`[::ffff:127.0.0.1]:5000`) as IPv4.
    let fixed_peer = peer.map(udp::canonical);
    let is_connected = socket.peer_addr().is_ok();
    let is_wildcard = socket.local_addr().is_ok_and(udp::is_wildcard);
    if is_connected || (!is_wildcard && fixed_peer.is_some()) {
        // Bound to one address, messages can leave from no other (and a caller's socket,
        // connected already, from the one the kernel picked): connected to a known peer, the
        // socket hears of a port nobody listens on (ICMP port unreachable), and the kernel
        // drops strangers' datagrams for us.
        if let Some(to) = fixed_peer.filter(|_| !is_connected) {
            connect_udp(&socket, to).await?;
        }
        return converse_udp(socket, fixed_peer, access, config).await;
    }
    // On a wildcard address a connected socket would send from the one address the kernel
    // picks for the peer, which need not be the one the peer sends to (a peer on 127.0.0.1
    // sending to 127.0.0.2 from a socket connected there would drop all we say). Unconnected,
    // each message leaves from where the peer's last datagram arrived, strangers are ignored
    // here, and the kernel is asked for the errors it reports a connected socket. On one
    // address without a PEER, there is no peer to connect to before the first datagram (nor
    // after a bye): the same socket asks for those errors there, its replies leaving from the
    // one address it has.
    match udp::WildcardSocket::new(socket) {
        Ok(mut socket) => {
            if let Err(err) = socket.report_errors() {
                tracing::warn!(
                    "a message to a port nobody listens on will be lost without a word: {err}"
                );
            }
            converse_udp(socket, fixed_peer, access, config).await
        }
        Err((err, socket)) if !is_wildcard => {
            tracing::warn!(
                "a message to a port nobody listens on will be lost without a word: {err}"
            );
            converse_udp(socket, fixed_peer, access, config).await
        }
        Err((err, socket)) => {
            tracing::warn!(
                "messages will leave from the address the kernel picks, not always the one the peer sent to: {err}"
            );
            if let Some(to) = fixed_peer {
                connect_udp(&socket, to).await?;
            }
            converse_udp(socket, fixed_peer, access, config).await
        }
    }
}

/// Connects `socket` to `peer`, an error naming it (a broadcast address is refused, say).
async fn connect_udp(socket: &UdpSocket, peer: SocketAddr) -> Result<()> {
    socket.connect(peer).await.map_err(|source| Error::Connect {
        endpoint: display_addr(Proto::Udp, peer),
        source,
    })
}

/// The conversation of [`udp`], over either kind of socket.
async fn converse_udp<S: DatagramServer>(
    socket: S,
    fixed_peer: Option<SocketAddr>,
    access: &AccessPolicy,
    config: &TalkConfig,
) -> Result<()> {
    let mut peer = fixed_peer;
    // Where the peer's last datagram arrived: what we send leaves from there.
    let mut reply_from = S::ReplyFrom::default();
    let mut lines = stdin_lines();
    let mut is_stdin_open = true;
    let mut buf = vec![0u8; MAX_DATAGRAM_V6];
    let mut decoded = String::new();
    // The last sender other than the peer, told of once.
    let mut last_stranger = None;
    loop {
        tokio::select! {
            line = lines.recv(), if is_stdin_open => {
                let Some(line) = line else {
                    is_stdin_open = false;
                    continue;
                };
                let Some(to) = peer else {
                    config.status("nobody to talk to yet: waiting for a peer to speak first");
                    continue;
                };
                let datagram = config.encoding.encode_message(&line);
                send_datagram(&socket, &datagram, to, reply_from, config).await?;
                if is_bye(&line) {
                    config.status("you said bye; conversation over");
                    if !config.keep_listening {
                        return Ok(());
                    }
                    peer = fixed_peer;
                    reply_from = S::ReplyFrom::default();
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (len, from, arrival) = match received {
                    Ok((len, from, arrival)) => (len, udp::canonical(from), arrival),
                    Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                        report_unreachable(udp::undelivered_to(&err).or(peer), config);
                        continue;
                    }
                    Err(err) => {
                        tracing::debug!("udp receive error: {err}");
                        continue;
                    }
                };
                if !access.permits(from.ip()) {
                    tracing::info!(%from, "ignored a datagram from a sender not allowed (--allow/--deny)");
                    continue;
                }
                match peer {
                    Some(expected) if expected != from && fixed_peer.is_some() => {
                        // The PEER given, nobody else, as a connected socket's kernel would.
                        tracing::debug!(%from, "ignored a datagram: talking with {expected}");
                        continue;
                    }
                    Some(expected) if expected != from => {
                        // Most often the peer itself, started again from a new port: say so
                        // (once a sender), rather than drop its messages without a word.
                        if last_stranger.replace(from) != Some(from) {
                            config.status(&format!(
                                "ignored a message from {from}: talking with {expected}"
                            ));
                        }
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        config.status(&format!("talking with {from}"));
                        peer = Some(from);
                    }
                }
                reply_from = arrival;
                decoded.clear();
                let mut decoder: TextDecoder = config.encoding.decoder();
                decoder.decode(&buf[..len], true, &mut decoded);
                let message = decoded.trim_end_matches(['\n', '\r']);
                show(&from.to_string(), message);
                if is_bye(message) {
                    config.status(&format!("{from} said bye; conversation over"));
                    if !config.keep_listening {
                        return Ok(());
                    }
                    peer = fixed_peer;
                    reply_from = S::ReplyFrom::default();
                }
            }
        }
    }
}

/// Sends one datagram to `to`, from where `from` says. What the kernel refuses for this conversation's sake is reported
/// and the talk goes on: a message too big for one datagram, a peer not listening (yet: the
/// other side of a UDP chat may start later), and a datagram the host could not send just now
/// ([`is_passing`]: no buffer space, no route).
///
/// # Errors
/// Any other I/O error on the socket.
async fn send_datagram<S: DatagramServer>(
    socket: &S,
    datagram: &[u8],
    to: SocketAddr,
    from: S::ReplyFrom,
    config: &TalkConfig,
) -> std::io::Result<()> {
    let max = udp::max_payload(to);
    if datagram.len() > max {
        config.status(&format!(
            "not sent: a {}-byte message does not fit in one datagram (at most {max} bytes)",
            datagram.len()
        ));
        return Ok(());
    }
    // A refusal is the news of an earlier datagram (ICMP port unreachable), and this one was
    // not sent: it is sent once more, as the peer may be listening by now.
    for _ in 0..2 {
        match socket.send_to(datagram, to, from).await {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                report_unreachable(Some(to), config);
            }
            Err(err) if is_passing(&err) => {
                config.status(&format!("not sent: {err}; the talk goes on"));
                return Ok(());
            }
            sent => return sent.map(drop),
        }
    }
    config.status("not sent: the peer is still not listening");
    Ok(())
}

/// Whether a failed send concerns that datagram alone, the next may go: the host short of
/// buffers (`ENOBUFS`: a full queue dropped it; a socket that asks for error reports, as a talk
/// on a wildcard address does, hears of it where others do not), or without a route to the
/// peer for now.
fn is_passing(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ENOBUFS
                | libc::ENOMEM
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
        )
    )
}

/// ICMP port unreachable for a datagram we sent: nobody listens there.
fn report_unreachable(peer: Option<SocketAddr>, config: &TalkConfig) {
    let to = peer.map_or_else(|| "the peer".to_string(), |p| p.to_string());
    config.status(&format!(
        "{to} is not listening (port unreachable); your message was lost"
    ));
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use super::*;

    /// A socket whose sends fail with the errors given, one each, then succeed.
    struct Failing(Mutex<Vec<i32>>);

    impl DatagramServer for Failing {
        type ReplyFrom = ();

        async fn recv_from(&self, _: &mut [u8]) -> io::Result<(usize, SocketAddr, ())> {
            std::future::pending().await
        }

        async fn send_to(&self, buf: &[u8], _: SocketAddr, (): ()) -> io::Result<usize> {
            match self.0.lock().unwrap().pop() {
                Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                None => Ok(buf.len()),
            }
        }
    }

    /// A datagram the host could not send just now (no buffer space, no route: what a
    /// reporting socket hears of) is reported, not the end of the talk; an error of the socket
    /// itself still is.
    #[tokio::test]
    async fn a_send_that_fails_for_the_moment_does_not_end_the_talk() {
        let config = TalkConfig {
            encoding: WireEncoding::default(),
            keep_listening: false,
            is_chatty: false,
            newline: true,
        };
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        for errno in [libc::ENOBUFS, libc::EHOSTUNREACH, libc::ENETUNREACH] {
            let socket = Failing(Mutex::new(vec![errno]));
            let sent = send_datagram(&socket, b"hi", to, (), &config).await;
            assert!(sent.is_ok(), "errno {errno}: {sent:?}");
        }
        let socket = Failing(Mutex::new(vec![libc::EBADF]));
        assert!(
            send_datagram(&socket, b"hi", to, (), &config)
                .await
                .is_err()
        );
    }
}
