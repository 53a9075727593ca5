//! TCP listeners and connections.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use super::deadline::Deadline;
use super::{Peer, StreamListener};
use crate::endpoint::{Endpoint, Family, Proto, display_addr};
use crate::error::{Error, Result};
use crate::limits::LISTEN_BACKLOG;

/// Binds a TCP listener on `addr` with `SO_REUSEADDR`, dual-stack for IPv6.
///
/// # Errors
/// The system's error, unchanged; callers wrap it in [`Error::Bind`].
pub fn bind_addr(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets a restarted server bind while the old one's connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]` then also accepts IPv4 clients as ::ffff:a.b.c.d.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Resolves `endpoint` and binds a TCP listener there.
///
/// # Errors
/// [`Error::Resolve`] or [`Error::Bind`] naming the endpoint.
pub async fn listen(endpoint: &Endpoint, family: Family) -> Result<TcpListener> {
    let addr = endpoint.resolve_one(family).await?;
    bind_addr(addr).map_err(|source| Error::Bind {
        endpoint: display_addr(Proto::Tcp, addr),
        source,
    })
}

/// Resolves `endpoint` and connects to each address in turn until one answers, all done by
/// `deadline`: each address gets an equal share of the time left when its turn comes, so one
/// that never answers (a black-holed IPv6 route) leaves time for the next.
///
/// # Errors
/// [`Error::Resolve`]; [`Error::Connect`] for a single address, [`Error::ConnectEach`] naming
/// every address and its error for several; [`Error::TimedOut`] (naming them too) when the
/// deadline passed or any address did not answer in its share.
pub async fn connect_within(
    endpoint: &Endpoint,
    family: Family,
    deadline: Deadline,
) -> Result<TcpStream> {
    let addrs = deadline
        .within(endpoint.resolve(family))
        .await
        .ok_or_else(|| {
            Error::TimedOut(format!(
                "cannot resolve host '{}': no answer within {}",
                endpoint.host_name(),
                deadline.describe()
            ))
        })??;
    connect_addrs(endpoint, &addrs, deadline).await
}

/// Connects to each of `addrs` (what `endpoint` resolved to) in turn, as [`connect_within`].
async fn connect_addrs(
    endpoint: &Endpoint,
    addrs: &[SocketAddr],
    deadline: Deadline,
) -> Result<TcpStream> {
    let mut failures = Vec::with_capacity(addrs.len());
    for (tried, &addr) in addrs.iter().enumerate() {
        let attempt = TcpStream::connect(addr);
        let result = match deadline.share(addrs.len() - tried) {
            Some(share) => tokio::time::timeout(share, attempt)
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
            None => attempt.await,
        };
        match result {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(err) => {
                tracing::info!(
                    "cannot connect to {}: {err}",
                    display_addr(Proto::Tcp, addr)
                );
                failures.push((display_addr(Proto::Tcp, addr), err));
            }
        }
    }
    Err(connect_error(endpoint, failures, deadline))
}

/// The error for a connect that failed at every address.
fn connect_error(
    endpoint: &Endpoint,
    mut failures: Vec<(String, io::Error)>,
    deadline: Deadline,
) -> Error {
    // Only `-w` makes a time-out of its own (exit 3); without it a `TimedOut` is the system's
    // connect giving up, an ordinary failure.
    let timed_out = deadline.is_set()
        && failures
            .iter()
            .any(|(_, err)| err.kind() == io::ErrorKind::TimedOut);
    if timed_out {
        let limit = format!(" within {}", deadline.describe());
        return Error::TimedOut(match failures.as_slice() {
            [(addr, _)] => format!("cannot connect to {addr}: no answer{limit}"),
            _ => format!(
                "cannot connect to {endpoint}{limit}: {}",
                crate::error::explain_attempts(&failures)
            ),
        });
    }
    if failures.len() == 1 {
        let (endpoint, source) = failures.remove(0);
        return Error::Connect { endpoint, source };
    }
    Error::ConnectEach {
        endpoint: endpoint.to_string(),
        attempts: failures,
    }
}

impl StreamListener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, Peer)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((
            stream,
            Peer {
                name: super::udp::canonical(peer).to_string(),
                ip: Some(peer.ip().to_canonical()),
            },
        ))
    }

    fn local_display(&self) -> String {
        match self.local_addr() {
            Ok(addr) => display_addr(Proto::Tcp, addr),
            Err(_) => "tcp://?".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A loopback port nobody listens on.
    fn closed_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn only_w_makes_a_time_out_of_its_own() {
        let endpoint: Endpoint = "localhost:7".parse().unwrap();
        let failures = || {
            vec![(
                "tcp://127.0.0.1:7".to_string(),
                io::Error::from(io::ErrorKind::TimedOut),
            )]
        };
        // With -w 0, the system's connect giving up is an ordinary failure (exit 1).
        let err = connect_error(&endpoint, failures(), Deadline::none());
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        let w = Deadline::after(Duration::from_secs(1), "-w");
        let err = connect_error(&endpoint, failures(), w);
        assert!(err.is_timeout(), "{err}");
        assert!(
            err.to_string().contains("no answer within 1s (-w)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn every_address_tried_is_named() {
        let (a, b) = (closed_port(), closed_port());
        let endpoint: Endpoint = "localhost:7".parse().unwrap();
        let err = connect_addrs(&endpoint, &[a, b], Deadline::none())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ConnectEach { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot connect to localhost:7: tcp://{a}: connection refused"
            )) && text.contains(&format!("; tcp://{b}: connection refused")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_address_that_never_answers_leaves_the_next_its_share() {
        let server = crate::testing::Unanswering::bind();
        let silent = server.addr;
        let refusing = closed_port();
        let endpoint: Endpoint = "localhost:7".parse().unwrap();
        let started = std::time::Instant::now();
        let deadline = Deadline::after(Duration::from_secs(2), "-w");
        let err = connect_addrs(&endpoint, &[silent, refusing], deadline)
            .await
            .unwrap_err();
        let took = started.elapsed();
        // The silent address had half of the 2 s; the refusing one was still tried after it.
        assert!(err.is_timeout(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("tcp://{silent}: timed out"))
                && text.contains(&format!("tcp://{refusing}: connection refused"))
                && text.contains("within 2s (-w)"),
            "{text}"
        );
        assert!(took >= Duration::from_millis(900), "{took:?}");
        assert!(took < Duration::from_millis(1900), "{took:?}");
    }
}
