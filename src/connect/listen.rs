//! `socktalk connect -l`: the listening end of the netcat-class client, as `nc -l` is
//! netcat's. It waits for one peer, then pumps stdin to the socket and the socket to stdout,
//! raw and binary-safe, exactly as the client does.
//!
//! Streams (TCP, Unix): the listener binds, says `listening on ADDR` on stderr (stdout carries
//! the peer's bytes), accepts one peer, closes the listening socket (a second caller is refused,
//! as by `ncat -l`) and runs the client's pump on it
//! ([`super::stream_from`]): stdin EOF half-closes, the peer's EOF ends it as it ends the client,
//! `--linger` and `--idle-timeout` as there. With `keep_open` (`-k`) it then accepts the next
//! peer; callers meanwhile wait in the accept backlog, and nothing is written to them. Stdin is
//! read once, by one [`Input`] for the whole run: each peer gets what the ones before it left.
//!
//! UDP: the first datagram's sender is the peer. Its datagrams are printed; stdin, read only
//! once the peer is known, goes to it as datagrams, as the client sends them. Datagrams from
//! anyone else are ignored, with a note. After stdin ends, the peer's silence for `--linger`
//! ends it. A datagram to the peer that comes back undelivered (ICMP port unreachable: the peer
//! has gone) ends it with an error, as it ends the client: the socket asks the kernel for such
//! reports ([`udp::WildcardSocket::report_errors`]) rather than being connected to the peer:
//! connected, it would drop strangers' datagrams without the note, and on a wildcard address
//! send from the kernel's choice of address, not the one the peer sent to.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use super::{ConnectConfig, Input, StdinDatagrams, check_fits, print_message, stdin_error};
use crate::codec::Framing;
use crate::endpoint::{Proto, display_addr};
use crate::error::{Error, Result};
use crate::limits::MAX_DATAGRAM_V6;
use crate::server::{self, AcceptBackoff, RefusalStyle};
use crate::signals::{self, Signals};
use crate::transport::tls::{Acceptor, Conn};
use crate::transport::udp::{self, DatagramServer};
use crate::transport::{Peer, StreamListener};

/// Settings of `connect -l` beyond the client's.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// After a peer ends, wait for the next one (`-k`; streams only).
    pub keep_open: bool,
    /// Print status lines such as `connection from …` (`-q` turns them off).
    pub is_chatty: bool,
    /// TLS on the listener (`--tls-cert`/`--tls-self-signed`).
    pub tls: Option<Acceptor>,
}

impl ListenConfig {
    fn status(&self, text: &str) {
        if self.is_chatty {
            eprintln!("{text}");
        }
    }
}

/// Serves peers on `listener` one at a time (one only, without `keep_open`), until a peer
/// ends and `keep_open` is off, or a signal.
///
/// SIGINT, SIGTERM and SIGHUP end it as they would end `nc` (exit status 128 + the signal's
/// number), but only after the listener is dropped, so that a Unix socket file is removed as
/// the Unix servers remove theirs.
///
/// # Errors
/// Without `keep_open`, what the session's pump returns (exit 1 for a broken framing, 3 for
/// `--idle-timeout`); with it, only stdin or stdout failing (or stdout closed) end the run (a
/// peer's errors are logged and the next peer is served).
pub async fn streams<L: StreamListener>(
    listener: L,
    config: &ConnectConfig,
    listen: &ListenConfig,
) -> Result<()> {
    // Installed before the address is announced: a signal that comes after it must find them.
    let mut caught = Signals::install()?;
    server::announce_on_stderr(&listener.local_display(), listen.tls.as_ref());
    let mut input = Input::new(config);
    let outcome = tokio::select! {
        result = serve(listener, config, listen, &mut input) => Ok(result),
        number = caught.recv() => Err(number),
    };
    match outcome {
        Ok(result) => result,
        // The pump is gone (its connection closed), and the listener with it: a Unix socket
        // file is removed.
        Err(number) => std::process::exit(signals::exit_status(number).into()),
    }
}

/// The sessions of [`streams`]: one, or one after another with `keep_open`.
async fn serve<L: StreamListener>(
    listener: L,
    config: &ConnectConfig,
    listen: &ListenConfig,
    input: &mut Input,
) -> Result<()> {
    if !listen.keep_open {
        let (conn, peer) = next_peer(&listener, listen).await;
        // As `ncat -l` does: a second caller is refused at once (a Unix socket's file is gone),
        // not left connected in the backlog, its bytes read by no one, until we exit.
        drop(listener);
        listen.status(&format!("connection from {peer}"));
        return super::stream_from(conn, config, input).await;
    }
    loop {
        let (conn, peer) = next_peer(&listener, listen).await;
        listen.status(&format!("connection from {peer}"));
        let result = super::stream_from(conn, config, input).await;
        if input.is_broken() {
            return result;
        }
        match result {
            Ok(()) => {}
            // The next peer's bytes would have nowhere to go either.
            Err(err @ (Error::StdoutClosed | Error::Stdout(_))) => return Err(err),
            Err(err) => tracing::error!(%peer, "{err}"),
        }
    }
}

/// The next peer, its TLS handshake done. Not a session: a failed handshake (a plain client, a
/// port scanner) leaves the listener waiting for a peer, `keep_open` or not.
async fn next_peer<L: StreamListener>(
    listener: &L,
    listen: &ListenConfig,
) -> (Conn<L::Stream>, Peer) {
    loop {
        let (stream, peer) = accept(listener).await;
        let Some(tls) = &listen.tls else {
            return (Conn::Plain(stream), peer);
        };
        match tls.accept(stream, RefusalStyle::Line).await {
            Ok(conn) => return (conn, peer),
            Err(err) => listen.status(&format!("TLS handshake with {peer} failed: {err}")),
        }
    }
}

