//! TCP listeners and connections.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

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

/// Connects to `endpoint`, trying each resolved address in turn.
///
/// # Errors
/// [`Error::Resolve`], or [`Error::Connect`] with the last address's error.
pub async fn connect(endpoint: &Endpoint, family: Family) -> Result<TcpStream> {
    let addrs = endpoint.resolve(family).await?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(err) => last = Some((addr, err)),
        }
    }
    let (addr, source) = last.expect("resolve returns at least one address");
    Err(Error::Connect {
        endpoint: display_addr(Proto::Tcp, addr),
        source,
    })
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
