//! [`dial`]: how every interactive client (`connect`, `chat`, `talk PEER`) reaches its server
//! over a stream: resolve the name, connect (TCP: each address in turn; a Unix socket: again
//! while the server's accept queue is full), then the TLS handshake when TLS is on, all done by
//! one deadline (`-w`).

use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};
use tokio_util::either::Either;

use super::deadline::Deadline;
use super::tls::{Conn, Connector};
use super::{tcp, unix};
use crate::endpoint::{Endpoint, Family};
use crate::error::Result;

/// A dialled stream: TCP or Unix, under TLS or not.
pub type Dialed = Conn<Either<TcpStream, UnixStream>>;

/// Connects to `target` (TCP or a Unix socket) and runs the TLS handshake when `tls` is given,
/// all within `wait` (zero: no limit). Returns the connection and the peer's name for people
/// (`127.0.0.1:7000`, `unix:/tmp/talk.sock`).
///
/// # Errors
/// As [`tcp::connect_within`], [`unix::connect`] and [`Connector::connect_within`]: a timeout
/// anywhere is [`crate::Error::TimedOut`].
pub async fn dial(
    target: &Endpoint,
    family: Family,
    tls: Option<&Connector>,
    wait: Duration,
) -> Result<(Dialed, String)> {
    let deadline = Deadline::after(wait, "-w");
    let (stream, peer) = match target {
        Endpoint::Unix(path) => (
            Either::Right(unix::connect(path, deadline).await?),
            target.to_string(),
        ),
        Endpoint::Inet { .. } => {
            let stream = tcp::connect_within(target, family, deadline).await?;
            let peer = stream.peer_addr()?.to_string();
            (Either::Left(stream), peer)
        }
    };
    let conn = match tls {
        Some(tls) => {
            tls.connect_within(&target.host_name(), stream, deadline)
                .await?
        }
        None => Conn::Plain(stream),
    };
    Ok((conn, peer))
}