/// The next connection. Accept errors (out of file descriptors, a caller gone before it was
/// accepted) are logged and retried with exponential back-off, as the servers do.
async fn accept<L: StreamListener>(listener: &L) -> (L::Stream, Peer) {
    let mut backoff = AcceptBackoff::default();
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(err) => backoff.wait(&err).await,
        }
    }
}

/// Listens on the UDP `socket`: the first sender is the peer (see the module's doc).
///
/// # Errors
/// Stdin failing or breaking the framing (a line too big for one datagram), stdout failing, or
/// an I/O error on the socket.
pub async fn udp(socket: UdpSocket, config: &ConnectConfig, listen: &ListenConfig) -> Result<()> {
    let local = socket.local_addr()?;
    server::announce_on_stderr(&display_addr(Proto::Udp, local), None);
    // On a wildcard address, what we send the peer leaves from the address it sent to, as
    // `echo -u` answers. On any address, the kernel reports a datagram to the peer that comes
    // back undelivered, as a connected socket's would.
    match udp::WildcardSocket::new(socket) {
        Ok(mut socket) => {
            if let Err(err) = socket.report_errors() {
                tracing::warn!("a peer that has gone will not be noticed: {err}");
            }
            converse(socket, config, listen).await
        }
        Err((err, socket)) if !udp::is_wildcard(local) => {
            tracing::warn!("a peer that has gone will not be noticed: {err}");
            converse(socket, config, listen).await
        }
        Err((err, socket)) => {
            tracing::warn!(
                "datagrams will leave from the address the kernel picks, not always the one the peer sent to: {err}"
            );
            converse(socket, config, listen).await
        }
    }
}

/// The session of [`udp`], over either kind of socket.
async fn converse<S: DatagramServer>(
    socket: S,
    config: &ConnectConfig,
    listen: &ListenConfig,
) -> Result<()> {
    let mut peer: Option<SocketAddr> = None;
    // Where the peer's last datagram arrived: what we send leaves from there.
    let mut reply_from = S::ReplyFrom::default();
    // Made when the peer is known: until then stdin is left unread, for the peer to have.
    let mut stdin: Option<StdinDatagrams> = None;
    let mut is_stdin_open = true;
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; MAX_DATAGRAM_V6];
    // The last sender other than the peer, told of once.
    let mut last_stranger = None;
    let linger = tokio::time::sleep(config.linger);
    tokio::pin!(linger);
    loop {
        tokio::select! {
            chunk = next_datagram(&mut stdin), if is_stdin_open => match chunk {
                Some(chunk) => {
                    // Stdin is read only once the peer is known.
                    let Some(to) = peer else { continue };
                    let chunk = chunk.map_err(stdin_error)?;
                    let datagram = config.encoding.to_wire(&chunk);
                    check_fits(&datagram, to)?;
                    socket
                        .send_to(&datagram, to, reply_from)
                        .await
                        .map_err(|source| match source.kind() {
                            // News of an earlier datagram, twice over: the peer has gone.
                            std::io::ErrorKind::ConnectionRefused => peer_gone(to, &source),
                            kind => Error::Io(std::io::Error::new(
                                kind,
                                format!("cannot send to {}: {source}", display_addr(Proto::Udp, to)),
                            )),
                        })?;
                }
                None => {
                    is_stdin_open = false;
                    linger.as_mut().reset(tokio::time::Instant::now() + config.linger);
                }
            },
            received = socket.recv_from(&mut buf) => {
                let (len, from, arrival) = match received {
                    Ok(received) => received,
                    Err(err) => match (udp::undelivered_to(&err), peer) {
                        (Some(to), Some(peer)) if to == peer => return Err(peer_gone(to, &err)),
                        // Nothing is sent to anyone else; a report of nothing we know of.
                        (Some(to), _) => {
                            tracing::debug!(%to, "a datagram not delivered: {err}");
                            continue;
                        }
                        (None, _) => return Err(err.into()),
                    },
                };
                let from = udp::canonical(from);
                match peer {
                    None => {
                        listen.status(&format!("connection from {from}"));
                        peer = Some(from);
                        stdin = Some(StdinDatagrams::new(config, udp::max_payload(from)));
                    }
                    Some(expected) if expected != from => {
                        if last_stranger.replace(from) != Some(from) {
                            listen.status(&format!(
                                "ignored a datagram from {from}: the peer is {expected}"
                            ));
                        }
                        continue;
                    }
                    Some(_) => {}
                }
                reply_from = arrival;
                let message = config.encoding.from_wire(&buf[..len]);
                print_message(&mut stdout, &message, config.framing != Framing::Raw).await?;
                linger.as_mut().reset(tokio::time::Instant::now() + config.linger);
            }
            () = &mut linger, if !is_stdin_open => return Ok(()),
        }
    }
}

/// The error for a datagram to `peer` that came back undelivered with `err`.
fn peer_gone(peer: SocketAddr, err: &std::io::Error) -> Error {
    let reason = match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "port unreachable".to_string(),
        _ => crate::error::lowercase_io(
            err.get_ref()
                .and_then(|inner| inner.downcast_ref::<udp::Undelivered>())
                .map_or(err, |undelivered| &undelivered.error),
        ),
    };
    Error::PeerGone {
        endpoint: display_addr(Proto::Udp, peer),
        reason,
    }
}

/// The next datagram from stdin; never, before the peer is known and `stdin` made.
async fn next_datagram(
    stdin: &mut Option<StdinDatagrams>,
) -> Option<std::result::Result<bytes::BytesMut, crate::codec::FrameError>> {
    match stdin {
        Some(stdin) => stdin.next().await,
        None => std::future::pending().await,
    }
}
